"""Opening, migrating and failing stores: versions, locks, full disks, foreign files."""

from __future__ import annotations

import datetime as dt
import logging
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from app.models.demo import ensure_reference_data
from app.models.entities import Base, Book, Counterparty, Product, Trade
from app.models.enums import InstrumentType, Side, TradeStatus, Unit
from app.models.repository import TradeRepository
from app.models.store import (
    MIGRATIONS_DIR,
    Store,
    StoreFullError,
    StoreLockedError,
    StoreUnreadableError,
    StoreVersionError,
)

SCHEMA_TABLES = {
    "alembic_version",
    "book",
    "counterparty",
    "product",
    "trade",
    "price_tick",
    "app_user",
    "book_access",
    "outbox",
    "sync_state",
    "sync_conflict",
    "change_log",
    "audit_log",
    "approval_request",
    "settlement_curve",
    "risk_limit",
    "limit_breach",
}


def head_revision() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


@contextmanager
def raw_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, always closed."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        yield conn


def sqlite_file_state(path: Path) -> dict[str, Any]:
    """Bytes and mtime of the store file and of its WAL/SHM companions (None when absent)."""
    state: dict[str, Any] = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(f"{path}{suffix}")
        state[suffix or "db"] = (p.read_bytes(), p.stat().st_mtime_ns) if p.exists() else None
    return state


def table_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, read through a separate engine."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = sorted(inspect(conn).get_table_names())
            return {
                name: sorted(
                    (tuple(r) for r in conn.execute(text(f'SELECT * FROM "{name}"'))), key=repr
                )
                for name in names
            }
    finally:
        engine.dispose()


def add_desk(store: Store) -> tuple[int, int, int]:
    """A user book, counterparty and the Brent product; returns their ids."""
    ensure_reference_data(store)
    with store.session() as s:
        book = Book(name="Crude desk", description="user book")
        cp = Counterparty(name="Bloomberg Finance", lei="5493001KJTIIGC8Y1R12", country="US")
        s.add_all([book, cp])
        s.flush()
        product_id = s.scalar(select(Product.id).where(Product.code == "CR-BRENT"))
        assert product_id is not None
        return book.id, cp.id, product_id


def economics(book_id: int, cp_id: int, product_id: int, **kw: Any) -> dict[str, Any]:
    econ: dict[str, Any] = {
        "book_id": book_id,
        "counterparty_id": cp_id,
        "product_id": product_id,
        "instrument": InstrumentType.SWAP,
        "side": Side.BUY,
        "quantity": Decimal("1000"),
        "quantity_unit": Unit.BBL,
        "price": Decimal("74.25"),
        "currency": "USD",
        "trade_date": dt.date(2026, 1, 5),
        "delivery_start": dt.date(2026, 3, 1),
        "delivery_end": dt.date(2026, 3, 31),
    }
    econ.update(kw)
    return econ


# -- migrations --------------------------------------------------------------------------------


def test_open_migrates_a_new_store_to_head(any_store: Store) -> None:
    assert any_store.schema_revision == head_revision()
    with any_store.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == SCHEMA_TABLES
        version_rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [r[0] for r in version_rows] == [head_revision()]


def test_migrations_match_the_orm_model(any_store: Store) -> None:
    """The schema the migrations build is the schema the entities describe (no pending diff)."""
    with any_store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_reopening_is_a_no_op(any_store: Store, caplog: pytest.LogCaptureFixture) -> None:
    book_id, cp_id, product_id = add_desk(any_store)
    rec = TradeRepository(any_store).insert_trades(
        [economics(book_id, cp_id, product_id)], "alice"
    )[0]
    any_store.close()
    before = table_dump(any_store.url)
    path = Path(any_store.where)
    file_before = sqlite_file_state(path) if any_store.is_sqlite else None

    caplog.set_level(logging.INFO, logger="app.models.store")
    again = Store(any_store.url)
    try:
        assert again.schema_revision == head_revision()
        assert TradeRepository(again).get(rec.trade_uuid) == rec
    finally:
        again.close()
    assert not [r for r in caplog.records if "Migrating" in r.getMessage()]
    assert table_dump(any_store.url) == before
    if file_before is not None:
        assert sqlite_file_state(path)["db"] == file_before["db"]


def test_first_open_logs_the_migration(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.models.store")
    store = Store.open_file(tmp_path / "sub" / "dir" / "new.db")
    store.close()
    assert (tmp_path / "sub" / "dir" / "new.db").exists()
    messages = [r.getMessage() for r in caplog.records if r.name == "app.models.store"]
    assert any(f"from schema None to {head_revision()}" in m for m in messages), messages


# -- SQLite settings ---------------------------------------------------------------------------


def test_sqlite_uses_wal_and_foreign_keys(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is recorded in the file header (bytes 18 and 19 are 2 in WAL mode).
    with raw_sqlite(Path(sqlite_store.where)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    header = Path(sqlite_store.where).read_bytes()[:20]
    assert header[:16] == b"SQLite format 3\x00"
    assert (header[18], header[19]) == (2, 2)


def test_foreign_keys_are_enforced(any_store: Store) -> None:
    book_id, cp_id, product_id = add_desk(any_store)
    t = Trade(
        **economics(book_id + 1000, cp_id, product_id),
        trade_uuid=uuid.uuid4(),
        version=1,
        is_current=True,
        status=TradeStatus.CAPTURED,
        comment="",
        created_by="alice",
        created_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
        updated_by="alice",
        updated_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC),
    )
    with pytest.raises(IntegrityError), any_store.session() as s:
        s.add(t)
    assert TradeRepository(any_store).count_current() == 0


# -- newer schema ------------------------------------------------------------------------------


def _stamp(store: Store, revision: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})


def test_unknown_newer_revision_raises_and_does_not_modify(any_store: Store) -> None:
    add_desk(any_store)
    _stamp(any_store, "9999_from_the_future")
    url = any_store.url
    any_store.close()
    before = table_dump(url)
    path = Path(any_store.where)
    file_before = sqlite_file_state(path) if any_store.is_sqlite else None
    if file_before is not None:
        time.sleep(0.01)  # an mtime change would be visible

    with pytest.raises(StoreVersionError) as info:
        Store(url)

    msg = str(info.value)
    assert "newer version of QuantaEnergi" in msg
    assert "9999_from_the_future" in msg
    assert head_revision() in msg
    assert "not modified" in msg
    if file_before is not None:
        assert sqlite_file_state(path) == file_before
        assert str(path) in msg
    assert table_dump(url) == before


def test_unknown_revision_leaves_sqlite_file_bytes_and_mtime(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = Store.open_file(path)
    _stamp(store, "abcdef123456")
    store.close()
    state = sqlite_file_state(path)
    assert state["db"] is not None and state["-wal"] is None  # checkpointed on close
    time.sleep(0.01)
    for _ in range(2):  # repeated attempts do not modify it either
        with pytest.raises(StoreVersionError, match="abcdef123456"):
            Store.open_file(path)
    assert sqlite_file_state(path) == state
    with raw_sqlite(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("abcdef123456",)
        ]


# -- locks -------------------------------------------------------------------------------------


def test_locked_store(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = Store.open_file(path, busy_timeout_ms=50)
    try:
        with raw_sqlite(path) as other:
            other.execute("BEGIN EXCLUSIVE")
            t0 = time.monotonic()
            with pytest.raises(StoreLockedError) as info:
                store.check_writable()
            assert time.monotonic() - t0 < 2.5  # the short busy timeout was used, not 3 s
            assert "locked by another program" in str(info.value)
            assert str(path) in str(info.value)

            with pytest.raises(StoreLockedError), store.session() as s:
                s.add(Book(name="Written while locked"))

            # Reads still work while another program writes (WAL).
            with store.session() as s:
                assert s.scalar(select(func.count()).select_from(Book)) == 0
            other.execute("ROLLBACK")

        store.check_writable()
        with store.session() as s:
            s.add(Book(name="Written after unlock"))
        with store.session() as s:
            assert list(s.scalars(select(Book.name))) == ["Written after unlock"]
    finally:
        store.close()


def test_check_writable_passes_on_free_store(any_store: Store) -> None:
    any_store.check_writable()
    any_store.ping()


# -- full disk ---------------------------------------------------------------------------------


def test_full_disk_rolls_back_and_keeps_committed_data(tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    store = Store.open_file(path)
    try:
        book_id, cp_id, product_id = add_desk(store)
        repo = TradeRepository(store)
        committed = repo.insert_trades(
            [economics(book_id, cp_id, product_id, quantity=Decimal(n + 1)) for n in range(40)],
            "alice",
        )
        limits: list[int] = []

        @event.listens_for(store.engine, "connect")
        def _cap_size(dbapi_conn: Any, _record: Any) -> None:
            pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            limits.append(dbapi_conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

        store.engine.dispose()  # new connections get the size cap

        big = [
            economics(book_id, cp_id, product_id, comment="x" * 500, quantity=Decimal(7))
            for _ in range(3000)
        ]
        with pytest.raises(StoreFullError) as info:
            repo.insert_trades(big, "bob")
        assert limits, "the size cap was not installed"
        msg = str(info.value)
        assert "full" in msg and "NOT saved" in msg and str(path) in msg

        # The session is usable and still sees exactly the committed trades.
        assert repo.count_current() == 40
        with pytest.raises(StoreFullError), store.session() as s:
            s.add_all(Book(name=f"book {i}", description="y" * 200) for i in range(2000))
    finally:
        store.close()

    reopened = Store.open_file(path)
    try:
        with reopened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        repo = TradeRepository(reopened)
        assert repo.current_records() == committed
        with reopened.session() as s:
            assert list(s.scalars(select(Book.name))) == ["Crude desk"]
            assert s.scalar(select(func.count()).select_from(Trade)) == 40
        # Without the cap the same write now succeeds.
        repo.insert_trades([economics(book_id, cp_id, product_id)], "bob")
        assert repo.count_current() == 41
    finally:
        reopened.close()


# -- not a store -------------------------------------------------------------------------------


def test_random_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    content = random.Random(17442).randbytes(16384)
    path.write_bytes(content)
    with pytest.raises(StoreUnreadableError) as info:
        Store.open_file(path)
    assert "not a QuantaEnergi store" in str(info.value)
    assert str(path) in str(info.value)
    assert path.read_bytes() == content


def test_text_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    content = b"book,counterparty,product\n" + b"Crude desk,Bloomberg,CR-BRENT\n" * 200
    path.write_bytes(content)
    with pytest.raises(StoreUnreadableError):
        Store.open_file(path)
    assert path.read_bytes() == content


def test_foreign_sqlite_database_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "other_app.db"
    with raw_sqlite(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    with pytest.raises(StoreUnreadableError, match="no QuantaEnergi schema version"):
        Store.open_file(path)
    with raw_sqlite(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows = conn.execute("SELECT id, name FROM customers").fetchall()
    assert tables == {"customers"}
    assert rows == [(1, "Ada")]


def test_unreachable_postgres_is_unreadable_and_hides_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://trader:s3cret-pw@/qe?host={tmp_path / 'nosuchdir'}&port=1"
    with pytest.raises(StoreUnreadableError) as info:
        Store(url, connect_args={"connect_timeout": 2})
    assert "Cannot reach the database" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
