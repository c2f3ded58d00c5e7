"""Positions dock: open positions grouped by book, commodity, product, period or counterparty,
marked to the live forward curves (or the last settlement curves when no feed runs).

Everything heavy (reading trades, valuation, regrouping) runs as ONE job on the
:class:`~app.views.jobs.JobRunner` with key ``'positions'``: a newer request supersedes the
running one, so a late result never lands. Curve changes from the
:class:`~app.views.market_bridge.MarketBridge` are coalesced by a single-shot timer: at most one
revaluation per :data:`MIN_INTERVAL_MS`, however fast the feed ticks, and none while the panel
is hidden (the next show catches up). Double-clicking a row emits :attr:`PositionsPanel.sig_drill`
with the trades behind it and opens a small list of them.

The **P&L** tab shows realised, unrealised and day-over-day P&L with its explain per group
(:mod:`app.services.pnl`), computed in the same job when the tab is shown, against yesterday's
settlement curves from the store or against the first revaluation of the session.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
from PySide6.QtGui import QColor, QGuiApplication, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStackedWidget,
    QTabBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.engine.curves import ForwardCurve
from app.feed.market_state import MarketState
from app.services.pnl import PnLReport, PnLService, Yesterday
from app.services.positions import (
    DEFAULT_VOL,
    DIMENSIONS,
    PositionReport,
    PositionService,
    PositionSnapshot,
)
from app.views.jobs import JobContext, JobRunner
from app.views.market_bridge import MarketBridge
from app.views.widgets import NOTE_STYLE

__all__ = [
    "COLUMNS",
    "PNL_COLUMNS",
    "DrillDialog",
    "PnLModel",
    "PositionsModel",
    "PositionsPanel",
    "format_number",
]

Index = QModelIndex | QPersistentModelIndex

#: Minimum time between two curve-driven revaluations (ms).
MIN_INTERVAL_MS = 1000
#: Coalescing window: a first curve change waits this long for the others of its burst (ms).
COALESCE_MS = 200
#: Rows shown in the drill-down dialog (the signal carries every trade).
DRILL_MAX_ROWS = 5000

_NEG = QColor("#b3261e")
_MUTED = QColor("#8a8a8a")
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_LEFT = int((Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter).value)


@dataclass(frozen=True)
class Column:
    """A positions column: ``key`` in :class:`PositionGroups`, title, kind, width, tooltip."""

    key: str
    title: str
    kind: str  # text | volume | money | greek | int
    width: int
    tip: str


COLUMNS: list[Column] = [
    Column("label", "Group", "text", 150, "Group (rows are split by currency)"),
    Column("currency", "Ccy", "text", 42, "Currency of the MTM and greeks in this row"),
    Column("net_qty", "Net volume", "volume", 105,
           "Open volume in the product's unit (long > 0); blank when the row holds several "
           "products"),
    Column("unit", "Unit", "text", 58, "Product unit"),
    Column("delta_qty", "Δ-eq volume", "volume", 105,
           "Delta-equivalent open volume in the product's unit (forwards count 1:1)"),
    Column("net_mwh", "Net MWh", "volume", 100,
           "Open power and gas volume in MWh (1 MWh = 3.412142 MMBtu; 1 therm = 0.1 MMBtu)"),
    Column("net_bbl", "Net bbl", "volume", 95,
           "Open oil and products volume in bbl (1 bbl = 42 gal; 1 t gasoil ≈ 7.45 bbl)"),
    Column("delta_mwh", "Δ-eq MWh", "volume", 100, "Delta-equivalent power and gas volume"),
    Column("delta_bbl", "Δ-eq bbl", "volume", 95, "Delta-equivalent oil and products volume"),
    Column("mtm", "MTM (unrealised)", "money", 130,
           "Unrealised P&L of the open volume, undiscounted; n/a when a trade has no mark"),
    Column("vega", "Vega /vol pt", "greek", 90, "Option value change for +1 vol point"),
    Column("theta", "Theta /day", "greek", 80, "Option value change per calendar day"),
    Column("gamma", "Gamma", "greek", 80,
           "Change of delta volume per 1 price unit (single-product rows only)"),
    Column("n_trades", "Trades", "int", 55, "Open trades behind the row (double-click to list)"),
    Column("marks", "Marks", "text", 200, "How the row was marked"),
]  # fmt: skip
_ALIGN = [_LEFT if c.kind == "text" else _RIGHT for c in COLUMNS]
#: A NaN delta next to a finite volume comes from an unmarked option: "n/a", not blank.
_PARTNER = {"delta_qty": "net_qty", "delta_mwh": "net_mwh", "delta_bbl": "net_bbl",
            "gamma": "net_qty"}  # fmt: skip
_MTM_COL = next(i for i, c in enumerate(COLUMNS) if c.key == "mtm")


def format_number(x: float, kind: str) -> str:
    """Display text: thousands separators, no decimals for big numbers, blank for NaN.

    >>> format_number(-1234567.891, "money"), format_number(2.5, "volume")
    ('-1,234,568', '2.50')
    """
    if x is None or not math.isfinite(x):
        return ""
    if kind == "int":
        return f"{int(x):,}"
    if abs(x) >= 100 or x == 0:
        return f"{x:,.0f}"
    return f"{x:,.2f}"


class PositionsModel(QAbstractTableModel):
    """Table model over the arrays of a :class:`PositionReport`'s groups (sortable)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.report: PositionReport | None = None
        self._view = np.zeros(0, dtype=np.int64)
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)

    def set_report(self, report: PositionReport | None) -> None:
        """Show ``report`` (keeps the sort column)."""
        self.beginResetModel()
        self.report = report
        self._view = self._order()
        self.endResetModel()

    def _order(self) -> np.ndarray:
        if self.report is None:
            return np.zeros(0, dtype=np.int64)
        g = self.report.groups
        n = len(g)
        col, order = self._sort
        if col < 0:
            return np.arange(n, dtype=np.int64)
        key = COLUMNS[col].key
        values = getattr(g, key)
        if COLUMNS[col].kind == "text":
            idx = sorted(range(n), key=lambda i: str(values[i]).casefold())
            rows = np.array(idx, dtype=np.int64)
        else:
            v = np.asarray(values, dtype=float)
            rows = np.argsort(np.where(np.isnan(v), np.inf, v), kind="stable")
        if order == Qt.SortOrder.DescendingOrder:
            rows = rows[::-1]
        return np.asarray(rows, dtype=np.int64)

    def group_row(self, row: int) -> int:
        """Index into the report's groups of visible row ``row``."""
        return int(self._view[row])

    def trade_uuids(self, row: int) -> list[str]:
        """Trade UUIDs (hex) behind visible row ``row``."""
        if self.report is None:
            return []
        members = self.report.groups.members[self.group_row(row)]
        return [str(u) for u in self.report.trade_uuid[members].tolist()]

    def text(self, row: int, column: int) -> str:
        assert self.report is not None
        g = self.report.groups
        r = self.group_row(row)
        col = COLUMNS[column]
        v = getattr(g, col.key)[r]
        if col.kind == "text":
            return str(v)
        if not math.isfinite(float(v)) and self._unmarked_nan(col.key, r):
            return "n/a"
        if col.kind == "greek" and float(v) == 0:
            return ""  # no live options in the row: blank reads better than a column of zeros
        return format_number(float(v), col.kind)

    def _unmarked_nan(self, key: str, r: int) -> bool:
        """True when a NaN in column ``key`` of group ``r`` means "not marked" (shown as n/a)
        rather than "not applicable" (several products, nothing of that family: blank)."""
        assert self.report is not None
        g = self.report.groups
        if key == "mtm":
            return True
        partner = _PARTNER.get(key)
        if partner is not None:
            return math.isfinite(float(getattr(g, partner)[r]))
        return key in ("vega", "theta") and bool(g.n_unmarked[r])

    # -- Qt API -------------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else int(self._view.size)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.report is None:
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(row, column)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _ALIGN[column]
        col = COLUMNS[column]
        g = self.report.groups
        r = self.group_row(row)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col.key == "marks" and (g.stale[r] or g.n_unmarked[r]):
                return _NEG if g.n_unmarked[r] else _MUTED
            if col.kind in ("volume", "money", "greek"):
                v = float(getattr(g, col.key)[r])
                if not math.isfinite(v):
                    return _MUTED
                if v < 0:
                    return _NEG
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == _MTM_COL and not math.isfinite(float(g.mtm[r])):
                marked = format_number(float(g.mtm_marked[r]), "money")
                return (f"{g.n_unmarked[r]} of {g.n_trades[r]} trades have no mark "
                        f"({g.marks[r]}); the others sum to {marked} {g.currency[r]}")  # fmt: skip
            if col.key == "marks":
                return str(g.marks[r])
            if col.kind != "text" and self.text(row, column) == "n/a":
                return f"No mark: {g.marks[r]}"
            return None
        if role == Qt.ItemDataRole.UserRole:
            return self.trade_uuids(row)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        col = COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            if col.key == "label" and self.report is not None:
                return DIMENSIONS[self.report.groups.dimension]
            return col.title
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _ALIGN[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return col.tip
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        old = self._view
        self._sort = (column, order)
        self._view = self._order()
        inv = np.empty(len(self._view), dtype=np.int64)
        inv[self._view] = np.arange(len(self._view))
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(
            persistent,
            [self.index(int(inv[old[p.row()]]), p.column()) for p in persistent],
        )
        self.layoutChanged.emit()


PNL_COLUMNS: list[Column] = [
    Column("label", "Group", "text", 120, "Group (rows are split by currency)"),
    Column("currency", "Ccy", "text", 42, "Currency of the row"),
    Column("realised", "Realised", "money", 95,
           "Locked-in P&L of delivered volume: side × delivered qty × (month settlement − "
           "price); options: exercise value − premium. n/a when a month's settlement is not "
           "recorded"),
    Column("unrealised", "Unrealised", "money", 95, "MTM of the open volume (as Positions)"),
    Column("total", "Total P&L", "money", 95, "Realised + unrealised (lifetime P&L today)"),
    Column("dod", "Day P&L", "money", 90,
           "Change of the total P&L since yesterday's marks (see the note below the table)"),
    Column("price", "Price", "money", 85,
           "Yesterday's positions revalued on today's curves minus on yesterday's"),
    Column("time", "Time decay", "money", 80,
           "Options: value change from the passage of time at unchanged curves"),
    Column("new", "New", "money", 80, "Trades booked since yesterday: their P&L today"),
    Column("amended", "Amended", "money", 80,
           "Amended trades: today's version P&L minus yesterday's version P&L"),
    Column("cancelled", "Cancelled", "money", 80,
           "Trades cancelled since yesterday: minus their P&L at today's marks"),
    Column("delivered", "Delivered", "money", 80,
           "Volume delivered since yesterday: realised at the month settlement minus its "
           "unrealised at yesterday's curve"),
    Column("residual", "Unexplained", "money", 88,
           "Day P&L minus the sum of the parts (rounding only)"),
    Column("n_trades", "Trades", "int", 55, "Today's trades behind the row"),
    Column("notes", "Notes", "text", 220, "Missing inputs behind an n/a"),
]  # fmt: skip
_PNL_ALIGN = [_LEFT if c.kind == "text" else _RIGHT for c in PNL_COLUMNS]
_HALF_CENT = 0.005


class PnLModel(QAbstractTableModel):
    """Table model over the groups of a :class:`PnLReport` (sortable)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.report: PnLReport | None = None
        self._view = np.zeros(0, dtype=np.int64)
        self._sort: tuple[int, Qt.SortOrder] = (-1, Qt.SortOrder.AscendingOrder)

    def set_report(self, report: PnLReport | None) -> None:
        self.beginResetModel()
        self.report = report
        self._view = self._order()
        self.endResetModel()

    def _order(self) -> np.ndarray:
        if self.report is None:
            return np.zeros(0, dtype=np.int64)
        g = self.report.groups
        col, order = self._sort
        if col < 0:
            return np.arange(len(g), dtype=np.int64)
        values = getattr(g, PNL_COLUMNS[col].key)
        if PNL_COLUMNS[col].kind == "text":
            rows = np.array(sorted(range(len(g)), key=lambda i: str(values[i]).casefold()),
                            dtype=np.int64)  # fmt: skip
        else:
            v = np.asarray(values, dtype=float)
            rows = np.argsort(np.where(np.isnan(v), np.inf, v), kind="stable")
        return np.asarray(rows[::-1] if order == Qt.SortOrder.DescendingOrder else rows)

    def group_row(self, row: int) -> int:
        return int(self._view[row])

    def text(self, row: int, column: int) -> str:
        assert self.report is not None
        col = PNL_COLUMNS[column]
        v = getattr(self.report.groups, col.key)[self.group_row(row)]
        if col.kind == "text":
            return str(v)
        if not math.isfinite(float(v)):
            return "n/a"
        if col.kind == "money" and abs(float(v)) < _HALF_CENT:
            return "0"  # rounding noise of an exact cancellation, not a figure
        return format_number(float(v), col.kind)

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else int(self._view.size)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(PNL_COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or self.report is None:
            return None
        row, column = index.row(), index.column()
        col = PNL_COLUMNS[column]
        g = self.report.groups
        r = self.group_row(row)
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(row, column)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _PNL_ALIGN[column]
        if role == Qt.ItemDataRole.ForegroundRole:
            if col.key == "notes":
                return None if g.notes[r] == "ok" else _NEG
            if col.kind == "money":
                v = float(getattr(g, col.key)[r])
                return _MUTED if not math.isfinite(v) else (_NEG if v <= -_HALF_CENT else None)
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            if col.kind == "money" and self.text(row, column) == "n/a":
                return f"Not available: {g.notes[r]}"
            if col.key == "notes":
                return str(g.notes[r])
            return None
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(PNL_COLUMNS):
            return None
        col = PNL_COLUMNS[section]
        if role == Qt.ItemDataRole.DisplayRole:
            if col.key == "label" and self.report is not None:
                return DIMENSIONS[self.report.groups.dimension]
            return col.title
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _PNL_ALIGN[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return col.tip
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.layoutAboutToBeChanged.emit()
        old = self._view
        self._sort = (column, order)
        self._view = self._order()
        inv = np.empty(len(self._view), dtype=np.int64)
        inv[self._view] = np.arange(len(self._view))
        persistent = self.persistentIndexList()
        self.changePersistentIndexList(
            persistent, [self.index(int(inv[old[p.row()]]), p.column()) for p in persistent]
        )
        self.layoutChanged.emit()


class _TradeListModel(QAbstractTableModel):
    """The drill-down list: a few thousand plain rows at most."""

    HEADERS = ("Trade ID", "Book", "Product", "Instrument", "Side", "Open qty", "Unit", "Price",
               "Ccy", "Delivery", "Forward", "Δ-eq qty", "MTM", "Mark")  # fmt: skip
    NUMERIC = frozenset({5, 7, 10, 11, 12})

    def __init__(self, rows: list[dict[str, Any]], parent: Any = None) -> None:
        super().__init__(parent)
        self.rows = rows

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def _cell(self, r: dict[str, Any], c: int) -> tuple[str, float | None]:
        price = r["price"]
        vals: list[tuple[str, float | None]] = [
            (r["trade_uuid"][:8], None),
            (r["book"], None),
            (r["product"], None),
            (r["instrument"], None),
            (r["side"], None),
            (format_number(r["open_qty"], "volume"), None),
            (r["unit"], None),
            (f"{price:,.4f}".rstrip("0").rstrip(".") if abs(price) < 20 else f"{price:,.2f}",
             None),
            (r["currency"], None),
            (f"{r['delivery_start']:%Y-%m-%d} – {r['delivery_end']:%Y-%m-%d}", None),
            (f"{r['forward']:,.4f}" if math.isfinite(r["forward"]) else "", None),
            (format_number(r["delta_qty"], "volume"), r["delta_qty"]),
            (format_number(r["mtm"], "money") if math.isfinite(r["mtm"]) else "n/a", r["mtm"]),
            (r["reason"], None),
        ]  # fmt: skip
        return vals[c]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        c = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cell(r, c)[0]
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return _RIGHT if c in self.NUMERIC else _LEFT
        if role == Qt.ItemDataRole.ForegroundRole:
            v = self._cell(r, c)[1]
            return _NEG if v is not None and math.isfinite(v) and v < 0 else None
        if role == Qt.ItemDataRole.ToolTipRole and c == 0:
            return r["trade_uuid"]
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None


class DrillDialog(QDialog):
    """Lists the trades behind one positions row (id, product, side, qty, price, delivery, MTM)."""

    def __init__(self, title: str, rows: list[dict[str, Any]], total: int,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setObjectName("positions_drill")
        self.setWindowTitle(f"Trades behind {title}")
        self.model = _TradeListModel(rows, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.resizeColumnsToContents()
        shown = f"{len(rows):,} trades" if len(rows) == total else (
            f"first {len(rows):,} of {total:,} trades")  # fmt: skip
        note = QLabel(f"{title}: {shown}. MTM = side × open qty × (forward − price); options "
                      "(value − premium).")  # fmt: skip
        note.setStyleSheet(NOTE_STYLE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addWidget(note)
        lay.addWidget(buttons)
        self.resize(1100, 420)


def _pnl_totals_html(p: PnLReport) -> str:
    """One line per currency: realised, unrealised, total and day P&L."""
    if not p.totals:
        return "No trades"

    def money(x: float) -> str:
        if not math.isfinite(x):
            return "<span style='color:#8a8a8a'>n/a</span>"
        color = "#b3261e" if x < 0 else "inherit"
        return f"<span style='color:{color}'>{format_number(x, 'money')}</span>"

    lines = []
    for t in p.totals:
        lines.append(f"<b>{t['currency']}</b> realised {money(t['realised'])} · unrealised "
                     f"{money(t['unrealised'])} · total {money(t['total'])} · "
                     f"<b>day</b> {money(t['dod'])}")  # fmt: skip
    return " &nbsp;&nbsp; ".join(lines)


def atm_vols_from_state(
    state: MarketState, products: Iterable[str], default: float
) -> dict[str, float]:
    """Per product, the feed's at-the-money vol of its nearest quoted option expiry (the
    quote whose strike is closest to its forward); ``default`` where the feed quotes none."""
    out: dict[str, float] = {}
    for p in products:
        vu = state.vol_surface(p)
        if vu is None or not vu.smiles:
            out[p] = default
            continue
        sm = min(vu.smiles, key=lambda x: x.expiry)
        k = min(range(len(sm.strikes)), key=lambda i: abs(sm.strikes[i] - sm.forward))
        out[p] = float(sm.vols[k])
    return out


def curves_from_state(
    state: MarketState, products: set[str]
) -> tuple[dict[str, ForwardCurve], set[str]]:
    """The curve to mark each product with and which of them are stale (thread-safe).

    The live curve when the feed delivers one (stale when the feed or the stream is stale,
    e.g. recorded settlement curves loaded at start-up without a feed), else the product's last
    settlement curve (always stale).
    """
    curves: dict[str, ForwardCurve] = {}
    stale: set[str] = set()
    for p in sorted(products):
        live = state.live_curve(p)
        if live is not None:
            curves[p] = live.to_forward_curve()
            if state.is_stale(p):
                stale.add(p)
            continue
        settle = state.settlement_curve(p)
        if settle is not None:
            curves[p] = settle.to_forward_curve()
            stale.add(p)
    return curves, stale


class PositionsPanel(QWidget):
    """The Positions dock panel; see the module docstring."""

    sig_drill = Signal(object)
    """(list[str]) trade UUIDs (hex) behind a double-clicked row."""
    sig_message = Signal(str)
    """(a status message for the user)"""
    sig_revalued = Signal(object)
    """(PositionReport) a new report is shown."""
    sig_pnl = Signal(object)
    """(PnLReport) a new P&L report is shown (only computed while the P&L tab is shown)."""

    def __init__(
        self,
        trading: Any,
        runner: JobRunner,
        state: MarketState,
        bridge: MarketBridge,
        service: PositionService,
        parent: QWidget | None = None,
        pnl: PnLService | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("positions")
        self.trading = trading
        self.runner = runner
        self.state = state
        self.bridge = bridge
        self.service = service
        self.pnl_service = pnl if pnl is not None else PnLService.for_positions(service)
        self.pnl_report: PnLReport | None = None
        #: First report of the session per day: the in-memory "yesterday" alternative.
        self._session_base: PositionReport | None = None
        #: Valuation day (a callable so a session left open over midnight rolls on).
        self.as_of: Callable[[], dt.date] = dt.date.today
        self.vol: float = DEFAULT_VOL
        self.show_drill_dialog = True
        #: Panels that read ``report`` (Risk, What-if): their visibility keeps revaluation on.
        self.consumers: list[QWidget] = []
        #: Revaluations submitted so far (tests and the Jobs dock read it).
        self.revaluations = 0
        self.report: PositionReport | None = None
        self._snapshot: PositionSnapshot | None = None
        self._reload_gen = 1  # bumped by reload(); the snapshot is current at _loaded_gen
        self._loaded_gen = 0
        self._held: set[str] = set()
        self._dirty = True  # something changed while hidden or before the first show
        self._last_submit = -1e9
        self._job: Any = None
        self._job_gen = 0  # _reload_gen when the running job was submitted
        self._dialog: DrillDialog | None = None

        self.model = PositionsModel(self)
        self.table = QTableView()
        self.table.setObjectName("positions_table")
        self.table.setModel(self.model)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        for i, c in enumerate(COLUMNS):
            self.table.setColumnWidth(i, c.width)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda idx: self.drill(idx.row()))

        self.pnl_model = PnLModel(self)
        self.pnl_table = QTableView()
        self.pnl_table.setObjectName("pnl_table")
        self.pnl_table.setModel(self.pnl_model)
        self.pnl_table.setSortingEnabled(True)
        self.pnl_table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.pnl_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.pnl_table.setAlternatingRowColors(True)
        self.pnl_table.setWordWrap(False)
        self.pnl_table.verticalHeader().hide()
        self.pnl_table.verticalHeader().setDefaultSectionSize(22)
        for i, c in enumerate(PNL_COLUMNS):
            self.pnl_table.setColumnWidth(i, c.width)
        self.pnl_table.horizontalHeader().setStretchLastSection(True)
        self.tabs = QTabBar()
        self.tabs.setObjectName("positions_tabs")
        self.tabs.addTab("Positions")
        self.tabs.addTab("P&&L")
        self.tabs.setTabToolTip(1, "Realised, unrealised and day-over-day P&L with its explain")
        self.tabs.setDrawBase(False)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.table)
        self.stack.addWidget(self.pnl_table)
        self.tabs.currentChanged.connect(self._on_tab)
        self.pnl_base = QComboBox()
        self.pnl_base.setObjectName("pnl_base")
        self.pnl_base.addItem("vs yesterday's settlement", "settlement")
        self.pnl_base.addItem("vs session start", "session")
        self.pnl_base.setToolTip("Yesterday's marks for the day P&L: the last settlement curves "
                                 "recorded before today, or the first revaluation of this "
                                 "session (held in memory)")  # fmt: skip
        self.pnl_base.setVisible(False)
        self.pnl_base.currentIndexChanged.connect(lambda _i: self._request_pnl())
        QShortcut(QKeySequence(Qt.Key.Key_Return), self.table,
                  lambda: self.drill(self.table.currentIndex().row()),
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip
        QShortcut(QKeySequence.StandardKey.Copy, self.table, self.copy_selection,
                  context=Qt.ShortcutContext.WidgetShortcut)  # fmt: skip

        self.group_by = QComboBox()
        self.group_by.setObjectName("positions_group_by")
        for key, title in DIMENSIONS.items():
            self.group_by.addItem(title, key)
        self.group_by.currentIndexChanged.connect(lambda _i: self._regroup())
        self.revalue_button = QPushButton("Revalue")
        self.revalue_button.setToolTip("Reload trades and revalue now")
        self.revalue_button.clicked.connect(self.reload)
        self.status = QLabel("Waiting for trades…")
        self.status.setObjectName("positions_status")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.tabs)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Group by"))
        bar.addWidget(self.group_by)
        bar.addWidget(self.pnl_base)
        bar.addStretch(1)
        bar.addWidget(self.status)
        bar.addWidget(self.revalue_button)
        self.totals = QLabel("")
        self.totals.setObjectName("positions_totals")
        self.totals.setTextFormat(Qt.TextFormat.RichText)
        self.totals.setWordWrap(True)
        self.note = QLabel("")
        self.note.setObjectName("positions_note")
        self.note.setStyleSheet(NOTE_STYLE)
        self.note.setWordWrap(True)
        self.problem = QLabel("")
        self.problem.setObjectName("positions_problem")
        self.problem.setStyleSheet("color: #b3261e;")
        self.problem.setWordWrap(True)
        self.problem.setVisible(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(bar)
        lay.addWidget(self.stack)
        lay.addWidget(self.problem)
        lay.addWidget(self.totals)
        lay.addWidget(self.note)

        self._throttle = QTimer(self, singleShot=True)
        self._throttle.timeout.connect(self._on_throttle)
        bridge.sig_curves.connect(self.on_curves)
        bridge.sig_settlements.connect(self.on_curves)
        bridge.sig_settlements.connect(lambda _p: self.pnl_service.invalidate())
        bridge.sig_stale.connect(lambda: self.on_curves(set(self._held) or {"*"}))

    # -- triggers -----------------------------------------------------------------------------
    @property
    def dimension(self) -> str:
        return str(self.group_by.currentData())

    def set_dimension(self, dimension: str) -> None:
        """Group by ``dimension`` (a key of :data:`DIMENSIONS`)."""
        i = self.group_by.findData(dimension)
        if i < 0:
            raise ValueError(f"dimension must be one of {list(DIMENSIONS)}, got {dimension!r}")
        self.group_by.setCurrentIndex(i)

    @property
    def pnl_shown(self) -> bool:
        """True while the P&L tab is shown (P&L is only computed then)."""
        return self.tabs.currentIndex() == 1

    def show_pnl(self, on: bool = True) -> None:
        """Switch to the P&L tab (``on``) or back to positions."""
        self.tabs.setCurrentIndex(1 if on else 0)

    def _on_tab(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.pnl_base.setVisible(index == 1)
        if index == 1:
            self._request_pnl()
        elif self.report is not None:
            self._show_footer()

    def _request_pnl(self) -> None:
        """Compute the P&L now (tab shown, or its baseline changed)."""
        if not self.pnl_shown:
            return
        if self.pnl_report is not None:
            self._show_footer()
        self._dirty = True
        if self.isVisible():
            self._throttle.stop()
            self._revalue_now()

    def reload(self) -> None:
        """Slot: trades changed (captured, amended, cancelled, imported): re-read and revalue."""
        self._reload_gen += 1
        self._dirty = True
        # Coalesce a burst of trade events (an import, a run of amendments) into one read,
        # without waiting for the curve throttle's full interval.
        busy = self._throttle.isActive() and self._throttle.remainingTime() <= COALESCE_MS
        if self.wanted() and not busy:
            self._throttle.start(COALESCE_MS)

    def on_curves(self, products: set[str]) -> None:
        """Slot for ``sig_curves``: revalue (throttled) when a product held changed."""
        if self._snapshot is not None and not (products & self._held or "*" in products):
            return
        self._dirty = True
        if not self.wanted():
            return
        if not self._throttle.isActive():
            since = (time.monotonic() - self._last_submit) * 1000.0
            self._throttle.start(int(max(COALESCE_MS, MIN_INTERVAL_MS - since)))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.kick()

    def wanted(self) -> bool:
        """Revalue while this panel or a panel that reads its report (Risk, What-if) shows."""
        return self.isVisible() or any(c.isVisible() for c in self.consumers)

    def kick(self) -> None:
        """Revalue now if something changed since the last report (a consumer became visible)."""
        if self._dirty and not self._throttle.isActive():
            self._throttle.start(0)

    # -- jobs ---------------------------------------------------------------------------------
    def _on_throttle(self) -> None:
        """Timer fired: revalue, unless only curves moved while a revaluation still runs (a
        big book can take longer than the interval; superseding it every second would never
        let a result land). Its result handler starts the next one."""
        running = self._job is not None and self._job.active
        if running and self._job_gen == self._reload_gen:
            self._dirty = True
            return
        self._revalue_now()

    def _after_job(self) -> None:
        """A job ended: run what was requested meanwhile, keeping the minimum interval."""
        if self._dirty and self.isVisible() and not self._throttle.isActive():
            since = (time.monotonic() - self._last_submit) * 1000.0
            self._throttle.start(int(max(0.0, MIN_INTERVAL_MS - since)))

    def _revalue_now(self) -> None:
        """Submit one revaluation job (latest wins; reads trades first when they changed)."""
        self._dirty = False
        self._last_submit = time.monotonic()
        self.revaluations += 1
        snapshot = self._snapshot if self._loaded_gen == self._reload_gen else None
        gen = self._job_gen = self._reload_gen
        as_of, vol, dim = self.as_of(), self.vol, self.dimension
        service, state, pnl = self.service, self.state, self.pnl_service
        want_pnl = self.pnl_shown
        base = self._session_base if self.pnl_base.currentData() == "session" else None
        if base is not None and base.as_of != as_of:
            base = self._session_base = None  # a new day: the session base rolls over

        def work(ctx: JobContext) -> tuple[int, PositionReport, PnLReport | None]:
            snap = snapshot
            if snap is None:
                ctx.progress(0.1, "reading trades")
                snap = service.snapshot(cancelled=ctx.cancelled)
            ctx.check()
            curves, stale = curves_from_state(state, snap.product_codes)
            vols = atm_vols_from_state(state, snap.product_codes, vol)
            ctx.progress(0.4, "valuing")
            report = service.revalue(snap, curves, as_of, vols, dimension=dim, stale=stale)
            if not want_pnl:
                return gen, report, None
            ctx.check()
            ctx.progress(0.6, "P&L explain")
            yesterday: Yesterday | None
            if base is not None:
                yesterday = PnLService.yesterday_from_report(base)
            else:
                yesterday = pnl.yesterday_from_store(snap, as_of)
            ctx.check()
            return gen, report, pnl.pnl(snap, curves, as_of, yesterday, report.vol,
                                        dimension=dim, stale=stale)  # fmt: skip

        self.status.setText("Revaluing…")
        self._job = self.runner.submit("Revalue positions", work, on_result=self._on_result,
                                       on_error=self._on_error, key="positions")  # fmt: skip

    def _regroup(self) -> None:
        report, dim = self.report, self.dimension
        if report is None or (self._job is not None and self._job.active):
            # Nothing to regroup yet, or a revaluation is under way: revalue in the new grouping.
            self._dirty = True
            if self.isVisible():
                self._throttle.stop()
                self._revalue_now()
            return
        gen = self._loaded_gen
        pnl_report = self.pnl_report if self.pnl_shown else None

        def work(_ctx: JobContext) -> tuple[int, PositionReport, PnLReport | None]:
            p = PnLService.regroup(pnl_report, dim) if pnl_report is not None else None
            return gen, PositionService.regroup(report, dim), p

        self._job = self.runner.submit("Group positions", work, on_result=self._on_result,
                                       on_error=self._on_error, key="positions")  # fmt: skip

    def _on_result(self, result: tuple[int, PositionReport, PnLReport | None]) -> None:
        gen, report, pnl_report = result
        if pnl_report is not None:
            self.pnl_report = pnl_report
        if report.groups.dimension != self.dimension:  # the user switched meanwhile
            self._regroup_from(report, gen)
            return
        self._snapshot, self._loaded_gen = report.snapshot, gen
        self._held = report.snapshot.product_codes
        if self._session_base is None or self._session_base.as_of != report.as_of:
            self._session_base = report
        self.show_report(report)
        if pnl_report is not None:
            self.show_pnl_report(pnl_report)
        if self._loaded_gen != self._reload_gen:  # trades changed while this job ran
            self._dirty = True
        self._after_job()

    def _regroup_from(self, report: PositionReport, gen: int) -> None:
        self.report, self._snapshot, self._loaded_gen = report, report.snapshot, gen
        self._regroup()

    def _on_error(self, message: str) -> None:
        self.status.setText("Revaluation failed")
        self.sig_message.emit(message)
        self._after_job()

    # -- display ------------------------------------------------------------------------------
    def show_report(self, report: PositionReport) -> None:
        """Show a report (GUI thread; cheap: the model formats cells on demand)."""
        self.report = report
        self.model.set_report(report)
        if not self.pnl_shown:
            self._show_footer()
        n_open = len(report.snapshot) - report.n_delivered
        self.status.setText(f"{n_open:,} open trades · {len(report.groups):,} rows · "
                            f"{dt.datetime.now():%H:%M:%S}")  # fmt: skip
        self.sig_revalued.emit(report)

    def show_pnl_report(self, report: PnLReport) -> None:
        """Show a P&L report (GUI thread)."""
        self.pnl_report = report
        self.pnl_model.set_report(report)
        self._show_footer()
        self.sig_pnl.emit(report)

    def _show_footer(self) -> None:
        """Totals, note and problems of the tab shown."""
        if self.pnl_shown:
            p = self.pnl_report
            if p is None:
                self.totals.setText("Computing P&L…")
                self.note.setText("")
                self.problem.setVisible(False)
                return
            self.totals.setText(_pnl_totals_html(p))
            self.note.setText(p.note())
            problems = list(p.problems)
            if any(g != "ok" for g in p.groups.notes.tolist()):
                problems.append("Some figures are n/a: hover them or read the Notes column.")
            self.problem.setText(" ".join(problems))
            self.problem.setVisible(bool(problems))
            return
        self.problem.setVisible(False)
        report = self.report
        if report is None:
            return
        parts = []
        for t in report.totals:
            mtm = t.mtm if math.isfinite(t.mtm) else t.mtm_marked
            color = "#b3261e" if mtm < 0 else "inherit"
            text = f"{t.currency} <span style='color:{color}'>{format_number(mtm, 'money')}</span>"
            if t.n_unmarked:
                text += f" <span style='color:#b3261e'>(excl. {t.n_unmarked} unmarked)</span>"
            parts.append(text)
        self.totals.setText("<b>Total MTM</b> &nbsp; " + " &nbsp;·&nbsp; ".join(parts)
                            if parts else "No open positions")  # fmt: skip
        self.note.setText(report.note())

    def copy_selection(self) -> str:
        """Copy the selected rows (all columns, with a header) as tab-separated text."""
        rows = sorted({i.row() for i in self.table.selectionModel().selectedIndexes()})
        lines = ["\t".join(c.title for c in COLUMNS)]
        lines += ["\t".join(self.model.text(r, c) for c in range(len(COLUMNS))) for r in rows]
        text = "\n".join(lines)
        QGuiApplication.clipboard().setText(text)
        self.sig_message.emit(f"Copied {len(rows):,} row(s)")
        return text

    def drill(self, row: int) -> list[str]:
        """Emit (and list) the trades behind visible row ``row``; returns their UUIDs."""
        if self.report is None or not 0 <= row < self.model.rowCount():
            return []
        uuids = self.model.trade_uuids(row)
        self.sig_drill.emit(uuids)
        if self.show_drill_dialog:
            g = self.report.groups
            r = self.model.group_row(row)
            members = g.members[r]
            rows = self.report.trade_rows(members[:DRILL_MAX_ROWS])
            title = f"{g.label[r]} ({g.currency[r]})"
            if self._dialog is not None:
                self._dialog.close()
            self._dialog = DrillDialog(title, rows, int(members.size), self)
            self._dialog.show()
        return uuids
