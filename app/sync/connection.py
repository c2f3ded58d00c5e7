"""Connecting a workstation to the central desk database: settings, password, diagnostics.

* :class:`CentralConfig` - host, port, database and user of the desk database, persisted as
  ``<data-dir>/central.json`` (written atomically). The password is never part of it.
* :func:`store_password` / :func:`get_password` - the password lives in the OS keyring (service
  :data:`KEYRING_SERVICE`, key ``user@host:port/db``). Without a usable keyring the password is
  not stored at all (fail closed): :class:`KeyringUnavailable` says how to fix that.
* :func:`connect` - a psycopg connection with libpq connect/keepalive/TCP timeouts (so a dead
  network never hangs a worker), checked against this application's schema head and the
  server's ``qe_whoami()``. Failures raise a :class:`CentralError` subclass whose message is
  meant for the user: :class:`CentralUnreachable`, :class:`CentralAuthFailed`,
  :class:`CentralSchemaMismatch`, :class:`CentralPermission`.
* :func:`test_connection` - the same checks as a :class:`ConnectionReport` (Settings dialog,
  ``quantaenergi central test``).
* :func:`init_database`, :func:`admin_create_user`, :func:`admin_upsert_book` - what the
  ``quantaenergi central`` admin commands run (see app/sync/central_cli.py).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)

KEYRING_SERVICE = "QuantaEnergi central"
CONFIG_FILE = "central.json"
DEFAULT_PORT = 5432
#: Server-side limits sent with every connection (milliseconds).
SESSION_OPTIONS = "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
#: libpq keepalive and TCP settings: a black-holed connection is noticed in ~11 s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3, "tcp_user_timeout": 10_000}  # fmt: skip
_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class CentralConfigError(ValueError):
    """A desk database setting (URL, host, port...) is malformed; the message says which."""


class KeyringUnavailable(RuntimeError):
    """No usable OS keyring: the secret was not stored (or cannot be read). The message says
    how to fix it on this platform."""


class CentralError(Exception):
    """A failure talking to the desk database, with a message meant for the user."""

    category = "error"


class CentralUnreachable(CentralError):
    """Host/port not reachable, connection refused or timed out, connection lost."""

    category = "unreachable"


class CentralAuthFailed(CentralError):
    """Wrong password or no such user (deliberately one message for both)."""

    category = "bad password"


class CentralSchemaMismatch(CentralError):
    """The server's schema revision differs from this application's head: stay offline."""

    category = "wrong schema version"

    def __init__(self, message: str, server_revision: str, app_revision: str, newer: bool):
        super().__init__(message)
        self.server_revision = server_revision
        self.app_revision = app_revision
        self.newer = newer


class CentralPermission(CentralError):
    """Connected, but not as an active workstation user of a QuantaEnergi desk database."""

    category = "permission"


# -- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CentralConfig:
    """Where the desk database is: ``postgresql://user@host:port/database`` (no password)."""

    host: str
    database: str
    user: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if (
            not isinstance(self.host, str)
            or not self.host.strip()
            or any(c.isspace() or c in "/@?#" for c in self.host)
        ):
            raise CentralConfigError(f"invalid host {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise CentralConfigError(f"invalid port {self.port!r}: a number 1-65535")
        if not 1 <= self.port <= 65535:
            raise CentralConfigError(f"invalid port {self.port}: a number 1-65535")
        if (
            not isinstance(self.database, str)
            or not self.database.strip()
            or "\x00" in self.database
        ):
            raise CentralConfigError("the database name is empty")
        if not isinstance(self.user, str) or not self.user.strip() or "\x00" in self.user:
            raise CentralConfigError("the user name is empty")

    @classmethod
    def from_url(cls, url: str) -> CentralConfig:
        """Parse ``postgresql://user@host[:port]/database``; a password in the URL is refused
        (it belongs in the keyring), as are query options."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise CentralConfigError(f"invalid desk database URL {url!r}: {exc}") from None
        if parts.scheme not in _SCHEMES:
            raise CentralConfigError(
                f"invalid desk database URL {url!r}: expected postgresql://user@host:port/database"
            )
        if parts.password is not None:
            raise CentralConfigError(
                "do not put the password in the URL: store it in the OS keyring with "
                "`quantaenergi central set-password URL` or the Settings dialog"
            )
        if parts.query or parts.fragment:
            raise CentralConfigError(f"unexpected options in {url!r}: only user@host:port/database")
        if not parts.username:
            raise CentralConfigError(
                f"no user in {url!r}: expected postgresql://user@host/database"
            )
        if not parts.hostname:
            raise CentralConfigError(
                f"no host in {url!r}: expected postgresql://user@host/database"
            )
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise CentralConfigError(f"no database in {url!r}: expected .../database")
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            database=database,
            user=unquote(parts.username),
        )

    @property
    def url(self) -> str:
        """``postgresql://user@host:port/database`` (never with a password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"postgresql://{quote(self.user, safe='')}@{host}:{self.port}/"
                f"{quote(self.database, safe='')}")  # fmt: skip

    @property
    def where(self) -> str:
        """``database at host:port``, for messages."""
        return f"{self.database} at {self.host}:{self.port}"

    @property
    def keyring_key(self) -> str:
        """The keyring user name under :data:`KEYRING_SERVICE`: ``user@host:port/db``."""
        return f"{self.user}@{self.host}:{self.port}/{self.database}"

    def with_user(self, user: str) -> CentralConfig:
        """The same database for another user."""
        return replace(self, user=user)

    @staticmethod
    def path(data_dir: Path | str) -> Path:
        """``<data-dir>/central.json``."""
        return Path(data_dir) / CONFIG_FILE

    @classmethod
    def load(cls, data_dir: Path | str) -> CentralConfig | None:
        """The saved settings, ``None`` when none are saved; :class:`CentralConfigError` when
        the file is damaged (naming it)."""
        path = cls.path(data_dir)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CentralConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw)
            return cls(host=data["host"], port=data.get("port", DEFAULT_PORT),
                       database=data["database"], user=data["user"])  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise CentralConfigError(
                f"{path} is damaged ({exc}); set the desk database again in Settings"
            ) from None

    def save(self, data_dir: Path | str) -> Path:
        """Write ``<data-dir>/central.json`` atomically (temporary file, fsync, rename)."""
        path = self.path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".central-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename durable (POSIX)
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return path


# -- the password, in the OS keyring -------------------------------------------------------------


def keyring_fix_hint(platform: str | None = None) -> str:
    """How to get a usable OS keyring on ``platform`` (default: this one)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        how = ("On Windows the password goes to Windows Credential Manager: run QuantaEnergi in "
               "a normal signed-in user session (a service account without a loaded profile has "
               "no credential store) and make sure keyring's Windows backend can load "
               "(pip install pywin32-ctypes).")  # fmt: skip
    elif platform == "darwin":
        how = ("On macOS the password goes to the login Keychain: unlock it (Keychain Access, or "
               "`security unlock-keychain`) and allow QuantaEnergi access when macOS asks.")  # fmt: skip
    else:
        how = ("On Linux the password goes to a Secret Service keyring over D-Bus: install and "
               "unlock one (GNOME Keyring - e.g. `sudo apt install gnome-keyring`, unlocked when "
               "you log in to a desktop session - or KeePassXC with Secret Service integration "
               "on); on a headless machine start a D-Bus session with an unlocked "
               "gnome-keyring-daemon.")  # fmt: skip
    return (f"{how} `python -m keyring diagnose` shows the backend in use; unset "
            "PYTHON_KEYRING_BACKEND if it points at a fail/null backend. Plain-file keyrings "
            "(keyrings.alt) are refused on purpose.")  # fmt: skip


def _unusable(backend: Any) -> str | None:
    """Why ``backend`` cannot keep a secret safely, ``None`` when it can."""
    from keyring.backends import chainer, fail, null

    if isinstance(backend, fail.Keyring | null.Keyring):
        return "no OS keyring backend is available"
    if isinstance(backend, chainer.ChainerBackend):
        subs = list(backend.backends)
        if not subs:
            return "no OS keyring backend is available"
        for sub in subs:
            reason = _unusable(sub)
            if reason:
                return reason
        return None
    if type(backend).__module__.startswith("keyrings.alt"):
        return f"the keyring backend {type(backend).__name__} keeps secrets in a plain file"
    return None


def _keyring(action: str) -> Any:
    """The keyring module when its backend is usable, else :class:`KeyringUnavailable`."""
    if os.environ.get("QE_NO_KEYRING"):
        raise KeyringUnavailable(
            f"The password was not {action}: the OS keyring is disabled (QE_NO_KEYRING is set). "
            "Unset QE_NO_KEYRING. " + keyring_fix_hint()
        )
    try:
        import keyring

        reason = _unusable(keyring.get_keyring())
    except Exception as exc:  # a broken D-Bus or backend import
        reason = f"the OS keyring failed to load ({type(exc).__name__}: {exc})"
    if reason:
        raise KeyringUnavailable(f"The password was not {action}: {reason}. {keyring_fix_hint()}")
    return keyring


def store_password(config: CentralConfig, password: str) -> None:
    """Save ``config.user``'s password in the OS keyring, then read it back; fails closed with
    :class:`KeyringUnavailable` (nothing stored anywhere else)."""
    if not password:
        raise ValueError("the password is empty")
    kr = _keyring("stored")
    try:
        kr.set_password(KEYRING_SERVICE, config.keyring_key, password)
        ok = kr.get_password(KEYRING_SERVICE, config.keyring_key) == password
    except Exception as exc:
        raise KeyringUnavailable(
            f"The password was not stored: the OS keyring refused it ({type(exc).__name__}: "
            f"{exc}). {keyring_fix_hint()}"
        ) from None
    if not ok:
        raise KeyringUnavailable(
            "The password was not stored: the OS keyring accepted it but does not return it. "
            + keyring_fix_hint()
        )
    log.info("Password of %s stored in the OS keyring", config.keyring_key)


def get_password(config: CentralConfig) -> str | None:
    """``config.user``'s password from the OS keyring; ``None`` when none is stored;
    :class:`KeyringUnavailable` when there is no usable keyring."""
    kr = _keyring("read")
    try:
        value = kr.get_password(KEYRING_SERVICE, config.keyring_key)
    except Exception as exc:
        raise KeyringUnavailable(
            f"The password could not be read from the OS keyring ({type(exc).__name__}: "
            f"{exc}). {keyring_fix_hint()}"
        ) from None
    return value if isinstance(value, str) and value else None


# -- connecting ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from app.models.store import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def schema_head() -> str:
    """The Alembic head revision this application writes (and expects centrally)."""
    head = _script().get_current_head()
    assert head is not None
    return str(head)


def _is_known_revision(rev: str) -> bool:
    try:
        return _script().get_revision(rev) is not None
    except Exception:  # alembic raises several types for unknown revisions
        return False


def application_name() -> str:
    """``QuantaEnergi <hostname>`` (shown in pg_stat_activity), at most 63 bytes."""
    return f"QuantaEnergi {socket.gethostname()}".encode()[:63].decode("utf-8", "ignore")


def connect_params(
    config: CentralConfig, username: str | None, password: str | None, connect_timeout: int
) -> dict[str, Any]:
    """libpq keyword parameters for ``config`` (with the timeouts and session options)."""
    params: dict[str, Any] = {
        "host": config.host, "port": config.port, "dbname": config.database,
        "user": username or config.user, "connect_timeout": max(1, int(connect_timeout)),
        "application_name": application_name(), "options": SESSION_OPTIONS, **KEEPALIVES,
    }  # fmt: skip
    if password is not None:
        params["password"] = password
    return params


def _map_connect_error(exc: Exception, config: CentralConfig, user: str, note: str) -> CentralError:
    text = str(exc).strip()
    low = text.lower()
    if ("password authentication failed" in low or "no password supplied" in low
            or ("role" in low and "does not exist" in low)
            or "authentication failed" in low):  # fmt: skip
        return CentralAuthFailed(
            f"The desk database {config.where} rejected user {user}: wrong password or no such "
            "user. Check the user name and set the password again (Settings > Desk database, or "
            f"`quantaenergi central set-password`).{note}"
        )
    if "database" in low and "does not exist" in low:
        return CentralPermission(
            f"{config.host}:{config.port} has no database {config.database}: check the database "
            "name (the DBA creates it with `quantaenergi central init`)."
        )
    if "pg_hba.conf" in low:
        return CentralPermission(
            f"The server at {config.host}:{config.port} does not accept user {user} for "
            f"{config.database} from this machine (pg_hba.conf); ask the DBA."
        )
    if "timeout" in low or "timed out" in low:
        reason = "no answer (timed out)"
    elif "refused" in low:
        reason = "connection refused (is PostgreSQL running and listening on that port?)"
    elif "translate host name" in low or "name or service not known" in low:
        reason = f"unknown host {config.host}"
    else:
        reason = text.splitlines()[-1] if text else type(exc).__name__
    return CentralUnreachable(
        f"Cannot reach the desk database {config.where}: {reason}. Check the host, port and "
        "network (VPN, firewall); the workstation keeps working offline."
    )


def _check(conn: Any, config: CentralConfig, user: str, require_user: bool) -> dict[str, Any]:
    """Schema revision and workstation-user checks on a fresh autocommit connection."""
    import psycopg

    not_desk = CentralPermission(
        f"{config.where} is not a QuantaEnergi desk database (it has no QuantaEnergi schema); "
        "the DBA creates one with `quantaenergi central init`."
    )
    not_user = CentralPermission(
        f"Connected to {config.where} as {user}, but {user} is not an active workstation user "
        "of this desk database; ask the desk admin (`quantaenergi central user add`)."
    )
    try:
        if not conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[
            0
        ]:
            raise not_desk
        row = conn.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        raise not_user from None
    if row is None:
        raise not_desk
    server, head = str(row[0]), schema_head()
    if server != head:
        newer = not _is_known_revision(server)
        fix = ("Upgrade QuantaEnergi on this workstation." if newer else
               "Ask the DBA to upgrade it with `quantaenergi central init`.")  # fmt: skip
        raise CentralSchemaMismatch(
            f"The desk database {config.where} has schema {server}, {'newer' if newer else 'older'} "
            f"than this workstation's {head}. {fix} Until then the workstation stays offline and "
            "does not write to it.",
            server, head, newer,
        )  # fmt: skip
    if not require_user:
        return {}
    try:
        who = conn.execute("SELECT qe_whoami()").fetchone()[0]
    except psycopg.errors.UndefinedFunction:
        raise not_desk from None
    except psycopg.errors.InsufficientPrivilege:
        raise CentralPermission(
            f"Connected to {config.where} as {user}, but {user} may not run qe_whoami(): not a "
            "workstation user of this desk database; ask the desk admin."
        ) from None
    if not isinstance(who, dict) or not who.get("role"):
        raise not_user
    return who


def _open(
    config: CentralConfig,
    username: str | None,
    password: str | None,
    connect_timeout: int,
    require_user: bool,
) -> tuple[Any, dict[str, Any]]:
    import psycopg

    user = username or config.user
    note = ""
    if password is None:
        try:
            password = get_password(config.with_user(user))
        except KeyringUnavailable as exc:
            note = f" ({exc})"
        if password is None and not note:
            note = f" (no password is stored in the OS keyring for {config.with_user(user).keyring_key})"
    params = connect_params(config, user, password, connect_timeout)
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.OperationalError as exc:
        raise _map_connect_error(exc, config, user, note) from None
    try:
        who = _check(conn, config, user, require_user)
    except CentralError:
        conn.close()
        raise
    except psycopg.OperationalError as exc:
        conn.close()
        raise _map_connect_error(exc, config, user, "") from None
    except BaseException:
        conn.close()
        raise
    return conn, who


def connect(
    config: CentralConfig,
    username: str | None = None,
    password: str | None = None,
    *,
    connect_timeout: int = 5,
    require_user: bool = True,
    autocommit: bool = False,
) -> Any:
    """A ``psycopg.Connection`` to the desk database, checked and ready.

    ``username`` defaults to ``config.user``; ``password`` to the one in the OS keyring. The
    connection carries libpq keepalives, ``tcp_user_timeout`` and server-side statement / idle
    transaction timeouts. The server's schema must equal :func:`schema_head` and, unless
    ``require_user`` is false (a DBA or superuser), the user must be an active workstation user
    (``qe_whoami()``). Raises a :class:`CentralError` subclass with the user's message.
    """
    conn, _who = _open(config, username, password, connect_timeout, require_user)
    conn.autocommit = autocommit
    return conn


@dataclass(frozen=True)
class ConnectionReport:
    """Outcome of :func:`test_connection`: ``category`` is ``ok`` or the failing
    :attr:`CentralError.category`; ``whoami`` is the server's ``qe_whoami()`` when ok."""

    ok: bool
    category: str
    message: str
    whoami: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"


def test_connection(
    config: CentralConfig, username: str | None = None, password: str | None = None
) -> ConnectionReport:
    """Connect and check as the workstation would; never raises for environment problems."""
    try:
        conn, who = _open(config, username, password, 5, True)
    except CentralError as exc:
        return ConnectionReport(False, exc.category, str(exc))
    try:
        conn.close()
    except Exception:  # closing a good connection failing changes nothing for the report
        log.debug("closing the test connection failed", exc_info=True)
    books = ", ".join(who.get("books") or []) or "none"
    role = str(who.get("role", "")).lower().replace("_", " ")
    return ConnectionReport(
        True, "ok",
        f"Connected to {config.where} as {who.get('user')} ({role}; books: {books}); schema "
        f"{who.get('schema')}; server time {who.get('server_time')}.",
        who,
    )  # fmt: skip


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# -- administration (quantaenergi central ...) ---------------------------------------------------


def init_database(config: CentralConfig, password: str | None) -> list[str]:
    """Create (if needed) and migrate the desk database as a DBA/superuser, then add the
    standard products; returns what was done, one line each."""
    import psycopg
    from sqlalchemy import URL, func, select

    from app.models.demo import ensure_reference_data
    from app.models.entities import Product
    from app.models.store import Store, StoreError, StoreVersionError

    done: list[str] = []
    params = connect_params(config, None, password, 5)
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.OperationalError as exc:
        err = _map_connect_error(exc, config, config.user, "")
        if "does not exist" not in str(exc) or not isinstance(err, CentralPermission):
            raise err from None
        try:
            with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{config.database.replace(chr(34), chr(34) * 2)}"')
        except psycopg.errors.InsufficientPrivilege:
            raise CentralPermission(
                f"{config.user} may not create the database {config.database}: run "
                "`central init` as a superuser, or have the DBA create it first."
            ) from None
        except psycopg.OperationalError as exc2:
            raise _map_connect_error(exc2, config, config.user, "") from None
        done.append(f"Created database {config.database} on {config.host}:{config.port}")
        conn = psycopg.connect(**params, autocommit=True)
    with conn:
        has = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
        before = (conn.execute("SELECT version_num FROM alembic_version LIMIT 1").fetchone()
                  if has and has[0] else None)  # fmt: skip
    before_rev = str(before[0]) if before else None
    url = URL.create("postgresql+psycopg", username=config.user, password=password,
                     host=config.host, port=config.port, database=config.database,
                     query={"connect_timeout": "5", "application_name": application_name()})  # fmt: skip
    try:
        store = Store(url.render_as_string(hide_password=False))
    except StoreVersionError:
        raise CentralSchemaMismatch(
            f"The desk database {config.where} has schema {before_rev}, newer than this "
            f"application's {schema_head()}: use a newer QuantaEnergi to manage it; nothing was "
            "changed.", before_rev or "?", schema_head(), True,
        ) from None  # fmt: skip
    except StoreError as exc:
        msg = str(exc).replace(password, "***") if password else str(exc)
        if "permission denied" in msg.lower() or "must be" in msg.lower():
            raise CentralPermission(
                f"{config.user} may not install the desk database schema ({msg}): run "
                "`central init` as a superuser."
            ) from None
        raise CentralError(msg) from None
    try:
        head = store.schema_revision
        if before_rev == head:
            done.append(f"Schema already at {head}")
        else:
            done.append(f"Migrated schema {before_rev or 'empty'} -> {head} (tables, roles "
                        "qe_owner/qe_app/qe_<role>, row-level security, write functions)")  # fmt: skip
        with store.session() as s:
            n0 = s.scalar(select(func.count()).select_from(Product)) or 0
        ensure_reference_data(store)
        with store.session() as s:
            n1 = s.scalar(select(func.count()).select_from(Product)) or 0
        done.append(f"Standard products: {n1 - n0} added, {n1} in total")
    finally:
        store.close()
    return done


def _admin_call(conn: Any, sql: str, args: tuple[Any, ...]) -> Any:
    import psycopg

    try:
        row = conn.execute(sql, args).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CentralPermission(exc.diag.message_primary or str(exc)) from None
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.DataError,
            psycopg.errors.IntegrityError) as exc:  # fmt: skip
        raise ValueError(exc.diag.message_primary or str(exc)) from None
    except psycopg.OperationalError as exc:
        raise CentralUnreachable(f"The desk database connection failed: {exc}") from None
    return row[0] if row else None


def admin_create_user(
    conn: Any, name: str, role: str, password: str, books: list[str], display: str = ""
) -> None:
    """Create or update workstation user ``name`` (``qe_admin_create_user``) on an admin's
    connection; ValueError for a bad name/role/book, :class:`CentralPermission` for a
    non-admin."""
    role = role.upper().replace("-", "_").replace(" ", "_")
    with conn.transaction():
        _admin_call(conn, "SELECT qe_admin_create_user(%s, %s, %s, %s, %s)",
                    (name, display or name, role, password, list(books)))  # fmt: skip
        known = {r[0] for r in conn.execute("SELECT name FROM book WHERE name = ANY(%s)",
                                            (list(books),))}  # fmt: skip
        missing = sorted(set(books) - known)
        if missing:
            raise ValueError(f"no such book: {', '.join(missing)} (add it with `central book add`)")


def admin_upsert_book(conn: Any, name: str, description: str = "") -> int:
    """Create or update book ``name`` (``qe_admin_upsert_book``); returns its id."""
    if not name.strip():
        raise ValueError("the book name is empty")
    with conn.transaction():
        return int(_admin_call(conn, "SELECT qe_admin_upsert_book(%s, %s)", (name, description)))
