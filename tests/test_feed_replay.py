"""Replay price source (app.feed.replay): exact spot replay across the April 2020 WTI event,
forward proxy strips against brute-force averages, speed accounting, caps, looping, the bundled
EIA files and the protocol validity of everything emitted."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

from app.engine.curves import delivery_hours
from app.feed.history import SeriesMapping, read_series
from app.feed.instruments import Instrument
from app.feed.protocol import CurveUpdate, Tick, encode_frame, parse_server_message
from app.feed.replay import (
    DEFAULT_START,
    ReplaySource,
    TermShape,
    bundled_series,
    default_shape,
    market_resources_dir,
)
from app.feed.source import Batch, PriceSource
from app.models.catalogue import PRODUCT_BY_CODE
from tests.conftest import need_shared

NOW = 1_790_000_000_000_000_000


def _csv(tmp_path: Path, rows: list[tuple[date, float | None]], name: str = "s.csv") -> Path:
    path = tmp_path / name
    body = "".join(f"{d.isoformat()},{'' if v is None else v}\r\n" for d, v in rows)
    path.write_bytes(("Date,Price\r\n" + body).encode())
    return path


def _daily(tmp_path: Path, n: int, first: date = date(2021, 3, 1), name: str = "s.csv") -> Path:
    return _csv(tmp_path, [(first + timedelta(days=i), 10.0 + i) for i in range(n)], name)


def _spot(batch: Batch, product: str, kind: str = "trade") -> list[Tick]:
    return [t for t in batch.ticks if t.instrument == f"{product}:SPOT" and t.kind == kind]


def _settle_dates(batch: Batch, product: str | None = None) -> list[str]:
    return [
        c.settle
        for c in batch.curves
        if c.settle is not None and (product is None or c.product == product)
    ]


def _brute_force(inst: Instrument, curve: CurveUpdate, power: bool) -> float:
    first = np.datetime64(curve.start, "M")
    num = den = 0.0
    d = inst.start
    while d <= inst.end:
        k = int((np.datetime64(d, "M") - first).astype(int))
        w = delivery_hours(d) if power else 1.0
        num += w * curve.prices[k]
        den += w
        d += timedelta(days=1)
    return num / den


# --------------------------------------------------------------------------- bundled data


@pytest.mark.parametrize(
    ("bundled", "shared"),
    [
        ("eia-brent-daily.csv", "eia-oil-prices/brent-daily.csv"),
        ("eia-wti-daily.csv", "eia-oil-prices/wti-daily.csv"),
        ("eia-natural-gas-daily.csv", "eia-natural-gas/daily.csv"),
    ],
)
def test_bundled_files_are_byte_identical(bundled: str, shared: str) -> None:
    ours = (market_resources_dir() / bundled).read_bytes()
    theirs = need_shared(f"data/market/{shared}").read_bytes()
    assert hashlib.sha256(ours).hexdigest() == hashlib.sha256(theirs).hexdigest()


def test_bundle_holds_only_eia_files_and_attribution() -> None:
    d = market_resources_dir()
    assert sorted(p.name for p in d.iterdir()) == [
        "README.md",
        "eia-brent-daily.csv",
        "eia-natural-gas-daily.csv",
        "eia-wti-daily.csv",
    ]
    readme = (d / "README.md").read_text(encoding="utf-8")
    for needle in (
        "Source: U.S. Energy Information Administration",
        "https://github.com/datasets/oil-prices",
        "https://github.com/datasets/natural-gas",
        "2d75ce3a792c2f152619c10272e86052be3a8390",
        "f7771269b6241e01e6b88408da03723029e2e82d",
        "RBRTE",
        "RWTC",
        "Henry Hub",
        "public domain",
        "ODC-PDDL-1.0",
    ):
        assert needle in readme


def test_bundled_series_mapping_and_frozen_location(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maps = bundled_series()
    assert [(m.path.name, m.product) for m in maps] == [
        ("eia-brent-daily.csv", "CR-BRENT"),
        ("eia-wti-daily.csv", "CR-WTI"),
        ("eia-natural-gas-daily.csv", "NG-HH"),
    ]
    assert all(m.path.is_file() for m in maps)
    assert market_resources_dir() == Path(__file__).resolve().parents[1] / "resources" / "market"
    monkeypatch.setattr("sys._MEIPASS", str(tmp_path), raising=False)
    assert market_resources_dir() == tmp_path / "resources" / "market"
    assert bundled_series()[0].path == tmp_path / "resources" / "market" / "eia-brent-daily.csv"


# --------------------------------------------------------------------------- the WTI event


def test_default_source_reaches_april_2020_exactly() -> None:
    src: PriceSource = ReplaySource()  # bundled EIA series, default start 2020-01-02, speed 1
    assert isinstance(src, ReplaySource)
    assert src.mode == "replay" and src.first_day == DEFAULT_START == date(2020, 1, 2)
    assert {i.product for i in src.instruments()} == {"CR-BRENT", "CR-WTI", "NG-HH"}
    src.start(NOW)
    assert src.replay_date == date(2019, 12, 31)  # the last trading day before the start
    seen: dict[str, float] = {}
    for _ in range(120):
        batch = src.advance(1.0, NOW)
        for t in _spot(batch, "CR-WTI"):
            seen[src.replay_date.isoformat()] = t.last  # type: ignore[assignment]
        if src.replay_date >= date(2020, 4, 21):
            break
    assert seen["2020-04-17"] == 18.31
    assert seen["2020-04-20"] == -36.98
    assert seen["2020-04-21"] == 8.91
    assert "2020-04-18" not in seen  # weekends are not trading days
    assert src.replay_date == date(2020, 4, 21)


def test_wti_replay_from_shared_file_spot_settle_and_curves() -> None:
    path = need_shared("data/market/eia-oil-prices/wti-daily.csv")
    src = ReplaySource([SeriesMapping(path, "CR-WTI")], start=date(2020, 4, 16), loop=False)
    init = src.start(NOW)
    wti = read_series(path)
    prev = wti.value_on(date(2020, 4, 15))
    assert {t.last for t in _spot(init, "CR-WTI", "settle")} == {prev}
    assert [c.settle for c in init.curves] == ["2020-04-15"]
    n_inst = len(src.instruments())
    assert len(init.ticks) == 2 * n_inst and len(init.curves) == 1
    day_before = wti.value_on(date(2020, 4, 16))
    assert day_before is not None
    expected = {
        "2020-04-16": day_before,
        "2020-04-17": 18.31,
        "2020-04-20": -36.98,
        "2020-04-21": 8.91,
    }
    for day, value in expected.items():
        batch = src.advance(1.0, NOW + 7)
        assert src.replay_date.isoformat() == day
        (trade,) = _spot(batch, "CR-WTI")
        (settle,) = _spot(batch, "CR-WTI", "settle")
        assert trade.last == value and settle.last == value
        assert trade.bid is not None and trade.ask is not None
        assert trade.bid < value < trade.ask
        assert trade.ask - trade.bid == pytest.approx(2 * 0.0005 * 70.0, abs=1e-6)
        assert trade.ts == NOW + 7 and settle.bid is None
        live, sett = batch.curves
        assert live.settle is None and sett.settle == day and live.prices == sett.prices
        assert live.full and live.start == "2020-05"
        # the curve moves in parallel with spot: curve - spot is the fixed contango proxy
        k = np.arange(1, len(live.prices) + 1)
        slope = default_shape(PRODUCT_BY_CODE["CR-WTI"]).slope
        assert np.allclose(np.array(live.prices) - value, slope * k, atol=1e-9)
        assert len(batch.ticks) == 2 * n_inst  # trade + settle per instrument
    assert min(src.curve_prices("CR-WTI", -36.98, date(2020, 4, 20))) < 0


def test_everything_emitted_passes_the_protocol_validators(tmp_path: Path) -> None:
    path = _csv(tmp_path, [(date(2020, 4, 17), 18.31), (date(2020, 4, 20), -36.98)])
    src = ReplaySource([SeriesMapping(path, "CR-WTI")], start=None, loop=False)
    batches = [src.start(NOW), src.advance(5.0, NOW)]
    seq = 0
    ids = {i.id for i in src.instruments()}
    for b in batches:
        msgs: list[Tick | CurveUpdate] = [*b.ticks, *b.curves]
        for msg in msgs:
            seq += 1
            msg.seq = seq
            if isinstance(msg, Tick):
                assert msg.instrument in ids
                msg.stream = "CR-WTI"
            encode_frame([msg.to_message()])  # finite numbers only
            parsed = parse_server_message(msg.to_message())
            assert isinstance(parsed, Tick | CurveUpdate)
    assert src.finished


# --------------------------------------------------------------------------- forward proxy


@pytest.mark.parametrize("product", ["CR-WTI", "NG-HH", "PWR-DE-BASE"])
def test_forward_strips_equal_brute_force_weighted_averages(tmp_path: Path, product: str) -> None:
    rows: list[tuple[date, float | None]] = [
        (date(2023, 10, 27), 55.0),
        (date(2023, 10, 30), -12.5),
        (date(2024, 2, 29), 80.25),
    ]
    src = ReplaySource([SeriesMapping(_csv(tmp_path, rows), product)], start=None)
    src.start(NOW)
    insts = {i.id: i for i in src.instruments()}
    power = PRODUCT_BY_CODE[product].weights == "hours"
    kinds: set[str] = set()
    for _ in rows:
        batch = src.advance(1.0, NOW)
        live = next(c for c in batch.curves if c.settle is None)
        # the monthly curve is spot + the fixed additive shape (seasonal and slope)
        spot = next(t.last for t in _spot(batch, product))
        assert spot is not None
        months = np.datetime64(live.start, "M") + np.arange(len(live.prices))
        shape = default_shape(PRODUCT_BY_CODE[product])
        assert np.allclose(live.prices, spot + shape.offsets(months, src.replay_date), atol=1e-9)
        for t in batch.ticks:
            inst = insts[t.instrument]
            if inst.kind == "spot":
                continue
            kinds.add(inst.kind)
            assert inst.start >= np.datetime64(live.start, "D")
            assert t.last == pytest.approx(_brute_force(inst, live, power), abs=1e-9)
    expected = {"month", "quarter", "cal"} | ({"season"} if product != "CR-WTI" else set())
    assert kinds == expected


def test_term_shape_offsets() -> None:
    shape = TermShape(0.5, tuple(float(m) for m in range(12)))  # Jan 0 .. Dec 11
    months = np.arange(np.datetime64("2024-01"), np.datetime64("2024-06"))
    off = shape.offsets(months, date(2024, 3, 15))
    # Jan, Feb (past) and Mar (delivering) -> 0; Apr: k=1 -> 0.5 + 3 - 2; May: k=2 -> 1 + 4 - 2
    assert off.tolist() == [0.0, 0.0, 0.0, 1.5, 3.0]
    with pytest.raises(ValueError, match="12 monthly"):
        TermShape(0.1, (0.0,) * 11)


def test_shape_override_and_curve_converges_to_spot_after_the_instruments(
    tmp_path: Path,
) -> None:
    rows: list[tuple[date, float | None]] = [
        (date(2020, 1, 2), 50.0),
        (date(2030, 1, 2), 60.0),
    ]
    src = ReplaySource(
        [SeriesMapping(_csv(tmp_path, rows), "CR-BRENT")],
        start=None,
        shapes={"CR-BRENT": TermShape(1.0)},
    )
    src.start(NOW)
    first = src.advance(1.0, NOW).curves[0]
    assert first.prices[:3] == [51.0, 52.0, 53.0]
    late = src.advance(1.0, NOW)
    assert late.curves[0].prices == [60.0] * len(first.prices)  # fixed length, all delivered
    assert {t.last for t in late.ticks} == {60.0}


# --------------------------------------------------------------------------- speed, caps, loop


def test_speed_accounting(tmp_path: Path) -> None:
    src = ReplaySource([SeriesMapping(_daily(tmp_path, 40), "NG-HH")], start=None, speed=2.0)
    src.start(NOW)
    assert len(_settle_dates(src.advance(2.5, NOW))) == 5
    assert src.replay_date == date(2021, 3, 5)
    assert _settle_dates(src.advance(0.25, NOW)) == []  # 0.5 day carried
    assert _settle_dates(src.advance(0.25, NOW)) == ["2021-03-06"]
    src.speed = 1.0
    got = [len(_settle_dates(src.advance(0.1, NOW))) for _ in range(10)]
    assert sum(got) == 1 and got[-1] == 1  # ten 0.1 s steps make exactly one day
    assert src.advance(0.0, NOW).ticks == []
    with pytest.raises(ValueError, match="wall_seconds"):
        src.advance(-1.0, NOW)
    with pytest.raises(ValueError, match="wall_seconds"):
        src.advance(float("nan"), NOW)
    with pytest.raises(ValueError, match="speed"):
        src.speed = 0.0


def test_large_steps_are_capped_and_carried(tmp_path: Path) -> None:
    src = ReplaySource(
        [SeriesMapping(_daily(tmp_path, 40), "NG-HH")],
        start=None,
        loop=False,
        max_days_per_call=3,
    )
    src.start(NOW)
    assert _settle_dates(src.advance(10.0, NOW)) == ["2021-03-01", "2021-03-02", "2021-03-03"]
    assert src.pending_days == pytest.approx(7.0)
    assert len(_settle_dates(src.advance(0.0, NOW))) == 3
    assert len(_settle_dates(src.advance(1e12, NOW))) == 3  # huge step: still 3
    src.speed = 1e300
    assert len(_settle_dates(src.advance(1e300, NOW))) == 3  # no overflow
    assert not src.finished


def test_default_cap_bounds_a_full_speed_step() -> None:
    src = ReplaySource(speed=1e9)
    src.start(NOW)
    batch = src.advance(1.0, NOW)
    days = set(_settle_dates(batch))
    assert len(days) == 500
    assert len(batch.curves) == len(_settle_dates(batch)) * 2


def test_loop_restarts_at_the_start(tmp_path: Path) -> None:
    path = _daily(tmp_path, 10)
    src = ReplaySource([SeriesMapping(path, "CR-WTI")], start=date(2021, 3, 6), loop=True)
    src.start(NOW)
    assert src.replay_date == date(2021, 3, 5)
    got = _settle_dates(src.advance(7.0, NOW))
    assert got == [
        "2021-03-06",
        "2021-03-07",
        "2021-03-08",
        "2021-03-09",
        "2021-03-10",
        "2021-03-06",
        "2021-03-07",
    ]
    assert src.loops == 1 and not src.finished and src.replay_date == date(2021, 3, 7)
    assert src.days_total == 5


def test_no_loop_finishes_only_when_exhausted(tmp_path: Path) -> None:
    src = ReplaySource([SeriesMapping(_daily(tmp_path, 5), "CR-WTI")], start=None, loop=False)
    src.start(NOW)
    assert len(_settle_dates(src.advance(4.0, NOW))) == 4
    assert not src.finished
    assert len(_settle_dates(src.advance(3.0, NOW))) == 1
    assert src.finished and src.pending_days == 0.0
    assert len(src.advance(100.0, NOW)) == 0
    src.start(NOW)  # start rewinds
    assert not src.finished and src.replay_date == date(2021, 2, 28)


def test_holidays_produce_no_ticks_and_instruments_stay_fixed(tmp_path: Path) -> None:
    a = _csv(tmp_path, [(date(2021, 3, 1), 1.0), (date(2021, 3, 2), 2.0)], "a.csv")
    b = _csv(tmp_path, [(date(2021, 3, 2), 3.0), (date(2021, 3, 3), None)], "b.csv")
    src = ReplaySource(
        [SeriesMapping(a, "CR-WTI"), SeriesMapping(b, "CR-BRENT")], start=None, loop=False
    )
    insts = src.instruments()
    init = src.start(NOW)
    # no value before the first day: the initial settlement is the series' first value
    assert {t.last for t in _spot(init, "CR-BRENT", "settle")} == {3.0}
    assert sorted(c.settle or "" for c in init.curves) == ["2021-03-01", "2021-03-02"]
    day1 = src.advance(1.0, NOW)
    assert _spot(day1, "CR-BRENT") == [] and [t.last for t in _spot(day1, "CR-WTI")] == [1.0]
    day2 = src.advance(1.0, NOW)
    assert [t.last for t in _spot(day2, "CR-BRENT")] == [3.0]
    assert [t.last for t in _spot(day2, "CR-WTI")] == [2.0]
    assert src.finished  # 2021-03-03 holds only a missing value, so it is no trading day
    assert src.instruments() == insts


def test_constructor_errors(tmp_path: Path) -> None:
    path = _daily(tmp_path, 3)
    m = SeriesMapping(path, "CR-WTI")
    with pytest.raises(ValueError, match="after the last date"):
        ReplaySource([m], start=date(2022, 1, 1))
    with pytest.raises(ValueError, match="mapped more than once"):
        ReplaySource([m, SeriesMapping(path, "CR-WTI")])
    with pytest.raises(ValueError, match="at least one"):
        ReplaySource([])
    with pytest.raises(ValueError, match="speed"):
        ReplaySource([m], speed=-1.0)
    with pytest.raises(ValueError, match="max_days_per_call"):
        ReplaySource([m], max_days_per_call=0)
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Price\n2021-01-01,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 2"):
        ReplaySource([SeriesMapping(bad, "CR-WTI")])


def test_ember_power_replay_from_shared_file() -> None:
    path = need_shared(
        "data/market/ember-eu-power/european_wholesale_electricity_price_data_daily.csv"
    )
    src = ReplaySource(
        [SeriesMapping(path, "PWR-DE-BASE", "DEU")], start=date(2017, 10, 28), loop=False
    )
    src.start(NOW)
    src.advance(1.0, NOW)
    batch = src.advance(1.0, NOW)
    assert src.replay_date == date(2017, 10, 29)
    assert [t.last for t in _spot(batch, "PWR-DE-BASE")] == [-47.46]
    assert any(i.kind == "season" for i in src.instruments())
