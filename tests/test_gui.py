"""The workstation driven like a user: ticket, blotter, restart, layout, errors."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget
from pytestqt.qtbot import QtBot

from app.feed import market_state as ms
from app.models.enums import Side
from app.settings import FeedOptions
from app.views.blotter_model import COLUMN_INDEX
from app.views.ticket import TicketDialog
from tests.gui_helpers import close_window, open_window


def _fill_ticket(qtbot: QtBot, dlg: TicketDialog, qty: str, price: str, cp: str) -> None:
    dlg.counterparty.lineEdit().clear()
    qtbot.keyClicks(dlg.counterparty.lineEdit(), cp)
    dlg.product.lineEdit().clear()
    qtbot.keyClicks(dlg.product.lineEdit(), "NG-TTF")
    dlg.side.setCurrentText(Side.SELL.label)
    qtbot.keyClicks(dlg.quantity, qty)
    qtbot.keyClicks(dlg.price, price)


def test_capture_trade_appears_in_blotter_and_survives_restart(qtbot: QtBot, tmp_path: Path):
    win = open_window(qtbot, tmp_path / "data")
    model = win.blotter.model
    assert model.total_rows == 5000  # the demo desk
    before = win.ctx.repo.count_current()

    dlg = TicketDialog(win.ctx.trading, parent=win)
    qtbot.addWidget(dlg)
    dlg.show()
    dlg.activateWindow()
    qtbot.waitExposed(dlg)
    _fill_ticket(qtbot, dlg, "7,200", "41.275", "Meridian Gas Supply Ltd")
    qtbot.keyClick(dlg.quantity, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert dlg.saved is not None, dlg.summary.text()
    uid = dlg.saved.trade_uuid.hex
    qtbot.waitUntil(lambda: model.row_of_trade(uid) >= 0, timeout=10_000)
    row = model.row_of_trade(uid)
    texts = [model.text(row, COLUMN_INDEX[k]) for k in ("quantity", "price", "side", "product_id")]
    assert texts == ["7,200", "41.275", "Sell", "NG-TTF"]
    assert win.ctx.repo.count_current() == before + 1
    # Book pressed again on the same ticket (double click, retry): still one trade
    first = dlg.saved
    dlg.submit()
    assert dlg.saved.trade_uuid == first.trade_uuid
    assert win.ctx.repo.count_current() == before + 1

    # Hide a column and the Jobs dock; both must come back after a restart.
    win.blotter.table.setColumnHidden(COLUMN_INDEX["strike"], True)
    win.docks["jobs_dock"].close()
    close_window(win)

    win2 = open_window(qtbot, tmp_path / "data")
    assert win2.blotter.model.row_of_trade(uid) >= 0
    assert win2.blotter.model.total_rows == 5001
    assert win2.blotter.table.isColumnHidden(COLUMN_INDEX["strike"])
    assert not win2.docks["jobs_dock"].isVisible()
    close_window(win2)


def test_bad_ticket_shows_messages_and_stores_nothing(qtbot: QtBot, tmp_path: Path):
    win = open_window(qtbot, tmp_path / "data")
    before = win.ctx.repo.count_current()
    dlg = TicketDialog(win.ctx.trading, parent=win)
    qtbot.addWidget(dlg)
    dlg.show()
    _fill_ticket(qtbot, dlg, "-5", "99999", "Nobody Trading Ltd")
    dlg.delivery_end.setDate(dlg.delivery_start.date().addDays(-1))
    qtbot.mouseClick(dlg.book_button, Qt.MouseButton.LeftButton)
    assert dlg.saved is None and dlg.isVisible()
    shown = {n: lab.text() for n, lab in dlg._errors.items() if lab.isVisible()}
    assert shown["quantity"].startswith("must be positive")
    assert "outside the sane band for NG-TTF" in shown["price"]
    assert shown["counterparty"] == "unknown counterparty 'Nobody Trading Ltd'"
    assert shown["delivery_end"] == "delivery end is before delivery start"
    assert "nothing was saved" in dlg.summary.text()
    assert win.ctx.repo.count_current() == before
    close_window(win)


def test_amend_keeps_selection_and_history(qtbot: QtBot, tmp_path: Path):
    win = open_window(qtbot, tmp_path / "data")
    model, table = win.blotter.model, win.blotter.table
    table.sortByColumn(COLUMN_INDEX["price"], Qt.SortOrder.DescendingOrder)
    row = next(r for r in range(10, 100) if model.text(r, COLUMN_INDEX["status"]) != "Cancelled")
    table.selectRow(row)
    uid = model.trade_uuid_at(row)
    rec = win.ctx.repo.get(__import__("uuid").UUID(uid))
    dlg = TicketDialog(win.ctx.trading, rec, parent=win)
    qtbot.addWidget(dlg)
    dlg.quantity.setText("1234")
    dlg.submit()
    assert dlg.saved is not None, {k: v.text() for k, v in dlg._errors.items() if v.text()}
    assert dlg.saved.version == 2
    qtbot.waitUntil(lambda: model.text(model.row_of_trade(uid), COLUMN_INDEX["version"]) == "2",
                    timeout=10_000)  # fmt: skip
    row = model.row_of_trade(uid)
    assert model.text(row, COLUMN_INDEX["quantity"]) == "1,234"
    selected = {i.row() for i in table.selectionModel().selectedRows()}
    assert selected == {row}  # the selection followed the trade
    assert [r.version for r in win.ctx.repo.history(rec.trade_uuid)] == [1, 2]
    close_window(win)


def test_corrupt_saved_layout_falls_back_to_default(qtbot: QtBot, tmp_path: Path):
    data = tmp_path / "data"
    win = open_window(qtbot, data)
    close_window(win)
    ini = data / "workstation.ini"
    text = ini.read_text()
    assert "session" in text
    lines = [ln if not ln.startswith("state=") else "state=@ByteArray(garbage)"
             for ln in text.splitlines()]  # fmt: skip
    ini.write_text("\n".join(lines))
    win2 = open_window(qtbot, data)
    assert all(d.isVisible() or d.objectName() == "jobs_dock" for d in win2.docks.values())
    assert not win2.blotter.table.isColumnHidden(COLUMN_INDEX["price"])
    close_window(win2)


def test_named_workspace_round_trip(qtbot: QtBot, tmp_path: Path):
    win = open_window(qtbot, tmp_path / "data")
    dock: QDockWidget = win.docks["log_dock"]
    win.layouts.save_workspace(win, "Risk view")
    dock.close()
    win.blotter.table.setColumnHidden(COLUMN_INDEX["book_id"], True)
    assert win.layouts.workspaces() == ["Risk view"]
    assert win.layouts.load_workspace(win, "Risk view")
    assert dock.isVisible()
    assert not win.blotter.table.isColumnHidden(COLUMN_INDEX["book_id"])
    win.reset_layout()
    assert all(d.isVisible() for d in win.docks.values() if d.objectName() != "jobs_dock")
    close_window(win)


def test_uncaught_thread_exception_is_logged_and_shown(qtbot: QtBot, tmp_path: Path):
    from app.logging_setup import install_excepthooks, setup_logging

    win = open_window(qtbot, tmp_path / "data")
    log_file = setup_logging(win.ctx.settings.log_dir)
    old = threading.excepthook
    install_excepthooks()
    try:
        t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
        t.start()
        t.join()
        qtbot.waitUntil(lambda: any("division by zero" in m for m in win.log_panel.messages()))
        assert "alert" in win.alerts_label.text()
        assert win.isVisible()
    finally:
        threading.excepthook = old
        for h in list(logging.getLogger().handlers):
            if getattr(h, "_qe_file", False):
                logging.getLogger().removeHandler(h)
                h.close()
    close_window(win)
    text = log_file.read_text()
    assert "Unexpected error in thread worker-x" in text and "ZeroDivisionError" in text


def test_job_runner_progress_cancel_and_error(qtbot: QtBot, tmp_path: Path):
    from app.views.jobs import JobRunner, JobState

    runner = JobRunner()
    seen: list[float] = []
    gate = threading.Event()

    def slow(ctx):
        for i in range(1000):
            ctx.check()
            ctx.progress(i / 1000)
            gate.wait(0.002)
        return "finished"

    job = runner.submit("slow", slow, on_progress=lambda f, m: seen.append(f))
    qtbot.waitUntil(lambda: job.fraction > 0.05, timeout=10_000)
    job.cancel()
    qtbot.waitUntil(lambda: job.state is JobState.CANCELLED, timeout=10_000)
    assert seen and job.fraction < 1.0

    errors: list[str] = []
    bad = runner.submit("bad", lambda ctx: 1 / 0, on_error=errors.append)
    qtbot.waitUntil(lambda: bad.state is JobState.FAILED)
    assert errors == ["bad failed: division by zero"]

    results: list[object] = []
    first = runner.submit("calc", lambda ctx: (gate.wait(0.2), 1)[1], key="k",
                          on_result=results.append)  # fmt: skip
    second = runner.submit("calc", lambda ctx: 2, key="k", on_result=results.append)
    qtbot.waitUntil(lambda: not first.active and not second.active, timeout=10_000)
    assert results == [2]  # the superseded job's late result never lands
    assert runner.shutdown()


def test_reseed_and_clear_demo_from_the_menu_actions(qtbot: QtBot, tmp_path: Path):
    win = open_window(qtbot, tmp_path / "data")
    model = win.blotter.model
    dlg = TicketDialog(win.ctx.trading, parent=win)
    qtbot.addWidget(dlg)
    _fill_ticket(qtbot, dlg, "100", "35", "Meridian Gas Supply Ltd")
    dlg.book.setCurrentText("DEMO Gas")
    dlg.submit()
    assert dlg.saved is not None
    qtbot.waitUntil(lambda: model.total_rows == 5001, timeout=10_000)

    win.reseed_demo()  # demo trades replaced, including the one booked in a DEMO book
    qtbot.waitUntil(lambda: model.total_rows == 5000 and not win.ctx.runner.active_jobs,
                    timeout=30_000)  # fmt: skip
    assert model.row_of_trade(dlg.saved.trade_uuid.hex) == -1

    win._demo_job(reseed=False)  # what "Clear demo data" runs once confirmed
    qtbot.waitUntil(lambda: model.total_rows == 0 and not win.ctx.runner.active_jobs,
                    timeout=30_000)  # fmt: skip
    assert win.ctx.repo.count_current() == 0
    assert win.blotter.count_label.text() == "0 trades"
    close_window(win)


def test_export_all_then_import_through_the_window(qtbot: QtBot, tmp_path: Path):
    from app.services.trade_io import read_rows

    win = open_window(qtbot, tmp_path / "data")
    out = tmp_path / "all.csv"
    win.export_trades(str(out))
    qtbot.waitUntil(lambda: out.exists() and not win.ctx.runner.active_jobs, timeout=30_000)
    rows = read_rows(out)
    assert len(rows) == 5000
    small = tmp_path / "ten.csv"
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    small.write_text("\n".join(lines[:11]) + "\n", encoding="utf-8")

    from app.views import import_dialog

    accepted: list[int] = []

    class AutoImport(import_dialog.ImportDialog):
        def exec(self) -> int:  # the user reviews the preview and clicks Import
            self.import_button.click()
            accepted.append(len(self.imported))
            return 1

    orig = import_dialog.ImportDialog
    import_dialog.ImportDialog = AutoImport  # type: ignore[misc]
    try:
        win.import_trades(str(small))
    finally:
        import_dialog.ImportDialog = orig  # type: ignore[misc]
    assert accepted == [10]
    qtbot.waitUntil(lambda: win.blotter.model.total_rows == 5010, timeout=10_000)
    close_window(win)


def test_blotter_export_copy_and_filters_from_the_panel(qtbot: QtBot, tmp_path: Path):
    from PySide6.QtGui import QGuiApplication

    win = open_window(qtbot, tmp_path / "data")
    panel = win.blotter
    box = panel.combos["book_id"]
    box.setCurrentIndex(box.findText("DEMO Oil"))
    qtbot.waitUntil(lambda: not panel.model.view_pending)
    n = panel.model.rowCount()
    assert 0 < n < 5000
    assert {panel.model.text(r, COLUMN_INDEX["book_id"]) for r in range(n)} == {"DEMO Oil"}
    assert panel.count_label.text() == f"5,000 trades · showing {n:,}"
    panel.table.selectRow(0)
    text = panel.copy_selection()
    assert QGuiApplication.clipboard().text() == text
    assert text.splitlines()[0].startswith("Trade ID\tVer\tStatus")
    out = tmp_path / "view.xlsx"
    job = panel.export(out)
    qtbot.waitUntil(lambda: not job.active, timeout=30_000)
    assert len(read_rows_xlsx(out)) == n + 1
    close_window(win)


def read_rows_xlsx(path: Path) -> list[tuple[object, ...]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    try:
        return list(wb.active.iter_rows(values_only=True))
    finally:
        wb.close()


def test_options_pricer_dock_is_populated_on_a_fresh_store(qtbot: QtBot, tmp_path: Path):
    from app.engine.options import black76

    win = open_window(qtbot, tmp_path / "data")
    pricer = win.pricer
    assert "pricer_dock" in win.docks
    assert pricer.product.count() == len(win.ctx.trading.refdata.products) > 0
    win.show_dock("pricer_dock")
    pricer.recalculate_now()
    qtbot.waitUntil(lambda: pricer.result is not None, timeout=10_000)
    inp = pricer.inputs()
    want = black76(inp.F, inp.K, inp.T, inp.rate, inp.vol, inp.call)
    assert pricer.result["price"] == pytest.approx(want, rel=1e-12)
    close_window(win)


def test_embedded_feed_starts_streams_records_and_stops_with_the_window(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """As `make run`: the window starts its own feed server child, prices stream into Market
    Watch and the status bar, history is recorded, and closing the window stops the child."""
    win = open_window(qtbot, tmp_path, feed=FeedOptions(mode="simulate", speed=0.05))
    market = win.ctx.market
    assert market.embedded is not None
    qtbot.waitUntil(lambda: market.state.status().state == ms.CONNECTED, timeout=60_000)
    qtbot.waitUntil(lambda: "connected" in win.feed_status.text(), timeout=10_000)
    model = win.market_watch.model
    qtbot.waitUntil(lambda: model.rowCount() > 40, timeout=10_000)
    # A row's Last equals the quote the client received (after the next bridge frames).
    quote = market.state.quote("CR-BRENT:SPOT")
    assert quote is not None and quote.last is not None and not quote.stale
    qtbot.waitUntil(lambda: "msg/s" in win.feed_status.text(), timeout=10_000)
    # Settlements arrive at each simulated day end (speed 0.05: a day every 20 s) and the
    # start-up reference settles are recorded: history survives restarts.
    qtbot.waitUntil(lambda: market.recorder.stats()["written"] > 100, timeout=30_000)
    proc = market.embedded._proc
    assert proc is not None and proc.poll() is None
    close_window(win)
    assert proc.poll() is not None  # the child feed server is gone
    assert not market.embedded.running
