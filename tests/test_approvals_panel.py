"""The Approvals dock and "Request approval…" from the trade ticket (qtbot)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.models.enums import TradeStatus
from app.models.store import Store
from app.views.approvals_panel import ApprovalRequester, ApprovalsPanel
from app.views.jobs import JobRunner
from app.views.ticket import TicketDialog
from tests.test_approvals import ALICE, OWNER, RITA, TOM, Desk, make_desk
from tests.test_trading import raw_trade


@pytest.fixture()
def desk(sqlite_store: Store) -> Desk:
    return make_desk(sqlite_store)


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def _panel(qtbot: QtBot, runner: JobRunner, desk: Desk) -> ApprovalsPanel:
    panel = ApprovalsPanel(runner, desk.approvals)
    qtbot.addWidget(panel)
    return panel


def _reload(qtbot: QtBot, panel: ApprovalsPanel) -> None:
    with qtbot.waitSignal(panel.sig_loaded, timeout=10_000):
        panel.refresh()


def test_buttons_follow_who_may_decide(
    qtbot: QtBot,
    runner: JobRunner,
    desk: Desk,
    sqlite_store: Store,
) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(quantity="2500"), "fix")
    panel = _panel(qtbot, runner, desk)
    _reload(qtbot, panel)
    assert panel.pending_tree.topLevelItemCount() == 1
    assert panel.mine_tree.topLevelItemCount() == 1  # alice's own request, with its state
    assert panel.mine_tree.topLevelItem(0).text(2) == "pending"  # type: ignore[union-attr]
    assert not panel.approve_button.isEnabled()  # nothing selected
    assert panel.select_pending(req.request_uuid)
    assert not panel.approve_button.isEnabled() and not panel.reject_button.isEnabled()
    assert panel.approve_button.toolTip() == "You cannot approve your own request."
    assert panel.withdraw_button.isEnabled()
    assert panel.diff.topLevelItemCount() == 1
    diff = panel.diff.topLevelItem(0)
    assert diff is not None and (diff.text(0), diff.text(1), diff.text(2)) == (
        "Quantity", "1000", "2500")  # fmt: skip

    desk.as_user(TOM)
    panel.set_principal(TOM)
    qtbot.waitUntil(lambda: panel.select_pending(req.request_uuid), timeout=10_000)
    assert not panel.approve_button.isEnabled()
    assert "trader role may not approve" in panel.approve_button.toolTip()

    desk.as_user(RITA)
    panel.set_principal(RITA)
    qtbot.waitUntil(lambda: panel.select_pending(req.request_uuid), timeout=10_000)
    assert panel.approve_button.isEnabled() and panel.reject_button.isEnabled()
    assert not panel.withdraw_button.isEnabled()
    qtbot.mouseClick(panel.approve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "approved and applied" in panel.status.text(), timeout=10_000)
    cur = desk.trading.repo.get(v2.trade_uuid)
    assert cur.version == 3 and cur.quantity == Decimal(2500)
    qtbot.waitUntil(lambda: panel.pending_tree.topLevelItemCount() == 0, timeout=10_000)


def test_local_owner_is_told_the_request_waits(
    qtbot: QtBot,
    runner: JobRunner,
    desk: Desk,
) -> None:
    v2 = desk.confirmed_trade()
    desk.as_user(OWNER)
    req = desk.approvals.request_trade_cancel(v2.trade_uuid, 2, "duplicate")
    panel = _panel(qtbot, runner, desk)
    _reload(qtbot, panel)
    assert "second user" in panel.count_label.text()
    assert panel.select_pending(req.request_uuid)
    assert not panel.approve_button.isEnabled()
    tip = panel.approve_button.toolTip()
    assert tip.startswith("You cannot approve your own request") and "signs in" in tip


def test_ticket_offers_a_request_when_approval_is_needed(
    qtbot: QtBot,
    runner: JobRunner,
    desk: Desk,
) -> None:
    v2 = desk.confirmed_trade()
    desk.as_user(ALICE)
    TicketDialog.approvals = ApprovalRequester(desk.approvals, runner)
    try:
        dlg = TicketDialog(desk.trading, v2)
        qtbot.addWidget(dlg)
        dlg.quantity.setText("4000")
        qtbot.mouseClick(dlg.book_button, Qt.MouseButton.LeftButton)
        assert "four-eyes" in dlg.summary.text() and "Nothing was saved" in dlg.summary.text()
        req_dlg = dlg.approval_dialog
        qtbot.addWidget(req_dlg)
        req_dlg.submit()  # no reason: refused inline
        assert "Give a reason" in req_dlg.status.text()
        qtbot.keyClicks(req_dlg.reason, "volume confirmed by broker")
        with qtbot.waitSignal(req_dlg.sig_submitted, timeout=10_000) as sig:
            qtbot.mouseClick(req_dlg.submit_button, Qt.MouseButton.LeftButton)
        rec = sig.args[0]
        assert rec.request_uuid in req_dlg.status.text()
        assert rec.request_uuid in dlg.summary.text()
        assert rec.payload["after"]["quantity"] == "4000"
        assert desk.trading.repo.get(v2.trade_uuid).status is TradeStatus.CONFIRMED
        assert desk.trading.repo.get(v2.trade_uuid).version == 2
    finally:
        TicketDialog.approvals = None
