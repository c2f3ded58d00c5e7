"""Realised P&L and the day-over-day P&L explain.

Pure numpy on top of :mod:`app.engine.positions`; no Qt, no database, no I/O.

Conventions
-----------
* **Lifetime P&L** of a trade on day ``d`` = unrealised ``U`` (the open volume marked to the
  curve, :func:`app.engine.positions.value_trades`) + realised ``R`` (the delivered volume,
  delivery days before ``d``). Both are undiscounted.
* **Realised**, per calendar-month slice: ``R = sign * q_delivered * (S_m - price)`` for
  forwards, futures and swaps; for options ``R = sign * q_delivered * (max(w (S_m - K), 0) -
  premium)`` (``w`` = +1 call, -1 put): the exercise value of the delivered volume (exercised
  when in the money at the month's settlement price) minus the premium paid (buy) or received
  (sell) on that volume. The premium on the still-open volume sits in ``U`` (value - premium),
  so ``U + R`` counts the whole premium exactly once.
* ``S_m``, the settlement price of a past month, is the price for that month on the last
  recorded settlement curve dated **on or before the month's first delivery day** (curves that
  do not quote the month are skipped). When none is recorded the slice's realised P&L is NaN
  with reason :data:`REASON_NO_SETTLEMENT`, never 0. A slice with nothing delivered realises
  exactly 0 whatever ``S_m`` is.
* **Day-over-day explain** from day ``d0`` (book ``B0``, curves ``C0``) to ``d1`` (``B1``,
  ``C1``), as a chain of revaluations so the parts add up by construction:

  ======================  ========================================================
  time decay              ``U(B0, C0, d0, option expiries shifted by d1-d0) - U(B0, C0, d0)``
  delivered / realised    ``U(B0, C0, d1) - U(B0, C0, d0, shifted) + R(B0, d1) - R(B0, d0)``
  price effect            ``U(B0, C1, d1) - U(B0, C0, d1)``
  new trades              ``P(B1 trade, C1, d1)`` for trades not in ``B0``
  amended trades          ``P(B1 version) - P(B0 version)`` at ``C1, d1``
  cancelled trades        ``-P(B0 version)`` at ``C1, d1``
  ======================  ========================================================

  with ``P = U + R``. The total ``P(B1, C1, d1) - P(B0, C0, d0)`` is computed on its own; the
  residual ``total - sum(parts)`` is reported (rounding only, ~1e-9 of the amounts). Realised
  terms that are identical on both sides (same trade economics, same delivered volume) cancel
  exactly, so a month delivered long ago without a recorded settlement does not make today's
  change unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.positions import (
    MonthlyCurve,
    Slices,
    TradeInputs,
    _arr,
    _days,
    monthly_slices,
    value_trades,
)

__all__ = [
    "REASON_NO_SETTLEMENT",
    "Explain",
    "Realised",
    "SettlementHistory",
    "explain",
    "realised",
    "settlement_prices",
]

FloatArray = NDArray[np.float64]

#: Reason code of a slice/trade whose delivered volume has no recorded settlement price.
REASON_NO_SETTLEMENT = 1


@dataclass(frozen=True)
class SettlementHistory:
    """Recorded settlement curves of one product.

    ``dates`` (``datetime64[D]``, ascending) are the settlement days; row ``k`` of ``prices``
    is the curve of ``dates[k]`` on the month grid ``first_month + j`` (NaN where the curve does
    not quote the month).
    """

    dates: np.ndarray
    first_month: np.datetime64
    prices: FloatArray

    @classmethod
    def build(
        cls, dates: Sequence[Any], months: Sequence[ArrayLike], prices: Sequence[ArrayLike]
    ) -> SettlementHistory:
        """From one ``(date, months datetime64[M], prices)`` triple per recorded curve."""
        if not (len(dates) == len(months) == len(prices)):
            raise ValueError("dates, months and prices must have the same length")
        d = np.array([np.datetime64(x, "D") for x in dates], dtype="datetime64[D]")
        ms = [np.asarray(m).astype("datetime64[M]") for m in months]
        if not ms:
            return cls(d, np.datetime64("1970-01", "M"), np.zeros((0, 0)))
        lo = min(m.min() for m in ms if m.size)
        hi = max(m.max() for m in ms if m.size)
        grid = np.full((len(ms), int((hi - lo).astype(int)) + 1), np.nan)
        for k, (m, p) in enumerate(zip(ms, prices, strict=True)):
            grid[k, (m - lo).astype(np.int64)] = np.asarray(p, dtype=float)
        order = np.argsort(d, kind="stable")
        return cls(d[order], lo, grid[order])


def settlement_prices(
    history: SettlementHistory | None, months: ArrayLike
) -> tuple[FloatArray, np.ndarray]:
    """Settlement price of each month and the date of the curve it came from.

    The last curve dated on or before the month's first day that quotes the month; NaN / NaT
    when there is none.

    >>> h = SettlementHistory.build(["2027-01-29", "2027-02-01", "2027-02-02"],
    ...     [np.array(["2027-02"], "M8[M]")] * 3, [[80.0], [81.0], [99.0]])
    >>> settlement_prices(h, np.array(["2027-02"], "M8[M]"))[0].tolist()
    [81.0]
    """
    m = np.asarray(months).astype("datetime64[M]")
    price = np.full(m.shape, np.nan)
    used = np.full(m.shape, np.datetime64("NaT"), dtype="datetime64[D]")
    if history is None or history.prices.size == 0 or m.size == 0:
        return price, used
    col = (m - history.first_month).astype(np.int64)
    inside = (col >= 0) & (col < history.prices.shape[1])
    cols = np.where(inside, col, 0)
    first_day = m.astype("datetime64[D]")
    p = history.prices[:, cols]  # (curves, months)
    ok = np.isfinite(p) & (history.dates[:, None] <= first_day[None, :]) & inside[None, :]
    has = ok.any(axis=0)
    last = ok.shape[0] - 1 - np.argmax(ok[::-1], axis=0)
    price[has] = p[last[has], np.flatnonzero(has)]
    used[has] = history.dates[last[has]]
    return price, used


@dataclass(frozen=True)
class Realised:
    """Realised P&L per slice of ``monthly_slices(start, end, hourly, cut=as_of)``.

    ``delivered_qty`` is unsigned; ``unit_pnl`` is ``S - price`` (forwards) or
    ``payoff(S) - premium`` (options), NaN without a settlement; ``slice_pnl`` is
    ``sign * delivered_qty * unit_pnl`` (exactly 0 where nothing is delivered). Per trade:
    ``pnl`` and ``reason`` (0 ok, :data:`REASON_NO_SETTLEMENT`).
    """

    slices: Slices
    delivered_qty: FloatArray
    settle: FloatArray
    settle_date: np.ndarray
    unit_pnl: FloatArray
    sign: FloatArray
    slice_pnl: FloatArray
    pnl: FloatArray
    reason: NDArray[np.int8]


def realised(
    trades: TradeInputs, settlements: Sequence[SettlementHistory | None], as_of: Any
) -> Realised:
    """Realised P&L of the volume delivered before ``as_of`` (module docstring for formulas).

    ``settlements[c]`` is the history of the product of curve index ``c`` (``trades.curve``);
    -1 or ``None`` means no history (NaN where volume is delivered).
    """
    start = _days(trades.start, "start")
    n = start.size
    end = _days(np.broadcast_to(np.asarray(trades.end), (n,)), "end")
    qty = _arr(trades.quantity, n, "quantity")
    sign = _arr(trades.sign, n, "sign")
    price = _arr(trades.price, n, "price")
    curve = _arr(trades.curve, n, "curve", np.int64)
    is_opt = _arr(trades.is_option, n, "is_option", bool)
    is_call = _arr(trades.is_call, n, "is_call", bool)
    strike = _arr(trades.strike, n, "strike")
    premium = _arr(trades.premium, n, "premium")
    if np.any((curve < -1) | (curve >= len(settlements))):
        raise ValueError(f"curve must be -1 or an index below {len(settlements)}")
    sl = monthly_slices(start, end, _arr(trades.hourly, n, "hourly", bool), cut=as_of)
    t = sl.trade
    dq = qty[t] * (sl.fraction - sl.open_fraction)
    dq = np.where(sl.weight - sl.open_weight > 0, np.maximum(dq, 0.0), 0.0)
    settle = np.full(t.size, np.nan)
    settle_date = np.full(t.size, np.datetime64("NaT"), dtype="datetime64[D]")
    need = dq > 0
    for c, hist in enumerate(settlements):
        sel = np.flatnonzero(need & (curve[t] == c))
        if sel.size and hist is not None:
            settle[sel], settle_date[sel] = settlement_prices(hist, sl.month[sel])
    w = np.where(is_call[t], 1.0, -1.0)
    payoff = np.maximum(w * (settle - strike[t]), 0.0)
    unit = np.where(is_opt[t], payoff - premium[t], settle - price[t])
    s_sign = sign[t]
    with np.errstate(invalid="ignore"):
        s_pnl = np.where(need, s_sign * dq * unit, 0.0)
    missing = need & ~np.isfinite(settle)
    reason = (np.bincount(t[missing], minlength=n) > 0).astype(np.int8) * REASON_NO_SETTLEMENT
    pnl = np.bincount(t, weights=np.nan_to_num(s_pnl), minlength=n).astype(float)
    pnl[reason != 0] = np.nan
    return Realised(sl, dq, settle, settle_date, unit, s_sign, s_pnl, pnl, reason)


def _value(trades: TradeInputs, curves: Sequence[MonthlyCurve | None], as_of: Any) -> Any:
    """:func:`value_trades` with ``None`` slots in ``curves`` read as "no curve that day"."""
    present = [c for c in curves if c is not None]
    lut = np.full(len(curves) + 1, -1, dtype=np.int64)  # lut[-1] == -1: no curve
    lut[: len(curves)] = (
        np.where(
            [c is not None for c in curves], np.cumsum([c is not None for c in curves]) - 1, -1
        )
        if curves
        else lut[:0]
    )
    n = _days(trades.start, "start").size
    idx = _arr(trades.curve, n, "curve", np.int64)
    if np.any((idx < -1) | (idx >= len(curves))):
        raise ValueError(f"curve must be -1 or an index below {len(curves)}")
    return value_trades(replace(trades, curve=lut[idx]), present, as_of)


@dataclass(frozen=True)
class Explain:
    """Day-over-day P&L explain, per monthly slice of each book (see the module docstring).

    ``s0``/``s1`` are the slices of ``B0``/``B1`` (``trade`` indexes the book). Arrays named
    ``*0`` are per ``B0`` slice, ``*1`` per ``B1`` slice. ``total0 + total1`` summed over a
    group is its total change; the parts are ``time0, delivered0, price0, cancelled0,
    amended0`` and ``new1, amended1``; ``residual = total - parts``. ``unrealised1`` /
    ``realised1`` are today's U and R, ``yesterday0`` yesterday's ``U + R``.
    Per trade: ``status0`` (0 unchanged, 1 amended, 2 cancelled) and ``status1`` (0 unchanged,
    1 amended, 3 new); ``reason1``/``reason0`` are realised reasons of each book at ``d1``.
    """

    s0: Slices
    s1: Slices
    yesterday0: FloatArray
    total0: FloatArray
    time0: FloatArray
    delivered0: FloatArray
    price0: FloatArray
    cancelled0: FloatArray
    amended0: FloatArray
    total1: FloatArray
    new1: FloatArray
    amended1: FloatArray
    unrealised1: FloatArray
    realised1: FloatArray
    status0: NDArray[np.int8]
    status1: NDArray[np.int8]
    realised_today: Realised
    realised_b0_today: Realised

    def residual_total(self) -> float:
        """Unexplained part of the whole book (NaN-propagating)."""
        total = float(np.sum(self.total0) + np.sum(self.total1))
        parts = sum(float(np.sum(a)) for a in (self.time0, self.delivered0, self.price0,
                                                  self.cancelled0, self.amended0, self.new1,
                                                  self.amended1))  # fmt: skip
        return total - parts


UNCHANGED, AMENDED, CANCELLED, NEW = 0, 1, 2, 3


def explain(
    book0: TradeInputs,
    book1: TradeInputs,
    match0: ArrayLike,
    amended0: ArrayLike,
    curves0: Sequence[MonthlyCurve | None],
    curves1: Sequence[MonthlyCurve | None],
    settlements: Sequence[SettlementHistory | None],
    d0: Any,
    d1: Any,
) -> Explain:
    """Explain the change of lifetime P&L from ``(B0, C0, d0)`` to ``(B1, C1, d1)``.

    Parameters
    ----------
    book0, book1 : TradeInputs
        Yesterday's and today's books (non-cancelled versions). ``curve`` indexes
        ``curves0``, ``curves1`` and ``settlements`` alike (the product's slot; ``None`` in a
        list: no curve that day).
    match0 : array_like of int
        For each ``B0`` trade, its index in ``B1`` (-1: cancelled since).
    amended0 : array_like of bool
        For each matched ``B0`` trade, True when its economics changed (a new version).
    curves0, curves1 : sequences of MonthlyCurve or None
    settlements : sequence of SettlementHistory or None
    d0, d1 : dates, ``d1 >= d0``
    """
    n0 = _days(book0.start, "start").size
    n1 = _days(book1.start, "start").size
    m0 = _arr(match0, n0, "match0", np.int64)
    am = _arr(amended0, n0, "amended0", bool) & (m0 >= 0)
    if np.any(m0 >= n1) or np.unique(m0[m0 >= 0]).size != np.sum(m0 >= 0):
        raise ValueError("match0 must hold distinct indices into book1 or -1")
    day0 = int(_days(np.array([d0]), "d0")[0])
    day1 = int(_days(np.array([d1]), "d1")[0])
    if day1 < day0:
        raise ValueError("d1 must not be before d0")
    status0 = np.where(m0 < 0, CANCELLED, np.where(am, AMENDED, UNCHANGED)).astype(np.int8)
    status1 = np.full(n1, NEW, dtype=np.int8)
    status1[m0[m0 >= 0]] = np.where(am[m0 >= 0], AMENDED, UNCHANGED)

    # Yesterday's book along the chain of revaluations.
    shift = np.timedelta64(day1 - day0, "D")
    exp0 = np.broadcast_to(np.asarray(book0.expiry).astype("datetime64[D]"), (n0,))
    v_a = _value(book0, curves0, day0)
    v_t = _value(replace(book0, expiry=exp0 - shift), curves0, day0)
    v_d = _value(book0, curves0, day1)
    v_p = _value(book0, curves1, day1)
    r0_d0 = realised(book0, settlements, day0)
    r0_d1 = realised(book0, settlements, day1)
    v_1 = _value(book1, curves1, day1)
    r1 = realised(book1, settlements, day1)

    def r_change(a: Realised, b: Realised) -> FloatArray:
        """``b - a`` per slice (same slices); exactly 0 where the delivered volume is equal."""
        same = a.delivered_qty == b.delivered_qty
        with np.errstate(invalid="ignore"):
            return np.where(same, 0.0, b.slice_pnl - a.slice_pnl)

    t0 = r0_d0.slices.trade
    u_a, u_t, u_d, u_p = v_a.slice_mtm, v_t.slice_mtm, v_d.slice_mtm, v_p.slice_mtm
    time0 = u_t - u_a
    delivered0 = (u_d - u_t) + r_change(r0_d0, r0_d1)
    price0 = u_p - u_d
    today0 = u_p + r0_d1.slice_pnl  # B0 versions at today's marks
    gone = status0[t0] == CANCELLED
    cancelled0 = np.where(gone, -today0, 0.0)

    # Realised terms equal on both sides (matched, same delivery and realised economics)
    # cancel exactly: compare per trade, then align the slices of the pair.
    t1 = r1.slices.trade
    same_r = np.zeros(n0, dtype=bool)
    fields = ("start", "end", "hourly", "quantity", "sign", "price", "curve", "is_option",
              "is_call", "strike", "premium")  # fmt: skip
    matched = np.flatnonzero(m0 >= 0)
    if matched.size:
        eq = np.ones(matched.size, dtype=bool)
        for f in fields:
            a = np.broadcast_to(np.asarray(getattr(book0, f)), (n0,))[matched]
            b = np.broadcast_to(np.asarray(getattr(book1, f)), (n1,))[m0[matched]]
            if a.dtype.kind == "f" or b.dtype.kind == "f":
                eq &= (a == b) | (np.isnan(a.astype(float)) & np.isnan(b.astype(float)))
            else:
                eq &= a == b
        same_r[matched] = eq
    off0 = np.concatenate(([0], np.cumsum(np.bincount(t0, minlength=n0))))
    off1 = np.concatenate(([0], np.cumsum(np.bincount(t1, minlength=n1))))
    # For each B1 slice of a same-realised pair, the matching B0 slice.
    inv = np.full(n1, -1, dtype=np.int64)
    inv[m0[matched]] = matched
    pair0 = inv[t1]
    paired1 = np.append(same_r, False)[pair0]  # pair0 == -1 reads the False pad
    s0_of_1 = np.where(paired1, off0[np.maximum(pair0, 0)] + (np.arange(t1.size) - off1[t1]), -1)

    amended_a = status0[t0] == AMENDED
    paired0 = same_r[t0]
    amended0_s = np.where(amended_a, -np.where(paired0, u_p, today0), 0.0)
    u1 = v_1.slice_mtm
    r1_s = r1.slice_pnl
    today1 = u1 + r1_s
    amended1_s = np.where(status1[t1] == AMENDED, np.where(paired1, u1, today1), 0.0)
    # The R difference of an amended same-realised pair (none, unless the delivered volume
    # differs, which it cannot with the same delivery period): kept for exactness.
    rd = np.zeros(t1.size)
    if np.any(paired1):
        j = np.flatnonzero(paired1)
        k = s0_of_1[j]
        with np.errstate(invalid="ignore"):
            rd[j] = np.where(r0_d1.delivered_qty[k] == r1.delivered_qty[j], 0.0,
                             r1_s[j] - r0_d1.slice_pnl[k])  # fmt: skip
    amended1_s = amended1_s + np.where(status1[t1] == AMENDED, rd, 0.0)
    new1 = np.where(status1[t1] == NEW, today1, 0.0)

    # Total, on its own: today's P minus yesterday's P, realised terms of same-realised pairs
    # taken as the difference of their delivered volumes (yesterday's vs today's).
    total0 = -np.where(paired0, u_a, u_a + r0_d0.slice_pnl)
    rd_total = np.zeros(t1.size)
    if np.any(paired1):
        j = np.flatnonzero(paired1)
        k = s0_of_1[j]
        with np.errstate(invalid="ignore"):
            rd_total[j] = np.where(r0_d0.delivered_qty[k] == r1.delivered_qty[j], 0.0,
                                   r1_s[j] - r0_d0.slice_pnl[k])  # fmt: skip
    total1 = np.where(paired1, u1 + rd_total, today1)
    return Explain(
        s0=r0_d0.slices,
        s1=r1.slices,
        yesterday0=u_a + r0_d0.slice_pnl,
        total0=total0,
        time0=time0,
        delivered0=delivered0,
        price0=price0,
        cancelled0=cancelled0,
        amended0=amended0_s,
        total1=total1,
        new1=new1,
        amended1=amended1_s,
        unrealised1=u1,
        realised1=r1_s,
        status0=status0,
        status1=status1,
        realised_today=r1,
        realised_b0_today=r0_d1,
    )
