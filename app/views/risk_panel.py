"""The Risk dock panel: VaR and ES of the current book, per currency, with contributions.

Settings: method (:data:`app.services.risk.METHODS`: historical full revaluation or
delta-gamma, parametric delta-normal or delta-gamma Cornish-Fisher, Monte Carlo full
revaluation), confidence (95 / 97.5 / 99 %), horizon (1..10 days), book (all or one) and the
contribution grouping (product, book, trade). *Calculate* runs :meth:`app.services.risk.RiskService.calculate` on the
job runner (progress and Cancel in the panel and in the Jobs dock); the panel also recalculates
after every positions revaluation (``PositionsPanel.sig_revalued``), at most once per
:data:`AUTO_INTERVAL_S` seconds. The bundled EIA histories are read on the worker thread the first
time and kept.

Outputs: VaR and ES per currency (never summed across currencies), a note saying exactly how
they were computed (method, confidence, horizon, window dates, as-of, proxies), a histogram of
the chosen currency's scenario P&L with VaR and ES marked (the parametric method draws the
normal density instead), and the ES contributions table (product, exposure, contribution, % of
ES; the rows sum to the ES). Bad settings or an empty book show a message, never a traceback.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.reports.headless import load_bundled_history, tenor_vols
from app.services.risk import (
    CONFIDENCES,
    GROUP_BY,
    MAX_HORIZON,
    METHODS,
    CurrencyRisk,
    HistorySeries,
    RiskInputs,
    RiskResult,
    RiskService,
    risk_inputs,
)
from app.views.jobs import JobContext, JobRunner

__all__ = ["AUTO_INTERVAL_S", "RiskPanel", "load_bundled_history", "tenor_vols"]

#: Minimum seconds between two automatic recalculations.
AUTO_INTERVAL_S = 2.0
_TABLE_HEADERS = ("Group", "Ccy", "Delta", "Unit", "ES contribution", "% of ES", "History")
_ALL_BOOKS = "All books"


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


class RiskPanel(QWidget):
    """The Risk dock panel; see the module docstring.

    ``positions`` is the Positions panel (its ``report`` and ``sig_revalued`` are used) or
    ``None`` (then call :meth:`set_report`). ``history`` loads the price histories (default
    :func:`load_bundled_history`); it runs on a worker thread once.
    """

    sig_calculated = Signal(object)
    """(RiskResult) a new result is shown."""
    sig_message = Signal(str)
    """(a status message for the user)"""

    def __init__(
        self,
        runner: JobRunner,
        positions: Any = None,
        history: Callable[[], Mapping[str, HistorySeries]] = load_bundled_history,
        parent: QWidget | None = None,
        scheduler: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("risk")
        self.scheduler = scheduler  # Dask scheduler address for Monte Carlo (None: local)
        self.runner = runner
        self.positions = positions
        self._history_loader = history
        self._service: RiskService | None = None
        self._service_lock = threading.Lock()
        self.inputs: RiskInputs | None = None
        self.result_report: Any = None  # the positions report the result was computed on
        self._items: dict[str, Any] = {}  # histogram items, reused (see _chart_items)
        self.report: Any = positions.report if positions is not None else None
        self.result: RiskResult | None = None
        self.calculations = 0
        self._job: Any = None
        self._last_auto = -1e9
        self._auto_timer = QTimer(self)
        self._auto_timer.setSingleShot(True)
        self._auto_timer.timeout.connect(self._auto_fire)

        self.method = QComboBox()
        self.method.setObjectName("risk_method")
        for key, title in METHODS.items():
            self.method.addItem(title, key)
        self.confidence = QComboBox()
        self.confidence.setObjectName("risk_confidence")
        for c in CONFIDENCES:
            self.confidence.addItem(f"{c:.1%}", c)
        self.confidence.setCurrentIndex(len(CONFIDENCES) - 1)
        self.horizon = QSpinBox()
        self.horizon.setObjectName("risk_horizon")
        self.horizon.setRange(1, MAX_HORIZON)
        self.horizon.setSuffix(" d")
        self.book = QComboBox()
        self.book.setObjectName("risk_book")
        self.book.addItem(_ALL_BOOKS)
        self.group_by = QComboBox()
        self.group_by.setObjectName("risk_group_by")
        for key, title in GROUP_BY.items():
            self.group_by.addItem(title, key)
        self.calc_button = QPushButton("Calculate")
        self.calc_button.setObjectName("risk_calculate")
        self.calc_button.clicked.connect(self.calculate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("risk_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.report_button = QPushButton("Report…")
        self.report_button.setObjectName("risk_report")
        self.report_button.setToolTip("Save the result on screen as HTML, Excel or PDF")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.save_report_dialog)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(120)
        self.progress.setTextVisible(False)
        self.progress.hide()
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        for text, w in (
            ("Method", self.method),
            ("Confidence", self.confidence),
            ("Horizon", self.horizon),
            ("Book", self.book),
            ("By", self.group_by),
        ):
            bar.addWidget(QLabel(text))
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.progress)
        bar.addWidget(self.calc_button)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.report_button)

        self.message = QLabel("Press Calculate, or revalue positions.")
        self.message.setObjectName("risk_message")
        self.message.setWordWrap(True)
        self.totals = QLabel("")
        self.totals.setObjectName("risk_totals")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.note = QLabel("")
        self.note.setObjectName("risk_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.setStyleSheet("color: #555; font-size: 11px;")

        self.currency = QComboBox()
        self.currency.setObjectName("risk_currency")
        self.currency.currentIndexChanged.connect(lambda _i: self._show_currency())
        ccy_bar = QHBoxLayout()
        ccy_bar.setContentsMargins(0, 0, 0, 0)
        ccy_bar.addWidget(QLabel("Chart and contributions for"))
        ccy_bar.addWidget(self.currency)
        ccy_bar.addStretch(1)

        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.plot: Any = pg.PlotWidget(background="w")
        self.plot.setObjectName("risk_histogram")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setLabel("left", "scenarios")
        self.plot.setMinimumHeight(180)

        self.table = QTableWidget(0, len(_TABLE_HEADERS))
        self.table.setObjectName("risk_contributions")
        self.table.setHorizontalHeaderLabels(list(_TABLE_HEADERS))
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)

        split = QSplitter(Qt.Orientation.Vertical)
        from app.views.risk_charts import ContributionsChart

        self.chart = ContributionsChart(runner)
        self.chart.setObjectName("risk_contrib_chart")
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.table)
        bottom.addWidget(self.chart)
        bottom.setSizes([560, 340])
        split.addWidget(self.plot)
        split.addWidget(bottom)
        split.setSizes([260, 220])
        var_tab = QWidget()
        var_tab.setObjectName("risk_var_tab")
        vlay = QVBoxLayout(var_tab)
        vlay.setContentsMargins(4, 4, 4, 4)
        vlay.addLayout(bar)
        vlay.addWidget(self.message)
        vlay.addWidget(self.totals)
        vlay.addWidget(self.note)
        vlay.addLayout(ccy_bar)
        vlay.addWidget(split, 1)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("risk_tabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(var_tab, "VaR / ES")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tabs)

        if positions is not None and hasattr(positions, "sig_revalued"):
            positions.sig_revalued.connect(self.on_revalued)
        if positions is not None and hasattr(positions, "consumers"):
            positions.consumers.append(self)

    # ------------------------------------------------------------------ inputs

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        kick = getattr(self.positions, "kick", None)
        if kick is not None:
            kick()  # the positions may be stale while their dock was hidden

    def add_tab(self, widget: QWidget, title: str) -> int:
        """Add a sub-panel (stress, scenarios, backtest, limits ...) as a tab."""
        return self.tabs.addTab(widget, title)

    def set_report(self, report: Any) -> None:
        """Use ``report`` (a PositionReport) for the next calculation."""
        self.report = report
        self._refresh_books(report)

    def _refresh_books(self, report: Any) -> None:
        try:
            names = sorted({str(b.name) for b in report.snapshot.ref.books.values()})
        except AttributeError:
            return
        current = self.book.currentText()
        if [self.book.itemText(i) for i in range(1, self.book.count())] == names:
            return
        self.book.blockSignals(True)
        self.book.clear()
        self.book.addItem(_ALL_BOOKS)
        self.book.addItems(names)
        self.book.setCurrentIndex(max(self.book.findText(current), 0))
        self.book.blockSignals(False)

    def service(self) -> RiskService:
        """The risk service, reading the price histories the first time (call off the GUI
        thread: the first call parses the bundled CSV files)."""
        with self._service_lock:
            if self._service is None:
                executor, compute = None, "local threads"
                if self.scheduler:
                    from app.engine.risk.scaleout import make_executor

                    executor = make_executor(self.scheduler)
                    compute = f"Dask cluster {self.scheduler}"
                self._service = RiskService(self._history_loader(), executor, compute)
            return self._service

    def selected_books(self) -> list[str] | None:
        """The book filter chosen in the panel (``None``: all books)."""
        book = self.book.currentText()
        return None if book in ("", _ALL_BOOKS) else [book]

    @staticmethod
    def build_inputs(
        report: Any, group_by: str = "product", books: list[str] | None = None
    ) -> RiskInputs:
        """:class:`RiskInputs` of ``report`` (call on a worker thread: O(trades))."""
        return risk_inputs(
            report,
            group_by,
            books=books,
            tenor_vols=tenor_vols(),
        )

    def on_revalued(self, report: Any) -> None:
        """A new positions report: recalculate, at most once per :data:`AUTO_INTERVAL_S`."""
        self.report = report
        self._refresh_books(report)
        wait = self._last_auto + AUTO_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self._auto_fire()
        elif not self._auto_timer.isActive():
            self._auto_timer.start(int(wait * 1000) + 1)

    def _auto_fire(self) -> None:
        self._last_auto = time.monotonic()
        self.calculate()

    # ------------------------------------------------------------------ calculation

    def calculate(self) -> None:
        """Submit a calculation with the current settings (supersedes a running one)."""
        report = self.report
        if report is None:
            self._show_message("No positions yet: revalue the Positions panel first.")
            return
        group_by = str(self.group_by.currentData())
        books = self.selected_books()
        method = str(self.method.currentData())
        confidence = float(self.confidence.currentData())
        horizon = int(self.horizon.value())

        def work(ctx: JobContext) -> tuple[Any, RiskInputs, RiskResult | str]:
            try:
                inputs = self.build_inputs(report, group_by, books)
            except (AttributeError, TypeError, KeyError) as exc:
                raise ValueError(f"cannot read the positions: {exc}") from exc
            if not inputs.currencies:
                if inputs.skipped:
                    skipped = ", ".join(inputs.skipped)
                    return report, inputs, f"No risk factor for the products held: {skipped}."
                if inputs.n_unmarked:
                    waiting = (
                        f"No marked positions yet: {inputs.n_unmarked:,} open trade(s) have no "
                        "curve (waiting for prices)."
                    )
                    return report, inputs, waiting
                return (
                    report,
                    inputs,
                    "No open positions with a delta exposure: nothing to measure.",
                )
            ctx.progress(0.0, "reading price history")
            service = self.service()
            ctx.check()
            return (
                report,
                inputs,
                service.calculate(
                    inputs,
                    method,
                    confidence,
                    horizon,
                    progress=lambda f: ctx.progress(f, "simulating"),
                    cancelled=ctx.cancelled,
                ),
            )

        self.calculations += 1
        self.message.setStyleSheet("")
        self.message.setText(f"Calculating {METHODS[method]} VaR/ES…")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self._job = self.runner.submit(
            f"Risk: {METHODS[method]} {confidence:.1%} {horizon}d",
            work,
            on_result=self._on_result,
            on_error=self._on_error,
            on_progress=self._on_progress,  # a bound slot: disconnected if the panel goes
            key="risk",
        )
        self._job.sig_finished.connect(self._on_finished)

    def _on_progress(self, fraction: float, _text: str) -> None:
        self.progress.setValue(int(fraction * 100))

    def cancel(self) -> None:
        """Cancel the running calculation (the last result stays on screen)."""
        if self._job is not None:
            self._job.cancel()
            self.message.setText("Calculation cancelled.")
            self.sig_message.emit("Risk calculation cancelled")

    def _on_finished(self) -> None:
        job = self.sender()
        if job is not self._job:
            return
        self._job = None
        self.progress.hide()
        self.cancel_button.setEnabled(False)

    def _on_error(self, text: str) -> None:
        self._show_message(f"Risk calculation failed: {text}")

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #b3261e;")
        self.sig_message.emit(text)

    def _clear(self) -> None:
        self.result = None
        self.totals.setText("")
        self.note.setText("")
        self.currency.clear()
        self.table.setRowCount(0)
        for item in list(self._items.values())[1:]:
            self._show_item(item, False)
        self.chart.set_risk(None)
        self.report_button.setEnabled(False)

    # ------------------------------------------------------------------ display

    def _on_result(self, out: tuple[Any, RiskInputs, RiskResult | str]) -> None:
        report, inputs, result = out
        self.inputs = inputs
        self.result_report = report
        self.chart.set_context(report, inputs.group_by, list(inputs.books_filter) or None)
        if isinstance(result, str):  # nothing to measure (yet): said in the panel only, the
            self._clear()  # status bar is for failures (an auto-recalc would leave it stale)
            self.message.setText(result)
            self.message.setStyleSheet("color: #b3261e;")
            return
        self.result = result
        self.report_button.setEnabled(True)
        self.message.setStyleSheet("")
        self.message.setText(
            f"{METHODS[result.method]} · {result.confidence:.1%} · {result.horizon_days}-day · "
            f"window {result.window_start:%d %b %Y} – {result.window_end:%d %b %Y} · "
            f"positions as of {result.as_of:%d %b %Y}"
        )
        parts = []
        for c in result.currencies:
            text = f"<b>{c.currency}</b> VaR <b>{_money(c.var)}</b> · ES <b>{_money(c.es)}</b>"
            if c.var_ci is not None:
                text += (
                    f" <span style='color:gray'>(VaR {c.ci_level:.0%} CI "
                    f"{_money(c.var_ci[0])} – {_money(c.var_ci[1])})</span>"
                )
            parts.append(text)
        self.totals.setText(" &nbsp;&nbsp;|&nbsp;&nbsp; ".join(parts))
        self.note.setText(result.note())
        current = self.currency.currentText()
        self.currency.blockSignals(True)
        self.currency.clear()
        for c in result.currencies:
            self.currency.addItem(c.currency)
        i = self.currency.findText(current)
        if i < 0:  # default: the currency with the largest ES
            big = max(range(len(result.currencies)), key=lambda j: result.currencies[j].es)
            i = big
        self.currency.setCurrentIndex(i)
        self.currency.blockSignals(False)
        self._show_currency()
        self.sig_calculated.emit(result)

    def _show_currency(self) -> None:
        if self.result is None or self.currency.currentIndex() < 0:
            return
        c = self.result.currencies[self.currency.currentIndex()]
        self._fill_table(c)
        self._draw(c)
        self.chart.set_risk(c)

    # ------------------------------------------------------------------ report

    def save_report_dialog(self) -> None:
        """Ask for a file name and write the result on screen there (HTML, xlsx or PDF)."""
        from PySide6.QtWidgets import QFileDialog

        if self.result is None:
            self._show_message("Nothing to report yet: calculate first.")
            return
        path, _filter = QFileDialog.getSaveFileName(
            self, "Save risk report", f"risk-{self.result.as_of.isoformat()}.html",
            "HTML (*.html);;Excel (*.xlsx);;PDF (*.pdf)",
        )  # fmt: skip
        if path:
            self.save_report(path)

    def save_report(self, path: str) -> None:
        """Write the report of the result on screen to ``path`` on the job runner."""
        result, report, inputs = self.result, self.result_report, self.inputs
        if result is None:
            self._show_message("Nothing to report yet: calculate first.")
            return

        def work(_ctx: JobContext) -> str:
            from app.reports.risk import write_report

            return str(write_report(result, report, path, inputs=inputs))

        self.runner.submit("Risk report", work,
                           on_result=lambda p: self.sig_message.emit(f"Risk report saved: {p}"),
                           on_error=lambda e: self._show_message(f"Risk report failed: {e}"))  # fmt: skip

    def _fill_table(self, c: CurrencyRisk) -> None:
        rows = sorted(c.contributions, key=lambda r: -abs(r.contribution))
        self.table.setRowCount(len(rows) + 1)

        def put(r: int, col: int, text: str, right: bool = False, bold: bool = False) -> None:
            item = QTableWidgetItem(text)
            if right:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            if bold:
                f = item.font()
                f.setBold(True)
                item.setFont(f)
            self.table.setItem(r, col, item)

        for r, x in enumerate(rows):
            put(r, 0, x.label)
            put(r, 1, x.currency)
            put(r, 2, f"{x.exposure:,.0f}" if math.isfinite(x.exposure) else "–", True)
            put(r, 3, x.unit)
            put(r, 4, _money(x.contribution), True)
            put(r, 5, f"{x.share:.1%}" if math.isfinite(x.share) else "–", True)
            put(r, 6, x.proxy)
        t = len(rows)
        total = sum(x.contribution for x in rows)
        put(t, 0, "Total (= ES)", bold=True)
        put(t, 1, c.currency, bold=True)
        put(t, 4, _money(total), True, True)
        put(t, 5, "100.0%" if c.es else "–", True, True)

    def _chart_items(self) -> dict[str, Any]:
        """The histogram's items, built once and updated in place on every result (rebuilding
        them, legend included, cost more than the whole historical calculation)."""
        if self._items:
            return self._items
        import pyqtgraph as pg

        legend = self.plot.addLegend(
            offset=(-10, 10), labelTextColor=(40, 40, 40), brush=(255, 255, 255, 220)
        )
        items: dict[str, Any] = {"legend": legend}
        for key, color, name in (
            ("bars", (90, 130, 200, 180), "scenario P&L"),
            ("tail", (200, 80, 70, 200), "beyond VaR"),
        ):
            items[key] = pg.BarGraphItem(x0=[0.0], x1=[0.0], height=[0.0], brush=pg.mkBrush(color),
                                         pen=pg.mkPen((60, 60, 60, 120)), name=name)  # fmt: skip
        items["density"] = pg.PlotDataItem(pen=pg.mkPen((90, 130, 200), width=2),
                                           name="normal P&L density")  # fmt: skip
        for key, rgb in (("var", (200, 120, 0)), ("es", (180, 0, 0))):
            pen = pg.mkPen(rgb, width=2, style=Qt.PenStyle.DashLine)
            items[key] = pg.InfiniteLine(pos=0.0, angle=90, pen=pen)
            items[key + "_key"] = pg.PlotDataItem([0.0, 0.0], [0.0, 0.0],
                                                  pen=pg.mkPen(rgb, width=2), name=key)  # fmt: skip
        self._items = items
        return items

    def _show_item(self, item: Any, on: bool) -> None:
        """Add ``item`` to the plot (and its legend) or take it out."""
        inside = item in self.plot.getPlotItem().items
        if on and not inside:
            self.plot.addItem(item)
        elif not on and inside:
            self.plot.removeItem(item)

    def _draw(self, c: CurrencyRisk) -> None:
        it = self._chart_items()
        ccy = c.currency
        hist = c.pnl.size > 0
        dens = not hist and math.isfinite(c.sigma) and c.sigma > 0
        if hist:
            counts, edges = np.histogram(c.pnl, bins=min(60, max(10, c.pnl.size // 10)))
            tail = edges[:-1] < -c.var
            for key, mask in (("bars", ~tail), ("tail", tail)):
                if mask.any():
                    it[key].setOpts(x0=edges[:-1][mask], x1=edges[1:][mask], height=counts[mask])
                self._show_item(it[key], bool(mask.any()))
            self.plot.setLabel("left", "scenarios")
        else:
            self._show_item(it["bars"], False)
            self._show_item(it["tail"], False)
        if dens:
            x = np.linspace(-4.5 * c.sigma, 4.5 * c.sigma, 400)
            y = np.exp(-0.5 * (x / c.sigma) ** 2) / (c.sigma * math.sqrt(2 * math.pi))
            it["density"].setData(x, y)
            self.plot.setLabel("left", "density")
        self._show_item(it["density"], dens)
        for key, value, label in (("var", c.var, "VaR"), ("es", c.es, "ES")):
            it[key].setPos(-value)
            self._show_item(it[key], True)
            self._show_item(it[key + "_key"], True)
            it["legend"].getLabel(it[key + "_key"]).setText(f"{label} {_money(value)}")
        self.plot.getPlotItem().enableAutoRange()
        days = self.result.horizon_days if self.result else 1
        self.plot.setLabel("bottom", f"{days}-day P&L", units=ccy)  # SI prefix: k, M ...
