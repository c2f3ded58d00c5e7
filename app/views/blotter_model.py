"""The blotter's Qt table model: a QAbstractTableModel over numpy columns.

Rows live in preallocated numpy arrays (see ``app.models.repository.BLOTTER_DTYPES``); the
visible rows are an index array ``_view`` (filter + sort). Cells are formatted on demand, so a
million trades cost a few hundred MB and paint as fast as a hundred. Updates (new or amended
trades) are merged into the sorted view incrementally with ``searchsorted`` and persistent
indexes are remapped, so the selection, current cell and scroll position survive.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

from app.models.enums import Commodity, InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.repository import BLOTTER_DTYPES, NULL_INT, RefData
from app.models.types import PRICE_PLACES, QUANTITY_PLACES

EPOCH = dt.date(1970, 1, 1)
_NULL_KEY = -(2**62)

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column:
    """A blotter column: ``key`` in the data, how to show it, how to sort it."""

    key: str
    title: str
    kind: str  # uuid | int | scaled | date | ts | enum | ref | cat
    width: int = 90
    places: int = 0
    min_places: int = 2
    enum: Any = None
    hidden: bool = False


COLUMNS: list[Column] = [
    Column("trade_uuid", "Trade ID", "uuid", 80),
    Column("version", "Ver", "int", 40),
    Column("status", "Status", "enum", 85, enum=TradeStatus),
    Column("book_id", "Book", "ref", 100),
    Column("counterparty_id", "Counterparty", "ref", 190),
    Column("commodity", "Commodity", "enum", 120, enum=Commodity),
    Column("product_id", "Product", "ref", 110),
    Column("instrument", "Instrument", "enum", 160, enum=InstrumentType),
    Column("side", "Side", "enum", 45, enum=Side),
    Column("quantity", "Quantity", "scaled", 95, places=QUANTITY_PLACES, min_places=0),
    Column("quantity_unit", "Unit", "enum", 50, enum=Unit),
    Column("price", "Price", "scaled", 85, places=PRICE_PLACES),
    Column("currency", "Ccy", "cat", 45),
    Column("trade_date", "Trade date", "date", 85),
    Column("delivery_start", "Delivery start", "date", 95),
    Column("delivery_end", "Delivery end", "date", 95),
    Column("option_type", "Call/Put", "enum", 60, enum=OptionType),
    Column("strike", "Strike", "scaled", 75, places=PRICE_PLACES),
    Column("updated_by", "Updated by", "cat", 80, hidden=True),
    Column("updated_at", "Updated (UTC)", "ts", 120, hidden=True),
]
COLUMN_INDEX = {c.key: i for i, c in enumerate(COLUMNS)}
#: Columns searched by the quick text filter.
TEXT_FILTER_KEYS = ("trade_uuid", "status", "book_id", "counterparty_id", "commodity",
                    "product_id", "instrument", "side", "currency", "updated_by")  # fmt: skip

_BUY = QColor("#1b7f3a")
_SELL = QColor("#b3261e")
_CANCELLED = QColor("#8a8a8a")
_CANCELLED_CODE = list(TradeStatus).index(TradeStatus.CANCELLED)
_DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
_ALIGN_ROLE = int(Qt.ItemDataRole.TextAlignmentRole.value)
_FOREGROUND = int(Qt.ItemDataRole.ForegroundRole.value)
_TOOLTIP = int(Qt.ItemDataRole.ToolTipRole.value)
_USER = int(Qt.ItemDataRole.UserRole.value)
_RIGHT = int((Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value)
_LEFT = int((Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter).value)
_ALIGNMENT = [_RIGHT if c.kind in ("int", "scaled") else _LEFT for c in COLUMNS]
_SIDE_COLUMN = COLUMN_INDEX["side"]
_UUID_COLUMN = COLUMN_INDEX["trade_uuid"]
_SIDE_BUY = list(Side).index(Side.BUY)


def format_scaled(value: int, places: int, min_places: int = 2) -> str:
    """Exact text of a scaled integer: ``format_scaled(-37630000, 6) == '-37.63'``."""
    if value == NULL_INT:
        return ""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(int(value)), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0") if places else ""
    if len(digits) < min_places and places:
        digits = digits.ljust(min(min_places, places), "0")
    text = f"{sign}{whole:,}"
    return f"{text}.{digits}" if digits else text


@dataclass
class Filters:
    """Per-column filters: allowed code sets for categorical columns, trade-date range."""

    text: str = ""
    codes: dict[str, frozenset[int]] | None = None
    trade_date_from: dt.date | None = None
    trade_date_to: dt.date | None = None

    @property
    def active(self) -> bool:
        return bool(self.text or self.codes or self.trade_date_from or self.trade_date_to)


class BlotterModel(QAbstractTableModel):
    """Columnar trade table model; see the module docstring."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._n = 0
        self._cap = 0
        self._cols: dict[str, np.ndarray] = {}
        self._row_of: dict[str, int] = {}
        self._cats: dict[str, list[str]] = {"currency": [], "updated_by": []}
        self._cat_code: dict[str, dict[str, int]] = {"currency": {}, "updated_by": {}}
        self._ref = RefData()
        self._ref_names: dict[str, dict[int, str]] = {}
        self._commodity_of_product = np.full(1, -1, dtype=np.int8)
        self._view = np.zeros(0, dtype=np.int64)
        self._natural = True  # view is in row order and unfiltered
        self._sort_col = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._filters = Filters()
        self._generation = 0  # bumped by every upsert; stale async views are recomputed
        #: Runs ``fn`` off the GUI thread and calls ``done(result)`` on it; ``None``: inline.
        self.async_runner: (
            Callable[[Callable[[], np.ndarray], Callable[[np.ndarray], None]], None] | None
        ) = None
        #: Tables with at least this many rows sort and filter through ``async_runner``.
        self.async_rows = 100_000
        self._view_ticket = self._applied_ticket = 0
        self._order_cache: tuple[int, int, Qt.SortOrder, np.ndarray] | None = None
        self._view_keys: np.ndarray | None = None  # sort key of each view row, if known
        self._text_cache: dict[int, list[str | None]] = {}  # source row -> formatted cells
        self._alloc(1024)

    # -- storage ------------------------------------------------------------------------------
    def _alloc(self, cap: int) -> None:
        new: dict[str, np.ndarray] = {}
        for key, dtype in BLOTTER_DTYPES.items():
            if key in self._cats:
                dtype = np.int32
            arr = np.empty(cap, dtype=dtype)
            if self._n:
                arr[: self._n] = self._cols[key][: self._n]
            new[key] = arr
        new["commodity"] = np.empty(cap, dtype=np.int8)
        if self._n:
            new["commodity"][: self._n] = self._cols["commodity"][: self._n]
        self._cols = new
        self._cap = cap

    def _encode_cat(self, key: str, values: np.ndarray) -> np.ndarray:
        codes = self._cat_code[key]
        cats = self._cats[key]
        for v in set(values.tolist()) - codes.keys():  # few distinct values per chunk
            codes[v] = len(cats)
            cats.append(str(v))
        return np.fromiter(map(codes.__getitem__, values), dtype=np.int32, count=len(values))

    def set_refdata(self, ref: RefData) -> None:
        """Names for book/counterparty/product ids and product -> commodity."""
        self._ref = ref
        self._order_cache = self._view_keys = None  # label ranks may change
        self._text_cache.clear()
        self._ref_names = {
            "book_id": {k: v.name for k, v in ref.books.items()},
            "counterparty_id": {k: v.name for k, v in ref.counterparties.items()},
            "product_id": {k: v.code for k, v in ref.products.items()},
        }
        top = max(ref.products, default=0) + 1
        lut = np.full(top, -1, dtype=np.int8)
        members = list(Commodity)
        for pid, p in ref.products.items():
            lut[pid] = members.index(p.commodity)
        self._commodity_of_product = lut
        if self._n:
            self._cols["commodity"][: self._n] = self._commodity(
                self._cols["product_id"][: self._n]
            )
            self._emit_all_changed()

    def _commodity(self, product_ids: np.ndarray) -> np.ndarray:
        lut = self._commodity_of_product
        ids = np.clip(product_ids, 0, len(lut) - 1)
        return np.where(product_ids < len(lut), lut[ids], -1).astype(np.int8)

    # -- loading and updates ------------------------------------------------------------------
    def clear(self) -> None:
        self.beginResetModel()
        self._order_cache = None
        self._view_keys = None
        self._text_cache.clear()
        self._n = 0
        self._row_of.clear()
        self._view = np.zeros(0, dtype=np.int64)
        self._natural = not self._filters.active and self._sort_col < 0
        self.endResetModel()

    def append_chunk(self, chunk: dict[str, np.ndarray]) -> None:
        """Add rows from a loader chunk (new trades only: used while loading the store)."""
        self.upsert(chunk)

    def upsert(self, chunk: dict[str, np.ndarray]) -> tuple[int, int]:
        """Merge rows (current trade versions) keyed by trade UUID; returns (updated, added).

        Existing trades are overwritten in place; unknown ones are appended. The view keeps its
        sort and filters; selection and scroll position are preserved.
        """
        uuids = chunk["trade_uuid"]
        m = len(uuids)
        if m == 0:
            return 0, 0
        self._generation += 1
        rows = np.fromiter(map(self._row_of.get, uuids, itertools.repeat(-1)), dtype=np.int64,
                           count=m)  # fmt: skip
        is_new = rows < 0
        n_new = int(is_new.sum())
        if n_new:
            if self._n + n_new > self._cap:
                self._alloc(max(self._cap * 2, self._n + n_new))
            rows[is_new] = np.arange(self._n, self._n + n_new)
            self._row_of.update(zip(uuids[is_new].tolist(), rows[is_new].tolist(), strict=True))
        for key, values in chunk.items():
            if key in self._cats:
                values = self._encode_cat(key, values)
            self._cols[key][rows] = values
        self._cols["commodity"][rows] = self._commodity(chunk["product_id"])
        for r in rows[~is_new].tolist():
            self._text_cache.pop(r, None)
        old_n = self._n
        self._n += n_new
        changed = rows[~is_new]
        if self._natural:
            if len(changed):
                self._emit_rows_changed(changed)
            if n_new:
                self.beginInsertRows(QModelIndex(), old_n, self._n - 1)
                self._view = np.arange(self._n, dtype=np.int64)
                self._view_keys = None
                self.endInsertRows()
        else:
            self._merge_into_view(rows)
        return m - n_new, n_new

    def _emit_rows_changed(self, rows: np.ndarray) -> None:
        lo, hi = int(rows.min()), int(rows.max())
        self.dataChanged.emit(self.index(lo, 0), self.index(hi, len(COLUMNS) - 1))

    def _emit_all_changed(self) -> None:
        if len(self._view):
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(self._view) - 1, len(COLUMNS) - 1)
            )

    def _merge_into_view(self, rows: np.ndarray) -> None:
        """Re-place ``rows`` in the sorted, filtered view without a full re-sort."""
        self.layoutAboutToBeChanged.emit()
        old_view = self._view
        flag = np.zeros(self._n, dtype=bool)
        flag[rows] = True
        kept = ~flag[old_view]
        keep = old_view[kept]
        cand = rows[self._passes(rows)]
        cand_keys = self._sort_key(cand)
        if cand_keys is None:  # unsortable incrementally: full recompute
            new_view, new_keys = self._compute_view(), None
        else:
            # Keys of the current view are kept alongside it: no random gather over 1M rows.
            if self._view_keys is None or len(self._view_keys) != len(old_view):
                self._view_keys = self._sort_key(old_view)
            assert self._view_keys is not None
            keep_keys = self._view_keys[kept]
            order = np.argsort(cand_keys, kind="stable")
            cand, cand_keys = cand[order], cand_keys[order]
            pos = np.searchsorted(keep_keys, cand_keys, side="right")
            new_view = np.insert(keep, pos, cand)
            new_keys = np.insert(keep_keys, pos, cand_keys)
        self._view = new_view
        self._view_keys = new_keys
        self._remap_persistent(old_view, new_view)
        self.layoutChanged.emit()

    def _remap_persistent(self, old_view: np.ndarray, new_view: np.ndarray) -> None:
        old = self.persistentIndexList()
        if not old:
            return
        inv = np.full(self._n, -1, dtype=np.int64)
        inv[new_view] = np.arange(len(new_view))
        new = []
        for idx in old:
            r = idx.row()
            src = old_view[r] if 0 <= r < len(old_view) else -1
            nr = int(inv[src]) if src >= 0 else -1
            new.append(self.index(nr, idx.column()) if nr >= 0 else QModelIndex())
        self.changePersistentIndexList(old, new)

    # -- sorting and filtering ----------------------------------------------------------------
    def _sort_key(self, rows: np.ndarray | None = None) -> np.ndarray | None:
        """int64 sort key of ``rows`` (None: all rows), ascending == view order.

        ``None`` when the sort column cannot be merged incrementally (trade id strings).
        """
        n = self._n
        if self._sort_col < 0:
            return np.arange(n, dtype=np.int64) if rows is None else rows.astype(np.int64)
        col = COLUMNS[self._sort_col]
        if col.kind == "uuid":
            return None
        data = self._cols[col.key][:n] if rows is None else self._cols[col.key][rows]
        if col.kind in ("int", "scaled", "date", "ts"):
            key = data.astype(np.int64, copy=True)
            key[key == NULL_INT] = _NULL_KEY
        elif col.kind == "enum":
            key = data.astype(np.int64)  # lifecycle / declaration order
        else:
            labels = self._labels(col)
            order = sorted(range(len(labels)), key=lambda i: labels[i].casefold())
            rank = np.zeros(max(len(labels), 1), dtype=np.int64)
            rank[order] = np.arange(len(order))
            key = rank[np.clip(data, 0, len(rank) - 1)]
        if self._sort_order == Qt.SortOrder.DescendingOrder:
            key = -key
        return key

    def _labels(self, col: Column) -> list[str]:
        """Label of every code of a ref/cat column (index = code)."""
        if col.kind == "cat":
            return self._cats[col.key]
        names = self._ref_names.get(col.key, {})
        top = max(names, default=0) + 1
        return [names.get(i, str(i)) for i in range(top)]

    def _passes(self, rows: np.ndarray | None) -> np.ndarray:
        """Boolean mask: which of ``rows`` (None: every row, in row order) pass the filters."""
        f = self._filters
        n = self._n if rows is None else len(rows)

        def col(key: str) -> np.ndarray:  # row order reads memory sequentially: much faster
            return self._cols[key][:n] if rows is None else self._cols[key][rows]

        ok = np.ones(n, dtype=bool)
        if f.codes:
            for key, allowed in f.codes.items():
                ok &= np.isin(col(key), list(allowed))
        if f.trade_date_from is not None:
            ok &= col("trade_date") >= (f.trade_date_from - EPOCH).days
        if f.trade_date_to is not None:
            ok &= col("trade_date") <= (f.trade_date_to - EPOCH).days
        if f.text:
            ok &= self._text_mask(col, n, f.text.casefold())
        return ok

    def _text_mask(self, col_of: Callable[[str], np.ndarray], n: int, needle: str) -> np.ndarray:
        hit = np.zeros(n, dtype=bool)
        could_be_id = all(ch in "0123456789abcdef" for ch in needle)
        for key in TEXT_FILTER_KEYS:
            col = COLUMNS[COLUMN_INDEX[key]]
            if col.kind == "uuid":
                if could_be_id:  # trade ids are lower-case hex
                    data = col_of(key)
                    hit |= np.fromiter((needle in u for u in data), dtype=bool, count=n)
                continue
            data = col_of(key)
            labels = [m.label for m in col.enum] if col.kind == "enum" else self._labels(col)
            codes = [i for i, lab in enumerate(labels) if needle in lab.casefold()]
            if codes:
                hit |= np.isin(data, codes)
        return hit

    def _compute_view(self) -> np.ndarray:
        n = self._n
        generation, sort_col, sort_order = self._generation, self._sort_col, self._sort_order
        cached = self._order_cache
        if cached is not None and cached[:3] == (generation, sort_col, sort_order):
            rows = cached[3]  # only the filter changed: no re-sort
        else:
            rows = self._sorted_rows(n)
            self._order_cache = (generation, sort_col, sort_order, rows)
        if self._filters.active:
            rows = rows[self._passes(None)[rows]]
        return rows

    def _sorted_rows(self, n: int) -> np.ndarray:
        rows = np.arange(n, dtype=np.int64)
        if self._sort_col >= 0:
            col = COLUMNS[self._sort_col]
            if col.kind == "uuid":
                order = np.argsort(self._cols[col.key][:n], kind="stable")
                if self._sort_order == Qt.SortOrder.DescendingOrder:
                    order = order[::-1]
            else:
                key = self._sort_key()
                assert key is not None
                order = np.argsort(key, kind="stable")
            rows = order.astype(np.int64)
        return rows

    def _relayout(self) -> None:
        """Recompute the view: inline for small tables, else on ``async_runner`` (worker)."""
        self._view_ticket += 1
        ticket = self._view_ticket
        if self.async_runner is None or self._n < self.async_rows:
            self._apply_view(self._compute_view(), ticket)
            return
        generation = self._generation

        def done(view: np.ndarray) -> None:
            if ticket != self._view_ticket:  # a newer request is under way
                return
            if generation != self._generation:  # rows changed meanwhile: compute again
                self._relayout()
            else:
                self._apply_view(view, ticket)

        self.async_runner(self._compute_view, done)

    @property
    def view_pending(self) -> bool:
        """True while a requested sort/filter has not been applied yet."""
        return self._applied_ticket != self._view_ticket

    def _apply_view(self, view: np.ndarray, ticket: int) -> None:
        self._applied_ticket = ticket
        self.layoutAboutToBeChanged.emit()
        old = self._view
        self._view = view
        self._view_keys = None
        self._natural = self._sort_col < 0 and not self._filters.active
        self._remap_persistent(old, self._view)
        self.layoutChanged.emit()

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by a column (-1 restores load order)."""
        self._sort_col = column
        self._sort_order = order
        self._relayout()

    def set_filters(self, filters: Filters) -> None:
        self._filters = filters
        self._relayout()

    def set_text_filter(self, text: str) -> None:
        self.set_filters(Filters(text.strip(), self._filters.codes,
                                 self._filters.trade_date_from, self._filters.trade_date_to))  # fmt: skip

    @property
    def filters(self) -> Filters:
        return self._filters

    # -- access for views ---------------------------------------------------------------------
    @property
    def total_rows(self) -> int:
        """Trades loaded (the visible row count is ``rowCount()``)."""
        return self._n

    def trade_uuid_at(self, row: int) -> str:
        return str(self._cols["trade_uuid"][self._view[row]])

    def row_of_trade(self, trade_uuid: str) -> int:
        """Visible row of a trade, or -1."""
        src = self._row_of.get(trade_uuid, -1)
        if src < 0:
            return -1
        hits = np.flatnonzero(self._view == src)
        return int(hits[0]) if len(hits) else -1

    def category_labels(self, key: str) -> list[tuple[int, str]]:
        """(code, label) choices for a per-column filter."""
        col = COLUMNS[COLUMN_INDEX[key]]
        if col.kind == "enum":
            return [(i, m.label) for i, m in enumerate(col.enum)]
        if col.kind == "ref":
            return sorted(self._ref_names.get(key, {}).items(), key=lambda kv: kv[1].casefold())
        return list(enumerate(self._cats[key]))

    def text(self, row: int, column: int) -> str:
        """Display text of a visible cell (memoised per source row until the row changes)."""
        src = int(self._view[row])
        cached = self._text_cache.get(src)
        if cached is None:
            if len(self._text_cache) > 4096:  # a few screens' worth; bounded memory
                self._text_cache.clear()
            cached = self._text_cache[src] = [None] * len(COLUMNS)
        text = cached[column]
        if text is None:
            text = cached[column] = self._format(src, column)
        return text

    def _format(self, src: int, column: int) -> str:
        col = COLUMNS[column]
        v = self._cols[col.key][src]
        kind = col.kind
        if kind == "uuid":
            return str(v)[:8]
        if kind == "int":
            return str(int(v))
        if kind == "scaled":
            return format_scaled(int(v), col.places, col.min_places)
        if kind == "date":
            return (EPOCH + dt.timedelta(days=int(v))).isoformat()
        if kind == "ts":
            return dt.datetime.fromtimestamp(int(v), dt.UTC).strftime("%Y-%m-%d %H:%M")
        if kind == "enum":
            return _enum_label(col, v)
        if kind == "ref":
            return self._ref_names.get(col.key, {}).get(int(v), f"#{int(v)}")
        return self._cats[col.key][int(v)]

    def rows_as_text(self, rows: Sequence[int], columns: Sequence[int]) -> list[list[str]]:
        # Not through the display cache: exports run on worker threads over many rows.
        view = self._view
        return [[self._format(int(view[r]), c) for c in columns] for r in rows]

    # -- QAbstractTableModel ------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._view)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Called for every visible cell and role on each paint: plain-int role tests, constants
        # precomputed per column, nothing allocated for the roles we do not serve.
        if role == _DISPLAY:
            return self.text(index.row(), index.column()) if index.isValid() else None
        if role == _ALIGN_ROLE:
            return _ALIGNMENT[index.column()] if index.isValid() else None
        if role == _FOREGROUND and index.isValid():
            src = self._view[index.row()]
            if self._cols["status"][src] == _CANCELLED_CODE:
                return _CANCELLED
            if index.column() == _SIDE_COLUMN:
                return _BUY if self._cols["side"][src] == _SIDE_BUY else _SELL
            return None
        if role == _TOOLTIP and index.isValid() and index.column() == _UUID_COLUMN:
            return str(self._cols["trade_uuid"][self._view[index.row()]])
        if role == _USER and index.isValid():
            return self.trade_uuid_at(index.row())
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            if role == Qt.ItemDataRole.DisplayRole:
                return COLUMNS[section].title
            if role == Qt.ItemDataRole.TextAlignmentRole and COLUMNS[section].kind in (
                "int", "scaled"
            ):  # fmt: skip
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if orientation == Qt.Orientation.Vertical and role == Qt.ItemDataRole.DisplayRole:
            return str(section + 1)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


def _enum_label(col: Column, code: Any) -> str:
    c = int(code)
    members = list(col.enum)
    return members[c].label if 0 <= c < len(members) else ""


def selected_rows(indexes: Iterable[QModelIndex]) -> list[int]:
    return sorted({i.row() for i in indexes})
