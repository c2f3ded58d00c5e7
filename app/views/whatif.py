"""The What-if dock: a sandbox of hypothetical trades and curve shocks next to the real book,
and the pre-trade impact the trade ticket shows while the trader types.

Hypothetical trades come from the trade ticket (*Add to what-if*, also reachable from the
Options Pricer's *Book this option…*); curve shocks are added in the panel. *Calculate* (and
every change of the sandbox) revalues the real book and the sandbox on the job runner with
:class:`app.services.whatif.WhatIfService` using the Risk dock's method, confidence, horizon and
book choice, and shows positions, MTM, VaR and ES side by side with the change. Nothing is
written to the store; it works offline (curves in hand: live or last settlement).

The panel is also the ticket's :class:`~app.views.ticket.TicketHooks`: *Add to what-if* and
the live pre-trade impact (incremental VaR/ES of the trade's currency and the book's position
change, latest request wins, off the GUI thread).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.enums import InstrumentType
from app.services.positions import PositionReport
from app.services.whatif import CurveShock, PreTradeImpact, Sandbox, WhatIfResult, WhatIfService
from app.views.jobs import JobContext, JobRunner
from app.views.risk_panel import tenor_vols

__all__ = ["WhatIfPanel"]

_ALL = "All curves"
_RESULT_HEADERS = ("Measure", "Unit", "Real book", "What-if", "Change")
_TRADE_HEADERS = ("Book", "Product", "Instrument", "Side", "Quantity", "Price", "Delivery")


def _num(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


class WhatIfPanel(QWidget):
    """The What-if dock panel; see the module docstring.

    ``positions`` is the Positions panel (its ``report``, ``state``, ``as_of``, ``vol`` and
    ``service``), ``risk`` the Risk panel (settings and its risk service).
    """

    sig_result = Signal(object)
    """(WhatIfResult) a comparison is shown."""
    sig_message = Signal(str)

    def __init__(self, runner: JobRunner, positions: Any, risk: Any, trading: Any,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("whatif")
        self.runner = runner
        self.positions = positions
        self.risk = risk
        self.trading = trading
        self.sandbox = Sandbox()
        #: The limits service (set by the main window): limit usage in the comparison and the
        #: pre-trade impact, measured without recording anything.
        self.limits: Any = None
        self.raws: list[dict[str, Any]] = []
        self.result: WhatIfResult | None = None
        self._job: Any = None

        self.trades = QTableWidget(0, len(_TRADE_HEADERS))
        self.trades.setObjectName("whatif_trades")
        self.trades.setHorizontalHeaderLabels(list(_TRADE_HEADERS))
        self.trades.verticalHeader().hide()
        self.trades.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.trades.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.trades.horizontalHeader().setStretchLastSection(True)
        self.add_trade_button = QPushButton("Add trade…")
        self.add_trade_button.setObjectName("whatif_add_trade")
        self.add_trade_button.setToolTip("Open a ticket; its 'Add to what-if' puts the trade here")
        self.add_trade_button.clicked.connect(self.open_ticket)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        self.clear_button = QPushButton("Clear sandbox")
        self.clear_button.setObjectName("whatif_clear")
        self.clear_button.clicked.connect(self.clear)

        self.shock_product = QComboBox()
        self.shock_product.setObjectName("whatif_shock_product")
        self.shock_product.addItem(_ALL)
        self.shock_shift = QDoubleSpinBox()
        self.shock_shift.setObjectName("whatif_shock_shift")
        self.shock_shift.setRange(-10_000.0, 10_000.0)
        self.shock_shift.setDecimals(3)
        self.shock_shift.setPrefix("shift ")
        self.shock_pct = QDoubleSpinBox()
        self.shock_pct.setObjectName("whatif_shock_pct")
        self.shock_pct.setRange(-99.0, 1_000.0)
        self.shock_pct.setSuffix(" %")
        self.add_shock_button = QPushButton("Add shock")
        self.add_shock_button.setObjectName("whatif_add_shock")
        self.add_shock_button.clicked.connect(self.add_shock_from_editor)
        self.shocks_label = QLabel("No curve shocks.")
        self.shocks_label.setObjectName("whatif_shocks")
        self.shocks_label.setWordWrap(True)

        self.calc_button = QPushButton("Calculate")
        self.calc_button.setObjectName("whatif_calculate")
        self.calc_button.clicked.connect(self.calculate)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(100)
        self.progress.hide()
        self.message = QLabel("Add hypothetical trades (ticket → Add to what-if) or curve shocks.")
        self.message.setObjectName("whatif_message")
        self.message.setWordWrap(True)
        self.results = QTableWidget(0, len(_RESULT_HEADERS))
        self.results.setObjectName("whatif_results")
        self.results.setHorizontalHeaderLabels(list(_RESULT_HEADERS))
        self.results.verticalHeader().hide()
        self.results.verticalHeader().setDefaultSectionSize(22)
        self.results.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.results.setAlternatingRowColors(True)
        self.results.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.results.horizontalHeader().setStretchLastSection(False)
        self.results.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.note = QLabel("")
        self.note.setObjectName("whatif_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555; font-size: 11px;")
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        tbar = QHBoxLayout()
        tbar.setContentsMargins(0, 0, 0, 0)
        tbar.addWidget(QLabel("<b>Hypothetical trades</b>"))
        tbar.addStretch(1)
        for b in (self.add_trade_button, self.remove_button, self.clear_button):
            tbar.addWidget(b)
        sbar = QHBoxLayout()
        sbar.setContentsMargins(0, 0, 0, 0)
        sbar.addWidget(QLabel("<b>Curve shock</b>"))
        for w in (self.shock_product, self.shock_shift, self.shock_pct, self.add_shock_button):
            sbar.addWidget(w)
        sbar.addStretch(1)
        sbar.addWidget(self.progress)
        sbar.addWidget(self.calc_button)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addLayout(tbar)
        tl.addWidget(self.trades)
        tl.addLayout(sbar)
        tl.addWidget(self.shocks_label)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.message)
        bl.addWidget(self.results, 1)
        bl.addWidget(self.note)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setSizes([180, 320])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        if hasattr(positions, "consumers"):
            positions.consumers.append(self)
        self._auto = QTimer(self)
        self._auto.setSingleShot(True)
        self._auto.setInterval(300)
        self._auto.timeout.connect(self.calculate)

    # ------------------------------------------------------------------ sandbox editing

    def _products(self) -> list[str]:
        ref = getattr(self.trading, "refdata", None)
        return sorted(p.code for p in ref.products.values()) if ref is not None else []

    def showEvent(self, event: Any) -> None:
        if self.shock_product.count() <= 1:
            self.shock_product.addItems(self._products())
        super().showEvent(event)

    def add_trade(self, raw: dict[str, Any], economics: dict[str, Any]) -> None:
        """Put a validated trade in the sandbox (the ticket's *Add to what-if*)."""
        self.raws.append(dict(raw))
        self.sandbox.trades.append(dict(economics))
        self._refresh_trades()
        self.sig_message.emit(f"What-if: added {raw.get('side')} {raw.get('quantity')} "
                              f"{raw.get('product')}")  # fmt: skip
        self._auto.start()

    def remove_selected(self) -> None:
        rows = sorted({i.row() for i in self.trades.selectedIndexes()}, reverse=True)
        for r in rows:
            del self.raws[r]
            del self.sandbox.trades[r]
        self._refresh_trades()
        if rows:
            self._auto.start()

    def clear(self) -> None:
        """Empty the sandbox (trades and shocks)."""
        self.raws.clear()
        self.sandbox = Sandbox()
        self._refresh_trades()
        self.shocks_label.setText("No curve shocks.")
        self._auto.start()

    def add_shock(self, shock: CurveShock) -> None:
        self.sandbox.shocks.append(shock)
        self.shocks_label.setText("Shocks: " + "; ".join(s.text() for s in self.sandbox.shocks))
        self._auto.start()

    def add_shock_from_editor(self) -> None:
        shift, pct = self.shock_shift.value(), self.shock_pct.value()
        if not shift and not pct:
            self._error("A curve shock needs a shift or a percentage.")
            return
        product = self.shock_product.currentText()
        self.add_shock(CurveShock("*" if product == _ALL else product, shift, pct))

    def _refresh_trades(self) -> None:
        self.trades.setRowCount(len(self.raws))
        for r, raw in enumerate(self.raws):
            opt = str(raw.get("instrument")) == InstrumentType.OPTION.label
            inst = str(raw.get("instrument"))
            if opt:
                inst = f"{raw.get('option_type')} {raw.get('strike')} exp {raw.get('expiry_date')}"
            cells = (raw.get("book"), raw.get("product"), inst, raw.get("side"),
                     raw.get("quantity"), raw.get("price"),
                     f"{raw.get('delivery_start')} – {raw.get('delivery_end')}")  # fmt: skip
            for c, v in enumerate(cells):
                self.trades.setItem(r, c, QTableWidgetItem(str(v)))
        self.trades.resizeColumnsToContents()

    def open_ticket(self) -> None:
        from app.views.ticket import TicketDialog

        dlg = TicketDialog(self.trading, parent=self)
        dlg.show()

    # ------------------------------------------------------------------ inputs

    def _inputs(self) -> tuple[Any, ...] | None:
        """The last positions report, market state, as-of and vol of the Positions panel."""
        report: PositionReport | None = getattr(self.positions, "report", None)
        if report is None:
            return None
        return report, self.positions.state, self.positions.as_of(), self.positions.vol

    def _service(self) -> WhatIfService:
        return WhatIfService(self.positions.service, self.risk.service(), tenor_vols(),
                             self.limits)  # fmt: skip

    @staticmethod
    def _curves(state: Any, products: set[str], vol: float) -> tuple[Any, Any]:
        from app.views.positions import atm_vols_from_state, curves_from_state

        curves, _stale = curves_from_state(state, products)
        return curves, atm_vols_from_state(state, products, vol)

    # ------------------------------------------------------------------ comparison

    def calculate(self) -> None:
        """Compare the real book with the sandbox (job runner, latest wins)."""
        got = self._inputs()
        if got is None:
            self._error("No positions yet: the Positions dock has not valued the book.")
            return
        report, state, as_of, vol = got
        sandbox = Sandbox(list(self.sandbox.trades), list(self.sandbox.shocks))
        method = str(self.risk.method.currentData())
        confidence = float(self.risk.confidence.currentData())
        horizon = int(self.risk.horizon.value())
        books = self.risk.selected_books()
        ref = report.snapshot.ref
        if any(int(e["product_id"]) not in ref.products or int(e["book_id"]) not in ref.books
               for e in sandbox.trades):  # fmt: skip
            self._error("The reference data changed since these trades were added: clear the "
                        "sandbox and add them again.")  # fmt: skip
            return
        products = set(report.snapshot.product_codes) | {
            ref.products[int(e["product_id"])].code for e in sandbox.trades
        }

        def work(ctx: JobContext) -> WhatIfResult:
            curves, vols = self._curves(state, products, vol)
            missing = sorted(p for p in products if p not in curves)
            if missing and any(ref.products[int(e["product_id"])].code in missing
                               for e in sandbox.trades):  # fmt: skip
                raise ValueError(f"no curve for {', '.join(missing)}: cannot value the sandbox")
            return self._service().compare(report.snapshot, curves, as_of, vols, sandbox,
                                           method=method, confidence=confidence,
                                           horizon_days=horizon, books=books,
                                           cancelled=ctx.cancelled)  # fmt: skip

        self.message.setStyleSheet("")
        self.message.setText("Calculating the what-if…")
        self.progress.show()
        self._job = self.runner.submit("What-if", work, on_result=self._on_result,
                                       on_error=self._on_error, key="whatif")  # fmt: skip
        self._job.sig_finished.connect(self._on_finished)

    def _on_finished(self) -> None:
        if self.sender() is self._job:
            self._job = None
            self.progress.hide()

    def _error(self, text: str) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #b3261e;")
        self.sig_message.emit(text)

    def _on_error(self, text: str) -> None:
        self._error(f"What-if failed: {text}")

    def _on_result(self, res: WhatIfResult) -> None:
        self.result = res
        self.message.setStyleSheet("")
        n = len(self.sandbox.trades)
        self.message.setText(
            f"Real book vs sandbox ({n} hypothetical trade{'s' if n != 1 else ''}, "
            f"{len(self.sandbox.shocks)} shock{'s' if len(self.sandbox.shocks) != 1 else ''})."
        )
        self.results.setRowCount(len(res.rows))
        for r, row in enumerate(res.rows):
            cells = (row.label, row.unit, _num(row.real), _num(row.sandbox), f"{row.change:+,.0f}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c >= 2:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                if c == 4 and row.change and row.section == "risk":
                    item.setForeground(QColor("#b3261e") if row.change > 0 else QColor("#1b7f3b"))
                self.results.setItem(r, c, item)
        self.note.setText(res.note)
        self.sig_result.emit(res)

    # ------------------------------------------------------------------ ticket hooks

    def add_to_whatif(self, raw: dict[str, Any], economics: dict[str, Any]) -> None:
        """:class:`~app.views.ticket.TicketHooks`: the ticket's *Add to what-if*."""
        self.add_trade(raw, economics)

    def request_impact(
        self,
        economics: dict[str, Any],
        on_result: Callable[[PreTradeImpact], None],
        on_error: Callable[[str], None],
    ) -> str | None:
        """:class:`~app.views.ticket.TicketHooks`: compute the pre-trade impact of one trade.

        Returns a message instead (and computes nothing) when there is no valued book yet.
        """
        got = self._inputs()
        if got is None:
            return "Pre-trade impact: the Positions dock has not valued the book yet."
        report, state, as_of, vol = got
        ref = report.snapshot.ref
        if (
            int(economics["product_id"]) not in ref.products
            or int(economics["book_id"]) not in ref.books
        ):
            return "Pre-trade impact: the positions are being refreshed; try again in a moment."
        code = ref.products[int(economics["product_id"])].code
        products = set(report.snapshot.product_codes) | {code}

        def work(_ctx: JobContext) -> PreTradeImpact:
            # Before and after on the same curves, so the difference is the trade alone.
            curves, vols = self._curves(state, products, vol)
            if code not in curves:
                raise ValueError(f"no curve for {code}")
            return self._service().pre_trade(report.snapshot, curves, as_of, vols, economics)

        self.runner.submit("Pre-trade impact", work, on_result=on_result, on_error=on_error,
                           key="pretrade")  # fmt: skip
        return None
