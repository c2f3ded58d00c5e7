"""Forward curves (monthly, arbitrage-free from strip quotes) and discount curves.

Pure numerics: numpy and the standard library only (no Qt, no database, no I/O).

Conventions
-----------
* Delivery periods are *inclusive* calendar-date ranges ``[start, end]`` (gas days /
  power delivery days in local time).
* Forward curves are piecewise constant per calendar month.  The average price over
  any delivery period is the weighted mean of the monthly prices, each day weighted
  by its delivery weight (calendar days by default, delivery hours for power).
* Times are Actual/365 (Fixed) year fractions from the curve date.
* Discount curves interpolate continuously compounded zero rates linearly in time
  and extrapolate them flat.
"""

from __future__ import annotations

import calendar
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

__all__ = [
    "DiscountCurve",
    "ForwardCurve",
    "Strip",
    "WeightsSpec",
    "build_monthly_curve",
    "delivery_hours",
    "year_fraction",
]

DayWeightFn = Callable[[date], float]
WeightsSpec = str | DayWeightFn

_MONTH_ABBR = tuple(calendar.month_abbr)  # ("", "Jan", ..., "Dec")
_SEASONS = {"sum": "Sum", "summer": "Sum", "win": "Win", "winter": "Win"}


# --------------------------------------------------------------------------- helpers


def _as_date(value: Any, name: str) -> date:
    """Coerce a date-like value (``date``, ``datetime``, ``np.datetime64``) to ``date``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return date.fromisoformat(str(value.astype("datetime64[D]")))
    raise ValueError(f"{name} must be a date, got {value!r}")


def year_fraction(start: date, end: date) -> float:
    """Actual/365 (Fixed) year fraction between two dates.

    Parameters
    ----------
    start, end : date
        Period start and end; ``end`` before ``start`` gives a negative fraction.

    Returns
    -------
    float
        ``(end - start).days / 365``.
    """
    return (_as_date(end, "end") - _as_date(start, "start")).days / 365.0


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() + 1) % 7)


def delivery_hours(day: date) -> float:
    """Baseload delivery hours of a local power delivery day under EU summer-time rules.

    EU rule (all EU time zones switch at 01:00 UTC on the same Sundays): 23 hours on
    the last Sunday of March, 25 hours on the last Sunday of October, 24 otherwise.

    Parameters
    ----------
    day : date
        Delivery day.

    Returns
    -------
    float
        Number of delivery hours.
    """
    d = _as_date(day, "day")
    if d == _last_sunday(d.year, 3):
        return 23.0
    if d == _last_sunday(d.year, 10):
        return 25.0
    return 24.0


def _day_range(start: date, end: date) -> np.ndarray:
    """Inclusive daily ``datetime64[D]`` range."""
    return np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + np.timedelta64(1, "D"))


def _daily_weights(days: np.ndarray, weights: WeightsSpec) -> np.ndarray:
    """Delivery weight per day for a ``datetime64[D]`` array."""
    if isinstance(weights, str):
        if weights == "days":
            return np.ones(days.size)
        if weights == "hours":
            out = np.full(days.size, 24.0)
            if days.size:
                y0 = int(str(days[0])[:4])
                y1 = int(str(days[-1])[:4])
                for y in range(y0, y1 + 1):
                    out[days == np.datetime64(_last_sunday(y, 3), "D")] = 23.0
                    out[days == np.datetime64(_last_sunday(y, 10), "D")] = 25.0
            return out
        raise ValueError(f"weights must be 'days', 'hours' or a callable, got {weights!r}")
    if not callable(weights):
        raise ValueError(f"weights must be 'days', 'hours' or a callable, got {weights!r}")
    out = np.array([float(weights(d)) for d in days.astype(date)], dtype=float)
    if out.size and (not np.all(np.isfinite(out)) or np.any(out < 0)):
        raise ValueError("weights callable must return finite, non-negative day weights")
    return out


def _weights_name(weights: WeightsSpec) -> str:
    if isinstance(weights, str):
        return weights
    return getattr(weights, "__name__", "callable")


def _month_weight_row(
    start: date, end: date, first_month: np.datetime64, n_months: int, weights: WeightsSpec
) -> np.ndarray:
    """Total delivery weight of ``[start, end]`` falling in each month of the grid."""
    days = _day_range(start, end)
    idx = (days.astype("datetime64[M]") - first_month).astype(int)
    return np.bincount(idx, weights=_daily_weights(days, weights), minlength=n_months)


# --------------------------------------------------------------------------- strips


@dataclass(frozen=True)
class Strip:
    """A quoted delivery strip: flat price over the inclusive period ``[start, end]``.

    Parameters
    ----------
    start, end : date
        First and last delivery day (inclusive).
    price : float
        Quoted (weighted-average) price of the strip.
    label : str, optional
        Name used in error messages; generated from the dates when empty.

    Raises
    ------
    ValueError
        If ``end`` is before ``start`` or ``price`` is not finite.
    """

    start: date
    end: date
    price: float
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _as_date(self.start, "start"))
        object.__setattr__(self, "end", _as_date(self.end, "end"))
        if self.end < self.start:
            raise ValueError(f"strip end {self.end} is before start {self.start}")
        if not math.isfinite(float(self.price)):
            raise ValueError(f"strip price must be finite, got {self.price!r}")
        object.__setattr__(self, "price", float(self.price))
        if not self.label:
            object.__setattr__(self, "label", f"{self.start.isoformat()}..{self.end.isoformat()}")

    @property
    def name(self) -> str:
        """Human-readable strip name (the label)."""
        return self.label

    @classmethod
    def month(cls, year: int, month: int, price: float) -> Strip:
        """Calendar-month strip, e.g. ``Strip.month(2027, 1, p)`` is Jan-27."""
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1..12, got {month!r}")
        last = calendar.monthrange(year, month)[1]
        return cls(
            date(year, month, 1), date(year, month, last), price, f"{_MONTH_ABBR[month]}-{year}"
        )

    @classmethod
    def quarter(cls, year: int, quarter: int, price: float) -> Strip:
        """Calendar-quarter strip, ``quarter`` in 1..4 (Q1 = Jan-Mar)."""
        if not 1 <= quarter <= 4:
            raise ValueError(f"quarter must be 1..4, got {quarter!r}")
        m0 = 3 * (quarter - 1) + 1
        last = calendar.monthrange(year, m0 + 2)[1]
        return cls(date(year, m0, 1), date(year, m0 + 2, last), price, f"Q{quarter}-{year}")

    @classmethod
    def season(cls, season: str, year: int, price: float) -> Strip:
        """Gas season strip.

        ``'Sum'``/``'Summer'``: 1 Apr ``year`` - 30 Sep ``year``;
        ``'Win'``/``'Winter'``: 1 Oct ``year`` - 31 Mar ``year + 1`` (Win-27 = Oct-27..Mar-28).
        """
        key = _SEASONS.get(str(season).strip().lower())
        if key is None:
            raise ValueError(f"season must be 'Sum'/'Summer' or 'Win'/'Winter', got {season!r}")
        if key == "Sum":
            return cls(date(year, 4, 1), date(year, 9, 30), price, f"Sum-{year}")
        return cls(date(year, 10, 1), date(year + 1, 3, 31), price, f"Win-{year}")

    @classmethod
    def cal(cls, year: int, price: float) -> Strip:
        """Calendar-year strip (1 Jan - 31 Dec)."""
        return cls(date(year, 1, 1), date(year, 12, 31), price, f"Cal-{year}")


# --------------------------------------------------------------------------- forward curve


@dataclass(frozen=True, eq=False)
class ForwardCurve:
    """Monthly forward curve, piecewise constant per calendar month.

    Attributes
    ----------
    months : np.ndarray
        ``datetime64[M]`` delivery months, consecutive and increasing.
    prices : np.ndarray
        Monthly prices (same length as ``months``).
    product : str
        Product name (free text).
    weights : str | callable
        Day weighting used for averaging (``'days'``, ``'hours'`` or ``f(date) -> float``).
    """

    months: np.ndarray
    prices: np.ndarray
    product: str = ""
    weights: WeightsSpec = field(default="days", repr=False)

    def __post_init__(self) -> None:
        months = np.asarray(self.months).astype("datetime64[M]")
        prices = np.asarray(self.prices, dtype=float)
        if months.ndim != 1 or months.size == 0:
            raise ValueError("months must be a non-empty 1-D array")
        if prices.shape != months.shape:
            raise ValueError(f"prices shape {prices.shape} does not match months {months.shape}")
        if np.any(np.diff(months).astype(int) != 1):
            raise ValueError("months must be consecutive calendar months")
        if not np.all(np.isfinite(prices)):
            raise ValueError("prices must be finite")
        if isinstance(self.weights, str) and self.weights not in ("days", "hours"):
            raise ValueError(f"weights must be 'days', 'hours' or a callable, got {self.weights!r}")
        months.setflags(write=False)
        prices = prices.copy()
        prices.setflags(write=False)
        object.__setattr__(self, "months", months)
        object.__setattr__(self, "prices", prices)

    @property
    def start(self) -> date:
        """First delivery day covered."""
        return _as_date(self.months[0].astype("datetime64[D]"), "start")

    @property
    def end(self) -> date:
        """Last delivery day covered (inclusive)."""
        return _as_date((self.months[-1] + 1).astype("datetime64[D]") - 1, "end")

    def price(self, start: date, end: date) -> float:
        """Weighted average price over the inclusive delivery period ``[start, end]``.

        Partial months are allowed and enter pro rata by their delivery weight
        (days, or hours for ``weights='hours'``).

        Raises
        ------
        ValueError
            If the period is reversed, outside the curve, or has zero total weight.
        """
        s, e = _as_date(start, "start"), _as_date(end, "end")
        if e < s:
            raise ValueError(f"end {e} is before start {s}")
        if s < self.start or e > self.end:
            raise ValueError(f"period {s}..{e} is outside the curve {self.start}..{self.end}")
        w = _month_weight_row(s, e, self.months[0], self.months.size, self.weights)
        total = float(w.sum())
        if total <= 0:
            raise ValueError(f"period {s}..{e} has zero delivery weight")
        return float(w @ self.prices / total)

    def times(self, as_of: date) -> np.ndarray:
        """Actual/365 year fractions from ``as_of`` to the first delivery day of each month."""
        d0 = np.datetime64(_as_date(as_of, "as_of"), "D")
        return (self.months.astype("datetime64[D]") - d0).astype(float) / 365.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation (months as ``'YYYY-MM'`` strings)."""
        return {
            "product": self.product,
            "weights": _weights_name(self.weights),
            "months": [str(m) for m in self.months],
            "prices": [float(p) for p in self.prices],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForwardCurve:
        """Inverse of :meth:`to_dict` (only for ``'days'``/``'hours'`` weights)."""
        return cls(
            months=np.array(data["months"], dtype="datetime64[M]"),
            prices=np.array(data["prices"], dtype=float),
            product=str(data.get("product", "")),
            weights=str(data.get("weights", "days")),
        )


def build_monthly_curve(
    strips: Iterable[Strip],
    shape: Sequence[float] | np.ndarray | None = None,
    weights: WeightsSpec = "days",
    *,
    product: str = "",
    tol: float = 1e-8,
) -> ForwardCurve:
    """Build an arbitrage-free, maximally smooth monthly forward curve from strip quotes.

    Unknowns are the monthly prices ``p_m`` over every month from the first to the last
    quoted delivery month.  With the seasonal shape ``s`` (1 if omitted) write
    ``p_m = s_m x_m`` and solve

    ``min sum (x_{m+1} - 2 x_m + x_{m-1})^2``

    subject to ``sum_m w_{k,m} p_m / sum_m w_{k,m} = quote_k`` for every strip ``k``,
    where ``w_{k,m}`` is the delivery weight of strip ``k`` in month ``m``.  The KKT
    linear system is solved with numpy.  When the quotes leave a straight line in ``x``
    undetermined (e.g. a single Cal quote) the tie is broken by minimising first
    differences, so one quote gives a flat (or exactly shaped) curve.

    Parameters
    ----------
    strips : iterable of Strip
        Quotes; overlapping strips are allowed when consistent.
    shape : sequence of 12 floats, optional
        Multiplicative seasonal factors for Jan..Dec (positive).  Only ratios matter.
    weights : {'days', 'hours'} or callable, default 'days'
        Day weight: calendar days, EU baseload delivery hours (23/25 on DST change
        days, see :func:`delivery_hours`), or ``f(date) -> float`` per delivery day.
    product : str, optional
        Product name stored on the curve.
    tol : float, default 1e-8
        Consistency tolerance, relative to ``max(1, max |quote|)``.

    Returns
    -------
    ForwardCurve
        Monthly curve whose weighted averages reproduce every quote.

    Raises
    ------
    ValueError
        No strips, bad ``shape``/``weights``/``tol``, a strip with zero delivery
        weight, or inconsistent quotes (the message names the conflicting strips).
    """
    strip_list = list(strips)
    if not strip_list:
        raise ValueError("strips must contain at least one Strip")
    for s in strip_list:
        if not isinstance(s, Strip):
            raise ValueError(f"strips must be Strip instances, got {s!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    if isinstance(weights, str) and weights not in ("days", "hours"):
        raise ValueError(f"weights must be 'days', 'hours' or a callable, got {weights!r}")
    if not isinstance(weights, str) and not callable(weights):
        raise ValueError(f"weights must be 'days', 'hours' or a callable, got {weights!r}")

    first = np.datetime64(min(s.start for s in strip_list), "M")
    last = np.datetime64(max(s.end for s in strip_list), "M")
    months = np.arange(first, last + 1)
    n = months.size

    if shape is None:
        factors = np.ones(n)
    else:
        shp = np.asarray(shape, dtype=float)
        if shp.shape != (12,) or not np.all(np.isfinite(shp)) or np.any(shp <= 0):
            raise ValueError("shape must be 12 finite positive monthly factors (Jan..Dec)")
        factors = shp[(months.astype(int) % 12)]

    # Constraint matrix: A p = q, rows are normalised month weights of each strip.
    w = np.vstack([_month_weight_row(s.start, s.end, first, n, weights) for s in strip_list])
    totals = w.sum(axis=1)
    for s, tot in zip(strip_list, totals, strict=True):
        if tot <= 0:
            raise ValueError(f"strip {s.name} has zero delivery weight")
    a = w / totals[:, None]
    q = np.array([s.price for s in strip_list])
    b = a * factors[None, :]
    scale = max(1.0, float(np.max(np.abs(q))))
    atol = tol * scale

    # Consistency: the least-squares residual is the projection of q on the left
    # null space of B; non-zero entries identify the conflicting quotes.
    x_ls, *_ = np.linalg.lstsq(b, q, rcond=None)
    resid = q - b @ x_ls
    bad = np.flatnonzero(np.abs(resid) > atol)
    if bad.size:
        names = ", ".join(f"{strip_list[i].name} ({strip_list[i].price:g})" for i in bad)
        raise ValueError(f"inconsistent strip quotes: {names} cannot all be reproduced")

    # Keep a linearly independent subset of the (consistent) constraints.
    keep = _independent_rows(b)
    bk, qk = b[keep], q[keep]

    x = _max_smooth(bk, qk)
    # One step of refinement onto the constraint set (minimum-norm correction).
    corr, *_ = np.linalg.lstsq(bk, qk - bk @ x, rcond=None)
    x = x + corr
    prices = factors * x

    err = np.abs(a @ prices - q)
    if np.any(err > atol):  # pragma: no cover - defensive
        worst = int(np.argmax(err))
        raise ValueError(
            f"could not reproduce strip {strip_list[worst].name}: error {err[worst]:.3g}"
        )
    return ForwardCurve(months=months, prices=prices, product=product, weights=weights)


def _diff_gram(n: int, order: int) -> np.ndarray:
    """``D^T D`` for the ``order``-th difference operator on ``n`` points."""
    if n <= order:
        return np.zeros((n, n))
    d = np.diff(np.eye(n), n=order, axis=0)
    return np.asarray(d.T @ d)


def _solve_kkt(h: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Minimise ``x' h x`` subject to ``c x = d`` via the KKT system (``c`` full row rank)."""
    n, k = h.shape[0], c.shape[0]
    kkt = np.zeros((n + k, n + k))
    kkt[:n, :n] = 2.0 * h
    kkt[:n, n:] = c.T
    kkt[n:, :n] = c
    rhs = np.concatenate([np.zeros(n), d])
    try:
        sol = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:  # pragma: no cover - guarded by the pinning below
        sol, *_ = np.linalg.lstsq(kkt, rhs, rcond=None)
    return np.asarray(sol[:n])


def _max_smooth(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Lexicographic maximum-smoothness solution of ``b x = q``.

    First minimise ``||D2 x||^2`` (second differences).  Its minimisers differ by
    ``span{1, m} ∩ null(b)`` (straight lines invisible to the quotes); among them pick
    the one minimising ``||D1 x||^2`` (first differences), e.g. flat for a single quote.
    """
    n = b.shape[1]
    if n == 1:
        return np.array([q[0] / b[0, 0]])
    grid = np.arange(n, dtype=float)
    lines = np.column_stack([np.ones(n), (grid - grid.mean()) / max(1.0, grid.std())])
    lines /= np.linalg.norm(lines, axis=0)
    _, sv, vt = np.linalg.svd(b @ lines)
    rank = int(np.sum(sv > 1e-12 * max(1.0, float(sv.max(initial=0.0)))))
    free = lines @ vt[rank:].T  # (n, r): lines the quotes do not see
    h2 = _diff_gram(n, 2)
    if free.shape[1] == 0:
        return _solve_kkt(h2, b, q)
    x0 = _solve_kkt(h2, np.vstack([b, free.T]), np.concatenate([q, np.zeros(free.shape[1])]))
    d1 = np.diff(np.eye(n), axis=0)
    coef, *_ = np.linalg.lstsq(d1 @ free, -(d1 @ x0), rcond=None)
    return np.asarray(x0 + free @ coef)


def _independent_rows(b: np.ndarray) -> np.ndarray:
    """Indices of a maximal linearly independent set of rows (Gram-Schmidt, in order)."""
    basis: list[np.ndarray] = []
    keep: list[int] = []
    for i, row in enumerate(b):
        v = row.astype(float).copy()
        for u in basis:
            v -= (u @ v) * u
        for u in basis:  # re-orthogonalise for stability
            v -= (u @ v) * u
        nv = float(np.linalg.norm(v))
        if nv > 1e-10 * max(1.0, float(np.linalg.norm(row))):
            basis.append(v / nv)
            keep.append(i)
    return np.array(keep, dtype=int)


# --------------------------------------------------------------------------- discount curve


@dataclass(frozen=True, eq=False)
class DiscountCurve:
    """Zero-rate discount curve (continuous compounding, Actual/365 Fixed).

    Zero rates are interpolated linearly in time between nodes and extrapolated flat.

    Attributes
    ----------
    as_of : date
        Curve date (t = 0).
    times : np.ndarray
        Node times in years (Act/365), strictly increasing, >= 0.
    rates : np.ndarray
        Continuously compounded zero rates at the nodes.
    """

    as_of: date
    times: np.ndarray
    rates: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", _as_date(self.as_of, "as_of"))
        t = np.array(self.times, dtype=float).reshape(-1)
        r = np.array(self.rates, dtype=float).reshape(-1)
        if t.size == 0 or t.shape != r.shape:
            raise ValueError("times and rates must be non-empty and of equal length")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(r))):
            raise ValueError("times and rates must be finite")
        if np.any(t < 0) or np.any(np.diff(t) <= 0):
            raise ValueError("times must be >= 0 and strictly increasing")
        t.setflags(write=False)
        r.setflags(write=False)
        object.__setattr__(self, "times", t)
        object.__setattr__(self, "rates", r)

    @classmethod
    def flat(cls, rate: float, as_of: date) -> DiscountCurve:
        """Flat continuously compounded zero rate."""
        if not math.isfinite(float(rate)):
            raise ValueError(f"rate must be finite, got {rate!r}")
        return cls(as_of, np.array([0.0]), np.array([float(rate)]))

    @classmethod
    def from_zero_rates(cls, as_of: date, nodes: Iterable[tuple[date, float]]) -> DiscountCurve:
        """Curve from ``(date, zero_rate)`` nodes (dates on/after ``as_of``, increasing)."""
        d0 = _as_date(as_of, "as_of")
        pairs = list(nodes)
        if not pairs:
            raise ValueError("nodes must contain at least one (date, rate) pair")
        times, rates = [], []
        for d, r in pairs:
            dd = _as_date(d, "node date")
            if dd < d0:
                raise ValueError(f"node date {dd} is before as_of {d0}")
            times.append(year_fraction(d0, dd))
            rates.append(float(r))
        if any(t1 <= t0 for t0, t1 in itertools.pairwise(times)):
            raise ValueError("node dates must be strictly increasing")
        return cls(d0, np.array(times), np.array(rates))

    def _t(self, t: Any) -> tuple[np.ndarray, bool]:
        """Times in years from dates / datetime64 / floats; flag whether input was scalar."""
        if isinstance(t, date):
            t = np.array([year_fraction(self.as_of, t)])
            scalar = True
        elif isinstance(t, np.datetime64):
            t = np.array([t])
            scalar = True
        else:
            scalar = np.ndim(t) == 0
        arr = np.asarray(t)
        if arr.dtype.kind == "M":
            days = (arr.astype("datetime64[D]") - np.datetime64(self.as_of, "D")).astype(float)
            out = days / 365.0
        elif arr.dtype == object:
            out = np.array(
                [
                    year_fraction(self.as_of, v) if isinstance(v, date) else float(v)
                    for v in arr.reshape(-1)
                ]
            ).reshape(arr.shape)
        else:
            out = arr.astype(float)
        if not np.all(np.isfinite(out)) or np.any(out < 0):
            raise ValueError("t must be finite and not before as_of (t >= 0)")
        return np.atleast_1d(out), scalar

    def zero(self, t: Any) -> Any:
        """Continuously compounded zero rate at ``t`` (years, date, or array of either)."""
        tt, scalar = self._t(t)
        z = np.interp(tt, self.times, self.rates)
        return float(z.reshape(-1)[0]) if scalar else z

    def df(self, t: Any) -> Any:
        """Discount factor ``exp(-z(t) t)`` at ``t`` (years, date, or array of either)."""
        tt, scalar = self._t(t)
        d = np.exp(-np.interp(tt, self.times, self.rates) * tt)
        return float(d.reshape(-1)[0]) if scalar else d
