"""Options pricer panel: prices, greeks, implied vol, grid, errors and booking from the panel."""

from __future__ import annotations

import calendar
import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QDate, Qt
from pytestqt.qtbot import QtBot

from app.engine.american import american_black76
from app.engine.asian import asian_turnbull_wakeman
from app.engine.market_model import shifted_lognormal_black_vols
from app.engine.options import bachelier, black76, black76_greeks
from app.feed import market_state as ms
from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, VolSmile, VolUpdate
from app.models import demo
from app.models.enums import ExerciseStyle, InstrumentType, OptionType
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.option_pricing import (
    MODEL_AMERICAN,
    MODEL_ASIAN,
    MODEL_BACHELIER,
    MODEL_BLACK,
    parse_strikes,
)
from app.services.trading import TradingService
from app.views.jobs import JobRunner
from app.views.pricer import OptionsPricerPanel
from app.views.ticket import TicketDialog
from app.views.widgets import qdate


def _today() -> dt.date:
    """Today at the time of use (a module constant goes stale when a run crosses midnight)."""
    return dt.date.today()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TradingService, JobRunner]]:
    store = Store.open_file(tmp_path / "s.db")
    demo.ensure_reference_data(store)
    demo.seed_demo(store, 20)
    trading = TradingService(TradeRepository(store), EventBus(), user="t")
    runner = JobRunner()
    yield trading, runner
    runner.shutdown()
    store.close()


@pytest.fixture
def panel(qtbot: QtBot, env: tuple[TradingService, JobRunner]) -> OptionsPricerPanel:
    trading, runner = env
    p = OptionsPricerPanel(runner, trading)
    qtbot.addWidget(p)
    p.resize(1200, 760)
    p.show()
    return p


def _set(
    p: OptionsPricerPanel,
    *,
    product: str = "CR-BRENT",
    model: str = MODEL_BLACK,
    call: bool = True,
    F: float = 74.0,
    K: float = 75.0,
    days: int = 91,
    vol: float = 35.0,
    rate: float = 3.0,
    premium: str = "",
    quantity: str = "",
) -> None:
    p.product.setCurrentText(product)
    p.model.setCurrentText(model)
    p.call_put.setCurrentText("Call" if call else "Put")
    p.forward.setValue(F)
    p.strike.setValue(K)
    e = _today() + dt.timedelta(days=days)
    p.expiry.setDate(QDate(e.year, e.month, e.day))
    p.vol.setValue(vol)
    p.rate.setValue(rate)
    p.premium_in.setText(premium)
    p.quantity.setText(quantity)


def _price(qtbot: QtBot, p: OptionsPricerPanel) -> dict[str, Any]:
    with qtbot.waitSignal(p.sig_priced, timeout=30_000) as blocker:
        p.recalculate_now()
    res: dict[str, Any] = blocker.args[0]
    return res


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def test_black76_price_matches_engine_and_hand_formula(
    qtbot: QtBot, panel: OptionsPricerPanel
) -> None:
    _set(panel, F=74.0, K=75.0, days=91, vol=35.0, rate=3.0, quantity="1,000")
    res = _price(qtbot, panel)
    T = 91 / 365
    expected = black76(74.0, 75.0, T, 0.03, 0.35, True)
    assert res["price"] == pytest.approx(expected, rel=1e-12)
    # Independent closed form: D * (F N(d1) - K N(d2)).
    s = 0.35 * math.sqrt(T)
    d1 = (math.log(74.0 / 75.0) + 0.5 * s * s) / s
    hand = math.exp(-0.03 * T) * (74.0 * _ncdf(d1) - 75.0 * _ncdf(d1 - s))
    assert res["price"] == pytest.approx(hand, rel=1e-9)
    assert panel.out["price"].text() == f"{expected:,.4f} USD"
    assert panel.out["value"].text() == f"{expected * 1000:,.2f} USD"
    assert not panel.message.isVisible()


def test_typing_into_the_forward_reprices_after_the_debounce(
    qtbot: QtBot, panel: OptionsPricerPanel
) -> None:
    _set(panel, F=74.0, K=75.0, days=91, vol=35.0)
    _price(qtbot, panel)
    panel.forward.lineEdit().selectAll()
    with qtbot.waitSignal(panel.sig_priced, timeout=30_000) as blocker:
        qtbot.keyClicks(panel.forward.lineEdit(), "80")
        qtbot.keyClick(panel.forward.lineEdit(), Qt.Key.Key_Return)
    assert blocker.args[0]["inputs"].F == 80.0
    assert blocker.args[0]["price"] == pytest.approx(
        black76(80.0, 75.0, 91 / 365, 0.03, 0.35, True)
    )


def test_greeks_match_black76_greeks_in_documented_units(
    qtbot: QtBot, panel: OptionsPricerPanel
) -> None:
    _set(panel, call=False, F=33.5, K=30.0, days=200, vol=55.0, rate=2.0, product="NG-TTF")
    res = _price(qtbot, panel)
    g = black76_greeks(33.5, 30.0, 200 / 365, 0.02, 0.55, False)
    expected = {
        "delta": g.delta,
        "gamma": g.gamma,
        "vega": g.vega / 100,  # per vol point
        "theta": g.theta / 365,  # per calendar day
        "rho": g.rho / 100,  # per 1 % of rate
    }
    for k, v in expected.items():
        assert res["greeks"][k] == pytest.approx(v, rel=1e-12), k
    assert panel.out["delta"].text() == f"{g.delta:,.4f}"
    assert panel.out["vega"].text() == f"{g.vega / 100:,.4f}"
    assert panel.out["theta"].text() == f"{g.theta / 365:,.5f}"
    assert panel.out["rho"].text() == f"{g.rho / 100:,.5f}"
    assert "per 1 vol point" in panel.out_caption["vega"].text()
    assert "per day" in panel.out_caption["theta"].text()


def test_premium_gives_the_implied_vol_back(qtbot: QtBot, panel: OptionsPricerPanel) -> None:
    T = 91 / 365
    premium = black76(74.0, 70.0, T, 0.03, 0.4237, True)
    _set(panel, F=74.0, K=70.0, vol=25.0, premium=f"{premium:.12f}")
    res = _price(qtbot, panel)
    assert res["implied_vol"] == pytest.approx(0.4237, abs=1e-9)
    assert panel.out["implied"].text() == "42.37 %"
    # Below intrinsic: NaN with the reason shown, not a crash.
    panel.premium_in.setText("1")
    res = _price(qtbot, panel)
    assert math.isnan(res["implied_vol"])
    assert "below intrinsic" in panel.out["implied"].text()


def test_american_and_asian_price_with_their_engines(
    qtbot: QtBot, panel: OptionsPricerPanel
) -> None:
    T = 120 / 365
    _set(panel, model=MODEL_AMERICAN, call=False, F=74.0, K=80.0, days=120, vol=30.0)
    res = _price(qtbot, panel)
    ref = american_black76(74.0, 80.0, T, 0.03, 0.3, False, 401, richardson=True)
    assert res["price"] == pytest.approx(ref)
    euro = black76_greeks(74.0, 80.0, T, 0.03, 0.3, False)
    assert res["greeks"]["delta"] == pytest.approx(euro.delta, abs=0.05)  # bump-and-reprice
    assert res["greeks"]["vega"] == pytest.approx(euro.vega / 100, rel=0.1)
    # American implied vol from a premium (vectorised bracketing on the tree).
    prem = american_black76(74.0, 80.0, T, 0.03, 0.33, False, 401, richardson=True)
    panel.premium_in.setText(f"{prem:.10f}")
    assert _price(qtbot, panel)["implied_vol"] == pytest.approx(0.33, abs=1e-4)

    panel.premium_in.setText("")
    panel.model.setCurrentText(MODEL_ASIAN)
    panel.vol.setValue(30.0)
    res = _price(qtbot, panel)
    expected = asian_turnbull_wakeman(74.0, 80.0, T, 0.03, 0.3, False, T - 1 / 12, 21)
    assert res["price"] == pytest.approx(expected, rel=1e-12)
    assert res["greeks"]["delta"] < 0


def test_bachelier_prices_a_negative_forward(qtbot: QtBot, panel: OptionsPricerPanel) -> None:
    _set(panel, product="CR-WTI", model=MODEL_BACHELIER)
    panel.forward.setValue(-37.63)
    panel.strike.setValue(-30.0)
    panel.vol.setValue(25.0)  # normal vol in USD/bbl per sqrt(year)
    res = _price(qtbot, panel)
    assert res["price"] == pytest.approx(bachelier(-37.63, -30.0, 91 / 365, 0.03, 25.0, True))
    assert res["price"] > 0
    assert not panel.message.isVisible()
    assert "1.00 of normal vol" in panel.out_caption["vega"].text()
    assert res["chart_x"].min() < -37.63 < res["chart_x"].max()


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"F": -5.0}, "forward must be > 0"),
        ({"days": -3}, "in the past"),
        ({"vol": 0.0}, "volatility must be positive"),
        ({"quantity": "abc"}, "not a number"),
    ],
)
def test_invalid_input_shows_red_message(
    qtbot: QtBot, panel: OptionsPricerPanel, change: dict[str, Any], text: str
) -> None:
    _set(panel)
    _price(qtbot, panel)
    _set(panel, **change)
    with qtbot.waitSignal(panel.sig_failed, timeout=30_000) as blocker:
        panel.recalculate_now()
    assert text in blocker.args[0]
    assert panel.message.isVisible()
    assert text in panel.message.text()
    assert "Traceback" not in panel.message.text()
    assert panel.out["price"].text() == "–"
    assert panel.result is None
    # Fixing the input clears the message.
    _set(panel)
    _price(qtbot, panel)
    assert not panel.message.isVisible()


def _add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.month - 1 + n, 12)
    year, month = d.year + y, m + 1
    return dt.date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def test_grid_equals_black76_elementwise(qtbot: QtBot, panel: OptionsPricerPanel) -> None:
    _set(panel, F=74.0, vol=35.0, rate=3.0)
    panel.tabs.setCurrentIndex(1)
    panel.grid_strikes.setText("70, 75, 80")
    panel.grid_months.setText("1, 6")
    with qtbot.waitSignal(panel.sig_grid_priced, timeout=30_000):
        panel.price_grid()
    model = panel.grid_model
    assert (model.rowCount(), model.columnCount()) == (3, 2)
    Ts = [(_add_months(_today(), m) - _today()).days / 365 for m in (1, 6)]
    for i, K in enumerate((70.0, 75.0, 80.0)):
        for j, T in enumerate(Ts):
            expected = black76(74.0, K, T, 0.03, 0.35, True)
            assert model.data(model.index(i, j), Qt.ItemDataRole.UserRole) == pytest.approx(
                expected, rel=1e-12
            )
            assert model.data(model.index(i, j), Qt.ItemDataRole.DisplayRole) == f"{expected:,.4f}"
    assert model.headerData(0, Qt.Orientation.Vertical, Qt.ItemDataRole.DisplayRole) == "K 70"
    assert model.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole).startswith(
        "6M"
    )
    assert parse_strikes("60..80 step 10") == [60.0, 70.0, 80.0]
    panel.grid_strikes.setText("a, b")
    panel.price_grid()
    assert panel.grid_message.isVisible()


@pytest.mark.parametrize(
    ("model", "style"),
    [
        (MODEL_BLACK, ExerciseStyle.EUROPEAN),
        (MODEL_AMERICAN, ExerciseStyle.AMERICAN),
        (MODEL_ASIAN, ExerciseStyle.ASIAN),
    ],
)
def test_make_ticket_prefills_and_books_an_option(
    qtbot: QtBot,
    panel: OptionsPricerPanel,
    env: tuple[TradingService, JobRunner],
    model: str,
    style: ExerciseStyle,
) -> None:
    trading, _ = env
    _set(panel, model=model, call=False, F=74.0, K=72.0, days=40, vol=30.0)
    res = _price(qtbot, panel)
    dlg = panel.make_ticket()
    qtbot.addWidget(dlg)
    expiry = _today() + dt.timedelta(days=40)
    start = (expiry.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    assert dlg.instrument.currentText() == InstrumentType.OPTION.label
    assert dlg.product.currentText() == "CR-BRENT"
    assert dlg.option_type.currentText() == OptionType.PUT.label
    assert dlg.strike.text() == "72"
    assert dlg.exercise_style.currentText() == style.label
    assert dlg.premium.text() == f"{res['price']:.4f}"
    assert dlg.expiry_date.date() == QDate(expiry.year, expiry.month, expiry.day)
    assert dlg.delivery_start.date() == QDate(start.year, start.month, start.day)
    assert dlg.delivery_end.date() == QDate(end.year, end.month, end.day)

    dlg.counterparty.setCurrentText("Meridian Gas Supply Ltd")
    dlg.quantity.setText("5000")
    assert trading.validate(dlg.raw()).ok, trading.validate(dlg.raw()).errors
    before = trading.repo.count_current()
    dlg.submit()
    assert trading.repo.count_current() == before + 1
    saved = dlg.saved
    assert saved is not None
    assert saved.instrument is InstrumentType.OPTION
    assert saved.exercise_style is style
    assert float(saved.premium or 0) == pytest.approx(round(res["price"], 4))


def test_book_button_emits_the_booked_trade(
    qtbot: QtBot,
    panel: OptionsPricerPanel,
    env: tuple[TradingService, JobRunner],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trading, _ = env
    _set(panel, quantity="2500")
    _price(qtbot, panel)

    def fake_exec(dlg: TicketDialog) -> int:  # the user picks a counterparty and books
        dlg.counterparty.setCurrentText("Atlantic Refining Corp")
        dlg.submit()
        return int(dlg.result())

    monkeypatch.setattr(TicketDialog, "exec", fake_exec)
    with qtbot.waitSignal(panel.sig_booked, timeout=5_000) as blocker:
        panel.book_button.click()
    rec = blocker.args[0]
    assert rec.quantity == 2500
    assert trading.repo.get(rec.trade_uuid).instrument is InstrumentType.OPTION


def test_charts_are_filled(qtbot: QtBot, panel: OptionsPricerPanel) -> None:
    _set(panel, premium="4")
    _price(qtbot, panel)
    x, y = panel.today_curve.getData()
    assert len(x) == 121 and np.all(np.isfinite(y))
    assert x.min() == pytest.approx(37.0) and x.max() == pytest.approx(111.0)
    assert panel.f_line.value() == pytest.approx(74.0)
    kx, vy = panel.smile_curve.getData()
    assert len(kx) == 61 and np.allclose(vy, 35.0)  # typed vol: flat
    assert len(panel.smile_point.getData()[0]) == 1


def test_forward_live_from_curve_follows_updates_and_says_when_unavailable(
    qtbot: QtBot, env: tuple[TradingService, JobRunner]
) -> None:
    trading, runner = env
    state = MarketState()
    state.update_status(state=ms.CONNECTED)
    today = dt.date.today()
    first = np.datetime64(today, "M") + 1
    prices = [30.0 + k for k in range(24)]  # month k after today's month -> 30 + k
    state.apply_curve(CurveUpdate("NG-TTF", str(first), prices, 1, True, None))
    p = OptionsPricerPanel(runner, trading, market=state)
    qtbot.addWidget(p)
    p.show()
    p.product.setCurrentText("NG-TTF")
    assert p.fwd_source.currentText() == "Live curve" and p.forward.isReadOnly()
    # Expiry in month +2 -> the option is on month +3, i.e. curve index 2: 32.0 (brute force).
    expiry = _add_months(today.replace(day=1), 2).replace(day=10)
    p.expiry.setDate(qdate(expiry))
    assert p.forward.value() == pytest.approx(prices[2])
    assert "Live: NG-TTF" in p.fwd_note.text() and "STALE" not in p.fwd_note.text()
    # A block update of that month moves the forward when the bridge reports the curve.
    state.apply_curve(CurveUpdate("NG-TTF", str(first + 2), [41.5], 2, False, None))
    p.on_curves({"NG-TTF"})
    assert p.forward.value() == pytest.approx(41.5)
    state.update_status(state=ms.RECONNECTING)
    p.on_curves({"NG-TTF"})
    assert "STALE" in p.fwd_note.text()
    # Beyond the curve: the typed forward is kept, editable, and the note says why.
    p.expiry.setDate(qdate(_add_months(today, 40)))
    assert not p.forward.isReadOnly() and "does not cover" in p.fwd_note.text()
    # No curve at all for another product.
    p.product.setCurrentText("CR-BRENT")
    assert "No live curve for CR-BRENT" in p.fwd_note.text()
    # Typed mode never overwrites what the user entered.
    p.product.setCurrentText("NG-TTF")
    p.fwd_source.setCurrentText("Typed")
    p.expiry.setDate(qdate(expiry))
    p.forward.setValue(12.34)
    p.on_curves({"NG-TTF"})
    assert p.forward.value() == pytest.approx(12.34) and not p.forward.isReadOnly()


def _smiles_from_shifted_model(
    today: dt.date, F: float, sigma: float, shift: float
) -> list[VolSmile]:
    """Quotes of a displaced-diffusion market (closed form) for 6 monthly expiries."""
    out = []
    for m in range(1, 7):
        expiry = _add_months(today, m)
        T = (expiry - today).days / 365.0
        strikes = F * np.exp(np.linspace(-2, 2, 9) * sigma * math.sqrt(T))
        vols = shifted_lognormal_black_vols(F, strikes, T, sigma, shift)
        contract = _add_months(today, m + 1)
        out.append(
            VolSmile(
                f"{contract:%Y-%m}",
                expiry.isoformat(),
                F,
                tuple(float(k) for k in strikes),
                tuple(float(v) for v in vols),
            )
        )
    return out


def test_vol_from_the_fitted_surface_prices_like_the_quoted_market(
    qtbot: QtBot, env: tuple[TradingService, JobRunner]
) -> None:
    trading, runner = env
    today = dt.date.today()
    F, sigma, shift = 80.0, 0.45, 40.0  # a power-like skew: displaced diffusion
    state = MarketState()
    state.update_status(state=ms.CONNECTED)
    state.apply_vols(
        VolUpdate("PWR-DE-BASE", 1, _smiles_from_shifted_model(today, F, sigma, shift))
    )
    p = OptionsPricerPanel(runner, trading, market=state)
    qtbot.addWidget(p)
    p.show()
    p.product.setCurrentText("PWR-DE-BASE")
    p.fwd_source.setCurrentText("Typed")
    p.forward.setValue(F)
    assert p.vol_source.currentText() == "Surface"
    expiry = _add_months(today, 3) + dt.timedelta(days=9)  # between quoted expiries
    p.expiry.setDate(qdate(expiry))
    for K in (60.0, 80.0, 104.0):
        p.strike.setValue(K)
        with qtbot.waitSignal(p.sig_priced, timeout=20_000) as blocker:
            p.recalculate_now()
        res = blocker.args[0]
        T = (expiry - today).days / 365.0
        # Independent reference: the displaced-diffusion price in closed form.
        ref = black76(F + shift, K + shift, T, 0.03, sigma, True)
        assert res["price"] == pytest.approx(ref, rel=2e-3), K
        assert p.vol.isReadOnly() and "Surface:" in p.vol_note.text()
        assert p.vol.value() == pytest.approx(res["surface_vol"] * 100, abs=1e-3)
    # The smile chart shows a downward skew and the quotes of the nearest expiry.
    _xs, ys = p.smile_curve.getData()
    assert ys[0] > ys[-1]
    qx, _qy = p.smile_quotes.getData()
    assert qx is not None and len(qx) == 9
    # Normal model: the surface does not apply, the typed vol is used and said so.
    p.model.setCurrentText(MODEL_BACHELIER)
    with qtbot.waitSignal(p.sig_priced, timeout=20_000):
        p.recalculate_now()
    assert "typed" in p.vol_note.text() and not p.vol.isReadOnly()
    # No surface for a product: typed vol with a note.
    p.model.setCurrentText(MODEL_BLACK)
    p.product.setCurrentText("CR-BRENT")
    with qtbot.waitSignal(p.sig_priced, timeout=20_000):
        p.recalculate_now()
    assert "No vol surface for CR-BRENT" in p.vol_note.text()
