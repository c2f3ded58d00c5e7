"""Market GUI benchmarks (``make bench``): GUI-thread load under a ticking feed, memory over a
long replay. Run ``.venv/bin/pytest tests/benchmarks/test_bench_market_gui.py -s -q``.

Each test prints one table (figure, target, PASS/MISS, note). Timing misses never fail the run
(the machine is shared); a feed that delivers nothing does.

**(a) GUI-thread busy fraction** (:func:`test_bench_gui_busy_fraction`). 5,000 instruments
(10 products x 500 months) tick at ``QE_BENCH_GUI_RATE`` ticks/s (default 20,000) from a
background thread that calls :meth:`MarketState.apply_ticks` every 10 ms, as the feed client's
thread does; a :class:`MarketBridge` (15 Hz) drives a :class:`MarketWatchPanel` (900 x 700,
offscreen) showing all 5,000 rows. Method: a zero-work 1 ms ``PreciseTimer`` on the GUI thread
counts how often it fires; with the GUI idle (same process, same ticking thread absent) it fires
``f_idle`` times a second, under load ``f``; the busy fraction is ``1 - f / f_idle``. A 1 ms
timer cannot fire while the thread is busy (bridge frames, model drain, ``dataChanged``, paint,
waiting for the GIL held by the ticking thread), and missed expiries are not queued, so this
counts every millisecond the event loop was not free, whatever took it. A second figure sums
the wall time of the bridge frames alone (``perf_counter`` around ``MarketBridge.refresh``,
which includes the panel's slots but not painting) and, for attribution, the median time of
one synchronous ``viewport().repaint()`` of the visible rows, with and without the sparkline
column. Target: busy < 30 %.
Peers in the same run: the same ticking with the bridge stopped (the floor: the cost of the
ticking thread competing for the GIL, plus the timer itself) and a naive ``QTableWidget`` of 500
rows updated with ``setText`` per tick (3 cells) on the GUI thread at the same rate.

**(b) Memory over a long replay** (:func:`test_bench_replay_memory`). ``python -m app feed
serve --mode replay --speed S`` (the bundled EIA Brent/WTI/Henry Hub series, looping; a child
process as the embedded feed is) feeds a real :class:`FeedClient` writing into a
:class:`MarketState` with a :class:`MarketRecorder` writing to a temporary SQLite store
(``Store.open_file``). RSS of this process (client + state + recorder) and of the server child
are sampled every 10 s for ``BENCH_REPLAY_SECONDS`` (default 600). Printed: the series, growth
from minute 1 to the end, ticks applied per second; PASS when the growth over the last half of
the run is < 5 % (flat memory). Speed: ``ReplaySource.advance`` costs ~0.24 s per 500 replayed
days (~220 ticks a day), so a nominal "full speed" of 2,000 days/s saturates the server's core
by itself; the default ``QE_BENCH_REPLAY_SPEED`` is 500 days/s (~110,000 ticks/s generated,
~25 % of a core), which the server sustains on a shared 2-core machine, and the replay still
loops over its 1,706 trading days (2020-01-02 to 2026-08-18) every ~3.4 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem
from pytestqt.qtbot import QtBot

from app.feed import market_state as ms
from app.feed.client import FeedClient
from app.feed.market_state import MarketState
from app.feed.protocol import Tick
from app.feed.recorder import MarketRecorder
from app.models.market_data import MarketDataRepository
from app.models.store import Store
from app.views.market_bridge import MarketBridge
from app.views.market_watch import C_SPARK, MarketWatchPanel, WatchLists
from tests.feed_helpers import ScriptedSource

ROOT = Path(__file__).resolve().parents[2]
GUI_RATE = float(os.environ.get("QE_BENCH_GUI_RATE", "20000"))
GUI_SECONDS = float(os.environ.get("QE_BENCH_GUI_SECONDS", "10"))
IDLE_SECONDS = 3.0
PRODUCTS, MONTHS = 10, 500  # 5,000 instruments
NAIVE_ROWS = 500
BUSY_TARGET = 0.30
REPLAY_SECONDS = float(os.environ.get("BENCH_REPLAY_SECONDS", "600"))
REPLAY_SPEED = float(os.environ.get("QE_BENCH_REPLAY_SPEED", "500"))
SAMPLE_S = 10.0
FLAT_TARGET = 0.05

Row = tuple[str, str, str, str, str]


def _render(title: str, rows: list[Row]) -> str:
    w = max(len(r[0]) for r in rows) + 2
    head = f"{'Step':<{w}}{'Measured':>16}  {'Target':>12}  {'Result':<6}  Note"
    out = ["", "=" * len(head), title, "=" * len(head), head, "-" * len(head)]
    for name, value, target, verdict, note in rows:
        out.append(f"{name:<{w}}{value:>16}  {target:>12}  {verdict:<6}  {note}".rstrip())
    misses = [r[0].strip() for r in rows if r[3] == "MISS"]
    out.append("-" * len(head))
    out.append("All targets met." if not misses else f"Targets missed: {', '.join(misses)}")
    return "\n".join(out)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size in MiB (``VmRSS`` of ``/proc/<pid>/status``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


# --------------------------------------------------------------------------- (a) GUI busy


class IdleCounter:
    """A zero-work 1 ms PreciseTimer: how often it fires measures how free the loop is."""

    def __init__(self) -> None:
        self.fires = 0
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(1)
        self.timer.timeout.connect(self._fire)

    def _fire(self) -> None:
        self.fires += 1

    def rate(self, qtbot: QtBot, seconds: float) -> float:
        """Fires per second over ``seconds`` of event processing."""
        self.fires = 0
        t0 = time.perf_counter()
        self.timer.start()
        qtbot.wait(int(seconds * 1000))
        self.timer.stop()
        return self.fires / (time.perf_counter() - t0)


class TimedBridge(MarketBridge):
    """MarketBridge summing the wall time of its frames (refresh + the slots it drives)."""

    busy = 0.0

    def refresh(self) -> None:
        t0 = time.perf_counter()
        super().refresh()
        self.busy += time.perf_counter() - t0


class Ticker:
    """Background thread: ``rate`` ticks/s, round robin over ``ids``, every 10 ms, through
    ``sink(list_of_ticks)`` (``MarketState.apply_ticks`` or a Qt signal)."""

    def __init__(self, ids: list[str], rate: float, sink: Callable[[list[Tick]], None]) -> None:
        self.ids, self.rate, self.sink = ids, rate, sink
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-ticker", daemon=True)

    def _run(self) -> None:
        ids, m = self.ids, len(self.ids)
        t0 = time.perf_counter()
        k = 0
        while not self._stop.is_set():
            due = int((time.perf_counter() - t0) * self.rate) - self.sent
            if due > 0:
                now = time.time_ns()
                batch = []
                for j in range(due):
                    px = 50.0 + ((k + j) % 997) * 0.01
                    batch.append(Tick(ids[(k + j) % m], px - 0.01, px + 0.01, px, 1.0, now))
                k = (k + due) % m
                self.sink(batch)
                self.sent += due
            time.sleep(0.01)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class NaiveTable(QObject):
    """Baseline: a QTableWidget updated cell by cell for every tick on the GUI thread."""

    sig_ticks = Signal(object)

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.table = QTableWidget(rows, 4)
        self.rows = rows
        self.row_of: dict[str, int] = {}
        self.items = [[QTableWidgetItem("") for _ in range(4)] for _ in range(rows)]
        for r, cells in enumerate(self.items):
            for c, item in enumerate(cells):
                self.table.setItem(r, c, item)
        self.sig_ticks.connect(self._on_ticks, Qt.ConnectionType.QueuedConnection)

    def _on_ticks(self, ticks: list[Tick]) -> None:
        row_of, items = self.row_of, self.items
        for t in ticks:
            r = row_of.get(t.instrument)
            if r is None:
                r = row_of[t.instrument] = len(row_of) % self.rows
                items[r][0].setText(t.instrument)
            cells = items[r]
            cells[1].setText(f"{t.last:.2f}")
            cells[2].setText(f"{t.bid:.2f}")
            cells[3].setText(f"{t.ask:.2f}")


def _repaint_ms(repaint: Callable[[], None], n: int = 30) -> float:
    """Median wall time of a synchronous ``repaint()`` in ms."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        repaint()
        times.append(time.perf_counter() - t0)
    return 1000.0 * sorted(times)[n // 2]


def test_bench_gui_busy_fraction(qtbot: QtBot, tmp_path: Path) -> None:
    rows: list[Row] = []
    src = ScriptedSource(PRODUCTS, MONTHS, ticks_per_step=0, curve_every=0)
    ids = list(src.ids)
    state = MarketState()
    state.apply_ticks(src.start(time.time_ns()).ticks)
    state.update_status(state=ms.CONNECTED, last_tick=time.time())
    settings = QSettings(str(tmp_path / "workstation.ini"), QSettings.Format.IniFormat)
    settings.setValue(WatchLists.KEY, json.dumps({"Feed": ["TST*:*"]}))
    settings.setValue(WatchLists.CURRENT, "Feed")
    bridge = TimedBridge(state)
    panel = MarketWatchPanel(state, bridge, settings)
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    panel.show()
    assert len(panel.model.instrument_ids) == len(ids)
    idle = IdleCounter()
    qtbot.wait(500)

    f_idle = idle.rate(qtbot, IDLE_SECONDS)
    assert f_idle > 50, f"the 1 ms timer fired only {f_idle:.0f}/s with nothing to do"

    # the floor: ticks flow into the state, nothing on the GUI thread reads them
    with Ticker(ids, GUI_RATE, state.apply_ticks):
        qtbot.wait(500)
        f_floor = idle.rate(qtbot, GUI_SECONDS / 2)
    state.take_changes()

    # the market watch at GUI_RATE
    bridge.start()
    with Ticker(ids, GUI_RATE, state.apply_ticks) as ticker:
        qtbot.wait(1000)
        frames0, bridge.busy = bridge.frames, 0.0
        t0 = time.perf_counter()
        f_watch = idle.rate(qtbot, GUI_SECONDS)
        wall = time.perf_counter() - t0
        sent_rate = ticker.sent / (time.perf_counter() - t0 + 1.0)
        frames = bridge.frames - frames0
        frame_busy = bridge.busy / wall
        slowest = bridge.max_frame_seconds
    bridge.stop()
    assert frames > 0, "the bridge never ran"
    last = ids[(ticker.sent - 1) % len(ids)]
    qtbot.waitUntil(lambda: panel.model.backlog == 0, timeout=10_000)
    bridge.refresh()
    assert panel.model.text(panel.model.row_of(last), 2) != ""
    # attribution: one synchronous repaint of the visible rows, with and without sparklines
    vp = panel.view.viewport()
    paint_ms = _repaint_ms(vp.repaint)
    panel.view.setColumnHidden(C_SPARK, True)
    paint_nospark_ms = _repaint_ms(vp.repaint)
    panel.view.setColumnHidden(C_SPARK, False)
    visible = panel.view.rowAt(vp.height() - 1) - panel.view.rowAt(0) + 1
    panel.hide()

    # naive peer: a QTableWidget updated per tick on the GUI thread (500 rows)
    naive = NaiveTable(NAIVE_ROWS)
    qtbot.addWidget(naive.table)
    naive.table.resize(900, 700)
    naive.table.show()
    qtbot.wait(300)
    with Ticker(ids[:NAIVE_ROWS], GUI_RATE, naive.sig_ticks.emit):
        qtbot.wait(500)
        f_naive = idle.rate(qtbot, GUI_SECONDS / 2)
    naive.table.hide()

    def busy(f: float) -> float:
        return max(0.0, 1.0 - f / f_idle)

    b_watch, b_floor, b_naive = busy(f_watch), busy(f_floor), busy(f_naive)
    rows.append(("-- method", "", "", "", "1 ms zero-work QTimer; busy = 1 - fires/fires_idle"))
    rows.append(("  idle timer fires per s", f"{f_idle:,.0f}/s", "", "", "GUI idle, no ticks"))
    rows.append(("  ticks offered per s", f"{sent_rate:,.0f}/s", "", "", "5,000 instruments"))
    rows.append(
        (
            "  GUI busy, Market Watch 5,000 rows",
            f"{100 * b_watch:.1f} %",
            "< 30 %",
            "PASS" if b_watch < BUSY_TARGET else "MISS",
            f"{frames / wall:.1f} bridge frames/s",
        )
    )
    rows.append(
        (
            "  bridge frames alone (refresh+slots)",
            f"{100 * frame_busy:.1f} %",
            "",
            "",
            f"slowest frame {1000 * slowest:.1f} ms; excludes paint",
        )
    )
    rows.append(
        (
            "  one repaint of the visible rows",
            f"{paint_ms:.1f} ms",
            "",
            "",
            f"{visible} rows x 9 cols; x {frames / wall:.0f}/s = "
            f"{paint_ms * frames / wall / 10:.0f} % of the thread",
        )
    )
    rows.append(
        ("  same, Trend (sparkline) column hidden", f"{paint_nospark_ms:.1f} ms", "", "", "")
    )
    rows.append(("-- peers (same run)", "", "", "", ""))
    rows.append(("  floor: ticking, bridge stopped", f"{100 * b_floor:.1f} %", "", "", "GIL only"))
    rows.append(
        (
            "  naive QTableWidget setText per tick",
            f"{100 * b_naive:.1f} %",
            "",
            "",
            f"{NAIVE_ROWS} rows, same rate",
        )
    )
    ratio = b_naive / b_watch if b_watch > 0 else float("inf")
    rows.append(("  naive / Market Watch", f"{ratio:.1f} x", "", "", "busy-fraction ratio"))
    print(_render("Market GUI: GUI-thread busy fraction with 5,000 ticking instruments", rows))


# --------------------------------------------------------------------------- (b) replay memory


@contextmanager
def _replay_server(speed: float) -> Iterator[tuple[str, int]]:
    """``python -m app feed serve --mode replay`` as a child; yields (url, pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "feed", "serve", "--mode", "replay", "--speed",
         str(speed), "--exit-on-stdin-eof"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        yield line.split()[1], proc.pid
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_bench_replay_memory(tmp_path: Path) -> None:
    rows: list[Row] = []
    store = Store.open_file(tmp_path / "bench.db")
    state = MarketState()
    recorder = MarketRecorder(state, MarketDataRepository(store))
    with _replay_server(REPLAY_SPEED) as (url, pid):
        client = FeedClient(url, state, heartbeat_timeout=5.0)
        recorder.start()
        client.start()
        try:
            deadline = time.monotonic() + 60
            while client.msgs_applied < 1000:
                assert time.monotonic() < deadline, "the replay delivered nothing"
                time.sleep(0.1)
            t0 = time.monotonic()
            n0 = client.msgs_applied
            cpu0, srv_cpu0 = cpu_seconds(), cpu_seconds(pid)
            series: list[tuple[float, float, float, int]] = []  # (s, client MB, server MB, msgs)
            while True:
                el = time.monotonic() - t0
                series.append((el, rss_mb(), rss_mb(pid), client.msgs_applied - n0))
                if el >= REPLAY_SECONDS:
                    break
                time.sleep(max(0.0, min(SAMPLE_S * len(series), REPLAY_SECONDS) - el))
            status = state.status()
            cpu = (cpu_seconds() - cpu0) / (time.monotonic() - t0)
            srv_cpu = (cpu_seconds(pid) - srv_cpu0) / (time.monotonic() - t0)
        finally:
            client.stop()
            recorder.stop()
    store_mb = (tmp_path / "bench.db").stat().st_size / 2**20
    store.close()
    assert series[-1][3] > 0
    elapsed = series[-1][0]
    rate = series[-1][3] / elapsed

    def at(t: float) -> tuple[float, float, float, int]:
        return min(series, key=lambda s: abs(s[0] - t))

    m1, mid, end = at(60.0), at(elapsed / 2), series[-1]
    growth_m1 = end[1] - m1[1]
    growth_half = (end[1] - mid[1]) / mid[1]
    srv_half = (end[2] - mid[2]) / mid[2]
    print("\nRSS every 10 s (s: client MB / server MB):")
    print(
        "  " + ", ".join(f"{s:.0f}: {c:.1f}/{v:.1f}" for s, c, v, _ in series),
    )
    rows.append(
        ("-- replay", "", "", "", f"speed {REPLAY_SPEED:g} days/s, {elapsed:.0f} s, looping")
    )
    rows.append(("  ticks applied per s", f"{rate:,.0f}/s", "", "", f"feed {status.state}"))
    rows.append(
        (
            "  CPU: client process / server child",
            f"{100 * cpu:.0f} % / {100 * srv_cpu:.0f} %",
            "",
            "",
            "of one core (the server conflates 112 instruments)",
        )
    )
    rows.append(("  client RSS start -> end", f"{series[0][1]:.1f}->{end[1]:.1f}", "", "", "MiB"))
    rows.append(("  client growth, minute 1 -> end", f"{growth_m1:+.1f} MB", "", "", ""))
    rows.append(
        (
            "  client growth over last half",
            f"{100 * growth_half:+.2f} %",
            "< 5 %",
            "PASS" if growth_half < FLAT_TARGET else "MISS",
            f"{mid[1]:.1f} -> {end[1]:.1f} MiB",
        )
    )
    rows.append(
        (
            "  server RSS, last half",
            f"{100 * srv_half:+.2f} %",
            "< 5 %",
            "PASS" if srv_half < FLAT_TARGET else "MISS",
            f"{mid[2]:.1f} -> {end[2]:.1f} MiB (child process)",
        )
    )
    stats = recorder.stats()
    rows.append(
        (
            "  recorder rows written",
            f"{stats['written']:,}",
            "",
            "",
            f"pending {stats['pending']}, dropped {stats['dropped']}, store {store_mb:.1f} MiB",
        )
    )
    rows.append(("  gaps / reconnects", f"{client.gaps} / {client.reconnects}", "", "", ""))
    print(_render("Market GUI: memory over a long replay (server child -> client)", rows))
