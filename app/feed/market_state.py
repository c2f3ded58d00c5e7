"""Market state: the latest quote per instrument and the live forward curve per product.

Plain Python + numpy, no Qt. One writer (the feed client's thread) and any number of readers
(the GUI bridge, the pricer, positions, risk) share it under one lock; every public method is
thread-safe and returns copies or immutable values.

The GUI never listens tick by tick: it calls :meth:`MarketState.take_changes` from a timer at a
bounded rate (10-20 Hz) and repaints what changed since the last call, however fast ticks
arrive. Non-GUI consumers that need every settlement (the recorder that persists history)
register with :meth:`add_listener`; listeners run on the writer's thread and must be cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.engine.curves import ForwardCurve
from app.feed.protocol import CurveUpdate, Snapshot, Tick, VolUpdate
from app.models.catalogue import PRODUCT_BY_CODE

__all__ = ["Changes", "FeedStatus", "LiveCurve", "MarketState", "Quote"]

# Connection states shown in the status bar
NOT_CONFIGURED = "not configured"
CONNECTING = "connecting"
CONNECTED = "connected"
STALE = "stale"
RECONNECTING = "reconnecting"
DISCONNECTED = "disconnected"


@dataclass(slots=True)
class Quote:
    """Latest known price of one instrument (a copy; mutate freely)."""

    instrument: str
    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    size: float = 0.0
    ts: int = 0  # exchange timestamp, ns since the epoch
    received: float = 0.0  # local wall clock (time.time()) when it arrived
    settle: float | None = None  # previous settlement: the reference for change
    stale: bool = False

    @property
    def change(self) -> float | None:
        if self.last is None or self.settle is None:
            return None
        return self.last - self.settle

    @property
    def change_pct(self) -> float | None:
        """Change over the previous settlement in percent; ``None`` when the settlement is 0."""
        if self.last is None or self.settle is None or self.settle == 0:
            return None
        return 100.0 * (self.last - self.settle) / abs(self.settle)


@dataclass(frozen=True, slots=True)
class LiveCurve:
    """A monthly curve as received: first month, prices (read-only), exchange time, settle date."""

    product: str
    start: np.datetime64
    prices: np.ndarray
    ts: int
    settle: str | None = None

    @property
    def months(self) -> np.ndarray:
        return self.start + np.arange(self.prices.size)

    def to_forward_curve(self) -> ForwardCurve:
        """The engine's :class:`~app.engine.curves.ForwardCurve` (hours-weighted for power)."""
        spec = PRODUCT_BY_CODE.get(self.product)
        weights = spec.weights if spec is not None else "days"
        return ForwardCurve(self.months, self.prices, product=self.product, weights=weights)


@dataclass(slots=True)
class Changes:
    """What changed since the previous :meth:`MarketState.take_changes`."""

    quotes: set[str] = field(default_factory=set)
    curves: set[str] = field(default_factory=set)
    settlements: set[str] = field(default_factory=set)
    vols: set[str] = field(default_factory=set)
    stale_changed: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.quotes or self.curves or self.settlements or self.vols or self.stale_changed
        )


@dataclass(slots=True)
class FeedStatus:
    """Health of the feed connection, written by the client, read by the status bar."""

    state: str = NOT_CONFIGURED
    url: str = ""
    detail: str = ""
    mode: str = ""
    msgs_per_sec: float = 0.0
    last_tick: float = 0.0  # wall clock of the last tick received, 0 = never
    gaps: int = 0
    resyncs: int = 0
    reconnects: int = 0

    def tick_age(self, now: float | None = None) -> float | None:
        if not self.last_tick:
            return None
        return max(0.0, (time.time() if now is None else now) - self.last_tick)


def _month(text: str) -> np.datetime64:
    return np.datetime64(text, "M")


class MarketState:
    """Latest quotes, live and settlement curves, stale flags and feed status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._quotes: dict[str, Quote] = {}
        self._curves: dict[str, LiveCurve] = {}
        self._settlements: dict[str, LiveCurve] = {}
        self._vols: dict[str, VolUpdate] = {}
        self._stale_streams: set[str] = set()
        self._changes = Changes()
        self._listeners: list[Callable[[Tick | CurveUpdate], None]] = []
        self._status = FeedStatus()

    # ------------------------------------------------------------ writer side (client thread)

    def add_listener(self, fn: Callable[[Tick | CurveUpdate], None]) -> None:
        """Call ``fn(tick_or_curve)`` after each applied tick and curve (writer thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[Tick | CurveUpdate], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def apply_ticks(self, ticks: Iterable[Tick], received: float | None = None) -> None:
        """Apply ticks in order. A ``settle`` tick also becomes the instrument's reference."""
        now = time.time() if received is None else received
        applied: list[Tick] = []
        with self._lock:
            quotes, changed = self._quotes, self._changes.quotes
            for t in ticks:
                q = quotes.get(t.instrument)
                if q is None:
                    q = quotes[t.instrument] = Quote(t.instrument)
                q.bid, q.ask, q.last, q.size, q.ts, q.received = (
                    t.bid,
                    t.ask,
                    t.last,
                    t.size,
                    t.ts,
                    now,
                )
                if t.kind == "settle":
                    q.settle = t.last
                changed.add(t.instrument)
                applied.append(t)
        self._notify(applied)

    def apply_curve(self, update: CurveUpdate) -> None:
        """Replace (``full``) or patch a block of a product's live curve; a settlement curve is
        kept separately as the product's last settlement.

        Raises ValueError for a partial update that does not lie on the curve held.
        """
        prices = np.asarray(update.prices, dtype=float)
        start = _month(update.start)
        with self._lock:
            if update.settle is not None:
                self._settlements[update.product] = LiveCurve(
                    update.product, start, _frozen(prices), update.ts, update.settle
                )
                self._changes.settlements.add(update.product)
            if update.full:
                curve = LiveCurve(update.product, start, _frozen(prices), update.ts, update.settle)
            else:
                held = self._curves.get(update.product)
                if held is None:
                    raise ValueError(
                        f"partial curve update for {update.product} with no curve held"
                    )
                offset = int((start - held.start).astype(int))
                if offset < 0 or offset + prices.size > held.prices.size:
                    raise ValueError(
                        f"partial curve update {update.start}+{prices.size} for {update.product} "
                        f"is outside the curve held"
                    )
                new = held.prices.copy()
                new[offset : offset + prices.size] = prices
                curve = LiveCurve(update.product, held.start, _frozen(new), update.ts, held.settle)
            self._curves[update.product] = curve
            self._changes.curves.add(update.product)
        self._notify([update])

    def apply_vols(self, update: VolUpdate) -> None:
        """Replace a product's implied-vol surface (whole surfaces only)."""
        with self._lock:
            self._vols[update.product] = update
            self._changes.vols.add(update.product)

    def apply_snapshot(self, snap: Snapshot, received: float | None = None) -> None:
        """Replace a stream's state with a snapshot and clear its stale flag.

        The snapshot is the whole stream for this client: quotes of that product the snapshot
        does not hold (e.g. recorded ones of a month no longer quoted) are dropped, so nothing
        old can look live once the stream is fresh again."""
        now = time.time() if received is None else received
        with self._lock:
            held = {t.instrument for t in snap.quotes}
            prefix = snap.stream + ":"
            for name in [n for n in self._quotes if n.startswith(prefix) and n not in held]:
                del self._quotes[name]
                self._changes.quotes.add(name)
            for t in snap.quotes:
                q = self._quotes.get(t.instrument) or Quote(t.instrument)
                q.bid, q.ask, q.last, q.size, q.ts, q.received = (
                    t.bid,
                    t.ask,
                    t.last,
                    t.size,
                    t.ts,
                    now,
                )
                if t.instrument in snap.settles:
                    q.settle = snap.settles[t.instrument]
                self._quotes[t.instrument] = q
                self._changes.quotes.add(t.instrument)
            if snap.curve is not None:
                c = snap.curve
                self._curves[snap.stream] = LiveCurve(
                    snap.stream,
                    _month(c.start),
                    _frozen(np.asarray(c.prices, dtype=float)),
                    c.ts,
                    c.settle,
                )
                self._changes.curves.add(snap.stream)
            if snap.vols is not None:
                self._vols[snap.stream] = snap.vols
                self._changes.vols.add(snap.stream)
            if snap.stream in self._stale_streams:
                self._stale_streams.discard(snap.stream)
                self._changes.stale_changed = True

    def set_stale(self, streams: Iterable[str] | None, stale: bool = True) -> None:
        """Mark streams (``None`` = every stream held) stale or fresh again."""
        with self._lock:
            names = (
                {i.split(":", 1)[0] for i in self._quotes} | set(self._curves)
                if streams is None
                else set(streams)
            )
            before = set(self._stale_streams)
            if stale:
                self._stale_streams |= names
            else:
                self._stale_streams -= names
            if before != self._stale_streams:
                self._changes.stale_changed = True

    def forget(self, instruments: Iterable[str]) -> None:
        """Drop quotes the client unsubscribed from."""
        with self._lock:
            for i in instruments:
                if self._quotes.pop(i, None) is not None:
                    self._changes.quotes.add(i)

    def update_status(self, **fields: Any) -> None:
        """Set feed status fields (client side); flags a change when the state moves."""
        with self._lock:
            old = self._status.state
            for k, v in fields.items():
                setattr(self._status, k, v)
            if self._status.state != old:
                self._changes.stale_changed = True

    def _notify(self, items: list[Any]) -> None:
        if not self._listeners or not items:
            return
        for fn in list(self._listeners):
            for item in items:
                fn(item)

    # ------------------------------------------------------------ reader side (any thread)

    def take_changes(self) -> Changes:
        """Everything that changed since the previous call (then forgotten)."""
        with self._lock:
            out, self._changes = self._changes, Changes()
        return out

    def status(self) -> FeedStatus:
        with self._lock:
            return replace(self._status)

    def is_fresh(self) -> bool:
        """True when the feed is connected and not stale."""
        with self._lock:
            return self._status.state == CONNECTED

    def quote(self, instrument: str) -> Quote | None:
        with self._lock:
            q = self._quotes.get(instrument)
            if q is None:
                return None
            out = replace(q)
            out.stale = self._stream_stale(instrument)
            return out

    def quotes(self, instruments: Iterable[str] | None = None) -> dict[str, Quote]:
        """Copies of the quotes asked for (all when ``None``); unknown ones are left out."""
        with self._lock:
            names = list(self._quotes) if instruments is None else list(instruments)
            out: dict[str, Quote] = {}
            not_live = self._status.state != CONNECTED
            stale_streams = self._stale_streams
            for name in names:
                q = self._quotes.get(name)
                if q is not None:  # direct construction: ~5x cheaper than dataclasses.replace
                    out[name] = Quote(
                        q.instrument,
                        q.bid,
                        q.ask,
                        q.last,
                        q.size,
                        q.ts,
                        q.received,
                        q.settle,
                        not_live or name.split(":", 1)[0] in stale_streams,
                    )
            return out

    def instruments(self) -> list[str]:
        with self._lock:
            return list(self._quotes)

    def products(self) -> list[str]:
        """Products with a live curve."""
        with self._lock:
            return sorted(self._curves)

    def live_curve(self, product: str) -> LiveCurve | None:
        with self._lock:
            return self._curves.get(product)

    def settlement_curve(self, product: str) -> LiveCurve | None:
        with self._lock:
            return self._settlements.get(product)

    def vol_surface(self, product: str) -> VolUpdate | None:
        """The product's implied-vol smiles as last quoted by the feed (``None`` when the feed
        quotes none, e.g. in replay mode)."""
        with self._lock:
            return self._vols.get(product)

    def forward_curve(self, product: str) -> ForwardCurve | None:
        """The live curve as an engine :class:`ForwardCurve`, ``None`` when none arrived."""
        c = self.live_curve(product)
        return None if c is None else c.to_forward_curve()

    def is_stale(self, product: str) -> bool:
        with self._lock:
            return product in self._stale_streams or self._status.state != CONNECTED

    def _stream_stale(self, instrument: str) -> bool:
        return instrument.split(":", 1)[0] in self._stale_streams or self._status.state != CONNECTED

    def digest(self) -> dict[str, Any]:
        """Comparable plain-data view of quotes and curves (tests compare client vs server)."""
        with self._lock:
            return {
                "quotes": {
                    k: (q.bid, q.ask, q.last, q.size, q.ts) for k, q in sorted(self._quotes.items())
                },
                "curves": {
                    k: (str(c.start), tuple(float(x) for x in c.prices))
                    for k, c in sorted(self._curves.items())
                },
            }


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.setflags(write=False)
    return a
