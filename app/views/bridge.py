"""The one Qt bridge: re-emits service events (any thread) as signals on the GUI thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from app.services.events import REFDATA_CHANGED, TRADES_CHANGED, TRADES_RELOAD, EventBus


class EventBridge(QObject):
    sig_trades_changed = Signal(list, str)
    """(list of trade UUIDs, kind: captured | amended | cancelled | imported)"""
    sig_trades_reload = Signal()
    """Many trades replaced at once (demo reseed/clear): reload the blotter."""
    sig_refdata_changed = Signal()

    def __init__(self, bus: EventBus, parent: Any = None) -> None:
        super().__init__(parent)
        self.bus = bus
        bus.subscribe(TRADES_CHANGED, self._on_trades)
        bus.subscribe(TRADES_RELOAD, self._on_reload)
        bus.subscribe(REFDATA_CHANGED, self._on_refdata)

    def _on_trades(self, trade_uuids: list[Any], kind: str) -> None:
        self.sig_trades_changed.emit(list(trade_uuids), kind)

    def _on_reload(self, **_: Any) -> None:
        self.sig_trades_reload.emit()

    def _on_refdata(self, **_: Any) -> None:
        self.sig_refdata_changed.emit()

    def detach(self) -> None:
        self.bus.unsubscribe(TRADES_CHANGED, self._on_trades)
        self.bus.unsubscribe(TRADES_RELOAD, self._on_reload)
        self.bus.unsubscribe(REFDATA_CHANGED, self._on_refdata)
