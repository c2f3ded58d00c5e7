"""Repository: the only way the rest of the application reads and writes trades.

Writes go through ORM sessions (one per unit of work); the blotter reads current trade versions
as *columns* (numpy arrays of integer codes) straight from the DB-API cursor, which keeps a
million-row load within seconds and a few hundred MB.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, false, func, select, update

from app.models import audit, outbox
from app.models.entities import Book, Counterparty, Product, Trade
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
from app.models.payload import columns_from_payload, trade_payload
from app.models.store import Store
from app.models.types import utcnow

#: Sentinel for "no value" in integer blotter columns.
NULL_INT = np.iinfo(np.int64).min


def _current_version_of(trade_uuid: uuid.UUID) -> ColumnElement[bool]:
    """WHERE clause for the current version of one trade, found through the trade_uuid index.

    Without planner statistics (SQLite stores are never ANALYZEd) SQLite answers
    ``trade_uuid = ? AND is_current`` through ix_trade_current (is_current, id), i.e. by scanning
    every current trade: ~0.2 s per lookup at a million trades. Wrapping ``is_current`` in an
    expression keeps it out of index selection; PostgreSQL picks the UUID index either way.
    """
    return and_(Trade.trade_uuid == trade_uuid, func.coalesce(Trade.is_current, false()).is_(True))


class StaleVersionError(Exception):
    """An amendment was based on a version that is no longer current."""


class DuplicateBookingError(ValueError):
    """A client-chosen trade id was already used for a different booking."""


class TradeNotFoundError(KeyError):
    """No trade with that UUID."""


@dataclass(frozen=True)
class BookRef:
    id: int
    name: str
    description: str
    is_demo: bool


@dataclass(frozen=True)
class CounterpartyRef:
    id: int
    name: str
    lei: str
    country: str
    is_islamic: bool
    is_demo: bool


@dataclass(frozen=True)
class ProductRef:
    id: int
    code: str
    name: str
    commodity: Commodity
    hub: str
    unit: Unit
    currency: str
    contract_size: Decimal
    load_shape: LoadShape | None
    price_floor: Decimal
    price_cap: Decimal


@dataclass(frozen=True)
class RefData:
    """Reference data snapshot (books, counterparties, products), keyed by id."""

    books: Mapping[int, BookRef] = field(default_factory=dict)
    counterparties: Mapping[int, CounterpartyRef] = field(default_factory=dict)
    products: Mapping[int, ProductRef] = field(default_factory=dict)

    def book_by_name(self, name: str) -> BookRef | None:
        return _by_name(self.books.values(), name, "name")

    def counterparty_by_name(self, name: str) -> CounterpartyRef | None:
        return _by_name(self.counterparties.values(), name, "name")

    def product_by_code(self, code: str) -> ProductRef | None:
        return _by_name(self.products.values(), code, "code")


def _by_name(items: Iterable[Any], name: str, attr: str) -> Any:
    key = name.strip().casefold()
    for item in items:
        if getattr(item, attr).casefold() == key:
            return item
    return None


@dataclass(frozen=True)
class TradeRecord:
    """An immutable snapshot of one trade version (safe to pass between threads)."""

    trade_uuid: uuid.UUID
    version: int
    is_current: bool
    book_id: int
    counterparty_id: int
    product_id: int
    instrument: InstrumentType
    side: Side
    quantity: Decimal
    quantity_unit: Unit
    price: Decimal
    currency: str
    trade_date: dt.date
    delivery_start: dt.date
    delivery_end: dt.date
    status: TradeStatus
    option_type: OptionType | None
    strike: Decimal | None
    expiry_date: dt.date | None
    exercise_style: ExerciseStyle | None
    premium: Decimal | None
    comment: str
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime

    @classmethod
    def from_orm(cls, t: Trade) -> TradeRecord:
        return cls(**{f: getattr(t, f) for f in cls.__dataclass_fields__})

    def economics(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in Trade.ECONOMIC_FIELDS}


# -- blotter columns ------------------------------------------------------------------------

#: Code tables for enum columns in the blotter: code i is ``list(Enum)[i]``.
ENUM_COLUMNS: dict[str, type] = {
    "status": TradeStatus,
    "instrument": InstrumentType,
    "side": Side,
    "quantity_unit": Unit,
    "option_type": OptionType,
}

#: Blotter column names, in load order, and their numpy dtypes.
BLOTTER_DTYPES: dict[str, Any] = {
    "row_id": np.int64,
    "trade_uuid": object,
    "version": np.int32,
    "status": np.int8,
    "book_id": np.int32,
    "counterparty_id": np.int32,
    "product_id": np.int32,
    "instrument": np.int8,
    "side": np.int8,
    "quantity": np.int64,  # scaled by 10**QUANTITY_PLACES
    "quantity_unit": np.int8,
    "price": np.int64,  # scaled by 10**PRICE_PLACES
    "currency": object,
    "trade_date": np.int32,  # days since 1970-01-01
    "delivery_start": np.int32,
    "delivery_end": np.int32,
    "option_type": np.int8,  # -1: not an option
    "strike": np.int64,  # NULL_INT: none
    "updated_by": object,
    "updated_at": np.int64,  # seconds since the epoch, UTC
}


def _case(column: str, enum_cls: type) -> str:
    whens = " ".join(f"WHEN '{m.name}' THEN {i}" for i, m in enumerate(enum_cls))  # type: ignore[var-annotated, arg-type]
    return f"CASE {column} {whens} ELSE -1 END"


def _blotter_sql(dialect: str, where: str) -> str:
    if dialect == "sqlite":

        def days(c: str) -> str:
            return f"CAST(julianday({c}) - 2440587.5 AS INTEGER)"

        secs = "CAST(strftime('%s', updated_at) AS INTEGER)"
        uid = "trade_uuid"
    else:

        def days(c: str) -> str:
            return f"({c} - DATE '1970-01-01')"

        # FLOOR: a cast rounds to the nearest second; SQLite's strftime('%s') truncates.
        secs = "CAST(FLOOR(EXTRACT(EPOCH FROM updated_at)) AS BIGINT)"
        uid = "replace(CAST(trade_uuid AS TEXT), '-', '')"
    # With a WHERE on trade_uuid, SQLite would still read through ix_trade_current (every
    # current trade, ~0.4 s per query at 1M trades); unary + keeps is_current out of index
    # selection so the trade_uuid index is used (see _current_version_of).
    current = "+is_current" if dialect == "sqlite" and where else "is_current"
    cols = [
        "id",
        uid,
        "version",
        _case("status", TradeStatus),
        "book_id",
        "counterparty_id",
        "product_id",
        _case("instrument", InstrumentType),
        _case("side", Side),
        "quantity",
        _case("quantity_unit", Unit),
        "price",
        "currency",
        days("trade_date"),
        days("delivery_start"),
        days("delivery_end"),
        _case("option_type", OptionType),
        f"COALESCE(strike, {NULL_INT})",
        "updated_by",
        secs,
    ]
    return f"SELECT {', '.join(cols)} FROM trade WHERE {current} = TRUE{where} ORDER BY id"


def columns_from_rows(rows: Sequence[tuple[Any, ...]]) -> dict[str, np.ndarray]:
    """Transpose DB rows (in :data:`BLOTTER_DTYPES` order) into typed numpy columns."""
    out: dict[str, np.ndarray] = {}
    transposed = list(zip(*rows, strict=True)) if rows else [()] * len(BLOTTER_DTYPES)
    for (name, dtype), values in zip(BLOTTER_DTYPES.items(), transposed, strict=True):
        if dtype is object:
            arr = np.empty(len(values), dtype=object)
            arr[:] = values
            out[name] = arr
        else:
            out[name] = np.array(values, dtype=dtype)
    return out


class RefNames:
    """The reference data of one session by natural key and by local id, both ways.

    Payloads (app.models.payload) carry book names, counterparty LEIs and product codes; each
    store has its own ids. Used by trade writes (outbox/audit) and by the sync worker.
    """

    def __init__(self, s: Any) -> None:
        books = s.execute(select(Book.id, Book.name, Book.is_demo)).all()
        self.book_names: dict[int, str] = {i: n for i, n, _ in books}
        self.demo_books = {i for i, _, demo in books if demo}
        self.leis: dict[int, str] = {
            i: v for i, v in s.execute(select(Counterparty.id, Counterparty.lei))
        }
        self.codes: dict[int, str] = {i: v for i, v in s.execute(select(Product.id, Product.code))}
        self.book_ids = {n: i for i, n in self.book_names.items()}
        self.cp_ids = {v: i for i, v in self.leis.items()}
        self.product_ids = {v: i for i, v in self.codes.items()}

    def is_demo(self, t: Any) -> bool:
        return t.book_id in self.demo_books

    def payload(self, t: Any) -> dict[str, Any]:
        """The payload of trade version ``t`` (ORM object or row)."""
        return trade_payload(
            t, self.book_names[t.book_id], self.leis[t.counterparty_id], self.codes[t.product_id]
        )

    def columns(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Local ``Trade`` column values of a payload (``UnknownReference`` for a name this
        store does not have)."""
        return columns_from_payload(payload, self.book_ids, self.cp_ids, self.product_ids)


def record_trade_change(
    s: Any, names: RefNames, new: Trade, before: Trade | None, action: str, user: str
) -> None:
    """Outbox row + audit record for one written trade version, in its transaction.

    Demo-book trades are neither synced nor audited: they are local sample data.
    """
    if names.is_demo(new) and (before is None or names.is_demo(before)):
        return
    after = names.payload(new)
    audit.append(
        s, user=user, entity="trade", entity_id=new.trade_uuid.hex, action=action,
        before=None if before is None else names.payload(before), after=after,
    )  # fmt: skip
    outbox.enqueue(s, entity="trade", entity_key=new.trade_uuid.hex, version=new.version,
                   username=user)  # fmt: skip


class TradeRepository:
    """Reads and writes trades, books, counterparties and products in a :class:`Store`.

    Every trade write also records an outbox row (for the sync worker) and an audit record in
    the same transaction (see :func:`record_trade_change`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- reference data ---------------------------------------------------------------------
    def reference_data(self) -> RefData:
        with self.store.session() as s:
            books = {
                b.id: BookRef(b.id, b.name, b.description, b.is_demo)
                for b in s.scalars(select(Book).order_by(Book.name))
            }
            cps = {
                c.id: CounterpartyRef(c.id, c.name, c.lei, c.country, c.is_islamic, c.is_demo)
                for c in s.scalars(select(Counterparty).order_by(Counterparty.name))
            }
            prods = {
                p.id: ProductRef(
                    p.id,
                    p.code,
                    p.name,
                    p.commodity,
                    p.hub,
                    p.unit,
                    p.currency,
                    p.contract_size,
                    p.load_shape,
                    p.price_floor,
                    p.price_cap,
                )
                for p in s.scalars(select(Product).order_by(Product.code))
            }
        return RefData(books, cps, prods)

    # -- trades: writes -----------------------------------------------------------------------
    def insert_trades(
        self, economics: Sequence[Mapping[str, Any]], user: str, status: TradeStatus | None = None
    ) -> list[TradeRecord]:
        """Insert new trades (version 1) in ONE transaction: all are stored or none."""
        now = utcnow()
        out = []
        with self.store.session() as s:
            given = [e["trade_uuid"] for e in economics if e.get("trade_uuid")]
            if given:
                existing = self._already_booked(s, economics, given)
                if existing is not None:
                    return existing
            for econ in economics:
                t = Trade(
                    trade_uuid=econ.get("trade_uuid") or uuid.uuid4(),
                    version=1,
                    is_current=True,
                    status=econ.get("status") or status or TradeStatus.CAPTURED,
                    created_by=user,
                    created_at=now,
                    updated_by=user,
                    updated_at=now,
                    **{k: econ.get(k) for k in Trade.ECONOMIC_FIELDS if k != "comment"},
                    comment=econ.get("comment") or "",
                )
                s.add(t)
                out.append(t)
            s.flush()
            names = RefNames(s)
            for t in out:
                record_trade_change(s, names, t, None, "capture", user)
            records = [TradeRecord.from_orm(t) for t in out]
        return records

    @staticmethod
    def _already_booked(
        s: Any, economics: Sequence[Mapping[str, Any]], given: list[uuid.UUID]
    ) -> list[TradeRecord] | None:
        """Idempotent capture: the same booking (same client-chosen ``trade_uuid``) submitted
        again - a double click, a retry after a lost reply - returns the stored version 1
        instead of a duplicate. The same id with different economics is refused."""
        found = {
            t.trade_uuid: t
            for t in s.scalars(select(Trade).where(Trade.trade_uuid.in_(given), Trade.version == 1))
        }
        if not found:
            return None
        if len(found) != len(economics):
            raise DuplicateBookingError(
                "Some of these trades were already booked and some not: book them separately."
            )
        out = []
        for econ in economics:
            t = found[econ["trade_uuid"]]
            stored = t.economics()
            if any(stored[k] != econ.get(k, stored[k]) for k in Trade.ECONOMIC_FIELDS):
                raise DuplicateBookingError(
                    f"Trade id {str(t.trade_uuid)[:8]} was already booked with other terms."
                )
            out.append(TradeRecord.from_orm(t))
        return out

    def new_version(
        self,
        trade_uuid: uuid.UUID,
        expected_version: int,
        user: str,
        changes: Mapping[str, Any] | None = None,
        status: TradeStatus | None = None,
    ) -> TradeRecord:
        """Write version ``expected_version + 1`` with ``changes`` applied.

        Raises :class:`StaleVersionError` when the current version is not ``expected_version``
        (someone amended it meanwhile) and :class:`TradeNotFoundError` for an unknown UUID.
        """
        with self.store.session() as s:
            cur = s.scalars(select(Trade).where(_current_version_of(trade_uuid))).one_or_none()
            if cur is None:
                raise TradeNotFoundError(str(trade_uuid))
            if cur.version != expected_version:
                raise StaleVersionError(
                    f"Trade {str(trade_uuid)[:8]} is at version {cur.version}, "
                    f"not {expected_version}: reload it before amending."
                )
            econ = cur.economics()
            econ.update(changes or {})
            # Guarded update: a concurrent writer between our read and write makes it miss.
            res = s.execute(
                update(Trade)
                .where(Trade.id == cur.id, Trade.is_current.is_(True))
                .values(is_current=False)
            )
            if res.rowcount != 1:  # type: ignore[attr-defined]
                raise StaleVersionError(f"Trade {str(trade_uuid)[:8]} changed while amending.")
            new = Trade(
                trade_uuid=trade_uuid,
                version=cur.version + 1,
                is_current=True,
                status=status or cur.status,
                created_by=cur.created_by,
                created_at=cur.created_at,
                updated_by=user,
                updated_at=utcnow(),
                **econ,
            )
            s.add(new)
            s.flush()
            if new.status is not cur.status:
                action = "cancel" if new.status is TradeStatus.CANCELLED else "lifecycle"
            else:
                action = "amend"
            record_trade_change(s, RefNames(s), new, cur, action, user)
            return TradeRecord.from_orm(new)

    # -- trades: reads ------------------------------------------------------------------------
    def get(self, trade_uuid: uuid.UUID) -> TradeRecord:
        """The current version of a trade."""
        with self.store.session() as s:
            t = s.scalars(select(Trade).where(_current_version_of(trade_uuid))).one_or_none()
            if t is None:
                raise TradeNotFoundError(str(trade_uuid))
            return TradeRecord.from_orm(t)

    def history(self, trade_uuid: uuid.UUID) -> list[TradeRecord]:
        """Every version of a trade, oldest first."""
        with self.store.session() as s:
            rows = s.scalars(
                select(Trade).where(Trade.trade_uuid == trade_uuid).order_by(Trade.version)
            ).all()
            if not rows:
                raise TradeNotFoundError(str(trade_uuid))
            return [TradeRecord.from_orm(t) for t in rows]

    def versions_since(self, since: dt.datetime) -> list[TradeRecord]:
        """Every version of each trade that has a version written at or after ``since``
        (``updated_at``, the moment a version became current), ordered by trade, then version.

        With :meth:`blotter_chunks` this gives the book as it stood at ``since`` (the P&L
        explain's "yesterday") without reading the history of untouched trades.
        """
        touched = select(Trade.trade_uuid).where(Trade.updated_at >= since).distinct()
        q = (
            select(Trade)
            .where(Trade.trade_uuid.in_(touched.scalar_subquery()))
            .order_by(Trade.trade_uuid, Trade.version)
        )
        with self.store.session() as s:
            return [TradeRecord.from_orm(t) for t in s.scalars(q)]

    def count_current(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).where(Trade.is_current.is_(True))) or 0)

    def current_records(self, limit: int | None = None) -> list[TradeRecord]:
        """Current versions as records (for exports of moderate size), oldest first."""
        with self.store.session() as s:
            q = select(Trade).where(Trade.is_current.is_(True)).order_by(Trade.id)
            if limit is not None:
                q = q.limit(limit)
            return [TradeRecord.from_orm(t) for t in s.scalars(q)]

    def blotter_chunks(
        self,
        chunk_rows: int = 100_000,
        trade_uuids: Iterable[uuid.UUID] | None = None,
        cancelled: Callable[[], bool] | None = None,
        first_chunk_rows: int | None = None,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield current trade versions as blotter columns, ``chunk_rows`` rows at a time.

        ``first_chunk_rows`` makes the first chunk smaller, so a view can paint its first
        screen while the rest is read. With ``trade_uuids`` only those trades are read (used to
        apply amendments).
        """
        dialect = self.store.engine.dialect.name
        where = ""
        params: tuple[Any, ...] = ()
        if trade_uuids is not None:
            ids = list(trade_uuids)
            if not ids:
                return
            yield from self._blotter_by_uuid(ids, dialect)
            return
        sql = _blotter_sql(dialect, where)
        raw = self.store.engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql, params)
            size = first_chunk_rows or chunk_rows
            while True:
                if cancelled is not None and cancelled():
                    return
                rows = cur.fetchmany(size)
                size = chunk_rows
                if not rows:
                    break
                yield columns_from_rows(rows)
            cur.close()
        finally:
            raw.close()

    def blotter_rows(self, trade_uuids: Iterable[uuid.UUID]) -> dict[str, np.ndarray]:
        """Current versions of ``trade_uuids`` as ONE set of blotter columns (for updates)."""
        chunks = list(self.blotter_chunks(trade_uuids=trade_uuids))
        if not chunks:
            return columns_from_rows([])
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def _blotter_by_uuid(
        self, ids: list[uuid.UUID], dialect: str
    ) -> Iterator[dict[str, np.ndarray]]:
        raw = self.store.engine.raw_connection()
        try:
            cur = raw.cursor()
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                if dialect == "sqlite":
                    marks = ",".join("?" * len(part))
                    values: tuple[Any, ...] = tuple(u.hex for u in part)
                else:
                    marks = ",".join(["%s"] * len(part))
                    values = tuple(part)
                cur.execute(_blotter_sql(dialect, f" AND trade_uuid IN ({marks})"), values)
                rows = cur.fetchall()
                if rows:
                    yield columns_from_rows(rows)
            cur.close()
        finally:
            raw.close()
