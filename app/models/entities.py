"""ORM entities: counterparties, books, products and trades (SQLAlchemy 2.0 typed mapping).

Trades are versioned and never hard-deleted: every capture, amendment or status change writes a
new row with ``version + 1`` and the same ``trade_uuid``; exactly one row per trade has
``is_current`` set. Quantities and prices are exact decimals (see :class:`ExactDecimal`).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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
from app.models.types import PRICE_PLACES, QUANTITY_PLACES, ExactDecimal, UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _enum(cls: type[enum.Enum]) -> Enum:
    # Stored by name in a VARCHAR with a CHECK constraint: same on SQLite and PostgreSQL.
    return Enum(
        cls,
        native_enum=False,
        create_constraint=True,
        length=24,
        name=cls.__name__.lower(),
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Counterparty(Base):
    __tablename__ = "counterparty"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    lei: Mapped[str] = mapped_column(String(20), unique=True)
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    is_islamic: Mapped[bool] = mapped_column(Boolean, default=False)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"Counterparty({self.name!r}, lei={self.lei!r})"


class Book(Base):
    __tablename__ = "book"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)


class Product(Base):
    """A tradeable product: a commodity at a hub, in a unit and currency.

    ``price_floor``/``price_cap`` bound the sane price band used by trade validation (power and
    WTI have traded below zero, so floors may be negative).
    """

    __tablename__ = "product"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    commodity: Mapped[Commodity] = mapped_column(_enum(Commodity))
    hub: Mapped[str] = mapped_column(String(60))
    unit: Mapped[Unit] = mapped_column(_enum(Unit))
    currency: Mapped[str] = mapped_column(String(3))
    contract_size: Mapped[Decimal] = mapped_column(ExactDecimal(QUANTITY_PLACES))
    load_shape: Mapped[LoadShape | None] = mapped_column(_enum(LoadShape), nullable=True)
    price_floor: Mapped[Decimal] = mapped_column(ExactDecimal(PRICE_PLACES))
    price_cap: Mapped[Decimal] = mapped_column(ExactDecimal(PRICE_PLACES))


class Trade(Base):
    """One version of a trade. See the module docstring for the versioning rules."""

    __tablename__ = "trade"
    __table_args__ = (
        UniqueConstraint("trade_uuid", "version", name="uq_trade_uuid_version"),
        Index("ix_trade_current", "is_current", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trade_uuid: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    version: Mapped[int] = mapped_column(Integer)
    is_current: Mapped[bool] = mapped_column(Boolean)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id"))
    counterparty_id: Mapped[int] = mapped_column(ForeignKey("counterparty.id"))
    product_id: Mapped[int] = mapped_column(ForeignKey("product.id"))
    instrument: Mapped[InstrumentType] = mapped_column(_enum(InstrumentType))
    side: Mapped[Side] = mapped_column(_enum(Side))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal(QUANTITY_PLACES))
    quantity_unit: Mapped[Unit] = mapped_column(_enum(Unit))
    price: Mapped[Decimal] = mapped_column(ExactDecimal(PRICE_PLACES))
    currency: Mapped[str] = mapped_column(String(3))
    trade_date: Mapped[dt.date] = mapped_column(Date)
    delivery_start: Mapped[dt.date] = mapped_column(Date)
    delivery_end: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[TradeStatus] = mapped_column(_enum(TradeStatus))
    option_type: Mapped[OptionType | None] = mapped_column(_enum(OptionType), nullable=True)
    strike: Mapped[Decimal | None] = mapped_column(ExactDecimal(PRICE_PLACES), nullable=True)
    expiry_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    exercise_style: Mapped[ExerciseStyle | None] = mapped_column(
        _enum(ExerciseStyle), nullable=True
    )
    premium: Mapped[Decimal | None] = mapped_column(ExactDecimal(PRICE_PLACES), nullable=True)
    comment: Mapped[str] = mapped_column(String(500), default="")
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(60))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    book: Mapped[Book] = relationship(lazy="joined")
    counterparty: Mapped[Counterparty] = relationship(lazy="joined")
    product: Mapped[Product] = relationship(lazy="joined")

    #: Fields that make up the economic content of a trade (copied on amendment).
    ECONOMIC_FIELDS = (
        "book_id",
        "counterparty_id",
        "product_id",
        "instrument",
        "side",
        "quantity",
        "quantity_unit",
        "price",
        "currency",
        "trade_date",
        "delivery_start",
        "delivery_end",
        "option_type",
        "strike",
        "expiry_date",
        "exercise_style",
        "premium",
        "comment",
    )

    def economics(self) -> dict[str, Any]:
        """The economic fields of this version as a dict."""
        return {name: getattr(self, name) for name in self.ECONOMIC_FIELDS}


class PriceTick(Base):
    """A recorded market price (sampled intraday trade tick, or an end-of-day settlement).

    Market data are measurements, not booked amounts: prices are binary floats (exactly what the
    feed sent), times are exchange timestamps in ns since the epoch.
    """

    __tablename__ = "price_tick"
    __table_args__ = (Index("ix_price_tick_instrument_ts", "instrument", "ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    instrument: Mapped[str] = mapped_column(String(48))
    ts: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(8))  # 'trade' | 'settle'
    bid: Mapped[float | None] = mapped_column(Float, nullable=True)
    ask: Mapped[float | None] = mapped_column(Float, nullable=True)
    last: Mapped[float | None] = mapped_column(Float, nullable=True)
    size: Mapped[float] = mapped_column(Float, default=0.0)


class SettlementCurve(Base):
    """The end-of-day settlement forward curve of a product (monthly prices from ``start``)."""

    __tablename__ = "settlement_curve"
    __table_args__ = (
        UniqueConstraint("product", "settle_date", name="uq_settlement_curve_product_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product: Mapped[str] = mapped_column(String(32))
    settle_date: Mapped[dt.date] = mapped_column(Date)
    start_month: Mapped[str] = mapped_column(String(7))  # 'YYYY-MM'
    prices: Mapped[str] = mapped_column(Text)  # JSON array of floats
    ts: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(80), default="")


class LimitKind(enum.Enum):
    """What a risk limit caps (stored by name)."""

    VAR = "var"
    ES = "es"
    POSITION = "position"
    STRESS = "stress"

    @property
    def label(self) -> str:
        return {"var": "VaR", "es": "ES", "position": "Position", "stress": "Stress"}[self.value]


class BreachKind(enum.Enum):
    """A recorded limit state transition (stored by name)."""

    BREACH = "breach"
    WARNING = "warning"
    CLEARED = "cleared"

    @property
    def label(self) -> str:
        return self.value.title()


class RiskLimit(Base):
    """A VaR, ES, position or stress limit of one book (see app.models.limits).

    VaR/ES limits carry ``currency``, ``confidence`` and ``horizon_days``; stress limits carry a
    ``currency``; position limits carry a ``product`` code and are in the product's unit
    (absolute net delta). ``version`` increases on every change (optimistic concurrency).
    """

    __tablename__ = "risk_limit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Identity across workstations and the desk database (local ids differ per store).
    limit_uuid: Mapped[str | None] = mapped_column(String(32), unique=True, nullable=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id"), index=True)
    kind: Mapped[LimitKind] = mapped_column(_enum(LimitKind))
    product: Mapped[str | None] = mapped_column(String(24), nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    horizon_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    limit_value: Mapped[Decimal] = mapped_column(ExactDecimal(QUANTITY_PLACES))
    warning_pct: Mapped[Decimal] = mapped_column(ExactDecimal(2))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    comment: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(60))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)

    book: Mapped[Book] = relationship(lazy="joined")


class LimitBreach(Base):
    """One recorded transition of a limit's state (append-only)."""

    __tablename__ = "limit_breach"
    __table_args__ = (Index("ix_limit_breach_limit", "limit_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    limit_id: Mapped[int] = mapped_column(ForeignKey("risk_limit.id"))
    detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    kind: Mapped[BreachKind] = mapped_column(_enum(BreachKind))
    usage: Mapped[float] = mapped_column(Float)
    limit_value: Mapped[Decimal] = mapped_column(ExactDecimal(QUANTITY_PLACES))
    utilisation: Mapped[float] = mapped_column(Float)
    as_of: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    detail: Mapped[str] = mapped_column(String(500), default="")


# -- desk database: users, sync, audit, approvals (migration 0004) --------------------------


class UserRole(enum.Enum):
    """What a signed-in user may do (see app.services.auth for the permission matrix)."""

    TRADER = "trader"
    RISK_MANAGER = "risk_manager"
    BACK_OFFICE = "back_office"
    COMPLIANCE = "compliance"
    ADMIN = "admin"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()


class AppUser(Base):
    """A workstation user. Centrally the password is the user's PostgreSQL login password
    (``password_hash`` stays NULL there); locally ``password_hash`` caches an argon2id hash of
    the last password that signed in online, for offline sign-in."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(60), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[UserRole] = mapped_column(_enum(UserRole))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)


class BookAccess(Base):
    """The books a trader may capture and amend in (and read, centrally)."""

    __tablename__ = "book_access"

    username: Mapped[str] = mapped_column(String(60), primary_key=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("book.id"), primary_key=True)


class OutboxItem(Base):
    """A local change waiting to be pushed to the central database (written in the same
    SQLite transaction as the change itself; see app.sync).

    ``op_id`` is the idempotency key. For a trade, the pushed payload is built from the
    immutable local version ``(entity_key, version)``. ``state``: pending, acked, conflict,
    rejected. Acked items are kept: a central database restored from an older dump is refilled
    from them.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    op_id: Mapped[str] = mapped_column(String(36), unique=True)
    entity: Mapped[str] = mapped_column(String(24))
    entity_key: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(60))
    payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    server_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    acked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SyncState(Base):
    """Key/value sync bookkeeping (pull checkpoint and its fingerprint, last sync time ...)."""

    __tablename__ = "sync_state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SyncConflict(Base):
    """A local change that met a different central version of the same trade. Both versions
    are kept here until a user keeps one, merges, or re-books."""

    __tablename__ = "sync_conflict"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_key: Mapped[str] = mapped_column(String(64), index=True)
    op_id: Mapped[str] = mapped_column(String(36))
    base_version: Mapped[int] = mapped_column(Integer)
    local_payload: Mapped[str] = mapped_column(Text)
    remote_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    remote_payload: Mapped[str | None] = mapped_column(Text, nullable=True)
    detected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="open")
    resolution: Mapped[str] = mapped_column(String(200), default="")
    resolved_by: Mapped[str | None] = mapped_column(String(60), nullable=True)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ChangeLog(Base):
    """Central change sequence: one row per applied change, ``seq`` in commit order (the
    ``qe_apply`` function serialises writers). Clients pull ``seq > checkpoint``."""

    __tablename__ = "change_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    op_id: Mapped[str] = mapped_column(String(36), unique=True)
    payload_sha: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(24))
    entity_key: Mapped[str] = mapped_column(String(64))
    book_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    version: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(120))
    username: Mapped[str] = mapped_column(String(60))
    client_ts: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    committed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class AuditRecord(Base):
    """One append-only, hash-chained audit record (see app.models.audit).

    ``hash = sha256(prev_hash + "\\n" + body)`` where ``body`` is the stored JSON text of the
    record (who, when, what, before, after, workstation); the other columns repeat ``body`` for
    filtering and are checked against it by ``audit verify``.
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    username: Mapped[str] = mapped_column(String(60))
    workstation: Mapped[str] = mapped_column(String(120))
    entity: Mapped[str] = mapped_column(String(24))
    entity_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(24))
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ApprovalRequest(Base):
    """A sensitive action waiting for a second user's approval (four-eyes)."""

    __tablename__ = "approval_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    entity_key: Mapped[str] = mapped_column(String(64))
    book_id: Mapped[int | None] = mapped_column(ForeignKey("book.id"), nullable=True)
    summary: Mapped[str] = mapped_column(String(300))
    payload: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(60))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(12), default="pending")
    decided_by: Mapped[str | None] = mapped_column(String(60), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_comment: Mapped[str] = mapped_column(String(300), default="")
