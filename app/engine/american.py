r"""American (and Bermudan) options on futures: Leisen-Reimer tree and Barone-Adesi-Whaley.

The underlying is a futures (or forward) price ``F`` that is a martingale under the
risk-neutral measure (cost of carry ``b = 0``, Black-76 dynamics
:math:`dF = \sigma F\,dW`); the option premium is discounted at the continuously
compounded rate ``r``.  For ``r <= 0`` early exercise of an option on a futures price is
never optimal and the American value equals the European (Black-76) value; for ``r > 0``
both calls and puts carry an early-exercise premium.

All functions broadcast their numeric arguments (and ``call``) with
:func:`numpy.broadcast_arrays`; with all-scalar input the result is a ``float``.

References
----------
.. [1] D. Leisen, M. Reimer, "Binomial models for option valuation - examining and
   improving convergence", Applied Mathematical Finance 3 (1996) 319-346.
.. [2] G. Barone-Adesi, R. E. Whaley, "Efficient analytic approximation of American
   option values", Journal of Finance 42 (1987) 301-320.
.. [3] E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed.,
   McGraw-Hill (2007), sections 3.3 and 7.1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from app.engine._inputs import as_float, broadcast, check, out
from app.engine.options import black76

__all__ = ["american_black76", "barone_adesi_whaley_black76"]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

#: Trees with at least this many node updates in total (options x steps**2 / 2) run in the
#: fused multi-core numba kernel of :mod:`app.engine._kernels` (imported, and compiled or
#: loaded from the disk cache, on first use); smaller ones take the numpy path, so a GUI's
#: one-option call (401 steps: ~80 000 nodes, ~7 ms in numpy) never imports numba nor waits for
#: a JIT compile.  The warm kernel wins even for one option (0.3 ms); 5 million node updates is
#: ~60 options at 401 steps, where numpy takes ~80 ms and the kernel ~2 ms.
_KERNEL_MIN_NODES = 5_000_000


# --------------------------------------------------------------------------- helpers


def _peizer_pratt(z: FloatArray, n: int) -> FloatArray:
    """Peizer-Pratt method-2 inversion ``h(z; n)`` of the normal cdf (``n`` odd)."""
    with np.errstate(over="ignore", under="ignore"):
        a = z / (n + 1.0 / 3.0 + 0.1 / (n + 1.0))
        return np.asarray(0.5 + np.sign(z) * 0.5 * np.sqrt(-np.expm1(-a * a * (n + 1.0 / 6.0))))


def _tree_numpy(
    F_: FloatArray,
    K_: FloatArray,
    w: FloatArray,
    p: FloatArray,
    u: FloatArray,
    d: FloatArray,
    disc: FloatArray,
    dt: FloatArray,
    n: int,
    ex_times: FloatArray | None,
) -> FloatArray:
    """Backward induction vectorised over the options (one array per time level)."""
    j = np.arange(n + 1, dtype=np.float64)
    Fe, Ke, we = F_[..., None], K_[..., None], w[..., None]
    log_u, log_d = np.log(u)[..., None], np.log(d)[..., None]
    level = Fe * np.exp(j * log_u + (n - j) * log_d)
    values = np.maximum(we * (level - Ke), 0.0)
    pe, disce = p[..., None], disc[..., None]
    for i in range(n - 1, -1, -1):
        values = disce * (pe * values[..., 1 : i + 2] + (1.0 - pe) * values[..., : i + 1])
        jj = j[: i + 1]
        exercise = np.maximum(we * (Fe * np.exp(jj * log_u + (i - jj) * log_d) - Ke), 0.0)
        if ex_times is None:
            values = np.maximum(values, exercise)
        else:
            t_i = i * dt
            allowed = np.asarray(
                (np.abs(t_i[..., None] - ex_times) <= 0.5 * dt[..., None]).any(axis=-1)
            )
            values = np.where(allowed[..., None], np.maximum(values, exercise), values)
    return np.asarray(values[..., 0])


def _tree_kernel(
    F_: FloatArray,
    K_: FloatArray,
    w: FloatArray,
    p: FloatArray,
    u: FloatArray,
    d: FloatArray,
    disc: FloatArray,
    dt: FloatArray,
    degenerate: NDArray[np.bool_],
    n: int,
    ex_times: FloatArray | None,
) -> FloatArray | None:
    """The same induction in the numba kernel, one option per task; ``None``: use numpy.

    The kernel forms node prices as ``F * exp(j ln u) * exp(k ln d)`` from two tables per
    option; if a table entry could overflow or underflow (an absurd ``sigma * sqrt(T)``) the
    numpy path is used instead.
    """
    log_u, log_d = np.log(u), np.log(d)
    with np.errstate(invalid="ignore"):
        reach = n * np.maximum(np.abs(log_u), np.abs(log_d)) + np.abs(np.log(F_))
    if not np.all(degenerate | (reach < 600.0)):
        return None
    from app.engine import _kernels

    shape = F_.shape
    rv = np.ravel
    res = _kernels.lr_tree(
        rv(F_), rv(K_), rv(w), rv(p), rv(log_u), rv(log_d), rv(disc), rv(dt), rv(degenerate),
        n, ex_times,
    )  # fmt: skip
    return res.reshape(shape)


# --------------------------------------------------------------------------- tree


def _odd_steps(steps: int) -> int:
    """The odd step count a Leisen-Reimer tree uses for ``steps`` (validated)."""
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    return int(steps) + (1 - int(steps) % 2)


def american_black76(
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
    steps: int = 401,
    exercise_times: ArrayLike | None = None,
    richardson: bool = False,
) -> FloatOrArray:
    r"""American (or Bermudan) option on a futures price with a Leisen-Reimer binomial tree.

    Parameters
    ----------
    F : array_like
        Futures price, ``F > 0``.
    K : array_like
        Strike, ``K > 0``.
    T : array_like
        Time to expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma : array_like
        Lognormal (Black) volatility, ``sigma >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.
    steps : int, optional
        Number of tree steps (default 401).  Leisen-Reimer needs an odd number: an even
        value is increased by one.  The tree is vectorised over the options (one array
        per time level), so the cost is ``O(steps**2 * n_options)``.
    exercise_times : array_like, optional
        If given, a Bermudan option: early exercise is allowed only at these times
        (years from today, shared by all options); each is mapped to the nearest tree
        level of each option.  Exercise at expiry is always allowed.  ``None`` (default)
        is an American option (exercise at every level, including today).
    richardson : bool, optional
        Price with ``n`` and ``2n + 1`` steps and extrapolate,
        :math:`V = (n_2 V_{n_2} - n_1 V_{n_1}) / (n_2 - n_1)`: the early-exercise error of
        the tree is about proportional to ``1/n``, so this removes its leading term. Against
        QuantLib's high-precision QdFp engine on 40 random options, 401/803 steps gave a max
        error of 1.3e-4 instead of 2.5e-3 for 803 steps alone, for about 5x the cost of 401.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf input, ``F <= 0``, ``K <= 0``, ``T < 0``, ``sigma < 0``, ``steps < 1``,
        negative ``exercise_times``, non-boolean ``call`` or non-broadcasting arguments.

    Notes
    -----
    With ``n`` (odd) steps, :math:`\Delta t = T/n`,
    :math:`d_{1,2} = [\ln(F/K) \pm \sigma^2 T/2] / (\sigma\sqrt T)` and the Peizer-Pratt
    (method 2) inversion

    .. math::

        h(z) = \tfrac12 + \tfrac12\,\mathrm{sign}(z)
        \sqrt{1 - \exp\!\Big[-\Big(\frac{z}{n + 1/3 + 0.1/(n+1)}\Big)^2 (n + 1/6)\Big]},

    the Leisen-Reimer tree for a futures price (zero drift) uses
    :math:`p = h(d_2)`, :math:`p' = h(d_1)`, :math:`u = p'/p`, :math:`d = (1 - p u)/(1-p)`
    (so :math:`p u + (1-p) d = 1`), node values :math:`F u^j d^{i-j}` and backward
    induction :math:`V_i = \max\{e^{-r\Delta t}[p V_{i+1}^{up} + (1-p) V_{i+1}^{down}],
    \text{intrinsic}\}`.  The tree is centred on the strike, so convergence is smooth and
    second order.  For ``sigma * sqrt(T) == 0`` the value is
    :math:`\max(\text{intrinsic}, e^{-rT}\,\text{intrinsic})`.

    References
    ----------
    .. [1] D. Leisen, M. Reimer, Applied Mathematical Finance 3 (1996) 319-346.

    Examples
    --------
    >>> v = american_black76(100.0, 100.0, 1.0, 0.05, 0.2, True, steps=201)
    >>> round(v, 3)
    7.663
    """
    if richardson:
        n1 = _odd_steps(steps)
        n2 = 2 * n1 + 1
        v1 = np.asarray(american_black76(F, K, T, r, sigma, call, n1, exercise_times))
        v2 = np.asarray(american_black76(F, K, T, r, sigma, call, n2, exercise_times))
        v = (n2 * v2 - n1 * v1) / (n2 - n1)
        # never below what exercising now pays (the extrapolation could undershoot it)
        Fa, Ka = np.asarray(F, dtype=float), np.asarray(K, dtype=float)
        v = np.maximum(v, np.maximum(np.where(np.asarray(call), Fa - Ka, Ka - Fa), 0.0))
        return float(v) if v.ndim == 0 else v
    (F_, K_, T_, r_, sig), is_call, scalar = broadcast(
        {"F": F, "K": K, "T": T, "r": r, "sigma": sigma}, call
    )
    check("F", F_ > 0, "> 0")
    check("K", K_ > 0, "> 0")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    n = _odd_steps(steps)
    ex_times: FloatArray | None = None
    if exercise_times is not None:
        ex_times = as_float("exercise_times", exercise_times).ravel()
        check("exercise_times", ex_times >= 0, ">= 0")

    w = np.where(is_call, 1.0, -1.0)
    intrinsic = np.maximum(w * (F_ - K_), 0.0)
    s = sig * np.sqrt(T_)
    # No volatility, or so far from the money (|d| > ~30) that the Peizer-Pratt probabilities
    # underflow: the deterministic limit is exact to far below float precision there.
    with np.errstate(divide="ignore"):
        degenerate = (s <= 0) | (np.abs(np.log(F_ / K_)) > 30.0 * s)
    # Degenerate options (no volatility or expired) get a harmless dummy tree.
    s_safe = np.where(degenerate, 1.0, s)
    T_safe = np.where(degenerate, 1.0, T_)
    d1 = np.log(F_ / K_) / s_safe + 0.5 * s_safe
    d2 = d1 - s_safe
    p = _peizer_pratt(d2, n)
    p_star = _peizer_pratt(d1, n)
    u = p_star / p
    d = (1.0 - p * u) / (1.0 - p)
    dt = T_safe / n
    disc = np.exp(-r_ * dt)

    tree: FloatArray | None = None
    if F_.size * (n + 1) * (n + 2) // 2 >= max(_KERNEL_MIN_NODES, 1):
        tree = _tree_kernel(F_, K_, w, p, u, d, disc, dt, degenerate, n, ex_times)
    if tree is None:
        tree = _tree_numpy(F_, K_, w, p, u, d, disc, dt, n, ex_times)

    # Deterministic limit: the intrinsic value is constant, so take the best discount
    # factor over the allowed exercise dates (expiry always; every t in [0, T] if American).
    best_df = np.exp(-r_ * T_)
    if ex_times is None:
        best_df = np.maximum(best_df, 1.0)
    elif ex_times.size:
        ok = ex_times <= T_[..., None]
        dfs = np.where(ok, np.exp(-r_[..., None] * ex_times), 0.0)
        best_df = np.maximum(best_df, dfs.max(axis=-1))
    limit = best_df * intrinsic
    return out(np.where(degenerate, limit, tree), scalar)


# --------------------------------------------------------------------------- BAW


def _npdf(x: FloatArray) -> FloatArray:
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(_INV_SQRT_2PI * np.exp(-0.5 * x * x))


def _baw_critical(
    K: FloatArray, T: FloatArray, r: FloatArray, sig: FloatArray, w: FloatArray, q: FloatArray
) -> FloatArray:
    """Critical futures price ``F*`` (call, ``w=+1``) or ``F**`` (put, ``w=-1``) by Newton.

    Solves ``w (F* - K) = black76(F*) + w (1 - e^{-rT} N(w d1(F*))) F*/q`` starting from
    Haug's seed (ref. [3], section 3.3.1, with ``b = 0``).
    """
    sqrtT = np.sqrt(T)
    s = sig * sqrtT
    df = np.exp(-r * T)
    M = 2.0 * r / (sig * sig)
    q_inf = 0.5 * (1.0 + w * np.sqrt(1.0 + 4.0 * M))
    f_inf = K / (1.0 - 1.0 / q_inf)
    h = -2.0 * s * K / (w * (f_inf - K))
    Fi = np.where(w > 0, K + (f_inf - K) * (1.0 - np.exp(h)), f_inf + (K - f_inf) * np.exp(h))
    for _ in range(100):
        d1 = np.log(Fi / K) / s + 0.5 * s
        Nd = ndtr(w * d1)
        euro = df * w * (Fi * Nd - K * ndtr(w * (d1 - s)))
        rhs = euro + w * (1.0 - df * Nd) * Fi / q
        slope = w * df * Nd * (1.0 - 1.0 / q) + w * (1.0 - w * df * _npdf(d1) / s) / q
        # g(F) = w (F - K) - rhs(F);  Newton step F <- F - g / (w - slope)
        g = w * (Fi - K) - rhs
        step = g / (w - slope)
        F_new = Fi - step
        F_new = np.where(F_new > 0, F_new, 0.5 * Fi)
        done = np.abs(F_new - Fi) <= 1e-12 * K
        Fi = F_new
        if np.all(done):
            break
    return np.asarray(Fi)


def barone_adesi_whaley_black76(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, sigma: ArrayLike, call: ArrayLike
) -> FloatOrArray:
    r"""Barone-Adesi-Whaley quadratic approximation of an American option on a futures price.

    Parameters
    ----------
    F : array_like
        Futures price, ``F > 0``.
    K : array_like
        Strike, ``K > 0``.
    T : array_like
        Time to expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma : array_like
        Lognormal (Black) volatility, ``sigma >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.

    Returns
    -------
    float or ndarray
        Approximate American value (never below the European value nor intrinsic).

    Raises
    ------
    ValueError
        As :func:`american_black76`.

    Notes
    -----
    With cost of carry ``b = 0``: :math:`M = 2r/\sigma^2`, :math:`k = 1 - e^{-rT}`,
    :math:`q_{2,1} = \tfrac12[1 \pm \sqrt{1 + 4M/k}]`.  For a call

    .. math::

        C = \begin{cases} c(F) + A_2 (F/F^*)^{q_2}, & F < F^* \\ F - K, & F \ge F^*
        \end{cases},\qquad A_2 = \frac{F^*}{q_2}\big[1 - e^{-rT} N(d_1(F^*))\big],

    where the critical price :math:`F^*` solves
    :math:`F^* - K = c(F^*) + [1 - e^{-rT}N(d_1(F^*))] F^*/q_2` (Newton iteration), and for
    a put :math:`P = p(F) + A_1 (F/F^{**})^{q_1}` for :math:`F > F^{**}`, else
    :math:`K - F`, with :math:`A_1 = -\frac{F^{**}}{q_1}[1 - e^{-rT}N(-d_1(F^{**}))]`.
    ``c``/``p`` are Black-76 prices.  For ``r <= 0`` (no early exercise) or
    ``sigma * sqrt(T) == 0`` the result is the European value (floored at intrinsic).
    Typical error against a fine tree is a few basis points of the price, larger for long
    maturities and deep in-the-money options.

    References
    ----------
    .. [1] G. Barone-Adesi, R. E. Whaley, J. Finance 42 (1987) 301-320.
    .. [2] E. G. Haug, "The Complete Guide to Option Pricing Formulas" (2007), 3.3.

    Examples
    --------
    >>> round(barone_adesi_whaley_black76(100.0, 100.0, 1.0, 0.05, 0.2, True), 3)
    7.692
    """
    (F_, K_, T_, r_, sig), is_call, scalar = broadcast(
        {"F": F, "K": K, "T": T, "r": r, "sigma": sigma}, call
    )
    check("F", F_ > 0, "> 0")
    check("K", K_ > 0, "> 0")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    w = np.where(is_call, 1.0, -1.0)
    euro = np.asarray(black76(F_, K_, T_, r_, sig, is_call), dtype=np.float64)
    intrinsic = np.maximum(w * (F_ - K_), 0.0)
    plain = np.maximum(euro, intrinsic)

    active = (r_ > 0) & (sig * np.sqrt(T_) > 0)
    if not active.any():
        return out(plain, scalar)
    # Evaluate the premium on safe dummy parameters where it does not apply.
    Ts = np.where(active, T_, 1.0)
    rs = np.where(active, r_, 0.05)
    ss = np.where(active, sig, 0.2)
    k = -np.expm1(-rs * Ts)
    M = 2.0 * rs / (ss * ss)
    q = 0.5 * (1.0 + w * np.sqrt(1.0 + 4.0 * M / k))
    f_crit = _baw_critical(K_, Ts, rs, ss, w, q)
    s = ss * np.sqrt(Ts)
    d1 = np.log(f_crit / K_) / s + 0.5 * s
    A = w * (f_crit / q) * (1.0 - np.exp(-rs * Ts) * ndtr(w * d1))
    euro_s = np.asarray(black76(F_, K_, Ts, rs, ss, is_call), dtype=np.float64)
    with np.errstate(over="ignore"):
        premium_val = euro_s + A * (F_ / f_crit) ** q
    exercised = w * (F_ - f_crit) >= 0
    american = np.where(exercised, intrinsic, premium_val)
    return out(np.where(active, np.maximum(american, plain), plain), scalar)
