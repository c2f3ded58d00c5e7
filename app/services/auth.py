"""Who may do what: actions, the signed-in principal and the permission matrix.

The matrix mirrors the central database's own checks (``app/models/migrations/central.py``:
``qe_can_read_book``, the writable books ``qe_apply`` reads per batch and the role tests in
``qe_apply_trade``), so the workstation refuses locally exactly what the server would refuse
later:

================  =====================================================================
role              may
================  =====================================================================
trader            view, capture, amend and cancel trades in *own* books (``book_access``);
                  lifecycle steps only to Captured / Validated, in own books
risk manager      view trades of every book, set limits, approve, run reports
back office       view trades of every book, lifecycle steps in every book, approve
compliance        view trades of every book, view and export the audit trail, run reports
admin             manage users and books, view and export the audit trail (no trades)
================  =====================================================================

Demo books (``is_demo``, named ``DEMO ...``) live only on this workstation and are never
synced, so every book-scoped action on a demo book is allowed for every role.

A :class:`Principal` whose ``role`` is ``None`` is the *local owner*: a workstation with no
users configured and no desk database runs single-user and everything is allowed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from app.models.entities import UserRole
from app.models.enums import TradeStatus
from app.models.repository import BookRef

__all__ = [
    "BOOK_SCOPED",
    "TRADER_STATUSES",
    "Action",
    "PermissionDenied",
    "Principal",
    "can",
    "is_demo_book",
    "require",
    "why_not",
]


class Action(enum.Enum):
    """Something a user may be allowed to do (``value`` is the phrase used in messages)."""

    VIEW_TRADES = "view trades"
    CAPTURE = "capture trades"
    AMEND = "amend trades"
    CANCEL = "cancel trades"
    LIFECYCLE = "move trades through the lifecycle"
    SET_LIMIT = "set limits"
    APPROVE = "approve four-eyes requests"
    VIEW_AUDIT = "view the audit trail"
    EXPORT_AUDIT = "export the audit trail"
    RUN_REPORTS = "run reports"
    MANAGE_USERS = "manage users"
    MANAGE_BOOKS = "manage books"


#: Actions that concern one book (``can(..., book=...)`` is meaningful for these).
BOOK_SCOPED = frozenset(
    {Action.VIEW_TRADES, Action.CAPTURE, Action.AMEND, Action.CANCEL, Action.LIFECYCLE,
     Action.SET_LIMIT}
)  # fmt: skip

#: Lifecycle statuses a trader may move a trade to (central.TRADER_STATUSES minus Cancelled,
#: which is the separate CANCEL action).
TRADER_STATUSES = frozenset({TradeStatus.CAPTURED, TradeStatus.VALIDATED})

_OWN_BOOKS = frozenset({Action.VIEW_TRADES, Action.CAPTURE, Action.AMEND, Action.CANCEL})

#: Role -> actions allowed in every book (or not book-scoped at all).
_ALLOWED: dict[UserRole, frozenset[Action]] = {
    UserRole.TRADER: frozenset(),
    UserRole.RISK_MANAGER: frozenset(
        {Action.VIEW_TRADES, Action.SET_LIMIT, Action.APPROVE, Action.RUN_REPORTS}
    ),
    UserRole.BACK_OFFICE: frozenset({Action.VIEW_TRADES, Action.LIFECYCLE, Action.APPROVE}),
    UserRole.COMPLIANCE: frozenset(
        {Action.VIEW_TRADES, Action.VIEW_AUDIT, Action.EXPORT_AUDIT, Action.RUN_REPORTS}
    ),
    UserRole.ADMIN: frozenset(
        {Action.MANAGE_USERS, Action.MANAGE_BOOKS, Action.VIEW_AUDIT, Action.EXPORT_AUDIT}
    ),
}


class PermissionDenied(PermissionError):
    """The principal may not do this; the message is a sentence for the user."""


@dataclass(frozen=True)
class Principal:
    """The signed-in user: name, role (``None``: local owner) and, for traders, book names."""

    username: str
    role: UserRole | None
    books: frozenset[str] = frozenset()

    @classmethod
    def local_owner(cls, name: str) -> Principal:
        """The single user of a workstation without users or desk database: may do anything."""
        return cls(name, None, frozenset())

    @classmethod
    def of(cls, username: str, role: UserRole, books: Iterable[str] = ()) -> Principal:
        """A signed-in user with ``role`` and access to ``books`` (book names)."""
        return cls(username, role, frozenset(books))

    @property
    def is_local_owner(self) -> bool:
        return self.role is None

    @property
    def description(self) -> str:
        """``'alice (trader)'`` or ``'bob (single-user)'``, for the status bar."""
        return f"{self.username} ({self.role.label.lower() if self.role else 'single-user'})"


BookLike = str | BookRef


def _book_name(book: BookLike) -> str:
    return book.name if isinstance(book, BookRef) else str(book)


def is_demo_book(book: BookLike) -> bool:
    """A demo book: ``is_demo`` for a :class:`BookRef`, a ``DEMO ...`` name for a plain name."""
    if isinstance(book, BookRef):
        return book.is_demo or book.name.startswith("DEMO ")
    return str(book).startswith("DEMO ")


def why_not(
    p: Principal,
    action: Action,
    book: BookLike | None = None,
    *,
    to_status: TradeStatus | None = None,
) -> str | None:
    """``None`` when ``p`` may do ``action`` (in ``book``), else a sentence saying why not.

    ``book`` is a book name or :class:`BookRef`; without it a book-scoped action is judged
    for *some* book (a trader may capture if they have any book). ``to_status`` refines
    :attr:`Action.LIFECYCLE`: a trader may move trades of own books to Captured / Validated
    only; without it the generic lifecycle step (confirm, settle...) is meant.
    """
    if p.role is None:
        return None
    if book is not None and action in BOOK_SCOPED and is_demo_book(book):
        return None
    role = p.role
    what = action.value
    if role is UserRole.TRADER:
        if action is Action.LIFECYCLE:
            if to_status is None or to_status not in TRADER_STATUSES:
                step = f"to {to_status.label}" if to_status is not None else "beyond Validated"
                return (f"Moving a trade {step} is a back-office step; a trader may only "
                        "validate trades.")  # fmt: skip
            return _trader_book_check(p, "move trades through the lifecycle", book)
        if action in _OWN_BOOKS:
            return _trader_book_check(p, what, book)
        return f"A trader may not {what}."
    if action in _ALLOWED[role]:
        return None
    return f"The {role.label.lower()} role may not {what}."


def _trader_book_check(p: Principal, what: str, book: BookLike | None) -> str | None:
    if book is None:
        return None if p.books else f"{p.username} has no books to {what} in."
    name = _book_name(book)
    if name in p.books:
        return None
    return f"{p.username} may not {what} in book {name} (not one of their books)."


def can(
    p: Principal,
    action: Action,
    book: BookLike | None = None,
    *,
    to_status: TradeStatus | None = None,
) -> bool:
    """Whether ``p`` may do ``action`` (in ``book``); see :func:`why_not`."""
    return why_not(p, action, book, to_status=to_status) is None


def require(
    p: Principal,
    action: Action,
    book: BookLike | None = None,
    *,
    to_status: TradeStatus | None = None,
) -> None:
    """Raise :class:`PermissionDenied` (with the :func:`why_not` sentence) unless allowed."""
    reason = why_not(p, action, book, to_status=to_status)
    if reason is not None:
        raise PermissionDenied(reason)
