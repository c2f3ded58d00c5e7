"""Desk database settings, keyring secrets and the ``quantaenergi central`` commands."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from keyring.backends import chainer, fail

from app.cli import main
from app.settings import Settings
from app.sync import central_cli
from app.sync import connection as conn_mod
from app.sync.connection import (
    CentralConfig,
    CentralConfigError,
    KeyringUnavailable,
    get_password,
    keyring_fix_hint,
    schema_head,
    store_password,
)
from tests.desk import CentralDesk
from tests.memory_keyring import MemoryKeyring, use_keyring


@pytest.fixture(autouse=True)
def _no_real_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """conftest disables the keyring (QE_NO_KEYRING); these tests use test backends instead,
    with the fail backend as default so the user's real keyring is never touched."""
    monkeypatch.delenv("QE_NO_KEYRING", raising=False)
    with use_keyring(fail.Keyring()):
        yield


@pytest.fixture
def mem_keyring() -> Iterator[MemoryKeyring]:
    with use_keyring(MemoryKeyring()) as kr:
        yield kr


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answers for getpass prompts, in order (the list is consumed)."""
    answers: list[str] = []

    def fake(prompt: str = "") -> str:
        assert answers, f"unexpected prompt {prompt!r}"
        return answers.pop(0)

    monkeypatch.setattr("getpass.getpass", fake)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("QE_CENTRAL_URL", "")  # restored after the test even if main() sets it
    return answers


# -- CentralConfig -------------------------------------------------------------------------------


def test_from_url_parses_and_renders_without_password() -> None:
    c = CentralConfig.from_url("postgresql://alice@db.desk:6543/quanta")
    assert (c.host, c.port, c.database, c.user) == ("db.desk", 6543, "quanta", "alice")
    assert c.url == "postgresql://alice@db.desk:6543/quanta"
    assert c.keyring_key == "alice@db.desk:6543/quanta"
    d = CentralConfig.from_url("postgres://bob@10.0.0.5/desk")
    assert d.port == 5432 and d.url == "postgresql://bob@10.0.0.5:5432/desk"
    v6 = CentralConfig.from_url("postgresql://bob@[::1]:5433/desk")
    assert v6.host == "::1" and CentralConfig.from_url(v6.url) == v6


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://alice:secret@h/db", "password"),
        ("mysql://alice@h/db", "expected postgresql"),
        ("postgresql://h/db", "no user"),
        ("postgresql://alice@h/", "no database"),
        ("postgresql://alice@h:99999/db", "invalid"),
        ("postgresql://alice@h/db?sslmode=disable", "unexpected options"),
        ("not a url", "expected postgresql"),
    ],
)
def test_from_url_rejects_bad_urls(url: str, words: str) -> None:
    with pytest.raises(CentralConfigError, match=words):
        CentralConfig.from_url(url)


def test_fields_are_validated() -> None:
    with pytest.raises(CentralConfigError, match="port"):
        CentralConfig("h", "db", "u", port=0)
    with pytest.raises(CentralConfigError, match="host"):
        CentralConfig("", "db", "u")
    with pytest.raises(CentralConfigError, match="user"):
        CentralConfig("h", "db", " ")


def test_save_load_roundtrip_atomic_no_password(tmp_path: Path) -> None:
    assert CentralConfig.load(tmp_path) is None
    c = CentralConfig("db.desk", "quanta", "alice", port=6543)
    path = c.save(tmp_path)
    assert path == tmp_path / "central.json"
    assert json.loads(path.read_text()) == {
        "host": "db.desk", "port": 6543, "database": "quanta", "user": "alice"
    }  # fmt: skip
    assert CentralConfig.load(tmp_path) == c
    assert [p.name for p in tmp_path.iterdir()] == ["central.json"]  # no temporary left over
    path.write_text("{not json")
    with pytest.raises(CentralConfigError, match=r"central\.json is damaged"):
        CentralConfig.load(tmp_path)


def test_settings_central_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QE_CENTRAL_URL", "")  # restored after the test even if main() sets it
    s = Settings.load(tmp_path)
    assert s.central_url is None
    CentralConfig("saved", "db", "alice").save(tmp_path)
    assert s.central_url == "postgresql://alice@saved:5432/db"
    monkeypatch.setenv("QE_CENTRAL_URL", "postgresql://bob@env/db")
    assert s.central_url == "postgresql://bob@env/db"
    (tmp_path / "central.json").write_text("[]")
    monkeypatch.delenv("QE_CENTRAL_URL")
    assert s.central_url is None  # damaged file: logged, not configured


def test_cli_central_url_option(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("QE_CENTRAL_URL", "")  # restored after the test even if main() sets it
    assert main(["--central-url", "postgresql://x:pw@h/db", "central", "test", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "password" in err
    # a valid one is exported for Settings (and the subcommand sees it)
    monkeypatch.setattr(central_cli, "test_connection", lambda *a, **k: conn_mod.ConnectionReport(
        True, "ok", f"tested {a[0].url}"))  # fmt: skip
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")
    with use_keyring(MemoryKeyring()):
        assert main(["--central-url=postgresql://cli@h/db", "central", "test",
                     "postgresql://cli@h/db"]) == 0  # fmt: skip
    import os

    assert os.environ["QE_CENTRAL_URL"] == "postgresql://cli@h/db"


# -- keyring -------------------------------------------------------------------------------------


def test_keyring_roundtrip(mem_keyring: MemoryKeyring) -> None:
    c = CentralConfig("h", "db", "alice")
    assert get_password(c) is None
    store_password(c, "s3cret")
    assert mem_keyring.secrets == {("QuantaEnergi central", "alice@h:5432/db"): "s3cret"}
    assert get_password(c) == "s3cret"
    assert get_password(c.with_user("bob")) is None
    with pytest.raises(ValueError, match="empty"):
        store_password(c, "")


class _Broken(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        raise RuntimeError("org.freedesktop.Secret: collection is locked")


class _Forgetful(MemoryKeyring):
    def set_password(self, service: str, username: str, password: str) -> None:
        pass


class _PlainFile(MemoryKeyring):
    pass


_PlainFile.__module__ = "keyrings.alt.file"


class _EmptyChainer(chainer.ChainerBackend):
    backends: ClassVar[list[Any]] = []  # type: ignore[misc]


@pytest.mark.parametrize(
    ("backend", "why"),
    [
        (fail.Keyring(), "no OS keyring backend"),
        (_EmptyChainer(), "no OS keyring backend"),
        (_Broken(), "collection is locked"),
        (_Forgetful(), "does not return it"),
        (_PlainFile(), "plain file"),
    ],
)
def test_store_fails_closed(backend: Any, why: str) -> None:
    c = CentralConfig("h", "db", "alice")
    with use_keyring(backend), pytest.raises(KeyringUnavailable) as info:
        store_password(c, "s3cret")
    msg = str(info.value)
    assert "not stored" in msg and why in msg and "Secret Service" in msg
    assert "s3cret" not in msg


def test_no_keyring_env_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QE_NO_KEYRING", "1")
    with (
        use_keyring(MemoryKeyring()) as kr,
        pytest.raises(KeyringUnavailable, match="QE_NO_KEYRING"),
    ):
        store_password(CentralConfig("h", "db", "u"), "pw")
    assert kr.secrets == {}


def test_fix_hint_per_platform() -> None:
    assert "Credential Manager" in keyring_fix_hint("win32")
    assert "Keychain" in keyring_fix_hint("darwin")
    assert "gnome-keyring" in keyring_fix_hint("linux")
    for p in ("win32", "darwin", "linux"):
        assert "keyrings.alt" in keyring_fix_hint(p)


def test_keyring_get_without_backend_raises() -> None:
    with use_keyring(fail.Keyring()), pytest.raises(KeyringUnavailable, match="read"):
        get_password(CentralConfig("h", "db", "u"))


# -- CLI: input errors (no database needed) ------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["central"],
        ["central", "frobnicate"],
        ["central", "test", "postgresql://nouser@/x"],
        ["central", "user", "add", "bob", "--role", "king", "--url", "postgresql://a@h/d"],
        ["central", "user", "add", "bob", "--url", "postgresql://a@h/d"],
        ["central", "book", "add", "B"],  # nothing configured
    ],
)
def test_cli_bad_input_is_one_line_exit_2(argv: list[str], capsys: Any, prompts: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err and "Traceback" not in err


def test_cli_set_password_fails_closed(prompts: list[str], capsys: Any, tmp_path: Path) -> None:
    prompts.append("S3cret-pw")
    with use_keyring(fail.Keyring()):
        code = main(["central", "set-password", "postgresql://alice@h/db", "--save",
                     "--data-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr()
    assert code == 1 and "not stored" in out.err and out.err.count("\n") == 1
    assert "S3cret-pw" not in out.err + out.out
    assert not (tmp_path / "central.json").exists()


def test_cli_set_password_stores_and_saves(
    prompts: list[str], capsys: Any, tmp_path: Path, mem_keyring: MemoryKeyring
) -> None:
    prompts.append("S3cret-pw")
    code = main(["central", "set-password", "postgresql://alice@h:6000/db", "--save",
                 "--data-dir", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "stored in the OS keyring" in out
    assert mem_keyring.secrets[("QuantaEnergi central", "alice@h:6000/db")] == "S3cret-pw"
    assert CentralConfig.load(tmp_path) == CentralConfig("h", "db", "alice", port=6000)
    prompts.append("")
    assert main(["central", "set-password", "postgresql://alice@h/db"]) == 2


# -- CLI against a real PostgreSQL ---------------------------------------------------------------


def _tag() -> str:
    return "c" + uuid.uuid4().hex[:6]


@pytest.mark.postgres
def test_cli_init_creates_and_migrates(
    desk_server: Any, prompts: list[str], capsys: Any, mem_keyring: MemoryKeyring
) -> None:
    db = _tag()
    url = f"postgresql://postgres@127.0.0.1:{desk_server.port}/{db}"
    prompts.append("")  # the superuser has no password on this test cluster
    assert main(["central", "init", url]) == 0
    out = capsys.readouterr().out
    assert f"Created database {db}" in out and f"-> {schema_head()}" in out
    assert "Standard products: 12 added" in out
    prompts.append("")
    assert main(["central", "init", url]) == 0
    out = capsys.readouterr().out
    assert f"Schema already at {schema_head()}" in out and "0 added" in out
    with psycopg.connect(host=str(desk_server.dir), port=desk_server.port, user="postgres",
                         dbname=db) as c:  # fmt: skip
        assert c.execute("SELECT relforcerowsecurity FROM pg_class WHERE relname = 'trade'"
                         ).fetchone() == (True,)  # fmt: skip


@pytest.mark.postgres
def test_cli_admin_users_books_and_test(
    desk_server: Any, prompts: list[str], capsys: Any, mem_keyring: MemoryKeyring
) -> None:
    tag = _tag()
    desk = CentralDesk.create(desk_server, tag)
    admin, trader = f"{tag}_adm", f"{tag}_tra"
    desk.add_user(admin, "ADMIN", password="adm-pw-1")
    admin_url = desk.url(admin)
    store_password(CentralConfig.from_url(admin_url), "adm-pw-1")

    assert main(["central", "book", "add", "DESK-C", "--description", "third desk",
                 "--url", admin_url]) == 0  # fmt: skip
    assert "Book DESK-C" in capsys.readouterr().out

    prompts += ["tr-pw-1", "tr-pw-1"]
    assert main(["central", "user", "add", trader, "--role", "trader", "--book", "DESK-A",
                 "--book", "DESK-C", "--url", admin_url]) == 0  # fmt: skip
    assert f"User {trader} (trader) created" in capsys.readouterr().out
    desk.users[trader] = "tr-pw-1"
    with desk.connect(trader) as c:
        row = c.execute("SELECT qe_whoami()").fetchone()
    assert row is not None
    who = row[0]
    assert who["role"] == "TRADER" and who["books"] == ["DESK-A", "DESK-C"]

    # central test: the trader's password from the keyring
    store_password(CentralConfig.from_url(desk.url(trader)), "tr-pw-1")
    assert main(["central", "test", desk.url(trader)]) == 0
    assert capsys.readouterr().out.startswith("ok: Connected to")
    prompts.append("wrong")  # nothing stored for this user: prompted
    assert main(["central", "test", desk.url(f"{tag}_nobody")]) == 1
    assert capsys.readouterr().out.startswith("bad password:")

    # bad input: unknown book, invalid (injection) name, mismatched passwords -> 2, nothing made
    for argv, answers in (
        (["--book", "NOPE"], ["p1", "p1"]),
        ([], ["p1", "p2"]),
    ):
        prompts += answers
        assert main(["central", "user", "add", f"{tag}_x", "--role", "trader", *argv,
                     "--url", admin_url]) == 2  # fmt: skip
        assert capsys.readouterr().err.count("\n") == 1
    prompts += ["p1", "p1"]
    assert main(["central", "user", "add", "x'; DROP TABLE trade; --", "--role", "trader",
                 "--url", admin_url]) == 2  # fmt: skip
    assert "invalid user name" in capsys.readouterr().err
    with desk.admin() as c:
        assert c.execute("SELECT count(*) FROM app_user WHERE username LIKE %s",
                         (f"{tag}_x%",)).fetchone() == (0,)  # fmt: skip
        assert c.execute("SELECT to_regclass('trade') IS NOT NULL").fetchone() == (True,)

    # a trader is not an admin: exit 1 with the server's reason
    assert main(["central", "book", "add", "DESK-Z", "--url", desk.url(trader)]) == 1
    assert "only an admin may manage books" in capsys.readouterr().err


@pytest.mark.postgres
def test_cli_init_refuses_newer_schema(
    desk_server: Any, prompts: list[str], capsys: Any, mem_keyring: MemoryKeyring
) -> None:
    tag = _tag()
    CentralDesk.create(desk_server, tag)
    with psycopg.connect(host=str(desk_server.dir), port=desk_server.port, user="postgres",
                         dbname=tag, autocommit=True) as c:  # fmt: skip
        c.execute("UPDATE alembic_version SET version_num = '9999_future'")
    prompts.append("")
    assert (
        main(["central", "init", f"postgresql://postgres@127.0.0.1:{desk_server.port}/{tag}"]) == 1
    )
    err = capsys.readouterr().err
    assert "9999_future" in err and "newer" in err and err.count("\n") == 1
