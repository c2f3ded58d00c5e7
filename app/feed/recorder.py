"""Recorder: persists feed history to the local store so it survives restarts.

What is kept (documented in docs/feed.md):

* every end-of-day ``settle`` tick and every settlement curve, forever;
* intraday ``trade`` ticks *sampled*: the first tick of each instrument in every
  ``sample_seconds`` window (default 60 s: ~460 instruments give at most ~660,000 rows a day
  instead of tens of millions), deleted after ``retain_days`` (default 30).

The recorder listens to the :class:`~app.feed.market_state.MarketState` on the client's thread
(cheap dictionary work only) and writes in batches from its own thread every
``flush_seconds``. If the store refuses a write (disk full, locked) the error is logged, the
batch is kept and retried, and pending rows stay bounded (the oldest samples are dropped first,
settlements last) so a broken disk never grows memory without limit.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, Tick
from app.models.market_data import MarketDataRepository, TickRow

__all__ = ["MarketRecorder"]

log = logging.getLogger(__name__)


class MarketRecorder:
    """Write sampled ticks, settlements and settlement curves of a market state to a store."""

    def __init__(
        self,
        state: MarketState,
        repo: MarketDataRepository,
        *,
        sample_seconds: float = 60.0,
        flush_seconds: float = 1.0,
        retain_days: float = 30.0,
        max_pending: int = 200_000,
        source: str = "feed",
    ) -> None:
        self.state = state
        self.repo = repo
        self.sample_ns = int(sample_seconds * 1e9)
        self.flush_seconds = flush_seconds
        self.retain_ns = int(retain_days * 86400 * 1e9)
        self.max_pending = max_pending
        self.source = source
        self._lock = threading.Lock()
        self._samples: dict[str, TickRow] = {}
        self._settles: list[TickRow] = []
        self._curves: dict[tuple[str, str], CurveUpdate] = {}
        self._last_sample: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self.written = 0
        self.dropped = 0
        self.errors = 0

    # ------------------------------------------------------------ listener (client thread)

    def on_event(self, item: Tick | CurveUpdate) -> None:
        """MarketState listener: remember what to write (no I/O here)."""
        if isinstance(item, Tick):
            if item.kind == "settle":
                row = TickRow(
                    item.instrument, item.ts, "settle", item.bid, item.ask, item.last, item.size
                )
                with self._lock:
                    self._settles.append(row)
                    self._bound()
                return
            last = self._last_sample.get(item.instrument)
            if last is not None and item.ts - last < self.sample_ns:
                return
            self._last_sample[item.instrument] = item.ts
            row = TickRow(
                item.instrument, item.ts, "trade", item.bid, item.ask, item.last, item.size
            )
            with self._lock:
                self._samples[item.instrument + "@" + str(item.ts)] = row
                self._bound()
        elif item.settle is not None and item.full:
            with self._lock:
                self._curves[(item.product, item.settle)] = item

    def _bound(self) -> None:
        # Called with the lock held. Oldest samples go first; settlements only if still too many.
        excess = len(self._samples) + len(self._settles) - self.max_pending
        while excess > 0 and self._samples:
            self._samples.pop(next(iter(self._samples)))
            self.dropped += 1
            excess -= 1
        if excess > 0:
            del self._settles[:excess]
            self.dropped += excess

    # ------------------------------------------------------------ writer

    def start(self) -> None:
        """Listen to the state and start the writer thread."""
        if self._thread is not None:
            return
        self.state.add_listener(self.on_event)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="market-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening, write what is pending, stop the writer thread."""
        self.state.remove_listener(self.on_event)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
            if time.monotonic() - self._last_prune > 3600:
                self._last_prune = time.monotonic()
                self._prune()

    def _prune(self) -> None:
        try:
            n = self.repo.prune_ticks(time.time_ns() - self.retain_ns)
            if n:
                log.info("Pruned %d intraday ticks older than the retention window", n)
        except Exception:
            log.exception("Pruning old ticks failed")

    def flush(self) -> int:
        """Write everything pending now; returns rows written (ticks + curves)."""
        with self._lock:
            rows = list(self._samples.values()) + self._settles
            curves = list(self._curves.values())
            self._samples, self._settles, self._curves = {}, [], {}
        if not rows and not curves:
            return 0
        written = 0
        try:
            written += self.repo.record_ticks(rows)
            rows = []
            for c in curves:
                self.repo.save_settlement(
                    c.product,
                    dt.date.fromisoformat(c.settle or ""),
                    c.start,
                    c.prices,
                    c.ts,
                    self.source,
                )
                written += 1
        except Exception as exc:
            self.errors += 1
            log.error("Recording market data failed (will retry): %s", exc)
            self._requeue(rows, curves)
            return written
        self.written += written
        return written

    def _requeue(self, rows: list[TickRow], curves: list[CurveUpdate]) -> None:
        with self._lock:
            for r in rows:
                if r.kind == "settle":
                    self._settles.append(r)
                else:
                    self._samples.setdefault(r.instrument + "@" + str(r.ts), r)
            for c in curves:
                self._curves.setdefault((c.product, c.settle or ""), c)
            self._bound()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._samples) + len(self._settles) + len(self._curves)
        return {
            "written": self.written,
            "pending": pending,
            "dropped": self.dropped,
            "errors": self.errors,
        }
