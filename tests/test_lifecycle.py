"""The trade lifecycle state machine: one step at a time, Cancelled terminal, back office
beyond Validated, a new version per step, TRADES_CHANGED kind "lifecycle"."""

from __future__ import annotations

from typing import Any

import pytest

from app.models.demo import ensure_reference_data
from app.models.entities import Book, Counterparty, UserRole
from app.models.enums import TradeStatus
from app.models.repository import StaleVersionError, TradeRepository
from app.models.store import Store
from app.services.auth import PermissionDenied, Principal
from app.services.events import TRADES_CHANGED, EventBus
from app.services.trading import (
    LIFECYCLE,
    TradeValidationError,
    TradingService,
    check_step,
    next_status,
)

S = TradeStatus


def raw(**kw: Any) -> dict[str, Any]:
    out = {"book": "DESK-A", "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
           "instrument": "Fixed-for-floating swap", "side": "Sell", "quantity": "500",
           "price": "70", "trade_date": "2026-01-05", "delivery_start": "2026-03-01",
           "delivery_end": "2026-03-31"}  # fmt: skip
    out.update(kw)
    return out


@pytest.fixture
def svc(any_store: Store) -> TradingService:
    ensure_reference_data(any_store)
    with any_store.session() as s:
        s.add(Book(name="DESK-A"))
        s.add(Counterparty(name="Northwind Energy AG", lei="5493001KJTIIGC8Y1R12", country="DE"))
    return TradingService(TradeRepository(any_store), EventBus(), user="owner")


def test_next_status_walks_the_lifecycle() -> None:
    assert [next_status(s) for s in LIFECYCLE] == [*LIFECYCLE[1:], None]
    assert LIFECYCLE[0] is S.CAPTURED and LIFECYCLE[-1] is S.PAID
    assert next_status(S.CANCELLED) is None
    assert set(LIFECYCLE) | {S.CANCELLED} == set(TradeStatus)


@pytest.mark.parametrize(
    ("current", "target", "why"),
    [
        (S.CAPTURED, S.CONFIRMED, "can only move to Validated"),  # jump
        (S.CAPTURED, S.PAID, "can only move to Validated"),
        (S.SETTLED, S.ALLOCATED, "can only move to Invoiced"),  # step back
        (S.VALIDATED, S.VALIDATED, "can only move to Confirmed"),  # no-op
        (S.PAID, S.CAPTURED, "last step"),
        (S.CANCELLED, S.CAPTURED, "cancelled trade cannot move"),
        (S.CAPTURED, S.CANCELLED, "use Cancel"),
    ],
)
def test_illegal_steps(current: TradeStatus, target: TradeStatus, why: str) -> None:
    with pytest.raises(TradeValidationError, match=why):
        check_step(current, target)


def test_full_walk_writes_one_version_per_step(svc: TradingService) -> None:
    events: list[dict[str, Any]] = []
    svc.bus.subscribe(TRADES_CHANGED, lambda **kw: events.append(kw))
    rec = svc.capture(raw())
    for target in LIFECYCLE[1:]:
        rec = svc.advance(rec.trade_uuid, rec.version, target)
        assert rec.status is target
    assert rec.version == len(LIFECYCLE)
    hist = svc.repo.history(rec.trade_uuid)
    assert [h.status for h in hist] == list(LIFECYCLE)
    assert all(h.economics() == hist[0].economics() for h in hist)  # economics unchanged
    assert [e["kind"] for e in events] == ["captured"] + ["lifecycle"] * (len(LIFECYCLE) - 1)
    with pytest.raises(TradeValidationError, match="last step"):
        svc.advance(rec.trade_uuid, rec.version, S.CAPTURED)


def test_jump_and_cancelled_are_refused_without_writing(svc: TradingService) -> None:
    rec = svc.capture(raw())
    with pytest.raises(TradeValidationError, match="Captured -> Settled"):
        svc.advance(rec.trade_uuid, 1, S.SETTLED)
    assert svc.repo.get(rec.trade_uuid).version == 1
    gone = svc.cancel(rec.trade_uuid, 1, "duplicate")
    with pytest.raises(TradeValidationError, match="cancelled"):
        svc.advance(rec.trade_uuid, gone.version, S.VALIDATED)
    assert svc.repo.get(rec.trade_uuid).version == 2


def test_stale_version_is_refused(svc: TradingService) -> None:
    rec = svc.capture(raw())
    svc.advance(rec.trade_uuid, 1, S.VALIDATED)
    with pytest.raises(StaleVersionError):
        svc.advance(rec.trade_uuid, 1, S.CONFIRMED)  # expected 1, is 2


def test_trader_validates_back_office_confirms(svc: TradingService) -> None:
    rec = svc.capture(raw())
    trader = Principal.of("tina", UserRole.TRADER, {"DESK-A"})
    bo = Principal.of("bob", UserRole.BACK_OFFICE)
    svc.set_principal(trader)
    rec = svc.advance(rec.trade_uuid, rec.version, S.VALIDATED)
    assert rec.updated_by == "tina"
    with pytest.raises(PermissionDenied, match="back-office step"):
        svc.advance(rec.trade_uuid, rec.version, S.CONFIRMED)
    svc.set_principal(bo)
    rec = svc.advance(rec.trade_uuid, rec.version, S.CONFIRMED)
    assert (rec.status, rec.updated_by, rec.version) == (S.CONFIRMED, "bob", 3)
    with pytest.raises(PermissionDenied):  # back office may not cancel
        svc.cancel(rec.trade_uuid, rec.version, "no")
