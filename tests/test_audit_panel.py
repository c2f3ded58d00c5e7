"""The Audit dock: loads off the GUI thread, filters, shows a diff, verifies, exports."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.models.entities import UserRole
from app.models.store import Store
from app.services.audit import AuditService
from app.services.auth import Principal
from app.views.audit_panel import AuditPanel
from app.views.jobs import JobRunner
from tests.gui_helpers import close_window, open_window
from tests.test_audit import do_history, make_desk

COMPLIANCE = Principal.of("carol", UserRole.COMPLIANCE)


def make_panel(qtbot: QtBot, store: Store, principal: Principal = COMPLIANCE) -> AuditPanel:
    runner = JobRunner()
    panel = AuditPanel(runner, AuditService(store, principal))
    qtbot.addWidget(panel)
    return panel


def test_panel_loads_filters_diffs_verifies_and_exports(
    qtbot: QtBot, qtmodeltester: object, sqlite_store: Store, tmp_path: Path
) -> None:
    desk = make_desk(sqlite_store)
    uuids = do_history(desk)
    panel = make_panel(qtbot, sqlite_store)
    with qtbot.waitSignal(panel.sig_loaded, timeout=10_000):
        panel.show()  # first shown: loads in the background
    assert panel.model.rowCount() == 9 and panel.page_label.text() == "1–9 of 9"
    qtmodeltester.check(panel.model)  # type: ignore[attr-defined]

    qtbot.keyClicks(panel.text, uuids[0].hex[:10])
    with qtbot.waitSignal(panel.sig_loaded, timeout=10_000):
        qtbot.keyClick(panel.text, Qt.Key.Key_Return)
    assert [e.action for e in panel.model.entries] == ["amend", "amend", "capture"]

    panel.table.selectRow(1)  # the price amendment
    assert panel.diff.changed() == ["price", "updated_at", "version"]
    row = next(r for r in panel.diff.rows if r[0] == "price")
    assert (row[1], row[2]) == ("74250000", "75500000")
    idx = panel.diff.index(panel.diff.rows.index(row), 1)
    assert panel.diff.data(idx, Qt.ItemDataRole.BackgroundRole) is not None
    qtmodeltester.check(panel.diff)  # type: ignore[attr-defined]
    assert "changed: price, updated_at, version" in panel.detail_title.text()

    panel.text.clear()
    panel.entity.setCurrentText("limit")
    with qtbot.waitSignal(panel.sig_loaded, timeout=10_000):
        qtbot.mouseClick(panel.search_button, Qt.MouseButton.LeftButton)
    assert [e.action for e in panel.model.entries] == ["deactivate", "update", "create"]
    panel.table.selectRow(1)
    assert "limit_value" in panel.diff.changed()

    panel.since.setText("last week")
    qtbot.mouseClick(panel.search_button, Qt.MouseButton.LeftButton)
    assert "must be a date as YYYY-MM-DD" in panel.status.text()
    panel.since.clear()

    with qtbot.waitSignal(panel.sig_verified, timeout=10_000) as blocker:
        qtbot.mouseClick(panel.verify_button, Qt.MouseButton.LeftButton)
    assert blocker.args[0].ok
    assert panel.verify_label.text().startswith("Chain OK: 9 records, chain head 9 ")

    with qtbot.waitSignal(panel.sig_message, timeout=10_000):
        panel.export_to(tmp_path / "limits.csv")
    assert "Exported 3 audit records" in panel.status.text()
    assert len((tmp_path / "limits.csv").read_text(encoding="utf-8").splitlines()) == 4
    panel.runner.shutdown()


def test_verify_button_shows_a_broken_chain(qtbot: QtBot, sqlite_store: Store) -> None:
    do_history(make_desk(sqlite_store))
    sqlite_store.engine.dispose()
    con = sqlite3.connect(sqlite_store.where, isolation_level=None)
    con.execute("DROP TRIGGER audit_log_no_delete")
    con.execute("DELETE FROM audit_log WHERE seq = 3")
    con.close()
    panel = make_panel(qtbot, sqlite_store)
    with qtbot.waitSignal(panel.sig_verified, timeout=10_000):
        panel.verify()
    assert panel.verify_label.text().startswith("Chain BROKEN at record 4:")
    assert "b3261e" in panel.verify_label.styleSheet()
    panel.runner.shutdown()


def test_trader_sees_why_the_audit_is_disabled(qtbot: QtBot, sqlite_store: Store) -> None:
    desk = make_desk(sqlite_store)
    desk.repo.insert_trades([desk.econ(quantity=Decimal(1))], "alice")
    panel = make_panel(qtbot, sqlite_store, Principal.of("alice", UserRole.TRADER, ["x"]))
    panel.show()
    assert not panel.search_button.isEnabled() and not panel.export_button.isEnabled()
    assert "may not view the audit trail" in panel.verify_button.toolTip()
    assert panel.model.rowCount() == 0
    panel.runner.shutdown()


def test_audit_dock_in_the_main_window(qtbot: QtBot, tmp_path: Path) -> None:
    from app.services.stress import LIBRARY

    win = open_window(qtbot, tmp_path / "data")
    try:
        assert "audit_dock" in win.docks
        panel = win.audit_panel
        win.show_dock("audit_dock")
        win.stress_panel.library.save(LIBRARY[0])  # a user setting: audited in the local store
        with qtbot.waitSignal(panel.sig_loaded, timeout=20_000):
            qtbot.mouseClick(panel.search_button, Qt.MouseButton.LeftButton)
        assert [(e.entity, e.action, e.user) for e in panel.model.entries] == [
            ("settings", "save", win.ctx.trading.principal.username)
        ]
        with qtbot.waitSignal(panel.sig_verified, timeout=20_000):
            qtbot.mouseClick(panel.verify_button, Qt.MouseButton.LeftButton)
        assert panel.verify_label.text().startswith("Chain OK: 1 records")
    finally:
        close_window(win)
