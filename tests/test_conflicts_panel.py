"""The Conflicts dock, driven like a user on a SQLite store holding a sync conflict.

A conflict is written directly as a ``SyncConflict`` row (what the sync engine records when a
push meets a different desk version), so no PostgreSQL is needed here; tests/test_sync.py
covers how conflicts arise between two workstations.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from app.models.demo import ensure_reference_data
from app.models.entities import Book, Counterparty, SyncConflict, UserRole
from app.models.payload import canonical, trade_payload
from app.models.repository import TradeRecord, TradeRepository
from app.models.store import Store
from app.models.types import utcnow
from app.services.auth import Principal
from app.services.conflicts import ConflictService
from app.services.events import SYNC_CONFLICTS, EventBus
from app.services.trading import TradingService
from app.views import conflicts_panel as cp
from app.views.bridge import EventBridge
from app.views.conflicts_panel import (
    DESK_COL,
    EMPTY_TEXT,
    FIELD_COL,
    KEEP_COL,
    MINE_COL,
    NO_DESK_VERSION,
    ConflictsPanel,
    format_value,
)
from app.views.jobs import JobRunner

LEI = "5493001KJTIIGC8Y1R12"


class Desk:
    """A store with one trade in the non-demo book DESK-A, services and an open panel."""

    def __init__(self, store: Store, qtbot: QtBot) -> None:
        ensure_reference_data(store)
        with store.session() as s:
            s.add(Book(name="DESK-A", description="crude desk"))
            s.add(Counterparty(name="Northwind Energy AG", lei=LEI, country="DE"))
        self.store = store
        self.bus = EventBus()
        self.repo = TradeRepository(store)
        self.trading = TradingService(self.repo, self.bus, user="adam")
        self.service = ConflictService(store, self.trading, self.bus)
        self.runner = JobRunner()
        self.bridge = EventBridge(self.bus)
        self.panel = ConflictsPanel(self.runner, self.service, self.bridge)
        qtbot.addWidget(self.panel)
        self.panel.resize(900, 620)
        self.panel.show()
        self.qtbot = qtbot
        self.rec = self.trading.capture(
            {
                "book": "DESK-A", "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
                "instrument": "Future", "side": "Buy", "quantity": "1000", "price": "81.5",
                "trade_date": "2026-03-02", "delivery_start": "2027-01-01",
                "delivery_end": "2027-01-31",
            }
        )  # fmt: skip

    def payload(self, rec: TradeRecord) -> dict[str, Any]:
        return trade_payload(rec, "DESK-A", LEI, "CR-BRENT")

    def conflict(self, theirs: bool = True, **mine: Any) -> int:
        """Record a conflict: this workstation's version has ``mine`` over the current one."""
        current = self.payload(self.repo.get(self.rec.trade_uuid))
        local = dict(current, version=current["version"] + 1, updated_by="adam", **mine)
        with self.store.session() as s:
            row = SyncConflict(
                entity_key=self.rec.trade_uuid.hex, op_id=str(uuid.uuid4()),
                base_version=current["version"], local_payload=canonical(local),
                remote_version=current["version"] if theirs else None,
                remote_payload=canonical(current) if theirs else None,
                detected_at=utcnow(), state="open", resolution="",
            )  # fmt: skip
            s.add(row)
            s.flush()
            return int(row.id)

    def load(self, rows: int) -> None:
        """Reload the panel and wait until it lists ``rows`` conflicts."""
        loads = self.panel.loads
        self.panel.refresh()
        self.qtbot.waitUntil(lambda: self.panel.loads > loads and self.settled(rows), timeout=5000)

    def settled(self, rows: int) -> bool:
        return (
            not self.panel.busy
            and self.panel.list.topLevelItemCount() == rows
            and (self.panel.stack.currentIndex() == (1 if rows else 0))
        )

    def row(self, key: str) -> int:
        return self.panel.row_keys.index(key)

    def cell(self, key: str, col: int) -> str:
        item = self.panel.table.item(self.row(key), col)
        return item.text() if item is not None else ""


@pytest.fixture
def desk(sqlite_store: Store, qtbot: QtBot) -> Iterator[Desk]:
    d = Desk(sqlite_store, qtbot)
    yield d
    d.runner.shutdown()
    d.bridge.detach()


class Answers:
    """Stands in for ``QMessageBox.question``: records each question and answers with the next
    queued button (Yes when the queue is empty)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.queue: list[QMessageBox.StandardButton] = []

    def __call__(self, _parent: Any, title: str, text: str, *_a: Any) -> Any:
        self.asked.append((title, text))
        return self.queue.pop(0) if self.queue else QMessageBox.StandardButton.Yes


@pytest.fixture
def answer(monkeypatch: pytest.MonkeyPatch) -> Answers:
    a = Answers()
    monkeypatch.setattr(QMessageBox, "question", a)
    return a


def click(qtbot: QtBot, button: Any) -> None:
    assert button.isEnabled(), button.toolTip()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_empty_state_text(desk: Desk) -> None:
    desk.load(0)
    assert desk.panel.stack.currentWidget() is desk.panel.empty
    assert desk.panel.empty.text() == EMPTY_TEXT
    assert desk.panel.empty.isVisible()
    assert not desk.panel.mine_button.isEnabled()


def test_list_and_side_by_side_show_both_versions(desk: Desk) -> None:
    desk.conflict(price=79_250_000, comment="adam's fix")
    desk.load(1)
    item = desk.panel.list.topLevelItem(0)
    assert item is not None
    assert [item.text(c) for c in range(3)] == [
        str(desk.rec.trade_uuid)[:8], "CR-BRENT", "DESK-A"
    ]  # fmt: skip
    assert item.text(4) == "Price, Comment"
    assert desk.cell("price", FIELD_COL) == "Price"
    assert desk.cell("price", DESK_COL) == "81.50 USD/bbl"
    assert desk.cell("price", MINE_COL) == "79.25 USD/bbl"
    assert desk.cell("quantity", DESK_COL) == desk.cell("quantity", MINE_COL) == "1,000 bbl"
    assert desk.cell("counterparty_lei", DESK_COL) == "Northwind Energy AG"
    assert desk.cell("delivery_start", MINE_COL) == "Fri 01 Jan 2027"
    assert desk.cell("version", DESK_COL) == "v1" and desk.cell("version", MINE_COL) == "v2"
    assert "strike" not in desk.panel.row_keys  # empty on both sides: not shown
    assert desk.cell("comment", DESK_COL) == "—"
    table = desk.panel.table
    price_item = table.item(desk.row("price"), MINE_COL)
    qty_item = table.item(desk.row("quantity"), MINE_COL)
    assert price_item is not None and qty_item is not None
    assert price_item.background().color() == cp._DIFF_BG
    assert qty_item.background().color() != cp._DIFF_BG
    assert price_item.font().bold() and not qty_item.font().bold()
    # a Keep choice for the differing rows only
    assert table.cellWidget(desk.row("price"), KEEP_COL) is not None
    assert table.cellWidget(desk.row("quantity"), KEEP_COL) is None
    assert desk.cell("quantity", KEEP_COL) == "same"
    assert "v1" in desk.panel.headline.text()


def test_keep_mine_writes_my_price_and_clears_the_conflict(
    desk: Desk, qtbot: QtBot, answer: Answers
) -> None:
    desk.conflict(price=79_000_000)
    desk.load(1)
    answer.queue.append(QMessageBox.StandardButton.No)  # first: the user changes their mind
    click(qtbot, desk.panel.mine_button)
    assert answer.asked[0][0] == "Keep mine"
    assert desk.repo.get(desk.rec.trade_uuid).version == 1
    assert not desk.panel.busy
    click(qtbot, desk.panel.mine_button)  # now confirmed
    qtbot.waitUntil(lambda: desk.settled(0), timeout=5000)
    got = desk.repo.get(desk.rec.trade_uuid)
    assert (got.version, str(got.price)) == (2, "79.000000")
    assert desk.service.open_conflicts() == []
    assert desk.panel.empty.isVisible() and desk.panel.empty.text() == EMPTY_TEXT
    assert "kept this workstation's version (now v2)" in desk.panel.message.text()
    assert not desk.panel.message.isHidden()


def test_merge_takes_the_chosen_field_from_mine(desk: Desk, qtbot: QtBot, answer: Answers) -> None:
    desk.conflict(price=79_000_000, quantity=2_000_000)
    desk.load(1)
    # nothing chosen yet: refused with a message, nothing written, nothing asked
    click(qtbot, desk.panel.merge_button)
    assert "at least one field" in desk.panel.message.text()
    assert not answer.asked and desk.repo.get(desk.rec.trade_uuid).version == 1
    combo = desk.panel.table.cellWidget(desk.row("quantity"), KEEP_COL)
    assert combo is not None
    combo.setCurrentIndex(combo.findData("mine"))  # type: ignore[attr-defined]
    click(qtbot, desk.panel.merge_button)
    assert "Quantity" in answer.asked[0][1]
    qtbot.waitUntil(lambda: desk.settled(0), timeout=5000)
    got = desk.repo.get(desk.rec.trade_uuid)
    assert (got.version, str(got.price), str(got.quantity)) == (2, "81.500000", "2000.000")


def test_already_resolved_conflict_shows_an_error(
    desk: Desk, qtbot: QtBot, answer: Answers
) -> None:
    cid = desk.conflict(price=79_000_000)
    desk.load(1)
    desk.bridge.detach()  # another window resolves it; this panel does not hear of it
    desk.service.keep_theirs(cid)
    click(qtbot, desk.panel.mine_button)
    qtbot.waitUntil(lambda: "already resolved" in desk.panel.message.text(), timeout=5000)
    assert not desk.panel.message.isHidden()
    assert "#b3261e" in desk.panel.message.styleSheet()  # shown in red
    assert desk.repo.get(desk.rec.trade_uuid).version == 1  # nothing written
    qtbot.waitUntil(lambda: desk.settled(0), timeout=5000)  # the list catches up


def test_sync_conflicts_event_reloads_the_list(desk: Desk, qtbot: QtBot) -> None:
    desk.load(0)
    cid = desk.conflict(side="SELL")
    desk.bus.publish(SYNC_CONFLICTS, conflict_ids=[cid])
    qtbot.waitUntil(lambda: desk.settled(1), timeout=5000)
    assert desk.cell("side", DESK_COL) == "Buy" and desk.cell("side", MINE_COL) == "Sell"


def test_keep_desk_version_and_rebook(desk: Desk, qtbot: QtBot, answer: Answers) -> None:
    desk.conflict(price=79_000_000)
    desk.conflict(price=80_000_000)
    desk.load(2)
    click(qtbot, desk.panel.theirs_button)
    qtbot.waitUntil(lambda: desk.settled(1), timeout=5000)
    assert desk.repo.get(desk.rec.trade_uuid).version == 1
    click(qtbot, desk.panel.rebook_button)
    qtbot.waitUntil(lambda: desk.settled(0), timeout=5000)
    assert desk.repo.count_current() == 2
    assert "re-booked your version as new trade" in desk.panel.message.text()


def test_unreadable_desk_version_disables_merge(desk: Desk) -> None:
    desk.conflict(theirs=False, price=79_000_000)
    desk.load(1)
    assert not desk.panel.merge_button.isEnabled()
    assert desk.panel.merge_button.toolTip() == NO_DESK_VERSION
    assert desk.panel.mine_button.isEnabled()
    assert desk.cell("price", DESK_COL) == "not readable here"
    assert desk.cell("price", MINE_COL) == "79.00 USD/bbl"


def test_user_without_the_book_may_only_keep_the_desk_version(desk: Desk) -> None:
    desk.conflict(price=79_000_000)
    desk.trading.set_principal(Principal.of("bob", UserRole.TRADER, ["DESK-B"]))
    desk.load(1)
    desk.panel.update_permissions()
    for b in (desk.panel.mine_button, desk.panel.merge_button, desk.panel.rebook_button):
        assert not b.isEnabled() and "DESK-A" in b.toolTip(), b.toolTip()
    assert desk.panel.theirs_button.isEnabled()


def test_format_value_options_and_unknowns() -> None:
    p = {
        "quantity": 1_234_500, "quantity_unit": "MWH", "currency": "EUR",
        "strike": 45_000_000, "premium": 1_250_000, "option_type": "CALL",
        "exercise_style": "EUROPEAN", "counterparty_lei": "NOTKNOWN0000000000XX",
        "expiry_date": "2027-06-30", "comment": "",
    }  # fmt: skip
    assert format_value("quantity", p, None) == "1,234.5 MWh"
    assert format_value("strike", p, None) == "45.00 EUR/MWh"
    assert format_value("premium", p, None) == "1.25 EUR/MWh"
    assert format_value("option_type", p, None) == "Call"
    assert format_value("expiry_date", p, None) == "Wed 30 Jun 2027"
    assert format_value("comment", p, None) == "—"
    assert format_value("counterparty_lei", p, None) == "unknown here (LEI NOTKNOWN0000000000XX)"
    assert format_value("price", None, None) == "not readable here"


def test_main_window_has_the_dock_tabbed_with_the_log(qtbot: QtBot, tmp_path: Path) -> None:
    from tests.gui_helpers import close_window, open_window

    win = open_window(qtbot, tmp_path / "data", seed=False)
    try:
        dock = win.docks["conflicts_dock"]
        assert dock.widget() is win.conflicts_panel
        assert dock in win.tabifiedDockWidgets(win.docks["log_dock"])
        qtbot.waitUntil(lambda: win.conflicts_panel.loads >= 1, timeout=5000)
        qtbot.waitUntil(lambda: win.conflicts_panel.stack.currentIndex() == 0, timeout=5000)
        assert dock.windowTitle() == "Conflicts"
        assert any(a.text() == "Conflicts" for a in win.menuBar().actions()[1].menu().actions())
    finally:
        close_window(win)


def test_low_wide_dock_puts_the_list_beside_the_comparison(desk: Desk, qtbot: QtBot) -> None:
    desk.conflict(price=79_000_000)
    desk.load(1)
    assert desk.panel.split.orientation() == Qt.Orientation.Vertical
    desk.panel.resize(1100, 230)
    qtbot.waitUntil(lambda: desk.panel.split.orientation() == Qt.Orientation.Horizontal)
    # the first differing row is scrolled into view
    rect = desk.panel.table.visualRect(desk.panel.table.model().index(desk.row("price"), 0))
    assert desk.panel.table.viewport().rect().intersects(rect)


def test_detected_time_is_local(desk: Desk) -> None:
    when = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
    assert cp.format_detected(when) == when.astimezone().strftime("%Y-%m-%d %H:%M")


@pytest.mark.postgres
def test_real_sync_conflict_arrives_by_event_and_keep_mine_converges(
    desk_server: Any, tmp_path: Path, qtbot: QtBot, answer: Answers
) -> None:
    """Two workstations through a real desk database: the sync engine's SYNC_CONFLICTS makes
    the dock list the conflict; Keep mine is pushed and the other desk gets my price."""
    from tests.desk import CentralDesk
    from tests.sync_helpers import Workstation

    central = CentralDesk.create(desk_server, f"cpanel{uuid.uuid4().hex[:8]}")
    central.add_user("alice", "TRADER", ("DESK-A",))
    central.add_user("adam", "TRADER", ("DESK-A",))
    a = Workstation(tmp_path / "alice", central, "alice")
    b = Workstation(tmp_path / "adam", central, "adam")
    runner = JobRunner()
    bridge = EventBridge(b.bus)
    try:
        panel = ConflictsPanel(runner, ConflictService(b.store, b.trading, b.bus), bridge)
        qtbot.addWidget(panel)
        panel.show()
        rec = a.book()
        a.engine.sync_once()
        b.engine.sync_once()
        a.amend(rec, price="82")
        b.amend(b.repo.get(rec.trade_uuid), price="79")
        a.engine.sync_once()
        b.engine.sync_once()  # stale push: a conflict, announced on b's bus
        qtbot.waitUntil(lambda: panel.list.topLevelItemCount() == 1, timeout=5000)
        keys = panel.row_keys
        cell = panel.table.item(keys.index("price"), MINE_COL)
        desk_cell = panel.table.item(keys.index("price"), DESK_COL)
        assert cell is not None and desk_cell is not None
        assert (desk_cell.text(), cell.text()) == ("82.00 USD/bbl", "79.00 USD/bbl")
        click(qtbot, panel.mine_button)
        qtbot.waitUntil(lambda: panel.stack.currentIndex() == 0 and not panel.busy, timeout=5000)
        b.engine.sync_once()
        a.engine.sync_once()
        got = a.repo.get(rec.trade_uuid)
        assert (got.version, str(got.price)) == (3, "79.000000")
    finally:
        runner.shutdown()
        bridge.detach()
        a.close()
        b.close()
