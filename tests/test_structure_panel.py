"""Structure tab: prices against the engine and closed-form Black-76 legs, inputs, errors, chart."""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QDate
from pytestqt.qtbot import QtBot

from app.engine.options import black76
from app.engine.structured import StructuredProduct, payoff, price
from app.views.jobs import JobRunner
from app.views.structure_panel import (
    CALL_SPREAD,
    COLLAR_CONSUMER,
    COLLAR_PRODUCER,
    PARTICIPATING_SWAP,
    PUT_SPREAD,
    THREE_WAY,
    StructurePanel,
)


def _today() -> dt.date:
    """Today at the time of use (a module constant goes stale when a run crosses midnight)."""
    return dt.date.today()


DAYS = 91
T = DAYS / 365.0
F, VOL, RATE, QTY = 74.0, 0.35, 0.03, 1000.0


@pytest.fixture
def runner() -> Iterator[JobRunner]:
    r = JobRunner()
    yield r
    r.shutdown()


@pytest.fixture
def panel(qtbot: QtBot, runner: JobRunner) -> StructurePanel:
    p = StructurePanel(runner)
    qtbot.addWidget(p)
    p.resize(1200, 760)
    p.show()
    return p


def _set(
    p: StructurePanel,
    structure: str,
    k1: float,
    k2: float = 0.0,
    k3: float = 0.0,
    participation: float = 50.0,
) -> None:
    p.structure.setCurrentText(structure)
    p.forward.setValue(F)
    p.quantity.setValue(QTY)
    d = _today() + dt.timedelta(days=DAYS)
    p.expiry.setDate(QDate(d.year, d.month, d.day))
    p.vol.setValue(VOL * 100)
    p.rate.setValue(RATE * 100)
    p.k1.setValue(k1)
    p.k2.setValue(k2)
    p.k3.setValue(k3)
    p.participation.setValue(participation)


def _price(qtbot: QtBot, p: StructurePanel) -> dict[str, Any]:
    with qtbot.waitSignal(p.sig_priced, timeout=30_000) as blocker:
        p.recalculate_now()
    res: dict[str, Any] = blocker.args[0]
    return res


def _b76(K: float, call: bool) -> float:
    return float(black76(F, K, T, RATE, VOL, call))


# (structure, strikes, engine product, closed-form sum of legs)
CASES = [
    (
        COLLAR_PRODUCER,
        (65.0, 85.0, 0.0, 50.0),
        StructuredProduct.collar(65.0, 85.0, QTY),
        QTY * (_b76(65.0, False) - _b76(85.0, True)),
    ),
    (
        COLLAR_CONSUMER,
        (65.0, 85.0, 0.0, 50.0),
        StructuredProduct.collar(65.0, 85.0, QTY, producer=False),
        QTY * (_b76(85.0, True) - _b76(65.0, False)),
    ),
    (
        THREE_WAY,
        (60.0, 70.0, 85.0, 50.0),
        StructuredProduct.three_way(60.0, 70.0, 85.0, QTY),
        QTY * (_b76(70.0, False) - _b76(60.0, False) - _b76(85.0, True)),
    ),
    (
        CALL_SPREAD,
        (75.0, 85.0, 0.0, 50.0),
        StructuredProduct.call_spread(75.0, 85.0, QTY),
        QTY * (_b76(75.0, True) - _b76(85.0, True)),
    ),
    (
        PUT_SPREAD,
        (65.0, 75.0, 0.0, 50.0),
        StructuredProduct.put_spread(65.0, 75.0, QTY),
        QTY * (_b76(75.0, False) - _b76(65.0, False)),
    ),
    (
        PARTICIPATING_SWAP,
        (76.0, 0.0, 0.0, 40.0),
        StructuredProduct.participating_swap(76.0, 0.4, QTY),
        QTY * (math.exp(-RATE * T) * (F - 76.0) + 0.6 * _b76(76.0, False)),
    ),
]


@pytest.mark.parametrize(("structure", "ks", "product", "closed_form"), CASES,
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_price_matches_engine_and_black76_legs(
    qtbot: QtBot,
    panel: StructurePanel,
    structure: str,
    ks: tuple[float, float, float, float],
    product: StructuredProduct,
    closed_form: float,
) -> None:
    _set(panel, structure, *ks)
    res = _price(qtbot, panel)
    assert res["price"] == pytest.approx(price(product, F, T, RATE, VOL), rel=1e-12)
    assert res["price"] == pytest.approx(closed_form, rel=1e-10, abs=1e-9)
    assert res["price_per_unit"] == pytest.approx(closed_form / QTY, rel=1e-10, abs=1e-12)
    assert sum(leg["value"] for leg in res["legs"]) == pytest.approx(res["price"], abs=1e-8)
    assert panel.legs_table.rowCount() == len(product.legs)
    assert panel.out["price"].text() == f"{res['price']:,.2f}"
    assert not panel.message.isVisible()


def test_greeks_and_breakevens_are_shown(qtbot: QtBot, panel: StructurePanel) -> None:
    _set(panel, CALL_SPREAD, 75.0, 85.0)
    res = _price(qtbot, panel)
    # Zero-premium break-evens of a call spread: payoff 0 on [0, K1], so the end points.
    assert res["breakevens_zero"][-1] == pytest.approx(75.0)
    # Premium paid: K1 + premium per unit (compounded to expiry).
    be = res["price_per_unit"] * math.exp(RATE * T) + 75.0
    assert res["breakevens"] == pytest.approx([be])
    assert panel.out["breakevens"].text() == f"{be:,.2f}"
    assert panel.out["breakevens_zero"].text() == f"{F * 0.5:,.2f}–75.00"  # flat zero run
    assert res["greeks"]["delta"] > 0
    assert panel.out["delta"].text() == format(res["greeks"]["delta"], ",.4f")


def test_switching_type_changes_the_visible_strike_inputs(panel: StructurePanel) -> None:
    def visible() -> list[str]:
        out = []
        for lbl, box in zip(panel.k_labels, (panel.k1, panel.k2, panel.k3), strict=True):
            if box.isVisible():
                assert lbl.isVisible()
                out.append(lbl.text())
        if panel.participation.isVisible():
            out.append("participation")
        return out

    panel.structure.setCurrentText(COLLAR_PRODUCER)
    assert visible() == ["Put strike", "Call strike"]
    panel.structure.setCurrentText(THREE_WAY)
    assert visible() == ["Low put strike", "High put strike", "Call strike"]
    panel.structure.setCurrentText(CALL_SPREAD)
    assert visible() == ["K1 (long call)", "K2 (short call)"]
    panel.structure.setCurrentText(PARTICIPATING_SWAP)
    assert visible() == ["Swap price", "participation"]
    assert panel.strike_inputs() == [panel.k1, panel.participation]


def test_invalid_strikes_show_red_message(qtbot: QtBot, panel: StructurePanel) -> None:
    _set(panel, COLLAR_PRODUCER, 65.0, 85.0)
    _price(qtbot, panel)
    _set(panel, COLLAR_PRODUCER, 90.0, 80.0)  # put strike above the call strike
    with qtbot.waitSignal(panel.sig_failed, timeout=30_000) as blocker:
        panel.recalculate_now()
    assert "K_put must be <= K_call" in blocker.args[0]
    assert panel.message.isVisible()
    assert "Traceback" not in panel.message.text()
    assert "b3261e" in panel.message.styleSheet()
    assert panel.out["price"].text() == "–"
    assert panel.result is None
    assert len(panel.payoff_curve.getData()[0] or []) == 0
    _set(panel, COLLAR_PRODUCER, 65.0, 85.0)
    _price(qtbot, panel)
    assert not panel.message.isVisible()


def test_input_change_reprices_after_the_debounce(qtbot: QtBot, panel: StructurePanel) -> None:
    _set(panel, PUT_SPREAD, 65.0, 75.0)
    _price(qtbot, panel)
    with qtbot.waitSignal(panel.sig_priced, timeout=30_000) as blocker:
        panel.forward.setValue(70.0)
    assert blocker.args[0]["inputs"].F == 70.0


def test_payoff_curve_equals_engine_payoff(qtbot: QtBot, panel: StructurePanel) -> None:
    _set(panel, THREE_WAY, 60.0, 70.0, 85.0)
    res = _price(qtbot, panel)
    x, y = panel.payoff_curve.getData()
    assert x.min() == pytest.approx(F * 0.5) and x.max() == pytest.approx(F * 1.5)
    np.testing.assert_allclose(y, payoff(res["product"], x), rtol=0, atol=1e-9)
    xt, yt = panel.today_curve.getData()
    np.testing.assert_allclose(yt, price(res["product"], xt, T, RATE, VOL), rtol=1e-12)
    assert panel.f_line.value() == pytest.approx(F)
    if os.environ.get("QE_SCREENSHOT"):
        panel.grab().save(os.environ["QE_SCREENSHOT"])
