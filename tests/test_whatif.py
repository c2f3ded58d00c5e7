"""What-if sandbox and pre-trade impact against booking the same trades for real."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.engine.curves import ForwardCurve
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.feed.sim_params import SIM_PARAMS
from app.models.catalogue import PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.positions import PositionService
from app.services.risk import RiskService, risk_inputs
from app.services.trading import TradingService
from app.services.whatif import CurveShock, Sandbox, WhatIfService, shock_curves
from app.views.jobs import JobRunner
from app.views.risk_panel import RiskPanel
from app.views.ticket import TicketDialog
from app.views.whatif import WhatIfPanel

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))
CURVES = {
    p.code: ForwardCurve(
        MONTHS, p.typical_level * (1 + 0.003 * np.arange(MONTHS.size)), p.code, p.weights
    )
    for p in PRODUCT_SPECS
}


def _raw(**kw: Any) -> dict[str, Any]:
    raw = {"book": "DEMO Oil", "counterparty": "Atlantic Refining Corp", "product": "CR-BRENT",
           "instrument": "Fixed-for-floating swap", "side": "Sell", "quantity": "250000",
           "price": "74.1", "trade_date": "2026-11-20", "delivery_start": "2027-02-01",
           "delivery_end": "2027-07-31", "comment": ""}  # fmt: skip
    raw.update(kw)
    return raw


OPTION = _raw(instrument="Option", side="Buy", quantity="100000", price="74", option_type="Put",
              strike="70", expiry_date="2027-01-26", exercise_style="European", premium="3.1",
              delivery_start="2027-02-01", delivery_end="2027-02-28")  # fmt: skip


@pytest.fixture(scope="module")
def history() -> dict[str, Any]:
    return {m.product: read_series(m.path) for m in bundled_series()}


def _store(path: Path) -> tuple[Store, TradingService, PositionService]:
    store = Store.open_file(path)
    ensure_reference_data(store)
    seed_demo(store, 300, today=AS_OF)
    repo = TradeRepository(store)
    return store, TradingService(repo, EventBus(), user="t"), PositionService(repo)


@pytest.fixture()
def desk(tmp_path: Path) -> Iterator[tuple[Store, TradingService, PositionService]]:
    store, trading, positions = _store(tmp_path / "s.db")
    yield store, trading, positions
    store.close()


def _var(positions: PositionService, history: Any, curves: Any = CURVES) -> dict[str, tuple]:
    rep = positions.revalue(positions.snapshot(), curves, AS_OF, 0.35, dimension="product")
    res = RiskService(history).calculate(risk_inputs(rep, tenor_vols=SIM_PARAMS), "historical")
    return {c.currency: (c.var, c.es) for c in res.currencies}


def test_sandbox_equals_booking_the_trades_and_writes_nothing(
    desk: Any, history: Any, tmp_path: Path
) -> None:
    _, trading, positions = desk
    n_before = trading.repo.count_current()
    econ = [trading.validate(r).economics for r in (_raw(), OPTION)]
    svc = WhatIfService(positions, RiskService(history), SIM_PARAMS)
    res = svc.compare(positions.snapshot(), CURVES, AS_OF, 0.35, Sandbox(econ))
    assert trading.repo.count_current() == n_before  # nothing written
    # Brute force: book the same two trades in a copy of the store and measure again.
    store2, trading2, positions2 = _store(tmp_path / "copy.db")
    try:
        real = _var(positions2, history)
        trading2.capture_many([_raw(), OPTION])
        booked = _var(positions2, history)
    finally:
        store2.close()
    rows = {r.label: r for r in res.rows}
    assert rows["VaR USD"].real == pytest.approx(real["USD"][0], rel=1e-12)
    assert rows["VaR USD"].sandbox == pytest.approx(booked["USD"][0], rel=1e-12)
    assert rows["ES USD"].sandbox == pytest.approx(booked["USD"][1], rel=1e-12)
    assert rows["VaR EUR"].change == pytest.approx(0.0, abs=1e-9)  # EUR book untouched
    brent = rows["CR-BRENT delta"]
    put_delta = float(res.sandbox_report.valuation.delta_qty[-1])
    assert brent.change == pytest.approx(-250_000 + put_delta, rel=1e-9)
    assert -100_000 < put_delta < 0  # a long put has a negative delta
    assert "2 hypothetical trade(s)" in res.note and "nothing is written" in res.note


def test_curve_shock_moves_mtm_by_delta_times_shift(desk: Any, history: Any) -> None:
    _, _, positions = desk
    svc = WhatIfService(positions, RiskService(history), SIM_PARAMS)
    res = svc.compare(positions.snapshot(), CURVES, AS_OF, 0.35,
                      Sandbox([], [CurveShock("NG-TTF", shift=2.0)]))  # fmt: skip
    rep = res.real_report
    ttf = (rep.product == "NG-TTF") & (rep.snapshot.columns["instrument"] != 3)
    opt = rep.snapshot.columns["instrument"] == 3
    lin = (rep.product == "NG-TTF") & ~opt & np.isfinite(rep.valuation.mtm)
    rows = {r.label: r for r in res.rows}
    eur_change = rows["MTM EUR"].change
    # Linear TTF trades: exactly open qty x 2; TTF options: their repricing (checked finite).
    linear = 2.0 * float(np.sum(rep.valuation.delta_qty[lin]))
    opt_ttf = (rep.product == "NG-TTF") & opt & np.isfinite(rep.valuation.mtm)
    opt_change = float(
        np.sum(res.sandbox_report.valuation.mtm[opt_ttf] - rep.valuation.mtm[opt_ttf])
    )
    assert eur_change == pytest.approx(linear + opt_change, rel=1e-9)
    assert ttf.any() and abs(linear) > 0
    shocked = shock_curves(CURVES, [CurveShock("*", pct=-10)])
    assert shocked["CR-WTI"].prices[0] == pytest.approx(CURVES["CR-WTI"].prices[0] * 0.9)
    with pytest.raises(ValueError, match="-100"):
        CurveShock("*", pct=-100)
    with pytest.raises(KeyError, match="no curve"):
        shock_curves(CURVES, [CurveShock("XX", 1.0)])


def test_pre_trade_impact_is_the_booked_difference(desk: Any, history: Any, tmp_path: Path) -> None:
    _, trading, positions = desk
    econ = trading.validate(_raw()).economics
    svc = WhatIfService(positions, RiskService(history), SIM_PARAMS)
    imp = svc.pre_trade(positions.snapshot(), CURVES, AS_OF, 0.35, econ)
    store2, trading2, positions2 = _store(tmp_path / "copy.db")
    try:
        before = _var(positions2, history)["USD"]
        trading2.capture(_raw())
        after = _var(positions2, history)["USD"]
    finally:
        store2.close()
    assert imp.var_before == pytest.approx(before[0], rel=1e-12)
    assert imp.incremental_var == pytest.approx(after[0] - before[0], rel=1e-9, abs=1e-6)
    assert imp.incremental_es == pytest.approx(after[1] - before[1], rel=1e-9, abs=1e-6)
    assert imp.position_after - imp.position_before == pytest.approx(-250_000, rel=1e-12)
    assert "VaR" in imp.text() and "DEMO Oil CR-BRENT" in imp.text()


# -- GUI ----------------------------------------------------------------------------------------


class _Curve:
    def __init__(self, c: ForwardCurve) -> None:
        self.c = c

    def to_forward_curve(self) -> ForwardCurve:
        return self.c


class _State:
    """The two MarketState reads the what-if uses: live curves, no vol surfaces."""

    def live_curve(self, p: str) -> _Curve | None:
        return _Curve(CURVES[p]) if p in CURVES else None

    def is_stale(self, _p: str) -> bool:
        return False

    def settlement_curve(self, _p: str) -> None:
        return None

    def vol_surface(self, _p: str) -> None:
        return None


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def test_ticket_shows_pre_trade_impact_and_adds_to_the_sandbox(
    qtbot: QtBot, runner: JobRunner, desk: Any, history: Any
) -> None:
    _, trading, positions = desk
    report = positions.revalue(positions.snapshot(), CURVES, AS_OF, 0.35, dimension="product")
    pos = SimpleNamespace(report=report, state=_State(), as_of=lambda: AS_OF, vol=0.35,
                          service=positions)  # fmt: skip
    risk = RiskPanel(runner, history=lambda: history)
    panel = WhatIfPanel(runner, pos, risk, trading)
    qtbot.addWidget(risk)
    qtbot.addWidget(panel)
    n_before = trading.repo.count_current()
    TicketDialog.hooks = panel
    try:
        dlg = TicketDialog(trading)
        qtbot.addWidget(dlg)
        assert dlg.impact.isVisibleTo(dlg) and dlg.whatif_button.isVisibleTo(dlg)
        dlg.show()
        assert "once the ticket is complete" in dlg.impact.text()
        dlg.book.setCurrentText("DEMO Oil")
        dlg.counterparty.setCurrentText("Atlantic Refining Corp")
        dlg.product.setCurrentText("CR-BRENT")
        dlg.side.setCurrentText("Sell")
        qtbot.keyClicks(dlg.price, "74.1")
        qtbot.keyClicks(dlg.quantity, "250000")
        qtbot.waitUntil(lambda: "VaR" in dlg.impact.text(), timeout=20_000)
        assert "DEMO Oil CR-BRENT" in dlg.impact.text()
        dlg.quantity.clear()
        qtbot.keyClicks(dlg.quantity, "-5")  # invalid: nothing goes to the sandbox
        dlg.add_to_whatif()
        assert not panel.sandbox.trades and dlg.isVisible()
        dlg.quantity.clear()
        qtbot.keyClicks(dlg.quantity, "250000")
        dlg.add_to_whatif()
        assert len(panel.sandbox.trades) == 1 and not dlg.isVisible()
    finally:
        TicketDialog.hooks = None
    with qtbot.waitSignal(panel.sig_result, timeout=30_000) as sig:
        panel.calculate()
    res = sig.args[0]
    assert trading.repo.count_current() == n_before  # nothing booked
    labels = [panel.results.item(r, 0).text() for r in range(panel.results.rowCount())]
    assert "VaR USD" in labels and "CR-BRENT delta" in labels
    assert {r.label: r for r in res.rows}["CR-BRENT delta"].change == pytest.approx(-250_000)
    panel.shock_shift.setValue(0)
    panel.shock_pct.setValue(0)
    panel.add_shock_from_editor()
    assert "needs a shift" in panel.message.text() and not panel.sandbox.shocks


def test_limit_usage_side_by_side_and_in_the_pre_trade_impact(desk: Any, history: Any) -> None:
    from app.models.limits import LimitDraft, LimitRepository
    from app.services.limits import LimitService

    store, trading, positions = desk
    repo = LimitRepository(store)
    book = trading.refdata.book_by_name("DEMO Oil")
    lim = repo.create(LimitDraft(book.id, "position", "2000000", product="CR-BRENT"), "risk")
    n_breaches = len(repo.breaches(limit=100))
    limits = LimitService(repo, RiskService(history))
    svc = WhatIfService(positions, RiskService(history), SIM_PARAMS, limits)
    econ = trading.validate(_raw()).economics
    res = svc.compare(positions.snapshot(), CURVES, AS_OF, 0.35, Sandbox([econ]))
    row = next(r for r in res.rows if r.section == "limit")
    # Brute force: |net delta| of DEMO Oil CR-BRENT trades, before and after the sell.
    rep = res.real_report
    sel = (rep.product == "CR-BRENT") & (rep.snapshot.columns["book_id"] == book.id)
    net = float(np.nansum(rep.valuation.delta_qty[sel]))
    assert row.real == pytest.approx(abs(net), rel=1e-9)
    assert row.sandbox == pytest.approx(abs(net - 250_000), rel=1e-9)
    assert lim.title in row.label
    imp = svc.pre_trade(positions.snapshot(), CURVES, AS_OF, 0.35, econ)
    (title, before, after, _status), *_ = imp.limits
    assert title == lim.title and before == pytest.approx(abs(net) / 2e6, rel=1e-9)
    assert after == pytest.approx(abs(net - 250_000) / 2e6, rel=1e-9)
    assert "limit " + lim.title in imp.text()
    assert len(repo.breaches(limit=100)) == n_breaches  # measured, never recorded
