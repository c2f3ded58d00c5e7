"""Risk service (VaR/ES of the book from the bundled EIA histories) and the Risk panel."""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pytestqt.qtbot import QtBot
from scipy.stats import norm

from app.engine.curves import ForwardCurve
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.positions import PositionService
from app.services.risk import (
    MC_SEED,
    PROXIES,
    Exposures,
    RiskService,
    exposures_from_report,
)
from app.views.jobs import JobRunner
from app.views.risk_panel import RiskPanel

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))


@pytest.fixture(scope="module")
def history() -> dict[str, object]:
    return {m.product: read_series(m.path) for m in bundled_series()}


@pytest.fixture(scope="module")
def service(history: dict[str, object]) -> RiskService:
    return RiskService(history)  # type: ignore[arg-type]


def _exposures() -> Exposures:
    return Exposures(
        AS_OF,
        product=("CR-WTI", "NG-HH", "RP-GASOIL", "NG-TTF", "PWR-DE-BASE", "NG-NBP"),
        currency=("USD", "USD", "USD", "EUR", "EUR", "GBP"),
        unit=("bbl", "MMBtu", "t", "MWh", "MWh", "therm"),
        amount=np.array([25_000.0, -400_000.0, 1_500.0, 30_000.0, -8_000.0, 500_000.0]),
    )


def _aligned(
    history: dict[str, object], sources: list[str], window: int, end: dt.date | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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


def _brute_pnl(
    history: dict[str, object],
    ex: Exposures,
    ccy: str,
    h: int,
    window: int = 500,
    end: dt.date | None = None,
) -> np.ndarray:
    needed = sorted({PROXIES[p].source for p in ex.product})
    _, prices = _aligned(history, needed, window, end)
    pnl = 0.0
    for p, c, w in zip(ex.product, ex.currency, ex.amount, strict=True):
        if c != ccy:
            continue
        lv = prices[PROXIES[p].source] * PROXIES[p].scale
        pnl = pnl + w * (lv[h:] - lv[:-h])
    return np.asarray(pnl)


@pytest.mark.parametrize("h", [1, 5])
def test_historical_equals_brute_force_sort(
    history: dict[str, object], service: RiskService, h: int
) -> None:
    ex = _exposures()
    res = service.calculate(ex, "historical", 0.99, h)
    assert res.n_scenarios == 500 - h + 1
    for c in res.currencies:
        pnl = _brute_pnl(history, ex, c.currency, h)
        losses = np.sort(-pnl)[::-1]
        k = math.ceil(round(pnl.size * (1 - 0.99), 9))
        assert c.var == pytest.approx(losses[k - 1], rel=1e-12)
        assert c.es == pytest.approx(losses[:k].mean(), rel=1e-12)
        assert np.allclose(np.sort(c.pnl), np.sort(pnl), rtol=1e-12, atol=1e-6)
        assert sum(x.contribution for x in c.contributions) == pytest.approx(c.es, rel=1e-9)
        assert sum(x.share for x in c.contributions) == pytest.approx(1.0, rel=1e-9)


def test_parametric_equals_closed_form(history: dict[str, object], service: RiskService) -> None:
    ex = _exposures()
    h = 4
    res = service.calculate(ex, "parametric", 0.975, h)
    for c in res.currencies:
        idx = [i for i, x in enumerate(ex.currency) if x == c.currency]
        _, prices = _aligned(history, sorted({PROXIES[p].source for p in ex.product}), 500)
        chg = np.column_stack(
            [
                np.diff(prices[PROXIES[ex.product[i]].source] * PROXIES[ex.product[i]].scale)
                for i in idx
            ]
        )
        t = chg.shape[0]
        wts = (1 - 0.94) * 0.94 ** np.arange(t - 1, -1, -1) / (1 - 0.94**t)
        cov = (chg * wts[:, None]).T @ chg
        w = ex.amount[idx]
        sigma = math.sqrt(w @ cov @ w) * math.sqrt(h)
        z = norm.ppf(0.975)
        assert c.var == pytest.approx(z * sigma, rel=1e-9)
        assert c.es == pytest.approx(sigma * norm.pdf(z) / 0.025, rel=1e-9)
        assert sum(x.contribution for x in c.contributions) == pytest.approx(c.es, rel=1e-9)


def test_monte_carlo_is_seeded_with_ci_and_contributions(service: RiskService) -> None:
    ex = _exposures()
    a = service.calculate(ex, "monte_carlo", 0.99, 2, n_scenarios=8_000)
    b = service.calculate(ex, "monte_carlo", 0.99, 2, n_scenarios=8_000)
    p = service.calculate(ex, "parametric", 0.99, 2)
    assert MC_SEED == 42 and a.n_scenarios == 8_000
    for ca, cb, cp in zip(a.currencies, b.currencies, p.currencies, strict=True):
        assert ca.var == cb.var and ca.es == cb.es
        assert ca.var_ci is not None and ca.var_ci[0] <= ca.var <= ca.var_ci[1]
        assert ca.var == pytest.approx(cp.var, rel=0.06)  # same EWMA covariance, linear book
        assert sum(x.contribution for x in ca.contributions) == pytest.approx(ca.es, rel=1e-9)


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


def test_negative_wti_day_gives_finite_scenarios(
    history: dict[str, object], service: RiskService
) -> None:
    ex = Exposures(AS_OF, ("CR-WTI",), ("USD",), ("bbl",), np.array([1_000.0]))
    res = service.calculate(ex, "historical", 0.99, 1, window=60, window_end=dt.date(2020, 5, 29))
    c = res.currency("USD")
    assert res.window_start < dt.date(2020, 4, 20) < res.window_end
    assert np.isfinite(c.pnl).all() and math.isfinite(c.var) and math.isfinite(c.es)
    # The worst day is 2020-04-20: 18.31 -> -36.98 = -55.29 $/bbl on 1,000 bbl.
    assert -c.pnl.min() == pytest.approx(55_290.0, abs=0.01)
    assert c.var > 0 and c.es >= c.var


def test_currencies_are_never_mixed(history: dict[str, object], service: RiskService) -> None:
    ex = _exposures()
    res = service.calculate(ex, "historical", 0.95, 1)
    assert [c.currency for c in res.currencies] == ["EUR", "GBP", "USD"]
    eur_only = Exposures(AS_OF, ex.product[3:5], ex.currency[3:5], ex.unit[3:5], ex.amount[3:5])
    alone = service.calculate(eur_only, "historical", 0.95, 1).currency("EUR")
    # EUR risk does not change when USD positions are added (window alignment is the same here:
    # both books need Henry Hub; the USD book also needs WTI and Brent, so align like the book).
    eur = res.currency("EUR")
    assert {x.currency for x in eur.contributions} == {"EUR"}
    assert eur.var == pytest.approx(
        -np.sort(_brute_pnl(history, ex, "EUR", 1))[math.ceil(round(500 * 0.05, 9)) - 1],
        rel=1e-12,
    )
    assert alone.var > 0


def test_bad_settings_raise_readable_errors(service: RiskService) -> None:
    ex = _exposures()
    with pytest.raises(ValueError, match="method"):
        service.calculate(ex, "magic")
    with pytest.raises(ValueError, match="horizon"):
        service.calculate(ex, "historical", 0.99, 11)
    with pytest.raises(ValueError, match="no open positions"):
        service.calculate(Exposures(AS_OF, (), (), (), np.zeros(0)))
    with pytest.raises(ValueError, match="common dates"):
        service.calculate(ex, "historical", 0.99, 1, window=100_000)


def test_exposures_from_report_sums_delta_per_currency_product() -> None:
    report = SimpleNamespace(
        as_of=AS_OF,
        product=np.array(["CR-WTI", "CR-WTI", "NG-TTF", "NG-TTF", "NG-HH"], dtype=object),
        currency=np.array(["USD", "USD", "EUR", "EUR", "USD"], dtype=object),
        unit=np.array(["bbl", "bbl", "MWh", "MWh", "MMBtu"], dtype=object),
        valuation=SimpleNamespace(delta_qty=np.array([1000.0, -250.0, 720.0, np.nan, 0.0])),
    )
    ex = exposures_from_report(report)
    assert ex.product == ("NG-TTF", "CR-WTI") and ex.currency == ("EUR", "USD")
    assert ex.amount.tolist() == [720.0, 750.0] and ex.n_unmarked == 1


# -- panel --------------------------------------------------------------------------------------


def _synthetic_report() -> SimpleNamespace:
    return SimpleNamespace(
        as_of=AS_OF,
        product=np.array(["CR-WTI", "NG-TTF", "RP-GASOIL"], dtype=object),
        currency=np.array(["USD", "EUR", "USD"], dtype=object),
        unit=np.array(["bbl", "MWh", "t"], dtype=object),
        valuation=SimpleNamespace(delta_qty=np.array([20_000.0, 50_000.0, -2_000.0])),
    )


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def test_panel_calculates_and_draws(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object]
) -> None:
    panel = RiskPanel(runner, history=lambda: history)  # type: ignore[arg-type,return-value]
    qtbot.addWidget(panel)
    panel.set_report(_synthetic_report())
    with qtbot.waitSignal(panel.sig_calculated, timeout=20_000) as sig:
        panel.calculate()
    res = sig.args[0]
    assert [c.currency for c in res.currencies] == ["EUR", "USD"]
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


def test_panel_messages_without_positions(qtbot: QtBot, runner: JobRunner) -> None:
    panel = RiskPanel(runner, history=dict)
    qtbot.addWidget(panel)
    panel.calculate()
    assert "No positions" in panel.message.text()
    empty = _synthetic_report()
    empty.valuation.delta_qty = np.zeros(3)
    panel.set_report(empty)
    panel.calculate()
    assert "No open positions" in panel.message.text()
    panel.set_report(_synthetic_report())  # no history at all: a message, not a traceback
    panel.calculate()
    qtbot.waitUntil(lambda: "failed" in panel.message.text(), timeout=10_000)
    assert "no price history" in panel.message.text()


def test_panel_cancel(qtbot: QtBot, runner: JobRunner, history: dict[str, object]) -> None:
    def slow() -> dict[str, object]:
        time.sleep(0.6)
        return history

    panel = RiskPanel(runner, history=slow)  # type: ignore[arg-type]
    qtbot.addWidget(panel)
    panel.set_report(_synthetic_report())
    panel.calculate()
    job = panel._job
    assert panel.cancel_button.isEnabled()
    panel.cancel()
    qtbot.waitUntil(lambda: not job.active, timeout=10_000)
    assert job.state.name == "CANCELLED"
    assert panel.result is None and "cancelled" in panel.message.text()
    qtbot.waitUntil(lambda: not panel.cancel_button.isEnabled(), timeout=5_000)


def test_panel_auto_recalc_is_throttled(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object]
) -> None:
    panel = RiskPanel(runner, history=lambda: history)  # type: ignore[arg-type,return-value]
    qtbot.addWidget(panel)
    for _ in range(5):
        panel.on_revalued(_synthetic_report())
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
