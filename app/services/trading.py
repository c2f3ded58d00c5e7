"""Trading use cases: parse and validate trade input, capture, amend, cancel.

One validation path serves the trade ticket, CSV/Excel import and scripts: raw values (text from
a form or a file, or already-typed values) go through :func:`validate_trade`, which returns typed
economics or a message per bad field. Nothing is written until a draft is valid.
"""

from __future__ import annotations

import datetime as dt
import getpass
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.models.enums import ExerciseStyle, InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.repository import RefData, TradeRecord, TradeRepository
from app.models.types import PRICE_PLACES, QUANTITY_PLACES, to_scaled
from app.services.approvals import check_trade_approval
from app.services.auth import Action, Principal, require
from app.services.events import TRADES_CHANGED, EventBus

#: Input fields of a trade, in the order forms and files present them.
TRADE_FIELDS = (
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
    "option_type",
    "strike",
    "expiry_date",
    "exercise_style",
    "premium",
    "comment",
)
OPTION_FIELDS = ("option_type", "strike", "expiry_date", "exercise_style", "premium")
REQUIRED = ("book", "counterparty", "product", "instrument", "side", "quantity", "price",
            "trade_date", "delivery_start", "delivery_end")  # fmt: skip


class TradeValidationError(ValueError):
    """Raised by capture/amend with ``errors``: field name -> message."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass
class Validation:
    """Result of :func:`validate_trade`: typed ``economics`` when ``ok``, else ``errors``."""

    economics: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def parse_date(v: Any) -> dt.date:
    """A date from a ``date``/``datetime`` or ISO ``YYYY-MM-DD`` text."""
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    text = str(v).strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"'{text}' is not a date (use YYYY-MM-DD)") from None


def parse_decimal(v: Any, places: int) -> Decimal:
    """An exact decimal with at most ``places`` decimals; accepts ``1,234.5`` thousands commas."""
    if isinstance(v, str):
        v = v.strip().replace(",", "").replace("_", "")
    return Decimal(to_scaled(v, places)).scaleb(-places)


def validate_trade(raw: Mapping[str, Any], ref: RefData) -> Validation:
    """Parse and check one trade's input; see the module docstring.

    ``raw`` keys are :data:`TRADE_FIELDS`; book/counterparty/product may be given by name
    (product by code) or as the reference objects' ids (ints).
    """
    res = Validation()
    err, econ = res.errors, res.economics

    for name in REQUIRED:
        if _blank(raw.get(name)):
            err[name] = "required"

    def lookup(name: str, mapping: Mapping[int, Any], by_name: Any, what: str) -> Any:
        v = raw.get(name)
        if _blank(v):
            return None
        found = mapping.get(v) if isinstance(v, int) else by_name(str(v))
        if found is None:
            err[name] = f"unknown {what} '{v}'"
        return found

    book = lookup("book", ref.books, ref.book_by_name, "book")
    cp = lookup("counterparty", ref.counterparties, ref.counterparty_by_name, "counterparty")
    product = lookup("product", ref.products, ref.product_by_code, "product")
    if book is not None:
        econ["book_id"] = book.id
    if cp is not None:
        econ["counterparty_id"] = cp.id
    if product is not None:
        econ["product_id"] = product.id
        econ["quantity_unit"] = product.unit
        econ["currency"] = product.currency

    def parse(name: str, fn: Any) -> Any:
        v = raw.get(name)
        if _blank(v) or name in err:
            return None
        try:
            return fn(v)
        except ValueError as exc:
            err[name] = str(exc)
            return None

    def enum_of(cls: Any) -> Any:
        return lambda v: v if isinstance(v, cls) else cls.from_text(str(v))

    instrument = parse("instrument", enum_of(InstrumentType))
    side = parse("side", enum_of(Side))
    qty = parse("quantity", lambda v: parse_decimal(v, QUANTITY_PLACES))
    price = parse("price", lambda v: parse_decimal(v, PRICE_PLACES))
    trade_date = parse("trade_date", parse_date)
    start = parse("delivery_start", parse_date)
    end = parse("delivery_end", parse_date)
    unit = parse("quantity_unit", enum_of(Unit))
    econ.update(instrument=instrument, side=side, quantity=qty, price=price,
                trade_date=trade_date, delivery_start=start, delivery_end=end)  # fmt: skip
    comment = raw.get("comment")
    econ["comment"] = "" if _blank(comment) else str(comment).strip()[:500]
    if len(str(comment or "")) > 500:
        err["comment"] = "at most 500 characters"

    if qty is not None and qty <= 0:
        err["quantity"] = "must be positive (use Side for sell)"
    if product is not None and unit is not None and unit != product.unit:
        err["quantity_unit"] = f"{product.code} trades in {product.unit.label}, not {unit.label}"
    if (
        price is not None
        and product is not None
        and not (product.price_floor <= price <= product.price_cap)
    ):
        err["price"] = (
            f"{price.normalize():f} is outside the sane band for {product.code} "
            f"[{product.price_floor.normalize():f}, {product.price_cap.normalize():f}] "
            f"{product.currency}/{product.unit.label}"
        )
    if start is not None and end is not None and end < start:
        err["delivery_end"] = "delivery end is before delivery start"
    if trade_date is not None and end is not None and trade_date > end:
        err["trade_date"] = "trade date is after the end of delivery"
    if trade_date is not None and trade_date > dt.date.today() + dt.timedelta(days=1):
        err["trade_date"] = "trade date is in the future"

    # Options need their own fields; other instruments must not carry them.
    if instrument is InstrumentType.OPTION:
        for name in ("option_type", "strike", "expiry_date", "exercise_style", "premium"):
            if _blank(raw.get(name)):
                err[name] = "required for an option"
        econ["option_type"] = parse("option_type", enum_of(OptionType))
        econ["exercise_style"] = parse("exercise_style", enum_of(ExerciseStyle))
        strike = parse("strike", lambda v: parse_decimal(v, PRICE_PLACES))
        premium = parse("premium", lambda v: parse_decimal(v, PRICE_PLACES))
        expiry = parse("expiry_date", parse_date)
        if premium is not None and premium < 0:
            err["premium"] = "must not be negative"
        if (
            strike is not None
            and product is not None
            and not (product.price_floor <= strike <= product.price_cap)
        ):
            err["strike"] = f"outside the sane band for {product.code}"
        if expiry is not None and end is not None and expiry > end:
            err["expiry_date"] = "expiry is after the end of delivery"
        if expiry is not None and trade_date is not None and expiry < trade_date:
            err["expiry_date"] = "expiry is before the trade date"
        econ.update(strike=strike, premium=premium, expiry_date=expiry)
    else:
        given = [n for n in OPTION_FIELDS if not _blank(raw.get(n))]
        if instrument is not None and given:
            for name in given:
                err[name] = f"only options have {name.replace('_', ' ')}"
        econ.update({n: None for n in OPTION_FIELDS})
    if err:
        res.economics = {}
    return res


def _with_client_id(economics: dict[str, Any], raw: Mapping[str, Any]) -> dict[str, Any]:
    """Carry a client-chosen ``trade_uuid`` (the ticket picks one when it opens) so the same
    booking submitted twice is stored once (see TradeRepository.insert_trades)."""
    given = raw.get("trade_uuid")
    if given:
        return {**economics, "trade_uuid": given if isinstance(given, uuid.UUID)
                else uuid.UUID(str(given))}  # fmt: skip
    return economics


def current_user() -> str:
    """The signed-in user (the OS account until sign-in exists)."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


#: The trade lifecycle, one step at a time (:meth:`TradingService.advance`). Cancelled is
#: reached only through :meth:`TradingService.cancel` and is terminal.
LIFECYCLE = (
    TradeStatus.CAPTURED, TradeStatus.VALIDATED, TradeStatus.CONFIRMED, TradeStatus.ALLOCATED,
    TradeStatus.SETTLED, TradeStatus.INVOICED, TradeStatus.PAID,
)  # fmt: skip


def next_status(status: TradeStatus) -> TradeStatus | None:
    """The lifecycle step after ``status`` (``None`` after Paid and for Cancelled)."""
    if status not in LIFECYCLE:
        return None
    i = LIFECYCLE.index(status)
    return LIFECYCLE[i + 1] if i + 1 < len(LIFECYCLE) else None


def check_step(current: TradeStatus, to_status: TradeStatus) -> None:
    """Raise :class:`TradeValidationError` unless ``current -> to_status`` is one lifecycle step."""
    if current is TradeStatus.CANCELLED:
        raise TradeValidationError({"status": "a cancelled trade cannot move any more"})
    if to_status is TradeStatus.CANCELLED:
        raise TradeValidationError({"status": "use Cancel (with a reason) to cancel a trade"})
    nxt = next_status(current)
    if to_status is not nxt:
        if nxt is None:
            why = f"{current.label} is the last step of the lifecycle"
        else:
            why = f"a {current.label} trade can only move to {nxt.label}"
        raise TradeValidationError({"status": f"{current.label} -> {to_status.label}: {why}"})


class TradingService:
    """Capture, amend, cancel and advance trades; publishes :data:`TRADES_CHANGED` after each
    write. Every write checks the :class:`~app.services.auth.Principal`'s permissions (the
    local owner, when no users are configured, may do everything)."""

    def __init__(
        self,
        repo: TradeRepository,
        bus: EventBus,
        user: str | None = None,
        *,
        principal: Principal | None = None,
    ) -> None:
        self.repo = repo
        self.bus = bus
        self.principal = principal or Principal.local_owner(user or current_user())
        self._ref: RefData | None = None

    @property
    def user(self) -> str:
        """The signed-in user's name (written into trade versions)."""
        return self.principal.username

    def set_principal(self, principal: Principal) -> None:
        """Switch the signed-in user (sign-in, sign-out / switch user)."""
        self.principal = principal

    def _book(self, book_id: int) -> Any:
        """The book (a :class:`~app.models.repository.BookRef`) or its id if unknown here."""
        ref = self.refdata.books.get(book_id)
        if ref is None:
            ref = self.refresh_refdata().books.get(book_id)
        return ref if ref is not None else str(book_id)

    @property
    def refdata(self) -> RefData:
        if self._ref is None:
            self._ref = self.repo.reference_data()
        return self._ref

    def refresh_refdata(self) -> RefData:
        self._ref = None
        return self.refdata

    def validate(self, raw: Mapping[str, Any]) -> Validation:
        return validate_trade(raw, self.refdata)

    def capture(self, raw: Mapping[str, Any]) -> TradeRecord:
        """Validate and store a new trade; raises :class:`TradeValidationError`."""
        return self.capture_many([raw])[0]

    def capture_many(self, raws: Sequence[Mapping[str, Any]]) -> list[TradeRecord]:
        """Validate all, then store all in one transaction (or nothing if any is invalid)."""
        results = [self.validate(r) for r in raws]
        bad = {f"row {i + 1}.{k}": v for i, r in enumerate(results) for k, v in r.errors.items()}
        if bad:
            raise TradeValidationError(bad if len(raws) > 1 else results[0].errors)
        for book_id in {r.economics["book_id"] for r in results}:
            require(self.principal, Action.CAPTURE, self._book(book_id))
        econ = [_with_client_id(r.economics, raw) for r, raw in zip(results, raws, strict=True)]
        records = self.repo.insert_trades(econ, self.user)
        self.bus.publish(TRADES_CHANGED, trade_uuids=[r.trade_uuid for r in records],
                         kind="captured")  # fmt: skip
        return records

    def amend(
        self,
        trade_uuid: uuid.UUID,
        expected_version: int,
        raw: Mapping[str, Any],
        *,
        approval: str | None = None,
    ) -> TradeRecord:
        """Write a new version with the validated economics of ``raw``.

        A Confirmed-or-later trade needs four-eyes: without ``approval`` this raises
        :class:`~app.services.approvals.ApprovalRequired` (nothing written); with it, the
        approved request is verified (see :func:`~app.services.approvals.check_trade_approval`)
        and the new version's comment records who asked and who approved.
        """
        current = self.repo.get(trade_uuid)
        if approval is None:
            require(self.principal, Action.AMEND, self._book(current.book_id))
        if current.status is TradeStatus.CANCELLED:
            raise TradeValidationError({"status": "a cancelled trade cannot be amended"})
        res = self.validate(raw)
        if not res.ok:
            raise TradeValidationError(res.errors)
        if approval is None:
            require(self.principal, Action.AMEND, self._book(res.economics["book_id"]))
        four_eyes = check_trade_approval(self.repo.store, self.principal, approval,
                                         "trade_amend", current, self._book(current.book_id))  # fmt: skip
        econ = res.economics
        if four_eyes is not None:
            econ = {**econ, "comment": four_eyes.annotate(econ.get("comment") or "", 500)}
        rec = self.repo.new_version(trade_uuid, expected_version, self.user, econ)
        self.bus.publish(TRADES_CHANGED, trade_uuids=[trade_uuid], kind="amended")
        return rec

    def cancel(
        self,
        trade_uuid: uuid.UUID,
        expected_version: int,
        reason: str,
        *,
        approval: str | None = None,
    ) -> TradeRecord:
        """Cancel a trade (a new version with status Cancelled; nothing is deleted).

        Four-eyes as in :meth:`amend`: a Confirmed-or-later trade needs an approved request.
        """
        if not reason.strip():
            raise TradeValidationError({"comment": "give a reason for the cancellation"})
        current = self.repo.get(trade_uuid)
        if approval is None:
            require(self.principal, Action.CANCEL, self._book(current.book_id))
        if current.status is TradeStatus.CANCELLED:
            raise TradeValidationError({"status": "the trade is already cancelled"})
        four_eyes = check_trade_approval(self.repo.store, self.principal, approval,
                                         "trade_cancel", current, self._book(current.book_id))  # fmt: skip
        comment = f"Cancelled: {reason.strip()}"
        if four_eyes is not None:
            comment = four_eyes.annotate(comment, 500)
        rec = self.repo.new_version(
            trade_uuid, expected_version, self.user,
            {"comment": comment[:500]}, status=TradeStatus.CANCELLED,
        )  # fmt: skip
        self.bus.publish(TRADES_CHANGED, trade_uuids=[trade_uuid], kind="cancelled")
        return rec

    def advance(
        self, trade_uuid: uuid.UUID, expected_version: int, to_status: TradeStatus
    ) -> TradeRecord:
        """Move a trade one lifecycle step (:data:`LIFECYCLE`) to ``to_status``.

        Writes a new version with the same economics. Raises :class:`TradeValidationError`
        for an illegal step (a jump, a step back, anything after Cancelled),
        :class:`~app.services.auth.PermissionDenied` when the principal may not (beyond
        Validated is back office) and ``StaleVersionError`` for a stale ``expected_version``.
        """
        current = self.repo.get(trade_uuid)
        require(self.principal, Action.LIFECYCLE, self._book(current.book_id),
                to_status=to_status)  # fmt: skip
        check_step(current.status, to_status)
        rec = self.repo.new_version(trade_uuid, expected_version, self.user, status=to_status)
        self.bus.publish(TRADES_CHANGED, trade_uuids=[trade_uuid], kind="lifecycle")
        return rec

    def raw_from_record(self, rec: TradeRecord) -> dict[str, Any]:
        """The input form of an existing trade (to prefill the ticket for an amendment)."""
        ref = self.refdata
        return {
            "book": ref.books[rec.book_id].name,
            "counterparty": ref.counterparties[rec.counterparty_id].name,
            "product": ref.products[rec.product_id].code,
            "instrument": rec.instrument,
            "side": rec.side,
            "quantity": rec.quantity,
            "price": rec.price,
            "trade_date": rec.trade_date,
            "delivery_start": rec.delivery_start,
            "delivery_end": rec.delivery_end,
            "option_type": rec.option_type,
            "strike": rec.strike,
            "expiry_date": rec.expiry_date,
            "exercise_style": rec.exercise_style,
            "premium": rec.premium,
            "comment": rec.comment,
        }
