"""The Stress and Scenarios tabs of the Risk panel.

* **Stress** (:class:`StressPanel`): the built-in historical scenarios
  (:data:`app.services.stress.LIBRARY`) and the user's saved scenarios, run on the Risk panel's
  book on the job runner (progress, Cancel).  One row per scenario, one P&L column per currency
  (never summed across currencies); each currency's worst scenario is highlighted, and the P&L
  per group of the selected scenario is listed below.  *Add / Edit / Delete* manage the user's
  scenarios in a :class:`ScenarioEditor` that validates as you type; they are saved in
  ``<data dir>/scenarios.json`` (:class:`app.models.scenarios.ScenarioLibrary`).
* **Scenarios** (:class:`ScenarioGridPanel`): a grid over two axes (price shift %, price shift
  in price units, vol points, days forward) and optionally a third, revalued on the job runner;
  a heat map (red = loss, blue = profit, symmetric around 0) with the values in the cells, and
  the same values in a table beside it, per currency.

:func:`install_stress_tabs` adds both to a :class:`~app.views.risk_panel.RiskPanel`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
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
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.risk.stress import (
    GRID_AXES,
    PRICE_MODES,
    GridAxis,
    Scenario,
    ScenarioError,
    ScenarioGrid,
)
from app.models.catalogue import PRODUCT_BY_CODE
from app.models.enums import Commodity
from app.models.scenarios import ScenarioLibrary, ScenarioLibraryError
from app.services.stress import BUILTIN_NAMES, LIBRARY, GridResult, StressResult, StressService
from app.views.jobs import JobContext

__all__ = ["ScenarioEditor", "ScenarioGridPanel", "StressPanel", "install_stress_tabs"]

_RED = "color: #b3261e;"
_WORST = QColor(250, 205, 200)
_SHOCK_COLS = ("Mode", "Value", "Products", "Commodities", "Tenor from (M)", "Tenor to (M)",
               "Month from", "Month to")  # fmt: skip


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


def _item(text: str, right: bool = False, bold: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if right:
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if bold:
        f = it.font()
        f.setBold(True)
        it.setFont(f)
    return it


def _table(cols: int) -> QTableWidget:
    t = QTableWidget(0, cols)
    t.verticalHeader().hide()
    t.verticalHeader().setDefaultSectionSize(22)
    t.setAlternatingRowColors(True)
    t.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
    t.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    # a light selection keeps the worst-scenario highlight and the P&L colours readable
    t.setStyleSheet("QTableWidget::item:selected { background: #dce6f2; color: black; }")
    return t


class _JobMixin:
    """Run/Cancel/progress wiring shared by both tabs (the widgets are made by the tab)."""

    risk: Any
    message: QLabel
    progress: QProgressBar
    run_button: QPushButton
    cancel_button: QPushButton
    _job: Any

    def _inputs_args(self) -> tuple[Any, str, list[str] | None] | None:
        report = self.risk.report
        if report is None:
            self._show_message("No positions yet: revalue the Positions panel first.")
            return None
        group_by = str(self.risk.group_by.currentData() or "product")
        return report, group_by, self.risk.selected_books()

    def _start(self, title: str, work: Any, on_result: Any, key: str) -> None:
        self.message.setStyleSheet("")
        self.message.setText(f"{title}…")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.run_button.setEnabled(False)
        self._job = self.risk.runner.submit(title, work, on_result=on_result,
                                            on_error=self._on_error, on_progress=self._on_progress,
                                            key=key)  # fmt: skip
        self._job.sig_finished.connect(self._on_finished)

    def _on_progress(self, fraction: float, _text: str) -> None:
        self.progress.setValue(int(fraction * 100))

    def cancel(self) -> None:
        """Cancel the running job (the last result stays on screen)."""
        if self._job is not None:
            self._job.cancel()
            self.message.setStyleSheet("")
            self.message.setText("Cancelled.")

    def _on_finished(self) -> None:
        job = self.sender()  # type: ignore[attr-defined]
        if job is not self._job:
            return
        self._job = None
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(True)

    def _on_error(self, text: str) -> None:
        self._show_message(text)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet(_RED)


def _run_bar(owner: Any, prefix: str, extra: list[tuple[str, QWidget]]) -> QHBoxLayout:
    owner.run_button = QPushButton("Run")
    owner.run_button.setObjectName(f"{prefix}_run")
    owner.cancel_button = QPushButton("Cancel")
    owner.cancel_button.setObjectName(f"{prefix}_cancel")
    owner.cancel_button.setEnabled(False)
    owner.cancel_button.clicked.connect(owner.cancel)
    owner.progress = QProgressBar()
    owner.progress.setRange(0, 100)
    owner.progress.setMaximumWidth(120)
    owner.progress.setTextVisible(False)
    owner.progress.hide()
    bar = QHBoxLayout()
    bar.setContentsMargins(0, 0, 0, 0)
    for text, w in extra:
        if text:
            bar.addWidget(QLabel(text))
        bar.addWidget(w)
    bar.addStretch(1)
    bar.addWidget(owner.progress)
    bar.addWidget(owner.run_button)
    bar.addWidget(owner.cancel_button)
    return bar


# --------------------------------------------------------------------------- editor


class ScenarioEditor(QDialog):
    """Add or edit a user scenario; validates on every keystroke and saves to ``library``."""

    def __init__(
        self, library: ScenarioLibrary, scenario: Scenario | None = None,
        parent: QWidget | None = None,
    ) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Edit scenario" if scenario else "New scenario")
        self.setObjectName("scenario_editor")
        self.library = library
        self.original = scenario.name if scenario else None
        self.saved: Scenario | None = None
        self.name = QLineEdit(scenario.name if scenario else "")
        self.name.setObjectName("scenario_name")
        self.description = QLineEdit(scenario.description if scenario else "")
        self.vol = QLineEdit(f"{scenario.vol_points:g}" if scenario else "0")
        self.vol.setObjectName("scenario_vol")
        self.horizon = QLineEdit(f"{scenario.horizon_days:g}" if scenario else "0")
        self.horizon.setObjectName("scenario_horizon")
        h = scenario.history if scenario else None
        self.use_history = QCheckBox("Historical move of the EIA series from")
        self.use_history.setChecked(h is not None)
        self.h_start = QLineEdit(str(h.start) if h else "2020-03-06")
        self.h_end = QLineEdit(str(h.end) if h else "2020-04-20")
        self.h_mode = QComboBox()
        self.h_mode.addItems(list(PRICE_MODES))
        self.h_mode.setCurrentText(h.mode if h else "absolute")
        hist = QHBoxLayout()
        for w in (self.use_history, self.h_start, QLabel("to"), self.h_end, self.h_mode):
            hist.addWidget(w)
        self.shocks = QTableWidget(0, len(_SHOCK_COLS))
        self.shocks.setObjectName("scenario_shocks")
        self.shocks.setHorizontalHeaderLabels(list(_SHOCK_COLS))
        self.shocks.verticalHeader().hide()
        self.shocks.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        for c in (2, 3):  # products, commodities
            self.shocks.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeMode.Stretch)
        self.shocks.setMinimumHeight(120)
        for s in scenario.price if scenario else ():
            self.add_shock(s.to_dict())
        add = QPushButton("Add price shock")
        add.setObjectName("scenario_add_shock")
        add.clicked.connect(lambda: self.add_shock())
        remove = QPushButton("Remove shock")
        remove.clicked.connect(self._remove_shock)
        shock_bar = QHBoxLayout()
        shock_bar.addWidget(add)
        shock_bar.addWidget(remove)
        shock_bar.addStretch(1)
        hint = QLabel(
            "Relative values are % of each factor's price, absolute values are in the product's "
            "price unit. Tenor M0 = the valuation month, M1 = the front month. Products: "
            "catalogue codes (comma separated); commodities: "
            + ", ".join(c.value for c in Commodity)
            + ". Empty filter = all factors."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555; font-size: 11px;")
        self.message = QLabel("")
        self.message.setObjectName("scenario_message")
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.save_button = self.buttons.button(QDialogButtonBox.StandardButton.Save)
        self.save_button.setObjectName("scenario_save")
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Description", self.description)
        form.addRow("Vol shift (points)", self.vol)
        form.addRow("Horizon (calendar days)", self.horizon)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(hist)
        lay.addWidget(QLabel("Price shocks (they add up where they overlap):"))
        lay.addWidget(self.shocks, 1)
        lay.addLayout(shock_bar)
        lay.addWidget(hint)
        lay.addWidget(self.message)
        lay.addWidget(self.buttons)
        for w in (self.name, self.description, self.vol, self.horizon, self.h_start, self.h_end):
            w.textChanged.connect(self.validate)
        self.use_history.toggled.connect(self.validate)
        self.h_mode.currentIndexChanged.connect(self.validate)
        self.shocks.itemChanged.connect(self.validate)
        self.resize(820, 460)
        self.validate()

    def add_shock(self, d: dict[str, Any] | None = None) -> None:
        d = d or {"mode": "relative", "value": 10}
        r = self.shocks.rowCount()
        self.shocks.blockSignals(True)
        self.shocks.insertRow(r)
        mode = QComboBox()
        mode.addItems(list(PRICE_MODES))
        mode.setCurrentText(str(d.get("mode", "relative")))
        mode.currentIndexChanged.connect(self.validate)
        self.shocks.setCellWidget(r, 0, mode)
        keys = ("value", "products", "commodities", "tenor_from", "tenor_to", "month_from",
                "month_to")  # fmt: skip
        for c, key in enumerate(keys, start=1):
            v = d.get(key)
            text = ", ".join(v) if isinstance(v, list) else ("" if v is None else f"{v}")
            self.shocks.setItem(r, c, QTableWidgetItem(text))
        self.shocks.blockSignals(False)
        self.validate()

    def _remove_shock(self) -> None:
        r = self.shocks.currentRow()
        if r < 0:
            r = self.shocks.rowCount() - 1
        if r >= 0:
            self.shocks.removeRow(r)
        self.validate()

    def spec(self) -> dict[str, Any]:
        """The scenario as a dict, straight from the fields (not yet validated)."""
        price = []
        keys = ("value", "products", "commodities", "tenor_from", "tenor_to", "month_from",
                "month_to")  # fmt: skip
        for r in range(self.shocks.rowCount()):
            mode = self.shocks.cellWidget(r, 0)
            d: dict[str, Any] = {"mode": mode.currentText() if isinstance(mode, QComboBox) else ""}
            for c, key in enumerate(keys, start=1):
                it = self.shocks.item(r, c)
                text = it.text().strip() if it is not None else ""
                if text:
                    d[key] = text
            price.append(d)
        spec: dict[str, Any] = {
            "name": self.name.text(),
            "description": self.description.text(),
            "price": price,
            "vol_points": self.vol.text().strip() or "0",
            "horizon_days": self.horizon.text().strip() or "0",
        }
        if self.use_history.isChecked():
            spec["history"] = {"start": self.h_start.text().strip(),
                               "end": self.h_end.text().strip(), "mode": self.h_mode.currentText()}  # fmt: skip
        return spec

    def build(self) -> Scenario:
        """Validate the fields; ``ValueError`` with a readable message."""
        s = Scenario.from_dict(self.spec())
        if s.name.casefold() in BUILTIN_NAMES:
            raise ScenarioError(f"name: {s.name!r} is a built-in scenario")
        for i, p in enumerate(s.price):
            bad = [x for x in p.products if x.upper() not in PRODUCT_BY_CODE]
            if bad:
                raise ScenarioError(f"price[{i}].products: unknown product(s) {', '.join(bad)}")
            known = {c.value.casefold() for c in Commodity}
            bad = [x for x in p.commodities if x.casefold() not in known]
            if bad:
                raise ScenarioError(f"price[{i}].commodities: unknown commodity {', '.join(bad)}")
        return s

    def validate(self) -> bool:
        try:
            s = self.build()
        except ValueError as exc:
            self.message.setText(str(exc))
            self.message.setStyleSheet(_RED)
            self.save_button.setEnabled(False)
            return False
        self.message.setText(f"OK: {s.text()}")
        self.message.setStyleSheet("color: #1b5e20;")
        self.save_button.setEnabled(True)
        return True

    def save(self) -> None:
        """Save to the library and close; a bad field or a clash keeps the dialog open."""
        if not self.validate():
            return
        s = self.build()
        try:
            self.library.save(s, replace=self.original)
        except (ValueError, KeyError, ScenarioLibraryError) as exc:
            self.message.setText(str(exc))
            self.message.setStyleSheet(_RED)
            return
        self.saved = s
        self.accept()


# --------------------------------------------------------------------------- stress tab


class StressPanel(_JobMixin, QWidget):
    """The Stress tab (see the module docstring)."""

    sig_done = Signal(object)
    """(StressResult) a new result is shown."""

    def __init__(self, risk_panel: Any, library: ScenarioLibrary, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("stress")
        self.risk = risk_panel
        self.library = library
        self.result: StressResult | None = None
        self._job = None
        self.editor: ScenarioEditor | None = None
        self.mode = QComboBox()
        self.mode.setObjectName("stress_mode")
        self.mode.addItem("absolute (as the VaR)", "absolute")
        self.mode.addItem("relative (% of today's price)", "relative")
        self.add_button = QPushButton("Add…")
        self.add_button.setObjectName("stress_add")
        self.edit_button = QPushButton("Edit…")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setObjectName("stress_delete")
        self.add_button.clicked.connect(lambda: self.open_editor(None))
        self.edit_button.clicked.connect(self._edit_selected)
        self.delete_button.clicked.connect(self._delete_selected)
        bar = _run_bar(self, "stress", [("Historical moves", self.mode), ("", self.add_button),
                                        ("", self.edit_button), ("", self.delete_button)])  # fmt: skip
        self.run_button.clicked.connect(self.run)
        self.message = QLabel("Press Run to stress the book selected in the VaR tab.")
        self.message.setObjectName("stress_message")
        self.message.setWordWrap(True)
        self.table = _table(3)
        self.table.setObjectName("stress_table")
        self.table.itemSelectionChanged.connect(self._show_groups)
        self.groups = _table(3)
        self.groups.setObjectName("stress_groups")
        self.groups.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.groups)
        split.setSizes([320, 160])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)
        self._list_scenarios()
        if library.load_error:
            self._show_message(library.load_error)
        self._update_buttons()

    def scenarios(self) -> list[Scenario]:
        """The built-in library followed by the user's scenarios."""
        return list(LIBRARY) + self.library.scenarios()

    # ------------------------------------------------------------------ editing

    def _selected(self) -> Scenario | None:
        rows = self.table.selectionModel().selectedRows()
        r = rows[0].row() if rows else -1
        items = self.scenarios() if self.result is None else [x.scenario for x in self.result.rows]
        if not 0 <= r < len(items):
            return None
        return items[r]

    def _update_buttons(self) -> None:
        s = self._selected()
        user = s is not None and s.name.casefold() not in BUILTIN_NAMES
        self.edit_button.setEnabled(user)
        self.delete_button.setEnabled(user)

    def open_editor(self, scenario: Scenario | None) -> ScenarioEditor:
        """Open the (window-modal) editor; a saved scenario is listed at once."""
        self.editor = ScenarioEditor(self.library, scenario, self)
        self.editor.accepted.connect(self._on_saved)
        self.editor.open()
        return self.editor

    def _edit_selected(self) -> None:
        s = self._selected()
        if s is not None and s.name.casefold() not in BUILTIN_NAMES:
            self.open_editor(self.library.get(s.name))

    def _delete_selected(self) -> None:
        s = self._selected()
        if s is None or s.name.casefold() in BUILTIN_NAMES:
            return
        try:
            self.library.delete(s.name)
        except (KeyError, ScenarioLibraryError) as exc:
            self._show_message(str(exc))
            return
        self._after_change(f"Deleted scenario {s.name!r}.")

    def _on_saved(self) -> None:
        name = self.editor.saved.name if self.editor and self.editor.saved else ""
        self._after_change(f"Saved scenario {name!r}; press Run to include it.")

    def _after_change(self, text: str) -> None:
        self.result = None
        self._list_scenarios()
        self.message.setStyleSheet("")
        self.message.setText(text)

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Run the library and the user's scenarios on the job runner."""
        args = self._inputs_args()
        if args is None:
            return
        report, group_by, books = args
        scenarios = self.scenarios()
        mode = str(self.mode.currentData())
        risk = self.risk

        def work(ctx: JobContext) -> StressResult:
            inputs = risk.build_inputs(report, group_by, books)
            ctx.progress(0.0, "reading price history")
            svc = StressService(risk.service().history)
            ctx.check()
            return svc.run(inputs, scenarios, mode=mode, cancelled=ctx.cancelled,
                           progress=lambda f: ctx.progress(f, "revaluing"))  # fmt: skip

        self._start(f"Stress: {len(scenarios)} scenarios", work, self._on_result, "stress")

    def _on_result(self, result: StressResult) -> None:
        self.result = result
        self._fill(result)
        text = (f"{len(result.rows)} scenarios on the positions as of {result.as_of:%d %b %Y}; "
                "P&L per currency (never summed), worst scenario highlighted.")  # fmt: skip
        self.message.setStyleSheet("")
        if result.errors:
            text += " Not run: " + "; ".join(result.errors)
            self.message.setStyleSheet(_RED)
        self.message.setText(text)
        self.sig_done.emit(result)

    # ------------------------------------------------------------------ display

    def _list_scenarios(self) -> None:
        scen = self.scenarios()
        self.table.clearContents()
        self.table.setColumnCount(2)
        self.table.setHorizontalHeaderLabels(["Scenario", "Description"])
        self.table.setRowCount(len(scen))
        for r, s in enumerate(scen):
            self._put_name(r, s)
            self.table.setItem(r, 1, _item(self._describe(s)))
        self.groups.setRowCount(0)
        self._update_buttons()

    def _put_name(self, r: int, s: Scenario) -> None:
        user = s.name.casefold() not in BUILTIN_NAMES
        self.table.setItem(r, 0, _item(s.name + (" (user)" if user else "")))

    @staticmethod
    def _describe(s: Scenario, levels: str = "") -> str:
        parts = [s.description] if s.description else []
        if s.history is None or not s.description:
            parts.append(s.text())
        elif levels and s.name.casefold() not in BUILTIN_NAMES:
            parts.append(levels)
        return " ".join(parts)

    def _fill(self, res: StressResult) -> None:
        ccys = list(res.currencies)
        self.table.clearContents()
        self.table.setColumnCount(2 + len(ccys))
        self.table.setHorizontalHeaderLabels(["Scenario", *[f"P&L {c}" for c in ccys],
                                              "Description"])  # fmt: skip
        self.table.setRowCount(len(res.rows))
        worst = {c: res.worst(c) for c in ccys}
        for r, row in enumerate(res.rows):
            self._put_name(r, row.scenario)
            for k, c in enumerate(ccys):
                v = row.pnl.get(c, math.nan)
                it = _item(_money(v), right=True, bold=worst[c] == r)
                if worst[c] == r and v < 0:
                    it.setBackground(QBrush(_WORST))
                    it.setToolTip(f"Worst scenario for {c}")
                if v < 0:
                    it.setForeground(QBrush(QColor(160, 20, 20)))
                self.table.setItem(r, 1 + k, it)
            desc = self._describe(row.scenario, row.levels_text())
            d_item = _item(desc)
            d_item.setToolTip(row.levels_text() or row.scenario.text())
            self.table.setItem(r, 1 + len(ccys), d_item)
        self.table.horizontalHeader().setSectionResizeMode(
            1 + len(ccys), QHeaderView.ResizeMode.Stretch
        )
        self.table.clearSelection()  # keep the worst-scenario highlight visible
        self._show_groups()

    def _show_groups(self) -> None:
        self._update_buttons()
        res = self.result
        rows = self.table.selectionModel().selectedRows()
        r = rows[0].row() if rows else 0  # row 0 until the user picks one
        if res is None or not 0 <= r < len(res.rows):
            self.groups.setRowCount(0)
            return
        row = res.rows[r]
        lines = [(c, g, float(v)) for c in res.currencies
                 for g, v in zip(res.group_labels[c], row.by_group[c], strict=True)]  # fmt: skip
        lines.sort(key=lambda x: (x[0], x[2]))
        self.groups.setColumnCount(3)
        self.groups.setHorizontalHeaderLabels(
            [f"{self.risk.group_by.currentText() or 'Group'} — {row.scenario.name}", "Ccy",
             "P&L"]
        )  # fmt: skip
        self.groups.setRowCount(len(lines))
        for i, (c, g, v) in enumerate(lines):
            self.groups.setItem(i, 0, _item(g))
            self.groups.setItem(i, 1, _item(c))
            self.groups.setItem(i, 2, _item(_money(v), right=True))


# --------------------------------------------------------------------------- grid tab


class _AxisEditor(QWidget):
    def __init__(self, kind: str, start: float, stop: float, steps: int) -> None:
        super().__init__()
        self.kind = QComboBox()
        for k, title in GRID_AXES.items():
            self.kind.addItem(title, k)
        self.kind.setCurrentIndex(self.kind.findData(kind))
        self.start = QDoubleSpinBox()
        self.stop = QDoubleSpinBox()
        for w, v in ((self.start, start), (self.stop, stop)):
            w.setRange(-10_000.0, 10_000.0)
            w.setDecimals(2)
            w.setValue(v)
        self.steps = QSpinBox()
        self.steps.setRange(1, 101)
        self.steps.setValue(steps)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        parts: list[tuple[str, QWidget]] = [("", self.kind), ("from", self.start),
                                            ("to", self.stop), ("steps", self.steps)]  # fmt: skip
        for text, widget in parts:
            if text:
                lay.addWidget(QLabel(text))
            lay.addWidget(widget)
        lay.addStretch(1)

    def axis(self) -> GridAxis:
        return GridAxis.steps(str(self.kind.currentData()), self.start.value(), self.stop.value(),
                              self.steps.value())  # fmt: skip


def _fmt_axis(kind: str, v: float) -> str:
    if kind == "price_pct":
        return f"{v:+g}%"
    if kind == "vol_points":
        return f"{v:+g}v"
    if kind == "days":
        return f"{v:g}d"
    return f"{v:+g}"


class ScenarioGridPanel(_JobMixin, QWidget):
    """The Scenarios tab: a grid of shocks and its P&L heat map (see the module docstring)."""

    sig_done = Signal(object)
    """(GridResult) a new grid is shown."""

    def __init__(self, risk_panel: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("scenario_grid")
        self.risk = risk_panel
        self.result: GridResult | None = None
        self._job = None
        self.rows_axis = _AxisEditor("price_pct", -30.0, 30.0, 7)
        self.cols_axis = _AxisEditor("vol_points", -10.0, 10.0, 5)
        self.third = QCheckBox("Third axis")
        self.third_axis = _AxisEditor("days", 0.0, 30.0, 4)
        self.third_axis.setEnabled(False)
        self.third.toggled.connect(self.third_axis.setEnabled)
        self.currency = QComboBox()
        self.currency.setObjectName("grid_currency")
        self.slice = QComboBox()
        self.slice.setObjectName("grid_slice")
        self.slice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.currency.currentIndexChanged.connect(lambda _i: self._draw())
        self.slice.currentIndexChanged.connect(lambda _i: self._draw())
        form = QFormLayout()
        form.addRow("Rows", self.rows_axis)
        form.addRow("Columns", self.cols_axis)
        form.addRow(self.third, self.third_axis)
        bar = _run_bar(self, "grid", [("Currency", self.currency), ("Slice", self.slice)])
        self.run_button.clicked.connect(self.run)
        self.message = QLabel("Choose the axes and press Run.")
        self.message.setObjectName("grid_message")
        self.message.setWordWrap(True)

        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.plot: Any = pg.PlotWidget(background="w")
        self.plot.setObjectName("grid_heatmap")
        self.plot.setMinimumSize(320, 220)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.image: Any = pg.ImageItem()
        self.plot.addItem(self.image)
        cmap = pg.ColorMap([0.0, 0.5, 1.0], [(178, 24, 43), (247, 247, 247), (33, 102, 172)])
        self.image.setLookupTable(cmap.getLookupTable(nPts=256))
        self._texts: list[Any] = []
        self.table = _table(1)
        self.table.setObjectName("grid_table")
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setSizes([560, 420])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(form)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)

    def grid(self) -> ScenarioGrid:
        """The grid chosen in the controls (``ScenarioError`` if inconsistent)."""
        axes = [self.rows_axis.axis(), self.cols_axis.axis()]
        if self.third.isChecked():
            axes.append(self.third_axis.axis())
        return ScenarioGrid(tuple(axes))

    def run(self) -> None:
        try:
            grid = self.grid()
        except ScenarioError as exc:
            self._show_message(str(exc))
            return
        args = self._inputs_args()
        if args is None:
            return
        report, group_by, books = args
        risk = self.risk

        def work(ctx: JobContext) -> GridResult:
            inputs = risk.build_inputs(report, group_by, books)
            ctx.check()
            svc = StressService({})
            return svc.grid(inputs, grid, cancelled=ctx.cancelled,
                            progress=lambda f: ctx.progress(f, "revaluing"))  # fmt: skip

        self._start(f"Scenario grid: {grid.size:,} cells", work, self._on_result, "stress_grid")

    def _on_result(self, result: GridResult) -> None:
        self.result = result
        current = self.currency.currentText()
        for combo in (self.currency, self.slice):
            combo.blockSignals(True)
            combo.clear()
        self.currency.addItems(list(result.values))
        i = self.currency.findText(current)
        self.currency.setCurrentIndex(max(i, 0))
        axes = result.grid.axes
        if len(axes) == 3:
            self.slice.addItems([f"{axes[2].title}: {_fmt_axis(axes[2].kind, v)}"
                                 for v in axes[2].values])  # fmt: skip
        self.slice.setEnabled(len(axes) == 3)
        for combo in (self.currency, self.slice):
            combo.blockSignals(False)
        self.message.setStyleSheet("")
        self.message.setText(
            f"{result.grid.size:,} scenarios on the positions as of {result.as_of:%d %b %Y}; "
            "full revaluation, P&L per currency. Price axes shift every curve-tenor factor."
        )
        self._draw()
        self.sig_done.emit(result)

    def values(self) -> np.ndarray | None:
        """The 2-D P&L shown (rows x columns) for the chosen currency and slice."""
        res = self.result
        if res is None or self.currency.currentText() not in res.values:
            return None
        v = res.values[self.currency.currentText()]
        return v[:, :, max(self.slice.currentIndex(), 0)] if v.ndim == 3 else v

    def _draw(self) -> None:
        import pyqtgraph as pg

        v = self.values()
        for t in self._texts:
            self.plot.removeItem(t)
        self._texts = []
        if v is None or self.result is None:
            return
        ra, ca = self.result.grid.axes[0], self.result.grid.axes[1]
        nr, nc = v.shape
        big = float(np.max(np.abs(v))) or 1.0
        self.image.setImage(v.T, levels=(-big, big))  # ImageItem is image[x, y]
        self.image.setRect(QRectF(0, 0, nc, nr))
        self.plot.getAxis("bottom").setTicks([[(j + 0.5, _fmt_axis(ca.kind, x))
                                               for j, x in enumerate(ca.values)]])  # fmt: skip
        self.plot.getAxis("left").setTicks([[(i + 0.5, _fmt_axis(ra.kind, x))
                                             for i, x in enumerate(ra.values)]])  # fmt: skip
        ccy = self.currency.currentText()
        self.plot.setLabel("bottom", ca.title)
        self.plot.setLabel("left", ra.title)
        self.plot.setTitle(f"P&L {ccy}", color="#333")
        self.plot.setXRange(0, nc, padding=0)
        self.plot.setYRange(0, nr, padding=0)
        if nr * nc <= 225:
            font = QFont()
            font.setPointSize(7 if nc > 7 else 8)
            for i in range(nr):
                for j in range(nc):
                    dark = abs(v[i, j]) > 0.6 * big  # white on the saturated cells
                    ink = (255, 255, 255) if dark else (20, 20, 20)
                    t = pg.TextItem(_short(v[i, j]), color=ink, anchor=(0.5, 0.5))
                    t.setFont(font)
                    t.setPos(j + 0.5, i + 0.5)
                    self.plot.addItem(t)
                    self._texts.append(t)
        self.table.clear()
        self.table.setRowCount(nr)
        self.table.setColumnCount(nc)
        self.table.setHorizontalHeaderLabels([_fmt_axis(ca.kind, x) for x in ca.values])
        self.table.setVerticalHeaderLabels([_fmt_axis(ra.kind, x) for x in ra.values])
        self.table.verticalHeader().show()
        for i in range(nr):
            for j in range(nc):
                it = _item(_money(float(v[nr - 1 - i, j])), right=True)
                it.setBackground(QBrush(_heat(float(v[nr - 1 - i, j]) / big)))
                self.table.setItem(i, j, it)
        self.table.setVerticalHeaderLabels([_fmt_axis(ra.kind, x) for x in ra.values[::-1]])


def _short(x: float) -> str:
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.1f}bn"
    if a >= 1e6:
        return f"{x / 1e6:.1f}m"
    if a >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.0f}"


def _heat(f: float) -> QColor:
    """Light version of the heat map colours for table cells (f in [-1, 1])."""
    f = max(-1.0, min(1.0, f))
    end = (178, 24, 43) if f < 0 else (33, 102, 172)
    w = 0.45 * abs(f)
    return QColor(*(int(247 + (e - 247) * w) for e in end))


# --------------------------------------------------------------------------- install


def install_stress_tabs(
    risk_panel: Any, data_dir: str | Path, store: Any = None, user: Any = None
) -> tuple[StressPanel, ScenarioGridPanel]:
    """Add the Stress and Scenarios tabs to ``risk_panel``; user scenarios live in
    ``<data_dir>/scenarios.json``. With a ``store``, every scenario save and delete is recorded
    in its audit trail, by ``user()`` (default: the OS login name)."""
    hook = None
    if store is not None:
        from app.models.audit import os_user, settings_recorder

        hook = settings_recorder(store, user or os_user)
    library = ScenarioLibrary(Path(data_dir) / "scenarios.json", audit=hook)
    stress = StressPanel(risk_panel, library)
    grid = ScenarioGridPanel(risk_panel)
    risk_panel.add_tab(stress, "Stress")
    risk_panel.add_tab(grid, "Scenarios")
    return stress, grid
