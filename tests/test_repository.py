"""TradeRepository on SQLite and PostgreSQL: exact decimals, versions, blotter columns, demo desk."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select, text

from app.models import repository as repository_module
from app.models.demo import clear_demo, ensure_reference_data, has_demo, seed_demo
from app.models.entities import Book, Counterparty, Product, Trade
from app.models.enums import (
    Commodity,
    ExerciseStyle,
    InstrumentType,
    OptionType,
    Side,
    TradeStatus,
    Unit,
)
from app.models.lei import is_valid_lei
from app.models.repository import (
    StaleVersionError,
    TradeNotFoundError,
    TradeRecord,
    TradeRepository,
)
from app.models.store import Store

EPOCH = dt.date(1970, 1, 1)


@dataclass
class Desk:
    store: Store
    repo: TradeRepository
    book_id: int
    cp_id: int
    products: dict[str, int]

    def econ(self, product: str = "CR-BRENT", **kw: Any) -> dict[str, Any]:
        unit = {"CR-BRENT": Unit.BBL, "NG-HH": Unit.MMBTU, "PWR-DE-BASE": Unit.MWH}[product]
        ccy = {"CR-BRENT": "USD", "NG-HH": "USD", "PWR-DE-BASE": "EUR"}[product]
        econ: dict[str, Any] = {
            "book_id": self.book_id,
            "counterparty_id": self.cp_id,
            "product_id": self.products[product],
            "instrument": InstrumentType.SWAP,
            "side": Side.BUY,
            "quantity": Decimal("1000"),
            "quantity_unit": unit,
            "price": Decimal("74.25"),
            "currency": ccy,
            "trade_date": dt.date(2026, 1, 5),
            "delivery_start": dt.date(2026, 3, 1),
            "delivery_end": dt.date(2026, 3, 31),
        }
        econ.update(kw)
        return econ


@pytest.fixture
def desk(any_store: Store) -> Desk:
    ensure_reference_data(any_store)
    with any_store.session() as s:
        book = Book(name="Crude desk", description="a user's own book")
        cp = Counterparty(name="Bloomberg Finance", lei="5493001KJTIIGC8Y1R12", country="US")
        s.add_all([book, cp])
        s.flush()
        products = {p.code: p.id for p in s.scalars(select(Product))}
        return Desk(any_store, TradeRepository(any_store), book.id, cp.id, products)


def count_rows(store: Store) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(Trade)) or 0)


# -- exact decimals ----------------------------------------------------------------------------


def test_insert_stores_exact_decimals(desk: Desk) -> None:
    rec = desk.repo.insert_trades(
        [desk.econ(quantity=Decimal("1234.567"), price=Decimal("-37.630000"))], "alice"
    )[0]
    # Read back through a second Store so nothing comes from the first one's identity map.
    other = Store(desk.store.url)
    try:
        got = TradeRepository(other).get(rec.trade_uuid)
        with other.engine.connect() as conn:
            raw = conn.execute(
                text(
                    "SELECT quantity, price, strike FROM trade WHERE id = (SELECT MAX(id) FROM trade)"
                )
            ).one()
    finally:
        other.close()
    assert isinstance(got.quantity, Decimal) and isinstance(got.price, Decimal)
    assert str(got.quantity) == "1234.567"
    assert str(got.price) == "-37.630000"
    assert got.quantity.as_tuple() == Decimal("1234.567").as_tuple()
    assert got.price.as_tuple() == Decimal("-37.630000").as_tuple()
    # Stored as scaled integers: 10**3 for quantities, 10**6 for prices.
    assert tuple(raw) == (1234567, -37630000, None)


@pytest.mark.parametrize(
    ("field", "value", "stored"),
    [
        ("quantity", Decimal("0.001"), "0.001"),
        ("quantity", Decimal("9999999999999.999"), "9999999999999.999"),
        ("quantity", Decimal("25"), "25.000"),
        ("price", Decimal("0.000001"), "0.000001"),
        ("price", Decimal("-499.999999"), "-499.999999"),
        ("price", Decimal("1E+2"), "100.000000"),
        ("price", Decimal("3.10"), "3.100000"),
    ],
)
def test_decimal_edge_values_round_trip(
    desk: Desk, field: str, value: Decimal, stored: str
) -> None:
    rec = desk.repo.insert_trades([desk.econ(**{field: value})], "alice")[0]
    got = getattr(desk.repo.get(rec.trade_uuid), field)
    assert got == value
    assert str(got) == stored


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", Decimal("1.0005")),
        ("price", Decimal("74.1234567")),
        ("strike", Decimal("0.0000001")),
    ],
)
def test_too_many_decimal_places_raise_and_write_nothing(
    desk: Desk, field: str, value: Decimal
) -> None:
    good = desk.econ()
    bad = desk.econ(**{field: value})
    with pytest.raises(ValueError, match="decimal places"):
        desk.repo.insert_trades([good, bad], "alice")
    assert count_rows(desk.store) == 0


def test_insert_many_is_one_transaction(desk: Desk) -> None:
    recs = desk.repo.insert_trades([desk.econ(quantity=Decimal(n)) for n in (1, 2, 3)], "alice")
    assert [r.version for r in recs] == [1, 1, 1]
    assert len({r.trade_uuid for r in recs}) == 3
    assert all(r.is_current and r.status is TradeStatus.CAPTURED for r in recs)
    assert desk.repo.count_current() == 3
    assert [r.quantity for r in desk.repo.current_records()] == [1, 2, 3]


# -- versions ----------------------------------------------------------------------------------


def test_new_version(desk: Desk) -> None:
    v1 = desk.repo.insert_trades([desk.econ(comment="first")], "alice")[0]
    v2 = desk.repo.new_version(
        v1.trade_uuid, 1, "bob", {"quantity": Decimal("1500.5"), "comment": "more"}
    )
    assert (v2.version, v2.is_current) == (2, True)
    assert v2.trade_uuid == v1.trade_uuid
    assert v2.quantity == Decimal("1500.5") and v2.comment == "more"
    assert (v2.created_by, v2.created_at) == (v1.created_by, v1.created_at)
    assert v2.updated_by == "bob" and v2.updated_at >= v1.updated_at
    assert v2.price == v1.price and v2.status is v1.status

    history = desk.repo.history(v1.trade_uuid)
    assert [(h.version, h.is_current) for h in history] == [(1, False), (2, True)]
    assert history[0].quantity == Decimal("1000") and history[0].comment == "first"
    assert history[1] == v2
    assert desk.repo.get(v1.trade_uuid) == v2
    assert desk.repo.count_current() == 1
    assert count_rows(desk.store) == 2


def test_new_version_status_only(desk: Desk) -> None:
    v1 = desk.repo.insert_trades([desk.econ()], "alice")[0]
    v2 = desk.repo.new_version(v1.trade_uuid, 1, "ops", status=TradeStatus.CONFIRMED)
    assert v2.status is TradeStatus.CONFIRMED
    assert v2.economics() == v1.economics()


def test_stale_expected_version_writes_nothing(desk: Desk) -> None:
    v1 = desk.repo.insert_trades([desk.econ()], "alice")[0]
    desk.repo.new_version(v1.trade_uuid, 1, "bob", {"price": Decimal("75")})
    before = desk.repo.history(v1.trade_uuid)
    with pytest.raises(StaleVersionError, match="version 2, not 1"):
        desk.repo.new_version(v1.trade_uuid, 1, "carol", {"price": Decimal("99")})
    with pytest.raises(StaleVersionError):
        desk.repo.new_version(v1.trade_uuid, 3, "carol", {"price": Decimal("99")})
    assert desk.repo.history(v1.trade_uuid) == before
    assert count_rows(desk.store) == 2


def test_unknown_trade(desk: Desk) -> None:
    missing = uuid.uuid4()
    with pytest.raises(TradeNotFoundError):
        desk.repo.get(missing)
    with pytest.raises(TradeNotFoundError):
        desk.repo.history(missing)
    with pytest.raises(TradeNotFoundError):
        desk.repo.new_version(missing, 1, "bob", {"price": Decimal("1")})
    assert count_rows(desk.store) == 0


# -- blotter columns ---------------------------------------------------------------------------


def _expected_row(rec: TradeRecord) -> dict[str, Any]:
    """The blotter row of a record, computed with datetime/Decimal/list(Enum) only."""

    def code(value: Any, enum_cls: Any) -> int:
        return -1 if value is None else list(enum_cls).index(value)

    return {
        "trade_uuid": rec.trade_uuid.hex,
        "version": rec.version,
        "status": code(rec.status, TradeStatus),
        "book_id": rec.book_id,
        "counterparty_id": rec.counterparty_id,
        "product_id": rec.product_id,
        "instrument": code(rec.instrument, InstrumentType),
        "side": code(rec.side, Side),
        "quantity": int(rec.quantity * 1000),
        "quantity_unit": code(rec.quantity_unit, Unit),
        "price": int(rec.price * 1_000_000),
        "currency": rec.currency,
        "trade_date": (rec.trade_date - EPOCH).days,
        "delivery_start": (rec.delivery_start - EPOCH).days,
        "delivery_end": (rec.delivery_end - EPOCH).days,
        "option_type": code(rec.option_type, OptionType),
        "strike": -(2**63) if rec.strike is None else int(rec.strike * 1_000_000),
        "updated_by": rec.updated_by,
        "updated_at": (rec.updated_at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
        // dt.timedelta(seconds=1),
    }


def _rows(chunks: list[dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    out = []
    for chunk in chunks:
        n = len(chunk["row_id"])
        assert all(len(col) == n for col in chunk.values())
        for i in range(n):
            out.append({k: (v[i].item() if v.dtype != object else v[i]) for k, v in chunk.items()})
    return out


@pytest.fixture
def blotter_desk(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> tuple[Desk, list[TradeRecord]]:
    """Five trades of varied shape; one amended, one cancelled. Clock at x.8 seconds."""
    clock = iter(
        dt.datetime(2026, 11, 24, 9, 30, s, 800_000, tzinfo=dt.UTC) for s in range(0, 60, 7)
    )
    monkeypatch.setattr(repository_module, "utcnow", lambda: next(clock))
    recs = desk.repo.insert_trades(
        [
            desk.econ(),
            desk.econ(
                "NG-HH",
                instrument=InstrumentType.OPTION,
                side=Side.SELL,
                quantity=Decimal("30000"),
                price=Decimal("3.415"),
                option_type=OptionType.PUT,
                strike=Decimal("3.25"),
                expiry_date=dt.date(2026, 2, 24),
                exercise_style=ExerciseStyle.EUROPEAN,
                premium=Decimal("0.12"),
                delivery_start=dt.date(2026, 3, 1),
                delivery_end=dt.date(2026, 3, 31),
            ),
            desk.econ(
                "PWR-DE-BASE",
                instrument=InstrumentType.PHYSICAL_FORWARD,
                quantity=Decimal("720.5"),
                price=Decimal("-12.345678"),
                trade_date=dt.date(1969, 12, 31),
                delivery_start=dt.date(2027, 1, 1),
                delivery_end=dt.date(2027, 12, 31),
            ),
            desk.econ(instrument=InstrumentType.FUTURE, side=Side.SELL),
            desk.econ("NG-HH", quantity=Decimal("10000"), price=Decimal("3.1")),
        ],
        "alice",
    )
    amended = desk.repo.new_version(recs[0].trade_uuid, 1, "bob", {"price": Decimal("80.5")})
    cancelled = desk.repo.new_version(
        recs[3].trade_uuid, 1, "bob", {"comment": "oops"}, status=TradeStatus.CANCELLED
    )
    # Ordered by row id: new versions are new rows, so they come after untouched trades.
    current = [recs[1], recs[2], recs[4], amended, cancelled]
    assert desk.repo.current_records() == current
    return desk, current


def test_blotter_matches_orm_records(blotter_desk: tuple[Desk, list[TradeRecord]]) -> None:
    desk, current = blotter_desk
    chunks = list(desk.repo.blotter_chunks())
    assert len(chunks) == 1
    rows = _rows(chunks)
    assert len(rows) == len(current)  # only current versions, one row per trade
    for row, rec in zip(rows, current, strict=True):
        row_id = row.pop("row_id")
        assert row == _expected_row(rec)
        assert isinstance(row_id, int)
    ids = [r["row_id"] for r in _rows(chunks)]
    assert ids == sorted(ids)
    # dtypes as documented
    col = chunks[0]
    assert col["quantity"].dtype == np.int64 and col["price"].dtype == np.int64
    assert col["trade_date"].dtype == np.int32 and col["status"].dtype == np.int8


def test_blotter_known_values(blotter_desk: tuple[Desk, list[TradeRecord]]) -> None:
    """A few cells pinned to literal values, independent of any helper."""
    desk, current = blotter_desk
    rows = {r["trade_uuid"]: r for r in _rows(list(desk.repo.blotter_chunks()))}
    power = rows[current[1].trade_uuid.hex]
    assert power["trade_date"] == -1  # 1969-12-31
    assert power["delivery_start"] == 20819  # 2027-01-01: 57 * 365 + 14 leap days
    option = rows[current[0].trade_uuid.hex]
    assert option["strike"] == 3_250_000
    assert option["option_type"] == 1  # PUT is the second OptionType
    assert option["quantity"] == 30_000_000
    assert option["price"] == 3_415_000
    assert option["side"] == 1
    cancelled = rows[current[4].trade_uuid.hex]
    assert cancelled["status"] == 7 and cancelled["version"] == 2
    assert power["price"] == -12_345_678
    assert power["quantity"] == 720_500
    amended = rows[current[3].trade_uuid.hex]
    # 2026-11-24 09:30:07.8 UTC (the second clock tick) -> whole seconds, truncated
    assert amended["updated_at"] == 1795512607
    assert amended["version"] == 2 and amended["price"] == 80_500_000


def test_blotter_chunking_gives_same_rows(blotter_desk: tuple[Desk, list[TradeRecord]]) -> None:
    desk, current = blotter_desk
    whole = list(desk.repo.blotter_chunks())
    for size in (1, 2, 3, 5, 6):
        chunks = list(desk.repo.blotter_chunks(chunk_rows=size))
        assert len(chunks) == math.ceil(len(current) / size)
        assert all(len(c["row_id"]) <= size for c in chunks)
        for name in whole[0]:
            joined = np.concatenate([c[name] for c in chunks])
            assert joined.dtype == whole[0][name].dtype
            assert joined.tolist() == whole[0][name].tolist(), name


def test_blotter_cancelled_callback_stops(blotter_desk: tuple[Desk, list[TradeRecord]]) -> None:
    desk, _ = blotter_desk
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2

    chunks = list(desk.repo.blotter_chunks(chunk_rows=1, cancelled=cancelled))
    assert len(chunks) == 2


def test_blotter_by_uuid(blotter_desk: tuple[Desk, list[TradeRecord]]) -> None:
    desk, current = blotter_desk
    wanted = [current[4].trade_uuid, current[0].trade_uuid]
    rows = _rows(list(desk.repo.blotter_chunks(trade_uuids=wanted)))
    assert sorted(r["trade_uuid"] for r in rows) == sorted(u.hex for u in wanted)
    by_uuid = {r.pop("trade_uuid"): r for r in rows}
    for rec in (current[0], current[4]):
        expected = _expected_row(rec)
        expected.pop("trade_uuid")
        got = by_uuid[rec.trade_uuid.hex]
        got.pop("row_id")
        assert got == expected
    assert list(desk.repo.blotter_chunks(trade_uuids=[])) == []
    assert list(desk.repo.blotter_chunks(trade_uuids=[uuid.uuid4()])) == []


def test_blotter_by_many_uuids(desk: Desk) -> None:
    """More UUIDs than one IN (...) batch of 500."""
    recs = desk.repo.insert_trades([desk.econ(quantity=Decimal(n + 1)) for n in range(620)], "a")
    wanted = [r.trade_uuid for r in recs[::2]] + [uuid.uuid4() for _ in range(300)]
    rows = _rows(list(desk.repo.blotter_chunks(trade_uuids=wanted)))
    assert sorted(r["trade_uuid"] for r in rows) == sorted(r.trade_uuid.hex for r in recs[::2])
    assert sorted(r["quantity"] for r in rows) == [(n + 1) * 1000 for n in range(0, 620, 2)]


def test_blotter_empty_store(desk: Desk) -> None:
    assert list(desk.repo.blotter_chunks()) == []


# -- demo desk ---------------------------------------------------------------------------------


def _month_index(d: dt.date) -> int:
    return d.year * 12 + d.month - 1


def test_seed_demo(any_store: Store) -> None:
    today = dt.date(2026, 11, 24)
    progress: list[float] = []
    n = seed_demo(any_store, 600, today=today, chunk=250, progress=progress.append)
    assert n == 600
    assert progress == pytest.approx([250 / 600, 500 / 600, 1.0])
    assert has_demo(any_store)
    repo = TradeRepository(any_store)
    ref = repo.reference_data()
    trades = repo.current_records()
    assert len(trades) == 600 == repo.count_current()

    months = {_month_index(t.delivery_start) for t in trades}
    first = _month_index(dt.date(2026, 12, 1))
    assert months == set(range(first, first + 24))
    assert all(t.delivery_start.day == 1 and t.delivery_end >= t.delivery_start for t in trades)

    commodities = {ref.products[t.product_id].commodity for t in trades}
    assert {Commodity.POWER, Commodity.NATURAL_GAS} <= commodities
    assert commodities & {Commodity.CRUDE, Commodity.REFINED}
    book_for = {
        Commodity.POWER: "DEMO Power",
        Commodity.NATURAL_GAS: "DEMO Gas",
        Commodity.CRUDE: "DEMO Oil",
        Commodity.REFINED: "DEMO Oil",
    }
    for t in trades:
        product = ref.products[t.product_id]
        book = ref.books[t.book_id]
        assert book.is_demo and book.name.startswith("DEMO ")
        assert book.name == book_for[product.commodity]
        assert ref.counterparties[t.counterparty_id].is_demo
        assert t.quantity_unit is product.unit and t.currency == product.currency
        assert product.price_floor <= t.price <= product.price_cap
        assert t.trade_date <= today
        if t.instrument is InstrumentType.OPTION:
            assert t.option_type is not None and t.strike is not None
        else:
            assert t.option_type is None and t.strike is None

    demo_books = [b for b in ref.books.values() if b.is_demo]
    assert sorted(b.name for b in demo_books) == ["DEMO Gas", "DEMO Oil", "DEMO Power"]
    demo_cps = [c for c in ref.counterparties.values() if c.is_demo]
    assert len(demo_cps) == 12
    assert len({c.lei for c in demo_cps}) == 12
    for cp in demo_cps:
        assert is_valid_lei(cp.lei), cp
    assert all(Decimal(0) < t.quantity for t in trades)


def test_seed_demo_is_deterministic(any_store: Store, tmp_path: Path) -> None:
    today = dt.date(2026, 11, 24)
    seed_demo(any_store, 50, today=today)
    other = Store.open_file(tmp_path / "other.db")
    try:
        seed_demo(other, 50, today=today)

        def key(store: Store) -> list[tuple[Any, ...]]:
            return [
                (t.trade_uuid, t.quantity, t.price, t.delivery_start, t.side)
                for t in TradeRepository(store).current_records()
            ]

        assert key(any_store) == key(other)
    finally:
        other.close()


def test_clear_demo_keeps_user_trades(any_store: Store) -> None:
    seed_demo(any_store, 200, today=dt.date(2026, 11, 24))
    with any_store.session() as s:
        book = Book(name="My book", description="mine")
        cp = Counterparty(name="Apple Inc.", lei="HWUPKR0MPOU8FGXBT394", country="US")
        s.add_all([book, cp])
        s.flush()
        brent = s.scalar(select(Product).where(Product.code == "CR-BRENT"))
        assert brent is not None
        book_id, cp_id, brent_id = book.id, cp.id, brent.id
    repo = TradeRepository(any_store)
    mine = repo.insert_trades(
        [
            {
                "book_id": book_id,
                "counterparty_id": cp_id,
                "product_id": brent_id,
                "instrument": InstrumentType.SWAP,
                "side": Side.SELL,
                "quantity": Decimal("5000"),
                "quantity_unit": Unit.BBL,
                "price": Decimal("71.5"),
                "currency": "USD",
                "trade_date": dt.date(2026, 11, 20),
                "delivery_start": dt.date(2027, 1, 1),
                "delivery_end": dt.date(2027, 1, 31),
            }
        ],
        "alice",
    )[0]
    mine_v2 = repo.new_version(mine.trade_uuid, 1, "alice", {"quantity": Decimal("6000")})

    assert clear_demo(any_store) == 200
    assert not has_demo(any_store)
    ref = repo.reference_data()
    assert [b.name for b in ref.books.values()] == ["My book"]
    assert [c.name for c in ref.counterparties.values()] == ["Apple Inc."]
    assert len(ref.products) == 12  # standard products are not demo data
    assert repo.current_records() == [mine_v2]
    assert repo.history(mine.trade_uuid)[0].quantity == Decimal("5000")
    assert count_rows(any_store) == 2
    assert clear_demo(any_store) == 0  # idempotent


def test_clear_demo_refuses_when_user_trade_uses_demo_counterparty(any_store: Store) -> None:
    seed_demo(any_store, 30, today=dt.date(2026, 11, 24))
    repo = TradeRepository(any_store)
    ref = repo.reference_data()
    demo_cp = next(c for c in ref.counterparties.values() if c.is_demo)
    brent = ref.product_by_code("CR-BRENT")
    assert brent is not None
    with any_store.session() as s:
        book = Book(name="My book")
        s.add(book)
        s.flush()
        book_id = book.id
    repo.insert_trades(
        [
            {
                "book_id": book_id,
                "counterparty_id": demo_cp.id,
                "product_id": brent.id,
                "instrument": InstrumentType.SWAP,
                "side": Side.BUY,
                "quantity": Decimal("1"),
                "quantity_unit": Unit.BBL,
                "price": Decimal("70"),
                "currency": "USD",
                "trade_date": dt.date(2026, 11, 20),
                "delivery_start": dt.date(2027, 1, 1),
                "delivery_end": dt.date(2027, 1, 31),
            }
        ],
        "alice",
    )
    with pytest.raises(ValueError, match="use demo counterparties"):
        clear_demo(any_store)
    assert repo.count_current() == 31
    assert has_demo(any_store)
