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
import socket
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models.entities import AuditRecord, SyncState

GENESIS = "0" * 64
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(ts: dt.datetime) -> str:
    """A UTC timestamp as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the audit and payload format)."""
    return ts.astimezone(dt.UTC).strftime(TS_FORMAT)


def chain_hash(prev_hash: str, body: str) -> str:
    """The hash of a record whose predecessor's hash is ``prev_hash``."""
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


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
