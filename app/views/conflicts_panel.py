"""The Conflicts dock: this workstation's changes that met a different desk version.

The list shows every open conflict (trade, product, book, when it was detected, the fields that
differ). Selecting one shows both versions side by side (field | desk version | this
workstation's version), in the units a trader reads (prices and quantities unscaled with their
units, the counterparty's name for its LEI, dates), the differing rows highlighted, each with
a *Keep* choice for a merge. The four resolutions of :class:`~app.services.conflicts.
ConflictService` (keep the desk version, keep mine, merge the chosen fields, re-book mine as a
new trade) each ask first and run on the job runner; a refusal (already resolved, invalid
trade, not permitted) is shown in the panel. The list reloads on ``SYNC_CONFLICTS`` (through
the :class:`~app.views.bridge.EventBridge`) and after each resolution. See ``docs/sync.md``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.enums import ExerciseStyle, InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.payload import ECONOMIC_KEYS, parse_ts
from app.models.repository import RefData, StaleVersionError, TradeNotFoundError
from app.models.types import PRICE_PLACES, QUANTITY_PLACES
from app.services.auth import Action, PermissionDenied, why_not
from app.services.conflicts import COMPARED, ConflictError, ConflictService, ConflictView
from app.services.trading import TradeValidationError
from app.views.jobs import JobContext, JobRunner

EMPTY_TEXT = "No conflicts: every change of this workstation agrees with the desk database."
NO_DESK_VERSION = (
    "The desk version of this trade is not readable here (for example it moved to a book you "
    "cannot see), so there is nothing to merge with: keep yours or re-book it as a new trade."
)
#: Human names of the compared payload keys.
FIELD_LABELS = {
    "version": "Version",
    "status": "Status",
    "book": "Book",
    "counterparty_lei": "Counterparty",
    "product": "Product",
    "instrument": "Instrument",
    "side": "Side",
    "quantity": "Quantity",
    "quantity_unit": "Quantity unit",
    "price": "Price",
    "currency": "Currency",
    "trade_date": "Trade date",
    "delivery_start": "Delivery start",
    "delivery_end": "Delivery end",
    "option_type": "Option type",
    "strike": "Strike",
    "expiry_date": "Expiry date",
    "exercise_style": "Exercise style",
    "premium": "Premium",
    "comment": "Comment",
    "updated_by": "Changed by",
    "updated_at": "Changed at",
}
#: Column of the side-by-side table.
FIELD_COL, DESK_COL, MINE_COL, KEEP_COL = range(4)
_ENUMS: dict[str, Any] = {
    "status": TradeStatus,
    "instrument": InstrumentType,
    "side": Side,
    "quantity_unit": Unit,
    "option_type": OptionType,
    "exercise_style": ExerciseStyle,
}
_DATES = ("trade_date", "delivery_start", "delivery_end", "expiry_date")
_PER_UNIT = ("price", "strike", "premium")
_DIFF_BG = QColor("#ffe9b3")  # readable amber in light themes; the text stays black
_ERROR_CSS = "color: #b3261e;"
_OK_CSS = "color: #1b6e20;"
_DASH = "—"


# ---------------------------------------------------------------------------- formatting


def _decimal(scaled: Any, places: int, min_places: int) -> str:
    """A scaled integer as a grouped decimal: trailing zeros dropped, at least ``min_places``."""
    d = Decimal(int(scaled)).scaleb(-places).normalize()
    exponent = d.as_tuple().exponent
    if not isinstance(exponent, int) or exponent > -min_places:
        d = d.quantize(Decimal(1).scaleb(-min_places))
    return format(d, ",f")


def _unit_label(payload: Mapping[str, Any]) -> str:
    try:
        return str(Unit[payload.get("quantity_unit") or ""].label)
    except KeyError:
        return str(payload.get("quantity_unit") or "")


def format_value(key: str, payload: Mapping[str, Any] | None, ref: RefData | None) -> str:
    """``payload[key]`` as a trader reads it (see the module docstring); ``—`` for nothing."""
    if payload is None:
        return "not readable here"
    v = payload.get(key)
    if v is None or v == "":
        return _DASH
    try:
        if key == "version":
            return f"v{int(v)}"
        if key in _ENUMS:
            return str(_ENUMS[key][v].label)
        if key == "quantity":
            return f"{_decimal(v, QUANTITY_PLACES, 0)} {_unit_label(payload)}".strip()
        if key in _PER_UNIT:
            per = f"{payload.get('currency') or ''}/{_unit_label(payload)}".strip("/")
            return f"{_decimal(v, PRICE_PLACES, 2)} {per}".strip()
        if key in _DATES:
            return dt.date.fromisoformat(str(v)).strftime("%a %d %b %Y")
        if key == "updated_at":
            return parse_ts(str(v)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if key == "counterparty_lei":
            cps = ref.counterparties.values() if ref is not None else ()
            cp = next((c for c in cps if c.lei == v), None)
            return cp.name if cp is not None else f"unknown here (LEI {v})"
        if key == "product" and ref is not None:
            prod = ref.product_by_code(str(v))
            return f"{v} · {prod.name}" if prod is not None else str(v)
    except (KeyError, ValueError, TypeError, ArithmeticError):
        return str(v)  # an unexpected value from another version: show it raw
    return str(v)


def format_detected(when: Any) -> str:
    """The detection time in local time (``when`` is an aware UTC datetime)."""
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return when.astimezone().strftime("%Y-%m-%d %H:%M")
    return str(when or "")


def differing_labels(view: ConflictView) -> str:
    """The differing fields as a short comma-separated list of human names."""
    if view.theirs is None:
        return "desk version not readable here"
    return ", ".join(FIELD_LABELS.get(k, k) for k in view.differing) or "status only"


def _label(key: str) -> str:
    return FIELD_LABELS.get(key, key.replace("_", " ").capitalize())


def short_id(view: ConflictView) -> str:
    return str(view.trade_uuid)[:8]


# ---------------------------------------------------------------------------- panel


class ConflictsPanel(QWidget):
    """The Conflicts dock's widget; see the module docstring.

    ``bridge`` (an :class:`~app.views.bridge.EventBridge`, optional) triggers a reload on
    ``sig_sync_conflicts``. Call :meth:`refresh` once the store is open.
    """

    sig_count = Signal(int)
    """(number of open conflicts) after every reload."""
    sig_resolved = Signal(int, str)
    """(conflict id, what was done) after a resolution succeeded."""

    def __init__(
        self,
        runner: JobRunner,
        service: ConflictService,
        bridge: Any = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("conflicts")
        self.runner = runner
        self.service = service
        self.views: list[ConflictView] = []
        self.ref: RefData | None = None
        self.busy = False
        self.loads = 0
        #: Per conflict id: field -> "mine" | "theirs" as chosen in the Keep column.
        self.choices: dict[int, dict[str, str]] = {}
        self._combos: dict[str, QComboBox] = {}
        #: Payload key shown in each row of the side-by-side table.
        self.row_keys: list[str] = []

        self.message = QLabel("")
        self.message.setObjectName("conflicts_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.hide()

        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("conflicts_empty")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.list = QTreeWidget()
        self.list.setObjectName("conflicts_list")
        self.list.setRootIsDecorated(False)
        self.list.setUniformRowHeights(True)
        self.list.setHeaderLabels(["Trade", "Product", "Book", "Detected", "Fields that differ"])
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.itemSelectionChanged.connect(self._show_selected)

        self.headline = QLabel("")
        self.headline.setObjectName("conflicts_headline")
        self.headline.setWordWrap(True)

        self.table = QTableWidget(0, 4)
        self.table.setObjectName("conflicts_compare")
        self.table.setHorizontalHeaderLabels(
            ["Field", "Desk version", "This workstation's version", "Keep"]
        )
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(26)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(FIELD_COL, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(DESK_COL, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(MINE_COL, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(KEEP_COL, QHeaderView.ResizeMode.ResizeToContents)

        self.theirs_button = QPushButton("Keep desk version")
        self.theirs_button.setObjectName("conflicts_keep_theirs")
        self.theirs_button.clicked.connect(lambda: self.keep_theirs())
        self.mine_button = QPushButton("Keep mine")
        self.mine_button.setObjectName("conflicts_keep_mine")
        self.mine_button.clicked.connect(lambda: self.keep_mine())
        self.merge_button = QPushButton("Merge selected")
        self.merge_button.setObjectName("conflicts_merge")
        self.merge_button.clicked.connect(lambda: self.merge())
        self.rebook_button = QPushButton("Re-book mine as new trade")
        self.rebook_button.setObjectName("conflicts_rebook")
        self.rebook_button.clicked.connect(lambda: self.rebook())
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for b in (self.theirs_button, self.mine_button, self.merge_button, self.rebook_button):
            bar.addWidget(b)
        bar.addStretch(1)

        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.headline)
        dl.addWidget(self.table, 1)
        dl.addLayout(bar)
        self.split = split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.list)
        split.addWidget(detail)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 3)
        split.setSizes([110, 500])

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(split)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.message)
        lay.addWidget(self.stack, 1)
        self._update_buttons()

        if bridge is not None and hasattr(bridge, "sig_sync_conflicts"):
            bridge.sig_sync_conflicts.connect(lambda _ids: self.refresh())

    def resizeEvent(self, event: Any) -> None:
        """A wide, low dock (tabbed with the log at the bottom) puts the list beside the
        comparison, so the comparison keeps its height; a tall one puts it above."""
        super().resizeEvent(event)
        wide = self.width() > 2 * self.height()
        want = Qt.Orientation.Horizontal if wide else Qt.Orientation.Vertical
        if self.split.orientation() != want:
            self.split.setOrientation(want)
            total = self.split.width() if wide else self.split.height()
            first = int(total * 0.4) if wide else min(110, total // 4)
            self.split.setSizes([first, max(total - first, 1)])
            self._scroll_to_difference()

    # ------------------------------------------------------------------ loading

    def refresh(self) -> None:
        """Reload the open conflicts on the job runner (latest request wins)."""
        service = self.service

        def work(_ctx: JobContext) -> tuple[list[ConflictView], RefData]:
            return service.open_conflicts(), service.trading.refdata

        self.loads += 1
        self.runner.submit("Conflicts: load", work, on_result=self._loaded,
                           on_error=self._show_error, key="conflicts-load")  # fmt: skip

    def _loaded(self, out: tuple[list[ConflictView], RefData]) -> None:
        views, ref = out
        keep = self.selected()
        keep_id = keep.id if keep is not None else None
        self.views, self.ref = views, ref
        open_ids = {v.id for v in views}
        self.choices = {k: v for k, v in self.choices.items() if k in open_ids}
        self.list.blockSignals(True)
        self.list.clear()
        for v in views:
            shown = v.theirs if v.theirs is not None else v.mine
            item = QTreeWidgetItem(
                [
                    short_id(v),
                    str(shown.get("product") or ""),
                    str(shown.get("book") or ""),
                    format_detected(v.detected_at),
                    differing_labels(v),
                ]
            )
            item.setData(0, Qt.ItemDataRole.UserRole, v.id)
            item.setToolTip(0, str(v.trade_uuid))
            item.setToolTip(4, differing_labels(v))
            self.list.addTopLevelItem(item)
        for c in range(4):
            self.list.resizeColumnToContents(c)
        self.list.blockSignals(False)
        self.stack.setCurrentIndex(1 if views else 0)
        if views:
            row = next((i for i, v in enumerate(views) if v.id == keep_id), 0)
            current = self.list.topLevelItem(row)
            if current is not None:
                self.list.setCurrentItem(current)
        self._show_selected()
        self.sig_count.emit(len(views))

    # ------------------------------------------------------------------ side by side

    def selected(self) -> ConflictView | None:
        """The conflict selected in the list, if any."""
        item = self.list.currentItem()
        if item is None or not item.isSelected():
            return None
        cid = item.data(0, Qt.ItemDataRole.UserRole)
        return next((v for v in self.views if v.id == cid), None)

    def _show_selected(self) -> None:
        view = self.selected()
        self._combos = {}
        self.row_keys = []
        self.table.setRowCount(0)
        if view is None:
            self.headline.setText("Select a conflict to compare both versions.")
            self._update_buttons()
            return
        if view.theirs is None:
            desk = "the desk version is not readable here"
        else:
            by = view.theirs.get("updated_by")
            desk = f"the desk database already had {format_value('version', view.theirs, None)}"
            desk += f" (by {by})" if by else ""
        self.headline.setText(
            f"<b>Trade {short_id(view)}</b>: this workstation changed v{view.base_version} "
            f"while {desk}. The blotter shows the desk version until you resolve this. "
            "Differing fields are highlighted; for <i>Merge selected</i>, choose per field "
            "which version to keep."
        )
        differing = set(view.differing)
        chosen = self.choices.setdefault(view.id, {})
        # Rows empty on both sides (option fields of a future...) would only add noise.
        self.row_keys = [k for k in COMPARED if k in differing or any(
            p is not None and p.get(k) not in (None, "") for p in (view.theirs, view.mine)
        )]  # fmt: skip
        self.table.setRowCount(len(self.row_keys))
        bold = QFont(self.table.font())
        bold.setBold(True)
        for row, key in enumerate(self.row_keys):
            cells = [
                QTableWidgetItem(FIELD_LABELS.get(key, key)),
                QTableWidgetItem(format_value(key, view.theirs, self.ref)),
                QTableWidgetItem(format_value(key, view.mine, self.ref)),
            ]
            if key == "counterparty_lei":
                for col, p in ((DESK_COL, view.theirs), (MINE_COL, view.mine)):
                    if p is not None:
                        cells[col].setToolTip(f"LEI {p.get('counterparty_lei')}")
            for col, cell in enumerate(cells):
                if col != FIELD_COL and cell.toolTip() == "":
                    cell.setToolTip(cell.text())
                if key in differing:
                    cell.setBackground(QBrush(_DIFF_BG))
                    cell.setForeground(QBrush(QColor("black")))
                    cell.setFont(bold)
                self.table.setItem(row, col, cell)
            if key in differing and view.theirs is not None:
                self.table.setCellWidget(row, KEEP_COL, self._choice_combo(view.id, key, chosen))
            else:
                keep = QTableWidgetItem("" if key not in ECONOMIC_KEYS else "same")
                keep.setForeground(QBrush(QColor("#777777")))
                if key in differing:
                    keep.setBackground(QBrush(_DIFF_BG))
                self.table.setItem(row, KEEP_COL, keep)
        self.table.resizeColumnToContents(FIELD_COL)
        self.table.resizeColumnToContents(KEEP_COL)
        self._scroll_to_difference()
        self._update_buttons()

    def _scroll_to_difference(self) -> None:
        """A short table shows a few rows: start at the first differing one."""
        view = self.selected()
        differing = set(view.differing) if view is not None else set()
        first = next((r for r, k in enumerate(self.row_keys) if k in differing), None)
        if first is not None:
            self.table.scrollTo(
                self.table.model().index(first, FIELD_COL),
                QAbstractItemView.ScrollHint.PositionAtTop,
            )

    def _choice_combo(self, cid: int, key: str, chosen: dict[str, str]) -> QComboBox:
        combo = QComboBox()
        combo.setObjectName(f"conflicts_keep_{key}")
        combo.addItem("Desk version", "theirs")
        combo.addItem("Mine", "mine")
        combo.setCurrentIndex(1 if chosen.get(key) == "mine" else 0)
        combo.setToolTip(f"Which {FIELD_LABELS.get(key, key).lower()} to keep when merging")

        def changed(_i: int) -> None:
            self.choices.setdefault(cid, {})[key] = str(combo.currentData())

        combo.currentIndexChanged.connect(changed)
        self._combos[key] = combo
        return combo

    def choose(self, field: str, side: str) -> None:
        """Set the Keep choice of ``field`` ("mine" or "theirs") for the selected conflict."""
        combo = self._combos[field]
        combo.setCurrentIndex(combo.findData(side))

    # ------------------------------------------------------------------ buttons

    def _update_buttons(self) -> None:
        view = self.selected()
        buttons = (self.theirs_button, self.mine_button, self.merge_button, self.rebook_button)
        if view is None or self.busy:
            why = "Select a conflict first." if view is None else "A resolution is running…"
            for b in buttons:
                b.setEnabled(False)
                b.setToolTip(why)
            return
        p = self.service.trading.principal
        desk_book = (view.theirs or view.mine).get("book") or None
        amend_why = why_not(p, Action.AMEND, desk_book) or why_not(
            p, Action.AMEND, view.mine.get("book") or None
        )
        tips: dict[QPushButton, tuple[str | None, str]] = {
            self.theirs_button: (
                None,
                "Keep the desk database's version; yours stays on record in the audit trail.",
            ),
            self.mine_button: (
                amend_why,
                "Write your version as a new version on top of the desk's.",
            ),
            self.merge_button: (
                NO_DESK_VERSION if view.theirs is None else amend_why,
                "Write a new version: the desk's version with the fields you chose 'Mine' for.",
            ),
            self.rebook_button: (
                why_not(p, Action.CAPTURE, view.mine.get("book") or None),
                "Book your version as a separate new trade; the desk's trade stays as it is.",
            ),
        }
        for b, (reason, tip) in tips.items():
            b.setEnabled(reason is None)
            b.setToolTip(reason or tip)

    def update_permissions(self) -> None:
        """The signed-in user changed: re-judge which resolutions they may use."""
        self._update_buttons()

    def _confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text)
        return answer == QMessageBox.StandardButton.Yes

    def keep_theirs(self) -> None:
        """Keep the desk version of the selected conflict (asks first)."""
        view = self.selected()
        if view is None or not self._confirm(
            "Keep desk version",
            f"Keep the desk version of trade {short_id(view)}?\nYour change "
            f"({differing_labels(view)}) is dropped here; it stays in the audit trail.",
        ):
            return
        service = self.service

        def work() -> str:
            service.keep_theirs(view.id)
            return "kept the desk version"

        self._run("Conflicts: keep desk version", view, work)

    def keep_mine(self) -> None:
        """Write this workstation's version over the desk's (asks first)."""
        view = self.selected()
        if view is None or not self._confirm(
            "Keep mine",
            f"Write your version of trade {short_id(view)} as a new version on top of the "
            f"desk's?\nIt replaces: {differing_labels(view)}.",
        ):
            return
        service = self.service

        def work() -> str:
            rec = service.keep_mine(view.id)
            return f"kept this workstation's version (now v{rec.version})"

        self._run("Conflicts: keep mine", view, work)

    def merge(self) -> None:
        """Write the desk version with the fields chosen "Mine" (asks first)."""
        view = self.selected()
        if view is None:
            return
        if view.theirs is None:
            self._show_error(NO_DESK_VERSION)
            return
        choose = {k: s for k, s in self.choices.get(view.id, {}).items() if k in view.differing}
        mine = [FIELD_LABELS.get(k, k) for k, s in choose.items() if s == "mine"]
        if not mine:
            self._show_error("Choose 'Mine' in the Keep column for at least one field to merge, "
                             "or use 'Keep desk version'.")  # fmt: skip
            return
        if not self._confirm(
            "Merge selected",
            f"Write a new version of trade {short_id(view)}: the desk version with your "
            f"{', '.join(mine)}?",
        ):
            return
        service = self.service

        def work() -> str:
            rec = service.merge(view.id, choose)
            return f"merged your {', '.join(mine)} into the desk version (now v{rec.version})"

        self._run("Conflicts: merge", view, work)

    def rebook(self) -> None:
        """Book this workstation's version as a new trade (asks first)."""
        view = self.selected()
        if view is None or not self._confirm(
            "Re-book mine as new trade",
            f"Book your version of trade {short_id(view)} as a separate new trade?\n"
            "The desk's trade stays as it is, so both trades count in positions and risk.",
        ):
            return
        service = self.service

        def work() -> str:
            rec = service.rebook(view.id)
            return f"re-booked your version as new trade {str(rec.trade_uuid)[:8]}"

        self._run("Conflicts: re-book", view, work)

    def _run(self, title: str, view: ConflictView, fn: Callable[[], str]) -> None:
        def work(_ctx: JobContext) -> str | Exception:
            try:
                return str(fn())
            except (ConflictError, TradeValidationError, PermissionDenied, StaleVersionError,
                    TradeNotFoundError) as exc:  # fmt: skip
                return exc

        def done(out: str | Exception) -> None:
            self.busy = False
            self._update_buttons()
            if isinstance(out, Exception):
                self._show_error(_describe(out))
            else:
                self._show_ok(f"Trade {short_id(view)}: {out}.")
                self.sig_resolved.emit(view.id, out)
            self.refresh()

        def failed(text: str) -> None:
            self.busy = False
            self._show_error(text)
            self._update_buttons()

        self.busy = True
        self._update_buttons()
        self.runner.submit(title, work, on_result=done, on_error=failed)

    # ------------------------------------------------------------------ messages

    def _show_error(self, text: str) -> None:
        self.message.setStyleSheet(_ERROR_CSS)
        self.message.setText(text)
        self.message.show()

    def _show_ok(self, text: str) -> None:
        self.message.setStyleSheet(_OK_CSS)
        self.message.setText(text)
        self.message.show()


def _describe(exc: Exception) -> str:
    """A refusal as a sentence for the user."""
    if isinstance(exc, TradeValidationError):
        fields = "; ".join(f"{_label(k)}: {v}" for k, v in exc.errors.items())
        return f"Not resolved: the resulting trade is invalid ({fields})."
    if isinstance(exc, PermissionDenied):
        return f"Not resolved: {exc}"
    if isinstance(exc, StaleVersionError):
        return ("Not resolved: the trade changed meanwhile (a newer desk version arrived). "
                "Compare again and retry.")  # fmt: skip
    if isinstance(exc, TradeNotFoundError):
        return "Not resolved: the trade is no longer in this workstation's store."
    return f"Not resolved: {str(exc).strip(chr(39) + chr(34))}"
