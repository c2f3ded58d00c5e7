"""A loopback TCP proxy that injects network faults, for tests.

``FaultProxy(host, port)`` listens on ``127.0.0.1:<free port>`` (:attr:`FaultProxy.port`) and
forwards every accepted connection to ``host:port``. Its :attr:`~FaultProxy.mode` can be changed
at any time from any thread; the change has taken effect when the setter returns:

``"pass"``
    forward both ways.
``"refuse"``
    new connections are reset (RST) as soon as they are accepted; existing ones keep flowing.
``"reset"``
    every current connection is reset now (RST to both ends), new ones are refused.
``"blackhole"``
    nothing is forwarded and nothing is closed: no FIN, no RST. New connections are not even
    accepted (their SYNs are dropped, so ``connect()`` hangs until the client's own timeout).
    Established connections stay open, but the proxy stops reading, so the client's writes
    stall once the proxy's small receive window (``recv_buffer``) is full and a client with
    ``TCP_USER_TIMEOUT`` (libpq ``tcp_user_timeout``) aborts. Limitation of a user-space proxy:
    the proxy's kernel still acknowledges bytes that fit in the window and answers TCP keepalive
    probes, so a client that sent a *small* request and waits idle for the answer hangs until
    an application-level deadline -- keepalives alone cannot detect this black hole.
``"latency"``
    forward both ways, each chunk delayed by :attr:`latency_s` seconds.

:meth:`cut` resets everything and refuses new connections; :meth:`heal` goes back to pass.
Data held back in black-hole mode flows again after :meth:`heal`, like a healed partition.
Counters (:attr:`accepted`, :attr:`refused`, :attr:`resets`, :attr:`bytes_up`,
:attr:`bytes_down`, :attr:`active`) support assertions. One background thread runs a selector
loop; :meth:`close` (or leaving the ``with`` block) stops it and closes every socket.
"""

from __future__ import annotations

import collections
import contextlib
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

MODES = ("pass", "refuse", "reset", "blackhole", "latency")
_CHUNK = 65536
_MAX_PENDING = 1 << 20  # stop reading a side while this much is queued towards the other
_EOF = b""  # queued marker: shut down the write side once everything before it is sent


def _rst_close(sock: socket.socket) -> None:
    """Close ``sock`` with an RST instead of a FIN (SO_LINGER on, timeout 0)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    upstream: socket.socket
    # Outgoing queue per destination socket: (due monotonic time, bytes or _EOF).
    out: dict[socket.socket, collections.deque[tuple[float, bytes]]] = field(default_factory=dict)
    eof_read: set[socket.socket] = field(default_factory=set)
    shut_written: set[socket.socket] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.out = {self.client: collections.deque(), self.upstream: collections.deque()}

    def peer(self, sock: socket.socket) -> socket.socket:
        return self.upstream if sock is self.client else self.client

    def pending(self, dest: socket.socket) -> int:
        return sum(len(b) for _, b in self.out[dest])


class FaultProxy:
    """Loopback TCP proxy with switchable faults (see the module docstring).

    Parameters
    ----------
    target_host, target_port:
        Where accepted connections are forwarded.
    recv_buffer:
        ``SO_RCVBUF`` of the proxy's sockets. Small, so that a black hole stalls a client's
        writes quickly (a real black hole acknowledges nothing); large enough for fast tests.
    """

    def __init__(self, target_host: str, target_port: int, *, recv_buffer: int = 16384) -> None:
        self.target = (target_host, target_port)
        self.recv_buffer = recv_buffer
        self._lock = threading.Lock()
        self._mode = "pass"
        self._latency_s = 0.0
        self.accepted = 0
        self.refused = 0
        self.resets = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._conns: set[_Conn] = set()
        self._owner: dict[socket.socket, _Conn] = {}
        self._dummies: list[socket.socket] = []
        self._dummy_addrs: set[tuple[str, int]] = set()
        self._commands: collections.deque[tuple[Callable[[], None], threading.Event]] = (
            collections.deque()
        )
        self._closing = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._listening = False
        self._set_listening(True)
        self._thread = threading.Thread(
            target=self._run, name=f"FaultProxy:{self.port}", daemon=True
        )
        self._thread.start()

    # -- public API -------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """The current fault mode (one of :data:`MODES`)."""
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self._call(lambda: self._apply_mode(mode))

    @property
    def latency_s(self) -> float:
        """Delay added to each chunk in ``"latency"`` mode, in seconds."""
        return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency_s must be >= 0")
        self._latency_s = float(value)

    @property
    def active(self) -> int:
        """Number of currently open proxied connections."""
        with self._lock:
            return len(self._conns)

    def cut(self) -> None:
        """Reset every current connection and refuse new ones (the cable is pulled)."""
        self.mode = "reset"

    def heal(self) -> None:
        """Back to ``"pass"``: new connections work, held-back data flows again."""
        self.mode = "pass"

    def close(self) -> None:
        """Stop the loop thread and close every socket (connections are reset)."""
        if self._closing:
            return
        self._closing = True
        self._wake()
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("FaultProxy loop thread did not stop")
        for conn in list(self._conns):
            self._drop(conn, rst=True, count=False)
        self._clear_dummies()
        self._sel.close()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target} mode={self._mode}>"

    # -- commands (run on the loop thread) ---------------------------------------------------
    def _call(self, fn: Callable[[], None]) -> None:
        if self._closing:
            raise RuntimeError("FaultProxy is closed")
        done = threading.Event()
        with self._lock:
            self._commands.append((fn, done))
        self._wake()
        if not done.wait(10):
            raise RuntimeError("FaultProxy loop did not apply the command")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _apply_mode(self, mode: str) -> None:
        old, self._mode = self._mode, mode
        if mode == "reset":
            for conn in list(self._conns):
                self._drop(conn, rst=True)
        if mode == "blackhole" and old != "blackhole":
            self._set_listening(False)
            self._fill_accept_queue()
        elif mode != "blackhole" and old == "blackhole":
            self._set_listening(True)
            self._accept()  # takes (and drops) our queued dummies along with waiting clients
            self._clear_dummies()
        for conn in list(self._conns):
            self._update(conn)

    # -- listener -----------------------------------------------------------------------------
    def _set_listening(self, on: bool) -> None:
        if on and not self._listening:
            self._listener.listen(64)
            self._sel.register(self._listener, selectors.EVENT_READ)
        elif not on and self._listening:
            self._sel.unregister(self._listener)
        self._listening = on

    def _fill_accept_queue(self) -> None:
        """Make the kernel drop new SYNs: backlog 0 and a full accept queue of our own."""
        self._listener.listen(0)
        for _ in range(2):
            d = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            d.setblocking(False)
            d.bind(("127.0.0.1", 0))
            self._dummy_addrs.add(d.getsockname())
            with contextlib.suppress(BlockingIOError):
                d.connect(("127.0.0.1", self.port))
            self._dummies.append(d)
        time.sleep(0.05)  # let the handshakes land in the queue before the mode is reported

    def _clear_dummies(self) -> None:
        for d in self._dummies:
            _rst_close(d)
        self._dummies.clear()
        self._dummy_addrs.clear()

    def _accept(self) -> None:
        while True:
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr in self._dummy_addrs:
                self._dummy_addrs.discard(addr)
                _rst_close(sock)
                continue
            if self._mode in ("refuse", "reset"):
                with self._lock:
                    self.refused += 1
                _rst_close(sock)
                continue
            try:
                up = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
                up.settimeout(5)
                up.connect(self.target)
            except OSError:
                up.close()
                with self._lock:
                    self.refused += 1
                _rst_close(sock)
                continue
            for s in (sock, up):
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, up)
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
            self._owner[sock] = conn
            self._owner[up] = conn
            self._update(conn)

    # -- connections --------------------------------------------------------------------------
    def _forwarding(self) -> bool:
        return self._mode in ("pass", "latency", "refuse")

    def _update(self, conn: _Conn) -> None:
        """(Re)register both sockets of ``conn`` for what they should wait for now."""
        now = time.monotonic()
        for sock in (conn.client, conn.upstream):
            ev = 0
            if (
                self._forwarding()
                and sock not in conn.eof_read
                and conn.pending(conn.peer(sock)) < _MAX_PENDING
            ):
                ev |= selectors.EVENT_READ
            q = conn.out[sock]
            if self._forwarding() and q and q[0][0] <= now:
                ev |= selectors.EVENT_WRITE
            try:
                key = self._sel.get_key(sock)
            except KeyError:
                key = None
            if key is None and ev:
                self._sel.register(sock, ev)
            elif key is not None and not ev:
                self._sel.unregister(sock)
            elif key is not None and key.events != ev:
                self._sel.modify(sock, ev)

    def _drop(self, conn: _Conn, *, rst: bool, count: bool = True) -> None:
        for sock in (conn.client, conn.upstream):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            self._owner.pop(sock, None)
            if rst:
                _rst_close(sock)
            else:
                sock.close()
        with self._lock:
            self._conns.discard(conn)
            if rst and count:
                self.resets += 1

    def _read(self, conn: _Conn, sock: socket.socket) -> None:
        try:
            data = sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn, rst=True, count=False)  # an end reset: pass the reset on
            return
        dest = conn.peer(sock)
        if not data:
            conn.eof_read.add(sock)
        q = conn.out[dest]
        due = time.monotonic() + (self._latency_s if self._mode == "latency" else 0.0)
        if q:
            due = max(due, q[-1][0])  # keep order when the latency changes
        q.append((due, data))
        self._update(conn)

    def _flush(self, conn: _Conn, dest: socket.socket) -> None:
        q = conn.out[dest]
        now = time.monotonic()
        while q and q[0][0] <= now:
            due, data = q[0]
            if data == _EOF:
                q.popleft()
                with contextlib.suppress(OSError):
                    dest.shutdown(socket.SHUT_WR)
                conn.shut_written.add(dest)
                continue
            try:
                n = dest.send(data)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn, rst=True, count=False)
                return
            with self._lock:
                if dest is conn.upstream:
                    self.bytes_up += n
                else:
                    self.bytes_down += n
            if n < len(data):
                q[0] = (due, data[n:])
                break
            q.popleft()
        if len(conn.shut_written) == 2:
            self._drop(conn, rst=False)
            return
        self._update(conn)

    # -- loop ---------------------------------------------------------------------------------
    def _next_due(self) -> float | None:
        if not self._forwarding():
            return None
        dues = [q[0][0] for c in self._conns for q in c.out.values() if q]
        return min(dues) if dues else None

    def _run(self) -> None:
        while not self._closing:
            due = self._next_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            for key, mask in self._sel.select(timeout):
                sock: Any = key.fileobj
                if sock is self._wake_r:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    continue
                if sock is self._listener:
                    self._accept()
                    continue
                conn = self._owner.get(sock)
                if conn is None:
                    continue
                if mask & selectors.EVENT_READ:
                    self._read(conn, sock)
                if mask & selectors.EVENT_WRITE and sock in self._owner:
                    self._flush(conn, sock)
            if self._forwarding():
                for conn in list(self._conns):
                    for dest in (conn.client, conn.upstream):
                        if conn in self._conns and conn.out[dest]:
                            self._flush(conn, dest)
            while True:
                with self._lock:
                    if not self._commands:
                        break
                    fn, done = self._commands.popleft()
                try:
                    fn()
                finally:
                    done.set()
