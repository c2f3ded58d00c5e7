"""European option pricing, greeks and implied volatility (Black-76, Bachelier, Black-Scholes).

All functions are vectorised in the style of ``numpy-financial``: every numeric argument
may be a scalar or an array, and arguments are broadcast together with
:func:`numpy.broadcast_arrays`.  When every argument (including ``call``) is a scalar
the result is a Python ``float``; otherwise it is a :class:`numpy.ndarray`.

Conventions
-----------
* ``T`` is the time to expiry in years (``T >= 0``).
* ``r`` is the continuously compounded discount rate; the discount factor is
  ``df = exp(-r * T)`` (so ``df == 1`` at ``T == 0`` whatever ``r``).
* ``sigma`` is the lognormal (Black) volatility per ``sqrt(year)``; ``sigma_n`` is the
  normal (Bachelier) volatility in price units per ``sqrt(year)``.
* ``call`` is a ``bool`` or boolean array (``True`` for a call, ``False`` for a put).
* Bad input (NaN or infinity anywhere, ``T < 0``, negative volatility, ``F <= 0`` or
  ``K < 0`` for Black-76, ``S <= 0`` or ``K < 0`` for Black-Scholes, non-boolean ``call``)
  raises :class:`ValueError` naming the argument.

References
----------
.. [1] F. Black, "The pricing of commodity contracts", Journal of Financial Economics
   3 (1976) 167-179.
.. [2] L. Bachelier, "Théorie de la spéculation", Annales scientifiques de l'É.N.S.
   17 (1900) 21-86.
.. [3] F. Black, M. Scholes, "The pricing of options and corporate liabilities",
   Journal of Political Economy 81 (1973) 637-654.
.. [4] P. Jäckel, "Let's be rational", Wilmott (2015) 40-53 (normalised Black price,
   inflection-point initial guess).
.. [5] E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed., McGraw-Hill
   (2007), chapter 2 (greeks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from app.engine._inputs import broadcast, check, out

if TYPE_CHECKING:  # served lazily by __getattr__ at the end of this module
    from app.engine.american import american_black76
    from app.engine.asian import asian_turnbull_wakeman
    from app.engine.spread import kirk_spread, margrabe

__all__ = [
    "REASON_ABOVE_UPPER_BOUND",
    "REASON_AT_INTRINSIC",
    "REASON_BELOW_INTRINSIC",
    "REASON_NO_CONVERGENCE",
    "REASON_OK",
    "REASON_ZERO_EXPIRY",
    "Greeks",
    "american_black76",
    "asian_turnbull_wakeman",
    "bachelier",
    "bachelier_greeks",
    "black76",
    "black76_greeks",
    "black_scholes",
    "implied_vol_bachelier",
    "implied_vol_bachelier_detail",
    "implied_vol_black76",
    "implied_vol_black76_detail",
    "kirk_spread",
    "margrabe",
]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_EPS = np.finfo(float).eps

#: Implied volatility found.
REASON_OK = "ok"
#: Price equals the (undiscounted) intrinsic value within rounding: volatility is 0.
REASON_AT_INTRINSIC = "at_intrinsic"
#: Price below the no-arbitrage lower bound ``df * max(w * (F - K), 0)``: NaN.
REASON_BELOW_INTRINSIC = "below_intrinsic"
#: Price at or above the no-arbitrage upper bound (Black-76 only: ``df * F`` for a call,
#: ``df * K`` for a put; the bound itself needs an infinite volatility): NaN.
REASON_ABOVE_UPPER_BOUND = "above_upper_bound"
#: ``T == 0`` with a price that satisfies the bounds: volatility undetermined, NaN.
REASON_ZERO_EXPIRY = "zero_expiry"
#: The solver did not reach the tolerance (not expected to happen): NaN.
REASON_NO_CONVERGENCE = "no_convergence"


@dataclass(frozen=True)
class Greeks:
    """First- and second-order sensitivities of an option value ``V``.

    Attributes
    ----------
    delta : float or ndarray
        ``dV/dF`` (or ``dV/dS``) per 1 unit of the underlying price.
    gamma : float or ndarray
        ``d2V/dF2`` per unit of the underlying price squared.
    vega : float or ndarray
        ``dV/dsigma`` per 1.00 (absolute) of volatility; divide by 100 for one vol point.
        For Bachelier, per 1 price unit of normal volatility.
    theta : float or ndarray
        ``dV/dt = -dV/dT`` per year as calendar time passes (forward, strike, rate and
        volatility held fixed); divide by 365 for a calendar day.
    rho : float or ndarray
        ``dV/dr`` per 1.00 of the continuously compounded rate (forward held fixed,
        so ``rho = -T * V``); divide by 10 000 for one basis point.
    """

    delta: FloatOrArray
    gamma: FloatOrArray
    vega: FloatOrArray
    theta: FloatOrArray
    rho: FloatOrArray


# --------------------------------------------------------------------------- kernel dispatch

#: Inputs with at least this many elements (after broadcasting) are priced by the fused,
#: multi-core numba kernels of :mod:`app.engine._kernels` (imported, and compiled or loaded
#: from the disk cache, on the first such call); smaller inputs take the numpy path, so the
#: GUI's one-option calls never import numba nor wait for a JIT compile.  Measured on 2 cores
#: (warm kernels): the kernels already win at 100 elements (price 27 vs 98 us, implied vol 68
#: vs 1 365 us), so the threshold is about keeping numba (import ~0.5 s, first compile 10-16 s)
#: out of interactive calls, not about speed; at 20 000 the numpy path takes ~1.5 ms (price)
#: to ~60 ms (implied vol).
_KERNEL_MIN_SIZE = 20_000


def _kernel_inputs(
    named: dict[str, ArrayLike], call: ArrayLike
) -> tuple[list[Any], Any, tuple[int, ...], bool] | None:
    """Flat kernel arguments, the broadcast shape and the scalar flag; ``None``: use numpy.

    Cheap: no copy for contiguous float64 arrays of the full shape (the common case); others
    (scalars, broadcast or strided arguments) are materialised once.  Anything unusual
    (non-numeric input, a non-boolean ``call``, shapes that do not broadcast) goes to the
    numpy path, which raises the public API's exact error.
    """
    try:
        arrays = [np.asarray(v, dtype=np.float64) for v in named.values()]
    except (TypeError, ValueError, OverflowError):
        return None
    flags = np.asarray(call)
    if flags.dtype != np.bool_:
        return None
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays), flags.shape)
    except ValueError:
        return None
    if math.prod(shape) < max(_KERNEL_MIN_SIZE, 1):
        return None

    def flat(a: Any) -> Any:
        if a.shape != shape:
            a = np.broadcast_to(a, shape)
        return np.ascontiguousarray(a).reshape(-1)

    scalar = all(a.ndim == 0 for a in arrays) and flags.ndim == 0
    return [flat(a) for a in arrays], flat(flags), shape, scalar


def _black76_kernel(
    kind: str, named: dict[str, ArrayLike], call: ArrayLike
) -> tuple[Any, tuple[int, ...], bool] | None:
    """Run the ``kind`` kernel (``price``, ``greeks``, ``iv``) on large valid input, else None."""
    prep = _kernel_inputs(named, call)
    if prep is None:
        return None
    args, flags, shape, scalar = prep
    from app.engine import _kernels

    n = math.prod(shape)
    res: Any
    if kind == "price":
        res, nbad = _kernels.black76_price(args, flags, n)
    elif kind == "greeks":
        res, nbad = _kernels.black76_greeks(args, flags, n)
    else:
        vol, code, nbad = _kernels.implied_vol_black76(args, flags, n)
        res = (vol, code)
    if nbad:  # invalid input: the numpy path raises the exact error
        return None
    return res, shape, scalar


# --------------------------------------------------------------------------- helpers


def _prepare(
    named: dict[str, ArrayLike], call: ArrayLike
) -> tuple[list[FloatArray], FloatArray, bool]:
    """Validate, broadcast; return float arrays, the sign ``w`` (+1 call, -1 put), scalar flag."""
    arrays, is_call, scalar = broadcast(named, call)
    return arrays, np.where(is_call, 1.0, -1.0), scalar


def _npdf(x: FloatArray) -> FloatArray:
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(_INV_SQRT_2PI * np.exp(-0.5 * x * x))


def _black_d1(F: FloatArray, K: FloatArray, s: FloatArray) -> FloatArray:
    """``d1 = ln(F/K)/s + s/2`` with its limits for ``s == 0`` (±inf, or 0 at the money) and ``K == 0``."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.log(F / K)  # +inf when K == 0
        pos = s > 0
        s_safe = np.where(pos, s, 1.0)
        limit = np.where(x > 0, np.inf, np.where(x < 0, -np.inf, 0.0))
        return np.asarray(np.where(pos, x / s_safe + 0.5 * s_safe, limit))


def _black_undiscounted(F: FloatArray, K: FloatArray, s: FloatArray, w: FloatArray) -> FloatArray:
    """Undiscounted Black price ``w * (F N(w d1) - K N(w d2))``, floored at intrinsic."""
    d1 = _black_d1(F, K, s)
    with np.errstate(invalid="ignore"):
        d2 = np.where(s > 0, d1 - s, d1)
        val = w * (F * ndtr(w * d1) - K * ndtr(w * d2))
    return np.asarray(np.maximum(val, np.maximum(w * (F - K), 0.0)))


def _bachelier_d(F: FloatArray, K: FloatArray, s: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        m = F - K
        pos = s > 0
        limit = np.where(m > 0, np.inf, np.where(m < 0, -np.inf, 0.0))
        return np.asarray(np.where(pos, m / np.where(pos, s, 1.0), limit))


def _bachelier_undiscounted(
    F: FloatArray, K: FloatArray, s: FloatArray, w: FloatArray
) -> FloatArray:
    """Undiscounted Bachelier price ``w (F-K) N(w d) + s n(d)``, floored at intrinsic."""
    d = _bachelier_d(F, K, s)
    m = F - K
    val = w * m * ndtr(w * d) + s * _npdf(d)
    return np.asarray(np.maximum(val, np.maximum(w * m, 0.0)))


# --------------------------------------------------------------------------- prices


def black76(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, sigma: ArrayLike, call: ArrayLike
) -> FloatOrArray:
    r"""Discounted Black-76 price of a European option on a forward or futures price.

    Parameters
    ----------
    F : array_like
        Forward price, ``F > 0``.
    K : array_like
        Strike, ``K >= 0``.
    T : array_like
        Time to expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma : array_like
        Lognormal volatility (absolute, e.g. ``0.35`` for 35 %), ``sigma >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf input, ``F <= 0``, ``K < 0``, ``T < 0``, ``sigma < 0``, non-boolean
        ``call`` or arguments that do not broadcast.

    Notes
    -----
    With :math:`w = +1` for a call and :math:`-1` for a put, :math:`s = \sigma\sqrt{T}`,

    .. math::

        V = e^{-rT}\, w\,[F N(w d_1) - K N(w d_2)],\quad
        d_1 = \frac{\ln(F/K)}{s} + \frac{s}{2},\quad d_2 = d_1 - s.

    Limits are exact: for :math:`s = 0` (``T == 0`` or ``sigma == 0``) the value is the
    discounted intrinsic value :math:`e^{-rT}\max(w(F-K), 0)` (``df == 1`` at ``T == 0``);
    for ``K == 0`` a call is worth :math:`e^{-rT}F` and a put 0; as
    :math:`\sigma\to\infty` a call tends to :math:`e^{-rT}F`.

    References
    ----------
    .. [1] F. Black, "The pricing of commodity contracts", J. Financial Economics 3 (1976).

    Examples
    --------
    >>> round(black76(100.0, 100.0, 1.0, 0.05, 0.2, True), 6)
    7.577082
    """
    named = {"F": F, "K": K, "T": T, "r": r, "sigma": sigma}
    fast = _black76_kernel("price", named, call)
    if fast is not None:
        res, shape, scalar = fast
        return out(res.reshape(shape), scalar)
    (F_, K_, T_, r_, sig), w, scalar = _prepare(named, call)
    check("F", F_ > 0, "> 0 for Black-76")
    check("K", K_ >= 0, ">= 0 for Black-76")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    return out(df * _black_undiscounted(F_, K_, sig * np.sqrt(T_), w), scalar)


def bachelier(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, sigma_n: ArrayLike, call: ArrayLike
) -> FloatOrArray:
    r"""Discounted Bachelier (normal model) price of a European option on a forward.

    Valid for zero and negative forwards and strikes (e.g. WTI May-2020 settled at
    -37.63 USD/bbl on 2020-04-20).

    Parameters
    ----------
    F : array_like
        Forward price (any sign).
    K : array_like
        Strike (any sign).
    T : array_like
        Time to expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma_n : array_like
        Normal volatility in price units per ``sqrt(year)``, ``sigma_n >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf input, ``T < 0``, ``sigma_n < 0``, non-boolean ``call``.

    Notes
    -----
    With :math:`s = \sigma_n\sqrt{T}` and :math:`d = (F-K)/s`,

    .. math:: V = e^{-rT}\,[\,w(F-K)\,N(w d) + s\,n(d)\,].

    For :math:`s = 0` the value is the discounted intrinsic value.

    References
    ----------
    .. [2] L. Bachelier, "Théorie de la spéculation" (1900).

    Examples
    --------
    >>> round(bachelier(-37.63, -40.0, 0.1, 0.0, 30.0, True), 6)
    5.08719
    """
    (F_, K_, T_, r_, sig), w, scalar = _prepare(
        {"F": F, "K": K, "T": T, "r": r, "sigma_n": sigma_n}, call
    )
    check("T", T_ >= 0, ">= 0")
    check("sigma_n", sig >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    return out(df * _bachelier_undiscounted(F_, K_, sig * np.sqrt(T_), w), scalar)


def black_scholes(
    S: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    q: ArrayLike,
    sigma: ArrayLike,
    call: ArrayLike,
) -> FloatOrArray:
    r"""Black-Scholes(-Merton) price of a European option on a spot asset with yield ``q``.

    Parameters
    ----------
    S : array_like
        Spot price, ``S > 0``.
    K : array_like
        Strike, ``K >= 0``.
    T : array_like
        Time to expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded risk-free rate.
    q : array_like
        Continuously compounded dividend yield / convenience yield.
    sigma : array_like
        Lognormal volatility, ``sigma >= 0``.
    call : bool or array_like of bool
        ``True`` for a call, ``False`` for a put.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf input, ``S <= 0``, ``K < 0``, ``T < 0``, ``sigma < 0``.

    Notes
    -----
    Equal to :func:`black76` with the forward :math:`F = S e^{(r-q)T}`:

    .. math::

        V = w\,[S e^{-qT} N(w d_1) - K e^{-rT} N(w d_2)],\quad
        d_1 = \frac{\ln(S/K) + (r - q + \sigma^2/2)T}{\sigma\sqrt T}.

    References
    ----------
    .. [3] F. Black, M. Scholes, J. Political Economy 81 (1973) 637-654.
    """
    (S_, K_, T_, r_, q_, sig), w, scalar = _prepare(
        {"S": S, "K": K, "T": T, "r": r, "q": q, "sigma": sigma}, call
    )
    check("S", S_ > 0, "> 0")
    check("K", K_ >= 0, ">= 0")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    F_ = S_ * np.exp((r_ - q_) * T_)
    df = np.exp(-r_ * T_)
    return out(df * _black_undiscounted(F_, K_, sig * np.sqrt(T_), w), scalar)


# --------------------------------------------------------------------------- greeks


def _theta_term(pdf_d: FloatArray, scale: FloatArray, sig: FloatArray, T: FloatArray) -> FloatArray:
    """``scale * n(d) * sigma / (2 sqrt(T))`` with the ``T -> 0`` limit (0 or +inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        num = scale * pdf_d * sig
        sq = np.sqrt(T)
        return np.asarray(
            np.where(T > 0, num / (2.0 * np.where(T > 0, sq, 1.0)), np.where(num > 0, np.inf, 0.0))
        )


def black76_greeks(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, sigma: ArrayLike, call: ArrayLike
) -> Greeks:
    r"""Black-76 greeks (forward held fixed), see :class:`Greeks` for units.

    Parameters
    ----------
    F, K, T, r, sigma, call
        As for :func:`black76`.

    Returns
    -------
    Greeks
        ``delta, gamma, vega, theta, rho``; floats when every argument is a scalar.

    Notes
    -----
    With :math:`D = e^{-rT}`, :math:`s = \sigma\sqrt T`, :math:`n` the normal density:

    .. math::

        \Delta = D\,w\,N(w d_1),\quad \Gamma = \frac{D\,n(d_1)}{F s},\quad
        \mathcal V = D\,F\,n(d_1)\sqrt T,

        \Theta = -\frac{\partial V}{\partial T} = rV - \frac{D F n(d_1)\sigma}{2\sqrt T},\quad
        \rho = -T V.

    For :math:`s = 0` the one-sided limits :math:`\sigma \to 0^+` are returned: delta is
    ``D*w`` in the money, 0 out of the money and ``D*w/2`` at the money; gamma is 0 away
    from the money and ``+inf`` at the money; theta is ``-inf`` at the money when ``T == 0``
    and ``sigma > 0``.

    References
    ----------
    .. [5] E. G. Haug, "The Complete Guide to Option Pricing Formulas" (2007), 2.1-2.4.
    """
    named = {"F": F, "K": K, "T": T, "r": r, "sigma": sigma}
    fast = _black76_kernel("greeks", named, call)
    if fast is not None:
        res, shape, scalar = fast
        return Greeks(*(out(res[g].reshape(shape), scalar) for g in range(5)))
    (F_, K_, T_, r_, sig), w, scalar = _prepare(named, call)
    check("F", F_ > 0, "> 0 for Black-76")
    check("K", K_ >= 0, ">= 0 for Black-76")
    check("T", T_ >= 0, ">= 0")
    check("sigma", sig >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    s = sig * np.sqrt(T_)
    v = df * _black_undiscounted(F_, K_, s, w)
    d1 = _black_d1(F_, K_, s)
    pdf = _npdf(d1)
    delta = df * w * ndtr(w * d1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(
            s > 0, df * pdf / (F_ * np.where(s > 0, s, 1.0)), np.where(pdf > 0, np.inf, 0.0)
        )
    vega = df * F_ * pdf * np.sqrt(T_)
    theta = r_ * v - _theta_term(pdf, df * F_, sig, T_)
    rho = -T_ * v
    return Greeks(*(out(np.asarray(g), scalar) for g in (delta, gamma, vega, theta, rho)))


def bachelier_greeks(
    F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, sigma_n: ArrayLike, call: ArrayLike
) -> Greeks:
    r"""Bachelier greeks (forward held fixed), see :class:`Greeks` for units.

    Parameters
    ----------
    F, K, T, r, sigma_n, call
        As for :func:`bachelier`.

    Returns
    -------
    Greeks
        ``delta, gamma, vega, theta, rho``; vega is per 1 price unit of ``sigma_n``.

    Notes
    -----
    With :math:`D = e^{-rT}`, :math:`s = \sigma_n\sqrt T`, :math:`d = (F-K)/s`:

    .. math::

        \Delta = D\,w\,N(w d),\quad \Gamma = \frac{D\,n(d)}{s},\quad
        \mathcal V = D\,n(d)\sqrt T,\quad
        \Theta = rV - \frac{D\,n(d)\,\sigma_n}{2\sqrt T},\quad \rho = -T V.

    The ``s = 0`` limits follow the same rules as :func:`black76_greeks`.

    References
    ----------
    .. [2] L. Bachelier (1900); see also F. Iwasawa, "Analytic formula for the European
       normal Black Scholes formula", NYU (2001).
    """
    (F_, K_, T_, r_, sig), w, scalar = _prepare(
        {"F": F, "K": K, "T": T, "r": r, "sigma_n": sigma_n}, call
    )
    check("T", T_ >= 0, ">= 0")
    check("sigma_n", sig >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    s = sig * np.sqrt(T_)
    v = df * _bachelier_undiscounted(F_, K_, s, w)
    d = _bachelier_d(F_, K_, s)
    pdf = _npdf(d)
    delta = df * w * ndtr(w * d)
    with np.errstate(divide="ignore", invalid="ignore"):
        gamma = np.where(s > 0, df * pdf / np.where(s > 0, s, 1.0), np.where(pdf > 0, np.inf, 0.0))
    vega = df * pdf * np.sqrt(T_)
    theta = r_ * v - _theta_term(pdf, df, sig, T_)
    rho = -T_ * v
    return Greeks(*(out(np.asarray(g), scalar) for g in (delta, gamma, vega, theta, rho)))


# --------------------------------------------------------------------------- implied vol


def _solve_monotone(
    f: Any,
    fprime: Any,
    target: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    x0: FloatArray,
    use_log: bool,
    max_iter: int = 200,
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Vectorised safeguarded Newton for increasing ``f`` on ``[lo, hi]`` with ``f(lo) <= target <= f(hi)``.

    With ``use_log`` Newton is applied to ``ln f - ln target`` (better conditioned for
    out-of-the-money prices that decay like ``exp(-x**2 / 2 s**2)``).  A Newton step that
    leaves the bracket, or fails to shrink it, is replaced by bisection.
    """
    x = np.clip(x0, lo, hi)
    lo = lo.copy()
    hi = hi.copy()
    done = np.zeros(x.shape, dtype=bool)
    for _ in range(max_iter):
        fx = f(x)
        err = fx - target
        conv = np.abs(err) <= 1e-13 * np.maximum(target, 1e-300) + 1e-300
        done |= conv
        lo = np.where(err < 0, x, lo)
        hi = np.where(err > 0, x, hi)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            dfx = fprime(x)
            step = (np.log(fx) - np.log(target)) * fx / dfx if use_log else err / dfx
            x_new = x - step
        bad = ~np.isfinite(x_new) | (x_new <= lo) | (x_new >= hi)
        x_new = np.where(bad, 0.5 * (lo + hi), x_new)
        width_done = (hi - lo) <= 4 * _EPS * np.maximum(hi, 1e-300)
        done |= width_done
        x = np.where(done, x, x_new)
        if done.all():
            break
    return x, done


def _reason_array(shape: tuple[int, ...]) -> NDArray[np.str_]:
    return np.full(shape, REASON_OK, dtype="<U20")


# Reason strings indexed by the implied-vol kernel's codes (``_kernels.CODE_*``).
_REASONS = (
    REASON_OK,
    REASON_AT_INTRINSIC,
    REASON_BELOW_INTRINSIC,
    REASON_ABOVE_UPPER_BOUND,
    REASON_ZERO_EXPIRY,
    REASON_NO_CONVERGENCE,
)


def _implied_vol_black76(
    price: ArrayLike,
    F: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    call: ArrayLike,
    want_reason: bool,
) -> tuple[FloatOrArray, NDArray[np.str_] | str | None]:
    """Kernel path for large input (reasons only if asked for), else the numpy path."""
    fast = _black76_kernel("iv", {"price": price, "F": F, "K": K, "T": T, "r": r}, call)
    if fast is None:
        return _implied_vol_black76_numpy(price, F, K, T, r, call)
    (vol, code), shape, scalar = fast
    if scalar:
        return float(vol[0]), _REASONS[int(code[0])]
    reason = np.array(_REASONS, dtype="<U20")[code].reshape(shape) if want_reason else None
    return vol.reshape(shape), reason


def implied_vol_black76_detail(
    price: ArrayLike, F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, call: ArrayLike
) -> tuple[FloatOrArray, NDArray[np.str_] | str]:
    r"""Black-76 implied volatility with a per-element reason code.

    Parameters
    ----------
    price : array_like
        Discounted option price.
    F, K, T, r, call
        As for :func:`black76` (``F > 0``, ``K >= 0``, ``T >= 0``).

    Returns
    -------
    vol : float or ndarray
        Implied lognormal volatility; NaN where no volatility exists.
    reason : str or ndarray of str
        One of ``"ok"``, ``"at_intrinsic"`` (vol 0), ``"below_intrinsic"``,
        ``"above_upper_bound"``, ``"zero_expiry"``, ``"no_convergence"`` (all NaN).

    Notes
    -----
    The price is undiscounted (:math:`c = V e^{rT}`) and, if in the money, converted by
    put-call parity to the out-of-the-money option of time value
    :math:`c_{otm} = c - \max(w(F-K), 0)`, which must satisfy
    :math:`0 \le c_{otm} < F` (call) or :math:`< K` (put).  The total deviation
    :math:`s = \sigma\sqrt T` is then found by a vectorised safeguarded Newton iteration
    on :math:`\ln B(s) - \ln c_{otm}` started at the inflection point
    :math:`s_0 = \sqrt{2|\ln(F/K)|}` (Jäckel [4]_) inside a bisection bracket, to a relative
    price accuracy of about ``1e-13``.  Never raises for an element outside the
    no-arbitrage bounds; invalid *inputs* (NaN, ``F <= 0`` ...) raise ``ValueError``.

    References
    ----------
    .. [4] P. Jäckel, "Let's be rational", Wilmott (2015) 40-53.
    """
    vol, reason = _implied_vol_black76(price, F, K, T, r, call, want_reason=True)
    assert reason is not None
    return vol, reason


def _implied_vol_black76_numpy(
    price: ArrayLike, F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, call: ArrayLike
) -> tuple[FloatOrArray, NDArray[np.str_] | str]:
    """The numpy implementation of :func:`implied_vol_black76_detail`."""
    (p, F_, K_, T_, r_), w, scalar = _prepare(
        {"price": price, "F": F, "K": K, "T": T, "r": r}, call
    )
    check("F", F_ > 0, "> 0 for Black-76")
    check("K", K_ >= 0, ">= 0 for Black-76")
    check("T", T_ >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    c = p / df
    intrinsic = np.maximum(w * (F_ - K_), 0.0)
    otm_w = np.where(w * (F_ - K_) > 0, -w, w)  # type of the out-of-the-money option
    tv = c - intrinsic
    upper_otm = np.where(otm_w > 0, F_, K_)
    tol = 8 * _EPS * (np.abs(c) + np.where(intrinsic > 0, np.maximum(F_, K_), 0.0))

    reason = _reason_array(p.shape)
    vol = np.full(p.shape, np.nan)
    below = tv < -tol
    at_int = ~below & (np.abs(tv) <= tol)
    above = ~below & ~at_int & (tv >= upper_otm)
    zero_t = ~below & ~above & (T_ == 0)
    reason[below] = REASON_BELOW_INTRINSIC
    reason[above] = REASON_ABOVE_UPPER_BOUND
    reason[at_int & ~zero_t] = REASON_AT_INTRINSIC
    vol[at_int & ~zero_t] = 0.0
    reason[zero_t] = REASON_ZERO_EXPIRY
    todo = ~(below | above | at_int | zero_t)

    if todo.any():
        Fs, Ks, ws, tgt = F_[todo], K_[todo], otm_w[todo], tv[todo]
        lo = np.zeros_like(tgt)
        hi = np.ones_like(tgt)
        for _ in range(64):  # grow the bracket until B(hi) >= target
            short = _black_undiscounted(Fs, Ks, hi, ws) < tgt
            if not short.any():
                break
            hi = np.where(short, 2.0 * hi, hi)
        x = np.abs(np.log(Fs / Ks))
        atm_guess = np.sqrt(2 * np.pi) * tgt / np.sqrt(Fs * Ks)
        s0 = np.where(x > 1e-8, np.sqrt(2.0 * x), atm_guess)

        def f(s: FloatArray) -> FloatArray:
            return _black_undiscounted(Fs, Ks, s, ws) - np.maximum(ws * (Fs - Ks), 0.0)

        def fp(s: FloatArray) -> FloatArray:
            return Fs * _npdf(_black_d1(Fs, Ks, s))

        s, ok = _solve_monotone(f, fp, tgt, lo, hi, s0, use_log=True)
        sq = np.sqrt(T_[todo])
        vol_t = np.where(ok, s / sq, np.nan)
        vol[todo] = vol_t
        r_t = reason[todo]
        r_t[~ok] = REASON_NO_CONVERGENCE
        reason[todo] = r_t
    if scalar:
        return float(vol), str(reason)
    return vol, reason


def implied_vol_black76(
    price: ArrayLike, F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, call: ArrayLike
) -> FloatOrArray:
    """Black-76 implied volatility; NaN for elements outside the no-arbitrage bounds.

    Parameters
    ----------
    price, F, K, T, r, call
        See :func:`implied_vol_black76_detail`, which also returns the reason for each NaN.

    Returns
    -------
    float or ndarray
        Implied lognormal volatility.
    """
    return _implied_vol_black76(price, F, K, T, r, call, want_reason=False)[0]


def implied_vol_bachelier_detail(
    price: ArrayLike, F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, call: ArrayLike
) -> tuple[FloatOrArray, NDArray[np.str_] | str]:
    r"""Bachelier (normal) implied volatility with a per-element reason code.

    Parameters
    ----------
    price : array_like
        Discounted option price.
    F, K, T, r, call
        As for :func:`bachelier` (any sign of ``F`` and ``K``).

    Returns
    -------
    vol : float or ndarray
        Implied normal volatility in price units per ``sqrt(year)``; NaN where none exists.
    reason : str or ndarray of str
        As for :func:`implied_vol_black76_detail`; ``"above_upper_bound"`` never occurs
        because the Bachelier price is unbounded in ``sigma_n``.

    Notes
    -----
    With :math:`m = |F - K|` the out-of-the-money time value
    :math:`f(s) = s\,[n(m/s) - (m/s) N(-m/s)]` is increasing in :math:`s = \sigma_n\sqrt T`
    and satisfies :math:`s\,n(0) - m/2 \le f(s) \le s\,n(0)`, which gives the bracket
    :math:`[c_{otm}/n(0),\ (c_{otm} + m/2)/n(0)]`; a safeguarded Newton iteration on
    :math:`\ln f` solves it to a relative accuracy of about ``1e-13``.
    """
    (p, F_, K_, T_, r_), w, scalar = _prepare(
        {"price": price, "F": F, "K": K, "T": T, "r": r}, call
    )
    check("T", T_ >= 0, ">= 0")
    df = np.exp(-r_ * T_)
    c = p / df
    m = F_ - K_
    intrinsic = np.maximum(w * m, 0.0)
    tv = c - intrinsic
    tol = 8 * _EPS * (np.abs(c) + np.where(intrinsic > 0, np.maximum(np.abs(F_), np.abs(K_)), 0.0))

    reason = _reason_array(p.shape)
    vol = np.full(p.shape, np.nan)
    below = tv < -tol
    at_int = ~below & (np.abs(tv) <= tol)
    zero_t = ~below & (T_ == 0)
    reason[below] = REASON_BELOW_INTRINSIC
    reason[at_int & ~zero_t] = REASON_AT_INTRINSIC
    vol[at_int & ~zero_t] = 0.0
    reason[zero_t] = REASON_ZERO_EXPIRY
    todo = ~(below | at_int | zero_t)

    if todo.any():
        am, tgt = np.abs(m[todo]), tv[todo]
        n0 = _INV_SQRT_2PI
        lo = tgt / n0 * (1 - 1e-12)
        hi = (tgt + 0.5 * am) / n0 * (1 + 1e-12)

        def f(s: FloatArray) -> FloatArray:
            d = am / s
            return np.asarray(s * (_npdf(d) - d * ndtr(-d)))

        def fp(s: FloatArray) -> FloatArray:
            return _npdf(am / s)

        s0 = np.sqrt(lo * hi)
        s, ok = _solve_monotone(f, fp, tgt, lo, hi, s0, use_log=True)
        vol[todo] = np.where(ok, s / np.sqrt(T_[todo]), np.nan)
        r_t = reason[todo]
        r_t[~ok] = REASON_NO_CONVERGENCE
        reason[todo] = r_t
    if scalar:
        return float(vol), str(reason)
    return vol, reason


def implied_vol_bachelier(
    price: ArrayLike, F: ArrayLike, K: ArrayLike, T: ArrayLike, r: ArrayLike, call: ArrayLike
) -> FloatOrArray:
    """Bachelier implied normal volatility; NaN for elements below intrinsic.

    Parameters
    ----------
    price, F, K, T, r, call
        See :func:`implied_vol_bachelier_detail`, which also returns the reason for each NaN.

    Returns
    -------
    float or ndarray
        Implied normal volatility in price units per ``sqrt(year)``.
    """
    return implied_vol_bachelier_detail(price, F, K, T, r, call)[0]


# The rest of the public option API lives in its own modules (they build on black76 above);
# served from here lazily (PEP 562) so ``app.engine.options`` is the one import for scripts
# without a circular import.
_REEXPORTS = {
    "american_black76": "app.engine.american",
    "asian_turnbull_wakeman": "app.engine.asian",
    "kirk_spread": "app.engine.spread",
    "margrabe": "app.engine.spread",
}


def __getattr__(name: str) -> Any:
    module = _REEXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
