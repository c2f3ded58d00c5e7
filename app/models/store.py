"""Opening, migrating and using a trade store (local SQLite file or PostgreSQL).

A :class:`Store` owns one SQLAlchemy engine. The schema is created and upgraded by the Alembic
migrations in ``app/models/migrations`` on open. Environment problems (a store written by a newer
version, a store locked by another program, a full disk, a file that is not a store) become
:class:`StoreError` subclasses whose message is written for the user; bugs stay ordinary
exceptions. Every write runs in one transaction (:meth:`Store.session`), so a failure leaves the
file exactly as it was. :meth:`Store.backup` / :func:`backup_file` copy a live SQLite store with
SQLite's online backup API.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class StoreError(Exception):
    """An environment problem with a store, with a message meant for the user."""


class StoreVersionError(StoreError):
    """The store's schema is newer than (or unknown to) this version of the application."""


class StoreLockedError(StoreError):
    """Another program holds a write lock on the store."""


class StoreFullError(StoreError):
    """The disk (or the store's size limit) is full; the failed write was rolled back."""


class StoreUnreadableError(StoreError):
    """The file is not a store, is damaged, or cannot be opened."""


def translate_error(exc: BaseException, where: str) -> StoreError | None:
    """Map a driver exception to a user-facing :class:`StoreError`, or ``None`` for bugs."""
    orig = getattr(exc, "orig", exc)
    msg = str(orig).lower()
    if isinstance(orig, sqlite3.Error):
        if "locked" in msg or "busy" in msg:
            return StoreLockedError(
                f"The local store {where} is locked by another program (is a second "
                "QuantaEnergi running on the same data directory?). Close it and retry."
            )
        if "disk is full" in msg or "database or disk is full" in msg:
            return StoreFullError(
                f"The disk holding {where} is full: the last change was NOT saved and the store "
                "is unchanged. Free some space and try again."
            )
        if "not a database" in msg or "malformed" in msg:
            return StoreUnreadableError(f"{where} is not a QuantaEnergi store or is damaged.")
        if "unable to open" in msg or "readonly" in msg or "disk i/o" in msg:
            return StoreUnreadableError(f"Cannot open or write {where}: {orig}.")
    elif isinstance(exc, OperationalError):
        return StoreUnreadableError(f"Cannot reach the database {where}: {orig}".strip())
    return None


class Store:
    """A trade store: engine, migrations, sessions.

    Parameters
    ----------
    url:
        SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://...``).
    busy_timeout_ms:
        How long a SQLite write waits for another writer before reporting the store as locked.
    """

    def __init__(self, url: str, *, busy_timeout_ms: int = 3000, **engine_kw: Any) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.where = url.split("///", 1)[1] if self.is_sqlite and "///" in url else _safe(url)
        if self.is_sqlite:
            # Pooled connections move between worker threads (one at a time).
            engine_kw.setdefault("connect_args", {"check_same_thread": False})
        self.engine: Engine = create_engine(url, **engine_kw)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine, busy_timeout_ms)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            self._migrate()
        except StoreError:
            self.engine.dispose()
            raise
        except (DBAPIError, sqlite3.Error) as exc:
            self.engine.dispose()
            err = translate_error(exc, self.where)
            if err is None:
                raise
            raise err from exc

    @classmethod
    def open_file(cls, path: Path | str, **kw: Any) -> Store:
        """Open (creating if needed) the SQLite store at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}", **kw)

    # -- schema -----------------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return cfg

    def _migrate(self) -> None:
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = self._alembic_config()
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if current is None and self._has_foreign_tables(conn):
                raise StoreUnreadableError(
                    f"{self.where} holds tables but no QuantaEnergi schema version; "
                    "refusing to write into it."
                )
        if current == head:
            return
        if current is not None:
            try:
                script.get_revision(current)
            except Exception as exc:  # alembic raises several types for unknown revisions
                raise StoreVersionError(
                    f"{self.where} was written by a newer version of QuantaEnergi (schema "
                    f"{current}; this version knows up to {head}). Upgrade the application or "
                    "open another data directory; the store was not modified."
                ) from exc
        log.info("Migrating %s from schema %s to %s", self.where, current, head)
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @staticmethod
    def _has_foreign_tables(conn: Any) -> bool:
        from sqlalchemy import inspect

        return bool(set(inspect(conn).get_table_names()) - {"alembic_version"})

    @property
    def schema_revision(self) -> str | None:
        """The Alembic revision the store is at."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # -- sessions ---------------------------------------------------------------------------
    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back on any error.

        Driver errors caused by the environment are re-raised as :class:`StoreError`.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException as exc:
            session.rollback()
            err = translate_error(exc, self.where) if isinstance(exc, DBAPIError) else None
            if err is not None:
                raise err from exc
            if (
                isinstance(exc, StatementError)
                and not isinstance(exc, DBAPIError)
                and isinstance(exc.orig, ValueError)
            ):
                # A column type rejected a value (e.g. too many decimal places): SQLAlchemy wraps
                # it in StatementError; callers get the documented ValueError.
                raise exc.orig from exc
            raise
        finally:
            session.close()

    def check_writable(self) -> None:
        """Raise :class:`StoreLockedError` now if another program holds the write lock."""
        if not self.is_sqlite:
            return
        try:
            # On the DB-API connection: through SQLAlchemy, autobegin has already sent BEGIN
            # (see _on_begin) and BEGIN IMMEDIATE would fail as a nested transaction.
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("BEGIN IMMEDIATE")
                cur.execute("ROLLBACK")
                cur.close()
            finally:
                raw.close()
        except (DBAPIError, sqlite3.Error) as exc:
            err = translate_error(exc, self.where)
            if err is None:
                raise
            raise err from exc

    def ping(self) -> None:
        """Run a trivial query (raises :class:`StoreError` when the store is unusable)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            err = translate_error(exc, self.where)
            if err is None:
                raise
            raise err from exc

    def backup(
        self,
        dest_path: Path | str,
        *,
        overwrite: bool = False,
        pages: int = 1024,
        progress: Callable[[float], None] | None = None,
    ) -> Path:
        """Copy the store to ``dest_path`` with SQLite's online backup API; see :func:`backup_file`.

        Safe while other connections (this application's or another program's) keep writing:
        the copy is the consistent state at the moment the backup started. A PostgreSQL store
        raises :class:`StoreError` (back it up with ``pg_dump``).
        """
        if not self.is_sqlite or self.where in ("", ":memory:") or "///" not in self.url:
            raise StoreError(
                f"{self.where} is not a local SQLite file: back up a PostgreSQL database with "
                "pg_dump (e.g. pg_dump -Fc -f desk.dump DBNAME)."
            )
        return backup_file(
            self.where, dest_path, overwrite=overwrite, pages=pages, progress=progress
        )

    def close(self) -> None:
        self.engine.dispose()


def backup_file(
    src_path: Path | str,
    dest_path: Path | str,
    *,
    overwrite: bool = False,
    pages: int = 1024,
    progress: Callable[[float], None] | None = None,
) -> Path:
    """Back up the SQLite store file ``src_path`` to ``dest_path`` and return the copy's path.

    Uses ``sqlite3.Connection.backup`` in steps of ``pages`` pages while holding one read
    transaction on the source, so the copy is the consistent snapshot at the start even while
    other connections write (WAL mode lets them continue; the backup never restarts). The copy
    is written to a temporary file beside ``dest_path``, switched to a single-file journal
    mode, checked with ``PRAGMA integrity_check`` and only then moved into place, so an
    interrupted or failed backup leaves no partial file. The source is never modified (nor
    migrated). ``progress(fraction)`` is called after each step.

    Raises
    ------
    StoreError
        ``dest_path`` exists (unless ``overwrite``), is the store itself, or its folder does
        not exist; the source is missing or not a SQLite database; the disk is full
        (:class:`StoreFullError`); the copy failed its integrity check.
    """
    src = Path(src_path)
    dest = Path(dest_path).expanduser()
    if not src.is_file():
        raise StoreUnreadableError(f"There is no local store at {src}.")
    if dest.exists() and dest.resolve() == src.resolve():
        raise StoreError(f"{dest} is the store itself; choose another file for the backup.")
    if dest.is_dir():
        raise StoreError(f"{dest} is a folder; give the backup a file name (e.g. store-backup.db).")
    if dest.exists() and not overwrite:
        raise StoreError(f"{dest} already exists; choose another file or allow overwriting it.")
    if not dest.parent.is_dir():
        raise StoreError(f"Cannot write the backup: the folder {dest.parent} does not exist.")
    if pages == 0 or pages < -1:
        raise ValueError("pages must be positive, or -1 for all at once")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")

    def on_step(_status: int, remaining: int, total: int) -> None:
        if progress is not None and total > 0:
            progress(1.0 - remaining / total)

    try:
        with closing(sqlite3.connect(src, isolation_level=None, timeout=10)) as source:
            # Fail early (and without creating anything) on a file that is not a database.
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            with closing(sqlite3.connect(tmp, isolation_level=None)) as target:
                # One read transaction across all steps: a consistent snapshot, and writes by
                # other connections do not restart the backup.
                source.execute("BEGIN")
                source.execute("SELECT count(*) FROM sqlite_master").fetchone()
                try:
                    source.backup(target, pages=pages, progress=on_step)
                finally:
                    source.execute("COMMIT")
                # The copy is one self-contained file, not a WAL database.
                target.execute("PRAGMA journal_mode = DELETE")
                check = [r[0] for r in target.execute("PRAGMA integrity_check").fetchall()]
                if check != ["ok"]:
                    raise StoreError(f"The backup copy failed its integrity check: {check[:3]}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            os.link(tmp, dest)  # atomic "create, never overwrite"
            tmp.unlink()
    except FileExistsError as exc:
        _remove_quietly(tmp)
        raise StoreError(f"{dest} already exists; choose another file.") from exc
    except sqlite3.Error as exc:
        _remove_quietly(tmp)
        msg = str(exc).lower()
        if "full" in msg:
            raise StoreFullError(
                f"The disk holding {dest} is full: no backup was written. Free some space or "
                "choose another disk."
            ) from exc
        if "not a database" in msg or "malformed" in msg:
            raise StoreUnreadableError(f"{src} is not a QuantaEnergi store or is damaged.") from exc
        raise StoreError(f"Could not back up {src} to {dest}: {exc}.") from exc
    except OSError as exc:
        _remove_quietly(tmp)
        if exc.errno == errno.ENOSPC:
            raise StoreFullError(
                f"The disk holding {dest} is full: no backup was written."
            ) from exc
        raise StoreError(f"Could not write the backup {dest}: {exc.strerror or exc}.") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    if progress is not None:
        progress(1.0)
    log.info("Backed up %s to %s (%d bytes)", src, dest, dest.stat().st_size)
    return dest


def _remove_quietly(path: Path) -> None:
    for p in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("Could not remove %s", p)


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, issue BEGIN so transactions are real.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cur.execute("PRAGMA foreign_keys = ON")
        mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode and str(mode[0]).lower() not in ("wal", "memory"):
            log.warning("SQLite journal mode is %s, not WAL", mode[0])
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")
