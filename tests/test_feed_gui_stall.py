"""End to end: a 30-second consumer stall under a 100,000-tick burst, with the GUI watching.

A real :class:`FeedServer` (in a child process, as the workstation runs its embedded feed:
:mod:`tests.feed_child`, a :class:`FastSource` over 10 x 500 = 5,000 instruments) feeds a real :class:`FeedClient` writing into a
:class:`MarketState`; a :class:`MarketBridge` (15 Hz) drives a :class:`MarketWatchPanel` that
shows all 5,000 instruments (QSettings in ``tmp_path``, offscreen platform). A 10 ms QTimer on the
GUI thread measures its own lateness (the event-loop lag) for the whole run.

**How the consumer is stalled.** The client stops *reading its socket* for 30 s:
``transport.pause_reading()`` is called on the client's own asyncio loop (and re-asserted every
50 ms, since the websockets library resumes reading on its own when its small frame queue
drains). Blocking the client's thread in a MarketState listener was not used, because the
staleness watchdog runs on that same loop: with the thread blocked nothing could ever notice the
silence, so "stale after ``heartbeat_timeout``" could not be observed. With reading paused the
loop stays alive, the watchdog sees no data, and the kernel buffers fill so the server's sender
blocks and its per-connection buffer conflates the burst, exactly as for a slow consumer.

The server is built with ``slow_consumer_timeout=120`` (the default 30 s would close the
connection at the end of a 30-second stall) and the client with ``ping_interval=None`` (its
own pong could not be read while paused, so its keepalive would drop the connection after 10 s).
The server's websocket keepalive (20 s ping, 20 s timeout, not configurable) may still close the
connection depending on where its ping falls in the stall; both outcomes are legitimate and the
assertions hold for both: during the stall the client cannot tell (it reads nothing), and
afterwards it either carries on or reconnects and heals from snapshots.

Asserted:

* RSS (``VmRSS`` of ``/proc/self/status``: client, server and GUI share this process) grows by
  less than 50 MB from just before the stall to the highest sample during stall + burst;
* the 10 ms heartbeat is never more than 100 ms late, from before the stall until healed;
* after ``heartbeat_timeout`` the status is ``stale``, the MarketState reports every quote
  stale, and from the first bridge frame after that every row of the watch is shown stale
  (grey italic) — no bridge frame during the stall shows a fresh row once the feed is stale;
* after the stall the client's digest equals the server's ``book_digest`` and the watch shows
  the server's final last prices.

The GUI thread never sleeps: waits use ``qtbot.waitUntil`` (which keeps processing events),
digests are compared on a worker thread (after the resumed backlog has drained) so their cost
does not count as GUI lag, and the per-frame audit is vectorised.

**Garbage collection.** Before measuring, the test collects, then freezes
(``gc.freeze()``) the heap built so far (Qt, numpy, the 5,000-row model, pytest). Without it,
an automatic generation-2 collection triggered by the feed's allocations (after the stall,
when the backlog is parsed) scans that whole heap and holds the GIL for 70-90 ms on this
machine, which alone nearly uses up the 100 ms bound. The workstation has the same heap and
the same allocation pattern and does the same once started (``gc.freeze()`` just before
``app.exec()``, and a 1 ms GIL switch interval so the GUI thread gets the interpreter back
quickly after a burst): the test does what the app does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from pytestqt.qtbot import QtBot

from app.feed import market_state as ms
from app.feed.client import FeedClient
from app.feed.market_state import MarketState
from app.views.market_bridge import MarketBridge
from app.views.market_watch import C_LAST, MarketWatchPanel, WatchLists
from tests.feed_child import ChildFeed
from tests.feed_helpers import FastSource

PRODUCTS, MONTHS = 10, 500  # 5,000 instruments
STEADY_RATE = 5_000.0  # ticks/s before and after the burst
BURST_RATE = 25_000.0  # ticks/s during the burst
BURST_TICKS = 100_000
STALL_S = 30.0
HEARTBEAT_MS = 10
MAX_LAG_MS = 100.0
MAX_RSS_GROWTH_MB = 50.0
HB_TIMEOUT = 3.0  # the client's default heartbeat_timeout


def rss_mb() -> float:
    """Resident set size of this process in MiB (``VmRSS`` from ``/proc/self/status``)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


class LagMeter:
    """A 10 ms PreciseTimer on the GUI thread; lag = interval between fires minus 10 ms.

    Each fire also samples RSS (about 20 us) while ``sample_rss`` is set.
    """

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._fire)
        self.last = 0.0
        self.max_lag_ms = 0.0
        self.worst_at = 0.0
        self.fires = 0
        self.sample_rss = False
        self.rss_peak = 0.0
        self.late: list[tuple[float, float]] = []  # (monotonic, lag ms) of beats > 30 ms late

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _fire(self) -> None:
        now = time.perf_counter()
        lag = (now - self.last) * 1000.0 - HEARTBEAT_MS
        if lag > self.max_lag_ms:
            self.max_lag_ms, self.worst_at = lag, now
        if lag > 30.0:
            self.late.append((time.monotonic(), lag))
        self.last = now
        self.fires += 1
        if self.sample_rss and self.fires % 10 == 0:
            self.rss_peak = max(self.rss_peak, rss_mb())


class FrameAudit:
    """Connected last to ``sig_frame``: after every bridge frame, counts the rows shown fresh
    (neither grey nor italic) while the MarketState says the feed is not connected."""

    def __init__(self, panel: MarketWatchPanel, state: MarketState) -> None:
        self.panel, self.state = panel, state
        ids = panel.model.instrument_ids
        self.rows = np.array([panel.model.row_of(i) for i in ids], dtype=np.int64)
        self.recording = False
        self.stale_since: float | None = None
        self.frames: list[tuple[float, str, int]] = []  # (monotonic, status, rows shown fresh)

    def on_frame(self, now: float) -> None:
        if not self.recording:
            return
        status = self.state.status().state
        if status != ms.CONNECTED and self.stale_since is None:
            self.stale_since = now
        model = self.panel.model
        # what model.is_stale(row) says for every row, vectorised (the audit must not load
        # the GUI thread it measures): shown fresh = not stale and the feed shown live
        fresh = int((~model._stale[self.rows]).sum()) if model._feed_ok else 0
        self.frames.append((now, status, fresh))


def _digests_equal(srv: ChildFeed, state: MarketState, ids: list[str]) -> bool:
    """Client digest == server book digest for the subscribed instruments (the server's comes
    through JSON from the child, so the client's is compared in the same JSON form)."""
    server = srv.book_digest(ids)
    client = json.loads(json.dumps(state.digest()))
    return bool(client["quotes"] == server["quotes"] and client["curves"] == server["curves"])


@pytest.mark.timing
def test_consumer_stall_with_burst_keeps_gui_live_memory_bounded_and_heals(
    qtbot: QtBot, tmp_path: Path
) -> None:
    ids = list(FastSource(STEADY_RATE, PRODUCTS, MONTHS).src.ids)
    assert len(ids) == 5_000
    srv = ChildFeed(STEADY_RATE, PRODUCTS, MONTHS)  # a child process, as in the workstation
    state = MarketState()
    client = FeedClient(
        srv.url, state, patterns=["TST*:*"], heartbeat_timeout=HB_TIMEOUT, ping_interval=None
    )
    bridge = MarketBridge(state)
    meter = LagMeter()
    released = threading.Event()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.001)  # as the workstation does at start-up (app.views.application)
    try:
        client.start()
        qtbot.waitUntil(lambda: len(state.instruments()) == len(ids), timeout=30_000)
        qtbot.waitUntil(lambda: state.status().state == ms.CONNECTED, timeout=30_000)

        settings = QSettings(str(tmp_path / "workstation.ini"), QSettings.Format.IniFormat)
        settings.setValue(WatchLists.KEY, json.dumps({"Feed": ["TST*:*"]}))
        settings.setValue(WatchLists.CURRENT, "Feed")
        panel = MarketWatchPanel(state, bridge, settings)
        qtbot.addWidget(panel)
        panel.resize(900, 700)
        panel.show()
        assert sorted(panel.model.instrument_ids) == sorted(ids)
        audit = FrameAudit(panel, state)
        bridge.sig_frame.connect(audit.on_frame)
        bridge.start()

        # steady ticking (the child ticks from the start); let the GUI settle, then measure
        qtbot.waitUntil(lambda: client.msgs_applied > 20_000, timeout=60_000)
        qtbot.wait(1_000)
        gc.collect()  # before the lag meter starts: a full collection is a test artefact
        gc.freeze()  # what the workstation must do once started (see the module docstring)
        meter.start()
        qtbot.wait(1_000)
        assert state.status().state == ms.CONNECTED

        # ---------------------------------------------------------------- stall + burst
        rss0 = rss_mb()
        meter.rss_peak = rss0
        meter.sample_rss = True
        loop = client._loop
        assert loop is not None and client._ws is not None

        async def hold_reading() -> None:
            ws = client._ws
            assert ws is not None
            transport = ws.transport
            while not released.is_set():
                transport.pause_reading()  # websockets may resume it when its queue drains
                await asyncio.sleep(0.05)
            if not transport.is_closing():
                transport.resume_reading()

        stall_start = time.monotonic()
        holder = asyncio.run_coroutine_threadsafe(hold_reading(), loop)
        audit.recording = True
        emitted0 = srv.emitted()
        srv.ask(f"rate {BURST_RATE}")
        qtbot.waitUntil(lambda: srv.emitted() - emitted0 >= BURST_TICKS, timeout=60_000)
        srv.ask(f"rate {STEADY_RATE}")
        burst = srv.emitted() - emitted0

        # stale after heartbeat_timeout: status, every quote, every row on screen
        qtbot.waitUntil(lambda: state.status().state == ms.STALE, timeout=20_000)
        stale_at = time.monotonic()
        assert stale_at - stall_start >= HB_TIMEOUT - 0.5
        quotes = state.quotes(ids)
        assert len(quotes) == len(ids) and all(q.stale for q in quotes.values())
        qtbot.waitUntil(lambda: bool(audit.frames) and audit.frames[-1][2] == 0, timeout=5_000)
        sample = panel.model.row_of(ids[123])
        assert panel.model.foreground(sample, C_LAST) is not None
        assert panel.model.font_kind(sample) != 0  # italic

        remaining = STALL_S - (time.monotonic() - stall_start)
        if remaining > 0:
            qtbot.wait(int(remaining * 1000))
        assert state.status().state == ms.STALE, "the client noticed nothing while paused"
        stall_end = time.monotonic()
        rss_peak = max(meter.rss_peak, rss_mb())
        meter.sample_rss = False
        released.set()
        qtbot.waitUntil(holder.done, timeout=10_000)  # never block the GUI thread on it
        holder.result()

        # ---------------------------------------------------------------- heal
        srv.ask("pause")  # freeze the book so both sides can be compared

        healed = threading.Event()

        def compare() -> None:
            # Both digests lock and copy 5,000 quotes (the MarketState one under the lock the
            # bridge also takes): let the resumed backlog drain first, then poll gently, so
            # the test's own checking does not show up as GUI lag.
            time.sleep(3.0)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not healed.is_set():
                if state.status().state == ms.CONNECTED and _digests_equal(srv, state, ids):
                    healed.set()
                    return
                time.sleep(0.5)

        worker = threading.Thread(target=compare, daemon=True)
        worker.start()
        qtbot.waitUntil(healed.is_set, timeout=100_000)
        worker.join(5)
        qtbot.wait(1_000)  # a few bridge frames: the watch drains what changed
        qtbot.waitUntil(lambda: panel.model.backlog == 0, timeout=10_000)
        meter.stop()
        audit.recording = False

        # ---------------------------------------------------------------- assertions
        book = srv.book_digest(ids)["quotes"]
        for inst in ids[::97]:
            row = panel.model.row_of(inst)
            assert float(panel.model._last[row]) == book[inst][2], inst
            assert not panel.model.is_stale(row)
        growth = rss_peak - rss0
        print(
            f"\nstall {stall_end - stall_start:.1f} s, burst {burst:,} ticks, stale after "
            f"{stale_at - stall_start:.1f} s, RSS {rss0:.0f} -> peak {rss_peak:.0f} MB "
            f"(+{growth:.1f}), max GUI lag {meter.max_lag_ms:.1f} ms over {meter.fires} beats, "
            f"reconnects {client.reconnects}, gaps {client.gaps}"
        )
        late = ", ".join(f"{t - stall_start:+.2f}s:{lag:.0f}ms" for t, lag in meter.late[:20])
        print(f"beats > 30 ms late (time from stall start): {late or 'none'}")
        assert burst >= BURST_TICKS
        assert growth < MAX_RSS_GROWTH_MB, f"RSS grew {growth:.1f} MB during the stall"
        assert audit.stale_since is not None
        grace = 2.0 / bridge.hz  # the display follows the state within one frame
        shown_fresh = [
            f for f in audit.frames if stale_at + grace <= f[0] <= stall_end and f[2] > 0
        ]
        assert not shown_fresh, f"rows shown fresh while the feed was stale: {shown_fresh[:3]}"
        # last, so that a miss on the lag bound never hides the other checks
        assert meter.max_lag_ms < MAX_LAG_MS, f"GUI heartbeat {meter.max_lag_ms:.1f} ms late"
    finally:
        sys.setswitchinterval(switch)
        gc.unfreeze()
        released.set()
        meter.stop()
        bridge.stop()
        client.stop()
        srv.stop()
