"""Log/Alerts dock: every log record of level INFO and above, warnings and errors highlighted.

Records may come from any thread; :class:`QtLogHandler` hands them to the GUI thread through a
signal. An error also bumps the Alerts counter in the status bar.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)


class _Emitter(QObject):
    sig_record = Signal(object)
    """(logging.LogRecord)"""


class QtLogHandler(logging.Handler):
    """A logging handler that re-emits records as a Qt signal (thread-safe)."""

    def __init__(self, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.emitter = _Emitter()

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(RuntimeError):  # emitter deleted during shutdown
            self.emitter.sig_record.emit(record)


_COLOURS = {logging.WARNING: QColor("#8a5a00"), logging.ERROR: QColor("#b3261e")}


class LogPanel(QWidget):
    """Table of recent log records (newest last), capped at ``max_rows``."""

    sig_alert = Signal(str)
    """(message of a WARNING/ERROR record)"""

    def __init__(self, handler: QtLogHandler, max_rows: int = 2000, parent: Any = None) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Time", "Level", "Source", "Message"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setColumnWidth(0, 70)
        self.tree.setColumnWidth(1, 60)
        self.tree.setColumnWidth(2, 150)
        self.alerts = 0
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)
        self.summary = QLabel("No alerts")
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(clear)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.tree)
        handler.emitter.sig_record.connect(self.add_record, Qt.ConnectionType.QueuedConnection)

    def add_record(self, record: logging.LogRecord) -> None:
        import datetime as dt

        when = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        msg = record.getMessage().splitlines()[0] if record.getMessage() else ""
        item = QTreeWidgetItem([when, record.levelname.title(), record.name, msg])
        item.setToolTip(3, record.getMessage())
        colour = _COLOURS.get(record.levelno if record.levelno < 40 else logging.ERROR)
        if record.levelno >= logging.WARNING and colour is not None:
            for c in range(4):
                item.setForeground(c, QBrush(colour))
            self.alerts += 1
            self.summary.setText(f"{self.alerts} alert(s); details in the log file")
            self.sig_alert.emit(msg)
        self.tree.addTopLevelItem(item)
        while self.tree.topLevelItemCount() > self.max_rows:
            self.tree.takeTopLevelItem(0)
        self.tree.scrollToBottom()

    def clear(self) -> None:
        self.tree.clear()
        self.alerts = 0
        self.summary.setText("No alerts")
        self.sig_alert.emit("")

    def messages(self) -> list[str]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [it.text(3) for it in items if it is not None]
