"""Risk service (VaR/ES of the book on curve-tenor factors) and the Risk panel.

References: re-marking the trades with PositionService.revalue on shifted forward curves
(brute-force full revaluation), np.sort quantiles, an independently written EWMA covariance
and the delta-normal closed form with finite-difference exposures.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot
from scipy.stats import norm

from app.engine.curves import ForwardCurve
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.feed.sim_params import SIM_PARAMS
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.positions import PositionService
from app.services.risk import (
    CALENDAR_PER_BUSINESS_DAY,
    MC_SEED,
    PROXIES,
    RiskService,
    risk_inputs,
)
from app.services.trading import TradingService
from app.views.jobs import JobRunner
from app.views.risk_panel import RiskPanel

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))


def _curves() -> dict[str, ForwardCurve]:
    out = {}
    for p in PRODUCT_SPECS:
        slope = 1.0 + 0.004 * np.arange(MONTHS.size) + 0.05 * np.cos(np.arange(MONTHS.size))
        out[p.code] = ForwardCurve(MONTHS, p.typical_level * slope, p.code, p.weights)
    return out


def _raw(**kw: Any) -> dict[str, Any]:
    raw = {
        "book": "DEMO Oil",
        "counterparty": "Northwind Energy Trading AG",
        "product": "CR-WTI",
        "instrument": "Fixed-for-floating swap",
        "side": "Buy",
        "quantity": "10000",
        "price": "70",
        "trade_date": "2026-11-20",
        "delivery_start": "2027-01-01",
        "delivery_end": "2027-03-31",
        "option_type": "",
        "strike": "",
        "expiry_date": "",
        "exercise_style": "",
        "premium": "",
        "comment": "",
    }
    raw.update(kw)
    return raw


def _opt(**kw: Any) -> dict[str, Any]:
    base = {"instrument": "Option", "option_type": "Call", "exercise_style": "European",
            "premium": "2.5", "expiry_date": "2027-05-20", "delivery_start": "2027-06-01",
            "delivery_end": "2027-06-30"}  # fmt: skip
    base.update(kw)
    return _raw(**base)


TRADES = [
    _raw(),
    _raw(
        product="CR-BRENT",
        side="Sell",
        quantity="5000",
        price="74",
        delivery_start="2027-06-01",
        delivery_end="2028-05-31",
    ),
    _raw(
        product="NG-HH",
        book="DEMO Gas",
        quantity="200000",
        price="3.4",
        delivery_start="2027-01-01",
        delivery_end="2027-12-31",
    ),
    _raw(
        product="NG-TTF",
        book="DEMO Gas",
        side="Sell",
        quantity="50000",
        price="33.5",
        delivery_start="2027-04-01",
        delivery_end="2027-09-30",
    ),
    _raw(
        product="PWR-DE-BASE",
        book="DEMO Power",
        quantity="8760",
        price="88",
        delivery_start="2027-01-01",
        delivery_end="2027-12-31",
    ),
    _raw(
        product="NG-NBP",
        book="DEMO Gas",
        quantity="300000",
        price="0.84",
        delivery_start="2027-01-01",
        delivery_end="2027-03-31",
    ),
    _opt(strike="72", quantity="20000"),
    _opt(
        product="NG-HH",
        book="DEMO Gas",
        option_type="Put",
        strike="3.2",
        quantity="500000",
        premium="0.3",
        side="Sell",
    ),
    _opt(
        product="NG-TTF",
        book="DEMO Gas",
        strike="36",
        quantity="80000",
        premium="3",
        expiry_date="2027-02-24",
        delivery_start="2027-03-01",
        delivery_end="2027-03-31",
    ),
]


@pytest.fixture(scope="module")
def history() -> dict[str, object]:
    return {m.product: read_series(m.path) for m in bundled_series()}


@pytest.fixture(scope="module")
def service(history: dict[str, object]) -> RiskService:
    return RiskService(history)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PositionService, Any]]:
    store = Store.open_file(tmp_path_factory.mktemp("risk") / "s.db")
    ensure_reference_data(store)
    seed_demo(store, 0, today=AS_OF)
    TradingService(TradeRepository(store), EventBus(), user="t").capture_many(TRADES)
    svc = PositionService(TradeRepository(store))
    snap = svc.snapshot()
    yield svc, snap
    store.close()


def _report(desk: tuple[PositionService, Any], curves: dict[str, ForwardCurve] | None = None,
            expiry_back: int = 0) -> Any:  # fmt: skip
    svc, snap = desk
    if expiry_back:
        snap = type(snap)(snap.ref, snap.columns, snap.premium, snap.expiry - expiry_back)
    return svc.revalue(snap, curves or _curves(), AS_OF, 0.35, dimension="product")


def _loading(product: str, month: np.datetime64) -> float:
    """Independent spot-to-tenor loading: proxy scale x sigma(T)/sigma(0), T to mid-month."""
    tau = ((month.astype("datetime64[D]") + 14) - np.datetime64(AS_OF, "D")).astype(float) / 365
    prm = SIM_PARAMS[product]
    sig = prm.sigma_long + (prm.sigma_front - prm.sigma_long) * math.exp(-max(tau, 0) / prm.tau)
    return PROXIES[product].scale * sig / prm.sigma_front


def _shifted(moves: dict[str, float]) -> dict[str, ForwardCurve]:
    out = {}
    for code, c in _curves().items():
        src = PROXIES[code].source
        p = c.prices + np.array([_loading(code, m) for m in c.months]) * moves.get(src, 0.0)
        out[code] = ForwardCurve(c.months, p, code, c.weights)
    return out


def _mtm_by_ccy(report: Any) -> dict[str, float]:
    ok = np.asarray(report.valuation.reason) == 0
    out: dict[str, float] = {}
    for c, v in zip(report.currency[ok], report.valuation.mtm[ok], strict=True):
        out[str(c)] = out.get(str(c), 0.0) + float(v)
    return out


def _aligned(history: dict[str, object], sources: list[str], window: int,
             end: dt.date | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Independent alignment: dates present in every source, last ``window + 1`` of them."""
    sets = [set(np.asarray(history[s].dates).tolist()) for s in sources]  # type: ignore[attr-defined]
    common = sorted(set.intersection(*sets))
    if end is not None:
        common = [d for d in common if d <= end]
    dates = common[-(window + 1) :]
    out = {}
    for s in sources:
        h = history[s]
        lookup = dict(zip(np.asarray(h.dates).tolist(), h.values.tolist(), strict=True))  # type: ignore[attr-defined]
        out[s] = np.array([lookup[d] for d in dates])
    return np.array(dates, dtype="datetime64[D]"), out


SOURCES = ["CR-BRENT", "CR-WTI", "NG-HH"]


def _brute_pnl(desk: Any, history: dict[str, object], h: int, window: int) -> dict[str, np.ndarray]:
    """Scenario P&L by re-marking every trade on shifted curves (options: T shortened)."""
    days = round(h * CALENDAR_PER_BUSINESS_DAY)
    base = _mtm_by_ccy(_report(desk))
    _, lv = _aligned(history, SOURCES, window)
    n = window + 1 - h
    out: dict[str, list[float]] = {c: [] for c in base}
    for i in range(n):
        moves = {s: float(lv[s][i + h] - lv[s][i]) for s in SOURCES}
        new = _mtm_by_ccy(_report(desk, _shifted(moves), expiry_back=days))
        for c in base:
            out[c].append(new[c] - base[c])
    return {c: np.array(v) for c, v in out.items()}


@pytest.mark.parametrize("h", [1, 5])
def test_historical_full_revaluation_equals_brute_force(
    desk: Any, history: dict[str, object], service: RiskService, h: int
) -> None:
    window = 60
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    assert inputs.n_options == 3 and inputs.n_trades == len(TRADES)
    res = service.calculate(inputs, "historical", 0.95, h, window=window)
    brute = _brute_pnl(desk, history, h, window)
    assert res.n_scenarios == window - h + 1
    assert [c.currency for c in res.currencies] == sorted(brute)
    for c in res.currencies:
        pnl = brute[c.currency]
        np.testing.assert_allclose(c.pnl, pnl, rtol=1e-9, atol=1e-6)
        losses = np.sort(-pnl)[::-1]
        k = math.ceil(round(pnl.size * 0.05, 9))
        assert c.var == pytest.approx(losses[k - 1], rel=1e-9)
        assert c.es == pytest.approx(losses[:k].mean(), rel=1e-9)
        assert sum(x.contribution for x in c.contributions) == pytest.approx(c.es, rel=1e-9)


def test_delta_gamma_is_close_to_full_revaluation(desk: Any, service: RiskService) -> None:
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    # A calm window (mid-2016 to mid-2017): second order is accurate for ordinary daily moves.
    # (Windows with the 2022-26 Henry Hub spikes move gas by dollars a day, TTF by ~10x that
    # through its proxy: delta-gamma is then far off, which is why full revaluation is the
    # default.)
    end = dt.date(2017, 6, 30)
    full = service.calculate(inputs, "historical", 0.99, 1, window=250, window_end=end)
    dg = service.calculate(inputs, "historical_dg", 0.99, 1, window=250, window_end=end)
    for a, b in zip(full.currencies, dg.currencies, strict=True):
        assert np.max(np.abs(a.pnl - b.pnl)) < 0.02 * np.max(np.abs(a.pnl))
        assert b.var == pytest.approx(a.var, rel=0.02)


def _ewma(chg: np.ndarray, lam: float = 0.94) -> np.ndarray:
    t = chg.shape[0]
    wts = (1 - lam) * lam ** np.arange(t - 1, -1, -1) / (1 - lam**t)
    return (chg * wts[:, None]).T @ chg


def test_parametric_equals_closed_form_with_finite_difference_exposures(
    desk: Any, history: dict[str, object], service: RiskService
) -> None:
    h = 4
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    res = service.calculate(inputs, "parametric", 0.975, h)
    _, lv = _aligned(history, SOURCES, 500)
    cov = _ewma(np.column_stack([np.diff(lv[s]) for s in SOURCES]))
    eps = 1e-3
    for c in res.currencies:
        e = np.zeros(3)
        for k, s in enumerate(SOURCES):
            up = _mtm_by_ccy(_report(desk, _shifted({s: eps})))[c.currency]
            dn = _mtm_by_ccy(_report(desk, _shifted({s: -eps})))[c.currency]
            e[k] = (up - dn) / (2 * eps)
        sigma = math.sqrt(e @ cov @ e * h)
        z = norm.ppf(0.975)
        assert c.var == pytest.approx(z * sigma, rel=1e-6)
        assert c.es == pytest.approx(sigma * norm.pdf(z) / 0.025, rel=1e-6)
        assert sum(x.contribution for x in c.contributions) == pytest.approx(c.es, rel=1e-9)


def test_cornish_fisher_and_monte_carlo_agree_with_full_revaluation(
    desk: Any, service: RiskService
) -> None:
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    end = dt.date(2017, 6, 30)  # calm: the approximations hold (see the delta-gamma test)
    a = service.calculate(inputs, "monte_carlo", 0.99, 2, window_end=end, n_scenarios=8_000)
    b = service.calculate(inputs, "monte_carlo", 0.99, 2, window_end=end, n_scenarios=8_000)
    cf = service.calculate(inputs, "delta_gamma_cf", 0.99, 2, window_end=end)
    p = service.calculate(inputs, "parametric", 0.99, 2, window_end=end)
    assert MC_SEED == 42 and a.n_scenarios == 8_000
    for ca, cb, ccf, cp in zip(a.currencies, b.currencies, cf.currencies, p.currencies,
                               strict=True):  # fmt: skip
        assert ca.var == cb.var and ca.es == cb.es  # seeded
        assert ca.var_ci is not None and ca.var_ci[0] <= ca.var <= ca.var_ci[1]
        # Same EWMA covariance: the delta-gamma Cornish-Fisher VaR lies close to the MC
        # full-revaluation VaR; delta-normal does not see the options' convexity.
        assert ccf.var == pytest.approx(ca.var, rel=0.08)
        assert ccf.es >= ccf.var * (1 - 1e-12) and ca.es >= ca.var
        assert math.isfinite(cp.var)
        assert sum(x.contribution for x in ca.contributions) == pytest.approx(ca.es, rel=1e-9)


def test_cornish_fisher_equals_delta_normal_without_options(
    desk: Any, service: RiskService
) -> None:
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS, books=["DEMO Power"])
    assert inputs.n_options == 0 and [c.currency for c in inputs.currencies] == ["EUR"]
    cf = service.calculate(inputs, "delta_gamma_cf", 0.99, 3).currencies[0]
    p = service.calculate(inputs, "parametric", 0.99, 3).currencies[0]
    assert cf.var == pytest.approx(p.var, rel=1e-9)
    assert cf.es == pytest.approx(p.es, rel=1e-6)  # Gauss-Legendre tail mean of the quantile
    mc = service.calculate(inputs, "monte_carlo", 0.99, 3, n_scenarios=20_000).currencies[0]
    assert mc.var_ci is not None and mc.var_ci[0] <= p.var <= mc.var_ci[1]  # linear: MC -> normal


def test_groups_books_and_filters(desk: Any, service: RiskService) -> None:
    report = _report(desk)
    by_prod = service.calculate(risk_inputs(report, "product", tenor_vols=SIM_PARAMS), "historical")
    by_book = service.calculate(risk_inputs(report, "book", tenor_vols=SIM_PARAMS), "historical")
    by_trade = service.calculate(risk_inputs(report, "trade", tenor_vols=SIM_PARAMS), "historical")
    for a, b, t in zip(by_prod.currencies, by_book.currencies, by_trade.currencies, strict=True):
        # the same scenarios: equal up to the order of the per-group sums
        assert a.var == pytest.approx(b.var, rel=1e-12) == pytest.approx(t.var, rel=1e-12)
        assert a.es == pytest.approx(b.es, rel=1e-12) == pytest.approx(t.es, rel=1e-12)
        for r in (a, b, t):
            assert sum(x.contribution for x in r.contributions) == pytest.approx(r.es, rel=1e-9)
    assert {x.label for x in by_book.currency("USD").contributions} == {"DEMO Gas", "DEMO Oil"}
    assert len(by_trade.currency("USD").contributions) == 5  # WTI, Brent, HH swaps + 2 options
    gas = service.calculate(risk_inputs(report, books=["DEMO Gas"], tenor_vols=SIM_PARAMS))
    assert gas.books_filter == ("DEMO Gas",) and "book DEMO Gas" in gas.note()
    assert {x.label for x in gas.currency("USD").contributions} == {"NG-HH"}
    with pytest.raises(ValueError, match="unknown book"):
        risk_inputs(report, books=["Nope"])
    with pytest.raises(ValueError, match="group_by"):
        risk_inputs(report, "desk")


def test_tenor_loading_damps_back_months(desk: Any, service: RiskService) -> None:
    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    usd = inputs.currency("USD")
    j = usd.factor_product == "NG-HH"
    tau = usd.factor_tau[j]
    load = usd.loading[j]
    assert np.all(np.diff(load[np.argsort(tau)]) <= 1e-12) and load.max() <= 1.0
    for m, x in zip(usd.book.factor_month[j], load, strict=True):
        assert x == pytest.approx(_loading("NG-HH", m), rel=1e-12)
    flat = risk_inputs(_report(desk))  # no model: every tenor moves like the front
    assert np.all(flat.currency("USD").loading[j] == 1.0)
    assert "Samuelson" in service.calculate(inputs).note()


def test_negative_wti_window_is_finite_and_counts_intrinsic_options(
    desk: Any, service: RiskService
) -> None:
    curves = _curves()  # WTI marked at April-2020-like levels, 30 $/bbl
    curves["CR-WTI"] = ForwardCurve(MONTHS, np.full(MONTHS.size, 30.0), "CR-WTI")
    inputs = risk_inputs(_report(desk, curves), books=["DEMO Oil"])
    res = service.calculate(
        inputs, "historical", 0.99, 1, window=60, window_end=dt.date(2020, 5, 29)
    )
    c = res.currency("USD")
    assert res.window_start < dt.date(2020, 4, 20) < res.window_end
    assert np.isfinite(c.pnl).all() and math.isfinite(c.var) and c.es >= c.var > 0
    # 2020-04-20: WTI 18.31 -> -36.98 (-55.29): the 72-strike WTI call's forward (30 $/bbl)
    # goes below zero in that scenario; it is valued at intrinsic (0) and counted.
    assert c.nonpositive == 1 and "1 option revaluations at a forward <= 0" in res.note()
    opt = inputs.currency("USD").book
    k = int(np.flatnonzero(res.currency("USD").dates == np.datetime64("2020-04-20"))[0])
    linear = float(
        service.scenarios(inputs.currency("USD"), 60, 1, dt.date(2020, 5, 29)).shifts[k]
        @ opt.linear.sum(axis=1)
    )
    decay_free = -float(opt.opt_value0 @ opt.opt_qty)  # the call is worth 0 there
    assert c.pnl[k] == pytest.approx(linear + decay_free, rel=1e-12)


def test_bad_settings_raise_readable_errors(desk: Any, service: RiskService) -> None:
    inputs = risk_inputs(_report(desk))
    with pytest.raises(ValueError, match="method"):
        service.calculate(inputs, "magic")
    with pytest.raises(ValueError, match="horizon"):
        service.calculate(inputs, "historical", 0.99, 11)
    with pytest.raises(ValueError, match="common dates"):
        service.calculate(inputs, "historical", 0.99, 1, window=100_000)
    empty = risk_inputs(_report(desk), books=["DEMO Power"])
    empty = type(empty)(empty.as_of, "product", (), (), 0, 0, ())
    with pytest.raises(ValueError, match="no open positions"):
        service.calculate(empty)


def test_proxy_scaling_is_the_documented_typical_level_ratio(service: RiskService) -> None:
    assert PROXIES["NG-TTF"].text() == "proxy: EIA Henry Hub x 9.85"
    assert PROXIES["CR-WTI"].text() == "direct: EIA WTI"
    assert {p.code for p in PRODUCT_SPECS} == set(PROXIES)
    doc = (Path(__file__).parent.parent / "docs" / "risk.md").read_text()
    for code, px in PROXIES.items():
        src = PRODUCT_BY_CODE[px.source].typical_level
        assert px.scale == pytest.approx(PRODUCT_BY_CODE[code].typical_level / src)
        assert f"| {code} | {px.text()} |" in doc
    _, daily, _ = service.factor_changes(["NG-HH", "NG-TTF", "RP-ULSD-NYH", "CR-BRENT"], 50)
    assert np.allclose(daily[:, 1], daily[:, 0] * PROXIES["NG-TTF"].scale)
    assert np.allclose(daily[:, 2], daily[:, 3] * PROXIES["RP-ULSD-NYH"].scale)


# -- panel --------------------------------------------------------------------------------------


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def test_panel_calculates_and_draws(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object], desk: Any
) -> None:
    panel = RiskPanel(runner, history=lambda: history)  # type: ignore[arg-type,return-value]
    qtbot.addWidget(panel)
    panel.set_report(_report(desk))
    with qtbot.waitSignal(panel.sig_calculated, timeout=20_000) as sig:
        panel.calculate()
    res = sig.args[0]
    assert [c.currency for c in res.currencies] == ["EUR", "GBP", "USD"]
    assert "<b>USD</b> VaR" in panel.totals.text() and "<b>EUR</b> VaR" in panel.totals.text()
    assert "proxy: EIA Henry Hub x 9.85" in panel.note.text()
    assert "window" in panel.message.text()
    shown = res.currency(panel.currency.currentText())
    assert panel.table.rowCount() == len(shown.contributions) + 1
    total = panel.table.item(panel.table.rowCount() - 1, 4)
    assert total is not None and total.text() == f"{shown.es:,.0f}"
    kinds = {type(i).__name__ for i in panel.plot.getPlotItem().items}
    assert {"BarGraphItem", "InfiniteLine"} <= kinds
    # parametric draws the density instead of bars
    panel.method.setCurrentIndex(panel.method.findData("parametric"))
    with qtbot.waitSignal(panel.sig_calculated, timeout=20_000):
        panel.calculate()
    kinds = {type(i).__name__ for i in panel.plot.getPlotItem().items}
    assert "InfiniteLine" in kinds and "BarGraphItem" not in kinds


def test_panel_messages_without_positions(qtbot: QtBot, runner: JobRunner, desk: Any) -> None:
    panel = RiskPanel(runner, history=dict)
    qtbot.addWidget(panel)
    panel.calculate()
    assert "No positions" in panel.message.text()
    svc, snap = desk
    delivered = svc.revalue(snap, _curves(), dt.date(2040, 1, 1))  # everything delivered
    panel.set_report(delivered)
    panel.calculate()
    qtbot.waitUntil(lambda: "No open positions" in panel.message.text(), timeout=10_000)
    panel.set_report(_report(desk))  # no history at all: a message, not a traceback
    panel.calculate()
    qtbot.waitUntil(lambda: "failed" in panel.message.text(), timeout=10_000)
    assert "no price history" in panel.message.text()


def test_panel_cancel(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object], desk: Any
) -> None:
    def slow() -> dict[str, object]:
        time.sleep(0.6)
        return history

    panel = RiskPanel(runner, history=slow)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.set_report(_report(desk))
    panel.calculate()
    job = panel._job
    assert panel.cancel_button.isEnabled()
    panel.cancel()
    qtbot.waitUntil(lambda: not job.active, timeout=10_000)
    assert job.state.name == "CANCELLED"
    assert panel.result is None and "cancelled" in panel.message.text()
    qtbot.waitUntil(lambda: not panel.cancel_button.isEnabled(), timeout=5_000)


def test_panel_auto_recalc_is_throttled(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object], desk: Any
) -> None:
    panel = RiskPanel(runner, history=lambda: history)  # type: ignore[arg-type,return-value]
    qtbot.addWidget(panel)
    for _ in range(5):
        panel.on_revalued(_report(desk))
    assert panel.calculations == 1 and panel._auto_timer.isActive()
    qtbot.waitUntil(lambda: panel.calculations == 2, timeout=5_000)
    qtbot.waitUntil(lambda: panel.result is not None, timeout=20_000)


def test_render_panel_with_demo_desk(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object], tmp_path: Path
) -> None:
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 200, today=AS_OF)
        svc = PositionService(TradeRepository(store))
        curves = {
            p.code: ForwardCurve(MONTHS, np.full(MONTHS.size, p.typical_level), p.code, p.weights)
            for p in PRODUCT_SPECS
        }
        report = svc.revalue(svc.snapshot(), curves, AS_OF, dimension="product")
    finally:
        store.close()
    panel = RiskPanel(runner, history=lambda: history)  # type: ignore[arg-type,return-value]
    qtbot.addWidget(panel)
    panel.resize(1000, 760)
    panel.show()
    panel.set_report(report)
    with qtbot.waitSignal(panel.sig_calculated, timeout=20_000) as sig:
        panel.calculate()
    res = sig.args[0]
    assert {c.currency for c in res.currencies} == set(report.currency.tolist())
    for c in res.currencies:
        assert c.es >= c.var > 0
    out = Path(os.environ.get("QE_RISK_PNG", tmp_path / "risk_panel.png"))
    qtbot.wait(50)
    assert panel.grab().save(str(out))


def test_monte_carlo_on_a_dask_cluster_equals_local_threads(desk: Any, history: Any) -> None:
    distributed = pytest.importorskip("distributed")
    from app.engine.risk.scaleout import DaskExecutor

    inputs = risk_inputs(_report(desk), tenor_vols=SIM_PARAMS)
    local = RiskService(history).calculate(inputs, "monte_carlo", 0.99, 1, n_scenarios=4_000)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,  # fmt: skip
        distributed.Client(cluster) as client,
    ):
        svc = RiskService(history, DaskExecutor(client), "Dask cluster (test)")
        remote = svc.calculate(inputs, "monte_carlo", 0.99, 1, n_scenarios=4_000)
    for a, b in zip(local.currencies, remote.currencies, strict=True):
        assert a.var == b.var and a.es == b.es and a.var_ci == b.var_ci
        np.testing.assert_array_equal(a.pnl, b.pnl)
        assert [x.contribution for x in a.contributions] == [
            x.contribution for x in b.contributions
        ]
    assert "on Dask cluster (test)" in remote.note() and "local threads" in local.note()
