"""Position arithmetic: monthly delivery slices, mark-to-market, option deltas, energy units.

Pure numpy (and :mod:`app.engine.options`); no Qt, no database, no I/O.

Conventions
-----------
* Delivery periods are inclusive day ranges ``[start, end]`` (``datetime64[D]``). A trade's
  ``quantity`` is its *total* volume over the period, in the product's unit (720 MWh for 1 MW
  baseload over a 30-day month), always positive; ``sign`` is +1 for a buy, -1 for a sell.
* Each period is split into calendar-month slices. A slice carries the share of the quantity
  equal to its share of the period's delivery weight: calendar days, or delivery hours for
  power (23 on the last Sunday of March, 25 on the last Sunday of October, 24 otherwise, as
  :func:`app.engine.curves.delivery_hours`).
* Only the *open* part of a trade is a position: delivery days before ``as_of`` are delivered
  (realised, settled through invoicing) and drop out; a slice's open quantity is its quantity
  times the fraction of its weight on or after ``as_of``.
* Forwards, futures and swaps: ``MTM = sign * q_open * (F - price)`` where ``F`` is the
  delivery-weighted average of the monthly curve over the open days (what
  :meth:`ForwardCurve.price` returns). MTM is **undiscounted** (cash settles over the delivery
  months; discounting at a few percent changes it by well under the curve's own uncertainty and
  needs a rate curve per currency that the desk does not hold yet).
* Options (European, on the average forward of the period): ``V = black76(F, K, T, r=0, vol)``
  (undiscounted, consistent with the forwards), ``T`` = Actual/365 from ``as_of`` to expiry
  (0 once expired: intrinsic value, i.e. exercised when in the money).
  ``MTM = sign * q_open * (V - premium)``; delta-equivalent volume ``sign * q_open * delta``.
  Asian and American options are marked with the same European formula (an approximation on
  the period average; the pricer has the exact models).
* MTM of a slice: forwards exactly ``sign * q_slice * (F_month - price)``; options get the
  trade's MTM pro rata to open quantity. Slice values therefore always sum to the trade value.
* A missing curve, or a curve that does not cover an open month, leaves the trade's forward
  and MTM NaN with a reason code (:data:`REASONS`); never a silent 0.

Energy units (:data:`ENERGY_UNITS`): every unit converts to a common unit of its family,
MWh for power and gas, bbl for crude and refined products.

=========  ======  ===========  =========================================================
unit       common  factor       status
=========  ======  ===========  =========================================================
MWh        MWh     1            identity
MMBtu      MWh     0.29307107   exact from definitions: 1 Btu(IT) = 1055.05585262 J,
                                1 MWh = 3.6e9 J, so 1 MWh = 3.412141633 MMBtu
therm      MWh     0.029307107  exact: 1 therm = 100 000 Btu(IT) = 0.1 MMBtu (the US therm,
                                105.4804 MJ, differs by 0.02 %; we use the IT definition)
bbl        bbl     1            identity (1 US oil barrel = 42 US gal)
gal        bbl     1/42         exact: 1 bbl = 42 US gal
t          bbl     7.45         convention for ICE low-sulphur gasoil (density ~0.845
                                kg/l); depends on the product's density
=========  ======  ===========  =========================================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.options import black76, black76_greeks

__all__ = [
    "BTU_IT_JOULES",
    "ENERGY_UNITS",
    "MMBTU_PER_MWH",
    "REASONS",
    "REASON_DELIVERED",
    "REASON_NONPOSITIVE",
    "REASON_NO_CURVE",
    "REASON_OK",
    "REASON_OUTSIDE_CURVE",
    "EnergyUnit",
    "MonthlyCurve",
    "Slices",
    "TradeInputs",
    "Valuation",
    "energy_factor",
    "monthly_slices",
    "value_trades",
]

FloatArray = NDArray[np.float64]
_NAT = np.datetime64("NaT", "D")

#: Joules in one International Table British thermal unit (exact by definition).
BTU_IT_JOULES = 1055.05585262
#: MMBtu in one MWh: 3.6e9 J / (1e6 * 1055.05585262 J) = 3.412141633...
MMBTU_PER_MWH = 3.6e9 / (1e6 * BTU_IT_JOULES)


@dataclass(frozen=True)
class EnergyUnit:
    """How one quantity unit converts to its family's common energy unit."""

    unit: str
    common: str
    factor: float
    exact: bool
    note: str


ENERGY_UNITS: dict[str, EnergyUnit] = {
    u.unit: u
    for u in (
        EnergyUnit("MWh", "MWh", 1.0, True, "identity"),
        EnergyUnit("MMBtu", "MWh", 1.0 / MMBTU_PER_MWH, True, "1 MWh = 3.412142 MMBtu (IT Btu)"),
        EnergyUnit("therm", "MWh", 0.1 / MMBTU_PER_MWH, True, "1 therm = 0.1 MMBtu"),
        EnergyUnit("bbl", "bbl", 1.0, True, "identity"),
        EnergyUnit("gal", "bbl", 1.0 / 42.0, True, "1 bbl = 42 US gal"),
        EnergyUnit("t", "bbl", 7.45, False, "gasoil convention 1 t ~ 7.45 bbl"),
    )
}


def energy_factor(unit: str) -> tuple[float, str]:
    """``(factor, common_unit)`` so that ``qty * factor`` is in the common unit.

    Raises ``ValueError`` for an unknown unit label.

    >>> energy_factor("gal")[1], round(energy_factor("therm")[0], 9)
    ('bbl', 0.029307107)
    """
    try:
        e = ENERGY_UNITS[unit]
    except KeyError:
        raise ValueError(f"unit must be one of {sorted(ENERGY_UNITS)}, got {unit!r}") from None
    return e.factor, e.common


# --------------------------------------------------------------------------- reasons

REASON_OK = 0
REASON_NO_CURVE = 1
REASON_OUTSIDE_CURVE = 2
REASON_NONPOSITIVE = 3
REASON_DELIVERED = 4
#: Text of each reason code.
REASONS: dict[int, str] = {
    REASON_OK: "ok",
    REASON_NO_CURVE: "no curve",
    REASON_OUTSIDE_CURVE: "delivery outside the curve",
    REASON_NONPOSITIVE: "forward or strike out of Black-76 range",
    REASON_DELIVERED: "fully delivered",
}


class MonthlyCurve(Protocol):
    """What the engine needs of a curve (:class:`app.engine.curves.ForwardCurve` fits)."""

    @property
    def months(self) -> np.ndarray: ...  # datetime64[M], consecutive

    @property
    def prices(self) -> np.ndarray: ...


# --------------------------------------------------------------------------- slices


def _days(a: ArrayLike, name: str) -> NDArray[np.int64]:
    arr = np.asarray(a)
    if arr.dtype.kind == "M":
        return np.asarray(arr.astype("datetime64[D]").astype(np.int64))
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype == object:
        return np.array([(v - dt.date(1970, 1, 1)).days for v in arr.ravel()], dtype=np.int64)
    raise ValueError(f"{name} must be datetime64[D] or integer days since 1970-01-01")


def _last_sunday(month_end_days: NDArray[np.int64]) -> NDArray[np.int64]:
    """Day number of the last Sunday on or before each given day (1970-01-01 was a Thursday)."""
    weekday = (month_end_days + 3) % 7  # Monday = 0
    return month_end_days - (weekday + 1) % 7


@dataclass(frozen=True)
class Slices:
    """Calendar-month pieces of delivery periods (one row per trade and month).

    Attributes
    ----------
    trade : ndarray of int64
        Index of the trade each slice belongs to (slices of a trade are consecutive).
    month : ndarray of datetime64[M]
        Delivery month.
    weight : ndarray of float
        Delivery weight (days or hours) of the trade's period in that month.
    open_weight : ndarray of float
        Part of ``weight`` on or after the cut-off day (all of it without a cut-off).
    fraction : ndarray of float
        ``weight / total weight of the trade's period``: the slice's share of the quantity.
    open_fraction : ndarray of float
        ``open_weight / total weight``: the slice's open share of the quantity.
    """

    trade: NDArray[np.int64]
    month: np.ndarray
    weight: FloatArray
    open_weight: FloatArray
    fraction: FloatArray
    open_fraction: FloatArray


def monthly_slices(
    start: ArrayLike, end: ArrayLike, hourly: ArrayLike = False, cut: Any = None
) -> Slices:
    """Split inclusive delivery periods ``[start, end]`` into calendar-month slices.

    Parameters
    ----------
    start, end : array_like of datetime64[D] (or int days since 1970-01-01, or dates)
        First and last delivery day of each trade, ``end >= start``.
    hourly : bool or array_like of bool
        Weight days by EU delivery hours (power) instead of 1 per calendar day.
    cut : date or datetime64, optional
        First open day: weight before it is delivered (``open_weight`` excludes it).

    Returns
    -------
    Slices

    Raises
    ------
    ValueError
        If ``end < start`` anywhere or the arrays do not broadcast.

    Examples
    --------
    >>> s = monthly_slices(np.array(["2027-01-16"], "M8[D]"), np.array(["2027-02-28"], "M8[D]"))
    >>> [str(m) for m in s.month], s.weight.tolist()
    (['2027-01', '2027-02'], [16.0, 28.0])
    """
    s_days, e_days = np.broadcast_arrays(_days(start, "start"), _days(end, "end"))
    s_days, e_days = s_days.ravel(), e_days.ravel()
    hr = np.broadcast_to(np.asarray(hourly, dtype=bool), s_days.shape).ravel()
    if np.any(e_days < s_days):
        raise ValueError("end must not be before start")
    n = s_days.size
    m0 = s_days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    m1 = e_days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    counts = m1 - m0 + 1
    trade = np.repeat(np.arange(n, dtype=np.int64), counts)
    offsets = np.arange(trade.size) - np.repeat(np.cumsum(counts) - counts, counts)
    month = np.repeat(m0, counts) + offsets
    month_first = month.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    month_last = (month + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64) - 1
    lo = np.maximum(month_first, s_days[trade])
    hi = np.minimum(month_last, e_days[trade])
    cut_day = None if cut is None else int(_days(np.array([cut]), "cut")[0])

    def weight_of(a: NDArray[np.int64], b: NDArray[np.int64]) -> FloatArray:
        """Weight of the inclusive day range [a, b] inside each slice's month (0 if empty)."""
        days = np.maximum(b - a + 1, 0).astype(float)
        w = days.copy()
        h = hr[trade]
        if np.any(h):
            mon = (month % 12) + 1  # 1..12
            dst = _last_sunday(month_last)
            inside = (dst >= a) & (dst <= b)
            w = np.where(h, 24.0 * days, days)
            w -= np.where(h & inside & (mon == 3), 1.0, 0.0)
            w += np.where(h & inside & (mon == 10), 1.0, 0.0)
        return np.asarray(w, dtype=float)

    weight = weight_of(lo, hi)
    open_weight = weight if cut_day is None else weight_of(np.maximum(lo, cut_day), hi)
    total = np.bincount(trade, weights=weight, minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(total[trade] > 0, weight / total[trade], 0.0)
        open_fraction = np.where(total[trade] > 0, open_weight / total[trade], 0.0)
    return Slices(
        trade,
        month.astype("datetime64[M]"),
        weight,
        np.asarray(open_weight, dtype=float),
        np.asarray(fraction, dtype=float),
        np.asarray(open_fraction, dtype=float),
    )


# --------------------------------------------------------------------------- valuation


@dataclass(frozen=True)
class TradeInputs:
    """Economics of ``n`` trades as arrays (all of length ``n``).

    ``curve`` indexes the ``curves`` sequence given to :func:`value_trades` (-1: none).
    Option fields are ignored where ``is_option`` is False (NaN/NaT there is fine).
    """

    start: ArrayLike
    end: ArrayLike
    quantity: ArrayLike
    sign: ArrayLike
    price: ArrayLike
    hourly: ArrayLike
    curve: ArrayLike
    is_option: ArrayLike = False
    is_call: ArrayLike = True
    strike: ArrayLike = np.nan
    premium: ArrayLike = 0.0
    expiry: ArrayLike = _NAT
    vol: ArrayLike = 0.0


@dataclass(frozen=True)
class Valuation:
    """Result of :func:`value_trades`: per trade arrays, plus per slice arrays ``slice_*``.

    Per trade: ``open_qty`` (units, unsigned), ``forward`` (open-period average, NaN if
    unmarked), ``value`` (option value per unit; NaN for non-options), ``mtm``, ``delta``
    (per unit: 1 for forwards), ``delta_qty`` (signed), position greeks ``gamma`` (signed units
    per price unit), ``vega`` (currency per 1 vol point), ``theta`` (currency per calendar day),
    ``reason`` (code of :data:`REASONS`). ``slices`` holds the month split; per slice
    ``slice_qty`` (signed open quantity), ``slice_forward``, ``slice_mtm``, ``slice_delta_qty``.
    """

    open_qty: FloatArray
    forward: FloatArray
    value: FloatArray
    mtm: FloatArray
    delta: FloatArray
    delta_qty: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    reason: NDArray[np.int8]
    slices: Slices
    slice_qty: FloatArray
    slice_forward: FloatArray
    slice_mtm: FloatArray
    slice_delta_qty: FloatArray


def _arr(x: ArrayLike, n: int, name: str, dtype: Any = float) -> np.ndarray:
    a = np.asarray(x)
    try:
        return np.broadcast_to(a, (n,)).astype(dtype, copy=True)
    except ValueError:
        raise ValueError(f"{name} must be a scalar or have length {n}") from None


def value_trades(trades: TradeInputs, curves: Sequence[MonthlyCurve], as_of: Any) -> Valuation:
    """Mark trades to the monthly forward curves (see the module docstring for the formulas).

    Parameters
    ----------
    trades : TradeInputs
        ``quantity > 0``, ``sign`` in {+1, -1}, finite ``price``; options need finite
        ``strike``, ``premium`` and ``vol >= 0`` and an ``expiry`` date.
    curves : sequence of ForwardCurve-like
        Monthly curves referenced by ``trades.curve``.
    as_of : date or datetime64
        Valuation day: first open delivery day, and t = 0 for option expiries.

    Returns
    -------
    Valuation

    Raises
    ------
    ValueError
        Naming the first bad argument.
    """
    start = _days(trades.start, "start")
    n = start.size
    end = _days(np.broadcast_to(np.asarray(trades.end), (n,)), "end")
    qty = _arr(trades.quantity, n, "quantity")
    sign = _arr(trades.sign, n, "sign")
    price = _arr(trades.price, n, "price")
    hourly = _arr(trades.hourly, n, "hourly", bool)
    curve = _arr(trades.curve, n, "curve", np.int64)
    is_opt = _arr(trades.is_option, n, "is_option", bool)
    is_call = _arr(trades.is_call, n, "is_call", bool)
    strike = _arr(trades.strike, n, "strike")
    premium = _arr(trades.premium, n, "premium")
    vol = _arr(trades.vol, n, "vol")
    if not (np.all(np.isfinite(qty)) and np.all(qty > 0)):
        raise ValueError("quantity must be finite and > 0 (the side goes in sign)")
    if not np.all(np.isin(sign, (-1.0, 1.0))):
        raise ValueError("sign must be +1 (buy) or -1 (sell)")
    if not np.all(np.isfinite(price)):
        raise ValueError("price must be finite")
    if np.any((curve < -1) | (curve >= len(curves))):
        raise ValueError(f"curve must be -1 or an index below {len(curves)}")
    if np.any(is_opt & ~(np.isfinite(strike) & np.isfinite(premium))):
        raise ValueError("strike and premium must be finite for options")
    if np.any(is_opt & ~(np.isfinite(vol) & (vol >= 0))):
        raise ValueError("vol must be finite and >= 0 for options")
    as_of_day = int(_days(np.array([as_of]), "as_of")[0])

    sl = monthly_slices(start, end, hourly, cut=as_of_day)
    t = sl.trade
    open_qty = np.bincount(t, weights=sl.open_fraction, minlength=n) * qty
    open_w = np.bincount(t, weights=sl.open_weight, minlength=n)

    # Forward per slice from the trade's curve.
    f_slice = np.full(t.size, np.nan)
    reason = np.zeros(n, dtype=np.int8)
    reason[curve < 0] = REASON_NO_CURVE
    month_i = sl.month.astype(np.int64)
    for c, crv in enumerate(curves):
        sel = np.flatnonzero(curve[t] == c)
        if not sel.size:
            continue
        cm = np.asarray(crv.months).astype("datetime64[M]").astype(np.int64)
        cp = np.asarray(crv.prices, dtype=float)
        pos = month_i[sel] - cm[0]
        ok = (pos >= 0) & (pos < cp.size)
        f_slice[sel[ok]] = cp[pos[ok]]
    is_open = sl.open_weight > 0
    missing = is_open & ~np.isfinite(f_slice)
    outside = np.bincount(t[missing], minlength=n) > 0
    reason[(reason == REASON_OK) & outside] = REASON_OUTSIDE_CURVE
    delivered = open_w <= 0
    reason[delivered] = REASON_DELIVERED

    with np.errstate(invalid="ignore", divide="ignore"):
        wf = np.where(is_open, sl.open_weight * np.where(np.isfinite(f_slice), f_slice, 0.0), 0.0)
        fwd = np.bincount(t, weights=wf, minlength=n) / np.where(open_w > 0, open_w, 1.0)
    fwd[(reason != REASON_OK)] = np.nan

    value = np.full(n, np.nan)
    delta = np.where(is_opt, np.nan, 1.0)
    gamma_u = np.zeros(n)
    vega_u = np.zeros(n)
    theta_u = np.zeros(n)
    opt = np.flatnonzero(is_opt & (reason == REASON_OK))
    if opt.size:
        f_o, k_o = fwd[opt], strike[opt]
        bad = (f_o <= 0) | (k_o < 0)
        reason[opt[bad]] = REASON_NONPOSITIVE
        fwd[opt[bad]] = np.nan
        good = opt[~bad]
        if good.size:
            exp_days = _days(np.broadcast_to(np.asarray(trades.expiry), (n,))[good], "expiry")
            tt = np.maximum(exp_days - as_of_day, 0).astype(float) / 365.0
            args = (fwd[good], strike[good], tt, 0.0, vol[good], is_call[good])
            value[good] = np.asarray(black76(*args), dtype=float)
            g = black76_greeks(*args)
            delta[good] = np.asarray(g.delta, dtype=float)
            live = tt > 0  # an expired option is exercised or not: no gamma, vega or theta
            gamma_u[good] = np.where(live, np.asarray(g.gamma, dtype=float), 0.0)
            vega_u[good] = np.where(live, np.asarray(g.vega, dtype=float) / 100.0, 0.0)
            theta_u[good] = np.where(live, np.asarray(g.theta, dtype=float) / 365.0, 0.0)

    unmarked_opt = is_opt & (reason != REASON_OK) & (reason != REASON_DELIVERED)
    for greek in (gamma_u, vega_u, theta_u):
        greek[unmarked_opt] = np.nan  # unknown, not zero
    signed = sign * open_qty
    mtm = np.where(is_opt, signed * (value - premium), signed * (fwd - price))
    mtm[reason == REASON_DELIVERED] = 0.0  # nothing open: no unrealised P&L
    delta_qty = signed * delta
    delta_qty[reason == REASON_DELIVERED] = 0.0

    # Per slice: forwards exactly by month; options pro rata to open quantity.
    s_qty = sign[t] * qty[t] * sl.open_fraction
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(open_qty[t] > 0, qty[t] * sl.open_fraction / open_qty[t], 0.0)
    s_mtm = np.where(is_opt[t], mtm[t] * share, s_qty * (f_slice - price[t]))
    s_mtm = np.where(is_open, s_mtm, 0.0)
    s_mtm[np.isnan(mtm[t]) & is_open] = np.nan
    s_delta = np.where(is_opt[t], delta_qty[t] * share, s_qty)
    return Valuation(
        open_qty=open_qty,
        forward=fwd,
        value=value,
        mtm=mtm,
        delta=delta,
        delta_qty=delta_qty,
        gamma=signed * gamma_u,
        vega=signed * vega_u,
        theta=signed * theta_u,
        reason=reason,
        slices=sl,
        slice_qty=s_qty,
        slice_forward=f_slice,
        slice_mtm=s_mtm,
        slice_delta_qty=s_delta,
    )
