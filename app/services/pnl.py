"""P&L use case: realised, unrealised and day-over-day P&L with an explain, per group.

No Qt and no ``app.feed``: the caller hands in today's curves (as for
:meth:`PositionService.revalue`). Yesterday's marks come either from the market-data store
(:meth:`PnLService.yesterday_from_store`: the last settlement curve of each product dated
before today, and the book as it stood at the end of that day, rebuilt from the trade
versions) or from a previous :class:`PositionReport` held in memory
(:meth:`PnLService.yesterday_from_report`). The numerics and conventions are in
:mod:`app.engine.pnl` (realised on delivered volume at the month's settlement price; explain as
a chain of revaluations whose parts add up to the total).

Options are valued with today's vols on both days (the explain has no vol effect).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.engine.pnl import (
    AMENDED,
    CANCELLED,
    NEW,
    Explain,
    SettlementHistory,
    explain,
)
from app.engine.positions import MonthlyCurve, TradeInputs
from app.models.enums import Commodity, InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.market_data import MarketDataRepository, RecordedCurve
from app.models.repository import NULL_INT, TradeRecord, columns_from_rows
from app.models.types import PRICE_PLACES, QUANTITY_PLACES
from app.services.positions import (
    DEFAULT_VOL,
    DIMENSIONS,
    PositionReport,
    PositionService,
    PositionSnapshot,
    _period_labels,
    _trade_labels,
)

__all__ = ["PART_KEYS", "PnLGroups", "PnLReport", "PnLService", "Yesterday"]

_BUY = list(Side).index(Side.BUY)
_OPTION = list(InstrumentType).index(InstrumentType.OPTION)
_CALL = list(OptionType).index(OptionType.CALL)
_Q_SCALE = 10.0**QUANTITY_PLACES
_P_SCALE = 10.0**PRICE_PLACES
_TIME_DIMS = ("month", "quarter", "season", "year")
#: Columns compared to tell an amended trade (a new version with other economics).
_ECON = ("book_id", "counterparty_id", "product_id", "instrument", "side", "quantity", "price",
         "currency", "delivery_start", "delivery_end", "option_type", "strike")  # fmt: skip
#: Explain parts, in display order (attribute names of :class:`PnLGroups`).
PART_KEYS = ("price", "time", "new", "amended", "cancelled", "delivered")


@dataclass(frozen=True)
class _Curve:
    """A monthly curve that may have gaps (NaN): yesterday's marks rebuilt from a report."""

    months: np.ndarray
    prices: np.ndarray


@dataclass(frozen=True)
class Yesterday:
    """The starting point of a day-over-day explain: a book, its curves and its day."""

    as_of: dt.date
    book: PositionSnapshot
    curves: Mapping[str, MonthlyCurve]
    source: str  # how the curves were obtained, for the note
    dates: Mapping[str, dt.date] = field(default_factory=dict)  # per product curve date


@dataclass(frozen=True)
class PnLGroups:
    """P&L per (group, currency) row; NaN where an input is missing (``notes`` says which)."""

    dimension: str
    label: np.ndarray
    currency: np.ndarray
    realised: np.ndarray
    unrealised: np.ndarray
    total: np.ndarray  # realised + unrealised (lifetime P&L today)
    dod: np.ndarray  # day-over-day change of the lifetime P&L
    price: np.ndarray
    time: np.ndarray
    new: np.ndarray
    amended: np.ndarray
    cancelled: np.ndarray
    delivered: np.ndarray
    residual: np.ndarray  # dod - sum of the parts
    n_trades: np.ndarray
    notes: np.ndarray  # object: str
    members: list[np.ndarray]  # indices into today's book

    def __len__(self) -> int:
        return int(self.label.size)


@dataclass(frozen=True)
class PnLReport:
    """Today's P&L with the explain against ``yesterday`` (None: no marks, DoD unknown)."""

    as_of: dt.date
    book: PositionSnapshot
    yesterday: Yesterday | None
    explain: Explain
    product0: np.ndarray  # product code per yesterday trade
    product1: np.ndarray
    today_source: str
    groups: PnLGroups
    totals: list[dict[str, Any]]
    problems: list[str]
    counts: dict[str, int]  # new / amended / cancelled trades

    def note(self) -> str:
        """Which curves were used for yesterday and today."""
        y = self.yesterday
        if y is None:
            left = "Yesterday: no marks"
        else:
            left = f"Yesterday {y.as_of.isoformat()}: {y.source}"
        return (f"{left} · Today {self.as_of.isoformat()}: {self.today_source} · "
                f"{self.counts.get('new', 0)} new, {self.counts.get('amended', 0)} amended, "
                f"{self.counts.get('cancelled', 0)} cancelled trades · undiscounted")  # fmt: skip


def _records_to_snapshot(
    records: Sequence[TradeRecord], like: PositionSnapshot
) -> PositionSnapshot:
    """Trade versions as a snapshot with the blotter's column codes."""
    epoch = dt.date(1970, 1, 1)
    rows = []
    premium = np.full(len(records), np.nan)
    expiry = np.full(len(records), np.datetime64("NaT"), dtype="datetime64[D]")
    for k, r in enumerate(records):
        rows.append((
            0, r.trade_uuid.hex, r.version, list(TradeStatus).index(r.status), r.book_id,
            r.counterparty_id, r.product_id, list(InstrumentType).index(r.instrument),
            list(Side).index(r.side), int(r.quantity.scaleb(QUANTITY_PLACES)),
            list(Unit).index(r.quantity_unit), int(r.price.scaleb(PRICE_PLACES)), r.currency,
            (r.trade_date - epoch).days, (r.delivery_start - epoch).days,
            (r.delivery_end - epoch).days,
            -1 if r.option_type is None else list(OptionType).index(r.option_type),
            NULL_INT if r.strike is None else int(r.strike.scaleb(PRICE_PLACES)),
            r.updated_by, int(r.updated_at.timestamp()),
        ))  # fmt: skip
        if r.premium is not None:
            premium[k] = float(r.premium)
        if r.expiry_date is not None:
            expiry[k] = np.datetime64(r.expiry_date, "D")
    return PositionSnapshot(like.ref, columns_from_rows(rows), premium, expiry)


def _concat(a: PositionSnapshot, b: PositionSnapshot) -> PositionSnapshot:
    cols = {k: np.concatenate([a.columns[k], b.columns[k]]) for k in a.columns}
    return PositionSnapshot(a.ref, cols, np.concatenate([a.premium, b.premium]),
                            np.concatenate([a.expiry, b.expiry]))  # fmt: skip


def _take(s: PositionSnapshot, idx: np.ndarray) -> PositionSnapshot:
    return PositionSnapshot(s.ref, {k: v[idx] for k, v in s.columns.items()}, s.premium[idx],
                            s.expiry[idx])  # fmt: skip


def _codes(s: PositionSnapshot) -> np.ndarray:
    prods = s.ref.products
    return np.array([prods[i].code if i in prods else f"#{i}"
                     for i in s.columns["product_id"].tolist()], dtype=object)  # fmt: skip


def _inputs(s: PositionSnapshot, codes: np.ndarray, slot: Mapping[str, int],
            vols: Mapping[str, float], as_of: dt.date) -> TradeInputs:  # fmt: skip
    """Engine inputs of a snapshot (as :meth:`PositionService.revalue` builds them)."""
    c = s.columns
    prods = s.ref.products
    hourly = np.array([prods[i].commodity is Commodity.POWER if i in prods else False
                       for i in c["product_id"].tolist()], dtype=bool)  # fmt: skip
    is_opt = c["instrument"] == _OPTION
    strike = np.where(c["strike"] == NULL_INT, np.nan, c["strike"] / _P_SCALE)
    return TradeInputs(
        start=c["delivery_start"].astype(np.int64),
        end=c["delivery_end"].astype(np.int64),
        quantity=c["quantity"] / _Q_SCALE,
        sign=np.where(c["side"] == _BUY, 1.0, -1.0),
        price=c["price"] / _P_SCALE,
        hourly=hourly,
        curve=np.array([slot.get(str(x), -1) for x in codes.tolist()], dtype=np.int64),
        is_option=is_opt,
        is_call=c["option_type"] == _CALL,
        strike=np.where(is_opt, strike, np.nan),
        premium=np.where(is_opt, np.nan_to_num(s.premium, nan=0.0), 0.0),
        expiry=np.where(is_opt, s.expiry, np.datetime64(as_of, "D")),
        vol=np.array([vols.get(str(x), DEFAULT_VOL) for x in codes.tolist()], dtype=float),
    )


def _history(curves: Sequence[RecordedCurve]) -> SettlementHistory | None:
    if not curves:
        return None
    return SettlementHistory.build([c.settle_date for c in curves], [c.months for c in curves],
                                   [c.prices for c in curves])  # fmt: skip


class PnLService:
    """Realised / unrealised / day-over-day P&L (thread-safe: reads open their own sessions;
    the small caches are guarded by a lock)."""

    def __init__(self, positions: PositionService, market: MarketDataRepository | None) -> None:
        self.positions = positions
        self.market = market
        self._lock = threading.Lock()
        self._settle_cache: dict[tuple[dt.date, frozenset[str]], dict[str, Any]] = {}
        self._book_cache: tuple[Any, PositionSnapshot] | None = None

    @classmethod
    def for_positions(cls, positions: PositionService) -> PnLService:
        """A P&L service reading settlement curves from the positions' own store."""
        return cls(positions, MarketDataRepository(positions.repo.store))

    def invalidate(self) -> None:
        """Forget cached settlement curves (a new settlement was recorded)."""
        with self._lock:
            self._settle_cache.clear()

    # -- inputs ---------------------------------------------------------------------------
    def settlements(self, products: Collection[str], today: dt.date) -> dict[str, Any]:
        """Recorded settlement curves of ``products`` dated on or before ``today`` (cached)."""
        key = (today, frozenset(products))
        with self._lock:
            hit = self._settle_cache.get(key)
        if hit is not None:
            return hit
        out = {} if self.market is None else self.market.settlement_history(products, today)
        with self._lock:
            if len(self._settle_cache) > 8:
                self._settle_cache.clear()
            self._settle_cache[key] = out
        return out

    def book_at(self, today: PositionSnapshot, cutoff: dt.datetime) -> PositionSnapshot:
        """The book (non-cancelled versions) as it stood at ``cutoff``: today's untouched
        trades plus, for trades touched since, the version current at ``cutoff``."""
        key = (id(today), today.taken_at, cutoff)
        with self._lock:
            if self._book_cache is not None and self._book_cache[0] == key:
                return self._book_cache[1]
        records = self.positions.repo.versions_since(cutoff)
        touched = {r.trade_uuid.hex for r in records}
        at_cut: dict[str, TradeRecord] = {}
        for r in records:
            if r.updated_at < cutoff:
                at_cut[r.trade_uuid.hex] = r  # ordered by version: the last one wins
        old = [r for r in at_cut.values() if r.status is not TradeStatus.CANCELLED]
        keep = np.array([u not in touched for u in today.columns["trade_uuid"].tolist()],
                        dtype=bool)  # fmt: skip
        book = _concat(_take(today, np.flatnonzero(keep)), _records_to_snapshot(old, today))
        with self._lock:
            self._book_cache = (key, book)
        return book

    def yesterday_from_store(
        self, today_book: PositionSnapshot, today: dt.date
    ) -> Yesterday | None:
        """Yesterday = the last recorded settlement curves dated before ``today`` (per
        product), the day = the latest of their dates; the book as of the end of that day
        (local time). None when no curve before today is recorded."""
        products = today_book.product_codes
        hist = self.settlements(products, today)
        curves: dict[str, MonthlyCurve] = {}
        dates: dict[str, dt.date] = {}
        for p, recs in hist.items():
            before = [c for c in recs if c.settle_date < today]
            if before:
                curves[p] = before[-1]
                dates[p] = before[-1].settle_date
        if not dates:
            return None
        d0 = max(dates.values())
        cutoff = dt.datetime.combine(d0 + dt.timedelta(days=1), dt.time()).astimezone(dt.UTC)
        book = self.book_at(today_book, cutoff)
        # Products held only yesterday need their curve too.
        for p in _codes(book).tolist():
            if p not in curves and p not in hist:
                more = self.settlements({p}, today).get(p, [])
                before = [c for c in more if c.settle_date < today]
                if before:
                    curves[p], dates[p] = before[-1], before[-1].settle_date
        odd = sorted(f"{p} {d:%d %b}" for p, d in dates.items() if d != d0)
        source = f"settlement curves of {d0.isoformat()} ({len(curves)} products"
        source += f"; older: {', '.join(odd)})" if odd else ")"
        missing = sorted(set(products) - set(curves))
        if missing:
            source += f"; none recorded for {', '.join(missing)}"
        return Yesterday(d0, book, curves, source, dates)

    @staticmethod
    def yesterday_from_report(report: PositionReport) -> Yesterday:
        """Yesterday = a previous revaluation held in memory: its book, its day, and its
        curves rebuilt from its monthly marks (only the months it held, which are all the
        explain needs)."""
        v = report.valuation
        sl = v.slices
        curves: dict[str, MonthlyCurve] = {}
        prod = report.product[sl.trade]
        ok = np.isfinite(v.slice_forward)
        for p in sorted(set(prod[ok].tolist())):
            sel = ok & (prod == p)
            m = sl.month[sel].astype(np.int64)
            lo, hi = int(m.min()), int(m.max())
            prices = np.full(hi - lo + 1, np.nan)
            prices[m - lo] = v.slice_forward[sel]
            months = np.arange(lo, hi + 1).astype("datetime64[M]")
            curves[str(p)] = _Curve(months, prices)
        return Yesterday(report.as_of, report.snapshot, curves,
                         f"revaluation held in memory ({report.note().split(':', 1)[-1].split(' · ')[0].strip()})")  # fmt: skip

    # -- the use case ---------------------------------------------------------------------
    def pnl(
        self,
        book: PositionSnapshot,
        curves: Mapping[str, MonthlyCurve],
        as_of: dt.date,
        yesterday: Yesterday | None,
        vol: float | Mapping[str, float] = DEFAULT_VOL,
        *,
        dimension: str = "book",
        stale: Collection[str] = (),
    ) -> PnLReport:
        """Realised, unrealised and day-over-day P&L of ``book`` on ``as_of``."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {list(DIMENSIONS)}, got {dimension!r}")
        if yesterday is not None and yesterday.as_of > as_of:
            raise ValueError(f"yesterday ({yesterday.as_of}) is after today ({as_of})")
        b0 = yesterday.book if yesterday is not None else book
        codes0, codes1 = _codes(b0), _codes(book)
        products = sorted(set(codes0.tolist()) | set(codes1.tolist()))
        slot = {p: i for i, p in enumerate(products)}
        if isinstance(vol, Mapping):
            vols = {p: float(vol.get(p, DEFAULT_VOL)) for p in products}
        else:
            vols = dict.fromkeys(products, float(vol))
        hist = self.settlements(products, as_of)
        settle = [_history(hist.get(p, [])) for p in products]
        c1 = [curves.get(p) for p in products]
        c0 = [yesterday.curves.get(p) for p in products] if yesterday else [None] * len(products)
        d0 = yesterday.as_of if yesterday is not None else as_of
        in0 = _inputs(b0, codes0, slot, vols, as_of)
        in1 = _inputs(book, codes1, slot, vols, as_of)
        # Match yesterday's trades to today's by UUID; amended = other economics.
        pos1 = {u: i for i, u in enumerate(book.columns["trade_uuid"].tolist())}
        match = np.array([pos1.get(u, -1) for u in b0.columns["trade_uuid"].tolist()],
                         dtype=np.int64)  # fmt: skip
        amended = np.zeros(match.size, dtype=bool)
        hit = np.flatnonzero(match >= 0)
        if hit.size:
            j = match[hit]
            diff = np.zeros(hit.size, dtype=bool)
            for k in _ECON:
                diff |= b0.columns[k][hit] != book.columns[k][j]
            p0, p1 = b0.premium[hit], book.premium[j]
            diff |= ~((p0 == p1) | (np.isnan(p0) & np.isnan(p1)))
            diff |= ~((b0.expiry[hit] == book.expiry[j])
                      | (np.isnat(b0.expiry[hit]) & np.isnat(book.expiry[j])))  # fmt: skip
            amended[hit] = diff
        ex = explain(in0, in1, match, amended, c0, c1, settle, d0, as_of)
        status = {p: "stale" if p in stale else "live" for p in curves}
        live = sorted(p for p in products if status.get(p) == "live")
        stl = sorted(p for p in products if status.get(p) == "stale")
        bits = []
        if live:
            bits.append(f"live curves ({len(live)})")
        if stl:
            bits.append(f"last settlement curves for {len(stl)} products (stale)")
        missing = sorted(set(codes1.tolist()) - set(curves))
        if missing:
            bits.append(f"no curve for {', '.join(missing)}")
        problems = []
        if yesterday is None:
            problems.append(f"No settlement curves recorded before {as_of.isoformat()}: "
                            "day-over-day P&L needs yesterday's marks")  # fmt: skip
        counts = {"new": int(np.sum(ex.status1 == NEW)),
                  "amended": int(np.sum(ex.status0 == AMENDED)),
                  "cancelled": int(np.sum(ex.status0 == CANCELLED))}  # fmt: skip
        base = PnLReport(as_of, book, yesterday, ex, codes0, codes1, "; ".join(bits) or "no curves",
                         _empty(dimension), [], problems, counts)  # fmt: skip
        return self.regroup(base, dimension)

    @staticmethod
    def regroup(report: PnLReport, dimension: str) -> PnLReport:
        """The same P&L grouped by another dimension (no revaluation)."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {list(DIMENSIONS)}, got {dimension!r}")
        return _grouped(report, dimension)


# --------------------------------------------------------------------------- grouping

_NUM = ("realised", "unrealised", "total", "dod", *PART_KEYS, "residual")


def _empty(dimension: str) -> PnLGroups:
    e = np.zeros(0)
    o = np.zeros(0, dtype=object)
    return PnLGroups(dimension, o, o, e, e, e, e, e, e, e, e, e, e, e,
                     np.zeros(0, dtype=np.int64), o, [])  # fmt: skip


def _labels(book: PositionSnapshot, slices_trade: np.ndarray, months: np.ndarray,
            dimension: str) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Label text per slice row."""
    if dimension in _TIME_DIMS:
        codes, labels = _period_labels(months, dimension)
        return labels[codes] if codes.size else np.zeros(0, dtype=object), codes
    fake = _FakeReport(book)
    codes, labels = _trade_labels(fake, dimension)  # type: ignore[arg-type]
    per = codes[slices_trade]
    return labels[per] if per.size else np.zeros(0, dtype=object), per


@dataclass(frozen=True)
class _FakeReport:
    """What the positions label helper reads of a report."""

    snapshot: PositionSnapshot


def _grouped(report: PnLReport, dimension: str) -> PnLReport:
    ex = report.explain
    b0 = report.yesterday.book if report.yesterday is not None else report.book
    t0, t1 = ex.s0.trade, ex.s1.trade
    lab0, _ = _labels(b0, t0, ex.s0.month, dimension)
    lab1, _ = _labels(report.book, t1, ex.s1.month, dimension)
    ccy0 = np.asarray(b0.columns["currency"], dtype=object)[t0]
    ccy1 = np.asarray(report.book.columns["currency"], dtype=object)[t1]
    no_y = report.yesterday is None
    z0, z1 = np.zeros(t0.size), np.zeros(t1.size)
    nan0, nan1 = np.full(t0.size, np.nan), np.full(t1.size, np.nan)
    cols0 = {"realised": z0, "unrealised": z0, "total": z0,
             "dod": nan0 if no_y else ex.total0, "price": nan0 if no_y else ex.price0,
             "time": nan0 if no_y else ex.time0, "new": nan0 if no_y else z0,
             "amended": nan0 if no_y else ex.amended0,
             "cancelled": nan0 if no_y else ex.cancelled0,
             "delivered": nan0 if no_y else ex.delivered0}  # fmt: skip
    cols1 = {"realised": ex.realised1, "unrealised": ex.unrealised1,
             "total": ex.realised1 + ex.unrealised1, "dod": nan1 if no_y else ex.total1,
             "price": z1, "time": z1, "new": nan1 if no_y else ex.new1,
             "amended": nan1 if no_y else ex.amended1, "cancelled": z1, "delivered": z1}  # fmt: skip
    if no_y:  # B0 is today's book as a placeholder: its rows only carry NaN
        cols0 = {k: (nan0 if k in ("dod", *PART_KEYS) else z0) for k in cols0}
    label = np.concatenate([lab0, lab1]).astype(object)
    ccy = np.concatenate([ccy0, ccy1]).astype(object)
    pairs = sorted(set(zip(label.tolist(), ccy.tolist(), strict=True)),
                   key=lambda x: (str(x[0]).casefold(), x[1]))  # fmt: skip
    if dimension in _TIME_DIMS:  # chronological, not alphabetical
        m_all = np.concatenate([ex.s0.month, ex.s1.month])
        first: dict[Any, Any] = {}
        for lb, m in zip(label.tolist(), m_all.tolist(), strict=True):
            first[lb] = min(first.get(lb, m), m)
        pairs.sort(key=lambda x: (first[x[0]], x[1]))
    row_of = {p: i for i, p in enumerate(pairs)}
    g = np.array([row_of[p] for p in zip(label.tolist(), ccy.tolist(), strict=True)],
                 dtype=np.int64)  # fmt: skip
    m = len(pairs)

    def nan_total(w: np.ndarray) -> np.ndarray:
        out = np.bincount(g, weights=np.nan_to_num(w, nan=0.0), minlength=m).astype(float)
        out[np.bincount(g, weights=np.isnan(w).astype(float), minlength=m) > 0] = np.nan
        return out

    sums = {k: nan_total(np.concatenate([cols0[k], cols1[k]])) for k in cols0}
    residual = sums["dod"] - sum(sums[k] for k in PART_KEYS)
    g1 = g[t0.size :]
    members = [np.unique(t1[g1 == r]) for r in range(m)]
    notes = _notes(report, g, m, t0.size)
    groups = PnLGroups(
        dimension=dimension,
        label=np.array([p[0] for p in pairs], dtype=object),
        currency=np.array([p[1] for p in pairs], dtype=object),
        realised=sums["realised"], unrealised=sums["unrealised"], total=sums["total"],
        dod=sums["dod"], price=sums["price"], time=sums["time"], new=sums["new"],
        amended=sums["amended"], cancelled=sums["cancelled"], delivered=sums["delivered"],
        residual=residual,
        n_trades=np.array([x.size for x in members], dtype=np.int64),
        notes=notes, members=members,
    )  # fmt: skip
    totals = []
    for c in sorted(set(groups.currency.tolist())):
        sel = groups.currency == c
        tot: dict[str, Any] = {"currency": str(c)}
        for k in _NUM:
            vals = getattr(groups, k)[sel]
            tot[k] = float(np.sum(vals))  # NaN-propagating: a currency total is never partial
        totals.append(tot)
    return PnLReport(report.as_of, report.book, report.yesterday, ex, report.product0,
                     report.product1, report.today_source, groups, totals, report.problems,
                     report.counts)  # fmt: skip


def _month_text(m: np.datetime64) -> str:
    return str(np.datetime_as_string(m, unit="M"))


def _notes(report: PnLReport, g: np.ndarray, m: int, n0: int) -> np.ndarray:
    """Per row, why a number is missing: settlements not recorded, curves not available."""
    ex = report.explain
    bits: list[dict[str, set[str]]] = [{} for _ in range(m)]

    def add(r: int, kind: str, text: str) -> None:
        bits[r].setdefault(kind, set()).add(text)

    for side, real, prod, off in ((1, ex.realised_today, report.product1, n0),
                                  (0, ex.realised_b0_today, report.product0, 0)):  # fmt: skip
        if side == 0 and report.yesterday is None:
            continue
        miss = np.flatnonzero((real.delivered_qty > 0) & ~np.isfinite(real.settle))
        for s in miss.tolist():
            add(
                int(g[off + s]),
                "no settlement for",
                f"{prod[real.slices.trade[s]]} {_month_text(real.slices.month[s])}",
            )
    y = report.yesterday
    for i in np.flatnonzero(np.isnan(ex.unrealised1)).tolist():
        p = str(report.product1[ex.s1.trade[i]])
        add(int(g[n0 + i]), "no curve today for", p)
    if y is not None:
        for s in np.flatnonzero(np.isnan(ex.time0) | np.isnan(ex.price0)).tolist():
            p = str(report.product0[ex.s0.trade[s]])
            kind = "no curve yesterday for" if p not in y.curves else "no curve today for"
            add(int(g[s]), kind, p)
    out = np.empty(m, dtype=object)
    for r in range(m):
        parts = [f"{k} {', '.join(sorted(v)[:4])}" + (" …" if len(v) > 4 else "")
                 for k, v in sorted(bits[r].items())]  # fmt: skip
        out[r] = "; ".join(parts) or ("no yesterday marks" if y is None else "ok")
    return out
