"""The one Qt bridge: re-emits service events (any thread) as signals on the GUI thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from app.services.events import (
    REFDATA_CHANGED,
    SYNC_CONFLICTS,
    SYNC_STATUS,
    TRADES_CHANGED,
    TRADES_RELOAD,
    EventBus,
)


class EventBridge(QObject):
    sig_trades_changed = Signal(list, str)
    """(list of trade UUIDs, kind: captured | amended | cancelled | imported)"""
    sig_trades_reload = Signal()
    """Many trades replaced at once (demo reseed/clear): reload the blotter."""
    sig_refdata_changed = Signal()
    sig_sync_status = Signal(object)
    """(app.sync.status.SyncStatus) the desk database sync worker's latest status."""
    sig_sync_conflicts = Signal(list)
    """(list of conflict ids) sync found conflicts or a user resolved one."""

    def __init__(self, bus: EventBus, parent: Any = None) -> None:
        super().__init__(parent)
        self.bus = bus
        bus.subscribe(TRADES_CHANGED, self._on_trades)
        bus.subscribe(TRADES_RELOAD, self._on_reload)
        bus.subscribe(REFDATA_CHANGED, self._on_refdata)
        bus.subscribe(SYNC_STATUS, self._on_sync_status)
        bus.subscribe(SYNC_CONFLICTS, self._on_sync_conflicts)

    def _on_trades(self, trade_uuids: list[Any], kind: str) -> None:
        self.sig_trades_changed.emit(list(trade_uuids), kind)

    def _on_reload(self, **_: Any) -> None:
        self.sig_trades_reload.emit()

    def _on_refdata(self, **_: Any) -> None:
        self.sig_refdata_changed.emit()

    def _on_sync_status(self, status: Any, **_: Any) -> None:
        self.sig_sync_status.emit(status)

    def _on_sync_conflicts(self, conflict_ids: Any = (), **_: Any) -> None:
        self.sig_sync_conflicts.emit(list(conflict_ids or ()))

    def detach(self) -> None:
        self.bus.unsubscribe(TRADES_CHANGED, self._on_trades)
        self.bus.unsubscribe(TRADES_RELOAD, self._on_reload)
        self.bus.unsubscribe(REFDATA_CHANGED, self._on_refdata)
        self.bus.unsubscribe(SYNC_STATUS, self._on_sync_status)
        self.bus.unsubscribe(SYNC_CONFLICTS, self._on_sync_conflicts)
