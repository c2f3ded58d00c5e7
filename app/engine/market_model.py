"""Multi-commodity forward-curve market model and the estimators that calibrate it.

Pure numerics: numpy and the standard library only (no Qt, no I/O, no database).

Model
-----
Each product ``p`` has a monthly forward curve ``F[p, j]`` (months ``j = 1..M``) and a spot
price ``S[p]`` (stored as column ``0`` of the same state array so the whole market evolves
in one vectorised step). Prices follow *shifted-log* dynamics

.. math::

    P[p, j] + c_p = (B[p, j] + c_p) \\exp(X[p, j] + g[p, j] J[p])

* ``B[p, j] = level_p * s_p(month_j)`` is the seasonal base curve (``s_p``: 12 factors,
  mean 1; for the spot column the factor of the current calendar month).
* ``c_p >= 0`` is a shift. ``c_p = 0`` (oil, gas, products) gives ordinary log dynamics and
  strictly positive prices; power uses ``c_p > 0`` so prices can fall to ``-c_p`` (negative
  day-ahead prices on low-demand, high-renewables days). Volatilities of shifted products are
  volatilities of ``ln(P + c)``.
* ``X`` is the diffusive deviation from the base. With ``T`` the time (years) from the
  valuation date to the start of delivery (0 for the spot and for a month in delivery)::

      dX = -kappa(T) X dt + sigma(T) dB(T)                          (months)
      sigma(T) = sigma_long + (sigma_front - sigma_long) exp(-T / tau)   (Samuelson)
      kappa(T) = kappa_long + (kappa - kappa_long) exp(-T / tau)
      dB(T) = (sigma_long dW_L + (sigma(T) - sigma_long) dW_S) / n(T),
      n(T) = sqrt(sigma_long^2 + (sigma(T) - sigma_long)^2)

  so every month has exactly the volatility ``sigma(T)``: front months are driven mostly by
  the short factor ``W_S``, back months by the long factor ``W_L``, and the correlation
  between two months falls as their loadings differ. The spot column adds an idiosyncratic
  day-to-day factor ``W_N`` so its volatility is ``sigma_spot >= sigma_front``.
* Cross-commodity correlation: for each factor (``L``, ``S``, ``N``) the 12 product shocks are
  drawn with the correlation matrix ``C`` (``W = Z chol(C)^T``); factors are independent.
* Spikes ``J[p]``: compound Poisson jumps (intensity ``lambda``; magnitudes gamma with mean
  ``jump_size`` and coefficient of variation 0.5; up with probability ``jump_up_share``, else down) that decay as
  ``dJ = -kappa_J J dt``. The spot carries them fully (``g = 1``); a month delivered over
  ``[T_s, T_e]`` carries their expected average over delivery,
  ``g = (exp(-kappa_J T_s) - exp(-kappa_J T_e)) / (kappa_J (T_e - T_s))``, so spikes are
  short-lived in the spot and barely visible in the back of the curve.

Months whose delivery has ended are frozen (no diffusion, no spikes). Prices are capped at
``price_cap`` (an exchange's price limit; none by default).

Estimators
----------
:func:`annualised_vol`, :func:`ar1_mean_reversion`, :func:`jump_statistics`,
:func:`return_correlation`, :func:`arithmetic_change_stats`, :func:`seasonal_ratios`,
:func:`monthly_means` and :func:`variance_term_structure` take daily price arrays (and
``datetime64[D]`` dates where needed) and return the statistics that set the defaults in
``app/feed/sim_params.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "TRADING_DAYS_PER_YEAR",
    "AR1Fit",
    "ArithmeticStats",
    "JumpStats",
    "MarketModel",
    "ModelParams",
    "ProductParams",
    "TwoFactorFit",
    "add_business_days",
    "annualised_vol",
    "ar1_mean_reversion",
    "arithmetic_change_stats",
    "horizon_vol",
    "jump_statistics",
    "log_returns",
    "monthly_means",
    "nearest_correlation",
    "return_correlation",
    "samuelson_total_variance",
    "seasonal_ratios",
    "shifted_lognormal_black_vols",
    "variance_term_structure",
]

TRADING_DAYS_PER_YEAR = 252.0
_DAYS_PER_YEAR = 365.25
#: gamma shape of spike magnitudes: coefficient of variation 1/sqrt(4) = 0.5, so a spike is
#: rarely more than ~3x the mean size (an exponential tail would give absurd power prices)
_JUMP_SHAPE = 4.0


# =============================================================================== parameters


@dataclass(frozen=True, slots=True)
class ProductParams:
    """Stochastic parameters of one product (see the module docstring for the equations).

    Attributes
    ----------
    code : str
        Product code (``CR-BRENT``).
    level : float
        Long-run average price (currency per unit), the centre of the base curve.
    seasonal : tuple of float
        12 monthly factors Jan..Dec of the base curve (normalised to mean 1).
    sigma_front, sigma_long : float
        Annualised volatility of ``ln(F + c)`` at ``T = 0`` and ``T -> inf``.
    tau : float
        Samuelson decay time (years) of the volatility and of the mean reversion speed.
    kappa : float
        Mean reversion speed (1/year) of the spot and of months close to delivery.
    kappa_long : float
        Mean reversion speed (1/year) of the back of the curve.
    sigma_spot : float
        Total diffusive volatility of the spot (``>= sigma_front``).
    jump_intensity : float
        Spikes per year (Poisson intensity).
    jump_size : float
        Mean absolute spike size in ``ln(P + c)``.
    jump_up_share : float
        Probability that a spike is upwards.
    jump_decay : float
        Decay speed ``kappa_J`` (1/year) of a spike; half-life ``ln 2 / kappa_J``.
    shift : float
        Shift ``c >= 0`` of the shifted-log dynamics (0: plain log, prices stay positive).
    price_cap : float
        Upper price limit applied to every simulated price (``inf``: none).
    """

    code: str
    level: float
    seasonal: tuple[float, ...]
    sigma_front: float
    sigma_long: float
    tau: float
    kappa: float
    kappa_long: float
    sigma_spot: float
    jump_intensity: float = 0.0
    jump_size: float = 0.0
    jump_up_share: float = 0.5
    jump_decay: float = 100.0
    shift: float = 0.0
    price_cap: float = math.inf

    def __post_init__(self) -> None:
        if len(self.seasonal) != 12 or any(not s > 0 for s in self.seasonal):
            raise ValueError(f"{self.code}: seasonal must be 12 positive factors")
        if not self.level + self.shift > 0:
            raise ValueError(f"{self.code}: level + shift must be > 0")
        for name in ("sigma_front", "sigma_long", "tau", "sigma_spot", "jump_decay"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.code}: {name} must be > 0")
        for name in ("kappa", "kappa_long", "jump_intensity", "jump_size", "shift"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{self.code}: {name} must be >= 0")
        if self.sigma_spot < self.sigma_front:
            raise ValueError(f"{self.code}: sigma_spot must be >= sigma_front")
        if not self.price_cap > self.level:
            raise ValueError(f"{self.code}: price_cap must be above level")
        if not 0.0 <= self.jump_up_share <= 1.0:
            raise ValueError(f"{self.code}: jump_up_share must be in [0, 1]")

    def sigma(self, t: np.ndarray | float) -> np.ndarray:
        """Samuelson volatility ``sigma_long + (sigma_front - sigma_long) exp(-T/tau)``."""
        tt = np.maximum(np.asarray(t, dtype=float), 0.0)
        return np.asarray(
            self.sigma_long + (self.sigma_front - self.sigma_long) * np.exp(-tt / self.tau)
        )


@dataclass(frozen=True, eq=False)
class ModelParams:
    """Parameters of the whole market: one :class:`ProductParams` per product and the
    correlation matrix ``correlation[i, k]`` of their factor shocks (same order)."""

    products: tuple[ProductParams, ...]
    correlation: np.ndarray

    def __post_init__(self) -> None:
        c = np.array(self.correlation, dtype=float)
        n = len(self.products)
        if n == 0:
            raise ValueError("at least one product is required")
        if c.shape != (n, n):
            raise ValueError(f"correlation must be {n}x{n}, got {c.shape}")
        if not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0):
            raise ValueError("correlation must be symmetric with a unit diagonal")
        if np.any(np.abs(c) > 1.0 + 1e-12):
            raise ValueError("correlations must lie in [-1, 1]")
        c.setflags(write=False)
        object.__setattr__(self, "correlation", c)
        codes = [p.code for p in self.products]
        if len(set(codes)) != n:
            raise ValueError("product codes must be unique")

    @property
    def codes(self) -> tuple[str, ...]:
        """Product codes in model order."""
        return tuple(p.code for p in self.products)

    def index(self, code: str) -> int:
        """Position of ``code`` in the model."""
        return self.codes.index(code)


def nearest_correlation(c: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """A positive-definite correlation matrix close to ``c``.

    Eigenvalues are clipped at ``floor`` and the result is rescaled to a unit diagonal
    (``C' = D^{-1/2} V max(L, floor) V^T D^{-1/2}``). A valid correlation matrix comes back
    unchanged up to rounding.
    """
    a = 0.5 * (np.asarray(c, dtype=float) + np.asarray(c, dtype=float).T)
    vals, vecs = np.linalg.eigh(a)
    b = (vecs * np.maximum(vals, floor)) @ vecs.T
    d = np.sqrt(np.diag(b))
    out = b / np.outer(d, d)
    np.fill_diagonal(out, 1.0)
    return np.asarray(out)


# =============================================================================== model


def _month_index(d: date) -> int:
    return d.year * 12 + d.month - 1


class MarketModel:
    """Seeded simulation of spot prices and monthly forward curves of several products.

    Parameters
    ----------
    params : ModelParams
        Products and correlation.
    as_of : date
        Valuation date the simulation starts from (sets the time to delivery ``T``).
    first_month : date
        Any day of the first curve month.
    n_months : int
        Number of monthly curve points per product.
    seed : int, SeedSequence or None
        Seed of the ``numpy.random.Generator`` (same seed and calls -> same path).

    Notes
    -----
    The state starts on the seasonal base curve (``X = 0``, no spike). :meth:`step` advances
    diffusion and spikes by ``dt`` years; :meth:`set_date` moves the calendar date (times to
    delivery, the spot's seasonal month, frozen expired months). The hot path is a handful of
    numpy operations on ``(products, 1 + months)`` arrays.
    """

    def __init__(
        self,
        params: ModelParams,
        as_of: date,
        first_month: date,
        n_months: int,
        seed: int | np.random.SeedSequence | None = None,
    ) -> None:
        if n_months < 1:
            raise ValueError("n_months must be >= 1")
        self.params = params
        self.rng = np.random.default_rng(seed)
        pp = params.products
        self._n_products = len(pp)
        self._n_months = int(n_months)
        m0 = _month_index(first_month)
        self._month_idx = np.arange(m0, m0 + n_months)
        self.months = (
            np.arange(n_months).astype("timedelta64[M]")
            + np.datetime64(f"{first_month.year:04d}-{first_month.month:02d}", "M")
        ).astype("datetime64[M]")
        starts = self.months.astype("datetime64[D]")
        ends = (self.months + 1).astype("datetime64[D]")  # exclusive
        self._start_days = starts.astype(np.int64).astype(float)
        self._end_days = ends.astype(np.int64).astype(float)

        def col(name: str) -> np.ndarray:
            return np.array([getattr(p, name) for p in pp], dtype=float)[:, None]

        self._level = col("level")
        self._shift = col("shift")
        self._cap = col("price_cap")
        self._sig_f = col("sigma_front")
        self._sig_l = col("sigma_long")
        self._tau = col("tau")
        self._kap = col("kappa")
        self._kap_l = col("kappa_long")
        self._sig_spot = col("sigma_spot")[:, 0]
        self._lam = col("jump_intensity")[:, 0]
        self._jsize = col("jump_size")[:, 0]
        self._jup = col("jump_up_share")[:, 0]
        self._jdecay = col("jump_decay")[:, 0]
        self._seasonal = np.array([p.seasonal for p in pp], dtype=float)
        self._seasonal /= self._seasonal.mean(axis=1, keepdims=True)
        self._chol = np.linalg.cholesky(nearest_correlation(params.correlation))
        # spot idiosyncratic loading: sigma_spot^2 = sigma_front^2 + a_n^2
        self._a_noise = np.sqrt(np.maximum(self._sig_spot**2 - self._sig_f[:, 0] ** 2, 0.0))

        shape = (self._n_products, 1 + self._n_months)
        self.x = np.zeros(shape)
        self.spikes = np.zeros(self._n_products)
        self.time = 0.0
        self.date = as_of
        self._prices: np.ndarray | None = None
        self.set_date(as_of)

    # ------------------------------------------------------------------ calendar

    @property
    def codes(self) -> tuple[str, ...]:
        """Product codes in row order."""
        return self.params.codes

    @property
    def n_months(self) -> int:
        """Number of monthly curve points."""
        return self._n_months

    def set_date(self, d: date) -> None:
        """Move the calendar date: recompute times to delivery, loadings and the spot month."""
        self.date = d
        today = float(np.datetime64(d, "D").astype(np.int64))
        t_s = np.maximum(self._start_days - today, 0.0) / _DAYS_PER_YEAR
        t_e = np.maximum(self._end_days - today, 0.0) / _DAYS_PER_YEAR
        alive = self._end_days > today
        t = np.concatenate([[0.0], t_s])[None, :]  # (1, 1 + M)
        decay = np.exp(-t / self._tau)  # (P, 1 + M)
        sig = self._sig_l + (self._sig_f - self._sig_l) * decay
        short = sig - self._sig_l
        norm = np.sqrt(self._sig_l**2 + short**2)
        alive_c = np.concatenate([[True], alive])[None, :]
        self._load_l = np.where(alive_c, sig * self._sig_l / norm, 0.0)
        self._load_s = np.where(alive_c, sig * short / norm, 0.0)
        self._kappa_cols = self._kap_l + (self._kap - self._kap_l) * decay
        self._sigma_cols = np.where(alive_c, sig, 0.0)
        self._alive = alive_c
        # expected spike weight over each month's remaining delivery
        kj = self._jdecay[:, None]
        span = np.maximum(t_e - t_s, 1e-12)[None, :]
        g = (np.exp(-kj * t_s[None, :]) - np.exp(-kj * t_e[None, :])) / (kj * span)
        g = np.where(alive[None, :], g, 0.0)
        self._g = np.concatenate([np.ones((self._n_products, 1)), g], axis=1)
        # seasonal base: spot uses the current month, months their own
        cal = self._month_idx % 12
        base = self._level * self._seasonal[:, cal]
        spot_base = self._level[:, 0] * self._seasonal[:, d.month - 1]
        self._base = np.concatenate([spot_base[:, None], base], axis=1)
        self._prices = None

    def times_to_delivery(self) -> np.ndarray:
        """Years (Act/365.25) from the current date to the start of each month (>= 0)."""
        today = float(np.datetime64(self.date, "D").astype(np.int64))
        return np.asarray(np.maximum(self._start_days - today, 0.0) / _DAYS_PER_YEAR)

    def column_vols(self) -> np.ndarray:
        """Current diffusive volatility per product and column (``(P, 1 + M)``; column 0 is
        the spot, frozen months 0)."""
        out = self._sigma_cols.copy()
        out[:, 0] = self._sig_spot
        return out

    # ------------------------------------------------------------------ dynamics

    def step(self, dt_years: float) -> None:
        """Evolve every product and month by ``dt_years`` (vectorised; no Python loops)."""
        if dt_years <= 0:
            return
        z = self.rng.standard_normal((3, self._n_products)) @ self._chol.T  # W_L, W_S, W_N
        sq = math.sqrt(dt_years)
        shock = self._load_l * z[0][:, None] + self._load_s * z[1][:, None]
        shock[:, 0] += self._a_noise * z[2]
        decay = np.exp(-self._kappa_cols * dt_years)
        self.x = np.where(self._alive, self.x * decay + sq * shock, self.x)
        # spikes: compound Poisson, exponential magnitudes, exponential decay
        n = self.rng.poisson(self._lam * dt_years)
        # sum of n gamma(4, 1/4) magnitudes (mean 1, coefficient of variation 0.5 each)
        mag = self.rng.gamma(_JUMP_SHAPE * np.maximum(n, 1), 1.0 / _JUMP_SHAPE) * self._jsize
        up = self.rng.random(self._n_products) < self._jup
        jump = np.where(n > 0, np.where(up, mag, -mag), 0.0)
        self.spikes = self.spikes * np.exp(-self._jdecay * dt_years) + jump
        self.time += dt_years
        self._prices = None

    def prices(self) -> np.ndarray:
        """Current prices ``(P, 1 + M)``: column 0 spot, then the monthly curve (read-only)."""
        if self._prices is None:
            c = self._shift
            p = (self._base + c) * np.exp(self.x + self._g * self.spikes[:, None]) - c
            p = np.minimum(p, self._cap)
            p.setflags(write=False)
            self._prices = p
        return self._prices

    @property
    def curves(self) -> np.ndarray:
        """Monthly forward prices ``(P, M)`` (read-only view)."""
        return self.prices()[:, 1:]

    @property
    def spot(self) -> np.ndarray:
        """Spot price per product ``(P,)`` (read-only view)."""
        return self.prices()[:, 0]


def add_business_days(d: date, n: int) -> date:
    """``d`` moved forward by ``n`` Monday-Friday days (no holiday calendar)."""
    out = d
    for _ in range(n):
        out += timedelta(days=1)
        while out.weekday() >= 5:
            out += timedelta(days=1)
    return out


# =============================================================================== estimators


def log_returns(prices: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Log returns ``ln((P_t + c) / (P_{t-1} + c))`` between consecutive observations.

    Returns touching a value with ``P + c <= 0`` (or a NaN) are skipped, as in SOURCES.md.
    """
    p = np.asarray(prices, dtype=float) + shift
    ok = np.isfinite(p) & (p > 0)
    both = ok[1:] & ok[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(p[1:] / p[:-1])
    return np.asarray(r[both])


def annualised_vol(
    prices: np.ndarray, periods_per_year: float = 252.0, shift: float = 0.0
) -> float:
    """Annualised volatility ``sd(r) * sqrt(periods_per_year)`` of :func:`log_returns`
    (sample standard deviation, ``ddof = 1``)."""
    r = log_returns(prices, shift)
    if r.size < 2:
        raise ValueError("need at least 3 usable prices")
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def horizon_vol(
    prices: np.ndarray, horizon: int, periods_per_year: float = 252.0, shift: float = 0.0
) -> float:
    """Annualised volatility of ``horizon``-period changes of ``x = ln(P + c)``.

    ``sqrt(Var(x_{t+h} - x_t) / (h / periods_per_year))`` over overlapping windows of the
    observations with ``P + c > 0``. For a random walk this equals the 1-period volatility;
    mean reversion makes it fall with ``h`` (day-to-day noise that reverts averages out).
    """
    p = np.asarray(prices, dtype=float) + shift
    x = np.log(p[np.isfinite(p) & (p > 0)])
    if x.size <= horizon + 2:
        raise ValueError("series shorter than the horizon")
    d = x[horizon:] - x[:-horizon]
    return float(math.sqrt(np.var(d, ddof=1) * periods_per_year / horizon))


@dataclass(frozen=True, slots=True)
class AR1Fit:
    """AR(1) fit ``x_{t+1} = a + b x_t + e``: ``kappa = -ln(b) / dt``, long-run ``mean =
    a / (1 - b)``, annualised residual vol ``sigma = sd(e) sqrt(-2 ln b / (dt (1 - b^2)))``
    (exact OU discretisation) and the half-life ``ln 2 / kappa`` in years."""

    b: float
    kappa: float
    mean: float
    sigma: float

    @property
    def half_life(self) -> float:
        """Half-life in years (``inf`` without mean reversion)."""
        return math.log(2.0) / self.kappa if self.kappa > 0 else math.inf


def ar1_mean_reversion(prices: np.ndarray, dt: float, shift: float = 0.0) -> AR1Fit:
    """Mean reversion speed from an OLS AR(1) regression of ``x = ln(P + c)``.

    ``x_{t+1} = a + b x_t + e_t`` over consecutive pairs with ``P + c > 0``. For an
    Ornstein-Uhlenbeck process sampled every ``dt`` years, ``b = exp(-kappa dt)``, so
    ``kappa = -ln(b) / dt`` (``b >= 1`` gives ``kappa = 0``: no reversion detected).
    """
    p = np.asarray(prices, dtype=float) + shift
    ok = np.isfinite(p) & (p > 0)
    both = ok[1:] & ok[:-1]
    x = np.log(np.where(ok, p, 1.0))
    x0, x1 = x[:-1][both], x[1:][both]
    if x0.size < 3:
        raise ValueError("need at least 3 usable pairs")
    m0, m1 = x0.mean(), x1.mean()
    b = float(np.sum((x0 - m0) * (x1 - m1)) / np.sum((x0 - m0) ** 2))
    a = m1 - b * m0
    resid = x1 - a - b * x0
    sd = float(np.std(resid, ddof=2))
    if 0 < b < 1:
        kappa = -math.log(b) / dt
        sigma = sd * math.sqrt(-2.0 * math.log(b) / (dt * (1.0 - b * b)))
        mean = float(a / (1.0 - b))
    else:
        kappa, sigma, mean = 0.0, sd / math.sqrt(dt), float(m1)
    return AR1Fit(b=b, kappa=kappa, mean=mean, sigma=sigma)


@dataclass(frozen=True, slots=True)
class JumpStats:
    """Jump statistics of log returns (see :func:`jump_statistics`)."""

    intensity: float  # jumps per year
    mean_size: float  # mean |jump return|
    up_share: float  # share of jumps that are up
    diffusive_vol: float  # annualised vol of the non-jump returns
    n_jumps: int
    threshold: float  # |r - median| cut-off used


def jump_statistics(
    prices: np.ndarray,
    periods_per_year: float = 252.0,
    k: float = 4.0,
    shift: float = 0.0,
    max_iter: int = 50,
) -> JumpStats:
    """Returns beyond ``k`` standard deviations of the remaining (diffusive) returns.

    Iterative filter: start with all log returns ``r``; repeat ``s = sd(r[not jump])``,
    ``jump = |r - median(r)| > k s`` until the set stops changing. Then
    ``intensity = n_jumps / (n_returns / periods_per_year)``, ``mean_size = mean |r_jump|``,
    ``up_share = share of r_jump > 0`` and ``diffusive_vol = s sqrt(periods_per_year)``.
    """
    r = log_returns(prices, shift)
    if r.size < 10:
        raise ValueError("need at least 11 usable prices")
    med = float(np.median(r))
    jump = np.zeros(r.size, dtype=bool)
    s = float(np.std(r, ddof=1))
    for _ in range(max_iter):
        s = float(np.std(r[~jump], ddof=1))
        new = np.abs(r - med) > k * s
        if np.array_equal(new, jump):
            break
        jump = new
    rj = r[jump]
    years = r.size / periods_per_year
    return JumpStats(
        intensity=float(rj.size / years),
        mean_size=float(np.mean(np.abs(rj))) if rj.size else 0.0,
        up_share=float(np.mean(rj > 0)) if rj.size else 0.5,
        diffusive_vol=s * math.sqrt(periods_per_year),
        n_jumps=int(rj.size),
        threshold=k * s,
    )


def return_correlation(
    dates_a: np.ndarray,
    prices_a: np.ndarray,
    dates_b: np.ndarray,
    prices_b: np.ndarray,
    every: int = 1,
) -> float:
    """Pearson correlation of log returns of two series on their common dates.

    Both series are restricted to the dates they share (``P > 0`` in both) and then to every
    ``every``-th of those dates; returns are taken between consecutive kept dates, so the two
    return series cover the same intervals. ``every = 5`` gives weekly returns, which removes
    the bias of asynchronous closes (London Brent vs New York WTI) from daily correlations.
    """
    da = np.asarray(dates_a).astype("datetime64[D]")
    db = np.asarray(dates_b).astype("datetime64[D]")
    pa = np.asarray(prices_a, dtype=float)
    pb = np.asarray(prices_b, dtype=float)
    _common, ia, ib = np.intersect1d(da, db, assume_unique=False, return_indices=True)
    xa, xb = pa[ia], pb[ib]
    ok = np.isfinite(xa) & np.isfinite(xb) & (xa > 0) & (xb > 0)
    xa, xb = xa[ok][::every], xb[ok][::every]
    if xa.size < 3:
        raise ValueError("fewer than 3 common dates")
    ra, rb = np.diff(np.log(xa)), np.diff(np.log(xb))
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass(frozen=True, slots=True)
class ArithmeticStats:
    """Arithmetic statistics for series with negative prices (power)."""

    sd_change: float  # sd of daily changes P_t - P_{t-1} (currency per unit)
    share_nonpositive: float  # share of observations with P <= 0
    mean: float


def arithmetic_change_stats(prices: np.ndarray) -> ArithmeticStats:
    """``sd(P_t - P_{t-1})`` (``ddof = 1``), share of days with ``P <= 0`` and the mean (NaNs
    skipped; changes only between consecutive finite values)."""
    p = np.asarray(prices, dtype=float)
    p = p[np.isfinite(p)]
    if p.size < 3:
        raise ValueError("need at least 3 prices")
    return ArithmeticStats(
        sd_change=float(np.std(np.diff(p), ddof=1)),
        share_nonpositive=float(np.mean(p <= 0)),
        mean=float(p.mean()),
    )


def monthly_means(dates: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Calendar-month averages: ``(months datetime64[M], mean price)`` of the finite values."""
    d = np.asarray(dates).astype("datetime64[M]")
    p = np.asarray(prices, dtype=float)
    ok = np.isfinite(p)
    d, p = d[ok], p[ok]
    months, inv = np.unique(d, return_inverse=True)
    sums = np.bincount(inv, weights=p)
    counts = np.bincount(inv)
    return months, sums / counts


def seasonal_ratios(dates: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Seasonal factors Jan..Dec: monthly mean over annual mean, averaged over full years.

    For every calendar year with all 12 monthly means, ``r[y, m] = mean_m / mean_y``; the
    factor of month ``m`` is the geometric mean of ``r[., m]`` over those years, rescaled so
    the 12 factors average 1. Years are compared with themselves, so a multi-year trend does
    not leak into the shape (only the within-year part of it does).
    """
    months, means = monthly_means(dates, prices)
    years = months.astype("datetime64[Y]").astype(int) + 1970
    mon = months.astype(int) % 12
    rows = []
    for y in np.unique(years):
        sel = years == y
        if sel.sum() == 12 and np.all(means[sel] > 0):
            row = np.empty(12)
            row[mon[sel]] = means[sel] / means[sel].mean()
            rows.append(row)
    if not rows:
        raise ValueError("no complete calendar year with positive monthly means")
    f = np.exp(np.mean(np.log(np.array(rows)), axis=0))
    return np.asarray(f / f.mean())


@dataclass(frozen=True, slots=True)
class TwoFactorFit:
    """Variance term-structure fit (see :func:`variance_term_structure`)."""

    sigma_long: float
    sigma_short: float
    kappa: float
    horizons: tuple[int, ...]
    observed: tuple[float, ...]  # annualised vol per horizon sqrt(V(h) / h)

    @property
    def sigma_front(self) -> float:
        """Instantaneous vol ``sqrt(sigma_long^2 + sigma_short^2)``."""
        return math.sqrt(self.sigma_long**2 + self.sigma_short**2)


def variance_term_structure(
    prices: np.ndarray,
    periods_per_year: float = 252.0,
    shift: float = 0.0,
    horizons: tuple[int, ...] = (1, 2, 5, 10, 21, 42, 63, 126, 189, 252),
    kappas: np.ndarray | None = None,
) -> TwoFactorFit:
    """Split log-price variance into a permanent and a mean-reverting part.

    For ``x = ln(P + c) = L + S`` with ``L`` a random walk (vol ``sigma_L``) and ``S`` an
    independent OU process (speed ``kappa``, vol ``sigma_S``), the variance of the
    ``h``-period change is

    .. math:: V(h) = sigma_L^2 \\, h \\Delta + sigma_S^2 (1 - e^{-kappa h \\Delta}) / kappa

    with ``Delta = 1 / periods_per_year``. ``V(h)`` is measured with overlapping differences;
    for each ``kappa`` on a log grid the two variances are fitted by non-negative least
    squares in relative terms (each horizon weighted by ``1 / V(h)``), and the ``kappa``
    with the smallest residual wins.
    """
    p = np.asarray(prices, dtype=float) + shift
    p = p[np.isfinite(p) & (p > 0)]
    x = np.log(p)
    hs = tuple(h for h in horizons if h < x.size // 4)
    if len(hs) < 3:
        raise ValueError("series too short for the requested horizons")
    dtp = 1.0 / periods_per_year
    v = np.array([np.var(x[h:] - x[:-h], ddof=1) for h in hs])
    ht = np.array(hs, dtype=float) * dtp
    grid = np.geomspace(0.05, 500.0, 200) if kappas is None else np.asarray(kappas, dtype=float)
    best: tuple[float, float, float, float] | None = None
    for kap in grid:
        a = np.column_stack([ht, -np.expm1(-kap * ht) / kap]) / v[:, None]
        coef = _nnls2(a, np.ones_like(v))
        res = float(np.sum((a @ coef - 1.0) ** 2))
        if best is None or res < best[0]:
            best = (res, float(kap), float(coef[0]), float(coef[1]))
    assert best is not None
    _, kap, vl, vs = best
    return TwoFactorFit(
        sigma_long=math.sqrt(vl),
        sigma_short=math.sqrt(vs),
        kappa=kap,
        horizons=hs,
        observed=tuple(float(s) for s in np.sqrt(v / ht)),
    )


def _nnls2(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares with two unknowns (enumerate the active sets)."""
    cands = []
    full, *_ = np.linalg.lstsq(a, y, rcond=None)
    if np.all(full >= 0):
        cands.append(full)
    for j in range(2):
        col = a[:, j]
        cj = max(float(col @ y) / float(col @ col), 0.0)
        c = np.zeros(2)
        c[j] = cj
        cands.append(c)
    return min(cands, key=lambda c: float(np.sum((a @ c - y) ** 2)))


# =============================================================================== implied vols


def samuelson_total_variance(
    sigma_front: float, sigma_long: float, tau: float, t_expiry: np.ndarray, t_delivery: np.ndarray
) -> np.ndarray:
    r"""Total variance of ``ln F`` of a contract delivering at ``t_delivery`` up to ``t_expiry``.

    With the Samuelson vol :math:`\sigma(T) = a + b e^{-T/\tau}` (``a = sigma_long``,
    ``b = sigma_front - sigma_long``) of a contract with time to delivery :math:`T`,

    .. math::

        V = \int_0^{t_e} \sigma(t_d - t)^2\,dt
          = a^2 t_e + 2ab\tau\,(e^{-(t_d - t_e)/\tau} - e^{-t_d/\tau})
            + \tfrac{b^2\tau}{2}\,(e^{-2(t_d - t_e)/\tau} - e^{-2 t_d/\tau}).

    ``t_expiry <= t_delivery`` (years, broadcast); the Black vol of an option expiring at
    ``t_expiry`` is ``sqrt(V / t_expiry)``.
    """
    te = np.asarray(t_expiry, dtype=float)
    td = np.asarray(t_delivery, dtype=float)
    if np.any(te < 0) or np.any(td < te):
        raise ValueError("need 0 <= t_expiry <= t_delivery")
    if not tau > 0:
        raise ValueError("tau must be > 0")
    a, b = sigma_long, sigma_front - sigma_long
    e1 = np.exp(-(td - te) / tau) - np.exp(-td / tau)
    e2 = np.exp(-2.0 * (td - te) / tau) - np.exp(-2.0 * td / tau)
    return np.asarray(a * a * te + 2.0 * a * b * tau * e1 + 0.5 * b * b * tau * e2)


def shifted_lognormal_black_vols(
    F: ArrayLike, strikes: ArrayLike, T: ArrayLike, sigma: ArrayLike, shift: ArrayLike
) -> np.ndarray:
    """Black-76 implied vols of options under a shifted lognormal forward (all broadcast).

    ``F + shift`` is lognormal with vol ``sigma``: the price of a strike ``K`` is
    ``black76(F + shift, K + shift, T, 0, sigma)``; its Black (unshifted) implied vol is returned
    (out-of-the-money side: calls above ``F``, puts below). ``shift = 0`` gives ``sigma`` at every
    strike; ``shift > 0`` gives the downward skew of a displaced diffusion, about
    ``sigma (F + shift) / F`` at the money. Needs ``F > 0``, strikes ``> 0``.
    """
    from app.engine.options import black76, implied_vol_black76

    Fb, K, Tb, sb, cb = np.broadcast_arrays(
        *(np.asarray(x, dtype=float) for x in (F, strikes, T, sigma, shift))
    )
    if np.any(Fb <= 0) or np.any(K <= 0):
        raise ValueError("F and strikes must be > 0 for Black vols")
    if np.any(cb < 0) or np.any(sb <= 0) or np.any(Tb <= 0):
        raise ValueError("need shift >= 0, sigma > 0, T > 0")
    call = Fb <= K
    price = black76(Fb + cb, K + cb, Tb, 0.0, sb, call)
    iv = np.asarray(implied_vol_black76(price, Fb, K, Tb, 0.0, call))
    return np.asarray(np.where(cb == 0, sb, iv))
