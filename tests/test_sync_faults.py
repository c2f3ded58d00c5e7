"""Sync under faults: workstation processes killed at every step of the write path, the
connection cut at COMMIT, PostgreSQL crashes and restores, network faults, lost notifications,
poison writes, races. Every run is checked by tests/sync_checker.py: no acknowledged write lost,
no duplicate, monotonic reads, every desk converges."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from app.models.entities import OutboxItem
from tests.desk import CentralDesk
from tests.sync_checker import check, read_history
from tests.sync_helpers import Workstation

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[1]
_n = itertools.count(1)


@pytest.fixture
def desk(desk_server: Any) -> CentralDesk:
    d = CentralDesk.create(desk_server, f"faults{next(_n)}")
    for name in ("alice", "adam", "anna"):
        d.add_user(name, "TRADER", ("DESK-A",))
    d.add_user("bob", "TRADER", ("DESK-B",))
    return d


class Desks:
    """Workstation processes (separate data dirs) sharing one central database."""

    def __init__(self, root: Path, desk: CentralDesk) -> None:
        self.root = root
        self.desk = desk
        self.history = root / "history"
        self.history.mkdir()

    def dir(self, user: str) -> Path:
        d = self.root / user
        d.mkdir(exist_ok=True)
        return d

    def args(self, user: str, *, n: int = 0, start: int = 0, book: str = "DESK-A",
             kill_at: str = "", drain: bool = False, sync_every: int = 5, hot: str = "",
             port: int | None = None) -> list[str]:  # fmt: skip
        a = [sys.executable, "-m", "tests.sync_proc", "--dir", str(self.dir(user)),
             "--dsn", self.desk.dsn(user, port=port), "--user", user, "--book", book,
             "--n", str(n), "--start", str(start), "--sync-every", str(sync_every),
             "--history", str(self.history / f"{user}.jsonl")]  # fmt: skip
        if kill_at:
            a += ["--kill-at", kill_at]
        if drain:
            a.append("--drain")
        if hot:
            a += ["--amend-hot", hot]
        return a

    def run(self, user: str, *, fault: str = "", timeout: float = 120, **kw: Any) -> int:
        env = {**os.environ, "QE_FAULT_POINT": fault}
        res = subprocess.run(self.args(user, **kw), cwd=ROOT, env=env, timeout=timeout,
                             capture_output=True, text=True)  # fmt: skip
        if res.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(f"{user} exited {res.returncode}: {res.stderr[-2000:]}")
        return res.returncode

    def spawn(self, user: str, **kw: Any) -> subprocess.Popen[bytes]:
        with open(self.root / f"{user}.stderr", "ab") as err:
            return subprocess.Popen(self.args(user, **kw), cwd=ROOT,
                                    env={**os.environ, "QE_FAULT_POINT": ""},
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip

    def stderr(self, user: str) -> str:
        p = self.root / f"{user}.stderr"
        return p.read_text()[-2000:] if p.exists() else ""

    def check(self, users: tuple[str, ...]) -> Any:
        hist = read_history(self.history / f"{u}.jsonl" for u in users)
        readable = {u: ({"DESK-B"} if u == "bob" else {"DESK-A"}) for u in users}
        stores = {u: self.dir(u) / "store.db" for u in users}
        rep = check(hist, self.desk, stores, readable)
        assert rep.ok, rep.summary() + "\n" + "\n".join(
            rep.lost[:5] + rep.duplicated[:5] + rep.unexplained[:5] + rep.non_monotonic[:5]
            + rep.diverged[:5]
        )  # fmt: skip
        return rep


@pytest.fixture
def desks(tmp_path: Path, desk: CentralDesk) -> Desks:
    return Desks(tmp_path, desk)


# -- kill -9 at every step of the write path ------------------------------------------------

POINTS = [
    ("kill_at", "before_local_commit:7"),
    ("kill_at", "after_local_commit:7"),
    ("fault", "push.before_commit"),
    ("fault", "push.after_commit"),
    ("fault", "pull.before_commit"),
    ("fault", "pull.after_commit"),
]


@pytest.mark.parametrize(("kind", "where"), POINTS, ids=[p[1].split(":")[0] for p in POINTS])
def test_kill_at_each_step_loses_nothing(desks: Desks, kind: str, where: str) -> None:
    # adam has pushed first, so alice's first sync also has something to pull
    assert desks.run("adam", n=12, drain=True) == 0
    kw = {"kill_at": where} if kind == "kill_at" else {"fault": where}
    assert desks.run("alice", n=20, **kw) == -signal.SIGKILL
    # restarted on the same data dir: books more, drains
    assert desks.run("alice", n=5, start=20, drain=True) == 0
    assert desks.run("adam", n=3, start=12, drain=True) == 0
    assert desks.run("alice", drain=True) == 0
    rep = desks.check(("alice", "adam"))
    assert rep.acknowledged >= 12 + 3 + 5


def test_random_kills_soak(desks: Desks) -> None:
    """Two desks book continuously while killed at random moments (CI version: 8 kills)."""
    rng = random.Random(7)
    kills = 0
    start = {"alice": 0, "adam": 0}
    while kills < 8:
        before = {u: _oks(desks, u) for u in start}
        procs = {u: desks.spawn(u, n=60, start=start[u], sync_every=3) for u in start}
        # kill at a random moment once both are booking (start-up time varies a lot)
        _wait(lambda b=before: all(_oks(desks, u) > b[u] for u in start), 60)
        time.sleep(rng.uniform(0.0, 1.0))
        for u, p in procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(30)
            start[u] += 60
    for u in start:
        assert desks.run(u, drain=True) == 0
    for u in start:
        assert desks.run(u, drain=True) == 0
    rep = desks.check(("alice", "adam"))
    assert rep.acknowledged > 20


def _oks(desks: Desks, user: str) -> int:
    p = desks.history / f"{user}.jsonl"
    return p.read_text().count('"phase": "ok"') if p.exists() else 0


# -- ambiguous commit -------------------------------------------------------------------------


def test_ambiguous_commit_is_applied_once(tmp_path: Path, desk: CentralDesk,
                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The server committed but the client never learnt it: the retry with the same
    idempotency key is applied once."""
    from app.sync import engine as engine_mod

    a = Workstation(tmp_path / "a", desk, "alice")
    try:
        recs = [a.book(quantity=str(100 + i)) for i in range(10)]
        real = engine_mod.faults.point

        def lose_reply(name: str) -> None:
            if name == "push.after_commit":
                a.engine._shutdown = True
                raise OSError("connection reset at COMMIT (simulated lost reply)")
            real(name)

        monkeypatch.setattr(engine_mod.faults, "point", lose_reply)
        with pytest.raises(OSError):
            a.engine.sync_once()
        monkeypatch.setattr(engine_mod.faults, "point", real)
        a.engine._close()
        with a.store.session() as s:
            assert s.scalar(select(text("count(*)")).select_from(OutboxItem).where(
                OutboxItem.state == "pending")) == 10  # fmt: skip
        a.engine.sync_once()
        assert a.engine.counters.duplicates == 10 and a.engine.counters.pushed == 0
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 10
            assert c.execute("SELECT count(*) FROM change_log").fetchone()[0] == 10
        assert {r.trade_uuid for r in recs} == {r.trade_uuid for r in a.repo.current_records()}
    finally:
        a.close()


def test_same_key_with_another_payload_is_rejected(tmp_path: Path, desk: CentralDesk) -> None:
    a = Workstation(tmp_path / "a", desk, "alice")
    try:
        a.book()
        a.engine.sync_once()
        with a.store.session() as s:
            item = s.scalars(select(OutboxItem)).one()
            item.state = "pending"
        # the local version changes under the same key (a tampered or buggy client)
        with a.store.session() as s:
            s.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            s.execute(text("UPDATE trade SET price = price + 1000000"))
        a.engine.sync_once()
        with a.store.session() as s:
            item = s.scalars(select(OutboxItem)).one()
        assert item.state == "rejected"
        assert "already used for a different change" in item.last_error
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 1
    finally:
        a.close()


# -- PostgreSQL crash, restart and restore ------------------------------------------------------


@pytest.mark.parametrize("during", ["upload", "pull"])
def test_postgres_crash_during_sync(tmp_path: Path, desk: CentralDesk, desk_server: Any,
                                    monkeypatch: pytest.MonkeyPatch, during: str) -> None:  # fmt: skip
    from app.sync import engine as engine_mod

    a = Workstation(tmp_path / "a", desk, "alice", batch=10)
    a2 = Workstation(tmp_path / "a2", desk, "adam", pull_batch=10)
    try:
        for i in range(30):
            a.book(quantity=str(100 + i))
        if during == "pull":
            a.engine.sync_once()
        real = engine_mod.faults.point
        crashed = []

        def crash(name: str) -> None:
            if name == ("push.before_commit" if during == "upload" else "pull.before_commit") \
                    and not crashed:  # fmt: skip
                crashed.append(name)
                desk_server.stop_only("immediate")
            real(name)

        monkeypatch.setattr(engine_mod.faults, "point", crash)
        w = a if during == "upload" else a2
        with pytest.raises(Exception):  # noqa: B017 - any connection error
            w.engine.sync_once()
        assert crashed
        # what was committed locally stays, with its checkpoint; nothing half-applied
        assert a2.repo.count_current() in (0, 10, 20)
        desk_server.start()
        w.engine._close()
        for _ in range(3):
            a.engine.sync_once()
            a2.engine.sync_once()
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 30
        assert a2.repo.count_current() == 30 == a.repo.count_current()
    finally:
        if not desk_server_running(desk_server):
            desk_server.start()
        a.close()
        a2.close()


def desk_server_running(server: Any) -> bool:
    return (server.data / "postmaster.pid").exists()


def test_restore_from_older_dump_reuploads(tmp_path: Path, desk: CentralDesk,
                                           desk_server: Any) -> None:  # fmt: skip
    a = Workstation(tmp_path / "a", desk, "alice")
    a2 = Workstation(tmp_path / "a2", desk, "adam")
    dump = desk_server.dir / f"{desk.db}.dump"  # writable by the postgres user
    try:
        for i in range(5):
            a.book(quantity=str(100 + i))
        a.engine.sync_once()
        a2.engine.sync_once()
        _pg(desk_server, "pg_dump", "-Fc", "-f", str(dump), desk.db)
        for i in range(5, 12):
            a.book(quantity=str(100 + i))
        for i in range(3):
            a2.book(quantity=str(900 + i))
        a.engine.sync_once()
        a2.engine.sync_once()
        a.engine.sync_once()
        assert a.repo.count_current() == 15
        # the server loses everything after the dump
        with desk.admin() as c:
            c.execute(f'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                      f"WHERE datname = '{desk.db}' AND pid <> pg_backend_pid()")  # fmt: skip
        a.engine._close()
        a2.engine._close()
        _pg(desk_server, "dropdb", desk.db)
        _pg(desk_server, "createdb", desk.db)
        _pg(desk_server, "pg_restore", "-d", desk.db, str(dump))
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 5
        a.engine.sync_once()
        a2.engine.sync_once()
        a.engine.sync_once()
        assert a.engine.counters.rewinds == 1 and a.engine.counters.requeued == 7
        assert a2.engine.counters.requeued == 3
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 15
        assert a.repo.count_current() == 15 == a2.repo.count_current()
    finally:
        a.close()
        a2.close()


def _pg(server: Any, tool: str, *args: str) -> None:
    cmd = [*server.prefix, str(server.bindir / tool), "-h", str(server.dir), "-p",
           str(server.port), "-U", "postgres", *args]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# -- the network --------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["refuse", "reset", "blackhole"])
def test_network_cut_no_hang_and_drains_after_heal(tmp_path: Path, desk: CentralDesk,
                                                   desk_server: Any, fault: str) -> None:  # fmt: skip
    from tests.faultproxy import FaultProxy

    with FaultProxy("127.0.0.1", desk_server.port) as proxy:
        a = Workstation(tmp_path / "a", desk, "alice", port=proxy.port, op_timeout_s=3.0)
        try:
            a.book()
            a.engine.sync_once()
            if fault == "refuse":
                a.engine._close()  # refuse hits new connections; open ones keep flowing
            proxy.mode = fault
            for i in range(20):  # offline: booking goes on
                a.book(quantity=str(200 + i))
            t0 = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - the cut surfaces as a connection error
                a.engine.sync_once()
            assert time.monotonic() - t0 < 30
            a.engine._close()
            assert a.engine.pending_count() == 20
            proxy.heal()
            t0 = time.monotonic()
            a.engine.sync_once()
            drain = time.monotonic() - t0
            assert a.engine.pending_count() == 0
            assert drain < 10
            with desk.admin() as c:
                assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 21
        finally:
            a.close()


def test_latency_still_syncs(tmp_path: Path, desk: CentralDesk, desk_server: Any) -> None:
    from tests.faultproxy import FaultProxy

    with FaultProxy("127.0.0.1", desk_server.port) as proxy:
        proxy.latency_s = 0.05
        proxy.mode = "latency"
        a = Workstation(tmp_path / "a", desk, "alice", port=proxy.port)
        try:
            for i in range(50):
                a.book(quantity=str(100 + i))
            a.engine.sync_once()
            assert a.engine.pending_count() == 0
        finally:
            a.close()


def test_lost_notifications_are_caught_up(tmp_path: Path, desk: CentralDesk) -> None:
    """The listening connection is killed while another desk books 1,000 trades: the client
    re-listens, re-reads from its checkpoint and misses nothing."""
    a = Workstation(tmp_path / "a", desk, "alice")
    b = Workstation(tmp_path / "b", desk, "adam", listen=True, poll_s=3600)
    try:
        b.engine.start()
        _wait(lambda: _listeners(desk) == 1, 10)
        with desk.admin() as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE query = 'LISTEN qe_changes' OR query LIKE 'SELECT 1%'")  # fmt: skip
        for i in range(1000):
            a.book(quantity=str(100 + i))
        a.engine.sync_once()
        _wait(lambda: b.repo.count_current() == 1000, 60)
        assert _listeners(desk) == 1  # re-listened
    finally:
        a.close()
        b.close()


def _listeners(desk: CentralDesk) -> int:
    with desk.admin() as c:
        return int(c.execute("SELECT count(*) FROM pg_stat_activity a "
                             "WHERE usename = 'adam' AND (query LIKE 'LISTEN%' OR query LIKE "
                             "'SELECT 1%')").fetchone()[0])  # fmt: skip


def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# -- poison writes, races, clocks, retry storms ----------------------------------------------


def test_poison_writes_are_rejected_and_the_queue_flows(tmp_path: Path, desk: CentralDesk) -> None:
    a = Workstation(tmp_path / "a", desk, "alice")
    try:
        a.book(comment="fine")
        nul = a.book(comment="bad\x00byte")
        a.book(comment="fine too")
        big = a.book(comment="overflow")
        with a.store.session() as s:  # SQLite takes a 64-bit version; PostgreSQL's is 32-bit
            s.execute(text("UPDATE trade SET version = 3000000000 WHERE trade_uuid = :u"),
                      {"u": big.trade_uuid.hex})  # fmt: skip
            s.execute(text("UPDATE outbox SET version = 3000000000 WHERE entity_key = :u"),
                      {"u": big.trade_uuid.hex})  # fmt: skip
        a.book(comment="after")
        a.engine.sync_once()
        with a.store.session() as s:
            states = {i.entity_key: (i.state, i.last_error) for i in s.scalars(select(OutboxItem))}
        assert states[nul.trade_uuid.hex][0] == "rejected"
        assert "Unicode" in states[nul.trade_uuid.hex][1]
        assert states[big.trade_uuid.hex][0] == "rejected"
        assert "out of range" in states[big.trade_uuid.hex][1]
        assert sum(st == "acked" for st, _ in states.values()) == 3
        assert a.engine.status.rejected == 2
        assert "2 rejected" in a.engine.status.label
    finally:
        a.close()


def test_hot_trades_amended_from_three_desks(desks: Desks, desk: CentralDesk) -> None:
    """Concurrent amendments of the same five trades: no lost update, no silent
    last-writer-wins (every losing amendment is kept in a conflict record)."""
    assert desks.run("alice", n=5, drain=True) == 0
    with desk.admin() as c:
        hot = ",".join(u.hex for (u,) in c.execute("SELECT trade_uuid FROM trade").fetchall())
    for u in ("adam", "anna"):
        assert desks.run(u, drain=True) == 0
    procs = [desks.spawn(u, n=30, hot=hot, sync_every=2) for u in ("alice", "adam", "anna")]
    for u, p in zip(("alice", "adam", "anna"), procs, strict=True):
        assert p.wait(180) == 0, desks.stderr(u)
    for _ in range(2):
        for u in ("alice", "adam", "anna"):
            assert desks.run(u, drain=True) == 0
    rep = desks.check(("alice", "adam", "anna"))
    assert rep.conflicts > 0  # the races really happened


def test_shared_position_limit_race(tmp_path: Path, desk: CentralDesk) -> None:
    """Two desks book trades that each fit a shared position limit but together breach it:
    exactly one is applied, the other is rejected and shown."""
    with desk.admin() as c:
        c.execute(
            "INSERT INTO risk_limit (book_id, kind, product, limit_value, warning_pct, active, "
            "comment, created_by, created_at, updated_by, updated_at, version) "
            "SELECT id, 'POSITION', 'CR-BRENT', 1500000, 8000, true, '', 'rita', now(), "
            "'rita', now(), 1 FROM book WHERE name = 'DESK-A'"
        )
    a = Workstation(tmp_path / "a", desk, "alice")
    b = Workstation(tmp_path / "b", desk, "adam")
    try:
        a.book(quantity="1000", side="Buy")
        b.book(quantity="1000", side="Buy")
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def go(w: Workstation) -> None:
            try:
                barrier.wait()
                w.engine.sync_once()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(w,)) for w in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        states = []
        for w in (a, b):
            with w.store.session() as s:
                states += [(i.state, i.last_error) for i in s.scalars(select(OutboxItem))]
        assert sorted(st for st, _ in states) == ["acked", "rejected"]
        assert any("position limit" in err for _, err in states)
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 1
    finally:
        a.close()
        b.close()


def test_clock_hours_off_does_not_reorder(tmp_path: Path, desk: CentralDesk) -> None:
    import datetime as dt

    import time_machine

    a = Workstation(tmp_path / "a", desk, "alice")
    b = Workstation(tmp_path / "b", desk, "adam")
    try:
        first = b.book(quantity="1")  # booked "now" by a correct clock
        b.engine.sync_once()
        ahead = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        with time_machine.travel(ahead, tick=True):  # alice's clock is 3 h behind
            second = a.book(quantity="2")
            a.engine.sync_once()
        assert a.engine.status.skew_s is not None and a.engine.status.skew_s < -3 * 3600 + 120
        assert "behind" in a.engine.status.message
        b.engine.sync_once()
        with desk.admin() as c:
            order = [u.hex for (u,) in c.execute(
                "SELECT t.trade_uuid FROM change_log l JOIN trade t "
                "ON replace(t.trade_uuid::text, '-', '') = l.entity_key ORDER BY l.seq")]  # fmt: skip
        assert order == [first.trade_uuid.hex, second.trade_uuid.hex]  # server order, not clocks
        assert b.repo.get(second.trade_uuid).created_at < first.created_at  # its clock, shown
    finally:
        a.close()
        b.close()


def test_retry_storm_books_once(tmp_path: Path, desk: CentralDesk) -> None:
    import uuid

    a = Workstation(tmp_path / "a", desk, "alice")
    try:
        tid = uuid.uuid4()
        results: list[Any] = []

        def submit() -> None:
            for _ in range(10):
                try:
                    results.append(a.book(trade_uuid=tid).trade_uuid)
                except Exception as exc:  # a locked store under the storm is reported, not lost
                    results.append(exc)

        threads = [threading.Thread(target=submit) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for _ in range(3):
            a.engine.sync_once()
        assert tid in results
        with desk.admin() as c:
            assert c.execute("SELECT count(*) FROM trade").fetchone()[0] == 1
        assert a.repo.count_current() == 1
    finally:
        a.close()
