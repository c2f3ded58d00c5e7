"""Forward Curve dock: live monthly curves, their last settlement and an optional past curve.

Curves are piecewise constant per delivery month, so they are drawn as steps over month edges
(x = epoch seconds of each month's first day, read by a :class:`pyqtgraph.DateAxisItem`). Each
product owns three PlotDataItems (live, settlement dashed, past dotted) created the first time it
is selected; bridge updates call ``setData`` on them, so a refresh never clears the plot.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.feed.market_state import LiveCurve, MarketState
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.views.market_bridge import MarketBridge
from app.views.market_watch import price_decimals

if TYPE_CHECKING:
    from app.views.jobs import JobRunner
from app.views.widgets import NOTE_STYLE, pydate, qdate

__all__ = ["ForwardCurvePanel", "month_edges"]

log = logging.getLogger(__name__)

HistoryCurve = Callable[[str, dt.date], "tuple[np.ndarray, np.ndarray] | None"]
PALETTE = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037",
           "#ad1457", "#455a64", "#9e9d24", "#283593", "#00695c")  # fmt: skip
WAITING = "Waiting for the price feed…"


def month_edges(months: np.ndarray) -> np.ndarray:
    """Epoch seconds of each month's first day plus the end of the last month (n + 1 edges)."""
    m = np.asarray(months, dtype="datetime64[M]")
    if m.size == 0:
        return np.zeros(0)
    edges = np.concatenate((m, m[-1:] + 1))
    return edges.astype("datetime64[s]").astype(np.int64).astype(float)


def _unit(product: str) -> str:
    spec = PRODUCT_BY_CODE.get(product)
    return f"{spec.currency}/{spec.unit.label}" if spec is not None else "price"


class _Lines:
    """The plot items of one product."""

    def __init__(self, live: Any, settle: Any, past: Any) -> None:
        self.live, self.settle, self.past = live, settle, past
        self.months = np.zeros(0, dtype="datetime64[M]")
        self.prices = np.zeros(0)
        self.settle_months = np.zeros(0, dtype="datetime64[M]")
        self.settle_prices = np.zeros(0)


class ForwardCurvePanel(QWidget):
    """Forward Curve dock: pick products, see live curves over settlement (and a past date)."""

    sig_products_changed = Signal(list)
    """(list[str]) the products shown, after the user changed the selection."""

    def __init__(
        self,
        state: MarketState,
        bridge: MarketBridge,
        history_curve: HistoryCurve | None = None,
        runner: JobRunner | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self._pg = pg
        self.setObjectName("forward_curve")
        self.state = state
        self.bridge = bridge
        self.history_curve = history_curve
        self.runner = runner
        self.lines: dict[str, _Lines] = {}

        self.products = QListWidget()
        self.products.setObjectName("curve_products")
        self.products.setToolTip("Products to plot (tick several to compare)")
        for i, spec in enumerate(PRODUCT_SPECS):
            item = QListWidgetItem(spec.code)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if i == 0 else Qt.CheckState.Unchecked)
            item.setToolTip(f"{spec.name} ({_unit(spec.code)})")
            self.products.addItem(item)
        self.products.setMaximumWidth(170)
        # Wide enough for the longest product code: never clipped when the dock is narrow.
        fm = self.products.fontMetrics()
        widest = max(fm.horizontalAdvance(p.code) for p in PRODUCT_SPECS)
        self.products.setMinimumWidth(min(170, widest + 44))
        self.show_settle = QCheckBox("Settlement (dashed)")
        self.show_settle.setChecked(True)
        self.show_settle.setToolTip("Overlay the last settlement curve (dashed)")
        self.show_past = QCheckBox("Curve on (dotted)")
        self.past_date = QDateEdit(qdate(dt.date.today() - dt.timedelta(days=30)))
        self.past_date.setCalendarPopup(True)
        self.past_date.setDisplayFormat("yyyy-MM-dd")
        self.past_date.setMaximumDate(qdate(dt.date.today()))
        if history_curve is None:
            tip = "No curve history available (the local store supplies it)"
            for w in (self.show_past, self.past_date):
                w.setEnabled(False)
                w.setToolTip(tip)
        else:
            self.show_past.setToolTip("Overlay the settlement curve of a past date (dotted)")

        pg.setConfigOptions(antialias=True)
        self.plot: Any = pg.PlotWidget(
            background="w", axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
        )
        self.plot.setObjectName("curve_plot")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(-10, 10), labelTextColor="#222", brush=(255, 255, 255, 210),
                            pen="#bbb")  # fmt: skip
        self.plot.setLabel("bottom", "Delivery month")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#999", width=1))
        self.vline.hide()
        self.plot.addItem(self.vline, ignoreBounds=True)
        self._mouse = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._mouse_moved)  # fmt: skip
        self.empty = QLabel(WAITING)
        self.empty.setObjectName("curve_empty")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setStyleSheet("color: #666; font-size: 14px; background: white;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.plot)
        self.readout = QLabel(" ")
        self.readout.setObjectName("curve_readout")
        self.readout.setStyleSheet(NOTE_STYLE)
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        self.readout.setWordWrap(True)

        opts = QHBoxLayout()
        opts.setContentsMargins(0, 0, 0, 0)
        opts.addWidget(self.show_settle)
        opts.addSpacing(12)
        opts.addWidget(self.show_past)
        opts.addWidget(self.past_date)
        opts.addStretch(1)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addLayout(opts)
        rv.addWidget(self.stack, 1)
        rv.addWidget(self.readout)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.products)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([140, 600])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.products.itemChanged.connect(self._selection_changed)
        self.show_settle.toggled.connect(self._settle_toggled)
        self.show_past.toggled.connect(lambda _on: self._load_past())
        self.past_date.dateChanged.connect(lambda _d: self._load_past())
        bridge.sig_curves.connect(self.on_curves)
        bridge.sig_settlements.connect(self.on_settlements)
        bridge.sig_stale.connect(self._update_axis)
        self._sync_items()

    # -- selection --------------------------------------------------------------------------
    def selected_products(self) -> list[str]:
        out = []
        for i in range(self.products.count()):
            item = self.products.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.text())
        return out

    def set_products(self, products: list[str]) -> None:
        """Show exactly these products (unknown codes are added to the list)."""
        self.products.blockSignals(True)
        known = {self.products.item(i).text() for i in range(self.products.count())}
        for p in products:
            if p not in known:
                item = QListWidgetItem(p)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                self.products.addItem(item)
        for i in range(self.products.count()):
            item = self.products.item(i)
            on = item.text() in products
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.products.blockSignals(False)
        self._sync_items()

    def show_product(self, product: str) -> None:
        """Slot for Market Watch's ``sig_show_curve``: plot this product alone."""
        self.set_products([product])

    def _selection_changed(self, _item: QListWidgetItem) -> None:
        self._sync_items()
        self.sig_products_changed.emit(self.selected_products())

    def _sync_items(self) -> None:
        """Create/attach the items of selected products, detach the others (not per refresh)."""
        pg = self._pg
        selected = self.selected_products()
        plot = self.plot.getPlotItem()
        for p in list(self.lines):
            if p not in selected:
                lines = self.lines.pop(p)
                for item in (lines.live, lines.settle, lines.past):
                    plot.removeItem(item)
        for p in selected:
            if p in self.lines:
                continue
            colour = (
                PALETTE[list(PRODUCT_BY_CODE).index(p) % len(PALETTE)]
                if p in PRODUCT_BY_CODE
                else "#333"
            )
            live = pg.PlotDataItem(name=p, pen=pg.mkPen(colour, width=2), stepMode="center")
            settle = pg.PlotDataItem(  # unnamed: the legend lists live curves only
                pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                stepMode="center",
            )
            past = pg.PlotDataItem(
                pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DotLine),
                stepMode="center",
            )
            self.lines[p] = _Lines(live, settle, past)
            plot.addItem(live)
            if self.show_settle.isChecked():
                plot.addItem(settle)
            self._refresh_live(p)
            self._refresh_settle(p)
        self._update_axis()
        self._load_past()

    def _settle_toggled(self, on: bool) -> None:
        plot = self.plot.getPlotItem()
        for lines in self.lines.values():
            if on and lines.settle not in plot.items:
                plot.addItem(lines.settle)
            elif not on and lines.settle in plot.items:
                plot.removeItem(lines.settle)

    # -- data -------------------------------------------------------------------------------
    def on_curves(self, products: set[str]) -> None:
        """Slot for the bridge: live curves changed."""
        shown = [p for p in products if p in self.lines]
        for p in shown:
            self._refresh_live(p)
        if shown:
            self._update_axis()

    def on_settlements(self, products: set[str]) -> None:
        """Slot for the bridge: settlement curves changed."""
        for p in products:
            if p in self.lines:
                self._refresh_settle(p)

    def _refresh_live(self, product: str) -> None:
        c = self.state.live_curve(product)
        if c is None:
            return
        lines = self.lines[product]
        lines.months, lines.prices = c.months, np.asarray(c.prices, dtype=float)
        lines.live.setData(month_edges(c.months), lines.prices)
        if self.stack.currentIndex() == 0:
            self.stack.setCurrentIndex(1)

    def _refresh_settle(self, product: str) -> None:
        c: LiveCurve | None = self.state.settlement_curve(product)
        if c is None:
            return
        lines = self.lines[product]
        lines.settle_months, lines.settle_prices = c.months, np.asarray(c.prices, dtype=float)
        lines.settle.setData(month_edges(c.months), lines.settle_prices)

    def _load_past(self) -> None:
        plot = self.plot.getPlotItem()
        on = self.history_curve is not None and self.show_past.isChecked()
        for lines in self.lines.values():
            if not on and lines.past in plot.items:
                plot.removeItem(lines.past)
        if not on or self.history_curve is None:
            return
        day = pydate(self.past_date.date())
        fn = self.history_curve
        products = list(self.lines)

        def work(_ctx: Any = None) -> dict[str, Any]:
            return {p: fn(p, day) for p in products}

        if self.runner is not None:
            self.runner.submit(f"Curves on {day}", work, on_result=self._show_past,
                               on_error=self._past_failed, key=f"curve-past:{id(self)}")  # fmt: skip
        else:
            self._show_past(work())

    def _show_past(self, result: dict[str, Any]) -> None:
        plot = self.plot.getPlotItem()
        for p, got in result.items():
            lines = self.lines.get(p)
            if lines is None:
                continue
            if got is None:
                if lines.past in plot.items:
                    plot.removeItem(lines.past)
                continue
            months, prices = got
            lines.past.setData(month_edges(months), np.asarray(prices, dtype=float))
            if lines.past not in plot.items:
                plot.addItem(lines.past)

    def _past_failed(self, message: str) -> None:
        self.readout.setText(f"<span style='color:#b3261e'>{message}</span>")

    def _update_axis(self) -> None:
        selected = list(self.lines)
        if not selected:
            self.plot.setLabel("left", "")
            self.plot.setTitle("Tick a product to plot its forward curve", color="#666")
            return
        unit = _unit(selected[0])
        self.plot.setLabel("left", unit)
        stale = [p for p in selected if self.state.is_stale(p)]
        title = ", ".join(selected[:4]) + (" …" if len(selected) > 4 else "")
        if stale:
            title += "  (STALE: feed not live)"
        self.plot.setTitle(title, color="#b3261e" if stale else "#333", size="10pt")
        if not any(self.state.live_curve(p) is not None for p in selected):
            self.empty.setText(WAITING)
            self.stack.setCurrentIndex(0)
        else:
            self.stack.setCurrentIndex(1)

    # -- hover ------------------------------------------------------------------------------
    def _mouse_moved(self, event: Any) -> None:
        pos = event[0]
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(pos):
            return
        x = vb.mapSceneToView(pos).x()
        self.vline.setPos(x)
        self.vline.show()
        self.readout.setText(self.readout_at(x))

    def readout_at(self, x: float) -> str:
        """Read-out (rich text) for the delivery month at epoch seconds ``x``."""
        try:
            month = np.datetime64(dt.datetime.fromtimestamp(x, dt.UTC).replace(tzinfo=None), "M")
        except (ValueError, OverflowError, OSError):
            return " "
        parts = [f"<b>{dt.date.fromisoformat(str(month) + '-01'):%b-%y}</b>"]
        axis_unit = _unit(next(iter(self.lines))) if self.lines else ""
        for p, lines in self.lines.items():
            k = int((month - lines.months[0]).astype(int)) if lines.months.size else -1
            if not 0 <= k < lines.prices.size:
                continue
            v = float(lines.prices[k])
            d = price_decimals(p, v)
            text = f"{p} {v:,.{d}f}"
            ks = (
                int((month - lines.settle_months[0]).astype(int))
                if lines.settle_months.size
                else -1
            )
            if 0 <= ks < lines.settle_prices.size:
                text += f" ({v - float(lines.settle_prices[ks]):+,.{d}f} vs settle)"
            if _unit(p) != axis_unit:
                text += f" <span style='color:#b3261e'>[{_unit(p)}, axis is {axis_unit}]</span>"
            parts.append(text)
        return " · ".join(parts) if len(parts) > 1 else parts[0] + " · no curve here"

    def item_for(self, product: str, kind: str = "live") -> Any:
        """The PlotDataItem of a product: ``live``, ``settle`` or ``past`` (tests read it)."""
        return getattr(self.lines[product], kind)
