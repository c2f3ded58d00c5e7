"""VaR backtesting: Kupiec, Christoffersen, the Basel traffic light and a rolling backtest.

An *exception* (exceedance) on day ``t`` is a loss strictly greater than the VaR forecast
made with data up to day ``t - 1``: ``-pnl_t > VaR_t``.  ``alpha`` is the VaR confidence
level, so the expected exception rate is ``p = 1 - alpha``.  Log-likelihoods use the
convention ``0 log 0 = 0`` (:func:`scipy.special.xlogy`), which makes every statistic finite
when a count is zero.

References
----------
.. [1] P. H. Kupiec, "Techniques for verifying the accuracy of risk measurement models",
   Journal of Derivatives 3 (1995) 73-84.
.. [2] P. F. Christoffersen, "Evaluating interval forecasts", International Economic
   Review 39 (1998) 841-862.
.. [3] Basel Committee on Banking Supervision, "Supervisory framework for the use of
   'backtesting' in conjunction with the internal models approach to market risk capital
   requirements" (January 1996), table 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray
from scipy.special import chdtrc, ndtri, xlogy

from app.engine._inputs import as_float, check
from app.engine.risk.var import check_alpha, tail_count

__all__ = [
    "BacktestResult",
    "basel_traffic_light",
    "christoffersen_ind",
    "kupiec_pof",
    "rolling_var_backtest",
    "transition_counts",
]

FloatArray = NDArray[np.float64]
TrafficLight = Literal["green", "yellow", "red"]

#: Cumulative binomial probabilities at which the Basel yellow and red zones begin [3]_.
YELLOW_FROM = 0.95
RED_FROM = 0.9999


def _count(name: str, value: int, low: int = 0) -> int:
    check(name, isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_),
          "an integer")  # fmt: skip
    check(name, int(value) >= low, f">= {low}")
    return int(value)


def kupiec_pof(n_obs: int, n_exceptions: int, alpha: float) -> tuple[float, float]:
    """Kupiec proportion-of-failures likelihood-ratio test.

    With ``p = 1 - alpha``, ``x`` exceptions in ``n`` days and ``phat = x / n``:

    ``LR_pof = -2 [ (n - x) ln(1 - p) + x ln p - (n - x) ln(1 - phat) - x ln phat ]``,

    asymptotically chi-squared with 1 degree of freedom under the null ``P(exception) = p``.

    Parameters
    ----------
    n_obs : int
        Number of backtest days ``n >= 1``.
    n_exceptions : int
        Number of exceptions ``0 <= x <= n``.
    alpha : float
        VaR confidence level in ``(0, 1)``.

    Returns
    -------
    lr, p_value : float
        The statistic and ``P(chi2_1 >= lr)``.

    Examples
    --------
    >>> lr, pv = kupiec_pof(250, 8, 0.99)
    >>> round(lr, 4), round(pv, 4)
    (7.7336, 0.0054)
    """
    p = 1.0 - check_alpha(alpha)
    n = _count("n_obs", n_obs, 1)
    x = _count("n_exceptions", n_exceptions)
    check("n_exceptions", x <= n, "<= n_obs")
    phat = x / n
    ll0 = xlogy(n - x, 1.0 - p) + xlogy(x, p)
    ll1 = xlogy(n - x, 1.0 - phat) + xlogy(x, phat)
    lr = max(-2.0 * float(ll0 - ll1), 0.0)
    return lr, float(chdtrc(1, lr))


def transition_counts(exceptions: ArrayLike) -> tuple[int, int, int, int]:
    """``(n00, n01, n10, n11)``: ``n_ij`` = number of days in state ``i`` followed by ``j``."""
    e = np.asarray(exceptions)
    check("exceptions", e.ndim == 1 and e.size >= 2, "a 1-D sequence of at least 2 days")
    if e.dtype != np.bool_:
        check("exceptions", bool(np.isin(e, (0, 1)).all()), "boolean (or 0/1)")
    e = e.astype(bool)
    prev, nxt = e[:-1], e[1:]
    return (
        int(np.count_nonzero(~prev & ~nxt)),
        int(np.count_nonzero(~prev & nxt)),
        int(np.count_nonzero(prev & ~nxt)),
        int(np.count_nonzero(prev & nxt)),
    )


def christoffersen_ind(exceptions: ArrayLike) -> tuple[float, float]:
    """Christoffersen likelihood-ratio test of independence of exceptions.

    With transition counts ``n_ij`` (:func:`transition_counts`),
    ``pi0 = n01 / (n00 + n01)``, ``pi1 = n11 / (n10 + n11)`` and
    ``pi = (n01 + n11) / (n00 + n01 + n10 + n11)``:

    ``LR_ind = -2 [ ln L(pi) - ln L(pi0, pi1) ]`` with
    ``ln L(pi) = (n00 + n10) ln(1 - pi) + (n01 + n11) ln pi`` and
    ``ln L(pi0, pi1) = n00 ln(1 - pi0) + n01 ln pi0 + n10 ln(1 - pi1) + n11 ln pi1``,

    chi-squared with 1 degree of freedom under independence.  Zero counts follow
    ``0 ln 0 = 0``; a row with no transitions at all (e.g. no exception before the last
    day, ``n10 + n11 = 0``) contributes nothing, and the statistic is then 0.

    Parameters
    ----------
    exceptions : array_like of bool
        Exception indicator per day, oldest first.

    Returns
    -------
    lr, p_value : float
    """
    n00, n01, n10, n11 = transition_counts(exceptions)
    total = n00 + n01 + n10 + n11
    pi = (n01 + n11) / total
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    ll0 = xlogy(n00 + n10, 1.0 - pi) + xlogy(n01 + n11, pi)
    ll1 = xlogy(n00, 1.0 - pi0) + xlogy(n01, pi0) + xlogy(n10, 1.0 - pi1) + xlogy(n11, pi1)
    lr = max(-2.0 * float(ll0 - ll1), 0.0)
    return lr, float(chdtrc(1, lr))


def basel_traffic_light(n_exceptions: int, n_obs: int = 250, alpha: float = 0.99) -> TrafficLight:
    """Basel traffic-light zone from the cumulative binomial probability of the exceptions.

    ``F = P(X <= n_exceptions)`` for ``X ~ Binomial(n_obs, 1 - alpha)``: green if
    ``F < 0.95``, yellow if ``0.95 <= F < 0.9999``, red if ``F >= 0.9999`` [3]_.  At 250
    days and 99 % this reproduces the Basel table: green 0-4, yellow 5-9, red 10 or more.

    Examples
    --------
    >>> [basel_traffic_light(x) for x in (4, 5, 9, 10)]
    ['green', 'yellow', 'yellow', 'red']
    """
    p = 1.0 - check_alpha(alpha)
    n = _count("n_obs", n_obs, 1)
    x = _count("n_exceptions", n_exceptions)
    check("n_exceptions", x <= n, "<= n_obs")
    from scipy.stats import binom  # lazy: scipy.stats costs ~0.5 s to import

    cdf = float(binom.cdf(x, n, p))
    if cdf < YELLOW_FROM:
        return "green"
    return "yellow" if cdf < RED_FROM else "red"


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of :func:`rolling_var_backtest`.

    Attributes
    ----------
    var : ndarray
        VaR forecast for each backtest day (losses positive), shape ``(n_obs,)``.
    exceptions : ndarray of bool
        ``-pnl_t > var_t``.
    n_obs, n_exceptions : int
    kupiec : tuple of float
        ``(lr, p_value)`` of :func:`kupiec_pof`.
    christoffersen : tuple of float
        ``(lr, p_value)`` of :func:`christoffersen_ind`.
    conditional_coverage : tuple of float
        ``LR_cc = LR_pof + LR_ind`` and its chi-squared (2 d.o.f.) p-value.
    traffic_light : str
        :func:`basel_traffic_light` for ``n_obs`` days.
    """

    var: FloatArray
    exceptions: NDArray[np.bool_]
    n_obs: int
    n_exceptions: int
    kupiec: tuple[float, float]
    christoffersen: tuple[float, float]
    conditional_coverage: tuple[float, float]
    traffic_light: TrafficLight


def rolling_var_backtest(
    pnl_series: ArrayLike,
    window: int,
    alpha: float,
    method: Literal["hist", "normal", "ewma"] = "hist",
    lam: float = 0.94,
) -> BacktestResult:
    """Backtest one-day VaR forecast from a rolling window of past P&L.

    For ``t = window, ..., T - 1`` the VaR for day ``t`` uses ``pnl[t - window : t]`` only:

    * ``'hist'``: the historical VaR of :func:`~app.engine.risk.var.var_es` (the
      ``ceil(window (1 - alpha))``-th largest loss of the window);
    * ``'normal'``: ``z_alpha * s`` with ``s`` the zero-mean RMS of the window's P&L;
    * ``'ewma'``: ``z_alpha * s`` with ``s^2`` the RiskMetrics EWMA variance
      (:func:`~app.engine.risk.var.ewma_cov`, decay ``lam``) of the window's P&L.

    Parameters
    ----------
    pnl_series : array_like, shape (T,)
        Daily P&L, oldest first; ``T > window``.
    window : int
        Estimation window length, at least 1.
    alpha : float
        VaR confidence level in ``(0, 1)``.
    method : {'hist', 'normal', 'ewma'}
        Forecasting method.
    lam : float, default 0.94
        EWMA decay (``method='ewma'`` only).

    Returns
    -------
    BacktestResult
        ``n_obs = T - window`` backtest days.
    """
    a = check_alpha(alpha)
    pnl = as_float("pnl_series", pnl_series)
    check("pnl_series", pnl.ndim == 1, "1-D")
    w = _count("window", window, 1)
    check("pnl_series", pnl.size > w, f"longer than window ({w})")
    check("method", method in ("hist", "normal", "ewma"), "'hist', 'normal' or 'ewma'")
    windows = sliding_window_view(pnl, w)[:-1]  # windows[i] = pnl[i : i + w] -> forecast i + w
    if method == "hist":
        k = tail_count(w, a)
        var = -np.partition(windows, k - 1, axis=1)[:, k - 1]  # k-th smallest P&L
    elif method == "normal":
        var = float(ndtri(a)) * np.sqrt(np.mean(windows * windows, axis=1))
    else:
        lam_a = as_float("lam", lam)
        check("lam", (lam_a.ndim == 0) & (lam_a > 0.0) & (lam_a < 1.0), "a scalar in (0, 1)")
        lf = float(lam_a)
        weights = (1.0 - lf) * lf ** np.arange(w - 1, -1, -1.0) / -math.expm1(w * math.log(lf))
        var = float(ndtri(a)) * np.sqrt((windows * windows) @ weights)
    realised = -pnl[w:]
    exc = realised > var
    n, x = exc.size, int(np.count_nonzero(exc))
    pof = kupiec_pof(n, x, a)
    ind = christoffersen_ind(exc) if n >= 2 else (0.0, 1.0)
    lr_cc = pof[0] + ind[0]
    return BacktestResult(
        var=np.asarray(var, dtype=np.float64),
        exceptions=exc,
        n_obs=n,
        n_exceptions=x,
        kupiec=pof,
        christoffersen=ind,
        conditional_coverage=(lr_cc, float(chdtrc(2, lr_cc))),
        traffic_light=basel_traffic_light(x, n, a),
    )
