"""Feed simulator (simulate mode): protocol behaviour, arbitrage-consistent strips, settlement,
curve blocks, determinism, speed, and the calibrated defaults re-estimated from ../shared."""

from __future__ import annotations

import importlib.util
import time
from datetime import date, timedelta
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from app.engine.curves import delivery_hours
from app.feed.instruments import build_instruments, curve_months
from app.feed.protocol import CurveUpdate, Tick, parse_server_message
from app.feed.sim_params import (
    CORRELATIONS,
    SEASONAL,
    SIM_PARAMS,
    SPIKE_MIN_DECAY,
    TICK_SIZE,
    model_params,
)
from app.feed.simulator import SimulatorSource
from app.feed.source import Batch, PriceSource
from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS
from tests.conftest import need_shared

AS_OF = date(2026, 11, 24)  # a Tuesday


def _month_key(s: str) -> int:
    y, m = s.split("-")
    return int(y) * 12 + int(m) - 1


def _curve_days(start: str, n: int) -> list[date]:
    k0 = _month_key(start)
    first = date(k0 // 12, k0 % 12 + 1, 1)
    k1 = k0 + n
    end = date(k1 // 12, k1 % 12 + 1, 1)
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _brute_strip(curve: list[float], start: str, s: date, e: date, power: bool) -> float:
    """Day-by-day weighted average of a monthly curve over [s, e] (independent of the code)."""
    k0 = _month_key(start)
    num = den = 0.0
    d = s
    while d <= e:
        w = delivery_hours(d) if power else 1.0
        num += w * curve[d.year * 12 + d.month - 1 - k0]
        den += w
        d += timedelta(days=1)
    return num / den


def _apply(curve: list[float], start: str, upd: CurveUpdate) -> list[float]:
    if upd.full:
        assert upd.start == start and len(upd.prices) == len(curve)
        return list(upd.prices)
    off = _month_key(upd.start) - _month_key(start)
    assert off >= 0 and off + len(upd.prices) <= len(curve)
    out = list(curve)
    out[off : off + len(upd.prices)] = upd.prices
    return out


@pytest.fixture(scope="module")
def started() -> tuple[SimulatorSource, Batch]:
    src = SimulatorSource(AS_OF, seed=7)
    return src, src.start(1_000)


def test_is_a_price_source_with_the_catalogue_instruments(
    started: tuple[SimulatorSource, Batch],
) -> None:
    src, _ = started
    ps: PriceSource = src
    assert ps.mode == "simulate" and ps.finished is False
    assert [i.id for i in src.instruments()] == [i.id for i in build_instruments(AS_OF)]
    assert len(src.instruments()) == 460
    assert set(SIM_PARAMS) == {p.code for p in PRODUCT_SPECS}


def test_start_batch(started: tuple[SimulatorSource, Batch]) -> None:
    src, batch = started
    insts = src.instruments()
    settle = [t for t in batch.ticks if t.kind == "settle"]
    trade = [t for t in batch.ticks if t.kind == "trade"]
    assert [t.instrument for t in settle] == [i.id for i in insts]
    assert [t.instrument for t in trade] == [i.id for i in insts]
    assert batch.ticks[: len(insts)] == settle  # previous settlement first
    start, n = curve_months(AS_OF, insts)
    assert [c.product for c in batch.curves] == [p.code for p in PRODUCT_SPECS]
    for c in batch.curves:
        assert c.full and c.settle is None and c.start == start and len(c.prices) == n
    lo, hi = _month_key(start), _month_key(start) + n - 1
    for i in insts:
        if i.kind != "spot":
            assert (
                lo <= i.start.year * 12 + i.start.month - 1
                and i.end.year * 12 + i.end.month - 1 <= hi
            )
    # messages survive the protocol's own validation
    for t in batch.ticks[:50]:
        t.stream, t.seq = t.instrument.split(":")[0], 1
        assert isinstance(parse_server_message(t.to_message()), Tick)
    for c in batch.curves:
        c.seq = 1
        assert isinstance(parse_server_message(c.to_message()), CurveUpdate)


def test_strips_equal_brute_force_weighted_average_of_months() -> None:
    src = SimulatorSource(AS_OF, seed=3)
    src.start(0)
    for k in range(5):
        src.advance(0.5, k)
    mids = src.mid_prices()
    curves = src.curve_prices()
    codes = [p.code for p in PRODUCT_SPECS]
    checked = 0
    for i, inst in enumerate(src.instruments()):
        p = codes.index(inst.product)
        if inst.kind == "spot":
            assert mids[i] == pytest.approx(src.model.spot[p], rel=1e-12)
            continue
        power = PRODUCT_BY_CODE[inst.product].weights == "hours"
        ref = _brute_strip(list(curves[p]), src.curve_start, inst.start, inst.end, power)
        assert mids[i] == pytest.approx(ref, rel=1e-11, abs=1e-11)
        checked += inst.kind != "month"
    assert checked == 12 * (8 + 3) + 7 * 4  # quarters and cals; seasons of power and gas
    # hours weighting matters: a power quarter with the March clock change
    k = next(i for i, x in enumerate(src.instruments()) if x.id == "PWR-DE-BASE:2027-Q1")
    p = codes.index("PWR-DE-BASE")
    by_days = _brute_strip(
        list(curves[p]), src.curve_start, date(2027, 1, 1), date(2027, 3, 31), False
    )
    assert abs(mids[k] - by_days) > 1e-9


def test_ticks_never_crossed_and_rate_in_range() -> None:
    src = SimulatorSource(AS_OF, seed=5)
    src.start(0)
    n = 0
    for k in range(200):  # 10 wall seconds
        for t in src.advance(0.05, k).ticks:
            if t.kind != "trade":
                continue
            n += 1
            assert t.bid is not None and t.ask is not None and t.last is not None
            assert t.bid < t.ask and t.bid <= t.last <= t.ask, t
            assert t.size >= 1 and t.ts == k
    assert 300 <= n / 10 <= 600
    # front months and spot trade more often than back months
    counts: dict[str, int] = {}
    for k in range(200, 600):
        for t in src.advance(0.05, k).ticks:
            counts[t.instrument] = counts.get(t.instrument, 0) + 1
    front = sum(counts.get(f"{p.code}:2026-12", 0) for p in PRODUCT_SPECS)
    back = sum(counts.get(f"{p.code}:2028-11", 0) for p in PRODUCT_SPECS)
    assert front > 2 * back


def test_settlement_at_day_end_and_consistent_with_curves() -> None:
    src = SimulatorSource(AS_OF, seed=9, speed=1.0)  # a trading day per wall second
    src.start(0)
    insts = src.instruments()
    codes = [p.code for p in PRODUCT_SPECS]
    settles: list[tuple[list[Tick], list[CurveUpdate]]] = []
    for k in range(1, 13):  # 3 wall seconds in 0.25 s steps; the first day is 1/4 done
        b = src.advance(0.25, k)
        st = [t for t in b.ticks if t.kind == "settle"]
        sc = [c for c in b.curves if c.settle is not None]
        if st:
            settles.append((st, sc))
            assert k in (3, 7, 11)
    assert [sc[0].settle for _, sc in settles] == ["2026-11-24", "2026-11-25", "2026-11-26"]
    for st, sc in settles:
        assert [t.instrument for t in st] == [i.id for i in insts]
        assert all(t.bid is None and t.ask is None and t.size == 0 for t in st)
        assert [c.product for c in sc] == codes and all(c.full for c in sc)
        curve = {c.product: c.prices for c in sc}
        for t, inst in zip(st, insts, strict=True):
            assert t.last is not None
            tick = TICK_SIZE[inst.product]
            if inst.kind == "month":
                off = _month_key(inst.tenor) - _month_key(src.curve_start)
                assert t.last == pytest.approx(curve[inst.product][off], abs=1e-9)
            elif inst.kind != "spot":
                power = PRODUCT_BY_CODE[inst.product].weights == "hours"
                ref = _brute_strip(
                    curve[inst.product], src.curve_start, inst.start, inst.end, power
                )
                assert abs(t.last - ref) <= tick * 0.5 + 1e-9
    assert src.date == date(2026, 11, 27)


def test_curve_blocks_contiguous_and_consistent_with_ticks() -> None:
    src = SimulatorSource(AS_OF, seed=11)
    b0 = src.start(0)
    held = {c.product: list(c.prices) for c in b0.curves}
    start = src.curve_start
    blocks = 0
    per_product_per_s: dict[str, int] = {}
    for k in range(1, 101):  # 5 wall seconds
        b = src.advance(0.05, k)
        for c in b.curves:
            held[c.product] = _apply(held[c.product], start, c)
            blocks += not c.full
            per_product_per_s[c.product] = per_product_per_s.get(c.product, 0) + 1
        if b.curves:
            # the held (client-side) curve equals the source's published curve
            pub = src._published
            for p, code in enumerate(src.params.codes):
                np.testing.assert_allclose(held[code], pub[p], atol=1e-9)
            # month trades in the same batch bracket the curve point
            for t in b.ticks:
                product, tenor = t.instrument.split(":")
                if t.kind == "trade" and len(tenor) == 7 and tenor[4] == "-" and tenor[5] != "Q":
                    v = held[product][_month_key(tenor) - _month_key(start)]
                    assert t.bid is not None and t.ask is not None
                    assert t.bid - 1e-9 <= v <= t.ask + 1e-9
    assert blocks > 0
    assert max(per_product_per_s.values()) / 5 <= 4  # at most a few per product per second


def test_same_seed_same_output_different_seed_differs() -> None:
    def run(seed: int) -> list[object]:
        src = SimulatorSource(AS_OF, seed=seed, speed=0.2)
        out: list[object] = [src.start(0)]
        out += [src.advance(0.05, k) for k in range(1, 120)]
        return out

    a, b, c = run(21), run(21), run(22)
    assert a == b
    assert a != c


def test_month_end_roll_keeps_instruments_and_curve() -> None:
    src = SimulatorSource(AS_OF, seed=13, speed=20.0)  # 20 trading days per wall second
    src.start(0)
    insts = src.instruments()
    dec = next(i for i, x in enumerate(insts) if x.id == "CR-BRENT:2026-12")
    traded_after: set[str] = set()
    last_dec = None
    for k in range(1, 61):  # 3 wall seconds = 60 trading days: into February 2027
        b = src.advance(0.05, k)
        for c in b.curves:
            if c.full:
                assert c.start == src.curve_start and len(c.prices) == src.curve_length
        if src.date > date(2027, 1, 1):
            traded_after.update(t.instrument for t in b.ticks if t.kind == "trade")
            if last_dec is None:
                last_dec = src.mid_prices()[dec]
    assert src.date >= date(2027, 2, 1)
    assert "CR-BRENT:2026-12" not in traded_after  # delivered: no more trading
    assert src.mid_prices()[dec] == last_dec  # and frozen
    assert [i.id for i in src.instruments()] == [i.id for i in insts]


def test_advance_is_fast_also_with_120_months() -> None:
    for months in (24, 120):
        src = SimulatorSource(AS_OF, seed=1, months=months)
        src.start(0)
        times = []
        for k in range(300):
            t0 = time.perf_counter()
            src.advance(0.05, k)
            times.append(time.perf_counter() - t0)
        assert float(np.median(times)) < 0.005, (months, np.median(times))
    assert src.curve_length >= 120


def test_unknown_product_is_rejected() -> None:
    from dataclasses import replace

    odd = replace(PRODUCT_SPECS[0], code="PWR-XX")
    with pytest.raises(KeyError, match="PWR-XX"):
        SimulatorSource(AS_OF, products=[odd])


# ------------------------------------------------------------------ calibration vs ../shared


def _calibrate_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "tools" / "calibrate_feed.py"
    spec = importlib.util.spec_from_file_location("calibrate_feed", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: product whose baked numbers come from each calibrated series
_FROM_SERIES = {
    "brent": "CR-BRENT",
    "wti": "CR-WTI",
    "hh": "NG-HH",
    "ulsd": "RP-ULSD-NYH",
    "gasoline": "RP-RBOB-NYH",
    "heating_oil": "RP-GASOIL",
    "de": "PWR-DE-BASE",
}
_PAIR = {
    ("brent", "wti"): ("CR-BRENT", "CR-WTI"),
    ("brent", "hh"): ("CR-BRENT", "NG-HH"),
    ("wti", "hh"): ("CR-WTI", "NG-HH"),
    ("brent_fred", "ulsd"): ("CR-BRENT", "RP-ULSD-NYH"),
    ("brent_fred", "gasoline"): ("CR-BRENT", "RP-RBOB-NYH"),
    ("brent_fred", "heating_oil"): ("CR-BRENT", "RP-GASOIL"),
    ("ulsd", "gasoline"): ("RP-ULSD-NYH", "RP-RBOB-NYH"),
    ("ulsd", "heating_oil"): ("RP-ULSD-NYH", "RP-GASOIL"),
    ("gasoline", "heating_oil"): ("RP-RBOB-NYH", "RP-GASOIL"),
    ("de", "hh"): ("PWR-DE-BASE", "NG-HH"),
    ("de", "brent"): ("PWR-DE-BASE", "CR-BRENT"),
}


def test_sim_params_reestimated_from_shared_market_data() -> None:
    need_shared("data/market/eia-oil-prices/brent-daily.csv")
    mod = _calibrate_module()
    params, seasonal, corr = mod.calibrate()
    fields = (
        "sigma_front", "sigma_long", "tau", "kappa", "kappa_long", "sigma_spot",
        "jump_intensity", "jump_size", "jump_up_share", "jump_decay",
    )  # fmt: skip
    for series, code in _FROM_SERIES.items():
        baked = SIM_PARAMS[code]
        est = params[series]
        for f in fields:
            want = est[f]
            if f == "jump_intensity" and est["jump_decay"] < SPIKE_MIN_DECAY:
                want = 0.0  # persistent jumps: no separate spike process
            assert getattr(baked, f) == pytest.approx(want, rel=0.01, abs=1e-3), (code, f)
        assert baked.shift / baked.level == pytest.approx(est["shift_fraction"], rel=1e-9)
    assert SIM_PARAMS["NG-HH"].jump_intensity > 0 and SIM_PARAMS["PWR-DE-BASE"].jump_intensity > 0
    assert SIM_PARAMS["CR-BRENT"].jump_intensity == 0.0
    de = params["de"]
    assert de["share_nonpositive"] == pytest.approx(0.0044, abs=2e-4)
    for key, name in (("hh", "gas"), ("de", "power"), ("gasoline", "gasoline"), ("heating_oil", "distillate")):  # fmt: skip
        np.testing.assert_allclose(SEASONAL[name], seasonal[key], atol=6e-4)
    for pair, (a, b) in _PAIR.items():
        assert CORRELATIONS[(a, b)] == pytest.approx(corr[pair], abs=6e-4), pair
    # and every baked product uses the catalogue level
    for code, pp in SIM_PARAMS.items():
        assert pp.level == PRODUCT_BY_CODE[code].typical_level
    mp = model_params(SIM_PARAMS)
    assert np.linalg.eigvalsh(mp.correlation).min() > 0
