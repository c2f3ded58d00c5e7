"""The local hash-chained audit trail: what is recorded, verification, tampering, rebuild,
the audit service and the ``quantaenergi audit`` command."""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import sqlite3
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import select

from app import cli
from app.models import audit
from app.models.demo import ensure_reference_data
from app.models.entities import AuditRecord, Book, Counterparty, Product, Trade, UserRole
from app.models.enums import InstrumentType, Side, TradeStatus, Unit
from app.models.limits import LimitDraft, LimitRepository
from app.models.payload import trade_payload
from app.models.repository import TradeRepository
from app.models.scenarios import ScenarioLibrary, ScenarioLibraryError
from app.models.store import Store
from app.services.audit import AuditFilter, AuditService
from app.services.auth import PermissionDenied, Principal
from app.settings import Settings


@dataclass
class Desk:
    store: Store
    repo: TradeRepository
    book_id: int
    cp_id: int
    product_id: int

    def econ(self, **kw: Any) -> dict[str, Any]:
        econ: dict[str, Any] = {
            "book_id": self.book_id, "counterparty_id": self.cp_id,
            "product_id": self.product_id, "instrument": InstrumentType.SWAP, "side": Side.BUY,
            "quantity": Decimal("1000"), "quantity_unit": Unit.BBL, "price": Decimal("74.25"),
            "currency": "USD", "trade_date": dt.date(2026, 1, 5),
            "delivery_start": dt.date(2026, 3, 1), "delivery_end": dt.date(2026, 3, 31),
        }  # fmt: skip
        econ.update(kw)
        return econ


def make_desk(store: Store) -> Desk:
    ensure_reference_data(store)
    with store.session() as s:
        book = Book(name="Crude desk", description="a user's own book")
        cp = Counterparty(name="Northwind Energy AG", lei="5493001KJTIIGC8Y1R12", country="DE")
        s.add_all([book, cp])
        s.flush()
        pid = s.scalars(select(Product.id).where(Product.code == "CR-BRENT")).one()
        return Desk(store, TradeRepository(store), book.id, cp.id, pid)


def do_history(desk: Desk) -> list[uuid.UUID]:
    """Capture three trades, amend one twice, cancel another, create and change a limit."""
    recs = desk.repo.insert_trades([desk.econ(quantity=Decimal(n)) for n in (1, 2, 3)], "alice")
    a, b = recs[0], recs[1]
    a2 = desk.repo.new_version(a.trade_uuid, 1, "alice", {"price": Decimal("75.5")})
    desk.repo.new_version(a.trade_uuid, a2.version, "alice", {"comment": "fixed ☃ comment"})
    desk.repo.new_version(b.trade_uuid, 1, "alice", status=TradeStatus.CANCELLED)
    limits = LimitRepository(desk.store)
    lim = limits.create(LimitDraft(desk.book_id, "POSITION", "5000", product="CR-BRENT"), "rita")
    lim = limits.update(lim.id, 1, LimitDraft(desk.book_id, "POSITION", "6000",
                                               product="CR-BRENT"), "rita")  # fmt: skip
    limits.set_active(lim.id, lim.version, False, "rita")
    return [r.trade_uuid for r in recs]


@pytest.fixture
def desk(sqlite_store: Store) -> Desk:
    return make_desk(sqlite_store)


def store_file(store: Store) -> str:
    return store.where


def raw(store: Store) -> sqlite3.Connection:
    """A raw connection with the append-only triggers dropped, as an attacker would."""
    store.engine.dispose()
    con = sqlite3.connect(store_file(store), isolation_level=None)
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return con


def seqs(store: Store) -> list[int]:
    with store.session() as s:
        return list(s.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))


# -- what is recorded ------------------------------------------------------------------------


def test_chain_after_capture_amend_cancel_and_limit_changes_verifies(desk: Desk) -> None:
    do_history(desk)
    with desk.store.session() as s:
        recs = s.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
    actions = [(r.entity, r.action) for r in recs]
    assert actions == [("trade", "capture")] * 3 + [("trade", "amend")] * 2 + [
        ("trade", "cancel"),
        ("limit", "create"),
        ("limit", "update"),
        ("limit", "deactivate"),
    ]
    assert recs[0].prev_hash == audit.GENESIS
    for prev, rec in itertools.pairwise(recs):
        assert rec.prev_hash == prev.hash
        assert rec.hash == audit.chain_hash(rec.prev_hash, rec.body)
    upd = json.loads(recs[7].body)
    assert upd["before"]["limit_value"] == "5000.0000000000"[: len(upd["before"]["limit_value"])]
    assert Decimal(upd["before"]["limit_value"]) == 5000
    assert Decimal(upd["after"]["limit_value"]) == 6000
    assert upd["user"] == "rita" and upd["entity"] == "limit"
    assert json.loads(recs[8].body)["after"]["active"] is False
    res = audit.verify_store(desk.store)
    assert res.ok and res.checked == 9 and res.head_seq == recs[-1].seq
    assert res.summary() == f"OK: 9 records, chain head {recs[-1].seq} {recs[-1].hash[:12]}"


def test_trade_audit_blocked_by_sqlite_triggers(desk: Desk) -> None:
    do_history(desk)
    con = sqlite3.connect(store_file(desk.store))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit_log SET action = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit_log WHERE seq = 1")
    con.close()


# -- tampering -------------------------------------------------------------------------------


def test_edited_body_is_named(desk: Desk) -> None:
    do_history(desk)
    con = raw(desk.store)
    body = con.execute("SELECT body FROM audit_log WHERE seq = 4").fetchone()[0]
    con.execute("UPDATE audit_log SET body = ? WHERE seq = 4",
                (body.replace('"price":75500000', '"price":70000000'),))  # fmt: skip
    con.close()
    res = audit.verify_store(desk.store)
    assert not res.ok and res.first_broken_seq == 4 and res.checked == 3
    assert "edited" in res.reason


def test_edit_with_recomputed_hash_is_caught_at_the_next_record(desk: Desk) -> None:
    do_history(desk)
    con = raw(desk.store)
    prev, body = con.execute("SELECT prev_hash, body FROM audit_log WHERE seq = 4").fetchone()
    body = body.replace('"price":75500000', '"price":70000000')
    con.execute("UPDATE audit_log SET body = ?, hash = ? WHERE seq = 4",
                (body, audit.chain_hash(prev, body)))  # fmt: skip
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 5)
    assert "record 4 was rewritten" in res.reason


def test_column_disagreeing_with_body_is_named(desk: Desk) -> None:
    do_history(desk)
    con = raw(desk.store)
    con.execute("UPDATE audit_log SET username = 'mallory' WHERE seq = 2")
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 2)
    assert "columns disagree with the body: username column 'mallory'" in res.reason
    con = raw(desk.store)
    con.execute("UPDATE audit_log SET username = 'alice' WHERE seq = 2")
    ts = con.execute("SELECT ts FROM audit_log WHERE seq = 6").fetchone()[0]
    con.execute(
        "UPDATE audit_log SET ts = ? WHERE seq = 6", (ts[:-1] + str((int(ts[-1]) + 1) % 10),)
    )
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 6)
    assert "ts column" in res.reason


def test_deleted_record_is_named(desk: Desk) -> None:
    do_history(desk)
    con = raw(desk.store)
    con.execute("DELETE FROM audit_log WHERE seq = 5")
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 6)
    assert "deleted" in res.reason and "records 5..5 are missing" in res.reason
    con = raw(desk.store)
    con.execute("DELETE FROM audit_log WHERE seq = 1")
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 2)
    assert "does not start at the genesis" in res.reason


def test_reordered_records_are_named(desk: Desk) -> None:
    do_history(desk)
    con = raw(desk.store)
    con.execute("UPDATE audit_log SET seq = -1 WHERE seq = 3")
    con.execute("UPDATE audit_log SET seq = 3 WHERE seq = 4")
    con.execute("UPDATE audit_log SET seq = 4 WHERE seq = -1")
    con.close()
    res = audit.verify_store(desk.store)
    assert (res.ok, res.first_broken_seq) == (False, 3)
    assert "reordered" in res.reason


def test_truncated_tail_is_caught_only_against_remembered_heads(desk: Desk) -> None:
    do_history(desk)
    with desk.store.session() as s:
        recs = s.execute(select(AuditRecord.seq, AuditRecord.hash).order_by(AuditRecord.seq)).all()
        for seq, h in recs[::3]:
            audit.remember_head(s, seq, h)
        audit.remember_head(s, recs[-1][0], recs[-1][1])
    with desk.store.session() as s:
        heads = audit.known_heads(s)
    assert heads == [(1, recs[0][1]), (4, recs[3][1]), (7, recs[6][1]), (9, recs[8][1])]
    assert audit.verify_store(desk.store, heads).ok
    con = raw(desk.store)
    con.execute("DELETE FROM audit_log WHERE seq >= 8")
    con.close()
    plain = audit.verify_store(desk.store)
    assert plain.ok and plain.checked == 7  # a shorter chain is still a valid chain
    res = audit.verify_store(desk.store, heads)
    assert (res.ok, res.first_broken_seq) == (False, 9)
    assert (
        res.reason
        == "truncated: record 9 that this workstation saw is missing (the chain ends at 7)"
    )


def test_rewritten_chain_differs_from_a_remembered_head(desk: Desk) -> None:
    do_history(desk)
    with desk.store.session() as s:
        h4 = s.get(AuditRecord, 4)
        assert h4 is not None
        heads = [(4, h4.hash)]
    # The attacker edits record 2 and re-hashes every later record: the chain is valid again,
    # but record 4 is no longer the record the workstation saw.
    con = raw(desk.store)
    rows = con.execute("SELECT seq, body FROM audit_log ORDER BY seq").fetchall()
    prev = audit.GENESIS
    for seq, body in rows:
        if seq == 2:
            doc = json.loads(body)
            doc["after"]["quantity"] = 1
            body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        h = audit.chain_hash(prev, body)
        con.execute("UPDATE audit_log SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                    (body, prev, h, seq))  # fmt: skip
        prev = h
    con.close()
    assert audit.verify_store(desk.store).ok
    res = audit.verify_store(desk.store, heads)
    assert (res.ok, res.first_broken_seq) == (False, 4)
    assert "not the record this workstation saw" in res.reason


def test_heads_keep_the_last_hundred(sqlite_store: Store) -> None:
    with sqlite_store.session() as s:
        for i in range(1, 131):
            audit.remember_head(s, i, f"{i:064x}")
        audit.remember_head(s, 130, f"{130:064x}")
    with sqlite_store.session() as s:
        heads = audit.known_heads(s)
    assert [h[0] for h in heads] == list(range(31, 131))


def test_verify_rows_streams_a_long_chain_in_bounded_memory() -> None:
    import tracemalloc

    def rows(n: int) -> Any:
        prev = audit.GENESIS
        ts = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        stamp = audit.format_ts(ts)
        for seq in range(1, n + 1):
            body = (f'{{"action":"capture","after":{{"n":{seq}}},"before":null,'
                    f'"entity":"trade","entity_id":"{seq}","extra":{{}},"ts":"{stamp}",'
                    '"user":"u","workstation":"w"}')  # fmt: skip
            h = audit.chain_hash(prev, body)
            yield (seq, ts, "u", "w", "trade", str(seq), "capture", body, prev, h)
            prev = h

    tracemalloc.start()
    res = audit.verify_rows(rows(20_000))
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.ok and res.checked == 20_000
    assert peak < 2_000_000


# -- rebuild ---------------------------------------------------------------------------------


def test_every_trade_version_is_rebuilt_from_the_trail(desk: Desk) -> None:
    do_history(desk)
    with desk.store.session() as s:
        rebuilt = audit.rebuild_trade_versions(audit.iter_store_rows(s))
        books = dict(s.execute(select(Book.id, Book.name)).all())
        leis = dict(s.execute(select(Counterparty.id, Counterparty.lei)).all())
        codes = dict(s.execute(select(Product.id, Product.code)).all())
        stored: dict[str, list[dict[str, Any]]] = {}
        for t in s.scalars(select(Trade).order_by(Trade.trade_uuid, Trade.version)):
            stored.setdefault(t.trade_uuid.hex, []).append(trade_payload(
                t, books[t.book_id], leis[t.counterparty_id], codes[t.product_id]))  # fmt: skip
    assert rebuilt == stored
    assert sorted(len(v) for v in rebuilt.values()) == [1, 2, 3]


# -- settings --------------------------------------------------------------------------------


def test_scenario_saves_are_audited(sqlite_store: Store, tmp_path: Path) -> None:
    lib = ScenarioLibrary(tmp_path / "scenarios.json",
                          audit=audit.settings_recorder(sqlite_store, lambda: "rita"))  # fmt: skip
    from app.services.stress import LIBRARY

    base = LIBRARY[0]
    lib.save(base)
    lib.delete(base.name)
    with sqlite_store.session() as s:
        recs = s.scalars(select(AuditRecord).order_by(AuditRecord.seq)).all()
    assert [(r.entity, r.action, r.username) for r in recs] == [
        ("settings", "save", "rita"),
        ("settings", "delete", "rita"),
    ]
    assert recs[0].entity_id == f"scenario:{base.name}"
    assert json.loads(recs[0].body)["after"] == base.to_dict()
    assert json.loads(recs[1].body)["before"] == base.to_dict()
    assert audit.verify_store(sqlite_store).ok


def test_scenario_not_saved_when_the_audit_cannot_be_written(
    sqlite_store: Store, tmp_path: Path
) -> None:
    from app.services.stress import LIBRARY

    path = tmp_path / "scenarios.json"
    lib = ScenarioLibrary(path, audit=audit.settings_recorder(sqlite_store, lambda: "rita"))
    other = sqlite3.connect(store_file(sqlite_store), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(ScenarioLibraryError, match="audit trail could not be written"):
            lib.save(LIBRARY[0])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not path.exists()
    lib.save(LIBRARY[0])
    assert path.exists() and audit.verify_store(sqlite_store).checked == 1


# -- service ---------------------------------------------------------------------------------


def test_service_filters_pages_and_exports(desk: Desk, tmp_path: Path) -> None:
    uuids = do_history(desk)
    svc = AuditService(desk.store, Principal.of("carol", UserRole.COMPLIANCE))
    page = svc.query()
    assert page.total == 9 and [e.seq for e in page.entries] == list(range(9, 0, -1))
    assert svc.query(AuditFilter(entity="limit")).total == 3
    assert svc.query(AuditFilter(user="rita")).total == 3
    assert svc.query(AuditFilter(action="amend")).total == 2
    one = svc.query(AuditFilter(entity_id=uuids[0].hex))
    assert [e.action for e in one.entries] == ["amend", "amend", "capture"]
    assert one.entries[1].changed_fields() == ["price", "updated_at", "version"]
    assert svc.query(AuditFilter(text="FIXED ☃")).total == 1
    assert svc.query(AuditFilter(text="100%_")).total == 0
    today = dt.datetime.now(dt.UTC).date()
    assert svc.query(AuditFilter(since=today, until=today)).total == 9
    assert svc.query(AuditFilter(until=today - dt.timedelta(days=1))).total == 0
    p2 = svc.query(offset=4, limit=4)
    assert [e.seq for e in p2.entries] == [5, 4, 3, 2] and p2.total == 9
    assert svc.distinct_values()["entity"] == ["limit", "trade"]
    assert svc.verify().ok

    n = svc.export(tmp_path / "audit.csv", AuditFilter(entity="trade"))
    with open(tmp_path / "audit.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert n == 6 and len(rows) == 7 and rows[0][0] == "seq"
    assert [r[6] for r in rows[1:]] == ["capture"] * 3 + ["amend"] * 2 + ["cancel"]
    assert json.loads(rows[4][8])["price"] == 75500000
    n = svc.export(tmp_path / "audit.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "audit.xlsx").active
    assert n == 9 and ws is not None and ws.max_row == 10 and ws.cell(10, 7).value == "deactivate"
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx"):
        svc.export(tmp_path / "audit.pdf")


def test_service_enforces_permissions(desk: Desk, tmp_path: Path) -> None:
    do_history(desk)
    trader = AuditService(desk.store, Principal.of("alice", UserRole.TRADER, ["Crude desk"]))
    with pytest.raises(PermissionDenied, match="may not view the audit trail"):
        trader.query()
    with pytest.raises(PermissionDenied):
        trader.verify()
    with pytest.raises(PermissionDenied, match="export the audit trail"):
        trader.export(tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(ValueError, match="before the 'from' date"):
        AuditFilter(since=dt.date(2026, 2, 1), until=dt.date(2026, 1, 1))


# -- command line ----------------------------------------------------------------------------


def cli_desk(tmp_path: Path) -> tuple[Path, Store]:
    data = tmp_path / "ws"
    store = Store.open_file(Settings.load(data).store_path)
    do_history(make_desk(store))
    return data, store


def test_cli_verify_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, store = cli_desk(tmp_path)
    store.close()
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 9 records, chain head 9 ")
    out_file = tmp_path / "trail.xlsx"
    assert cli.main(["audit", "export", "--data-dir", str(data), "--out", str(out_file),
                     "--entity", "limit", "--from", "2000-01-01"]) == 0  # fmt: skip
    assert "Wrote 3 audit records" in capsys.readouterr().out
    con = raw(Store.open_file(Settings.load(data).store_path))
    con.execute("UPDATE audit_log SET action = 'status' WHERE seq = 6")
    con.close()
    assert cli.main(["audit", "verify", "--data-dir", str(data)]) == 1
    assert capsys.readouterr().out.strip() == (
        "BROKEN at record 6: columns disagree with the body: action column 'status' but the "
        "body says 'cancel'"
    )


def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "verify", "--data-dir", str(tmp_path / "none")]) == 2
    assert "no local store at" in capsys.readouterr().err
    data, store = cli_desk(tmp_path)
    store.close()
    assert cli.main(["audit", "export", "--data-dir", str(data), "--out",
                     str(tmp_path / "x.csv"), "--from", "yesterday"]) == 2  # fmt: skip
    assert "--from must be a date as YYYY-MM-DD" in capsys.readouterr().err
    assert cli.main(["audit", "export", "--data-dir", str(data), "--out",
                     str(tmp_path / "nowhere" / "x.csv")]) == 2  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["audit", "verify", "--central", "postgresql://u:pw@h/db"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["audit", "frobnicate"])
    assert exc.value.code == 2
