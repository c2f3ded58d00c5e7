"""A small plain-Python publish/subscribe event bus.

Services publish; views subscribe through one Qt bridge that re-emits events on the GUI thread.
A failing handler is logged and the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., None]

#: Topic published with ``trade_uuids`` (list[UUID]) and ``kind`` (str) after trades change.
TRADES_CHANGED = "trades.changed"
#: Topic published with no payload after reference data (books, counterparties...) changes.
REFDATA_CHANGED = "refdata.changed"
#: Topic published with ``count`` after demo or import replaces many trades at once.
TRADES_RELOAD = "trades.reload"
#: Topic published by the sync worker (app.sync) with ``status`` (app.sync.status.SyncStatus):
#: state, pending outgoing changes, last successful sync, open conflicts, rejected changes,
#: progress of a long catch-up, clock skew and a message for the user.
SYNC_STATUS = "sync.status"
#: Topic published with ``conflict_ids`` (list[int]) when sync finds or resolves conflicts.
SYNC_CONFLICTS = "sync.conflicts"
#: Topic published with ``request_uuid`` and ``state`` when a four-eyes request changes.
APPROVALS_CHANGED = "approvals.changed"


class EventBus:
    """Thread-safe topic -> handlers registry."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, topic: str, handler: Handler) -> None:
        with self._lock:
            self._handlers[topic].append(handler)

    def unsubscribe(self, topic: str, handler: Handler) -> None:
        with self._lock:
            if handler in self._handlers[topic]:
                self._handlers[topic].remove(handler)

    def publish(self, topic: str, **payload: Any) -> None:
        with self._lock:
            handlers = list(self._handlers.get(topic, ()))
        for handler in handlers:
            try:
                handler(**payload)
            except Exception:
                log.exception("Event handler %r failed on %s", handler, topic)
