"""Recorded market data on SQLite and PostgreSQL, and the feed recorder that writes it."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import numpy as np
import pytest

from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, Tick
from app.feed.recorder import MarketRecorder
from app.models.market_data import MarketDataRepository, TickRow
from app.models.store import Store

NS = 1_000_000_000
T0 = 1_790_000_000 * NS


def test_ticks_round_trip_in_time_order(any_store: Store) -> None:
    repo = MarketDataRepository(any_store)
    rows = [
        TickRow("CR-WTI:SPOT", T0 + 3 * NS, "trade", 8.9, 8.93, 8.91, 5),
        TickRow("CR-WTI:SPOT", T0 + 1 * NS, "trade", 18.3, 18.32, 18.31, 1),
        TickRow("CR-WTI:SPOT", T0 + 2 * NS, "settle", None, None, -36.98, 0),
        TickRow("NG-HH:SPOT", T0 + 2 * NS, "trade", 3.1, 3.2, 3.15, 2),
    ]
    assert repo.record_ticks(rows) == 4
    ts, last = repo.tick_history("CR-WTI:SPOT")
    assert ts.dtype == np.int64 and last.dtype == np.float64
    assert ts.tolist() == [T0 + NS, T0 + 2 * NS, T0 + 3 * NS]
    assert last.tolist() == [18.31, -36.98, 8.91]  # negative price kept exactly
    ts, last = repo.tick_history("CR-WTI:SPOT", kind="settle")
    assert last.tolist() == [-36.98]
    ts, _ = repo.tick_history("CR-WTI:SPOT", since_ns=T0 + 2 * NS)
    assert ts.tolist() == [T0 + 2 * NS, T0 + 3 * NS]
    ts, last = repo.tick_history("CR-WTI:SPOT", limit=2)
    assert last.tolist() == [-36.98, 8.91]  # the latest rows, still in time order
    latest = {r.instrument: r.last for r in repo.latest_ticks()}
    assert latest == {"CR-WTI:SPOT": 8.91, "NG-HH:SPOT": 3.15}
    assert repo.latest_settles() == {"CR-WTI:SPOT": -36.98}
    assert repo.prune_ticks(T0 + 3 * NS) == 2  # the two older trade ticks, not the settle
    assert repo.tick_count() == 2


def test_settlement_curves_latest_and_as_of(any_store: Store) -> None:
    repo = MarketDataRepository(any_store)
    d1, d2 = dt.date(2026, 11, 20), dt.date(2026, 11, 23)
    repo.save_settlement("NG-TTF", d1, "2026-12", [33.0, 34.5, 35.25], T0, "test")
    repo.save_settlement("NG-TTF", d2, "2026-12", [31.0, 32.5, 33.25], T0 + NS, "test")
    repo.save_settlement("NG-TTF", d2, "2026-12", [30.0, 32.5, 33.25], T0 + 2 * NS, "test")
    repo.save_settlement("CR-WTI", d1, "2027-01", [-1.5, 60.0], T0, "test")
    latest = repo.latest_settlement_curves()
    assert set(latest) == {"NG-TTF", "CR-WTI"}
    assert latest["NG-TTF"].settle_date == d2 and latest["NG-TTF"].prices == (30.0, 32.5, 33.25)
    assert latest["CR-WTI"].prices == (-1.5, 60.0)
    past = repo.settlement_curve("NG-TTF", dt.date(2026, 11, 22))
    assert past is not None and past.settle_date == d1 and past.prices[0] == 33.0
    assert [str(m) for m in past.months] == ["2026-12", "2027-01", "2027-02"]
    assert repo.settlement_curve("NG-TTF", dt.date(2026, 1, 1)) is None
    assert repo.settlement_dates("NG-TTF") == [d1, d2]
    with pytest.raises(ValueError, match="finite"):
        repo.save_settlement("NG-TTF", d1, "2026-12", [float("nan")], T0)


def _tick(inst: str, ts: int, last: float, kind: str = "trade") -> Tick:
    return Tick(inst, last - 0.01, last + 0.01, last, 1.0, ts, kind)


def test_recorder_samples_intraday_keeps_every_settlement(sqlite_store: Store) -> None:
    state = MarketState()
    repo = MarketDataRepository(sqlite_store)
    rec = MarketRecorder(state, repo, sample_seconds=10, flush_seconds=60)
    state.add_listener(rec.on_event)
    # 100 ticks one second apart: sampled every 10 s -> 10 rows (brute force below)
    ticks = [_tick("NG-HH:2027-01", T0 + k * NS, 3.0 + k / 100) for k in range(100)]
    state.apply_ticks(ticks)
    state.apply_ticks([_tick("NG-HH:2027-01", T0 + 100 * NS, 4.0, "settle")])
    state.apply_curve(CurveUpdate("NG-HH", "2026-12", [3.1, 3.2], T0, True, "2026-11-24"))
    state.apply_curve(CurveUpdate("NG-HH", "2026-12", [3.3, 3.4], T0, True, None))  # live: not kept
    assert rec.flush() == 12
    _ts, last = repo.tick_history("NG-HH:2027-01")
    expected, prev = [], None
    for t in ticks:  # brute force: first tick of each 10 s window after the previous sample
        if prev is None or t.ts - prev >= 10 * NS:
            expected.append(t.last)
            prev = t.ts
    assert last.tolist() == [*expected, 4.0]
    curve = repo.settlement_curve("NG-HH")
    assert curve is not None and curve.prices == (3.1, 3.2)
    assert rec.flush() == 0


def test_recorder_keeps_batch_when_store_fails_and_stays_bounded(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = MarketState()
    repo = MarketDataRepository(sqlite_store)
    rec = MarketRecorder(state, repo, sample_seconds=0, max_pending=50)
    state.add_listener(rec.on_event)
    state.apply_ticks([_tick("CR-WTI:SPOT", T0 + k, 70.0) for k in range(30)])

    def broken(rows: object) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(repo, "record_ticks", broken)
    assert rec.flush() == 0
    assert rec.stats()["pending"] == 30 and rec.errors == 1
    state.apply_ticks([_tick("CR-WTI:SPOT", T0 + 1000 + k, 71.0) for k in range(40)])
    assert rec.stats()["pending"] == 50 and rec.dropped == 20  # bounded, oldest dropped
    monkeypatch.undo()
    assert rec.flush() == 50
    ts, last = repo.tick_history("CR-WTI:SPOT")
    assert ts.size == 50 and last[-1] == 71.0 and ts[0] == T0 + 20  # the 20 oldest went


def test_recorder_thread_writes_and_history_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store.open_file(path)
    state = MarketState()
    rec = MarketRecorder(state, MarketDataRepository(store), sample_seconds=0, flush_seconds=0.05)
    rec.start()
    now = time.time_ns()  # recent: older intraday ticks would be pruned by the retention rule
    state.apply_ticks([_tick("PWR-DE-BASE:SPOT", now + k * NS, -5.0 + k) for k in range(5)])
    deadline = time.monotonic() + 10
    while rec.stats()["written"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.stop()
    store.close()
    reopened = Store.open_file(path)
    try:
        _, last = MarketDataRepository(reopened).tick_history("PWR-DE-BASE:SPOT")
        assert last.tolist() == [-5.0, -4.0, -3.0, -2.0, -1.0]
    finally:
        reopened.close()


def test_snapshot_drops_recorded_quotes_the_feed_no_longer_quotes() -> None:
    """Yesterday's recorded quote of an expired month must not look live after a snapshot."""
    from app.feed.protocol import Snapshot

    state = MarketState()
    state.apply_ticks([_tick("NG-HH:2026-11", T0, 3.1), _tick("NG-HH:2026-12", T0, 3.3)])
    state.apply_ticks([_tick("CR-WTI:SPOT", T0, 70.0)])
    state.set_stale(None)
    snap = Snapshot("NG-HH", 1, [_tick("NG-HH:2026-12", T0 + NS, 3.4)], None, {})
    state.apply_snapshot(snap)
    assert state.quote("NG-HH:2026-11") is None
    q = state.quote("NG-HH:2026-12")
    assert q is not None and q.last == 3.4
    assert state.quote("CR-WTI:SPOT") is not None  # other streams untouched
