"""The append-only, hash-chained audit trail (table ``audit_log``), local and central.

Every change to trades, counterparties, limits, users and settings appends one record in the
same transaction as the change: who, when (UTC), what (entity, id, action), before and after,
from which workstation. The record's ``body`` is its JSON text and

    hash = sha256(prev_hash + "\\n" + body)     (prev_hash of the first record: 64 zeros)

so editing, deleting or reordering any record breaks the chain from that record on. The central
database appends its records in ``qe_audit_append`` (app/models/migrations/central.py) with the
same body keys and the same formula; :func:`verify_rows` checks either chain. A truncated tail
keeps a valid chain, so each workstation remembers the central chain heads it has seen and
verification checks they are still there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.entities import AuditRecord, SyncState

log = logging.getLogger(__name__)

GENESIS = "0" * 64
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(ts: dt.datetime) -> str:
    """A UTC timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the audit and payload format)."""
    return ts.astimezone(dt.UTC).strftime(TS_FORMAT)


def chain_hash(prev_hash: str, body: str) -> str:
    """The hash of a record whose predecessor's hash is ``prev_hash``."""
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


def os_user() -> str:
    """The operating-system login name (who acts when nobody signed in), ``'unknown'`` if the
    platform cannot tell."""
    import getpass

    try:
        return getpass.getuser()[:60]
    except (OSError, KeyError):
        return "unknown"


def workstation_id(session: Session) -> str:
    """This store's workstation name, ``host/xxxxxxxx`` (the suffix is created once per store,
    so two data directories on one machine are told apart)."""
    row = session.get(SyncState, "workstation_id")
    if row is None:
        row = SyncState(
            key="workstation_id", value=f"{socket.gethostname()}/{uuid.uuid4().hex[:8]}"
        )
        session.add(row)
        session.flush()
    return row.value


def append(
    session: Session,
    *,
    user: str,
    entity: str,
    entity_id: str,
    action: str,
    before: Any = None,
    after: Any = None,
    extra: dict[str, Any] | None = None,
    workstation: str | None = None,
    ts: dt.datetime | None = None,
) -> tuple[int, str]:
    """Append one record in ``session``'s transaction; returns ``(seq, hash)``.

    ``before``/``after`` are JSON-serialisable (dates and decimals must already be strings or
    numbers); never pass secrets.
    """
    ts = ts or dt.datetime.now(dt.UTC)
    workstation = workstation or workstation_id(session)
    body = json.dumps(
        {"ts": format_ts(ts), "user": user, "workstation": workstation, "entity": entity,
         "entity_id": entity_id, "action": action, "before": before, "after": after,
         "extra": extra or {}},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    last = session.execute(
        select(AuditRecord.hash).order_by(AuditRecord.seq.desc()).limit(1)
    ).scalar_one_or_none()
    prev = last or GENESIS
    rec = AuditRecord(
        ts=ts.replace(microsecond=ts.microsecond),
        username=user,
        workstation=workstation,
        entity=entity,
        entity_id=entity_id,
        action=action,
        body=body,
        prev_hash=prev,
        hash=chain_hash(prev, body),
    )
    session.add(rec)
    session.flush()
    return rec.seq, rec.hash


# -- verification ---------------------------------------------------------------------------

#: Column order of the rows :func:`verify_rows` and :func:`rebuild_trade_versions` read.
ROW_COLUMNS = ("seq", "ts", "username", "workstation", "entity", "entity_id", "action", "body",
               "prev_hash", "hash")  # fmt: skip
#: Denormalised columns that repeat a body key (column -> body key).
_COLUMN_KEYS = (("username", "user"), ("workstation", "workstation"), ("entity", "entity"),
                ("entity_id", "entity_id"), ("action", "action"))  # fmt: skip
HEADS_KEY = "audit_heads"
MAX_HEADS = 100
PAGE_ROWS = 5000  # rows read per query while verifying: memory stays bounded


@dataclass(frozen=True)
class AuditVerification:
    """Outcome of a chain verification.

    ``checked`` records were read; when ``ok`` is false ``first_broken_seq`` names the first
    broken record and ``reason`` says why, in a sentence. ``head_seq``/``head_hash`` are the
    last record read (the chain head when ``ok``).
    """

    ok: bool
    checked: int
    first_broken_seq: int | None = None
    reason: str = ""
    head_seq: int | None = None
    head_hash: str | None = None

    def summary(self) -> str:
        """``'OK: N records, chain head <seq> <hash[:12]>'`` or ``'BROKEN at record N: why'``."""
        if not self.ok:
            return f"BROKEN at record {self.first_broken_seq}: {self.reason}"
        if self.head_seq is None:
            return "OK: 0 records (the audit trail is empty)"
        return (f"OK: {self.checked} records, chain head {self.head_seq} "
                f"{(self.head_hash or '')[:12]}")  # fmt: skip


def _as_tuple(row: Any) -> tuple[Any, ...]:
    if isinstance(row, AuditRecord):
        return tuple(getattr(row, c) for c in ROW_COLUMNS)
    return tuple(row)


def _ts_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # a driver returning naive UTC (PostgreSQL timestamp)
            value = value.replace(tzinfo=dt.UTC)
        return format_ts(value)
    return str(value)


def _row_problem(row: tuple[Any, ...], expected_prev: str, prev_seq: int | None) -> str | None:
    """Why this record breaks the chain (``None`` when it is sound)."""
    seq, ts, _user, _ws, _entity, _eid, _action, body, prev_hash, stored_hash = row
    if prev_seq is not None and seq <= prev_seq:
        return (f"record {seq} comes after record {prev_seq}: sequence numbers must strictly "
                "increase (records reordered)")  # fmt: skip
    if prev_hash != expected_prev:
        if prev_seq is None:
            return ("the chain does not start at the genesis hash: the records before it were "
                    "deleted")  # fmt: skip
        gap = f" (records {prev_seq + 1}..{seq - 1} are missing)" if seq > prev_seq + 1 else ""
        return (f"its prev_hash is not the hash of record {prev_seq}: a record before it was "
                f"deleted, records were reordered, or record {prev_seq} was rewritten{gap}")  # fmt: skip
    if not isinstance(body, str) or chain_hash(prev_hash, body) != stored_hash:
        return "edited: its stored hash does not match its content"
    try:
        doc = json.loads(body)
    except ValueError:
        return "edited: its body is not valid JSON"
    if not isinstance(doc, dict):
        return "edited: its body is not a JSON object"
    if _ts_text(ts) != doc.get("ts"):
        return (f"columns disagree with the body: ts column {_ts_text(ts)} but the body says "
                f"{doc.get('ts')}")  # fmt: skip
    for col, key in _COLUMN_KEYS:
        value = row[ROW_COLUMNS.index(col)]
        if value != doc.get(key):
            return (f"columns disagree with the body: {col} column {value!r} but the body says "
                    f"{doc.get(key)!r}")  # fmt: skip
    return None


def verify_rows(
    rows: Iterable[Any], known_heads: Iterable[tuple[int, str]] = ()
) -> AuditVerification:
    """Verify a chain read in ``seq`` order, streaming (memory does not grow with the chain).

    ``rows`` are :class:`~app.models.entities.AuditRecord` objects or tuples in
    :data:`ROW_COLUMNS` order. Checked for each record: ``seq`` strictly increases; its
    ``prev_hash`` is the previous record's ``hash`` (the genesis hash for the first);
    ``hash == chain_hash(prev_hash, body)`` over the *stored* body text; the denormalised columns
    (ts to the microsecond, username, workstation, entity, entity_id, action) equal the body's.
    ``known_heads`` are ``(seq, hash)`` pairs seen earlier (:func:`known_heads`): each must still
    be there with that hash, which is what catches a truncated tail. Stops at the first broken
    record.
    """
    heads = {int(s): str(h) for s, h in known_heads}
    expected_prev = GENESIS
    prev_seq: int | None = None
    checked = 0
    for raw in rows:
        row = _as_tuple(raw)
        seq = int(row[0])
        problem = _row_problem(row, expected_prev, prev_seq)
        if problem is None:
            lo = -1 if prev_seq is None else prev_seq
            for missing in sorted(s for s in heads if lo < s < seq):
                problem = (f"record {missing} that this workstation saw is missing (deleted); "
                           "the chain was rebuilt after it")  # fmt: skip
                return AuditVerification(False, checked, missing, problem, prev_seq,
                                         None if prev_seq is None else expected_prev)  # fmt: skip
            seen = heads.get(seq)
            if seen is not None and seen != row[9]:
                problem = (f"record {seq} is not the record this workstation saw (hash "
                           f"{seen[:12]} then, {str(row[9])[:12]} now): the chain was rewritten")  # fmt: skip
        if problem is not None:
            return AuditVerification(False, checked, seq, problem, prev_seq,
                                     None if prev_seq is None else expected_prev)  # fmt: skip
        checked += 1
        expected_prev = str(row[9])
        prev_seq = seq
    beyond = sorted(s for s in heads if prev_seq is None or s > prev_seq)
    if beyond:
        first = beyond[0]
        last = "the chain is empty" if prev_seq is None else f"the chain ends at {prev_seq}"
        return AuditVerification(
            False, checked, first,
            f"truncated: record {first} that this workstation saw is missing ({last})",
            prev_seq, None if prev_seq is None else expected_prev,
        )  # fmt: skip
    return AuditVerification(True, checked, None, "", prev_seq,
                             None if prev_seq is None else expected_prev)  # fmt: skip


def iter_store_rows(session: Session, page: int = PAGE_ROWS) -> Iterator[tuple[Any, ...]]:
    """All audit rows of a SQLAlchemy session, in ``seq`` order, read ``page`` rows at a time."""
    cols = [getattr(AuditRecord, c) for c in ROW_COLUMNS]
    last: int | None = None
    while True:
        q = select(*cols).order_by(AuditRecord.seq).limit(page)
        if last is not None:
            q = q.where(AuditRecord.seq > last)
        batch = session.execute(q).all()
        for r in batch:
            yield tuple(r)
        if len(batch) < page:
            return
        last = int(batch[-1][0])


def verify_store(store: Any, known_heads: Iterable[tuple[int, str]] = ()) -> AuditVerification:
    """Verify the audit chain of a :class:`~app.models.store.Store` (SQLite or PostgreSQL)."""
    with store.session() as s:
        return verify_rows(iter_store_rows(s), known_heads)


_PG_SELECT = (f"SELECT {', '.join(ROW_COLUMNS)} FROM audit_log WHERE seq > %s "
              "ORDER BY seq LIMIT %s")  # fmt: skip


def iter_connection_rows(conn: Any, page: int = PAGE_ROWS) -> Iterator[tuple[Any, ...]]:
    """All audit rows visible to a psycopg connection, in ``seq`` order, page by page."""
    last = -1
    while True:
        with conn.cursor() as cur:
            cur.execute(_PG_SELECT, (last, page))
            batch = cur.fetchall()
        for r in batch:
            yield tuple(r)
        if len(batch) < page:
            return
        last = int(batch[-1][0])


def central_reader_problem(conn: Any) -> str | None:
    """``None`` when the connection's user reads the whole central audit trail (compliance,
    admin or a superuser); otherwise why not (row-level security would hide records)."""
    with conn.cursor() as cur:
        cur.execute("SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = "
                    "session_user), false), qe_role(), session_user")  # fmt: skip
        row = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    superuser, role, user = row
    if superuser or role in ("COMPLIANCE", "ADMIN"):
        return None
    what = f"the {str(role).lower().replace('_', ' ')} role" if role else "not a workstation user"
    return (f"{user} ({what}) sees only their own audit records; verify the central chain as a "
            "compliance or admin user")  # fmt: skip


def verify_connection(conn: Any, known_heads: Iterable[tuple[int, str]] = ()) -> AuditVerification:
    """Verify the central audit chain through a psycopg connection.

    The reader must see every record (compliance, admin or superuser); anyone else gets
    ``PermissionError`` with the reason, since a partial view can never verify.
    """
    problem = central_reader_problem(conn)
    if problem is not None:
        raise PermissionError(problem)
    try:
        return verify_rows(iter_connection_rows(conn), known_heads)
    finally:
        if not conn.autocommit:
            conn.rollback()


# -- chain heads a workstation remembers ------------------------------------------------------


def known_heads(session: Session) -> list[tuple[int, str]]:
    """The central chain heads ``(seq, hash)`` this workstation has seen, oldest first."""
    row = session.get(SyncState, HEADS_KEY)
    if row is None:
        return []
    try:
        data = json.loads(row.value)
        return [(int(s), str(h)) for s, h in data]
    except (ValueError, TypeError):
        log.warning("the remembered audit chain heads are unreadable; starting afresh")
        return []


def remember_head(session: Session, seq: int, hash_: str) -> None:
    """Remember that the central chain had record ``seq`` with ``hash_`` (keeps the last
    :data:`MAX_HEADS`); call it in the transaction that records the push acknowledgement."""
    heads = dict(known_heads(session))
    heads[int(seq)] = str(hash_)
    keep = sorted(heads.items())[-MAX_HEADS:]
    value = json.dumps([[s, h] for s, h in keep], separators=(",", ":"))
    row = session.get(SyncState, HEADS_KEY)
    if row is None:
        session.add(SyncState(key=HEADS_KEY, value=value))
    else:
        row.value = value
    session.flush()


# -- rebuilding trades from the trail ---------------------------------------------------------


def parse_body(body: str) -> dict[str, Any]:
    """The JSON object of a record body (``{}`` for anything else)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def rebuild_trade_versions(rows: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Every trade version rebuilt from the audit trail alone: trade UUID (hex) -> the
    ``after`` payload of each ``trade`` record, in chain order (version 1 first).

    ``rows`` as for :func:`verify_rows` (or any rows whose 8th column / ``body`` attribute is
    the record body). Records of other entities are skipped.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for raw in rows:
        row = _as_tuple(raw)
        if row[4] != "trade":
            continue
        after = parse_body(row[7]).get("after")
        if isinstance(after, dict):
            out.setdefault(str(row[5]), []).append(after)
    return out


# -- changes outside the database (settings files) -------------------------------------------


def settings_recorder(
    store: Any, user: Callable[[], str], entity: str = "settings"
) -> Callable[[str, str, Any, Any], AbstractContextManager[None]]:
    """A hook for a settings writer: ``with recorder(action, entity_id, before, after):
    write()`` appends an audit record in ``store`` that commits only if ``write()`` succeeds
    (an audit failure leaves the setting unchanged)."""

    @contextmanager
    def record(action: str, entity_id: str, before: Any, after: Any) -> Iterator[None]:
        with store.session() as s:
            append(s, user=user(), entity=entity, entity_id=entity_id, action=action,
                   before=before, after=after)  # fmt: skip
            yield

    return record
