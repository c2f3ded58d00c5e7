r"""Average-price (Asian) options on a forward/futures price with discrete fixings.

The payoff at ``T`` is :math:`\max(w(A - K), 0)` with :math:`A` the arithmetic average of
``n_fixings`` fixings of the futures price, equally spaced from ``averaging_start`` to
``T`` (``t_i = a + i (T - a)/(n - 1)``; a single fixing is at ``T``).  The futures price
follows Black-76 dynamics :math:`dF = \sigma F\,dW` (a martingale), so a fixing at
:math:`t_i` is :math:`F e^{\sigma W_{t_i} - \sigma^2 t_i/2}`.  This is the dominant option
type in energy markets (monthly-average crude, products and gas swaptions/caps).

Seasoned options (already inside the averaging period) pass ``n_fixed`` past fixings with
average ``fixed_so_far``; the remaining ``m = n_fixings - n_fixed`` fixings are the last
``m`` dates of the schedule (``averaging_start`` may then be negative, i.e. in the past;
remaining dates before today are treated as fixing today).  Writing
:math:`A = \frac{n_f}{n}\bar A_{fixed} + \frac{m}{n}\bar A_{rem}`,

.. math::

    \max(w(A - K), 0) = \frac{m}{n}\max\big(w(\bar A_{rem} - K^*), 0\big),\qquad
    K^* = \frac{nK - n_f \bar A_{fixed}}{m}.

If :math:`K^* \le 0` the call is certainly exercised and is worth
:math:`e^{-rT}(E[A] - K)` (the put is worth 0).

References
----------
.. [1] S. M. Turnbull, L. M. Wakeman, "A quick algorithm for pricing European average
   options", Journal of Financial and Quantitative Analysis 26 (1991) 377-389.
.. [2] A. G. Z. Kemna, A. C. F. Vorst, "A pricing method for options based on average
   asset values", Journal of Banking and Finance 14 (1990) 113-129 (geometric control
   variate).
.. [3] E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed., McGraw-Hill
   (2007), section 4.20.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine._inputs import as_bool, as_float, check, out
from app.engine.options import black76

__all__ = ["asian_geometric", "asian_monte_carlo", "asian_turnbull_wakeman"]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray

_MC_CHUNK = 20_000


# --------------------------------------------------------------------------- helpers


def _prepare(
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
    averaging_start: ArrayLike,
    n_fixings: ArrayLike,
    fixed_so_far: ArrayLike,
    n_fixed: ArrayLike,
) -> tuple[list[FloatArray], NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64], bool]:
    named = {
        "F": F,
        "K": K,
        "T": T,
        "r": r,
        "sigma": sigma,
        "averaging_start": averaging_start,
        "fixed_so_far": fixed_so_far,
    }
    arrays: list[Any] = [as_float(k, v) for k, v in named.items()]
    ints: list[Any] = []
    for name, val in (("n_fixings", n_fixings), ("n_fixed", n_fixed)):
        arr = as_float(name, val)
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must be an integer")
        ints.append(arr)
    is_call = as_bool("call", call)
    scalar = all(a.ndim == 0 for a in [*arrays, *ints]) and is_call.ndim == 0
    try:
        *out, n_b, nf_b, call_b = np.broadcast_arrays(*arrays, *ints, is_call)
    except ValueError as exc:
        raise ValueError(f"arguments do not broadcast together: {exc}") from exc
    F_, K_, T_, r_, sig, a_, fx = (np.array(x, dtype=np.float64) for x in out)
    n = np.array(n_b, dtype=np.int64)
    nf = np.array(nf_b, dtype=np.int64)
    check("F", F_ > 0, "> 0")
    check("K", K_ >= 0, ">= 0")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    check("averaging_start", a_ <= T_, "<= T")
    check("n_fixings", n >= 1, ">= 1")
    check("n_fixed", (nf >= 0) & (nf <= n), "between 0 and n_fixings")
    check("fixed_so_far", (fx >= 0) | (nf == 0), ">= 0 when n_fixed > 0")
    return [F_, K_, T_, r_, sig, a_, fx], np.array(call_b), n, nf, scalar


def _remaining_times(
    T: FloatArray, a: FloatArray, n: NDArray[np.int64], nf: NDArray[np.int64]
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Times of the remaining fixings, padded on a trailing axis, and the validity mask."""
    m = n - nf
    width = max(int(m.max(initial=0)), 1)
    k = np.arange(width)
    idx = nf[..., None] + k  # schedule index of the k-th remaining fixing
    h = np.where(n > 1, (T - a) / np.maximum(n - 1, 1), 0.0)
    t = np.where(n[..., None] > 1, a[..., None] + idx * h[..., None], T[..., None])
    valid = k < m[..., None]
    t = np.clip(t, 0.0, T[..., None])
    return np.asarray(np.where(valid, t, 0.0)), np.asarray(valid)


def _sum_min(t: FloatArray, valid: NDArray[np.bool_], f: Any) -> FloatArray:
    """``sum_i sum_j f(min(t_i, t_j))`` over valid, ascending times ``t`` (trailing axis)."""
    m = valid.sum(axis=-1)
    k = np.arange(t.shape[-1])
    weight = np.where(valid, 2.0 * (m[..., None] - 1 - k) + 1.0, 0.0)
    return np.asarray((weight * np.where(valid, f(t), 0.0)).sum(axis=-1))


def _seasoned(
    F: FloatArray,
    K: FloatArray,
    T: FloatArray,
    r: FloatArray,
    w: FloatArray,
    fx: FloatArray,
    n: NDArray[np.int64],
    nf: NDArray[np.int64],
) -> tuple[FloatArray, FloatArray, FloatArray, NDArray[np.bool_]]:
    """Remaining-fixing weight ``m/n``, adjusted strike, deterministic value and its mask."""
    m = n - nf
    m_safe = np.maximum(m, 1)
    weight = m / n
    k_star = (n * K - nf * fx) / m_safe
    df = np.exp(-r * T)
    mean_avg = (nf * fx + m * F) / n
    # Fully fixed: intrinsic; K* <= 0: call exercised for sure, put worthless.
    sure = (m == 0) | (k_star <= 0)
    det = df * np.maximum(w * (mean_avg - K), 0.0)
    return weight, np.where(sure, 1.0, k_star), det, np.asarray(sure)


# --------------------------------------------------------------------------- closed forms


def asian_turnbull_wakeman(
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
    averaging_start: ArrayLike,
    n_fixings: ArrayLike,
    fixed_so_far: ArrayLike = 0.0,
    n_fixed: ArrayLike = 0,
) -> FloatOrArray:
    r"""Arithmetic average-price option on a futures price (Turnbull-Wakeman moment matching).

    Parameters
    ----------
    F : array_like
        Current futures price for the delivery period, ``F > 0``.
    K : array_like
        Strike, ``K >= 0``.
    T : array_like
        Expiry (= last fixing and payment) in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma : array_like
        Lognormal volatility of the futures price, ``sigma >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.
    averaging_start : array_like
        Time of the first fixing in years, ``<= T`` (negative when averaging has started).
    n_fixings : array_like of int
        Total number of fixings, ``>= 1``.
    fixed_so_far : array_like, optional
        Average of the fixings already observed (ignored when ``n_fixed == 0``).
    n_fixed : array_like of int, optional
        Number of fixings already observed, ``0 <= n_fixed <= n_fixings``.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf, ``F <= 0``, ``K < 0``, ``T < 0``, ``sigma < 0``,
        ``averaging_start > T``, non-integer or out-of-range ``n_fixings``/``n_fixed``,
        non-boolean ``call`` or non-broadcasting arguments.

    Notes
    -----
    The average :math:`\bar A` of the ``m`` remaining fixings at times :math:`t_i` is
    approximated by a lognormal with the same first two moments:

    .. math::

        M_1 = E[\bar A] = F,\qquad
        M_2 = E[\bar A^2] = \frac{F^2}{m^2}\sum_{i,j} e^{\sigma^2 \min(t_i, t_j)},\qquad
        \sigma_A^2 T = \ln(M_2 / M_1^2),

    and priced with Black-76: :math:`V = \frac{m}{n}\,\mathrm{Black76}(F, K^*, T, r,
    \sigma_A)` with the adjusted strike :math:`K^*` of the module docstring.  With a
    single fixing at ``T`` this is exactly Black-76.  The approximation error is small
    (well under 1 % of the price) for typical energy volatilities and monthly averaging.

    References
    ----------
    .. [1] S. M. Turnbull, L. M. Wakeman, JFQA 26 (1991) 377-389.
    .. [2] E. G. Haug (2007), section 4.20.2.

    Examples
    --------
    >>> v = asian_turnbull_wakeman(80.0, 80.0, 1.0, 0.03, 0.4, True, 11 / 12, 22)
    >>> round(v, 4)
    11.9607
    """
    (F_, K_, T_, r_, sig, a_, fx), is_call, n, nf, scalar = _prepare(
        F, K, T, r, sigma, call, averaging_start, n_fixings, fixed_so_far, n_fixed
    )
    w = np.where(is_call, 1.0, -1.0)
    weight, k_star, det, sure = _seasoned(F_, K_, T_, r_, w, fx, n, nf)
    t, valid = _remaining_times(T_, a_, n, nf)
    m = np.maximum(n - nf, 1)
    s2 = sig[..., None] ** 2
    # ln(M2/M1^2) = ln( sum_ij exp(sigma^2 min(t_i,t_j)) / m^2 ), computed via expm1 for accuracy.
    excess = _sum_min(t, valid, lambda x: np.expm1(s2 * x)) / (m * m)
    total_var = np.log1p(excess)
    T_pos = np.where(T_ > 0, T_, 1.0)
    sig_a = np.sqrt(np.maximum(total_var, 0.0) / T_pos)
    price = weight * np.asarray(black76(F_, k_star, T_, r_, sig_a, is_call), dtype=np.float64)
    return out(np.where(sure, det, price), scalar)


def asian_geometric(
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
    averaging_start: ArrayLike,
    n_fixings: ArrayLike,
) -> FloatOrArray:
    r"""Closed-form price of a discrete geometric average-price option on a futures price.

    Parameters are as :func:`asian_turnbull_wakeman` (no seasoning).  With fixings at
    :math:`t_1..t_n` the geometric average :math:`G = (\prod F_{t_i})^{1/n}` is exactly
    lognormal:

    .. math::

        \ln G \sim N\Big(\ln F - \frac{\sigma^2}{2n}\sum_i t_i,\;
        v = \frac{\sigma^2}{n^2}\sum_{i,j}\min(t_i, t_j)\Big),

    so :math:`V = e^{-rT} w [G_0 N(w d_1) - K N(w d_2)]` with
    :math:`G_0 = E[G] = F\exp(-\frac{\sigma^2}{2n}\sum_i t_i + v/2)`,
    :math:`d_{1,2} = [\ln(G_0/K) \pm v/2]/\sqrt v`.  Used as the control variate of
    :func:`asian_monte_carlo`.

    Returns
    -------
    float or ndarray
        Option value.

    References
    ----------
    .. [1] A. G. Z. Kemna, A. C. F. Vorst, J. Banking and Finance 14 (1990) 113-129.
    """
    (F_, K_, T_, r_, sig, a_, _fx), is_call, n, nf, scalar = _prepare(
        F, K, T, r, sigma, call, averaging_start, n_fixings, 0.0, 0
    )
    check("K", K_ > 0, "> 0 for the geometric average")
    t, valid = _remaining_times(T_, a_, n, nf)
    g0, v = _geometric_moments(F_, sig, t, valid)
    T_pos = np.where(T_ > 0, T_, 1.0)
    sig_g = np.sqrt(v / T_pos)
    return out(np.asarray(black76(g0, K_, T_, r_, sig_g, is_call), dtype=np.float64), scalar)


def _geometric_moments(
    F: FloatArray, sig: FloatArray, t: FloatArray, valid: NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray]:
    """``E[G]`` and ``Var(ln G)`` of the geometric average of the valid fixings."""
    m = valid.sum(axis=-1)
    mean_t = np.where(valid, t, 0.0).sum(axis=-1) / m
    v = sig**2 * _sum_min(t, valid, lambda x: x) / (m * m)
    g0 = F * np.exp(-0.5 * sig**2 * mean_t + 0.5 * v)
    return np.asarray(g0), np.asarray(v)


# --------------------------------------------------------------------------- Monte Carlo


def _mc_one(
    F: float,
    k_star: float,
    T: float,
    r: float,
    sig: float,
    w: float,
    t: FloatArray,
    n_paths: int,
    seed: int,
    control_variate: bool,
) -> tuple[float, float]:
    """MC of ``e^{-rT} max(w(Abar - K*), 0)`` over the fixing times ``t``: (mean, stderr)."""
    rng = np.random.default_rng(seed)
    m = t.size
    dt = np.diff(np.concatenate(([0.0], t)))
    vol = sig * np.sqrt(dt)
    drift = -0.5 * sig * sig * dt
    df = np.exp(-r * T)
    cv_exact = 0.0
    if control_variate:
        valid = np.ones((1, m), dtype=bool)
        g0, v = _geometric_moments(np.array([F]), np.array([sig]), t[None, :], valid)
        is_call = np.array([w > 0])
        cv_exact = float(np.asarray(black76(g0, k_star, T, r, np.sqrt(v / T), is_call))[0])
    sx = sy = sxx = syy = sxy = 0.0
    done = 0
    while done < n_paths:
        size = min(_MC_CHUNK, n_paths - done)
        z = rng.standard_normal((size, m))
        log_f = np.log(F) + np.cumsum(drift + vol * z, axis=1)
        x = df * np.maximum(w * (np.exp(log_f).mean(axis=1) - k_star), 0.0)
        sx += float(x.sum())
        sxx += float((x * x).sum())
        if control_variate:
            y = df * np.maximum(w * (np.exp(log_f.mean(axis=1)) - k_star), 0.0)
            sy += float(y.sum())
            syy += float((y * y).sum())
            sxy += float((x * y).sum())
        done += size
    N = float(n_paths)
    mx = sx / N
    var_x = max(sxx / N - mx * mx, 0.0)
    if not control_variate:
        return mx, float(np.sqrt(var_x / max(N - 1.0, 1.0)))
    my = sy / N
    var_y = max(syy / N - my * my, 0.0)
    cov = sxy / N - mx * my
    beta = cov / var_y if var_y > 0 else 0.0
    est = mx - beta * (my - cv_exact)
    var_res = max(var_x - 2.0 * beta * cov + beta * beta * var_y, 0.0)
    return est, float(np.sqrt(var_res / max(N - 1.0, 1.0)))


def asian_monte_carlo(
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
    averaging_start: ArrayLike,
    n_fixings: ArrayLike,
    n_paths: int = 100_000,
    seed: int = 0,
    control_variate: bool = True,
    fixed_so_far: ArrayLike = 0.0,
    n_fixed: ArrayLike = 0,
) -> tuple[FloatOrArray, FloatOrArray]:
    r"""Monte Carlo price of an arithmetic average-price option, with its standard error.

    Parameters
    ----------
    F, K, T, r, sigma, call, averaging_start, n_fixings, fixed_so_far, n_fixed
        As :func:`asian_turnbull_wakeman` (broadcast; each option is simulated separately
        with the same ``seed``).
    n_paths : int, optional
        Number of simulated paths per option (default 100 000), simulated in chunks.
    seed : int, optional
        Seed of :func:`numpy.random.default_rng`; equal seeds give identical results.
    control_variate : bool, optional
        Use the geometric-average option (closed form :func:`asian_geometric`) as control
        variate (default ``True``), with the optimal coefficient estimated from the paths.

    Returns
    -------
    price : float or ndarray
        Estimated option value.
    stderr : float or ndarray
        Standard error of the estimate (0 where the value is deterministic).

    Notes
    -----
    Fixings are sampled exactly: :math:`\ln F_{t_{i}} = \ln F_{t_{i-1}}
    - \tfrac12\sigma^2\Delta t_i + \sigma\sqrt{\Delta t_i} Z_i`.  With payoff samples
    :math:`X` and control :math:`Y` (geometric payoff, known mean :math:`\mu_Y`), the
    estimator is :math:`\bar X - \hat\beta(\bar Y - \mu_Y)`,
    :math:`\hat\beta = \widehat{\mathrm{cov}}(X, Y)/\widehat{\mathrm{var}}(Y)`
    (ref. [1] of :mod:`app.engine.asian`, Glasserman 2004, section 4.1).

    References
    ----------
    .. [1] P. Glasserman, "Monte Carlo Methods in Financial Engineering", Springer (2004).
    """
    if isinstance(n_paths, bool) or int(n_paths) != n_paths or n_paths < 2:
        raise ValueError(f"n_paths must be an integer >= 2, got {n_paths!r}")
    (F_, K_, T_, r_, sig, a_, fx), is_call, n, nf, scalar = _prepare(
        F, K, T, r, sigma, call, averaging_start, n_fixings, fixed_so_far, n_fixed
    )
    w = np.where(is_call, 1.0, -1.0)
    weight, k_star, det, sure = _seasoned(F_, K_, T_, r_, w, fx, n, nf)
    t_all, valid = _remaining_times(T_, a_, n, nf)
    price = np.array(det, dtype=np.float64)
    err = np.zeros_like(price)
    for idx in np.ndindex(price.shape):
        if sure[idx] or sig[idx] * np.sqrt(T_[idx]) <= 0:
            if not sure[idx]:  # no volatility: deterministic average F
                price[idx] = (
                    weight[idx]
                    * np.exp(-r_[idx] * T_[idx])
                    * max(float(w[idx] * (F_[idx] - k_star[idx])), 0.0)
                )
            continue
        t = t_all[idx][valid[idx]]
        cv = control_variate and bool(t[-1] > 0)
        est, se = _mc_one(
            float(F_[idx]),
            float(k_star[idx]),
            float(T_[idx]),
            float(r_[idx]),
            float(sig[idx]),
            float(w[idx]),
            t,
            int(n_paths),
            seed,
            cv,
        )
        price[idx] = weight[idx] * est
        err[idx] = weight[idx] * se
    return out(price, scalar), out(err, scalar)
