"""Security of the desk database, proven with direct SQL and the workstation's own paths.

* Each user's own PostgreSQL role (five roles, desks DESK-A and DESK-B) sees only what row-level
  security allows and cannot write any table directly; ``qe_apply`` refuses the other desk;
  spoofed settings (``SET qe.user``, ``SET ROLE``, ``SET row_security``) change nothing; no
  application role owns a table or bypasses RLS; FORCE RLS is on.
* SQL injection (hypothesis text) through every text field of a pushed trade and through the
  admin functions is inert: a clean rejection or the text stored verbatim.
* A sentinel password never reaches the local store, its WAL, the logs or the settings files;
  without a usable keyring it is not stored at all.
* ``test_connection`` names the failure: unreachable, bad password, schema version, permission.
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keyring.backends import fail

from app.models.migrations.central import TABLES
from app.sync.connection import (
    CentralConfig,
    admin_create_user,
    admin_upsert_book,
    schema_head,
    test_connection,
)
from tests.desk import COUNTERPARTIES, CentralDesk
from tests.memory_keyring import MemoryKeyring, use_keyring

pytestmark = pytest.mark.postgres

LEI_A = COUNTERPARTIES[0][1]
ROLES = {"tra": ("TRADER", ("DESK-A",)), "trb": ("TRADER", ("DESK-B",)),
         "risk": ("RISK_MANAGER", ()), "bo": ("BACK_OFFICE", ()), "comp": ("COMPLIANCE", ()),
         "adm": ("ADMIN", ())}  # fmt: skip
RLS_TABLES = ("trade", "change_log", "audit_log", "app_user", "book_access", "approval_request",
              "risk_limit")  # fmt: skip


@pytest.fixture(autouse=True)
def _no_real_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("QE_NO_KEYRING", raising=False)
    with use_keyring(fail.Keyring()):
        yield


def payload(user: str, book: str = "DESK-A", **over: Any) -> dict[str, Any]:
    """A new trade version 1 as the sync engine pushes it (see app.models.migrations.central)."""
    p = {
        "trade_uuid": uuid.uuid4().hex, "version": 1, "book": book, "counterparty_lei": LEI_A,
        "product": "CR-BRENT", "instrument": "FUTURE", "side": "BUY", "quantity": 1_000_000,
        "quantity_unit": "BBL", "price": 81_500_000, "currency": "USD",
        "trade_date": "2026-11-24", "delivery_start": "2027-01-01", "delivery_end": "2027-01-31",
        "status": "CAPTURED", "option_type": None, "strike": None, "expiry_date": None,
        "exercise_style": None, "premium": None, "comment": "sec test", "created_by": user,
        "created_at": "2026-11-25T00:00:00.000000Z", "updated_by": user,
        "updated_at": "2026-11-25T00:00:00.000000Z",
    }  # fmt: skip
    p.update(over)
    return p


def apply(conn: psycopg.Connection[Any], *payloads: dict[str, Any]) -> list[dict[str, Any]]:
    ops = [{"op_id": str(uuid.uuid4()), "entity": "trade", "payload": json.dumps(p),
            "client_ts": "2026-11-25T00:00:00Z"} for p in payloads]  # fmt: skip
    res = conn.execute("SELECT qe_apply(%s::json, %s)", (json.dumps(ops), "sec-ws")).fetchone()
    assert res is not None
    return list(res[0]["results"])


class Desk:
    """A desk database with one user per role and trades in both desks."""

    def __init__(self, server: Any) -> None:
        self.tag = "s" + uuid.uuid4().hex[:6]
        self.central = CentralDesk.create(server, self.tag)
        self.u = {k: f"{self.tag}_{k}" for k in ROLES}
        for key, (role, books) in ROLES.items():
            self.central.add_user(self.u[key], role, books)
        with self.connect("tra") as c:
            assert [r["status"] for r in apply(c, payload(self.u["tra"]),
                                               payload(self.u["tra"]))] == ["applied"] * 2  # fmt: skip
        with self.connect("trb") as c:
            assert apply(c, payload(self.u["trb"], "DESK-B"))[0]["status"] == "applied"

    def connect(self, key: str) -> psycopg.Connection[Any]:
        return self.central.connect(self.u[key], autocommit=True)

    def count(self, table: str, where: str = "true") -> int:
        with self.central.admin() as c:
            row = c.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(scope="module")
def desk(desk_server: Any) -> Desk:
    return Desk(desk_server)


# -- reading: row-level security per role and desk -----------------------------------------------


def _visible(conn: psycopg.Connection[Any], sql: str) -> list[Any]:
    return [r[0] for r in conn.execute(sql).fetchall()]


def test_select_visibility_per_role_and_desk(desk: Desk) -> None:
    book_of = "(SELECT name FROM book WHERE id = book_id)"
    all_audit = desk.count("audit_log")
    own_audit = {k: desk.count("audit_log", f"username = '{desk.u[k]}'") for k in ROLES}
    expected_books = {"tra": {"DESK-A"}, "trb": {"DESK-B"}, "risk": {"DESK-A", "DESK-B"},
                      "bo": {"DESK-A", "DESK-B"}, "comp": {"DESK-A", "DESK-B"}, "adm": set()}  # fmt: skip
    n_trades = {"tra": 2, "trb": 1, "risk": 3, "bo": 3, "comp": 3, "adm": 0}
    for key in ROLES:
        with desk.connect(key) as c:
            trade_books = _visible(c, f"SELECT {book_of} FROM trade")
            assert len(trade_books) == n_trades[key], key
            assert set(trade_books) == expected_books[key], key
            assert set(_visible(c, f"SELECT {book_of} FROM change_log")) == expected_books[key]
            n_audit = len(_visible(c, "SELECT seq FROM audit_log"))
            assert n_audit == (all_audit if key in ("comp", "adm") else own_audit[key]), key
            users = _visible(c, "SELECT username FROM app_user")
            if key == "adm":
                assert set(desk.u.values()) <= set(users)
            else:
                assert users == [desk.u[key]], key
    assert own_audit["tra"] == 2 and own_audit["trb"] == 1  # the fixture's captures


@pytest.mark.parametrize("key", list(ROLES))
def test_direct_writes_are_denied(desk: Desk, key: str) -> None:
    statements = []
    for table in ("trade", "change_log", "audit_log", "book"):
        statements += [f"INSERT INTO {table} DEFAULT VALUES",
                       f"UPDATE {table} SET id = id" if table == "book" else
                       f"UPDATE {table} SET username = username" if table in ("audit_log",
                                                                               "change_log")
                       else f"UPDATE {table} SET comment = 'x'",
                       f"DELETE FROM {table}"]  # fmt: skip
    statements.append("TRUNCATE audit_log")
    before = {t: desk.count(t) for t in ("trade", "change_log", "audit_log", "book")}
    with desk.connect(key) as c:
        for sql in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                c.execute(sql)
    assert {t: desk.count(t) for t in before} == before


def test_qe_apply_rejects_other_desk_and_read_only_roles(desk: Desk) -> None:
    before = desk.count("trade")
    with desk.connect("tra") as c:
        res = apply(c, payload(desk.u["tra"], "DESK-B"))[0]
    assert res["status"] == "rejected" and "may not write trades in book DESK-B" in res["error"]
    with desk.connect("tra") as c:  # pushing a change as somebody else
        res = apply(c, payload(desk.u["trb"], "DESK-A"))[0]
    assert res["status"] == "rejected" and "cannot be pushed by" in res["error"]
    for key in ("risk", "comp", "adm", "bo"):
        with desk.connect(key) as c:
            res = apply(c, payload(desk.u[key], "DESK-A"))[0]
        assert res["status"] == "rejected", key
        assert "may not write trades" in res["error"] or "back office may only" in res["error"]
    assert desk.count("trade") == before


def test_spoofed_settings_change_nothing(desk: Desk) -> None:
    with desk.connect("tra") as c:
        base = _visible(c, "SELECT trade_uuid FROM trade ORDER BY trade_uuid")
        c.execute(f"SET qe.\"user\" = '{desk.u['adm']}'")  # "user" is a keyword
        c.execute("SELECT set_config('qe.username', %s, false)", (desk.u["adm"],))
        c.execute("SET application_name = 'QuantaEnergi admin'")
        assert _visible(c, "SELECT trade_uuid FROM trade ORDER BY trade_uuid") == base
        who = c.execute("SELECT qe_whoami()").fetchone()
        assert who is not None and who[0]["role"] == "TRADER"
        for role in ("qe_admin", "qe_risk_manager", "qe_owner", desk.u["risk"]):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(f'SET ROLE "{role}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(f'SET SESSION AUTHORIZATION "{desk.u["risk"]}"')
        c.execute("SET row_security = off")
        try:
            rows = _visible(c, "SELECT trade_uuid FROM trade ORDER BY trade_uuid")
        except psycopg.errors.InsufficientPrivilege:  # "query would be affected by RLS"
            rows = base
        assert rows == base
        # a push under a spoofed setting is judged by the session user, not the setting
        c.execute("RESET row_security")
        res = apply(c, payload(desk.u["tra"], "DESK-B"))[0]
        assert res["status"] == "rejected"


def test_roles_own_nothing_and_cannot_bypass_rls(desk: Desk) -> None:
    app_roles = [*desk.u.values(), "qe_app", "qe_trader", "qe_risk_manager", "qe_back_office",
                 "qe_compliance", "qe_admin"]  # fmt: skip
    with desk.central.admin() as c:
        owners = dict(c.execute("SELECT tablename, tableowner FROM pg_tables "
                                "WHERE schemaname = 'public'").fetchall())  # fmt: skip
        assert {owners[t] for t in TABLES} == {"qe_owner"}
        assert not set(owners.values()) & set(app_roles)
        attrs = c.execute("SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb "
                          "FROM pg_roles WHERE rolname = ANY(%s)", (app_roles,)).fetchall()  # fmt: skip
        assert len(attrs) == len(app_roles)
        assert all(not any(flags) for _name, *flags in attrs), attrs
        assert c.execute("SELECT rolsuper OR rolbypassrls FROM pg_roles "
                         "WHERE rolname = 'qe_owner'").fetchone() == (False,)  # fmt: skip
        rls = dict(c.execute("SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class "
                             "WHERE relname = ANY(%s) AND relkind = 'r'",
                             (list(RLS_TABLES),)).fetchall())  # fmt: skip
        assert rls == dict.fromkeys(RLS_TABLES, True)


# -- SQL injection -------------------------------------------------------------------------------

NASTY = st.one_of(
    st.sampled_from(
        [
            "'",
            "''",
            "'; DROP TABLE trade; --",
            "\x00",
            "a\x00b",
            "\\",
            '"',
            "$$",
            "%s",
            "%(x)s",
            "');--",
            "\u202e",
            "é" * 3000,
            "🔥" * 500,
            "DESK-A'--",
            "1 OR 1=1",
            "Robert'); DROP TABLE book;--",
        ]
    ),
    st.text(max_size=200),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=3000),
)
FIELDS = ("comment", "book", "product", "counterparty_lei")


def test_injection_through_trade_payload_text_fields(desk: Desk) -> None:
    applied = 0
    base = desk.count("trade")
    with desk.connect("tra") as c:

        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
        @given(field=st.sampled_from(FIELDS), text=NASTY)
        def check(field: str, text: str) -> None:
            nonlocal applied
            p = payload(desk.u["tra"], **{field: text})
            res = apply(c, p)[0]
            assert res["status"] in ("applied", "rejected"), res
            if res["status"] == "rejected":
                assert isinstance(res["error"], str) and res["error"]
                return
            applied += 1
            stored = c.execute(
                "SELECT qe_trade_payload(t) FROM trade t WHERE trade_uuid = %s AND is_current",
                (p["trade_uuid"],),
            ).fetchone()
            assert stored is not None and stored[0][field] == text  # verbatim

        check()
        # deterministic cases, whatever hypothesis drew: stored verbatim / cleanly rejected
        for field, text, status in (("comment", "'; DROP TABLE trade; --", "applied"),
                                    ("comment", "a\x00b", "rejected"),
                                    ("book", "DESK-A'; DROP TABLE trade; --", "rejected")):  # fmt: skip
            p = payload(desk.u["tra"], **{field: text})
            assert apply(c, p)[0]["status"] == status
            if status == "applied":
                applied += 1
                row = c.execute("SELECT comment FROM trade WHERE trade_uuid = %s",
                                (p["trade_uuid"],)).fetchone()  # fmt: skip
                assert row == (text,)
        c.execute(
            "SELECT qe_apply(%s::json, %s)",
            (json.dumps([{"op_id": "x'); DROP TABLE trade; --", "entity": "trade'; --",
                          "payload": "{}"}]), "'; DROP TABLE change_log; --"),
        )  # fmt: skip
    with desk.central.admin() as a:
        assert a.execute("SELECT to_regclass('trade') IS NOT NULL AND "
                         "to_regclass('change_log') IS NOT NULL").fetchone() == (True,)  # fmt: skip
    assert desk.count("trade") == base + applied


def test_injection_through_admin_functions(desk: Desk) -> None:
    books0, users0 = desk.count("book"), desk.count("app_user")
    new_books: set[str] = set()
    new_users: set[str] = set()
    with desk.connect("adm") as c:

        @settings(max_examples=40, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
        @given(name=NASTY, display=NASTY, suffix=NASTY)
        def check(name: str, display: str, suffix: str) -> None:
            book = f"INJ-{name}"
            try:
                admin_upsert_book(c, book, display)
            except (ValueError, psycopg.DataError):  # NUL is refused before reaching the server
                pass
            else:
                new_books.add(book)
                row = c.execute("SELECT description FROM book WHERE name = %s", (book,)).fetchone()
                assert row == (display,)
            uname = f"{desk.tag}_i{suffix}"
            try:
                admin_create_user(c, uname, "TRADER", "pw-Inj3ct!", ["DESK-A"], display)
            except (ValueError, psycopg.DataError):
                return
            new_users.add(uname)
            row = c.execute("SELECT display_name FROM app_user WHERE username = %s",
                            (uname,)).fetchone()  # fmt: skip
            assert row == (display or uname,)

        check()
    assert desk.count("book") == books0 + len(new_books)
    assert desk.count("app_user") == users0 + len(new_users)
    with desk.central.admin() as a:
        assert a.execute("SELECT to_regclass('trade') IS NOT NULL").fetchone() == (True,)
        roles = {r[0] for r in a.execute("SELECT rolname FROM pg_roles")}
    assert new_users <= roles


# -- secrets -------------------------------------------------------------------------------------


def _files_with(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_sentinel_password_only_in_keyring(
    desk: Desk, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import main
    from app.views.settings_dialog import SettingsDialog
    from tests.gui_helpers import close_window, open_window

    sentinel = f"S3NT1NEL-{uuid.uuid4()}"
    user = f"{desk.tag}_sentinel"
    desk.central.add_user(user, "TRADER", ("DESK-A",), password=sentinel)
    url = desk.central.url(user)
    data = tmp_path / "data"
    log_dir = data / "logs"
    log_dir.mkdir(parents=True)
    handler = logging.FileHandler(log_dir / "quantaenergi.log", encoding="utf-8")
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    monkeypatch.setenv("QE_CENTRAL_URL", "")  # restored after the test even if main() sets it
    monkeypatch.setattr("getpass.getpass", lambda prompt="": sentinel)
    kr = MemoryKeyring()
    try:
        with use_keyring(kr):
            # CLI path: store + save + test
            assert main(["central", "set-password", url, "--save", "--data-dir", str(data)]) == 0
            assert main(["central", "test", url]) == 0
            kr.secrets.clear()
            # GUI path: the Settings dialog of a running workstation
            win = open_window(qtbot, data, seed=True)
            try:
                dlg: SettingsDialog = win.open_settings()
                dlg.desk.password.setText(sentinel)
                with qtbot.waitSignal(dlg.sig_tested, timeout=20_000) as tested:
                    qtbot.mouseClick(dlg.desk.test_button, _left())
                assert tested.args[0].ok, tested.args[0]
                with qtbot.waitSignal(dlg.sig_saved, timeout=20_000):
                    dlg.save_button.click()
                qtbot.waitUntil(lambda: not dlg.isVisible())
                assert win.central_status.text() == "Central DB: offline"
            finally:
                close_window(win)
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old_level)
    key = ("QuantaEnergi central", f"{user}@127.0.0.1:{desk.central.server.port}/{desk.tag}")
    assert kr.secrets == {key: sentinel}  # it went to the keyring, and only there
    names = {p.name for p in data.rglob("*")}
    assert {"store.db", "central.json", "workstation.ini", "quantaenergi.log"} <= names
    assert (log_dir / "quantaenergi.log").stat().st_size > 0
    assert _files_with(data, sentinel.encode()) == []
    assert _files_with(data, sentinel.encode("utf-16-le")) == []
    # the check itself can fail: a leaked copy is found
    (data / "leak.txt").write_text(f"oops {sentinel}")
    assert _files_with(data, sentinel.encode()) == [str(data / "leak.txt")]


def _left() -> Any:
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


def test_without_keyring_the_dialog_refuses_and_says_how(qtbot: Any, tmp_path: Path) -> None:
    from app.settings import Settings
    from app.views.jobs import JobRunner
    from app.views.settings_dialog import SettingsDialog

    sentinel = f"S3NT1NEL-{uuid.uuid4()}"
    runner = JobRunner()
    dlg = SettingsDialog(Settings.load(tmp_path), runner)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.keyClicks(dlg.desk.host, "db.desk")
    qtbot.keyClicks(dlg.desk.database, "quanta")
    qtbot.keyClicks(dlg.desk.user, "alice")
    qtbot.keyClicks(dlg.desk.password, sentinel)
    with use_keyring(fail.Keyring()), qtbot.waitSignal(dlg.sig_saved, timeout=10_000):
        dlg.save_button.click()
    assert dlg.isVisible() and dlg.desk.error.isVisible()
    text = dlg.desk.error.text()
    assert "password was NOT" in text and "Secret Service" in text and sentinel not in text
    assert _files_with(tmp_path, sentinel.encode()) == []
    assert CentralConfig.load(tmp_path) == CentralConfig("db.desk", "quanta", "alice")
    runner.shutdown()


# -- test_connection categories ------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_connection_categories(desk: Desk, desk_server: Any) -> None:
    tra = desk.u["tra"]
    cfg = CentralConfig.from_url(desk.central.url(tra))
    ok = test_connection(cfg, tra, desk.central.users[tra])
    assert ok.ok and ok.category == "ok" and ok.whoami and ok.whoami["books"] == ["DESK-A"]

    down = test_connection(CentralConfig("127.0.0.1", desk.tag, tra, port=_closed_port()), tra, "x")
    assert (down.ok, down.category) == (False, "unreachable")
    assert "Cannot reach the desk database" in down.message and "refused" in down.message

    bad = test_connection(cfg, tra, "wrong-password")
    ghost = test_connection(cfg.with_user("ghost"), "ghost", "wrong-password")
    assert bad.category == ghost.category == "bad password"
    assert bad.message.replace(tra, "U") == ghost.message.replace("ghost", "U")  # no user oracle

    plain = f"{desk.tag}_plain"
    with desk.central.admin() as a:
        a.execute(f"CREATE ROLE \"{plain}\" LOGIN PASSWORD 'plain-pw'")
    perm = test_connection(cfg.with_user(plain), plain, "plain-pw")
    assert perm.category == "permission" and "not an active workstation user" in perm.message

    # wrong schema version: a scratch database altered by the superuser
    scratch = CentralDesk.create(desk_server, desk.tag + "_v")
    scratch.add_user(f"{desk.tag}_v_tra", "TRADER", ("DESK-A",))
    vcfg = CentralConfig.from_url(scratch.url(f"{desk.tag}_v_tra"))
    vpw = scratch.users[f"{desk.tag}_v_tra"]
    for rev, word in (("9999_future", "newer"), ("0003", "older")):
        with scratch.admin() as a:
            a.execute("UPDATE alembic_version SET version_num = %s", (rev,))
        rep = test_connection(vcfg, None, vpw)
        assert rep.category == "wrong schema version", rep
        assert word in rep.message and rev in rep.message and schema_head() in rep.message
        assert "offline" in rep.message
