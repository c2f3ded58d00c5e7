"""Trading service: per-field validation, capture/amend/cancel, and the event bus."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from app.models.demo import ensure_reference_data
from app.models.entities import Book, Counterparty, Trade
from app.models.enums import (
    Commodity,
    ExerciseStyle,
    InstrumentType,
    LoadShape,
    OptionType,
    Side,
    TradeStatus,
    Unit,
)
from app.models.repository import (
    BookRef,
    CounterpartyRef,
    ProductRef,
    RefData,
    StaleVersionError,
    TradeRepository,
)
from app.models.store import Store
from app.services.events import TRADES_CHANGED, EventBus
from app.services.trading import TradeValidationError, TradingService, validate_trade

REQUIRED_FIELDS = [
    "book",
    "counterparty",
    "product",
    "instrument",
    "side",
    "quantity",
    "price",
    "trade_date",
    "delivery_start",
    "delivery_end",
]
OPTION_ONLY = ["option_type", "strike", "expiry_date", "exercise_style", "premium"]


@pytest.fixture
def ref() -> RefData:
    """Reference data built by hand (no store) for the pure validation tests."""
    return RefData(
        books={3: BookRef(3, "Crude desk", "", False)},
        counterparties={
            7: CounterpartyRef(7, "Bloomberg Finance", "5493001KJTIIGC8Y1R12", "US", False, False)
        },
        products={
            8: ProductRef(8, "CR-BRENT", "Brent Crude", Commodity.CRUDE, "Brent", Unit.BBL, "USD",
                          Decimal("1000"), None, Decimal("-50"), Decimal("300")),
            5: ProductRef(5, "NG-HH", "Henry Hub", Commodity.NATURAL_GAS, "Henry Hub",
                          Unit.MMBTU, "USD", Decimal("10000"), None, Decimal("-5"),
                          Decimal("100")),
            1: ProductRef(1, "PWR-DE-BASE", "German Power Base", Commodity.POWER,
                          "EEX German power", Unit.MWH, "EUR", Decimal("1"), LoadShape.BASE,
                          Decimal("-500"), Decimal("4000")),
        },
    )  # fmt: skip


def raw_trade(**kw: Any) -> dict[str, Any]:
    """A valid Brent swap as a form would submit it: every value a string."""
    raw: dict[str, Any] = {
        "book": "Crude desk",
        "counterparty": "Bloomberg Finance",
        "product": "CR-BRENT",
        "instrument": "Fixed-for-floating swap",
        "side": "Buy",
        "quantity": "1000",
        "price": "74.25",
        "trade_date": "2026-01-05",
        "delivery_start": "2026-03-01",
        "delivery_end": "2026-03-31",
        "option_type": "",
        "strike": "",
        "expiry_date": "",
        "exercise_style": "",
        "premium": "",
        "comment": "",
    }
    raw.update(kw)
    return raw


def raw_option(**kw: Any) -> dict[str, Any]:
    raw = raw_trade(
        product="NG-HH",
        instrument="Option",
        quantity="30,000",
        price="3.415",
        option_type="Call",
        strike="3.50",
        expiry_date="2026-02-24",
        exercise_style="European",
        premium="0.125",
    )
    raw.update(kw)
    return raw


# -- validation --------------------------------------------------------------------------------


def test_reference_raw_trade_is_valid(ref: RefData) -> None:
    res = validate_trade(raw_trade(), ref)
    assert res.ok, res.errors
    assert validate_trade(raw_option(), ref).ok


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
@pytest.mark.parametrize("blank", [None, "", "   ", "missing"])
def test_each_missing_required_field(ref: RefData, field: str, blank: Any) -> None:
    raw = raw_trade()
    if blank == "missing":
        del raw[field]
    else:
        raw[field] = blank
    res = validate_trade(raw, ref)
    assert not res.ok
    assert res.errors == {field: "required"}
    assert res.economics == {}


def test_all_required_fields_missing(ref: RefData) -> None:
    res = validate_trade({}, ref)
    assert res.errors == dict.fromkeys(REQUIRED_FIELDS, "required")


@pytest.mark.parametrize("qty", ["0", "-5", "0.000", "-0.001"])
def test_non_positive_quantity(ref: RefData, qty: str) -> None:
    res = validate_trade(raw_trade(quantity=qty), ref)
    assert res.errors == {"quantity": "must be positive (use Side for sell)"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quantity", "ten", "is not a number"),
        ("quantity", "1.0005", "more than 3 decimal places"),
        ("price", "74.1234567", "more than 6 decimal places"),
        ("price", "NaN", "not a finite number"),
        ("trade_date", "05/01/2026", "is not a date (use YYYY-MM-DD)"),
        ("delivery_start", "2026-02-30", "is not a date"),
        ("side", "long", "is not one of: Buy, Sell"),
        ("instrument", "forward-ish", "is not one of"),
    ],
)
def test_unparseable_values(ref: RefData, field: str, value: str, message: str) -> None:
    res = validate_trade(raw_trade(**{field: value}), ref)
    assert list(res.errors) == [field]
    assert message in res.errors[field]


def test_delivery_end_before_start(ref: RefData) -> None:
    res = validate_trade(raw_trade(delivery_start="2026-03-31", delivery_end="2026-03-01"), ref)
    assert res.errors == {"delivery_end": "delivery end is before delivery start"}
    # one-day delivery is fine
    ok = validate_trade(raw_trade(delivery_start="2026-03-01", delivery_end="2026-03-01"), ref)
    assert ok.ok


def test_trade_date_after_delivery(ref: RefData) -> None:
    res = validate_trade(raw_trade(trade_date="2026-04-01"), ref)
    assert res.errors == {"trade_date": "trade date is after the end of delivery"}


def test_trade_date_in_future(ref: RefData) -> None:
    future = dt.date.today() + dt.timedelta(days=10)
    raw = raw_trade(
        trade_date=future.isoformat(),
        delivery_start=(future + dt.timedelta(days=30)).isoformat(),
        delivery_end=(future + dt.timedelta(days=60)).isoformat(),
    )
    assert validate_trade(raw, ref).errors == {"trade_date": "trade date is in the future"}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("product", "XX-NOPE", "unknown product 'XX-NOPE'"),
        ("counterparty", "Nobody Ltd", "unknown counterparty 'Nobody Ltd'"),
        ("book", "Nope book", "unknown book 'Nope book'"),
        ("product", 99, "unknown product '99'"),
        ("counterparty", 3, "unknown counterparty '3'"),  # an id, but of a book
    ],
)
def test_unknown_reference(ref: RefData, field: str, value: Any, message: str) -> None:
    res = validate_trade(raw_trade(**{field: value}), ref)
    assert res.errors == {field: message}


def test_references_by_id_and_case_insensitive_name(ref: RefData) -> None:
    by_id = validate_trade(raw_trade(book=3, counterparty=7, product=8), ref)
    by_name = validate_trade(
        raw_trade(book=" crude DESK ", counterparty="BLOOMBERG finance", product="cr-brent"), ref
    )
    assert by_id.ok and by_name.ok
    assert by_id.economics == by_name.economics
    assert (by_id.economics["book_id"], by_id.economics["counterparty_id"]) == (3, 7)
    assert by_id.economics["product_id"] == 8


def test_price_outside_product_band(ref: RefData) -> None:
    res = validate_trade(raw_trade(price="5000"), ref)
    assert res.errors == {"price": "5000 is outside the sane band for CR-BRENT [-50, 300] USD/bbl"}


@pytest.mark.parametrize(
    ("price", "ok"),
    [("300", True), ("-50", True), ("-37.63", True), ("300.000001", False), ("-50.000001", False)],
)
def test_price_band_is_inclusive(ref: RefData, price: str, ok: bool) -> None:
    res = validate_trade(raw_trade(price=price), ref)
    assert res.ok is ok
    if not ok:
        assert "outside the sane band for CR-BRENT" in res.errors["price"]


def test_option_missing_all_option_fields(ref: RefData) -> None:
    raw = raw_trade(instrument="Option")
    res = validate_trade(raw, ref)
    assert res.errors == dict.fromkeys(OPTION_ONLY, "required for an option")


@pytest.mark.parametrize("field", OPTION_ONLY)
def test_option_missing_one_field(ref: RefData, field: str) -> None:
    res = validate_trade(raw_option(**{field: ""}), ref)
    assert res.errors == {field: "required for an option"}


@pytest.mark.parametrize(
    ("kw", "field", "message"),
    [
        ({"premium": "-0.1"}, "premium", "must not be negative"),
        ({"strike": "150"}, "strike", "outside the sane band for NG-HH"),
        ({"expiry_date": "2026-04-01"}, "expiry_date", "expiry is after the end of delivery"),
        ({"expiry_date": "2026-01-04"}, "expiry_date", "expiry is before the trade date"),
        ({"option_type": "straddle"}, "option_type", "is not one of: Call, Put"),
        ({"exercise_style": "Bermudan"}, "exercise_style", "is not one of"),
    ],
)
def test_option_field_problems(ref: RefData, kw: dict[str, str], field: str, message: str) -> None:
    res = validate_trade(raw_option(**kw), ref)
    assert list(res.errors) == [field]
    assert message in res.errors[field]


@pytest.mark.parametrize("field", OPTION_ONLY)
def test_non_option_must_not_carry_option_fields(ref: RefData, field: str) -> None:
    value = raw_option()[field]
    res = validate_trade(raw_trade(**{field: value}), ref)
    assert res.errors == {field: f"only options have {field.replace('_', ' ')}"}


def test_non_option_with_strike(ref: RefData) -> None:
    res = validate_trade(raw_trade(instrument="Future", strike="80"), ref)
    assert res.errors == {"strike": "only options have strike"}


def test_quantity_unit_must_match_product(ref: RefData) -> None:
    res = validate_trade(raw_trade(quantity_unit="MWh"), ref)
    assert res.errors == {"quantity_unit": "CR-BRENT trades in bbl, not MWh"}
    assert validate_trade(raw_trade(quantity_unit="bbl"), ref).ok


def test_comment_too_long(ref: RefData) -> None:
    res = validate_trade(raw_trade(comment="x" * 501), ref)
    assert res.errors == {"comment": "at most 500 characters"}
    assert validate_trade(raw_trade(comment="x" * 500), ref).ok


def test_valid_strings_parse_to_exact_types(ref: RefData) -> None:
    raw = raw_trade(
        instrument="physical forward",
        side="SELL",
        quantity=" 1,234.567 ",
        price="-37.63",
        trade_date="2026-01-05",
        delivery_start="2026-03-01T00:00:00",
        comment="  spread leg  ",
    )
    res = validate_trade(raw, ref)
    assert res.ok, res.errors
    expected = {
        "book_id": 3,
        "counterparty_id": 7,
        "product_id": 8,
        "quantity_unit": Unit.BBL,
        "currency": "USD",
        "instrument": InstrumentType.PHYSICAL_FORWARD,
        "side": Side.SELL,
        "quantity": Decimal("1234.567"),
        "price": Decimal("-37.63"),
        "trade_date": dt.date(2026, 1, 5),
        "delivery_start": dt.date(2026, 3, 1),
        "delivery_end": dt.date(2026, 3, 31),
        "comment": "spread leg",
        "option_type": None,
        "strike": None,
        "expiry_date": None,
        "exercise_style": None,
        "premium": None,
    }
    assert res.economics == expected
    econ = res.economics
    assert type(econ["quantity"]) is Decimal and type(econ["price"]) is Decimal
    assert str(econ["quantity"]) == "1234.567" and str(econ["price"]) == "-37.630000"
    assert type(econ["trade_date"]) is dt.date and type(econ["delivery_start"]) is dt.date
    assert econ["instrument"] is InstrumentType.PHYSICAL_FORWARD
    assert set(econ) == set(Trade.ECONOMIC_FIELDS)  # exactly the stored economics


def test_valid_option_parses(ref: RefData) -> None:
    res = validate_trade(raw_option(), ref)
    assert res.ok, res.errors
    econ = res.economics
    assert econ["option_type"] is OptionType.CALL
    assert econ["exercise_style"] is ExerciseStyle.EUROPEAN
    assert econ["strike"] == Decimal("3.5") and type(econ["strike"]) is Decimal
    assert econ["premium"] == Decimal("0.125")
    assert econ["expiry_date"] == dt.date(2026, 2, 24)
    assert econ["quantity"] == Decimal("30000")
    assert econ["quantity_unit"] is Unit.MMBTU


def test_already_typed_values_are_accepted(ref: RefData) -> None:
    raw = raw_trade(
        instrument=InstrumentType.SWAP,
        side=Side.BUY,
        quantity=Decimal("1000"),
        price=74.25,  # floats from spreadsheets keep their shortest repr
        trade_date=dt.datetime(2026, 1, 5, 14, 30),
        delivery_start=dt.date(2026, 3, 1),
        delivery_end=dt.date(2026, 3, 31),
    )
    res = validate_trade(raw, ref)
    assert res.ok, res.errors
    assert res.economics == validate_trade(raw_trade(), ref).economics


# -- service: capture, amend, cancel -----------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **payload: Any) -> None:
        self.calls.append(payload)


@pytest.fixture
def service(any_store: Store) -> Iterator[tuple[TradingService, Recorder]]:
    ensure_reference_data(any_store)
    with any_store.session() as s:
        s.add(Book(name="Crude desk"))
        s.add(Counterparty(name="Bloomberg Finance", lei="5493001KJTIIGC8Y1R12", country="US"))
    bus = EventBus()
    recorder = Recorder()
    bus.subscribe(TRADES_CHANGED, recorder)
    yield TradingService(TradeRepository(any_store), bus, user="alice"), recorder


def stored_rows(svc: TradingService) -> int:
    with svc.repo.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Trade)) or 0)


def test_capture_stores_and_publishes(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    rec = svc.capture(raw_trade(quantity="1,234.567", price="-37.63"))
    assert (rec.version, rec.is_current, rec.status) == (1, True, TradeStatus.CAPTURED)
    assert rec.created_by == rec.updated_by == "alice"
    assert events.calls == [{"trade_uuids": [rec.trade_uuid], "kind": "captured"}]
    assert isinstance(events.calls[0]["trade_uuids"][0], uuid.UUID)
    got = svc.repo.get(rec.trade_uuid)
    assert got == rec
    assert str(got.quantity) == "1234.567" and str(got.price) == "-37.630000"


def test_capture_invalid_raises_and_stores_nothing(
    service: tuple[TradingService, Recorder],
) -> None:
    svc, events = service
    with pytest.raises(TradeValidationError) as info:
        svc.capture(raw_trade(price="5000"))
    assert list(info.value.errors) == ["price"]
    assert isinstance(info.value, ValueError)
    assert "price: 5000 is outside" in str(info.value)
    assert stored_rows(svc) == 0
    assert events.calls == []


def test_capture_many_with_one_bad_row_stores_nothing(
    service: tuple[TradingService, Recorder],
) -> None:
    svc, events = service
    rows = [raw_trade(), raw_trade(quantity="-1"), raw_option(), raw_trade(product="NOPE")]
    with pytest.raises(TradeValidationError) as info:
        svc.capture_many(rows)
    assert info.value.errors == {
        "row 2.quantity": "must be positive (use Side for sell)",
        "row 4.product": "unknown product 'NOPE'",
    }
    assert stored_rows(svc) == 0
    assert events.calls == []


def test_capture_many_all_good(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    recs = svc.capture_many([raw_trade(), raw_option(), raw_trade(side="Sell")])
    assert len(recs) == 3 and stored_rows(svc) == 3
    assert events.calls == [{"trade_uuids": [r.trade_uuid for r in recs], "kind": "captured"}]
    assert [r.instrument for r in recs] == [
        InstrumentType.SWAP,
        InstrumentType.OPTION,
        InstrumentType.SWAP,
    ]


def test_amend_and_cancel_create_versions(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    v1 = svc.capture(raw_trade())
    raw = svc.raw_from_record(v1)
    raw["quantity"] = "2500"
    v2 = svc.amend(v1.trade_uuid, 1, raw)
    assert (v2.version, v2.quantity, v2.price) == (2, Decimal("2500"), Decimal("74.25"))
    v3 = svc.cancel(v1.trade_uuid, 2, "  booked twice ")
    assert v3.version == 3 and v3.status is TradeStatus.CANCELLED
    assert v3.comment == "Cancelled: booked twice"
    assert v3.quantity == Decimal("2500")

    history = svc.repo.history(v1.trade_uuid)
    assert [(h.version, h.is_current, h.status) for h in history] == [
        (1, False, TradeStatus.CAPTURED),
        (2, False, TradeStatus.CAPTURED),
        (3, True, TradeStatus.CANCELLED),
    ]
    assert [c["kind"] for c in events.calls] == ["captured", "amended", "cancelled"]
    assert all(c["trade_uuids"] == [v1.trade_uuid] for c in events.calls)


def test_cancel_twice_is_rejected(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    v1 = svc.capture(raw_trade())
    svc.cancel(v1.trade_uuid, 1, "wrong counterparty")
    with pytest.raises(TradeValidationError) as info:
        svc.cancel(v1.trade_uuid, 2, "again")
    assert info.value.errors == {"status": "the trade is already cancelled"}
    assert len(svc.repo.history(v1.trade_uuid)) == 2
    assert len(events.calls) == 2


def test_amending_a_cancelled_trade_is_rejected(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    v1 = svc.capture(raw_trade())
    svc.cancel(v1.trade_uuid, 1, "wrong counterparty")
    with pytest.raises(TradeValidationError) as info:
        svc.amend(v1.trade_uuid, 2, raw_trade(quantity="5"))
    assert info.value.errors == {"status": "a cancelled trade cannot be amended"}
    assert len(svc.repo.history(v1.trade_uuid)) == 2
    assert svc.repo.get(v1.trade_uuid).quantity == Decimal("1000")
    assert len(events.calls) == 2


def test_cancel_needs_a_reason(service: tuple[TradingService, Recorder]) -> None:
    svc, _ = service
    v1 = svc.capture(raw_trade())
    with pytest.raises(TradeValidationError) as info:
        svc.cancel(v1.trade_uuid, 1, "   ")
    assert list(info.value.errors) == ["comment"]
    assert svc.repo.get(v1.trade_uuid).status is TradeStatus.CAPTURED


def test_invalid_amendment_writes_nothing(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    v1 = svc.capture(raw_trade())
    with pytest.raises(TradeValidationError) as info:
        svc.amend(v1.trade_uuid, 1, raw_trade(delivery_end="2026-02-01"))
    assert list(info.value.errors) == ["delivery_end"]
    assert svc.repo.history(v1.trade_uuid) == [v1]
    assert len(events.calls) == 1


def test_stale_amendment_is_rejected(service: tuple[TradingService, Recorder]) -> None:
    svc, events = service
    v1 = svc.capture(raw_trade())
    svc.amend(v1.trade_uuid, 1, raw_trade(quantity="2000"))
    with pytest.raises(StaleVersionError):
        svc.amend(v1.trade_uuid, 1, raw_trade(quantity="3000"))
    with pytest.raises(StaleVersionError):
        svc.cancel(v1.trade_uuid, 1, "late")
    assert svc.repo.get(v1.trade_uuid).quantity == Decimal("2000")
    assert [c["kind"] for c in events.calls] == ["captured", "amended"]


def test_refdata_is_cached_until_refreshed(tmp_path: Path) -> None:
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        svc = TradingService(TradeRepository(store), EventBus(), user="alice")
        assert svc.refdata.book_by_name("Late book") is None
        with store.session() as s:
            s.add(Book(name="Late book"))
        assert svc.refdata.book_by_name("Late book") is None
        assert svc.refresh_refdata().book_by_name("Late book") is not None
    finally:
        store.close()


# -- event bus ---------------------------------------------------------------------------------


def test_failing_handler_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    before, after, other_topic = Recorder(), Recorder(), Recorder()

    def broken(**payload: Any) -> None:
        raise RuntimeError("handler exploded")

    bus.subscribe(TRADES_CHANGED, before)
    bus.subscribe(TRADES_CHANGED, broken)
    bus.subscribe(TRADES_CHANGED, after)
    bus.subscribe("some.other.topic", other_topic)
    u = uuid.uuid4()
    with caplog.at_level(logging.ERROR, logger="app.services.events"):
        bus.publish(TRADES_CHANGED, trade_uuids=[u], kind="captured")

    assert before.calls == after.calls == [{"trade_uuids": [u], "kind": "captured"}]
    assert other_topic.calls == []
    errors = [r for r in caplog.records if r.name == "app.services.events"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert TRADES_CHANGED in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
    assert "handler exploded" in caplog.text


def test_unsubscribe(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    rec = Recorder()
    bus.subscribe("t", rec)
    bus.publish("t", n=1)
    bus.unsubscribe("t", rec)
    bus.unsubscribe("t", rec)  # twice is harmless
    bus.publish("t", n=2)
    assert rec.calls == [{"n": 1}]


def test_service_survives_failing_subscriber(
    any_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    ensure_reference_data(any_store)
    with any_store.session() as s:
        s.add(Book(name="Crude desk"))
        s.add(Counterparty(name="Bloomberg Finance", lei="5493001KJTIIGC8Y1R12", country="US"))
    bus = EventBus()

    def broken(**payload: Any) -> None:
        raise KeyError("view is gone")

    rec = Recorder()
    bus.subscribe(TRADES_CHANGED, broken)
    bus.subscribe(TRADES_CHANGED, rec)
    svc = TradingService(TradeRepository(any_store), bus, user="alice")
    with caplog.at_level(logging.ERROR, logger="app.services.events"):
        trade = svc.capture(raw_trade())
    assert rec.calls == [{"trade_uuids": [trade.trade_uuid], "kind": "captured"}]
    assert svc.repo.get(trade.trade_uuid) == trade
    assert "failed on trades.changed" in caplog.text
