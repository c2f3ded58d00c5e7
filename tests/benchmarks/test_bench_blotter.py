"""Blotter benchmark: a million trades in the QTableView blotter vs a QTableWidget blotter.

Run with ``make bench``. Prints one table with every figure, its target and PASS/MISS. Timing
misses never fail the run (machines are noisy); wrong results do (row counts, sort order,
selection surviving an update burst).

The 1,000,000-trade store is built once with ``seed_demo`` and cached in ``.bench/`` (gitignored)
under a key made of the row count and a hash of the files that decide what is on disk
(``app/models/{entities,enums,types,demo,lei}.py`` and the migrations). Each run works on a copy of
the cached file, so the amendments written by the burst never accumulate in the cache. When
``seed_demo`` would take longer than ``SEED_BUDGET_S`` it is stopped and the remaining rows are
copied from the seeded ones in SQL (new UUIDs, prices varied by up to +/-20 %).

Environment: ``QE_BENCH_ROWS`` (default 1,000,000) for a quicker run on a smaller store;
``QE_BENCH_SEED_BUDGET_S`` (default 180).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import os
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEventLoop, QItemSelectionModel, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMainWindow, QTableView, QTableWidget, QTableWidgetItem
from pytestqt.qtbot import QtBot

from app.models.demo import seed_demo
from app.models.entities import Trade
from app.models.repository import TradeRepository
from app.models.store import Store
from app.models.types import PRICE_PLACES
from app.views.blotter import BlotterPanel
from app.views.blotter_model import COLUMN_INDEX, COLUMNS, BlotterModel
from app.views.jobs import JobRunner

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / ".bench"
ROWS = int(os.environ.get("QE_BENCH_ROWS", "1000000"))
SEED_CHUNK = 50_000
SEED_BUDGET_S = float(os.environ.get("QE_BENCH_SEED_BUDGET_S", "180"))
FIRST_CHUNK_ROWS = 20_000  # as app.views.main_window.FIRST_CHUNK_ROWS
CHUNK_ROWS = 200_000  # as app.views.main_window.CHUNK_ROWS
BURST = min(1_000, ROWS // 10)
WIDGET_ROWS = min(100_000, ROWS)
TEXT_NEEDLE = "gulf"  # "Gulf Horizon Petroleum DMCC", one of the 12 demo counterparties
#: Bump when the way the cached store is built changes.
BENCH_FORMAT = 1
#: Files whose content decides what the cached store holds.
DATA_FILES = ("entities.py", "enums.py", "types.py", "demo.py", "lei.py")

PRICE = COLUMN_INDEX["price"]
DESC = Qt.SortOrder.DescendingOrder
GB = 1024**3


# -- results table ----------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    value: float | None
    unit: str  # "s" | "MB" | "x" | "" (free text in note)
    target: float | None = None  # value must be below
    note: str = ""


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, name: str, value: float | None, unit: str = "s", target: float | None = None,
            note: str = "") -> None:  # fmt: skip
        self.rows.append(Row(name, value, unit, target, note))

    def section(self, title: str) -> None:
        self.rows.append(Row(f"-- {title}", None, "", None))

    @staticmethod
    def _fmt(v: float | None, unit: str) -> str:
        if v is None:
            return ""
        if unit == "s":
            return f"{v * 1000:,.1f} ms" if v < 1 else f"{v:,.2f} s"
        if unit == "MB":
            return f"{v:,.0f} MB"
        if unit == "x":
            return f"{v:,.1f} x"
        if unit == "us":
            return f"{v:,.2f} us"
        if unit == "B":
            return f"{v:,.0f} B"
        return f"{v:,.0f}"

    def render(self, title: str) -> str:
        w = max(len(r.name) for r in self.rows) + 2
        head = f"{'Step':<{w}}{'Measured':>13}  {'Target':>10}  {'Result':<6}  Note"
        out = ["", "=" * len(head), title, "=" * len(head), head, "-" * len(head)]
        for r in self.rows:
            if r.name.startswith("-- "):
                out.append(r.name)
                continue
            target = f"< {self._fmt(r.target, r.unit)}" if r.target is not None else ""
            verdict = ""
            if r.target is not None and r.value is not None:
                verdict = "PASS" if r.value < r.target else "MISS"
            out.append(f"{r.name:<{w}}{self._fmt(r.value, r.unit):>13}  {target:>10}  "
                       f"{verdict:<6}  {r.note}".rstrip())  # fmt: skip
        misses = [r.name.strip() for r in self.rows if r.target is not None and r.value is not None
                  and r.value >= r.target]  # fmt: skip
        out.append("-" * len(head))
        out.append("All targets met." if not misses else f"Targets missed: {', '.join(misses)}")
        return "\n".join(out)


# -- memory ------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return _status_kb("VmRSS") / 1024


def hwm_mb() -> float:
    return _status_kb("VmHWM") / 1024


def reset_hwm() -> None:
    with contextlib.suppress(OSError):  # Linux >= 4.0: "5" resets this process's VmHWM
        Path("/proc/self/clear_refs").write_text("5")


def trim() -> None:
    """Collect garbage and hand freed heap back to the OS, so RSS deltas mean something."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# -- the cached million-trade store ------------------------------------------------------------
def _data_key(rows: int) -> str:
    h = hashlib.sha256(f"rows={rows};format={BENCH_FORMAT}".encode())
    models = ROOT / "app" / "models"
    files = [models / f for f in DATA_FILES] + sorted((models / "migrations").rglob("*.py"))
    for p in files:
        h.update(p.relative_to(ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _top_up(store: Store, missing: int) -> None:
    """Copy already-seeded trades (new UUIDs, prices varied) until ``missing`` rows are added."""
    cols = [c.name for c in Trade.__table__.columns if c.name != "id"]
    exprs = {
        "trade_uuid": "lower(hex(randomblob(16)))",
        # +/-20 %, rounded to 4 decimals (prices are stored * 10**6)
        "price": "CAST(price * (0.8 + (abs(random()) % 400001) / 1000000.0) / 100 AS INTEGER) * 100",
    }
    select_list = ", ".join(exprs.get(c, c) for c in cols)
    with store.engine.begin() as conn:
        while missing > 0:
            have = conn.exec_driver_sql("SELECT count(*) FROM trade").scalar_one()
            n = min(missing, int(have))
            conn.exec_driver_sql(
                f"INSERT INTO trade ({', '.join(cols)}) SELECT {select_list} FROM trade "
                f"ORDER BY id LIMIT {n}"
            )
            missing -= n


def bench_store(rows: int = ROWS) -> tuple[Path, str]:
    """Path of the cached store with ``rows`` demo trades (built if missing) and how it was made."""
    path = BENCH_DIR / f"blotter-{rows}-{_data_key(rows)}.db"
    if path.exists():
        return path, "cached"
    BENCH_DIR.mkdir(exist_ok=True)
    for old in BENCH_DIR.glob(f"blotter-{rows}-*.db*"):  # stale builds of this size
        old.unlink()
    tmp = BENCH_DIR / f"building-{rows}.db"
    _remove_db(tmp)
    t0 = time.perf_counter()
    done = 0.0

    def progress(f: float) -> None:
        nonlocal done
        done = f
        print(f"  seeding: {f * rows:>9,.0f} trades, {time.perf_counter() - t0:5.1f} s", flush=True)

    def over_budget() -> bool:  # projected seeding time above the budget: stop, copy the rest
        el = time.perf_counter() - t0
        return done > 0 and el / done > SEED_BUDGET_S

    print(f"\nBuilding the benchmark store ({rows:,} trades) in {tmp} ...", flush=True)
    store = Store.open_file(tmp)
    try:
        seeded = seed_demo(store, rows, chunk=SEED_CHUNK, progress=progress,
                           cancelled=over_budget)  # fmt: skip
        how = f"built: seed_demo {seeded:,}"
        if seeded < rows:
            t1 = time.perf_counter()
            _top_up(store, rows - seeded)
            how += f" + SQL copy {rows - seeded:,} ({time.perf_counter() - t1:.0f} s)"
        with store.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        store.close()
    with sqlite3.connect(tmp) as con:
        n = con.execute("SELECT count(*) FROM trade WHERE is_current = 1").fetchone()[0]
    con.close()
    assert n == rows, f"built store holds {n:,} current trades, not {rows:,}"
    assert not Path(f"{tmp}-wal").exists() or Path(f"{tmp}-wal").stat().st_size == 0
    Path(f"{tmp}-wal").unlink(missing_ok=True)
    Path(f"{tmp}-shm").unlink(missing_ok=True)
    os.replace(tmp, path)
    how += f" in {time.perf_counter() - t0:.0f} s"
    print(f"  {how}", flush=True)
    return path, how


# -- Qt helpers --------------------------------------------------------------------------------
def settle(app: QApplication, pending: Callable[[], bool], timeout_s: float = 120) -> None:
    """Run the event loop until ``pending()`` is false (async sort/filter results arrive)."""
    tick = QTimer()
    tick.start(5)  # guarantees a wake-up; results arrive as queued signals anyway
    deadline = time.perf_counter() + timeout_s
    try:
        while pending():
            app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
            assert time.perf_counter() < deadline, "timed out waiting for the blotter view"
    finally:
        tick.stop()
    app.processEvents()


def paint(app: QApplication, view: QTableView) -> None:
    """Deliver pending events, then paint the visible rows now (synchronously)."""
    app.processEvents()
    view.viewport().repaint()


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def visible_prices(model: BlotterModel) -> np.ndarray:
    return model._cols["price"][model._view]


def selected_uuids(model: BlotterModel, view: QTableView) -> set[str]:
    return {model.trade_uuid_at(i.row()) for i in view.selectionModel().selectedRows()}


@pytest.fixture
def run_copy() -> Iterator[Path]:
    """A private copy of the cached store (the burst writes amendments into it)."""
    src, _how = bench_store()
    dst = BENCH_DIR / f"run-{os.getpid()}.db"
    _remove_db(dst)
    shutil.copyfile(src, dst)
    yield dst
    _remove_db(dst)


REPORT = Report()
STORE_HOW: list[str] = []


# -- the benchmark -----------------------------------------------------------------------------
def test_bench_store_ready() -> None:
    """Build (or find) the cached store first: its own test, so its time is reported apart."""
    t = time.perf_counter()
    path, how = bench_store()
    STORE_HOW.append(how if how != "cached" else f"cached ({path.name})")
    assert path.exists()
    print(f"\nBenchmark store: {STORE_HOW[0]}; ready in {time.perf_counter() - t:.1f} s")


def test_bench_blotter(qtbot: QtBot, qapp: QApplication, run_copy: Path) -> None:
    app = qapp
    rep = REPORT
    trim()
    reset_hwm()
    runner = JobRunner()
    win = QMainWindow()
    qtbot.addWidget(win)
    panel = BlotterPanel(runner)
    win.setCentralWidget(panel)
    win.resize(1600, 900)
    with qtbot.waitExposed(win):
        win.show()
    model, table = panel.model, panel.table
    app.processEvents()
    rss_start = rss_mb()
    store: Store | None = None
    try:
        # -- 1. open -> first paint -> fully loaded (as MainWindow.start/reload_blotter) --
        rep.section(f"QTableView + BlotterModel, {ROWS:,} trades")
        t0 = time.perf_counter()
        store = Store.open_file(run_copy)
        repo = TradeRepository(store)
        t_open = time.perf_counter() - t0
        ref = repo.reference_data()
        model.set_refdata(ref)
        panel.fill_filter_choices()
        t_ref = time.perf_counter() - t0 - t_open
        chunks = repo.blotter_chunks(CHUNK_ROWS, first_chunk_rows=FIRST_CHUNK_ROWS)
        t = time.perf_counter()
        first = next(chunks)
        t_fetch1 = time.perf_counter() - t
        t = time.perf_counter()
        model.append_chunk(first)
        t_append1 = time.perf_counter() - t
        t_paint1 = timed(lambda: paint(app, table))
        first_paint = time.perf_counter() - t0
        assert model.rowCount() == len(first["row_id"]) == min(FIRST_CHUNK_ROWS, ROWS)
        fetch, append = [t_fetch1], [t_append1]
        while True:
            t = time.perf_counter()
            chunk = next(chunks, None)
            fetch.append(time.perf_counter() - t)
            if chunk is None:
                break
            t = time.perf_counter()
            model.append_chunk(chunk)
            append.append(time.perf_counter() - t)
        del chunk, first
        panel.update_count()
        t_paint = timed(lambda: paint(app, table))
        full_load = time.perf_counter() - t0
        assert model.rowCount() == model.total_rows == ROWS
        rss_loaded, hwm_loaded = rss_mb(), hwm_mb()
        trim()
        rss_trimmed = rss_mb()
        n_cap = model._cap
        own_cols = sum(a.nbytes for a in model._cols.values()) * ROWS // n_cap
        own_uuid = sum(sys.getsizeof(u) for u in model._cols["trade_uuid"][:100]) * ROWS // 100
        own_dict = sys.getsizeof(model._row_of)

        rep.add("Open store (Store.open_file + repository)", t_open)
        rep.add("Reference data + filter choices", t_ref)
        rep.add(f"Read first chunk ({FIRST_CHUNK_ROWS:,} rows: SQL + transpose)", t_fetch1)
        rep.add("Append first chunk to the model", t_append1)
        rep.add("Paint first screen", t_paint1)
        rep.add("FIRST PAINT (open -> first rows painted)", first_paint, target=2.0)
        rep.add(f"  read all chunks ({len(append)} chunks of <= {CHUNK_ROWS:,})", sum(fetch),
                note="SQL + columns_from_rows, on a worker in the app")  # fmt: skip
        rep.add("  append all chunks to the model", sum(append),
                note=f"GUI thread; longest append {max(append) * 1000:,.0f} ms")  # fmt: skip
        rep.add("FULLY LOADED (open -> all rows, painted)", full_load, note=f"last paint "
                f"{t_paint * 1000:.0f} ms")  # fmt: skip
        rep.add("RSS after full load", rss_loaded, "MB", target=1.5 * 1024,
                note=f"{rss_loaded - rss_start:,.0f} MB more than before opening; "
                f"peak {hwm_loaded:,.0f} MB")  # fmt: skip
        own = own_cols + own_uuid + own_dict + model._view.nbytes
        rep.add("Model's own data (computed, not RSS)", own / 1024**2, "MB",
                note=f"columns {own_cols / 1024**2:,.0f} (+{(n_cap - ROWS) / ROWS:.0%} spare "
                f"capacity), UUID str {own_uuid / 1024**2:,.0f}, UUID->row dict "
                f"{own_dict / 1024**2:,.0f}, view {model._view.nbytes / 1024**2:,.0f} MB")  # fmt: skip
        rep.add("RSS after full load, after gc + malloc_trim", rss_trimmed, "MB",
                note=f"{(rss_trimmed - rss_start) * 1024**2 / ROWS:,.0f} B per row held "
                "(model, SQLite cache, Python objects)")  # fmt: skip

        # -- 2. full sort by price (worker thread for >= 100k rows, as in the app) --
        t = time.perf_counter()
        model.sort(PRICE, DESC)
        settle(app, lambda: model.view_pending)
        paint(app, table)
        t_sort = time.perf_counter() - t
        prices = visible_prices(model)
        assert len(prices) == ROWS and bool(np.all(prices[:-1] >= prices[1:])), "not sorted"
        rep.add("SORT by price, descending (until painted)", t_sort, target=1.0)

        # -- 3. quick text filter and clearing it (sorted view, as a user would have it) --
        gulf = {cid for cid, c in ref.counterparties.items() if TEXT_NEEDLE in c.name.casefold()}
        assert gulf
        with sqlite3.connect(run_copy) as con:
            want = con.execute(
                f"SELECT count(*) FROM trade WHERE is_current = 1 AND counterparty_id IN "
                f"({','.join(map(str, gulf))})"
            ).fetchone()[0]
        con.close()
        t = time.perf_counter()
        model.set_text_filter(TEXT_NEEDLE)
        settle(app, lambda: model.view_pending)
        paint(app, table)
        t_filter = time.perf_counter() - t
        assert model.rowCount() == want > 0, (model.rowCount(), want)
        prices = visible_prices(model)
        assert bool(np.all(prices[:-1] >= prices[1:]))
        t = time.perf_counter()
        model.set_text_filter("")
        settle(app, lambda: model.view_pending)
        paint(app, table)
        t_clear = time.perf_counter() - t
        assert model.rowCount() == ROWS
        rep.add(f"FILTER quick text '{TEXT_NEEDLE}' (until painted)", t_filter, target=0.3,
                note=f"{want:,} rows match; the panel adds a 150 ms debounce")  # fmt: skip
        rep.add("FILTER cleared (until painted)", t_clear, target=0.3)

        # -- 4. a burst of amendments while sorted by price with rows selected --
        rng = np.random.default_rng(20261124)
        src = rng.choice(ROWS, BURST, replace=False)
        uuids = [str(u) for u in model._cols["trade_uuid"][src]]
        versions = [int(v) for v in model._cols["version"][src]]
        old_prices = [int(p) for p in model._cols["price"][src]]
        new_prices = [p + int(rng.integers(-2000, 2001)) * 10_000 for p in old_prices]  # +/-20.00
        sel = table.selectionModel()
        pick_rows = [3, 4, 5] + [model.row_of_trade(u) for u in uuids[:2]]
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        for r in pick_rows:
            sel.select(model.index(r, 0), flags)
        sel.setCurrentIndex(model.index(pick_rows[-1], 0),
                            QItemSelectionModel.SelectionFlag.NoUpdate)  # fmt: skip
        table.scrollTo(model.index(0, 0))
        paint(app, table)
        selected_before = selected_uuids(model, table)
        current_before = model.trade_uuid_at(sel.currentIndex().row())
        assert len(selected_before) == len(pick_rows) == 5

        t = time.perf_counter()
        for u, v, p in zip(uuids, versions, new_prices, strict=True):
            repo.new_version(uuid.UUID(hex=u), v, "bench",
                             {"price": Decimal(p).scaleb(-PRICE_PLACES)})  # fmt: skip
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        burst = repo.blotter_rows([uuid.UUID(hex=u) for u in uuids])
        t_read = time.perf_counter() - t
        assert len(burst["row_id"]) == BURST

        t = time.perf_counter()  # as MainWindow._apply_updates, then the repaint
        model.upsert(burst)
        panel.update_count()
        t_upsert = time.perf_counter() - t
        paint(app, table)
        t_apply = time.perf_counter() - t
        assert model.rowCount() == model.total_rows == ROWS
        prices = visible_prices(model)
        assert bool(np.all(prices[:-1] >= prices[1:])), "view no longer sorted by price"
        assert selected_uuids(model, table) == selected_before, "selection lost"
        assert model.trade_uuid_at(sel.currentIndex().row()) == current_before
        rows_now = [model._row_of[u] for u in uuids]
        assert model._cols["price"][rows_now].tolist() == new_prices
        assert set(model._cols["version"][rows_now].tolist()) == {2}
        rep.add(f"Burst: write {BURST:,} amendments (repo.new_version each)", t_write,
                note=f"{t_write / BURST * 1000:.1f} ms per amendment, one transaction each")  # fmt: skip
        rep.add("Burst: read them (repo.blotter_rows(trade_uuids))",
                t_read)  # fmt: skip
        rep.add(f"BURST APPLIED: upsert {BURST:,} rows, sorted + selection (until painted)",
                t_apply, target=0.1, note=f"upserts {t_upsert * 1000:.0f} ms + events/paint "
                f"{(t_apply - t_upsert) * 1000:.0f} ms; selection, current row, sort kept")  # fmt: skip

        model_append_per_row = sum(append) / ROWS
        model_sort_per_row = t_sort / ROWS
        model_mem_per_row = (rss_trimmed - rss_start) * 1024**2 / ROWS

        # -- 5. the same 100k rows in our model and in a QTableWidget (one item per cell) --
        rep.section(f"Same {WIDGET_ROWS:,} rows: BlotterModel vs QTableWidget (item per cell)")
        win2 = QMainWindow()
        qtbot.addWidget(win2)
        win2.resize(1600, 900)
        small = BlotterModel()
        small.set_refdata(ref)
        view = QTableView()
        view.setModel(small)
        win2.setCentralWidget(view)
        with qtbot.waitExposed(win2):
            win2.show()
        trim()
        rss_a = rss_mb()  # before the read: the model holds the chunk's UUID strings
        gen = repo.blotter_chunks(WIDGET_ROWS)
        part = next(gen)
        gen.close()
        n = len(part["row_id"])
        t = time.perf_counter()
        small.append_chunk(part)
        paint(app, view)
        t_small_fill = time.perf_counter() - t
        price_values = (part["price"] / 10**PRICE_PLACES).tolist()
        del part
        trim()
        small_mem = (rss_mb() - rss_a) * 1024**2
        cols = list(range(len(COLUMNS)))
        texts: list[list[str]] = []
        t_text = timed(lambda: texts.extend(small.rows_as_text(range(n), cols)))
        t_small_sort = timed(lambda: (small.sort(PRICE, DESC), paint(app, view)))
        assert bool(np.all(np.diff(visible_prices(small)) <= 0))

        tw = QTableWidget()
        tw.setColumnCount(len(COLUMNS))
        tw.setHorizontalHeaderLabels([c.title for c in COLUMNS])
        tw.verticalHeader().hide()
        for i, c in enumerate(COLUMNS):
            tw.setColumnWidth(i, c.width)
            tw.setColumnHidden(i, c.hidden)
        win2.setCentralWidget(tw)  # deletes ``view``
        app.processEvents()
        trim()
        rss_b = rss_mb()

        def fill() -> None:
            # The usual way: sorting off while filling, row count set once, item per cell; the
            # price cell holds a float so sortItems() orders it numerically, not as text.
            tw.setSortingEnabled(False)
            tw.setRowCount(n)
            display = Qt.ItemDataRole.DisplayRole
            for r, row in enumerate(texts):
                for c, text in enumerate(row):
                    if c == PRICE:
                        item = QTableWidgetItem()
                        item.setData(display, price_values[r])
                    else:
                        item = QTableWidgetItem(text)
                    tw.setItem(r, c, item)
            paint(app, tw)

        t_tw_fill = timed(fill)
        trim()
        tw_mem = (rss_mb() - rss_b) * 1024**2
        t_tw_sort = timed(lambda: (tw.sortItems(PRICE, DESC), paint(app, tw)))
        got = [tw.item(r, PRICE).data(Qt.ItemDataRole.DisplayRole) for r in range(n)]
        assert got == sorted(price_values, reverse=True), "QTableWidget not sorted by price"

        k = n / 1000
        rep.add(f"BlotterModel: fill {n:,} rows (append + paint)", t_small_fill,
                note=f"{t_small_fill / k * 1000:.2f} ms per 1k rows")  # fmt: skip
        rep.add(f"BlotterModel: sort {n:,} rows by price (inline)", t_small_sort)
        rep.add(f"BlotterModel: memory for {n:,} rows (RSS delta)", small_mem / 1024**2, "MB",
                note=f"{small_mem / n:,.0f} B per row")  # fmt: skip
        rep.add(f"(format {n * len(cols):,} cells as text for the QTableWidget)", t_text,
                note="not counted in the fill below")  # fmt: skip
        rep.add(f"QTableWidget: fill {n:,} rows x {len(cols)} items (+ paint)", t_tw_fill,
                note=f"{t_tw_fill / k * 1000:.1f} ms per 1k rows")  # fmt: skip
        rep.add(f"QTableWidget: sortItems by price ({n:,} rows)", t_tw_sort)
        rep.add(f"QTableWidget: memory for {n:,} rows (RSS delta)", tw_mem / 1024**2, "MB",
                note=f"{tw_mem / n:,.0f} B per row")  # fmt: skip

        rep.section(f"Ratios QTableWidget / BlotterModel per row ({n:,} vs {ROWS:,} rows)")
        rep.add("Fill time per 1k rows", (t_tw_fill / n) / model_append_per_row, "x",
                note=f"{t_tw_fill / k * 1000:.1f} vs {model_append_per_row * 1e6:.2f} ms "
                f"(model: append in the full load)")  # fmt: skip
        rep.add("Sort time per row", (t_tw_sort / n) / model_sort_per_row, "x",
                note=f"{t_tw_sort / n * 1e6:.2f} vs {model_sort_per_row * 1e6:.2f} us "
                "(n log n: flatters the smaller table)")  # fmt: skip
        rep.add("Memory per row", (tw_mem / n) / model_mem_per_row, "x",
                note=f"{tw_mem / n:,.0f} vs {model_mem_per_row:,.0f} B "
                "(model: full load, after malloc_trim)")  # fmt: skip
        rep.section(f"Ratios QTableWidget / BlotterModel, both at {n:,} rows")
        rep.add("Fill time", t_tw_fill / t_small_fill, "x")
        rep.add("Sort time", t_tw_sort / t_small_sort, "x")
        rep.add("Memory", tw_mem / max(small_mem, 1), "x")

        t_clear_tw = timed(lambda: tw.setRowCount(0))
        rep.add(f"(QTableWidget: delete the {n * len(cols):,} items)", t_clear_tw)
    finally:
        assert runner.shutdown()
        if store is not None:
            store.close()
        print(REPORT.render(f"Blotter benchmark: {ROWS:,} trades; store "
                            f"{STORE_HOW[0] if STORE_HOW else 'cached'}; Qt offscreen, "
                            f"{os.cpu_count()} CPUs"))  # fmt: skip
