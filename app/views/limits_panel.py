"""The Limits tab of the Risk panel: live utilisation of VaR, ES, position and stress limits.

The table lists every active limit (book, kind, scope, limit, usage, utilisation bar, status);
below it, the breach history (newest first). Limits are re-evaluated on the job runner after
every Risk calculation (``RiskPanel.sig_calculated``, latest request wins) and on *Re-evaluate*;
a new warning or breach calls the ``alert`` callback (and beeps when *Sound* is on). Add / Edit
open :class:`LimitDialog`, which validates inline and saves on the job runner; Deactivate asks
first. See ``docs/limits.md``; the rules are :mod:`app.services.limits`.
"""

from __future__ import annotations

import getpass
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.entities import BreachKind, LimitKind
from app.models.limits import (
    BreachRecord,
    LimitDraft,
    LimitRecord,
    LimitRepository,
    LimitValidationError,
    StaleLimitError,
    validate_draft,
)
from app.models.store import Store
from app.services.approvals import ApprovalRequired
from app.services.auth import Action, PermissionDenied, Principal, why_not
from app.services.limits import LimitEvaluation, LimitService, LimitUsage, StressLosses
from app.services.risk import CONFIDENCES, MAX_HORIZON
from app.views.approvals_panel import ApprovalRequester
from app.views.jobs import JobContext, JobRunner

__all__ = ["LimitDialog", "LimitsPanel", "LimitsTableModel", "install_limits_tab"]

_HEADERS = ("Book", "Kind", "Scope", "Limit", "Usage", "Utilisation", "Status")
UTIL_COLUMN = 5
_STATUS_COLOUR = {
    "ok": QColor("#2e7d32"),
    "warning": QColor("#c77700"),
    "breach": QColor("#b3261e"),
    "n/a": QColor("#777777"),
}
_KIND_COLOUR = {
    BreachKind.BREACH: QColor("#b3261e"),
    BreachKind.WARNING: QColor("#8a5a00"),
    BreachKind.CLEARED: QColor("#2e7d32"),
}
_CURRENCIES = ("USD", "EUR", "GBP")
_HISTORY_ROWS = 200


def _num(x: float | Decimal) -> str:
    v = float(x)
    if not math.isfinite(v):
        return "–"
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.3f}"


# ---------------------------------------------------------------------------- table


class LimitsTableModel(QAbstractTableModel):
    """Rows: :class:`~app.services.limits.LimitUsage` of the active limits."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[LimitUsage] = []

    def set_rows(self, rows: Sequence[LimitUsage]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _HEADERS[section]
        return None

    def text(self, row: int, col: int) -> str:
        u = self.rows[row]
        lim = u.limit
        if col == 0:
            return lim.book_name
        if col == 1:
            return lim.kind.label
        if col == 2:
            return lim.scope
        if col == 3:
            return f"{_num(lim.limit_value)} {u.unit}".strip()
        if col == 4:
            return f"{_num(u.usage)} {u.unit}".strip() if math.isfinite(u.usage) else "–"
        if col == 5:
            return f"{u.utilisation:,.1%}" if math.isfinite(u.utilisation) else "–"
        return {"ok": "OK", "warning": "Warning", "breach": "BREACH"}.get(u.status, "n/a")

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.rows):
            return None
        u = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(index.row(), col)
        if role == Qt.ItemDataRole.UserRole:
            return (u.utilisation, u.status, float(u.limit.warning_pct))
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (3, 4, 5):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and col == 6:
            return QBrush(_STATUS_COLOUR[u.status])
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{u.limit.title} (#{u.limit.id}, v{u.limit.version}): {u.detail}"
        return None


class UtilisationDelegate(QStyledItemDelegate):
    """Draws utilisation as a bar: green below the warning level, amber, red above 100 %."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(Qt.ItemDataRole.UserRole)
        if not value:
            super().paint(painter, option, index)
            return
        util, status, _warn = value
        painter.save()
        if option.state & QStyle.StateFlag.State_Selected:  # type: ignore[attr-defined]
            painter.fillRect(option.rect, option.palette.highlight())  # type: ignore[attr-defined]
        r: QRect = option.rect.adjusted(3, 4, -3, -4)  # type: ignore[attr-defined]
        painter.fillRect(r, QColor("#e8e8e8"))
        if math.isfinite(util):
            w = int(r.width() * max(0.0, min(util, 1.0)))
            colour = QColor(_STATUS_COLOUR.get(status, _STATUS_COLOUR["n/a"]))
            colour.setAlpha(170)
            painter.fillRect(QRect(r.left(), r.top(), w, r.height()), colour)
        painter.setPen(QColor("#111111"))
        painter.drawText(r, int(Qt.AlignmentFlag.AlignCenter), str(index.data()))
        painter.restore()


# ---------------------------------------------------------------------------- dialog


class LimitDialog(QDialog):
    """Add or edit a limit. Field problems are shown under the field; nothing is written until
    every check passes (the save runs on the job runner; database checks -- duplicates, a
    concurrent edit -- come back as messages in the dialog)."""

    sig_saved = Signal(object)
    """(LimitRecord) the limit was stored."""

    #: Set by the panel when four-eyes requests can be made: offers "Request approval…" and
    #: submits ``request_approval(draft, reason)``.
    approvals: ApprovalRequester | None = None
    request_approval: Callable[[LimitDraft, str], Any] | None = None
    _draft: LimitDraft | None = None

    def __init__(
        self,
        runner: JobRunner,
        save: Callable[[LimitDraft], LimitRecord],
        books: Mapping[int, str],
        products: Mapping[str, str],
        currencies: Sequence[str] = _CURRENCIES,
        limit: LimitRecord | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("limit_dialog")
        self.setWindowTitle("Edit limit" if limit is not None else "Add limit")
        self.runner = runner
        self._save = save
        self.products = dict(products)
        self.saved: LimitRecord | None = None

        self.book = QComboBox()
        self.book.setObjectName("limit_book")
        for bid, name in sorted(books.items(), key=lambda kv: kv[1].casefold()):
            self.book.addItem(name, bid)
        self.kind = QComboBox()
        self.kind.setObjectName("limit_kind")
        for k in LimitKind:
            self.kind.addItem(k.label, k)
        self.product = QComboBox()
        self.product.setObjectName("limit_product")
        for code in self.products:
            self.product.addItem(code, code)
        self.currency = QComboBox()
        self.currency.setObjectName("limit_currency")
        self.currency.setEditable(True)
        self.currency.addItems(sorted({*currencies, *_CURRENCIES}))
        self.confidence = QComboBox()
        self.confidence.setObjectName("limit_confidence")
        for c in CONFIDENCES:
            self.confidence.addItem(f"{c:.1%}", c)
        self.confidence.setCurrentIndex(len(CONFIDENCES) - 1)
        self.horizon = QSpinBox()
        self.horizon.setObjectName("limit_horizon")
        self.horizon.setRange(1, MAX_HORIZON)
        self.horizon.setSuffix(" d")
        self.value = QLineEdit()
        self.value.setObjectName("limit_value")
        self.value.setPlaceholderText("e.g. 1,500,000")
        self.value_unit = QLabel("")
        self.warning = QDoubleSpinBox()
        self.warning.setObjectName("limit_warning")
        self.warning.setRange(1.0, 100.0)
        self.warning.setDecimals(1)
        self.warning.setSuffix(" %")
        self.warning.setValue(80.0)
        self.comment = QLineEdit()
        self.comment.setObjectName("limit_comment")
        self.comment.setMaxLength(200)

        self.errors: dict[str, QLabel] = {}
        form = QFormLayout()
        value_row = QHBoxLayout()
        value_row.addWidget(self.value, 1)
        value_row.addWidget(self.value_unit)
        for field, label, w in (
            ("book_id", "Book", self.book),
            ("kind", "Kind", self.kind),
            ("product", "Product", self.product),
            ("currency", "Currency", self.currency),
            ("confidence", "Confidence", self.confidence),
            ("horizon_days", "Horizon", self.horizon),
            ("limit_value", "Limit", value_row),
            ("warning_pct", "Warning at", self.warning),
            ("comment", "Comment", self.comment),
        ):
            form.addRow(label, w)
            err = QLabel("")
            err.setObjectName(f"limit_error_{field}")
            err.setStyleSheet("color: #b3261e;")
            err.setWordWrap(True)
            err.hide()
            form.addRow("", err)
            self.errors[field] = err
        self.message = QLabel("")
        self.message.setObjectName("limit_dialog_message")
        self.message.setStyleSheet("color: #b3261e;")
        self.message.setWordWrap(True)
        self.message.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)

        self.kind.currentIndexChanged.connect(lambda _i: self._sync_fields())
        self.product.currentIndexChanged.connect(lambda _i: self._sync_fields())
        self.currency.currentTextChanged.connect(lambda _t: self._sync_fields())
        if limit is not None:
            self._load(limit)
        self._sync_fields()
        self.setMinimumWidth(420)

    def _load(self, lim: LimitRecord) -> None:
        self.book.setCurrentIndex(max(self.book.findData(lim.book_id), 0))
        self.kind.setCurrentIndex(max(self.kind.findData(lim.kind), 0))
        if lim.product:
            self.product.setCurrentIndex(max(self.product.findData(lim.product), 0))
        if lim.currency:
            self.currency.setCurrentText(lim.currency)
        if lim.confidence is not None:
            i = self.confidence.findData(lim.confidence)
            if i < 0:
                self.confidence.addItem(f"{lim.confidence:.1%}", lim.confidence)
                i = self.confidence.count() - 1
            self.confidence.setCurrentIndex(i)
        if lim.horizon_days is not None:
            self.horizon.setValue(lim.horizon_days)
        self.value.setText(f"{lim.limit_value.normalize():f}")
        self.warning.setValue(float(lim.warning_pct))
        self.comment.setText(lim.comment)

    def _kind(self) -> LimitKind:
        k = self.kind.currentData()
        return k if isinstance(k, LimitKind) else LimitKind.VAR

    def _sync_fields(self) -> None:
        kind = self._kind()
        is_pos = kind is LimitKind.POSITION
        is_risk = kind in (LimitKind.VAR, LimitKind.ES)
        self.product.setEnabled(is_pos)
        self.currency.setEnabled(not is_pos)
        self.confidence.setEnabled(is_risk)
        self.horizon.setEnabled(is_risk)
        unit = self.products.get(self.product.currentText(), "") if is_pos else ""
        self.value_unit.setText(unit if is_pos else self.currency.currentText().upper())

    def draft(self) -> LimitDraft:
        """The limit as entered (fields that do not apply to the kind are left out)."""
        kind = self._kind()
        is_pos = kind is LimitKind.POSITION
        is_risk = kind in (LimitKind.VAR, LimitKind.ES)
        return LimitDraft(
            book_id=int(self.book.currentData() or 0),
            kind=kind,
            limit_value=self.value.text(),
            product=self.product.currentText() if is_pos else None,
            currency=None if is_pos else self.currency.currentText(),
            confidence=float(self.confidence.currentData()) if is_risk else None,
            horizon_days=int(self.horizon.value()) if is_risk else None,
            warning_pct=Decimal(str(round(self.warning.value(), 1))),
            comment=self.comment.text(),
        )

    def show_errors(self, errors: Mapping[str, str], message: str = "") -> None:
        """Show ``field -> message`` under the fields (unknown fields go to the bottom line)."""
        rest = []
        for field, label in self.errors.items():
            text = errors.get(field, "")
            label.setText(text[:1].upper() + text[1:])
            label.setVisible(bool(text))
        for field, text in errors.items():
            if field not in self.errors:
                rest.append(text)
        if message:
            rest.append(message)
        self.message.setText(" ".join(rest))
        self.message.setVisible(bool(rest))
        # Word-wrapped labels that appear need the dialog to grow, or their last line is cut.
        lay = self.layout()
        if lay is not None:
            lay.activate()
        self.resize(self.width(), max(self.height(), self.sizeHint().height()))

    def submit(self) -> None:
        """Validate; when clean, save on the job runner and close on success."""
        draft = self.draft()
        _, errors = validate_draft(draft)
        if not self.book.count():
            errors["book_id"] = "there is no book yet"
        self.show_errors(errors)
        if errors:
            return
        self.buttons.setEnabled(False)
        self.message.setStyleSheet("color: #555;")
        self.message.setText("Saving…")
        self.message.show()
        save = self._save
        self._draft = draft

        def work(_ctx: JobContext) -> LimitRecord | Exception:
            try:
                return save(draft)
            except (LimitValidationError, StaleLimitError, KeyError, PermissionDenied) as exc:
                return exc  # shown in the dialog, not as a job failure

        self.runner.submit("Save limit", work, on_result=self._on_saved,
                           on_error=self._on_save_error, key="limits-save")  # fmt: skip

    def _on_saved(self, out: LimitRecord | Exception) -> None:
        self.buttons.setEnabled(True)
        self.message.setStyleSheet("color: #b3261e;")
        if isinstance(out, LimitValidationError):
            self.show_errors(out.errors)
            return
        if isinstance(out, ApprovalRequired):
            self.show_errors({}, f"{out} Nothing was saved.")
            request, draft = self.request_approval, self._draft
            if self.approvals is not None and request is not None and draft is not None:
                self.approval_dialog = self.approvals.offer(
                    self, str(out), lambda reason: request(draft, reason),
                    on_submitted=lambda rec: self.show_errors(
                        {}, f"Approval request {rec.request_uuid} submitted: the limit changes "
                            "once a second user approves it."))  # fmt: skip
            return
        if isinstance(out, Exception):
            self.show_errors({}, str(out).strip("'\""))
            return
        self.saved = out
        self.message.setText("")
        self.sig_saved.emit(out)
        self.accept()

    def _on_save_error(self, text: str) -> None:
        self.buttons.setEnabled(True)
        self.message.setStyleSheet("color: #b3261e;")
        self.show_errors({}, text)


# ---------------------------------------------------------------------------- panel


class LimitsPanel(QWidget):
    """The Limits tab; see the module docstring.

    ``risk_panel`` (optional) supplies ``report`` and ``sig_calculated``; ``stress`` returns
    the latest worst stress losses per book and currency (or ``None``), read on the GUI thread
    when an evaluation is submitted.
    """

    sig_evaluated = Signal(object)
    """(LimitEvaluation) a refresh finished and is shown."""
    sig_alert = Signal(str)
    """(message of a new warning or breach)"""

    def __init__(
        self,
        runner: JobRunner,
        service: LimitService,
        alert: Callable[[str], None] | None = None,
        *,
        risk_panel: Any = None,
        stress: Callable[[], StressLosses | None] | None = None,
        user: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("limits")
        self.runner = runner
        self.service = service
        self.alert = alert
        self.risk_panel = risk_panel
        self.stress = stress
        self.user = user or _user()
        #: Set by the main window: four-eyes requests for limit changes.
        self.approvals: ApprovalRequester | None = None
        self.report: Any = getattr(risk_panel, "report", None)
        self.evaluation: LimitEvaluation | None = None
        self.books: dict[int, str] = {}
        self.products: dict[str, str] = {}
        self.evaluations = 0
        self.dialog: LimitDialog | None = None

        self.add_button = QPushButton("Add…")
        self.add_button.setObjectName("limits_add")
        self.add_button.clicked.connect(self.add_limit)
        self.edit_button = QPushButton("Edit…")
        self.edit_button.setObjectName("limits_edit")
        self.edit_button.clicked.connect(self.edit_limit)
        self.deactivate_button = QPushButton("Deactivate")
        self.deactivate_button.setObjectName("limits_deactivate")
        self.deactivate_button.clicked.connect(lambda: self.deactivate_limit())
        self.refresh_button = QPushButton("Re-evaluate")
        self.refresh_button.setObjectName("limits_refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.sound = QCheckBox("Sound")
        self.sound.setObjectName("limits_sound")
        self.sound.setToolTip("Beep when a limit enters warning or breach")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for b in (self.add_button, self.edit_button, self.deactivate_button):
            bar.addWidget(b)
        bar.addStretch(1)
        bar.addWidget(self.sound)
        bar.addWidget(self.refresh_button)

        self.status = QLabel("Limits are evaluated after every risk calculation.")
        self.status.setObjectName("limits_status")
        self.status.setWordWrap(True)

        self.model = LimitsTableModel(self)
        self.table = QTableView()
        self.table.setObjectName("limits_table")
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(UTIL_COLUMN, UtilisationDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setAlternatingRowColors(True)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(UTIL_COLUMN, QHeaderView.ResizeMode.Stretch)
        hh.setMinimumSectionSize(70)
        self.table.doubleClicked.connect(lambda _i: self.edit_limit())

        self.history = QTreeWidget()
        self.history.setObjectName("limits_history")
        self.history.setRootIsDecorated(False)
        self.history.setUniformRowHeights(True)
        self.history.setHeaderLabels(
            ["Detected", "Event", "Book", "Limit", "Usage", "Limit value", "Util.", "Detail"]
        )
        hist_box = QWidget()
        hl = QVBoxLayout(hist_box)
        hl.setContentsMargins(0, 0, 0, 0)
        hl.addWidget(QLabel("<b>Breach history</b> (transitions, newest first)"))
        hl.addWidget(self.history)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(hist_box)
        split.setSizes([260, 200])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)
        self._update_buttons()
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())

        if risk_panel is not None and hasattr(risk_panel, "sig_calculated"):
            risk_panel.sig_calculated.connect(self.on_risk_calculated)

    # ------------------------------------------------------------------ evaluation

    def on_risk_calculated(self, _result: Any = None) -> None:
        """A new risk result: re-evaluate the limits on the risk panel's positions."""
        self.report = getattr(self.risk_panel, "report", self.report)
        self.refresh()

    def set_report(self, report: Any) -> None:
        """Use ``report`` (a PositionReport) and re-evaluate."""
        self.report = report
        self.refresh()

    def refresh(self) -> None:
        """Re-evaluate every active limit on the job runner (latest request wins)."""
        if self.risk_panel is not None and getattr(self.risk_panel, "report", None) is not None:
            self.report = self.risk_panel.report
        report = self.report
        stress = self.stress() if self.stress is not None else None
        service = self.service

        def work(ctx: JobContext) -> tuple[Any, ...]:
            ev = service.refresh(report, stress, cancelled=ctx.cancelled)
            ctx.check()
            repo = service.repo
            return ev, repo.breaches(limit=_HISTORY_ROWS), repo.books(), repo.products()

        self.evaluations += 1
        self.runner.submit("Limits: evaluate", work, on_result=self._on_evaluated,
                           on_error=self._on_error, key="limits")  # fmt: skip

    def _on_error(self, text: str) -> None:
        self.status.setStyleSheet("color: #b3261e;")
        self.status.setText(f"Limit evaluation failed: {text}")

    def _on_evaluated(self, out: tuple[Any, ...]) -> None:
        ev, history, books, products = out
        self.evaluation = ev
        self.books, self.products = books, products
        selected = self.selected_limit()
        self.model.set_rows(ev.usages)
        if selected is not None:
            for r, u in enumerate(ev.usages):
                if u.limit.id == selected.id:
                    self.table.selectRow(r)
        self._show_history(history)
        self._show_status(ev)
        self._update_buttons()
        alerts = ev.alerts()
        for msg in alerts:
            self.sig_alert.emit(msg)
            if self.alert is not None:
                self.alert(msg)
        if alerts and self.sound.isChecked():
            QApplication.beep()
        self.sig_evaluated.emit(ev)

    def _show_status(self, ev: LimitEvaluation) -> None:
        n = {s: sum(u.status == s for u in ev.usages) for s in ("breach", "warning", "n/a")}
        when = ev.evaluated_at.astimezone().strftime("%H:%M:%S")
        head = f"Evaluated {when}"
        if ev.as_of is not None:
            head += f" · positions as of {ev.as_of:%d %b %Y}"
        parts = [f"{len(ev.usages)} active limit(s)"]
        if n["breach"]:
            parts.append(f"{n['breach']} in breach")
        if n["warning"]:
            parts.append(f"{n['warning']} in warning")
        if n["n/a"]:
            parts.append(f"{n['n/a']} not measurable")
        if self.report is None:
            parts.append("no positions yet: revalue positions and calculate risk")
        self.status.setStyleSheet("color: #b3261e;" if n["breach"] else "")
        self.status.setText(f"{head} · {', '.join(parts)}")

    def _show_history(self, rows: Sequence[BreachRecord]) -> None:
        self.history.clear()
        for b in rows:
            unit = b.scope.split(" ")[0] if b.limit_kind is not LimitKind.POSITION else ""
            item = QTreeWidgetItem(
                [
                    b.detected_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                    b.kind.label,
                    b.book_name,
                    f"{b.limit_kind.label} {b.scope}",
                    _num(b.usage),
                    f"{_num(b.limit_value)} {unit}".strip(),
                    f"{b.utilisation:,.1%}",
                    b.detail,
                ]
            )
            item.setForeground(1, QBrush(_KIND_COLOUR[b.kind]))
            item.setToolTip(7, b.detail)
            for c in (4, 5, 6):
                item.setTextAlignment(
                    c, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                )
            self.history.addTopLevelItem(item)
        for c in range(7):
            self.history.resizeColumnToContents(c)

    # ------------------------------------------------------------------ editing

    def selected_limit(self) -> LimitRecord | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.model.rows):
            return None
        return self.model.rows[rows[0].row()].limit

    def _update_buttons(self) -> None:
        lim = self.selected_limit()
        p = self.service.principal
        why = why_not(p, Action.SET_LIMIT, lim.book_name if lim is not None else None)
        for b in (self.edit_button, self.deactivate_button):
            b.setEnabled(lim is not None and why is None)
            b.setToolTip(why or "")
        why_add = why_not(p, Action.SET_LIMIT)
        self.add_button.setEnabled(bool(self.books) and why_add is None)
        self.add_button.setToolTip(why_add or "")

    def set_principal(self, principal: Principal) -> None:
        """Switch the signed-in user: limit changes are made (and allowed) as them."""
        self.service.set_principal(principal)
        self.user = principal.username
        self._update_buttons()

    def _currencies(self) -> list[str]:
        try:
            return sorted({str(c) for c in self.report.currency.tolist()})
        except AttributeError:
            return list(_CURRENCIES)

    def _open_dialog(self, limit: LimitRecord | None) -> LimitDialog:
        service, user = self.service, self.user
        if limit is None:

            def save(d: LimitDraft) -> LimitRecord:
                return service.create(d, user)
        else:
            lid, version = limit.id, limit.version

            def save(d: LimitDraft) -> LimitRecord:
                return service.update(lid, version, d, user)

        dlg = LimitDialog(self.runner, save, self.books, self.products, self._currencies(),
                          limit, self)  # fmt: skip
        dlg.sig_saved.connect(lambda _rec: self.refresh())
        if self.approvals is not None:
            approvals, lim = self.approvals.service, limit
            dlg.approvals = self.approvals
            dlg.request_approval = lambda d, reason: approvals.request_limit_change(
                d, reason, limit_id=None if lim is None else lim.id,
                expected_version=None if lim is None else lim.version)  # fmt: skip
        self.dialog = dlg
        dlg.open()
        return dlg

    def add_limit(self) -> LimitDialog:
        """Open the dialog for a new limit (non-modal to the application: ``open()``)."""
        return self._open_dialog(None)

    def edit_limit(self) -> LimitDialog | None:
        lim = self.selected_limit()
        return None if lim is None else self._open_dialog(lim)

    def deactivate_limit(self, confirm: bool = True) -> None:
        """Deactivate the selected limit (asks first unless ``confirm`` is false)."""
        lim = self.selected_limit()
        if lim is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Deactivate limit",
                f"Deactivate the limit {lim.title} ({_num(lim.limit_value)})?\n"
                "It stops being monitored; its breach history is kept.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        service, user = self.service, self.user

        def work(_ctx: JobContext) -> LimitRecord | Exception:
            try:
                return service.set_active(lim.id, lim.version, False, user)
            except (StaleLimitError, KeyError, PermissionDenied) as exc:
                return exc

        def done(out: LimitRecord | Exception) -> None:
            if isinstance(out, ApprovalRequired) and self.approvals is not None:
                self.status.setStyleSheet("color: #b3261e;")
                self.status.setText(f"Not deactivated yet: {out}")
                approvals = self.approvals.service
                self.approval_dialog = self.approvals.offer(
                    self, str(out), lambda reason: approvals.request_limit_change(
                        None, reason, limit_id=lim.id, expected_version=lim.version,
                        deactivate=True),
                    on_submitted=lambda rec: self.status.setText(
                        f"Deactivation request {rec.request_uuid} submitted; waiting for "
                        "approval."))  # fmt: skip
                return
            if isinstance(out, Exception):
                self.status.setStyleSheet("color: #b3261e;")
                self.status.setText(f"Not deactivated: {out}")
            self.refresh()

        self.runner.submit("Deactivate limit", work, on_result=done, on_error=self._on_error,
                           key="limits-save")  # fmt: skip


def _user() -> str:
    try:
        return getpass.getuser()[:60]
    except (OSError, KeyError):
        return "unknown"


def install_limits_tab(
    risk_panel: Any,
    repository: LimitRepository | Store,
    alert: Callable[[str], None] | None = None,
    *,
    stress: Callable[[], StressLosses | None] | None = None,
    user: str | None = None,
    runner: JobRunner | None = None,
) -> LimitsPanel:
    """Add the Limits tab to ``risk_panel`` (a :class:`~app.views.risk_panel.RiskPanel`).

    VaR/ES limits use the panel's risk service (its price histories) and tenor volatilities;
    limits are re-evaluated after each of its calculations. ``alert`` receives the message of
    every new warning or breach (connect it to the Alerts dock / status bar).
    """
    from app.views.risk_panel import tenor_vols

    repo = repository if isinstance(repository, LimitRepository) else LimitRepository(repository)
    service = LimitService(repo, risk=risk_panel.service, tenor_vols=tenor_vols)
    panel = LimitsPanel(
        runner or risk_panel.runner,
        service,
        alert,
        risk_panel=risk_panel,
        stress=stress,
        user=user,
    )
    risk_panel.add_tab(panel, "Limits")
    panel.refresh()
    return panel
