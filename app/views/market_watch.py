"""Market Watch: live quotes of a named watch list, grouped by commodity.

The table model keeps one numpy column per field (last, bid, ask, settlement, exchange time,
stale flag, flash start, a ring of the last :data:`SPARK_N` samples for the sparkline) and
formats cells on demand. It is fed only by the :class:`~app.views.market_bridge.MarketBridge`:
``on_quotes(ids)`` copies the changed quotes (cost O(changed rows)), and ``on_frame`` emits one
``dataChanged(top, bottom)`` covering the changed and still-fading rows, so 5,000 ticking
instruments cost one repaint of the visible rows per frame and never a model reset.

Watch lists are named lists of entries kept in the workstation's QSettings (``market_watch/``):
an exact instrument id (``NG-TTF:2027-01``), a shell pattern (``NG-*:2027-*``), ``@front:N``
(spot + the first N months of every product) or an exclusion ``-ID`` (an instrument removed
from a list that a pattern would include).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import date
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRect,
    QSettings,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QGuiApplication,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QMessageBox,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.feed import market_state as ms
from app.feed.instruments import KIND_ORDER, Instrument, build_instruments, parse_instrument
from app.feed.market_state import FeedStatus, MarketState, Quote
from app.models.catalogue import PRODUCT_BY_CODE
from app.models.enums import Commodity
from app.views.market_bridge import MarketBridge
from app.views.widgets import NOTE_STYLE

if TYPE_CHECKING:
    from app.views.jobs import JobRunner
    from app.views.price_history import PriceHistoryDialog

__all__ = ["MarketWatchModel", "MarketWatchPanel", "WatchLists", "price_decimals"]

log = logging.getLogger(__name__)

COLUMNS = ("Instrument", "Product", "Last", "Chg", "Chg %", "Bid", "Ask", "Time", "Trend")
C_LABEL, C_PRODUCT, C_LAST, C_CHG, C_PCT, C_BID, C_ASK, C_TIME, C_SPARK = range(len(COLUMNS))
_WIDTHS = (82, 124, 80, 70, 62, 80, 80, 66, 90)
DRAIN_BUDGET = 0.008  # seconds of quote copying per frame; the rest waits for the next frame
DRAIN_CHUNK = 256
SPARK_N = 60  # samples per sparkline (one per refresh in which the row changed)
FLASH_SECONDS = 1.0
#: sparklines repaint every SPARK_EVERY-th frame (5 Hz at the bridge's 15 Hz): they were two
#: thirds of the paint cost with thousands of ticking rows, and a trend line does not need 15 Hz
SPARK_EVERY = 3
ID_ROLE = int(Qt.ItemDataRole.UserRole.value)
SPARK_ROLE = ID_ROLE + 1

_DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
_ALIGN = int(Qt.ItemDataRole.TextAlignmentRole.value)
_FG = int(Qt.ItemDataRole.ForegroundRole.value)
_BG = int(Qt.ItemDataRole.BackgroundRole.value)
_FONT = int(Qt.ItemDataRole.FontRole.value)
_TIP = int(Qt.ItemDataRole.ToolTipRole.value)
_ALIGN_FLAGS_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_ALIGN_FLAGS_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
_SELECTED_BIT = QStyle.StateFlag.State_Selected.value
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_LEFT = int((Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter).value)
_SERVED = frozenset((_DISPLAY, _ALIGN, _FG, _BG, _FONT, _TIP, ID_ROLE, SPARK_ROLE))
_CHANGE_COLS = frozenset((C_CHG, C_PCT))
_RIGHT_COLS = frozenset((C_LAST, C_CHG, C_PCT, C_BID, C_ASK, C_TIME))
_FLASHED = frozenset((C_LAST,))
_NO_FLAGS = Qt.ItemFlag.NoItemFlags
_HEADER_FLAGS = Qt.ItemFlag.ItemIsEnabled
_ROW_FLAGS = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
FONT_NORMAL, FONT_BOLD, FONT_ITALIC = range(3)
_NUMERIC = frozenset((C_LAST, C_CHG, C_PCT, C_BID, C_ASK))
_UP, _DOWN = QColor("#1b7f3a"), QColor("#b3261e")
_STALE_FG = QColor("#8a8a8a")
_HEADER_BG = QColor("#e8ecf1")
_FLASH_UP, _FLASH_DOWN = (46, 170, 80), (225, 60, 55)
_COMMODITY_ORDER = {c: i for i, c in enumerate(Commodity)}

DEFAULT_LISTS: dict[str, list[str]] = {"Front months": ["@front:3"], "All": ["*"]}
_NAME_RE = re.compile(r"^[\w .()&+-]{1,40}$")
_FRONT_RE = re.compile(r"^@front:(\d{1,2})$")


def price_decimals(product: str, value: float | None = None) -> int:
    """Decimals for a product's prices: 2 at 20 and above, 3 below, 4 below 1 and for
    refined products quoted per gallon (``value`` decides for products not in the catalogue)."""
    spec = PRODUCT_BY_CODE.get(product)
    level = abs(spec.typical_level) if spec is not None else abs(value or 0.0)
    if level >= 20:
        return 2
    if level < 1 or (spec is not None and spec.commodity is Commodity.REFINED):
        return 4
    return 3


def _fmt(v: float, places: int, sign: bool = False) -> str:
    if not math.isfinite(v):
        return ""
    return f"{v:+,.{places}f}" if sign else f"{v:,.{places}f}"


# -- watch lists --------------------------------------------------------------------------------


class WatchLists:
    """Named watch lists persisted in QSettings as one JSON value (written on every change)."""

    KEY = "market_watch/lists"
    CURRENT = "market_watch/current"

    def __init__(self, settings: QSettings) -> None:
        self.settings = settings
        self._lists: dict[str, list[str]] = {}
        raw = settings.value(self.KEY)
        try:
            data = json.loads(str(raw)) if raw else None
            if isinstance(data, dict):
                self._lists = {str(k): [str(e) for e in v] for k, v in data.items()}
        except (ValueError, TypeError) as exc:
            log.warning("Market Watch lists in the settings are unreadable (%s): defaults", exc)
        if not self._lists:
            self._lists = {k: list(v) for k, v in DEFAULT_LISTS.items()}
        cur = settings.value(self.CURRENT)
        self._current = str(cur) if cur in self._lists else next(iter(self._lists))

    def names(self) -> list[str]:
        return list(self._lists)

    def entries(self, name: str) -> list[str]:
        return list(self._lists[name])

    @property
    def current(self) -> str:
        return self._current

    @current.setter
    def current(self, name: str) -> None:
        if name not in self._lists:
            raise ValueError(f"No watch list named '{name}'")
        self._current = name
        self._save()

    @staticmethod
    def check_name(name: str) -> str:
        name = name.strip()
        if not _NAME_RE.match(name):
            raise ValueError("A list name has 1-40 letters, digits, spaces or . ( ) & + - _")
        return name

    def set_entries(self, name: str, entries: Iterable[str]) -> None:
        """Create or replace a list (the name is checked)."""
        name = self.check_name(name)
        self._lists[name] = list(dict.fromkeys(e.strip() for e in entries if e.strip()))
        self._save()

    def rename(self, old: str, new: str) -> None:
        new = self.check_name(new)
        if new in self._lists and new != old:
            raise ValueError(f"A list named '{new}' already exists")
        self._lists = {(new if k == old else k): v for k, v in self._lists.items()}
        if self._current == old:
            self._current = new
        self._save()

    def delete(self, name: str) -> None:
        if len(self._lists) <= 1:
            raise ValueError("The last watch list cannot be deleted")
        del self._lists[name]
        if self._current == name:
            self._current = next(iter(self._lists))
        self._save()

    def add(self, name: str, items: Iterable[str]) -> None:
        """Add ids or patterns (undoing earlier exclusions of them)."""
        cur = self._lists[name]
        for item in items:
            if f"-{item}" in cur:
                cur.remove(f"-{item}")
            if item not in cur:
                cur.append(item)
        self._save()

    def remove(self, name: str, ids: Iterable[str]) -> None:
        """Remove instruments: explicit entries go, pattern members are excluded."""
        cur = self._lists[name]
        for i in ids:
            if i in cur:
                cur.remove(i)
            # still selected by a pattern or a rule (@front): exclude it explicitly
            if f"-{i}" not in cur and any(_may_select(e, i) for e in cur):
                cur.append(f"-{i}")
        self._save()

    def _save(self) -> None:
        self.settings.setValue(self.KEY, json.dumps(self._lists))
        self.settings.setValue(self.CURRENT, self._current)
        self.settings.sync()


def _may_select(entry: str, instrument: str) -> bool:
    """Whether an entry can select ``instrument`` (rules are assumed to)."""
    if entry.startswith("-"):
        return False
    return entry.startswith("@") or fnmatchcase(instrument, entry)


def resolve(entries: list[str], universe: Iterable[Instrument]) -> list[Instrument]:
    """The instruments of ``universe`` a watch list's entries select (exclusions applied)."""
    insts = list(universe)
    excluded = {e[1:] for e in entries if e.startswith("-")}
    picked: dict[str, Instrument] = {}
    front = [int(m.group(1)) for e in entries if (m := _FRONT_RE.match(e))]
    if front:
        n = max(front)
        by_product: dict[str, list[Instrument]] = {}
        for i in insts:
            if i.kind == "spot":
                picked[i.id] = i
            elif i.kind == "month":
                by_product.setdefault(i.product, []).append(i)
        for months in by_product.values():
            for i in sorted(months, key=lambda x: x.start)[:n]:
                picked[i.id] = i
    exact = {e for e in entries if not e.startswith(("-", "@")) and not any(c in e for c in "*?[")}
    patterns = [e for e in entries if not e.startswith(("-", "@")) and e not in exact]
    for i in insts:
        if i.id in exact or any(fnmatchcase(i.id, p) for p in patterns):
            picked[i.id] = i
    return [i for k, i in picked.items() if k not in excluded]


# -- the table model ----------------------------------------------------------------------------


class MarketWatchModel(QAbstractTableModel):
    """Quotes of the watch-list instruments with commodity header rows; see the module doc."""

    def __init__(self, state: MarketState, parent: Any = None) -> None:
        super().__init__(parent)
        self.state = state
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._header: dict[int, str] = {}
        self._label: list[str] = []
        self._product: list[str] = []
        self._tip: list[str] = []
        self._places = np.zeros(0, dtype=np.int8)
        self._prod_names: list[str] = []
        self._prod_idx = np.zeros(0, dtype=np.int64)
        self._alloc(0)
        self._feed_ok = False
        self._feed_text = ms.NOT_CONFIGURED
        self._now = time.monotonic()
        self._prev_frame = self._now
        self._dirty_lo, self._dirty_hi = 1 << 62, -1
        self._spark_lo, self._spark_hi = 1 << 62, -1
        self._all_columns = False
        self._frame_no = 0
        self._hms: dict[int, str] = {}  # epoch second -> local HH:MM:SS
        self._backlog: deque[str] = deque()
        self._queued: set[str] = set()
        #: dataChanged signals emitted by frames (tests check coalescing).
        self.frames_emitted = 0

    def _alloc(self, n: int) -> None:
        self._last = np.full(n, np.nan)
        self._bid = np.full(n, np.nan)
        self._ask = np.full(n, np.nan)
        self._settle = np.full(n, np.nan)
        self._ts = np.zeros(n, dtype=np.int64)
        self._stale = np.zeros(n, dtype=bool)
        self._flash_t = np.full(n, -1e9)
        self._flash_up = np.zeros(n, dtype=bool)
        self._spark = np.full((n, SPARK_N), np.nan)
        self._spark_n = np.zeros(n, dtype=np.int64)

    # -- membership -------------------------------------------------------------------------
    def set_instruments(self, instruments: Iterable[Instrument]) -> None:
        """Show these instruments (grouped by commodity, then product and tenor); values of
        instruments already shown are kept, the others are read from the state."""
        insts = sorted(set(instruments), key=_row_key)
        old_row, old = dict(self._row_of), self._columns()
        self.beginResetModel()
        ids: list[str] = []
        header: dict[int, str] = {}
        group = None
        for i in insts:
            g = _group(i.product)
            if g != group:
                header[len(ids)] = g
                ids.append("")
                group = g
            ids.append(i.id)
        n = len(ids)
        self._ids, self._header = ids, header
        self._row_of = {k: r for r, k in enumerate(ids) if k}
        self._label, self._product, self._tip = [""] * n, [""] * n, [""] * n
        self._places = np.zeros(n, dtype=np.int8)
        self._prod_names = sorted({i.product for i in insts})
        code = {p: k for k, p in enumerate(self._prod_names)}
        self._prod_idx = np.full(n, len(self._prod_names), dtype=np.int64)  # headers: last
        for i in insts:
            self._prod_idx[self._row_of[i.id]] = code[i.product]
            r = self._row_of[i.id]
            spec = i.spec
            self._label[r], self._product[r] = i.label, i.product
            self._tip[r] = (
                f"{i.id}  {spec.name} ({spec.currency}/{spec.unit.label})" if spec else i.id
            )
            self._places[r] = price_decimals(i.product)
        self._alloc(n)
        kept = [(r, old_row[k]) for k, r in self._row_of.items() if k in old_row]
        if kept:
            new_rows, old_rows = (np.array(x, dtype=np.int64) for x in zip(*kept, strict=True))
            for name, arr in old.items():
                getattr(self, name)[new_rows] = arr[old_rows]
        fresh = [k for k in self._row_of if k not in old_row]
        self._dirty_lo, self._dirty_hi = 1 << 62, -1
        self._spark_lo, self._spark_hi = 1 << 62, -1
        self.endResetModel()
        if fresh:
            self._store(self.state.quotes(fresh), flash=False)
            self._dirty_lo, self._dirty_hi = 1 << 62, -1
            self._spark_lo, self._spark_hi = 1 << 62, -1

    def _columns(self) -> dict[str, np.ndarray]:
        names = ("_last", "_bid", "_ask", "_settle", "_ts", "_stale", "_flash_t", "_flash_up",
                 "_spark", "_spark_n")  # fmt: skip
        return {n: getattr(self, n) for n in names}

    @property
    def instrument_ids(self) -> list[str]:
        return [k for k in self._ids if k]

    def row_of(self, instrument: str) -> int:
        return self._row_of.get(instrument, -1)

    def instrument_at(self, row: int) -> str:
        """Instrument id of a row ("" for a commodity header row)."""
        return self._ids[row] if 0 <= row < len(self._ids) else ""

    def header_rows(self) -> dict[int, str]:
        return dict(self._header)

    # -- updates from the bridge ------------------------------------------------------------
    def on_quotes(self, changed: set[str]) -> set[str]:
        """Queue the changed quotes of shown instruments for the next frame; returns the
        changed ids that are not shown."""
        row_of, queued, backlog = self._row_of, self._queued, self._backlog
        n_mine = 0
        for i in changed:
            if i in row_of:
                n_mine += 1
                if i not in queued:
                    queued.add(i)
                    backlog.append(i)
        return {i for i in changed if i not in row_of} if n_mine != len(changed) else set()

    @property
    def backlog(self) -> int:
        """Changed quotes not read yet (non-zero only when a frame ran out of time)."""
        return len(self._backlog)

    def _drain(self) -> None:
        """Read queued quotes, oldest first, for at most ``DRAIN_BUDGET`` seconds: a burst
        larger than a frame can copy is conflated over the next frames (latest value wins,
        since the state is read when the row's turn comes) instead of freezing the GUI."""
        backlog, queued, row_of = self._backlog, self._queued, self._row_of
        t0 = time.perf_counter()
        while backlog:
            chunk = [backlog.popleft() for _ in range(min(DRAIN_CHUNK, len(backlog)))]
            queued.difference_update(chunk)
            self._store(self.state.quotes([i for i in chunk if i in row_of]), flash=True)
            if time.perf_counter() - t0 > DRAIN_BUDGET:
                break

    def _store(self, quotes: dict[str, Quote], flash: bool) -> None:
        if not quotes:
            return
        row_of, now = self._row_of, time.monotonic()
        nan = math.nan
        rows = np.fromiter((row_of[k] for k in quotes), dtype=np.int64, count=len(quotes))
        vals = np.array(
            [(nan if q.last is None else q.last, nan if q.bid is None else q.bid,
              nan if q.ask is None else q.ask, nan if q.settle is None else q.settle)
             for q in quotes.values()], dtype=float,
        ).reshape(-1, 4)  # fmt: skip
        new_last = vals[:, 0]
        old_last = self._last[rows]
        self._last[rows], self._bid[rows] = new_last, vals[:, 1]
        self._ask[rows], self._settle[rows] = vals[:, 2], vals[:, 3]
        self._ts[rows] = np.fromiter((q.ts for q in quotes.values()), np.int64, len(quotes))
        self._stale[rows] = np.fromiter((q.stale for q in quotes.values()), bool, len(quotes))
        if flash:
            moved = np.isfinite(old_last) & np.isfinite(new_last) & (new_last != old_last)
            self._flash_t[rows[moved]] = now
            self._flash_up[rows[moved]] = new_last[moved] > old_last[moved]
        ok = np.isfinite(new_last)
        r = rows[ok]
        self._spark[r, self._spark_n[r] % SPARK_N] = new_last[ok]
        self._spark_n[r] += 1
        self._mark(int(rows.min()), int(rows.max()))

    def _mark(self, lo: int, hi: int, all_columns: bool = False) -> None:
        self._dirty_lo, self._dirty_hi = min(self._dirty_lo, lo), max(self._dirty_hi, hi)
        self._spark_lo, self._spark_hi = min(self._spark_lo, lo), max(self._spark_hi, hi)
        self._all_columns = self._all_columns or all_columns

    def on_stale(self) -> None:
        """Stale flags changed somewhere: re-read them per stream (product) for every row."""
        if not self._ids:
            return
        flags = np.array([self.state.is_stale(p) for p in self._prod_names] + [False])
        self._stale = flags[self._prod_idx]
        self._mark(0, len(self._ids) - 1, all_columns=True)  # stale = grey italic everywhere

    def on_status(self, status: FeedStatus) -> None:
        ok = status.state == ms.CONNECTED
        self._feed_text = status.state
        if ok != self._feed_ok:
            self._feed_ok = ok
            if self._ids:
                self._mark(0, len(self._ids) - 1, all_columns=True)

    def on_frame(self, now: float | None = None) -> None:
        """Emit one dataChanged over the rows changed or fading since the previous frame."""
        now = time.monotonic() if now is None else now
        self._now = now
        self._drain()
        lo, hi = self._dirty_lo, self._dirty_hi
        # Rows that were flashing at the previous frame must repaint once more (fade / clear).
        fading = np.flatnonzero(self._flash_t > self._prev_frame - FLASH_SECONDS)
        self._prev_frame = now
        if len(fading):
            lo, hi = min(lo, int(fading[0])), max(hi, int(fading[-1]))
        self._dirty_lo, self._dirty_hi = 1 << 62, -1
        all_columns, self._all_columns = self._all_columns, False
        if hi >= 0 and self._ids:
            hi = min(hi, len(self._ids) - 1)
            self.frames_emitted += 1
            # Label and product change only with stale marks; the sparkline at SPARK_EVERY.
            first = 0 if all_columns else C_LAST
            last = C_SPARK if all_columns else C_TIME
            self.dataChanged.emit(self.index(lo, first), self.index(hi, last))
        self._frame_no += 1
        if self._spark_hi >= 0 and self._ids and self._frame_no % SPARK_EVERY == 0:
            s_lo, s_hi = self._spark_lo, min(self._spark_hi, len(self._ids) - 1)
            self._spark_lo, self._spark_hi = 1 << 62, -1
            self.dataChanged.emit(self.index(s_lo, C_SPARK), self.index(s_hi, C_SPARK))

    # -- reads ------------------------------------------------------------------------------
    def is_stale(self, row: int) -> bool:
        return bool(self._stale[row]) or not self._feed_ok

    def text(self, row: int, col: int) -> str:
        """Display text of a cell."""
        if row in self._header:
            return self._header[row] if col == C_LABEL else ""
        if col == C_LABEL:
            return self._label[row]
        if col == C_PRODUCT:
            return self._product[row]
        p = int(self._places[row])
        if col == C_LAST:
            return _fmt(self._last[row], p)
        if col == C_BID:
            return _fmt(self._bid[row], p)
        if col == C_ASK:
            return _fmt(self._ask[row], p)
        if col == C_CHG:
            return _fmt(self._last[row] - self._settle[row], p, sign=True)
        if col == C_PCT:
            s = self._settle[row]
            return "" if s == 0 else _fmt(100.0 * (self._last[row] - s) / abs(s), 2, sign=True)
        if col == C_TIME:
            ts = int(self._ts[row]) // 1_000_000_000
            if not ts:
                return ""
            hms = self._hms.get(ts)
            if hms is None:
                if len(self._hms) > 4096:
                    self._hms.clear()
                hms = self._hms[ts] = time.strftime("%H:%M:%S", time.localtime(ts))
            return hms
        return ""

    def sparkline(self, row: int) -> np.ndarray | None:
        """The row's last samples, oldest first (``None`` for fewer than two)."""
        n = int(self._spark_n[row]) if row < len(self._spark_n) else 0
        if n < 2:
            return None
        ring = self._spark[row]
        if n <= SPARK_N:
            return ring[:n].copy()
        k = n % SPARK_N
        return np.concatenate((ring[k:], ring[:k]))

    # -- QAbstractTableModel ----------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def background(self, row: int, col: int) -> QColor | None:
        """Header shade, or the up/down flash fading over ``FLASH_SECONDS`` (price columns)."""
        if row in self._header:
            return _HEADER_BG
        if col in _FLASHED:
            age = self._now - self._flash_t[row]
            if age < FLASH_SECONDS:
                r, g, b = _FLASH_UP if self._flash_up[row] else _FLASH_DOWN
                return QColor(r, g, b, int(110 * (1.0 - age / FLASH_SECONDS)))
        return None

    def foreground(self, row: int, col: int) -> QColor | None:
        """Grey when stale, else green/red change columns."""
        if self._stale[row] or not self._feed_ok:
            return _STALE_FG
        if col in _CHANGE_COLS:
            chg = self._last[row] - self._settle[row]
            return _UP if chg > 0 else _DOWN if chg < 0 else None
        return None

    def font_kind(self, row: int) -> int:
        if row in self._header:
            return FONT_BOLD
        return FONT_ITALIC if self._stale[row] or not self._feed_ok else FONT_NORMAL

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = _DISPLAY) -> Any:
        if role not in _SERVED or not index.isValid():
            return None  # most roles a view asks for (decoration, check state ...): not served
        row, col = index.row(), index.column()
        if role == _DISPLAY:
            return self.text(row, col)
        header = row in self._header
        if role == _ALIGN:
            return _RIGHT if col in _NUMERIC or col == C_TIME else _LEFT
        if role == _BG:
            return self.background(row, col)
        if role == _FG:
            return None if header else self.foreground(row, col)
        if role == _FONT:
            kind = self.font_kind(row)
            if kind == FONT_NORMAL:
                return None
            f = QFont()
            f.setBold(kind == FONT_BOLD)
            f.setItalic(kind == FONT_ITALIC)
            return f
        if role == _TIP and not header:
            if self.is_stale(row):
                why = "stream stale" if self._stale[row] else f"feed {self._feed_text}"
                return f"stale: {why}; last price may be out of date\n{self._tip[row]}"
            return self._tip[row] if col in (C_LABEL, C_PRODUCT) else None
        if role == ID_ROLE:
            return self._ids[row] or None
        if role == SPARK_ROLE and col == C_SPARK and not header:
            return self.sparkline(row)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = _DISPLAY) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == _DISPLAY:
                return COLUMNS[section]
            if role == _ALIGN:
                return _RIGHT if section in _NUMERIC or section == C_TIME else _LEFT
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return _NO_FLAGS
        return _HEADER_FLAGS if index.row() in self._header else _ROW_FLAGS


def _group(product: str) -> str:
    spec = PRODUCT_BY_CODE.get(product)
    return spec.commodity.label if spec is not None else "Other"


def _row_key(i: Instrument) -> tuple[int, str, int, date]:
    spec = PRODUCT_BY_CODE.get(i.product)
    g = _COMMODITY_ORDER[spec.commodity] if spec is not None else len(_COMMODITY_ORDER)
    return (g, i.product, KIND_ORDER.index(i.kind), i.start)


_NUMBER_CHARS = "0123456789+-%:.,\u2212"


class WatchDelegate(QStyledItemDelegate):
    """Paints every Market Watch cell straight from the model's arrays: one call per cell
    instead of a data() call per role and a text layout per cell (the table repaints its
    visible rows at the bridge rate), and the sparkline as a polyline (no widget per row)."""

    def __init__(self, model: MarketWatchModel, parent: QWidget) -> None:
        super().__init__(parent)
        self.model = model
        self._fonts: dict[int, tuple[QFont, QFontMetrics, int]] = {}
        self._advance: dict[int, dict[str, int]] = {}  # per font kind: character -> advance
        self._widths: dict[tuple[int, str], int] = {}  # (font kind, label) -> width
        self._base_key = ""

    def _font(self, base: QFont, kind: int) -> tuple[QFont, QFontMetrics, int]:
        """(font, metrics, widest glyph) per kind, rebuilt when the view's font changes."""
        got = self._fonts.get(kind)
        if got is None:
            key = base.key()
            if key != self._base_key:
                self._fonts.clear()
                self._widths.clear()
                self._base_key = key
            f = QFont(base)
            f.setBold(kind == FONT_BOLD)
            f.setItalic(kind == FONT_ITALIC)
            fm = QFontMetrics(f)
            # widest of the characters numbers are made of (tabular digits in most fonts)
            got = self._fonts[kind] = (
                f,
                fm,
                max(fm.horizontalAdvance(c) for c in "0123456789+-%:"),
            )
            self._advance[kind] = {c: fm.horizontalAdvance(c) for c in _NUMBER_CHARS}
        return got

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        selected = bool(option.state.value & _SELECTED_BIT)  # type: ignore[attr-defined]
        self.paint_cell(
            painter,
            option.rect,  # type: ignore[attr-defined]
            index.row(),
            index.column(),
            selected,
            option.palette,  # type: ignore[attr-defined]
            option.font,  # type: ignore[attr-defined]
        )

    def paint_cell(
        self,
        painter: QPainter,
        rect: QRect,
        row: int,
        col: int,
        selected: bool,
        palette: QPalette,
        base_font: QFont,
    ) -> None:
        """Paint one cell (used per cell by Qt, and for all visible cells by WatchTable)."""
        m = self.model
        header = row in m._header
        if selected and not header:
            painter.fillRect(rect, palette.highlight())
        else:
            bg = m.background(row, col)
            if bg is not None:
                painter.fillRect(rect, bg)
        if col == C_SPARK and not header:
            stale = m.font_kind(row) == FONT_ITALIC
            self._sparkline(painter, rect, m.sparkline(row), selected, stale)
            return
        text = m.text(row, col)
        if not text:
            return
        kind = m.font_kind(row)
        font, fm, widest = self._font(base_font, kind)
        painter.setFont(font)
        if selected and not header:
            painter.setPen(palette.highlightedText().color())
        else:
            fg = None if header else m.foreground(row, col)
            painter.setPen(fg if fg is not None else palette.text().color())
        r = rect.adjusted(5, 0, -5, 0)
        width = r.width()
        # Never clip a number silently: elide (…) when the text may not fit. Numbers fit when
        # every character is at most as wide as the widest digit (commas and dots are narrower).
        if col <= C_PRODUCT or len(text) * widest > width:
            adv = self._advance.get(kind, {})
            try:  # numbers: sum cached advances (no kerning in digits) instead of a Qt call
                w = sum(adv[ch] for ch in text) if col > C_PRODUCT else self._widths[(kind, text)]
            except KeyError:
                w = fm.horizontalAdvance(text)
                if col <= C_PRODUCT and len(self._widths) < 50_000:  # labels never change
                    self._widths[(kind, text)] = w
            if w > width:
                text = fm.elidedText(text, Qt.TextElideMode.ElideRight, width)
        painter.drawText(r, _ALIGN_FLAGS_RIGHT if col in _RIGHT_COLS else _ALIGN_FLAGS_LEFT, text)

    @staticmethod
    def _sparkline(
        painter: QPainter, rect: Any, ys: np.ndarray | None, selected: bool, stale: bool
    ) -> None:
        if ys is None:
            return
        ys = ys[np.isfinite(ys)]
        if len(ys) < 2:
            return
        r = rect.adjusted(4, 4, -4, -4)
        lo, hi = float(ys.min()), float(ys.max())
        left, bottom, w, h = r.left(), r.bottom(), r.width(), r.height()
        step = w / (len(ys) - 1)
        if hi == lo:
            mid = r.center().y()
            points = [QPointF(left + k * step, mid) for k in range(len(ys))]
        else:
            scale = h / (hi - lo)
            points = [QPointF(left + k * step, bottom - (y - lo) * scale)
                      for k, y in enumerate(ys.tolist())]  # fmt: skip
        painter.save()
        # No antialiasing and a cosmetic 1 px pen: a sparkline reads the same and paints ~3x
        # faster, which matters when thousands of rows tick (measured by the GUI benchmark).
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        colour = _STALE_FG if stale else _UP if ys[-1] >= ys[0] else _DOWN
        pen = QPen(QColor("white") if selected else colour, 0)
        pen.setCosmetic(True)
        painter.setPen(pen)
        painter.drawPolyline(QPolygonF(points))
        painter.restore()


class AddInstrumentsDialog(QDialog):
    """Pick instruments from a list (filtered by a pattern) or add the pattern itself."""

    def __init__(self, ids: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add to watch list")
        self.resize(420, 480)
        self._ids = ids
        self._chosen: list[str] = []
        self.pattern = QLineEdit(placeholderText="Filter or pattern, e.g. NG-*:2027-*  or  *:SPOT")
        self.pattern.setObjectName("watch_pattern")
        self.items = QListWidget()
        self.items.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.items.setUniformItemSizes(True)
        self.count = QLabel()
        self.count.setStyleSheet(NOTE_STYLE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_selected = buttons.addButton(
            "Add selected", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.add_pattern = buttons.addButton("Add pattern", QDialogButtonBox.ButtonRole.ActionRole)
        self.add_pattern.setToolTip("Keep the pattern in the list: matching instruments that "
                                    "appear later are added too")  # fmt: skip
        self.add_selected.clicked.connect(self._accept_selected)
        self.add_pattern.clicked.connect(self._accept_pattern)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.pattern)
        lay.addWidget(self.items, 1)
        lay.addWidget(self.count)
        lay.addWidget(buttons)
        self.pattern.textChanged.connect(self._filter)
        self._filter("")

    def _filter(self, text: str) -> None:
        text = text.strip()
        pat = text if any(c in text for c in "*?[") else f"*{text}*"
        shown = [i for i in self._ids if fnmatchcase(i, pat)] if text else self._ids
        self.items.clear()
        self.items.addItems(shown)
        self.count.setText(f"{len(shown)} of {len(self._ids)} instruments match")
        self.add_pattern.setEnabled(bool(text))

    def _accept_selected(self) -> None:
        self._chosen = [i.text() for i in self.items.selectedItems()]
        self.accept()

    def _accept_pattern(self) -> None:
        text = self.pattern.text().strip()
        self._chosen = [text if any(c in text for c in "*?[") else f"*{text}*"]
        self.accept()

    def chosen(self) -> list[str]:
        """What to add: the selected ids, or the pattern."""
        return list(self._chosen)


# -- the panel ----------------------------------------------------------------------------------


class WatchTable(QTableView):
    """The Market Watch table: paints all the cells of a repaint in one Python call.

    Qt's item view calls the delegate once per cell through a QStyleOptionViewItem built for
    each; with thousands of ticking rows that per-cell round trip was most of the GUI thread's
    time. Here one ``paintEvent`` walks the visible rows and columns of the dirty region and
    asks :meth:`WatchDelegate.paint_cell` to draw each (the same code Qt's path uses).
    """

    def __init__(self, model: MarketWatchModel) -> None:
        super().__init__()
        self.setModel(model)
        self.cell_painter = WatchDelegate(model, self)
        self.setItemDelegate(self.cell_painter)

    def paintEvent(self, event: QPaintEvent) -> None:
        model = self.model()
        n = model.rowCount()
        if n == 0:
            return
        dirty = event.rect()
        first = self.rowAt(dirty.top())
        if first < 0:
            return
        last = self.rowAt(dirty.bottom())
        last = n - 1 if last < 0 else last
        hh = self.horizontalHeader()
        cols = []
        for visual in range(hh.count()):
            c = hh.logicalIndex(visual)
            if hh.isSectionHidden(c):
                continue
            x, w = self.columnViewportPosition(c), self.columnWidth(c)
            if x + w < dirty.left() or x > dirty.right():
                continue
            cols.append((c, x, w))
        sel = self.selectionModel()
        selected = {i.row() for i in sel.selectedRows()} if sel is not None else set()
        palette, font = self.palette(), self.font()
        paint = self.cell_painter.paint_cell
        painter = QPainter(self.viewport())
        headers = self.cell_painter.model._header
        try:
            for r in range(first, last + 1):
                y, h = self.rowViewportPosition(r), self.rowHeight(r)
                if r in headers:  # commodity header rows span the whole table (setSpan)
                    x0 = self.columnViewportPosition(0)
                    width = self.viewport().width() - x0
                    paint(painter, QRect(x0, y, width, h), r, 0, False, palette, font)
                    continue
                is_sel = r in selected
                for c, x, w in cols:
                    paint(painter, QRect(x, y, w, h), r, c, is_sel, palette, font)
        finally:
            painter.end()


class MarketWatchPanel(QWidget):
    """Market Watch dock: watch-list selector, live quote table, context menu."""

    sig_show_curve = Signal(str)
    """(product) the user asked to see this product in the Forward Curve dock."""
    sig_open_history = Signal(str)
    """(instrument) the user asked for the price history (also opened here given a loader)."""

    def __init__(
        self,
        state: MarketState,
        bridge: MarketBridge,
        settings: QSettings,
        history_loader: Callable[[str], tuple[np.ndarray, np.ndarray]] | None = None,
        runner: JobRunner | None = None,
        parent: QWidget | None = None,
        as_of: date | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("market_watch")
        self.state = state
        self.bridge = bridge
        self.lists = WatchLists(settings)
        self.history_loader = history_loader
        self.runner = runner
        self._as_of = as_of or date.today()
        self._universe: dict[str, Instrument] = {}
        self._rejected: set[str] = set()
        self._bad: set[str] = set()  # ids in the state that are not PRODUCT:TENOR
        self._dialogs: dict[str, PriceHistoryDialog] = {}

        self.model = MarketWatchModel(state, self)
        self.view = WatchTable(self.model)
        self.view.setObjectName("market_watch_table")
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setShowGrid(False)
        self.view.setWordWrap(False)
        self.view.setAlternatingRowColors(False)
        vh = self.view.verticalHeader()
        vh.hide()
        vh.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vh.setDefaultSectionSize(self.fontMetrics().height() + 6)
        hh = self.view.horizontalHeader()
        hh.setHighlightSections(False)
        for c, w in enumerate(_WIDTHS):
            hh.resizeSection(c, w)
        hh.setStretchLastSection(True)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(self._double_clicked)
        self.model.modelReset.connect(self._apply_spans)

        self.list_box = QComboBox()
        self.list_box.setObjectName("market_watch_list")
        self.list_box.setToolTip("Watch list")
        self.list_box.setMinimumContentsLength(14)
        self.add_button = QToolButton()
        self.add_button.setText("Add…")
        self.add_button.setToolTip("Add instruments or a pattern such as NG-*:2027-* to the list")
        self.add_button.clicked.connect(self.add_dialog)
        self.lists_button = QToolButton()
        self.lists_button.setText("Lists")
        self.lists_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.lists_button)
        menu.addAction("New list…", self.new_list)
        menu.addAction("Save as…", self.save_list_as)
        menu.addAction("Rename…", self.rename_list)
        menu.addAction("Delete", self.delete_list)
        self.lists_button.setMenu(menu)
        self.status_label = QLabel()
        self.status_label.setObjectName("market_watch_status")
        self.status_label.setStyleSheet(NOTE_STYLE)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.list_box)
        top.addWidget(self.add_button)
        top.addWidget(self.lists_button)
        top.addStretch(1)
        top.addWidget(self.status_label)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(3)
        lay.addLayout(top)
        lay.addWidget(self.view, 1)

        self._fill_list_box()
        self.list_box.currentTextChanged.connect(self._list_chosen)
        self.reload_list()
        self.model.on_status(state.status())
        bridge.sig_quotes.connect(self._on_quotes)
        bridge.sig_stale.connect(self.model.on_stale)
        bridge.sig_status.connect(self._on_status)
        bridge.sig_frame.connect(self.model.on_frame)

    # -- membership -------------------------------------------------------------------------
    def universe(self) -> dict[str, Instrument]:
        """Instruments one can watch: today's standard set plus every one the state knows."""
        if not self._universe:
            self._universe = {i.id: i for i in build_instruments(self._as_of)}
        for k in self.state.instruments():
            if k not in self._universe:
                try:
                    self._universe[k] = parse_instrument(k, self._as_of)
                except ValueError:
                    self._bad.add(k)
        return self._universe

    def reload_list(self) -> None:
        """Resolve the current list against the universe and show it."""
        entries = self.lists.entries(self.lists.current)
        self.model.set_instruments(resolve(entries, self.universe().values()))
        self._rejected = (set(self._universe) - set(self.model.instrument_ids)) | self._bad
        self._update_status_text()

    def _on_quotes(self, changed: set[str]) -> None:
        unknown = self.model.on_quotes(changed)
        if unknown and not unknown <= self._rejected:
            # New instruments appeared in the feed: they may belong to the list (rare).
            self.reload_list()

    def _apply_spans(self) -> None:
        self.view.clearSpans()
        for row in self.model.header_rows():
            self.view.setSpan(row, 0, 1, len(COLUMNS))

    def _fill_list_box(self) -> None:
        self.list_box.blockSignals(True)
        self.list_box.clear()
        self.list_box.addItems(self.lists.names())
        self.list_box.setCurrentText(self.lists.current)
        self.list_box.blockSignals(False)

    def _list_chosen(self, name: str) -> None:
        if name and name in self.lists.names() and name != self.lists.current:
            self.lists.current = name
            self.reload_list()

    # -- status -----------------------------------------------------------------------------
    def _on_status(self, status: FeedStatus) -> None:
        self.model.on_status(status)
        self._update_status_text(status)

    def _update_status_text(self, status: FeedStatus | None = None) -> None:
        status = status or self.state.status()
        n = len(self.model.instrument_ids)
        age = status.tick_age()
        tick = "" if age is None else f" · last tick {age:.1f} s ago"
        self.status_label.setText(f"{n} instruments · feed {status.state}{tick}")
        self.status_label.setStyleSheet(
            NOTE_STYLE if status.state == ms.CONNECTED else NOTE_STYLE + " color: #b3261e;"
        )

    # -- list editing -----------------------------------------------------------------------
    def selected_instruments(self) -> list[str]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [k for r in rows if (k := self.model.instrument_at(r))]

    def add_to_list(self, items: Iterable[str]) -> None:
        """Add ids or patterns to the current list and show them."""
        self.lists.add(self.lists.current, items)
        self.reload_list()

    def remove_from_list(self, ids: Iterable[str]) -> None:
        self.lists.remove(self.lists.current, ids)
        self.reload_list()

    def add_dialog(self) -> None:
        dlg = AddInstrumentsDialog(sorted(self.universe(), key=str), self)
        if dlg.exec():
            self.add_to_list(dlg.chosen())

    def _ask_name(self, title: str, text: str = "") -> str | None:
        name, ok = QInputDialog.getText(self, title, "List name:", text=text)
        if not ok:
            return None
        try:
            return self.lists.check_name(name)
        except ValueError as exc:
            QMessageBox.warning(self, title, str(exc))
            return None

    def new_list(self, name: str | None = None) -> None:
        """Create an empty list and switch to it."""
        name = name or self._ask_name("New watch list")
        if name:
            self.lists.set_entries(name, [])
            self.switch_to(name)

    def save_list_as(self, name: str | None = None) -> None:
        """Copy the current list under a new name and switch to it."""
        name = name or self._ask_name("Save watch list as")
        if name:
            self.lists.set_entries(name, self.lists.entries(self.lists.current))
            self.switch_to(name)

    def rename_list(self, name: str | None = None) -> None:
        old = self.lists.current
        name = name or self._ask_name("Rename watch list", old)
        if name:
            try:
                self.lists.rename(old, name)
            except ValueError as exc:
                QMessageBox.warning(self, "Rename watch list", str(exc))
            self._fill_list_box()

    def delete_list(self) -> None:
        try:
            self.lists.delete(self.lists.current)
        except ValueError as exc:
            QMessageBox.warning(self, "Delete watch list", str(exc))
            return
        self._fill_list_box()
        self.reload_list()

    def switch_to(self, name: str) -> None:
        self.lists.current = name
        self._fill_list_box()
        self.reload_list()

    # -- actions ----------------------------------------------------------------------------
    def _context_menu(self, pos: Any) -> None:
        ids = self.selected_instruments()
        at = self.model.instrument_at(self.view.indexAt(pos).row())
        if at and at not in ids:
            ids = [at]
        self.build_menu(ids).exec(self.view.viewport().mapToGlobal(pos))

    def build_menu(self, ids: list[str]) -> QMenu:
        """The context menu for these instruments (the first one is the menu's subject)."""
        menu = QMenu(self)
        first = ids[0] if ids else ""
        product = first.split(":", 1)[0]
        act = menu.addAction("Price history…", lambda: self.open_history(first))
        act.setEnabled(bool(first))
        act = menu.addAction("Show curve", lambda: self.sig_show_curve.emit(product))
        act.setEnabled(bool(first))
        menu.addSeparator()
        menu.addAction("Add instruments…", self.add_dialog)
        act = menu.addAction(
            f"Remove from '{self.lists.current}'", lambda: self.remove_from_list(ids)
        )
        act.setEnabled(bool(ids))
        menu.addAction("Copy", self.copy_selection)
        return menu

    def _double_clicked(self, index: QModelIndex) -> None:
        inst = self.model.instrument_at(index.row())
        if inst:
            self.open_history(inst)

    def open_history(self, instrument: str) -> None:
        """Emit ``sig_open_history`` and, given a loader, open the price-history dialog."""
        if not instrument:
            return
        self.sig_open_history.emit(instrument)
        if self.history_loader is None:
            return
        from app.views.price_history import PriceHistoryDialog

        dlg = self._dialogs.get(instrument)
        if dlg is not None:  # one chart per instrument: closing it frees its data, reopening
            dlg.reopen()  # reloads (so charts do not pile up over a session)
            return
        dlg = PriceHistoryDialog(instrument, self.history_loader, runner=self.runner,
                                 state=self.state, bridge=self.bridge, parent=self)  # fmt: skip
        self._dialogs[instrument] = dlg
        dlg.show()

    def copy_selection(self) -> None:
        """Selected rows as tab-separated text (with the header line)."""
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        lines = ["\t".join(COLUMNS[:-1])]
        lines += ["\t".join(self.model.text(r, c) for c in range(C_SPARK)) for r in rows]
        QGuiApplication.clipboard().setText("\n".join(lines))
