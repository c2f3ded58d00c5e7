"""P&L: realised (settlement lookup), day-over-day explain, service on a store, P&L tab."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from sqlalchemy import update

from app.engine.curves import ForwardCurve, delivery_hours
from app.engine.pnl import (
    REASON_NO_SETTLEMENT,
    SettlementHistory,
    explain,
    realised,
    settlement_prices,
)
from app.engine.positions import TradeInputs
from app.feed.market_state import CONNECTED, MarketState
from app.feed.protocol import CurveUpdate
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.entities import Trade
from app.models.enums import ExerciseStyle, InstrumentType, OptionType, Side, TradeStatus
from app.models.market_data import MarketDataRepository
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.pnl import PART_KEYS, PnLService
from app.services.positions import PositionService
from app.views.jobs import JobRunner
from app.views.market_bridge import MarketBridge
from app.views.positions import PNL_COLUMNS, PnLModel, PositionsPanel

D = np.datetime64


def _n(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _black(f: float, k: float, days: int, vol: float, call: bool) -> float:
    """Undiscounted Black-76 written out by hand (``days`` to expiry, Act/365)."""
    t = max(days, 0) / 365.0
    w = 1.0 if call else -1.0
    if t <= 0 or vol == 0:
        return max(w * (f - k), 0.0)
    s = vol * math.sqrt(t)
    d1 = math.log(f / k) / s + s / 2
    d2 = d1 - s
    return f * _n(d1) - k * _n(d2) if call else k * _n(-d2) - f * _n(-d1)


def _month_days(y: int, m: int) -> list[dt.date]:
    d = dt.date(y, m, 1)
    out = []
    while d.month == m:
        out.append(d)
        d += dt.timedelta(days=1)
    return out


# -- engine: settlement lookup and realised -------------------------------------------------


def test_settlement_lookup_takes_last_curve_quoting_the_month_on_or_before_its_first_day() -> None:
    h = SettlementHistory.build(
        ["2027-01-15", "2027-01-29", "2027-02-01", "2027-02-03"],
        [np.arange(D("2027-02"), D("2027-05")), np.arange(D("2027-02"), D("2027-05")),
         np.arange(D("2027-03"), D("2027-06")), np.arange(D("2027-03"), D("2027-06"))],
        [[10.0, 11, 12], [20.0, 21, 22], [31.0, 32, 33], [41.0, 42, 43]],
    )  # fmt: skip
    months = np.array(["2027-01", "2027-02", "2027-03", "2027-04", "2027-06"], "M8[M]")
    price, used = settlement_prices(h, months)
    # Jan: no curve quotes it. Feb: the 2027-02-01 curve starts in March, so the 29 Jan one.
    # Mar: the 1 Feb curve (the 3 Feb one is after 1 Mar? no: 3 Feb <= 1 Mar) -> 3 Feb curve.
    assert np.isnan(price[0]) and np.isnat(used[0])
    assert price[1] == 20.0 and used[1] == D("2027-01-29")
    assert price[2] == 41.0 and used[2] == D("2027-02-03")
    assert price[3] == 42.0
    assert np.isnan(price[4])
    assert np.isnan(settlement_prices(None, months)[0]).all()


def _two_trades() -> TradeInputs:
    """A buy forward Jan-Mar 2027 at 50 and a sold put on Feb-27 (K 48, premium 2)."""
    return TradeInputs(
        start=np.array(["2027-01-01", "2027-02-01"], "M8[D]"),
        end=np.array(["2027-03-31", "2027-02-28"], "M8[D]"),
        quantity=np.array([900.0, 280.0]),
        sign=np.array([1.0, -1.0]),
        price=np.array([50.0, 0.0]),
        hourly=False,
        curve=0,
        is_option=np.array([False, True]),
        is_call=np.array([True, False]),
        strike=np.array([np.nan, 48.0]),
        premium=np.array([0.0, 2.0]),
        expiry=np.array(["2027-01-26", "2027-01-26"], "M8[D]"),
        vol=0.3,
    )


def _history() -> SettlementHistory:
    # Jan settles 53 (curve of 31 Dec), Feb 45 (curve of 29 Jan); March never recorded.
    return SettlementHistory.build(
        ["2026-12-31", "2027-01-29"],
        [np.arange(D("2027-01"), D("2027-03")), np.arange(D("2027-02"), D("2027-03"))],
        [[53.0, 51.0], [45.0]],
    )


def test_realised_forward_and_option_against_day_by_day_sum() -> None:
    trades = _two_trades()
    as_of = dt.date(2027, 2, 11)  # Jan and 1..10 Feb delivered
    r = realised(trades, [_history()], as_of)
    settle = {"2027-01": 53.0, "2027-02": 45.0}
    want = [0.0, 0.0]
    for i, (y, m_list) in enumerate([((2027), (1, 2, 3)), ((2027), (2,))]):
        n_days = sum(len(_month_days(y, m)) for m in m_list)
        for m in m_list:
            for d in _month_days(y, m):
                if d >= as_of:
                    continue
                s = settle[f"{y}-{m:02d}"]
                q = [900.0, 280.0][i] / n_days
                if i == 0:
                    want[0] += q * (s - 50.0)
                else:
                    want[1] += -q * (max(48.0 - s, 0.0) - 2.0)
    assert r.pnl == pytest.approx(want, rel=1e-12)
    assert (r.reason == 0).all()
    # Before any delivery nothing is realised, whatever the settlements.
    r0 = realised(trades, [None], dt.date(2027, 1, 1))
    assert r0.pnl.tolist() == [0.0, 0.0]


def test_realised_is_nan_with_a_reason_when_a_delivered_month_has_no_settlement() -> None:
    r = realised(_two_trades(), [_history()], dt.date(2027, 3, 5))  # March delivered in part
    assert np.isnan(r.pnl[0]) and r.reason[0] == REASON_NO_SETTLEMENT
    march = (r.slices.trade == 0) & (r.slices.month == D("2027-03"))
    assert np.isnan(r.slice_pnl[march]).all()
    assert r.reason[1] == 0 and math.isfinite(r.pnl[1])  # the Feb put is fully settled
    r_none = realised(_two_trades(), [None], dt.date(2027, 2, 11))
    assert np.isnan(r_none.pnl).all()


# -- engine: explain -------------------------------------------------------------------------

_D0, _D1 = dt.date(2027, 1, 28), dt.date(2027, 2, 2)  # Jan 28..Feb 1 deliver in between
_MONTHS = np.arange(D("2027-01"), D("2027-07"))
_C0 = ForwardCurve(_MONTHS, np.array([52.0, 49.0, 47.0, 46.0, 44.0, 43.0]))
_C1 = ForwardCurve(_MONTHS, np.array([52.5, 50.5, 46.0, 47.0, 45.5, 42.0]))
_SETTLE = SettlementHistory.build(
    ["2026-12-31", "2027-01-29"],
    [_MONTHS, _MONTHS[1:]],
    [[53.0, 50.0, 48.0, 47.0, 45.0, 44.0], [49.5, 47.5, 46.5, 44.5, 43.5]],
)
_SETTLE_OF = {"2027-01": 53.0, "2027-02": 49.5}


def _book(rows: list[dict[str, Any]]) -> TradeInputs:
    def col(k: str, default: Any) -> list[Any]:
        return [r.get(k, default) for r in rows]

    return TradeInputs(
        start=np.array(col("start", None), "M8[D]"),
        end=np.array(col("end", None), "M8[D]"),
        quantity=np.array(col("qty", None), float),
        sign=np.array(col("sign", 1.0)),
        price=np.array(col("price", 0.0)),
        hourly=False,
        curve=0,
        is_option=np.array(col("opt", False)),
        is_call=np.array(col("call", True)),
        strike=np.array(col("k", np.nan)),
        premium=np.array(col("prem", 0.0)),
        expiry=np.array(col("exp", "NaT"), "M8[D]"),
        vol=0.35,
    )


_ROWS0: list[dict[str, Any]] = [
    {"start": "2027-01-01", "end": "2027-03-31", "qty": 900.0, "price": 48.0},  # unchanged
    {"start": "2027-02-01", "end": "2027-02-28", "qty": 280.0, "sign": -1.0, "price": 51.0},
    {"start": "2027-04-01", "end": "2027-06-30", "qty": 910.0, "price": 45.0},  # amended
    {"start": "2027-05-01", "end": "2027-05-31", "qty": 310.0, "opt": True, "k": 44.0,
     "prem": 1.5, "exp": "2027-04-26"},  # a call, unchanged: time decay
    {"start": "2027-03-01", "end": "2027-03-31", "qty": 310.0, "sign": -1.0, "price": 46.0},
]  # fmt: skip
_ROWS1: list[dict[str, Any]] = [
    _ROWS0[0],
    _ROWS0[1],
    dict(_ROWS0[2], price=44.0, qty=1820.0),  # amended: price and volume
    _ROWS0[3],
    {"start": "2027-04-01", "end": "2027-04-30", "qty": 300.0, "opt": True, "call": False,
     "k": 47.0, "prem": 2.0, "exp": "2027-03-26", "sign": -1.0},  # new sold put
]  # fmt: skip
_MATCH0 = [0, 1, 2, 3, -1]  # the last one is cancelled
_AMENDED0 = [False, False, True, False, False]


def _lifetime(row: dict[str, Any], curve: ForwardCurve, day: dt.date, vol: float = 0.35) -> float:
    """Brute force: unrealised + realised of one trade, day by day, in plain Python."""
    start = dt.date.fromisoformat(row["start"])
    end = dt.date.fromisoformat(row["end"])
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    q = row["qty"] / len(days)
    sign = row.get("sign", 1.0)
    price_of = dict(zip([str(m) for m in curve.months], curve.prices.tolist(), strict=True))
    open_days = [d for d in days if d >= day]
    realised_pnl = 0.0
    for d in days:
        if d < day:
            s = _SETTLE_OF[f"{d:%Y-%m}"]
            if row.get("opt"):
                w = 1.0 if row.get("call", True) else -1.0
                realised_pnl += sign * q * (max(w * (s - row["k"]), 0.0) - row["prem"])
            else:
                realised_pnl += sign * q * (s - row["price"])
    if not open_days:
        return realised_pnl
    f = sum(price_of[f"{d:%Y-%m}"] for d in open_days) / len(open_days)
    q_open = q * len(open_days)
    if row.get("opt"):
        exp = dt.date.fromisoformat(row["exp"])
        v = _black(f, row["k"], (exp - day).days, vol, row.get("call", True))
        return realised_pnl + sign * q_open * (v - row["prem"])
    return realised_pnl + sign * q_open * (f - row["price"])


def test_explain_parts_match_brute_force_and_add_up() -> None:
    b0, b1 = _book(_ROWS0), _book(_ROWS1)
    ex = explain(b0, b1, _MATCH0, _AMENDED0, [_C0], [_C1], [_SETTLE], _D0, _D1)

    def per_trade(values: np.ndarray, trade: np.ndarray, n: int) -> np.ndarray:
        return np.bincount(trade, weights=values, minlength=n)

    y = [_lifetime(r, _C0, _D0) for r in _ROWS0]
    t = [_lifetime(r, _C1, _D1) for r in _ROWS1]
    total = sum(t) - sum(y)
    got_total = float(ex.total0.sum() + ex.total1.sum())
    assert got_total == pytest.approx(total, rel=1e-10)
    # Price effect: yesterday's book at today's date, today's curves minus yesterday's.
    price = sum(_lifetime(r, _C1, _D1) - _lifetime(r, _C0, _D1) for r in _ROWS0)
    assert ex.price0.sum() == pytest.approx(price, rel=1e-10)
    # New, amended, cancelled: P&L at today's marks.
    assert ex.new1.sum() == pytest.approx(t[4], rel=1e-10)
    assert (ex.amended0.sum() + ex.amended1.sum()) == pytest.approx(
        t[2] - _lifetime(_ROWS0[2], _C1, _D1), rel=1e-10
    )
    assert ex.cancelled0.sum() == pytest.approx(-_lifetime(_ROWS0[4], _C1, _D1), rel=1e-10)
    # Time decay: only the option, at yesterday's curve, 5 days on.
    r3 = _ROWS0[3]
    f3 = float(_C0.prices[4])
    decay = r3["qty"] * (_black(f3, 44.0, (dt.date(2027, 4, 26) - _D1).days, 0.35, True)
                         - _black(f3, 44.0, (dt.date(2027, 4, 26) - _D0).days, 0.35, True))  # fmt: skip
    assert ex.time0.sum() == pytest.approx(decay, rel=1e-9)
    assert decay < 0
    # Delivered: the rest of the chain at yesterday's curves.
    delivered = sum(_lifetime(r, _C0, _D1) for r in _ROWS0) - sum(y) - decay
    assert ex.delivered0.sum() == pytest.approx(delivered, rel=1e-9)
    parts = (ex.time0.sum() + ex.delivered0.sum() + ex.price0.sum() + ex.new1.sum()
             + ex.amended0.sum() + ex.amended1.sum() + ex.cancelled0.sum())  # fmt: skip
    assert abs(got_total - parts) < 1e-8 * max(1.0, abs(got_total))
    assert abs(ex.residual_total()) < 1e-8 * max(1.0, abs(got_total))
    assert ex.status0.tolist() == [0, 0, 1, 0, 2] and ex.status1.tolist() == [0, 0, 1, 0, 3]
    # Today's realised + unrealised are the brute-force lifetime values.
    n1 = len(_ROWS1)
    life = per_trade(ex.realised1 + ex.unrealised1, ex.s1.trade, n1)
    assert life == pytest.approx(t, rel=1e-10)


def test_explain_old_deliveries_without_settlement_do_not_spoil_the_day() -> None:
    """A month delivered before yesterday with no recorded settlement: realised n/a, but the
    day-over-day change of an unchanged trade is still known."""
    rows = [{"start": "2026-10-01", "end": "2027-03-31", "qty": 1810.0, "price": 48.0}]
    b = _book(rows)
    ex = explain(b, b, [0], [False], [_C0], [_C1], [_SETTLE], _D0, _D1)
    assert np.isnan(ex.realised1.sum())
    total = float(ex.total0.sum() + ex.total1.sum())
    assert math.isfinite(total)
    q = 1810.0 / 182
    # 28..31 Jan deliver at the Jan settlement (53) instead of yesterday's Jan mark (52);
    # 1 Feb delivers at the Feb settlement 49.5 vs yesterday's Feb mark 49.
    open0 = [_C0.prices[0]] * 4 + [_C0.prices[1]] * 28 + [_C0.prices[2]] * 31
    open1 = [_C1.prices[1]] * 27 + [_C1.prices[2]] * 31
    want = q * (sum(open1) - sum(open0[5:]) + 0) + q * (
        sum(open0[5:]) - sum(open0) + 4 * 53.0 + 49.5
    )
    assert total == pytest.approx(want, rel=1e-10)
    assert ex.delivered0.sum() + ex.price0.sum() == pytest.approx(total, rel=1e-10)


def test_explain_validates_arguments() -> None:
    b = _book(_ROWS0)
    with pytest.raises(ValueError, match="match0"):
        explain(b, b, [0, 0, 1, 2, 3], [False] * 5, [_C0], [_C1], [_SETTLE], _D0, _D1)
    with pytest.raises(ValueError, match="d1"):
        explain(b, b, [0, 1, 2, 3, 4], [False] * 5, [_C0], [_C1], [_SETTLE], _D1, _D0)


# -- service on a store ----------------------------------------------------------------------

TODAY = dt.date.today()
YESTERDAY = TODAY - dt.timedelta(days=1)


def _first_of_month(d: dt.date, k: int) -> dt.date:
    m = d.month - 1 + k
    return dt.date(d.year + m // 12, m % 12 + 1, 1)


def _level_curve(code: str, scale: float) -> tuple[str, list[float]]:
    start = _first_of_month(TODAY, -3)
    lvl = PRODUCT_BY_CODE[code].typical_level
    return f"{start:%Y-%m}", [lvl * scale * (1 + 0.01 * i) for i in range(64)]


def _scenario(store: Store) -> dict[str, Any]:
    """Demo book booked two days ago, settlements recorded for past months and yesterday, then
    today: one amendment, one cancellation, one new trade. Today's curves 2 % above."""
    ensure_reference_data(store)
    seed_demo(store, 80, today=TODAY, seed=7)
    repo = TradeRepository(store)
    ref = repo.reference_data()
    brent = ref.product_by_code("CR-BRENT")
    book = ref.book_by_name("DEMO Oil")
    cp = next(iter(ref.counterparties.values()))
    assert brent is not None and book is not None
    past = _first_of_month(TODAY, -2)
    econ = {"book_id": book.id, "counterparty_id": cp.id, "product_id": brent.id,
            "instrument": InstrumentType.SWAP, "side": Side.BUY,
            "quantity": Decimal("30000"), "quantity_unit": brent.unit,
            "price": Decimal("70"), "currency": "USD", "trade_date": past,
            "delivery_start": past, "delivery_end": _first_of_month(TODAY, 2)
            - dt.timedelta(days=1), "option_type": None, "strike": None,
            "expiry_date": None, "exercise_style": None, "premium": None}  # fmt: skip
    opt = dict(econ, instrument=InstrumentType.OPTION, option_type=OptionType.CALL,
               strike=Decimal("72"), premium=Decimal("3"), exercise_style=ExerciseStyle.EUROPEAN,
               expiry_date=past - dt.timedelta(days=3), trade_date=past - dt.timedelta(days=9),
               delivery_end=_first_of_month(TODAY, -1) - dt.timedelta(days=1), price=Decimal(0),
               side=Side.SELL)  # fmt: skip
    old = repo.insert_trades([econ, opt], "test")
    two_days = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    with store.session() as s:
        s.execute(update(Trade).values(updated_at=two_days))
    md = MarketDataRepository(store)
    for p in PRODUCT_SPECS:
        for k in (-2, -1, 0):  # each month's first day: the realised settlement of the month
            start, prices = _level_curve(p.code, 1.0 + 0.01 * k)
            md.save_settlement(p.code, _first_of_month(TODAY, k) - dt.timedelta(days=1),
                               start, prices, 1)  # fmt: skip
        start, prices = _level_curve(p.code, 1.0)
        md.save_settlement(p.code, YESTERDAY, start, prices, 2)
    cur = [r for r in repo.current_records() if r.status is not TradeStatus.CANCELLED
           and r.instrument is not InstrumentType.OPTION and r.trade_uuid != old[0].trade_uuid]  # fmt: skip
    amended, cancelled = cur[0], cur[1]
    repo.new_version(amended.trade_uuid, amended.version, "test",
                     {"price": amended.price + Decimal("1.5")})  # fmt: skip
    repo.new_version(cancelled.trade_uuid, cancelled.version, "test",
                     status=TradeStatus.CANCELLED)  # fmt: skip
    new = repo.insert_trades([dict(econ, delivery_start=_first_of_month(TODAY, 1),
                                   delivery_end=_first_of_month(TODAY, 2) - dt.timedelta(days=1),
                                   trade_date=TODAY, side=Side.SELL)], "test")[0]  # fmt: skip
    curves = {}
    for p in PRODUCT_SPECS:
        start, prices = _level_curve(p.code, 1.02)
        months = np.datetime64(start, "M") + np.arange(len(prices))
        curves[p.code] = ForwardCurve(months, np.array(prices), p.code, p.weights)
    return {"amended": amended, "cancelled": cancelled, "new": new, "old": old, "curves": curves}


def _brute_total(store: Store, sc: dict[str, Any], versions: str) -> dict[str, float]:
    """Lifetime P&L per currency of the book yesterday (``'old'``, on yesterday's settlement
    curves) or today (``'new'``, today's curves), trade by trade in plain Python."""
    repo = TradeRepository(store)
    ref = repo.reference_data()
    day = YESTERDAY if versions == "old" else TODAY
    out: dict[str, float] = defaultdict(float)
    for rec in repo.current_records():
        uid = rec.trade_uuid
        if versions == "old":
            if uid == sc["new"].trade_uuid:
                continue
            if uid in (sc["amended"].trade_uuid, sc["cancelled"].trade_uuid):
                rec = repo.history(uid)[0]
        if rec.status is TradeStatus.CANCELLED:
            continue
        code = ref.products[rec.product_id].code
        scale = 1.0 if versions == "old" else 1.02
        start, prices = _level_curve(code, scale)
        first = np.datetime64(start, "M")
        power = PRODUCT_BY_CODE[code].weights == "hours"
        if power:  # the demo holds no delivered power; keep the brute force simple
            assert rec.delivery_start >= day
        days = [rec.delivery_start + dt.timedelta(days=i)
                for i in range((rec.delivery_end - rec.delivery_start).days + 1)]  # fmt: skip
        w = [delivery_hours(d) if power else 1.0 for d in days]
        q = float(rec.quantity) / sum(w)
        sign = 1.0 if rec.side is Side.BUY else -1.0
        opt = rec.instrument is InstrumentType.OPTION
        call = rec.option_type is OptionType.CALL
        k = float(rec.strike) if rec.strike is not None else 0.0
        prem = float(rec.premium or 0)
        total, f_sum, w_open = 0.0, 0.0, 0.0
        for d, wd in zip(days, w, strict=True):
            m = int((np.datetime64(d, "M") - first).astype(int))
            if d < day:  # settlement: the curve recorded the day before the month's 1st
                k_month = (d.year - TODAY.year) * 12 + d.month - TODAY.month
                s = _level_curve(code, 1.0 + 0.01 * k_month)[1][m]
                unit = (max((s - k) if call else (k - s), 0.0) - prem) if opt else s - float(
                    rec.price)  # fmt: skip
                total += sign * q * wd * unit
            else:
                f_sum += wd * prices[m]
                w_open += wd
        if w_open:
            f = f_sum / w_open
            if opt:
                assert rec.expiry_date is not None
                v = _black(f, k, (rec.expiry_date - day).days, 0.4, call)
                total += sign * q * w_open * (v - prem)
            else:
                total += sign * q * w_open * (f - float(rec.price))
        out[rec.currency] += total
    return dict(out)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, dict[str, Any]]]:
    store = Store.open_file(tmp_path_factory.mktemp("pnl") / "s.db")
    sc = _scenario(store)
    yield store, sc
    store.close()


def test_service_day_pnl_matches_brute_force_and_explains_exactly(
    scenario: tuple[Store, dict[str, Any]],
) -> None:
    store, sc = scenario
    ps = PositionService(TradeRepository(store))
    svc = PnLService.for_positions(ps)
    snap = ps.snapshot()
    y = svc.yesterday_from_store(snap, TODAY)
    assert y is not None and y.as_of == YESTERDAY
    assert f"settlement curves of {YESTERDAY.isoformat()}" in y.source
    report = svc.pnl(snap, sc["curves"], TODAY, y, 0.4, dimension="book")
    assert report.counts == {"new": 1, "amended": 1, "cancelled": 1}
    want_old = _brute_total(store, sc, "old")
    want_new = _brute_total(store, sc, "new")
    totals = {t["currency"]: t for t in report.totals}
    for ccy in want_new:
        assert totals[ccy]["total"] == pytest.approx(want_new[ccy], rel=1e-9), ccy
        assert totals[ccy]["dod"] == pytest.approx(
            want_new[ccy] - want_old.get(ccy, 0.0), rel=1e-9, abs=1e-6
        ), ccy
        parts = sum(totals[ccy][k] for k in PART_KEYS)
        assert abs(totals[ccy]["dod"] - parts) < 1e-6
        assert abs(totals[ccy]["residual"]) < 1e-6
    # Unrealised equals the positions MTM of the same marks.
    pos = ps.revalue(snap, sc["curves"], TODAY, 0.4)
    for t in pos.totals:
        assert totals[t.currency]["unrealised"] == pytest.approx(t.mtm, rel=1e-12)
    # The swap and the sold call are partly / fully delivered: realised is non-zero.
    assert totals["USD"]["realised"] != 0
    g = report.groups
    assert np.all(np.abs(g.residual) < 1e-6)
    assert set(g.notes.tolist()) == {"ok"}
    for dim in ("product", "month", "counterparty"):
        rg = PnLService.regroup(report, dim).groups
        for ccy in want_new:
            sel = rg.currency == ccy
            assert rg.dod[sel].sum() == pytest.approx(totals[ccy]["dod"], rel=1e-9, abs=1e-6)
            assert rg.realised[sel].sum() == pytest.approx(totals[ccy]["realised"], rel=1e-9)
    assert "Yesterday" in report.note() and "Today" in report.note()


def test_service_without_settlements_says_so(tmp_path: Path) -> None:
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 30, today=TODAY, seed=4)
        ps = PositionService(TradeRepository(store))
        svc = PnLService.for_positions(ps)
        snap = ps.snapshot()
        assert svc.yesterday_from_store(snap, TODAY) is None
        curves = {p.code: ForwardCurve(np.arange(D("2020-01"), D("2035-01")),
                                       np.full(180, p.typical_level), p.code, p.weights)
                  for p in PRODUCT_SPECS}  # fmt: skip
        report = svc.pnl(snap, curves, TODAY, None)
        assert report.problems and "No settlement curves recorded" in report.problems[0]
        assert np.isnan(report.groups.dod).all()
        assert np.isfinite(report.groups.unrealised).all()
        assert set(report.groups.notes.tolist()) == {"no yesterday marks"}
    finally:
        store.close()


def test_yesterday_from_a_report_in_memory(scenario: tuple[Store, dict[str, Any]]) -> None:
    store, sc = scenario
    ps = PositionService(TradeRepository(store))
    snap = ps.snapshot()
    svc = PnLService.for_positions(ps)
    curves0 = {k: ForwardCurve(c.months, c.prices / 1.02, k) for k, c in sc["curves"].items()}
    before = ps.revalue(snap, curves0, YESTERDAY, 0.4)
    y = PnLService.yesterday_from_report(before)
    report = svc.pnl(snap, sc["curves"], TODAY, y, 0.4)
    assert report.counts == {"new": 0, "amended": 0, "cancelled": 0}
    for t in report.totals:
        assert abs(t["residual"]) < 1e-6
        assert t["price"] > 0 or t["price"] < 0
    # Same book: the price effect is the open MTM change at one date.
    usd = next(t for t in report.totals if t["currency"] == "USD")
    assert usd["new"] == 0 and usd["cancelled"] == 0


# -- panel ---------------------------------------------------------------------------------------


def _state(curves: dict[str, ForwardCurve]) -> MarketState:
    state = MarketState()
    for code, c in curves.items():
        state.apply_curve(CurveUpdate(code, str(c.months[0]), c.prices.tolist(), 1, True, None))
    state.update_status(state=CONNECTED)
    state.take_changes()
    return state


def test_pnl_tab_shows_explain_per_group(
    qtbot: QtBot, qtmodeltester: Any, scenario: tuple[Store, dict[str, Any]], tmp_path: Path
) -> None:
    store, sc = scenario
    runner = JobRunner(max_threads=2)
    state = _state(sc["curves"])
    bridge = MarketBridge(state)
    panel = PositionsPanel(None, runner, state, bridge, PositionService(TradeRepository(store)))
    panel.as_of = lambda: TODAY
    panel.vol = 0.4
    panel.show_drill_dialog = False
    qtbot.addWidget(panel)
    panel.resize(1500, 560)
    try:
        with qtbot.waitSignal(panel.sig_revalued, timeout=20_000):
            panel.show()
        assert panel.pnl_report is None and not panel.problem.isVisible()
        with qtbot.waitSignal(panel.sig_pnl, timeout=20_000) as blocker:
            qtbot.mouseClick(panel.tabs, Qt.MouseButton.LeftButton,
                             pos=panel.tabs.tabRect(1).center())  # fmt: skip
        report = blocker.args[0]
        assert panel.stack.currentWidget() is panel.pnl_table
        assert panel.pnl_base.isVisible()
        model = panel.pnl_model
        qtmodeltester.check(model)
        assert model.rowCount() == len(report.groups) > 0
        titles = [model.headerData(i, Qt.Orientation.Horizontal) for i in range(len(PNL_COLUMNS))]
        assert {"Realised", "Unrealised", "Day P&L", "Price", "Time decay", "New", "Amended",
                "Cancelled", "Delivered", "Unexplained"} <= set(titles)  # fmt: skip
        assert f"Yesterday {YESTERDAY.isoformat()}" in panel.note.text()
        assert "settlement curves" in panel.note.text() and "live curves" in panel.note.text()
        assert "day" in panel.totals.text()
        unexplained = titles.index("Unexplained")
        for r in range(model.rowCount()):
            assert model.text(r, unexplained) == "0"
        # Regrouping regroups the P&L too.
        with qtbot.waitSignal(panel.sig_pnl, timeout=20_000):
            panel.set_dimension("product")
        assert panel.pnl_model.report is not None
        assert panel.pnl_model.report.groups.dimension == "product"
        panel.grab().save(str(tmp_path / "pnl.png"))
        # The session baseline: the first revaluation of the session; nothing changed since.
        with qtbot.waitSignal(panel.sig_pnl, timeout=20_000) as blocker:
            panel.pnl_base.setCurrentIndex(panel.pnl_base.findData("session"))
        again = blocker.args[0]
        assert "held in memory" in panel.note.text()
        assert again.counts == {"new": 0, "amended": 0, "cancelled": 0}
        for t in again.totals:
            assert abs(t["dod"]) < 1e-6
        panel.show_pnl(False)
        assert panel.stack.currentWidget() is panel.table
        assert "Total MTM" in panel.totals.text()
        qtbot.waitUntil(lambda: not runner.active_jobs, timeout=10_000)
    finally:
        runner.shutdown()


def test_pnl_model_shows_na_for_missing_inputs(qtmodeltester: Any, tmp_path: Path) -> None:
    store = Store.open_file(tmp_path / "s.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 20, today=TODAY, seed=9)
        ps = PositionService(TradeRepository(store))
        report = PnLService.for_positions(ps).pnl(ps.snapshot(), {}, TODAY, None)
        model = PnLModel()
        model.set_report(report)
        qtmodeltester.check(model)
        col = [c.key for c in PNL_COLUMNS].index("unrealised")
        assert model.text(0, col) == "n/a"
        tip = model.data(model.index(0, col), Qt.ItemDataRole.ToolTipRole)
        assert "no curve today" in tip
    finally:
        store.close()
