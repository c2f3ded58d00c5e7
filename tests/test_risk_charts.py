"""Risk charts: Backtest and VaR-history tabs, contributions chart and drill-down (pytest-qt)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from pytestqt.qtbot import QtBot

from app.engine.curves import ForwardCurve
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.models.catalogue import PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.positions import PositionService
from app.services.risk import RiskService, risk_inputs
from app.views.jobs import JobRunner
from app.views.risk_charts import (
    ContributionsChart,
    VarHistoryPanel,
    drill_rows,
    install_risk_charts,
)
from app.views.risk_panel import RiskPanel
from tests.test_backtest_service import _inputs

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))


@pytest.fixture(scope="module")
def history() -> dict[str, object]:
    return {m.product: read_series(m.path) for m in bundled_series()}


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Any:
    store = Store.open_file(tmp_path_factory.mktemp("demo") / "s.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 200, today=AS_OF)
        svc = PositionService(TradeRepository(store))
        curves = {
            p.code: ForwardCurve(MONTHS, np.full(MONTHS.size, p.typical_level), p.code, p.weights)
            for p in PRODUCT_SPECS
        }
        return svc.revalue(svc.snapshot(), curves, AS_OF, dimension="product")
    finally:
        store.close()


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def _panel(qtbot: QtBot, runner: JobRunner, history: dict[str, object], **kw: Any) -> RiskPanel:
    panel = RiskPanel(runner, history=kw.pop("loader", lambda: history))
    qtbot.addWidget(panel)
    return panel


def test_install_adds_tabs_and_backtest_runs_from_the_button(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object]
) -> None:
    panel = _panel(qtbot, runner, history)
    inputs = _inputs()
    panel.build_inputs = lambda report, group_by="product", books=None: inputs  # type: ignore[method-assign]
    bt, _hist = install_risk_charts(panel)
    titles = [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    assert titles[-2:] == ["Backtest", "VaR history"]
    bt.run()
    assert "No positions" in bt.message.text()
    panel.report = object()  # the build_inputs above ignores it
    bt.days.setCurrentIndex(bt.days.findData(250))
    bt.window_box.setCurrentIndex(bt.window_box.findData(250))
    with qtbot.waitSignal(bt.sig_done, timeout=30_000) as sig:
        qtbot.mouseClick(bt.run_button, Qt.MouseButton.LeftButton)
    rep = sig.args[0]
    expected = run_backtest_direct(history, inputs)
    assert rep.days == 250 and rep.window == 250 and rep.confidence == 0.99
    for c, e in zip(rep.currencies, expected.currencies, strict=True):
        assert c.n_exceptions == e.n_exceptions
        col = 1 + [x.currency for x in rep.currencies].index(c.currency)
        assert bt.table.horizontalHeaderItem(col).text() == c.currency
        cells = [bt.table.item(r, col).text() for r in range(bt.table.rowCount())]
        assert cells[:3] == ["250", str(c.n_exceptions), "2.5"]
        assert cells[5] == f"{c.kupiec[1]:.4f}" and cells[9] == c.traffic_light.upper()
        zone = bt.table.item(9, col).background().color().name()
        assert zone == {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}[c.traffic_light]
    shown = rep.currency(bt.currency.currentText())
    kinds = [type(i).__name__ for i in bt.plot.getPlotItem().items]
    assert "BarGraphItem" in kinds
    if shown.n_exceptions:
        scatter = [i for i in bt.plot.getPlotItem().listDataItems() if i.opts.get("symbol") == "o"]
        assert len(scatter) == 1 and scatter[0].getData()[1].size == shown.n_exceptions
    assert "exception = loss > VaR forecast" in bt.note.text()
    qtbot.waitUntil(lambda: not bt.cancel_button.isEnabled(), timeout=5_000)


def run_backtest_direct(history: dict[str, object], inputs: Any) -> Any:
    from app.services.backtest import run_backtest

    return run_backtest(RiskService(history), inputs, "historical", 0.99, 250, 250)  # type: ignore[arg-type]


def test_backtest_cancel_keeps_the_panel_usable(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object]
) -> None:
    def slow() -> dict[str, object]:
        time.sleep(0.6)
        return history

    panel = _panel(qtbot, runner, history, loader=slow)
    panel.build_inputs = lambda report, group_by="product", books=None: _inputs()  # type: ignore[method-assign]
    panel.report = object()
    bt, _ = install_risk_charts(panel)
    bt.run()
    job = bt._job
    assert bt.cancel_button.isEnabled()
    qtbot.mouseClick(bt.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not job.active, timeout=10_000)
    assert job.state.name == "CANCELLED" and bt.report is None
    assert "cancelled" in bt.message.text()
    qtbot.waitUntil(lambda: not bt.cancel_button.isEnabled(), timeout=5_000)


def test_var_history_series_ring_buffer_and_last_values(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object]
) -> None:
    svc = RiskService(history)  # type: ignore[arg-type]
    res = svc.calculate(_inputs(), "historical", 0.99, 1)
    panel = _panel(qtbot, runner, history)
    _, hist = install_risk_charts(panel)
    hist.max_points = 50  # applies to new series
    t0 = 1_700_000_000.0
    for i in range(120):
        hist.append_result(res, at=t0 + i)
    panel.sig_calculated.emit(dataclasses.replace(res, confidence=0.975))
    assert len(hist.series) == 4  # EUR, USD x (99 %, 97.5 %)
    ring = hist.series[("USD", "historical", 0.99, 1)]
    v = ring.view()
    assert len(ring) == 50 and v[0].tolist() == [t0 + i for i in range(70, 120)]
    assert np.all(v[1] == res.currency("USD").var) and np.all(v[2] == res.currency("USD").es)
    qtbot.waitUntil(lambda: hist.table.rowCount() == 4, timeout=5_000)
    names = [hist.table.item(r, 0).text() for r in range(4)]
    assert "USD · Historical (full revaluation) · 97.5% · 1d" in names
    r = names.index("USD · Historical (full revaluation) · 99.0% · 1d")
    assert hist.table.item(r, 2).text() == f"{res.currency('USD').var:,.0f}"
    assert hist.table.item(r, 5).text() == "50"
    hist.currency.setCurrentIndex(hist.currency.findData("EUR"))
    assert hist.table.rowCount() == 2
    assert len(hist.plot.getPlotItem().listDataItems()) == 4  # VaR + ES per series
    qtbot.mouseClick(hist.clear_button, Qt.MouseButton.LeftButton)
    assert not hist.series and hist.table.rowCount() == 0


def test_var_history_bounds_the_number_of_series(qtbot: QtBot, history: dict[str, object]) -> None:
    from app.views import risk_charts

    res = RiskService(history).calculate(_inputs(), "parametric", 0.99, 1)  # type: ignore[arg-type]
    hist = VarHistoryPanel(max_points=5)
    qtbot.addWidget(hist)
    for h in range(1, 11):
        for conf in (0.95, 0.975, 0.99):
            hist.append_result(dataclasses.replace(res, horizon_days=h, confidence=conf))
    assert len(hist.series) == risk_charts.MAX_SERIES


def test_contributions_chart_sorted_labels_and_double_click_drill(
    qtbot: QtBot, runner: JobRunner, history: dict[str, object], demo_report: Any
) -> None:
    inputs = risk_inputs(demo_report, "product")
    res = RiskService(history).calculate(inputs, "historical", 0.99, 1)  # type: ignore[arg-type]
    usd = res.currency("USD")
    chart = ContributionsChart(runner)
    qtbot.addWidget(chart)
    chart.resize(700, 360)
    chart.show()
    chart.set_context(demo_report, "product")
    chart.set_risk(usd)
    assert chart.labels == [
        x.label for x in sorted(usd.contributions, key=lambda x: abs(x.contribution))
    ]
    texts = [i.toPlainText() for i in chart.plot.getPlotItem().items if hasattr(i, "toPlainText")]
    top = max(usd.contributions, key=lambda x: abs(x.contribution))
    assert any(t.startswith(f"{top.contribution:,.0f}") for t in texts)
    qtbot.waitExposed(chart)
    vb = chart.plot.getPlotItem().vb
    qtbot.waitUntil(lambda: vb.sceneBoundingRect().width() > 300, timeout=5_000)
    qtbot.wait(50)  # let the plot lay out its axes before mapping a bar to pixels
    i = len(chart.labels) - 1
    scene = vb.mapViewToScene(QPointF(chart.values[i] / 2, i))
    pos = chart.plot.mapFromScene(scene)
    with qtbot.waitSignal(chart.sig_drill, timeout=5_000) as sig:
        qtbot.mouseDClick(chart.plot.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert sig.args == [top.label]
    qtbot.waitUntil(lambda: chart.dialog is not None, timeout=10_000)
    dlg = chart.dialog
    assert dlg is not None
    rows, total = drill_rows(demo_report, top.label, "product", "USD")
    brute = [
        i
        for i in range(demo_report.product.size)
        if demo_report.product[i] == top.label
        and demo_report.currency[i] == "USD"
        and demo_report.valuation.open_qty[i] > 0
        and demo_report.valuation.reason[i] == 0
    ]
    assert total == len(brute) == dlg.model.rowCount() == len(rows)
    assert {r["trade_uuid"] for r in rows} == {str(demo_report.trade_uuid[i]) for i in brute}
    deltas = [abs(r["delta_qty"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    assert f"{total:,} open trade(s)" in dlg.summary.text()
    chart.set_risk(None)
    assert chart.labels == []


def test_drill_rows_by_book_and_trade_labels(demo_report: Any) -> None:
    for group_by in ("book", "trade"):
        inputs = risk_inputs(demo_report, group_by)
        cb = inputs.currency("USD")
        total = 0
        for label in cb.group_labels:
            _, n = drill_rows(demo_report, label, group_by, "USD")
            total += n
        assert total == cb.n_trades


def test_render_risk_charts_with_demo_desk(
    qtbot: QtBot,
    runner: JobRunner,
    history: dict[str, object],
    demo_report: Any,
    tmp_path: Path,
) -> None:
    panel = _panel(qtbot, runner, history)
    panel.resize(1100, 720)
    panel.show()
    bt, hist = install_risk_charts(panel)
    panel.set_report(demo_report)
    with qtbot.waitSignal(panel.sig_calculated, timeout=30_000):
        panel.calculate()
    with qtbot.waitSignal(bt.sig_done, timeout=30_000) as sig:
        bt.run()
    rep = sig.args[0]
    assert {c.currency for c in rep.currencies} == set(demo_report.currency.tolist())
    for c in rep.currencies:
        assert np.isfinite(c.pnl).all() and np.isfinite(c.var).all() and c.n_obs == 250
    out = Path(os.environ.get("QE_RISK_CHARTS_DIR", tmp_path))
    panel.tabs.setCurrentWidget(bt)
    qtbot.wait(50)
    assert panel.grab().save(str(out / "risk_backtest.png"))
    panel.tabs.setCurrentWidget(hist)
    qtbot.waitUntil(lambda: hist.table.rowCount() == len(rep.currencies), timeout=5_000)
    assert panel.grab().save(str(out / "risk_var_history.png"))
    chart = ContributionsChart(runner)
    qtbot.addWidget(chart)
    chart.resize(700, 360)
    chart.show()
    assert panel.result is not None
    chart.set_risk(panel.result.currency("USD"))
    qtbot.wait(50)
    assert chart.grab().save(str(out / "risk_contributions.png"))
