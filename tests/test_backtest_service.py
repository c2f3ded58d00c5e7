"""Backtest use case against brute force: raw CSV prices, plain loops, np.sort quantiles."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse
from scipy.stats import binom, chi2, norm

from app.engine.risk.book import RiskBook
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.services.backtest import run_backtest
from app.services.risk import PROXIES, CurrencyBook, RiskInputs, RiskService

AS_OF = dt.date(2026, 11, 24)
#: (currency, product, signed quantity) of a linear book: one front-month factor each.
LINEAR = {
    "USD": (("CR-WTI", 20_000.0), ("CR-BRENT", -12_000.0), ("RP-GASOIL", 900.0)),
    "EUR": (("NG-TTF", 60_000.0), ("PWR-DE-BASE", -9_000.0)),
}


@pytest.fixture(scope="module")
def history() -> dict[str, object]:
    return {m.product: read_series(m.path) for m in bundled_series()}


@pytest.fixture(scope="module")
def service(history: dict[str, object]) -> RiskService:
    return RiskService(history)  # type: ignore[arg-type]


def _currency_book(ccy: str, legs: tuple[tuple[str, float], ...]) -> CurrencyBook:
    m = len(legs)
    products = tuple(p for p, _ in legs)
    qty = np.array([q for _, q in legs])
    empty = np.zeros(0)
    book = RiskBook(
        factor_curve=np.arange(m, dtype=np.int64),
        factor_month=np.full(m, np.datetime64("2027-01", "M")),
        base=np.array([70.0] * m),
        group=np.arange(m, dtype=np.int64),
        n_groups=m,
        linear=np.diag(qty),
        opt_trade=np.zeros(0, dtype=np.int64),
        opt_group=np.zeros(0, dtype=np.int64),
        opt_qty=empty,
        opt_weights=sparse.csr_matrix((0, m)),
        opt_strike=empty,
        opt_t=empty,
        opt_vol=empty,
        opt_call=np.zeros(0, dtype=bool),
        opt_forward0=empty,
        opt_value0=empty,
        labels=products,
    )
    return CurrencyBook(
        currency=ccy,
        book=book,
        products=products,
        factor_product=np.array(products, dtype=object),
        factor_tau=np.full(m, 0.1),
        factor_source=np.array([PROXIES[p].source for p in products], dtype=object),
        loading=np.array([PROXIES[p].scale for p in products]),
        group_labels=products,
        group_units=("",) * m,
        group_delta=qty,
        group_proxies=tuple(PROXIES[p].text() for p in products),
        n_trades=m,
    )


def _inputs(legs: dict[str, tuple[tuple[str, float], ...]] = LINEAR) -> RiskInputs:
    cbs = tuple(_currency_book(c, v) for c, v in sorted(legs.items()))
    return RiskInputs(AS_OF, "product", (), cbs, sum(len(v) for v in legs.values()), 0, ())


def _raw_prices() -> dict[str, dict[str, float]]:
    """Every bundled CSV read with the csv module: source -> {ISO date: price}."""
    out = {}
    for m in bundled_series():
        with Path(m.path).open(newline="") as fh:
            rows = list(csv.reader(fh))[1:]
        out[m.product] = {r[0]: float(r[1]) for r in rows if len(r) == 2 and r[1].strip()}
    return out


def _brute_pnl(ccy: str, n: int, end: str | None = None) -> tuple[list[str], np.ndarray]:
    """Dates and P&L of the linear book in ``ccy`` over the last ``n`` common days."""
    raw = _raw_prices()
    sources = sorted({PROXIES[p].source for legs in LINEAR.values() for p, _ in legs})
    common = sorted(set.intersection(*(set(raw[s]) for s in sources)))
    if end is not None:
        common = [d for d in common if d <= end]
    dates = common[-(n + 1) :]
    pnl = np.zeros(n)
    for p, q in LINEAR[ccy]:
        src = raw[PROXIES[p].source]
        for i in range(n):
            pnl[i] += q * PROXIES[p].scale * (src[dates[i + 1]] - src[dates[i]])
    return dates[1:], pnl


def _transitions(exc: list[bool]) -> tuple[int, int, int, int]:
    n = [[0, 0], [0, 0]]
    for a, b in itertools.pairwise(exc):
        n[int(a)][int(b)] += 1
    return n[0][0], n[0][1], n[1][0], n[1][1]


def _ll(count: int, p: float) -> float:
    return count * math.log(p) if count else 0.0


@pytest.mark.parametrize(("days", "window", "alpha"), [(250, 500, 0.99), (500, 250, 0.975)])
def test_historical_backtest_equals_brute_force(
    service: RiskService, days: int, window: int, alpha: float
) -> None:
    rep = run_backtest(service, _inputs(), "historical", alpha, days, window)
    assert [c.currency for c in rep.currencies] == ["EUR", "USD"]
    for c in rep.currencies:
        dates, pnl_all = _brute_pnl(c.currency, days + window)
        assert c.dates.astype(str).tolist() == dates[window:]
        np.testing.assert_allclose(c.pnl, pnl_all[window:], rtol=1e-10, atol=1e-6)
        k = math.ceil(round(window * (1 - alpha), 9))
        exc = []
        for j in range(days):
            losses = np.sort(-pnl_all[j : j + window])[::-1]
            assert c.var[j] == pytest.approx(losses[k - 1], rel=1e-10)
            exc.append(-pnl_all[window + j] > losses[k - 1])
        x = sum(exc)
        assert c.n_obs == days and c.n_exceptions == x and c.exceptions.tolist() == exc
        assert c.expected == pytest.approx(days * (1 - alpha))
        # Kupiec: -2 [ln Bin(x; n, p) - ln Bin(x; n, x/n)]
        lr = -2 * (binom.logpmf(x, days, 1 - alpha) - binom.logpmf(x, days, x / days))
        assert c.kupiec[0] == pytest.approx(lr, rel=1e-9, abs=1e-9)
        assert c.kupiec[1] == pytest.approx(chi2.sf(lr, 1), rel=1e-9)
        n00, n01, n10, n11 = _transitions(exc)
        pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
        pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
        pi = (n01 + n11) / (days - 1)
        lr_ind = -2 * (
            _ll(n00 + n10, 1 - pi) + _ll(n01 + n11, pi)
            - _ll(n00, 1 - pi0) - _ll(n01, pi0) - _ll(n10, 1 - pi1) - _ll(n11, pi1)
        )  # fmt: skip
        assert c.christoffersen[0] == pytest.approx(max(lr_ind, 0.0), rel=1e-9, abs=1e-9)
        cdf = binom.cdf(x, days, 1 - alpha)
        zone = "green" if cdf < 0.95 else "yellow" if cdf < 0.9999 else "red"
        assert c.traffic_light == zone
    assert rep.start.isoformat() == dates[window] and rep.end.isoformat() == dates[-1]


def test_parametric_backtest_equals_brute_force_ewma(service: RiskService) -> None:
    days, window, alpha = 250, 250, 0.99
    rep = run_backtest(service, _inputs(), "parametric", alpha, days, window)
    raw = _raw_prices()
    for c in rep.currencies:
        dates, pnl_all = _brute_pnl(c.currency, days + window)
        prev = [d for d in sorted(set.intersection(*(set(v) for v in raw.values())))
                if d < dates[0]][-1]  # fmt: skip
        srcs = sorted({PROXIES[p].source for p, _ in LINEAR[c.currency]})
        e = {s: 0.0 for s in srcs}
        for p, q in LINEAR[c.currency]:
            e[PROXIES[p].source] += q * PROXIES[p].scale
        ev = np.array([e[s] for s in srcs])
        full = [prev, *dates]
        s = np.array([[raw[src][full[i + 1]] - raw[src][full[i]] for src in srcs]
                      for i in range(days + window)])  # fmt: skip
        lam = 0.94
        w = (1 - lam) * lam ** np.arange(window - 1, -1, -1) / (1 - lam**window)
        for j in (0, 1, 137, days - 1):
            cov = sum(w[i] * np.outer(s[j + i], s[j + i]) for i in range(window))
            var = norm.ppf(alpha) * math.sqrt(ev @ cov @ ev)
            assert c.var[j] == pytest.approx(var, rel=1e-9)
        np.testing.assert_allclose(c.pnl, pnl_all[window:], rtol=1e-10, atol=1e-6)
        assert c.n_exceptions == int(np.sum(-pnl_all[window:] > c.var))


def test_forecasts_equal_the_risk_service_var_of_the_previous_day(service: RiskService) -> None:
    inputs = _inputs()
    for method in ("historical", "parametric"):
        rep = run_backtest(service, inputs, method, 0.99, 60, 300)
        for j in (0, 41):
            prev = rep.currencies[0].dates[j] - np.timedelta64(1, "D")
            res = service.calculate(inputs, method, 0.99, 1, 300, window_end=prev.astype(object))
            for c in rep.currencies:
                assert c.var[j] == pytest.approx(res.currency(c.currency).var, rel=1e-12)


def test_window_with_negative_wti_gives_finite_numbers(service: RiskService) -> None:
    legs = {"USD": (("CR-WTI", 1_000.0),)}
    for method in ("historical", "historical_dg", "parametric"):
        rep = run_backtest(service, _inputs(legs), method, 0.99, 60, 250, end=dt.date(2020, 6, 30))
        c = rep.currency("USD")
        assert rep.start < dt.date(2020, 4, 20) < rep.end
        assert np.isfinite(c.pnl).all() and np.isfinite(c.var).all()
        assert all(math.isfinite(v) for v in (*c.kupiec, *c.christoffersen))
        day = int(np.flatnonzero(c.dates == np.datetime64("2020-04-20"))[0])
        assert c.pnl[day] == pytest.approx(-55_290.0, abs=0.01)  # 18.31 -> -36.98 on 1,000 bbl
        assert c.exceptions[day] and dt.date(2020, 4, 20) in c.exception_dates
    assert "2020-06-30" in rep.note()


def test_progress_cancel_and_bad_settings(service: RiskService) -> None:
    seen: list[float] = []
    run_backtest(service, _inputs(), "historical", 0.99, 250, 250, progress=seen.append)
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(CancelledError):
        run_backtest(service, _inputs(), cancelled=lambda: True)
    with pytest.raises(ValueError, match="method"):
        run_backtest(service, _inputs(), "magic")
    with pytest.raises(ValueError, match="days"):
        run_backtest(service, _inputs(), days=5)
    with pytest.raises(ValueError, match="confidence"):
        run_backtest(service, _inputs(), confidence=1.0)
    with pytest.raises(ValueError, match="common dates"):
        run_backtest(service, _inputs(), days=2_500, window=1_000, end=dt.date(2000, 1, 1))
    with pytest.raises(ValueError, match="no open positions"):
        run_backtest(service, RiskInputs(AS_OF, "product", (), (), 0, 0, ()))
