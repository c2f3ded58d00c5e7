"""The one GUI-side reader of the market state: a bounded-rate timer that re-emits what changed.

The feed client writes the :class:`~app.feed.market_state.MarketState` on its own thread as fast
as ticks arrive; the GUI never listens tick by tick. :class:`MarketBridge` runs one QTimer on the
GUI thread (default 15 Hz) that calls :meth:`MarketState.take_changes` and emits one signal per
kind of change, so every panel repaints at most once per frame however fast the feed is.
Nothing else in the GUI polls the state.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from app.feed.market_state import FeedStatus, MarketState

__all__ = ["MarketBridge"]

log = logging.getLogger(__name__)

#: The status is re-emitted at least this often (seconds) so "last tick 3 s ago" stays truthful.
STATUS_PERIOD = 0.5


class MarketBridge(QObject):
    """Coalesces market-state changes into signals at a bounded rate (GUI thread)."""

    sig_quotes = Signal(object)
    """(set[str]) instruments whose quote changed since the previous frame."""
    sig_curves = Signal(object)
    """(set[str]) products whose live curve changed."""
    sig_settlements = Signal(object)
    """(set[str]) products whose settlement curve changed."""
    sig_vols = Signal(object)
    """(set[str]) products whose implied-vol surface changed."""
    sig_stale = Signal()
    """Stale flags of some streams (or the connection state) changed: re-read stale marks."""
    sig_status = Signal(object)
    """(FeedStatus) when the status changes, and at least every ``STATUS_PERIOD`` seconds."""
    sig_frame = Signal(float)
    """(time.monotonic()) emitted last on every timer tick: drives fades and animations."""

    def __init__(self, state: MarketState, hz: float = 15.0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if not hz > 0:
            raise ValueError(f"hz must be positive, not {hz!r}")
        self.state = state
        self.hz = float(hz)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(max(1, round(1000.0 / self.hz)))
        self._timer.timeout.connect(self.refresh)
        self._last_status: FeedStatus | None = None
        self._last_status_at = 0.0
        #: Frames run so far (tests and the benchmark read it).
        self.frames = 0
        #: Slowest frame so far, seconds spent in ``refresh`` including the connected slots.
        self.max_frame_seconds = 0.0

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the timer (idempotent); the first frame runs at once."""
        if not self._timer.isActive():
            self._timer.start()
            QTimer.singleShot(0, self.refresh)

    def stop(self) -> None:
        """Stop the timer (idempotent); pending changes stay in the state for the next start."""
        self._timer.stop()

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    # -- one frame --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Take the state's changes and emit them (also callable directly, e.g. in tests)."""
        t0 = time.perf_counter()
        changes = self.state.take_changes()
        self._emit(self.sig_quotes, changes.quotes)
        self._emit(self.sig_curves, changes.curves)
        self._emit(self.sig_settlements, changes.settlements)
        self._emit(self.sig_vols, changes.vols)
        if changes.stale_changed:
            self._emit(self.sig_stale, None)
        now = time.monotonic()
        status = self.state.status()
        if (
            changes.stale_changed
            or self._last_status is None
            or status.state != self._last_status.state
            or status.detail != self._last_status.detail
            or now - self._last_status_at >= STATUS_PERIOD
        ):
            self._last_status, self._last_status_at = status, now
            self._emit(self.sig_status, status)
        self._emit(self.sig_frame, now)
        self.frames += 1
        self.max_frame_seconds = max(self.max_frame_seconds, time.perf_counter() - t0)

    def _emit(self, signal: Any, payload: Any) -> None:
        """Emit one signal; a failing slot is logged and never stops the other signals."""
        if payload is not None and not payload and isinstance(payload, set):
            return
        try:
            if payload is None:
                signal.emit()
            else:
                signal.emit(payload)
        except Exception:  # a slot raised: the feed display must live on
            log.exception("market bridge: a slot failed")
