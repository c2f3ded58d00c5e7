"""Positions use case: trades -> open positions by book, commodity, product, period or
counterparty, marked to forward curves.

No Qt and no ``app.feed``: the caller hands in the curves (``dict[product code, ForwardCurve]``)
and says which of them are stale, so the same code serves the GUI (live feed or last settlement
curves), reports and tests. The arithmetic is :mod:`app.engine.positions`; read its docstring for
the volume split, the MTM formulas (undiscounted) and the energy-unit table.

Groups are never added across currencies: every aggregate row is one (group, currency) pair,
and energy volumes are kept per family (MWh for power and gas, bbl for oil and products).
A trade that cannot be marked (no curve, or delivery beyond the curve) makes its group's MTM
NaN, with the reason in ``marks``; ``mtm_marked`` keeps the sum over the trades that could be
marked, for display next to the NaN.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from app.engine.curves import ForwardCurve
from app.engine.positions import (
    REASON_DELIVERED,
    REASON_NO_CURVE,
    REASON_OK,
    REASON_OUTSIDE_CURVE,
    REASONS,
    TradeInputs,
    Valuation,
    energy_factor,
    value_trades,
)
from app.models.entities import Trade
from app.models.enums import Commodity, InstrumentType, OptionType, Side, TradeStatus
from app.models.repository import NULL_INT, RefData, TradeRepository, columns_from_rows
from app.models.types import PRICE_PLACES, QUANTITY_PLACES

__all__ = [
    "DEFAULT_VOL",
    "DIMENSIONS",
    "CurrencyTotal",
    "PositionGroups",
    "PositionReport",
    "PositionService",
    "PositionSnapshot",
]

#: Flat lognormal vol for options when the caller gives none for the product: the order of
#: one-year energy vols (Brent 21-day 40 %, ULSD 33 %, see app/feed/sim_params.py).
DEFAULT_VOL = 0.40

#: Group-by dimensions and their titles.
DIMENSIONS: dict[str, str] = {
    "book": "Book",
    "commodity": "Commodity",
    "product": "Product",
    "counterparty": "Counterparty",
    "month": "Month",
    "quarter": "Quarter",
    "season": "Season",
    "year": "Year",
}
_TIME_DIMS = ("month", "quarter", "season", "year")
_CANCELLED = list(TradeStatus).index(TradeStatus.CANCELLED)
_BUY = list(Side).index(Side.BUY)
_OPTION = list(InstrumentType).index(InstrumentType.OPTION)
_CALL = list(OptionType).index(OptionType.CALL)
_Q_SCALE = 10.0**QUANTITY_PLACES
_P_SCALE = 10.0**PRICE_PLACES
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
               "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip


@dataclass(frozen=True)
class PositionSnapshot:
    """Current, non-cancelled trades as columns (blotter columns plus option premium/expiry)."""

    ref: RefData
    columns: dict[str, np.ndarray]
    premium: np.ndarray  # float per unit, NaN for non-options
    expiry: np.ndarray  # datetime64[D], NaT for non-options
    taken_at: float = field(default_factory=time.time)

    def __len__(self) -> int:
        return int(self.columns["trade_uuid"].size)

    @property
    def product_codes(self) -> set[str]:
        """Codes of the products held (the curves a revaluation needs)."""
        ids = np.unique(self.columns["product_id"]).tolist()
        return {self.ref.products[i].code for i in ids if i in self.ref.products}


@dataclass(frozen=True)
class PositionGroups:
    """Aggregates for one dimension: row ``i`` is group ``label[i]`` in ``currency[i]``.

    Volumes are signed (long > 0). ``net_qty``/``delta_qty``/``gamma`` are in the product's
    ``unit`` and NaN when the row holds more than one product. Energy columns are NaN when the
    row holds nothing of that family. ``mtm`` is NaN when a trade of the row is unmarked.
    """

    dimension: str
    label: np.ndarray  # object: str
    currency: np.ndarray  # object: str
    unit: np.ndarray  # object: str ("" when several products)
    net_qty: np.ndarray
    delta_qty: np.ndarray
    net_mwh: np.ndarray
    net_bbl: np.ndarray
    delta_mwh: np.ndarray
    delta_bbl: np.ndarray
    mtm: np.ndarray
    mtm_marked: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    n_trades: np.ndarray
    n_unmarked: np.ndarray
    stale: np.ndarray  # bool: a curve used was stale
    marks: np.ndarray  # object: str, how the row was marked
    members: list[np.ndarray]  # trade indices (into PositionReport trade arrays) per row

    def __len__(self) -> int:
        return int(self.label.size)


@dataclass(frozen=True)
class CurrencyTotal:
    """Totals of all open positions in one currency."""

    currency: str
    mtm: float
    mtm_marked: float
    n_trades: int
    n_unmarked: int
    vega: float
    theta: float


@dataclass(frozen=True)
class PositionReport:
    """A revaluation: per-trade results, the chosen grouping and per-currency totals."""

    as_of: dt.date
    snapshot: PositionSnapshot
    valuation: Valuation
    product: np.ndarray  # object: product code per trade
    unit: np.ndarray  # object: unit label per trade
    currency: np.ndarray  # object
    energy_factor: np.ndarray  # float: unit -> common unit
    energy_unit: np.ndarray  # object: "MWh" | "bbl"
    curve_status: dict[str, str]  # product held -> "live" | "stale" | "missing"
    groups: PositionGroups
    totals: list[CurrencyTotal]
    vol: dict[str, float]
    n_delivered: int

    @property
    def trade_uuid(self) -> np.ndarray:
        return self.snapshot.columns["trade_uuid"]

    def reason_text(self, i: int) -> str:
        """Why trade ``i`` is (not) marked, e.g. ``'no curve for NG-NBP'``."""
        code = int(self.valuation.reason[i])
        if code in (REASON_NO_CURVE, REASON_OUTSIDE_CURVE):
            return f"{REASONS[code]} for {self.product[i]}"
        return REASONS[code]

    def note(self) -> str:
        """One line saying how the marks were taken."""
        live = sorted(p for p, s in self.curve_status.items() if s == "live")
        stale = sorted(p for p, s in self.curve_status.items() if s == "stale")
        missing = sorted(p for p, s in self.curve_status.items() if s == "missing")
        parts = []
        if live:
            parts.append(f"live curves ({len(live)})")
        if stale and len(stale) > 3 and not live:
            parts.append(f"last settlement curves (stale) for all {len(stale)} products")
        elif stale:
            parts.append(f"last settlement curves (stale): {', '.join(stale)}")
        if missing:
            parts.append(f"no curve for {', '.join(missing)}")
        head = f"Marked {self.as_of.isoformat()}: " + ("; ".join(parts) or "no positions")
        return head + f" · undiscounted · options Black-76 (vol {_vol_text(self.vol)})"

    def trade_rows(self, indices: np.ndarray) -> list[dict[str, Any]]:
        """Plain rows for a drill-down list: one dict per trade index."""
        c = self.snapshot.columns
        v = self.valuation
        ref = self.snapshot.ref
        out = []
        for i in np.asarray(indices, dtype=np.int64).tolist():
            out.append(
                {
                    "trade_uuid": str(c["trade_uuid"][i]),
                    "book": ref.books[int(c["book_id"][i])].name
                    if int(c["book_id"][i]) in ref.books
                    else "",
                    "product": str(self.product[i]),
                    "instrument": list(InstrumentType)[int(c["instrument"][i])].label,
                    "side": "Buy" if int(c["side"][i]) == _BUY else "Sell",
                    "quantity": float(c["quantity"][i]) / _Q_SCALE,
                    "open_qty": float(v.open_qty[i]),
                    "unit": str(self.unit[i]),
                    "price": float(c["price"][i]) / _P_SCALE,
                    "currency": str(self.currency[i]),
                    "delivery_start": _date(int(c["delivery_start"][i])),
                    "delivery_end": _date(int(c["delivery_end"][i])),
                    "forward": float(v.forward[i]),
                    "delta_qty": float(v.delta_qty[i]),
                    "mtm": float(v.mtm[i]),
                    "reason": self.reason_text(i),
                }
            )
        return out


def _vol_text(vol: Mapping[str, float]) -> str:
    vals = sorted(set(vol.values()))
    if not vals:
        return f"{DEFAULT_VOL:.0%} flat"
    if len(vals) == 1:
        return f"{vals[0]:.0%} flat"
    return f"{vals[0]:.0%}–{vals[-1]:.0%}"


def _date(days: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=days)


class PositionService:
    """Loads trades and revalues them into :class:`PositionReport` objects (thread-safe: each
    call opens its own connection/session)."""

    def __init__(self, repo: TradeRepository, trading: Any = None) -> None:
        self.repo = repo
        self.trading = trading

    def refdata(self) -> RefData:
        ref = getattr(self.trading, "refdata", None)
        return ref if isinstance(ref, RefData) else self.repo.reference_data()

    def snapshot(self, cancelled: Callable[[], bool] | None = None) -> PositionSnapshot:
        """Current versions of all non-cancelled trades, with option premium and expiry."""
        chunks = []
        for chunk in self.repo.blotter_chunks(cancelled=cancelled):
            keep = chunk["status"] != _CANCELLED
            chunks.append({k: v[keep] for k, v in chunk.items()})
        if chunks:
            cols = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        else:
            cols = columns_from_rows([])
        n = cols["trade_uuid"].size
        premium = np.full(n, np.nan)
        expiry = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
        opt = np.flatnonzero(cols["instrument"] == _OPTION)
        if opt.size:
            row_of = {str(u): int(i) for i, u in zip(opt, cols["trade_uuid"][opt], strict=True)}
            with self.repo.store.session() as s:
                q = select(Trade.trade_uuid, Trade.premium, Trade.expiry_date).where(
                    Trade.is_current.is_(True), Trade.instrument == InstrumentType.OPTION
                )
                for uid, prem, exp in s.execute(q):
                    i = row_of.get(uid.hex)
                    if i is not None:
                        premium[i] = float(prem) if prem is not None else np.nan
                        expiry[i] = np.datetime64(exp, "D") if exp is not None else expiry[i]
        return PositionSnapshot(self.refdata(), cols, premium, expiry)

    def revalue(
        self,
        snapshot: PositionSnapshot,
        curves: Mapping[str, ForwardCurve],
        as_of: dt.date,
        vol: float | Mapping[str, float] = DEFAULT_VOL,
        *,
        dimension: str = "book",
        stale: Collection[str] = (),
    ) -> PositionReport:
        """Mark ``snapshot`` to ``curves`` on ``as_of`` and group by ``dimension``.

        ``vol`` is a flat lognormal vol or one per product code (others get
        :data:`DEFAULT_VOL`); ``stale`` names products whose curve is a stale/settlement one.
        """
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {list(DIMENSIONS)}, got {dimension!r}")
        ref = snapshot.ref
        c = snapshot.columns
        pid = c["product_id"]
        prods = ref.products
        # Per-product tables indexed by product id: one gather per column, no Python loop
        # over trades (a million-trade book revalues every second while the feed ticks).
        ids = np.unique(pid)
        top = int(ids.max()) + 1 if ids.size else 1
        code_lut = np.array([f"#{i}" for i in range(top)], dtype=object)
        unit_lut = np.full(top, "", dtype=object)
        hourly_lut = np.zeros(top, dtype=bool)
        for i in ids.tolist():
            ref_p = prods.get(i)
            if ref_p is not None:
                code_lut[i] = ref_p.code
                unit_lut[i] = ref_p.unit.label
                hourly_lut[i] = ref_p.commodity is Commodity.POWER
        codes, unit, hourly = code_lut[pid], unit_lut[pid], hourly_lut[pid]
        held = sorted({str(code_lut[i]) for i in ids.tolist()})
        curve_list: list[ForwardCurve] = []
        curve_idx: dict[str, int] = {}
        status: dict[str, str] = {}
        for code in held:
            crv = curves.get(code)
            if crv is None:
                status[code] = "missing"
                continue
            curve_idx[code] = len(curve_list)
            curve_list.append(crv)
            status[code] = "stale" if code in stale else "live"
        curve_lut = np.array([curve_idx.get(str(x), -1) for x in code_lut], dtype=np.int64)
        factor_lut = np.full(top, np.nan)
        e_unit_lut = np.full(top, "", dtype=object)
        for i in ids.tolist():
            if unit_lut[i]:
                factor_lut[i], e_unit_lut[i] = energy_factor(str(unit_lut[i]))
        factors, e_unit = factor_lut[pid], e_unit_lut[pid]
        vols = dict.fromkeys(held, DEFAULT_VOL)
        if isinstance(vol, Mapping):
            vols.update({k: float(v) for k, v in vol.items() if k in vols})
        else:
            vols = dict.fromkeys(held, float(vol))
        is_opt = c["instrument"] == _OPTION
        strike = np.where(c["strike"] == NULL_INT, np.nan, c["strike"] / _P_SCALE)
        inputs = TradeInputs(
            start=c["delivery_start"].astype(np.int64),
            end=c["delivery_end"].astype(np.int64),
            quantity=c["quantity"] / _Q_SCALE,
            sign=np.where(c["side"] == _BUY, 1.0, -1.0),
            price=c["price"] / _P_SCALE,
            hourly=hourly,
            curve=curve_lut[pid],
            is_option=is_opt,
            is_call=c["option_type"] == _CALL,
            strike=np.where(is_opt, strike, np.nan),
            premium=np.where(is_opt, np.nan_to_num(snapshot.premium, nan=0.0), 0.0),
            expiry=np.where(is_opt, snapshot.expiry, np.datetime64(as_of, "D")),
            vol=np.array([vols.get(str(x), DEFAULT_VOL) for x in code_lut])[pid],
        )
        val = value_trades(inputs, curve_list, as_of)
        currency = np.asarray(c["currency"], dtype=object)
        base = PositionReport(
            as_of=as_of,
            snapshot=snapshot,
            valuation=val,
            product=codes,
            unit=unit,
            currency=currency,
            energy_factor=factors,
            energy_unit=e_unit,
            curve_status=status,
            groups=_empty_groups(dimension),
            totals=[],
            vol=vols,
            n_delivered=int(np.sum(val.reason == REASON_DELIVERED)),
        )
        return _with_groups(base, dimension)

    @staticmethod
    def regroup(report: PositionReport, dimension: str) -> PositionReport:
        """The same marks grouped by another dimension (no revaluation)."""
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {list(DIMENSIONS)}, got {dimension!r}")
        return _with_groups(report, dimension)


# --------------------------------------------------------------------------- grouping


def _empty_groups(dimension: str) -> PositionGroups:
    e = np.zeros(0)
    o = np.zeros(0, dtype=object)
    i = np.zeros(0, dtype=np.int64)
    return PositionGroups(dimension, o, o, o, e, e, e, e, e, e, e, e, e, e, e, i, i,
                          np.zeros(0, dtype=bool), o, [])  # fmt: skip


def _period_labels(months: np.ndarray, dimension: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort key and label per delivery month (``datetime64[M]``) for a time dimension."""
    mi = months.astype(np.int64)  # months since 1970-01
    year, mon = 1970 + mi // 12, mi % 12 + 1
    if dimension == "month":
        key = mi
    elif dimension == "quarter":
        key = year * 4 + (mon - 1) // 3
    elif dimension == "season":  # Sum-YY: Apr..Sep; Win-YY: Oct YY..Mar YY+1
        gas_year = np.where(mon >= 4, year, year - 1)
        key = gas_year * 2 + (mon < 4) + (mon >= 10)
    else:
        key = year
    uk = np.unique(key)
    labels = []
    for k in uk.tolist():
        if dimension == "month":
            labels.append(f"{_MONTH_ABBR[k % 12]}-{(1970 + k // 12) % 100:02d}")
        elif dimension == "quarter":
            labels.append(f"Q{k % 4 + 1}-{(k // 4) % 100:02d}")
        elif dimension == "season":
            labels.append(f"{'Win' if k % 2 else 'Sum'}-{(k // 2) % 100:02d}")
        else:
            labels.append(f"Cal-{k % 100:02d}")
    codes = np.searchsorted(uk, key)
    return codes, np.array(labels, dtype=object)


def _trade_labels(report: PositionReport, dimension: str) -> tuple[np.ndarray, np.ndarray]:
    """Code per trade and label per code (alphabetical) for a trade dimension."""
    c = report.snapshot.columns
    ref = report.snapshot.ref
    if dimension == "product":
        ids, names_of = c["product_id"], {k: p.code for k, p in ref.products.items()}
    elif dimension == "book":
        ids, names_of = c["book_id"], {k: b.name for k, b in ref.books.items()}
    elif dimension == "counterparty":
        ids, names_of = c["counterparty_id"], {k: x.name for k, x in ref.counterparties.items()}
    else:
        ids, names_of = c["product_id"], {k: p.commodity.label for k, p in ref.products.items()}
    used = np.unique(ids)
    top = int(used.max()) + 1 if used.size else 1
    lut = np.array([names_of.get(i, f"#{i}") for i in range(top)], dtype=object)
    names_used = {str(lut[i]) for i in used.tolist()}
    labels = np.array(sorted(names_used, key=str.casefold), dtype=object)
    lookup = {s: k for k, s in enumerate(labels.tolist())}
    code_lut = np.array([lookup.get(str(x), -1) for x in lut], dtype=np.int64)
    return code_lut[ids], labels


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distinct ``(a, b)`` rows sorted by ``a`` then ``b`` (non-negative ints; 1-D unique on a
    combined, sorted key is much faster than ``np.unique(axis=0)``)."""
    if a.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    span = int(b.max()) + 1
    key = np.sort(a.astype(np.int64) * span + b.astype(np.int64))
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    return np.column_stack([key // span, key % span])


def _with_groups(report: PositionReport, dimension: str) -> PositionReport:
    v = report.valuation
    open_trade = v.reason != REASON_DELIVERED
    if dimension in _TIME_DIMS:
        sl = v.slices
        rows = np.flatnonzero((sl.open_weight > 0) & open_trade[sl.trade])
        trade = sl.trade[rows]
        codes, labels = _period_labels(sl.month[rows], dimension)
        qty, dq, mtm = v.slice_qty[rows], v.slice_delta_qty[rows], v.slice_mtm[rows]
        share = np.where(v.open_qty[trade] > 0, np.abs(qty) / np.where(
            v.open_qty[trade] > 0, v.open_qty[trade], 1.0), 0.0)  # fmt: skip
    else:
        trade = np.flatnonzero(open_trade)
        all_codes, labels = _trade_labels(report, dimension)
        codes = all_codes[trade]
        c = report.snapshot.columns
        qty = np.where(c["side"][trade] == _BUY, 1.0, -1.0) * v.open_qty[trade]
        dq, mtm = v.delta_qty[trade], v.mtm[trade]
        share = np.ones(trade.size)
    ccy_names = np.array(sorted(set(report.currency.tolist())), dtype=object)
    ccy_code = np.searchsorted(ccy_names, report.currency[trade]) if trade.size else trade
    key = codes * max(len(ccy_names), 1) + ccy_code
    ukey, g = np.unique(key, return_inverse=True)
    m = ukey.size
    g = g.ravel()

    def total(w: np.ndarray) -> np.ndarray:
        # float even with no rows (bincount of an empty array is int64, even with weights)
        return np.bincount(g, weights=w, minlength=m).astype(float, copy=False)

    def nan_total(w: np.ndarray) -> np.ndarray:
        out = total(np.nan_to_num(w, nan=0.0))
        out[np.bincount(g, weights=np.isnan(w).astype(float), minlength=m) > 0] = np.nan
        return out

    f = report.energy_factor[trade]
    is_mwh = report.energy_unit[trade] == "MWh"
    is_bbl = report.energy_unit[trade] == "bbl"

    def family(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = nan_total(np.where(mask, w * f, 0.0))
        out[np.bincount(g, weights=mask.astype(float), minlength=m) == 0] = np.nan
        return out

    pid = report.snapshot.columns["product_id"][trade]
    pairs = _unique_pairs(g, pid.astype(np.int64))
    n_products = np.bincount(pairs[:, 0], minlength=m)
    single = n_products == 1
    tpairs = _unique_pairs(g, trade)
    n_trades = np.bincount(tpairs[:, 0], minlength=m)
    unmarked_t = (v.reason != REASON_OK) & open_trade
    n_unmarked = np.bincount(tpairs[:, 0], weights=unmarked_t[tpairs[:, 1]].astype(float),
                             minlength=m).astype(np.int64)  # fmt: skip
    members = np.split(tpairs[:, 1], np.cumsum(n_trades)[:-1]) if m else []

    first = np.zeros(m, dtype=np.int64)
    if trade.size:
        first[g[::-1]] = np.arange(trade.size)[::-1]  # first row of each group
    unit = np.where(single, report.unit[trade][first] if trade.size else "", "").astype(object)
    net_qty = np.where(single, total(qty), np.nan)
    delta_qty = np.where(single, nan_total(dq), np.nan)
    gamma = np.where(single, nan_total(v.gamma[trade] * share), np.nan)
    mtm_g = nan_total(mtm)
    mtm_marked = total(np.nan_to_num(mtm, nan=0.0))

    status = report.curve_status
    stale = np.zeros(m, dtype=bool)
    marks = np.empty(m, dtype=object)
    for r in range(m):
        prods = sorted(set(report.product[members[r]].tolist()))
        st = [status.get(p, "missing") for p in prods]
        stale[r] = "stale" in st
        missing = [p for p, s in zip(prods, st, strict=True) if s == "missing"]
        outside = sorted({str(report.product[i]) for i in members[r].tolist()
                          if v.reason[i] == REASON_OUTSIDE_CURVE})  # fmt: skip
        bits = []
        if missing:
            bits.append(f"no curve for {', '.join(missing)}")
        if outside:
            bits.append(f"delivery beyond curve of {', '.join(outside)}")
        if not bits:
            bits.append("stale" if stale[r] else "live")
        elif stale[r]:
            bits.append("stale")
        marks[r] = "; ".join(bits)

    n_ccy = max(len(ccy_names), 1)
    groups = PositionGroups(
        dimension=dimension,
        label=labels[ukey // n_ccy] if m else np.zeros(0, dtype=object),
        currency=ccy_names[ukey % n_ccy] if m else np.zeros(0, dtype=object),
        unit=unit,
        net_qty=net_qty,
        delta_qty=delta_qty,
        net_mwh=family(qty, is_mwh),
        net_bbl=family(qty, is_bbl),
        delta_mwh=family(dq, is_mwh),
        delta_bbl=family(dq, is_bbl),
        mtm=mtm_g,
        mtm_marked=mtm_marked,
        gamma=gamma,
        vega=nan_total(v.vega[trade] * share),
        theta=nan_total(v.theta[trade] * share),
        n_trades=n_trades.astype(np.int64),
        n_unmarked=n_unmarked,
        stale=stale,
        marks=marks,
        members=members,
    )
    totals = []
    for ccy in ccy_names.tolist():
        idx = np.flatnonzero(open_trade & (report.currency == ccy))
        t_mtm = v.mtm[idx]
        unm = int(np.sum(v.reason[idx] != REASON_OK))
        totals.append(
            CurrencyTotal(
                currency=str(ccy),
                mtm=float(np.sum(t_mtm)) if not np.any(np.isnan(t_mtm)) else float("nan"),
                mtm_marked=float(np.nansum(t_mtm)),
                n_trades=int(idx.size),
                n_unmarked=unm,
                vega=float(np.nansum(v.vega[idx])),
                theta=float(np.nansum(v.theta[idx])),
            )
        )
    return PositionReport(
        as_of=report.as_of,
        snapshot=report.snapshot,
        valuation=v,
        product=report.product,
        unit=report.unit,
        currency=report.currency,
        energy_factor=report.energy_factor,
        energy_unit=report.energy_unit,
        curve_status=report.curve_status,
        groups=groups,
        totals=totals,
        vol=report.vol,
        n_delivered=report.n_delivered,
    )
