"""Structured products: named compositions of European options and forwards (swaps).

A :class:`StructuredProduct` is a named tuple of :class:`Leg` objects.  Each leg is a
European call, a European put or a forward/swap on the same underlying forward price
``F``, with a signed quantity (``+`` long, ``-`` short), an optional expiry that
overrides the product expiry, and a pricing model (``"black76"`` or ``"bachelier"``).

:func:`price` and :func:`greeks` are sums over the legs of :func:`~app.engine.options.black76`
/ :func:`~app.engine.options.bachelier` (and their greeks) with a closed form for forward
legs; :func:`payoff` is the expiry payoff and :func:`breakevens` its break-even prices.

Conventions
-----------
* Same as :mod:`app.engine.options`: ``T`` in years (``T >= 0``), ``r`` continuously
  compounded, discount factor ``df = exp(-r * T)``, ``sigma`` the lognormal (Black) and
  ``sigma_n`` the normal (Bachelier) volatility.
* Values are from the holder's side: a positive price is a premium the holder pays.
* Every leg is settled at its own expiry (the leg's ``expiry`` if set, else the product
  ``T``) and discounted from there.
* A forward leg pays ``quantity * (F_T - K)`` at expiry, so its value is
  ``quantity * df * (F - K)`` whatever the model or the volatility.
* Numeric arguments of :func:`price` and :func:`greeks` broadcast together; the result is
  a ``float`` when they are all scalars, otherwise an :class:`numpy.ndarray`.
* Bad input raises :class:`ValueError` naming the argument.

Constructor conventions (``qty > 0`` is the volume; :meth:`StructuredProduct.scaled`
with ``-1`` takes the other side of any product):

==========================  ===============================================================
``collar`` (producer)       long put ``K_put``, short call ``K_call`` (``K_put <= K_call``)
``collar`` (consumer)       long call ``K_call``, short put ``K_put``
``three_way``               long put ``K_put_high``, short put ``K_put_low``, short call
                            ``K_call`` (``K_put_low < K_put_high <= K_call``): a producer
                            collar that sells away the protection below ``K_put_low``
``call_spread``             long call ``K1``, short call ``K2`` (``K1 < K2``, bull spread)
``put_spread``              long put ``K2``, short put ``K1`` (``K1 < K2``, bear spread)
``participating_swap``      long forward at ``K_swap`` plus ``1 - participation`` long puts at
                            ``K_swap``: payoff ``qty*(F-K) + qty*(1-p)*max(K-F, 0)``
==========================  ===============================================================

References
----------
.. [1] F. Black, "The pricing of commodity contracts", Journal of Financial Economics
   3 (1976) 167-179.
.. [2] J. C. Hull, "Options, Futures, and Other Derivatives", 10th ed., Pearson (2018),
   chapter 12 (trading strategies involving options).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.options import Greeks, bachelier, bachelier_greeks, black76, black76_greeks

__all__ = [
    "KINDS",
    "MODELS",
    "Leg",
    "StructuredProduct",
    "breakevens",
    "greeks",
    "payoff",
    "price",
]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray

LegKind = Literal["call", "put", "forward"]
Model = Literal["black76", "bachelier"]

#: Allowed values of :attr:`Leg.kind`.
KINDS: tuple[str, ...] = ("call", "put", "forward")
#: Allowed values of :attr:`Leg.model`.
MODELS: tuple[str, ...] = ("black76", "bachelier")


# --------------------------------------------------------------------------- helpers


def _finite_scalar(name: str, value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real number, got {value!r}") from exc
    if not np.isfinite(x):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x


def _positive(name: str, value: object) -> float:
    x = _finite_scalar(name, value)
    if x <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return x


def _as_float(name: str, value: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return arr


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Leg:
    """One leg of a structured product.

    Parameters
    ----------
    kind : {"call", "put", "forward"}
        European call, European put, or forward/swap paying ``F - strike`` at expiry.
    strike : float
        Strike ``K`` (fixed price of a forward leg).  ``K >= 0`` for Black-76 option legs;
        any sign for Bachelier and forward legs.
    quantity : float
        Signed quantity: ``+`` long, ``-`` short.
    expiry : float or None, optional
        Expiry in years (``>= 0``) overriding the product expiry ``T``; ``None`` (default)
        uses the ``T`` passed to :func:`price`.
    model : {"black76", "bachelier"}, optional
        Pricing model of an option leg (default ``"black76"``); irrelevant for forwards.

    Raises
    ------
    ValueError
        On an unknown ``kind`` or ``model``, a non-finite ``strike`` or ``quantity``, a
        negative or non-finite ``expiry``, or ``strike < 0`` on a Black-76 option leg.
    """

    kind: LegKind
    strike: float
    quantity: float
    expiry: float | None = None
    model: Model = "black76"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        strike = _finite_scalar("strike", self.strike)
        if self.kind != "forward" and self.model == "black76" and strike < 0:
            raise ValueError(f"strike must be >= 0 for a Black-76 option leg, got {strike!r}")
        object.__setattr__(self, "strike", strike)
        object.__setattr__(self, "quantity", _finite_scalar("quantity", self.quantity))
        if self.expiry is not None:
            expiry = _finite_scalar("expiry", self.expiry)
            if expiry < 0:
                raise ValueError(f"expiry must be >= 0, got {expiry!r}")
            object.__setattr__(self, "expiry", expiry)

    @property
    def is_option(self) -> bool:
        """``True`` for a call or a put, ``False`` for a forward."""
        return self.kind != "forward"

    def scaled(self, factor: float) -> Leg:
        """Return a copy with ``quantity * factor``."""
        q = self.quantity * _finite_scalar("factor", factor)
        return Leg(self.kind, self.strike, q, self.expiry, self.model)

    def payoff(self, F: ArrayLike) -> FloatOrArray:
        """Expiry payoff ``quantity * max(w (F - K), 0)`` (option) or ``quantity * (F - K)``.

        Parameters
        ----------
        F : array_like
            Underlying price at expiry.

        Returns
        -------
        float or ndarray
            Payoff; a ``float`` for a scalar ``F``.
        """
        F_ = _as_float("F", F)
        m = F_ - self.strike
        if self.kind == "call":
            v = np.maximum(m, 0.0)
        elif self.kind == "put":
            v = np.maximum(-m, 0.0)
        else:
            v = m
        out = self.quantity * np.asarray(v, dtype=np.float64)
        return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class StructuredProduct:
    """A named composition of :class:`Leg` objects.

    Parameters
    ----------
    name : str
        Non-empty product name.
    legs : iterable of Leg
        At least one leg; stored as a tuple.

    Raises
    ------
    ValueError
        On an empty name, no legs or an element that is not a :class:`Leg`.

    Examples
    --------
    >>> p = StructuredProduct.collar(60.0, 80.0, 1000.0)
    >>> [(leg.kind, leg.strike, leg.quantity) for leg in p.legs]
    [('put', 60.0, 1000.0), ('call', 80.0, -1000.0)]
    """

    name: str
    legs: tuple[Leg, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        try:
            legs = tuple(self.legs)
        except TypeError as exc:
            raise ValueError("legs must be an iterable of Leg") from exc
        if not legs:
            raise ValueError("legs must contain at least one Leg")
        for i, leg in enumerate(legs):
            if not isinstance(leg, Leg):
                raise ValueError(f"legs[{i}] must be a Leg, got {type(leg).__name__}")
        object.__setattr__(self, "legs", legs)

    # ----------------------------------------------------------------- helpers

    @property
    def strikes(self) -> tuple[float, ...]:
        """Sorted distinct strikes of the legs."""
        return tuple(sorted({leg.strike for leg in self.legs}))

    def scaled(self, factor: float) -> StructuredProduct:
        """Return the product with every quantity multiplied by ``factor`` (``-1``: other side)."""
        return StructuredProduct(self.name, tuple(leg.scaled(factor) for leg in self.legs))

    # ----------------------------------------------------------------- constructors

    @classmethod
    def custom(cls, name: str, legs: Iterable[Leg]) -> StructuredProduct:
        """Product from arbitrary legs (same as the constructor)."""
        return cls(name, tuple(legs))

    @classmethod
    def collar(
        cls,
        K_put: float,
        K_call: float,
        qty: float,
        *,
        producer: bool = True,
        model: Model = "black76",
        name: str | None = None,
    ) -> StructuredProduct:
        """Collar: producer (long put, short call) or consumer (long call, short put).

        Parameters
        ----------
        K_put, K_call : float
            Put and call strikes, ``K_put <= K_call`` (equal strikes give a forward).
        qty : float
            Volume, ``> 0``.
        producer : bool, optional
            ``True`` (default): long put ``K_put`` + short call ``K_call`` — the producer
            hedge, a floor paid for by a cap.  ``False``: the consumer collar, long call
            ``K_call`` + short put ``K_put`` (``== producer collar scaled by -1``).
        model : {"black76", "bachelier"}, optional
            Model of both legs.
        name : str, optional
            Product name (default ``"producer collar"`` / ``"consumer collar"``).

        Returns
        -------
        StructuredProduct

        Raises
        ------
        ValueError
            If ``K_put > K_call``, ``qty <= 0`` or an argument is not finite.
        """
        kp = _finite_scalar("K_put", K_put)
        kc = _finite_scalar("K_call", K_call)
        q = _positive("qty", qty)
        if kp > kc:
            raise ValueError(f"K_put must be <= K_call, got K_put={kp!r} > K_call={kc!r}")
        s = 1.0 if producer else -1.0
        legs = (Leg("put", kp, s * q, model=model), Leg("call", kc, -s * q, model=model))
        default = "producer collar" if producer else "consumer collar"
        return cls(name or default, legs)

    @classmethod
    def three_way(
        cls,
        K_put_low: float,
        K_put_high: float,
        K_call: float,
        qty: float,
        *,
        model: Model = "black76",
        name: str | None = None,
    ) -> StructuredProduct:
        """Producer three-way collar: put spread bought, financed by a sold call.

        Long put ``K_put_high``, short put ``K_put_low``, short call ``K_call``.  The
        producer is protected between ``K_put_low`` and ``K_put_high`` (at most
        ``K_put_high - K_put_low`` per unit), gives up upside above ``K_call`` and is
        unhedged below ``K_put_low``.  Equivalent to a producer collar
        ``(K_put_high, K_call)`` plus a sold put ``K_put_low``.

        Parameters
        ----------
        K_put_low, K_put_high, K_call : float
            Strikes, ``K_put_low < K_put_high <= K_call``.
        qty : float
            Volume, ``> 0``.
        model : {"black76", "bachelier"}, optional
            Model of every leg.
        name : str, optional
            Product name (default ``"three-way collar"``).

        Returns
        -------
        StructuredProduct

        Raises
        ------
        ValueError
            On strikes out of order, ``qty <= 0`` or a non-finite argument.
        """
        lo = _finite_scalar("K_put_low", K_put_low)
        hi = _finite_scalar("K_put_high", K_put_high)
        kc = _finite_scalar("K_call", K_call)
        q = _positive("qty", qty)
        if not lo < hi:
            raise ValueError(f"K_put_low must be < K_put_high, got {lo!r} >= {hi!r}")
        if hi > kc:
            raise ValueError(f"K_put_high must be <= K_call, got {hi!r} > {kc!r}")
        legs = (
            Leg("put", hi, q, model=model),
            Leg("put", lo, -q, model=model),
            Leg("call", kc, -q, model=model),
        )
        return cls(name or "three-way collar", legs)

    @classmethod
    def call_spread(
        cls,
        K1: float,
        K2: float,
        qty: float,
        *,
        model: Model = "black76",
        name: str | None = None,
    ) -> StructuredProduct:
        """Bull call spread: long call ``K1``, short call ``K2`` with ``K1 < K2``.

        Parameters
        ----------
        K1, K2 : float
            Lower (bought) and upper (sold) strikes, ``K1 < K2``.
        qty : float
            Volume, ``> 0``.
        model : {"black76", "bachelier"}, optional
            Model of both legs.
        name : str, optional
            Product name (default ``"call spread"``).

        Returns
        -------
        StructuredProduct

        Raises
        ------
        ValueError
            If ``K1 >= K2``, ``qty <= 0`` or an argument is not finite.
        """
        k1 = _finite_scalar("K1", K1)
        k2 = _finite_scalar("K2", K2)
        q = _positive("qty", qty)
        if not k1 < k2:
            raise ValueError(f"K1 must be < K2, got K1={k1!r} >= K2={k2!r}")
        legs = (Leg("call", k1, q, model=model), Leg("call", k2, -q, model=model))
        return cls(name or "call spread", legs)

    @classmethod
    def put_spread(
        cls,
        K1: float,
        K2: float,
        qty: float,
        *,
        model: Model = "black76",
        name: str | None = None,
    ) -> StructuredProduct:
        """Bear put spread: long put ``K2``, short put ``K1`` with ``K1 < K2``.

        Parameters
        ----------
        K1, K2 : float
            Lower (sold) and upper (bought) strikes, ``K1 < K2``.
        qty : float
            Volume, ``> 0``.
        model : {"black76", "bachelier"}, optional
            Model of both legs.
        name : str, optional
            Product name (default ``"put spread"``).

        Returns
        -------
        StructuredProduct

        Raises
        ------
        ValueError
            If ``K1 >= K2``, ``qty <= 0`` or an argument is not finite.
        """
        k1 = _finite_scalar("K1", K1)
        k2 = _finite_scalar("K2", K2)
        q = _positive("qty", qty)
        if not k1 < k2:
            raise ValueError(f"K1 must be < K2, got K1={k1!r} >= K2={k2!r}")
        legs = (Leg("put", k2, q, model=model), Leg("put", k1, -q, model=model))
        return cls(name or "put spread", legs)

    @classmethod
    def participating_swap(
        cls,
        K_swap: float,
        participation: float,
        qty: float,
        *,
        model: Model = "black76",
        name: str | None = None,
    ) -> StructuredProduct:
        """Participating (consumer) swap: full protection above ``K_swap``, share of the downside.

        Long forward at ``K_swap`` plus ``(1 - participation)`` long puts at ``K_swap``;
        expiry payoff ``qty*(F-K) + qty*(1-p)*max(K-F, 0)``: the buyer gains ``F - K`` in
        full above ``K`` and bears only ``p * (K - F)`` below it (``p = 1`` is a plain swap,
        ``p = 0`` a long call).  In the market ``K_swap`` is set above the plain swap rate so
        that the product costs nothing; here ``K_swap`` is an input and :func:`price` gives
        the resulting value.

        Parameters
        ----------
        K_swap : float
            Swap (forward) price.
        participation : float
            Share ``p`` of the downside borne by the buyer, ``0 <= p <= 1``.
        qty : float
            Volume, ``> 0``.
        model : {"black76", "bachelier"}, optional
            Model of the put leg.
        name : str, optional
            Product name (default ``"participating swap"``).

        Returns
        -------
        StructuredProduct
            Forward leg, plus a put leg unless ``participation == 1``.

        Raises
        ------
        ValueError
            If ``participation`` is outside ``[0, 1]``, ``qty <= 0`` or an argument is not
            finite.
        """
        k = _finite_scalar("K_swap", K_swap)
        p = _finite_scalar("participation", participation)
        q = _positive("qty", qty)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"participation must be in [0, 1], got {p!r}")
        legs = [Leg("forward", k, q, model=model)]
        if p < 1.0:
            legs.append(Leg("put", k, q * (1.0 - p), model=model))
        return cls(name or "participating swap", tuple(legs))


# --------------------------------------------------------------------------- pricing


def _market(
    product: StructuredProduct,
    F: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike | None,
    sigma_n: ArrayLike | None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, bool]:
    """Validate and broadcast market inputs; missing volatilities become 0 (unused)."""
    if not isinstance(product, StructuredProduct):
        raise ValueError(f"product must be a StructuredProduct, got {type(product).__name__}")
    models = {leg.model for leg in product.legs if leg.is_option}
    if "black76" in models and sigma is None:
        raise ValueError("sigma is required: the product has Black-76 option legs")
    if "bachelier" in models and sigma_n is None:
        raise ValueError("sigma_n is required: the product has Bachelier option legs")
    named = {
        "F": _as_float("F", F),
        "T": _as_float("T", T),
        "r": _as_float("r", r),
        "sigma": _as_float("sigma", 0.0 if sigma is None else sigma),
        "sigma_n": _as_float("sigma_n", 0.0 if sigma_n is None else sigma_n),
    }
    scalar = all(a.ndim == 0 for a in named.values())
    if np.any(named["T"] < 0):
        raise ValueError("T must be >= 0")
    if np.any(named["sigma"] < 0):
        raise ValueError("sigma must be >= 0")
    if np.any(named["sigma_n"] < 0):
        raise ValueError("sigma_n must be >= 0")
    if "black76" in models and np.any(named["F"] <= 0):
        raise ValueError("F must be > 0 for Black-76 option legs")
    try:
        F_, T_, r_, s_, sn_ = np.broadcast_arrays(*named.values())
    except ValueError as exc:
        raise ValueError(f"arguments do not broadcast together: {exc}") from exc
    return F_, T_, r_, s_, sn_, scalar


def _leg_T(leg: Leg, T: FloatArray) -> FloatArray:
    return T if leg.expiry is None else np.full_like(T, leg.expiry)


def _out(x: FloatArray, scalar: bool) -> FloatOrArray:
    return float(x) if scalar else np.asarray(x, dtype=np.float64)


def price(
    product: StructuredProduct,
    F: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike | None,
    sigma_n: ArrayLike | None = None,
) -> FloatOrArray:
    r"""Present value of a structured product: the sum of its legs.

    Parameters
    ----------
    product : StructuredProduct
        The product.
    F : array_like
        Forward price of the underlying (``> 0`` if any option leg is Black-76).
    T : array_like
        Product expiry in years, ``T >= 0`` (legs with their own ``expiry`` ignore it).
    r : array_like
        Continuously compounded discount rate.
    sigma : array_like or None
        Lognormal volatility for Black-76 option legs (required if there are any).
    sigma_n : array_like or None, optional
        Normal volatility for Bachelier option legs (required if there are any).

    Returns
    -------
    float or ndarray
        Value to the holder; a ``float`` when every numeric argument is a scalar.

    Raises
    ------
    ValueError
        On NaN/inf input, ``T < 0``, negative volatility, a missing volatility,
        ``F <= 0`` with Black-76 option legs, or arguments that do not broadcast.

    Notes
    -----
    .. math::

        V = \sum_i q_i\, V_i,\qquad V_i = \begin{cases}
        e^{-r T_i}(F - K_i) & \text{forward} \\
        \text{black76 / bachelier}(F, K_i, T_i, r, \sigma, w_i) & \text{option}
        \end{cases}

    Examples
    --------
    >>> p = StructuredProduct.collar(100.0, 100.0, 1.0)  # long put - call = short forward
    >>> round(price(p, 90.0, 1.0, 0.0, 0.3), 12)
    10.0
    """
    F_, T_, r_, s_, sn_, scalar = _market(product, F, T, r, sigma, sigma_n)
    total = np.zeros(F_.shape)
    for leg in product.legs:
        Tl = _leg_T(leg, T_)
        if leg.kind == "forward":
            v = np.exp(-r_ * Tl) * (F_ - leg.strike)
        elif leg.model == "black76":
            v = np.asarray(black76(F_, leg.strike, Tl, r_, s_, leg.kind == "call"))
        else:
            v = np.asarray(bachelier(F_, leg.strike, Tl, r_, sn_, leg.kind == "call"))
        total = total + leg.quantity * v
    return _out(total, scalar)


def greeks(
    product: StructuredProduct,
    F: ArrayLike,
    T: ArrayLike,
    r: ArrayLike,
    sigma: ArrayLike | None,
    sigma_n: ArrayLike | None = None,
) -> Greeks:
    r"""Greeks of a structured product: quantity-weighted sums over the legs.

    Parameters
    ----------
    product, F, T, r, sigma, sigma_n
        As for :func:`price`.

    Returns
    -------
    Greeks
        ``delta, gamma, vega, theta, rho`` in the units of :class:`~app.engine.options.Greeks`;
        floats when every numeric argument is a scalar.  ``vega`` is ``dV/dsigma`` for
        Black-76 products and ``dV/dsigma_n`` for Bachelier products.

    Raises
    ------
    ValueError
        As for :func:`price`; also when the option legs mix Black-76 and Bachelier
        (their vegas have different units and cannot be added).

    Notes
    -----
    A forward leg :math:`V = q e^{-rT}(F-K)` has :math:`\Delta = q e^{-rT}`,
    :math:`\Gamma = \mathcal V = 0`, :math:`\Theta = -\partial V/\partial T = rV` and
    :math:`\rho = -TV`.  Theta is the decay as calendar time passes, so every leg's
    expiry (overridden or not) shortens together.

    Option legs with the same strike, expiry and model share gamma, vega and the
    time-decay part of theta (equal for calls and puts); these are computed once with the
    net quantity, so offsetting legs cancel exactly, e.g. a collar with equal strikes (a
    short forward) has zero gamma even at the money at expiry, where each leg alone has
    an infinite gamma.  Other ``s = 0`` limits follow
    :func:`~app.engine.options.black76_greeks`.
    """
    models = {leg.model for leg in product.legs if leg.is_option}
    if len(models) > 1:
        raise ValueError(
            "product mixes black76 and bachelier option legs: their vegas have different "
            "units; compute greeks of each model's legs separately"
        )
    F_, T_, r_, s_, sn_, scalar = _market(product, F, T, r, sigma, sigma_n)
    delta, gamma, vega, theta, rho = (np.zeros(F_.shape) for _ in range(5))
    # Option legs are grouped by (strike, expiry, model): calls and puts of a group share
    # gamma, vega and the time-decay part of theta, which are taken once with the net
    # quantity, so opposite legs cancel exactly (no inf - inf at the money at expiry).
    groups: dict[tuple[float, float | None, str], list[Leg]] = {}
    for leg in product.legs:
        Tl = _leg_T(leg, T_)
        if leg.kind == "forward":
            df = np.exp(-r_ * Tl)
            v = leg.quantity * df * (F_ - leg.strike)
            delta = delta + leg.quantity * df
            theta = theta + r_ * v
            rho = rho - Tl * v
        else:
            groups.setdefault((leg.strike, leg.expiry, leg.model), []).append(leg)
    for (K, expiry, model), legs in groups.items():
        Tl = T_ if expiry is None else np.full_like(T_, expiry)
        vol = s_ if model == "black76" else sn_
        fn_g = black76_greeks if model == "black76" else bachelier_greeks
        fn_v = black76 if model == "black76" else bachelier
        by_kind = {
            leg.kind: (
                fn_g(F_, K, Tl, r_, vol, leg.kind == "call"),
                np.asarray(fn_v(F_, K, Tl, r_, vol, leg.kind == "call")),
            )
            for leg in legs
        }
        for leg in legs:
            g, v = by_kind[leg.kind]
            delta = delta + leg.quantity * np.asarray(g.delta)
            rho = rho + leg.quantity * np.asarray(g.rho)
            theta = theta + leg.quantity * r_ * v
        net = math.fsum(leg.quantity for leg in legs)
        if abs(net) > 1e-12 * math.fsum(abs(leg.quantity) for leg in legs):
            g, v = next(iter(by_kind.values()))
            gamma = gamma + net * np.asarray(g.gamma)
            vega = vega + net * np.asarray(g.vega)
            theta = theta + net * (np.asarray(g.theta) - r_ * v)
    acc = (delta, gamma, vega, theta, rho)
    return Greeks(*(_out(a, scalar) for a in acc))


def payoff(product: StructuredProduct, F_grid: ArrayLike) -> FloatOrArray:
    """Undiscounted expiry payoff of the product on a grid of underlying prices.

    Every leg is evaluated at the same underlying price (for legs with different expiries
    this is the payoff profile if the price is the same on each expiry date).

    Parameters
    ----------
    product : StructuredProduct
        The product.
    F_grid : array_like
        Underlying prices at expiry (any shape; any sign).

    Returns
    -------
    float or ndarray
        ``sum_i q_i * payoff_i(F)``; a ``float`` for a scalar ``F_grid``.

    Raises
    ------
    ValueError
        If ``F_grid`` contains NaN or infinity, or ``product`` is not a StructuredProduct.
    """
    if not isinstance(product, StructuredProduct):
        raise ValueError(f"product must be a StructuredProduct, got {type(product).__name__}")
    F_ = _as_float("F_grid", F_grid)
    total = np.zeros(F_.shape)
    for leg in product.legs:
        total = total + np.asarray(leg.payoff(F_))
    return _out(total, F_.ndim == 0)


def breakevens(product: StructuredProduct, premium: float, F_grid: ArrayLike) -> FloatArray:
    """Underlying prices at which the expiry payoff equals the premium paid.

    Solves ``payoff(F) == premium`` on ``[min(F_grid), max(F_grid)]``.  The payoff is
    piecewise linear with kinks only at the strikes, so the grid is refined with the
    strikes inside the range and the roots found by linear interpolation are exact
    (up to rounding) whatever the grid spacing.

    Parameters
    ----------
    product : StructuredProduct
        The product.
    premium : float
        Premium paid by the holder, in expiry money (e.g. ``price(...) * exp(r * T)``);
        negative for a premium received.
    F_grid : array_like
        At least two distinct underlying prices delimiting the search range.

    Returns
    -------
    ndarray
        Sorted break-even prices (empty if none in the range).  Where the net payoff is
        zero on a whole segment, the segment's end points are returned.

    Raises
    ------
    ValueError
        On a non-finite ``premium`` or ``F_grid`` or fewer than two distinct grid points.
    """
    prem = _finite_scalar("premium", premium)
    grid = np.unique(_as_float("F_grid", F_grid).ravel())
    if grid.size < 2:
        raise ValueError("F_grid must contain at least two distinct prices")
    ks = np.array(product.strikes)
    x = np.unique(np.concatenate([grid, ks[(ks > grid[0]) & (ks < grid[-1])]]))
    y = np.asarray(payoff(product, x)) - prem
    tol = 64 * np.finfo(float).eps * (np.abs(prem) + np.max(np.abs(y + prem)) + 1.0)
    y = np.where(np.abs(y) <= tol, 0.0, y)
    roots = list(x[y == 0.0])
    cross = np.nonzero(y[:-1] * y[1:] < 0)[0]
    for i in cross:
        roots.append(x[i] - y[i] * (x[i + 1] - x[i]) / (y[i + 1] - y[i]))
    return np.unique(np.asarray(roots, dtype=np.float64))
