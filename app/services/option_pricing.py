"""Option pricing requests for the Options Pricer: inputs, models, greeks, implied vol, grids.

Pure calculation on top of :mod:`app.engine` (no Qt): the pricer panel runs these functions in
its background jobs, and scripts can call them directly.

Units returned
--------------
* price: per unit of the product (currency/unit), discounted with the rate;
* delta per 1 unit of the forward, gamma per unit squared;
* vega per 1 vol point (engine vega / 100) for lognormal models; per 1.00 price unit of
  normal vol for Bachelier;
* theta per calendar day (engine theta / 365); rho per 1 % of rate (engine rho / 100);
* T is Act/365: ``(expiry - today).days / 365``.

Greeks of the American (Leisen-Reimer tree) and Asian (Turnbull-Wakeman) models are
bump-and-reprice central differences of the respective pricer, all bumps priced in one
vectorised call: F by 0.5 % (delta, gamma), vol by 1 point (vega), rate by 1 bp (rho) and
calendar time by one day (theta; one-sided when fewer than two days remain).
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from app.engine.american import american_black76
from app.engine.asian import asian_turnbull_wakeman
from app.engine.curves import ForwardCurve
from app.engine.options import (
    bachelier,
    bachelier_greeks,
    black76,
    black76_greeks,
    implied_vol_bachelier_detail,
    implied_vol_black76_detail,
)
from app.engine.vol import VolSurface
from app.models.catalogue import PRODUCT_SPECS
from app.models.enums import Commodity, ExerciseStyle

MODEL_BLACK = "Black-76 European"
MODEL_BACHELIER = "Bachelier European (normal vol, valid for negative prices)"
MODEL_AMERICAN = "American (Black-76 tree)"
MODEL_ASIAN = "Asian (Turnbull-Wakeman, averaging over the month before expiry)"
MODELS = (MODEL_BLACK, MODEL_BACHELIER, MODEL_AMERICAN, MODEL_ASIAN)
STYLE_OF_MODEL = {
    MODEL_BLACK: ExerciseStyle.EUROPEAN,
    MODEL_BACHELIER: ExerciseStyle.EUROPEAN,
    MODEL_AMERICAN: ExerciseStyle.AMERICAN,
    MODEL_ASIAN: ExerciseStyle.ASIAN,
}
AMERICAN_STEPS = 401
ASIAN_FIXINGS = 21
ASIAN_WINDOW = 1.0 / 12.0  # averaging over the (delivery) month before expiry

#: Typed starting forward per product code (no live curve yet), then per commodity.
TYPICAL_LEVEL: dict[str, float] = {p.code: p.typical_level for p in PRODUCT_SPECS}
TYPICAL_BY_COMMODITY: dict[Commodity, float] = {
    Commodity.POWER: 80.0,
    Commodity.NATURAL_GAS: 30.0,
    Commodity.CRUDE: 72.0,
    Commodity.REFINED: 2.3,
}
DEFAULT_VOL_PCT = 40.0


REASON_TEXT = {
    "at_intrinsic": "premium equals intrinsic value: vol 0",
    "below_intrinsic": "premium below intrinsic value: no vol gives it",
    "above_upper_bound": "premium at or above the no-arbitrage upper bound",
    "zero_expiry": "expiry is today: vol undetermined",
    "no_convergence": "solver did not converge",
}


# -- pure calculation (runs in the job) -----------------------------------------------------


@dataclass(frozen=True)
class PricerInputs:
    """One pricing request; ``vol`` is absolute (0.40 = 40 %, or price units for Bachelier)."""

    model: str
    call: bool
    F: float
    K: float
    expiry: dt.date
    today: dt.date
    vol: float
    rate: float
    premium: float | None = None
    quantity: float | None = None

    @property
    def T(self) -> float:
        return year_fraction(self.today, self.expiry)

    @property
    def normal(self) -> bool:
        return self.model == MODEL_BACHELIER


def year_fraction(today: dt.date, expiry: dt.date) -> float:
    """Act/365 time from ``today`` to ``expiry`` in years."""
    return (expiry - today).days / 365.0


def add_months(d: dt.date, months: int) -> dt.date:
    """``d`` moved by ``months`` calendar months (day clipped to the month's end)."""
    m = d.month - 1 + months
    y, m = d.year + m // 12, m % 12 + 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def month_after(d: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the calendar month after ``d``'s month."""
    start = add_months(d.replace(day=1), 1)
    return start, start.replace(day=calendar.monthrange(start.year, start.month)[1])


def forward_for_expiry(curve: ForwardCurve, expiry: dt.date) -> float:
    """Forward of the contract an option expiring on ``expiry`` is written on: the delivery-
    weighted average of ``curve`` over the calendar month after the expiry month.

    Raises ValueError (with the month) when the curve does not cover that month.
    """
    start, end = month_after(expiry)
    if start < curve.start or end > curve.end:
        raise ValueError(
            f"the {curve.product or 'live'} curve ({curve.start:%b-%y}..{curve.end:%b-%y}) does "
            f"not cover {start:%b-%y}, the month after expiry"
        )
    return curve.price(start, end)


Pricer = Callable[[Any, Any, Any, Any, Any], Any]


def pricer_for(model: str, call: bool) -> Pricer:
    """``f(F, K, T, r, vol)`` for ``model``, vectorised (arrays broadcast together)."""
    if model == MODEL_BLACK:
        return lambda F, K, T, r, v: black76(F, K, T, r, v, call)
    if model == MODEL_BACHELIER:
        return lambda F, K, T, r, v: bachelier(F, K, T, r, v, call)
    if model == MODEL_AMERICAN:
        # Richardson-extrapolated 401/803-step tree: ~20x closer to a converged price than
        # 803 steps alone (tests/test_exotics.py against QuantLib's QdFp engine).
        return lambda F, K, T, r, v: american_black76(
            F, K, T, r, v, call, steps=AMERICAN_STEPS, richardson=True
        )
    if model == MODEL_ASIAN:

        def asian(F: Any, K: Any, T: Any, r: Any, v: Any) -> Any:
            start = np.maximum(np.asarray(T, dtype=float) - ASIAN_WINDOW, 0.0)
            return asian_turnbull_wakeman(F, K, T, r, v, call, start, ASIAN_FIXINGS)

        return asian
    raise ValueError(f"unknown model '{model}'")


def _check_inputs(inp: PricerInputs) -> None:
    if inp.expiry < inp.today:
        raise ValueError(f"expiry {inp.expiry.isoformat()} is in the past")
    if not inp.vol > 0:
        raise ValueError("volatility must be positive")
    if not inp.normal and inp.F <= 0:
        raise ValueError(
            "the forward must be > 0 for a lognormal model; use Bachelier for zero or "
            "negative prices"
        )
    if not inp.normal and inp.K <= 0:
        raise ValueError("the strike must be > 0 for a lognormal model; use Bachelier")


def _fd_greeks(pricer: Pricer, inp: PricerInputs) -> tuple[float, dict[str, float]]:
    """Price and bump-and-reprice greeks (engine units: per 1.00 vol / rate, theta per year)."""
    F, K, T, r, v = inp.F, inp.K, inp.T, inp.rate, inp.vol
    h = max(abs(F) * 0.005, 1e-6)
    dv = min(0.01, v / 2.0)
    dr = 1e-4
    dt_ = 1.0 / 365.0
    t_dn = T - dt_ if 2 * dt_ <= T else T
    Fs = np.array([F, F + h, F - h, F, F, F, F, F, F])
    Vs = np.array([v, v, v, v + dv, v - dv, v, v, v, v])
    Rs = np.array([r, r, r, r, r, r + dr, r - dr, r, r])
    Ts = np.array([T, T, T, T, T, T, T, T + dt_, t_dn])
    p = np.asarray(pricer(Fs, K, Ts, Rs, Vs), dtype=float)
    greeks = {
        "delta": (p[1] - p[2]) / (2 * h),
        "gamma": (p[1] - 2 * p[0] + p[2]) / (h * h),
        "vega": (p[3] - p[4]) / (2 * dv),
        "rho": (p[5] - p[6]) / (2 * dr),
        "theta": -(p[7] - p[8]) / (T + dt_ - t_dn),
    }
    return float(p[0]), {k: float(x) for k, x in greeks.items()}


def _implied_by_grid(pricer: Pricer, inp: PricerInputs, target: float) -> tuple[float, str]:
    """Vol for ``target`` by three rounds of vectorised bracketing on the (monotone) pricer."""
    lo, hi = 0.005, 5.0  # the tree has no finite value at much lower vols
    ends = np.asarray(pricer(inp.F, inp.K, inp.T, inp.rate, np.array([lo, hi])), dtype=float)
    if not target >= ends[0]:
        return math.nan, "premium at or below the value at 0.5 % vol (about intrinsic)"
    if target > ends[1]:
        return math.nan, "premium above the value at 500 % vol"
    for _ in range(3):
        vols = np.linspace(lo, hi, 65)
        prices = np.asarray(pricer(inp.F, inp.K, inp.T, inp.rate, vols), dtype=float)
        prices = np.where(np.isnan(prices), -np.inf, prices)  # NaN only at the low-vol end
        i = int(np.clip(np.searchsorted(prices, target), 1, len(vols) - 1))
        lo, hi = float(vols[i - 1]), float(vols[i])
        p_lo, p_hi = float(prices[i - 1]), float(prices[i])
    w = 0.0 if p_hi == p_lo else (target - p_lo) / (p_hi - p_lo)
    return lo + w * (hi - lo), "ok"


@dataclass(frozen=True)
class SmileQuotes:
    """Implied-vol quotes of one option expiry (plain data, e.g. from the price feed)."""

    expiry: dt.date
    forward: float
    strikes: tuple[float, ...]
    vols: tuple[float, ...]
    label: str = ""


@dataclass(frozen=True)
class FittedSurface:
    """A vol surface fitted to quotes (one raw-SVI smile per expiry) and the quotes used."""

    surface: VolSurface
    quotes: tuple[SmileQuotes, ...]
    today: dt.date
    source: str = ""

    def nearest(self, expiry: dt.date) -> SmileQuotes:
        """The quoted smile whose expiry is closest to ``expiry``."""
        return min(self.quotes, key=lambda q: abs((q.expiry - expiry).days))


def _usable(q: SmileQuotes, today: dt.date) -> bool:
    """A smile worth fitting: not expired, positive forward, at least 5 strikes."""
    return q.expiry > today and q.forward > 0 and len(q.strikes) >= 5


def bracketing(quotes: list[SmileQuotes], today: dt.date, expiry: dt.date) -> list[SmileQuotes]:
    """The quoted smiles a vol at ``expiry`` depends on: the last quoted expiry on or before it
    and the first after it (one smile when ``expiry`` is outside the quoted range), among the
    usable quotes (expiry after ``today``, positive forward, at least 5 strikes)."""
    live = sorted((q for q in quotes if _usable(q, today)), key=lambda q: q.expiry)
    before = [q for q in live if q.expiry <= expiry]
    after = [q for q in live if q.expiry > expiry]
    return before[-1:] + after[:1]


def fit_surface(
    quotes: list[SmileQuotes], today: dt.date, source: str = "", expiry: dt.date | None = None
) -> FittedSurface:
    """Fit one SVI smile per quoted expiry after ``today`` (:meth:`VolSurface.fit`).

    With ``expiry``, only the (at most two) smiles bracketing it are fitted
    (:func:`bracketing`): the surface's vol at that expiry is the same (total variance is
    interpolated between neighbouring expiries) and the fit costs two smiles, not all.
    Raises ValueError when no expiry is left or the quotes cannot be fitted.
    """
    if expiry is not None:
        live = bracketing(quotes, today, expiry)
    else:
        live = [q for q in quotes if _usable(q, today)]
    if not live:
        raise ValueError("the feed quotes no vol smile with an expiry after today")
    by_t: dict[float, tuple[Any, Any]] = {}
    fwd: dict[float, float] = {}
    for q in live:
        T = year_fraction(today, q.expiry)
        by_t[T] = (np.asarray(q.strikes), np.asarray(q.vols))
        fwd[T] = q.forward
    return FittedSurface(VolSurface.fit(by_t, fwd), tuple(live), today, source)


def compute(inp: PricerInputs, surface: FittedSurface | None = None) -> dict[str, Any]:
    """Price, greeks in display units, implied vol and chart arrays. Raises ValueError.

    With ``surface`` (lognormal models only) the vol is read from the fitted surface at the
    option's expiry and strike (``inp.vol`` is ignored) and the smile chart shows the fitted
    smile at that expiry with the quotes of the nearest quoted expiry.
    """
    if surface is not None:
        if inp.normal:
            raise ValueError("the vol surface holds lognormal vols: type a normal vol")
        if inp.F <= 0 or inp.K <= 0:
            raise ValueError("surface vols need a positive forward and strike: type a vol")
        if inp.T <= 0:
            raise ValueError("the option has expired")
        inp = replace(inp, vol=float(surface.surface.vol(inp.T, inp.K, inp.F)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        res = _compute(inp)
    if surface is not None:
        ks = np.asarray(res["smile_k"])
        ks = ks[ks > 0]
        res["smile_k"] = ks
        res["smile_vol"] = np.asarray(surface.surface.vol(inp.T, ks, inp.F), dtype=float)
        near = surface.nearest(inp.expiry)
        res["smile_quotes"] = (np.asarray(near.strikes), np.asarray(near.vols), near)
        res["surface_vol"] = inp.vol
        res["inputs"] = inp
    if not math.isfinite(res["price"]) or not all(map(math.isfinite, res["greeks"].values())):
        raise ValueError(
            "the model gave no finite value for these inputs (vol too low for the tree?)"
        )
    return res


def _compute(inp: PricerInputs) -> dict[str, Any]:
    _check_inputs(inp)
    pricer = pricer_for(inp.model, inp.call)
    F, K, T, r, v = inp.F, inp.K, inp.T, inp.rate, inp.vol
    if inp.model in (MODEL_BLACK, MODEL_BACHELIER):
        fn = black76_greeks if inp.normal is False else bachelier_greeks
        g = fn(F, K, T, r, v, inp.call)
        price = float(pricer(F, K, T, r, v))
        raw = {"delta": g.delta, "gamma": g.gamma, "vega": g.vega, "theta": g.theta, "rho": g.rho}
        greeks = {k: float(x) for k, x in raw.items()}
    else:
        price, greeks = _fd_greeks(pricer, inp)
    shown = {
        "delta": greeks["delta"],
        "gamma": greeks["gamma"],
        "vega": greeks["vega"] if inp.normal else greeks["vega"] / 100.0,
        "theta": greeks["theta"] / 365.0,
        "rho": greeks["rho"] / 100.0,
    }
    implied: float | None = None
    implied_reason = ""
    if inp.premium is not None:
        if inp.model == MODEL_BLACK:
            iv, reason = implied_vol_black76_detail(inp.premium, F, K, T, r, inp.call)
        elif inp.model == MODEL_BACHELIER:
            iv, reason = implied_vol_bachelier_detail(inp.premium, F, K, T, r, inp.call)
        else:
            iv, reason = _implied_by_grid(pricer, inp, inp.premium)
        implied = float(iv)  # type: ignore[arg-type]
        implied_reason = REASON_TEXT.get(str(reason), str(reason))

    # Chart 1: payoff at expiry and value today against the forward.
    if inp.normal:
        spread = 4.0 * v * math.sqrt(max(T, 1.0 / 365.0))
        x = np.linspace(F - spread, F + spread, 121)
    else:
        x = np.linspace(F * 0.5, F * 1.5, 121)
    w = 1.0 if inp.call else -1.0
    payoff = np.maximum(w * (x - K), 0.0)
    today_value = np.asarray(pricer(x, K, T, r, v), dtype=float)

    # Chart 2: flat vol against strike (a surface arrives with vol fitting).
    if inp.normal:
        ks = np.linspace(K - spread, K + spread, 41)
    else:  # around both the strike and the forward (the smile's centre)
        lo, hi = min(K, F), max(K, F)
        ks = np.linspace(lo * 0.5, hi * 1.5, 61) if lo > 0 else np.linspace(K * 0.5, K * 1.5, 41)
    return {
        "inputs": inp,
        "price": price,
        "greeks": shown,
        "implied_vol": implied,
        "implied_reason": implied_reason,
        "value": None if inp.quantity is None else price * inp.quantity,
        "chart_x": x,
        "payoff": payoff,
        "today": today_value,
        "smile_k": ks,
        "smile_vol": np.full_like(ks, v),
    }


def parse_strikes(text: str) -> list[float]:
    """``"80, 90, 100"`` or ``"80..120 step 10"`` (also ``"-10..10 step 5"``)."""
    text = text.strip()
    m = re.fullmatch(r"(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*(?:step|/)\s*([\d.]+)", text)
    if m:
        a, b, s = (float(g) for g in m.groups())
        if s <= 0:
            raise ValueError("strike step must be positive")
        n = math.floor((b - a) / s + 1e-9) + 1
        if n < 1 or n > 200:
            raise ValueError("strike range must give 1 to 200 strikes")
        return [round(a + i * s, 10) for i in range(n)]
    try:
        out = [float(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError("strikes: a comma list (80, 90, 100) or 'from..to step s'") from None
    if not out:
        raise ValueError("give at least one strike")
    return out


def parse_months(text: str) -> list[int]:
    """Comma list of whole months ahead, e.g. ``"1, 2, 3, 6, 12"``."""
    try:
        out = [int(p) for p in text.replace(";", ",").split(",") if p.strip()]
    except ValueError:
        raise ValueError("expiries: a comma list of whole months ahead (1, 2, 3, 6, 12)") from None
    if not out or any(m < 0 or m > 240 for m in out):
        raise ValueError("expiries: months ahead between 0 and 240")
    return out


def compute_grid(inp: PricerInputs, strikes: list[float], months: list[int]) -> dict[str, Any]:
    """Prices for strikes (rows) x expiries (columns) in one broadcast engine call."""
    expiries = [add_months(inp.today, m) for m in months]
    _check_inputs(replace(inp, K=min(strikes) if not inp.normal else inp.K))
    K = np.asarray(strikes, dtype=float)[:, None]
    T = np.asarray([year_fraction(inp.today, e) for e in expiries], dtype=float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        prices = np.asarray(pricer_for(inp.model, inp.call)(inp.F, K, T, inp.rate, inp.vol))
    return {"strikes": strikes, "months": months, "expiries": expiries, "prices": prices}


# -- grid model -----------------------------------------------------------------------------
