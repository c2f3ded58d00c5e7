"""Value-at-Risk and Expected Shortfall: historical, delta-normal, delta-gamma and Monte Carlo.

Conventions
-----------
* **Sign.** Inputs are P&L (gains positive); VaR and ES are reported as *losses*, positive
  numbers: ``L = -pnl``.  A VaR of 1 000 means "a loss of 1 000 or more with probability
  ``1 - alpha``".
* **Confidence.** ``alpha`` is the confidence level in ``(0, 1)``, e.g. ``0.99``.
* **Empirical quantile.** With ``n`` scenarios, ``k = ceil(n (1 - alpha))`` (``n (1 - alpha)``
  is first rounded to 9 significant digits so that binary noise such as
  ``100 * (1 - 0.99) = 1.0000000000000009`` does not add a scenario).  VaR is the
  ``k``-th largest loss and ES is the mean of the ``k`` largest losses.  This VaR is the
  *upper* empirical ``alpha``-quantile of the loss, ``L_(floor(n alpha) + 1)`` in ascending
  order; when ``n (1 - alpha)`` is an integer ES equals the Acerbi-Tasche estimator [1]_.
  It is chosen because VaR and ES then come from one and the same set of ``k`` tail
  scenarios, so ``ES >= VaR`` always holds and the Euler allocation of ES
  (:func:`component_es`) sums *exactly* to ES; the Acerbi-Tasche version weights the
  ``(floor + 1)``-th scenario fractionally and has no such single tail set.
* **Horizon.** The parametric functions take the covariance of one-day returns and scale by
  ``sqrt(horizon_days)`` (i.i.d. zero-mean returns).  Historical and Monte Carlo figures are
  for the horizon of the P&L scenarios given.
* Bad input (``alpha`` outside ``(0, 1)``, NaN or infinite values, mismatched shapes) raises
  :class:`ValueError` naming the argument.

References
----------
.. [1] C. Acerbi, D. Tasche, "On the coherence of expected shortfall", Journal of Banking &
   Finance 26 (2002) 1487-1503.
.. [2] J.P. Morgan/Reuters, "RiskMetrics - Technical Document", 4th ed. (1996), ch. 5
   (EWMA, lambda = 0.94 for daily data).
.. [3] P. Jorion, "Value at Risk", 3rd ed., McGraw-Hill (2007), ch. 7 (marginal, incremental
   and component VaR) and ch. 14 (delta-gamma, Cornish-Fisher).
.. [4] P. Zangari, "A VaR methodology for portfolios that include options", RiskMetrics
   Monitor, first quarter 1996, 4-12.
.. [5] A. M. Mathai, S. B. Provost, "Quadratic Forms in Random Variables", Marcel Dekker
   (1992), theorem 3.2b.2 (cumulants of a non-central quadratic form).
.. [6] H. A. David, H. N. Nagaraja, "Order Statistics", 3rd ed., Wiley (2003), section 7.1
   (distribution-free confidence intervals for quantiles).
.. [7] D. Tasche, "Risk contributions and performance measurement", working paper,
   TU Munich (1999) (Euler allocation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri

from app.engine._inputs import as_float, check

__all__ = [
    "MonteCarloResult",
    "check_alpha",
    "component_es",
    "component_var_parametric",
    "delta_gamma_cornish_fisher_var",
    "delta_gamma_cumulants",
    "ewma_cov",
    "incremental_var",
    "marginal_var_parametric",
    "monte_carlo_var_es",
    "parametric_var_es",
    "tail_count",
    "var_es",
]

FloatArray = NDArray[np.float64]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: Rows per block of the Monte Carlo Cholesky transform (the chunk is a multiple of it).
_MC_BLOCK = 256


# --------------------------------------------------------------------------- validation


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; ``ValueError`` unless it is a finite number in ``(0, 1)``."""
    a = as_float("alpha", alpha)
    check("alpha", a.ndim == 0, "a scalar")
    check("alpha", (a > 0.0) & (a < 1.0), "in (0, 1)")
    return float(a)


def tail_count(n: int, alpha: float) -> int:
    """Number of tail scenarios ``k = ceil(n (1 - alpha))``, between 1 and ``n``.

    ``n (1 - alpha)`` is rounded to 9 significant digits before the ceiling, so that
    ``tail_count(100, 0.99) == 1`` although ``100 * (1 - 0.99)`` is ``1.0000000000000009``.

    Examples
    --------
    >>> tail_count(250, 0.99), tail_count(100, 0.99), tail_count(1000, 0.975)
    (3, 1, 25)
    """
    x = float(f"{n * (1.0 - alpha):.9g}")
    return min(max(math.ceil(x), 1), n)


def _pnl_losses(name: str, pnl: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validated P&L (1-D or 2-D) and the portfolio losses per scenario, ``-pnl.sum(axis=1)``.

    The finiteness check runs on the row sums (one pass); only when a sum is not finite is
    the full array scanned, to name NaN or infinity precisely.
    """
    try:
        arr = np.asarray(pnl, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric") from exc
    check(name, arr.ndim in (1, 2), "1-D (scenarios) or 2-D (scenarios x positions)")
    check(name, arr.shape[0] >= 1, "non-empty (at least one scenario)")
    if arr.ndim == 2:
        check(name, arr.shape[1] >= 1, "non-empty (at least one position)")
        losses = -arr.sum(axis=1)
    else:
        losses = -arr
    if not np.isfinite(losses).all():
        as_float(name, arr)  # raises the precise NaN / infinity message
        raise ValueError(f"{name} overflows: the sum over positions is not finite")
    return arr, losses


def _tail(losses: FloatArray, k: int) -> tuple[float, NDArray[np.intp]]:
    """The ``k``-th largest loss and the indices of the ``k`` largest losses (sorted).

    ``np.partition`` finds the ``k``-th largest value in O(n); ties at that value are broken
    by the lowest scenario index, so the tail set is deterministic.
    """
    n = losses.size
    v = float(np.partition(losses, n - k)[n - k])
    above = np.flatnonzero(losses > v)
    at = np.flatnonzero(losses == v)[: k - above.size]
    return v, np.sort(np.concatenate([above, at]))


def _exposures_cov(
    exposures: ArrayLike, cov: ArrayLike, wname: str = "exposures"
) -> tuple[FloatArray, FloatArray]:
    """Validated 1-D exposures ``w`` (m,) and symmetric covariance (m, m)."""
    w = as_float(wname, exposures)
    if w.ndim == 0:
        w = w.reshape(1)
    check(wname, w.ndim == 1, "a scalar or a 1-D array")
    s = as_float("cov", cov)
    if s.ndim == 0:
        s = s.reshape(1, 1)
    check("cov", s.shape == (w.size, w.size), f"of shape ({w.size}, {w.size}) to match {wname}")
    scale = float(np.abs(s).max(initial=0.0))
    check("cov", np.allclose(s, s.T, rtol=1e-10, atol=1e-14 * scale), "symmetric")
    check("cov", np.diagonal(s) >= 0.0, "positive semi-definite (negative variance)")
    return w, s


def _portfolio_sd(w: FloatArray, s: FloatArray) -> tuple[float, FloatArray]:
    """``sigma_p = sqrt(w' S w)`` and ``S w``; ``ValueError`` if ``w' S w`` is clearly < 0."""
    sw = s @ w
    var = float(w @ sw)
    tol = 1e-12 * float(np.abs(w) @ np.abs(s) @ np.abs(w))
    check("cov", var >= -tol, "positive semi-definite (negative portfolio variance)")
    return math.sqrt(max(var, 0.0)), sw


def _horizon(horizon_days: float) -> float:
    h = as_float("horizon_days", horizon_days)
    check("horizon_days", (h.ndim == 0) & (h > 0.0), "a positive scalar")
    return math.sqrt(float(h))


# --------------------------------------------------------------------------- historical


def var_es(pnl: ArrayLike, alpha: float) -> tuple[float, float]:
    """Historical (empirical) VaR and ES of P&L scenarios.

    Parameters
    ----------
    pnl : array_like
        P&L per scenario, shape ``(n,)``, or per scenario and position, shape ``(n, m)``;
        a 2-D input is summed over positions first.
    alpha : float
        Confidence level in ``(0, 1)``.

    Returns
    -------
    var, es : float
        With losses ``L = -pnl`` and ``k = ceil(n (1 - alpha))`` (see :func:`tail_count`):
        ``var`` is the ``k``-th largest loss and ``es = (1/k) * sum of the k largest losses``.

    Notes
    -----
    ``var = L_(floor(n alpha) + 1)`` is the upper empirical quantile (the smallest loss ``x``
    with ``#{L > x} < n (1 - alpha)``).  Cost: one O(n m) sum and an O(n) partition.

    Examples
    --------
    >>> var_es([-5.0, 1.0, -3.0, 2.0], 0.5)
    (3.0, 4.0)
    """
    a = check_alpha(alpha)
    _, losses = _pnl_losses("pnl", pnl)
    k = tail_count(losses.size, a)
    v, idx = _tail(losses, k)
    return v, float(losses[idx].sum() / k)


def component_es(pnl_matrix: ArrayLike, alpha: float) -> FloatArray:
    """Euler (tail-scenario) contributions of each position to the historical ES.

    ``c_i = -(1/k) * sum_{s in T} pnl[s, i]`` where ``T`` is the set of the ``k`` scenarios
    with the largest portfolio losses (the same set :func:`var_es` averages; ties at the
    ``k``-th loss go to the lowest scenario index).  ``sum_i c_i`` equals the ES of
    :func:`var_es` up to floating-point rounding of the summation order.

    Parameters
    ----------
    pnl_matrix : array_like
        P&L, shape ``(n_scenarios, n_positions)``.
    alpha : float
        Confidence level in ``(0, 1)``.

    Returns
    -------
    ndarray, shape (n_positions,)
        ES contributions (losses positive).

    Notes
    -----
    ES is positively homogeneous in the position sizes, so by Euler's theorem
    ``ES = sum_i w_i dES/dw_i``; for the empirical ES with a fixed tail set the derivative is
    the tail mean of the position's loss [7]_.
    """
    a = check_alpha(alpha)
    arr, losses = _pnl_losses("pnl_matrix", pnl_matrix)
    check("pnl_matrix", arr.ndim == 2, "2-D (scenarios x positions)")
    k = tail_count(losses.size, a)
    _, idx = _tail(losses, k)
    return np.asarray(-arr[idx].sum(axis=0) / k, dtype=np.float64)


# --------------------------------------------------------------------------- parametric


def parametric_var_es(
    exposures: ArrayLike, cov: ArrayLike, alpha: float, horizon_days: float = 1.0
) -> tuple[float, float]:
    """Delta-normal (variance-covariance) VaR and ES in closed form.

    ``VaR = z_alpha sigma_p sqrt(h)`` and ``ES = sigma_p sqrt(h) phi(z_alpha) / (1 - alpha)``
    with ``sigma_p = sqrt(w' S w)``, ``z_alpha = Phi^{-1}(alpha)`` and zero mean.

    Parameters
    ----------
    exposures : array_like, shape (m,)
        Position sensitivities ``w`` in currency per unit return (P&L = ``w . r``).
    cov : array_like, shape (m, m)
        Covariance ``S`` of one-day returns (symmetric, positive semi-definite).
    alpha : float
        Confidence level in ``(0, 1)``.
    horizon_days : float, default 1
        Holding period ``h`` in days (square-root-of-time scaling).

    Returns
    -------
    var, es : float

    Examples
    --------
    >>> v, e = parametric_var_es([1.0], [[1.0]], 0.99)
    >>> round(v, 4), round(e, 4)
    (2.3263, 2.6652)
    """
    a = check_alpha(alpha)
    w, s = _exposures_cov(exposures, cov)
    sd = _portfolio_sd(w, s)[0] * _horizon(horizon_days)
    z = float(ndtri(a))
    return z * sd, sd * _INV_SQRT_2PI * math.exp(-0.5 * z * z) / (1.0 - a)


def marginal_var_parametric(
    exposures: ArrayLike, cov: ArrayLike, alpha: float, horizon_days: float = 1.0
) -> FloatArray:
    """Marginal delta-normal VaR ``dVaR/dw_i = z_alpha sqrt(h) (S w)_i / sigma_p``.

    Returns NaN everywhere when ``sigma_p == 0`` (the VaR is not differentiable there).
    """
    a = check_alpha(alpha)
    w, s = _exposures_cov(exposures, cov)
    sd, sw = _portfolio_sd(w, s)
    if sd == 0.0:
        return np.full(w.size, np.nan)
    return np.asarray(float(ndtri(a)) * _horizon(horizon_days) * sw / sd, dtype=np.float64)


def component_var_parametric(
    exposures: ArrayLike, cov: ArrayLike, alpha: float, horizon_days: float = 1.0
) -> FloatArray:
    """Euler component VaR ``C_i = w_i (S w)_i / sigma_p * z_alpha sqrt(h)``.

    ``sum_i C_i = z_alpha sigma_p sqrt(h)``, the VaR of :func:`parametric_var_es`, because
    ``sum_i w_i (S w)_i = sigma_p^2``.  Zero contributions when ``sigma_p == 0``.
    """
    a = check_alpha(alpha)
    w, s = _exposures_cov(exposures, cov)
    sd, sw = _portfolio_sd(w, s)
    if sd == 0.0:
        return np.zeros(w.size)
    return np.asarray(float(ndtri(a)) * _horizon(horizon_days) * w * sw / sd, dtype=np.float64)


def incremental_var(
    exposures: ArrayLike,
    cov: ArrayLike,
    alpha: float,
    positions: ArrayLike | None = None,
    horizon_days: float = 1.0,
) -> FloatArray:
    """Incremental delta-normal VaR: the VaR with minus the VaR without each position.

    ``IVaR_i = VaR(w) - VaR(w - w_i e_i)``, fully recomputed (not the marginal-VaR
    approximation ``w_i dVaR/dw_i``).  The variance without position ``i`` is evaluated as
    ``sum_{j != i} w_j ((S w)_j - w_i S_ji)``, i.e. the quadratic form of the reduced
    portfolio, in blocks of rows so memory stays O(256 m).

    Parameters
    ----------
    exposures, cov, alpha, horizon_days
        As for :func:`parametric_var_es`.
    positions : array_like of int, optional
        Indices of the positions to remove one at a time; all positions by default.

    Returns
    -------
    ndarray
        One incremental VaR per requested position.
    """
    a = check_alpha(alpha)
    w, s = _exposures_cov(exposures, cov)
    m = w.size
    if positions is None:
        idx = np.arange(m)
    else:
        idx = np.asarray(positions)
        check("positions", idx.ndim == 1 and idx.dtype.kind in "iu", "a 1-D array of integers")
        check("positions", (idx >= 0) & (idx < m), f"indices in [0, {m})")
    scale = float(ndtri(a)) * _horizon(horizon_days)
    sd, sw = _portfolio_sd(w, s)
    out = np.empty(idx.size)
    for start in range(0, idx.size, 256):
        block = idx[start : start + 256]
        rows = np.arange(block.size)
        reduced = np.broadcast_to(w, (block.size, m)).copy()
        reduced[rows, block] = 0.0
        sw_red = sw[None, :] - w[block, None] * s[block, :]  # S (w - w_i e_i), row per i
        var_red = np.einsum("ij,ij->i", reduced, sw_red)
        out[start : start + block.size] = sd - np.sqrt(np.maximum(var_red, 0.0))
    return scale * out


# --------------------------------------------------------------------------- EWMA


def ewma_cov(returns: ArrayLike, lam: float = 0.94) -> FloatArray | float:
    """RiskMetrics exponentially weighted covariance of zero-mean returns.

    ``S_T = sum_{t=1}^{T} omega_t r_t r_t'`` with
    ``omega_t = (1 - lam) lam^(T - t) / (1 - lam^T)``.

    Equivalently, the RiskMetrics recursion ``S_t = lam S_{t-1} + (1 - lam) r_t r_t'``
    started from ``S_0 = 0`` and divided at the end by ``1 - lam^T`` so the weights sum to one
    (no arbitrary seed matrix).  The mean is **not** removed: RiskMetrics assumes zero-mean
    daily returns [2]_.  The result is the forecast for day ``T + 1``.

    Parameters
    ----------
    returns : array_like
        Shape ``(T,)`` for one series or ``(T, m)`` (observations x series), oldest first.
    lam : float, default 0.94
        Decay factor in ``(0, 1)``.

    Returns
    -------
    float or ndarray
        The variance (1-D input) or the ``(m, m)`` covariance matrix.

    Examples
    --------
    >>> round(ewma_cov([1.0, -1.0, 1.0]), 12)
    1.0
    """
    r = as_float("returns", returns)
    check("returns", r.ndim in (1, 2) and r.shape[0] >= 1, "1-D or 2-D with >= 1 observation")
    lam_a = as_float("lam", lam)
    check("lam", (lam_a.ndim == 0) & (lam_a > 0.0) & (lam_a < 1.0), "a scalar in (0, 1)")
    lam_f = float(lam_a)
    n = r.shape[0]
    weights = (1.0 - lam_f) * lam_f ** np.arange(n - 1, -1, -1.0) / -math.expm1(n * math.log(lam_f))
    if r.ndim == 1:
        return float(weights @ (r * r))
    cov = (r * weights[:, None]).T @ r
    return np.asarray(0.5 * (cov + cov.T), dtype=np.float64)


# --------------------------------------------------------------------------- delta-gamma


def delta_gamma_cumulants(
    delta: ArrayLike, gamma: ArrayLike, cov: ArrayLike
) -> tuple[float, float, float, float]:
    """First four cumulants of the delta-gamma P&L ``d'x + 0.5 x' G x``, ``x ~ N(0, S)``.

    With ``M = G S`` (Mathai-Provost [5]_, see :func:`delta_gamma_cornish_fisher_var`):
    ``k1 = 0.5 tr(M)``, ``k2 = d'Sd + 0.5 tr(M^2)``, ``k3 = 3 d'SGSd + tr(M^3)``,
    ``k4 = 12 d'SGSGSd + 3 tr(M^4)``.

    Returns
    -------
    k1, k2, k3, k4 : float
        Mean, variance, third cumulant (third central moment) and fourth cumulant
        (fourth central moment minus ``3 k2^2``).
    """
    d, s = _exposures_cov(delta, cov, "delta")
    g = as_float("gamma", gamma)
    if g.ndim == 0:
        g = g.reshape(1, 1)
    check("gamma", g.shape == s.shape, f"of shape {s.shape} to match delta")
    gscale = float(np.abs(g).max(initial=0.0))
    check("gamma", np.allclose(g, g.T, rtol=1e-10, atol=1e-14 * gscale), "symmetric")
    gm = g @ s  # M = G S
    m2 = gm @ gm
    sd_ = s @ d
    gsd = g @ sd_  # G S d
    k1 = 0.5 * float(np.trace(gm))
    k2 = float(d @ sd_) + 0.5 * float(np.trace(m2))
    k3 = 3.0 * float(sd_ @ gsd) + float(np.trace(m2 @ gm))
    k4 = 12.0 * float(gsd @ s @ gsd) + 3.0 * float(np.trace(m2 @ m2))
    return k1, k2, k3, k4


def delta_gamma_cornish_fisher_var(
    delta: ArrayLike, gamma: ArrayLike, cov: ArrayLike, alpha: float
) -> float:
    """Delta-gamma VaR with the Cornish-Fisher expansion of the P&L quantile.

    The P&L over the horizon is ``dP = d'x + 0.5 x' G x`` with factor moves
    ``x ~ N(0, S)`` (``S`` is the covariance of the moves over the horizon).  Its first four
    cumulants in closed form [4]_ [5]_, with ``M = G S``:

    * mean ``k1 = 0.5 tr(M)``
    * variance ``k2 = d' S d + 0.5 tr(M^2)``
    * third cumulant ``k3 = 3 d' S G S d + tr(M^3)``
    * fourth cumulant ``k4 = 12 d' S G S G S d + 3 tr(M^4)``

    (Mathai-Provost: for ``Q = x'Ax + a'x``,
    ``k_r = 2^(r-1) (r-1)! [tr((AS)^r) + (r/4) a' S (AS)^(r-2) a]``, ``r >= 2``, with
    ``A = G/2``, ``a = d``).  With skewness ``s = k3 / k2^1.5``, excess kurtosis
    ``e = k4 / k2^2`` and ``z = Phi^{-1}(1 - alpha)`` the Cornish-Fisher lower quantile is

    ``w = z + (z^2 - 1) s / 6 + (z^3 - 3 z) e / 24 - (2 z^3 - 5 z) s^2 / 36``

    and ``VaR = -(k1 + sqrt(k2) w)``.  With ``G = 0`` this is exactly the delta-normal VaR.

    Parameters
    ----------
    delta : array_like, shape (m,)
        First derivatives of the portfolio value with respect to the factors.
    gamma : array_like, shape (m, m)
        Symmetric matrix of second derivatives.
    cov : array_like, shape (m, m)
        Covariance of the factor moves over the horizon.
    alpha : float
        Confidence level in ``(0, 1)``.

    Returns
    -------
    float
        VaR (loss positive).

    Notes
    -----
    The expansion is an approximation: accurate when the P&L is moderately skewed, it
    degrades (and can become non-monotone in ``alpha``) for strongly non-normal P&L, e.g.
    short gamma dominating delta far in the tail; Monte Carlo with full revaluation
    (:func:`monte_carlo_var_es`) is the reference then.
    """
    a = check_alpha(alpha)
    k1, k2, k3, k4 = delta_gamma_cumulants(delta, gamma, cov)
    if k2 <= 0.0:
        return -k1
    return float(_cf_loss(np.array(float(ndtri(1.0 - a))), k1, k2, k3, k4))


def _cf_loss(z: FloatArray, k1: float, k2: float, k3: float, k4: float) -> FloatArray:
    """Cornish-Fisher loss quantile at standard-normal lower quantiles ``z``."""
    skew = k3 / k2**1.5
    exk = k4 / k2**2
    wq = (
        z
        + (z * z - 1.0) * skew / 6.0
        + (z**3 - 3.0 * z) * exk / 24.0
        - (2.0 * z**3 - 5.0 * z) * skew * skew / 36.0
    )
    return np.asarray(-(k1 + math.sqrt(k2) * wq), dtype=float)


def delta_gamma_cornish_fisher_es(
    delta: ArrayLike, gamma: ArrayLike, cov: ArrayLike, alpha: float
) -> tuple[float, float]:
    """Delta-gamma VaR and ES with the Cornish-Fisher quantile (see the VaR function).

    ``ES = 1/(1 - alpha) int_alpha^1 VaR(u) du``, integrated in normal-quantile space
    (``u = Phi(z)``: ``ES = 1/(1 - alpha) int_{z_a}^{z_a + 10} VaR(Phi(z)) phi(z) dz``, a smooth
    integrand, Gauss-Legendre with 96 nodes; the tail beyond 10 standard deviations is below
    1e-22 of the mass). Where the expansion bends back (a non-monotone quantile, strongly
    skewed P&L) the quantile is monotonically rearranged first (Chernozhukov, Fernandez-Val and
    Galichon, "Rearranging Edgeworth-Cornish-Fisher expansions", Economic Theory 2010), so
    ``ES >= VaR`` always.  With ``G = 0`` this is the delta-normal closed form to ~1e-12.

    Returns
    -------
    (var, es) : tuple of float
    """
    a = check_alpha(alpha)
    k1, k2, k3, k4 = delta_gamma_cumulants(delta, gamma, cov)
    if k2 <= 0.0:
        return -k1, -k1
    za = float(ndtri(a))  # upper quantile of the standard normal
    x, w = np.polynomial.legendre.leggauss(96)
    z = za + 5.0 * (x + 1.0)  # (za, za + 10)
    var = float(_cf_loss(np.array(-za), k1, k2, k3, k4))
    loss = np.maximum.accumulate(np.concatenate([[var], _cf_loss(-z, k1, k2, k3, k4)]))[1:]
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    es = float(5.0 * np.sum(w * loss * pdf) / (1.0 - a))
    return var, es


# --------------------------------------------------------------------------- Monte Carlo


@dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo VaR/ES with a distribution-free confidence interval of the VaR.

    Attributes
    ----------
    var, es : float
        VaR and ES of the simulated P&L with the :func:`var_es` convention.
    var_ci : tuple of float
        ``(low, high)``: order statistics ``L_(r) <= L_(s)`` of the simulated losses with
        ``P(L_(r) <= q_alpha < L_(s)) >= ci_level`` for the true loss quantile ``q_alpha``
        of a continuous distribution (binomial argument, see :func:`monte_carlo_var_es`).
    ci_level : float
        Nominal coverage of ``var_ci``.
    n_scenarios : int
        Number of scenarios simulated.
    pnl : ndarray
        Simulated P&L, shape ``(n_scenarios,)``, in scenario order.
    by_group : ndarray or None
        ``(n_scenarios, groups)`` P&L per group when asked for (``by_group=True`` of
        :func:`~app.engine.risk.scaleout.monte_carlo_full_reval`); rows sum to ``pnl``.
    """

    var: float
    es: float
    var_ci: tuple[float, float]
    ci_level: float
    n_scenarios: int
    pnl: FloatArray
    by_group: FloatArray | None = None


def _quantile_ci_ranks(n: int, alpha: float, level: float) -> tuple[int, int]:
    """1-based ranks ``(r, s)`` of the order-statistic CI of the ``alpha``-quantile."""
    from scipy.stats import binom  # lazy: scipy.stats costs ~0.5 s to import

    r = int(binom.ppf(0.5 * (1.0 - level), n, alpha))
    s = int(binom.ppf(0.5 * (1.0 + level), n, alpha)) + 1
    return min(max(r, 1), n), min(max(s, 1), n)


def mc_settings(alpha: float, n_scenarios: int, ci_level: float) -> tuple[float, float]:
    """Checked ``(alpha, ci_level)`` of a Monte Carlo run (``n_scenarios`` must be >= 1)."""
    a = check_alpha(alpha)
    level = as_float("ci_level", ci_level)
    check("ci_level", (level.ndim == 0) & (level > 0.0) & (level < 1.0), "in (0, 1)")
    check("n_scenarios", isinstance(n_scenarios, int | np.integer) and n_scenarios >= 1,
          "a positive integer")  # fmt: skip
    return a, float(level)


def as_cov(cov: ArrayLike) -> FloatArray:
    """``cov`` as a float matrix (a scalar variance becomes 1 x 1)."""
    s = as_float("cov", cov)
    return s.reshape(1, 1) if s.ndim == 0 else s


def cov_cholesky(s: FloatArray) -> FloatArray:
    """Lower Cholesky factor of a symmetric positive definite covariance, or a readable error."""
    check("cov", np.allclose(s, s.T, rtol=1e-10, atol=0.0), "symmetric")
    try:
        return np.asarray(np.linalg.cholesky(s), dtype=np.float64)
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "cov must be positive definite (Cholesky failed): remove redundant or zero-variance "
            "factors, or regularise the matrix"
        ) from exc


def mc_result(
    pnl: FloatArray, alpha: float, ci_level: float, by_group: FloatArray | None = None
) -> MonteCarloResult:
    """VaR, ES and the order-statistics CI of simulated ``pnl`` (see :func:`monte_carlo_var_es`)."""
    n = int(pnl.size)
    losses = -pnl
    k = tail_count(n, alpha)
    v, idx = _tail(losses, k)
    r_rank, s_rank = _quantile_ci_ranks(n, alpha, ci_level)
    part = np.partition(losses, [r_rank - 1, s_rank - 1])
    return MonteCarloResult(
        var=v,
        es=float(losses[idx].sum() / k),
        var_ci=(float(part[r_rank - 1]), float(part[s_rank - 1])),
        ci_level=ci_level,
        n_scenarios=n,
        pnl=pnl,
        by_group=by_group,
    )


def monte_carlo_var_es(
    revalue: Callable[[FloatArray], ArrayLike],
    cov: ArrayLike,
    alpha: float,
    n_scenarios: int,
    seed: int,
    chunk: int = 16_384,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
    ci_level: float = 0.95,
) -> MonteCarloResult:
    """Monte Carlo VaR and ES by full revaluation on correlated normal factor shocks.

    Shocks ``x = L z`` with ``S = L L'`` (Cholesky) and ``z`` i.i.d. standard normal from
    ``numpy.random.default_rng(seed)``; ``revalue(x)`` maps a ``(k, m)`` block of shocks to
    ``k`` P&L values.  The normals are drawn row by row from one stream and transformed in
    fixed blocks of 256 rows (``chunk`` is rounded up to a multiple of 256), so the shocks are
    bitwise identical for any ``chunk``; the result is too as long as ``revalue`` treats rows
    independently.  Memory: O(chunk x m) plus the ``n_scenarios`` P&L values.

    Parameters
    ----------
    revalue : callable
        ``revalue(shocks) -> pnl``, shocks of shape ``(k, m)``, P&L of shape ``(k,)``.
    cov : array_like, shape (m, m)
        Covariance of the factor shocks over the horizon; must be positive definite (drop
        redundant factors of a singular matrix first).
    alpha : float
        Confidence level in ``(0, 1)``.
    n_scenarios : int
        Number of scenarios, at least 1.
    seed : int
        Seed of the generator.
    chunk : int, default 16384
        Scenarios per ``revalue`` call.
    progress : callable, optional
        Called with the fraction done (0 to 1] after every chunk.
    cancelled : callable, optional
        Polled before every chunk; when it returns True, :class:`CancelledError` is raised.
    ci_level : float, default 0.95
        Coverage of the VaR confidence interval.

    Returns
    -------
    MonteCarloResult

    Notes
    -----
    VaR confidence interval [6]_: with ``B ~ Binomial(n, alpha)`` the number of losses at or
    below the true quantile ``q``, ``L_(j) <= q`` iff ``B >= j``, so
    ``P(L_(r) <= q < L_(s)) = F_B(s - 1) - F_B(r - 1)``.  Taking
    ``r = F_B^{-1}((1 - c)/2)`` and ``s = F_B^{-1}((1 + c)/2) + 1`` (``F_B^{-1}`` the
    smallest ``j`` with ``F_B(j) >= p``) gives coverage of at least ``c``; ranks are clipped
    to ``[1, n]``, which loses the guarantee only for tiny ``n``.
    """
    a, level = mc_settings(alpha, n_scenarios, ci_level)
    check("chunk", isinstance(chunk, int | np.integer) and chunk >= 1, "a positive integer")
    s = as_cov(cov)
    check("cov", s.ndim == 2 and s.shape[0] == s.shape[1], "a square matrix")
    chol_t = np.ascontiguousarray(cov_cholesky(s).T)
    n = int(n_scenarios)
    m = s.shape[0]
    step = -(-int(chunk) // _MC_BLOCK) * _MC_BLOCK
    rng = np.random.default_rng(seed)
    pnl = np.empty(n)
    for start in range(0, n, step):
        if cancelled is not None and cancelled():
            raise CancelledError("monte_carlo_var_es cancelled")
        size = min(step, n - start)
        z = rng.standard_normal((size, m))
        shocks = np.empty_like(z)
        for b in range(0, size, _MC_BLOCK):
            shocks[b : b + _MC_BLOCK] = z[b : b + _MC_BLOCK] @ chol_t
        res = np.asarray(revalue(shocks), dtype=np.float64)
        if res.shape != (size,) or not np.isfinite(res).all():
            raise ValueError(
                f"revalue must return {size} finite P&L values for {size} scenarios, "
                f"got shape {res.shape}"
                + ("" if res.shape != (size,) else " with NaN or infinite values")
            )
        pnl[start : start + size] = res
        if progress is not None:
            progress((start + size) / n)
    return mc_result(pnl, a, level)
