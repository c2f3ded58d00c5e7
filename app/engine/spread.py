r"""Spread options on two futures prices: Kirk's approximation and Margrabe's exchange option.

Used for crack spreads (products minus crude), spark spreads (power minus heat rate
times gas) and location/calendar spreads.  Both futures follow correlated Black-76
dynamics :math:`dF_k = \sigma_k F_k\,dW_k`, :math:`d\langle W_1, W_2\rangle = \rho\,dt`;
the call pays :math:`\max(F_1(T) - F_2(T) - K, 0)` at ``T`` and the put
:math:`\max(K - F_1(T) + F_2(T), 0)`.  (Scale ``F2`` by a heat rate or yield before
calling.)

All functions broadcast their numeric arguments (and ``call``); with all-scalar input the
result is a ``float``.

References
----------
.. [1] W. Margrabe, "The value of an option to exchange one asset for another",
   Journal of Finance 33 (1978) 177-186.
.. [2] E. Kirk, "Correlation in the energy markets", in Managing Energy Price Risk,
   Risk Publications (1995) 71-78.
.. [3] E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed.,
   McGraw-Hill (2007), sections 5.1 and 5.13.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine._inputs import broadcast, check
from app.engine.options import black76

__all__ = ["kirk_spread", "margrabe"]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray


def _prepare(
    named: dict[str, ArrayLike], call: ArrayLike
) -> tuple[list[FloatArray], NDArray[np.bool_], bool]:
    out_f, is_call, scalar = broadcast(named, call)
    named_out = dict(zip(named, out_f, strict=True))
    check("F1", named_out["F1"] > 0, "> 0")
    check("F2", named_out["F2"] > 0, "> 0")
    check("T", named_out["T"] >= 0, ">= 0")
    check("sigma1", named_out["sigma1"] >= 0, ">= 0")
    check("sigma2", named_out["sigma2"] >= 0, ">= 0")
    rho = named_out["rho"]
    check("rho", (rho >= -1.0) & (rho <= 1.0), "in [-1, 1]")
    return out_f, is_call, scalar


def _exchange(
    F1: FloatArray,
    X: FloatArray,
    T: FloatArray,
    r: FloatArray,
    sigma1: FloatArray,
    sigma2: FloatArray,
    rho: FloatArray,
    weight: FloatArray,
    call: NDArray[np.bool_],
    scalar: bool,
) -> FloatOrArray:
    """Black-76 on ``F1`` struck at ``X`` with the Kirk/Margrabe ratio volatility."""
    var = sigma1 * sigma1 - 2.0 * rho * sigma1 * sigma2 * weight + (sigma2 * weight) ** 2
    vol = np.sqrt(np.maximum(var, 0.0))
    price = np.asarray(black76(F1, X, T, r, vol, call), dtype=np.float64)
    return float(price) if scalar else price


def kirk_spread(
    F1: ArrayLike,
    F2: ArrayLike,
    K: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma1: ArrayLike,
    sigma2: ArrayLike,
    rho: ArrayLike,
    call: ArrayLike,
) -> FloatOrArray:
    r"""Kirk's approximation for a spread option on two futures prices.

    Parameters
    ----------
    F1, F2 : array_like
        Futures prices of the long and short legs, ``> 0``.
    K : array_like
        Spread strike; may be negative provided ``F2 + K > 0``.
    T : array_like
        Expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate.
    sigma1, sigma2 : array_like
        Lognormal volatilities, ``>= 0``.
    rho : array_like
        Correlation of the two futures' returns, ``-1 <= rho <= 1``.
    call : bool or array_like of bool
        ``True`` for a call on the spread ``F1 - F2 - K``, ``False`` for a put.

    Returns
    -------
    float or ndarray
        Option value; a ``float`` when every argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf, ``F1 <= 0``, ``F2 <= 0``, ``F2 + K <= 0``, ``T < 0``, negative
        volatility, ``|rho| > 1``, non-boolean ``call`` or non-broadcasting arguments.

    Notes
    -----
    :math:`F_2 + K` is treated as a single lognormal asset, giving an exchange option
    priced with Black-76 on the ratio :math:`F_1/(F_2 + K)`:

    .. math::

        w = \frac{F_2}{F_2 + K},\qquad
        \sigma^2 = \sigma_1^2 - 2\rho\sigma_1\sigma_2 w + \sigma_2^2 w^2,

        C = e^{-rT}[F_1 N(d_1) - (F_2 + K) N(d_2)],\quad
        d_{1,2} = \frac{\ln(F_1/(F_2+K)) \pm \sigma^2 T/2}{\sigma\sqrt T},

    and the put by put-call parity,
    :math:`P = C - e^{-rT}(F_1 - F_2 - K)`.  For ``K == 0`` this is exactly
    :func:`margrabe`.  The approximation error grows with :math:`|K|` relative to
    :math:`F_2` and with the volatilities (typically well below 1 % of the price for
    energy spreads).

    References
    ----------
    .. [1] E. Kirk (1995); E. G. Haug (2007), section 5.13.2.

    Examples
    --------
    >>> round(kirk_spread(122.0, 120.0, 3.0, 0.1, 0.1, 0.2, 0.2, -0.5, True), 4)
    4.753
    """
    (F1_, F2_, K_, T_, r_, s1, s2, rho_), is_call, scalar = _prepare(
        {
            "F1": F1,
            "F2": F2,
            "K": K,
            "T": T,
            "r": r,
            "sigma1": sigma1,
            "sigma2": sigma2,
            "rho": rho,
        },
        call,
    )
    X = F2_ + K_
    check("K", X > 0, "> -F2 (Kirk needs F2 + K > 0)")
    return _exchange(F1_, X, T_, r_, s1, s2, rho_, F2_ / X, is_call, scalar)


def margrabe(
    F1: ArrayLike,
    F2: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma1: ArrayLike,
    sigma2: ArrayLike,
    rho: ArrayLike,
    call: ArrayLike,
) -> FloatOrArray:
    r"""Margrabe's exchange option on two futures prices (spread option with zero strike).

    Parameters
    ----------
    F1, F2 : array_like
        Futures prices, ``> 0``.
    T : array_like
        Expiry in years, ``T >= 0``.
    r : array_like
        Continuously compounded discount rate (the premium is paid today, the payoff at
        ``T``).
    sigma1, sigma2 : array_like
        Lognormal volatilities, ``>= 0``.
    rho : array_like
        Correlation, ``-1 <= rho <= 1``.
    call : bool or array_like of bool
        ``True``: receive ``max(F1 - F2, 0)``; ``False``: ``max(F2 - F1, 0)``.

    Returns
    -------
    float or ndarray
        Option value.

    Raises
    ------
    ValueError
        As :func:`kirk_spread` (without the strike condition).

    Notes
    -----
    .. math::

        C = e^{-rT}[F_1 N(d_1) - F_2 N(d_2)],\quad
        \sigma^2 = \sigma_1^2 - 2\rho\sigma_1\sigma_2 + \sigma_2^2,\quad
        d_{1,2} = \frac{\ln(F_1/F_2) \pm \sigma^2T/2}{\sigma\sqrt T}.

    This is exact under the model (change of numéraire to :math:`F_2`).

    References
    ----------
    .. [1] W. Margrabe, J. Finance 33 (1978) 177-186.
    """
    (F1_, F2_, T_, r_, s1, s2, rho_), is_call, scalar = _prepare(
        {"F1": F1, "F2": F2, "T": T, "r": r, "sigma1": sigma1, "sigma2": sigma2, "rho": rho},
        call,
    )
    return _exchange(F1_, F2_, T_, r_, s1, s2, rho_, np.ones_like(F1_), is_call, scalar)
