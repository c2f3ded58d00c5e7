"""Structured products tab of the options pricer: collars, three-ways, spreads, swaps.

The product is built with the :class:`~app.engine.structured.StructuredProduct` constructors
and priced with :func:`~app.engine.structured.price` / :func:`~app.engine.structured.greeks`
(Black-76 legs).  Every calculation runs on the :class:`~app.views.jobs.JobRunner` with key
``"structure"`` (latest request wins) 150 ms after the last input change.

Units shown
-----------
* price per unit of volume and of the whole (x quantity), from the holder's side;
* greeks of the whole position: delta per 1 unit of F, gamma per unit squared, vega per
  1 vol point (engine / 100), theta per calendar day (engine / 365), rho per 1 % of rate
  (engine / 100);
* T is Act/365: ``(expiry - today).days / 365``;
* break-evens are the forwards at expiry where the payoff equals the premium paid
  (the price compounded to expiry), and where it is zero (zero-premium structure),
  searched on F +/- 50 %.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.options import black76
from app.engine.structured import StructuredProduct, breakevens, greeks, payoff, price
from app.views.jobs import JobContext, JobRunner
from app.views.widgets import ERROR_STYLE, NOTE_STYLE, pydate, qdate, spin_box

COLLAR_PRODUCER = "Collar (producer)"
COLLAR_CONSUMER = "Collar (consumer)"
THREE_WAY = "Three-way"
CALL_SPREAD = "Call spread"
PUT_SPREAD = "Put spread"
PARTICIPATING_SWAP = "Participating swap"
STRUCTURES = (
    COLLAR_PRODUCER,
    COLLAR_CONSUMER,
    THREE_WAY,
    CALL_SPREAD,
    PUT_SPREAD,
    PARTICIPATING_SWAP,
)

#: Labels of the strike inputs (k1, k2, k3) per structure; ``None`` hides the input.
STRIKE_LABELS: dict[str, tuple[str | None, str | None, str | None]] = {
    COLLAR_PRODUCER: ("Put strike", "Call strike", None),
    COLLAR_CONSUMER: ("Put strike", "Call strike", None),
    THREE_WAY: ("Low put strike", "High put strike", "Call strike"),
    CALL_SPREAD: ("K1 (long call)", "K2 (short call)", None),
    PUT_SPREAD: ("K1 (short put)", "K2 (long put)", None),
    PARTICIPATING_SWAP: ("Swap price", None, None),
}
#: Default strikes as multiples of the forward (k1, k2, k3).
DEFAULT_MONEYNESS: dict[str, tuple[float, float, float]] = {
    COLLAR_PRODUCER: (0.9, 1.1, 1.0),
    COLLAR_CONSUMER: (0.9, 1.1, 1.0),
    THREE_WAY: (0.8, 0.9, 1.1),
    CALL_SPREAD: (1.0, 1.1, 1.0),
    PUT_SPREAD: (0.9, 1.0, 1.0),
    PARTICIPATING_SWAP: (1.0, 1.0, 1.0),
}
DEFAULT_F = 74.0
CHART_POINTS = 121


# -- pure calculation (runs in the job) -----------------------------------------------------


@dataclass(frozen=True)
class StructureInputs:
    """One request; ``vol`` and ``rate`` are absolute (0.40 = 40 %), ``participation`` 0..1."""

    structure: str
    k1: float
    k2: float
    k3: float
    participation: float
    quantity: float
    F: float
    expiry: dt.date
    today: dt.date
    vol: float
    rate: float

    @property
    def T(self) -> float:
        return (self.expiry - self.today).days / 365.0


def build_product(inp: StructureInputs) -> StructuredProduct:
    """The :class:`StructuredProduct` for ``inp`` (ValueError on inconsistent strikes)."""
    s, q = inp.structure, inp.quantity
    if s == COLLAR_PRODUCER:
        return StructuredProduct.collar(inp.k1, inp.k2, q, producer=True)
    if s == COLLAR_CONSUMER:
        return StructuredProduct.collar(inp.k1, inp.k2, q, producer=False)
    if s == THREE_WAY:
        return StructuredProduct.three_way(inp.k1, inp.k2, inp.k3, q)
    if s == CALL_SPREAD:
        return StructuredProduct.call_spread(inp.k1, inp.k2, q)
    if s == PUT_SPREAD:
        return StructuredProduct.put_spread(inp.k1, inp.k2, q)
    if s == PARTICIPATING_SWAP:
        return StructuredProduct.participating_swap(inp.k1, inp.participation, q)
    raise ValueError(f"unknown structure '{s}'")


def compute_structure(inp: StructureInputs) -> dict[str, Any]:
    """Price, greeks (display units), legs, break-evens and chart arrays. Raises ValueError."""
    if inp.expiry < inp.today:
        raise ValueError(f"expiry {inp.expiry.isoformat()} is in the past")
    if not inp.vol > 0:
        raise ValueError("volatility must be positive")
    if not inp.F > 0:
        raise ValueError("the forward must be > 0 (Black-76 legs)")
    product = build_product(inp)
    F, T, r, v = inp.F, inp.T, inp.rate, inp.vol
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        total = float(price(product, F, T, r, v))
        g = greeks(product, F, T, r, v)
        legs = []
        for leg in product.legs:
            if leg.kind == "forward":
                unit = math.exp(-r * T) * (F - leg.strike)
            else:
                unit = float(black76(F, leg.strike, T, r, v, leg.kind == "call"))
            legs.append(
                {
                    "kind": leg.kind,
                    "strike": leg.strike,
                    "quantity": leg.quantity,
                    "price": unit,
                    "value": leg.quantity * unit,
                }
            )
        x = np.linspace(0.5 * F, 1.5 * F, CHART_POINTS)
        pay = np.asarray(payoff(product, x), dtype=float)
        today = np.asarray(price(product, x, T, r, v), dtype=float)
    shown = {
        "delta": float(g.delta),
        "gamma": float(g.gamma),
        "vega": float(g.vega) / 100.0,
        "theta": float(g.theta) / 365.0,
        "rho": float(g.rho) / 100.0,
    }
    if not math.isfinite(total) or not all(map(math.isfinite, shown.values())):
        raise ValueError("the model gave no finite value for these inputs")
    premium = total * math.exp(r * T)  # paid today, carried to expiry
    return {
        "inputs": inp,
        "product": product,
        "price": total,
        "price_per_unit": total / inp.quantity,
        "greeks": shown,
        "legs": legs,
        "breakevens": breakevens(product, premium, x),
        "breakevens_zero": breakevens(product, 0.0, x),
        "chart_x": x,
        "payoff": pay,
        "today": today,
    }


# -- the panel ------------------------------------------------------------------------------


class StructurePanel(QWidget):
    """Price a collar, three-way, spread or participating swap as a whole and leg by leg."""

    sig_priced = Signal(object)
    """(result dict of :func:`compute_structure`) after labels, table and chart were updated."""
    sig_failed = Signal(str)
    """(message) shown in red in the panel."""

    def __init__(self, runner: JobRunner, parent: Any = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.setObjectName("structure_panel")
        self.runner = runner
        self.result: dict[str, Any] | None = None
        today = dt.date.today()

        # -- inputs
        self.structure = QComboBox()
        self.structure.addItems(list(STRUCTURES))
        self.k1 = spin_box(-1e7, 1e7, 4)
        self.k2 = spin_box(-1e7, 1e7, 4)
        self.k3 = spin_box(-1e7, 1e7, 4)
        self.participation = spin_box(0.0, 100.0, 2)
        self.participation.setSuffix(" %")
        self.participation.setValue(50.0)
        self.quantity = spin_box(0.0, 1e12, 2)
        self.quantity.setValue(1000.0)
        self.forward = spin_box(0.0, 1e7, 4)
        self.forward.setValue(DEFAULT_F)
        self.expiry = QDateEdit(qdate(today + dt.timedelta(days=91)))
        self.expiry.setCalendarPopup(True)
        self.expiry.setDisplayFormat("yyyy-MM-dd")
        self.t_label = QLabel()
        self.t_label.setStyleSheet(NOTE_STYLE)
        self.vol = spin_box(0.0, 1e4, 4)
        self.vol.setSuffix(" %")
        self.vol.setValue(35.0)
        self.rate = spin_box(-20.0, 50.0, 3)
        self.rate.setSuffix(" %")
        self.rate.setValue(3.0)

        self.k_labels = [QLabel(), QLabel(), QLabel()]
        self.participation_label = QLabel("Participation")
        self.form = QFormLayout()
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.form.addRow("Structure", self.structure)
        for lbl, box in zip(self.k_labels, (self.k1, self.k2, self.k3), strict=True):
            self.form.addRow(lbl, box)
        self.form.addRow(self.participation_label, self.participation)
        self.form.addRow("Quantity", self.quantity)
        self.form.addRow("Forward F", self.forward)
        t_box = QWidget()
        tv = QVBoxLayout(t_box)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.setSpacing(1)
        tv.addWidget(self.expiry)
        tv.addWidget(self.t_label)
        self.form.addRow("Expiry", t_box)
        self.form.addRow("Vol (lognormal)", self.vol)
        self.form.addRow("Rate", self.rate)
        inputs_box = QGroupBox("Structure")
        inputs_box.setLayout(self.form)

        # -- outputs
        self.out: dict[str, QLabel] = {}
        grid = QGridLayout()
        grid.setHorizontalSpacing(12)
        captions = [
            ("price_unit", "Price per unit"),
            ("price", "Price of the whole (× quantity)"),
            ("delta", "Delta (per 1 unit of F)"),
            ("gamma", "Gamma (per unit²)"),
            ("vega", "Vega (per 1 vol point)"),
            ("theta", "Theta (per day)"),
            ("rho", "Rho (per 1 % rate)"),
            ("breakevens", "Break-evens (premium paid)"),
            ("breakevens_zero", "Break-evens (zero premium)"),
        ]
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        for i, (key, text) in enumerate(captions):
            cap = QLabel(text)
            val = QLabel("–")
            val.setObjectName(f"structure_{key}")
            val.setFont(mono)
            val.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            val.setMinimumWidth(140)
            grid.addWidget(cap, i, 0)
            grid.addWidget(val, i, 1)
            self.out[key] = val
        self.out["price"].setStyleSheet("font-weight: bold;")
        note = QLabel("Greeks of the whole position. Holder's side: positive price = premium paid.")
        note.setStyleSheet(NOTE_STYLE)
        note.setWordWrap(True)
        outputs_box = QGroupBox("Results")
        outputs_box.setLayout(grid)

        self.message = QLabel()
        self.message.setObjectName("structure_message")
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setWordWrap(True)
        self.message.hide()

        left = QVBoxLayout()
        left.addWidget(inputs_box)
        left.addWidget(outputs_box)
        left.addWidget(note)
        left.addWidget(self.message)
        left.addStretch(1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setMinimumWidth(380)

        # -- legs table and chart
        self.legs_table = QTableWidget(0, 5)
        self.legs_table.setHorizontalHeaderLabels(
            ["Kind", "Strike", "Quantity", "Price per unit", "Value"]
        )
        self.legs_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.legs_table.verticalHeader().setVisible(False)
        self.legs_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.legs_table.setMinimumHeight(110)

        pg.setConfigOptions(antialias=True)
        self.payoff_plot = pg.PlotWidget(background="w")
        self.payoff_plot.setTitle("Whole structure: payoff at expiry and value today", color="#333")
        self.payoff_plot.addLegend(offset=(10, 10), brush=(255, 255, 255, 210))
        self.payoff_plot.showGrid(x=True, y=True, alpha=0.25)
        self.payoff_plot.setLabel("bottom", "Forward")
        self.payoff_plot.setLabel("left", "Value (× quantity)")
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

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.legs_table)
        right.addWidget(self.payoff_plot)
        right.setStretchFactor(0, 1)
        right.setStretchFactor(1, 3)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left_w)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        # -- wiring
        self._timer = QTimer(self, singleShot=True, interval=150)
        self._timer.timeout.connect(self.recalculate_now)
        self.structure.currentTextChanged.connect(self._structure_changed)
        for sig in (
            self.k1.valueChanged,
            self.k2.valueChanged,
            self.k3.valueChanged,
            self.participation.valueChanged,
            self.quantity.valueChanged,
            self.forward.valueChanged,
            self.expiry.dateChanged,
            self.vol.valueChanged,
            self.rate.valueChanged,
        ):
            sig.connect(self.schedule)
        self._structure_changed(self.structure.currentText())

    # -- helpers ------------------------------------------------------------------------------
    def strike_inputs(self) -> list[QDoubleSpinBox]:
        """The strike-like inputs the current structure uses (in order)."""
        boxes = [self.k1, self.k2, self.k3]
        labels = STRIKE_LABELS[self.structure.currentText()]
        out = [b for b, lbl in zip(boxes, labels, strict=True) if lbl is not None]
        if self.structure.currentText() == PARTICIPATING_SWAP:
            out.append(self.participation)
        return out

    def _structure_changed(self, structure: str) -> None:
        labels = STRIKE_LABELS.get(structure, (None, None, None))
        for i, (lbl, box) in enumerate(
            zip(self.k_labels, (self.k1, self.k2, self.k3), strict=True)
        ):
            text = labels[i]
            if text is not None:
                lbl.setText(text)
            self.form.setRowVisible(box, text is not None)
        self.form.setRowVisible(self.participation, structure == PARTICIPATING_SWAP)
        self.set_default_strikes()

    def set_default_strikes(self) -> None:
        """Strikes around the forward that suit the current structure."""
        F = self.forward.value() or DEFAULT_F
        m = DEFAULT_MONEYNESS.get(self.structure.currentText(), (1.0, 1.0, 1.0))
        step = 10 ** math.floor(math.log10(F)) / 10 if F > 0 else 0.1
        for box, mult in zip((self.k1, self.k2, self.k3), m, strict=True):
            box.blockSignals(True)
            box.setSingleStep(step)
            box.setValue(round(F * mult / step) * step)
            box.blockSignals(False)
        self.schedule()

    def inputs(self) -> StructureInputs:
        """The typed inputs as a request."""
        return StructureInputs(
            structure=self.structure.currentText(),
            k1=self.k1.value(),
            k2=self.k2.value(),
            k3=self.k3.value(),
            participation=self.participation.value() / 100.0,
            quantity=self.quantity.value(),
            F=self.forward.value(),
            expiry=pydate(self.expiry.date()),
            today=dt.date.today(),
            vol=self.vol.value() / 100.0,
            rate=self.rate.value() / 100.0,
        )

    # -- recalculation ------------------------------------------------------------------------
    def schedule(self, *_: Any) -> None:
        """Restart the debounce; one job runs 150 ms after the last change."""
        self._timer.start()

    def recalculate_now(self) -> None:
        self._timer.stop()
        inp = self.inputs()
        self.t_label.setText(f"T = {inp.T:.4f} y (Act/365)")

        def job(ctx: JobContext) -> dict[str, Any]:
            try:
                return compute_structure(inp)
            except ValueError as exc:
                return {"error": str(exc)}

        self.runner.submit("Structure pricer", job, on_result=self._on_result,
                           on_error=self._show_error, key="structure")  # fmt: skip

    def _show_error(self, text: str) -> None:
        self.message.setText(f"Cannot price: {text}")
        self.message.show()
        for lbl in self.out.values():
            lbl.setText("–")
        self.legs_table.setRowCount(0)
        for curve in (self.payoff_curve, self.today_curve):
            curve.setData([], [])  # no stale chart next to an error
        self.result = None
        self.sig_failed.emit(text)

    def _on_result(self, res: dict[str, Any]) -> None:
        if "error" in res:
            self._show_error(res["error"])
            return
        self.message.hide()
        self.result = res
        inp: StructureInputs = res["inputs"]
        self.out["price_unit"].setText(f"{res['price_per_unit']:,.4f}")
        self.out["price"].setText(f"{res['price']:,.2f}")
        for k, fmt in (("delta", ",.4f"), ("gamma", ",.6f"), ("vega", ",.4f"),
                       ("theta", ",.4f"), ("rho", ",.4f")):  # fmt: skip
            self.out[k].setText(format(res["greeks"][k], fmt))
        prem = res["price"] * math.exp(inp.rate * inp.T)
        for key, level in (("breakevens", prem), ("breakevens_zero", 0.0)):
            text = breakeven_text(res["product"], level, res[key])
            self.out[key].setText(text)
            self.out[key].setToolTip(text)

        self.legs_table.setRowCount(len(res["legs"]))
        for row, leg in enumerate(res["legs"]):
            cells = [
                leg["kind"],
                f"{leg['strike']:,.4f}",
                f"{leg['quantity']:,.2f}",
                f"{leg['price']:,.4f}",
                f"{leg['value']:,.2f}",
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                self.legs_table.setItem(row, col, item)

        self.payoff_curve.setData(res["chart_x"], res["payoff"])
        self.today_curve.setData(res["chart_x"], res["today"])
        self.f_line.setValue(inp.F)
        self.sig_priced.emit(res)


def breakeven_text(product: StructuredProduct, premium: float, points: Any) -> str:
    """Break-even points as text; runs where the payoff equals ``premium`` become ``a–b``."""
    pts = [float(b) for b in points]
    if not pts:
        return "none"
    runs: list[list[float]] = [[pts[0], pts[0]]]
    for b in pts[1:]:
        mid = 0.5 * (runs[-1][1] + b)
        flat = abs(float(payoff(product, mid)) - premium) <= 1e-9 * max(1.0, abs(premium))
        if flat:
            runs[-1][1] = b
        else:
            runs.append([b, b])
    return ", ".join(f"{a:,.2f}" if a == b else f"{a:,.2f}–{b:,.2f}" for a, b in runs)
