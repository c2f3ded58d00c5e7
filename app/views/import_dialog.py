"""Trade import dialog: preview a CSV/XLSX file, show per-row errors, import all or nothing."""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.repository import TradeRecord
from app.services.trade_io import COLUMNS, ImportPreview, commit_import, preview_import
from app.services.trading import TradingService

log = logging.getLogger(__name__)

_Index = QModelIndex | QPersistentModelIndex
_BAD_ROW = QBrush(QColor(220, 40, 40, 40))
_BAD_CELL = QBrush(QColor(220, 40, 40, 110))
_MAX_ERRORS_WIDTH = 360


def _display(v: Any) -> str:
    if isinstance(v, dt.datetime):
        return v.date().isoformat() if v.time() == dt.time() else v.isoformat(sep=" ")
    if isinstance(v, dt.date):
        return v.isoformat()
    return "" if v is None else str(v)


class ImportPreviewModel(QAbstractTableModel):
    """Rows x ("Errors", *COLUMNS) of an :class:`ImportPreview`; bad rows tinted red."""

    HEADERS = ("Errors", *COLUMNS)

    def __init__(self, preview: ImportPreview, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.preview = preview

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.preview.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def _errors_text(self, row: int) -> str:
        return "; ".join(f"{k}: {v}" for k, v in self.preview.errors[row].items())

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        errors = self.preview.errors[row]
        name = self.HEADERS[col]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return self._errors_text(row)
            return _display(self.preview.rows[row].get(name))
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 0:
                return self._errors_text(row) or None
            return errors.get(name) or (self._errors_text(row) or None)
        if role == Qt.ItemDataRole.BackgroundRole and errors:
            return _BAD_CELL if name in errors else _BAD_ROW
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        # Spreadsheet row numbers, so the user finds the row in the file.
        numbers = self.preview.row_numbers
        return str(numbers[section]) if section < len(numbers) else str(section + 1)


def summary_text(preview: ImportPreview) -> str:
    """The summary shown above the preview table (ignored columns on a second line)."""
    n = len(preview.rows)
    rows = f"{n} row{'s' if n != 1 else ''}"
    if preview.n_bad:
        text = (
            f"{rows}: {preview.n_valid} valid, {preview.n_bad} with errors — fix the file and "
            "import again; nothing is imported while any row has an error"
        )
    else:
        text = f"{rows}, all valid: Import stores them as {n} new trades in one step"
    if preview.ignored_columns:
        text += (
            f".\nIgnored columns: {', '.join(preview.ignored_columns)}"
            " (an import always creates new trades)"
        )
    return text


class ImportDialog(QDialog):
    """Preview a trade file and import it; ``imported`` holds the new trades after accept."""

    def __init__(
        self, service: TradingService, path: str | os.PathLike[str], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.service = service
        self.path = os.fspath(path)
        self.preview: ImportPreview | None = None
        self.imported: list[TradeRecord] = []
        self.setWindowTitle(f"Import trades — {os.path.basename(self.path)}")
        self.resize(900, 500)

        layout = QVBoxLayout(self)
        self.summary_label = QLabel(self)
        self.summary_label.setWordWrap(True)
        self.table = QTableView(self)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.error_label = QLabel(self)
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #c62828;")
        self.error_label.hide()

        self.buttons = QDialogButtonBox(self)
        self.import_button: QPushButton = self.buttons.addButton(
            "Import", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.cancel_button: QPushButton = self.buttons.addButton(
            QDialogButtonBox.StandardButton.Cancel
        )
        self.import_button.clicked.connect(self._on_import)
        self.cancel_button.clicked.connect(self.reject)

        layout.addWidget(self.summary_label)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)

        try:
            self.preview = preview_import(self.path, service)
        except (ValueError, OSError) as exc:
            self._show_read_error(exc)
            return
        self.model = ImportPreviewModel(self.preview, self)
        self.table.setModel(self.model)
        self.table.resizeColumnsToContents()
        if self.table.columnWidth(0) > _MAX_ERRORS_WIDTH:
            self.table.setColumnWidth(0, _MAX_ERRORS_WIDTH)
        if not self.preview.n_bad:
            self.table.hideColumn(0)
        self.summary_label.setText(summary_text(self.preview))
        self.import_button.setEnabled(self.preview.ok)
        self.import_button.setDefault(self.preview.ok)

    def _show_read_error(self, exc: BaseException) -> None:
        msg = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError):
            msg = f"Cannot open {os.path.basename(self.path)}: {msg}"
        self.summary_label.setText("The file cannot be imported.")
        self.error_label.setText(msg)
        self.error_label.show()
        self.table.hide()
        self.import_button.hide()
        self.import_button.setEnabled(False)
        self.cancel_button.setText("Close")

    def _on_import(self) -> None:
        if self.preview is None or not self.preview.ok:
            return
        self.error_label.hide()
        try:
            self.imported = commit_import(self.preview, self.service)
        except Exception as exc:
            log.exception("Import of %s failed", self.path)
            self.error_label.setText(f"Nothing was imported: {exc}")
            self.error_label.show()
            return
        self.accept()
