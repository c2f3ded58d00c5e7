"""Outbox rows: what the sync worker will push, written in the same transaction as the change.

See :class:`app.models.entities.OutboxItem`. The payload of a trade change is not copied here:
it is rendered from the immutable local version ``(entity_key, version)`` at push time.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.models.entities import OutboxItem
from app.models.types import utcnow


def enqueue(
    session: Session,
    *,
    entity: str,
    entity_key: str,
    version: int,
    username: str,
    payload: str | None = None,
) -> str:
    """Add one pending outbox row to ``session``'s transaction; returns its idempotency key."""
    op_id = str(uuid.uuid4())
    session.add(
        OutboxItem(
            op_id=op_id,
            entity=entity,
            entity_key=entity_key,
            version=version,
            username=username,
            payload=payload,
            created_at=utcnow(),
            state="pending",
            attempts=0,
            last_error="",
        )
    )
    return op_id
