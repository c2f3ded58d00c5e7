"""What a feed server publishes from: a price source (simulator or historical replay).

A source owns the *market*; the server owns the *connections*. The server calls
:meth:`PriceSource.start` once, then :meth:`PriceSource.advance` on a fixed wall-clock cadence,
stamps the ticks and curves it gets back with the exchange time, keeps the authoritative latest
state (for snapshots) and fans them out to subscribers. Sources never do network I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from app.feed.instruments import Instrument
from app.feed.protocol import CurveUpdate, Tick, VolUpdate

__all__ = ["Batch", "PriceSource"]


@dataclass(slots=True)
class Batch:
    """Updates produced by one step of a source, in the order they happened.

    ``ticks`` carry instrument, bid/ask/last, size, kind (``trade`` or ``settle``) and the
    exchange timestamp ``ts`` (ns); stream and seq are left for the server to assign.
    ``curves`` are full curves or contiguous changed blocks; settlement curves have ``settle``.
    ``vols`` are implied-vol surfaces (whole, per product) for sources that quote them.
    """

    ticks: list[Tick] = field(default_factory=list)
    curves: list[CurveUpdate] = field(default_factory=list)
    vols: list[VolUpdate] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ticks) + len(self.curves) + len(self.vols)


class PriceSource(Protocol):
    """A simulated or replayed market."""

    #: ``"simulate"`` or ``"replay"`` (reported to clients in ``welcome``)
    mode: str

    def instruments(self) -> list[Instrument]:
        """Every instrument this source quotes (fixed for the source's life)."""
        ...

    def start(self, now_ns: int) -> Batch:
        """Initial state: a settle tick per instrument (the previous settlement, the reference
        for change), a trade tick per instrument and one full curve per product."""
        ...

    def advance(self, wall_seconds: float, now_ns: int) -> Batch:
        """Move the market on by ``wall_seconds`` of wall-clock time (times the source's speed)."""
        ...

    @property
    def finished(self) -> bool:
        """True when a replay has run out of history (a simulator never finishes)."""
        ...
