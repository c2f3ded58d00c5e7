"""Options pricer panel: price, greeks, implied vol, charts and a strike x expiry grid.

Every calculation runs on the :class:`~app.views.jobs.JobRunner` (key ``"pricer"`` for the
single option and charts, ``"pricer-grid"`` for the grid), so the latest request wins and the
GUI thread never prices. Input changes restart a 150 ms debounce timer.

Units shown
-----------
* price: per unit of the product (currency/unit), discounted with the typed rate;
* delta per 1 unit of the forward, gamma per unit squared;
* vega per 1 vol point (engine vega / 100) for lognormal models; per 1.00 price unit of
  normal vol for Bachelier;
* theta per calendar day (engine theta / 365); rho per 1 % of rate (engine rho / 100);
* T is Act/365: ``(expiry - today).days / 365``.

Greeks of the American (Leisen-Reimer tree) and Asian (Turnbull-Wakeman) models are
bump-and-reprice central differences of the respective pricer, all bumps priced in one
vectorised call: F by 0.5 % (delta, gamma), vol by 1 point (vega), rate by 1 bp (rho) and
calendar time by one day (theta; one-sided when fewer than two days remain).

The calculations themselves live in :mod:`app.services.option_pricing` (no Qt). The forward is
*Live* by default: the delivery-weighted forward of the calendar month after expiry, read from
the product's live curve in the market state and refreshed when the market bridge reports a
curve change; *Typed* (or no curve yet) uses the value entered, starting from a typical level
(:data:`~app.services.option_pricing.TYPICAL_LEVEL`).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.feed.market_state import MarketState
from app.models.enums import InstrumentType, OptionType
from app.services.option_pricing import (
    ASIAN_FIXINGS,
    DEFAULT_VOL_PCT,
    MODEL_AMERICAN,
    MODEL_ASIAN,
    MODEL_BACHELIER,
    MODELS,
    STYLE_OF_MODEL,
    TYPICAL_BY_COMMODITY,
    TYPICAL_LEVEL,
    FittedSurface,
    PricerInputs,
    SmileQuotes,
    add_months,
    bracketing,
    compute,
    compute_grid,
    fit_surface,
    forward_for_expiry,
    month_after,
    parse_months,
    parse_strikes,
)
from app.services.trading import TradingService
from app.views.jobs import JobContext, JobRunner
from app.views.structure_panel import StructurePanel
from app.views.ticket import TicketDialog
from app.views.widgets import (
    ERROR_STYLE,
    NOTE_STYLE,
    pydate,
    qdate,
    spin_box,
    stacked,
    with_suffix,
)

FWD_LIVE = "Live curve"
FWD_TYPED = "Typed"
VOL_SURFACE = "Surface"
VOL_TYPED = "Typed"


class GridModel(QAbstractTableModel):
    """Prices with strikes as rows and expiries as columns (4 decimals)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.strikes: list[float] = []
        self.headers: list[str] = []
        self.prices = np.zeros((0, 0))

    def set_grid(self, strikes: list[float], headers: list[str], prices: Any) -> None:
        self.beginResetModel()
        self.strikes, self.headers, self.prices = list(strikes), list(headers), np.asarray(prices)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.strikes)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.headers)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            v = float(self.prices[index.row(), index.column()])
            return f"{v:,.4f}" if math.isfinite(v) else "n/a"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.UserRole:
            return float(self.prices[index.row(), index.column()])
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.headers[section]
        return f"K {self.strikes[section]:g}"


# -- the panel ------------------------------------------------------------------------------


class OptionsPricerPanel(QWidget):
    """Price one option (or a strike x expiry grid) and book it through the trade ticket."""

    sig_booked = Signal(object)
    """(TradeRecord) booked from the prefilled ticket."""
    sig_priced = Signal(object)
    """(result dict of :func:`compute`) after the labels and charts were updated."""
    sig_grid_priced = Signal(object)
    """(result dict of :func:`compute_grid`)"""
    sig_failed = Signal(str)
    """(message) shown in red in the panel."""

    def __init__(
        self,
        runner: JobRunner,
        trading: TradingService,
        parent: Any = None,
        market: MarketState | None = None,
    ) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.setObjectName("options_pricer")
        self.runner = runner
        self.trading = trading
        self.market = market
        self.result: dict[str, Any] | None = None
        self.grid_result: dict[str, Any] | None = None
        self._last_vol_normal = False
        today = dt.date.today()

        # -- inputs
        self.product = QComboBox()
        self._fill_products()
        self.product_info = QLabel()
        self.product_info.setStyleSheet(NOTE_STYLE)
        self.model = QComboBox()
        self.model.addItems(list(MODELS))
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(22)  # long model names must not widen the form
        self.call_put = QComboBox()
        self.call_put.addItems([OptionType.CALL.label, OptionType.PUT.label])
        self.forward = spin_box(-1e7, 1e7, 4)
        self.fwd_source = QComboBox()
        self.fwd_source.addItems([FWD_LIVE, FWD_TYPED])
        self.fwd_source.setToolTip(
            "Live: the forward of the month after expiry, read from the product's live curve "
            "(updates with the feed). Typed: the value you enter."
        )
        if market is None:
            self.fwd_source.setCurrentText(FWD_TYPED)
            self.fwd_source.setEnabled(False)
        self.strike = spin_box(-1e7, 1e7, 4)
        self.expiry = QDateEdit(qdate(add_months(today, 3)))
        self.expiry.setCalendarPopup(True)
        self.expiry.setDisplayFormat("yyyy-MM-dd")
        self.t_label = QLabel()
        self.t_label.setStyleSheet(NOTE_STYLE)
        self.vol = spin_box(0.0, 1e6, 4)
        self.vol.setValue(DEFAULT_VOL_PCT)
        self.vol_source = QComboBox()
        self.vol_source.addItems([VOL_SURFACE, VOL_TYPED])
        self.vol_source.setToolTip(
            "Surface: the vol at this expiry and strike from an SVI surface fitted to the "
            "feed's implied-vol smiles. Typed: the value you enter."
        )
        if market is None:
            self.vol_source.setCurrentText(VOL_TYPED)
            self.vol_source.setEnabled(False)
        self.vol_note = QLabel()
        self.vol_note.setObjectName("pricer_vol_note")
        self.vol_note.setStyleSheet(NOTE_STYLE)
        self.vol_note.setWordWrap(True)
        self._surfaces: dict[tuple[str, int, tuple[dt.date, ...]], FittedSurface] = {}
        self.rate = spin_box(-20.0, 50.0, 3)
        self.rate.setSuffix(" %")
        self.rate.setValue(3.0)
        self.premium_in = QLineEdit(placeholderText="optional: premium per unit → implied vol")
        self.quantity = QLineEdit(placeholderText="optional: quantity → value")
        self.qty_unit = QLabel()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Product", stacked(self.product, self.product_info))
        form.addRow("Model", self.model)
        form.addRow("Call/Put", self.call_put)
        self.fwd_note = QLabel()
        self.fwd_note.setObjectName("pricer_forward_note")
        self.fwd_note.setStyleSheet(NOTE_STYLE)
        self.fwd_note.setWordWrap(True)
        form.addRow("Forward", with_suffix(self.forward, self.fwd_source, 110))
        form.addRow(self.fwd_note)  # spans both columns: never clipped
        form.addRow("Strike", self.strike)
        form.addRow("Expiry", stacked(self.expiry, self.t_label))
        self.vol_label = QLabel("Vol")
        form.addRow(self.vol_label, with_suffix(self.vol, self.vol_source, 110))
        form.addRow(self.vol_note)
        form.addRow("Rate", self.rate)
        form.addRow("Premium → IV", self.premium_in)
        form.addRow("Quantity", with_suffix(self.quantity, self.qty_unit, 50))
        inputs_box = QGroupBox("Inputs")
        inputs_box.setLayout(form)

        # -- outputs
        self.out: dict[str, QLabel] = {}
        self.out_caption: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        captions = [
            ("price", "Price per unit"),
            ("delta", "Delta (per 1 unit of F)"),
            ("gamma", "Gamma (per unit²)"),
            ("vega", "Vega (per 1 vol point)"),
            ("theta", "Theta (per day)"),
            ("rho", "Rho (per 1 % rate)"),
            ("implied", "Implied vol from premium"),
            ("value", "Value of quantity"),
        ]
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        for i, (key, text) in enumerate(captions):
            cap = QLabel(text)
            val = QLabel("–")
            val.setObjectName(f"pricer_{key}")
            val.setFont(mono)
            val.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            val.setMinimumWidth(120)
            grid.addWidget(cap, i, 0)
            grid.addWidget(val, i, 1)
            self.out[key], self.out_caption[key] = val, cap
        self.out["price"].setStyleSheet("font-weight: bold;")
        self.greeks_note = QLabel()
        self.greeks_note.setStyleSheet(NOTE_STYLE)
        self.greeks_note.setWordWrap(True)
        grid.addWidget(self.greeks_note, len(captions), 0, 1, 2)
        outputs_box = QGroupBox("Results")
        outputs_box.setLayout(grid)

        self.message = QLabel()
        self.message.setObjectName("pricer_message")
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setWordWrap(True)
        self.message.hide()

        self.book_button = QPushButton("Book this option…")
        self.book_button.clicked.connect(self.book)

        left = QVBoxLayout()
        left.addWidget(inputs_box)
        left.addWidget(outputs_box)
        left.addWidget(self.message)
        left.addWidget(self.book_button)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setMinimumWidth(400)

        # -- charts
        pg.setConfigOptions(antialias=True)
        self.payoff_plot = pg.PlotWidget(background="w")
        self.payoff_plot.setTitle("Payoff at expiry and value today", color="#333")
        self.payoff_plot.addLegend(offset=(10, 10))
        self.payoff_plot.showGrid(x=True, y=True, alpha=0.25)
        self.payoff_plot.setLabel("bottom", "Forward")
        self.payoff_plot.setLabel("left", "Value per unit")
        self.payoff_curve = self.payoff_plot.plot(
            name="payoff at expiry",
            connect="finite",
            pen=pg.mkPen("#888", width=2, style=Qt.PenStyle.DashLine),
        )
        self.today_curve = self.payoff_plot.plot(
            name="value today", connect="finite", pen=pg.mkPen("#1565c0", width=2)
        )
        self.f_line = pg.InfiniteLine(
            angle=90, pen=pg.mkPen("#c62828", width=1), label="F", labelOpts={"color": "#c62828"}
        )
        self.payoff_plot.addItem(self.f_line)
        self.smile_plot = pg.PlotWidget(background="w")
        self.smile_plot.setTitle("Vol by strike (flat)", color="#333")
        self.smile_plot.showGrid(x=True, y=True, alpha=0.25)
        self.smile_plot.setLabel("bottom", "Strike")
        self.smile_plot.addLegend(offset=(-10, 10))
        self.smile_curve = self.smile_plot.plot(
            name="vol by strike", pen=pg.mkPen("#2e7d32", width=2)
        )
        self.smile_quotes = self.smile_plot.plot(
            name="feed quotes (nearest expiry)",
            pen=None,
            symbol="t",
            symbolBrush="#6a1b9a",
            symbolSize=8,
        )
        self.smile_point = self.smile_plot.plot(
            name="implied from premium", pen=None, symbol="o", symbolBrush="#c62828", symbolSize=9
        )
        self.k_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#999", width=1), label="K")
        self.smile_plot.addItem(self.k_line)
        charts = QSplitter(Qt.Orientation.Vertical)
        charts.addWidget(self.payoff_plot)
        charts.addWidget(self.smile_plot)
        charts.setStretchFactor(0, 3)
        charts.setStretchFactor(1, 2)

        single = QSplitter(Qt.Orientation.Horizontal)
        single.addWidget(left_w)
        single.addWidget(charts)
        single.setStretchFactor(1, 1)

        # -- grid tab
        self.grid_strikes = QLineEdit(placeholderText="80, 90, 100  or  60..120 step 10")
        self.grid_months = QLineEdit("1, 2, 3, 6, 12")
        self.grid_button = QPushButton("Price grid")
        self.grid_button.clicked.connect(self.price_grid)
        self.grid_message = QLabel()
        self.grid_message.setStyleSheet(ERROR_STYLE)
        self.grid_message.setWordWrap(True)
        self.grid_message.hide()
        self.grid_model = GridModel(self)
        self.grid_view = QTableView()
        self.grid_view.setModel(self.grid_model)
        self.grid_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        gform = QFormLayout()
        gform.addRow("Strikes", self.grid_strikes)
        gform.addRow("Expiries (months ahead)", self.grid_months)
        gnote = QLabel("Model, call/put, forward, vol and rate from the Single option tab.")
        gnote.setStyleSheet(NOTE_STYLE)
        gv = QVBoxLayout()
        gv.addLayout(gform)
        gv.addWidget(gnote)
        gv.addWidget(self.grid_button)
        gv.addWidget(self.grid_message)
        gv.addWidget(self.grid_view, 1)
        grid_w = QWidget()
        grid_w.setLayout(gv)

        self.tabs = QTabWidget()
        self.tabs.addTab(single, "Single option")
        self.tabs.addTab(grid_w, "Grid")
        self.structure_panel = StructurePanel(self.runner, self)
        self.tabs.addTab(self.structure_panel, "Structure")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.tabs)

        # -- wiring
        self._timer = QTimer(self, singleShot=True, interval=150)
        self._timer.timeout.connect(self.recalculate_now)
        self.product.currentTextChanged.connect(self._product_changed)
        self.model.currentTextChanged.connect(self._model_changed)
        self.fwd_source.currentTextChanged.connect(lambda _t: self.update_live_forward())
        self.vol_source.currentTextChanged.connect(self.schedule)
        self.expiry.dateChanged.connect(lambda _d: self.update_live_forward())
        for sig in (
            self.call_put.currentTextChanged,
            self.forward.valueChanged,
            self.strike.valueChanged,
            self.expiry.dateChanged,
            self.vol.valueChanged,
            self.rate.valueChanged,
            self.premium_in.textChanged,
            self.quantity.textChanged,
        ):
            sig.connect(self.schedule)
        self._model_changed(self.model.currentText())
        self._product_changed(self.product.currentText())

    # -- helpers ------------------------------------------------------------------------------
    def _fill_products(self) -> None:
        current = self.product.currentText()
        self.product.blockSignals(True)
        self.product.clear()
        for p in self.trading.refdata.products.values():
            self.product.addItem(p.code)
            self.product.setItemData(self.product.count() - 1, p.name, Qt.ItemDataRole.ToolTipRole)
        self.product.blockSignals(False)
        idx = self.product.findText(current)
        self.product.setCurrentIndex(idx if idx >= 0 else 0)

    def refresh_products(self) -> None:
        """Reload the product list (reference data changed, e.g. the store finished opening)."""
        before = self.product.currentText()
        self._fill_products()
        if self.product.currentText() != before:
            self._product_changed(self.product.currentText())

    def _product_changed(self, code: str) -> None:
        p = self.trading.refdata.product_by_code(code)
        if p is None:
            return
        self.product_info.setText(f"{p.name} · {p.currency}/{p.unit.label}")
        self.qty_unit.setText(p.unit.label)
        level = TYPICAL_LEVEL.get(code, TYPICAL_BY_COMMODITY.get(p.commodity, 50.0))
        step = 10 ** math.floor(math.log10(level)) / 10 if level > 0 else 0.1
        self.forward.setSingleStep(step)
        self.strike.setSingleStep(step)
        self.forward.setValue(level)
        self.update_live_forward()
        self.strike.setValue(_round_strike(self.forward.value()))
        self.forward.setSuffix(f" {p.currency}/{p.unit.label}")
        self.strike.setSuffix(f" {p.currency}/{p.unit.label}")
        if self.model.currentText() == MODEL_BACHELIER:
            self.vol.setValue(round(DEFAULT_VOL_PCT / 100.0 * abs(level), 4))
        self.schedule()

    def on_vols(self, products: set[str]) -> None:
        """Slot for the market bridge: the vol surfaces of ``products`` changed."""
        if self.product.currentText() in products and self.vol_source.currentText() == VOL_SURFACE:
            self.schedule()

    def _surface_request(self, inp: PricerInputs) -> tuple[Any, str]:
        """What the job needs for a surface vol: a cached fit, quotes to fit, or ``None`` with
        the reason the typed vol is used."""
        use = self.vol_source.currentText() == VOL_SURFACE and self.market is not None
        self.vol.setReadOnly(False)
        if not use or self.market is None:
            return None, "Vol typed." if self.market is not None else "Vol typed (no price feed)."
        if inp.normal:
            return None, "Normal model: the surface holds lognormal vols, so the vol is typed."
        code = self.product.currentText()
        vu = self.market.vol_surface(code)
        if vu is None:
            return None, f"No vol surface for {code} from this feed: the typed vol is used."
        quotes = [
            SmileQuotes(
                dt.date.fromisoformat(sm.expiry), sm.forward, sm.strikes, sm.vols, sm.contract
            )
            for sm in vu.smiles
        ]
        # Only the smiles around this expiry are fitted (cached per surface and bracket).
        near = bracketing(quotes, inp.today, inp.expiry)
        key = (code, vu.ts, tuple(q.expiry for q in near))
        cached = self._surfaces.get(key)
        if cached is not None and cached.today == inp.today:
            return cached, ""
        return (key, near, vu.model), ""

    def on_curves(self, products: set[str]) -> None:
        """Slot for the market bridge: live curves of ``products`` changed."""
        if self.product.currentText() in products:
            self.update_live_forward()

    def update_live_forward(self) -> None:
        """In Live mode, set the forward from the product's live curve (month after expiry);
        say plainly when there is no curve, it is stale, or it does not cover that month."""
        live = self.fwd_source.currentText() == FWD_LIVE and self.market is not None
        self.forward.setReadOnly(live)
        if not live or self.market is None:
            self.fwd_note.setText(
                "Forward typed." if self.market is not None else "Forward typed (no price feed)."
            )
            return
        code = self.product.currentText()
        curve = self.market.forward_curve(code)
        if curve is None:
            self.forward.setReadOnly(False)
            self.fwd_note.setText(f"No live curve for {code} yet: the typed forward is used.")
            return
        try:
            value = forward_for_expiry(curve, pydate(self.expiry.date()))
        except ValueError as exc:
            self.forward.setReadOnly(False)
            self.fwd_note.setText(f"Live forward unavailable: {exc}; the typed forward is used.")
            return
        start, _end = month_after(pydate(self.expiry.date()))
        stale = " (STALE: feed not live)" if self.market.is_stale(code) else ""
        self.fwd_note.setText(f"Live: {code} {start:%b-%y} from the forward curve{stale}.")
        if abs(self.forward.value() - value) > 1e-9:
            self.forward.setValue(round(value, 4))

    def _model_changed(self, model: str) -> None:
        normal = model == MODEL_BACHELIER
        if normal != self._last_vol_normal:  # convert the vol between % and price units
            f = abs(self.forward.value()) or 1.0
            v = self.vol.value()
            self.vol.setValue(round(v / 100.0 * f, 4) if normal else round(v / f * 100.0, 2))
            self._last_vol_normal = normal
        p = self.trading.refdata.product_by_code(self.product.currentText())
        units = f"{p.currency}/{p.unit.label}" if p else "price units"
        self.vol.setSuffix(f" {units}" if normal else " %")
        self.vol_label.setText("Normal vol (per √year)" if normal else "Vol (lognormal)")
        self.out_caption["vega"].setText(
            "Vega (per 1.00 of normal vol)" if normal else "Vega (per 1 vol point)"
        )
        if model in (MODEL_AMERICAN, MODEL_ASIAN):
            note = "Greeks by bump-and-reprice of the model (F ±0.5 %, vol ±1 pt, 1 day, 1 bp)."
        else:
            note = "Greeks closed form. Theta = engine/365, rho = engine/100."
        if model == MODEL_ASIAN:
            note += f" Averaging: {ASIAN_FIXINGS} fixings over the month before expiry."
        self.greeks_note.setText(note)
        self.schedule()

    def inputs(self) -> PricerInputs:
        """The typed inputs as a request (raises ValueError on unreadable optional fields)."""
        return PricerInputs(
            model=self.model.currentText(),
            call=self.call_put.currentText() == OptionType.CALL.label,
            F=self.forward.value(),
            K=self.strike.value(),
            expiry=pydate(self.expiry.date()),
            today=dt.date.today(),
            vol=self.vol.value()
            if self.model.currentText() == MODEL_BACHELIER
            else self.vol.value() / 100.0,
            rate=self.rate.value() / 100.0,
            premium=_opt_float(self.premium_in.text(), "premium"),
            quantity=_opt_float(self.quantity.text(), "quantity"),
        )

    # -- recalculation ------------------------------------------------------------------------
    def schedule(self, *_: Any) -> None:
        """Restart the debounce; one job runs 150 ms after the last change."""
        self._timer.start()

    def recalculate_now(self) -> None:
        self._timer.stop()
        try:
            inp = self.inputs()
        except ValueError as exc:
            self._show_error(str(exc))
            return
        self.t_label.setText(f"T = {inp.T:.4f} y (Act/365)")
        request, why = self._surface_request(inp)

        def job(ctx: JobContext) -> dict[str, Any]:
            fitted: FittedSurface | None = None
            fit_error = ""
            if isinstance(request, FittedSurface):
                fitted = request
            elif request is not None:
                _key, quotes, model = request
                try:
                    fitted = fit_surface(quotes, inp.today, model)
                except ValueError as exc:
                    fit_error = f"The feed's smiles could not be fitted ({exc}): vol typed."
            try:
                res = compute(inp, fitted)
            except ValueError as exc:
                if fitted is None:
                    return {"error": str(exc)}
                fit_error = f"Surface vol unavailable ({exc}): the typed vol is used."
                try:
                    res = compute(inp)
                except ValueError as exc2:
                    return {"error": str(exc2)}
                fitted = None
            if (
                fitted is not None
                and request is not None
                and not isinstance(request, FittedSurface)
            ):
                res["fitted"] = (request[0], fitted)
            res["vol_note"] = fit_error or why
            res["surface"] = fitted
            return res

        self.runner.submit("Option pricer", job, on_result=self._on_result,
                           on_error=self._show_error, key="pricer")  # fmt: skip

    def _show_error(self, text: str) -> None:
        self.message.setText(f"Cannot price: {text}")
        self.message.show()
        for lbl in self.out.values():
            lbl.setText("–")
        for curve in (
            self.payoff_curve,
            self.today_curve,
            self.smile_curve,
            self.smile_point,
            self.smile_quotes,
        ):
            curve.setData([], [])  # no stale chart next to an error
        self.result = None
        self.sig_failed.emit(text)

    def _on_result(self, res: dict[str, Any]) -> None:
        if "error" in res:
            self._show_error(res["error"])
            return
        self.message.hide()
        self.result = res
        inp: PricerInputs = res["inputs"]
        p = self.trading.refdata.product_by_code(self.product.currentText())
        ccy = f" {p.currency}" if p else ""
        self.out["price"].setText(f"{res['price']:,.4f}{ccy}")
        for k, fmt in (("delta", ",.4f"), ("gamma", ",.6f"), ("vega", ",.4f"),
                       ("theta", ",.5f"), ("rho", ",.5f")):  # fmt: skip
            self.out[k].setText(format(res["greeks"][k], fmt))
        iv = res["implied_vol"]
        if iv is None:
            self.out["implied"].setText("–")
            self.out["implied"].setToolTip("")
        elif math.isnan(iv):
            self.out["implied"].setText("n/a")
            self.out["implied"].setToolTip(res["implied_reason"])
            self.out["implied"].setText(res["implied_reason"])
        else:
            self.out["implied"].setText(f"{iv:,.4f}" if inp.normal else f"{iv * 100:.2f} %")
            self.out["implied"].setToolTip("")
        value = res["value"]
        self.out["value"].setText("–" if value is None else f"{value:,.2f}{ccy}")
        self.out["implied"].setWordWrap(True)

        self.payoff_curve.setData(res["chart_x"], res["payoff"])
        self.today_curve.setData(res["chart_x"], res["today"])
        self.f_line.setValue(inp.F)
        scale = 1.0 if inp.normal else 100.0
        if "fitted" in res:
            key, fitted = res["fitted"]
            if len(self._surfaces) > 64:  # old surfaces: the feed re-quotes every day end
                self._surfaces.clear()
            self._surfaces[key] = fitted
        surface: FittedSurface | None = res.get("surface")
        if surface is not None:
            near = res["smile_quotes"][2]
            self.vol.blockSignals(True)  # shows the surface vol; not a user edit
            self.vol.setValue(round(res["surface_vol"] * 100.0, 4))
            self.vol.blockSignals(False)
            self.vol.setReadOnly(True)
            self.vol_note.setText(
                f"Surface: SVI fit of the feed's smiles around this expiry (nearest quoted: "
                f"{near.label} options, expiring {near.expiry:%d %b %Y})."
            )
            self.vol_note.setToolTip(f"Source: {surface.source or 'price feed'}")
            self.smile_plot.setTitle(
                "Vol by strike: fitted SVI surface at this expiry", color="#333"
            )
            qk, qv, _ = res["smile_quotes"]
            self.smile_quotes.setData(qk, qv * 100.0)
        else:
            self.vol.setReadOnly(False)
            self.vol_note.setText(res.get("vol_note", ""))
            self.vol_note.setToolTip("")
            self.smile_plot.setTitle("Vol by strike (flat: typed vol)", color="#333")
            self.smile_quotes.setData([], [])
        self.smile_curve.setData(res["smile_k"], res["smile_vol"] * scale)
        if iv is not None and not math.isnan(iv):
            self.smile_point.setData([inp.K], [iv * scale])
        else:
            self.smile_point.setData([], [])
        self.k_line.setValue(inp.K)
        shown = np.asarray(res["smile_vol"]) * scale
        if surface is not None:
            shown = np.concatenate([shown, np.asarray(res["smile_quotes"][1]) * 100.0])
        lo, hi = float(np.nanmin(shown)), float(np.nanmax(shown))
        if iv is not None and not math.isnan(iv):
            lo, hi = min(lo, iv * scale), max(hi, iv * scale)
        pad = max(0.25 * (hi - lo), 0.2 * abs(hi), 1e-6)
        self.smile_plot.setYRange(lo - pad, hi + 2.5 * pad, padding=0)  # room for the legend
        self.smile_plot.setLabel("left", "Normal vol" if inp.normal else "Vol %")
        self.sig_priced.emit(res)

    # -- grid -----------------------------------------------------------------------------------
    def price_grid(self) -> None:
        """Price strikes x expiries of the Grid tab in one job (key ``pricer-grid``)."""
        try:
            inp = self.inputs()
            text = self.grid_strikes.text().strip()
            strikes = parse_strikes(text) if text else _default_strikes(inp.F)
            months = parse_months(self.grid_months.text())
        except ValueError as exc:
            self._grid_error(str(exc))
            return

        def job(ctx: JobContext) -> dict[str, Any]:
            try:
                return compute_grid(inp, strikes, months)
            except ValueError as exc:
                return {"error": str(exc)}

        self.runner.submit("Option grid", job, on_result=self._on_grid,
                           on_error=self._grid_error, key="pricer-grid")  # fmt: skip

    def _grid_error(self, text: str) -> None:
        self.grid_message.setText(f"Cannot price the grid: {text}")
        self.grid_message.show()
        self.sig_failed.emit(text)

    def _on_grid(self, res: dict[str, Any]) -> None:
        if "error" in res:
            self._grid_error(res["error"])
            return
        self.grid_message.hide()
        self.grid_result = res
        headers = [
            f"{m}M ({e.isoformat()})" for m, e in zip(res["months"], res["expiries"], strict=True)
        ]
        self.grid_model.set_grid(res["strikes"], headers, res["prices"])
        self.sig_grid_priced.emit(res)

    # -- booking --------------------------------------------------------------------------------
    def make_ticket(self) -> TicketDialog:
        """A new-trade ticket prefilled with this option (not shown); the user adds the rest.

        Price is the forward (the underlying level, as for other option trades); premium the
        computed price rounded to 4 dp; delivery is the calendar month after expiry.
        """
        inp = self.inputs()
        dlg = TicketDialog(self.trading, parent=self)
        dlg.instrument.setCurrentText(InstrumentType.OPTION.label)
        dlg.product.setCurrentText(self.product.currentText())
        dlg.option_type.setCurrentText(self.call_put.currentText())
        dlg.strike.setText(_num(inp.K))
        dlg.price.setText(_num(inp.F))
        dlg.expiry_date.setDate(qdate(inp.expiry))
        dlg.exercise_style.setCurrentText(STYLE_OF_MODEL[inp.model].label)
        if self.result is not None:
            dlg.premium.setText(f"{max(self.result['price'], 0.0):.4f}")
        start, end = month_after(inp.expiry)
        dlg.delivery_start.setDate(qdate(start))
        dlg.delivery_end.setDate(qdate(end))
        if inp.quantity is not None:
            dlg.quantity.setText(_num(inp.quantity))
        dlg.counterparty.setCurrentText("")
        dlg.counterparty.setFocus()
        return dlg

    def book(self) -> None:
        try:
            dlg = self.make_ticket()
        except ValueError as exc:
            self._show_error(str(exc))
            return
        if dlg.exec() and dlg.saved is not None:  # Accepted only after a successful save
            self.sig_booked.emit(dlg.saved)


# -- small helpers --------------------------------------------------------------------------


def _opt_float(text: str, name: str) -> float | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name} '{text}' is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite")
    return v


def _num(v: float) -> str:
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _round_strike(level: float) -> float:
    """The forward rounded to a sensible strike increment."""
    if level == 0:
        return 0.0
    inc = 10 ** math.floor(math.log10(abs(level))) / 10  # two significant digits
    return round(round(level / inc) * inc, 6)


def _default_strikes(F: float) -> list[float]:
    base = _round_strike(F)
    inc = _round_strike(abs(F) * 0.1) or 1.0
    return [round(base + i * inc, 6) for i in range(-2, 3)]
