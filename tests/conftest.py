"""Shared fixtures: offscreen Qt, isolated data dirs, SQLite and throw-away PostgreSQL stores."""

from __future__ import annotations

import gc
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QE_NO_KEYRING", "1")

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models.store import Store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def need_shared(sub: str) -> Path:
    """Path inside ../shared; skip (fail under CI=true) when the clone has no ../shared."""
    path = SHARED / sub
    if not path.exists():
        msg = f"{path} not found: ../shared (market data, schemas) is not beside this clone"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(autouse=True, scope="session")
def _gc_on_main_thread() -> Iterator[None]:
    """As the app does (``app.views.application.gui_thread_gc``): never let the cyclic
    collector run in a worker thread, where it could destroy Qt objects of a closed window
    and deadlock against the GUI thread. Collected after every test instead (main thread)."""
    gc.disable()
    gc.freeze()  # modules, pytest, Qt bindings: never garbage; keeps each collection short
    yield
    gc.unfreeze()
    gc.enable()


@pytest.fixture(autouse=True)
def _collect_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the widgets a test closed (pytest-qt's ``deleteLater``) and collect their
    Python wrappers now, on the main thread -- not during the next test, where a worker
    thread could run a destructor of the same window concurrently (a deadlock seen in CI)."""
    yield
    if "qtbot" not in request.fixturenames and "qapp" not in request.fixturenames:
        gc.collect(1)  # no Qt objects of this test: the young generations are enough
        return
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QCoreApplication, QEvent

        if QCoreApplication.instance() is not None:
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never touch the user's real data dir or settings."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("QE_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg-config"))


# -- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        for cand in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            return cand
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _PgServer:
    """A throw-away cluster. With ``tcp``, it also listens on 127.0.0.1 where every role but
    ``postgres`` authenticates by SCRAM password (the desk database's login path)."""

    def __init__(self, tcp: bool = False) -> None:
        bindir = _pg_bindir()
        if bindir is None or not (bindir / "initdb").exists():
            raise RuntimeError("PostgreSQL server binaries not found (pg_config --bindir)")
        self.dir = Path(tempfile.mkdtemp(prefix="qe-pg-"))
        self.port = _free_port()
        self.bindir = bindir
        as_root = os.geteuid() == 0
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        if as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                   "--no-sync", "-E", "UTF8"])  # fmt: skip
        listen = "127.0.0.1" if tcp else ""
        if tcp:
            (data / "pg_hba.conf").write_text(
                "local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
        (data / "postgresql.auto.conf").write_text(
            "".join(f"{k} = '{v}'\n" for k, v in (
                ("port", self.port), ("unix_socket_directories", self.dir),
                ("listen_addresses", listen), ("fsync", "off"), ("max_connections", 200)))
        )  # fmt: skip
        # Options live in postgresql.auto.conf, so a restart() needs none.
        self._run([str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                   str(self.dir / "log"), "start"])  # fmt: skip
        self.data = data

    def _run(self, cmd: list[str]) -> None:
        res = subprocess.run(self.prefix + cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {res.stderr.strip()[-500:]}")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{db}?host={self.dir}&port={self.port}"

    def restart(self, mode: str = "immediate") -> None:
        """Stop (``-m immediate``: like a crash) and start again on the same port."""
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])
        self.start()

    def stop_only(self, mode: str = "immediate") -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def start(self) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                   str(self.dir / "log"), "start"])  # fmt: skip

    def create_db(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host=str(self.dir), port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:  # fmt: skip
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"], capture_output=True)  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


def _throwaway_server(tcp: bool = False) -> Iterator[_PgServer]:
    """Start a cluster for a session fixture; fails the run under CI=true when it cannot."""
    try:
        server = _PgServer(tcp=tcp)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"cannot start the throw-away PostgreSQL: {exc}")
        pytest.skip(f"cannot start the throw-away PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[_PgServer]:
    """A throw-away PostgreSQL cluster; fails the run under CI=true when it cannot start."""
    yield from _throwaway_server()


@pytest.fixture(scope="session")
def desk_server() -> Iterator[_PgServer]:
    """A throw-away cluster for the desk database: TCP on 127.0.0.1 with SCRAM passwords
    (see tests/desk.py for the central database helpers built on it)."""
    yield from _throwaway_server(tcp=True)


_db_counter = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, migrated store on SQLite and (second parametrisation) on PostgreSQL."""
    if request.param == "sqlite":
        store = Store.open_file(tmp_path / "store.db")
    else:
        server = request.getfixturevalue("pg_server")
        store = Store(server.create_db(f"t{next(_db_counter)}"))
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open_file(tmp_path / "store.db")
    yield store
    store.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``@pytest.mark.timing`` tests first: they measure the Qt event loop's lag, which
    threads and heap left behind by hundreds of earlier tests would distort (a 600 MB heap and
    leftover worker threads are not what a freshly started workstation has)."""
    items.sort(key=lambda item: item.get_closest_marker("timing") is None)
