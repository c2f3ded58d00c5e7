"""Positions: engine (monthly split, MTM, options, units), service on the demo desk, dock panel."""

from __future__ import annotations

import datetime as dt
import math
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.engine.curves import ForwardCurve, delivery_hours
from app.engine.positions import (
    ENERGY_UNITS,
    MMBTU_PER_MWH,
    REASON_DELIVERED,
    REASON_NO_CURVE,
    REASON_OK,
    REASON_OUTSIDE_CURVE,
    TradeInputs,
    energy_factor,
    monthly_slices,
    value_trades,
)
from app.feed.market_state import CONNECTED, MarketState
from app.feed.protocol import CurveUpdate
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.enums import InstrumentType, OptionType, Side, TradeStatus
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.positions import DEFAULT_VOL, DIMENSIONS, PositionReport, PositionService
from app.views.jobs import JobRunner
from app.views.market_bridge import MarketBridge
from app.views.positions import COLUMNS, PositionsModel, PositionsPanel, format_number

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))


def _n(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _black(f: float, k: float, t: float, vol: float, call: bool) -> tuple[float, float]:
    """Undiscounted Black-76 value and delta, written out by hand."""
    if t <= 0 or vol == 0:
        w = 1.0 if call else -1.0
        return max(w * (f - k), 0.0), (w if w * (f - k) > 0 else 0.0)
    s = vol * math.sqrt(t)
    d1 = math.log(f / k) / s + s / 2
    d2 = d1 - s
    if call:
        return f * _n(d1) - k * _n(d2), _n(d1)
    return k * _n(-d2) - f * _n(-d1), _n(d1) - 1.0


# -- engine -------------------------------------------------------------------------------------


def _days(a: str) -> np.datetime64:
    return np.datetime64(a, "D")


def test_monthly_split_matches_day_by_day_loop() -> None:
    rng = np.random.default_rng(5)
    n = 60
    start = _days("2026-09-20") + rng.integers(0, 900, n).astype("timedelta64[D]")
    end = start + rng.integers(0, 420, n).astype("timedelta64[D]")
    hourly = rng.random(n) < 0.5
    cut = dt.date(2027, 3, 27)  # the day before the 2027 March clock change
    sl = monthly_slices(start, end, hourly, cut=cut)
    got: dict[tuple[int, str], tuple[float, float]] = {}
    for i in range(sl.trade.size):
        got[(int(sl.trade[i]), str(sl.month[i]))] = (sl.weight[i], sl.open_weight[i])
    for i in range(n):
        want: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        d = start[i].astype(dt.date)
        last = end[i].astype(dt.date)
        total = 0.0
        while d <= last:
            w = delivery_hours(d) if hourly[i] else 1.0
            key = f"{d:%Y-%m}"
            want[key][0] += w
            want[key][1] += w if d >= cut else 0.0
            total += w
            d += dt.timedelta(days=1)
        for month, (w, ow) in want.items():
            assert got[(i, month)] == pytest.approx((w, ow))
        mine = sl.trade == i
        assert mine.sum() == len(want)
        assert sl.fraction[mine].sum() == pytest.approx(1.0)
        assert sl.open_fraction[mine].sum() == pytest.approx(
            sum(v[1] for v in want.values()) / total
        )


def test_monthly_split_rejects_reversed_period() -> None:
    with pytest.raises(ValueError, match="end"):
        monthly_slices(_days("2027-02-01"), _days("2027-01-31"))


def _curve(prices: list[float], first: str = "2027-01", weights: str = "days") -> ForwardCurve:
    months = np.arange(np.datetime64(first), np.datetime64(first) + len(prices))
    return ForwardCurve(months, np.array(prices), weights=weights)


def test_forward_mtm_by_hand() -> None:
    curve = _curve([85.0, 80.0, 70.0, 60.0])
    v = value_trades(
        TradeInputs(
            start=np.array(["2027-01-01", "2027-02-01"], "M8[D]"),
            end=np.array(["2027-01-31", "2027-03-31"], "M8[D]"),
            quantity=[744.0, 59.0 * 10],
            sign=[1.0, -1.0],
            price=[80.0, 72.5],
            hourly=False,
            curve=[0, 0],
        ),
        [curve],
        AS_OF,
    )
    # Buy Jan at 80, forward 85: +744 * 5. Sell Feb-Mar (28 + 31 days) at 72.5.
    f2 = (28 * 80.0 + 31 * 70.0) / 59
    assert v.forward.tolist() == pytest.approx([85.0, f2])
    assert v.mtm.tolist() == pytest.approx([744 * 5.0, -590.0 * (f2 - 72.5)])
    assert v.delta_qty.tolist() == pytest.approx([744.0, -590.0])
    assert v.slice_mtm.sum() == pytest.approx(v.mtm.sum())
    assert v.reason.tolist() == [REASON_OK, REASON_OK]


def test_power_quarter_strip_is_hours_weighted() -> None:
    # Q1-27 baseload: Jan 744 h, Feb 672 h, Mar 743 h (clocks go forward on 28 March 2027).
    curve = _curve([120.0, 110.0, 90.0], weights="hours")
    qty = 2159.0 * 10  # 10 MW for the quarter
    v = value_trades(
        TradeInputs(_days("2027-01-01"), _days("2027-03-31"), qty, -1.0, 100.0, True, 0),
        [curve],
        AS_OF,
    )
    f = (744 * 120.0 + 672 * 110.0 + 743 * 90.0) / 2159
    assert v.forward[0] == pytest.approx(f)
    assert v.forward[0] == pytest.approx(curve.price(dt.date(2027, 1, 1), dt.date(2027, 3, 31)))
    assert v.mtm[0] == pytest.approx(-qty * (f - 100.0))
    assert v.slice_qty.tolist() == pytest.approx([-7440.0, -6720.0, -7430.0])
    assert v.slice_mtm.tolist() == pytest.approx([-7440 * 20.0, -6720 * 10.0, -7430 * -10.0])


def test_partly_delivered_trade_keeps_only_open_days() -> None:
    curve = _curve([50.0, 60.0], first="2026-11")
    v = value_trades(
        TradeInputs(_days("2026-11-01"), _days("2026-12-31"), 610.0, 1.0, 55.0, False, 0),
        [curve],
        AS_OF,  # 24 Nov: 23 Nov days delivered, 7 + 31 open
    )
    assert v.open_qty[0] == pytest.approx(610.0 * 38 / 61)
    assert v.forward[0] == pytest.approx((7 * 50.0 + 31 * 60.0) / 38)
    assert v.mtm[0] == pytest.approx(10.0 * (7 * -5.0 + 31 * 5.0))


def test_option_matches_black76_closed_form() -> None:
    curve = _curve([3.0] * 6 + [3.6, 3.5, 3.4])  # Jul-Sep 27
    expiry = dt.date(2027, 6, 26)
    t = (expiry - AS_OF).days / 365.0
    v = value_trades(
        TradeInputs(
            start=np.array(["2027-07-01"] * 2, "M8[D]"),
            end=np.array(["2027-09-30"] * 2, "M8[D]"),
            quantity=[50_000.0, 20_000.0],
            sign=[1.0, -1.0],
            price=[3.5, 3.5],
            hourly=False,
            curve=0,
            is_option=True,
            is_call=[True, False],
            strike=[3.6, 3.3],
            premium=[0.21, 0.12],
            expiry=np.datetime64(expiry, "D"),
            vol=0.55,
        ),
        [curve],
        AS_OF,
    )
    f = (31 * 3.6 + 31 * 3.5 + 30 * 3.4) / 92
    call, dcall = _black(f, 3.6, t, 0.55, True)
    put, dput = _black(f, 3.3, t, 0.55, False)
    assert v.forward.tolist() == pytest.approx([f, f])
    assert v.value.tolist() == pytest.approx([call, put], rel=1e-9)
    assert v.mtm.tolist() == pytest.approx(
        [50_000 * (call - 0.21), -20_000 * (put - 0.12)], rel=1e-9
    )
    assert v.delta_qty.tolist() == pytest.approx([50_000 * dcall, -20_000 * dput], rel=1e-9)
    assert v.vega[0] > 0 > v.vega[1] and v.theta[0] < 0 < v.theta[1]
    assert v.slice_mtm.sum() == pytest.approx(v.mtm.sum())
    assert v.slice_delta_qty.sum() == pytest.approx(v.delta_qty.sum())


def test_expired_option_is_intrinsic_without_gamma() -> None:
    curve = _curve([80.0, 80.0])
    v = value_trades(
        TradeInputs(
            _days("2027-01-01"),
            _days("2027-01-31"),
            100.0,
            1.0,
            0.0,
            False,
            0,
            is_option=True,
            is_call=True,
            strike=70.0,
            premium=4.0,
            expiry=_days("2026-11-20"),
            vol=0.5,
        ),
        [curve],
        AS_OF,
    )
    assert v.value[0] == pytest.approx(10.0)
    assert v.mtm[0] == pytest.approx(600.0)
    assert v.delta_qty[0] == pytest.approx(100.0)
    assert v.gamma[0] == 0.0 and v.vega[0] == 0.0


def test_unmarked_trades_are_nan_with_a_reason_never_zero() -> None:
    curve = _curve([80.0, 80.0])
    v = value_trades(
        TradeInputs(
            start=np.array(["2027-01-01", "2027-02-01", "2026-10-01"], "M8[D]"),
            end=np.array(["2027-01-31", "2027-04-30", "2026-10-31"], "M8[D]"),
            quantity=100.0,
            sign=1.0,
            price=75.0,
            hourly=False,
            curve=[-1, 0, 0],
        ),
        [curve],
        AS_OF,
    )
    assert v.reason.tolist() == [REASON_NO_CURVE, REASON_OUTSIDE_CURVE, REASON_DELIVERED]
    assert np.isnan(v.mtm[:2]).all() and np.isnan(v.forward[:2]).all()
    assert v.mtm[2] == 0.0 and v.open_qty[2] == 0.0
    assert v.delta_qty[:2].tolist() == [100.0, 100.0]  # volume is known without a curve


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantity": 0.0}, "quantity"),
        ({"sign": 2.0}, "sign"),
        ({"price": np.nan}, "price"),
        ({"curve": 3}, "curve"),
        ({"is_option": True, "strike": np.nan}, "strike"),
        ({"is_option": True, "strike": 1.0, "vol": -0.1}, "vol"),
    ],
)
def test_value_trades_validates_inputs(kwargs: dict[str, object], match: str) -> None:
    base: dict[str, object] = dict(start=_days("2027-01-01"), end=_days("2027-01-31"),
                                   quantity=1.0, sign=1.0, price=1.0, hourly=False, curve=0)  # fmt: skip
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        value_trades(TradeInputs(**base), [_curve([1.0])], AS_OF)  # type: ignore[arg-type]


def test_energy_unit_conversions() -> None:
    assert abs(MMBTU_PER_MWH - 3.412142) < 5e-7
    assert energy_factor("MMBtu") == (pytest.approx(1 / 3.412141633), "MWh")
    assert energy_factor("therm")[0] == pytest.approx(0.1 * energy_factor("MMBtu")[0])
    assert energy_factor("gal") == (pytest.approx(1 / 42), "bbl")
    assert energy_factor("t") == (7.45, "bbl")
    assert energy_factor("MWh") == (1.0, "MWh") and energy_factor("bbl") == (1.0, "bbl")
    assert not ENERGY_UNITS["t"].exact and ENERGY_UNITS["gal"].exact
    assert {p.unit.label for p in PRODUCT_SPECS} <= set(ENERGY_UNITS)
    with pytest.raises(ValueError, match="unit"):
        energy_factor("kWh")


# -- service ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store.open_file(tmp_path_factory.mktemp("positions") / "s.db")
    ensure_reference_data(store)
    seed_demo(store, 200, today=AS_OF)
    yield store
    store.close()


def flat_curves(skip: tuple[str, ...] = ()) -> dict[str, ForwardCurve]:
    """Every product's curve flat at its typical level, Dec-26 .. Dec-30."""
    return {
        p.code: ForwardCurve(MONTHS, np.full(MONTHS.size, p.typical_level), p.code, p.weights)
        for p in PRODUCT_SPECS
        if p.code not in skip
    }


def _brute_force(store: Store) -> tuple[dict[str, float], dict[str, set[str]]]:
    """MTM per currency and trade ids per product, trade by trade in plain Python."""
    repo = TradeRepository(store)
    ref = repo.reference_data()
    mtm: dict[str, float] = defaultdict(float)
    by_product: dict[str, set[str]] = defaultdict(set)
    for rec in repo.current_records():
        if rec.status is TradeStatus.CANCELLED:
            continue
        code = ref.products[rec.product_id].code
        level = PRODUCT_BY_CODE[code].typical_level
        sign = 1.0 if rec.side is Side.BUY else -1.0
        qty = float(rec.quantity)
        if rec.instrument is InstrumentType.OPTION:
            assert rec.expiry_date is not None and rec.strike is not None
            t = max((rec.expiry_date - AS_OF).days, 0) / 365.0
            value, _ = _black(level, float(rec.strike), t, DEFAULT_VOL,
                              rec.option_type is OptionType.CALL)  # fmt: skip
            mtm[rec.currency] += sign * qty * (value - float(rec.premium or 0))
        else:
            mtm[rec.currency] += sign * qty * (level - float(rec.price))
        by_product[code].add(rec.trade_uuid.hex)
    return dict(mtm), dict(by_product)


def _sum_by_ccy(report: PositionReport) -> dict[str, float]:
    g = report.groups
    return {str(c): float(g.mtm[g.currency == c].sum()) for c in set(g.currency.tolist())}


def test_service_mtm_equals_brute_force_and_is_consistent(demo_store: Store) -> None:
    svc = PositionService(TradeRepository(demo_store))
    snap = svc.snapshot()
    report = svc.revalue(snap, flat_curves(), AS_OF, dimension="book")
    want, by_product = _brute_force(demo_store)
    totals = {t.currency: t.mtm for t in report.totals}
    assert set(totals) == set(want) == {"EUR", "GBP", "USD"}
    for ccy, value in want.items():
        assert totals[ccy] == pytest.approx(value, rel=1e-9)
    assert len(snap) == sum(len(v) for v in by_product.values())
    assert report.curve_status == dict.fromkeys(sorted(by_product), "live")
    for dim in DIMENSIONS:
        grouped = PositionService.regroup(report, dim)
        for ccy, value in _sum_by_ccy(grouped).items():
            assert value == pytest.approx(want[ccy], rel=1e-9), (dim, ccy)
        assert not np.isnan(grouped.groups.mtm).any()
        if dim not in ("month", "quarter", "season", "year"):
            assert grouped.groups.n_trades.sum() == len(snap)
    by_prod = PositionService.regroup(report, "product").groups
    for r in range(len(by_prod)):
        code = str(by_prod.label[r])
        members = {str(u) for u in report.trade_uuid[by_prod.members[r]].tolist()}
        assert members == by_product[code]
        factor, common = energy_factor(str(by_prod.unit[r]))
        energy = by_prod.net_mwh[r] if common == "MWh" else by_prod.net_bbl[r]
        assert energy == pytest.approx(by_prod.net_qty[r] * factor)
    # Months roll up into years: the same net MWh per currency.
    months = PositionService.regroup(report, "month").groups
    years = PositionService.regroup(report, "year").groups
    for ccy in ("EUR", "USD"):
        assert np.nansum(months.net_mwh[months.currency == ccy]) == pytest.approx(
            np.nansum(years.net_mwh[years.currency == ccy])
        )
    assert "live curves" in report.note()


def test_service_excludes_cancelled_and_flags_missing_curves(tmp_path: Path) -> None:
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 60, today=AS_OF, seed=3)
        repo = TradeRepository(store)
        svc = PositionService(repo)
        before = svc.snapshot()
        victim = uuid.UUID(hex=str(before.columns["trade_uuid"][0]))
        rec = repo.get(victim)
        repo.new_version(victim, rec.version, "test", status=TradeStatus.CANCELLED)
        after = svc.snapshot()
        assert len(after) == len(before) - 1
        assert victim.hex not in set(after.columns["trade_uuid"].tolist())

        report = svc.revalue(after, flat_curves(skip=("NG-NBP",)), AS_OF,
                             dimension="product", stale={"NG-HH"})  # fmt: skip
        g = report.groups
        nbp = np.flatnonzero(g.label == "NG-NBP")
        assert nbp.size == 1
        assert np.isnan(g.mtm[nbp[0]]) and "no curve for NG-NBP" in g.marks[nbp[0]]
        assert g.n_unmarked[nbp[0]] == g.n_trades[nbp[0]]
        assert not math.isfinite(next(t.mtm for t in report.totals if t.currency == "GBP"))
        hh = np.flatnonzero(g.label == "NG-HH")
        assert g.stale[hh[0]] and g.marks[hh[0]] == "stale"
        i = int(np.flatnonzero(report.product == "NG-NBP")[0])
        assert report.reason_text(i) == "no curve for NG-NBP"
        assert np.isnan(report.valuation.mtm[i])
        assert "no curve for NG-NBP" in report.note()
        assert "last settlement curves (stale): NG-HH" in report.note()
        with pytest.raises(ValueError, match="dimension"):
            PositionService.regroup(report, "desk")
    finally:
        store.close()


# -- panel --------------------------------------------------------------------------------------


def _market() -> MarketState:
    state = MarketState()
    for code, curve in flat_curves().items():
        state.apply_curve(CurveUpdate(code, "2026-12", curve.prices.tolist(), 1, True, None))
    state.update_status(state=CONNECTED)
    state.take_changes()
    return state


@pytest.fixture
def panel(qtbot: QtBot, demo_store: Store) -> Iterator[PositionsPanel]:
    runner = JobRunner(max_threads=2)
    state = _market()
    bridge = MarketBridge(state)
    svc = PositionService(TradeRepository(demo_store))
    p = PositionsPanel(None, runner, state, bridge, svc)
    p.as_of = lambda: AS_OF
    p.show_drill_dialog = False
    qtbot.addWidget(p)
    p.resize(1500, 560)
    with qtbot.waitSignal(p.sig_revalued, timeout=20_000):
        p.show()
    try:
        yield p
    finally:
        runner.shutdown()


def test_positions_model_passes_qtmodeltester(qtmodeltester: object, demo_store: Store) -> None:
    svc = PositionService(TradeRepository(demo_store))
    report = svc.revalue(svc.snapshot(), flat_curves(skip=("CR-WTI",)), AS_OF,
                         dimension="counterparty")  # fmt: skip
    model = PositionsModel()
    model.set_report(report)
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    model.sort(COLUMNS.index(next(c for c in COLUMNS if c.key == "mtm")))
    qtmodeltester.check(model)  # type: ignore[attr-defined]
    assert format_number(-1234567.891, "money") == "-1,234,568"
    assert format_number(float("nan"), "volume") == ""


def test_curve_burst_triggers_one_revaluation(qtbot: QtBot, panel: PositionsPanel) -> None:
    start = panel.revaluations
    panel.bridge.sig_curves.emit({"PWR-XX-UNKNOWN"})  # not held: ignored
    qtbot.wait(300)
    assert panel.revaluations == start
    t0 = time.monotonic()
    with qtbot.waitSignal(panel.sig_revalued, timeout=3000):
        for _ in range(40):
            panel.bridge.sig_curves.emit({"NG-HH", "CR-BRENT"})
    qtbot.wait(max(0, int(1200 - (time.monotonic() - t0) * 1000)))
    assert panel.revaluations == start + 1
    # A steady 20 Hz feed for 2.5 s: at most one revaluation per second.
    before = panel.revaluations
    t1 = time.monotonic()
    while time.monotonic() - t1 < 2.5:
        panel.bridge.sig_curves.emit({"NG-TTF"})
        qtbot.wait(50)
    assert 2 <= panel.revaluations - before <= 3
    qtbot.waitUntil(lambda: not panel.runner.active_jobs, timeout=5000)


def test_group_by_and_drill_down(qtbot: QtBot, panel: PositionsPanel, demo_store: Store) -> None:
    _, by_product = _brute_force(demo_store)
    with qtbot.waitSignal(panel.sig_revalued, timeout=5000):
        panel.set_dimension("product")
    model = panel.model
    assert model.headerData(0, Qt.Orientation.Horizontal) == "Product"
    rows = {model.text(r, 0): r for r in range(model.rowCount())}
    assert set(rows) == set(by_product)
    with qtbot.waitSignal(panel.sig_drill, timeout=1000) as blocker:
        got = panel.drill(rows["NG-HH"])
    assert set(blocker.args[0]) == set(got) == by_product["NG-HH"]
    panel.show_drill_dialog = True
    panel.drill(rows["NG-NBP"])
    assert panel._dialog is not None
    assert panel._dialog.model.rowCount() == len(by_product["NG-NBP"])
    panel._dialog.close()
    assert "Total MTM" in panel.totals.text() and "EUR" in panel.totals.text()
    assert panel.note.text().startswith(f"Marked {AS_OF.isoformat()}: live curves")


def test_render_panel_png(qtbot: QtBot, panel: PositionsPanel, tmp_path: Path) -> None:
    assert panel.dimension == "book"
    panel.table.selectRow(1)
    qtbot.wait(50)  # let the layout settle after the last label update
    path = Path(os.environ.get("QE_POSITIONS_PNG", str(tmp_path / "positions.png")))
    assert panel.grab().save(str(path))
    assert path.stat().st_size > 10_000


def test_reload_after_cancel_drops_the_trade(
    qtbot: QtBot, panel: PositionsPanel, demo_store: Store
) -> None:
    assert panel.report is not None
    before = panel.report
    victim = str(before.trade_uuid[-1])
    repo = TradeRepository(demo_store)
    rec = repo.get(uuid.UUID(hex=victim))
    repo.new_version(rec.trade_uuid, rec.version, "test", status=TradeStatus.CANCELLED)
    start = panel.revaluations
    with qtbot.waitSignal(panel.sig_revalued, timeout=5000):
        for _ in range(5):  # a burst of trade events: one read
            panel.reload()
    assert panel.revaluations == start + 1
    after = panel.report
    assert after is not None and len(after.snapshot) == len(before.snapshot) - 1
    assert victim not in set(after.trade_uuid.tolist())
    assert (
        sum(int(t.n_trades) for t in after.totals)
        == sum(int(t.n_trades) for t in before.totals) - 1
    )


def test_unmarked_option_greeks_are_nan() -> None:
    v = value_trades(
        TradeInputs(
            _days("2027-01-01"),
            _days("2027-01-31"),
            100.0,
            1.0,
            0.0,
            False,
            -1,
            is_option=True,
            strike=70.0,
            premium=4.0,
            expiry=_days("2026-12-20"),
            vol=0.5,
        ),
        [],
        AS_OF,
    )
    assert v.reason[0] == REASON_NO_CURVE
    assert np.isnan([v.mtm[0], v.delta_qty[0], v.gamma[0], v.vega[0], v.theta[0]]).all()


def test_slow_revaluation_still_lands_under_a_fast_feed(
    qtbot: QtBot, panel: PositionsPanel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revaluation slower than the interval is not superseded by every tick."""
    real = panel.service.revalue

    def slow(*args: object, **kwargs: object) -> PositionReport:
        time.sleep(1.3)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(panel.service, "revalue", slow)
    landed: list[PositionReport] = []
    panel.sig_revalued.connect(landed.append)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.5:
        panel.bridge.sig_curves.emit({"NG-HH"})
        qtbot.wait(50)
    qtbot.waitUntil(lambda: not panel.runner.active_jobs, timeout=5000)
    assert len(landed) >= 1
    assert panel.revaluations - len(landed) <= 1


def test_empty_book_revalues_to_empty_groups(tmp_path: Path) -> None:
    """A store with no trades yet (first start, before the demo desk is seeded) revalues to no
    rows, for every grouping, instead of failing."""
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        svc = PositionService(TradeRepository(store))
        snap = svc.snapshot()
        assert len(snap) == 0
        for dim in ("book", "product", "month", "counterparty"):
            report = svc.revalue(snap, flat_curves(), AS_OF, dimension=dim)
            assert len(report.groups.label) == 0 and not report.totals
    finally:
        store.close()


def test_option_vols_come_from_the_feed_surface_when_quoted() -> None:
    """ATM vol of the nearest quoted expiry per product; the default where none is quoted."""
    from app.feed.market_state import MarketState
    from app.feed.protocol import VolSmile, VolUpdate
    from app.views.positions import atm_vols_from_state

    state = MarketState()
    near = VolSmile("2027-01", "2026-12-24", 36.0, (30.0, 35.0, 37.0, 42.0), (0.7, 0.62, 0.6, 0.58))
    far = VolSmile("2027-02", "2027-01-26", 35.0, (30.0, 35.0, 40.0), (0.5, 0.45, 0.44))
    state.apply_vols(VolUpdate("NG-TTF", 1, [far, near]))
    vols = atm_vols_from_state(state, ["NG-TTF", "CR-WTI"], 0.4)
    assert vols == {"NG-TTF": 0.62, "CR-WTI": 0.4}  # strike 35 is closest to F = 36
