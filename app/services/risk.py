"""Risk use case: 1-day and N-day VaR and ES of the current book, by method, with contributions.

No Qt and no ``app.feed`` (the layering contract): the caller hands in the bundled daily price
histories (``app.views.risk_panel.load_bundled_history`` reads them with the feed's CSV reader)
and a :class:`~app.services.positions.PositionReport`; the numerics are
:mod:`app.engine.risk` (``var_es``, ``component_es``, ``ewma_cov``, ``parametric_var_es``,
``component_var_parametric``, ``monte_carlo_var_es``). See ``docs/risk.md``.

**Risk factors (v1).** One per product: its front-month price. Scenarios are daily price
*changes* in price units (never log returns: WTI settled at -36.98 on 2020-04-20 and a
difference handles that, a logarithm does not). CR-WTI, CR-BRENT and NG-HH use the bundled EIA
series directly; every other product uses the changes of the closest bundled series scaled by the
ratio of catalogue typical levels (:data:`PROXIES`, e.g. NG-TTF = Henry Hub x 9.85).

**Exposure** per (currency, product) is the sum of the trades' delta-equivalent volume
(``Valuation.delta_qty``: forwards 1:1, options through their Black-76 delta), in product units.
The scenario P&L of a product is exposure x price change, in the product's currency. Results are
per currency; EUR is never added to USD.

**Methods.**

* ``historical``: overlapping ``h``-day changes ``P[t+h] - P[t]`` inside the window; VaR/ES by
  :func:`~app.engine.risk.var_es`, ES contributions by :func:`~app.engine.risk.component_es`.
* ``parametric`` (delta-normal): covariance of the daily product changes by
  :func:`~app.engine.risk.ewma_cov` (lambda 0.94), VaR/ES by
  :func:`~app.engine.risk.parametric_var_es` with sqrt-of-time scaling; ES contributions are the
  Euler ones, ``component_var_parametric x ES/VaR`` (both are ``sigma_p`` times a constant).
* ``monte_carlo``: :func:`~app.engine.risk.monte_carlo_var_es` with a linear revaluation on the
  EWMA covariance of the *source* series (at most three factors: proxies of one source are
  perfectly correlated, so the product covariance is singular) times ``h``; seed 42; ES
  contributions by ``component_es`` on the simulated per-product P&L; the result carries the
  order-statistics confidence interval of the VaR estimate.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.models.catalogue import PRODUCT_BY_CODE

__all__ = [
    "CONFIDENCES",
    "DEFAULT_WINDOW",
    "EWMA_LAMBDA",
    "MAX_HORIZON",
    "MC_SCENARIOS",
    "MC_SEED",
    "METHODS",
    "PROXIES",
    "SOURCE_LABELS",
    "Contribution",
    "CurrencyRisk",
    "Exposures",
    "HistorySeries",
    "Proxy",
    "RiskResult",
    "RiskService",
    "exposures_from_report",
]

#: Method key -> title.
METHODS: dict[str, str] = {
    "historical": "Historical",
    "parametric": "Parametric (delta-normal)",
    "monte_carlo": "Monte Carlo",
}
CONFIDENCES: tuple[float, ...] = (0.95, 0.975, 0.99)
DEFAULT_WINDOW = 500
MAX_HORIZON = 10
EWMA_LAMBDA = 0.94
MC_SCENARIOS = 20_000
MC_SEED = 42

#: The bundled EIA series by the product code they price directly.
SOURCE_LABELS: dict[str, str] = {
    "CR-BRENT": "EIA Brent",
    "CR-WTI": "EIA WTI",
    "NG-HH": "EIA Henry Hub",
}


class HistorySeries(Protocol):
    """A daily price series: ``dates`` (``datetime64[D]``, increasing) and ``values``."""

    @property
    def dates(self) -> np.ndarray: ...

    @property
    def values(self) -> np.ndarray: ...


@dataclass(frozen=True)
class Proxy:
    """How a product's price changes are taken: ``source`` changes times ``scale``."""

    product: str
    source: str
    scale: float

    @property
    def direct(self) -> bool:
        """True when the product is priced by its own bundled series."""
        return self.product == self.source

    def text(self) -> str:
        """``'direct: EIA WTI'`` or ``'proxy: EIA Henry Hub x 9.85'``."""
        label = SOURCE_LABELS.get(self.source, self.source)
        if self.direct:
            return f"direct: {label}"
        return f"proxy: {label} x {self.scale:.3g}"


def _proxy(product: str, source: str) -> Proxy:
    scale = PRODUCT_BY_CODE[product].typical_level / PRODUCT_BY_CODE[source].typical_level
    return Proxy(product, source, 1.0 if product == source else scale)


#: Closest bundled series per catalogue product: oil products <- Brent, gas and power <- Henry
#: Hub (power through gas: a crude gas-to-power proxy), scaled by the typical-level ratio.
PROXIES: dict[str, Proxy] = {
    p: _proxy(p, s)
    for p, s in {
        "CR-WTI": "CR-WTI",
        "CR-BRENT": "CR-BRENT",
        "NG-HH": "NG-HH",
        "NG-TTF": "NG-HH",
        "NG-NBP": "NG-HH",
        "RP-ULSD-NYH": "CR-BRENT",
        "RP-RBOB-NYH": "CR-BRENT",
        "RP-GASOIL": "CR-BRENT",
        "PWR-DE-BASE": "NG-HH",
        "PWR-DE-PEAK": "NG-HH",
        "PWR-PJMW-PEAK": "NG-HH",
        "PWR-PJMW-OFFPK": "NG-HH",
    }.items()
}


@dataclass(frozen=True)
class Exposures:
    """Delta-equivalent exposure per (currency, product), in product units (signed)."""

    as_of: dt.date
    product: tuple[str, ...]
    currency: tuple[str, ...]
    unit: tuple[str, ...]
    amount: np.ndarray
    n_trades: int = 0
    n_unmarked: int = 0

    def __len__(self) -> int:
        return len(self.product)


def exposures_from_report(report: Any) -> Exposures:
    """Sum ``valuation.delta_qty`` per (currency, product) of a ``PositionReport``.

    Trades whose delta is NaN (no curve, delivery beyond the curve) are left out and counted in
    ``n_unmarked``; delivered trades carry zero delta. Products with a zero net exposure are
    dropped.
    """
    delta = np.asarray(report.valuation.delta_qty, dtype=float)
    product = np.asarray(report.product, dtype=object)
    currency = np.asarray(report.currency, dtype=object)
    unit = np.asarray(report.unit, dtype=object)
    ok = np.isfinite(delta)
    sums: dict[tuple[str, str], float] = {}
    units: dict[tuple[str, str], str] = {}
    for i in np.flatnonzero(ok).tolist():
        key = (str(currency[i]), str(product[i]))
        sums[key] = sums.get(key, 0.0) + float(delta[i])
        units[key] = str(unit[i])
    keys = sorted(k for k, v in sums.items() if v != 0.0)
    return Exposures(
        as_of=report.as_of,
        product=tuple(k[1] for k in keys),
        currency=tuple(k[0] for k in keys),
        unit=tuple(units[k] for k in keys),
        amount=np.array([sums[k] for k in keys], dtype=float),
        n_trades=int(delta.size),
        n_unmarked=int(np.sum(~ok)),
    )


@dataclass(frozen=True)
class Contribution:
    """One product's share of its currency's ES (Euler allocation: the rows sum to the ES)."""

    product: str
    currency: str
    unit: str
    exposure: float
    contribution: float
    share: float  # contribution / ES (NaN when ES is 0)
    proxy: str


@dataclass(frozen=True)
class CurrencyRisk:
    """VaR and ES (losses, positive) of the positions in one currency."""

    currency: str
    var: float
    es: float
    contributions: tuple[Contribution, ...]
    pnl: np.ndarray = field(repr=False)  # scenario P&L (historical, Monte Carlo); empty else
    sigma: float = math.nan  # parametric: sigma of the horizon P&L
    var_ci: tuple[float, float] | None = None  # Monte Carlo: CI of the VaR estimate
    ci_level: float = math.nan


@dataclass(frozen=True)
class RiskResult:
    """A VaR/ES calculation of a book, per currency, with how it was computed."""

    method: str
    confidence: float
    horizon_days: int
    window_days: int
    window_start: dt.date
    window_end: dt.date
    as_of: dt.date
    n_scenarios: int
    currencies: tuple[CurrencyRisk, ...]
    proxies: tuple[Proxy, ...]
    skipped: tuple[str, ...] = ()  # products without a risk factor
    n_unmarked: int = 0

    def currency(self, code: str) -> CurrencyRisk:
        """The result for one currency (``KeyError`` if the book holds none)."""
        for c in self.currencies:
            if c.currency == code:
                return c
        raise KeyError(code)

    def method_text(self) -> str:
        """How the numbers were computed, method by method."""
        h = self.horizon_days
        if self.method == "historical":
            chg = "daily" if h == 1 else f"overlapping {h}-day"
            return f"historical, {self.n_scenarios} {chg} price changes"
        if self.method == "parametric":
            scale = "" if h == 1 else f", sqrt({h}) time scaling"
            return f"parametric delta-normal, EWMA covariance (lambda {EWMA_LAMBDA}){scale}"
        return (
            f"Monte Carlo, {self.n_scenarios:,} linear scenarios on the EWMA covariance "
            f"(lambda {EWMA_LAMBDA}) x {h} day{'s' if h > 1 else ''}, seed {MC_SEED}"
        )

    def note(self) -> str:
        """One paragraph saying exactly how the results were computed."""
        parts = [
            f"{self.method_text()}; {self.confidence:.1%} confidence, {self.horizon_days}-day "
            f"horizon; window {self.window_days} business days "
            f"{self.window_start.isoformat()} .. {self.window_end.isoformat()}; "
            f"positions as of {self.as_of.isoformat()}; exposures = delta-equivalent volume; "
            "factors = front-month price changes (price units, no log returns); "
            "ES contributions by Euler allocation",
            "factors: " + "; ".join(f"{p.product} {p.text()}" for p in self.proxies),
        ]
        if self.skipped:
            parts.append("no risk factor (left out): " + ", ".join(self.skipped))
        if self.n_unmarked:
            parts.append(f"{self.n_unmarked} unmarked trade(s) left out")
        return ". ".join(parts) + "."


class RiskService:
    """Computes :class:`RiskResult` objects from exposures and the bundled price histories.

    ``history`` maps a source product code (``CR-WTI``, ``CR-BRENT``, ``NG-HH``) to its daily
    series. Stateless apart from that: safe to call from worker threads.
    """

    def __init__(self, history: Mapping[str, HistorySeries]) -> None:
        self.history = dict(history)

    # ------------------------------------------------------------------ factors

    def factor_changes(
        self,
        products: Sequence[str],
        window: int = DEFAULT_WINDOW,
        horizon_days: int = 1,
        window_end: dt.date | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Aligned price changes for ``products``.

        Returns ``(dates, daily, horizon)``: the ``window + 1`` common observation dates (the
        window ends at the last date common to all sources needed, or the last common date on or
        before ``window_end``), the ``(window, m)`` daily changes and the
        ``(window - h + 1, m)`` overlapping ``h``-day changes, each product's column being its
        source's changes times the proxy scale.
        """
        if not products:
            raise ValueError("no products")
        if int(window) != window or window < 2:
            raise ValueError(f"window must be an integer >= 2, got {window!r}")
        if int(horizon_days) != horizon_days or not 1 <= horizon_days <= MAX_HORIZON:
            raise ValueError(f"horizon must be 1..{MAX_HORIZON} days, got {horizon_days!r}")
        if horizon_days >= window:
            raise ValueError("horizon must be shorter than the window")
        proxies = [PROXIES[p] for p in products]
        sources = sorted({p.source for p in proxies})
        missing = [s for s in sources if s not in self.history]
        if missing:
            raise ValueError(f"no price history for {', '.join(missing)}")
        common: np.ndarray | None = None
        for s in sources:
            d = np.asarray(self.history[s].dates, dtype="datetime64[D]")
            common = d if common is None else np.intersect1d(common, d, assume_unique=True)
        assert common is not None
        if window_end is not None:
            common = common[common <= np.datetime64(window_end, "D")]
        if common.size < window + 1:
            raise ValueError(
                f"only {common.size} common dates in the history, the window needs {window + 1}"
            )
        dates = common[-(window + 1) :]
        levels = {}
        for s in sources:
            h = self.history[s]
            d = np.asarray(h.dates, dtype="datetime64[D]")
            v = np.asarray(h.values, dtype=float)
            levels[s] = v[np.searchsorted(d, dates)]
        src = np.column_stack([levels[p.source] for p in proxies])
        scale = np.array([p.scale for p in proxies])
        prices = src * scale
        daily = np.diff(prices, axis=0)
        hday = prices[horizon_days:] - prices[:-horizon_days]
        return dates, daily, hday

    # ------------------------------------------------------------------ calculation

    def calculate(
        self,
        exposures: Exposures,
        method: str = "historical",
        confidence: float = 0.99,
        horizon_days: int = 1,
        window: int = DEFAULT_WINDOW,
        window_end: dt.date | None = None,
        *,
        n_scenarios: int = MC_SCENARIOS,
        progress: Callable[[float], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> RiskResult:
        """VaR and ES of ``exposures`` per currency (see the module docstring).

        Raises ``ValueError`` with a readable message for bad settings or an empty book, and
        ``concurrent.futures.CancelledError`` when ``cancelled()`` turns true.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        if not 0.5 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
        skipped = tuple(sorted({p for p in exposures.product if p not in PROXIES}))
        keep = [i for i, p in enumerate(exposures.product) if p in PROXIES]
        if not keep:
            if skipped:
                raise ValueError(f"no risk factor for the products held: {', '.join(skipped)}")
            raise ValueError("no open positions with a delta exposure")
        products = sorted({exposures.product[i] for i in keep})
        col = {p: j for j, p in enumerate(products)}
        dates, daily, hday = self.factor_changes(products, window, horizon_days, window_end)
        currencies = sorted({exposures.currency[i] for i in keep})
        out: list[CurrencyRisk] = []
        n_scen = hday.shape[0] if method == "historical" else 0
        for k, ccy in enumerate(currencies):
            rows = [i for i in keep if exposures.currency[i] == ccy]
            cols = np.array([col[exposures.product[i]] for i in rows])
            w = exposures.amount[rows]

            def sub(f: float, k: int = k) -> None:
                if progress is not None:
                    progress((k + f) / len(currencies))

            if cancelled is not None and cancelled():
                from concurrent.futures import CancelledError

                raise CancelledError
            if method == "historical":
                cr, n_scen = _historical(hday[:, cols] * w, confidence)
            elif method == "parametric":
                cr = _parametric(w, daily[:, cols], confidence, horizon_days)
            else:
                srcs = [PROXIES[exposures.product[i]].source for i in rows]
                cr = _monte_carlo(
                    w,
                    srcs,
                    [PROXIES[exposures.product[i]].scale for i in rows],
                    self._source_daily(sorted(set(srcs)), dates),
                    confidence,
                    horizon_days,
                    n_scenarios,
                    sub,
                    cancelled,
                )
                n_scen = n_scenarios
            var, es, comp, pnl, extra = cr
            contribs = tuple(
                Contribution(
                    product=exposures.product[i],
                    currency=ccy,
                    unit=exposures.unit[i],
                    exposure=float(exposures.amount[i]),
                    contribution=float(c),
                    share=float(c / es) if es != 0 else math.nan,
                    proxy=PROXIES[exposures.product[i]].text(),
                )
                for i, c in zip(rows, comp, strict=True)
            )
            out.append(CurrencyRisk(ccy, var, es, contribs, pnl, **extra))
            sub(1.0)
        return RiskResult(
            method=method,
            confidence=float(confidence),
            horizon_days=int(horizon_days),
            window_days=int(window),
            window_start=_date(dates[0]),
            window_end=_date(dates[-1]),
            as_of=exposures.as_of,
            n_scenarios=int(n_scen),
            currencies=tuple(out),
            proxies=tuple(PROXIES[p] for p in products),
            skipped=skipped,
            n_unmarked=exposures.n_unmarked,
        )

    def _source_daily(self, sources: list[str], dates: np.ndarray) -> dict[str, np.ndarray]:
        """Daily changes of each source series on ``dates``."""
        out = {}
        for s in sources:
            h = self.history[s]
            d = np.asarray(h.dates, dtype="datetime64[D]")
            out[s] = np.diff(np.asarray(h.values, dtype=float)[np.searchsorted(d, dates)])
        return out


_Calc = tuple[float, float, np.ndarray, np.ndarray, dict[str, Any]]


def _historical(pnl_matrix: np.ndarray, alpha: float) -> tuple[_Calc, int]:
    from app.engine.risk import component_es, var_es  # lazy: ~0.4 s, not at start-up

    var, es = var_es(pnl_matrix, alpha)
    comp = component_es(pnl_matrix, alpha)
    return (var, es, comp, pnl_matrix.sum(axis=1), {}), pnl_matrix.shape[0]


def _parametric(w: np.ndarray, daily: np.ndarray, alpha: float, h: int) -> _Calc:
    from app.engine.risk import component_var_parametric, ewma_cov, parametric_var_es

    cov = np.atleast_2d(np.asarray(ewma_cov(daily, EWMA_LAMBDA), dtype=float))
    var, es = parametric_var_es(w, cov, alpha, h)
    cvar = component_var_parametric(w, cov, alpha, h)
    comp = cvar * (es / var) if var > 0 else np.zeros_like(w)
    sigma = math.sqrt(max(float(w @ cov @ w), 0.0) * h)
    return var, es, comp, np.zeros(0), {"sigma": sigma}


def _monte_carlo(
    w: np.ndarray,
    sources: list[str],
    scales: list[float],
    source_daily: dict[str, np.ndarray],
    alpha: float,
    h: int,
    n: int,
    progress: Callable[[float], object],
    cancelled: Callable[[], bool] | None,
) -> _Calc:
    from app.engine.risk import component_es, ewma_cov, monte_carlo_var_es

    names = sorted(source_daily)
    idx = np.array([names.index(s) for s in sources])
    loads = w * np.asarray(scales)  # P&L per unit move of each product's source
    changes = np.column_stack([source_daily[s] for s in names])
    cov = np.atleast_2d(np.asarray(ewma_cov(changes, EWMA_LAMBDA), dtype=float)) * h
    parts: list[np.ndarray] = []

    def revalue(shocks: np.ndarray) -> np.ndarray:
        per_product = shocks[:, idx] * loads  # linear revaluation, product by product
        parts.append(per_product)
        return per_product.sum(axis=1)

    mc = monte_carlo_var_es(revalue, cov, alpha, n, MC_SEED, progress=progress, cancelled=cancelled)
    matrix = np.concatenate(parts)[:n]
    comp = component_es(matrix, alpha)
    return mc.var, mc.es, comp, mc.pnl, {"var_ci": mc.var_ci, "ci_level": mc.ci_level}


def _date(d: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(np.asarray(d).astype("datetime64[D]")))
