"""The central audit trail on a real PostgreSQL: linear under four concurrent desks, protected
from application roles and the owner, tampering detected, trades rebuilt from it alone."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app import cli
from app.models import audit
from app.models.store import Store
from app.settings import Settings
from tests.desk import CentralDesk

pytestmark = pytest.mark.postgres

DESKS = {"alice": "DESK-A", "bob": "DESK-B", "dora": "DESK-C", "ed": "DESK-D"}
TRADES_PER_DESK = 50
_N = 0


def payload(user: str, book: str, version: int = 1, **kw: Any) -> dict[str, Any]:
    p = {"trade_uuid": uuid.uuid4().hex, "version": version, "book": book,
         "counterparty_lei": "5493001KJTIIGC8Y1R12", "product": "CR-BRENT",
         "instrument": "FUTURE", "side": "BUY", "quantity": 1_000_000, "quantity_unit": "BBL",
         "price": 81_500_000, "currency": "USD", "trade_date": "2026-11-24",
         "delivery_start": "2027-01-01", "delivery_end": "2027-01-31", "status": "CAPTURED",
         "option_type": None, "strike": None, "expiry_date": None, "exercise_style": None,
         "premium": None, "comment": "", "created_by": user,
         "created_at": "2026-11-25T00:00:00.000000Z", "updated_by": user,
         "updated_at": "2026-11-25T00:00:00.000000Z"}  # fmt: skip
    p.update(kw)
    return p


def apply(conn: psycopg.Connection[Any], p: dict[str, Any], origin: str) -> dict[str, Any]:
    op = {"op_id": str(uuid.uuid4()), "entity": "trade", "payload": json.dumps(p),
          "client_ts": "2026-11-25T00:00:00.000000Z"}  # fmt: skip
    res = conn.execute("SELECT qe_apply(%s::json, %s)", (json.dumps([op]), origin)).fetchone()
    assert res is not None
    out: dict[str, Any] = res[0]["results"][0]
    assert out["status"] == "applied", out
    return out


@pytest.fixture
def desk(desk_server: Any) -> CentralDesk:
    global _N
    _N += 1
    d = CentralDesk.create(desk_server, f"audit{_N}")
    with d.admin() as c:
        for book in ("DESK-C", "DESK-D"):
            c.execute("SELECT qe_admin_upsert_book(%s, %s)", (book, "desk book"))
    for user, book in DESKS.items():
        d.add_user(user, "TRADER", (book,))
    d.add_user("carol", "COMPLIANCE")
    return d


def desk_history(desk: CentralDesk, user: str, heads: list[tuple[int, str]]) -> None:
    """50 captures, then 5 amendments and 5 cancellations, each its own qe_apply call."""
    book = DESKS[user]
    with desk.connect(user, autocommit=True) as conn:
        booked = []
        for i in range(TRADES_PER_DESK):
            p = payload(user, book, comment=f"{user} #{i}")
            r = apply(conn, p, f"ws-{user}")
            heads.append((int(r["audit_seq"]), str(r["audit_hash"])))
            booked.append(p)
        for p in booked[:5]:
            apply(conn, dict(p, version=2, price=82_000_000), f"ws-{user}")
        for p in booked[5:10]:
            apply(conn, dict(p, version=2, status="CANCELLED"), f"ws-{user}")


@pytest.fixture
def busy(desk: CentralDesk) -> tuple[CentralDesk, list[tuple[int, str]]]:
    """Four desks pushing concurrently, each from its own thread and connection."""
    heads: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def run(user: str) -> None:
        try:
            desk_history(desk, user, heads)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(u,)) for u in DESKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return desk, heads


def chain(desk: CentralDesk) -> list[tuple[Any, ...]]:
    with desk.admin() as c:
        return list(audit.iter_connection_rows(c))


def test_concurrent_desks_keep_one_linear_chain(busy: tuple[CentralDesk, Any]) -> None:
    desk, heads = busy
    rows = chain(desk)
    trade_rows = [r for r in rows if r[4] == "trade"]
    assert len(trade_rows) == 4 * (TRADES_PER_DESK + 10)
    assert rows[0][8] == audit.GENESIS
    for prev, row in itertools.pairwise(rows):
        assert row[8] == prev[9], f"record {row[0]} forks from {prev[0]}"
    assert len({r[8] for r in rows}) == len(rows)  # no two records share a predecessor
    assert {r[3] for r in trade_rows} == {f"ws-{u}" for u in DESKS}
    # interleaved, not one desk after another
    assert len({r[2] for r in trade_rows[: len(trade_rows) // 2]}) > 1
    with desk.connect("carol", autocommit=True) as conn:
        res = audit.verify_connection(conn, heads)
    assert res.ok and res.checked == len(rows) and res.head_hash == rows[-1][9]


def test_every_trade_version_rebuilt_from_the_central_trail(
    busy: tuple[CentralDesk, Any],
) -> None:
    desk, _ = busy
    with desk.admin() as c:
        rebuilt = audit.rebuild_trade_versions(audit.iter_connection_rows(c))
        stored: dict[str, list[dict[str, Any]]] = {}
        for key, p in c.execute("SELECT replace(trade_uuid::text, '-', ''), qe_trade_payload(t) "
                                "FROM trade t ORDER BY trade_uuid, version"):  # fmt: skip
            stored.setdefault(key, []).append(p)
    assert len(rebuilt) == 4 * TRADES_PER_DESK
    assert sum(len(v) for v in rebuilt.values()) == 4 * (TRADES_PER_DESK + 10)
    assert rebuilt == stored


def test_application_roles_cannot_change_the_trail(desk: CentralDesk) -> None:
    with desk.connect("alice", autocommit=True) as conn:
        apply(conn, payload("alice", "DESK-A"), "ws")
    for user in ("alice", "carol"):
        with desk.connect(user, autocommit=True) as conn:
            for sql in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log",
                        "TRUNCATE audit_log",
                        "INSERT INTO audit_log (ts, username, workstation, entity, entity_id, "
                        "action, body, prev_hash, hash) VALUES (now(), 'a', 'b', 'c', 'd', 'e', "
                        "'f', 'g', 'h')"):  # fmt: skip
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(sql)
    with desk.admin() as conn:
        conn.execute("SET ROLE qe_owner")
        for sql in ("UPDATE audit_log SET action = 'x' WHERE seq = 1",
                    "DELETE FROM audit_log WHERE seq = 1", "TRUNCATE audit_log"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
    with desk.connect("carol", autocommit=True) as conn:
        assert audit.verify_connection(conn).ok


def test_only_compliance_or_admin_can_verify(desk: CentralDesk) -> None:
    with (
        desk.connect("alice", autocommit=True) as conn,
        pytest.raises(PermissionError, match="verify the central chain as a compliance"),
    ):
        audit.verify_connection(conn)


def tamper(desk: CentralDesk, *sql: str) -> None:
    with desk.admin() as c:
        c.execute("SET session_replication_role = replica")  # the superuser bypasses triggers
        for s in sql:
            c.execute(s)


def verify(desk: CentralDesk, heads: Any = ()) -> audit.AuditVerification:
    with desk.connect("carol", autocommit=True) as conn:
        return audit.verify_connection(conn, heads)


def test_four_kinds_of_tampering_are_named(desk: CentralDesk, tmp_path: Path) -> None:
    store = Store.open_file(tmp_path / "ws.db")  # the workstation that pushed
    with desk.connect("alice", autocommit=True) as conn:
        for _ in range(8):
            r = apply(conn, payload("alice", "DESK-A"), "ws-alice")
            with store.session() as s:
                audit.remember_head(s, r["audit_seq"], r["audit_hash"])
    with store.session() as s:
        heads = audit.known_heads(s)
    store.close()
    seqs = [r[0] for r in chain(desk)]
    last = seqs[-1]
    assert verify(desk, heads).ok

    # truncated tail: a valid shorter chain; only the remembered heads catch it
    tamper(desk, f"DELETE FROM audit_log WHERE seq >= {last - 1}")
    assert verify(desk).ok
    res = verify(desk, heads)
    assert (res.ok, res.first_broken_seq) == (False, last - 1)
    assert res.reason.startswith(f"truncated: record {last - 1} that this workstation saw")

    # update
    tamper(desk, f"UPDATE audit_log SET body = replace(body, 'ws-alice', 'ws-evil') "
                 f"WHERE seq = {last - 3}")  # fmt: skip
    res = verify(desk)
    assert (res.ok, res.first_broken_seq) == (False, last - 3) and "edited" in res.reason

    # delete (in the middle)
    tamper(desk, f"DELETE FROM audit_log WHERE seq = {last - 5}")
    res = verify(desk)
    assert (res.ok, res.first_broken_seq) == (False, last - 4) and "deleted" in res.reason

    # reorder: swap two records' seq
    a, b = seqs[2], seqs[3]
    tamper(desk, f"UPDATE audit_log SET seq = -1 WHERE seq = {a}",
           f"UPDATE audit_log SET seq = {a} WHERE seq = {b}",
           f"UPDATE audit_log SET seq = {b} WHERE seq = -1")  # fmt: skip
    res = verify(desk)
    assert (res.ok, res.first_broken_seq) == (False, a) and "reordered" in res.reason


def test_cli_verifies_the_central_chain(
    desk: CentralDesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data = tmp_path / "ws"
    store = Store.open_file(Settings.load(data).store_path)
    with desk.connect("alice", autocommit=True) as conn:
        r = apply(conn, payload("alice", "DESK-A"), "ws-alice")
    with store.session() as s:
        audit.remember_head(s, r["audit_seq"], r["audit_hash"])
    store.close()
    monkeypatch.setattr("getpass.getpass", lambda prompt="": desk.users["carol"])
    args = ["audit", "verify", "--central", desk.url("carol"), "--data-dir", str(data)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and f"chain head {r['audit_seq']} {r['audit_hash'][:12]}" in out
    tamper(desk, f"DELETE FROM audit_log WHERE seq = {r['audit_seq']}")
    assert cli.main(args) == 1
    assert capsys.readouterr().out.startswith(f"BROKEN at record {r['audit_seq']}: truncated")
    assert cli.main([*args[:4], "--user", "alice"]) == 2  # a trader cannot read the trail
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "wrong")
    assert cli.main(args) == 2
    assert "error:" in capsys.readouterr().err
