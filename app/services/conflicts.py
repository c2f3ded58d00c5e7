"""Resolving sync conflicts: the user keeps the desk's version, keeps theirs, merges, or re-books.

A conflict (app.models.entities.SyncConflict) holds this workstation's version of a trade that
met a different version in the desk database; the trade itself shows the desk's version. Nothing
is resolved automatically (no last-writer-wins). Every resolution goes through the trading
service, so permissions, validation, the outbox and the audit trail apply as for any amendment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.models import audit
from app.models.entities import SyncConflict
from app.models.payload import ECONOMIC_KEYS, UnknownReference, columns_from_payload
from app.models.repository import TradeRecord
from app.models.store import Store
from app.models.types import utcnow
from app.services.events import SYNC_CONFLICTS, EventBus
from app.services.trading import TradingService

#: Payload keys shown side by side (economics plus status and version).
COMPARED = ("version", "status", *ECONOMIC_KEYS, "updated_by", "updated_at")


class ConflictError(Exception):
    """The conflict cannot be resolved that way (already resolved, nothing to keep ...)."""


@dataclass(frozen=True)
class ConflictView:
    """One open conflict, ready to show side by side."""

    id: int
    trade_uuid: uuid.UUID
    base_version: int
    mine: dict[str, Any]
    theirs: dict[str, Any] | None
    detected_at: Any
    state: str
    resolution: str

    @property
    def differing(self) -> list[str]:
        """Economic fields whose values differ."""
        if self.theirs is None:
            return list(ECONOMIC_KEYS)
        return [k for k in ECONOMIC_KEYS if self.mine.get(k) != self.theirs.get(k)]


class ConflictService:
    """List and resolve conflicts of one local store."""

    def __init__(self, store: Store, trading: TradingService, bus: EventBus) -> None:
        self.store = store
        self.trading = trading
        self.bus = bus

    def open_conflicts(self) -> list[ConflictView]:
        with self.store.session() as s:
            rows = s.scalars(
                select(SyncConflict).where(SyncConflict.state == "open").order_by(SyncConflict.id)
            ).all()
            return [_view(c) for c in rows]

    def get(self, conflict_id: int) -> ConflictView:
        with self.store.session() as s:
            c = s.get(SyncConflict, conflict_id)
            if c is None:
                raise ConflictError(f"No conflict #{conflict_id}.")
            return _view(c)

    # -- resolutions --------------------------------------------------------------------------
    def keep_theirs(self, conflict_id: int) -> None:
        """Keep the desk database's version; this workstation's version stays on record here
        and in the audit trail."""
        self._close(conflict_id, "kept the desk version")

    def keep_mine(self, conflict_id: int) -> TradeRecord:
        """Re-apply this workstation's economics as a new version on top of the desk's."""
        view = self._open(conflict_id)
        rec = self._amend_to(view, view.mine)
        self._close(conflict_id, f"kept this workstation's version (now v{rec.version})")
        return rec

    def merge(self, conflict_id: int, choose: Mapping[str, str]) -> TradeRecord:
        """``choose``: economic field -> "mine" or "theirs" (unlisted fields: theirs)."""
        view = self._open(conflict_id)
        if view.theirs is None:
            raise ConflictError("The desk version is not visible here: keep yours or re-book.")
        bad = {
            k: v for k, v in choose.items() if k not in ECONOMIC_KEYS or v not in ("mine", "theirs")
        }
        if bad:
            raise ConflictError(f"Cannot merge on {', '.join(sorted(bad))}.")
        merged = dict(view.theirs)
        for key, side in choose.items():
            if side == "mine":
                merged[key] = view.mine.get(key)
        rec = self._amend_to(view, merged)
        mine = sorted(k for k, v in choose.items() if v == "mine")
        self._close(conflict_id, f"merged (mine: {', '.join(mine) or 'none'}) as v{rec.version}")
        return rec

    def rebook(self, conflict_id: int) -> TradeRecord:
        """Book this workstation's version as a new trade; the desk's version stays as is."""
        view = self._open(conflict_id)
        raw = self._raw(view.mine)
        raw["comment"] = (f"Re-booked from {str(view.trade_uuid)[:8]} after a sync conflict. "
                          + str(raw.get("comment") or ""))[:500]  # fmt: skip
        rec = self.trading.capture(raw)
        self._close(conflict_id, f"re-booked as {str(rec.trade_uuid)[:8]}")
        return rec

    # -- helpers ----------------------------------------------------------------------------
    def _open(self, conflict_id: int) -> ConflictView:
        view = self.get(conflict_id)
        if view.state != "open":
            raise ConflictError(f"Conflict #{conflict_id} is already resolved ({view.resolution}).")
        return view

    def _amend_to(self, view: ConflictView, payload: Mapping[str, Any]) -> TradeRecord:
        current = self.trading.repo.get(view.trade_uuid)
        raw = self._raw(payload)
        return self.trading.amend(view.trade_uuid, current.version, raw)

    def _raw(self, p: Mapping[str, Any]) -> dict[str, Any]:
        """The ticket input of a payload: decoded like a pulled version, then presented like
        any stored trade (``TradingService.raw_from_record``)."""
        ref = self.trading.refdata
        try:
            cols = columns_from_payload(
                p,
                {b.name: b.id for b in ref.books.values()},
                {c.lei: c.id for c in ref.counterparties.values()},
                {q.code: q.id for q in ref.products.values()},
            )
        except UnknownReference as exc:
            raise ConflictError(f"This workstation does not know the trade's {exc}.") from None
        return self.trading.raw_from_record(TradeRecord(is_current=False, **cols))

    def _close(self, conflict_id: int, resolution: str) -> None:
        with self.store.session() as s:
            c = s.get(SyncConflict, conflict_id)
            if c is None or c.state != "open":
                raise ConflictError(f"Conflict #{conflict_id} is not open.")
            c.state = "resolved"
            c.resolution = resolution[:200]
            c.resolved_by = self.trading.user
            c.resolved_at = utcnow()
            audit.append(
                s, user=self.trading.user, entity="trade", entity_id=c.entity_key,
                action="resolve", before=json.loads(c.local_payload),
                after=None if c.remote_payload is None else json.loads(c.remote_payload),
                extra={"conflict_id": conflict_id, "resolution": resolution},
            )  # fmt: skip
        self.bus.publish(SYNC_CONFLICTS, conflict_ids=[conflict_id])


def _view(c: SyncConflict) -> ConflictView:
    return ConflictView(
        id=c.id,
        trade_uuid=uuid.UUID(c.entity_key),
        base_version=c.base_version,
        mine=json.loads(c.local_payload),
        theirs=None if c.remote_payload is None else json.loads(c.remote_payload),
        detected_at=c.detected_at,
        state=c.state,
        resolution=c.resolution,
    )
