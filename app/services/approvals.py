"""Four-eyes approval of sensitive actions (see ``docs/four-eyes.md``).

Sensitive actions:

* amending or cancelling a trade whose current status is Confirmed or later (Confirmed,
  Allocated, Settled, Invoiced, Paid) -- except in demo books, which are local sample data;
* creating, changing or deactivating a risk limit.

They are not written directly. :class:`TradingService` / :class:`LimitService` raise
:class:`ApprovalRequired` and the user submits a *request* (:class:`ApprovalService`
``request_*``), validated and permission-checked at once. A second authorised user -- a risk
manager for anything, back office for trade amendments and cancellations -- approves it, and
the approval executes the stored change through the same services with ``approval=<request>``;
the change and the request's ``applied`` mark are committed together
(:func:`app.models.approvals.applying`). Nobody can decide their own request, not even the
local owner of a single-user workstation: there the request waits until a second user signs in.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from app.models.approvals import (
    ApprovalError,
    ApprovalRecord,
    ApprovalRepository,
    ApprovalStateError,
    SelfApprovalError,
    applying,
    jsonable,
)
from app.models.entities import UserRole
from app.models.enums import TradeStatus
from app.models.limits import (
    LimitDraft,
    LimitNotFoundError,
    LimitRecord,
    LimitRepository,
    LimitValidationError,
    StaleLimitError,
    validate_draft,
)
from app.models.repository import StaleVersionError, TradeNotFoundError, TradeRecord
from app.models.store import Store
from app.services.auth import Action, PermissionDenied, Principal, is_demo_book, require
from app.services.events import APPROVALS_CHANGED, EventBus

if TYPE_CHECKING:
    from app.services.limits import LimitService
    from app.services.trading import TradingService

__all__ = [
    "CONFIRMED_OR_LATER",
    "ApprovalApplyError",
    "ApprovalError",
    "ApprovalRequired",
    "ApprovalService",
    "FourEyes",
    "SelfApprovalError",
    "changes",
    "check_limit_approval",
    "check_limit_draft",
    "check_trade_approval",
    "why_cannot_decide",
]

#: Trade statuses from which an amendment or cancellation needs four-eyes approval.
CONFIRMED_OR_LATER = frozenset(
    {TradeStatus.CONFIRMED, TradeStatus.ALLOCATED, TradeStatus.SETTLED, TradeStatus.INVOICED,
     TradeStatus.PAID}
)  # fmt: skip

_KIND_TEXT = {
    "trade_amend": "amending this trade",
    "trade_cancel": "cancelling this trade",
    "limit_change": "changing a risk limit",
}


class ApprovalRequired(PermissionDenied):
    """The action needs a second user's approval: submit a request instead.

    ``kind`` is the request kind (``trade_amend``, ``trade_cancel``, ``limit_change``). A
    :class:`~app.services.auth.PermissionDenied`, so a view that only knows that shows the
    message; the ticket and the limits tab offer "Request approval…".
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ApprovalApplyError(ApprovalError):
    """The request was approved but its change could not be applied (e.g. the trade moved on
    meanwhile); ``record`` is the request, now marked rejected with the reason."""

    def __init__(self, message: str, record: ApprovalRecord) -> None:
        super().__init__(message)
        self.record = record


@dataclasses.dataclass(frozen=True)
class FourEyes:
    """A verified approval being executed: who asked, who approved."""

    record: ApprovalRecord

    @property
    def note(self) -> str:
        """``'four-eyes: requested by X, approved by Y'`` (recorded in the new version)."""
        return (f"four-eyes: requested by {self.record.requested_by}, "
                f"approved by {self.record.decided_by}")  # fmt: skip

    def annotate(self, comment: str, limit: int) -> str:
        """``comment`` with the four-eyes note appended, at most ``limit`` characters."""
        note = f"[{self.note}]"
        base = comment.strip()
        room = limit - len(note) - 1
        return (f"{base[:room]} {note}" if base else note)[:limit]


def _verify(
    store: Store,
    principal: Principal,
    approval: str,
    kind: str,
    entity_key: str,
    requester_action: Action,
    book: Any,
) -> FourEyes:
    try:
        rec = ApprovalRepository(store).get(approval)
    except ApprovalError:
        raise
    if rec.kind != kind or rec.entity_key != entity_key:
        raise ApprovalError(
            f"Request {rec.request_uuid[:8]} is for {_KIND_TEXT.get(rec.kind, rec.kind)} "
            f"({rec.entity_key}), not for this change."
        )
    if rec.state != "approved":
        raise ApprovalError(f"Request {rec.request_uuid[:8]} is {rec.state}, not approved.")
    if not rec.decided_by or rec.decided_by == rec.requested_by:
        raise SelfApprovalError(
            f"Request {rec.request_uuid[:8]} was not approved by a second user."
        )
    if principal.username == rec.decided_by:
        require(principal, Action.APPROVE)
    elif principal.username == rec.requested_by:
        require(principal, requester_action, book)
    else:
        raise PermissionDenied(
            f"Only {rec.decided_by}, who approved request {rec.request_uuid[:8]}, or "
            f"{rec.requested_by}, who made it, may execute it."
        )
    return FourEyes(rec)


def four_eyes_applies(principal: Principal, book: Any) -> bool:
    """Four-eyes needs a second user: it applies on a desk (users are configured), not on a
    single-user workstation (the local owner, ``role=None``: every change is still audited),
    and not to the demo desk."""
    return principal.role is not None and not is_demo_book(book)


def trade_needs_approval(
    status: TradeStatus, book: Any, principal: Principal | None = None
) -> bool:
    """Whether amending or cancelling a trade in ``status`` (in ``book``) needs four-eyes."""
    if principal is not None and principal.role is None:
        return False
    return status in CONFIRMED_OR_LATER and not is_demo_book(book)


def check_trade_approval(
    store: Store,
    principal: Principal,
    approval: str | None,
    kind: str,
    current: TradeRecord,
    book: Any,
) -> FourEyes | None:
    """The four-eyes check of a trade amendment / cancellation (used by ``TradingService``).

    Without ``approval``: ``None`` when none is needed, else :class:`ApprovalRequired`. With
    it: the request must be approved, for this trade and kind, decided by a second user, and
    executed by its approver (who needs APPROVE) or its requester (who needs AMEND/CANCEL).
    """
    if approval is None:
        if not trade_needs_approval(current.status, book, principal):
            return None
        verb = "Amending" if kind == "trade_amend" else "Cancelling"
        raise ApprovalRequired(
            kind,
            f"Trade {current.trade_uuid.hex[:8]} is {current.status.label}: {verb.lower()} it "
            "needs four-eyes approval. Submit a request (Request approval…) for a risk manager "
            "or back office to approve.",
        )
    action = Action.AMEND if kind == "trade_amend" else Action.CANCEL
    return _verify(store, principal, approval, kind, current.trade_uuid.hex, action, book)


def limit_key(limit_id: int | None) -> str:
    """The request ``entity_key`` of a limit (``limit:new`` for one not yet created)."""
    return "limit:new" if limit_id is None else f"limit:{limit_id}"


def check_limit_approval(
    store: Store, principal: Principal, approval: str | None, limit_id: int | None, book: Any
) -> FourEyes | None:
    """The four-eyes check of a limit change (used by ``LimitService``): on a desk, every
    create, change or deactivation needs an approved request (:class:`ApprovalRequired`
    otherwise); ``None`` where four-eyes does not apply (:func:`four_eyes_applies`)."""
    if approval is None and not four_eyes_applies(principal, book):
        return None
    if approval is None:
        raise ApprovalRequired(
            "limit_change",
            "Changing a risk limit needs four-eyes approval. Submit a request (Request "
            "approval…) for a second risk manager to approve.",
        )
    return _verify(store, principal, approval, "limit_change", limit_key(limit_id),
                   Action.SET_LIMIT, book)  # fmt: skip


def check_limit_draft(
    lrepo: LimitRepository, draft: LimitDraft, limit_id: int | None
) -> LimitDraft:
    """The normalised draft, or ``LimitValidationError`` with every problem the repository
    would refuse (fields, unknown book or product, an active duplicate) -- without writing."""
    clean, errors = validate_draft(draft)
    if errors:
        raise LimitValidationError(errors)
    if clean.book_id not in lrepo.books():
        raise LimitValidationError({"book_id": f"no book with id {clean.book_id}"})
    if clean.product is not None and clean.product not in lrepo.products():
        raise LimitValidationError({"product": f"unknown product {clean.product}"})
    for other in lrepo.list_limits(book_id=clean.book_id):
        if other.id != limit_id and (
            other.kind, other.product, other.currency, other.confidence, other.horizon_days
        ) == (clean.kind, clean.product, clean.currency, clean.confidence,
              clean.horizon_days):  # fmt: skip
            raise LimitValidationError(
                {"kind": f"the book already has this active limit (#{other.id}): edit that one"}
            )
    return clean


def why_cannot_decide(rec: ApprovalRecord, principal: Principal) -> str | None:
    """``None`` when ``principal`` may approve/reject ``rec`` now, else a sentence why not
    (for the Approvals dock's disabled buttons)."""
    if rec.requested_by == principal.username:
        if principal.is_local_owner:
            return ("You cannot approve your own request. In single-user mode it waits until a "
                    "second user signs in on this workstation.")  # fmt: skip
        return "You cannot approve your own request."
    if rec.state == "approved":
        if rec.decided_by == principal.username:
            return None  # the approver may retry applying it
        return f"Already approved by {rec.decided_by}; waiting to be applied."
    if rec.state != "pending":
        return f"The request is {rec.state}."
    return _approver_refusal(rec, principal)


def _approver_refusal(rec: ApprovalRecord, p: Principal) -> str | None:
    if p.role is None or p.role is UserRole.RISK_MANAGER:
        return None
    if p.role is UserRole.BACK_OFFICE:
        if rec.kind == "limit_change":
            return "Back office approves trade amendments and cancellations, not limit changes."
        return None
    return f"The {p.role.label.lower()} role may not approve four-eyes requests."


_LABELS = {
    "book": "Book", "counterparty": "Counterparty", "product": "Product",
    "instrument": "Instrument", "side": "Side", "quantity": "Quantity", "price": "Price",
    "trade_date": "Trade date", "delivery_start": "Delivery start",
    "delivery_end": "Delivery end", "option_type": "Option type", "strike": "Strike",
    "expiry_date": "Expiry", "exercise_style": "Exercise", "premium": "Premium",
    "comment": "Comment", "status": "Status", "kind": "Kind", "limit_value": "Limit",
    "currency": "Currency", "confidence": "Confidence", "horizon_days": "Horizon (days)",
    "warning_pct": "Warning %", "active": "Active", "book_id": "Book id",
}  # fmt: skip


def changes(rec: ApprovalRecord) -> list[tuple[str, str, str]]:
    """``(field, before, after)`` for every field the request changes (the reviewer's diff)."""
    before = rec.payload.get("before") or {}
    after = rec.payload.get("after") or {}
    out = []
    for key in list(after) + [k for k in before if k not in after]:
        b, a = before.get(key), after.get(key)
        if b != a:
            out.append((_LABELS.get(key, key), _text(b), _text(a)))
    return out


def _text(v: Any) -> str:
    return "" if v is None else str(v)


class ApprovalService:
    """Submit, decide, withdraw and execute four-eyes requests.

    ``principal_getter`` returns the signed-in user (called on every operation, so a switch of
    user takes effect at once). ``trading`` and ``limits`` execute approved changes and must
    run as the same principal. Publishes :data:`~app.services.events.APPROVALS_CHANGED`
    (``request_uuid``, ``state``) after every change. Thread-safe: every call opens its own
    sessions.
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        trading: TradingService,
        limits: LimitService | None,
        principal_getter: Callable[[], Principal],
    ) -> None:
        self.store = store
        self.repo = ApprovalRepository(store)
        self.bus = bus
        self.trading = trading
        self.limits = limits
        self.principal_getter = principal_getter

    @property
    def principal(self) -> Principal:
        return self.principal_getter()

    def _publish(self, rec: ApprovalRecord) -> ApprovalRecord:
        self.bus.publish(APPROVALS_CHANGED, request_uuid=rec.request_uuid, state=rec.state)
        return rec

    # -- reads --------------------------------------------------------------------------------
    def pending(self) -> list[ApprovalRecord]:
        """Open requests (pending, or approved and not yet applied), newest first."""
        return self.repo.pending()

    def mine(self) -> list[ApprovalRecord]:
        """The signed-in user's own requests in every state, newest first."""
        return self.repo.mine(self.principal.username)

    def get(self, request_uuid: str) -> ApprovalRecord:
        return self.repo.get(request_uuid)

    # -- requests -----------------------------------------------------------------------------
    def _trade_raw(self, econ: Mapping[str, Any]) -> dict[str, Any]:
        ref = self.trading.refdata
        raw = {k: econ.get(k) for k in ("instrument", "side", "quantity", "price", "trade_date",
                                         "delivery_start", "delivery_end", "option_type",
                                         "strike", "expiry_date", "exercise_style", "premium",
                                         "comment")}  # fmt: skip
        raw["book"] = ref.books[econ["book_id"]].name
        raw["counterparty"] = ref.counterparties[econ["counterparty_id"]].name
        raw["product"] = ref.products[econ["product_id"]].code
        return jsonable(raw)  # type: ignore[no-any-return]

    def _open_trade(
        self, trade_uuid: uuid.UUID, expected_version: int, action: Action, reason: str
    ) -> tuple[TradeRecord, Any]:
        from app.services.trading import TradeValidationError

        p = self.principal
        current = self.trading.repo.get(trade_uuid)
        book = self.trading._book(current.book_id)
        require(p, action, book)
        if not reason.strip():
            raise TradeValidationError({"reason": "give a reason for the request"})
        if current.status is TradeStatus.CANCELLED:
            raise TradeValidationError({"status": "the trade is cancelled"})
        if current.version != expected_version:
            raise StaleVersionError(
                f"Trade {trade_uuid.hex[:8]} is at version {current.version}, not "
                f"{expected_version}: reload it before asking for approval."
            )
        if not trade_needs_approval(current.status, book):
            raise ApprovalError(
                f"Trade {trade_uuid.hex[:8]} is {current.status.label}: no approval is needed, "
                "change it directly."
            )
        return current, book

    def request_trade_amend(
        self, trade_uuid: uuid.UUID, expected_version: int, raw: Mapping[str, Any], reason: str
    ) -> ApprovalRecord:
        """Ask for a second user's approval of an amendment of a Confirmed-or-later trade.

        Refused at once (nothing stored) when the amendment is invalid
        (``TradeValidationError``), the user may not amend the trade's books
        (``PermissionDenied``), ``expected_version`` is stale or no approval is needed.
        """
        from app.services.trading import TradeValidationError

        current, _book = self._open_trade(trade_uuid, expected_version, Action.AMEND, reason)
        res = self.trading.validate(raw)
        if not res.ok:
            raise TradeValidationError(res.errors)
        require(self.principal, Action.AMEND, self.trading._book(res.economics["book_id"]))
        before = self._trade_raw(current.economics())
        after = self._trade_raw(res.economics)
        diff = [k for k in after if after[k] != before.get(k)]
        if not diff:
            raise TradeValidationError({"trade": "the amendment changes nothing"})
        what = ", ".join(f"{_LABELS.get(k, k).lower()} {before.get(k)} → {after[k]}"
                         for k in diff)  # fmt: skip
        rec = self.repo.create(
            kind="trade_amend", entity_key=trade_uuid.hex, book_id=current.book_id,
            summary=f"Amend {current.status.label.lower()} trade {trade_uuid.hex[:8]} "
                    f"({before['book']}): {what}",
            payload={"trade_uuid": trade_uuid.hex, "expected_version": expected_version,
                     "status": current.status.name, "before": before, "after": after,
                     "reason": reason.strip()},
            requested_by=self.principal.username,
        )  # fmt: skip
        return self._publish(rec)

    def request_trade_cancel(
        self, trade_uuid: uuid.UUID, expected_version: int, reason: str
    ) -> ApprovalRecord:
        """Ask for a second user's approval of cancelling a Confirmed-or-later trade."""
        current, _book = self._open_trade(trade_uuid, expected_version, Action.CANCEL, reason)
        book_name = self.trading.refdata.books[current.book_id].name
        rec = self.repo.create(
            kind="trade_cancel", entity_key=trade_uuid.hex, book_id=current.book_id,
            summary=f"Cancel {current.status.label.lower()} trade {trade_uuid.hex[:8]} "
                    f"({book_name}): {reason.strip()}",
            payload={"trade_uuid": trade_uuid.hex, "expected_version": expected_version,
                     "before": {"status": current.status.name},
                     "after": {"status": TradeStatus.CANCELLED.name},
                     "reason": reason.strip()},
            requested_by=self.principal.username,
        )  # fmt: skip
        return self._publish(rec)

    def request_limit_change(
        self,
        draft: LimitDraft | None,
        reason: str,
        *,
        limit_id: int | None = None,
        expected_version: int | None = None,
        deactivate: bool = False,
    ) -> ApprovalRecord:
        """Ask for approval of a new limit (``limit_id`` None), a change of limit ``limit_id``
        to ``draft``, or its deactivation (``deactivate``, ``draft`` unused).

        Validated first: ``LimitValidationError`` (field -> message) for a bad draft, unknown
        book or product, or a duplicate; ``StaleLimitError`` for a stale ``expected_version``;
        ``PermissionDenied`` without SET_LIMIT for the book.
        """
        if self.limits is None:
            raise ApprovalError("Limits are not available on this workstation.")
        lrepo = self.limits.repo
        if not reason.strip():
            raise LimitValidationError({"reason": "give a reason for the request"})
        current: LimitRecord | None = None
        if limit_id is not None:
            current = lrepo.get(limit_id)
            if expected_version is not None and current.version != expected_version:
                raise StaleLimitError(
                    f"Limit #{limit_id} is at version {current.version}, not "
                    f"{expected_version}: someone changed it meanwhile; reload it."
                )
        if deactivate:
            if current is None:
                raise LimitValidationError({"limit": "choose the limit to deactivate"})
            if not current.active:
                raise LimitValidationError({"active": "the limit is already inactive"})
            clean = current.draft()
        else:
            if draft is None:
                raise LimitValidationError({"limit": "no limit given"})
            clean = check_limit_draft(lrepo, draft, limit_id)
        books = lrepo.books()
        book_name = books[clean.book_id]
        require(self.principal, Action.SET_LIMIT, book_name)
        if current is not None and current.book_id != clean.book_id:
            require(self.principal, Action.SET_LIMIT, current.book_name)
        before = None if current is None else _limit_view(current.draft(), current.book_name,
                                                          current.active)  # fmt: skip
        after = _limit_view(clean, book_name, not deactivate)
        if before is not None and before == after:
            raise LimitValidationError({"limit": "the change changes nothing"})
        verb = "Deactivate" if deactivate else ("New" if current is None else "Change")
        title = current.title if current is not None else f"{book_name} {after['kind']}"
        what = ", ".join(f"{_LABELS.get(k, k).lower()} {_text((before or {}).get(k))} → "
                         f"{_text(v)}" for k, v in after.items()
                         if before is not None and before.get(k) != v)  # fmt: skip
        summary = f"{verb} limit {title}" + (f": {what}" if what else f" = {after['limit_value']}")
        rec = self.repo.create(
            kind="limit_change", entity_key=limit_key(limit_id), book_id=clean.book_id,
            summary=summary,
            payload={"action": "deactivate" if deactivate else
                               ("create" if limit_id is None else "update"),
                     "limit_id": limit_id,
                     "expected_version": None if current is None else current.version,
                     "draft": _draft_json(clean), "before": before, "after": after,
                     "reason": reason.strip()},
            requested_by=self.principal.username,
        )  # fmt: skip
        return self._publish(rec)

    # -- decisions ----------------------------------------------------------------------------
    def _check_approver(self, rec: ApprovalRecord, verb: str) -> Principal:
        p = self.principal
        if rec.requested_by == p.username:
            raise SelfApprovalError(
                f"You cannot {verb} your own request: a second user must decide it."
            )
        require(p, Action.APPROVE)
        why = _approver_refusal(rec, p)
        if why is not None:
            raise PermissionDenied(why)
        return p

    def approve(self, request_uuid: str, comment: str = "") -> ApprovalRecord:
        """Approve a pending request and execute its change, all or nothing.

        The request is decided first (``approved``); then the change is written through the
        trading / limit service with ``approval=request_uuid`` and, in that same transaction,
        the request is marked ``applied``. If the change can no longer be made (the trade or
        limit moved on meanwhile, the change became invalid) the request is marked
        ``rejected`` with the reason and :class:`ApprovalApplyError` is raised. An approver
        may call this again on a request they approved that is not applied yet (retry).
        """
        rec = self.repo.get(request_uuid)
        p = self._check_approver(rec, "approve")
        if rec.state == "approved" and rec.decided_by == p.username:
            pass  # approved earlier, its execution did not finish: retry it
        else:
            rec = self._publish(self.repo.decide(rec.request_uuid, p.username, True, comment))
        return self._execute(rec, p)

    def _execute(self, rec: ApprovalRecord, p: Principal) -> ApprovalRecord:
        from app.services.trading import TradeValidationError

        expected = (StaleVersionError, StaleLimitError, TradeValidationError,
                    LimitValidationError, PermissionDenied, ApprovalError, TradeNotFoundError,
                    LimitNotFoundError)  # fmt: skip
        try:
            with applying(self.store, rec.request_uuid, p.username) as pending:
                self._run(rec)
            if pending.applied is None:
                raise ApprovalError("the change wrote nothing")
        except expected as exc:
            failed = self._publish(self.repo.apply_failed(rec.request_uuid, p.username,
                                                          _reason(exc)))  # fmt: skip
            raise ApprovalApplyError(
                f"Request {rec.request_uuid[:8]} was approved but could not be applied: "
                f"{_reason(exc)}. It is marked rejected; the requester can ask again.",
                failed,
            ) from exc
        return self._publish(pending.applied)

    def _run(self, rec: ApprovalRecord) -> None:
        pl = rec.payload
        if rec.kind == "trade_amend":
            self.trading.amend(uuid.UUID(pl["trade_uuid"]), int(pl["expected_version"]),
                               pl["after"], approval=rec.request_uuid)  # fmt: skip
        elif rec.kind == "trade_cancel":
            self.trading.cancel(uuid.UUID(pl["trade_uuid"]), int(pl["expected_version"]),
                                pl["reason"], approval=rec.request_uuid)  # fmt: skip
        elif rec.kind == "limit_change":
            if self.limits is None:
                raise ApprovalError("limits are not available on this workstation")
            user = self.principal.username
            draft = LimitDraft(**pl["draft"])
            if pl["action"] == "create":
                self.limits.create(draft, user, approval=rec.request_uuid)
            elif pl["action"] == "update":
                self.limits.update(int(pl["limit_id"]), int(pl["expected_version"]), draft,
                                   user, approval=rec.request_uuid)  # fmt: skip
            else:
                self.limits.set_active(int(pl["limit_id"]), int(pl["expected_version"]), False,
                                       user, approval=rec.request_uuid)  # fmt: skip
        else:
            raise ApprovalError(f"unknown request kind {rec.kind!r}")

    def reject(self, request_uuid: str, comment: str = "") -> ApprovalRecord:
        """Reject a pending request (nothing changes; the requester sees the comment)."""
        rec = self.repo.get(request_uuid)
        p = self._check_approver(rec, "reject")
        if rec.state != "pending":
            raise ApprovalStateError(f"Request {rec.request_uuid[:8]} is {rec.state}.")
        return self._publish(self.repo.decide(rec.request_uuid, p.username, False, comment))

    def withdraw(self, request_uuid: str, comment: str = "") -> ApprovalRecord:
        """The requester takes back their pending request."""
        return self._publish(self.repo.withdraw(request_uuid, self.principal.username, comment))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def _draft_json(d: LimitDraft) -> dict[str, Any]:
    out = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    return jsonable(out)  # type: ignore[no-any-return]


def _limit_view(d: LimitDraft, book_name: str, active: bool) -> dict[str, Any]:
    kind = d.kind.label if hasattr(d.kind, "label") else str(d.kind)
    view = {
        "book": book_name,
        "kind": kind,
        "product": d.product,
        "currency": d.currency,
        "confidence": None if d.confidence is None else f"{float(d.confidence) * 100:g}%",
        "horizon_days": d.horizon_days,
        "limit_value": d.limit_value,
        "warning_pct": d.warning_pct,
        "comment": d.comment,
        "active": "yes" if active else "no",
    }
    return jsonable(view)  # type: ignore[no-any-return]
