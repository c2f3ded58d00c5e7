"""Workstation users, their roles and books, and the local (offline) password cache.

A user's authoritative record lives in the central desk database; the local ``app_user`` /
``book_access`` rows are a copy refreshed at every online sign-in (or written by hand on a
workstation without a desk database). ``password_hash`` holds an argon2id hash of the password
that last signed in, so the user can sign in while the central database is unreachable.

Every change to a user or a book is appended to the audit trail (:mod:`app.models.audit`) in
the same transaction; passwords and hashes never go into an audit record.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.models import audit
from app.models.entities import AppUser, Book, BookAccess, UserRole
from app.models.store import Store
from app.models.types import utcnow

__all__ = ["USERNAME_RE", "UserRecord", "UserRepository", "UserValidationError"]

#: Valid user names (the same rule as the central ``qe_admin_create_user``).
USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,59}$")


class UserValidationError(ValueError):
    """Bad input for a user (name, role, unknown book); the message is for the user."""


@dataclass(frozen=True)
class UserRecord:
    """A snapshot of one user (never carries the password hash)."""

    username: str
    display_name: str
    role: UserRole
    active: bool
    books: tuple[str, ...]
    has_local_password: bool
    version: int
    updated_at: dt.datetime

    def audit_dict(self) -> dict[str, Any]:
        """The user as recorded in the audit trail (no secrets)."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.name,
            "active": self.active,
            "books": list(self.books),
            "version": self.version,
        }


def _role(role: UserRole | str) -> UserRole:
    if isinstance(role, UserRole):
        return role
    key = str(role).strip().lower().replace(" ", "_").replace("-", "_")
    for r in UserRole:
        if key in (r.value, r.name.lower()):
            return r
    allowed = ", ".join(r.label.lower() for r in UserRole)
    raise UserValidationError(f"unknown role '{role}' (one of: {allowed})")


class UserRepository:
    """Reads and writes users and book access in a :class:`Store` (thread-safe: one session
    per call).

    ``hasher`` is the argon2 :class:`PasswordHasher` (argon2id, library defaults); tests may
    pass a cheaper one.
    """

    def __init__(self, store: Store, hasher: PasswordHasher | None = None) -> None:
        self.store = store
        self.hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    # -- reads --------------------------------------------------------------------------------
    def has_users(self) -> bool:
        """Whether any active user is configured (else the workstation runs single-user)."""
        with self.store.session() as s:
            n = s.scalar(select(func.count()).select_from(AppUser).where(AppUser.active.is_(True)))
            return bool(n)

    def list_users(self) -> list[UserRecord]:
        """Every user (active or not), by name, with their books."""
        with self.store.session() as s:
            users = s.scalars(select(AppUser).order_by(AppUser.username)).all()
            return [self._record(s, u) for u in users]

    def get(self, username: str) -> UserRecord | None:
        """One user, or ``None``."""
        with self.store.session() as s:
            u = self._row(s, username)
            return None if u is None else self._record(s, u)

    @staticmethod
    def _row(s: Session, username: str) -> AppUser | None:
        return s.scalars(select(AppUser).where(AppUser.username == username)).one_or_none()

    @staticmethod
    def _books(s: Session, username: str) -> tuple[str, ...]:
        q = (
            select(Book.name)
            .join(BookAccess, BookAccess.book_id == Book.id)
            .where(BookAccess.username == username)
            .order_by(Book.name)
        )
        return tuple(s.scalars(q))

    def _record(self, s: Session, u: AppUser) -> UserRecord:
        return UserRecord(
            username=u.username,
            display_name=u.display_name,
            role=u.role,
            active=u.active,
            books=self._books(s, u.username),
            has_local_password=u.password_hash is not None,
            version=u.version,
            updated_at=u.updated_at,
        )

    # -- writes -------------------------------------------------------------------------------
    def upsert_user(
        self,
        username: str,
        display_name: str,
        role: UserRole | str,
        books: Iterable[str],
        active: bool = True,
        *,
        actor: str | None = None,
        create_missing_books: bool = False,
    ) -> UserRecord:
        """Create or update a user and replace their book access (book names).

        Unknown book names raise :class:`UserValidationError`, unless ``create_missing_books``
        (used when the central database says the user has a book this store has not seen yet:
        it is created here, not a demo book). Audited as ``create`` / ``update`` by ``actor``
        (default: the user themselves); nothing is written when nothing changed.
        """
        username = (username or "").strip()
        if not USERNAME_RE.match(username):
            raise UserValidationError(
                f"invalid user name '{username}': lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter, at most 60 characters"
            )
        urole = _role(role)
        display = (display_name or "").strip()[:120]
        names = sorted({b.strip() for b in books if b and b.strip()})
        actor = actor or username
        with self.store.session() as s:
            book_ids: dict[str, int] = {}
            for name in names:
                b = s.scalars(select(Book).where(Book.name == name)).one_or_none()
                if b is None:
                    if not create_missing_books:
                        raise UserValidationError(f"unknown book '{name}'")
                    b = Book(name=name[:60], description="desk book", is_demo=False)
                    s.add(b)
                    s.flush()
                    audit.append(s, user=actor, entity="book", entity_id=b.name,
                                 action="create",
                                 after={"name": b.name, "description": b.description})  # fmt: skip
                book_ids[name] = b.id
            u = self._row(s, username)
            before = None if u is None else self._record(s, u)
            if before is not None and (before.display_name, before.role, before.active,
                                       before.books) == (display, urole, active,
                                                         tuple(names)):  # fmt: skip
                return before
            now = utcnow()
            if u is None:
                u = AppUser(username=username, display_name=display, role=urole, active=active,
                            password_hash=None, updated_at=now, version=1)  # fmt: skip
                s.add(u)
            else:
                u.display_name, u.role, u.active = display, urole, active
                u.updated_at, u.version = now, u.version + 1
            s.execute(delete(BookAccess).where(BookAccess.username == username))
            for bid in book_ids.values():
                s.add(BookAccess(username=username, book_id=bid))
            s.flush()
            after = self._record(s, u)
            audit.append(s, user=actor, entity="user", entity_id=username,
                         action="create" if before is None else "update",
                         before=None if before is None else before.audit_dict(),
                         after=after.audit_dict())  # fmt: skip
            return after

    def deactivate(self, username: str, *, actor: str | None = None) -> UserRecord:
        """Mark a user inactive (they can no longer sign in on this workstation); audited."""
        with self.store.session() as s:
            u = self._row(s, username)
            if u is None:
                raise UserValidationError(f"no user '{username}'")
            before = self._record(s, u)
            u.active = False
            u.updated_at, u.version = utcnow(), u.version + 1
            s.flush()
            after = self._record(s, u)
            audit.append(s, user=actor or username, entity="user", entity_id=username,
                         action="deactivate", before=before.audit_dict(),
                         after=after.audit_dict())  # fmt: skip
            return after

    def set_local_password(self, username: str, password: str, *, actor: str | None = None) -> None:
        """Store an argon2id hash of ``password`` for offline sign-in; audited (no secret)."""
        if not password:
            raise UserValidationError("the password must not be empty")
        hashed = self.hasher.hash(password)
        with self.store.session() as s:
            u = self._row(s, username)
            if u is None:
                raise UserValidationError(f"no user '{username}'")
            u.password_hash = hashed
            u.updated_at = utcnow()
            audit.append(s, user=actor or username, entity="user", entity_id=username,
                         action="set_password")  # fmt: skip

    def verify_local_password(self, username: str, password: str) -> bool:
        """Check ``password`` against the cached argon2 hash of an *active* user.

        Takes about as long whether or not the user exists (a dummy hash is verified), so
        timing tells nothing about user names. Rehashes when the argon2 parameters changed.
        """
        with self.store.session() as s:
            u = self._row(s, username)
            stored = u.password_hash if u is not None and u.active else None
        if stored is None:
            self._verify(self._dummy(), password)
            return False
        if not self._verify(stored, password):
            return False
        if self.hasher.check_needs_rehash(stored):
            with self.store.session() as s:
                u = self._row(s, username)
                if u is not None and u.password_hash == stored:
                    u.password_hash = self.hasher.hash(password)
                    audit.append(s, user=username, entity="user", entity_id=username,
                                 action="rehash_password")  # fmt: skip
        return True

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(stored, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash("not a password: timing equaliser")
        return self._dummy_hash
