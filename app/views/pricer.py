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

The forward is typed: no live curve exists yet, so each product starts from a typical level
(:data:`TYPICAL_LEVEL`); live curves arrive with the market-data feed.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QDate,
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
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
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

from app.engine.american import american_black76
from app.engine.asian import asian_turnbull_wakeman
from app.engine.options import (
    bachelier,
    bachelier_greeks,
    black76,
    black76_greeks,
    implied_vol_bachelier_detail,
    implied_vol_black76_detail,
)
from app.models.enums import Commodity, ExerciseStyle, InstrumentType, OptionType
from app.services.trading import TradingService
from app.views.jobs import JobContext, JobRunner
from app.views.structure_panel import StructurePanel
from app.views.ticket import TicketDialog

MODEL_BLACK = "Black-76 European"
MODEL_BACHELIER = "Bachelier European (normal vol, valid for negative prices)"
MODEL_AMERICAN = "American (Black-76 tree)"
MODEL_ASIAN = "Asian (Turnbull-Wakeman, averaging over the month before expiry)"
MODELS = (MODEL_BLACK, MODEL_BACHELIER, MODEL_AMERICAN, MODEL_ASIAN)
STYLE_OF_MODEL = {
    MODEL_BLACK: ExerciseStyle.EUROPEAN,
    MODEL_BACHELIER: ExerciseStyle.EUROPEAN,
    MODEL_AMERICAN: ExerciseStyle.AMERICAN,
    MODEL_ASIAN: ExerciseStyle.ASIAN,
}
AMERICAN_STEPS = 401
ASIAN_FIXINGS = 21
ASIAN_WINDOW = 1.0 / 12.0  # averaging over the (delivery) month before expiry

#: Typed starting forward per product code (no live curve yet), then per commodity.
TYPICAL_LEVEL: dict[str, float] = {
    "PWR-DE-BASE": 88.0,
    "PWR-DE-PEAK": 101.0,
    "PWR-PJMW-PEAK": 58.0,
    "PWR-PJMW-OFFPK": 39.0,
    "NG-HH": 3.4,
    "NG-TTF": 33.5,
    "NG-NBP": 0.84,
    "CR-BRENT": 74.0,
    "CR-WTI": 70.0,
    "RP-ULSD-NYH": 2.38,
    "RP-RBOB-NYH": 2.12,
    "RP-GASOIL": 690.0,
}
TYPICAL_BY_COMMODITY: dict[Commodity, float] = {
    Commodity.POWER: 80.0,
    Commodity.NATURAL_GAS: 30.0,
    Commodity.CRUDE: 72.0,
    Commodity.REFINED: 2.3,
}
DEFAULT_VOL_PCT = 40.0

_RED = "color: #b3261e; font-weight: bold;"
_NOTE = "color: #666; font-size: 11px;"

REASON_TEXT = {
    "at_intrinsic": "premium equals intrinsic value: vol 0",
    "below_intrinsic": "premium below intrinsic value: no vol gives it",
    "above_upper_bound": "premium at or above the no-arbitrage upper bound",
    "zero_expiry": "expiry is today: vol undetermined",
    "no_convergence": "solver did not converge",
}


# -- pure calculation (runs in the job) -----------------------------------------------------


@dataclass(frozen=True)
class PricerInputs:
    """One pricing request; ``vol`` is absolute (0.40 = 40 %, or price units for Bachelier)."""

    model: str
    call: bool
    F: float
    K: float
    expiry: dt.date
    today: dt.date
    vol: float
    rate: float
    premium: float | None = None
    quantity: float | None = None

    @property
    def T(self) -> float:
        return year_fraction(self.today, self.expiry)

    @property
    def normal(self) -> bool:
        return self.model == MODEL_BACHELIER


def year_fraction(today: dt.date, expiry: dt.date) -> float:
    """Act/365 time from ``today`` to ``expiry`` in years."""
    return (expiry - today).days / 365.0


def add_months(d: dt.date, months: int) -> dt.date:
    """``d`` moved by ``months`` calendar months (day clipped to the month's end)."""
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def month_after(d: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the calendar month after ``d``'s month."""
    start = add_months(d.replace(day=1), 1)
    return start, start.replace(day=calendar.monthrange(start.year, start.month)[1])


Pricer = Callable[[Any, Any, Any, Any, Any], Any]


def pricer_for(model: str, call: bool) -> Pricer:
    """``f(F, K, T, r, vol)`` for ``model``, vectorised (arrays broadcast together)."""
    if model == MODEL_BLACK:
        return lambda F, K, T, r, v: black76(F, K, T, r, v, call)
    if model == MODEL_BACHELIER:
        return lambda F, K, T, r, v: bachelier(F, K, T, r, v, call)
    if model == MODEL_AMERICAN:
        return lambda F, K, T, r, v: american_black76(F, K, T, r, v, call, steps=AMERICAN_STEPS)
    if model == MODEL_ASIAN:

        def asian(F: Any, K: Any, T: Any, r: Any, v: Any) -> Any:
            start = np.maximum(np.asarray(T, dtype=float) - ASIAN_WINDOW, 0.0)
            return asian_turnbull_wakeman(F, K, T, r, v, call, start, ASIAN_FIXINGS)

        return asian
    raise ValueError(f"unknown model '{model}'")


def _check_inputs(inp: PricerInputs) -> None:
    if inp.expiry < inp.today:
        raise ValueError(f"expiry {inp.expiry.isoformat()} is in the past")
    if not inp.vol > 0:
        raise ValueError("volatility must be positive")
    if not inp.normal and inp.F <= 0:
        raise ValueError(
            "the forward must be > 0 for a lognormal model; use Bachelier for zero or "
            "negative prices"
        )
    if not inp.normal and inp.K <= 0:
        raise ValueError("the strike must be > 0 for a lognormal model; use Bachelier")


def _fd_greeks(pricer: Pricer, inp: PricerInputs) -> tuple[float, dict[str, float]]:
    """Price and bump-and-reprice greeks (engine units: per 1.00 vol / rate, theta per year)."""
    F, K, T, r, v = inp.F, inp.K, inp.T, inp.rate, inp.vol
    h = max(abs(F) * 0.005, 1e-6)
    dv = min(0.01, v / 2.0)
    dr = 1e-4
    dt_ = 1.0 / 365.0
    t_dn = T - dt_ if 2 * dt_ <= T else T
    Fs = np.array([F, F + h, F - h, F, F, F, F, F, F])
    Vs = np.array([v, v, v, v + dv, v - dv, v, v, v, v])
    Rs = np.array([r, r, r, r, r, r + dr, r - dr, r, r])
    Ts = np.array([T, T, T, T, T, T, T, T + dt_, t_dn])
    p = np.asarray(pricer(Fs, K, Ts, Rs, Vs), dtype=float)
    greeks = {
        "delta": (p[1] - p[2]) / (2 * h),
        "gamma": (p[1] - 2 * p[0] + p[2]) / (h * h),
        "vega": (p[3] - p[4]) / (2 * dv),
        "rho": (p[5] - p[6]) / (2 * dr),
        "theta": -(p[7] - p[8]) / (T + dt_ - t_dn),
    }
    return float(p[0]), {k: float(x) for k, x in greeks.items()}


def _implied_by_grid(pricer: Pricer, inp: PricerInputs, target: float) -> tuple[float, str]:
    """Vol for ``target`` by three rounds of vectorised bracketing on the (monotone) pricer."""
    lo, hi = 0.005, 5.0  # the tree has no finite value at much lower vols
    ends = np.asarray(pricer(inp.F, inp.K, inp.T, inp.rate, np.array([lo, hi])), dtype=float)
    if not target >= ends[0]:
        return math.nan, "premium at or below the value at 0.5 % vol (about intrinsic)"
    if target > ends[1]:
        return math.nan, "premium above the value at 500 % vol"
    for _ in range(3):
        vols = np.linspace(lo, hi, 65)
        prices = np.asarray(pricer(inp.F, inp.K, inp.T, inp.rate, vols), dtype=float)
        prices = np.where(np.isnan(prices), -np.inf, prices)  # NaN only at the low-vol end
        i = int(np.clip(np.searchsorted(prices, target), 1, len(vols) - 1))
        lo, hi = float(vols[i - 1]), float(vols[i])
        p_lo, p_hi = float(prices[i - 1]), float(prices[i])
    w = 0.0 if p_hi == p_lo else (target - p_lo) / (p_hi - p_lo)
    return lo + w * (hi - lo), "ok"


def compute(inp: PricerInputs) -> dict[str, Any]:
    """Price, greeks in display units, implied vol and chart arrays. Raises ValueError."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        res = _compute(inp)
    if not math.isfinite(res["price"]) or not all(map(math.isfinite, res["greeks"].values())):
        raise ValueError(
            "the model gave no finite value for these inputs (vol too low for the tree?)"
        )
    return res


def _compute(inp: PricerInputs) -> dict[str, Any]:
    _check_inputs(inp)
    pricer = pricer_for(inp.model, inp.call)
    F, K, T, r, v = inp.F, inp.K, inp.T, inp.rate, inp.vol
    if inp.model in (MODEL_BLACK, MODEL_BACHELIER):
        fn = black76_greeks if inp.normal is False else bachelier_greeks
        g = fn(F, K, T, r, v, inp.call)
        price = float(pricer(F, K, T, r, v))
        raw = {"delta": g.delta, "gamma": g.gamma, "vega": g.vega, "theta": g.theta, "rho": g.rho}
        greeks = {k: float(x) for k, x in raw.items()}
    else:
        price, greeks = _fd_greeks(pricer, inp)
    shown = {
        "delta": greeks["delta"],
        "gamma": greeks["gamma"],
        "vega": greeks["vega"] if inp.normal else greeks["vega"] / 100.0,
        "theta": greeks["theta"] / 365.0,
        "rho": greeks["rho"] / 100.0,
    }
    implied: float | None = None
    implied_reason = ""
    if inp.premium is not None:
        if inp.model == MODEL_BLACK:
            iv, reason = implied_vol_black76_detail(inp.premium, F, K, T, r, inp.call)
        elif inp.model == MODEL_BACHELIER:
            iv, reason = implied_vol_bachelier_detail(inp.premium, F, K, T, r, inp.call)
        else:
            iv, reason = _implied_by_grid(pricer, inp, inp.premium)
        implied = float(iv)  # type: ignore[arg-type]
        implied_reason = REASON_TEXT.get(str(reason), str(reason))

    # Chart 1: payoff at expiry and value today against the forward.
    if inp.normal:
        spread = 4.0 * v * math.sqrt(max(T, 1.0 / 365.0))
        x = np.linspace(F - spread, F + spread, 121)
    else:
        x = np.linspace(F * 0.5, F * 1.5, 121)
    w = 1.0 if inp.call else -1.0
    payoff = np.maximum(w * (x - K), 0.0)
    today_value = np.asarray(pricer(x, K, T, r, v), dtype=float)

    # Chart 2: flat vol against strike (a surface arrives with vol fitting).
    if inp.normal:
        ks = np.linspace(K - spread, K + spread, 41)
    else:
        ks = np.linspace(K * 0.5, K * 1.5, 41)
    return {
        "inputs": inp,
        "price": price,
        "greeks": shown,
        "implied_vol": implied,
        "implied_reason": implied_reason,
        "value": None if inp.quantity is None else price * inp.quantity,
        "chart_x": x,
        "payoff": payoff,
        "today": today_value,
        "smile_k": ks,
        "smile_vol": np.full_like(ks, v),
    }


def parse_strikes(text: str) -> list[float]:
    """``"80, 90, 100"`` or ``"80..120 step 10"`` (also ``"-10..10 step 5"``)."""
    text = text.strip()
    m = re.fullmatch(r"(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?:step|/)\s*([\d.]+)", text)
    if m:
        a, b, s = (float(g) for g in m.groups())
        if s <= 0:
            raise ValueError("strike step must be positive")
        n = math.floor((b - a) / s + 1e-9) + 1
        if n < 1 or n > 200:
            raise ValueError("strike range must give 1 to 200 strikes")
        return [round(a + i * s, 10) for i in range(n)]
    try:
        out = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError("strikes: a comma list (80, 90, 100) or 'from..to step s'") from None
    if not out:
        raise ValueError("give at least one strike")
    return out


def parse_months(text: str) -> list[int]:
    """Comma list of whole months ahead, e.g. ``"1, 2, 3, 6, 12"``."""
    try:
        out = [int(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError("expiries: a comma list of whole months ahead (1, 2, 3, 6, 12)") from None
    if not out or any(m < 0 or m > 240 for m in out):
        raise ValueError("expiries: months ahead between 0 and 240")
    return out


def compute_grid(inp: PricerInputs, strikes: list[float], months: list[int]) -> dict[str, Any]:
    """Prices for strikes (rows) x expiries (columns) in one broadcast engine call."""
    expiries = [add_months(inp.today, m) for m in months]
    _check_inputs(replace(inp, K=min(strikes) if not inp.normal else inp.K))
    K = np.asarray(strikes, dtype=float)[:, None]
    T = np.asarray([year_fraction(inp.today, e) for e in expiries], dtype=float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        prices = np.asarray(pricer_for(inp.model, inp.call)(inp.F, K, T, inp.rate, inp.vol))
    return {"strikes": strikes, "months": months, "expiries": expiries, "prices": prices}


# -- grid model -----------------------------------------------------------------------------


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

    def __init__(self, runner: JobRunner, trading: TradingService, parent: Any = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.setObjectName("options_pricer")
        self.runner = runner
        self.trading = trading
        self.result: dict[str, Any] | None = None
        self.grid_result: dict[str, Any] | None = None
        self._last_vol_normal = False
        today = dt.date.today()

        # -- inputs
        self.product = QComboBox()
        self._fill_products()
        self.product_info = QLabel()
        self.product_info.setStyleSheet(_NOTE)
        self.model = QComboBox()
        self.model.addItems(list(MODELS))
        self.model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.model.setMinimumContentsLength(22)  # long model names must not widen the form
        self.call_put = QComboBox()
        self.call_put.addItems([OptionType.CALL.label, OptionType.PUT.label])
        self.forward = self._spin(-1e7, 1e7, 4)
        self.strike = self._spin(-1e7, 1e7, 4)
        self.expiry = QDateEdit(_qdate(add_months(today, 3)))
        self.expiry.setCalendarPopup(True)
        self.expiry.setDisplayFormat("yyyy-MM-dd")
        self.t_label = QLabel()
        self.t_label.setStyleSheet(_NOTE)
        self.vol = self._spin(0.0, 1e6, 4)
        self.vol.setValue(DEFAULT_VOL_PCT)
        self.rate = self._spin(-20.0, 50.0, 3)
        self.rate.setSuffix(" %")
        self.rate.setValue(3.0)
        self.premium_in = QLineEdit(placeholderText="optional: premium per unit → implied vol")
        self.quantity = QLineEdit(placeholderText="optional: quantity → value")
        self.qty_unit = QLabel()

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        form.addRow("Product", _stack(self.product, self.product_info))
        form.addRow("Model", self.model)
        form.addRow("Call/Put", self.call_put)
        fwd_note = QLabel("Forward is typed; live curves arrive with the market-data feed")
        fwd_note.setStyleSheet(_NOTE)
        form.addRow("Forward (typed)", self.forward)
        form.addRow(fwd_note)  # spans both columns: never clipped
        form.addRow("Strike", self.strike)
        form.addRow("Expiry", _stack(self.expiry, self.t_label))
        self.vol_label = QLabel("Vol")
        form.addRow(self.vol_label, self.vol)
        form.addRow("Rate", self.rate)
        form.addRow("Premium → IV", self.premium_in)
        form.addRow("Quantity", _row(self.quantity, self.qty_unit))
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
        self.greeks_note.setStyleSheet(_NOTE)
        self.greeks_note.setWordWrap(True)
        grid.addWidget(self.greeks_note, len(captions), 0, 1, 2)
        outputs_box = QGroupBox("Results")
        outputs_box.setLayout(grid)

        self.message = QLabel()
        self.message.setObjectName("pricer_message")
        self.message.setStyleSheet(_RED)
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
            name="flat vol: surface arrives with vol fitting", pen=pg.mkPen("#2e7d32", width=2)
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
        self.grid_message.setStyleSheet(_RED)
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
        gnote.setStyleSheet(_NOTE)
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
    @staticmethod
    def _spin(lo: float, hi: float, decimals: int) -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setRange(lo, hi)
        box.setDecimals(decimals)
        box.setKeyboardTracking(False)
        box.setGroupSeparatorShown(True)
        box.setAccelerated(True)
        return box

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
        self.strike.setValue(_round_strike(level))
        self.forward.setSuffix(f" {p.currency}/{p.unit.label}")
        self.strike.setSuffix(f" {p.currency}/{p.unit.label}")
        if self.model.currentText() == MODEL_BACHELIER:
            self.vol.setValue(round(DEFAULT_VOL_PCT / 100.0 * abs(level), 4))
        self.schedule()

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
            expiry=_pydate(self.expiry.date()),
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

        def job(ctx: JobContext) -> dict[str, Any]:
            try:
                return compute(inp)
            except ValueError as exc:
                return {"error": str(exc)}

        self.runner.submit("Option pricer", job, on_result=self._on_result,
                           on_error=self._show_error, key="pricer")  # fmt: skip

    def _show_error(self, text: str) -> None:
        self.message.setText(f"Cannot price: {text}")
        self.message.show()
        for lbl in self.out.values():
            lbl.setText("–")
        for curve in (self.payoff_curve, self.today_curve, self.smile_curve, self.smile_point):
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
        self.smile_curve.setData(res["smile_k"], res["smile_vol"] * scale)
        if iv is not None and not math.isnan(iv):
            self.smile_point.setData([inp.K], [iv * scale])
        else:
            self.smile_point.setData([], [])
        self.k_line.setValue(inp.K)
        lo, hi = float(res["smile_vol"][0] * scale), float(res["smile_vol"][0] * scale)
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
        dlg.expiry_date.setDate(_qdate(inp.expiry))
        dlg.exercise_style.setCurrentText(STYLE_OF_MODEL[inp.model].label)
        if self.result is not None:
            dlg.premium.setText(f"{max(self.result['price'], 0.0):.4f}")
        start, end = month_after(inp.expiry)
        dlg.delivery_start.setDate(_qdate(start))
        dlg.delivery_end.setDate(_qdate(end))
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


def _qdate(d: dt.date) -> QDate:
    return QDate(d.year, d.month, d.day)


def _pydate(q: QDate) -> dt.date:
    return dt.date(q.year(), q.month(), q.day())


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


def _stack(main: QWidget, note: QLabel) -> QWidget:
    box = QWidget()
    v = QVBoxLayout(box)
    v.setContentsMargins(0, 0, 0, 0)
    v.setSpacing(1)
    v.addWidget(main)
    v.addWidget(note)
    return box


def _row(main: QWidget, suffix: QLabel) -> QWidget:
    box = QWidget()
    h = QHBoxLayout(box)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(main, 1)
    suffix.setMinimumWidth(50)
    h.addWidget(suffix)
    return box
