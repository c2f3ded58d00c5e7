"""Stress scenarios, grids, the scenario library and the Stress / Scenarios tabs.

Every figure is checked against an independent reference: the book re-marked by
``PositionService.revalue`` on shifted forward curves, the raw EIA CSV files read with ``csv``,
or Black-76 written out with ``scipy.stats.norm``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from scipy.stats import norm

from app.engine.curves import ForwardCurve
from app.engine.risk.stress import (
    GridAxis,
    HistoricalMove,
    PriceShock,
    Scenario,
    ScenarioError,
    ScenarioGrid,
    evaluate_grid,
)
from app.feed.sim_params import SIM_PARAMS
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.repository import TradeRepository
from app.models.scenarios import ScenarioLibrary, ScenarioLibraryError
from app.models.store import Store
from app.services.positions import PositionService
from app.services.risk import PROXIES, RiskInputs, risk_inputs
from app.services.stress import LIBRARY, StressService, factor_meta
from app.views.jobs import JobRunner
from app.views.risk_panel import RiskPanel, load_bundled_history
from app.views.stress_panel import install_stress_tabs

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))
ROOT = Path(__file__).resolve().parents[1]
RAW = {
    "CR-WTI": ROOT / "resources/market/eia-wti-daily.csv",
    "CR-BRENT": ROOT / "resources/market/eia-brent-daily.csv",
    "NG-HH": ROOT / "resources/market/eia-natural-gas-daily.csv",
}


def _raw(code: str) -> dict[str, float]:
    with RAW[code].open(newline="") as f:
        return {r["Date"]: float(r["Price"]) for r in csv.DictReader(f) if r["Price"]}


@pytest.fixture(scope="module")
def history() -> dict[str, Any]:
    return dict(load_bundled_history())


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The demo desk marked on flat curves, with what is needed to re-mark it."""
    store = Store.open_file(tmp_path_factory.mktemp("desk") / "s.db")
    ensure_reference_data(store)
    seed_demo(store, 200, today=AS_OF)
    svc = PositionService(TradeRepository(store))
    snap = svc.snapshot()
    report = svc.revalue(snap, _curves(), AS_OF, dimension="product")
    yield SimpleNamespace(svc=svc, snap=snap, report=report)
    store.close()


def _curves(shift: Any = None) -> dict[str, ForwardCurve]:
    """Flat curves at the typical level; ``shift(product, month, level) -> new price``."""
    out = {}
    for p in PRODUCT_SPECS:
        level = np.full(MONTHS.size, p.typical_level)
        if shift is not None:
            level = np.array([shift(p.code, m, p.typical_level) for m in MONTHS], dtype=float)
        out[p.code] = ForwardCurve(MONTHS, level, p.code, p.weights)
    return out


def _brute(desk: SimpleNamespace, shift: Any, dvol: float = 0.0) -> dict[str, float]:
    """P&L per currency of re-marking every trade on shifted curves (and vols)."""
    base = desk.report
    vol = {k: v + dvol for k, v in base.vol.items()}
    new = desk.svc.revalue(desk.snap, _curves(shift), AS_OF, vol, dimension="product")
    keep = np.array([str(p) in PROXIES for p in base.product]) & (base.valuation.reason == 0)
    out: dict[str, float] = {}
    for c in sorted(set(base.currency[keep].tolist())):
        sel = keep & (base.currency == c)
        out[c] = float(np.sum(new.valuation.mtm[sel]) - np.sum(base.valuation.mtm[sel]))
    return out


@pytest.fixture(scope="module")
def inputs(desk: SimpleNamespace) -> RiskInputs:
    return risk_inputs(desk.report, "product", tenor_vols=dict(SIM_PARAMS))


def _tenor(p: str, month: np.datetime64) -> float:
    """sigma(T)/sigma(0) of the product's Samuelson model, T to the middle of the month."""
    mid = month.astype("datetime64[D]") + 14
    tau = max((mid - np.datetime64(AS_OF, "D")).astype(float), 0.0) / 365.0
    s = SIM_PARAMS[p].sigma
    return float(s(np.array([tau]))[0] / s(np.array([0.0]))[0])


# -- engine: shocks ------------------------------------------------------------------------------


def test_price_shocks_equal_re_marking_the_book(
    desk: SimpleNamespace, inputs: RiskInputs, history: dict[str, Any]
) -> None:
    scen = Scenario(
        "mixed",
        price=(
            PriceShock(10.0, "relative", products=("CR-WTI",), tenor_from=1, tenor_to=3),
            PriceShock(-4.0, "absolute", commodities=("power",)),
            PriceShock(-25.0, "relative", month_from="2027-06", month_to="2027-12"),
        ),
    )

    def shift(p: str, m: np.datetime64, level: float) -> float:
        ahead = int((m - np.datetime64("2026-11", "M")).astype(int))
        x = level
        if p == "CR-WTI" and 1 <= ahead <= 3:
            x += 0.10 * level
        if PRODUCT_BY_CODE[p].commodity.value == "Power":
            x -= 4.0
        if np.datetime64("2027-06") <= m <= np.datetime64("2027-12"):
            x -= 0.25 * level
        return x

    res = StressService(history).run(inputs, [scen])
    ref = _brute(desk, shift)
    assert set(res.currencies) == set(ref)
    for c, v in ref.items():
        assert res.rows[0].pnl[c] == pytest.approx(v, rel=1e-9, abs=1e-6)
        assert res.rows[0].by_group[c].sum() == pytest.approx(res.rows[0].pnl[c], rel=1e-12)
    assert abs(ref["USD"]) > 1e4  # the shocks do hit the book


def test_parallel_shift_on_linear_part_is_exposure_times_shift(inputs: RiskInputs) -> None:
    cb = inputs.currency("EUR")
    assert cb.book.n_options == 0  # the demo EUR book is linear
    meta = factor_meta(cb, AS_OF)
    scen = Scenario("p", price=(PriceShock(3.0, "absolute"),))
    pnl = StressService({}).run(inputs, [scen]).rows[0].pnl["EUR"]
    assert pnl == pytest.approx(3.0 * cb.book.linear.sum(), rel=1e-12)
    assert np.all(scen.shifts(meta) == 3.0)


def test_vol_shift_equals_re_marking_with_shifted_vols(
    desk: SimpleNamespace, inputs: RiskInputs
) -> None:
    scen = Scenario("v", price=(PriceShock(-5.0, "relative"),), vol_points=7.0)
    res = StressService({}).run(inputs, [scen])
    ref = _brute(desk, lambda p, m, lv: lv * 0.95, dvol=0.07)
    assert inputs.n_options > 0
    for c, v in ref.items():
        assert res.rows[0].pnl[c] == pytest.approx(v, rel=1e-9, abs=1e-6)


def test_validation_messages_and_round_trip() -> None:
    s = Scenario(
        "round trip",
        "d",
        price=(PriceShock(5, "relative", ("CR-WTI",), (), 0, 3, "2027-01", None),),
        vol_points=-3,
        horizon_days=10,
        history=HistoricalMove(dt.date(2020, 3, 6), dt.date(2020, 4, 20), "relative"),
    )
    assert Scenario.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    bad = [
        ({"name": ""}, "name: required"),
        ({"name": "x", "vol_points": "abc"}, "vol_points: must be a finite number"),
        ({"name": "x", "price": [{"value": 1, "mode": "log"}]}, "price[0].mode"),
        ({"name": "x", "price": [{"mode": "absolute"}]}, "price[0].value: required"),
        ({"name": "x", "price": [{"value": 1, "tenor_from": 4, "tenor_to": 2}]}, "tenor_to"),
        ({"name": "x", "price": [{"value": 1, "month_from": "June"}]}, "month_from"),
        ({"name": "x", "history": {"start": "2020-04-20", "end": "2020-03-06"}}, "history.end"),
        ({"name": "x", "vol_points": 500}, "vol_points"),
        ({"name": "x"}, "shocks nothing"),
        ({"name": "x", "colour": "red", "vol_points": 1}, "unknown field"),
    ]
    for d, msg in bad:
        with pytest.raises(ScenarioError) as err:
            Scenario.from_dict(d)
        assert msg in str(err.value), (d, str(err.value))


# -- historical scenarios ------------------------------------------------------------------------


def test_library_levels_come_from_the_raw_csv(history: dict[str, Any]) -> None:
    raw = {c: _raw(c) for c in RAW}
    svc = StressService(history)
    doc = (ROOT / "docs" / "stress.md").read_text().replace("\u2212", "-")  # typographic minus
    for s in LIBRARY:
        assert s.history is not None
        lv = svc.source_levels(s.history, list(RAW))
        for c in RAW:
            a, b = raw[c][str(s.history.start)], raw[c][str(s.history.end)]
            assert lv[c] == (a, b)
            assert f"{a:.2f}" in doc and f"{b:.2f}" in doc
        assert str(s.history.start) in doc and str(s.history.end) in doc
    covid = next(s for s in LIBRARY if s.history and s.history.end == dt.date(2020, 4, 20))
    assert covid.history is not None
    assert svc.source_levels(covid.history, ["CR-WTI"])["CR-WTI"][1] == -36.98
    assert raw["CR-WTI"]["2020-04-20"] == -36.98
    euro = next(s for s in LIBRARY if "European" in s.name)
    assert "Henry Hub proxy" in euro.description


def test_historical_pnl_equals_re_marking_with_source_moves(
    desk: SimpleNamespace, inputs: RiskInputs, history: dict[str, Any]
) -> None:
    """Both modes against the re-marked book.  Where a move takes an option's forward to or
    below zero the positions engine leaves it unmarked (NaN) while the stress values it at
    intrinsic, so those (scenario, currency) pairs are only checked to be finite."""
    raw = {c: _raw(c) for c in RAW}
    svc = StressService(history)
    compared = 0
    for mode in ("absolute", "relative"):
        for s in LIBRARY:
            assert s.history is not None
            a = {c: raw[c][str(s.history.start)] for c in RAW}
            b = {c: raw[c][str(s.history.end)] for c in RAW}

            def shift(p: str, m: np.datetime64, lv: float, a: Any = a, b: Any = b,
                      mode: str = mode) -> float:  # fmt: skip
                px = PROXIES[p]
                if mode == "absolute":
                    return lv + px.scale * _tenor(p, m) * (b[px.source] - a[px.source])
                return lv + lv * _tenor(p, m) * (b[px.source] / a[px.source] - 1.0)

            got = svc.run(inputs, [s], mode=mode).rows[0].pnl
            for c, v in _brute(desk, shift).items():
                assert math.isfinite(got[c])
                if math.isfinite(v):
                    assert got[c] == pytest.approx(v, rel=1e-8, abs=1e-4), (mode, s.name, c)
                    compared += 1
    assert compared >= 30  # of 2 modes x 6 scenarios x 3 currencies


def test_relative_historical_move_and_missing_date(
    inputs: RiskInputs, history: dict[str, Any]
) -> None:
    cb = inputs.currency("USD")
    meta = factor_meta(cb, AS_OF)
    mv = HistoricalMove(dt.date(2020, 3, 6), dt.date(2020, 4, 20), "relative")
    lv = StressService(history).source_levels(mv, cb.sources)
    x = Scenario("r", history=mv).shifts(meta, lv)
    j = int(np.flatnonzero(meta.product == "CR-WTI")[0])
    ret = -36.98 / 41.14 - 1.0
    assert x[j] == pytest.approx(70.0 * _tenor("CR-WTI", meta.month[j]) * ret, rel=1e-12)
    weekend = Scenario("w", history=HistoricalMove(dt.date(2020, 3, 7), dt.date(2020, 4, 20)))
    res = StressService(history).run(inputs, [weekend, LIBRARY[0]])
    assert [r.scenario.name for r in res.rows] == [LIBRARY[0].name]
    assert "no price on 2020-03-07" in res.errors[0]
    assert res.worst("USD") == 0


# -- grids -----------------------------------------------------------------------------------------


def test_grid_cells_equal_scenarios_and_black76_by_hand(
    desk: SimpleNamespace, inputs: RiskInputs
) -> None:
    grid = ScenarioGrid(
        (
            GridAxis.steps("price_pct", -20, 20, 5),
            GridAxis("vol_points", (-5.0, 0.0, 5.0)),
            GridAxis("days", (0.0, 30.0)),
        )
    )
    res = StressService({}).grid(inputs, grid, progress=lambda f: None)
    assert res.values["USD"].shape == (5, 3, 2)
    ref = _brute(desk, lambda p, m, lv: lv * 1.10, dvol=0.05)
    for c, v in ref.items():
        assert res.values[c][3, 2, 0] == pytest.approx(v, rel=1e-9, abs=1e-6)
    # 30 days forward, no price or vol move: pure time decay of the options, by hand
    cb = inputs.currency("USD")
    b = cb.book
    k, t, s, f0 = b.opt_strike, b.opt_t, b.opt_vol, b.opt_forward0

    def black(tt: np.ndarray) -> np.ndarray:
        sd = s * np.sqrt(tt)
        d1 = np.log(f0 / k) / sd + sd / 2
        c = f0 * norm.cdf(d1) - k * norm.cdf(d1 - sd)
        return np.where(b.opt_call, c, c - f0 + k)

    decay = float(np.sum(b.opt_qty * (black(np.maximum(t - 30 / 365, 1e-12)) - black(t))))
    assert res.values["USD"][2, 1, 1] == pytest.approx(decay, rel=1e-9)
    assert res.values["USD"][2, 1, 0] == 0.0


def test_grid_chunks_progress_cancel_and_errors(inputs: RiskInputs) -> None:
    cb = inputs.currency("USD")
    meta = factor_meta(cb, AS_OF)
    grid = ScenarioGrid((GridAxis.steps("price_abs", -5, 5, 11), GridAxis.steps("days", 0, 10, 3)))
    seen: list[float] = []
    whole = evaluate_grid(cb.book, meta, grid)
    small = evaluate_grid(cb.book, meta, grid, max_cells=cb.book.n_factors * 4,
                          progress=seen.append)  # fmt: skip
    assert np.allclose(small, whole, rtol=1e-12, atol=1e-9)
    assert seen[-1] == pytest.approx(1.0) and len(seen) >= 8
    from concurrent.futures import CancelledError

    with pytest.raises(CancelledError):
        evaluate_grid(cb.book, meta, grid, cancelled=lambda: True)
    with pytest.raises(ScenarioError, match="different kinds"):
        ScenarioGrid((GridAxis("days", (1.0,)), GridAxis("days", (2.0,))))
    with pytest.raises(ScenarioError, match="2 or 3 axes"):
        ScenarioGrid((GridAxis("days", (1.0,)),))
    g2 = ScenarioGrid.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert g2 == grid


# -- persistence -----------------------------------------------------------------------------------


def test_library_saves_atomically_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "data" / "scenarios.json"
    lib = ScenarioLibrary(path)
    assert lib.scenarios() == []
    a = Scenario("WTI +20", price=(PriceShock(20.0, products=("CR-WTI",)),))
    lib.save(a)
    lib.save(Scenario("vol up", vol_points=5))
    with pytest.raises(ValueError, match="already exists"):
        lib.save(Scenario("wti +20", vol_points=1))
    lib.save(
        Scenario("WTI +25", price=(PriceShock(25.0, products=("CR-WTI",)),)), replace="WTI +20"
    )
    assert [s.name for s in ScenarioLibrary(path).scenarios()] == ["WTI +25", "vol up"]
    lib.delete("vol up")
    assert [s.name for s in ScenarioLibrary(path).scenarios()] == ["WTI +25"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["scenarios.json"]  # no temp files


def test_corrupt_file_is_kept_aside_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "scenarios.json"
    path.write_text('{"version": 1, "scenarios": [{"name": "x", "vol_points": "abc"}]}')
    original = path.read_bytes()
    lib = ScenarioLibrary(path)
    with pytest.raises(ScenarioLibraryError) as err:
        lib.load()
    assert "vol_points" in str(err.value) and "kept as" in str(err.value)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("scenarios.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == original
    assert not path.exists() and lib.scenarios() == []
    path.write_text("{not json")
    lib2 = ScenarioLibrary(path)
    assert lib2.scenarios() == [] and lib2.load_error and "kept as" in lib2.load_error


# -- GUI -------------------------------------------------------------------------------------------


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def _panel(qtbot: QtBot, runner: JobRunner, history: Any, report: Any) -> RiskPanel:
    panel = RiskPanel(runner, history=history)
    qtbot.addWidget(panel)
    panel.set_report(report)
    return panel


def test_stress_tab_runs_and_highlights_worst(
    qtbot: QtBot, runner: JobRunner, history: dict[str, Any], desk: SimpleNamespace,
    tmp_path: Path,
) -> None:  # fmt: skip
    risk = _panel(qtbot, runner, lambda: history, desk.report)
    stress, grid = install_stress_tabs(risk, tmp_path)
    assert risk.tabs.count() == 3
    risk.resize(1100, 760)
    risk.show()
    risk.tabs.setCurrentWidget(stress)
    with qtbot.waitSignal(stress.sig_done, timeout=30_000) as sig:
        qtbot.mouseClick(stress.run_button, Qt.MouseButton.LeftButton)
    res = sig.args[0]
    assert stress.table.rowCount() == len(LIBRARY)
    for k, c in enumerate(res.currencies):
        w = res.worst(c)
        cell = stress.table.item(w, 1 + k)
        assert cell is not None and cell.font().bold()
        assert cell.text() == f"{res.rows[w].pnl[c]:,.0f}"
    assert stress.groups.rowCount() == sum(len(v) for v in res.group_labels.values())
    out = Path(os.environ.get("QE_STRESS_PNG", tmp_path / "stress.png"))
    assert risk.grab().save(str(out))
    risk.tabs.setCurrentWidget(grid)
    grid.third.setChecked(True)
    with qtbot.waitSignal(grid.sig_done, timeout=30_000) as sig:
        qtbot.mouseClick(grid.run_button, Qt.MouseButton.LeftButton)
    g = sig.args[0]
    grid.currency.setCurrentText("USD")
    grid.slice.setCurrentIndex(0)
    v = grid.values()
    assert v is not None and np.array_equal(v, g.values["USD"][:, :, 0])
    nr = v.shape[0]
    top = grid.table.item(0, 0)
    assert top is not None and top.text() == f"{v[nr - 1, 0]:,.0f}"  # table rows top = last value
    assert len(grid._texts) == v.size
    assert risk.grab().save(str(out.with_name("scenarios.png")))


def test_stress_cancel(
    qtbot: QtBot, runner: JobRunner, history: dict[str, Any], desk: SimpleNamespace,
    tmp_path: Path,
) -> None:  # fmt: skip
    def slow() -> dict[str, Any]:
        time.sleep(0.6)
        return history

    risk = _panel(qtbot, runner, slow, desk.report)
    stress, _grid = install_stress_tabs(risk, tmp_path)
    stress.run()
    job = stress._job
    assert stress.cancel_button.isEnabled() and not stress.run_button.isEnabled()
    qtbot.mouseClick(stress.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not job.active, timeout=10_000)
    assert job.state.name == "CANCELLED" and stress.result is None
    assert "Cancelled" in stress.message.text()
    qtbot.waitUntil(lambda: stress.run_button.isEnabled(), timeout=5_000)


def test_editor_rejects_bad_input_and_saved_scenario_survives(
    qtbot: QtBot, runner: JobRunner, history: dict[str, Any], desk: SimpleNamespace,
    tmp_path: Path,
) -> None:  # fmt: skip
    risk = _panel(qtbot, runner, lambda: history, desk.report)
    stress, _grid = install_stress_tabs(risk, tmp_path)
    file = tmp_path / "scenarios.json"
    ed = stress.open_editor(None)
    qtbot.keyClicks(ed.name, "Gas +50%")
    ed.add_shock()
    ed.shocks.item(0, 1).setText("50")
    ed.shocks.item(0, 2).setText("NG-HH, NG-XXX")
    assert "unknown product(s) NG-XXX" in ed.message.text()
    assert not ed.save_button.isEnabled()
    ed.shocks.item(0, 2).setText("NG-HH")
    ed.vol.clear()
    qtbot.keyClicks(ed.vol, "abc")
    assert "vol_points: must be a finite number" in ed.message.text()
    ed.save()  # even forced, nothing is saved
    assert not file.exists() and ed.isVisible()
    ed.vol.clear()
    qtbot.keyClicks(ed.vol, "4")
    ed.name.setText(LIBRARY[0].name)
    assert "built-in" in ed.message.text()
    ed.name.setText("Gas +50%")
    assert ed.save_button.isEnabled()
    qtbot.mouseClick(ed.save_button, Qt.MouseButton.LeftButton)
    assert not ed.isVisible() and file.exists()
    again = ScenarioLibrary(file).get("gas +50%")
    assert again.vol_points == 4.0 and again.price[0].products == ("NG-HH",)
    assert again.price[0].value == 50.0 and again.price[0].mode == "relative"
    assert stress.table.rowCount() == len(LIBRARY) + 1
    with qtbot.waitSignal(stress.sig_done, timeout=30_000) as sig:
        stress.run()
    row = sig.args[0].rows[-1]
    assert row.scenario.name == "Gas +50%" and not row.builtin
    assert math.isfinite(row.pnl["USD"])
    # a new panel on the same data dir lists it; deleting removes it from the file
    risk2 = _panel(qtbot, runner, lambda: history, desk.report)
    stress2, _ = install_stress_tabs(risk2, tmp_path)
    assert stress2.table.rowCount() == len(LIBRARY) + 1
    stress2.table.selectRow(len(LIBRARY))
    assert stress2.delete_button.isEnabled()
    qtbot.mouseClick(stress2.delete_button, Qt.MouseButton.LeftButton)
    assert ScenarioLibrary(file).scenarios() == []
