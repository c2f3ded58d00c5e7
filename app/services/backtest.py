"""Backtest use case: the current book's hypothetical daily P&L on the real series against VaR.

No Qt and no ``app.feed`` (the layering contract). For a :class:`~app.services.risk.RiskInputs`
(today's book, per currency) and a :class:`~app.services.risk.RiskService` (the bundled EIA
histories), :func:`run_backtest`:

1. takes **one** scenario matrix of the last ``days + window`` daily factor moves on the
   common dates of all the sources the book needs (``RiskService.scenarios`` with a window of
   ``days + window``, so every currency is aligned on the same dates);
2. revalues today's book on every row (full revaluation, options repriced with Black-76 and
   the time decay of a 1-day horizon, ``horizon_calendar_days(1)``: exactly the scenarios
   of the 1-day historical VaR): the *hypothetical P&L* of the static book on each past day;
3. forecasts the VaR of each of the last ``days`` days from the ``window`` days **before** it
   only (:func:`app.engine.risk.rolling_var_backtest`):

   * ``historical``: the empirical VaR of the window's full-revaluation P&L -- the VaR that
     ``RiskService.calculate(..., 'historical', window=window, window_end=<previous day>)``
     reports for that day;
   * ``historical_dg``: the same on the delta-gamma P&L of the window (realised P&L is still
     full revaluation);
   * ``parametric``: delta-normal, ``z_alpha sqrt(e' S e)`` with ``S`` the EWMA covariance
     (lambda :data:`~app.services.risk.EWMA_LAMBDA`) of the window's daily source changes and
     ``e`` the book's first-order exposure to the sources. Because ``e`` is fixed,
     ``e' S e`` is the EWMA variance of the delta P&L series ``e . s_t``, which is what
     ``rolling_var_backtest(..., 'ewma')`` computes -- the parametric VaR of the risk service;

4. counts the exceptions (``-pnl_t > VaR_t``) and runs Kupiec POF, Christoffersen
   independence, conditional coverage and the Basel traffic light (binomial CDF of the
   exception count for ``days`` observations) per currency.

Memory is bounded by ``(days + window) x factors`` for the scenarios, ``days x window`` for the
rolling quantiles, and the revaluation chunks of :func:`app.engine.risk.book.revalue`.
See ``docs/risk-backtest.md``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.services.risk import (
    DEFAULT_WINDOW,
    EWMA_LAMBDA,
    GROUP_BY,
    CurrencyBook,
    RiskInputs,
    RiskService,
    horizon_calendar_days,
)

__all__ = [
    "BACKTEST_DAYS",
    "BACKTEST_METHODS",
    "BACKTEST_WINDOWS",
    "BacktestReport",
    "CurrencyBacktest",
    "run_backtest",
]

#: Method key -> title.
BACKTEST_METHODS: dict[str, str] = {
    "historical": "Historical (full revaluation)",
    "historical_dg": "Historical (delta-gamma)",
    "parametric": "Parametric (delta-normal EWMA)",
}
#: Backtest lengths offered in the panel (business days).
BACKTEST_DAYS: tuple[int, ...] = (250, 500, 750)
#: Estimation windows offered in the panel (business days).
BACKTEST_WINDOWS: tuple[int, ...] = (250, DEFAULT_WINDOW)
#: Bounds on the settings: ``days x window`` floats are held for the rolling quantiles.
MAX_DAYS = 2_500
MAX_WINDOW = 1_000


@dataclass(frozen=True, eq=False)
class CurrencyBacktest:
    """The backtest of the positions in one currency (losses positive in ``var``)."""

    currency: str
    dates: np.ndarray = field(repr=False)  # (n,) datetime64[D]: the backtest days
    pnl: np.ndarray = field(repr=False)  # (n,) hypothetical P&L of today's book on each day
    var: np.ndarray = field(repr=False)  # (n,) VaR forecast from the preceding window
    exceptions: np.ndarray = field(repr=False)  # (n,) bool: -pnl > var
    n_obs: int
    n_exceptions: int
    kupiec: tuple[float, float]  # (LR, p-value)
    christoffersen: tuple[float, float]
    conditional_coverage: tuple[float, float]
    traffic_light: str  # 'green' | 'yellow' | 'red'
    expected: float  # n_obs x (1 - confidence)
    nonpositive: int = 0  # option revaluations at a forward <= 0 (valued at intrinsic)

    @property
    def exception_rate(self) -> float:
        return self.n_exceptions / self.n_obs if self.n_obs else math.nan

    @property
    def exception_dates(self) -> list[dt.date]:
        return [_date(d) for d in self.dates[self.exceptions]]


@dataclass(frozen=True, eq=False)
class BacktestReport:
    """A backtest of the current book, per currency, with how it was computed."""

    method: str
    confidence: float
    days: int
    window: int
    start: dt.date  # first backtest day
    end: dt.date  # last backtest day
    history_start: dt.date  # first day of the first estimation window
    as_of: dt.date  # positions
    currencies: tuple[CurrencyBacktest, ...]
    group_by: str = "product"
    books_filter: tuple[str, ...] = ()
    n_options: int = 0

    def currency(self, code: str) -> CurrencyBacktest:
        """The backtest of one currency (``KeyError`` if the book holds none)."""
        for c in self.currencies:
            if c.currency == code:
                return c
        raise KeyError(code)

    def method_text(self) -> str:
        if self.method == "historical":
            return f"historical VaR, full revaluation of the {self.window} preceding days"
        if self.method == "historical_dg":
            return f"historical VaR, delta-gamma P&L of the {self.window} preceding days"
        return (
            f"parametric delta-normal VaR, EWMA (lambda {EWMA_LAMBDA}) of the {self.window} "
            "preceding daily source changes"
        )

    def note(self) -> str:
        """One paragraph saying exactly how the backtest was computed."""
        scope = "all books" if not self.books_filter else "book " + ", ".join(self.books_filter)
        parts = [
            f"{self.method_text()}; {self.confidence:.1%} confidence, 1-day horizon; "
            f"{self.days} backtest days {self.start.isoformat()} .. {self.end.isoformat()} "
            f"(history from {self.history_start.isoformat()}); "
            f"hypothetical P&L = full revaluation of the positions as of "
            f"{self.as_of.isoformat()} ({scope}) on each day's real price changes, with the time "
            "decay of one day; exception = loss > VaR forecast made the day before; "
            f"traffic light = binomial CDF of the exceptions over {self.days} days "
            f"(Basel table at 250 days / 99 %)"
        ]
        nonpos = sum(c.nonpositive for c in self.currencies)
        if nonpos:
            parts.append(f"{nonpos:,} option revaluations at a forward <= 0 valued at intrinsic")
        return ". ".join(parts) + "."


def _check(method: str, confidence: float, days: int, window: int) -> None:
    if method not in BACKTEST_METHODS:
        raise ValueError(f"method must be one of {list(BACKTEST_METHODS)}, got {method!r}")
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    if int(days) != days or not 20 <= days <= MAX_DAYS:
        raise ValueError(f"days must be an integer in 20..{MAX_DAYS}, got {days!r}")
    if int(window) != window or not 20 <= window <= MAX_WINDOW:
        raise ValueError(f"window must be an integer in 20..{MAX_WINDOW}, got {window!r}")


def run_backtest(
    service: RiskService,
    inputs: RiskInputs,
    method: str = "historical",
    confidence: float = 0.99,
    days: int = 250,
    window: int = DEFAULT_WINDOW,
    end: dt.date | None = None,
    *,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> BacktestReport:
    """Backtest the 1-day VaR of ``inputs`` over the last ``days`` days (see the module doc).

    ``end`` is the last backtest day (default: the last date common to the sources). Raises
    ``ValueError`` with a readable message for bad settings, an empty book or too short a
    history, and ``concurrent.futures.CancelledError`` when ``cancelled()`` turns true.
    """
    from app.engine.risk import rolling_var_backtest
    from app.engine.risk.book import RevalStats, delta_gamma_pnl, revalue

    _check(method, confidence, days, window)
    if not inputs.currencies:
        if inputs.skipped:
            raise ValueError(f"no risk factor for the products held: {', '.join(inputs.skipped)}")
        raise ValueError("no open positions with a delta exposure")
    sources = sorted({s for cb in inputs.currencies for s in cb.sources})
    n_ccy = len(inputs.currencies)
    cal_days = float(horizon_calendar_days(1))
    out: list[CurrencyBacktest] = []
    dates: np.ndarray | None = None
    for k, cb in enumerate(inputs.currencies):

        def sub(f: float, k: int = k) -> None:
            if progress is not None:
                progress((k + 0.9 * f) / n_ccy)

        _check_cancel(cancelled)
        sc = service.scenarios(cb, days + window, 1, end, sources)
        dates = sc.dates
        stats = RevalStats()
        pnl_all = revalue(cb.book, sc.shifts, 0.0, cal_days, progress=sub, cancelled=cancelled,
                          stats=stats)  # fmt: skip
        _check_cancel(cancelled)
        if method == "historical":
            forecast_pnl, kind, lam = pnl_all, "hist", EWMA_LAMBDA
        elif method == "historical_dg":
            forecast_pnl = delta_gamma_pnl(cb.book, sc.shifts, 0.0, cal_days)
            kind, lam = "hist", EWMA_LAMBDA
        else:
            forecast_pnl = sc.source_daily @ _source_exposure(cb, sc.sources)
            kind, lam = "ewma", EWMA_LAMBDA
        var = rolling_var_backtest(forecast_pnl, window, confidence, kind, lam).var  # type: ignore[arg-type]
        out.append(_evaluate(cb.currency, sc.end_dates[window:], pnl_all[window:], var,
                             confidence, stats.nonpositive))  # fmt: skip
        if progress is not None:
            progress((k + 1) / n_ccy)
    assert dates is not None
    return BacktestReport(
        method=method,
        confidence=float(confidence),
        days=int(days),
        window=int(window),
        start=_date(dates[window + 1]),
        end=_date(dates[-1]),
        history_start=_date(dates[0]),
        as_of=inputs.as_of,
        currencies=tuple(out),
        group_by=inputs.group_by if inputs.group_by in GROUP_BY else "product",
        books_filter=inputs.books_filter,
        n_options=inputs.n_options,
    )


def _source_exposure(cb: CurrencyBook, sources: tuple[str, ...]) -> np.ndarray:
    """First-order P&L per unit move of each source: ``L' delta``, shape ``(k,)``."""
    return np.asarray(cb.loadings_matrix(sources).T @ cb.book.delta(), dtype=float)


def _evaluate(
    currency: str,
    dates: np.ndarray,
    pnl: np.ndarray,
    var: np.ndarray,
    alpha: float,
    nonpositive: int,
) -> CurrencyBacktest:
    """Exceptions and the coverage tests of realised ``pnl`` against the ``var`` forecasts."""
    from scipy.special import chdtrc

    from app.engine.risk import basel_traffic_light, christoffersen_ind, kupiec_pof

    exc = -pnl > var
    n, x = int(exc.size), int(np.count_nonzero(exc))
    pof = kupiec_pof(n, x, alpha)
    ind = christoffersen_ind(exc) if n >= 2 else (0.0, 1.0)
    lr_cc = pof[0] + ind[0]
    return CurrencyBacktest(
        currency=currency,
        dates=np.asarray(dates, dtype="datetime64[D]"),
        pnl=np.asarray(pnl, dtype=float),
        var=np.asarray(var, dtype=float),
        exceptions=exc,
        n_obs=n,
        n_exceptions=x,
        kupiec=pof,
        christoffersen=ind,
        conditional_coverage=(lr_cc, float(chdtrc(2, lr_cc))),
        traffic_light=basel_traffic_light(x, n, alpha),
        expected=n * (1.0 - alpha),
        nonpositive=nonpositive,
    )


def _check_cancel(cancelled: Callable[[], bool] | None) -> None:
    if cancelled is not None and cancelled():
        from concurrent.futures import CancelledError

        raise CancelledError


def _date(d: np.datetime64) -> dt.date:
    return dt.date.fromisoformat(str(np.asarray(d).astype("datetime64[D]")))
