"""Users and sign-in: the local user store (audited, argon2id cache), offline sign-in, lockout,
online sign-in through a connection factory (a fake, and a real desk database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from pytestqt.qtbot import QtBot
from sqlalchemy import select

from app.models.entities import AppUser, AuditRecord, Book, UserRole
from app.models.store import Store
from app.models.users import UserRepository, UserValidationError
from app.services.auth import Principal
from app.services.session import (
    LOCKOUT_SECONDS,
    MAX_FAILURES,
    WRONG_CREDENTIALS,
    SignInError,
    SignInLocked,
    SignInService,
)
from app.sync.connection import CentralAuthFailed, CentralPermission, CentralUnreachable

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "Corr3ct-Horse-Battery!"


@pytest.fixture
def users(sqlite_store: Store) -> UserRepository:
    with sqlite_store.session() as s:
        s.add_all([Book(name="DESK-A"), Book(name="DESK-B")])
    return UserRepository(sqlite_store, hasher=FAST)


def audit_rows(store: Store) -> list[AuditRecord]:
    with store.session() as s:
        return list(s.scalars(select(AuditRecord).order_by(AuditRecord.seq)))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- the local user store ------------------------------------------------------------------------


def test_upsert_list_and_audit_without_secrets(users: UserRepository) -> None:
    assert not users.has_users()
    rec = users.upsert_user("tina", "Tina T", "trader", ["DESK-A"], actor="adam")
    assert (rec.role, rec.books, rec.active, rec.version) == (UserRole.TRADER, ("DESK-A",), True, 1)
    assert users.has_users()
    same = users.upsert_user("tina", "Tina T", UserRole.TRADER, ["DESK-A"], actor="adam")
    assert same.version == 1  # nothing changed: nothing written
    rec = users.upsert_user("tina", "Tina T", UserRole.TRADER, ["DESK-A", "DESK-B"], actor="adam")
    assert rec.books == ("DESK-A", "DESK-B") and rec.version == 2
    users.set_local_password("tina", SECRET, actor="adam")
    assert users.get("tina").has_local_password  # type: ignore[union-attr]
    users.deactivate("tina", actor="adam")
    assert not users.has_users() and [u.username for u in users.list_users()] == ["tina"]
    rows = audit_rows(users.store)
    assert [(r.entity, r.entity_id, r.action, r.username) for r in rows] == [
        ("user", "tina", "create", "adam"),
        ("user", "tina", "update", "adam"),
        ("user", "tina", "set_password", "adam"),
        ("user", "tina", "deactivate", "adam"),
    ]
    body = json.loads(rows[1].body)
    assert body["before"]["books"] == ["DESK-A"] and body["after"]["books"] == ["DESK-A", "DESK-B"]
    with users.store.session() as s:
        stored_hash = s.scalars(select(AppUser.password_hash)).one()
    assert stored_hash and stored_hash.startswith("$argon2id$")
    for r in rows:
        assert SECRET not in r.body and stored_hash not in r.body and "argon2" not in r.body


@pytest.mark.parametrize(
    ("name", "role", "books", "match"),
    [
        ("Tina", "trader", [], "invalid user name"),
        ("qe bad", "trader", [], "invalid user name"),
        ("tina", "boss", [], "unknown role"),
        ("tina", "trader", ["NOPE"], "unknown book 'NOPE'"),
    ],
)
def test_upsert_rejects_bad_input(
    users: UserRepository, name: str, role: str, books: list[str], match: str
) -> None:
    with pytest.raises(UserValidationError, match=match):
        users.upsert_user(name, "", role, books)
    assert users.list_users() == []


def test_verify_and_rehash(users: UserRepository) -> None:
    users.upsert_user("tina", "", "trader", ["DESK-A"])
    users.set_local_password("tina", SECRET)
    assert users.verify_local_password("tina", SECRET)
    assert not users.verify_local_password("tina", SECRET + "x")
    assert not users.verify_local_password("nobody", SECRET)
    stronger = UserRepository(users.store, hasher=PasswordHasher(time_cost=2, memory_cost=16,
                                                                 parallelism=1))  # fmt: skip
    with users.store.session() as s:
        before = s.scalars(select(AppUser.password_hash)).one()
    assert stronger.verify_local_password("tina", SECRET)
    with users.store.session() as s:
        after = s.scalars(select(AppUser.password_hash)).one()
    assert after != before and "t=2" in (after or "")
    assert stronger.verify_local_password("tina", SECRET)


# -- offline sign-in -----------------------------------------------------------------------------


def test_offline_sign_in_right_and_wrong(users: UserRepository) -> None:
    users.upsert_user("tina", "Tina", "trader", ["DESK-A"])
    users.set_local_password("tina", SECRET)
    svc = SignInService(users)
    res = svc.authenticate("tina", SECRET)
    assert res.principal == Principal.of("tina", UserRole.TRADER, {"DESK-A"})
    assert not res.online and res.note.startswith("Working offline")
    with pytest.raises(SignInError) as wrong:
        svc.sign_in("tina", "nope")
    with pytest.raises(SignInError) as unknown:
        svc.sign_in("nobody", "nope")
    assert str(wrong.value) == str(unknown.value) == WRONG_CREDENTIALS  # no hint who exists
    with pytest.raises(SignInError, match="Enter your user name"):
        svc.sign_in("", "x")
    users.deactivate("tina")
    with pytest.raises(SignInError, match="Wrong user name"):
        svc.sign_in("tina", SECRET)


def test_lockout_after_five_failures(users: UserRepository) -> None:
    users.upsert_user("tina", "", "trader", [])
    users.set_local_password("tina", SECRET)
    clock = Clock()
    svc = SignInService(users, clock=clock)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(SignInError):
            svc.sign_in("tina", "bad")
    assert svc.sign_in("tina", SECRET).username == "tina"  # success resets the count
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInError) as err:
            svc.sign_in("tina", "bad")
        assert not isinstance(err.value, SignInLocked)
    with pytest.raises(SignInLocked, match="try again in 30 s") as locked:
        svc.sign_in("tina", SECRET)  # even the right password
    assert locked.value.seconds == pytest.approx(LOCKOUT_SECONDS)
    assert svc.locked_for("other") == 0
    clock.t += LOCKOUT_SECONDS - 1
    with pytest.raises(SignInLocked, match="try again in 1 s"):
        svc.sign_in("tina", SECRET)
    clock.t += 1.01
    assert svc.sign_in("tina", SECRET).role is UserRole.TRADER


# -- online sign-in through a fake desk database -------------------------------------------------


class FakeConn:
    def __init__(self, who: dict[str, Any]) -> None:
        self.who = who
        self.closed = False

    def execute(self, sql: str) -> Any:
        assert sql == "SELECT qe_whoami()"
        who = self.who

        class Cursor:
            def fetchone(self) -> tuple[Any]:
                return (who,)

        return Cursor()

    def close(self) -> None:
        self.closed = True


def test_online_sign_in_refreshes_user_and_caches_hash(users: UserRepository) -> None:
    conns: list[FakeConn] = []
    who = {"user": "tina", "role": "TRADER", "display_name": "Tina", "books": ["DESK-B", "NEW-1"]}

    def central(user: str, password: str) -> FakeConn:
        if password != SECRET:
            raise CentralAuthFailed("rejected user tina: wrong password or no such user")
        conns.append(FakeConn(who))
        return conns[-1]

    svc = SignInService(users)
    res = svc.authenticate("tina", SECRET, central)
    assert res.online and conns[-1].closed
    assert res.principal == Principal.of("tina", UserRole.TRADER, {"DESK-B", "NEW-1"})
    rec = users.get("tina")
    assert rec is not None and rec.books == ("DESK-B", "NEW-1") and rec.has_local_password
    with pytest.raises(SignInError, match=WRONG_CREDENTIALS):
        svc.sign_in("tina", "bad", central)
    n = len(audit_rows(users.store))
    svc.sign_in("tina", SECRET, central)  # nothing changed: no new audit record, hash kept
    assert len(audit_rows(users.store)) == n

    def down(user: str, password: str) -> FakeConn:
        raise CentralUnreachable("Cannot reach the desk database db at h:5432: refused.")

    res = svc.authenticate("tina", SECRET, down)  # cached hash
    assert not res.online and "Working offline: Cannot reach" in res.note
    assert res.principal.books == frozenset({"DESK-B", "NEW-1"})
    with pytest.raises(SignInError, match="unreachable"):
        svc.sign_in("tina", "bad", down)

    def gone(user: str, password: str) -> FakeConn:
        raise CentralPermission("tina is not an active workstation user")

    with pytest.raises(SignInError, match="not an active workstation user"):
        svc.sign_in("tina", SECRET, gone)
    who["role"] = None
    with pytest.raises(SignInError, match="not an active user"):
        svc.sign_in("tina", SECRET, central)
    assert not users.has_users()  # deactivated locally: no offline sign-in either
    with pytest.raises(SignInError):
        svc.sign_in("tina", SECRET, down)


# -- the real desk database ----------------------------------------------------------------------


@pytest.mark.postgres
def test_sign_in_with_a_real_desk_database(desk_server: Any, sqlite_store: Store) -> None:
    from app.views.login_dialog import CentralConnector
    from tests.desk import CentralDesk

    desk = CentralDesk.create(desk_server, "signin_desk")
    desk.add_user("tina", "TRADER", ("DESK-A",), password=SECRET)
    desk.add_user("bob", "BACK_OFFICE", (), password=SECRET + "b")
    users = UserRepository(sqlite_store, hasher=FAST)
    svc = SignInService(users)
    central = CentralConnector(desk.url("tina"))
    res = svc.authenticate("tina", SECRET, central)
    assert res.online
    assert res.principal == Principal.of("tina", UserRole.TRADER, {"DESK-A"})
    assert svc.sign_in("bob", SECRET + "b", central).role is UserRole.BACK_OFFICE
    with pytest.raises(SignInError) as wrong:
        svc.sign_in("tina", "wrong", central)
    with pytest.raises(SignInError) as unknown:
        svc.sign_in("mallory", "wrong", central)
    assert str(wrong.value) == str(unknown.value) == WRONG_CREDENTIALS
    # the desk database goes away: the cached hash signs tina in, offline
    unreachable = CentralConnector(f"postgresql://tina@127.0.0.1:{_free_port()}/signin_desk")
    res = svc.authenticate("tina", SECRET, unreachable)
    assert not res.online and res.note.startswith("Working offline")
    assert res.principal.books == frozenset({"DESK-A"})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the sign-in dialog --------------------------------------------------------------------------


@pytest.fixture
def runner() -> Iterator[Any]:
    from app.views.jobs import JobRunner

    r = JobRunner()
    yield r
    r.shutdown()


def test_login_dialog_wrong_then_right(users: UserRepository, runner: Any, qtbot: QtBot) -> None:
    from app.views.login_dialog import LoginDialog

    users.upsert_user("tina", "", "trader", ["DESK-A"])
    users.set_local_password("tina", SECRET)
    dlg = LoginDialog(SignInService(users), runner)
    qtbot.addWidget(dlg)
    assert "No desk database is configured" in dlg.note.text()
    qtbot.keyClicks(dlg.username, "tina")
    qtbot.keyClicks(dlg.password, "wrong")
    dlg.sign_in_button.click()
    qtbot.waitUntil(lambda: dlg.error.text() == WRONG_CREDENTIALS, timeout=10_000)
    assert dlg.password.text() == "" and dlg.sign_in_button.isEnabled()
    assert dlg.result_ is None
    qtbot.keyClicks(dlg.password, SECRET)
    with qtbot.waitSignal(dlg.accepted, timeout=10_000):
        dlg.sign_in_button.click()
    assert dlg.result_ is not None and dlg.result_.principal.username == "tina"


def test_start_up_signs_in_only_when_users_exist(tmp_path: Path, monkeypatch: Any) -> None:
    from app.settings import Settings
    from app.views.application import build_context, close_context, sign_in_at_start

    monkeypatch.delenv("QE_CENTRAL_URL", raising=False)
    settings = Settings.load(tmp_path / "data")
    settings.ensure_dirs()
    ctx = build_context(settings, seed_demo_if_empty=False)
    try:
        assert ctx.central is None
        assert sign_in_at_start(ctx, headless=True) is True  # no users: local owner
        assert ctx.trading.principal.is_local_owner
        with ctx.store.session() as s:
            s.add(Book(name="DESK-A"))
        ctx.users.upsert_user("tina", "", "trader", ["DESK-A"])
        msg = sign_in_at_start(ctx, headless=True)
        assert isinstance(msg, str) and "cannot sign in" in msg
    finally:
        close_context(ctx)
