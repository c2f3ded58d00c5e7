"""Sync between workstations through a real central PostgreSQL (tests/desk.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.models.entities import OutboxItem, SyncConflict
from tests.desk import CentralDesk
from tests.sync_helpers import Workstation

pytestmark = pytest.mark.postgres
_n = itertools.count(1)


@pytest.fixture
def desk(desk_server: Any) -> CentralDesk:
    d = CentralDesk.create(desk_server, f"sync{next(_n)}")
    d.add_user("alice", "TRADER", ("DESK-A",))
    d.add_user("adam", "TRADER", ("DESK-A",))
    d.add_user("bob", "TRADER", ("DESK-B",))
    return d


@pytest.fixture
def ws(tmp_path: Path, desk: CentralDesk) -> Iterator[Any]:
    made: list[Workstation] = []

    def make(user: str, **kw: Any) -> Workstation:
        w = Workstation(tmp_path / f"{user}{len(made)}", desk, user, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def central_versions(desk: CentralDesk) -> list[tuple[str, int]]:
    with desk.admin() as c:
        return [
            (u.hex, v)
            for u, v in c.execute(
                "SELECT trade_uuid, version FROM trade ORDER BY trade_uuid, version"
            ).fetchall()
        ]


def test_capture_pushes_and_other_desk_pulls(ws: Any, desk: CentralDesk) -> None:
    a, a2 = ws("alice"), ws("adam")
    rec = a.book()
    a.engine.sync_once()
    assert central_versions(desk) == [(rec.trade_uuid.hex, 1)]
    a2.engine.sync_once()
    got = a2.repo.get(rec.trade_uuid)
    assert got.economics() == rec.economics()
    assert got.created_by == "alice"


def test_stale_amendment_becomes_a_conflict_keeping_both(ws: Any, desk: CentralDesk) -> None:
    a, a2 = ws("alice"), ws("adam")
    rec = a.book()
    a.engine.sync_once()
    a2.engine.sync_once()
    a.amend(rec, price="82")
    theirs = a2.amend(a2.repo.get(rec.trade_uuid), price="79")
    a.engine.sync_once()
    a2.engine.sync_once()  # pushes v2 from a stale base: conflict
    with a2.store.session() as s:
        conflicts = list(s.scalars(select(SyncConflict)))
    assert len(conflicts) == 1
    assert '"price":79000000' in conflicts[0].local_payload
    assert '"price":82000000' in (conflicts[0].remote_payload or "")
    # the desk version is what a2 now shows; its own version is kept in the conflict
    assert str(a2.repo.get(rec.trade_uuid).price) == "82.000000"
    assert theirs.version == 2
    assert central_versions(desk) == [(rec.trade_uuid.hex, 1), (rec.trade_uuid.hex, 2)]


def test_retry_is_idempotent_and_other_desk_is_invisible(ws: Any, desk: CentralDesk) -> None:
    a = ws("alice")
    b = ws("bob")
    ra = a.book()
    rb = b.book(book="DESK-B")
    a.engine.sync_once()
    with a.store.session() as s:
        item = s.scalars(select(OutboxItem)).one()
        item.state = "pending"  # as if the reply was lost
    a.engine.sync_once()
    assert a.engine.counters.duplicates == 1
    b.engine.sync_once()
    a.engine.sync_once()
    assert len(central_versions(desk)) == 2
    # alice never sees DESK-B's trade
    from app.models.repository import TradeNotFoundError

    with pytest.raises(TradeNotFoundError):
        a.repo.get(rb.trade_uuid)
    assert b.repo.get(rb.trade_uuid).version == 1
    assert a.repo.get(ra.trade_uuid).version == 1


def _conflict(ws: Any) -> tuple[Any, Any, Any]:
    a, a2 = ws("alice"), ws("adam")
    rec = a.book()
    a.engine.sync_once()
    a2.engine.sync_once()
    a.amend(rec, price="82", comment="alice")
    a2.amend(a2.repo.get(rec.trade_uuid), price="79", quantity="2000")
    a.engine.sync_once()
    a2.engine.sync_once()
    return a, a2, rec


@pytest.mark.parametrize("how", ["theirs", "mine", "merge", "rebook"])
def test_conflict_resolutions_converge(ws: Any, desk: CentralDesk, how: str) -> None:
    from app.services.conflicts import ConflictService

    a, a2, rec = _conflict(ws)
    svc = ConflictService(a2.store, a2.trading, a2.bus)
    [c] = svc.open_conflicts()
    assert set(c.differing) == {"price", "quantity", "comment"}
    if how == "theirs":
        svc.keep_theirs(c.id)
    elif how == "mine":
        svc.keep_mine(c.id)
    elif how == "merge":
        svc.merge(c.id, {"quantity": "mine"})
    else:
        svc.rebook(c.id)
    assert svc.open_conflicts() == []
    a2.engine.sync_once()
    a.engine.sync_once()
    mine_now, theirs_now = a2.repo.get(rec.trade_uuid), a.repo.get(rec.trade_uuid)
    assert mine_now.version == theirs_now.version  # both desks converge
    expected = {
        "theirs": ("82.000000", "1000.000"),
        "mine": ("79.000000", "2000.000"),
        "merge": ("82.000000", "2000.000"),
        "rebook": ("82.000000", "1000.000"),
    }[how]
    assert (str(theirs_now.price), str(theirs_now.quantity)) == expected
    if how == "rebook":
        assert a.repo.count_current() == 2 == a2.repo.count_current()


def test_double_submit_books_once(ws: Any, desk: CentralDesk) -> None:
    import uuid as _uuid

    a = ws("alice")
    client_id = _uuid.uuid4()
    recs = [a.book(trade_uuid=client_id) for _ in range(5)]
    assert {r.trade_uuid for r in recs} == {client_id}
    a.engine.sync_once()
    assert central_versions(desk) == [(client_id.hex, 1)]
    from app.models.repository import DuplicateBookingError

    with pytest.raises(DuplicateBookingError):
        a.book(trade_uuid=client_id, price="90")


def test_four_eyes_through_the_desk_database(ws: Any, desk: CentralDesk) -> None:
    """A trader asks, a risk manager on another workstation approves and executes; the desk
    database accepts the amendment of the confirmed trade only with that approval."""
    from app.models.entities import UserRole
    from app.models.enums import TradeStatus
    from app.services.approvals import ApprovalRequired, ApprovalService
    from app.services.auth import Principal

    desk.add_user("rita", "RISK_MANAGER")
    desk.add_user("bo", "BACK_OFFICE")
    a, r, b = ws("alice"), ws("rita"), ws("bo")
    a.trading.set_principal(Principal("alice", UserRole.TRADER, frozenset({"DESK-A"})))
    r.trading.set_principal(Principal("rita", UserRole.RISK_MANAGER))
    b.trading.set_principal(Principal("bo", UserRole.BACK_OFFICE))
    rec = a.book()
    rec = a.trading.advance(rec.trade_uuid, rec.version, TradeStatus.VALIDATED)
    a.engine.sync_once()
    b.engine.sync_once()
    conf = b.trading.advance(rec.trade_uuid, rec.version, TradeStatus.CONFIRMED)
    b.engine.sync_once()
    a.engine.sync_once()
    assert a.repo.get(rec.trade_uuid).status is TradeStatus.CONFIRMED
    with pytest.raises(ApprovalRequired):
        a.amend(conf, price="90")
    svc_a = ApprovalService(a.store, a.bus, a.trading, None, lambda: a.trading.principal)
    raw = a.trading.raw_from_record(conf) | {"price": "90"}
    req = svc_a.request_trade_amend(conf.trade_uuid, conf.version, raw, "wrong price")
    a.engine.sync_once()
    r.engine.sync_once()  # rita's workstation receives the request
    svc_r = ApprovalService(r.store, r.bus, r.trading, None, lambda: r.trading.principal)
    svc_r.approve(req.request_uuid, "ok")
    r.engine.sync_once()
    with r.store.session() as s:
        states = sorted(i.state for i in s.scalars(select(OutboxItem)))
    assert states == ["acked"] * len(states), states
    a.engine.sync_once()
    got = a.repo.get(rec.trade_uuid)
    assert str(got.price) == "90.000000" and got.updated_by == "rita"
    with desk.admin() as c:
        assert c.execute("SELECT state, decided_by FROM approval_request").fetchall() == [
            ("applied", "rita")
        ]
        assert c.execute("SELECT price FROM trade WHERE is_current").fetchone()[0] == 90_000_000
    # the desk database itself refuses self-approval, and a replay of the approved change
    import json as _json
    import uuid as _uuid

    own = {"request_uuid": req.request_uuid, "kind": "trade_amend", "book": "DESK-A",
           "entity_key": rec.trade_uuid.hex, "state": "approved", "requested_by": "alice"}  # fmt: skip
    with desk.connect("alice") as c:
        out = c.execute("SELECT qe_apply(%s::json, 'x')", (_json.dumps([{
            "op_id": str(_uuid.uuid4()), "entity": "approval", "version": 2,
            "payload": _json.dumps(own), "client_ts": None}]),)).fetchone()[0]  # fmt: skip
    assert out["results"][0]["status"] == "rejected"
    again = r.trading.repo.get(rec.trade_uuid)
    with r.store.session() as s:
        item = s.scalars(select(OutboxItem).where(OutboxItem.entity == "trade")).one()
        item.state, item.op_id = "pending", str(_uuid.uuid4())  # replay the approved change
    r.engine.sync_once()
    with r.store.session() as s:
        item = s.scalars(select(OutboxItem).where(OutboxItem.entity == "trade")).one()
    assert item.state in ("rejected", "conflict"), (item.state, again.version)


def test_other_schema_version_stays_offline_and_writes_nothing(ws: Any, desk: CentralDesk) -> None:
    import time as _time

    a = ws("alice")
    a.book()
    with desk.admin() as c:
        c.execute("UPDATE alembic_version SET version_num = '9999'")
    a.engine.start()
    deadline = _time.monotonic() + 15
    while a.engine.status.state != "incompatible" and _time.monotonic() < deadline:
        _time.sleep(0.05)
    assert a.engine.status.state == "incompatible"
    assert "schema 9999" in a.engine.status.message
    assert a.engine.pending_count() == 1
    assert central_versions(desk) == []


def test_limit_set_with_four_eyes_reaches_every_desk_and_binds_them(
    ws: Any, desk: CentralDesk
) -> None:
    """A risk manager's position limit (approved by a second risk manager) is synced to the
    traders' workstations, and the desk database enforces it across desks."""
    import threading

    from app.models.entities import LimitKind, UserRole
    from app.models.limits import LimitDraft, LimitRepository
    from app.services.approvals import ApprovalService
    from app.services.auth import Principal
    from app.services.limits import LimitService

    desk.add_user("rita", "RISK_MANAGER")
    desk.add_user("ray", "RISK_MANAGER")
    r, y, a, a2 = ws("rita"), ws("ray"), ws("alice"), ws("adam")

    def services(w: Any, role: UserRole) -> ApprovalService:
        w.trading.set_principal(Principal(w.user, role))
        limits = LimitService(LimitRepository(w.store), principal=w.trading.principal)
        return ApprovalService(w.store, w.bus, w.trading, limits, lambda: w.trading.principal)

    svc_r, svc_y = services(r, UserRole.RISK_MANAGER), services(y, UserRole.RISK_MANAGER)
    book_id = LimitRepository(r.store).books()
    book_id = next(i for i, n in book_id.items() if n == "DESK-A")
    req = svc_r.request_limit_change(
        LimitDraft(book_id, LimitKind.POSITION, "1500", product="CR-BRENT"), "desk cap"
    )
    r.engine.sync_once()
    y.engine.sync_once()
    svc_y.approve(req.request_uuid, "agreed")
    y.engine.sync_once()
    with y.store.session() as s:
        assert sorted({i.state for i in s.scalars(select(OutboxItem))}) == ["acked"]
    with desk.admin() as c:
        assert c.execute("SELECT kind, product, limit_value FROM risk_limit").fetchall() == [
            ("POSITION", "CR-BRENT", 1_500_000)
        ]
    for w in (a, a2):
        w.engine.sync_once()
        [lim] = LimitRepository(w.store).list_limits()
        assert (lim.kind, lim.product, str(lim.limit_value)) == (
            LimitKind.POSITION,
            "CR-BRENT",
            "1500.000",
        )
    # two desks each book 1,000 bbl: each fits alone, together they breach
    a.book(quantity="1000")
    a2.book(quantity="1000")
    barrier = threading.Barrier(2)

    def go(w: Any) -> None:
        barrier.wait()
        w.engine.sync_once()

    threads = [threading.Thread(target=go, args=(w,)) for w in (a, a2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    states = []
    for w in (a, a2):
        with w.store.session() as s:
            states += [(i.state, i.last_error) for i in s.scalars(select(OutboxItem))]
    assert sorted(st for st, _ in states) == ["acked", "rejected"]
    assert any("position limit" in err for _, err in states)


def test_cancel_racing_an_amendment_is_a_conflict_not_a_silent_win(
    ws: Any, desk: CentralDesk
) -> None:
    from app.models.enums import TradeStatus

    a, a2 = ws("alice"), ws("adam")
    rec = a.book()
    a.engine.sync_once()
    a2.engine.sync_once()
    a.trading.cancel(rec.trade_uuid, 1, "booked twice")
    a2.amend(a2.repo.get(rec.trade_uuid), price="83")
    a.engine.sync_once()  # the cancellation reaches the desk first
    a2.engine.sync_once()
    with a2.store.session() as s:
        [c] = s.scalars(select(SyncConflict)).all()
    assert '"price":83000000' in c.local_payload and '"status":"CANCELLED"' in (
        c.remote_payload or ""
    )
    assert a2.repo.get(rec.trade_uuid).status is TradeStatus.CANCELLED  # the desk's version


def test_long_outage_catches_up_in_batches_with_progress(ws: Any, desk: CentralDesk) -> None:
    """Thousands of changes made offline push in bounded batches, reporting progress; the
    other desk pulls them in bounded batches too."""
    import datetime as _dt
    import tracemalloc

    from app.services.events import SYNC_STATUS

    a = ws("alice", batch=100, pull_batch=100)
    b = ws("adam", pull_batch=100)
    raws = [{"book": "DESK-A", "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
             "instrument": "Future", "side": "Buy", "quantity": str(100 + i), "price": "80",
             "trade_date": _dt.date.today().isoformat(), "delivery_start": "2027-01-01",
             "delivery_end": "2027-01-31"} for i in range(600)]  # fmt: skip
    a.trading.capture_many(raws)
    progress: list[tuple[int, int]] = []
    a.bus.subscribe(SYNC_STATUS, lambda status: status.progress and progress.append(
        status.progress))  # fmt: skip
    tracemalloc.start()
    try:
        a.engine.sync_once()
        _, peak_push = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        b.engine.sync_once()
        _, peak_pull = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert progress[:6] == [(100, 600), (200, 600), (300, 600), (400, 600), (500, 600),
                            (600, 600)]  # fmt: skip
    assert b.repo.count_current() == 600
    # bounded: one batch at a time, never the whole backlog
    print(f"peak traced memory: push {peak_push / 1e6:.1f} MB, pull {peak_pull / 1e6:.1f} MB")
    assert peak_push < 4e6 and peak_pull < 4e6, (peak_push, peak_pull)
