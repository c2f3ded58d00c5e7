"""Roles and permissions: the role x action x desk matrix through the services, the pure
permission rules, and the GUI disabling what a user may not do (with a tooltip saying why)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.models.demo import ensure_reference_data
from app.models.entities import Book, Counterparty, UserRole
from app.models.enums import TradeStatus
from app.models.limits import LimitDraft, LimitRepository
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.auth import Action, PermissionDenied, Principal, can, require, why_not
from app.services.events import EventBus
from app.services.limits import LimitService
from app.services.trading import TradingService

BOOKS = ("DESK-A", "DESK-B", "DEMO Oil")
ROLES = {
    "trader": Principal.of("tina", UserRole.TRADER, {"DESK-A"}),
    "risk_manager": Principal.of("rick", UserRole.RISK_MANAGER),
    "back_office": Principal.of("bob", UserRole.BACK_OFFICE),
    "compliance": Principal.of("cora", UserRole.COMPLIANCE),
    "admin": Principal.of("adam", UserRole.ADMIN),
}
ACTIONS = ("capture", "amend", "cancel", "validate", "confirm", "set_limit", "view")
#: role -> the actions allowed in DESK-A and in DESK-B (the trader's own book is DESK-A).
EXPECTED = {
    "trader": ({"capture", "amend", "cancel", "validate", "view"}, set()),
    "risk_manager": ({"set_limit", "view"}, {"set_limit", "view"}),
    "back_office": ({"validate", "confirm", "view"}, {"validate", "confirm", "view"}),
    "compliance": ({"view"}, {"view"}),
    "admin": (set(), set()),
}


def raw(book: str, **kw: Any) -> dict[str, Any]:
    out = {"book": book, "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
           "instrument": "Fixed-for-floating swap", "side": "Buy", "quantity": "1000",
           "price": "74.25", "trade_date": "2026-01-05", "delivery_start": "2026-03-01",
           "delivery_end": "2026-03-31", "comment": ""}  # fmt: skip
    out.update(kw)
    return out


@pytest.fixture(scope="module")
def desk_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A SQLite store with books DESK-A, DESK-B (and a demo book) and one counterparty."""
    store = Store.open_file(tmp_path_factory.mktemp("auth") / "store.db")
    ensure_reference_data(store)
    with store.session() as s:
        for name in BOOKS:
            s.add(Book(name=name, description="", is_demo=name.startswith("DEMO")))
        s.add(Counterparty(name="Northwind Energy AG", lei="5493001KJTIIGC8Y1R12", country="DE"))
    yield store
    store.close()


def owner(store: Store) -> TradingService:
    return TradingService(TradeRepository(store), EventBus(), user="owner")


def attempt(store: Store, p: Principal, action: str, book: str) -> bool:
    """Do ``action`` in ``book`` as ``p`` through the services: True if it was done, False if
    refused with PermissionDenied (anything else fails the test)."""
    if action == "view":
        return can(p, Action.VIEW_TRADES, book)
    svc = TradingService(TradeRepository(store), EventBus(), principal=p)
    if action == "set_limit":
        repo = LimitRepository(store)
        book_id = next(i for i, n in repo.books().items() if n == book)
        draft = LimitDraft(book_id, "position", 10, product="CR-BRENT")
        try:
            lim = LimitService(repo, principal=p).create(draft, p.username)
        except PermissionDenied as exc:
            # Allowed to set limits, but the change waits for four-eyes approval.
            return getattr(exc, "kind", None) == "limit_change"
        repo.set_active(lim.id, lim.version, False, "owner")  # free the slot for the next case
        return True
    boss = owner(store)
    rec = boss.capture(raw(book))
    if action == "confirm":
        rec = boss.advance(rec.trade_uuid, rec.version, TradeStatus.VALIDATED)
    try:
        if action == "capture":
            done = svc.capture(raw(book))
            assert done.created_by == p.username
        elif action == "amend":
            done = svc.amend(rec.trade_uuid, rec.version, raw(book, price="75"))
            assert done.version == 2 and done.updated_by == p.username
        elif action == "cancel":
            done = svc.cancel(rec.trade_uuid, rec.version, "wrong counterparty")
            assert done.status is TradeStatus.CANCELLED
        elif action == "validate":
            done = svc.advance(rec.trade_uuid, rec.version, TradeStatus.VALIDATED)
            assert done.status is TradeStatus.VALIDATED
        elif action == "confirm":
            done = svc.advance(rec.trade_uuid, rec.version, TradeStatus.CONFIRMED)
            assert done.status is TradeStatus.CONFIRMED
    except PermissionDenied as exc:
        assert str(exc).endswith(".") and len(str(exc)) > 20  # a sentence for the user
        assert svc.repo.get(rec.trade_uuid).version == rec.version  # nothing written
        return False
    return True


@pytest.mark.parametrize("book", ["DESK-A", "DESK-B"])
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(ROLES))
def test_role_action_desk_matrix(desk_store: Store, role: str, action: str, book: str) -> None:
    allowed = EXPECTED[role][0 if book == "DESK-A" else 1]
    assert attempt(desk_store, ROLES[role], action, book) is (action in allowed)


@pytest.mark.parametrize("role", list(ROLES))
def test_demo_books_are_open_to_everyone(desk_store: Store, role: str) -> None:
    for action in ("capture", "amend", "cancel", "validate", "confirm", "view"):
        assert attempt(desk_store, ROLES[role], action, "DEMO Oil"), action


def test_local_owner_may_do_everything(desk_store: Store) -> None:
    p = Principal.local_owner("me")
    assert p.role is None and p.description == "me (single-user)"
    for action in ACTIONS:
        assert attempt(desk_store, p, action, "DESK-B"), action
    assert all(can(p, a) for a in Action)


def test_non_trade_actions() -> None:
    table = {
        Action.APPROVE: {"risk_manager", "back_office"},
        Action.RUN_REPORTS: {"risk_manager", "compliance"},
        Action.VIEW_AUDIT: {"compliance", "admin"},
        Action.EXPORT_AUDIT: {"compliance", "admin"},
        Action.MANAGE_USERS: {"admin"},
        Action.MANAGE_BOOKS: {"admin"},
    }
    for action, roles in table.items():
        got = {name for name, p in ROLES.items() if can(p, action)}
        assert got == roles, action


def test_why_not_sentences_and_require() -> None:
    trader = ROLES["trader"]
    assert why_not(trader, Action.CAPTURE, "DESK-A") is None
    assert why_not(trader, Action.CAPTURE, "DESK-B") == (
        "tina may not capture trades in book DESK-B (not one of their books)."
    )
    assert "back-office step" in (why_not(trader, Action.LIFECYCLE, "DESK-A") or "")
    assert can(trader, Action.LIFECYCLE, "DESK-A", to_status=TradeStatus.VALIDATED)
    assert not can(trader, Action.LIFECYCLE, "DESK-A", to_status=TradeStatus.CONFIRMED)
    assert why_not(ROLES["admin"], Action.CAPTURE, "DESK-A") == (
        "The admin role may not capture trades."
    )
    # no book given: a trader may capture if they have any book
    assert can(trader, Action.CAPTURE)
    assert not can(Principal.of("nobooks", UserRole.TRADER), Action.CAPTURE)
    with pytest.raises(PermissionDenied, match="risk manager role may not capture"):
        require(ROLES["risk_manager"], Action.CAPTURE, "DESK-A")
    assert isinstance(PermissionDenied("x"), PermissionError)


def test_amend_into_a_foreign_book_is_refused(desk_store: Store) -> None:
    rec = owner(desk_store).capture(raw("DESK-A"))
    svc = TradingService(TradeRepository(desk_store), EventBus(), principal=ROLES["trader"])
    with pytest.raises(PermissionDenied, match="DESK-B"):
        svc.amend(rec.trade_uuid, 1, raw("DESK-B"))
    assert svc.repo.get(rec.trade_uuid).version == 1


def test_set_principal_switches_user(desk_store: Store) -> None:
    svc = TradingService(TradeRepository(desk_store), EventBus(), user="first")
    assert svc.user == "first" and svc.principal.is_local_owner
    svc.set_principal(ROLES["compliance"])
    assert svc.user == "cora"
    with pytest.raises(PermissionDenied):
        svc.capture(raw("DESK-A"))


# -- GUI: disabled (not hidden), with the reason as tooltip --------------------------------------


def test_ticket_disables_booking_for_a_foreign_book(desk_store: Store, qtbot: QtBot) -> None:
    from app.views.ticket import TicketDialog

    svc = TradingService(TradeRepository(desk_store), EventBus(), principal=ROLES["trader"])
    dlg = TicketDialog(svc)
    qtbot.addWidget(dlg)
    dlg.book.setCurrentText("DESK-A")
    assert dlg.book_button.isEnabled() and dlg.book_button.isVisible() is dlg.isVisible()
    dlg.book.setCurrentText("DESK-B")
    assert not dlg.book_button.isEnabled()
    assert dlg.book_button.toolTip() == (
        "tina may not capture trades in book DESK-B (not one of their books)."
    )
    rec = owner(desk_store).capture(raw("DESK-B"))
    amend = TicketDialog(svc, rec)
    qtbot.addWidget(amend)
    assert not amend.book_button.isEnabled() and not amend.cancel_trade_button.isEnabled()
    assert "may not cancel trades in book DESK-B" in amend.cancel_trade_button.toolTip()


def test_blotter_menu_lifecycle_for_back_office_only(desk_store: Store, qtbot: QtBot) -> None:
    from app.views.blotter import BlotterPanel
    from app.views.jobs import JobRunner

    boss = owner(desk_store)
    rec = boss.capture(raw("DESK-A"))
    rec = boss.advance(rec.trade_uuid, 1, TradeStatus.VALIDATED)
    runner = JobRunner()
    panel = BlotterPanel(runner)
    qtbot.addWidget(panel)
    panel.model.set_refdata(boss.refdata)
    panel.model.append_chunk(boss.repo.blotter_rows([rec.trade_uuid]))
    row = panel.model.row_of_trade(rec.trade_uuid.hex)
    assert row >= 0
    assert panel.row_trade(row) == (rec.trade_uuid.hex, 2, TradeStatus.VALIDATED, "DESK-A")

    def actions(p: Principal) -> dict[str, Any]:
        panel.principal = p
        menu = panel.row_menu(row)
        out = {a.text(): a for a in menu.actions() if a.text()}
        life = next(a.menu() for a in menu.actions() if a.text() == "Lifecycle")
        out.update({a.text(): a for a in life.actions()})
        return out

    bo = actions(ROLES["back_office"])
    assert bo["→ Confirmed"].isEnabled()
    assert not bo["New trade…"].isEnabled() and not bo["Cancel trade…"].isEnabled()
    assert bo["Cancel trade…"].toolTip() == "The back office role may not cancel trades."
    tr = actions(ROLES["trader"])
    assert tr["New trade…"].isEnabled() and tr["Cancel trade…"].isEnabled()
    assert not tr["→ Confirmed"].isEnabled()
    assert "back-office step" in tr["→ Confirmed"].toolTip()
    with qtbot.waitSignal(panel.sig_advance) as sig:
        bo = actions(ROLES["back_office"])
        bo["→ Confirmed"].trigger()
    assert sig.args == [rec.trade_uuid.hex, 2, TradeStatus.CONFIRMED]
    runner.shutdown()


def test_limits_panel_buttons_follow_set_limit(desk_store: Store, qtbot: QtBot) -> None:
    from app.views.jobs import JobRunner
    from app.views.limits_panel import LimitsPanel

    runner = JobRunner()
    panel = LimitsPanel(runner, LimitService(LimitRepository(desk_store)))
    qtbot.addWidget(panel)
    panel.books = LimitRepository(desk_store).books()
    panel.set_principal(ROLES["trader"])
    assert not panel.add_button.isEnabled()
    assert panel.add_button.toolTip() == "A trader may not set limits."
    assert panel.user == "tina" and panel.service.principal is ROLES["trader"]
    panel.set_principal(ROLES["risk_manager"])
    assert panel.add_button.isEnabled() and panel.add_button.toolTip() == ""
    runner.shutdown()


def test_main_window_single_user_and_signed_in(tmp_path: Path, qtbot: QtBot) -> None:
    from tests.gui_helpers import close_window, open_window

    win = open_window(qtbot, tmp_path / "data", seed=False)
    try:
        assert "single-user" in win.user_status.text()
        assert win.act_new.isEnabled()
        assert not win.act_sign_out.isEnabled()
        assert "Single-user" in win.act_sign_out.toolTip()
        win.set_principal(ROLES["compliance"], "Working offline: no desk database is configured.")
        assert win.user_status.text() == "User: cora (compliance) · offline"
        assert not win.act_new.isEnabled()
        assert win.act_new.toolTip() == "The compliance role may not capture trades."
        assert win.act_sign_out.isEnabled()
        assert win.ctx.trading.user == "cora"
        assert not win.limits_panel.add_button.isEnabled()
    finally:
        close_window(win)
