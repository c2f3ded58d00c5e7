"""Blotter dock: the trade table with quick filter, per-column filters, column chooser,
copy to clipboard, export to CSV/Excel, and double-click to open the ticket."""

from __future__ import annotations

import csv
import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QDate, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.models.enums import TradeStatus
from app.services.auth import Action, Principal, why_not
from app.services.trading import next_status
from app.views.blotter_model import COLUMN_INDEX, COLUMNS, BlotterModel, Filters
from app.views.jobs import JobContext, JobRunner

#: Columns that get a drop-down filter in the filter bar.
FILTER_KEYS = (("status", "All statuses"), ("commodity", "All commodities"),
               ("book_id", "All books"), ("counterparty_id", "All counterparties"))  # fmt: skip
EXCEL_MAX_ROWS = 1_048_575


def write_table(path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write CSV or XLSX (by suffix) atomically: temp file in the same dir, then rename."""
    suffix = path.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        if suffix == ".csv":
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows(rows)
                fh.flush()
                os.fsync(fh.fileno())
        elif suffix == ".xlsx":
            if len(rows) > EXCEL_MAX_ROWS:
                raise ValueError(
                    f"Excel holds at most {EXCEL_MAX_ROWS:,} rows; filter the blotter "
                    f"({len(rows):,} rows) or export to CSV."
                )
            from openpyxl import Workbook

            wb = Workbook(write_only=True)
            ws = wb.create_sheet("Blotter")
            ws.append(header)
            for r in rows:
                ws.append(r)
            wb.save(tmp)
        else:
            raise ValueError(f"Cannot export to '{suffix}': choose .csv or .xlsx")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class BlotterPanel(QWidget):
    """The blotter widget (placed in a dock by the main window)."""

    sig_open_trade = Signal(str)
    """(trade UUID hex) a row was double-clicked or Enter pressed on it"""
    sig_message = Signal(str)
    """(a status message for the user)"""
    sig_new_trade = Signal()
    """New trade chosen in the row context menu"""
    sig_cancel_trade = Signal(str)
    """(trade UUID hex) Cancel trade chosen in the row context menu"""
    sig_advance = Signal(str, int, object)
    """(trade UUID hex, expected version, TradeStatus) a lifecycle step was chosen"""

    def __init__(self, runner: JobRunner, parent: Any = None) -> None:
        super().__init__(parent)
        self.runner = runner
        #: Who is signed in: the row context menu disables what they may not do.
        self.principal = Principal.local_owner("local")
        self.model = BlotterModel(self)

        # Sorting/filtering a big blotter runs on a worker; the latest request wins.
        def run_view_job(fn: Any, done: Any) -> None:
            runner.submit("Sorting / filtering blotter", lambda _ctx: fn(), on_result=done,
                          key="blotter-view")  # fmt: skip

        self.model.async_runner = run_view_job
        self.table = QTableView()
        self.table.setObjectName("blotter_table")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionsMovable(True)
        header.setHighlightSections(False)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(lambda _pos: self._columns_menu().exec(
            header.mapToGlobal(_pos)))  # fmt: skip
        self.apply_default_columns()
        self.table.doubleClicked.connect(self._open_index)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(lambda pos: self.row_menu(
            self.table.indexAt(pos).row()).exec(self.table.viewport().mapToGlobal(pos)))  # fmt: skip
        QShortcut(QKeySequence(Qt.Key.Key_Return), self.table, self._open_current,
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip
        QShortcut(QKeySequence.StandardKey.Copy, self.table, self.copy_selection,
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip

        # -- filter bar --
        self.quick = QLineEdit(placeholderText="Filter: id, book, counterparty, product… (Ctrl+F)")
        self.quick.setClearButtonEnabled(True)
        self.quick.setMinimumWidth(220)
        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self.apply_filters)
        self.quick.textChanged.connect(lambda _t: self._debounce.start())
        QShortcut(QKeySequence.StandardKey.Find, self, self.quick.setFocus)
        self.combos: dict[str, QComboBox] = {}
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.quick, 2)
        for key, title in FILTER_KEYS:
            box = QComboBox()
            box.setToolTip(f"Filter: {title.lower()} or just one")
            box.setMinimumContentsLength(8)
            box.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            box.currentIndexChanged.connect(lambda _i: self.apply_filters())
            self.combos[key] = box
            bar.addWidget(box, 1)
        self.date_on = QCheckBox("Traded")
        self.date_from = QDateEdit(QDate.currentDate().addMonths(-1))
        self.date_to = QDateEdit(QDate.currentDate())
        for w in (self.date_from, self.date_to):
            w.setCalendarPopup(True)
            w.setDisplayFormat("yyyy-MM-dd")
            w.setEnabled(False)
            w.dateChanged.connect(lambda _d: self.apply_filters())
        self.date_on.toggled.connect(self._toggle_dates)
        bar.addWidget(self.date_on)
        bar.addWidget(self.date_from)
        bar.addWidget(QLabel("–"))
        bar.addWidget(self.date_to)
        cols = QToolButton()
        cols.setText("Columns")
        cols.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        cols.clicked.connect(lambda: self._columns_menu().exec(cols.mapToGlobal(
            cols.rect().bottomLeft())))  # fmt: skip
        export = QToolButton()
        export.setText("Export")
        export.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        em = QMenu(export)
        em.addAction("Visible rows to CSV…", lambda: self.export_dialog(".csv"))
        em.addAction("Visible rows to Excel…", lambda: self.export_dialog(".xlsx"))
        em.addAction("Copy selection", self.copy_selection)
        export.setMenu(em)
        bar.addWidget(cols)
        bar.addWidget(export)
        self.count_label = QLabel("Loading…")
        self.count_label.setObjectName("blotter_count")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.table)
        lay.addWidget(self.count_label)
        self.model.modelReset.connect(self.update_count)
        self.model.rowsInserted.connect(self.update_count)
        self.model.layoutChanged.connect(self.update_count)
        self.fill_filter_choices()

    # -- columns ------------------------------------------------------------------------------
    def apply_default_columns(self) -> None:
        header = self.table.horizontalHeader()
        for i, c in enumerate(COLUMNS):
            header.moveSection(header.visualIndex(i), i)
            self.table.setColumnWidth(i, c.width)
            self.table.setColumnHidden(i, c.hidden)

    def _columns_menu(self) -> QMenu:
        menu = QMenu(self)
        for i, c in enumerate(COLUMNS):
            act = QAction(c.title, menu, checkable=True)
            act.setChecked(not self.table.isColumnHidden(i))
            act.toggled.connect(lambda on, i=i: self.table.setColumnHidden(i, not on))
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction("Default columns", self.apply_default_columns)
        return menu

    def header_state(self) -> QByteArray:
        return self.table.horizontalHeader().saveState()

    def restore_header_state(self, state: QByteArray | bytes | None) -> bool:
        if not state:
            return False
        return bool(self.table.horizontalHeader().restoreState(QByteArray(state)))

    # -- filters ------------------------------------------------------------------------------
    def fill_filter_choices(self) -> None:
        for key, title in FILTER_KEYS:
            box = self.combos[key]
            current = box.currentData()
            box.blockSignals(True)
            box.clear()
            box.addItem(title, None)
            for code, label in self.model.category_labels(key):
                box.addItem(label, code)
            idx = box.findData(current) if current is not None else 0
            box.setCurrentIndex(max(idx, 0))
            box.blockSignals(False)

    def _toggle_dates(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)
        self.apply_filters()

    def current_filters(self) -> Filters:
        codes = {k: frozenset([b.currentData()]) for k, b in self.combos.items()
                 if b.currentData() is not None}  # fmt: skip
        f_from = f_to = None
        if self.date_on.isChecked():
            f_from = self.date_from.date().toPython()
            f_to = self.date_to.date().toPython()
        return Filters(self.quick.text().strip(), codes or None, f_from, f_to)  # type: ignore[arg-type]

    def apply_filters(self) -> None:
        self.model.set_filters(self.current_filters())

    def update_count(self) -> None:
        total, shown = self.model.total_rows, self.model.rowCount()
        text = f"{total:,} trades"
        if shown != total:
            text += f" · showing {shown:,}"
        self.count_label.setText(text)

    # -- actions ------------------------------------------------------------------------------
    def _open_index(self, index: Any) -> None:
        if index.isValid():
            self.sig_open_trade.emit(self.model.trade_uuid_at(index.row()))

    def _open_current(self) -> None:
        self._open_index(self.table.currentIndex())

    def visible_columns(self) -> list[int]:
        header = self.table.horizontalHeader()
        logical = [header.logicalIndex(v) for v in range(header.count())]
        return [c for c in logical if not header.isSectionHidden(c)]

    def copy_selection(self) -> str:
        """Copy selected rows (visible columns, with a header) as tab-separated text."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedIndexes()})
        cols = self.visible_columns()
        lines = ["\t".join(COLUMNS[c].title for c in cols)]
        lines += ["\t".join(r) for r in self.model.rows_as_text(rows, cols)]
        text = "\n".join(lines)
        QGuiApplication.clipboard().setText(text)
        self.sig_message.emit(f"Copied {len(rows):,} row(s)")
        return text

    def export_dialog(self, suffix: str) -> None:
        kind = "CSV files (*.csv)" if suffix == ".csv" else "Excel workbooks (*.xlsx)"
        name = f"blotter-{dt.date.today().isoformat()}{suffix}"
        path, _ = QFileDialog.getSaveFileName(self, "Export blotter", name, kind)
        if path:
            if not path.lower().endswith(suffix):
                path += suffix
            self.export(Path(path))

    def export(self, path: Path) -> Any:
        """Export the visible rows and columns in the background (job)."""
        cols = self.visible_columns()
        header = [COLUMNS[c].title for c in cols]
        n = self.model.rowCount()

        def work(ctx: JobContext) -> str:
            rows = []
            for start in range(0, n, 50_000):
                ctx.check()
                rows += self.model.rows_as_text(range(start, min(n, start + 50_000)), cols)
                ctx.progress(0.8 * min(n, start + 50_000) / max(n, 1), "formatting")
            write_table(path, header, rows)
            return f"Exported {n:,} rows to {path}"

        return self.runner.submit(f"Export {path.name}", work, on_result=self.sig_message.emit,
                                  on_error=self.sig_message.emit)  # fmt: skip

    def row_trade(self, row: int) -> tuple[str, int, TradeStatus, str] | None:
        """(UUID hex, version, status, book name) of a visible row, or ``None``."""
        if not 0 <= row < self.model.rowCount():
            return None
        status = TradeStatus.from_text(self.model.text(row, COLUMN_INDEX["status"]))
        version = int(self.model.text(row, COLUMN_INDEX["version"]).replace(",", ""))
        book = self.model.text(row, COLUMN_INDEX["book_id"])
        return self.model.trade_uuid_at(row), version, status, book  # type: ignore[return-value]

    def row_menu(self, row: int) -> QMenu:
        """The context menu of ``row`` (-1: no row): New trade, Open / amend, Cancel trade and
        a Lifecycle submenu with the next step. What the signed-in user may not do is
        disabled, with a tooltip saying why."""
        p = self.principal
        menu = QMenu(self)
        menu.setToolTipsVisible(True)
        act = menu.addAction("New trade…", self.sig_new_trade.emit)
        reason = why_not(p, Action.CAPTURE)
        act.setEnabled(reason is None)
        act.setToolTip(reason or "")
        info = self.row_trade(row)
        if info is None:
            return menu
        uid, version, status, book = info
        menu.addAction("Open / amend…", lambda: self.sig_open_trade.emit(uid))
        act = menu.addAction("Cancel trade…", lambda: self.sig_cancel_trade.emit(uid))
        reason = why_not(p, Action.CANCEL, book)
        if reason is None and status is TradeStatus.CANCELLED:
            reason = "The trade is already cancelled."
        act.setEnabled(reason is None)
        act.setToolTip(reason or "")
        life = menu.addMenu("Lifecycle")
        life.setObjectName("blotter_lifecycle_menu")
        life.setToolTipsVisible(True)
        nxt = next_status(status)
        if nxt is None:
            act = life.addAction(f"{status.label}: no further step")
            act.setEnabled(False)
            act.setToolTip(f"A {status.label.lower()} trade has no next lifecycle step.")
            return menu
        act = life.addAction(f"→ {nxt.label}",
                             lambda: self.sig_advance.emit(uid, version, nxt))  # fmt: skip
        reason = why_not(p, Action.LIFECYCLE, book, to_status=nxt)
        act.setEnabled(reason is None)
        act.setToolTip(reason or f"Move the trade from {status.label} to {nxt.label}")
        return menu

    def select_trade(self, trade_uuid: str) -> bool:
        row = self.model.row_of_trade(trade_uuid)
        if row < 0:
            return False
        idx = self.model.index(row, 0)
        self.table.selectionModel().setCurrentIndex(
            idx,
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.table.scrollTo(idx)
        return True

    def column_index(self, key: str) -> int:
        return COLUMN_INDEX[key]
