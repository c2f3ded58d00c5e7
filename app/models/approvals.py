"""Four-eyes approval requests (table ``approval_request``): persistence and state machine.

A sensitive change (amending or cancelling a confirmed trade, creating / changing /
deactivating a risk limit) is not written directly: it is stored as a *request* that a second
authorised user decides. The request's ``payload`` (JSON text) holds everything needed to
execute the change later plus a ``before``/``after`` view for the reviewer.

States::

    pending --decide(approve)--> approved --mark_applied--> applied
       |                            '------apply_failed---> rejected   (e.g. trade moved on)
       |--decide(reject)----------> rejected
       '--withdraw (requester)----> withdrawn

Every transition is guarded by the state it starts from (an *optimistic guard*: two approvers
racing on one request cannot both decide it), appends an audit record (``entity="approval"``)
and enqueues an outbox row in the same transaction. The outbox ``version`` counts the
request's transitions: 1 the request, 2 the decision, 3 applied (or failed to apply).

:func:`applying` lets the approval's ``approved -> applied`` transition ride in the *same*
transaction as the change it executes, although that change is written by another
repository: the first store session that writes something inside the ``with`` block marks the
request applied just before it commits, so the change and the mark are stored together or not
at all.
"""

from __future__ import annotations

import builtins
import contextvars
import datetime as dt
import enum
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.models import audit, outbox
from app.models.entities import ApprovalRequest, Book, OutboxItem
from app.models.payload import canonical
from app.models.store import Store
from app.models.types import utcnow

__all__ = [
    "KINDS",
    "STATES",
    "ApprovalError",
    "ApprovalNotFoundError",
    "ApprovalRecord",
    "ApprovalRepository",
    "ApprovalStateError",
    "SelfApprovalError",
    "applying",
    "jsonable",
]

#: Kinds of request.
KINDS = ("trade_amend", "trade_cancel", "limit_change")
#: States of a request; ``pending`` and ``approved`` are open, the others final.
STATES = ("pending", "approved", "rejected", "withdrawn", "applied")
OPEN_STATES = ("pending", "approved")
_SUMMARY_LEN = 300
_COMMENT_LEN = 300


class ApprovalError(Exception):
    """A four-eyes request could not be created, decided or applied (message for the user)."""


class ApprovalNotFoundError(ApprovalError, LookupError):
    """No request with that id."""


class ApprovalStateError(ApprovalError):
    """The request is no longer in the state the operation needs (someone was faster)."""


class SelfApprovalError(ApprovalError, PermissionError):
    """A user tried to approve (or reject) their own request."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: enums by name, dates ISO, decimals as exact text."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dt.datetime):
        return audit.format_ts(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True)
class ApprovalRecord:
    """An immutable snapshot of one request (safe to pass between threads)."""

    request_uuid: str
    kind: str
    entity_key: str
    book_id: int | None
    book_name: str | None
    summary: str
    payload: dict[str, Any] = field(repr=False)
    requested_by: str
    requested_at: dt.datetime
    state: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_comment: str

    @property
    def is_open(self) -> bool:
        """Still waiting for a decision (pending) or for its execution (approved)."""
        return self.state in OPEN_STATES

    @property
    def reason(self) -> str:
        """The requester's reason."""
        return str(self.payload.get("reason", ""))

    def wire(self) -> dict[str, Any]:
        """The request as the outbox / central database see it (natural keys, ISO times)."""
        return {
            "request_uuid": self.request_uuid,
            "kind": self.kind,
            "entity_key": self.entity_key,
            "book": self.book_name,
            "summary": self.summary,
            "payload": self.payload,
            "requested_by": self.requested_by,
            "requested_at": audit.format_ts(self.requested_at),
            "state": self.state,
            "decided_by": self.decided_by,
            "decided_at": None if self.decided_at is None else audit.format_ts(self.decided_at),
            "decision_comment": self.decision_comment,
        }


def _record(s: Session, row: ApprovalRequest) -> ApprovalRecord:
    book = s.get(Book, row.book_id) if row.book_id is not None else None
    return ApprovalRecord(
        request_uuid=row.request_uuid,
        kind=row.kind,
        entity_key=row.entity_key,
        book_id=row.book_id,
        book_name=None if book is None else book.name,
        summary=row.summary,
        payload=json.loads(row.payload or "{}"),
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        state=row.state,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        decision_comment=row.decision_comment or "",
    )


def _row(s: Session, request_uuid: str) -> ApprovalRequest:
    row = s.scalars(
        select(ApprovalRequest).where(ApprovalRequest.request_uuid == str(request_uuid))
    ).first()
    if row is None:
        raise ApprovalNotFoundError(f"There is no approval request {str(request_uuid)[:8]}.")
    return row


def _log(s: Session, rec: ApprovalRecord, user: str, action: str, version: int,
         before: ApprovalRecord | None) -> None:  # fmt: skip
    """Audit record + outbox row for one transition, in ``s``'s transaction."""
    audit.append(
        s, user=user, entity="approval", entity_id=rec.request_uuid, action=action,
        before=None if before is None else before.wire(), after=rec.wire(),
    )  # fmt: skip
    outbox.enqueue(
        s, entity="approval", entity_key=rec.request_uuid, version=version, username=user,
        payload=canonical(rec.wire()),
    )  # fmt: skip


def _transition(
    s: Session,
    request_uuid: str,
    *,
    from_state: str,
    to_state: str,
    user: str,
    action: str,
    version: int,
    values: Mapping[str, Any] | None = None,
) -> ApprovalRecord:
    """Guarded ``from_state -> to_state`` of one request in ``s``; logs it."""
    row = _row(s, request_uuid)
    before = _record(s, row)
    res = s.execute(
        update(ApprovalRequest)
        .where(
            ApprovalRequest.request_uuid == before.request_uuid,
            ApprovalRequest.state == from_state,
        )
        .values(state=to_state, **(values or {}))
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        s.refresh(row)
        raise ApprovalStateError(
            f"Request {before.request_uuid[:8]} is {row.state}, not {from_state}: "
            "someone else acted on it meanwhile."
        )
    s.refresh(row)
    after = _record(s, row)
    _log(s, after, user, action, version, before)
    return after


class ApprovalRepository:
    """Reads and writes four-eyes requests of a :class:`~app.models.store.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        *,
        kind: str,
        entity_key: str,
        book_id: int | None,
        summary: str,
        payload: Mapping[str, Any],
        requested_by: str,
    ) -> ApprovalRecord:
        """Store a new pending request (audit + outbox version 1, one transaction)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        with self.store.session() as s:
            row = ApprovalRequest(
                request_uuid=str(uuid.uuid4()),
                kind=kind,
                entity_key=str(entity_key)[:64],
                book_id=book_id,
                summary=summary.strip()[:_SUMMARY_LEN],
                payload=canonical(jsonable(dict(payload))),
                requested_by=requested_by,
                requested_at=utcnow(),
                state="pending",
                decided_by=None,
                decided_at=None,
                decision_comment="",
            )
            s.add(row)
            s.flush()
            rec = _record(s, row)
            _log(s, rec, requested_by, "request", 1, None)
            return rec

    def get(self, request_uuid: str) -> ApprovalRecord:
        """One request (:class:`ApprovalNotFoundError` if unknown)."""
        with self.store.session() as s:
            return _record(s, _row(s, request_uuid))

    def list(
        self,
        *,
        states: Sequence[str] | None = None,
        requested_by: str | None = None,
        kind: str | None = None,
        book_id: int | None = None,
        entity_key: str | None = None,
        limit: int = 500,
    ) -> list[ApprovalRecord]:
        """Requests, newest first, filtered by state(s), requester, kind, book and entity."""
        q = select(ApprovalRequest)
        if states is not None:
            q = q.where(ApprovalRequest.state.in_(list(states)))
        if requested_by is not None:
            q = q.where(ApprovalRequest.requested_by == requested_by)
        if kind is not None:
            q = q.where(ApprovalRequest.kind == kind)
        if book_id is not None:
            q = q.where(ApprovalRequest.book_id == book_id)
        if entity_key is not None:
            q = q.where(ApprovalRequest.entity_key == entity_key)
        q = q.order_by(ApprovalRequest.id.desc()).limit(int(limit))
        with self.store.session() as s:
            return [_record(s, r) for r in s.scalars(q)]

    def pending(self) -> builtins.list[ApprovalRecord]:
        """Open requests (pending, or approved but not yet applied), newest first."""
        return self.list(states=OPEN_STATES)

    def mine(self, user: str, limit: int = 200) -> builtins.list[ApprovalRecord]:
        """``user``'s own requests in every state, newest first."""
        return self.list(requested_by=user, limit=limit)

    def decide(
        self, request_uuid: str, approver: str, approve: bool, comment: str = ""
    ) -> ApprovalRecord:
        """Approve or reject a pending request.

        Raises :class:`SelfApprovalError` when ``approver`` made the request and
        :class:`ApprovalStateError` when it is no longer pending.
        """
        with self.store.session() as s:
            row = _row(s, request_uuid)
            if row.requested_by == approver:
                verb = "approve" if approve else "reject"
                raise SelfApprovalError(
                    f"You cannot {verb} your own request: a second user must decide it."
                )
            return _transition(
                s, row.request_uuid, from_state="pending",
                to_state="approved" if approve else "rejected", user=approver,
                action="approve" if approve else "reject", version=2,
                values={"decided_by": approver, "decided_at": utcnow(),
                        "decision_comment": comment.strip()[:_COMMENT_LEN]},
            )  # fmt: skip

    def withdraw(self, request_uuid: str, user: str, comment: str = "") -> ApprovalRecord:
        """The requester takes back a pending request."""
        with self.store.session() as s:
            row = _row(s, request_uuid)
            if row.requested_by != user:
                raise ApprovalError(
                    f"Only {row.requested_by}, who made the request, can withdraw it."
                )
            return _transition(
                s, row.request_uuid, from_state="pending", to_state="withdrawn", user=user,
                action="withdraw", version=2,
                values={"decided_by": user, "decided_at": utcnow(),
                        "decision_comment": comment.strip()[:_COMMENT_LEN]},
            )  # fmt: skip

    def mark_applied(
        self, request_uuid: str, user: str, session: Session | None = None
    ) -> ApprovalRecord:
        """``approved -> applied``; in ``session`` when given (the change's own transaction)."""
        if session is not None:
            return _transition(session, request_uuid, from_state="approved",
                               to_state="applied", user=user, action="applied", version=3)  # fmt: skip
        with self.store.session() as s:
            return self.mark_applied(request_uuid, user, s)

    def apply_failed(self, request_uuid: str, user: str, reason: str) -> ApprovalRecord:
        """``approved -> rejected``: the approved change could not be executed (``reason``)."""
        with self.store.session() as s:
            row = _row(s, request_uuid)
            note = f"{row.decision_comment} | not applied: {reason}".strip(" |")
            return _transition(
                s, row.request_uuid, from_state="approved", to_state="rejected", user=user,
                action="apply_failed", version=3,
                values={"decision_comment": note[:_COMMENT_LEN]},
            )  # fmt: skip


# -- executing an approved change in the change's own transaction -----------------------------


@dataclass
class _Pending:
    engine: Engine
    repo: ApprovalRepository
    request_uuid: str
    user: str
    applied: ApprovalRecord | None = None


_APPLYING: contextvars.ContextVar[_Pending | None] = contextvars.ContextVar(
    "qe_approval_applying", default=None
)
_WROTE = "qe_approval_wrote"


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _ctx: Any) -> None:
    if _APPLYING.get() is not None:
        session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: Any) -> None:
    if _APPLYING.get() is not None and (state.is_update or state.is_insert or state.is_delete):
        state.session.info[_WROTE] = True


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    pending = _APPLYING.get()
    if pending is None or pending.applied is not None:
        return
    if not session.info.get(_WROTE) or session.get_bind() is not pending.engine:
        return
    # The first writing session inside ``applying`` is the change itself: mark the request
    # applied in it, so both commit together (an error here rolls the change back).
    # The change's outbox rows carry the request id: the desk database accepts a confirmed
    # trade's amendment only with its approval.
    for obj in [*session.new, *session.identity_map.values()]:
        if not isinstance(obj, OutboxItem) or obj.state != "pending":
            continue
        if obj.entity == "trade" and obj.payload is None:
            obj.payload = canonical({"approval": pending.request_uuid})
        elif obj.entity == "limit" and obj.payload and '"approval"' not in obj.payload:
            obj.payload = canonical({**json.loads(obj.payload), "approval": pending.request_uuid})
    pending.applied = pending.repo.mark_applied(pending.request_uuid, pending.user, session)


@contextmanager
def applying(store: Store, request_uuid: str, user: str) -> Iterator[_Pending]:
    """Run the execution of an approved request: the first store session that writes inside
    the block also moves the request ``approved -> applied`` before it commits.

    After the block, ``.applied`` holds the applied record, or ``None`` when nothing was
    written (the caller treats that as a failure).
    """
    pending = _Pending(store.engine, ApprovalRepository(store), str(request_uuid), user)
    token = _APPLYING.set(pending)
    try:
        yield pending
    finally:
        _APPLYING.reset(token)
