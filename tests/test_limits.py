"""Limits: repository on SQLite and PostgreSQL, utilisation, transitions, and the Limits tab."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.engine.curves import ForwardCurve
from app.engine.positions import REASON_DELIVERED
from app.feed.history import read_series
from app.feed.replay import bundled_series
from app.models.catalogue import PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.entities import Book, BreachKind, LimitKind
from app.models.limits import (
    MAX_HORIZON_DAYS,
    LimitDraft,
    LimitObservation,
    LimitRepository,
    LimitValidationError,
    StaleLimitError,
    validate_draft,
)
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services import risk as risk_mod
from app.services.limits import LimitService, classify, evaluate_limits, position_deltas
from app.services.positions import PositionReport, PositionService, PositionSnapshot
from app.services.risk import RiskService, risk_inputs
from app.views.jobs import JobRunner
from app.views.limits_panel import LimitsPanel, install_limits_tab
from app.views.risk_panel import RiskPanel, tenor_vols

AS_OF = dt.date(2026, 11, 24)
MONTHS = np.arange(np.datetime64("2026-12"), np.datetime64("2031-01"))
T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def _book(store: Store, name: str = "Power Desk") -> int:
    ensure_reference_data(store)
    with store.session() as s:
        b = Book(name=name, description="", is_demo=False)
        s.add(b)
        s.flush()
        return b.id


def _var(book_id: int, value: Any = "1000000", **kw: Any) -> LimitDraft:
    args: dict[str, Any] = {"currency": "USD", "confidence": 0.99, "horizon_days": 1}
    args.update(kw)
    return LimitDraft(book_id, LimitKind.VAR, value, **args)


# ---------------------------------------------------------------------------- repository


def test_crud_validation_and_optimistic_versions(any_store: Store) -> None:
    repo = LimitRepository(any_store)
    b = _book(any_store)
    var = repo.create(_var(b, "1234567.891", currency="usd"), "alice")
    assert var.currency == "USD" and var.limit_value == Decimal("1234567.891")
    assert var.version == 1 and var.active and var.warning_pct == Decimal(80)
    assert var.created_at.tzinfo is not None and var.title == "Power Desk VaR USD 99% 1d"
    pos = repo.create(LimitDraft(b, "position", 50_000, product="ng-ttf"), "alice")
    assert pos.product == "NG-TTF" and pos.currency is None and pos.scope == "NG-TTF"
    stress = repo.create(LimitDraft(b, "stress", "2e6", currency="EUR", warning_pct="90.5"), "bob")
    assert stress.limit_value == Decimal(2_000_000) and stress.warning_pct == Decimal("90.5")
    assert repo.products()["NG-TTF"] == "MWh" and repo.books() == {b: "Power Desk"}

    bad = {
        "limit_value": _var(b, "1.0001"),  # more places than stored: refused, not rounded
        "currency": _var(b, currency="US"),
        "confidence": _var(b, confidence=1.0),
        "horizon_days": _var(b, horizon_days=MAX_HORIZON_DAYS + 1),
        "product": LimitDraft(b, "position", 10),
    }
    for field, draft in bad.items():
        with pytest.raises(LimitValidationError) as err:
            repo.create(draft, "alice")
        assert set(err.value.errors) == {field}, err.value.errors
    with pytest.raises(LimitValidationError, match="limit must be greater than zero"):
        repo.create(_var(b, "-5"), "alice")
    with pytest.raises(LimitValidationError, match="unknown product NG-XXX"):
        repo.create(LimitDraft(b, "position", 10, product="NG-XXX"), "alice")
    with pytest.raises(LimitValidationError, match="no book with id"):
        repo.create(_var(b + 99), "alice")
    with pytest.raises(LimitValidationError, match="already has this active limit"):
        repo.create(_var(b, "5"), "alice")  # same book, kind, currency, confidence, horizon
    assert len(repo.list_limits()) == 3

    changed = repo.update(var.id, 1, _var(b, "2000000"), "bob")
    assert changed.version == 2 and changed.limit_value == Decimal(2_000_000)
    assert changed.updated_by == "bob" and changed.created_by == "alice"
    with pytest.raises(StaleLimitError, match="version 2, not 1"):
        repo.update(var.id, 1, _var(b, "3000000"), "carol")
    assert repo.get(var.id).limit_value == Decimal(2_000_000)  # the stale write left nothing

    off = repo.set_active(var.id, 2, False, "bob")
    assert not off.active and off.version == 3
    assert [x.id for x in repo.list_limits()] == [pos.id, stress.id]
    assert len(repo.list_limits(active_only=False)) == 3
    again = repo.create(_var(b, "5"), "alice")  # an inactive twin is no duplicate
    with pytest.raises(LimitValidationError, match="already has this active limit"):
        repo.set_active(var.id, 3, True, "bob")
    assert again.id != var.id


def test_breaches_are_recorded_once_per_transition(any_store: Store) -> None:
    repo = LimitRepository(any_store)
    b = _book(any_store)
    lim = repo.create(_var(b, "100"), "alice")
    other = repo.create(LimitDraft(b, "stress", "100", currency="USD"), "alice")
    states = ["ok", "warning", "warning", "breach", "breach", "warning", "ok", "ok", "breach"]
    recorded = []
    for i, state in enumerate(states):
        usage = {"ok": 10.0, "warning": 85.0, "breach": 120.0}[state] + i
        obs = LimitObservation(lim.id, state, usage, usage / 100, AS_OF, f"step {i}")
        recorded += repo.record_states([obs], T0 + dt.timedelta(minutes=i))
    kinds = [r.kind for r in recorded]
    assert kinds == [
        BreachKind.WARNING,
        BreachKind.BREACH,
        BreachKind.WARNING,
        BreachKind.CLEARED,
        BreachKind.BREACH,
    ]
    assert [r.detail for r in recorded] == ["step 1", "step 3", "step 5", "step 6", "step 8"]
    first = recorded[1]
    assert first.usage == 123.0 and first.utilisation == 1.23 and first.as_of == AS_OF
    assert first.limit_value == Decimal(100) and first.detected_at == T0 + dt.timedelta(minutes=3)
    assert repo.current_states() == {lim.id: "breach"}
    repo.record_states([LimitObservation(other.id, "warning", 90.0, 0.9)], T0)

    history = repo.breaches()
    assert [h.id for h in history] == sorted((h.id for h in history), reverse=True)
    assert len(history) == 6 and len(repo.breaches(limit_id=lim.id)) == 5
    assert len(repo.breaches(limit=2)) == 2
    assert [h.kind for h in repo.breaches(kinds=[BreachKind.CLEARED])] == [BreachKind.CLEARED]
    assert len(repo.breaches(since=T0 + dt.timedelta(minutes=5))) == 3
    assert repo.breaches(book_id=b + 99) == []
    # Deactivating a limit in breach records it cleared; inactive limits record nothing.
    repo.set_active(lim.id, 1, False, "bob", now=T0 + dt.timedelta(hours=1))
    last = repo.breaches(limit_id=lim.id, limit=1)[0]
    assert last.kind is BreachKind.CLEARED and "deactivated by bob" in last.detail
    assert repo.record_states([LimitObservation(lim.id, "breach", 500.0, 5.0)]) == []
    with pytest.raises(ValueError, match="state must be one of"):
        repo.record_states([LimitObservation(other.id, "red", 1.0, 1.0)])


def test_status_rules_and_horizon_bound() -> None:
    assert classify(100.0, 100.0, 80) == "warning"  # at the limit: not yet exceeded
    assert classify(100.000001, 100.0, 80) == "breach"
    assert classify(80.0, 100.0, 80) == "warning" and classify(79.99, 100.0, 80) == "ok"
    assert classify(float("nan"), 100.0, 80) == "n/a"
    assert MAX_HORIZON_DAYS == risk_mod.MAX_HORIZON
    _, errors = validate_draft(LimitDraft(1, "gamma", "x"))
    assert set(errors) == {"kind", "limit_value"}


# ---------------------------------------------------------------------------- utilisation


@pytest.fixture(scope="module")
def history() -> dict[str, Any]:
    return {m.product: read_series(m.path) for m in bundled_series()}


def _curves() -> dict[str, ForwardCurve]:
    return {
        p.code: ForwardCurve(MONTHS, np.full(MONTHS.size, p.typical_level), p.code, p.weights)
        for p in PRODUCT_SPECS
    }


@pytest.fixture()
def desk(sqlite_store: Store) -> tuple[Store, PositionReport]:
    ensure_reference_data(sqlite_store)
    seed_demo(sqlite_store, 200, today=AS_OF)
    svc = PositionService(TradeRepository(sqlite_store))
    return sqlite_store, svc.revalue(svc.snapshot(), _curves(), AS_OF, dimension="book")


def _book_ids(store: Store) -> dict[str, int]:
    return {v: k for k, v in LimitRepository(store).books().items()}


def test_position_usage_equals_brute_force_sum(desk: tuple[Store, PositionReport]) -> None:
    store, report = desk
    cols = report.snapshot.columns
    brute: dict[tuple[int, str], float] = {}
    for i in range(len(report.snapshot)):
        if report.valuation.reason[i] == REASON_DELIVERED:
            continue
        key = (int(cols["book_id"][i]), str(report.product[i]))
        brute[key] = brute.get(key, 0.0) + float(report.valuation.delta_qty[i])
    got = position_deltas(report)
    assert {k for k, v in got.items() if v[0] != 0.0} == {k for k, v in brute.items() if v != 0}
    for k, v in brute.items():
        assert got[k][0] == pytest.approx(v, rel=1e-12, abs=1e-9)

    repo = LimitRepository(store)
    books = _book_ids(store)
    gas = books["DEMO Gas"]
    expected = abs(brute[(gas, "NG-TTF")])
    lim = repo.create(LimitDraft(gas, "position", round(expected * 0.9, 3), product="NG-TTF"), "a")
    nothing = repo.create(LimitDraft(gas, "position", 1, product="CR-WTI"), "a")  # not held
    usages = evaluate_limits([lim, nothing], report)
    assert usages[0].usage == pytest.approx(expected, rel=1e-12)
    assert usages[0].status == "breach" and usages[0].unit == "MWh"
    assert usages[0].utilisation == pytest.approx(expected / float(lim.limit_value))
    assert usages[1].usage == 0.0 and usages[1].status == "ok"


def _book_alone(report: PositionReport, book_id: int) -> PositionReport:
    """Independent route: revalue a snapshot holding only the book's trades."""
    snap = report.snapshot
    keep = snap.columns["book_id"] == book_id
    only = PositionSnapshot(
        snap.ref,
        {k: v[keep] for k, v in snap.columns.items()},
        snap.premium[keep],
        snap.expiry[keep],
    )
    return PositionService(None).revalue(only, _curves(), AS_OF)  # type: ignore[arg-type]


def test_var_and_es_usage_is_the_book_standalone_risk(
    desk: tuple[Store, PositionReport], history: dict[str, Any]
) -> None:
    store, report = desk
    repo = LimitRepository(store)
    books = _book_ids(store)
    service = RiskService(history)
    vols = tenor_vols()
    gas_var = repo.create(_var(books["DEMO Gas"], "1000000", currency="EUR"), "a")
    gas_es = repo.create(
        LimitDraft(books["DEMO Gas"], "es", "1e9", currency="EUR", confidence=0.975,
                   horizon_days=5),
        "a",
    )  # fmt: skip
    oil_var = repo.create(_var(books["DEMO Oil"], "1e9"), "a")
    power_none = repo.create(_var(books["DEMO Oil"], "1e6", currency="GBP"), "a")
    usages = evaluate_limits(
        [gas_var, gas_es, oil_var, power_none], report, risk=lambda: service, tenor_vols=vols
    )
    for u in usages[:3]:
        alone = risk_inputs(_book_alone(report, u.limit.book_id), tenor_vols=vols)
        assert u.limit.confidence is not None and u.limit.horizon_days is not None
        res = service.calculate(alone, "historical", u.limit.confidence, u.limit.horizon_days)
        c = res.currency(str(u.limit.currency))
        want = c.var if u.limit.kind is LimitKind.VAR else c.es
        assert want > 0 and u.usage == pytest.approx(want, rel=1e-9)
        assert u.utilisation == pytest.approx(want / float(u.limit.limit_value), rel=1e-9)
    whole = service.calculate(risk_inputs(report, tenor_vols=vols), "historical", 0.99, 1)
    assert usages[0].usage < whole.currency("EUR").var  # standalone, not the whole desk
    assert usages[0].status == ("breach" if usages[0].usage > 1e6 else usages[0].status)
    assert usages[3].usage == 0.0 and "no GBP positions" in usages[3].detail
    na = evaluate_limits([gas_var], report, risk=None)
    assert na[0].status == "n/a"


def test_refresh_records_each_transition_once(desk: tuple[Store, PositionReport]) -> None:
    store, report = desk
    repo = LimitRepository(store)
    oil = _book_ids(store)["DEMO Oil"]
    lim = repo.create(LimitDraft(oil, "stress", "1000", currency="USD"), "a")
    svc = LimitService(repo)
    seen: list[tuple[str, list[BreachKind], list[str]]] = []
    for i, loss in enumerate([500.0, 850.0, 860.0, 1200.0, 1300.0, None, 100.0, -50.0]):
        stress = None if loss is None else {"DEMO Oil": {"USD": loss}}
        ev = svc.refresh(report, stress, now=T0 + dt.timedelta(minutes=i))
        u = ev.usage_of(lim.id)
        assert u is not None
        seen.append((u.status, [t.kind for t in ev.transitions], ev.alerts()))
    assert [s[0] for s in seen] == ["ok", "warning", "warning", "breach", "breach", "n/a",
                                    "ok", "ok"]  # fmt: skip
    assert [s[1] for s in seen] == [[], [BreachKind.WARNING], [], [BreachKind.BREACH], [], [],
                                    [BreachKind.CLEARED], []]  # fmt: skip
    assert seen[3][2] == ["Limit BREACH: DEMO Oil Stress USD: 1,200 USD > limit 1,000 (120.0%)"]
    assert seen[1][2] == [
        "Limit warning: DEMO Oil Stress USD at 85.0% of its limit (850 of 1,000 USD)"
    ]
    assert seen[6][2] == []  # a clear is recorded, not alerted
    rows = repo.breaches(limit_id=lim.id)
    assert [r.kind for r in reversed(rows)] == [
        BreachKind.WARNING,
        BreachKind.BREACH,
        BreachKind.CLEARED,
    ]
    assert rows[1].usage == 1200.0 and rows[1].limit_value == Decimal(1000)
    assert rows[1].as_of == AS_OF and rows[1].detected_at == T0 + dt.timedelta(minutes=3)
    # keyed by book id works too; a book missing from the stress results is not measurable
    assert svc.evaluate(report, {oil: {"USD": 900.0}})[0].status == "warning"
    assert svc.evaluate(report, {"DEMO Gas": {"USD": 900.0}})[0].status == "n/a"


# ---------------------------------------------------------------------------- GUI


@pytest.fixture()
def runner(qtbot: QtBot) -> Iterator[JobRunner]:
    r = JobRunner(max_threads=2)
    yield r
    r.cancel_all()
    r.shutdown()


def test_dialog_refuses_bad_input_and_writes_nothing(
    qtbot: QtBot, runner: JobRunner, sqlite_store: Store, qtmodeltester: Any
) -> None:
    b = _book(sqlite_store)
    repo = LimitRepository(sqlite_store)
    panel = LimitsPanel(runner, LimitService(repo), user="tester")
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.sig_evaluated, timeout=10_000):
        panel.refresh()
    assert panel.add_button.isEnabled()
    dlg = panel.add_limit()
    qtbot.addWidget(dlg)
    dlg.kind.setCurrentIndex(dlg.kind.findData(LimitKind.VAR))
    assert not dlg.product.isEnabled() and dlg.horizon.isEnabled()
    for text, want in (
        ("", "enter the limit"),
        ("abc", "must be a number"),
        ("1.2345", "at most 3 decimal places"),
        ("-10", "greater than zero"),
    ):
        dlg.value.setText(text)
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
        err = dlg.errors["limit_value"]
        assert not err.isHidden() and want in err.text().lower(), err.text()
        assert dlg.isVisible()
    dlg.currency.setCurrentText("dollars")
    dlg.value.setText("1,500,000")
    dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert dlg.errors["limit_value"].isHidden()
    assert "three-letter currency" in dlg.errors["currency"].text()
    assert dlg.errors["limit_value"].text() == ""
    qtbot.wait(100)
    assert repo.list_limits(active_only=False) == []  # nothing was written

    repo.create(_var(b), "someone else")  # the database refuses a duplicate: shown inline
    dlg.currency.setCurrentText("USD")
    dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: "already has" in dlg.errors["kind"].text(), timeout=10_000)
    assert dlg.isVisible() and len(repo.list_limits()) == 1

    dlg.horizon.setValue(5)
    with qtbot.waitSignal(panel.sig_evaluated, timeout=10_000):
        dlg.buttons.button(dlg.buttons.StandardButton.Ok).click()
    assert not dlg.isVisible()
    saved = [x for x in repo.list_limits() if x.horizon_days == 5]
    assert len(saved) == 1 and saved[0].limit_value == Decimal(1_500_000)
    assert saved[0].created_by == "tester"
    assert panel.model.rowCount() == 2
    assert {panel.model.text(r, 6) for r in range(2)} == {"n/a"}  # no positions yet
    qtmodeltester.check(panel.model)


def test_breach_alerts_once_beeps_and_renders(
    qtbot: QtBot,
    runner: JobRunner,
    desk: tuple[Store, PositionReport],
    history: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, report = desk
    repo = LimitRepository(store)
    books = _book_ids(store)
    gas_var = repo.create(_var(books["DEMO Gas"], "1000", currency="EUR"), "a")
    repo.create(LimitDraft(books["DEMO Gas"], "position", "1e9", product="NG-TTF"), "a")
    repo.create(LimitDraft(books["DEMO Oil"], "stress", "5e6", currency="USD"), "a")
    repo.create(
        LimitDraft(books["DEMO Power"], "es", "1e8", currency="EUR", confidence=0.975,
                   horizon_days=10),
        "a",
    )  # fmt: skip
    risk_panel = RiskPanel(runner, history=lambda: history)
    qtbot.addWidget(risk_panel)
    alerts: list[str] = []
    beeps: list[int] = []
    monkeypatch.setattr("app.views.limits_panel.QApplication.beep", lambda: beeps.append(1))
    stress = {"DEMO Oil": {"USD": 4.2e6}}
    panel = install_limits_tab(risk_panel, store, alerts.append, stress=lambda: stress)
    assert risk_panel.tabs.tabText(risk_panel.tabs.count() - 1) == "Limits"
    qtbot.waitUntil(lambda: panel.evaluation is not None, timeout=10_000)
    assert alerts == []  # no positions yet: nothing is measurable, nothing recorded
    panel.sound.setChecked(True)
    risk_panel.set_report(report)
    with qtbot.waitSignal(panel.sig_evaluated, timeout=30_000) as sig:
        risk_panel.calculate()
    ev = sig.args[0]
    u = ev.usage_of(gas_var.id)
    assert u is not None and u.status == "breach"
    assert any(a.startswith("Limit BREACH: DEMO Gas VaR EUR 99% 1d") for a in alerts), alerts
    assert any(a.startswith("Limit warning: DEMO Oil Stress USD") for a in alerts), alerts
    assert len(alerts) == 2 and beeps == [1]
    assert panel.history.topLevelItemCount() == 2
    row = next(
        r for r in range(panel.model.rowCount()) if panel.model.rows[r].limit.id == gas_var.id
    )
    assert panel.model.text(row, 6) == "BREACH"

    with qtbot.waitSignal(panel.sig_evaluated, timeout=30_000):
        panel.refresh()  # same numbers: no new transition, no new alert
    assert len(alerts) == 2 and beeps == [1] and panel.history.topLevelItemCount() == 2

    risk_panel.tabs.setCurrentWidget(panel)
    risk_panel.resize(1000, 620)
    risk_panel.show()
    panel.table.selectRow(0)
    qtbot.wait(50)
    out = Path(os.environ.get("QE_LIMITS_PNG", tmp_path / "limits.png"))
    assert risk_panel.grab().save(str(out))
    if os.environ.get("QE_LIMITS_DIALOG_PNG"):
        dlg = panel.edit_limit()
        assert dlg is not None
        dlg.value.setText("abc")
        dlg.submit()
        qtbot.wait(50)
        assert dlg.grab().save(os.environ["QE_LIMITS_DIALOG_PNG"])
        dlg.reject()
