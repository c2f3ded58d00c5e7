"""The local store under faults: kill -9 mid-write, a foreign write lock, a full disk, and
online backups (API, CLI and the File menu)."""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from pytestqt.qtbot import QtBot
from sqlalchemy import func, select

from app.models.entities import Book, Trade
from app.models.repository import TradeRepository
from app.models.store import (
    Store,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreUnreadableError,
    backup_file,
)
from tests.test_store import add_desk, economics

ROOT = Path(__file__).resolve().parents[1]


def integrity(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]


def trades_by_comment(store: Store) -> dict[str, set[uuid.UUID]]:
    """Current trades grouped by comment (the child's ``<batch-tag>/<size>``)."""
    out: dict[str, set[uuid.UUID]] = collections.defaultdict(set)
    with store.session() as s:
        for trade_uuid, comment in s.execute(select(Trade.trade_uuid, Trade.comment)):
            out[comment].add(trade_uuid)
    return out


# -- (a) kill -9 during writes -------------------------------------------------------------------


def test_kill_9_during_writes_keeps_the_store_sound_and_every_acknowledged_trade(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    store = Store.open_file(path)
    ids = add_desk(store)
    store.close()
    rng = random.Random(7)
    acknowledged: dict[str, list[str]] = {}
    kills = 0
    for _ in range(12):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.store_writer_child", str(path), *map(str, ids)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()  # type: ignore[union-attr]
            time.sleep(rng.uniform(0.0, 0.5))  # somewhere in the write loop
            child.send_signal(signal.SIGKILL)
            kills += 1
            out, err = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        assert child.returncode == -signal.SIGKILL, err
        for line in out.splitlines():
            if line.endswith(" "):  # cannot happen: a line is written in one call
                continue
            tag, *uuids = line.split()
            acknowledged[tag] = uuids
        # Between kills the store must be sound, as a restarted workstation would find it.
        assert integrity(path) == ["ok"]
    assert kills >= 10
    assert len(acknowledged) > 20, "the child hardly wrote anything before being killed"

    reopened = Store.open_file(path)
    try:
        with reopened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        stored = trades_by_comment(reopened)
        stored_tags = {c.split("/")[0]: (c, u) for c, u in stored.items()}
        for tag, uuids in acknowledged.items():
            assert tag in stored_tags, f"acknowledged batch {tag} lost"
            assert {u.hex for u in stored_tags[tag][1]} == set(uuids)
        # Every batch in the store is whole (including one committed but not yet reported).
        for comment, uuids_in_db in stored.items():
            size = int(comment.split("/")[1])
            assert len(uuids_in_db) == size, f"batch {comment} is half-written"
        # And the store takes new writes.
        TradeRepository(reopened).insert_trades([economics(*ids)], "after")
    finally:
        reopened.close()


# -- (b) another program holds the write lock ----------------------------------------------------


def test_foreign_write_lock_gives_the_lock_message_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store.open_file(path, busy_timeout_ms=200)
    try:
        ids = add_desk(store)
        repo = TradeRepository(store)
        before = repo.insert_trades([economics(*ids, quantity=Decimal(1))], "alice")
        econ = economics(*ids, trade_uuid=uuid.uuid4(), quantity=Decimal(2))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO book (name, description, is_demo) VALUES ('Other program', '', 0)"
            )
            t0 = time.monotonic()
            with pytest.raises(StoreLockedError) as info:
                repo.insert_trades([econ], "alice")
            assert time.monotonic() - t0 < 5
            msg = str(info.value)
            assert "locked by another program" in msg and str(path) in msg
            assert "Close it and retry" in msg
            assert repo.count_current() == 1  # readers are not blocked (WAL) and see no half
            other.execute("COMMIT")
        retried = repo.insert_trades([econ], "alice")  # the user retries the same write
        assert retried[0].trade_uuid == econ["trade_uuid"]
        assert {r.trade_uuid for r in repo.current_records()} == {
            before[0].trade_uuid,
            econ["trade_uuid"],
        }
        with store.session() as s:  # the other program's write is kept too
            assert "Other program" in set(s.scalars(select(Book.name)))
    finally:
        store.close()
    assert integrity(path) == ["ok"]


# -- (c) full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount rights); skipped where it cannot be mounted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {res.stderr.strip()} "
                    "(test_store.py covers full disks with max_page_count)")  # fmt: skip
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_really_full_disk_gives_the_message_and_keeps_committed_data(small_disk: Path) -> None:
    path = small_disk / "store.db"
    store = Store.open_file(path)
    try:
        ids = add_desk(store)
        repo = TradeRepository(store)
        committed: list[uuid.UUID] = []
        with pytest.raises(StoreFullError) as info:
            for n in range(10_000):  # fill the disk batch by batch until one does not fit
                batch = [economics(*ids, trade_uuid=uuid.uuid4(), comment=f"{n}/20 " + "x" * 400)
                         for _ in range(20)]  # fmt: skip
                repo.insert_trades(batch, "alice")
                committed += [e["trade_uuid"] for e in batch]
        msg = str(info.value)
        assert "full" in msg and "NOT saved" in msg and str(path) in msg
        assert len(committed) > 100
        assert repo.count_current() == len(committed)  # the failed batch left nothing
    finally:
        store.close()
    reopened = Store.open_file(path)  # the store still opens on the full disk
    try:
        with reopened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        by_comment = trades_by_comment(reopened)
        assert {u for us in by_comment.values() for u in us} == set(committed)
        assert all(len(us) == 20 for c, us in by_comment.items() if "/20" in c)
    finally:
        reopened.close()


# -- (d) online backup ---------------------------------------------------------------------------


def test_backup_while_a_writer_inserts_is_consistent(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store.open_file(path)
    ids = add_desk(store)
    repo = TradeRepository(store)
    repo.insert_trades([economics(*ids, comment=f"seed {i}") for i in range(500)], "seed")
    stop = threading.Event()
    written: list[int] = []  # sequence numbers, in commit order
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            writer_store = Store.open_file(path)  # a second connection, as another thread has
            wrepo = TradeRepository(writer_store)
            n = 0
            while not stop.is_set():
                wrepo.insert_trades([economics(*ids, comment=f"seq {n:06d}")], "writer")
                written.append(n)
                n += 1
            writer_store.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        fractions: list[float] = []
        out = store.backup(tmp_path / "copy.db", pages=16, progress=fractions.append)
        n_during = len(written)
        deadline = time.monotonic() + 10
        while len(written) <= n_during and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(30)
        store.close()
    assert not errors
    assert len(written) > n_during >= 20  # the writer really kept writing around the backup
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert integrity(out) == ["ok"]
    assert not Path(f"{out}-wal").exists()  # one self-contained file
    copy = Store.open_file(out)
    try:
        seqs = sorted(int(c.split()[1]) for c in trades_by_comment(copy) if c.startswith("seq "))
        seeds = [c for c in trades_by_comment(copy) if c.startswith("seed ")]
    finally:
        copy.close()
    assert len(seeds) == 500
    # A prefix of the writer's commits: nothing after a gap, nothing missing before the end.
    assert seqs == list(range(len(seqs)))
    assert 20 <= len(seqs) <= len(written)


def test_backup_refuses_to_overwrite_and_cleans_up(tmp_path: Path, sqlite_store: Store) -> None:
    add_desk(sqlite_store)
    out = tmp_path / "copy.db"
    out.write_text("precious")
    with pytest.raises(StoreError, match="already exists"):
        sqlite_store.backup(out)
    assert out.read_text() == "precious"
    sqlite_store.backup(out, overwrite=True)
    assert integrity(out) == ["ok"]
    with pytest.raises(StoreError, match="does not exist"):
        sqlite_store.backup(tmp_path / "nope" / "copy.db")
    with pytest.raises(StoreError, match="is the store itself"):
        sqlite_store.backup(sqlite_store.where, overwrite=True)
    with pytest.raises(StoreError, match="is a folder"):
        sqlite_store.backup(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_backup_of_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(StoreUnreadableError, match="not a QuantaEnergi store"):
        backup_file(junk, tmp_path / "copy.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.db"]
    with pytest.raises(StoreUnreadableError, match="no local store"):
        backup_file(tmp_path / "missing.db", tmp_path / "copy.db")


def test_backup_to_a_full_disk_leaves_no_partial_file(
    small_disk: Path, tmp_path: Path, sqlite_store: Store
) -> None:
    with sqlite_store.session() as s:  # ~3.5 MiB: does not fit on the 2 MiB disk
        s.add_all(Book(name=f"book {i}", description=os.urandom(100).hex()) for i in range(15_000))
    with pytest.raises(StoreFullError, match="no backup was written"):
        sqlite_store.backup(small_disk / "copy.db")
    assert list(small_disk.iterdir()) == []


@pytest.mark.postgres
def test_backup_of_postgres_store_says_pg_dump(pg_server: object, tmp_path: Path) -> None:
    store = Store(pg_server.create_db(f"bk{os.getpid()}"))  # type: ignore[attr-defined]
    try:
        with pytest.raises(StoreError, match="pg_dump"):
            store.backup(tmp_path / "x.db")
    finally:
        store.close()


# -- CLI and GUI ---------------------------------------------------------------------------------


def _cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", "backup", *args, "--data-dir", str(data_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_cli_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store.open_file(data / "store.db")
    ids = add_desk(store)
    TradeRepository(store).insert_trades([economics(*ids) for _ in range(10)], "alice")
    out = tmp_path / "out.db"
    res = _cli(str(out), data_dir=data)  # while the store is open, as with a running workstation
    store.close()
    assert res.returncode == 0, res.stderr
    assert str(out) in res.stdout and "bytes" in res.stdout
    assert f"{out.stat().st_size:,} bytes" in res.stdout
    copy = Store.open_file(out)
    try:
        with copy.session() as s:
            assert s.scalar(select(func.count()).select_from(Trade)) == 10
    finally:
        copy.close()

    again = _cli(str(out), data_dir=data)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert _cli(str(out), "--overwrite", data_dir=data).returncode == 0

    missing = _cli(str(tmp_path / "x.db"), data_dir=tmp_path / "empty")
    assert missing.returncode == 2 and "no local store" in missing.stderr
    assert missing.stderr.count("\n") == 1
    assert not (tmp_path / "empty" / "store.db").exists()  # a backup never creates a store
    bad = _cli(str(tmp_path / "no" / "dir" / "x.db"), data_dir=data)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    usage = _cli(data_dir=data)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1


def test_file_menu_backs_up_the_store_off_the_gui_thread(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QMenu, QMessageBox

    from tests.gui_helpers import close_window, open_window

    win = open_window(qtbot, tmp_path / "data", seed=False)
    try:
        file_menu = cast(QMenu, win.menuBar().actions()[0].menu())
        actions = {a.text(): a for a in file_menu.actions()}
        assert "&Back up local store…" in actions
        out = tmp_path / "gui-copy.db"
        from app.views import main_window

        monkeypatch.setattr(main_window.QFileDialog, "getSaveFileName",
                            lambda *a, **k: (str(out), ""))  # fmt: skip
        gui_thread = threading.get_ident()
        threads: list[int] = []
        orig = Store.backup

        def spy(self: Store, *a: Any, **k: Any) -> Path:
            threads.append(threading.get_ident())
            return orig(self, *a, **k)

        monkeypatch.setattr(Store, "backup", spy)
        actions["&Back up local store…"].trigger()  # as the user picks File → Back up
        qtbot.waitUntil(lambda: out.exists() and not win.ctx.runner.active_jobs, timeout=30_000)
        assert threads and threads[0] != gui_thread
        assert integrity(out) == ["ok"]
        qtbot.waitUntil(lambda: "Backed up the local store" in win.statusBar().currentMessage())

        warnings: list[str] = []
        monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, m: warnings.append(m))
        win.backup_store(str(out))  # exists and not confirmed: refused, shown to the user
        qtbot.waitUntil(lambda: bool(warnings), timeout=30_000)
        assert "already exists" in warnings[0]
    finally:
        close_window(win)
