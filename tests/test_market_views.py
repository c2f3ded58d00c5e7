"""Market-data panels fed from a hand-filled MarketState: bridge, Market Watch, curves, history."""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QGuiApplication
from pytestqt.qtbot import QtBot

from app.feed.instruments import build_instruments, curve_months
from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, Tick
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.enums import Commodity
from app.views.curve_panel import WAITING, ForwardCurvePanel, month_edges
from app.views.jobs import JobRunner
from app.views.market_bridge import MarketBridge
from app.views.market_watch import (
    C_ASK,
    C_BID,
    C_CHG,
    C_LAST,
    C_PCT,
    C_SPARK,
    C_TIME,
    ID_ROLE,
    SPARK_EVERY,
    SPARK_ROLE,
    AddInstrumentsDialog,
    MarketWatchPanel,
    WatchLists,
    price_decimals,
)
from app.views.price_history import PriceHistoryDialog

Market = tuple[MarketState, MarketBridge]
AS_OF = dt.date(2026, 11, 24)
TS0 = int(dt.datetime(2026, 11, 24, 14, 30, 5).timestamp() * 1e9)
SETTLE_DAY = "2026-11-23"
NEGATIVE = {"PWR-DE-BASE:SPOT": -36.98, "PWR-DE-PEAK:SPOT": -12.4, "PWR-PJMW-OFFPK:SPOT": -3.15}


def _shape(product: str, month: int) -> float:
    """Winter premium for power and gas, flat otherwise."""
    spec = PRODUCT_BY_CODE[product]
    if spec.commodity in (Commodity.POWER, Commodity.NATURAL_GAS):
        return 1.0 + 0.18 * math.cos(2 * math.pi * (month - 1) / 12)
    return 1.0


def fill_market(state: MarketState, seed: int = 7) -> None:
    """Realistic quotes and curves for the 12 catalogue products (a few negative power spots)."""
    rng = np.random.default_rng(seed)
    insts = build_instruments(AS_OF)
    settles, trades = [], []
    for i in insts:
        lvl = PRODUCT_BY_CODE[i.product].typical_level
        settle = lvl * _shape(i.product, i.start.month) * (1 + rng.normal(0, 0.02))
        last = NEGATIVE.get(i.id, settle * (1 + rng.normal(0, 0.012)))
        half = max(0.0005 * lvl, 0.0001)
        settles.append(Tick(i.id, None, None, settle, 0, TS0 - 86_400 * 10**9, kind="settle"))
        trades.append(
            Tick(
                i.id, last - half, last + half, last, 5, TS0 + int(rng.integers(0, 900_000_000_000))
            )
        )
    state.apply_ticks(settles)
    state.apply_ticks(trades)
    for spec in PRODUCT_SPECS:
        start, n = curve_months(AS_OF, [i for i in insts if i.product == spec.code])
        first = np.datetime64(start, "M")
        months = (first + np.arange(n)).astype(object)
        base = np.array([spec.typical_level * _shape(spec.code, m.month) for m in months])
        base *= 1 + 0.002 * np.arange(n)  # mild contango
        state.apply_curve(CurveUpdate(spec.code, start, base.tolist(), TS0, settle=SETTLE_DAY))
        live = base * (1 + rng.normal(0.004, 0.006, n))
        state.apply_curve(CurveUpdate(spec.code, start, live.tolist(), TS0))
    state.update_status(state="connected", last_tick=time.time())


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "workstation.ini"


@pytest.fixture
def market() -> Iterator[tuple[MarketState, MarketBridge]]:
    state = MarketState()
    fill_market(state)
    bridge = MarketBridge(state)
    yield state, bridge
    bridge.stop()


def _panel(qtbot: QtBot, state: MarketState, bridge: MarketBridge, path: Path) -> MarketWatchPanel:
    settings = QSettings(str(path), QSettings.Format.IniFormat)
    panel = MarketWatchPanel(state, bridge, settings, as_of=AS_OF)
    qtbot.addWidget(panel)
    panel.resize(820, 600)
    bridge.refresh()  # the panel read the state when built: clear the backlog
    return panel


def _text(panel: MarketWatchPanel, instrument: str, col: int) -> str:
    return panel.model.text(panel.model.row_of(instrument), col)


# -- bridge ------------------------------------------------------------------------------------


def test_bridge_emits_changes_once_and_status(qtbot: QtBot) -> None:
    state = MarketState()
    bridge = MarketBridge(state, hz=20)
    got: dict[str, list[object]] = {"q": [], "c": [], "s": [], "st": []}
    bridge.sig_quotes.connect(got["q"].append)
    bridge.sig_curves.connect(got["c"].append)
    bridge.sig_settlements.connect(got["s"].append)
    bridge.sig_status.connect(got["st"].append)
    state.apply_ticks([Tick("NG-TTF:2027-01", 33.0, 33.1, 33.05, 1, TS0)] * 3)
    state.apply_curve(CurveUpdate("NG-TTF", "2026-12", [33.0, 34.0], TS0, settle=SETTLE_DAY))
    bridge.refresh()
    bridge.refresh()  # nothing new: no quote/curve signals
    assert got["q"] == [{"NG-TTF:2027-01"}]
    assert got["c"] == [{"NG-TTF"}] and got["s"] == [{"NG-TTF"}]
    assert len(got["st"]) == 1  # first status; the second frame is within STATUS_PERIOD
    state.update_status(state="connected")
    bridge.refresh()
    assert got["st"][-1].state == "connected"  # type: ignore[attr-defined]
    bridge.start()
    assert bridge.active
    with qtbot.waitSignal(bridge.sig_status, timeout=2000):
        pass  # re-emitted periodically so the tick age stays truthful
    bridge.stop()
    assert not bridge.active
    with pytest.raises(ValueError, match="hz"):
        MarketBridge(state, hz=0)


# -- Market Watch ------------------------------------------------------------------------------


def test_model_passes_qt_model_tester(
    qtbot: QtBot, qtmodeltester: Any, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    qtmodeltester.check(panel.model)
    panel.switch_to("All")
    qtmodeltester.check(panel.model)


def test_default_list_is_spot_plus_three_front_months(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    ids = panel.model.instrument_ids
    assert len(ids) == 12 * 4
    assert {"NG-TTF:SPOT", "NG-TTF:2026-12", "NG-TTF:2027-01", "NG-TTF:2027-02"} <= set(ids)
    assert "NG-TTF:2027-03" not in ids
    headers = list(panel.model.header_rows().values())
    assert headers == ["Power", "Natural gas", "Crude oil", "Refined products"]
    for row in panel.model.header_rows():
        assert panel.view.columnSpan(row, 0) == panel.model.columnCount()


def test_ticks_appear_with_quote_values(qtbot: QtBot, market: Market, settings_path: Path) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    inst = "NG-TTF:2027-01"
    state.apply_ticks([Tick(inst, 34.115, 34.135, 34.125, 10, TS0 + 60 * 10**9)])
    bridge.refresh()
    q = state.quote(inst)
    assert q is not None and q.last is not None and q.change is not None
    assert _text(panel, inst, C_LAST) == f"{q.last:,.2f}"
    assert _text(panel, inst, C_BID) == f"{q.bid:,.2f}"
    assert _text(panel, inst, C_ASK) == f"{q.ask:,.2f}"
    assert _text(panel, inst, C_CHG) == f"{q.change:+,.2f}"
    assert _text(panel, inst, C_PCT) == f"{q.change_pct:+.2f}"
    local = dt.datetime.fromtimestamp((TS0 + 60 * 10**9) / 1e9).strftime("%H:%M:%S")
    assert _text(panel, inst, C_TIME) == local
    row = panel.model.row_of(inst)
    assert panel.model.index(row, 0).data(ID_ROLE) == inst
    right = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    assert panel.model.index(row, C_LAST).data(Qt.ItemDataRole.TextAlignmentRole) == right


def test_decimals_per_price_level(qtbot: QtBot, market: Market, settings_path: Path) -> None:
    assert price_decimals("NG-TTF") == 2 and price_decimals("CR-BRENT") == 2
    assert price_decimals("NG-HH") == 3
    assert price_decimals("NG-NBP") == 4 and price_decimals("RP-ULSD-NYH") == 4
    assert price_decimals("UNKNOWN", 1234.5) == 2
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    state.apply_ticks([Tick("NG-HH:2027-01", 3.41, 3.42, 3.4155, 1, TS0),
                       Tick("NG-NBP:2027-01", 0.8412, 0.8416, 0.84137, 1, TS0)])  # fmt: skip
    bridge.refresh()
    assert _text(panel, "NG-HH:2027-01", C_LAST) == "3.416"  # 3.4155 -> binary rounding
    assert _text(panel, "NG-NBP:2027-01", C_LAST) == "0.8414"


def test_negative_price_shown_with_minus(qtbot: QtBot, market: Market, settings_path: Path) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    assert _text(panel, "PWR-DE-BASE:SPOT", C_LAST) == "-36.98"
    state.apply_ticks([Tick("PWR-DE-BASE:2026-12", -5.01, -4.99, -5.0, 1, TS0)])
    bridge.refresh()
    assert _text(panel, "PWR-DE-BASE:2026-12", C_LAST) == "-5.00"
    assert _text(panel, "PWR-DE-BASE:2026-12", C_CHG).startswith("-")


def test_ten_thousand_ticks_coalesce_into_one_refresh(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    ids = panel.model.instrument_ids
    changes: list[tuple[int, int, int, int]] = []
    panel.model.dataChanged.connect(
        lambda a, b, _r=None: changes.append((a.row(), b.row(), a.column(), b.column()))
    )
    # One dataChanged per frame for the price columns; the sparkline column has its own, every
    # SPARK_EVERY-th frame.
    emitted = [(r0, r1) for r0, r1, c0, c1 in changes if c0 <= C_LAST <= c1]
    resets: list[int] = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    quotes: list[object] = []
    bridge.sig_quotes.connect(quotes.append)
    final: dict[str, float] = {}
    for k in range(10_000):
        inst = ids[k % len(ids)]
        price = 50.0 + (k % 997) * 0.01
        final[inst] = price
        state.apply_ticks([Tick(inst, price - 0.01, price + 0.01, price, 1, TS0 + k)])
    bridge.refresh()
    emitted = [(r0, r1) for r0, r1, c0, c1 in changes if c0 <= C_LAST <= c1]
    assert len(quotes) == 1 and quotes[0] == set(ids)
    assert len(emitted) == 1 and not resets
    top, bottom = emitted[0]
    assert top <= min(map(panel.model.row_of, ids)) and bottom >= max(map(panel.model.row_of, ids))
    for inst, price in final.items():
        d = price_decimals(inst.split(":")[0])
        assert _text(panel, inst, C_LAST) == f"{price:,.{d}f}"
    bridge.refresh()  # quiet frame: only the fading rows repaint, still one signal at most
    emitted = [(r0, r1) for r0, r1, c0, c1 in changes if c0 <= C_LAST <= c1]
    assert len(emitted) <= 2
    for _ in range(SPARK_EVERY):
        bridge.refresh()
    spark = [(r0, r1) for r0, r1, c0, c1 in changes if c0 == C_SPARK]
    assert spark and spark[-1][0] <= min(map(panel.model.row_of, ids))  # trend lines caught up


def test_stale_marking_follows_feed_status(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    idx = panel.model.index(panel.model.row_of("NG-TTF:2027-01"), C_LAST)

    def marked() -> bool:
        font = idx.data(Qt.ItemDataRole.FontRole)
        tip = idx.data(Qt.ItemDataRole.ToolTipRole) or ""
        fg = idx.data(Qt.ItemDataRole.ForegroundRole)
        return (
            isinstance(font, QFont)
            and font.italic()
            and "stale" in tip
            and isinstance(fg, QColor)
            and fg.name() == "#8a8a8a"
        )

    assert not marked()
    state.update_status(state="reconnecting")
    bridge.refresh()
    assert marked()
    assert "reconnecting" in panel.status_label.text()
    state.update_status(state="connected")
    bridge.refresh()
    assert not marked()
    state.set_stale(["NG-TTF"])  # one stream stale, connection fine
    bridge.refresh()
    assert marked()
    other = panel.model.index(panel.model.row_of("NG-HH:2027-01"), C_LAST)
    assert not (other.data(Qt.ItemDataRole.ToolTipRole) or "").startswith("stale")


def test_flash_fades_and_sparkline_collects_samples(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    inst = "CR-BRENT:2027-01"
    row = panel.model.row_of(inst)
    for k in range(70):
        state.apply_ticks([Tick(inst, None, None, 70.0 + k * 0.1, 1, TS0 + k)])
        bridge.refresh()
    bg = panel.model.index(row, C_LAST).data(Qt.ItemDataRole.BackgroundRole)
    assert isinstance(bg, QColor) and bg.green() > bg.red() and bg.alpha() > 0  # up: green
    spark = panel.model.index(row, C_SPARK).data(SPARK_ROLE)
    assert len(spark) == 60 and spark[-1] == pytest.approx(76.9) and spark[0] == pytest.approx(71.0)
    state.apply_ticks([Tick(inst, None, None, 60.0, 1, TS0 + 99)])
    bridge.refresh()
    bg = panel.model.index(row, C_LAST).data(Qt.ItemDataRole.BackgroundRole)
    assert bg.red() > bg.green()  # down: red
    panel.model.on_frame(time.monotonic() + 1.5)
    assert panel.model.index(row, C_LAST).data(Qt.ItemDataRole.BackgroundRole) is None
    panel.grab()  # the delegate paints without error


def test_watch_lists_persist_across_panels(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    assert panel.lists.names() == ["Front months", "All"]
    panel.save_list_as("Gas 2027")
    assert panel.list_box.currentText() == "Gas 2027"
    panel.lists.set_entries("Gas 2027", [])
    panel.reload_list()
    assert panel.model.instrument_ids == []
    panel.add_to_list(["NG-*:2027-*"])
    gas = panel.model.instrument_ids
    assert gas and all(i.startswith("NG-") and ":2027-" in i for i in gas)
    assert "NG-TTF:2027-Q1" in gas and "NG-TTF:2027-SUM" in gas
    panel.add_to_list(["CR-BRENT:SPOT"])
    panel.remove_from_list(["NG-HH:2027-03", "CR-BRENT:SPOT"])
    kept = set(panel.model.instrument_ids)
    assert "NG-HH:2027-03" not in kept and "CR-BRENT:SPOT" not in kept
    panel.rename_list("Gas cal-27")
    panel.new_list("Scratch")
    panel.delete_list()
    assert "Scratch" not in panel.lists.names() and panel.lists.current == "Front months"
    panel.switch_to("Gas cal-27")

    again = _panel(qtbot, state, bridge, settings_path)
    assert again.lists.names() == ["Front months", "All", "Gas cal-27"]
    assert again.list_box.currentText() == "Gas cal-27"
    assert set(again.model.instrument_ids) == kept
    with pytest.raises(ValueError):
        WatchLists(QSettings(str(settings_path), QSettings.Format.IniFormat)).check_name("a/b")


def test_new_feed_instrument_joins_a_pattern_list(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    panel.switch_to("All")
    n = len(panel.model.instrument_ids)
    state.apply_ticks([Tick("NG-TTF:2031-CAL", 25.0, 25.2, 25.1, 1, TS0)])
    bridge.refresh()
    assert len(panel.model.instrument_ids) == n + 1
    assert _text(panel, "NG-TTF:2031-CAL", C_LAST) == "25.10"


def test_double_click_opens_price_history(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
    calls: list[str] = []

    def loader(inst: str) -> tuple[np.ndarray, np.ndarray]:
        calls.append(inst)
        return np.array([TS0, TS0 + 10**9], dtype=np.int64), np.array([1.0, 2.0])

    panel = MarketWatchPanel(state, bridge, settings, history_loader=loader, as_of=AS_OF)
    qtbot.addWidget(panel)
    panel.resize(820, 400)
    panel.show()
    row = panel.model.row_of("NG-TTF:2027-01")
    panel.view.scrollTo(panel.model.index(row, 0))
    rect = panel.view.visualRect(panel.model.index(row, 0))
    qtbot.mouseClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.selected_instruments() == ["NG-TTF:2027-01"]
    with qtbot.waitSignal(panel.sig_open_history) as blocker:
        qtbot.mouseDClick(panel.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert blocker.args == ["NG-TTF:2027-01"] and calls == ["NG-TTF:2027-01"]
    dialogs = panel.findChildren(PriceHistoryDialog)
    assert dialogs and dialogs[0].points == 2
    dlg = dialogs[0]
    assert dlg.isVisible() and not dlg.isModal()
    dlg.close()
    assert dlg.points == 0  # closed: data freed
    panel.open_history("NG-TTF:2027-01")  # reopened: the same chart, reloaded
    assert panel.findChildren(PriceHistoryDialog) == [dlg] and dlg.isVisible()
    assert dlg.points == 2 and calls == ["NG-TTF:2027-01"] * 2
    dlg.close()


def test_context_menu_add_dialog_and_copy(
    qtbot: QtBot, market: Market, settings_path: Path
) -> None:
    state, bridge = market
    panel = _panel(qtbot, state, bridge, settings_path)
    menu = panel.build_menu(["NG-TTF:2027-01"])
    actions = {a.text(): a for a in menu.actions() if a.text()}
    assert list(actions) == ["Price history…", "Show curve", "Add instruments…",
                             "Remove from 'Front months'", "Copy"]  # fmt: skip
    with qtbot.waitSignal(panel.sig_show_curve) as blocker:
        actions["Show curve"].trigger()
    assert blocker.args == ["NG-TTF"]
    actions["Remove from 'Front months'"].trigger()
    assert "NG-TTF:2027-01" not in panel.model.instrument_ids
    assert not panel.build_menu([]).actions()[0].isEnabled()

    dlg = AddInstrumentsDialog(sorted(panel.universe()), panel)
    qtbot.addWidget(dlg)
    qtbot.keyClicks(dlg.pattern, "CR-WTI:2027-*")
    assert dlg.items.count() == 17 and "17 of" in dlg.count.text()  # 12 months, 4 Q, Cal
    dlg.items.item(0).setSelected(True)
    dlg.add_selected.click()
    assert dlg.chosen() == ["CR-WTI:2027-01"]
    dlg2 = AddInstrumentsDialog(sorted(panel.universe()), panel)
    qtbot.addWidget(dlg2)
    qtbot.keyClicks(dlg2.pattern, "NBP")
    dlg2.add_pattern.click()
    assert dlg2.chosen() == ["*NBP*"]

    row = panel.model.row_of("NG-HH:2027-01")
    panel.view.selectRow(row)
    panel.copy_selection()
    text = QGuiApplication.clipboard().text().splitlines()
    assert text[0].startswith("Instrument\tProduct\tLast") and text[1].startswith("Jan-27\tNG-HH\t")


# -- Forward Curve -----------------------------------------------------------------------------


def test_curve_panel_plots_live_and_settlement_in_place(qtbot: QtBot) -> None:
    state = MarketState()
    bridge = MarketBridge(state)
    panel = ForwardCurvePanel(state, bridge)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.stack.currentWidget() is panel.empty and panel.empty.text() == WAITING
    assert not panel.show_past.isEnabled() and "history" in panel.show_past.toolTip()
    panel.set_products(["NG-TTF"])
    state.apply_curve(CurveUpdate("NG-TTF", "2026-12", [35.0, 36.0, 34.0], TS0, settle=SETTLE_DAY))
    state.apply_curve(CurveUpdate("NG-TTF", "2026-12", [35.5, 36.5, 33.0], TS0))
    state.update_status(state="connected")
    bridge.refresh()
    assert panel.stack.currentIndex() == 1  # the plot
    live, settle = panel.item_for("NG-TTF"), panel.item_for("NG-TTF", "settle")
    x, y = live.getData()
    np.testing.assert_allclose(y, [35.5, 36.5, 33.0])
    np.testing.assert_allclose(settle.getData()[1], [35.0, 36.0, 34.0])
    assert len(x) == 4 and x[0] == month_edges(np.array(["2026-12"], "datetime64[M]"))[0]
    assert settle.opts["pen"].style() == Qt.PenStyle.DashLine
    assert "EUR/MWh" in panel.plot.getPlotItem().getAxis("left").labelText
    state.apply_curve(CurveUpdate("NG-TTF", "2027-01", [40.0], TS0 + 1, full=False))
    bridge.refresh()
    assert panel.item_for("NG-TTF") is live  # updated in place
    np.testing.assert_allclose(live.getData()[1], [35.5, 40.0, 33.0])
    text = panel.readout_at(float(month_edges(np.array(["2027-01"], "datetime64[M]"))[0]) + 86400)
    assert "Jan-27" in text and "40.00" in text and "+4.00 vs settle" in text
    vb = panel.plot.getPlotItem().vb  # hover: crosshair + read-out
    vb.setRange(xRange=(x[0], x[-1]), yRange=(30, 40), padding=0)
    panel._mouse_moved((vb.mapViewToScene(QPointF(float(x[1]) + 86400, 36.0)),))
    assert "Jan-27" in panel.readout.text() and panel.vline.isVisible()
    # a second product with other units: its read-out warns
    state.apply_curve(CurveUpdate("CR-BRENT", "2026-12", [74.0, 73.5, 73.0], TS0))
    panel.set_products(["NG-TTF", "CR-BRENT"])
    bridge.refresh()
    assert "USD/bbl, axis is EUR/MWh" in panel.readout_at(x[0] + 86400)
    panel.show_product("CR-BRENT")
    assert panel.selected_products() == ["CR-BRENT"] and list(panel.lines) == ["CR-BRENT"]
    bridge.stop()


def test_curve_panel_past_curve_from_history(qtbot: QtBot) -> None:
    state = MarketState()
    state.apply_curve(CurveUpdate("NG-HH", "2026-12", [3.4, 3.6], TS0))
    bridge = MarketBridge(state)
    asked: list[tuple[str, dt.date]] = []

    def history(product: str, day: dt.date) -> tuple[np.ndarray, np.ndarray] | None:
        asked.append((product, day))
        return np.array(["2026-12", "2027-01"], "datetime64[M]"), np.array([3.0, 3.1])

    panel = ForwardCurvePanel(state, bridge, history_curve=history)
    qtbot.addWidget(panel)
    panel.set_products(["NG-HH"])
    assert panel.show_past.isEnabled()
    panel.show_past.setChecked(True)
    assert asked and asked[-1][0] == "NG-HH"
    past = panel.item_for("NG-HH", "past")
    np.testing.assert_allclose(past.getData()[1], [3.0, 3.1])
    assert past in panel.plot.getPlotItem().items
    panel.show_past.setChecked(False)
    assert past not in panel.plot.getPlotItem().items


# -- price history -----------------------------------------------------------------------------


def _synthetic(n: int) -> tuple[np.ndarray, np.ndarray]:
    ts = TS0 - np.arange(n, dtype=np.int64)[::-1] * 3_600 * 10**9
    return ts, 30 + np.cumsum(np.random.default_rng(1).normal(0, 0.3, n))


def test_price_history_shows_points_and_appends_live(qtbot: QtBot) -> None:
    state = MarketState()
    bridge = MarketBridge(state)
    ts, last = _synthetic(2_000)
    dlg = PriceHistoryDialog("NG-TTF:2027-01", lambda _i: (ts, last), state=state, bridge=bridge)
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.points == 2_000 and dlg.stack.currentIndex() == 1
    x, y = dlg.series()
    np.testing.assert_allclose(y, last)
    np.testing.assert_allclose(dlg.curve.getData()[1], last)  # clipToView: visible is all
    assert "2,000 points" in dlg.info.text()
    state.apply_ticks([Tick("NG-TTF:2027-01", None, None, 41.5, 1, TS0 + 10**9)])
    bridge.refresh()
    assert dlg.points == 2_001 and dlg.series()[1][-1] == 41.5
    dlg.set_range("1W")
    lo, hi = dlg.plot.getPlotItem().vb.viewRange()[0]
    assert hi - lo == pytest.approx(7 * 86_400 * 1.01, rel=0.02)
    assert "41.50" in dlg.readout_at(float(x[-1]) + 100)
    vb = dlg.plot.getPlotItem().vb
    vb.setRange(yRange=(20, 45), padding=0)
    dlg._mouse_moved((vb.mapViewToScene(QPointF(float(dlg.series()[0][-1]) + 3000, 41.0)),))
    assert "41.50 EUR/MWh" in dlg.readout.text()
    dlg.close()  # detached: later ticks are ignored
    state.apply_ticks([Tick("NG-TTF:2027-01", None, None, 42.0, 1, TS0 + 2 * 10**9)])
    bridge.refresh()
    assert dlg.points == 0 and not dlg._live  # freed, and no longer following the feed


def test_price_history_empty_and_runner(qtbot: QtBot) -> None:
    empty = PriceHistoryDialog("NG-NBP:2027-02", lambda _i: (np.zeros(0, np.int64), np.zeros(0)))
    qtbot.addWidget(empty)
    assert empty.stack.currentWidget() is empty.message
    assert empty.message.text().startswith("No history recorded yet for NG-NBP:2027-02.")
    assert not empty.range_buttons["1W"].isEnabled()
    runner = JobRunner(max_threads=1)
    ts, last = _synthetic(500)
    try:
        dlg = PriceHistoryDialog("NG-HH:SPOT", lambda _i: (ts, last), runner=runner)
        qtbot.addWidget(dlg)
        if dlg.points == 0:
            with qtbot.waitSignal(dlg.sig_loaded, timeout=10_000) as blocker:
                pass
            assert blocker.args == [500]
        assert dlg.points == 500

        def boom(_i: str) -> tuple[np.ndarray, np.ndarray]:
            raise OSError("disk gone")

        bad = PriceHistoryDialog("NG-HH:SPOT", boom)
        qtbot.addWidget(bad)
        assert "disk gone" in bad.message.text()
    finally:
        runner.shutdown()


# -- responsiveness ----------------------------------------------------------------------------


def test_gui_stays_responsive_with_5000_ticking_instruments(
    qtbot: QtBot, settings_path: Path
) -> None:
    insts = [i.id for i in build_instruments(AS_OF, months=400, quarters=11)][:5000]
    state = MarketState()
    state.apply_ticks([Tick(i, 49.9, 50.1, 50.0, 1, TS0) for i in insts])
    state.update_status(state="connected")
    bridge = MarketBridge(state, hz=15)
    settings = QSettings(str(settings_path), QSettings.Format.IniFormat)
    settings.setValue("market_watch/current", "All")
    panel = MarketWatchPanel(state, bridge, settings, as_of=AS_OF)
    qtbot.addWidget(panel)
    panel.resize(820, 700)
    panel.show()
    assert len(panel.model.instrument_ids) >= 5000
    rng = np.random.default_rng(3)
    picks = rng.integers(0, len(insts), 100_000)
    prices = 50 + rng.normal(0, 1, 100_000)
    batches = [
        [Tick(insts[j], p - 0.01, p + 0.01, p, 1, TS0 + k) for k, (j, p) in
         enumerate(zip(picks[s : s + 500], prices[s : s + 500], strict=True), start=s)]
        for s in range(0, 100_000, 500)
    ]  # fmt: skip

    def writer() -> None:
        for b in batches:  # 200 batches x 500 ticks, ~10 ms apart: ~50k ticks/s
            state.apply_ticks(b)
            time.sleep(0.01)

    lags: list[float] = []
    last = [time.perf_counter()]

    def beat() -> None:
        now = time.perf_counter()
        lags.append(now - last[0] - 0.010)
        last[0] = now

    heart = QTimer()
    heart.setTimerType(Qt.TimerType.PreciseTimer)
    heart.timeout.connect(beat)
    thread = threading.Thread(target=writer, daemon=True)
    bridge.start()
    heart.start(10)
    t0 = time.perf_counter()
    thread.start()
    try:
        qtbot.waitUntil(lambda: not thread.is_alive(), timeout=30_000)
        qtbot.waitUntil(lambda: panel.model.backlog == 0, timeout=10_000)
    finally:
        heart.stop()
        bridge.stop()
        thread.join(5)
    elapsed = time.perf_counter() - t0
    bridge.refresh()
    max_lag = max(lags)
    print(
        f"\n5000 instruments, 100k ticks in {elapsed:.2f} s: heartbeat max lag "
        f"{max_lag * 1000:.1f} ms, p99 {np.percentile(lags, 99) * 1000:.1f} ms, "
        f"slowest frame {bridge.max_frame_seconds * 1000:.1f} ms over {bridge.frames} frames, "
        f"{panel.model.frames_emitted} dataChanged"
    )
    assert max_lag < 0.100
    final: dict[str, float] = {}
    for j, p in zip(picks, prices, strict=True):
        final[insts[j]] = p
    for inst in list(final)[:50]:
        d = price_decimals(inst.split(":")[0])
        assert _text(panel, inst, C_LAST) == f"{final[inst]:,.{d}f}"
