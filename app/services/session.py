"""Sign-in: check a user's password centrally when the desk database is reachable, else against
the argon2 hash cached on this workstation, and return the signed-in :class:`Principal`.

Online, the password *is* the user's PostgreSQL login password: the service connects as that
user (a connection factory, normally :class:`app.views.login_dialog.CentralConnector`
around :func:`app.sync.connection.connect`), asks ``qe_whoami()`` for role and
books, refreshes the local user and book access, and caches an argon2id hash of the password
for offline sign-in. When the central database is unreachable (or not configured, or has
another schema version) the cached hash is checked instead and the result says "working
offline".

A wrong password never says whether the user exists. Five failures in a row for one user name
lock that name out for 30 seconds (in memory).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.models.entities import UserRole
from app.models.users import UserRepository
from app.services.auth import Principal

__all__ = [
    "LOCKOUT_SECONDS",
    "MAX_FAILURES",
    "WRONG_CREDENTIALS",
    "CentralFactory",
    "SignInError",
    "SignInLocked",
    "SignInResult",
    "SignInService",
]

log = logging.getLogger(__name__)

#: Failures in a row before a user name is locked out, and for how long.
MAX_FAILURES = 5
LOCKOUT_SECONDS = 30.0
WRONG_CREDENTIALS = "Wrong user name or password."

#: ``(username, password) -> connection`` to the central database as that user; raises the
#: ``app.sync.connection.CentralError`` subclasses on failure, told apart by their
#: ``category`` (this layer does not import app.sync).
CentralFactory = Callable[[str, str], Any]
#: ``CentralError.category`` values: what each failure means for sign-in.
BAD_PASSWORD = "bad password"
DENIED = "permission"
OFFLINE = ("unreachable", "wrong schema version")


class SignInError(Exception):
    """Sign-in refused; the message is meant for the user."""


class SignInLocked(SignInError):
    """Too many failures in a row: ``seconds`` until the next attempt is accepted."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


@dataclass(frozen=True)
class SignInResult:
    """A successful sign-in: who, whether the central database checked it, and a note for the
    user (e.g. why the workstation works offline)."""

    principal: Principal
    online: bool
    note: str = ""


def _whoami(conn: Any) -> dict[str, Any]:
    row = conn.execute("SELECT qe_whoami()").fetchone()
    value = row[0] if row else None
    if isinstance(value, str):
        import json

        value = json.loads(value)
    if not isinstance(value, dict):
        raise SignInError("The desk database gave no answer to who-am-I; try again.")
    return value


class SignInService:
    """Signs users in against the central database or the local password cache.

    ``clock`` (monotonic seconds) is injectable for lockout tests. Thread-safe; call
    :meth:`authenticate` off the GUI thread (argon2 and the network take time).
    """

    def __init__(self, users: UserRepository, clock: Callable[[], float] = time.monotonic) -> None:
        self.users = users
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    # -- lockout ------------------------------------------------------------------------------
    def locked_for(self, username: str) -> float:
        """Seconds until ``username`` may try again (0 when not locked)."""
        with self._lock:
            until = self._locked_until.get(username.strip(), 0.0)
        return max(0.0, until - self.clock())

    def _failed(self, username: str) -> None:
        with self._lock:
            n = self._failures.get(username, 0) + 1
            self._failures[username] = n
            if n >= MAX_FAILURES:
                self._locked_until[username] = self.clock() + LOCKOUT_SECONDS
                self._failures[username] = 0
                log.warning("Sign-in for %r locked for %.0f s after %d failures", username,
                            LOCKOUT_SECONDS, MAX_FAILURES)  # fmt: skip

    def _succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)
            self._locked_until.pop(username, None)

    # -- sign-in ------------------------------------------------------------------------------
    def sign_in(
        self, username: str, password: str, central: CentralFactory | None = None
    ) -> Principal:
        """Sign in and return the :class:`Principal`; raises :class:`SignInError`."""
        return self.authenticate(username, password, central).principal

    def authenticate(
        self, username: str, password: str, central: CentralFactory | None = None
    ) -> SignInResult:
        """Sign in; see the module docstring. Raises :class:`SignInError` (wrong password,
        inactive user) or :class:`SignInLocked`."""
        username = (username or "").strip()
        if not username or not password:
            raise SignInError("Enter your user name and password.")
        wait = self.locked_for(username)
        if wait > 0:
            raise SignInLocked(f"Too many failed sign-ins: try again in {math.ceil(wait)} s.", wait)
        note = ""
        if central is not None:
            try:
                conn = central(username, password)
            except Exception as exc:
                category = getattr(exc, "category", None)
                if category == BAD_PASSWORD:
                    self._failed(username)
                    raise SignInError(WRONG_CREDENTIALS) from None
                if category == DENIED:
                    # Authenticated, but not (or no longer) a workstation user there.
                    raise SignInError(str(exc)) from None
                if category not in OFFLINE:
                    raise
                note = f"Working offline: {exc}"
                log.info("Central sign-in for %r not possible (%s); checking offline", username,
                         type(exc).__name__)  # fmt: skip
            else:
                try:
                    principal = self._online(conn, username, password)
                finally:
                    try:
                        conn.close()
                    except Exception:  # closing a broken connection: nothing to do
                        log.debug("closing the sign-in connection failed", exc_info=True)
                self._succeeded(username)
                return SignInResult(principal, True, "Signed in with the desk database.")
        else:
            note = "Working offline: no desk database is configured."
        if not self.users.verify_local_password(username, password):
            self._failed(username)
            msg = WRONG_CREDENTIALS
            if central is not None:
                msg += (" The desk database is unreachable, so the password was checked against "
                        "the one last used on this workstation.")  # fmt: skip
            raise SignInError(msg)
        rec = self.users.get(username)
        if rec is None or not rec.active:  # deactivated between the two reads
            self._failed(username)
            raise SignInError(WRONG_CREDENTIALS)
        self._succeeded(username)
        return SignInResult(Principal.of(rec.username, rec.role, rec.books), False, note)

    def _online(self, conn: Any, username: str, password: str) -> Principal:
        info = _whoami(conn)
        role_name = info.get("role")
        if not role_name:
            if self.users.get(username) is not None:
                self.users.deactivate(username)
            raise SignInError(
                f"{username} is not an active user of the desk database; ask an admin."
            )
        try:
            role = UserRole[str(role_name)]
        except KeyError:
            raise SignInError(f"The desk database gave an unknown role '{role_name}'.") from None
        books = [str(b) for b in info.get("books") or ()]
        rec = self.users.upsert_user(
            username, str(info.get("display_name") or ""), role, books, True,
            create_missing_books=True,
        )  # fmt: skip
        # Cache the hash only when it changed (argon2 salts: a new hash every time).
        if not self.users.verify_local_password(username, password):
            self.users.set_local_password(username, password)
        return Principal.of(rec.username, rec.role, rec.books)
