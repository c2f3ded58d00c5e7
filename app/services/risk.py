"""Risk use case: VaR and ES of the book by five methods, per currency, with contributions.

No Qt and no ``app.feed`` (the layering contract): the caller hands in the daily price histories
(``app.views.risk_panel.load_bundled_history`` reads the bundled EIA series with the feed's CSV
reader) and a :class:`~app.services.positions.PositionReport`; :func:`risk_inputs` turns the
report into per-currency :class:`~app.engine.risk.book.RiskBook` arrays; the numerics are
:mod:`app.engine.risk`. See ``docs/risk.md``.

**Risk factors.** One per (product, delivery month): the monthly forward price. Scenarios are
price *changes* in price units (never log returns: WTI settled at -36.98 on 2020-04-20 and a
difference handles that, a logarithm does not). History exists only for three spot series
(EIA WTI, Brent, Henry Hub), so the factor moves are an explicit proxy:
``move(product, month) = source move x proxy scale x sigma_p(T)/sigma_p(0)`` -- the proxy scale
is the catalogue typical-level ratio (:data:`PROXIES`, e.g. NG-TTF = Henry Hub x 9.85), and the
tenor loading is the ratio of the product's Samuelson volatility at time to delivery ``T`` to
the front's (``tenor_vols``, the feed simulator's calibrated two-factor model).

**Methods** (:data:`METHODS`): historical simulation with full revaluation (options repriced
with Black-76 on every scenario) or delta-gamma; parametric delta-normal (EWMA covariance) or
delta-gamma Cornish-Fisher; Monte Carlo with full revaluation on the EWMA covariance (seed
:data:`MC_SEED`, order-statistics confidence interval of the VaR). ES for each; contributions per
product, book or trade that sum to the ES. Results are per currency; EUR is never added to USD.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from app.engine.risk.book import RiskBook
from app.models.catalogue import PRODUCT_BY_CODE
from app.models.enums import InstrumentType, OptionType
from app.models.types import PRICE_PLACES

__all__ = [
    "CALENDAR_PER_BUSINESS_DAY",
    "CONFIDENCES",
    "DEFAULT_WINDOW",
    "EWMA_LAMBDA",
    "GROUP_BY",
    "MAX_HORIZON",
    "MC_SCENARIOS",
    "MC_SEED",
    "METHODS",
    "PROXIES",
    "SOURCE_LABELS",
    "Contribution",
    "CurrencyBook",
    "CurrencyRisk",
    "HistorySeries",
    "Proxy",
    "RiskInputs",
    "RiskResult",
    "RiskService",
    "Scenarios",
    "TenorVol",
    "horizon_calendar_days",
    "risk_inputs",
    "tenor_loading",
]

#: Method key -> title.
METHODS: dict[str, str] = {
    "historical": "Historical (full revaluation)",
    "historical_dg": "Historical (delta-gamma)",
    "parametric": "Parametric (delta-normal)",
    "delta_gamma_cf": "Parametric (delta-gamma Cornish-Fisher)",
    "monte_carlo": "Monte Carlo (full revaluation)",
}
CONFIDENCES: tuple[float, ...] = (0.95, 0.975, 0.99)
DEFAULT_WINDOW = 500
MAX_HORIZON = 10
EWMA_LAMBDA = 0.94
MC_SCENARIOS = 20_000
MC_SEED = 42
_OPTION = list(InstrumentType).index(InstrumentType.OPTION)
_CALL = list(OptionType).index(OptionType.CALL)
_P_SCALE = 10.0**PRICE_PLACES

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


#: Group-by dimensions of the contributions.
GROUP_BY: dict[str, str] = {"product": "Product", "book": "Book", "trade": "Trade"}

#: Calendar days per business day of horizon: over ``h`` business days options lose
#: ``round(h x 7/5)`` calendar days of time value (:func:`horizon_calendar_days`).
CALENDAR_PER_BUSINESS_DAY = 7.0 / 5.0


def horizon_calendar_days(h: int) -> int:
    """Calendar days of option time decay over a horizon of ``h`` business days."""
    return round(h * CALENDAR_PER_BUSINESS_DAY)


class TenorVol(Protocol):
    """Samuelson volatility term structure of a product (``ProductParams`` has it)."""

    def sigma(self, t: np.ndarray | float) -> np.ndarray: ...


def tenor_loading(vol: TenorVol | None, tau: np.ndarray) -> np.ndarray:
    """Move of a tenor per unit move of the front: ``sigma(tau) / sigma(0)`` (1 without a model).

    The documented spot-to-tenor proxy: a month ``tau`` years before delivery moves by the
    ratio of its Samuelson volatility to the front's, the two-factor model the feed simulator
    calibrates on the same real series (``app/feed/sim_params.py``).
    """
    t = np.maximum(np.asarray(tau, dtype=float), 0.0)
    if vol is None:
        return np.ones_like(t)
    return np.asarray(vol.sigma(t), dtype=float) / float(np.asarray(vol.sigma(0.0)))


@dataclass(frozen=True, eq=False)
class CurrencyBook:
    """The part of a book in one currency, as risk arrays and factor metadata.

    ``book`` is the engine's :class:`~app.engine.risk.book.RiskBook` (curve index = position in
    ``products``); per factor ``j``: ``factor_product[j]``, ``book.factor_month[j]``,
    ``factor_tau[j]`` (years from the valuation day to the middle of the delivery month),
    ``factor_source[j]`` (the history series it moves with) and ``loading[j]`` (its move per
    unit move of the source: proxy scale x tenor loading).
    """

    currency: str
    book: RiskBook
    products: tuple[str, ...]
    factor_product: np.ndarray  # object
    factor_tau: np.ndarray
    factor_source: np.ndarray  # object
    loading: np.ndarray
    group_labels: tuple[str, ...]
    group_units: tuple[str, ...]
    group_delta: np.ndarray  # delta-equivalent volume per group (NaN: mixed units)
    group_proxies: tuple[str, ...]  # how each group's products are taken from history
    n_trades: int

    @property
    def sources(self) -> list[str]:
        return sorted(set(self.factor_source.tolist()))

    def loadings_matrix(self, sources: Sequence[str]) -> np.ndarray:
        """``(m, k)`` matrix ``L`` with factor moves ``x = L s`` for source moves ``s``."""
        col = {s: i for i, s in enumerate(sources)}
        out = np.zeros((self.book.n_factors, len(sources)))
        out[np.arange(self.book.n_factors), [col[s] for s in self.factor_source]] = self.loading
        return out


@dataclass(frozen=True, eq=False)
class RiskInputs:
    """A book ready for risk: one :class:`CurrencyBook` per currency, and what was left out."""

    as_of: dt.date
    group_by: str
    books_filter: tuple[str, ...]
    currencies: tuple[CurrencyBook, ...]
    n_trades: int
    n_unmarked: int
    skipped: tuple[str, ...]  # products held without a risk factor

    def currency(self, code: str) -> CurrencyBook:
        for c in self.currencies:
            if c.currency == code:
                return c
        raise KeyError(code)

    @property
    def n_options(self) -> int:
        return sum(c.book.n_options for c in self.currencies)


def risk_inputs(
    report: Any,
    group_by: str = "product",
    books: Sequence[str] | None = None,
    tenor_vols: Mapping[str, TenorVol] | None = None,
) -> RiskInputs:
    """Build :class:`RiskInputs` from a :class:`~app.services.positions.PositionReport`.

    ``books`` keeps only trades of those book names (``None``: all); ``tenor_vols`` gives the
    Samuelson term structure per product for the spot-to-tenor proxy (missing: loading 1).
    Trades that are not marked (no curve, beyond the curve) are counted in ``n_unmarked``.
    """
    import pandas as pd

    from app.engine.risk.book import risk_book  # lazy: scipy.sparse

    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {list(GROUP_BY)}, got {group_by!r}")
    val = report.valuation
    snap = report.snapshot
    cols = snap.columns
    n = int(np.asarray(val.open_qty).size)
    product = np.asarray(report.product, dtype=object)
    currency = np.asarray(report.currency, dtype=object)
    unit = np.asarray(report.unit, dtype=object)
    book_ids = np.asarray(cols["book_id"]) if "book_id" in cols else np.zeros(n, dtype=np.int64)
    ref_books = snap.ref.books
    book_name = _lookup(book_ids, lambda b: ref_books[b].name if b in ref_books else f"#{b}")
    keep = np.ones(n, dtype=bool)
    books_filter: tuple[str, ...] = ()
    if books:
        wanted = {b.casefold() for b in books}
        known = {str(b.name).casefold() for b in ref_books.values()}
        unknown = sorted(b for b in books if b.casefold() not in known)
        if unknown:
            raise ValueError(f"unknown book(s): {', '.join(unknown)}")
        keep = _lookup(book_name, lambda b: str(b).casefold() in wanted).astype(bool)
        books_filter = tuple(books)
    reason = np.asarray(val.reason)
    open_ = np.asarray(val.open_qty) > 0
    in_scope = keep & open_
    skipped = tuple(sorted(str(p) for p in pd.unique(product[in_scope]) if str(p) not in PROXIES))
    unmarked = in_scope & (reason != 0)
    usable = in_scope & (reason == 0) & _lookup(product, lambda p: str(p) in PROXIES).astype(bool)
    is_opt = np.asarray(cols["instrument"]) == _OPTION if n else np.zeros(0, dtype=bool)
    is_call = np.asarray(cols["option_type"]) == _CALL if n else np.zeros(0, dtype=bool)
    strike = (
        np.where(is_opt, np.asarray(cols["strike"], dtype=float) / _P_SCALE, np.nan)
        if n
        else np.zeros(0)
    )
    as_of_d = np.datetime64(report.as_of, "D")
    exp = np.asarray(snap.expiry, dtype="datetime64[D]")
    t_exp = np.where(is_opt, (exp - as_of_d).astype(float) / 365.0, 0.0) if n else np.zeros(0)
    vol_of = {str(k): float(v) for k, v in report.vol.items()}
    vol = _lookup(product, lambda p: vol_of.get(str(p), 0.0)).astype(float)
    trade_of_slice = np.asarray(val.slices.trade, dtype=np.int64)
    out: list[CurrencyBook] = []
    for ccy in sorted(str(c) for c in pd.unique(currency[usable])):
        sel = usable & (currency == ccy)
        prods = tuple(sorted(str(p) for p in pd.unique(product[sel])))
        pidx = {p: i for i, p in enumerate(prods)}

        def curve_index(p: Any, m: dict[str, int] = pidx) -> int:
            return m.get(str(p), -1)

        curve_of_trade = _lookup(product, curve_index).astype(np.int64)
        curve_of_trade[~sel] = -1
        if group_by == "product":
            labels_of = product
        elif group_by == "book":
            labels_of = book_name
        else:
            uu = np.asarray(snap.columns["trade_uuid"], dtype=object)
            labels_of = np.array(
                [f"{str(u)[:8]} {p}" for u, p in zip(uu, product, strict=True)], dtype=object
            )
        codes, uniq = pd.factorize(labels_of[sel], sort=True)
        labels = tuple(str(x) for x in uniq)
        group = np.full(n, -1, dtype=np.int64)
        group[sel] = codes
        book = risk_book(
            val,
            curve_of_trade[trade_of_slice],
            group,
            len(labels),
            is_option=is_opt,
            is_call=is_call,
            strike=np.nan_to_num(strike, nan=0.0),
            t_expiry=t_exp,
            vol=vol,
            labels=labels,
        )
        fp = np.array([prods[c] for c in book.factor_curve], dtype=object)
        mid = book.factor_month.astype("datetime64[D]") + 14
        tau = np.maximum((mid - as_of_d).astype(float), 0.0) / 365.0
        vols = tenor_vols or {}
        loading = np.empty(book.n_factors)
        for p in prods:
            j = fp == p
            loading[j] = PROXIES[p].scale * tenor_loading(vols.get(p), tau[j])
        src = np.array([PROXIES[p].source for p in fp], dtype=object)
        g_delta, g_unit, g_proxy = _group_meta(group[sel], len(labels), product[sel], unit[sel],
                                               np.asarray(val.delta_qty, dtype=float)[sel])  # fmt: skip
        out.append(
            CurrencyBook(
                currency=ccy,
                book=book,
                products=prods,
                factor_product=fp,
                factor_tau=tau,
                factor_source=src,
                loading=loading,
                group_labels=labels,
                group_units=tuple(g_unit),
                group_delta=g_delta,
                group_proxies=tuple(g_proxy),
                n_trades=int(sel.sum()),
            )
        )
    return RiskInputs(
        as_of=report.as_of,
        group_by=group_by,
        books_filter=books_filter,
        currencies=tuple(out),
        n_trades=int(in_scope.sum()),
        n_unmarked=int(unmarked.sum()),
        skipped=skipped,
    )


def _lookup(values: np.ndarray, fn: Callable[[Any], Any]) -> np.ndarray:
    """``fn`` applied once per distinct value (books, products: a handful per million trades)."""
    import pandas as pd  # hash-based factorize: O(n), where np.unique sorts Python objects

    codes, uniq = pd.factorize(np.asarray(values).ravel())
    table = np.empty(len(uniq), dtype=object)
    table[:] = [fn(u.item() if hasattr(u, "item") else u) for u in uniq]
    return table[codes] if len(uniq) else np.empty(0, dtype=object)


def _group_meta(
    group: np.ndarray, n_groups: int, product: np.ndarray, unit: np.ndarray, delta: np.ndarray
) -> tuple[np.ndarray, list[str], list[str]]:
    """Per group: summed delta (NaN when it mixes products), unit ('' then) and history text."""
    import pandas as pd

    pcode, puniq = pd.factorize(product)
    pairs = np.unique(group.astype(np.int64) * max(len(puniq), 1) + pcode)
    prods_of: list[list[str]] = [[] for _ in range(n_groups)]
    for key in pairs.tolist():
        g, p = divmod(int(key), max(len(puniq), 1))
        prods_of[g].append(str(puniq[p]))
    first = np.unique(pcode, return_index=True)[1]
    unit_of = {str(puniq[pcode[i]]): str(unit[i]) for i in first.tolist()}
    sums = np.bincount(group, weights=delta, minlength=n_groups)
    g_delta = np.full(n_groups, np.nan)
    g_unit, g_proxy = [], []
    for g, prods in enumerate(prods_of):
        prods.sort()
        if len(prods) == 1:
            g_delta[g] = sums[g]
            g_unit.append(unit_of[prods[0]])
            g_proxy.append(PROXIES[prods[0]].text())
        else:
            g_unit.append("")
            g_proxy.append("; ".join(f"{p} {PROXIES[p].text()}" for p in prods))
    return g_delta, g_unit, g_proxy


@dataclass(frozen=True)
class Contribution:
    """One group's share of its currency's ES (Euler allocation: the rows sum to the ES)."""

    label: str
    currency: str
    unit: str
    exposure: float  # delta-equivalent volume (NaN when the group mixes products)
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
    nonpositive: int = 0  # option cells revalued at a forward <= 0 (intrinsic)
    dates: np.ndarray | None = field(default=None, repr=False)  # historical: scenario end dates


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
    group_by: str = "product"
    books_filter: tuple[str, ...] = ()
    n_factors: int = 0
    n_options: int = 0
    tenor_model: bool = False
    compute: str = ""  # where Monte Carlo ran ("local threads", "Dask cluster tcp://...")

    def currency(self, code: str) -> CurrencyRisk:
        """The result for one currency (``KeyError`` if the book holds none)."""
        for c in self.currencies:
            if c.currency == code:
                return c
        raise KeyError(code)

    def method_text(self) -> str:
        """How the numbers were computed, method by method."""
        h = self.horizon_days
        chg = "daily" if h == 1 else f"overlapping {h}-day"
        scale = "" if h == 1 else f", sqrt({h}) time scaling"
        if self.method == "historical":
            return f"historical, full revaluation on {self.n_scenarios} {chg} price changes"
        if self.method == "historical_dg":
            return f"historical, delta-gamma on {self.n_scenarios} {chg} price changes"
        if self.method == "parametric":
            return f"parametric delta-normal, EWMA covariance (lambda {EWMA_LAMBDA}){scale}"
        if self.method == "delta_gamma_cf":
            return (
                f"parametric delta-gamma, Cornish-Fisher, EWMA covariance (lambda {EWMA_LAMBDA})"
                f" x {h} day{'s' if h > 1 else ''}"
            )
        return (
            f"Monte Carlo, {self.n_scenarios:,} full-revaluation scenarios on the EWMA "
            f"covariance (lambda {EWMA_LAMBDA}) x {h} day{'s' if h > 1 else ''}, seed {MC_SEED}"
            + (f", on {self.compute}" if self.compute else "")
        )

    def note(self) -> str:
        """One paragraph saying exactly how the results were computed."""
        scope = "all books" if not self.books_filter else "book " + ", ".join(self.books_filter)
        tenor = (
            "tenor moves = front move x Samuelson vol ratio sigma(T)/sigma(0)"
            if self.tenor_model
            else "all tenors move like the front"
        )
        parts = [
            f"{self.method_text()}; {self.confidence:.1%} confidence, {self.horizon_days}-day "
            f"horizon; window {self.window_days} business days "
            f"{self.window_start.isoformat()} .. {self.window_end.isoformat()}; "
            f"positions as of {self.as_of.isoformat()} ({scope}); "
            f"{self.n_factors} curve-tenor factors, {self.n_options} options; "
            "price changes in price units (no log returns); "
            f"{tenor}; ES contributions by {GROUP_BY[self.group_by].lower()} "
            + ("(delta-normal Euler shares)" if self.method == "delta_gamma_cf" else "(Euler)"),
            "factors: " + "; ".join(f"{p.product} {p.text()}" for p in self.proxies),
        ]
        if self.skipped:
            parts.append("no risk factor (left out): " + ", ".join(self.skipped))
        if self.n_unmarked:
            parts.append(f"{self.n_unmarked} unmarked trade(s) left out")
        nonpos = sum(c.nonpositive for c in self.currencies)
        if nonpos:
            parts.append(f"{nonpos:,} option revaluations at a forward <= 0 valued at intrinsic")
        return ". ".join(parts) + "."


@dataclass(frozen=True, eq=False)
class Scenarios:
    """Historical factor scenarios of one currency book: ``shifts[i]`` ends on ``dates[i]``."""

    dates: np.ndarray  # window + 1 observation dates
    end_dates: np.ndarray  # end date of each horizon scenario
    sources: tuple[str, ...]
    source_daily: np.ndarray  # (window, k) daily source changes
    source_horizon: np.ndarray  # (n, k) overlapping h-day source changes
    shifts: np.ndarray  # (n, m) factor moves = source_horizon @ L'


class RiskService:
    """Computes :class:`RiskResult` objects from a book and the daily price histories.

    ``history`` maps a source product code (``CR-WTI``, ``CR-BRENT``, ``NG-HH``) to its daily
    series. Stateless apart from that: safe to call from worker threads.
    """

    def __init__(self, history: Mapping[str, HistorySeries], executor: Any = None,
                 compute: str = "local threads") -> None:  # fmt: skip
        self.history = dict(history)
        #: Where Monte Carlo blocks run: an :class:`app.engine.risk.scaleout.Executor`
        #: (``None``: local threads on every core) and its description for the notes.
        self.executor = executor
        self.compute = compute

    # ------------------------------------------------------------------ factors

    def _check_window(self, window: int, horizon_days: int) -> None:
        if int(window) != window or window < 2:
            raise ValueError(f"window must be an integer >= 2, got {window!r}")
        if int(horizon_days) != horizon_days or not 1 <= horizon_days <= MAX_HORIZON:
            raise ValueError(f"horizon must be 1..{MAX_HORIZON} days, got {horizon_days!r}")
        if horizon_days >= window:
            raise ValueError("horizon must be shorter than the window")

    def source_levels(
        self, sources: Sequence[str], window: int, window_end: dt.date | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The last ``window + 1`` common dates of ``sources`` (on or before ``window_end``)
        and the ``(window + 1, k)`` price levels on them."""
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
        levels = []
        for s in sources:
            h = self.history[s]
            d = np.asarray(h.dates, dtype="datetime64[D]")
            levels.append(np.asarray(h.values, dtype=float)[np.searchsorted(d, dates)])
        return dates, np.column_stack(levels)

    def factor_changes(
        self,
        products: Sequence[str],
        window: int = DEFAULT_WINDOW,
        horizon_days: int = 1,
        window_end: dt.date | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Aligned front-month price changes for ``products``.

        Returns ``(dates, daily, horizon)``: the ``window + 1`` common observation dates, the
        ``(window, m)`` daily changes and the ``(window - h + 1, m)`` overlapping ``h``-day
        changes, each product's column being its source's changes times the proxy scale.
        """
        if not products:
            raise ValueError("no products")
        self._check_window(window, horizon_days)
        proxies = [PROXIES[p] for p in products]
        sources = sorted({p.source for p in proxies})
        dates, lv = self.source_levels(sources, window, window_end)
        col = {s: i for i, s in enumerate(sources)}
        prices = lv[:, [col[p.source] for p in proxies]] * np.array([p.scale for p in proxies])
        return dates, np.diff(prices, axis=0), prices[horizon_days:] - prices[:-horizon_days]

    def scenarios(
        self,
        cb: CurrencyBook,
        window: int = DEFAULT_WINDOW,
        horizon_days: int = 1,
        window_end: dt.date | None = None,
        sources: Sequence[str] | None = None,
    ) -> Scenarios:
        """Historical factor scenarios for one currency book (overlapping ``h``-day changes).

        ``sources`` fixes the aligned series (default: the book's own); align all currencies
        of a book on the same dates by passing the union.
        """
        self._check_window(window, horizon_days)
        srcs = tuple(sorted(sources if sources is not None else cb.sources))
        dates, lv = self.source_levels(srcs, window, window_end)
        daily = np.diff(lv, axis=0)
        hday = lv[horizon_days:] - lv[:-horizon_days]
        shifts = hday @ cb.loadings_matrix(srcs).T
        return Scenarios(dates, dates[horizon_days:], srcs, daily, hday, shifts)

    # ------------------------------------------------------------------ calculation

    def calculate(
        self,
        inputs: RiskInputs,
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
        """VaR and ES of ``inputs`` per currency (see the module docstring).

        Raises ``ValueError`` with a readable message for bad settings or an empty book, and
        ``concurrent.futures.CancelledError`` when ``cancelled()`` turns true.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        if not 0.5 <= confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
        self._check_window(window, horizon_days)
        if not inputs.currencies:
            if inputs.skipped:
                raise ValueError(
                    f"no risk factor for the products held: {', '.join(inputs.skipped)}"
                )
            raise ValueError("no open positions with a delta exposure")
        sources = sorted({s for cb in inputs.currencies for s in cb.sources})
        out: list[CurrencyRisk] = []
        n_scen = 0
        dates = None
        for k, cb in enumerate(inputs.currencies):

            def sub(f: float, k: int = k) -> None:
                if progress is not None:
                    progress((k + f) / len(inputs.currencies))

            _check_cancel(cancelled)
            sc = self.scenarios(cb, window, horizon_days, window_end, sources)
            dates = sc.dates
            cal_days = horizon_calendar_days(horizon_days)
            if method in ("historical", "historical_dg"):
                cr = _historical(cb, sc, confidence, cal_days, method == "historical_dg", sub,
                                 cancelled)  # fmt: skip
                n_scen = sc.shifts.shape[0]
            elif method == "parametric":
                cr = _parametric(cb, sc, confidence, horizon_days)
            elif method == "delta_gamma_cf":
                cr = _delta_gamma_cf(cb, sc, confidence, horizon_days, cal_days)
            else:
                cr = _monte_carlo(cb, sc, confidence, horizon_days, cal_days, n_scenarios, sub,
                                  cancelled, self.executor)  # fmt: skip
                n_scen = n_scenarios
            out.append(cr)
            sub(1.0)
        assert dates is not None
        products = sorted({p for cb in inputs.currencies for p in cb.products})
        return RiskResult(
            method=method,
            confidence=float(confidence),
            horizon_days=int(horizon_days),
            window_days=int(window),
            window_start=_date(dates[0]),
            window_end=_date(dates[-1]),
            as_of=inputs.as_of,
            n_scenarios=int(n_scen),
            currencies=tuple(out),
            proxies=tuple(PROXIES[p] for p in products),
            skipped=inputs.skipped,
            n_unmarked=inputs.n_unmarked,
            group_by=inputs.group_by,
            books_filter=inputs.books_filter,
            n_factors=sum(cb.book.n_factors for cb in inputs.currencies),
            n_options=inputs.n_options,
            tenor_model=any(np.any(cb.loading != _front_scale(cb)) for cb in inputs.currencies),
            compute=self.compute if method == "monte_carlo" else "",
        )


def _front_scale(cb: CurrencyBook) -> np.ndarray:
    return np.array([PROXIES[p].scale for p in cb.factor_product])


def _check_cancel(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        from concurrent.futures import CancelledError

        raise CancelledError


def _contributions(cb: CurrencyBook, comp: np.ndarray, es: float) -> tuple[Contribution, ...]:
    return tuple(
        Contribution(
            label=label,
            currency=cb.currency,
            unit=cb.group_units[g],
            exposure=float(cb.group_delta[g]),
            contribution=float(comp[g]),
            share=float(comp[g] / es) if es != 0 else math.nan,
            proxy=cb.group_proxies[g],
        )
        for g, label in enumerate(cb.group_labels)
    )


def _historical(
    cb: CurrencyBook,
    sc: Scenarios,
    alpha: float,
    cal_days: float,
    delta_gamma: bool,
    progress: Callable[[float], object],
    cancelled: Callable[[], bool] | None,
) -> CurrencyRisk:
    from app.engine.risk import component_es, var_es
    from app.engine.risk.book import RevalStats, delta_gamma_pnl, revalue

    stats = RevalStats()
    if delta_gamma:
        matrix = delta_gamma_pnl(cb.book, sc.shifts, 0.0, cal_days, by_group=True)
    else:
        matrix = revalue(cb.book, sc.shifts, 0.0, cal_days, by_group=True, progress=progress,
                         cancelled=cancelled, stats=stats)  # fmt: skip
    var, es = var_es(matrix, alpha)
    comp = component_es(matrix, alpha)
    return CurrencyRisk(cb.currency, var, es, _contributions(cb, comp, es), matrix.sum(axis=1),
                        nonpositive=stats.nonpositive, dates=sc.end_dates)  # fmt: skip


def _source_exposure(cb: CurrencyBook, sources: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Book and per-group first-order exposure to the source moves: ``(k,)`` and ``(g, k)``."""
    from app.engine.risk.greeks import group_delta

    lmat = cb.loadings_matrix(sources)
    by_group = group_delta(cb.book)  # (m, g)
    return lmat.T @ by_group.sum(axis=1), (lmat.T @ by_group).T


def _parametric(cb: CurrencyBook, sc: Scenarios, alpha: float, h: int) -> CurrencyRisk:
    from app.engine.risk import ewma_cov, parametric_var_es

    cov = np.atleast_2d(np.asarray(ewma_cov(sc.source_daily, EWMA_LAMBDA), dtype=float))
    e, e_g = _source_exposure(cb, sc.sources)
    var, es = parametric_var_es(e, cov, alpha, h)
    total = float(e @ cov @ e)
    comp = es * (e_g @ cov @ e) / total if total > 0 else np.zeros(len(cb.group_labels))
    sigma = math.sqrt(max(total, 0.0) * h)
    return CurrencyRisk(cb.currency, var, es, _contributions(cb, comp, es), np.zeros(0),
                        sigma=sigma)  # fmt: skip


def _delta_gamma_cf(
    cb: CurrencyBook, sc: Scenarios, alpha: float, h: int, cal_days: float
) -> CurrencyRisk:
    """Delta-gamma Cornish-Fisher in source space (exact: factor moves are ``L s``).

    ES = tail mean of the Cornish-Fisher quantile (``delta_gamma_cornish_fisher_es``); the
    theta of the horizon shifts every quantile by the same amount.
    Contributions: delta-normal Euler shares scaled to this ES (documented approximation).
    """
    from app.engine.risk import delta_gamma_cornish_fisher_es, ewma_cov
    from app.engine.risk.greeks import book_gamma, time_decay

    cov = np.atleast_2d(np.asarray(ewma_cov(sc.source_daily, EWMA_LAMBDA), dtype=float)) * h
    lmat = cb.loadings_matrix(sc.sources)
    e, e_g = _source_exposure(cb, sc.sources)
    gam = lmat.T @ book_gamma(cb.book) @ lmat
    gam = 0.5 * (gam + gam.T)
    theta = time_decay(cb.book, cal_days)
    var, es = delta_gamma_cornish_fisher_es(e, gam, cov, alpha)
    var, es = var - theta, es - theta
    total = float(e @ cov @ e)
    comp = es * (e_g @ cov @ e) / total if total > 0 else np.zeros(len(cb.group_labels))
    return CurrencyRisk(cb.currency, float(var), es, _contributions(cb, comp, es), np.zeros(0))


def _monte_carlo(
    cb: CurrencyBook,
    sc: Scenarios,
    alpha: float,
    h: int,
    cal_days: float,
    n: int,
    progress: Callable[[float], object],
    cancelled: Callable[[], bool] | None,
    executor: Any = None,
) -> CurrencyRisk:
    """Shocks on the source series (EWMA covariance x h), factor moves ``L s``, full
    revaluation block by block on ``executor`` (local threads or a Dask cluster); the same
    shocks as :func:`~app.engine.risk.monte_carlo_var_es` with seed :data:`MC_SEED`."""
    from app.engine.risk import component_es, ewma_cov
    from app.engine.risk.book import RevalStats
    from app.engine.risk.scaleout import monte_carlo_full_reval

    cov = np.atleast_2d(np.asarray(ewma_cov(sc.source_daily, EWMA_LAMBDA), dtype=float)) * h
    stats = RevalStats()
    mc = monte_carlo_full_reval(cb.book, cov, alpha, n, MC_SEED, horizon_days=cal_days,
                                executor=executor, progress=progress, cancelled=cancelled,
                                stats=stats, loadings=cb.loadings_matrix(sc.sources),
                                by_group=True)  # fmt: skip
    assert mc.by_group is not None
    comp = component_es(mc.by_group, alpha)
    return CurrencyRisk(cb.currency, mc.var, mc.es, _contributions(cb, comp, mc.es), mc.pnl,
                        var_ci=mc.var_ci, ci_level=mc.ci_level,
                        nonpositive=stats.nonpositive)  # fmt: skip


def _date(d: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(np.asarray(d).astype("datetime64[D]")))
