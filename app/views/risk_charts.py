"""Risk charts: the Backtest and VaR-history tabs of the Risk panel, and the contributions chart.

* :class:`BacktestPanel` runs :func:`app.services.backtest.run_backtest` on the job runner for
  the Risk panel's current book (method, confidence, backtest days, window) and draws the daily
  hypothetical P&L with the ``-VaR`` forecast and the exceptions (red), beside a statistics
  table (observations, exceptions, expected, Kupiec, Christoffersen, traffic light).
* :class:`VarHistoryPanel` keeps every result of ``RiskPanel.sig_calculated`` in bounded ring
  buffers (:data:`MAX_POINTS` per series, one series per currency x method x confidence x
  horizon) and plots VaR and ES against the time of the calculation, with the last values in a
  table.
* :class:`ContributionsChart` draws a :class:`~app.services.risk.CurrencyRisk`'s ES
  contributions as sorted horizontal bars; a double-click on a bar emits ``sig_drill(label)``
  and opens :class:`TradesDialog`, the trades behind the group (rows built on a worker thread).

:func:`install_risk_charts` adds the two tabs to a :class:`~app.views.risk_panel.RiskPanel`.
See ``docs/risk-backtest.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QEvent,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QMouseEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.services.backtest import (
    BACKTEST_DAYS,
    BACKTEST_METHODS,
    BACKTEST_WINDOWS,
    BacktestReport,
    CurrencyBacktest,
    run_backtest,
)
from app.services.risk import CONFIDENCES, DEFAULT_WINDOW, METHODS, CurrencyRisk, RiskResult
from app.views.jobs import JobContext, JobRunner

__all__ = [
    "MAX_POINTS",
    "BacktestPanel",
    "ContributionsChart",
    "TradesDialog",
    "VarHistoryPanel",
    "drill_rows",
    "install_risk_charts",
]

#: Points kept per VaR-history series (the oldest are dropped).
MAX_POINTS = 10_000
#: Series kept in the VaR history (the least recently updated is dropped).
MAX_SERIES = 24
#: Trades listed in a drill-down (the largest |delta| first).
MAX_DRILL_ROWS = 2_000
#: Series named in the VaR-history legend (more: the coloured table below is the legend).
MAX_LEGEND = 6
ZONE_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}
_PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
            (140, 86, 75), (23, 190, 207), (227, 119, 194), (127, 127, 127), (188, 189, 34))  # fmt: skip
_DAY_S = 86_400.0


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


def _epoch(dates: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` -> epoch seconds (noon UTC, so the date axis shows the right day)."""
    days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64).astype(float)
    return days * _DAY_S + _DAY_S / 2


def _item(text: str, right: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    if right:
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return it


def _small_table(headers: list[str]) -> QTableWidget:
    """A read-only table for a handful of rows (statistics, last values)."""
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().hide()
    t.verticalHeader().setDefaultSectionSize(22)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _compact(v: float) -> str:
    """Axis tick text: ``-2.5M``, ``750k``, ``12``."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:,.4g}G"
    if a >= 1e6:
        return f"{v / 1e6:,.4g}M"
    if a >= 1e3:
        return f"{v / 1e3:,.4g}k"
    return f"{v:,.4g}"


_AXIS_CLASS: Any = None


def _money_axis(orientation: str) -> Any:
    """A pyqtgraph axis with compact money ticks (the class is made on first use: lazy)."""
    global _AXIS_CLASS
    if _AXIS_CLASS is None:
        import pyqtgraph as pg

        class MoneyAxis(pg.AxisItem):  # type: ignore[misc, name-defined]
            def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:
                return [_compact(v * scale) for v in values]

        _AXIS_CLASS = MoneyAxis
    return _AXIS_CLASS(orientation=orientation)


def _plot(date_axis: bool = True, money: str = "left") -> Any:
    """A white plot with a date x axis (or not) and compact money ticks on ``money``."""
    import pyqtgraph as pg  # lazy: keeps application start-up fast

    axes = {money: _money_axis(money)}
    if date_axis:
        axes["bottom"] = pg.DateAxisItem(orientation="bottom")
    w = pg.PlotWidget(background="w", axisItems=axes)
    w.showGrid(x=True, y=True, alpha=0.2)
    w.setMinimumHeight(180)
    return w


# --------------------------------------------------------------------------- backtest tab


_STAT_ROWS = ("Observations (days)", "Exceptions", "Expected", "Exception rate",
              "Kupiec POF LR", "Kupiec p-value", "Christoffersen LR", "Christoffersen p-value",
              "Cond. coverage p-value", "Traffic light", "Worst day P&L")  # fmt: skip


class BacktestPanel(QWidget):
    """Backtest of the Risk panel's current book on the real series (see the module docstring).

    ``risk_panel`` supplies ``runner``, ``report``, ``selected_books()``, ``build_inputs`` and
    ``service()`` (the last two run on the worker thread).
    """

    sig_done = Signal(object)
    """(BacktestReport) a new backtest is shown."""

    def __init__(self, risk_panel: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("risk_backtest")
        self.risk_panel = risk_panel
        self.runner: JobRunner = risk_panel.runner
        self.report: BacktestReport | None = None
        self._job: Any = None

        self.method = QComboBox()
        self.method.setObjectName("backtest_method")
        for key, title in BACKTEST_METHODS.items():
            self.method.addItem(title, key)
        self.confidence = QComboBox()
        self.confidence.setObjectName("backtest_confidence")
        for c in CONFIDENCES:
            self.confidence.addItem(f"{c:.1%}", c)
        self.confidence.setCurrentIndex(len(CONFIDENCES) - 1)
        self.days = QComboBox()
        self.days.setObjectName("backtest_days")
        for d in BACKTEST_DAYS:
            self.days.addItem(f"{d} days", d)
        self.window_box = QComboBox()
        self.window_box.setObjectName("backtest_window")
        for w in BACKTEST_WINDOWS:
            self.window_box.addItem(f"{w} days", w)
        self.window_box.setCurrentIndex(self.window_box.findData(DEFAULT_WINDOW))
        self.currency = QComboBox()
        self.currency.setObjectName("backtest_currency")
        self.currency.currentIndexChanged.connect(lambda _i: self._show_currency())
        self.run_button = QPushButton("Run backtest")
        self.run_button.setObjectName("backtest_run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("backtest_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(120)
        self.progress.setTextVisible(False)
        self.progress.hide()
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        boxes = (("Method", self.method), ("Confidence", self.confidence),
                 ("Backtest", self.days), ("Window", self.window_box))  # fmt: skip
        for text, box in boxes:
            bar.addWidget(QLabel(text))
            bar.addWidget(box)
        bar.addStretch(1)
        bar.addWidget(self.progress)
        bar.addWidget(self.run_button)
        bar.addWidget(self.cancel_button)

        self.message = QLabel("Run a backtest of the current book on the bundled real prices.")
        self.message.setObjectName("backtest_message")
        self.message.setWordWrap(True)
        self.note = QLabel("")
        self.note.setObjectName("backtest_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.setStyleSheet("color: #555; font-size: 11px;")
        ccy_bar = QHBoxLayout()
        ccy_bar.setContentsMargins(0, 0, 0, 0)
        ccy_bar.addWidget(QLabel("Chart for"))
        ccy_bar.addWidget(self.currency)
        ccy_bar.addStretch(1)

        self.plot: Any = _plot()
        self.plot.setObjectName("backtest_chart")
        self.table = _small_table(["Statistic"])
        self.table.setObjectName("backtest_stats")
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setMinimumWidth(260)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addWidget(self.note)
        lay.addLayout(ccy_bar)
        lay.addWidget(split, 1)

    # ------------------------------------------------------------------ job

    def run(self) -> None:
        """Submit a backtest with the current settings (supersedes a running one)."""
        report = self.risk_panel.report
        if report is None:
            self._show_message("No positions yet: revalue the Positions panel first.")
            return
        rp = self.risk_panel
        books = rp.selected_books()
        method = str(self.method.currentData())
        confidence = float(self.confidence.currentData())
        days = int(self.days.currentData())
        window = int(self.window_box.currentData())

        def work(ctx: JobContext) -> BacktestReport:
            try:
                inputs = rp.build_inputs(report, "product", books)
            except (AttributeError, TypeError, KeyError) as exc:
                raise ValueError(f"cannot read the positions: {exc}") from exc
            ctx.progress(0.0, "reading price history")
            service = rp.service()
            ctx.check()
            return run_backtest(service, inputs, method, confidence, days, window,
                                progress=lambda f: ctx.progress(f, "revaluing"),
                                cancelled=ctx.cancelled)  # fmt: skip

        self.message.setStyleSheet("")
        self.message.setText(f"Backtesting {BACKTEST_METHODS[method]} VaR over {days} days…")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self._job = self.runner.submit(
            f"Backtest: {BACKTEST_METHODS[method]} {confidence:.1%} {days}d",
            work,
            on_result=self._on_result,
            on_error=self._on_error,
            on_progress=self._on_progress,
            key="risk-backtest",
        )
        self._job.sig_finished.connect(self._on_finished)

    def cancel(self) -> None:
        """Cancel the running backtest (the last result stays on screen)."""
        if self._job is not None:
            self._job.cancel()
            self.message.setText("Backtest cancelled.")

    def _on_progress(self, fraction: float, _text: str) -> None:
        self.progress.setValue(int(fraction * 100))

    def _on_finished(self) -> None:
        if self.sender() is not self._job:
            return
        self._job = None
        self.progress.hide()
        self.cancel_button.setEnabled(False)

    def _on_error(self, text: str) -> None:
        self._show_message(f"Backtest failed: {text}")

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #b3261e;")

    # ------------------------------------------------------------------ display

    def _on_result(self, rep: BacktestReport) -> None:
        self.report = rep
        self.message.setStyleSheet("")
        zones = " · ".join(
            f"{c.currency} {c.n_exceptions}/{c.n_obs} {c.traffic_light}" for c in rep.currencies
        )
        self.message.setText(
            f"{BACKTEST_METHODS[rep.method]} · {rep.confidence:.1%} · {rep.days} days "
            f"{rep.start:%d %b %Y} – {rep.end:%d %b %Y} · {zones}"
        )
        self.note.setText(rep.note())
        self._fill_table(rep)
        current = self.currency.currentText()
        self.currency.blockSignals(True)
        self.currency.clear()
        for c in rep.currencies:
            self.currency.addItem(c.currency)
        self.currency.setCurrentIndex(max(self.currency.findText(current), 0))
        self.currency.blockSignals(False)
        self._show_currency()
        self.sig_done.emit(rep)

    def _fill_table(self, rep: BacktestReport) -> None:
        t = self.table
        t.clear()
        t.setColumnCount(1 + len(rep.currencies))
        t.setHorizontalHeaderLabels(["Statistic"] + [c.currency for c in rep.currencies])
        t.setRowCount(len(_STAT_ROWS))
        for r, name in enumerate(_STAT_ROWS):
            t.setItem(r, 0, _item(name))
        for col, c in enumerate(rep.currencies, start=1):
            values = (
                f"{c.n_obs}",
                f"{c.n_exceptions}",
                f"{c.expected:.1f}",
                f"{c.exception_rate:.2%}",
                f"{c.kupiec[0]:.3f}",
                f"{c.kupiec[1]:.4f}",
                f"{c.christoffersen[0]:.3f}",
                f"{c.christoffersen[1]:.4f}",
                f"{c.conditional_coverage[1]:.4f}",
                c.traffic_light.upper(),
                _money(float(c.pnl.min())) if c.pnl.size else "–",
            )
            for r, v in enumerate(values):
                it = _item(v, right=True)
                if _STAT_ROWS[r] == "Traffic light":
                    it.setBackground(QBrush(QColor(ZONE_COLOURS[c.traffic_light])))
                    it.setForeground(QBrush(QColor("black" if c.traffic_light == "yellow"
                                                   else "white")))  # fmt: skip
                    f = it.font()
                    f.setBold(True)
                    it.setFont(f)
                t.setItem(r, col, it)
        t.resizeColumnsToContents()
        width = sum(t.columnWidth(i) for i in range(t.columnCount()))
        t.setMinimumWidth(min(width + 2 * t.frameWidth() + 4, 560))
        t.setMaximumWidth(width + 2 * t.frameWidth() + 24)  # the chart takes the rest

    def _show_currency(self) -> None:
        if self.report is None or self.currency.currentIndex() < 0:
            return
        self.draw(self.report.currencies[self.currency.currentIndex()])

    def draw(self, c: CurrencyBacktest) -> None:
        """Daily P&L bars, the ``-VaR`` forecast and the exceptions of one currency."""
        import pyqtgraph as pg

        p = self.plot
        p.clear()
        p.addLegend(offset=(10, 10), labelTextColor=(40, 40, 40), brush=(255, 255, 255, 220))
        x = _epoch(c.dates)
        p.addItem(pg.BarGraphItem(x=x, height=c.pnl, width=0.8 * _DAY_S,
                                  brush=pg.mkBrush(90, 130, 200, 170), pen=pg.mkPen(None),
                                  name="hypothetical daily P&L"))  # fmt: skip
        p.plot(x, -c.var, pen=pg.mkPen((200, 120, 0), width=2), stepMode=None,
               name=f"−VaR forecast ({self.report.confidence:.1%})" if self.report else "−VaR")  # fmt: skip
        if c.n_exceptions:
            p.plot(x[c.exceptions], c.pnl[c.exceptions], pen=None, symbol="o", symbolSize=9,
                   symbolBrush=pg.mkBrush(220, 20, 20), symbolPen=pg.mkPen(120, 0, 0),
                   name=f"exceptions ({c.n_exceptions})")  # fmt: skip
        p.setLabel("left", f"P&L ({c.currency})")
        p.setLabel("bottom", "backtest day")


# --------------------------------------------------------------------------- VaR history


class _Ring:
    """Time, VaR and ES of one series: a doubled buffer, so the visible part is one slice."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = np.empty((3, 2 * cap))
        self.start = 0
        self.end = 0

    def append(self, t: float, var: float, es: float) -> None:
        if self.end == self.buf.shape[1]:  # full: move the newest cap-1 to the front
            keep = self.cap - 1
            self.buf[:, :keep] = self.buf[:, self.end - keep : self.end]
            self.start, self.end = 0, keep
        self.buf[:, self.end] = (t, var, es)
        self.end += 1
        self.start = max(self.start, self.end - self.cap)

    def view(self) -> np.ndarray:
        return self.buf[:, self.start : self.end]

    def __len__(self) -> int:
        return self.end - self.start


class VarHistoryPanel(QWidget):
    """VaR and ES per currency over time, appended from every risk result (see the module doc).

    A series is one (currency, method, confidence, horizon); its name says so. The x axis is
    the wall-clock time of the calculation; the table gives each series' last values and the
    positions' as-of date.
    """

    def __init__(self, max_points: int = MAX_POINTS, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("risk_var_history")
        self.max_points = int(max_points)
        self.series: dict[tuple[str, str, float, int], _Ring] = {}
        self._last: dict[tuple[str, str, float, int], tuple[float, float, float, dt.date]] = {}
        self._colours: dict[tuple[str, str, float, int], tuple[int, int, int]] = {}
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(150)  # coalesce bursts of results into one redraw
        self._redraw.timeout.connect(self.draw)

        self.currency = QComboBox()
        self.currency.setObjectName("history_currency")
        self.currency.addItem("All currencies", "")
        self.currency.currentIndexChanged.connect(lambda _i: self.draw())
        self.show_es = QComboBox()
        self.show_es.setObjectName("history_measure")
        for text in ("VaR and ES", "VaR only", "ES only"):
            self.show_es.addItem(text)
        self.show_es.currentIndexChanged.connect(lambda _i: self.draw())
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("history_clear")
        self.clear_button.clicked.connect(self.clear)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("Currency"))
        bar.addWidget(self.currency)
        bar.addWidget(QLabel("Show"))
        bar.addWidget(self.show_es)
        bar.addStretch(1)
        bar.addWidget(self.clear_button)
        self.message = QLabel("Every VaR/ES calculation of the Risk panel is added here.")
        self.message.setObjectName("history_message")
        self.message.setStyleSheet("color: #555; font-size: 11px;")
        self.plot: Any = _plot()
        self.plot.setObjectName("history_chart")
        item = self.plot.getPlotItem()
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.table = _small_table(["Series", "Last at", "VaR", "ES", "Positions as of", "Points"])
        self.table.setObjectName("history_last")
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setSizes([300, 140])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.message)
        lay.addWidget(split, 1)

    @staticmethod
    def series_name(key: tuple[str, str, float, int]) -> str:
        ccy, method, conf, h = key
        return f"{ccy} · {METHODS.get(method, method)} · {conf:.1%} · {h}d"

    def append_result(self, result: RiskResult, at: float | None = None) -> None:
        """Add one point per currency of ``result`` (``at``: epoch seconds, default now)."""
        t = time.time() if at is None else float(at)
        for c in result.currencies:
            key = (c.currency, result.method, float(result.confidence), int(result.horizon_days))
            ring = self.series.get(key)
            if ring is None:
                if len(self.series) >= MAX_SERIES:
                    oldest = min(self._last, key=lambda k: self._last[k][0])
                    for d in (self.series, self._last, self._colours):
                        d.pop(oldest, None)
                ring = self.series[key] = _Ring(self.max_points)
                used = set(self._colours.values())
                free = [c for c in _PALETTE if c not in used]
                self._colours[key] = free[0] if free else _PALETTE[len(self.series) % 10]
            ring.append(t, c.var, c.es)
            self._last[key] = (t, c.var, c.es, result.as_of)
            if self.currency.findData(c.currency) < 0:
                self.currency.addItem(c.currency, c.currency)
        if not self._redraw.isActive():
            self._redraw.start()

    def clear(self) -> None:
        self.series.clear()
        self._last.clear()
        self._colours.clear()
        self.draw()

    def _keys(self) -> list[tuple[str, str, float, int]]:
        ccy = str(self.currency.currentData() or "")
        return [k for k in self.series if not ccy or k[0] == ccy]

    def draw(self) -> None:
        """Redraw the curves and the last-values table."""
        import pyqtgraph as pg

        p = self.plot
        p.clear()
        mode = self.show_es.currentIndex()
        keys = self._keys()
        legend = p.addLegend(offset=(10, 10), labelTextColor=(40, 40, 40),
                             brush=(255, 255, 255, 220))  # fmt: skip
        legend.setVisible(len(keys) <= MAX_LEGEND)  # beyond that the coloured table is the key
        for key in keys:
            v = self.series[key].view()
            colour = self._colours[key]
            name = self.series_name(key)
            sym = "o" if v.shape[1] < 200 else None  # dots while few points: each is readable
            if mode in (0, 1):
                p.plot(v[0], v[1], pen=pg.mkPen(colour, width=2), symbol=sym, symbolSize=5,
                       symbolBrush=colour, name=name if mode == 0 else f"VaR {name}")  # fmt: skip
            if mode in (0, 2):
                p.plot(v[0], v[2], pen=pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine),
                       symbol=sym, symbolSize=5, symbolBrush=colour,
                       name=None if mode == 0 else f"ES {name}")  # fmt: skip
        p.setLabel("left", "VaR / ES (currency of the series)")
        p.setLabel("bottom", "time of calculation")
        self.table.setRowCount(len(keys))
        for r, key in enumerate(keys):
            t, var, es, as_of = self._last[key]
            cell = _item(self.series_name(key))
            cell.setForeground(QBrush(QColor(*self._colours[key])))
            self.table.setItem(r, 0, cell)
            self.table.setItem(r, 1, _item(time.strftime("%H:%M:%S", time.localtime(t))))
            self.table.setItem(r, 2, _item(_money(var), True))
            self.table.setItem(r, 3, _item(_money(es), True))
            self.table.setItem(r, 4, _item(as_of.isoformat()))
            self.table.setItem(r, 5, _item(f"{len(self.series[key]):,}", True))
        n = sum(len(r) for r in self.series.values())
        self.message.setText(
            f"{len(self.series)} series, {n:,} points (at most {self.max_points:,} per series); "
            "solid = VaR, dashed = ES; a new series starts when the method, confidence or "
            "horizon changes."
        )


# --------------------------------------------------------------------------- contributions


def drill_rows(
    report: Any,
    label: str,
    group_by: str = "product",
    currency: str | None = None,
    books: list[str] | None = None,
    limit: int = MAX_DRILL_ROWS,
) -> tuple[list[dict[str, Any]], int]:
    """The open, marked trades behind a contributions ``label`` (largest |delta| first).

    ``label`` is a product code, a book name or a ``'<uuid[:8]> <product>'`` trade label, as
    :func:`app.services.risk.risk_inputs` makes them for ``group_by``. Returns at most
    ``limit`` rows of :meth:`PositionReport.trade_rows` and the total count. O(trades): call
    on a worker thread.
    """
    snap = report.snapshot
    product = np.asarray(report.product, dtype=object)
    n = product.size
    book_ids = np.asarray(snap.columns["book_id"]) if "book_id" in snap.columns else np.zeros(n)
    ref_books = snap.ref.books
    names = {int(b): str(v.name) for b, v in ref_books.items()}
    book_name = np.array([names.get(int(b), f"#{int(b)}") for b in book_ids], dtype=object)
    if group_by == "product":
        sel = product == label
    elif group_by == "book":
        sel = book_name == label
    else:
        prefix, _, prod = label.partition(" ")
        uu = np.asarray(snap.columns["trade_uuid"], dtype=object)
        sel = np.array([str(u).startswith(prefix) for u in uu], dtype=bool) & (product == prod)
    sel &= (np.asarray(report.valuation.open_qty) > 0) & (np.asarray(report.valuation.reason) == 0)
    if currency:
        sel &= np.asarray(report.currency, dtype=object) == currency
    if books:
        wanted = {b.casefold() for b in books}
        sel &= np.array([str(b).casefold() in wanted for b in book_name], dtype=bool)
    idx = np.flatnonzero(sel)
    delta = np.abs(np.nan_to_num(np.asarray(report.valuation.delta_qty, dtype=float)[idx]))
    idx = idx[np.argsort(-delta, kind="stable")][:limit]
    return report.trade_rows(idx), int(sel.sum())


_DRILL_COLUMNS = (("trade_uuid", "Trade"), ("book", "Book"), ("product", "Product"),
                  ("instrument", "Instrument"), ("side", "Side"), ("open_qty", "Open qty"),
                  ("unit", "Unit"), ("price", "Price"), ("currency", "Ccy"),
                  ("delivery_start", "From"), ("delivery_end", "To"), ("forward", "Forward"),
                  ("delta_qty", "Delta"), ("mtm", "MtM"))  # fmt: skip
_NUMERIC = {"open_qty", "price", "forward", "delta_qty", "mtm"}


class _RowsModel(QAbstractTableModel):
    """A small read-only model over a list of drill-down rows (at most MAX_DRILL_ROWS)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.rows = rows

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_DRILL_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _DRILL_COLUMNS[section][1]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        key = _DRILL_COLUMNS[index.column()][0]
        v = self.rows[index.row()][key]
        if role == Qt.ItemDataRole.DisplayRole:
            if key == "trade_uuid":
                return str(v)[:8]
            if key in _NUMERIC:
                return f"{v:,.2f}" if key in ("price", "forward") else f"{v:,.0f}"
            return str(v)
        if role == Qt.ItemDataRole.TextAlignmentRole and key in _NUMERIC:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and key == "trade_uuid":
            return str(v)
        return None


class TradesDialog(QDialog):
    """The trades behind one contributions bar (a product, book or trade group)."""

    def __init__(
        self, title: str, rows: list[dict[str, Any]], total: int, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("risk_drill")
        self.setWindowTitle(f"Trades behind {title}")
        self.model = _RowsModel(rows)
        self.view = QTableView()
        self.view.setObjectName("risk_drill_table")
        self.view.setModel(self.model)
        self.view.verticalHeader().hide()
        self.view.verticalHeader().setDefaultSectionSize(22)
        self.view.setAlternatingRowColors(True)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        shown = f"{len(rows):,} of {total:,}" if total > len(rows) else f"{total:,}"
        self.summary = QLabel(f"{title}: {shown} open trade(s), largest |delta| first.")
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.view, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(close)
        lay.addLayout(row)
        self.resize(980, 420)


class ContributionsChart(QWidget):
    """Horizontal bars of a :class:`CurrencyRisk`'s ES contributions, largest on top.

    A double-click on a bar emits :attr:`sig_drill` and, when a ``runner`` and a positions
    report are set (:meth:`set_context`), opens :class:`TradesDialog` for that group.
    """

    sig_drill = Signal(str)
    """(label) the user asked for the trades behind a bar."""

    def __init__(self, runner: JobRunner | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("risk_contributions_chart")
        self.runner = runner
        self.risk: CurrencyRisk | None = None
        self.labels: list[str] = []
        self.values = np.zeros(0)
        self.report: Any = None
        self.group_by = "product"
        self.books: list[str] | None = None
        self.dialog: TradesDialog | None = None
        self.plot: Any = _plot(date_axis=False, money="bottom")
        self.plot.setObjectName("contributions_chart")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.viewport().installEventFilter(self)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self.sig_drill.connect(self.open_drill)

    def set_context(self, report: Any, group_by: str, books: list[str] | None = None) -> None:
        """The positions report (and the grouping and book filter) behind the contributions."""
        self.report, self.group_by, self.books = report, group_by, books

    def set_risk(self, risk: CurrencyRisk | None) -> None:
        """Draw ``risk``'s contributions (``None`` clears)."""
        import pyqtgraph as pg

        self.risk = risk
        p = self.plot
        p.clear()
        if risk is None or not risk.contributions:
            self.labels, self.values = [], np.zeros(0)
            return
        rows = sorted(risk.contributions, key=lambda r: abs(r.contribution))  # largest on top
        self.labels = [r.label for r in rows]
        self.values = np.array([r.contribution for r in rows])
        y = np.arange(len(rows), dtype=float)
        pos = self.values >= 0
        for mask, rgb in ((pos, (200, 80, 70)), (~pos, (70, 150, 90))):
            if mask.any():
                p.addItem(pg.BarGraphItem(x0=np.zeros(int(mask.sum())), y=y[mask],
                                          width=self.values[mask], height=0.7,
                                          brush=pg.mkBrush(*rgb, 200),
                                          pen=pg.mkPen(60, 60, 60, 120)))  # fmt: skip
        span = float(np.abs(self.values).max()) or 1.0
        for yi, r in zip(y, rows, strict=True):
            share = f" ({r.share:.0%})" if math.isfinite(r.share) else ""
            text = pg.TextItem(f"{_money(r.contribution)}{share}", color=(30, 30, 30),
                               anchor=(0, 0.5) if r.contribution >= 0 else (1, 0.5))  # fmt: skip
            text.setPos(r.contribution + (0.01 if r.contribution >= 0 else -0.01) * span, yi)
            p.addItem(text)
        axis = p.getAxis("left")
        axis.setTicks([[(float(i), lab) for i, lab in enumerate(self.labels)]])
        fm = QFontMetrics(axis.font() if hasattr(axis, "font") else self.font())
        axis.setWidth(max(fm.horizontalAdvance(lab) for lab in self.labels) + 16)
        lo = min(0.0, float(self.values.min()))
        hi = max(0.0, float(self.values.max()))
        pad = 0.35 * (hi - lo or 1.0)  # room for the value labels
        p.setXRange(lo - (pad if lo < 0 else 0.02 * span), hi + pad, padding=0)
        p.setYRange(-0.6, len(rows) - 0.4, padding=0)
        p.setLabel("bottom", f"ES contribution ({risk.currency}); total = ES {_money(risk.es)}")

    def label_at(self, scene_pos: Any) -> str | None:
        """The label of the bar under a scene position (``None``: no bar there)."""
        if not self.labels:
            return None
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        pt = vb.mapSceneToView(scene_pos)
        i = round(pt.y())
        if not 0 <= i < len(self.labels) or abs(pt.y() - i) > 0.4:
            return None
        v = float(self.values[i])
        span = float(np.abs(self.values).max()) or 1.0
        lo, hi = min(0.0, v), max(0.0, v)
        return self.labels[i] if lo - 0.02 * span <= pt.x() <= hi + 0.02 * span else None

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # Qt delivers the second press of a double-click as MouseButtonDblClick; reading it
        # here (not pyqtgraph's click bookkeeping) works the same for mice and QTest.
        if event.type() == QEvent.Type.MouseButtonDblClick and isinstance(event, QMouseEvent):
            scene_pos = self.plot.mapToScene(event.position().toPoint())
            label = self.label_at(scene_pos)
            if label is not None:
                self.sig_drill.emit(label)
                return True
        return super().eventFilter(obj, event)

    def open_drill(self, label: str) -> None:
        """Build the trade rows of ``label`` on the runner and show them in a dialog."""
        if self.runner is None or self.report is None:
            return
        report, group_by, books = self.report, self.group_by, self.books
        ccy = self.risk.currency if self.risk is not None else None

        def work(_ctx: JobContext) -> tuple[str, list[dict[str, Any]], int]:
            rows, total = drill_rows(report, label, group_by, ccy, books)
            return (f"{label} ({ccy})" if ccy else label), rows, total

        self.runner.submit(f"Trades behind {label}", work, on_result=self._show_drill,
                           key="risk-drill")  # fmt: skip

    def _show_drill(self, out: tuple[str, list[dict[str, Any]], int]) -> None:
        title, rows, total = out
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
        self.dialog = TradesDialog(title, rows, total, self)
        self.dialog.show()


# --------------------------------------------------------------------------- installation


def install_risk_charts(risk_panel: Any) -> tuple[BacktestPanel, VarHistoryPanel]:
    """Add the Backtest and VaR-history tabs to ``risk_panel`` and feed the history."""
    backtest = BacktestPanel(risk_panel)
    history = VarHistoryPanel()
    risk_panel.add_tab(backtest, "Backtest")
    risk_panel.add_tab(history, "VaR history")
    risk_panel.sig_calculated.connect(history.append_result)
    if getattr(risk_panel, "result", None) is not None:
        history.append_result(risk_panel.result)
    return backtest, history
