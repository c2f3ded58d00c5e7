"""Price history of one instrument: a zoomable line chart, range presets, live append.

The history comes from ``loader(instrument) -> (ts_ns int64, last float)`` (the caller backs it
with the local store); it runs on the job runner when one is given. New ticks of the instrument
are appended live from the market bridge's ``sig_quotes`` into a growing buffer (amortised
doubling), so the chart never reloads while it is open.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.feed.instruments import parse_instrument
from app.feed.market_state import MarketState
from app.views.market_bridge import MarketBridge
from app.views.market_watch import price_decimals

if TYPE_CHECKING:
    from app.views.jobs import JobRunner
from app.views.widgets import ERROR_STYLE, NOTE_STYLE

__all__ = ["RANGES", "PriceHistoryDialog"]

log = logging.getLogger(__name__)

Loader = Callable[[str], tuple[np.ndarray, np.ndarray]]
#: Range presets: label -> seconds (None = everything).
RANGES: dict[str, float | None] = {
    "1D": 86_400.0,
    "1W": 7 * 86_400.0,
    "1M": 31 * 86_400.0,
    "1Y": 366 * 86_400.0,
    "All": None,
}


def _describe(instrument: str) -> tuple[str, str]:
    """(title, unit) for an instrument id."""
    try:
        inst = parse_instrument(instrument)
    except ValueError:
        return instrument, ""
    spec = inst.spec
    if spec is None:
        return f"{inst.product} {inst.label}", ""
    return f"{spec.name} {inst.label}", f"{spec.currency}/{spec.unit.label}"


class PriceHistoryDialog(QDialog):
    """Non-modal chart of one instrument's recorded prices, appended live from the bridge."""

    sig_loaded = Signal(int)
    """(number of points) the history arrived and is shown (0: the empty message is shown)."""

    def __init__(
        self,
        instrument: str,
        loader: Loader,
        runner: JobRunner | None = None,
        state: MarketState | None = None,
        bridge: MarketBridge | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # lazy: keeps application start-up fast

        self.instrument = instrument
        self.loader = loader
        self.runner = runner
        self.state = state
        self.bridge = bridge
        self.setObjectName("price_history")
        self.setModal(False)
        title, self.unit = _describe(instrument)
        self.setWindowTitle(f"Price history: {instrument}")
        self.resize(760, 440)
        self._x = np.zeros(1024)
        self._y = np.zeros(1024)
        self._n = 0
        self._loaded = False
        self._open = True  # False between close and reopen
        self._pending: list[tuple[float, float]] = []  # live ticks that arrived while loading

        self.plot: Any = pg.PlotWidget(
            background="w", axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}
        )
        self.plot.setObjectName("history_plot")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.setTitle(title, color="#333", size="10pt")
        self.plot.setLabel("left", self.unit or "price")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.curve = self.plot.plot(pen=pg.mkPen("#1565c0", width=1.5))
        self.curve.setDownsampling(auto=True, method="peak")
        self.curve.setClipToView(True)
        self.marker = pg.ScatterPlotItem(size=7, brush=pg.mkBrush("#c62828"), pen=None)
        self.plot.addItem(self.marker, ignoreBounds=True)
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#999", width=1))
        self.vline.hide()
        self.plot.addItem(self.vline, ignoreBounds=True)
        self._mouse = pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._mouse_moved)  # fmt: skip

        self.message = QLabel(f"Loading the price history of {instrument}…")
        self.message.setObjectName("history_message")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #666; font-size: 14px; background: white;")
        self.stack = QStackedWidget()
        self.stack.addWidget(self.message)
        self.stack.addWidget(self.plot)

        self.range_group = QButtonGroup(self)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        self.range_buttons: dict[str, QPushButton] = {}
        for name in RANGES:
            b = QPushButton(name)
            b.setCheckable(True)
            b.setAutoDefault(False)
            b.setFixedWidth(44)
            b.setToolTip("Show everything" if name == "All" else f"Show the last {name}")
            b.clicked.connect(lambda _c=False, n=name: self.set_range(n))
            self.range_group.addButton(b)
            self.range_buttons[name] = b
            bar.addWidget(b)
        self.range_buttons["All"].setChecked(True)
        self.reset_button = QPushButton("Reset zoom")
        self.reset_button.setAutoDefault(False)
        self.reset_button.setToolTip("Back to the whole history (mouse wheel zooms, drag pans)")
        self.reset_button.clicked.connect(lambda: self.set_range("All"))
        bar.addSpacing(8)
        bar.addWidget(self.reset_button)
        bar.addStretch(1)
        self.info = QLabel()
        self.info.setObjectName("history_info")
        self.info.setStyleSheet(NOTE_STYLE)
        bar.addWidget(self.info)
        self.readout = QLabel(" ")
        self.readout.setObjectName("history_readout")
        self.readout.setStyleSheet(NOTE_STYLE)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.readout)

        self._live = bridge is not None and state is not None
        if bridge is not None and self._live:
            bridge.sig_quotes.connect(self._on_quotes)
        self.finished.connect(self._closed)
        self.load()

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)load the history: on the runner when given, else right here."""
        inst, loader = self.instrument, self.loader
        if self.runner is None:
            try:
                self._on_loaded(loader(inst))
            except Exception as exc:
                log.exception("price history of %s", inst)
                self._on_failed(f"Could not load the history of {inst}: {exc}")
            return
        self.runner.submit(
            f"Price history {inst}",
            lambda _ctx: loader(inst),
            on_result=self._on_loaded,
            on_error=self._on_failed,
            key=f"price-history:{id(self)}",  # a reload replaces this dialog's own request
        )

    def _on_loaded(self, result: tuple[np.ndarray, np.ndarray]) -> None:
        if not self._open:
            return  # closed while loading: keep nothing (reopen loads again)
        ts, last = result
        x = np.asarray(ts, dtype=np.int64).astype(float) / 1e9
        y = np.asarray(last, dtype=float)
        ok = np.isfinite(y)
        x, y = x[ok], y[ok]
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        pending = [(px, py) for px, py in self._pending if not len(x) or px > x[-1]]
        self._pending.clear()
        self._n = 0
        self._ensure(len(x) + len(pending) + 1024)
        self._x[: len(x)], self._y[: len(x)] = x, y
        self._n = len(x)
        for px, py in pending:
            self._append(px, py)
        self._loaded = True
        self._redraw()
        self.set_range("All")
        self.sig_loaded.emit(self._n)

    def _on_failed(self, message: str) -> None:
        self._loaded = True
        self.message.setText(message)
        self.message.setStyleSheet(ERROR_STYLE + " font-size: 13px; background: white;")
        self.stack.setCurrentIndex(0)

    def _ensure(self, cap: int) -> None:
        if cap > len(self._x):
            size = max(cap, 2 * len(self._x))
            x, y = np.zeros(size), np.zeros(size)
            x[: self._n], y[: self._n] = self._x[: self._n], self._y[: self._n]
            self._x, self._y = x, y

    def _append(self, x: float, y: float) -> None:
        if self._n and x <= self._x[self._n - 1]:
            return  # an older or repeated tick
        self._ensure(self._n + 1)
        self._x[self._n], self._y[self._n] = x, y
        self._n += 1

    # -- live -------------------------------------------------------------------------------
    def _on_quotes(self, changed: set[str]) -> None:
        if self.instrument not in changed or self.state is None:
            return
        q = self.state.quote(self.instrument)
        if q is None or q.last is None or not q.ts:
            return
        x, y = q.ts / 1e9, float(q.last)
        if not self._loaded:
            self._pending.append((x, y))
            return
        before = self._n
        self._append(x, y)
        if self._n != before:
            self._redraw()

    def _detach(self) -> None:
        if self._live and self.bridge is not None:
            self._live = False
            self.bridge.sig_quotes.disconnect(self._on_quotes)

    def _closed(self) -> None:
        """Closed: stop following the feed and free the history (``reopen`` reloads it)."""
        self._detach()
        self._open = False
        self._loaded = False
        self._n = 0
        self._x, self._y = np.zeros(1024), np.zeros(1024)
        self.curve.setData([], [])

    def reopen(self) -> None:
        """Show again (after a close): follow the feed again and reload the history."""
        self._open = True
        if not self._live and self.bridge is not None and self.state is not None:
            self._live = True
            self.bridge.sig_quotes.connect(self._on_quotes)
        if not self._loaded:
            self.message.setText(f"Loading the price history of {self.instrument}…")
            self.stack.setCurrentIndex(0)
            self.load()
        self.show()
        self.raise_()
        self.activateWindow()

    # -- view -------------------------------------------------------------------------------
    @property
    def points(self) -> int:
        """Points shown."""
        return self._n

    def series(self) -> tuple[np.ndarray, np.ndarray]:
        """(x seconds, y) shown (views into the buffer)."""
        return self._x[: self._n], self._y[: self._n]

    def _redraw(self) -> None:
        n = self._n
        for b in (*self.range_buttons.values(), self.reset_button):
            b.setEnabled(n > 1)
        if n == 0:
            self.message.setText(
                f"No history recorded yet for {self.instrument}.\n\nPrices are recorded while "
                "the feed runs; new ticks appear here as they arrive."
            )
            self.stack.setCurrentIndex(0)
            self.info.setText("")
            return
        self.curve.setData(self._x[:n], self._y[:n])
        self.stack.setCurrentIndex(1)
        first = dt.datetime.fromtimestamp(self._x[0]).strftime("%Y-%m-%d")
        last = dt.datetime.fromtimestamp(self._x[n - 1]).strftime("%Y-%m-%d %H:%M")
        self.info.setText(f"{n:,} points · {first} → {last}")

    def set_range(self, name: str) -> None:
        """Show a preset range ending at the last point (``All``: everything)."""
        self.range_buttons[name].setChecked(True)
        vb = self.plot.getPlotItem().vb
        if self._n == 0:
            return
        span = RANGES[name]
        end = float(self._x[self._n - 1])
        if span is None:
            vb.enableAutoRange(axis="xy", enable=True)
            vb.setAutoVisible(y=False)
            vb.autoRange(padding=0.02)
            return
        start = end - span
        vb.setXRange(start, end + span * 0.01, padding=0)
        vb.setAutoVisible(y=True)
        vb.enableAutoRange(axis="y", enable=True)

    def _mouse_moved(self, event: Any) -> None:
        pos = event[0]
        vb = self.plot.getPlotItem().vb
        if self._n == 0 or not vb.sceneBoundingRect().contains(pos):
            return
        x = vb.mapSceneToView(pos).x()
        self.vline.setPos(x)
        self.vline.show()
        self.readout.setText(self.readout_at(x))

    def readout_at(self, x: float) -> str:
        """Text for the point nearest to epoch seconds ``x`` (and marks it on the chart)."""
        n = self._n
        if n == 0:
            return " "
        xs = self._x[:n]
        k = int(np.clip(np.searchsorted(xs, x), 0, n - 1))
        if k > 0 and abs(xs[k - 1] - x) < abs(xs[k] - x):
            k -= 1
        v = float(self._y[k])
        self.marker.setData([xs[k]], [v])
        when = dt.datetime.fromtimestamp(float(xs[k])).strftime("%Y-%m-%d %H:%M:%S")
        d = price_decimals(self.instrument.split(":", 1)[0], v)
        return f"{when}   {v:,.{d}f} {self.unit}"
