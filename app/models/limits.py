"""Limits repository: VaR, ES, position and stress limits per book, and their breach history.

A limit caps one measure of one book:

* ``VAR`` / ``ES``: the book's standalone VaR or ES in one ``currency`` at a ``confidence`` and
  ``horizon_days`` (money, in that currency);
* ``POSITION``: the absolute net delta of one ``product`` in the book, in the product's unit;
* ``STRESS``: the book's worst stress loss in one ``currency``.

Limit values are exact decimals (:data:`LIMIT_PLACES` places, stored like trade quantities); a
value with more places is refused, never rounded. Every change bumps ``version`` and is guarded
by it (:class:`StaleLimitError` when someone else changed the limit meanwhile). Limits are never
deleted, only deactivated, so the breach history always has its limit.

Breaches are append-only state transitions: :meth:`LimitRepository.record_states` compares each
observed state (``ok`` / ``warning`` / ``breach``) with the last recorded one *inside the write
transaction* (the limit row is locked on PostgreSQL) and appends a row only when it changed, so
refreshing the same numbers twice records nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.models import audit, outbox
from app.models.entities import Book, BreachKind, LimitBreach, LimitKind, Product, RiskLimit
from app.models.payload import canonical
from app.models.store import Store
from app.models.types import QUANTITY_PLACES, to_scaled, utcnow

__all__ = [
    "DEFAULT_WARNING_PCT",
    "LIMIT_PLACES",
    "MAX_HORIZON_DAYS",
    "STATES",
    "BreachRecord",
    "LimitDraft",
    "LimitNotFoundError",
    "LimitObservation",
    "LimitRecord",
    "LimitRepository",
    "LimitValidationError",
    "StaleLimitError",
    "limit_scope",
    "validate_draft",
]

#: Decimal places of limit values (money and volumes alike; the trade quantity precision).
LIMIT_PLACES = QUANTITY_PLACES
#: Longest VaR/ES horizon a limit may name (app.services.risk.MAX_HORIZON; a test ties them).
MAX_HORIZON_DAYS = 10
DEFAULT_WARNING_PCT = Decimal(80)
#: Limit states, in order of severity. ``cleared`` rows are recorded on a return to ``ok``.
STATES = ("ok", "warning", "breach")
_STATE_OF = {BreachKind.BREACH: "breach", BreachKind.WARNING: "warning", BreachKind.CLEARED: "ok"}
_KIND_OF = {"breach": BreachKind.BREACH, "warning": BreachKind.WARNING, "ok": BreachKind.CLEARED}
_CCY = re.compile(r"^[A-Z]{3}$")


class LimitValidationError(ValueError):
    """A limit was refused; ``errors`` maps a field name to a message for the user."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


class StaleLimitError(Exception):
    """The limit changed since it was read (version mismatch): reload it."""


class LimitNotFoundError(KeyError):
    """No limit with that id."""


@dataclass(frozen=True)
class LimitDraft:
    """The editable fields of a limit, as entered (strings are accepted for numbers)."""

    book_id: int
    kind: LimitKind | str
    limit_value: Decimal | str | float | int
    product: str | None = None
    currency: str | None = None
    confidence: float | None = None
    horizon_days: int | None = None
    warning_pct: Decimal | str | float | int = DEFAULT_WARNING_PCT
    comment: str = ""


def _decimal(value: Any, places: int) -> Decimal:
    """Exact decimal with at most ``places`` places (``ValueError`` otherwise)."""
    if isinstance(value, str):
        value = value.strip().replace(",", "").replace("_", "")
        if not value:
            raise ValueError("required")
    return Decimal(to_scaled(value, places)).scaleb(-places)


def validate_draft(draft: LimitDraft) -> tuple[LimitDraft, dict[str, str]]:
    """The draft with normalised fields, and field -> message for every problem found.

    Pure (no database): the dialog calls it for inline messages, the repository again before
    writing (plus the checks that need the database: book, product, duplicates).
    """
    errors: dict[str, str] = {}
    kind: LimitKind | None = None
    if isinstance(draft.kind, LimitKind):
        kind = draft.kind
    else:
        key = str(draft.kind).strip().upper()
        kind = LimitKind.__members__.get(key)
        if kind is None:
            errors["kind"] = f"unknown limit kind {draft.kind!r} (var, es, position or stress)"
    value: Decimal | None = None
    try:
        value = _decimal(draft.limit_value, LIMIT_PLACES)
        if value <= 0:
            errors["limit_value"] = "the limit must be greater than zero"
    except ValueError as exc:
        errors["limit_value"] = (
            "enter the limit"
            if str(exc) == "required"
            else f"the limit must be a number with at most {LIMIT_PLACES} decimal places"
        )
    warn: Decimal | None = None
    try:
        warn = _decimal(draft.warning_pct, 2)
        if not 0 < warn <= 100:
            errors["warning_pct"] = "the warning threshold must be above 0 % and at most 100 %"
    except ValueError:
        errors["warning_pct"] = "the warning threshold must be a number with at most 2 decimals"
    product = (draft.product or "").strip().upper() or None
    currency = (draft.currency or "").strip().upper() or None
    confidence = draft.confidence
    horizon = draft.horizon_days
    if kind is LimitKind.POSITION:
        if product is None:
            errors["product"] = "a position limit needs a product"
        if currency is not None:
            errors["currency"] = "a position limit is in the product's unit, not a currency"
    elif kind is not None:
        if product is not None:
            errors["product"] = "only position limits are per product"
        if currency is None:
            errors["currency"] = f"a {kind.label} limit needs a currency"
        elif not _CCY.match(currency):
            errors["currency"] = f"{currency!r} is not a three-letter currency code"
    if kind in (LimitKind.VAR, LimitKind.ES):
        if confidence is None or not (0.5 <= float(confidence) < 1.0):
            errors["confidence"] = "the confidence must be at least 50 % and below 100 %"
        if horizon is None or int(horizon) != horizon or not 1 <= horizon <= MAX_HORIZON_DAYS:
            errors["horizon_days"] = f"the horizon must be 1 to {MAX_HORIZON_DAYS} days"
    elif kind is not None and (confidence is not None or horizon is not None):
        errors["confidence"] = "only VaR and ES limits have a confidence and horizon"
    if len(draft.comment) > 200:
        errors["comment"] = "the comment is longer than 200 characters"
    clean = dataclasses.replace(
        draft,
        kind=kind if kind is not None else draft.kind,
        limit_value=value if value is not None else draft.limit_value,
        warning_pct=warn if warn is not None else draft.warning_pct,
        product=product,
        currency=currency,
        confidence=float(confidence) if confidence is not None else None,
        horizon_days=int(horizon) if horizon is not None else None,
        comment=draft.comment.strip(),
    )
    return clean, errors


def limit_scope(
    kind: LimitKind,
    product: str | None,
    currency: str | None,
    confidence: float | None,
    horizon_days: int | None,
) -> str:
    """``'USD 99% 1d'`` (VaR/ES), ``'NG-TTF'`` (position) or ``'EUR'`` (stress)."""
    if kind is LimitKind.POSITION:
        return product or ""
    if kind in (LimitKind.VAR, LimitKind.ES) and confidence is not None:
        return f"{currency} {confidence * 100:g}% {horizon_days}d"
    return currency or ""


@dataclass(frozen=True)
class LimitRecord:
    """An immutable snapshot of a limit (safe to pass between threads)."""

    id: int
    book_id: int
    book_name: str
    kind: LimitKind
    product: str | None
    currency: str | None
    confidence: float | None
    horizon_days: int | None
    limit_value: Decimal
    warning_pct: Decimal
    active: bool
    comment: str
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime
    version: int

    @classmethod
    def from_orm(cls, row: RiskLimit) -> LimitRecord:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "book_name"]
        return cls(book_name=row.book.name, **{n: getattr(row, n) for n in names})

    @property
    def scope(self) -> str:
        return limit_scope(
            self.kind, self.product, self.currency, self.confidence, self.horizon_days
        )

    @property
    def title(self) -> str:
        """``'DEMO Oil VaR USD 99% 1d'``."""
        return f"{self.book_name} {self.kind.label} {self.scope}"

    def draft(self) -> LimitDraft:
        """The editable fields, for an edit dialog."""
        return LimitDraft(
            book_id=self.book_id,
            kind=self.kind,
            limit_value=self.limit_value,
            product=self.product,
            currency=self.currency,
            confidence=self.confidence,
            horizon_days=self.horizon_days,
            warning_pct=self.warning_pct,
            comment=self.comment,
        )


@dataclass(frozen=True)
class BreachRecord:
    """One recorded state transition of a limit."""

    id: int
    limit_id: int
    book_name: str
    limit_kind: LimitKind
    scope: str
    detected_at: dt.datetime
    kind: BreachKind
    usage: float
    limit_value: Decimal
    utilisation: float
    as_of: dt.date | None
    detail: str

    @property
    def state(self) -> str:
        """The state entered: ``'breach'``, ``'warning'`` or ``'ok'`` (cleared)."""
        return _STATE_OF[self.kind]


@dataclass(frozen=True)
class LimitObservation:
    """A measured state of one limit, to be recorded if it differs from the last one."""

    limit_id: int
    state: str  # one of STATES
    usage: float
    utilisation: float
    as_of: dt.date | None = None
    detail: str = ""


def _breach(row: LimitBreach, lim: RiskLimit) -> BreachRecord:
    return BreachRecord(
        id=row.id,
        limit_id=row.limit_id,
        book_name=lim.book.name,
        limit_kind=lim.kind,
        scope=limit_scope(lim.kind, lim.product, lim.currency, lim.confidence, lim.horizon_days),
        detected_at=row.detected_at,
        kind=row.kind,
        usage=row.usage,
        limit_value=row.limit_value,
        utilisation=row.utilisation,
        as_of=row.as_of,
        detail=row.detail,
    )


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


class LimitRepository:
    """Reads and writes limits and breaches of a :class:`~app.models.store.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reference data

    def books(self) -> dict[int, str]:
        """Book id -> name, by name."""
        with self.store.session() as s:
            return {b.id: b.name for b in s.scalars(select(Book).order_by(Book.name))}

    def products(self) -> dict[str, str]:
        """Product code -> unit label, by code (position limits are in the product's unit)."""
        with self.store.session() as s:
            return {p.code: p.unit.label for p in s.scalars(select(Product).order_by(Product.code))}

    # ------------------------------------------------------------------ limits: writes

    def _checked(self, s: Session, draft: LimitDraft, exclude_id: int | None) -> LimitDraft:
        clean, errors = validate_draft(draft)
        if errors:
            raise LimitValidationError(errors)
        if s.get(Book, clean.book_id) is None:
            raise LimitValidationError({"book_id": f"no book with id {clean.book_id}"})
        if (
            clean.product is not None
            and s.scalars(select(Product.id).where(Product.code == clean.product)).first() is None
        ):
            raise LimitValidationError({"product": f"unknown product {clean.product}"})
        q = select(RiskLimit.id).where(
            RiskLimit.active.is_(True),
            RiskLimit.book_id == clean.book_id,
            RiskLimit.kind == clean.kind,
            _eq(RiskLimit.product, clean.product),
            _eq(RiskLimit.currency, clean.currency),
            _eq(RiskLimit.confidence, clean.confidence),
            _eq(RiskLimit.horizon_days, clean.horizon_days),
        )
        if exclude_id is not None:
            q = q.where(RiskLimit.id != exclude_id)
        dup = s.scalars(q).first()
        if dup is not None:
            raise LimitValidationError(
                {"kind": f"the book already has this active limit (#{dup}): edit that one"}
            )
        return clean

    def create(self, draft: LimitDraft, user: str) -> LimitRecord:
        """Validate and store a new active limit (version 1)."""
        now = utcnow()
        with self.store.session() as s:
            clean = self._checked(s, draft, None)
            row = RiskLimit(
                limit_uuid=uuid.uuid4().hex,
                book_id=clean.book_id,
                kind=clean.kind,
                product=clean.product,
                currency=clean.currency,
                confidence=clean.confidence,
                horizon_days=clean.horizon_days,
                limit_value=clean.limit_value,
                warning_pct=clean.warning_pct,
                active=True,
                comment=clean.comment,
                created_by=user,
                created_at=now,
                updated_by=user,
                updated_at=now,
                version=1,
            )
            s.add(row)
            s.flush()
            s.refresh(row)
            _audit(s, user, "create", None, row)
            return LimitRecord.from_orm(row)

    def _bump(
        self, s: Session, limit_id: int, expected_version: int, user: str, **values: Any
    ) -> RiskLimit:
        # Guarded update: a concurrent writer between our read and write makes it miss.
        res = s.execute(
            update(RiskLimit)
            .where(RiskLimit.id == limit_id, RiskLimit.version == expected_version)
            .values(version=expected_version + 1, updated_by=user, updated_at=utcnow(), **values)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            row = s.get(RiskLimit, limit_id)
            if row is None:
                raise LimitNotFoundError(limit_id)
            raise StaleLimitError(
                f"Limit #{limit_id} is at version {row.version}, not {expected_version}: "
                "someone changed it meanwhile; reload it."
            )
        s.expire_all()
        row = s.get(RiskLimit, limit_id)
        assert row is not None
        return row

    def update(
        self, limit_id: int, expected_version: int, draft: LimitDraft, user: str
    ) -> LimitRecord:
        """Replace the editable fields of a limit (``StaleLimitError`` on a version mismatch)."""
        with self.store.session() as s:
            cur = s.get(RiskLimit, limit_id)
            if cur is None:
                raise LimitNotFoundError(limit_id)
            before = _audit_state(cur)
            clean = self._checked(s, draft, limit_id)
            row = self._bump(
                s,
                limit_id,
                expected_version,
                user,
                book_id=clean.book_id,
                kind=clean.kind,
                product=clean.product,
                currency=clean.currency,
                confidence=clean.confidence,
                horizon_days=clean.horizon_days,
                limit_value=clean.limit_value,
                warning_pct=clean.warning_pct,
                comment=clean.comment,
            )
            _audit(s, user, "update", before, row)
            return LimitRecord.from_orm(row)

    def set_active(
        self,
        limit_id: int,
        expected_version: int,
        active: bool,
        user: str,
        now: dt.datetime | None = None,
    ) -> LimitRecord:
        """(De)activate a limit. Deactivating a limit in warning or breach records it cleared."""
        with self.store.session() as s:
            if active:
                cur = s.get(RiskLimit, limit_id)
                if cur is None:
                    raise LimitNotFoundError(limit_id)
                self._checked(s, LimitRecord.from_orm(cur).draft(), limit_id)  # no duplicate
            old = s.get(RiskLimit, limit_id)
            before = None if old is None else _audit_state(old)
            row = self._bump(s, limit_id, expected_version, user, active=active)
            _audit(s, user, "activate" if active else "deactivate", before, row)
            if not active:
                last = self._last(s, limit_id)
                if last is not None and last.kind is not BreachKind.CLEARED:
                    s.add(
                        LimitBreach(
                            limit_id=limit_id,
                            detected_at=now or utcnow(),
                            kind=BreachKind.CLEARED,
                            usage=last.usage,
                            limit_value=row.limit_value,
                            utilisation=last.utilisation,
                            as_of=last.as_of,
                            detail=f"limit deactivated by {user}"[:500],
                        )
                    )
            return LimitRecord.from_orm(row)

    # ------------------------------------------------------------------ limits: reads

    def get(self, limit_id: int) -> LimitRecord:
        with self.store.session() as s:
            row = s.get(RiskLimit, limit_id)
            if row is None:
                raise LimitNotFoundError(limit_id)
            return LimitRecord.from_orm(row)

    def list_limits(
        self, *, active_only: bool = True, book_id: int | None = None
    ) -> list[LimitRecord]:
        """Limits ordered by book name, kind and id."""
        q = select(RiskLimit).join(Book, Book.id == RiskLimit.book_id)
        if active_only:
            q = q.where(RiskLimit.active.is_(True))
        if book_id is not None:
            q = q.where(RiskLimit.book_id == book_id)
        q = q.order_by(Book.name, RiskLimit.kind, RiskLimit.id)
        with self.store.session() as s:
            return [LimitRecord.from_orm(r) for r in s.scalars(q).unique()]

    # ------------------------------------------------------------------ breaches

    @staticmethod
    def _last(s: Session, limit_id: int) -> LimitBreach | None:
        return s.scalars(
            select(LimitBreach)
            .where(LimitBreach.limit_id == limit_id)
            .order_by(LimitBreach.id.desc())
            .limit(1)
        ).first()

    def current_states(self) -> dict[int, str]:
        """Last recorded state of every limit that has one (``'ok'`` after a clear)."""
        last = (
            select(LimitBreach.limit_id, func.max(LimitBreach.id).label("id"))
            .group_by(LimitBreach.limit_id)
            .subquery()
        )
        q = select(LimitBreach.limit_id, LimitBreach.kind).join(last, LimitBreach.id == last.c.id)
        with self.store.session() as s:
            return {lid: _STATE_OF[k] for lid, k in s.execute(q)}

    def record_states(
        self, observations: Iterable[LimitObservation], now: dt.datetime | None = None
    ) -> list[BreachRecord]:
        """Append a breach row for every observation whose state differs from the last recorded
        one (no row yet counts as ``ok``); returns the rows appended, in input order.

        One transaction; each limit row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL,
        SQLite serialises writers) so two desks refreshing at once record a transition once.
        Inactive or unknown limits are skipped.
        """
        when = now or utcnow()
        out: list[BreachRecord] = []
        with self.store.session() as s:
            for obs in observations:
                if obs.state not in STATES:
                    raise ValueError(f"state must be one of {STATES}, got {obs.state!r}")
                lim = s.scalars(
                    select(RiskLimit)
                    .where(RiskLimit.id == obs.limit_id)
                    .with_for_update(of=RiskLimit)
                ).first()
                if lim is None or not lim.active:
                    continue
                last = self._last(s, obs.limit_id)
                previous = "ok" if last is None else _STATE_OF[last.kind]
                if previous == obs.state:
                    continue
                row = LimitBreach(
                    limit_id=obs.limit_id,
                    detected_at=when,
                    kind=_KIND_OF[obs.state],
                    usage=_finite(obs.usage),
                    limit_value=lim.limit_value,
                    utilisation=_finite(obs.utilisation),
                    as_of=obs.as_of,
                    detail=obs.detail[:500],
                )
                s.add(row)
                s.flush()
                out.append(_breach(row, lim))
        return out

    def breaches(
        self,
        *,
        limit_id: int | None = None,
        book_id: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        kinds: Sequence[BreachKind] | None = None,
        limit: int = 500,
    ) -> list[BreachRecord]:
        """Recorded transitions, newest first, filtered by limit, book, time and kind."""
        q = select(LimitBreach, RiskLimit).join(RiskLimit, RiskLimit.id == LimitBreach.limit_id)
        if limit_id is not None:
            q = q.where(LimitBreach.limit_id == limit_id)
        if book_id is not None:
            q = q.where(RiskLimit.book_id == book_id)
        if since is not None:
            q = q.where(LimitBreach.detected_at >= since)
        if until is not None:
            q = q.where(LimitBreach.detected_at < until)
        if kinds is not None:
            q = q.where(LimitBreach.kind.in_(list(kinds)))
        q = q.order_by(LimitBreach.id.desc()).limit(int(limit))
        with self.store.session() as s:
            return [_breach(b, lim) for b, lim in s.execute(q).unique()]


def _eq(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _audit_state(row: RiskLimit) -> dict[str, Any]:
    """A limit as recorded in the audit trail (decimals as text, so nothing is rounded)."""
    return {
        "id": row.id, "book": row.book.name, "kind": row.kind.name, "product": row.product,
        "currency": row.currency, "confidence": row.confidence,
        "horizon_days": row.horizon_days, "limit_value": str(row.limit_value),
        "warning_pct": str(row.warning_pct), "active": bool(row.active), "comment": row.comment,
        "version": row.version, "updated_by": row.updated_by,
        "updated_at": audit.format_ts(row.updated_at),
    }  # fmt: skip


def _audit(
    s: Session, user: str, action: str, before: dict[str, Any] | None, row: RiskLimit
) -> None:
    """Append the limit change to the audit trail and, outside the demo desk, queue it for the
    desk database (outbox), in the change's transaction."""
    audit.append(s, user=user, entity="limit", entity_id=str(row.id), action=action,
                 before=before, after=_audit_state(row))  # fmt: skip
    if row.book.is_demo:
        return
    if row.limit_uuid is None:  # a limit from before the desk database
        row.limit_uuid = uuid.uuid4().hex
        s.flush()
    outbox.enqueue(s, entity="limit", entity_key=row.limit_uuid, version=row.version,
                   username=user, payload=canonical(limit_wire(row)))  # fmt: skip


def limit_wire(row: RiskLimit) -> dict[str, Any]:
    """A limit as the desk database sees it: natural keys, exact scaled integers."""
    return {
        "limit_uuid": row.limit_uuid, "book": row.book.name, "kind": row.kind.name,
        "product": row.product, "currency": row.currency, "confidence": row.confidence,
        "horizon_days": row.horizon_days,
        "limit_value": to_scaled(row.limit_value, QUANTITY_PLACES),
        "warning_pct": to_scaled(row.warning_pct, 2), "active": bool(row.active),
        "comment": row.comment, "version": row.version, "created_by": row.created_by,
        "created_at": audit.format_ts(row.created_at), "updated_by": row.updated_by,
        "updated_at": audit.format_ts(row.updated_at),
    }  # fmt: skip
