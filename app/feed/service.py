"""Market-data service: the one object the workstation holds for live prices.

It owns the :class:`~app.feed.market_state.MarketState`, the recorder that persists history,
the websocket client, and — when no remote feed is configured — the embedded feed server child
process. Start-up never blocks the caller: the last recorded settlement curves and quotes are
loaded first (shown stale, so a trader sees yesterday's marks immediately and never mistakes
them for live), then the server and client start on a background thread.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path

import numpy as np

from app.feed import market_state as ms
from app.feed.embedded import EmbeddedFeed, EmbeddedFeedError
from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, Tick
from app.feed.recorder import MarketRecorder
from app.models.market_data import MarketDataRepository
from app.models.store import Store

__all__ = ["MarketDataService"]

log = logging.getLogger(__name__)


class MarketDataService:
    """Live prices for the workstation: state + recorder + client (+ embedded server)."""

    def __init__(
        self,
        store: Store,
        log_dir: Path,
        *,
        url: str | None = None,
        token: str | None = None,
        embedded: bool = True,
        mode: str = "simulate",
        speed: float | None = None,
        patterns: list[str] | None = None,
    ) -> None:
        self.state = MarketState()
        self.repo = MarketDataRepository(store)
        self.recorder = MarketRecorder(self.state, self.repo, source=url or f"embedded {mode}")
        self.url = url
        self.token = token
        self.embedded = (
            EmbeddedFeed(log_dir, mode=mode, speed=speed) if url is None and embedded else None
        )
        self.patterns = patterns or ["*"]
        self.client: object | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    def load_history(self) -> int:
        """Put the last recorded settlement curves and quotes into the state, marked stale."""
        n = 0
        settles = self.repo.latest_settles()
        for curve in self.repo.latest_settlement_curves().values():
            self.state.apply_curve(
                CurveUpdate(
                    curve.product,
                    curve.start,
                    list(curve.prices),
                    curve.ts,
                    True,
                    curve.settle_date.isoformat(),
                )
            )
            n += 1
        ticks = []
        for row in self.repo.latest_ticks():
            ticks.append(
                Tick(row.instrument, row.bid, row.ask, row.last, row.size, row.ts, "trade")
            )
        if ticks:
            # Reference prices first (a settle tick also sets last), then the latest ticks.
            settle_ticks = [
                Tick(i, None, None, p, 0.0, 0, "settle") for i, p in settles.items() if i
            ]
            self.state.apply_ticks(settle_ticks, received=0.0)
            self.state.apply_ticks(ticks, received=0.0)
            n += len(ticks)
        self.state.set_stale(None)
        return n

    def start(self) -> None:
        """Return at once; on a background thread load the recorded history, start recording,
        then start the embedded server (if any) and connect."""
        if self.url is None and self.embedded is None:
            self.state.update_status(
                state=ms.NOT_CONFIGURED, detail="no price feed: recorded settlements only"
            )
        else:
            self.state.update_status(
                state=ms.CONNECTING,
                url=self.url or "embedded",
                detail="starting the embedded feed server" if self.embedded else "connecting",
            )
        self._thread = threading.Thread(target=self._run, name="market-data-start", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            loaded = self.load_history()
            if loaded:
                log.info("Loaded %d recorded curves/quotes (stale until the feed is live)", loaded)
        except Exception:
            log.exception("Could not load recorded market data")
        if (self.url is None and self.embedded is None) or self._stopping.is_set():
            return
        if self.embedded is not None and self.embedded.mode == "replay":
            # A replay's history is its file: recording it again would file old settlements
            # under today's clock (and a looping replay would record the same days again).
            log.info("Replay mode: replayed prices are not recorded to the local store")
        else:
            self.recorder.start()
        self._connect()

    def _connect(self) -> None:
        url, token = self.url, self.token
        if self.embedded is not None:
            try:
                url = self.embedded.start()
            except EmbeddedFeedError as exc:
                log.error("%s", exc)
                self.state.update_status(state=ms.DISCONNECTED, detail=str(exc))
                return
            token = self.embedded.token
            if self._stopping.is_set():
                self.embedded.stop()
                return
        assert url is not None
        from app.feed.client import FeedClient

        client = FeedClient(url, self.state, token=token, patterns=self.patterns)
        self.client = client
        if not self._stopping.is_set():
            client.start()

    def stop(self) -> None:
        """Disconnect, stop the embedded server and flush the recorder (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=70)
            self._thread = None
        client = self.client
        self.client = None
        if client is not None:
            client.stop()  # type: ignore[attr-defined]
        if self.embedded is not None:
            self.embedded.stop()
        self.recorder.stop()
        self.state.update_status(state=ms.DISCONNECTED, detail="stopped")

    # ------------------------------------------------------------------ reads for the panels

    def history(self, instrument: str) -> tuple[np.ndarray, np.ndarray]:
        """Recorded ``(ts_ns, last)`` of an instrument (opens its own session; any thread)."""
        return self.repo.tick_history(instrument)

    def curve_at(self, product: str, day: dt.date) -> tuple[np.ndarray, np.ndarray] | None:
        """The settlement curve of ``product`` on or before ``day`` as ``(months, prices)``."""
        c = self.repo.settlement_curve(product, day)
        if c is None:
            return None
        return c.months, np.asarray(c.prices, dtype=float)
