"""Demo data: a clearly labelled demo desk so every panel has something real to show.

Everything seeded here is flagged ``is_demo`` and its books are named ``DEMO ...``; ``clear_demo``
removes exactly that and nothing a user captured in their own books. Prices are drawn around
realistic late-2026 levels for each hub; counterparties are fictitious but carry LEIs with valid
ISO 17442 check digits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal

import numpy as np
from sqlalchemy import delete, func, insert, select

from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.entities import Book, Counterparty, Product, Trade
from app.models.enums import (
    Commodity,
    ExerciseStyle,
    InstrumentType,
    OptionType,
    Side,
    TradeStatus,
)
from app.models.lei import lei_with_check_digits
from app.models.store import Store
from app.models.types import PRICE_PLACES, QUANTITY_PLACES, utcnow

DEMO_USER = "demo"


# name, LEI prefix (18 chars; check digits appended), country, Islamic finance
COUNTERPARTIES: list[tuple[str, str, str, bool]] = [
    ("Northwind Energy Trading AG", "5299001NWETDEMO001", "DE", False),
    ("Fjordkraft Handel AS (demo)", "5967007FJKDEMO0002", "NO", False),
    ("Gulf Horizon Petroleum DMCC", "254900GHPDEMO00003", "AE", True),
    ("Al Noor Commodities WLL", "254900ANCDEMO00004", "BH", True),
    ("Meridian Gas Supply Ltd", "213800MGSDEMO00005", "GB", False),
    ("Lone Star Midstream LLC", "549300LSMDEMO00006", "US", False),
    ("Rheinland Stadtwerke GmbH", "391200RSWDEMO00007", "DE", False),
    ("Alpine Hydro Trading SA", "5067001AHTDEMO0008", "CH", False),
    ("Atlantic Refining Corp", "549300ARCDEMO00009", "US", False),
    ("Iberia Power Merchants SL", "959800IPMDEMO00010", "ES", False),
    ("Kuala Energy Sukuk Bhd", "254900KESDEMO00011", "MY", True),
    ("Baltic LNG Partners AB", "549300BLPDEMO00012", "SE", False),
]

BOOKS = [
    ("DEMO Power", "Demo book: European and US power forwards"),
    ("DEMO Gas", "Demo book: natural gas (Henry Hub, TTF, NBP)"),
    ("DEMO Oil", "Demo book: crude and refined products"),
]
_BOOK_FOR = {
    Commodity.POWER: "DEMO Power",
    Commodity.NATURAL_GAS: "DEMO Gas",
    Commodity.CRUDE: "DEMO Oil",
    Commodity.REFINED: "DEMO Oil",
}


def ensure_reference_data(store: Store) -> None:
    """Create the standard product list (not demo: real hubs a desk trades) if missing."""
    with store.session() as s:
        have = set(s.scalars(select(Product.code)))
        for p in PRODUCT_SPECS:
            code, name, com, hub, unit, ccy = p.code, p.name, p.commodity, p.hub, p.unit, p.currency
            size, shape, floor, cap = p.contract_size, p.load_shape, p.price_floor, p.price_cap
            if code in have:
                continue
            s.add(
                Product(
                    code=code,
                    name=name,
                    commodity=com,
                    hub=hub,
                    unit=unit,
                    currency=ccy,
                    contract_size=Decimal(size),
                    load_shape=shape,
                    price_floor=Decimal(floor),
                    price_cap=Decimal(cap),
                )
            )


def has_demo(store: Store) -> bool:
    with store.session() as s:
        return bool(s.scalar(select(func.count()).select_from(Book).where(Book.is_demo)))


def clear_demo(store: Store) -> int:
    """Remove demo trades, demo books and demo counterparties; returns trades removed.

    Refuses (``ValueError``) when a non-demo trade references a demo counterparty.
    """
    with store.session() as s:
        demo_books = select(Book.id).where(Book.is_demo)
        demo_cps = select(Counterparty.id).where(Counterparty.is_demo)
        used = s.scalar(
            select(func.count())
            .select_from(Trade)
            .where(Trade.counterparty_id.in_(demo_cps), Trade.book_id.not_in(demo_books))
        )
        if used:
            raise ValueError(
                f"{used} trade versions in your own books use demo counterparties; "
                "amend them before clearing the demo data."
            )
        n = s.execute(delete(Trade).where(Trade.book_id.in_(demo_books))).rowcount  # type: ignore[attr-defined]
        s.execute(delete(Book).where(Book.is_demo))
        s.execute(delete(Counterparty).where(Counterparty.is_demo))
        return int(n)


def _month_add(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    return dt.date(d.year + y, m + 1, 1)


def seed_demo(
    store: Store,
    n_trades: int = 5000,
    *,
    seed: int = 20261124,
    today: dt.date | None = None,
    months: int = 24,
    chunk: int = 20_000,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Seed the demo desk with ``n_trades`` trades over ``months`` delivery months.

    Deterministic for a given ``seed`` and ``today``. Returns the number of trades written.
    """
    ensure_reference_data(store)
    today = today or dt.date.today()
    now = utcnow()
    with store.session() as s:
        books = {b.name: b.id for b in s.scalars(select(Book))}
        for name, desc in BOOKS:
            if name not in books:
                b = Book(name=name, description=desc, is_demo=True)
                s.add(b)
                s.flush()
                books[name] = b.id
        cps = {c.name: c.id for c in s.scalars(select(Counterparty))}
        for name, prefix, country, islamic in COUNTERPARTIES:
            if name not in cps:
                c = Counterparty(
                    name=name,
                    lei=lei_with_check_digits(prefix),
                    country=country,
                    is_islamic=islamic,
                    is_demo=True,
                )
                s.add(c)
                s.flush()
                cps[name] = c.id
        products = {p.code: p for p in s.scalars(select(Product))}

    rng = np.random.default_rng(seed)
    spec = PRODUCT_BY_CODE
    codes = list(spec)
    cp_ids = np.array([cps[c[0]] for c in COUNTERPARTIES])
    first_month = _month_add(today, 1)
    written = 0
    q_scale, p_scale = 10**QUANTITY_PLACES, 10**PRICE_PLACES
    statuses = [
        TradeStatus.CAPTURED,
        TradeStatus.VALIDATED,
        TradeStatus.CONFIRMED,
        TradeStatus.ALLOCATED,
        TradeStatus.CANCELLED,
    ]
    status_p = [0.35, 0.25, 0.3, 0.07, 0.03]
    while written < n_trades:
        if cancelled is not None and cancelled():
            break
        n = min(chunk, n_trades - written)
        prod_i = rng.integers(0, len(codes), n)
        month_i = rng.integers(0, months, n)
        tenor_len = rng.choice([1, 1, 1, 1, 3, 3, 6, 12], n)  # month, quarter, season, year
        cp_i = rng.integers(0, len(cp_ids), n)
        side_i = rng.integers(0, 2, n)
        lots = rng.integers(1, 26, n)
        shock = rng.normal(0.0, 0.06, n)
        days_ago = rng.integers(0, 120, n)
        status_i = rng.choice(len(statuses), n, p=status_p)
        is_opt = rng.random(n) < 0.1
        rows = []
        for k in range(n):
            code = codes[prod_i[k]]
            p = spec[code]
            prod = products[code]
            start = _month_add(first_month, int(month_i[k]))
            end = _month_add(start, int(tenor_len[k])) - dt.timedelta(days=1)
            # Winter premium for gas and power: a seasonal shape on the price level.
            season = 1.0 + (0.12 if start.month in (11, 12, 1, 2) else 0.0) * (
                p.commodity in (Commodity.NATURAL_GAS, Commodity.POWER)
            )
            price = round(
                p.typical_level * season * float(np.exp(shock[k])), 4 if p.typical_level < 20 else 2
            )
            qty = int(lots[k]) * int(p.lot)
            option = bool(is_opt[k]) and p.commodity is not Commodity.POWER
            trade_date = today - dt.timedelta(days=int(days_ago[k]))
            row = {
                "trade_uuid": uuid.UUID(bytes=rng.bytes(16), version=4),
                "version": 1,
                "is_current": True,
                "book_id": books[_BOOK_FOR[p.commodity]],
                "counterparty_id": int(cp_ids[cp_i[k]]),
                "product_id": prod.id,
                "instrument": (
                    InstrumentType.OPTION
                    if option
                    else (
                        InstrumentType.PHYSICAL_FORWARD,
                        InstrumentType.FUTURE,
                        InstrumentType.SWAP,
                    )[k % 3]
                ),
                "side": Side.BUY if side_i[k] else Side.SELL,
                "quantity": Decimal(qty * q_scale).scaleb(-QUANTITY_PLACES),
                "quantity_unit": p.unit,
                "price": Decimal(round(price * p_scale)).scaleb(-PRICE_PLACES),
                "currency": p.currency,
                "trade_date": trade_date,
                "delivery_start": start,
                "delivery_end": end,
                "status": statuses[status_i[k]],
                "option_type": None,
                "strike": None,
                "expiry_date": None,
                "exercise_style": None,
                "premium": None,
                "comment": "demo",
                "created_by": DEMO_USER,
                "created_at": now,
                "updated_by": DEMO_USER,
                "updated_at": now,
            }
            if option:
                strike = round(price * (1 + 0.05 * (int(lots[k]) % 5 - 2)), 2 if price > 20 else 3)
                row.update(
                    option_type=OptionType.CALL if k % 2 else OptionType.PUT,
                    strike=Decimal(str(strike)),
                    expiry_date=max(start - dt.timedelta(days=5), trade_date),
                    exercise_style=ExerciseStyle.EUROPEAN if k % 4 else ExerciseStyle.ASIAN,
                    premium=Decimal(str(round(max(price * 0.04, 0.001), 3))),
                )
            rows.append(row)
        with store.session() as s:
            s.execute(insert(Trade), rows)
        written += n
        if progress is not None:
            progress(written / n_trades)
    return written
