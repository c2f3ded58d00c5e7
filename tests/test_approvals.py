"""Four-eyes approval: requests, decisions, execution through the services, audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from app.models.approvals import ApprovalRepository, ApprovalStateError, SelfApprovalError
from app.models.demo import ensure_reference_data
from app.models.entities import (
    ApprovalRequest,
    AuditRecord,
    Book,
    Counterparty,
    LimitKind,
    OutboxItem,
    UserRole,
)
from app.models.enums import TradeStatus
from app.models.limits import LimitDraft, LimitRepository, LimitValidationError
from app.models.repository import StaleVersionError, TradeRecord, TradeRepository
from app.models.store import Store
from app.services.approvals import (
    ApprovalApplyError,
    ApprovalRequired,
    ApprovalService,
    changes,
    why_cannot_decide,
)
from app.services.auth import PermissionDenied, Principal
from app.services.events import APPROVALS_CHANGED, EventBus
from app.services.limits import LimitService
from app.services.trading import TradeValidationError, TradingService
from tests.test_trading import raw_trade

ALICE = Principal.of("alice", UserRole.TRADER, ["Crude desk"])
TOM = Principal.of("tom", UserRole.TRADER, ["Crude desk"])
RITA = Principal.of("rita", UserRole.RISK_MANAGER)
ROB = Principal.of("rob", UserRole.RISK_MANAGER)
BO = Principal.of("bo", UserRole.BACK_OFFICE)
OWNER = Principal.local_owner("owner")


@dataclass
class Desk:
    store: Store
    trading: TradingService
    limits: LimitService
    approvals: ApprovalService
    events: list[dict[str, Any]]
    book_id: int

    def as_user(self, p: Principal) -> None:
        self.trading.set_principal(p)
        self.limits.set_principal(p)

    def confirmed_trade(self) -> TradeRecord:
        self.as_user(ALICE)
        v1 = self.trading.capture(raw_trade())
        return self.trading.repo.new_version(v1.trade_uuid, 1, "bo", status=TradeStatus.CONFIRMED)


def make_desk(sqlite_store: Store) -> Desk:
    """Services over ``sqlite_store`` with a non-demo book "Crude desk" and a counterparty."""
    ensure_reference_data(sqlite_store)
    with sqlite_store.session() as s:
        book = Book(name="Crude desk", is_demo=False)
        s.add(book)
        s.add(Counterparty(name="Bloomberg Finance", lei="5493001KJTIIGC8Y1R12", country="US"))
        s.flush()
        book_id = book.id
    bus = EventBus()
    events: list[dict[str, Any]] = []
    bus.subscribe(APPROVALS_CHANGED, lambda **kw: events.append(kw))
    trading = TradingService(TradeRepository(sqlite_store), bus, principal=ALICE)
    limits = LimitService(LimitRepository(sqlite_store), principal=ALICE)
    approvals = ApprovalService(sqlite_store, bus, trading, limits, lambda: trading.principal)
    return Desk(sqlite_store, trading, limits, approvals, events, book_id)


@pytest.fixture
def desk(sqlite_store: Store) -> Iterator[Desk]:
    yield make_desk(sqlite_store)


def audit_rows(store: Store, entity: str, entity_id: str) -> list[AuditRecord]:
    with store.session() as s:
        return list(
            s.scalars(
                select(AuditRecord)
                .where(AuditRecord.entity == entity, AuditRecord.entity_id == entity_id)
                .order_by(AuditRecord.seq)
            )
        )


# -- trades ---------------------------------------------------------------------------------


def test_amend_of_confirmed_trade_needs_approval_and_changes_nothing(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    with pytest.raises(ApprovalRequired) as info:
        desk.trading.amend(v2.trade_uuid, 2, raw_trade(quantity="2000"))
    assert info.value.kind == "trade_amend" and "four-eyes" in str(info.value)
    with pytest.raises(ApprovalRequired):
        desk.trading.cancel(v2.trade_uuid, 2, "booked twice")
    assert desk.trading.repo.get(v2.trade_uuid) == v2  # still version 2, untouched
    # A captured trade is amended directly, no approval involved.
    v1 = desk.trading.capture(raw_trade())
    assert desk.trading.amend(v1.trade_uuid, 1, raw_trade(quantity="5")).version == 2


def test_request_then_second_user_approves_and_change_takes_effect(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_amend(
        v2.trade_uuid, 2, raw_trade(quantity="2500"), "broker corrected the volume"
    )
    assert req.state == "pending" and req.requested_by == "alice"
    assert ("Quantity", "1000", "2500") in changes(req)
    assert desk.trading.repo.get(v2.trade_uuid).version == 2  # nothing yet
    desk.as_user(RITA)
    done = desk.approvals.approve(req.request_uuid, "ok")
    assert done.state == "applied" and done.decided_by == "rita"
    cur = desk.trading.repo.get(v2.trade_uuid)
    assert cur.version == 3 and cur.quantity == Decimal(2500) and cur.updated_by == "rita"
    assert cur.status is TradeStatus.CONFIRMED
    assert "four-eyes: requested by alice, approved by rita" in cur.comment
    # Both names are in the audit trail: the request by alice, decision and execution by rita.
    trail = audit_rows(desk.store, "approval", req.request_uuid)
    assert [(r.action, r.username) for r in trail] == [
        ("request", "alice"), ("approve", "rita"), ("applied", "rita")
    ]  # fmt: skip
    amend = audit_rows(desk.store, "trade", v2.trade_uuid.hex)[-1]
    body = json.loads(amend.body)
    assert amend.username == "rita" and "requested by alice" in body["after"]["comment"]
    assert trail[-1].seq == amend.seq + 1  # applied in the amendment's own transaction
    with desk.store.session() as s:
        ob = s.scalars(select(OutboxItem).where(OutboxItem.entity == "approval")
                       .order_by(OutboxItem.id)).all()  # fmt: skip
    assert [o.version for o in ob] == [1, 2, 3]
    assert json.loads(ob[-1].payload or "{}")["book"] == "Crude desk"
    assert [e["state"] for e in desk.events] == ["pending", "approved", "applied"]


def test_self_approval_is_refused_also_for_the_local_owner(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    desk.as_user(RITA)  # a risk manager may approve -- but not a request of their own
    req = desk.approvals.request_limit_change(
        LimitDraft(desk.book_id, LimitKind.STRESS, "1000", currency="USD"), "new desk"
    )
    with pytest.raises(SelfApprovalError):
        desk.approvals.approve(req.request_uuid)
    with pytest.raises(SelfApprovalError):
        ApprovalRepository(desk.store).decide(req.request_uuid, "rita", True)
    assert "own request" in (why_cannot_decide(req, RITA) or "")

    desk.as_user(OWNER)
    own = desk.approvals.request_trade_cancel(v2.trade_uuid, 2, "duplicate")
    with pytest.raises(SelfApprovalError):
        desk.approvals.approve(own.request_uuid)
    why = why_cannot_decide(own, OWNER) or ""
    assert "own request" in why and "second user signs in" in why
    assert desk.approvals.get(own.request_uuid).state == "pending"
    assert desk.trading.repo.get(v2.trade_uuid).status is TradeStatus.CONFIRMED


def test_trader_may_not_approve_and_back_office_may_not_approve_limits(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_cancel(v2.trade_uuid, 2, "wrong counterparty")
    desk.as_user(TOM)
    with pytest.raises(PermissionDenied):
        desk.approvals.approve(req.request_uuid)
    assert why_cannot_decide(req, TOM) is not None
    desk.as_user(RITA)
    lim = desk.approvals.request_limit_change(
        LimitDraft(desk.book_id, LimitKind.STRESS, "1000", currency="USD"), "new desk"
    )
    desk.as_user(BO)
    with pytest.raises(PermissionDenied, match="not limit changes"):
        desk.approvals.approve(lim.request_uuid)
    done = desk.approvals.approve(req.request_uuid, "agreed")  # trades: back office may
    assert done.state == "applied"
    assert desk.trading.repo.get(v2.trade_uuid).status is TradeStatus.CANCELLED


def test_rejected_request_leaves_the_trade_untouched(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(price="80"), "repriced")
    desk.as_user(RITA)
    out = desk.approvals.reject(req.request_uuid, "price is right as booked")
    assert out.state == "rejected" and out.decision_comment == "price is right as booked"
    assert desk.trading.repo.get(v2.trade_uuid) == v2
    with pytest.raises(ApprovalStateError):
        desk.approvals.approve(req.request_uuid)
    assert desk.trading.repo.get(v2.trade_uuid).version == 2


def test_stale_approval_fails_visibly(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(quantity="3"), "typo")
    desk.trading.repo.new_version(v2.trade_uuid, 2, "bo", status=TradeStatus.ALLOCATED)
    desk.as_user(ROB)
    with pytest.raises(ApprovalApplyError) as info:
        desk.approvals.approve(req.request_uuid)
    assert "could not be applied" in str(info.value) and "version 3" in str(info.value)
    rec = desk.approvals.get(req.request_uuid)
    assert rec.state == "rejected" and "not applied" in rec.decision_comment
    cur = desk.trading.repo.get(v2.trade_uuid)
    assert cur.version == 3 and cur.quantity == Decimal(1000)  # the amendment was not written


def test_invalid_request_is_refused_at_once(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    with pytest.raises(TradeValidationError) as info:
        desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(quantity="-1"), "x")
    assert "quantity" in info.value.errors
    with pytest.raises(StaleVersionError):
        desk.approvals.request_trade_cancel(v2.trade_uuid, 1, "late")
    desk.as_user(RITA)  # no AMEND permission: cannot even ask
    with pytest.raises(PermissionDenied):
        desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(quantity="9"), "why")
    desk.as_user(ALICE)
    with pytest.raises(PermissionDenied):  # a trader may not set limits
        desk.approvals.request_limit_change(
            LimitDraft(desk.book_id, LimitKind.STRESS, "1", currency="USD"), "r"
        )
    desk.as_user(RITA)
    with pytest.raises(LimitValidationError):
        desk.approvals.request_limit_change(LimitDraft(desk.book_id, "var", "-5"), "r")
    with desk.store.session() as s:
        assert s.scalars(select(ApprovalRequest)).all() == []


def test_amend_with_approval_of_another_trade_is_refused(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    other = desk.confirmed_trade()
    req = desk.approvals.request_trade_cancel(other.trade_uuid, 2, "dup")
    desk.as_user(RITA)
    ApprovalRepository(desk.store).decide(req.request_uuid, "rita", True)
    from app.models.approvals import ApprovalError

    with pytest.raises(ApprovalError, match="not for this change"):
        desk.trading.cancel(v2.trade_uuid, 2, "dup", approval=req.request_uuid)
    desk.as_user(ROB)  # neither requester nor approver
    with pytest.raises(PermissionDenied):
        desk.trading.cancel(other.trade_uuid, 2, "dup", approval=req.request_uuid)
    assert desk.trading.repo.get(other.trade_uuid).status is TradeStatus.CONFIRMED


# -- limits ---------------------------------------------------------------------------------


def test_limit_change_via_four_eyes(desk: Desk) -> None:
    desk.as_user(RITA)
    draft = LimitDraft(desk.book_id, LimitKind.STRESS, "1000", currency="USD")
    with pytest.raises(ApprovalRequired):
        desk.limits.create(draft, "rita")
    assert desk.limits.repo.list_limits(active_only=False) == []
    req = desk.approvals.request_limit_change(draft, "new stress limit")
    desk.as_user(ROB)
    assert desk.approvals.approve(req.request_uuid).state == "applied"
    (lim,) = desk.limits.repo.list_limits()
    assert lim.limit_value == Decimal(1000) and lim.created_by == "rob"
    assert "requested by rita, approved by rob" in lim.comment

    change = desk.approvals.request_limit_change(
        LimitDraft(desk.book_id, LimitKind.STRESS, "2500", currency="USD"), "more room",
        limit_id=lim.id, expected_version=lim.version,
    )  # fmt: skip
    assert ("Limit", "1000", "2500") in changes(change)
    with pytest.raises(ApprovalRequired):
        desk.limits.update(lim.id, lim.version, LimitDraft(desk.book_id, "stress", "9",
                                                           currency="USD"), "rob")  # fmt: skip
    desk.as_user(RITA)
    desk.approvals.approve(change.request_uuid)
    now = desk.limits.repo.get(lim.id)
    assert now.limit_value == Decimal(2500) and now.version == lim.version + 1

    off = desk.approvals.request_limit_change(
        None, "desk closed", limit_id=lim.id, expected_version=now.version, deactivate=True
    )
    with pytest.raises(ApprovalRequired):
        desk.limits.set_active(lim.id, now.version, False, "rita")
    desk.as_user(ROB)
    desk.approvals.approve(off.request_uuid)
    assert desk.limits.repo.list_limits() == []
    trail = audit_rows(desk.store, "approval", off.request_uuid)
    assert [(r.action, r.username) for r in trail] == [
        ("request", "rita"), ("approve", "rob"), ("applied", "rob")
    ]  # fmt: skip


def test_withdraw_only_by_requester(desk: Desk) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_cancel(v2.trade_uuid, 2, "dup")
    desk.as_user(RITA)
    from app.models.approvals import ApprovalError

    with pytest.raises(ApprovalError, match="Only alice"):
        desk.approvals.withdraw(req.request_uuid)
    desk.as_user(ALICE)
    assert desk.approvals.withdraw(req.request_uuid).state == "withdrawn"
    desk.as_user(RITA)
    with pytest.raises(ApprovalStateError):
        desk.approvals.approve(req.request_uuid)
    assert [r.state for r in desk.approvals.repo.list(requested_by="alice")] == ["withdrawn"]


def test_change_and_applied_mark_commit_together(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    v2 = desk.confirmed_trade()
    req = desk.approvals.request_trade_amend(v2.trade_uuid, 2, raw_trade(quantity="7"), "fix")

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(ApprovalRepository, "mark_applied", broken)
    desk.as_user(RITA)
    with pytest.raises(RuntimeError):
        desk.approvals.approve(req.request_uuid)
    assert desk.trading.repo.get(v2.trade_uuid) == v2  # the amendment was rolled back
    assert desk.approvals.get(req.request_uuid).state == "approved"
    monkeypatch.undo()
    assert desk.approvals.approve(req.request_uuid).state == "applied"  # the approver retries
    assert desk.trading.repo.get(v2.trade_uuid).quantity == Decimal(7)
