"""The Audit dock: filter, page through and export the audit trail; verify its hash chain.

A filter bar (entity, user, action, from/to UTC days, text), a paged table of records (newest
first, loaded on the job runner), a detail pane with before and after side by side (changed
fields highlighted), "Verify chain" and "Export…". The service enforces the permissions; the
panel disables what the signed-in user may not do, with a tooltip saying why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.models.audit import AuditVerification, format_ts
from app.services.audit import AuditEntry, AuditFilter, AuditPage, AuditService, parse_day
from app.services.auth import Action, why_not
from app.views.jobs import JobContext, JobRunner

PAGE_SIZE = 500
_RED = "color: #b3261e;"
_GREEN = "color: #1b5e20;"
_CHANGED = QColor(255, 236, 179)
_Index = QModelIndex | QPersistentModelIndex


class AuditTableModel(QAbstractTableModel):
    """One page of audit records."""

    COLUMNS = ("Seq", "Time (UTC)", "User", "Workstation", "Entity", "Id", "Action")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.entries: list[AuditEntry] = []

    def set_entries(self, entries: list[AuditEntry]) -> None:
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role != Qt.ItemDataRole.DisplayRole:
            if (
                role == Qt.ItemDataRole.TextAlignmentRole
                and index.isValid()
                and index.column() == 0
            ):
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return None
        e = self.entries[index.row()]
        col = index.column()
        if col == 0:
            return str(e.seq)
        if col == 1:
            return format_ts(e.ts)[:-1].replace("T", " ")
        return (e.user, e.workstation, e.entity, e.entity_id, e.action)[col - 2]

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class DiffModel(QAbstractTableModel):
    """Field | Before | After of one record; changed fields are highlighted."""

    COLUMNS = ("Field", "Before", "After")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, str, str, bool]] = []

    def set_entry(self, entry: AuditEntry | None) -> None:
        self.beginResetModel()
        self.rows = []
        if entry is not None:
            b, a = entry.before, entry.after
            if isinstance(b, dict) or isinstance(a, dict):
                bd = b if isinstance(b, dict) else {}
                ad = a if isinstance(a, dict) else {}
                for k in sorted(set(bd) | set(ad)):
                    changed = bd.get(k) != ad.get(k) or (k in bd) != (k in ad)
                    self.rows.append((k, _show(bd.get(k)), _show(ad.get(k)), changed))
            elif b is not None or a is not None:
                self.rows.append(("value", _show(b), _show(a), b != a))
            for k, v in sorted(entry.extra.items()):
                self.rows.append((f"({k})", "", _show(v), False))
        self.endResetModel()

    def changed(self) -> list[str]:
        """Names of the highlighted fields."""
        return [r[0] for r in self.rows if r[3]]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else 3

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return row[index.column()]
        if role == Qt.ItemDataRole.BackgroundRole and row[3]:
            return QBrush(_CHANGED)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.COLUMNS[section]
        return None


class AuditPanel(QWidget):
    """The Audit dock's widget (see the module docstring)."""

    sig_loaded = Signal(object)
    """(AuditPage) a page was loaded and shown."""
    sig_verified = Signal(object)
    """(AuditVerification) a chain verification finished."""
    sig_message = Signal(str)
    """(str) a message for the status bar."""

    def __init__(self, runner: JobRunner, service: AuditService, parent: Any = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.service = service
        self.offset = 0
        self.total = 0
        self.loaded_once = False

        self.entity = QComboBox(editable=True)
        self.entity.addItems(["", "trade", "limit", "user", "counterparty", "book", "settings"])
        self.user = QLineEdit(placeholderText="user")
        self.action = QComboBox(editable=True)
        self.action.addItems(["", "capture", "amend", "cancel", "lifecycle", "status", "create",
                              "update", "deactivate", "save", "delete"])  # fmt: skip
        self.since = QLineEdit(placeholderText="from YYYY-MM-DD")
        self.until = QLineEdit(placeholderText="to YYYY-MM-DD")
        self.text = QLineEdit(placeholderText="text in the record")
        self.search_button = QPushButton("Search")
        for w, tip in ((self.entity, "Entity (blank: all)"), (self.action, "Action (blank: all)"),
                       (self.since, "From this UTC day (inclusive)"),
                       (self.until, "Up to this UTC day (inclusive)")):  # fmt: skip
            w.setToolTip(tip)
        bar = QHBoxLayout()
        for label, w in (("Entity", self.entity), ("User", self.user), ("Action", self.action)):
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        for wid in (self.since, self.until, self.text, self.search_button):
            bar.addWidget(wid)

        self.model = AuditTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.diff = DiffModel(self)
        self.diff_view = QTableView()
        self.diff_view.setModel(self.diff)
        self.diff_view.verticalHeader().setVisible(False)
        self.diff_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.detail_title = QLabel("Select a record to see its before and after.")
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.detail_title)
        dl.addWidget(self.diff_view)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        self.prev_button = QPushButton("◀ Newer")
        self.next_button = QPushButton("Older ▶")
        self.page_label = QLabel("")
        self.verify_button = QPushButton("Verify chain")
        self.verify_button.setToolTip("Check the hash chain of this workstation's audit trail")
        self.export_button = QPushButton("Export…")
        self.export_button.setToolTip("Export the filtered records to CSV or Excel")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.verify_label = QLabel("")
        self.verify_label.setWordWrap(True)
        foot = QHBoxLayout()
        for fw in (self.prev_button, self.page_label, self.next_button):
            foot.addWidget(fw)
        foot.addWidget(self.verify_label, 1)
        foot.addWidget(self.verify_button)
        foot.addWidget(self.export_button)

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)
        lay.addLayout(foot)

        self.search_button.clicked.connect(self.search)
        for le in (self.user, self.since, self.until, self.text):
            le.returnPressed.connect(self.search)
        self.prev_button.clicked.connect(lambda: self.load(max(0, self.offset - PAGE_SIZE)))
        self.next_button.clicked.connect(lambda: self.load(self.offset + PAGE_SIZE))
        self.verify_button.clicked.connect(self.verify)
        self.export_button.clicked.connect(self.export)
        self.table.selectionModel().currentRowChanged.connect(self._on_current)
        self.apply_permissions()
        self._update_pager()

    # -- permissions -------------------------------------------------------------------------
    def apply_permissions(self) -> None:
        """Enable what the current user may do; a tooltip says why the rest is disabled."""
        p = self.service.principal
        view = why_not(p, Action.VIEW_AUDIT)
        export = why_not(p, Action.EXPORT_AUDIT)
        for w in (self.search_button, self.verify_button, self.table, self.entity, self.user,
                  self.action, self.since, self.until, self.text):  # fmt: skip
            w.setEnabled(view is None)
            if view is not None:
                w.setToolTip(view)
        self.export_button.setEnabled(view is None and export is None)
        self.export_button.setToolTip(export or view or "Export the filtered records to CSV "
                                      "or Excel")  # fmt: skip
        if view is not None:
            self.status.setText(view)

    # -- loading -----------------------------------------------------------------------------
    def current_filter(self) -> AuditFilter:
        """The filter the bar describes; ``ValueError`` (a sentence) for a bad date."""
        return AuditFilter(
            entity=self.entity.currentText().strip() or None,
            user=self.user.text().strip() or None,
            action=self.action.currentText().strip() or None,
            since=parse_day(self.since.text(), "The 'from' date"),
            until=parse_day(self.until.text(), "The 'to' date"),
            text=self.text.text().strip() or None,
        )

    def search(self) -> None:
        """Load the first page for the filter bar."""
        self.load(0)

    def refresh(self) -> None:
        """Reload the current page."""
        self.load(self.offset)

    def load(self, offset: int) -> None:
        """Load the page at ``offset`` in the background."""
        if why_not(self.service.principal, Action.VIEW_AUDIT) is not None:
            self.apply_permissions()
            return
        try:
            flt = self.current_filter()
        except ValueError as exc:
            self._error(str(exc))
            return
        self.loaded_once = True
        self.status.setStyleSheet("")
        self.status.setText("Loading…")
        svc = self.service

        def work(_jc: JobContext) -> AuditPage:
            return svc.query(flt, offset, PAGE_SIZE)

        self.runner.submit("Loading audit trail", work, on_result=self._loaded,
                           on_error=self._error, key="audit-load")  # fmt: skip

    def _loaded(self, page: AuditPage) -> None:
        self.offset, self.total = page.offset, page.total
        self.model.set_entries(page.entries)
        self.diff.set_entry(None)
        self.detail_title.setText("Select a record to see its before and after.")
        self.status.setText("" if page.total else "No audit records match the filter.")
        self._update_pager()
        self.sig_loaded.emit(page)

    def _update_pager(self) -> None:
        n = len(self.model.entries)
        self.page_label.setText(
            f"{self.offset + 1:,}–{self.offset + n:,} of {self.total:,}" if n else "0 records"
        )
        self.prev_button.setEnabled(self.offset > 0)
        self.next_button.setEnabled(self.offset + n < self.total)

    def _error(self, message: str) -> None:
        self.status.setStyleSheet(_RED)
        self.status.setText(message)

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        e = self.model.entries[current.row()]
        self.show_entry(e)

    def show_entry(self, e: AuditEntry) -> None:
        """Show one record's before/after in the detail pane."""
        self.diff.set_entry(e)
        changed = self.diff.changed()
        self.detail_title.setText(
            f"#{e.seq} {e.entity} {e.entity_id[:12]} {e.action} by {e.user} on {e.workstation}"
            + (f" — changed: {', '.join(changed)}" if changed and e.before is not None else "")
        )

    # -- verify / export -----------------------------------------------------------------------
    def verify(self) -> None:
        """Verify the local hash chain in the background; the outcome is shown in the panel."""
        self.verify_label.setStyleSheet("")
        self.verify_label.setText("Verifying the audit chain…")
        self.verify_button.setEnabled(False)
        svc = self.service

        def work(_jc: JobContext) -> AuditVerification:
            return svc.verify()

        def done(res: AuditVerification) -> None:
            self.verify_button.setEnabled(True)
            self.verify_label.setStyleSheet(_GREEN if res.ok else _RED)
            self.verify_label.setText(f"Chain {res.summary()}")
            self.sig_verified.emit(res)

        def failed(msg: str) -> None:
            self.verify_button.setEnabled(True)
            self.verify_label.setStyleSheet(_RED)
            self.verify_label.setText(f"Could not verify: {msg}")

        self.runner.submit("Verifying audit chain", work, on_result=done, on_error=failed,
                           key="audit-verify")  # fmt: skip

    def export(self) -> None:
        """Ask for a file and export the filtered records to it."""
        path, _ = QFileDialog.getSaveFileName(
            self, "Export audit trail", "audit.xlsx", "Excel (*.xlsx);;CSV (*.csv)"
        )
        if path:
            self.export_to(path)

    def export_to(self, path: str | Path) -> None:
        """Export the records matching the filter bar to ``path`` in the background."""
        try:
            flt = self.current_filter()
        except ValueError as exc:
            self._error(str(exc))
            return
        svc = self.service

        def work(jc: JobContext) -> str:
            n = svc.export(path, flt, progress=lambda k: jc.progress(0.0, f"{k:,} records"))
            return f"Exported {n:,} audit records to {path}"

        def done(msg: str) -> None:
            self.status.setStyleSheet(_GREEN)
            self.status.setText(msg)
            self.sig_message.emit(msg)

        self.runner.submit("Exporting audit trail", work, on_result=done, on_error=self._error,
                           key="audit-export")  # fmt: skip

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self.loaded_once:
            self.search()  # first shown: load, never at start-up
