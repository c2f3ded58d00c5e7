"""The fault-injection proxy, against a tiny echo server and against a real PostgreSQL."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from tests.desk import CentralDesk
from tests.faultproxy import FaultProxy

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
# libpq options that bound every wait on a dead network (the settings the sync worker uses).
FAULT_OPTS = (
    " keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"
    " tcp_user_timeout=3000 connect_timeout=3"
)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except ConnectionError:
            pass  # the proxy reset us: that is the fault under test


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[FaultProxy]:
    with FaultProxy(*echo) as p:
        yield p


def _client(proxy: FaultProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)


def _assert_refused(proxy: FaultProxy) -> None:
    """A new connection is reset: at connect, at the first send or at the first read."""
    with pytest.raises(ConnectionResetError), _client(proxy) as c:
        c.sendall(b"x")
        c.recv(10)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


# -- echo server ---------------------------------------------------------------------------------


def test_pass_forwards_both_ways_and_counts(proxy: FaultProxy) -> None:
    payload = os.urandom(300_000)
    with _client(proxy) as c:
        c.sendall(payload)
        assert _recv_exactly(c, len(payload)) == payload
        c.shutdown(socket.SHUT_WR)  # FIN travels through; the echo server closes; FIN back
        assert c.recv(10) == b""
    assert proxy.accepted == 1
    assert proxy.bytes_up == proxy.bytes_down == len(payload)
    deadline = time.monotonic() + 5
    while proxy.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proxy.active == 0


def test_refuse_resets_new_connections_but_keeps_existing(proxy: FaultProxy) -> None:
    with _client(proxy) as old:
        old.sendall(b"before")
        assert _recv_exactly(old, 6) == b"before"
        proxy.mode = "refuse"
        _assert_refused(proxy)
        old.sendall(b"still")
        assert _recv_exactly(old, 5) == b"still"
    assert proxy.refused == 1 and proxy.accepted == 1


def test_reset_kills_current_connections_now_and_refuses_new(proxy: FaultProxy) -> None:
    with _client(proxy) as c:
        c.sendall(b"ping")
        assert _recv_exactly(c, 4) == b"ping"
        proxy.mode = "reset"
        t0 = time.monotonic()
        with pytest.raises(ConnectionResetError):
            c.recv(10)
        assert time.monotonic() - t0 < 2
    assert proxy.resets == 1 and proxy.active == 0
    _assert_refused(proxy)
    assert proxy.refused == 1


def test_blackhole_drops_syns_and_holds_data_without_fin_until_heal(proxy: FaultProxy) -> None:
    with _client(proxy) as c:
        c.sendall(b"a")
        assert _recv_exactly(c, 1) == b"a"
        proxy.mode = "blackhole"
        c.sendall(b"held")
        c.settimeout(0.5)
        with pytest.raises(TimeoutError):  # no data and no FIN: the read just waits
            c.recv(10)
        with pytest.raises(TimeoutError):  # the SYN is dropped: connect() waits
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0).close()
        proxy.heal()
        c.settimeout(5)
        assert _recv_exactly(c, 4) == b"held"  # a healed partition: held data flows again
    with _client(proxy) as c2:
        c2.sendall(b"new")
        assert _recv_exactly(c2, 3) == b"new"
    assert proxy.refused == 0


def test_blackhole_stalls_writes_so_tcp_user_timeout_fires(proxy: FaultProxy) -> None:
    with _client(proxy) as c:
        c.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1500)
        proxy.mode = "blackhole"
        c.settimeout(30)
        t0 = time.monotonic()
        with pytest.raises(OSError) as info:  # ETIMEDOUT, not a hang
            while True:
                c.sendall(b"x" * 65536)
        assert isinstance(info.value, TimeoutError) or info.value.errno == 110
        assert time.monotonic() - t0 < 25


def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    with _client(proxy) as c:
        t0 = time.monotonic()
        c.sendall(b"fast")
        assert _recv_exactly(c, 4) == b"fast"
        fast = time.monotonic() - t0
        proxy.latency_s = 0.2
        proxy.mode = "latency"
        t0 = time.monotonic()
        c.sendall(b"slow")
        assert _recv_exactly(c, 4) == b"slow"
        slow = time.monotonic() - t0
    assert slow >= 0.4  # 0.2 s up + 0.2 s down
    assert slow > fast


def test_cut_then_heal(proxy: FaultProxy) -> None:
    with _client(proxy) as c:
        c.sendall(b"1")
        assert _recv_exactly(c, 1) == b"1"
        proxy.cut()
        with pytest.raises(ConnectionResetError):
            c.recv(1)
    proxy.heal()
    with _client(proxy) as c:
        c.sendall(b"2")
        assert _recv_exactly(c, 1) == b"2"
    assert proxy.mode == "pass" and proxy.resets == 1 and proxy.accepted == 2


def test_bad_mode_is_rejected(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        proxy.mode = "flaky"
    with pytest.raises(ValueError):
        proxy.latency_s = -1
    assert proxy.mode == "pass"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_close_leaks_no_thread_and_no_socket(echo: tuple[str, int]) -> None:
    threads, fds = set(threading.enumerate()), _fds()
    with FaultProxy(*echo) as p:
        clients = [_client(p) for _ in range(3)]
        for c in clients:
            c.sendall(b"x")
            assert _recv_exactly(c, 1) == b"x"
        p.mode = "blackhole"  # dummy sockets that fill the accept queue must go too
        p.mode = "latency"
    for c in clients:
        c.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("FaultProxy")]
    assert set(threading.enumerate()) - threads <= {
        t
        for t in threading.enumerate()
        if t.name.startswith("Thread-")  # echo handlers
    }
    assert _fds() <= fds + 3  # the echo server may still hold its handler sockets briefly


# -- a real PostgreSQL ---------------------------------------------------------------------------

_db_counter = iter(range(1, 1000))


@pytest.fixture
def desk(desk_server: Any) -> CentralDesk:
    desk = CentralDesk.create(desk_server, f"faultproxy{os.getpid()}_{next(_db_counter)}")
    desk.add_user("tina", "TRADER", ("DESK-A",))
    return desk


@pytest.fixture
def pg_proxy(desk: CentralDesk) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", desk.server.port) as p:
        yield p


def _connect(desk: CentralDesk, proxy: FaultProxy) -> psycopg.Connection[Any]:
    return psycopg.connect(desk.dsn("tina", port=proxy.port) + FAULT_OPTS, autocommit=True)


@pytest.mark.postgres
def test_pg_pass(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    with _connect(desk, pg_proxy) as conn:
        who = conn.execute("SELECT qe_whoami()").fetchone()
        assert who is not None and who[0]["user"] == "tina"
    assert pg_proxy.accepted == 1 and pg_proxy.bytes_up > 0 and pg_proxy.bytes_down > 0


@pytest.mark.postgres
def test_pg_refuse_fails_fast(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    pg_proxy.mode = "refuse"
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        _connect(desk, pg_proxy)
    assert time.monotonic() - t0 < 5


@pytest.mark.postgres
def test_pg_reset_mid_query_fails_fast(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    with _connect(desk, pg_proxy) as conn, ThreadPoolExecutor(1) as pool:
        fut = pool.submit(conn.execute, "SELECT pg_sleep(20)")
        time.sleep(0.5)
        t0 = time.monotonic()
        pg_proxy.mode = "reset"
        with pytest.raises(psycopg.OperationalError):
            fut.result(timeout=30)
        assert time.monotonic() - t0 < 5
    assert pg_proxy.resets == 1


@pytest.mark.postgres
def test_pg_blackhole_connect_times_out(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    pg_proxy.mode = "blackhole"
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        _connect(desk, pg_proxy)
    assert time.monotonic() - t0 < 30  # connect_timeout=3 s: returns instead of hanging


@pytest.mark.postgres
def test_pg_blackhole_mid_upload_fails_instead_of_hanging(
    desk: CentralDesk, pg_proxy: FaultProxy
) -> None:
    """An upload larger than the proxy's window stalls; tcp_user_timeout aborts it."""
    with _connect(desk, pg_proxy) as conn:
        conn.execute("SELECT 1")
        pg_proxy.mode = "blackhole"
        t0 = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT length(%s)", ["x" * 8_000_000])
        assert time.monotonic() - t0 < 30


@pytest.mark.postgres
def test_pg_blackhole_small_query_completes_after_heal(
    desk: CentralDesk, pg_proxy: FaultProxy
) -> None:
    """A small request fits the window: it waits (no FIN, no error) and completes on heal."""
    with _connect(desk, pg_proxy) as conn, ThreadPoolExecutor(1) as pool:
        pg_proxy.mode = "blackhole"
        fut = pool.submit(lambda: conn.execute("SELECT 41 + 1").fetchone())
        time.sleep(1.0)
        assert not fut.done()
        pg_proxy.heal()
        assert fut.result(timeout=30) == (42,)


@pytest.mark.postgres
def test_pg_latency_adds_delay(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    with _connect(desk, pg_proxy) as conn:
        pg_proxy.latency_s = 0.25
        pg_proxy.mode = "latency"
        t0 = time.monotonic()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - t0 >= 0.45


@pytest.mark.postgres
def test_pg_cut_then_heal_new_connections_work(desk: CentralDesk, pg_proxy: FaultProxy) -> None:
    conn = _connect(desk, pg_proxy)
    try:
        pg_proxy.cut()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    with pytest.raises(psycopg.OperationalError):
        _connect(desk, pg_proxy)
    pg_proxy.heal()
    with _connect(desk, pg_proxy) as conn2:
        assert conn2.execute("SELECT 1").fetchone() == (1,)
