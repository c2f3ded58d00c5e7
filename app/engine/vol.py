"""Implied volatility smiles (raw SVI), static-arbitrage checks and a volatility surface.

Conventions
-----------
* ``T`` is the time to expiry in years (``T > 0``); ``k = ln(K / F)`` is the log-moneyness.
* ``w(k) = sigma_imp(k)**2 * T`` is the total implied variance.
* Vectorised like :mod:`app.engine.options`: numeric arguments may be scalars or arrays and
  are broadcast together; a ``float`` is returned when every argument is a scalar.
* Bad input (NaN or infinity, ``T <= 0``, ``K <= 0``, ``F <= 0``, SVI parameters outside
  their domain) raises :class:`ValueError` naming the argument.

References
----------
.. [1] J. Gatheral, "A parsimonious arbitrage-free implied volatility parameterization with
   application to the valuation of volatility derivatives", Global Derivatives (2004).
.. [2] J. Gatheral, A. Jacquier, "Arbitrage-free SVI volatility surfaces", Quantitative
   Finance 14 (2014) 59-71 (butterfly function ``g``, Vogt's counter-example).
.. [3] Z. Zeliade Systems, "Quasi-explicit calibration of Gatheral's SVI model", white
   paper ZWP-0005 (2009) (S. De Marco, C. Martini).
.. [4] R. Lee, "The moment formula for implied volatility at extreme strikes",
   Mathematical Finance 14 (2004) 469-480.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import least_squares, lsq_linear, minimize

from app.engine._inputs import as_float, out

__all__ = [
    "SVIFit",
    "SVIParams",
    "VolSurface",
    "butterfly_density_g",
    "calendar_arbitrage",
    "fit_svi",
]

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray

#: Default log-moneyness grid for the arbitrage checks.
DEFAULT_K_GRID: FloatArray = np.linspace(-2.0, 2.0, 401)
_RHO_MAX = 1.0 - 1e-10


# --------------------------------------------------------------------------- helpers


def _scalar(name: str, value: float) -> float:
    arr = as_float(name, value)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar")
    return float(arr)


def _check(name: str, ok: NDArray[np.bool_] | bool, what: str) -> None:
    if not np.all(ok):
        raise ValueError(f"{name} must be {what}")


# --------------------------------------------------------------------------- SVI


@dataclass(frozen=True)
class SVIParams:
    r"""Raw SVI parameters of one smile (Gatheral 2004).

    .. math:: w(k) = a + b\,\bigl(\rho(k - m) + \sqrt{(k - m)^2 + \sigma^2}\bigr)

    Attributes
    ----------
    a : float
        Level of total variance.
    b : float
        Wing slope scale, ``b >= 0``.
    rho : float
        Skew / rotation, ``|rho| < 1``.
    m : float
        Horizontal translation (log-moneyness of the vertex).
    sigma : float
        ATM curvature, ``sigma > 0``.

    Raises
    ------
    ValueError
        On NaN/inf, ``b < 0``, ``|rho| >= 1``, ``sigma <= 0`` or a negative minimum total
        variance ``a + b sigma sqrt(1 - rho^2) < 0``.
    """

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def __post_init__(self) -> None:
        for name in ("a", "b", "rho", "m", "sigma"):
            object.__setattr__(self, name, _scalar(name, getattr(self, name)))
        _check("b", self.b >= 0, ">= 0")
        _check("rho", abs(self.rho) < 1, "in (-1, 1)")
        _check("sigma", self.sigma > 0, "> 0")
        if self.min_total_variance < -1e-14:
            raise ValueError("a must satisfy a + b*sigma*sqrt(1 - rho^2) >= 0")

    @property
    def min_total_variance(self) -> float:
        """Minimum of ``w(k)`` over ``k``: ``a + b sigma sqrt(1 - rho^2)``."""
        return self.a + self.b * self.sigma * math.sqrt(1.0 - self.rho * self.rho)

    def total_variance(self, k: ArrayLike) -> FloatOrArray:
        """Total implied variance ``w(k)`` at log-moneyness ``k`` (scalar or array)."""
        k_ = as_float("k", k)
        x = k_ - self.m
        w = self.a + self.b * (self.rho * x + np.hypot(x, self.sigma))
        return out(np.maximum(w, 0.0), k_.ndim == 0)

    def implied_vol(self, k: ArrayLike, T: ArrayLike) -> FloatOrArray:
        """Implied Black vol ``sqrt(w(k) / T)``; ``k`` and ``T`` broadcast, ``T > 0``."""
        k_ = as_float("k", k)
        T_ = as_float("T", T)
        _check("T", T_ > 0, "> 0")
        try:
            kb, Tb = np.broadcast_arrays(k_, T_)
        except ValueError as exc:
            raise ValueError(f"arguments do not broadcast together: {exc}") from exc
        w = np.asarray(self.total_variance(kb), dtype=np.float64)
        return out(np.sqrt(w / Tb), k_.ndim == 0 and T_.ndim == 0)

    def derivatives(self, k: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(w, dw/dk, d2w/dk2)`` as arrays at ``k``."""
        k_ = as_float("k", k)
        x = k_ - self.m
        r = np.hypot(x, self.sigma)
        w = self.a + self.b * (self.rho * x + r)
        w1 = self.b * (self.rho + x / r)
        w2 = self.b * self.sigma**2 / r**3
        return np.asarray(w), np.asarray(w1), np.asarray(w2)


def butterfly_density_g(params: SVIParams, k: ArrayLike) -> FloatOrArray:
    r"""Gatheral-Jacquier butterfly function ``g(k)``; ``g >= 0`` means no butterfly arbitrage.

    Parameters
    ----------
    params : SVIParams
        The smile.
    k : array_like
        Log-moneyness ``ln(K/F)``.

    Returns
    -------
    float or ndarray
        ``g(k)``; ``-inf`` where ``w(k) == 0``.

    Notes
    -----
    .. math::

        g(k) = \Bigl(1 - \frac{k w'}{2w}\Bigr)^2 - \frac{w'^2}{4}\Bigl(\frac1w + \frac14\Bigr)
        + \frac{w''}{2}

    The risk-neutral density of ``ln(K/F)`` is
    :math:`p(k) = \frac{g(k)}{\sqrt{2\pi w}} \exp\bigl(-\frac{d_2^2}{2}\bigr)` with
    :math:`d_2 = -k/\sqrt w - \sqrt w / 2`, so ``g`` and the density share their sign.
    """
    k_ = as_float("k", k)
    w, w1, w2 = params.derivatives(k_)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (1.0 - k_ * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
    g = np.where(w > 0, g, -np.inf)
    return out(np.asarray(g, dtype=np.float64), k_.ndim == 0)


@dataclass(frozen=True)
class SVIFit:
    """Result of :func:`fit_svi`.

    Attributes
    ----------
    params : SVIParams
        Fitted raw SVI parameters.
    rmse : float
        Weighted root-mean-square implied-vol error (absolute vol units).
    butterfly_ok : bool
        ``min_g >= 0``: no butterfly arbitrage on the check grid.
    min_g : float
        Minimum of :func:`butterfly_density_g` over the check grid (the default grid
        :data:`DEFAULT_K_GRID` extended to cover the quotes).
    T : float
        Expiry the smile was fitted for.
    """

    params: SVIParams
    rmse: float
    butterfly_ok: bool
    min_g: float
    T: float = field(default=1.0)


def _check_grid(k: FloatArray | None = None) -> FloatArray:
    if k is None or k.size == 0:
        return DEFAULT_K_GRID
    lo = min(-2.0, float(k.min()) - 0.5)
    hi = max(2.0, float(k.max()) + 0.5)
    return np.linspace(lo, hi, 401)


def _inner(
    m: float, s: float, k: FloatArray, w: FloatArray, sw: FloatArray
) -> tuple[float, float, float, float]:
    """Best ``(a, b, rho)`` for fixed ``(m, sigma)``; returns ``(sse, a, b, rho)``.

    In ``y = (k - m)/sigma`` the smile is linear: ``w = a + u (z + y)/2 + v (z - y)/2``
    with ``z = sqrt(1 + y^2)``, ``u = b sigma (1 + rho)``, ``v = b sigma (1 - rho)``.
    ``0 <= u, v <= 4 sigma`` keeps ``b >= 0``, ``|rho| <= 1`` and the wing slopes ``<= 4``.
    """
    y = (k - m) / s
    z = np.hypot(y, 1.0)
    A = np.column_stack([np.ones_like(y), 0.5 * (z + y), 0.5 * (z - y)]) * sw[:, None]
    rhs = w * sw
    hi = 4.0 * s
    x, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    if not (0.0 <= x[1] <= hi and 0.0 <= x[2] <= hi):
        x = lsq_linear(A, rhs, bounds=([-np.inf, 0.0, 0.0], [np.inf, hi, hi]), method="bvls").x
    a, u, v = (float(t) for t in x)
    if a + math.sqrt(max(u, 0.0) * max(v, 0.0)) < 0.0:
        # Minimum variance a + sqrt(u v) >= 0 binds: small nonlinear problem.
        res = minimize(
            lambda p: float(np.sum((A @ p - rhs) ** 2)),
            np.array([-math.sqrt(max(u * v, 0.0)), u, v]),
            jac=lambda p: 2.0 * A.T @ (A @ p - rhs),
            method="SLSQP",
            bounds=[(None, None), (0.0, hi), (0.0, hi)],
            constraints=[{"type": "ineq", "fun": lambda p: p[0] + np.sqrt(max(p[1] * p[2], 0.0))}],
        )
        a, u, v = (float(t) for t in res.x)
        a = max(a, -math.sqrt(max(u * v, 0.0)))
    sse = float(np.sum((A @ np.array([a, u, v]) - rhs) ** 2))
    c = 0.5 * (u + v)
    rho = 0.0 if c <= 0 else float(np.clip((u - v) / (u + v), -_RHO_MAX, _RHO_MAX))
    return sse, a, c / s, rho


def _make_params(a: float, b: float, rho: float, m: float, s: float) -> SVIParams:
    rho = float(np.clip(rho, -_RHO_MAX, _RHO_MAX))
    b = max(b, 0.0)
    a = max(a, -b * s * math.sqrt(1.0 - rho * rho))
    return SVIParams(a, b, rho, m, s)


def fit_svi(
    k: ArrayLike, implied_vols: ArrayLike, T: float, weights: ArrayLike | None = None
) -> SVIFit:
    """Fit a raw SVI smile to implied vols by the quasi-explicit method.

    Parameters
    ----------
    k : array_like
        Log-moneyness ``ln(K/F)`` of the quotes (1-D, at least 5 distinct values).
    implied_vols : array_like
        Black implied vols, same shape as ``k``, ``> 0``.
    T : float
        Time to expiry in years, ``T > 0``.
    weights : array_like, optional
        Non-negative weights of the quotes (same shape as ``k``; at least 5 positive).
        Default: equal weights.

    Returns
    -------
    SVIFit
        Parameters, vol RMSE and butterfly diagnostics.

    Raises
    ------
    ValueError
        On NaN/inf, shape mismatch, fewer than 5 usable quotes, ``T <= 0``,
        non-positive vols or negative weights.

    Notes
    -----
    Zeliade quasi-explicit reduction: for fixed ``(m, sigma)`` the total variance is
    linear in ``(a, b sigma (1+rho), b sigma (1-rho))``; that inner bounded linear
    least-squares problem is solved exactly, and the outer 2-D problem over ``m`` and
    ``log sigma`` by a multi-start Nelder-Mead.  The result is polished by a 5-parameter
    :func:`scipy.optimize.least_squares` and kept only if it improves the fit and stays
    in the parameter domain.  The objective is the weighted squared error in total
    variance ``w = vol^2 T``.
    """
    k_ = as_float("k", k)
    vol = as_float("implied_vols", implied_vols)
    T_ = _scalar("T", T)
    _check("T", T_ > 0, "> 0")
    if k_.ndim != 1:
        raise ValueError("k must be 1-D")
    if vol.shape != k_.shape:
        raise ValueError("implied_vols must have the same shape as k")
    _check("implied_vols", vol > 0, "> 0")
    if weights is None:
        wt = np.ones_like(k_)
    else:
        wt = as_float("weights", weights)
        if wt.shape != k_.shape:
            raise ValueError("weights must have the same shape as k")
        _check("weights", wt >= 0, ">= 0")
    if np.unique(k_[wt > 0]).size < 5:
        raise ValueError("k must hold at least 5 distinct log-moneyness values with weight > 0")

    w_mkt = vol * vol * T_
    sw = np.sqrt(wt / wt.sum())
    kmin, kmax = float(k_.min()), float(k_.max())
    span = max(kmax - kmin, 1e-3)
    m_lo, m_hi = kmin - span, kmax + span
    ls_lo, ls_hi = math.log(1e-4 * span), math.log(10.0 * span)
    scale = float(np.sum((w_mkt * sw) ** 2)) or 1.0

    def outer(p: FloatArray) -> float:
        m, ls = float(p[0]), float(p[1])
        if not (m_lo <= m <= m_hi and ls_lo <= ls <= ls_hi):
            return 1e10
        return _inner(m, math.exp(ls), k_, w_mkt, sw)[0] / scale

    # Coarse grid of starts, then Nelder-Mead from the best few.
    starts = [
        (m, ls)
        for m in np.linspace(kmin, kmax, 5)
        for ls in np.log(span * np.array([0.02, 0.1, 0.3, 1.0]))
    ]
    starts.sort(key=lambda p: outer(np.array(p)))
    best: tuple[float, FloatArray] | None = None
    for p0 in starts[:3]:
        res = minimize(
            outer,
            np.array(p0),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-18, "maxiter": 2000, "maxfev": 4000},
        )
        if best is None or res.fun < best[0]:
            best = (float(res.fun), np.asarray(res.x))
    assert best is not None
    m, s = float(best[1][0]), math.exp(float(best[1][1]))
    _, a, b, rho = _inner(m, s, k_, w_mkt, sw)
    params = _make_params(a, b, rho, m, s)

    # Polish all five parameters together.
    def resid(p: FloatArray) -> FloatArray:
        a_, b_, r_, m_, ls_ = p
        x = k_ - m_
        return np.asarray(sw * (a_ + b_ * (r_ * x + np.hypot(x, math.exp(ls_))) - w_mkt))

    x0 = np.array([params.a, params.b, params.rho, params.m, math.log(params.sigma)])
    lo = np.array([-np.inf, 0.0, -_RHO_MAX, m_lo, ls_lo])
    hi = np.array([np.inf, np.inf, _RHO_MAX, m_hi, ls_hi])
    x0 = np.clip(x0, lo, hi)
    try:
        pol = least_squares(resid, x0, bounds=(lo, hi), xtol=1e-15, ftol=1e-15, gtol=1e-15)
        pa, pb, pr, pm, pls = (float(t) for t in pol.x)
        cand = SVIParams(pa, pb, pr, pm, math.exp(pls))
        if float(np.sum(resid(pol.x) ** 2)) <= float(np.sum(resid(x0) ** 2)):
            params = cand
    except ValueError:
        pass  # polished point left the SVI domain: keep the quasi-explicit fit

    fitted = np.asarray(params.implied_vol(k_, T_))
    rmse = math.sqrt(float(np.sum(wt * (fitted - vol) ** 2) / wt.sum()))
    min_g = float(np.min(butterfly_density_g(params, _check_grid(k_))))
    return SVIFit(params=params, rmse=rmse, butterfly_ok=min_g >= 0.0, min_g=min_g, T=T_)


def calendar_arbitrage(
    fits: Mapping[float, SVIParams | SVIFit], k: ArrayLike | None = None, tol: float = 1e-12
) -> list[tuple[float, float, float]]:
    """Calendar-spread arbitrage: total variance must be non-decreasing in ``T`` at each ``k``.

    Parameters
    ----------
    fits : mapping of float to SVIParams or SVIFit
        Smiles keyed by expiry ``T > 0``.
    k : array_like, optional
        Log-moneyness grid; default :data:`DEFAULT_K_GRID` (``-2 .. 2``, 401 points).
    tol : float
        Allowed decrease of total variance before a point counts as a violation.

    Returns
    -------
    list of (T1, T2, k)
        For consecutive expiries ``T1 < T2``, every grid point where
        ``w(k, T2) < w(k, T1) - tol``. Empty when the surface is calendar-arbitrage free.
    """
    grid = DEFAULT_K_GRID if k is None else as_float("k", k).ravel()
    tol_ = _scalar("tol", tol)
    _check("tol", tol_ >= 0, ">= 0")
    items = sorted((_scalar("T", T), _params_of(p)) for T, p in fits.items())
    for T, _ in items:
        _check("T", T > 0, "> 0")
    out: list[tuple[float, float, float]] = []
    for (T1, p1), (T2, p2) in itertools.pairwise(items):
        w1 = np.asarray(p1.total_variance(grid))
        w2 = np.asarray(p2.total_variance(grid))
        out.extend((T1, T2, float(kk)) for kk in grid[w2 < w1 - tol_])
    return out


def _params_of(p: SVIParams | SVIFit) -> SVIParams:
    if isinstance(p, SVIFit):
        return p.params
    if isinstance(p, SVIParams):
        return p
    raise ValueError(f"fits values must be SVIParams or SVIFit, got {type(p).__name__}")


# --------------------------------------------------------------------------- surface


Smile = SVIParams | float


class VolSurface:
    """Implied volatility surface from per-expiry smiles.

    Parameters
    ----------
    smiles : mapping of float to SVIParams or float
        For each expiry ``T > 0`` either a raw SVI smile or a flat Black vol ``> 0``.
    fits : mapping of float to SVIFit, optional
        Fit diagnostics kept for inspection (set by :meth:`fit`).

    Notes
    -----
    Between expiries the total variance ``w(k, T)`` is interpolated linearly in ``T`` at
    fixed log-moneyness ``k = ln(K/F)`` (flat forward variance).  Before the first and
    after the last expiry the implied vol of that smile at the same ``k`` is held flat.
    """

    def __init__(
        self, smiles: Mapping[float, Smile], fits: Mapping[float, SVIFit] | None = None
    ) -> None:
        if not smiles:
            raise ValueError("smiles must not be empty")
        items: list[tuple[float, Smile]] = []
        for T, sm in smiles.items():
            T_ = _scalar("T", T)
            _check("T", T_ > 0, "> 0")
            if isinstance(sm, SVIParams):
                items.append((T_, sm))
            else:
                v = _scalar("smiles", sm)
                _check("smiles", v > 0, "SVIParams or a flat vol > 0")
                items.append((T_, v))
        items.sort(key=lambda t: t[0])
        self._T: FloatArray = np.array([t for t, _ in items])
        if np.unique(self._T).size != self._T.size:
            raise ValueError("T must not repeat")
        self._smiles: list[Smile] = [s for _, s in items]
        self.fits: dict[float, SVIFit] = dict(fits or {})

    # ---------------------------------------------------------------- constructors

    @classmethod
    def flat(cls, sigma: float) -> VolSurface:
        """Surface with the same Black vol ``sigma > 0`` at every expiry and strike."""
        sig = _scalar("sigma", sigma)
        _check("sigma", sig > 0, "> 0")
        return cls({1.0: sig})

    @classmethod
    def from_smiles(cls, smiles: Mapping[float, Smile]) -> VolSurface:
        """Surface from ``{T: SVIParams}`` (a float value is a flat smile)."""
        return cls(smiles)

    @classmethod
    def fit(
        cls,
        quotes: Mapping[float, tuple[ArrayLike, ArrayLike]],
        forwards: Mapping[float, float],
        weights: Mapping[float, ArrayLike] | None = None,
    ) -> VolSurface:
        """Fit one SVI smile per expiry.

        Parameters
        ----------
        quotes : mapping of float to (strikes, vols)
            Strikes ``> 0`` and Black vols for each expiry ``T``.
        forwards : mapping of float to float
            Forward ``F > 0`` for each expiry in ``quotes``.
        weights : mapping of float to array_like, optional
            Per-expiry quote weights passed to :func:`fit_svi`.

        Raises
        ------
        ValueError
            Missing forward, bad strikes/forwards or any :func:`fit_svi` error.
        """
        if not quotes:
            raise ValueError("quotes must not be empty")
        fits: dict[float, SVIFit] = {}
        for T, (strikes, vols) in quotes.items():
            if T not in forwards:
                raise ValueError(f"forwards has no entry for T={T}")
            F = _scalar("forwards", forwards[T])
            _check("forwards", F > 0, "> 0")
            K = as_float("strikes", strikes)
            _check("strikes", K > 0, "> 0")
            wts = None if weights is None else weights.get(T)
            fits[float(T)] = fit_svi(np.log(K / F), vols, T, wts)
        return cls({T: f.params for T, f in fits.items()}, fits)

    # ---------------------------------------------------------------- queries

    @property
    def expiries(self) -> FloatArray:
        """Sorted node expiries."""
        return self._T.copy()

    def _node_w(self, i: int, k: FloatArray) -> FloatArray:
        sm = self._smiles[i]
        if isinstance(sm, SVIParams):
            return np.asarray(sm.total_variance(k), dtype=np.float64)
        return np.full_like(k, sm * sm * self._T[i])

    def total_variance(self, T: ArrayLike, k: ArrayLike) -> FloatOrArray:
        """Total variance ``w(k, T)`` at expiry ``T > 0`` and log-moneyness ``k``."""
        T_ = as_float("T", T)
        k_ = as_float("k", k)
        _check("T", T_ > 0, "> 0")
        try:
            Tb, kb = np.broadcast_arrays(T_, k_)
        except ValueError as exc:
            raise ValueError(f"arguments do not broadcast together: {exc}") from exc
        Tb = np.array(Tb, dtype=np.float64)
        kb = np.array(kb, dtype=np.float64)
        nodes = self._T
        n = nodes.size
        W = np.stack([self._node_w(i, kb) for i in range(n)])  # (n, *shape)
        if n == 1:
            w = W[0] * Tb / nodes[0]
        else:
            j = np.clip(np.searchsorted(nodes, Tb, side="right") - 1, 0, n - 2)
            T1, T2 = nodes[j], nodes[j + 1]
            w1 = np.take_along_axis(W, j[None, ...], 0)[0]
            w2 = np.take_along_axis(W, (j + 1)[None, ...], 0)[0]
            lam = (Tb - T1) / (T2 - T1)
            w = w1 + lam * (w2 - w1)
            w = np.where(Tb <= nodes[0], W[0] * Tb / nodes[0], w)
            w = np.where(Tb >= nodes[-1], W[-1] * Tb / nodes[-1], w)
        return out(np.asarray(w), T_.ndim == 0 and k_.ndim == 0)

    def vol(self, T: ArrayLike, K: ArrayLike, F: ArrayLike) -> FloatOrArray:
        """Black implied vol at expiry ``T > 0``, strike ``K > 0``, forward ``F > 0``.

        All arguments broadcast; a ``float`` is returned when all are scalars.
        """
        T_ = as_float("T", T)
        K_ = as_float("K", K)
        F_ = as_float("F", F)
        _check("T", T_ > 0, "> 0")
        _check("K", K_ > 0, "> 0")
        _check("F", F_ > 0, "> 0")
        try:
            Tb, Kb, Fb = np.broadcast_arrays(T_, K_, F_)
        except ValueError as exc:
            raise ValueError(f"arguments do not broadcast together: {exc}") from exc
        w = np.asarray(self.total_variance(Tb, np.log(Kb / Fb)))
        scalar = T_.ndim == 0 and K_.ndim == 0 and F_.ndim == 0
        return out(np.sqrt(np.maximum(w, 0.0) / Tb), scalar)

    def atm_term_structure(self, T: ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
        """ATM-forward (``k = 0``) vols: ``(expiries, vols)``, at the nodes unless ``T`` given."""
        Ts = self._T.copy() if T is None else np.atleast_1d(as_float("T", T)).astype(float)
        _check("T", Ts > 0, "> 0")
        w = np.asarray(self.total_variance(Ts, np.zeros_like(Ts)))
        return Ts, np.sqrt(w / Ts)

    def calendar_arbitrage(self, k: ArrayLike | None = None) -> list[tuple[float, float, float]]:
        """:func:`calendar_arbitrage` over the node smiles (flat nodes included)."""
        grid = DEFAULT_K_GRID if k is None else as_float("k", k).ravel()
        out: list[tuple[float, float, float]] = []
        for i in range(self._T.size - 1):
            w1, w2 = self._node_w(i, grid), self._node_w(i + 1, grid)
            bad = w2 < w1 - 1e-12
            out.extend((float(self._T[i]), float(self._T[i + 1]), float(x)) for x in grid[bad])
        return out
