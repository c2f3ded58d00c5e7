"""A book as risk arrays: curve-tenor factors, full revaluation and delta-gamma P&L.

Pure numpy/scipy; no Qt, no database.  The risk service builds a :class:`RiskBook` from a
positions revaluation (:func:`risk_book` takes the engine's :class:`~app.engine.positions.Valuation`
and the trade arrays), then every method -- historical, Monte Carlo, stress, scenario grids --
revalues it on *scenarios*: arrays of additive price changes of the factors.

Factors
-------
One factor per (curve, delivery month): the monthly forward price of a product for that month,
in the product's price unit.  A scenario row ``x`` (length ``m``) moves factor ``j`` from
``base[j]`` to ``base[j] + x[j]``.  Changes are *additive* (price units): a price may cross zero
(WTI settled at -36.98 on 2020-04-20, German power is often negative) and no logarithm of a
price is ever taken.

Revaluation
-----------
* Linear trades (forwards, futures, swaps): the P&L of a slice is ``signed open qty x x[j]``,
  exactly, so the linear part of the book is one exposure vector per group
  (:attr:`RiskBook.linear`).
* Options: the underlying is the delivery-weighted average of the option's open months,
  ``F = sum_j w_j (base_j + x_j)``; the value is Black-76 (undiscounted, as in the positions)
  at ``T - horizon`` and ``vol + vol_shift`` (floored at 0).  A scenario forward at or below
  zero, where the lognormal model has no value, is valued at intrinsic ``max(F - K, 0)`` for
  calls and ``max(K - F, 0)`` for puts -- the limit of Black-76 as ``F -> 0+`` continued
  linearly -- and :func:`revalue` counts such cells (``RevalStats.nonpositive``).
  P&L ``= signed open qty x (V(scenario) - V(base))``.
* Delta-gamma (:func:`delta_gamma_pnl`): ``sum_j delta_j x_j + 1/2 sum_o gamma_o dF_o^2 +
  vega_o dvol + theta_o days``, from the same greeks; for linear books it equals full
  revaluation exactly.

Groups
------
Every trade belongs to one *group* (a position, product, book ...; ``group`` in
:func:`risk_book`); :func:`revalue` can return the ``(scenarios, groups)`` P&L matrix so that
:func:`~app.engine.risk.component_es` allocates the ES to the groups.

Memory is bounded: scenarios are revalued in row chunks of at most ``max_cells`` option cells,
and chunks run on a thread pool (numpy releases the GIL in its ufuncs, so both cores work).
From ``_KERNEL_MIN_CELLS`` option cells on, each chunk's option part runs in a fused numba
kernel (:func:`app.engine._kernels.reval_options`, serial and ``nogil``, so the same pool keeps
both cores busy) instead of numpy: one pass per cell, no ``(rows, options)`` temporaries, and
the same values up to the last bits of the normal cdf (Cody's approximation instead of scipy's
``ndtr``).  Smaller calls -- the GUI's what-ifs -- never import numba nor wait for its compiler.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.special import ndtr

__all__ = [
    "RevalStats",
    "RiskBook",
    "delta_gamma_pnl",
    "option_values",
    "revalue",
    "risk_book",
]

FloatArray = NDArray[np.float64]

#: Default bound on option cells (scenario rows x options) per revaluation chunk: 2M cells is
#: ~16 MB per temporary array.
MAX_CELLS = 2_000_000

#: Option cells (scenario rows x options) of one :func:`revalue` call from which the option
#: part runs in the numba kernel of :mod:`app.engine._kernels` (imported, and compiled or loaded
#: from numba's disk cache, on the first such call).  Below it the numpy path runs, so small
#: interactive calls never import numba (~0.5 s) nor wait for a first compile (a few seconds).
_KERNEL_MIN_CELLS = 1_000_000


@dataclass(frozen=True, eq=False)
class RiskBook:
    """Risk arrays of a book (see the module docstring).

    Attributes
    ----------
    factor_curve : ndarray of int64, shape (m,)
        Curve index of each factor (the caller's numbering, e.g. a product list).
    factor_month : ndarray of datetime64[M], shape (m,)
        Delivery month of each factor.
    base : ndarray, shape (m,)
        Base level of each factor (the monthly forward price).
    group : ndarray of int64, shape (n_trades,)
        Group of each trade (``-1``: not in the book, e.g. unmarked or delivered).
    n_groups : int
        Number of groups.
    linear : ndarray, shape (m, n_groups)
        P&L per unit move of each factor, per group, of the linear trades.
    opt_trade : ndarray of int64, shape (o,)
        Trade index of each open option.
    opt_group : ndarray of int64, shape (o,)
        Group of each option.
    opt_qty : ndarray, shape (o,)
        Signed open quantity.
    opt_weights : scipy.sparse.csr_matrix, shape (o, m)
        Delivery weights of each option's underlying (rows sum to 1).
    opt_strike, opt_t, opt_vol : ndarray, shape (o,)
        Strike, time to expiry (years, Actual/365; 0 once expired: intrinsic) and vol.
    opt_call : ndarray of bool, shape (o,)
    opt_forward0, opt_value0 : ndarray, shape (o,)
        Base forward and base Black-76 value per unit.
    """

    factor_curve: NDArray[np.int64]
    factor_month: np.ndarray
    base: FloatArray
    group: NDArray[np.int64]
    n_groups: int
    linear: FloatArray
    opt_trade: NDArray[np.int64]
    opt_group: NDArray[np.int64]
    opt_qty: FloatArray
    opt_weights: sparse.csr_matrix
    opt_strike: FloatArray
    opt_t: FloatArray
    opt_vol: FloatArray
    opt_call: NDArray[np.bool_]
    opt_forward0: FloatArray
    opt_value0: FloatArray
    labels: tuple[str, ...] = field(default=())

    @property
    def n_factors(self) -> int:
        return int(self.base.size)

    @property
    def n_options(self) -> int:
        return int(self.opt_qty.size)

    def factor_index(self, curve: int, month: Any) -> int:
        """Index of the factor of ``curve`` for ``month`` (``KeyError`` if the book has none)."""
        m = np.datetime64(month, "M")
        hit = np.flatnonzero((self.factor_curve == curve) & (self.factor_month == m))
        if not hit.size:
            raise KeyError((curve, str(m)))
        return int(hit[0])

    def delta(self) -> FloatArray:
        """First derivative of the book's P&L per factor, shape ``(m,)`` (all groups)."""
        d = self.linear.sum(axis=1)
        if self.n_options:
            od = _black_delta(self.opt_forward0, self.opt_strike, self.opt_t, self.opt_vol,
                              self.opt_call)  # fmt: skip
            d = d + self.opt_weights.T @ (self.opt_qty * od)
        return np.asarray(d, dtype=float)


@dataclass
class RevalStats:
    """Counters of a :func:`revalue` call."""

    scenarios: int = 0
    nonpositive: int = 0  # option cells whose scenario forward was <= 0 (valued at intrinsic)


# --------------------------------------------------------------------------- building


def risk_book(
    valuation: Any,
    slice_curve: ArrayLike,
    group: ArrayLike,
    n_groups: int,
    *,
    is_option: ArrayLike,
    is_call: ArrayLike,
    strike: ArrayLike,
    t_expiry: ArrayLike,
    vol: ArrayLike,
    labels: tuple[str, ...] = (),
) -> RiskBook:
    """Build a :class:`RiskBook` from a positions :class:`~app.engine.positions.Valuation`.

    Parameters
    ----------
    valuation : Valuation
        The marks (its ``slices``, ``slice_qty``, ``slice_forward``, ``open_qty``,
        ``forward``, ``reason``).
    slice_curve : array_like of int, shape (n_slices,)
        Curve index of each slice (``-1``: none).
    group : array_like of int, shape (n_trades,)
        Group of each trade, ``0 <= group < n_groups`` (``-1`` leaves a trade out).
    is_option, is_call, strike, t_expiry, vol : array_like, shape (n_trades,)
        Option terms; ``t_expiry`` in years from the valuation day (``<= 0``: expired).

    Only trades that are marked (``reason == 0``) and have open volume enter the book.
    """
    v = valuation
    sl = v.slices
    t = np.asarray(sl.trade, dtype=np.int64)
    n = int(np.asarray(v.open_qty).size)
    grp = np.asarray(group, dtype=np.int64).copy()
    if grp.shape != (n,):
        raise ValueError(f"group must have length {n}")
    if n_groups < 1 or np.any(grp >= n_groups) or np.any(grp < -1):
        raise ValueError("group must lie in [-1, n_groups)")
    s_curve = np.asarray(slice_curve, dtype=np.int64)
    if s_curve.shape != t.shape:
        raise ValueError("slice_curve must have one entry per slice")
    opt = np.broadcast_to(np.asarray(is_option, dtype=bool), (n,))
    reason = np.asarray(v.reason)
    grp[(reason != 0) | ~(np.asarray(v.open_qty) > 0)] = -1
    s_open = (np.asarray(sl.open_weight) > 0) & (grp[t] >= 0) & (s_curve >= 0)

    # Factors: every (curve, month) with an open slice of a booked trade.
    month_i = np.asarray(sl.month).astype("datetime64[M]").astype(np.int64)
    key = s_curve * 100_000 + month_i  # months since 1970 stay far below 100,000
    keys, inv = np.unique(key[s_open], return_inverse=True)
    m = keys.size
    factor_curve = keys // 100_000
    factor_month = (keys % 100_000).astype("datetime64[M]")
    base = np.zeros(m)
    sf = np.asarray(v.slice_forward, dtype=float)[s_open]
    base[inv] = sf  # every slice of one factor carries the same curve price
    s_idx = np.flatnonzero(s_open)

    # Linear trades: exact exposure per factor and group.
    lin = ~opt[t[s_idx]]
    linear = np.zeros((m, n_groups))
    np.add.at(linear, (inv[lin], grp[t[s_idx[lin]]]), np.asarray(v.slice_qty)[s_idx[lin]])

    # Options (expired-but-open ones too: T = 0 values them at intrinsic, exactly as the marks).
    strike_a = np.broadcast_to(np.asarray(strike, dtype=float), (n,))
    t_a = np.broadcast_to(np.asarray(t_expiry, dtype=float), (n,))
    vol_a = np.broadcast_to(np.asarray(vol, dtype=float), (n,))
    call_a = np.broadcast_to(np.asarray(is_call, dtype=bool), (n,))
    o_sl = ~lin
    o_trades_of_slice = t[s_idx[o_sl]]
    open_w = np.asarray(sl.open_weight, dtype=float)[s_idx[o_sl]]
    trade_sign = np.zeros(n)
    trade_sign[t[s_idx]] = np.sign(np.asarray(v.slice_qty, dtype=float)[s_idx])
    live = opt & (grp >= 0)
    live_idx = np.flatnonzero(live)
    pos = np.full(n, -1, dtype=np.int64)
    pos[live_idx] = np.arange(live_idx.size)
    keep = pos[o_trades_of_slice] >= 0
    rows_o = pos[o_trades_of_slice[keep]]
    w_raw = open_w[keep]
    tot = np.bincount(rows_o, weights=w_raw, minlength=live_idx.size)
    weights = sparse.csr_matrix(
        (w_raw / tot[rows_o], (rows_o, inv[o_sl][keep])), shape=(live_idx.size, m)
    )
    weights.sum_duplicates()
    f0 = np.asarray(weights @ base).ravel()
    k0, t0 = strike_a[live_idx].copy(), np.maximum(t_a[live_idx], 0.0)
    v0, c0 = vol_a[live_idx].copy(), call_a[live_idx].copy()
    val0 = _black(f0, k0, t0, v0, c0)
    return RiskBook(
        factor_curve=factor_curve.astype(np.int64),
        factor_month=factor_month,
        base=base,
        group=grp,
        n_groups=int(n_groups),
        linear=linear,
        opt_trade=live_idx.astype(np.int64),
        opt_group=grp[live_idx],
        opt_qty=trade_sign[live_idx] * np.asarray(v.open_qty, dtype=float)[live_idx],
        opt_weights=weights,
        opt_strike=k0,
        opt_t=t0,
        opt_vol=v0,
        opt_call=c0,
        opt_forward0=f0,
        opt_value0=val0,
        labels=tuple(labels),
    )


# --------------------------------------------------------------------------- Black-76 (safe)


def _black(F: FloatArray, K: FloatArray, T: FloatArray, vol: FloatArray, call: Any) -> FloatArray:
    """Undiscounted Black-76 that accepts ``F <= 0`` (intrinsic there) and ``T <= 0``."""
    F, K, T, vol = np.broadcast_arrays(F, K, T, vol)
    call = np.broadcast_to(call, F.shape)
    intrinsic = np.where(call, np.maximum(F - K, 0.0), np.maximum(K - F, 0.0))
    s = vol * np.sqrt(np.maximum(T, 0.0))
    ok = (F > 0) & (K > 0) & (s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sF = np.where(ok, F, 1.0)
        sK = np.where(ok, K, 1.0)
        ss = np.where(ok, s, 1.0)
        d1 = np.log(sF / sK) / ss + 0.5 * ss
        d2 = d1 - ss
        c = sF * ndtr(d1) - sK * ndtr(d2)
        val = np.where(call, c, c - sF + sK)  # put-call parity, undiscounted
    return np.where(ok, val, intrinsic)


def _black_delta(
    F: FloatArray, K: FloatArray, T: FloatArray, vol: FloatArray, call: Any
) -> FloatArray:
    s = vol * np.sqrt(np.maximum(T, 0.0))
    ok = (F > 0) & (K > 0) & (s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(np.where(ok, F / np.where(ok, K, 1.0), 1.0)) / np.where(ok, s, 1.0) + 0.5 * s
        n1 = ndtr(d1)
    itm = np.where(call, (F > K).astype(float), -(F < K).astype(float))
    return np.where(ok, np.where(call, n1, n1 - 1.0), itm)


def _black_gamma(F: FloatArray, K: FloatArray, T: FloatArray, vol: FloatArray) -> FloatArray:
    s = vol * np.sqrt(np.maximum(T, 0.0))
    ok = (F > 0) & (K > 0) & (s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sF = np.where(ok, F, 1.0)
        ss = np.where(ok, s, 1.0)
        d1 = np.log(sF / np.where(ok, K, 1.0)) / ss + 0.5 * ss
        g = np.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi) / (sF * ss)
    return np.where(ok, g, 0.0)


def option_values(
    book: RiskBook,
    shifts: FloatArray,
    vol_shift: float | FloatArray = 0.0,
    horizon_days: float = 0.0,
) -> tuple[FloatArray, int]:
    """Per-unit option values in each scenario, shape ``(k, o)``, and the count of cells whose
    scenario forward was ``<= 0`` (valued at intrinsic)."""
    x = np.asarray(shifts, dtype=float)
    f = book.opt_forward0 + np.asarray(book.opt_weights @ x.T).T
    t = np.maximum(book.opt_t - float(horizon_days) / 365.0, 0.0)
    dv = np.asarray(vol_shift, dtype=float)
    if dv.ndim == 1:
        dv = dv[:, None]
    vol = np.maximum(book.opt_vol + dv, 0.0)
    return _black(f, book.opt_strike, t, vol, book.opt_call), int(np.count_nonzero(f <= 0))


# --------------------------------------------------------------------------- revaluation


def _check_shifts(book: RiskBook, shifts: ArrayLike) -> FloatArray:
    x = np.asarray(shifts, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != book.n_factors:
        raise ValueError(f"shifts must have shape (scenarios, {book.n_factors}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("shifts must be finite")
    return x


_OptionPnl = Callable[[int, int], tuple[FloatArray, int]]


def _numpy_option_pnl(
    book: RiskBook, x: FloatArray, dv: FloatArray, horizon_days: float
) -> _OptionPnl:
    """``(a, b) -> ((b - a, n_groups) option P&L of rows a:b, cells with F <= 0)``, numpy."""
    o = book.n_options
    g_of = sparse.csr_matrix((np.ones(o), (np.arange(o), book.opt_group)), shape=(o, book.n_groups))

    def run(a: int, b: int) -> tuple[FloatArray, int]:
        vals, bad = option_values(book, x[a:b], dv[a:b], horizon_days)
        pnl = (vals - book.opt_value0) * book.opt_qty  # (rows, o)
        return np.asarray((g_of.T @ pnl.T).T), bad

    return run


def _kernel_option_pnl(
    book: RiskBook, x: FloatArray, dv: FloatArray, horizon_days: float
) -> _OptionPnl:
    """As :func:`_numpy_option_pnl`, by the fused numba kernel (arrays prepared once)."""
    from app.engine import _kernels  # lazy: numba only for large calls

    w = book.opt_weights
    c = np.ascontiguousarray
    t = np.maximum(book.opt_t - float(horizon_days) / 365.0, 0.0)
    opt = (
        c(book.opt_forward0, dtype=np.float64),
        c(w.indptr, dtype=np.int64),
        c(w.indices, dtype=np.int64),
        c(w.data, dtype=np.float64),
        c(book.opt_strike, dtype=np.float64),
        np.sqrt(t),  # the numpy path's vol * sqrt(max(T, 0)), factor for factor
        c(book.opt_vol, dtype=np.float64),
        c(book.opt_call, dtype=np.bool_),
        c(book.opt_qty, dtype=np.float64),
        c(book.opt_value0, dtype=np.float64),
        c(book.opt_group, dtype=np.int64),
    )

    def run(a: int, b: int) -> tuple[FloatArray, int]:
        return _kernels.reval_options(x[a:b], dv[a:b], opt, book.n_groups)

    return run


def revalue(
    book: RiskBook,
    shifts: ArrayLike,
    vol_shift: float | ArrayLike = 0.0,
    horizon_days: float = 0.0,
    *,
    by_group: bool = False,
    max_cells: int = MAX_CELLS,
    workers: int | None = None,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
    stats: RevalStats | None = None,
) -> FloatArray:
    """Full-revaluation P&L of ``book`` in each scenario.

    Parameters
    ----------
    shifts : array_like, shape (k, m) or (m,)
        Additive factor price changes per scenario.
    vol_shift : float or array_like of shape (k,)
        Absolute vol change (0.05 = +5 vol points) per scenario, for every option.
    horizon_days : float
        Calendar days that pass (options lose that much time to expiry: theta).
    by_group : bool
        Return the ``(k, n_groups)`` P&L matrix instead of the ``(k,)`` totals.
    max_cells : int
        Bound on scenario rows x options per chunk (memory).
    workers : int, optional
        Threads for the chunks (default: ``os.cpu_count()``, at most 8).
    progress, cancelled : callable, optional
        ``progress(fraction)`` after each chunk; ``cancelled()`` polled before each chunk
        (raises :class:`concurrent.futures.CancelledError`).
    stats : RevalStats, optional
        Filled with the scenario count and the option cells valued at intrinsic.
    """
    x = _check_shifts(book, shifts)
    k = x.shape[0]
    dv_all = np.broadcast_to(np.asarray(vol_shift, dtype=float), (k,))
    if not np.all(np.isfinite(dv_all)):
        raise ValueError("vol_shift must be finite")
    if not math.isfinite(horizon_days) or horizon_days < 0:
        raise ValueError("horizon_days must be finite and >= 0")
    lin = x @ book.linear  # (k, g): exact for the linear part
    if not book.n_options:
        if stats is not None:
            stats.scenarios += k
        if progress is not None:
            progress(1.0)
        return lin if by_group else lin.sum(axis=1)
    o = book.n_options
    rows = max(1, min(k, int(max_cells) // max(o, 1)))
    starts = list(range(0, k, rows))
    nonpos = 0
    done = 0
    option_pnl = (
        _kernel_option_pnl(book, x, dv_all, horizon_days)
        if k * o >= max(_KERNEL_MIN_CELLS, 1)
        else _numpy_option_pnl(book, x, dv_all, horizon_days)
    )

    def chunk(a: int) -> tuple[int, FloatArray, int]:
        if cancelled is not None and cancelled():
            raise CancelledError
        b = min(a + rows, k)
        pnl, bad = option_pnl(a, b)
        return a, pnl, bad

    out = np.empty((k, book.n_groups))
    n_workers = workers or min(os.cpu_count() or 1, 8)
    if n_workers <= 1 or len(starts) == 1:
        results = map(chunk, starts)
        for a, p, bad in results:
            out[a : a + p.shape[0]] = p
            nonpos += bad
            done += p.shape[0]
            if progress is not None:
                progress(done / k)
    else:
        with ThreadPoolExecutor(n_workers, thread_name_prefix="reval") as pool:
            futures = [pool.submit(chunk, a) for a in starts]
            try:
                for f in futures:
                    a, p, bad = f.result()
                    out[a : a + p.shape[0]] = p
                    nonpos += bad
                    done += p.shape[0]
                    if progress is not None:
                        progress(done / k)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    if stats is not None:
        stats.scenarios += k
        stats.nonpositive += nonpos
    out += lin
    return out if by_group else out.sum(axis=1)


def delta_gamma_pnl(
    book: RiskBook,
    shifts: ArrayLike,
    vol_shift: float | ArrayLike = 0.0,
    horizon_days: float = 0.0,
    *,
    by_group: bool = False,
) -> FloatArray:
    """Second-order (delta-gamma-vega-theta) P&L of ``book`` in each scenario.

    ``sum_j linear_j x_j + sum_o q_o (delta_o dF_o + gamma_o dF_o^2 / 2 + vega_o dvol +
    theta_o dt)`` with Black-76 greeks at the base point (``dF_o = w_o . x``); theta is the
    exact time decay of the base value over the horizon, so a pure-time scenario matches full
    revaluation.
    """
    x = _check_shifts(book, shifts)
    k = x.shape[0]
    dv = np.broadcast_to(np.asarray(vol_shift, dtype=float), (k,))
    lin = x @ book.linear
    if not book.n_options:
        return lin if by_group else lin.sum(axis=1)
    f0, kk, t0, v0, c0 = (book.opt_forward0, book.opt_strike, book.opt_t, book.opt_vol,
                          book.opt_call)  # fmt: skip
    d = _black_delta(f0, kk, t0, v0, c0)
    g = _black_gamma(f0, kk, t0, v0)
    s = v0 * np.sqrt(t0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(f0 / kk) / s + 0.5 * s
    vega = np.where(s > 0, f0 * np.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) * np.sqrt(t0), 0.0)
    t1 = np.maximum(t0 - float(horizon_days) / 365.0, 0.0)
    decay = _black(f0, kk, t1, v0, c0) - book.opt_value0
    df = np.asarray(book.opt_weights @ x.T).T  # (k, o)
    per = (d * df + 0.5 * g * df * df + vega * dv[:, None] + decay) * book.opt_qty
    g_of = sparse.csr_matrix(
        (np.ones(book.n_options), (np.arange(book.n_options), book.opt_group)),
        shape=(book.n_options, book.n_groups),
    )
    out = np.asarray((g_of.T @ per.T).T) + lin
    return out if by_group else out.sum(axis=1)
