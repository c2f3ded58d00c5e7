"""The resilient feed client: websocket -> :class:`~app.feed.market_state.MarketState`.

Runs its own asyncio loop on a daemon thread. It connects, says hello, subscribes its patterns
and applies snapshots, ticks and curves to the market state, checking the per-stream ``seq``:

* ``seq < expected``: a duplicate or late message — dropped and counted.
* ``seq > expected``: a gap — counted, the stream is marked stale, a ``resync`` is sent and the
  stream's messages are ignored until its snapshot arrives (the request is repeated if no
  snapshot comes within ``resync_timeout``). A partial curve that does not fit the curve held
  is treated the same way.
* a ``snapshot`` with ``seq >= expected`` replaces the stream's state; ``expected`` becomes
  ``seq + 1`` and the stream is fresh again.

No message for ``heartbeat_timeout`` seconds makes the feed ``stale`` (and every stream stale);
any disconnection makes it ``reconnecting`` with exponential backoff and full jitter, and the
snapshots after resubscribing heal the state. Authentication and version failures make it
``disconnected`` and retry only slowly.

Tokens live in the OS keyring (:func:`store_token` / :func:`load_token`), never in files.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import random
import socket
import threading
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.feed import market_state as ms
from app.feed import protocol as p
from app.feed._aio import close_loop
from app.feed.protocol import CurveUpdate, ProtocolError, Snapshot, Tick, VolUpdate

__all__ = ["FeedClient", "load_token", "store_token"]

log = logging.getLogger("app.feed.client")

KEYRING_SERVICE = "QuantaEnergi feed"
AUTH_RETRY_SECONDS = 30.0


class _Fatal(Exception):
    """The server refused us for a reason a quick retry will not fix (auth, version)."""


class FeedClient:
    """Keeps a :class:`MarketState` in line with a feed server.

    Parameters
    ----------
    url : str
        ``ws://host:port`` of the feed server.
    state : MarketState
        Where quotes, curves, stale flags and the connection status are written.
    token : str or None
        Shared secret sent in ``hello``.
    patterns : list of str
        Subscription patterns (``NG-*:*``); ``["*"]`` subscribes to everything.
    client_name : str
        Name reported to the server.
    heartbeat_timeout : float
        Seconds without any message before the feed is shown stale.
    backoff : (float, float)
        Base and cap (seconds) of the reconnect backoff (exponential, full jitter).
    open_timeout : float
        Seconds allowed for connecting and the hello/welcome exchange.
    ping_interval, ping_timeout : float or None
        Websocket keepalive; a missing pong closes the connection (then reconnect).
    resync_timeout : float
        Seconds to wait for a snapshot before asking again.
    auth_retry : float
        Seconds between attempts after an authentication or version failure.

    Attributes
    ----------
    gaps, duplicates, resyncs, snapshots, reconnects, connections, msgs_applied, bad_messages
        Counters since construction (plain ints, readable from any thread); ``gaps``,
        ``resyncs`` and ``reconnects`` are also published in the MarketState's FeedStatus.
    errors : list of dict
        The last 50 ``error`` messages the server sent.
    """

    def __init__(
        self,
        url: str,
        state: ms.MarketState,
        *,
        token: str | None = None,
        patterns: list[str] | None = None,
        client_name: str = "workstation",
        heartbeat_timeout: float = 3.0,
        backoff: tuple[float, float] = (0.25, 10.0),
        open_timeout: float = 5.0,
        ping_interval: float | None = 5.0,
        ping_timeout: float | None = 5.0,
        resync_timeout: float = 2.0,
        auth_retry: float = AUTH_RETRY_SECONDS,
    ) -> None:
        self.url = url
        self.state = state
        self.token = token
        self.patterns = list(patterns) if patterns is not None else ["*"]
        self.client_name = client_name
        self.heartbeat_timeout = heartbeat_timeout
        self.backoff = backoff
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.resync_timeout = resync_timeout
        self.auth_retry = auth_retry
        # counters (read from any thread)
        self.gaps = 0
        self.duplicates = 0
        self.resyncs = 0
        self.reconnects = 0
        self.snapshots = 0
        self.msgs_applied = 0
        self.bad_messages = 0
        self.connections = 0
        self.errors: list[dict[str, Any]] = []  # last error messages from the server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ws: ClientConnection | None = None
        self._expected: dict[str, int] = {}
        self._awaiting: dict[str, float] = {}  # stream -> when the resync was sent
        self._last_rx = 0.0
        self._stale = False
        self._ids = itertools.count(1)
        self._rate: collections.deque[tuple[float, int]] = collections.deque()
        self._last_tick = 0.0
        self._status: dict[str, Any] = {}
        self._pending_resync: list[str] = []
        self._known_streams: set[str] = set()  # stream names validated by the full parser

    # ------------------------------------------------------------------ thread API

    def start(self) -> None:
        """Start the client thread (returns at once; watch ``state.status()``)."""
        if self._thread is not None and self._thread.is_alive():
            return
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="feed-client", daemon=True
        )
        self._thread.start()
        ready.wait(5.0)

    def stop(self, timeout: float = 2.0) -> None:
        """Close the connection and join the thread (within about ``timeout`` seconds)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive() and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop.set)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("feed client thread did not stop within %.1f s", timeout)

    def set_patterns(self, patterns: list[str]) -> None:
        """Replace the subscription patterns (thread-safe); applied at once when connected."""
        new = list(patterns)
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            self.patterns = new
            return
        loop.call_soon_threadsafe(self._change_patterns, new)

    # ------------------------------------------------------------------ loop

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        ready.set()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("feed client crashed")
        finally:
            close_loop(loop)

    def _set_status(self, **fields: Any) -> None:
        changed = {k: v for k, v in fields.items() if self._status.get(k) != v}
        if changed:
            self._status.update(changed)
            self.state.update_status(**changed)

    async def _main(self) -> None:
        assert self._stop is not None
        self._set_status(state=ms.CONNECTING, url=self.url, detail="connecting")
        attempt = 0
        ever_connected = False
        while not self._stop.is_set():
            delay: float
            try:
                welcomed = await self._session(ever_connected)
                ever_connected = ever_connected or welcomed
                if welcomed:
                    attempt = 0
                delay = _jitter(self.backoff, attempt)
                attempt += 1
            except _Fatal as exc:
                self._set_status(state=ms.DISCONNECTED, detail=str(exc), msgs_per_sec=0.0)
                log.error("feed %s: %s (retrying in %.0f s)", self.url, exc, self.auth_retry)
                delay = self.auth_retry
            if self._stop.is_set():
                break
            self._mark_all_stale()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self._mark_all_stale()
        self._set_status(state=ms.DISCONNECTED, detail="stopped", msgs_per_sec=0.0)

    def _mark_all_stale(self) -> None:
        self.state.set_stale(None)
        self._expected.clear()
        self._awaiting.clear()

    async def _session(self, ever_connected: bool) -> bool:
        """One connection, until it ends. Returns True when it got as far as ``welcome``."""
        assert self._stop is not None
        welcomed = False
        try:
            ws = await asyncio.wait_for(
                connect(
                    self.url,
                    max_size=p.MAX_SERVER_FRAME,
                    # few frames queued here: a client that falls behind is conflated by the
                    # server instead of reading ever older prices from a deep local queue
                    max_queue=4,
                    compression=None,
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=1.0,
                    proxy=None,
                ),
                self.open_timeout + 1,
            )
        except (TimeoutError, OSError, InvalidHandshake, InvalidURI) as exc:
            self._set_status(
                state=ms.RECONNECTING if ever_connected else ms.CONNECTING,
                detail=f"cannot connect: {_describe(exc)}",
                msgs_per_sec=0.0,
            )
            log.info("feed %s: cannot connect: %s", self.url, _describe(exc))
            return False
        self._ws = ws
        self.connections += 1
        _limit_socket_buffer(ws.transport, socket.SO_RCVBUF)
        watchdog: asyncio.Task[None] | None = None
        stopper = asyncio.get_running_loop().create_task(self._close_on_stop(ws))
        fatal: str | None = None
        try:
            await ws.send(
                p.encode_frame(
                    [
                        {
                            "type": p.HELLO,
                            "protocol": p.PROTOCOL_VERSION,
                            "token": self.token,
                            "client": self.client_name,
                        }
                    ]
                )
            )
            fatal = await asyncio.wait_for(self._await_welcome(ws), self.open_timeout)
            if fatal is not None:
                # let the server's close frame arrive for its code and reason
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.wait_closed(), 2.0)
                raise _Fatal(fatal)
            welcomed = True
            if ever_connected:
                self.reconnects += 1
            self._expected.clear()
            self._awaiting.clear()
            self._last_rx = time.monotonic()
            self._stale = False
            self._set_status(
                state=ms.CONNECTED,
                detail=f"connected (session {self._status.get('session', '?')})",
                reconnects=self.reconnects,
            )
            await self._subscribe(ws, self.patterns)
            watchdog = asyncio.get_running_loop().create_task(self._watchdog())
            async for raw in ws:
                self._on_frame(raw)
                if self._awaiting and self._pending_resync:
                    await self._send_resync(ws)
        except ConnectionClosed as exc:
            code, reason = _close_info(exc)
            if code in (p.CLOSE_AUTH, p.CLOSE_VERSION):
                raise _Fatal(
                    f"{'authentication failed' if code == p.CLOSE_AUTH else 'protocol mismatch'}"
                    f" (close {code}: {reason or 'no reason'})"
                ) from exc
            if not self._stop.is_set():
                self._lost(f"connection closed (code {code}: {reason or 'no reason'})")
        except TimeoutError:
            self._lost("no welcome from the server in time")
        except (OSError, ProtocolError) as exc:
            self._lost(f"connection failed: {_describe(exc)}")
        except _Fatal:
            raise
        except Exception as exc:  # a server sending something the validators choke on
            log.exception("feed %s: session failed", self.url)
            self._lost(f"connection failed: {_describe(exc)}")
        finally:
            self._ws = None
            stopper.cancel()
            if watchdog is not None:
                watchdog.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.5)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stopper
            if watchdog is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watchdog
        if not welcomed and fatal is None and not self._stop.is_set():
            self._lost(f"connection closed before welcome (code {ws.close_code})")
        return welcomed

    def _lost(self, why: str) -> None:
        log.warning("feed %s: %s", self.url, why)
        self._set_status(state=ms.RECONNECTING, detail=why, msgs_per_sec=0.0)
        self._mark_all_stale()

    async def _close_on_stop(self, ws: ClientConnection) -> None:
        assert self._stop is not None
        await self._stop.wait()
        await ws.close(1000, "client stopping")

    async def _await_welcome(self, ws: ClientConnection) -> str | None:
        """Wait for ``welcome``; returns a fatal reason when the server refuses us."""
        while True:
            try:
                raw = await ws.recv()
            except ConnectionClosed as exc:
                code, reason = _close_info(exc)
                if code in (p.CLOSE_AUTH, p.CLOSE_VERSION):
                    kind = "authentication failed" if code == p.CLOSE_AUTH else "protocol mismatch"
                    return f"{kind} (close {code}: {reason or 'no reason'})"
                raise
            for obj in p.decode_frame(raw, p.MAX_SERVER_FRAME):
                msg = p.parse_server_message(obj)
                if not isinstance(msg, dict):
                    continue
                if msg["type"] == p.WELCOME:
                    self._status["session"] = msg.get("session", "")
                    self._set_status(mode=str(msg.get("mode", "")))
                    return None
                if msg["type"] == p.ERROR:
                    self._remember_error(msg)
                    if msg.get("code") == p.E_AUTH_FAILED:
                        return f"authentication failed: {msg.get('message', '')}"
                    if msg.get("code") == p.E_VERSION:
                        return f"protocol mismatch: {msg.get('message', '')}"

    async def _subscribe(self, ws: ClientConnection, patterns: list[str]) -> None:
        for i in range(0, len(patterns), p.MAX_PATTERNS):
            chunk = patterns[i : i + p.MAX_PATTERNS]
            await ws.send(
                p.encode_frame(
                    [{"type": p.SUBSCRIBE, "id": f"s{next(self._ids)}", "patterns": chunk}]
                )
            )

    def _change_patterns(self, patterns: list[str]) -> None:
        old, self.patterns = self.patterns, patterns
        ws = self._ws
        if ws is None:
            return
        removed = [x for x in old if x not in patterns]

        async def apply() -> None:
            with contextlib.suppress(ConnectionClosed):
                if removed:
                    for i in range(0, len(removed), p.MAX_PATTERNS):
                        await ws.send(
                            p.encode_frame(
                                [
                                    {
                                        "type": p.UNSUBSCRIBE,
                                        "id": f"u{next(self._ids)}",
                                        "patterns": removed[i : i + p.MAX_PATTERNS],
                                    }
                                ]
                            )
                        )
                if patterns:
                    await self._subscribe(ws, patterns)

        asyncio.get_running_loop().create_task(apply())

    # ------------------------------------------------------------------ receiving

    def _on_frame(self, raw: str | bytes) -> None:
        now = time.time()
        self._last_rx = time.monotonic()
        if self._stale:
            self._stale = False
            fresh = [s for s in self._expected if s not in self._awaiting]
            if fresh:
                self.state.set_stale(fresh, False)
            self._set_status(state=ms.CONNECTED, detail="connected")
        self._pending_resync = []
        try:
            objs = decode_frame(raw)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("feed %s: bad frame: %s", self.url, exc.message)
            return
        ticks: list[Tick] = []
        applied = 0
        expected, awaiting = self._expected, self._awaiting
        known = self._known_streams
        add = ticks.append
        for obj in objs:
            # Fast path for the common well-formed tick: the same checks as
            # protocol.parse_server_message, inlined (this loop runs 50,000+ times a second).
            if type(obj) is dict and obj.get("type") == "tick" and len(obj) == 10:
                try:
                    stream, seq, inst = obj["stream"], obj["seq"], obj["instrument"]
                    bid, ask, last, size = obj["bid"], obj["ask"], obj["last"], obj["size"]
                    ts, kind = obj["ts"], obj["kind"]
                except KeyError:
                    stream = None
                if (
                    type(stream) is str
                    and stream in known
                    and type(seq) is int
                    and seq >= 1
                    and type(ts) is int
                    and ts >= 0
                    and type(inst) is str
                    and len(inst) <= 64
                    and (kind == "trade" or kind == "settle")
                    and type(size) is float
                    and size - size == 0
                    and (bid is None or (type(bid) is float and bid - bid == 0))
                    and (ask is None or (type(ask) is float and ask - ask == 0))
                    and (last is None or (type(last) is float and last - last == 0))
                ):
                    if stream in awaiting:
                        continue
                    exp = expected.get(stream, 1)
                    if seq == exp:
                        expected[stream] = seq + 1
                        add(Tick(inst, bid, ask, last, size, ts, kind, stream, seq))
                    elif seq < exp:
                        self.duplicates += 1
                    else:
                        self._gap(stream, f"seq {seq}, expected {exp}")
                    continue
            msg: Tick | CurveUpdate | Snapshot | VolUpdate | dict[str, Any]
            try:
                msg = p.parse_server_message(obj)
            except ProtocolError as exc:
                self.bad_messages += 1
                log.warning("feed %s: bad message: %s", self.url, exc.message)
                continue
            except Exception as exc:  # e.g. OverflowError on a 400-digit number
                self.bad_messages += 1
                log.warning("feed %s: bad message: %s", self.url, _describe(exc))
                continue
            if type(msg) is Tick:
                stream = msg.stream
                if len(known) < 10_000:
                    known.add(stream)  # validated: later ticks of it take the fast path
                if stream in awaiting:
                    continue
                exp = expected.get(stream, 1)
                if msg.seq == exp:
                    expected[stream] = exp + 1
                    add(msg)
                elif msg.seq < exp:
                    self.duplicates += 1
                else:
                    self._gap(stream, f"seq {msg.seq}, expected {exp}")
                continue
            if ticks:
                self.state.apply_ticks(ticks, now)
                applied += len(ticks)
                self._last_tick = now
                ticks = []
                add = ticks.append
            if type(msg) is CurveUpdate:
                if self._in_sequence(msg.product, msg.seq):
                    try:
                        self.state.apply_curve(msg)
                        applied += 1
                    except ValueError as exc:
                        self._gap(msg.product, f"curve update does not apply: {exc}")
            elif type(msg) is VolUpdate:
                if self._in_sequence(msg.product, msg.seq):
                    self.state.apply_vols(msg)
                    applied += 1
            elif type(msg) is Snapshot:
                stream = msg.stream
                exp = expected.get(stream, 1)
                if msg.seq < exp:
                    self.duplicates += 1
                    continue
                self.state.apply_snapshot(msg, now)
                self.state.set_stale([stream], False)
                self.snapshots += 1
                applied += 1
                expected[stream] = msg.seq + 1
                awaiting.pop(stream, None)
            elif isinstance(msg, dict):
                self._on_control(msg)
        if ticks:
            self.state.apply_ticks(ticks, now)
            applied += len(ticks)
            self._last_tick = now
        if applied:
            self.msgs_applied += applied
            self._rate.append((time.monotonic(), applied))

    def _in_sequence(self, stream: str, seq: int) -> bool:
        """True when ``seq`` is the next message of ``stream`` (then expected moves on); a
        duplicate is counted, a jump is a gap (resync); a stream awaiting its snapshot skips."""
        if stream in self._awaiting:
            return False
        exp = self._expected.get(stream, 1)
        if seq < exp:
            self.duplicates += 1
            return False
        if seq > exp:
            self._gap(stream, f"seq {seq}, expected {exp}")
            return False
        self._expected[stream] = exp + 1
        return True

    def _gap(self, stream: str, why: str) -> None:
        self.gaps += 1
        log.info("feed %s: gap on %s (%s): resync", self.url, stream, why)
        self.state.set_stale([stream], True)
        self._awaiting[stream] = 0.0  # 0 = not requested yet
        self._pending_resync.append(stream)

    async def _send_resync(self, ws: ClientConnection) -> None:
        streams = [s for s in dict.fromkeys(self._pending_resync) if s in self._awaiting]
        self._pending_resync = []
        if not streams:
            return
        now = time.monotonic()
        for s in streams:
            self._awaiting[s] = now
        self.resyncs += len(streams)
        self._set_status(gaps=self.gaps, resyncs=self.resyncs)
        for i in range(0, len(streams), p.MAX_PATTERNS):
            with contextlib.suppress(ConnectionClosed):
                await ws.send(
                    p.encode_frame(
                        [
                            {
                                "type": p.RESYNC,
                                "id": f"r{next(self._ids)}",
                                "streams": streams[i : i + p.MAX_PATTERNS],
                            }
                        ]
                    )
                )

    def _on_control(self, msg: dict[str, Any]) -> None:
        t = msg["type"]
        if t == p.UNSUBSCRIBED:
            self.state.forget(msg["instruments"])
        elif t == p.ERROR:
            self._remember_error(msg)
            log.warning(
                "feed %s: server error %s: %s", self.url, msg.get("code"), msg.get("message")
            )

    def _remember_error(self, msg: dict[str, Any]) -> None:
        self.errors.append(msg)
        del self.errors[:-50]

    async def _watchdog(self) -> None:
        """Staleness, resync retries and the status figures, four times a second."""
        ws = self._ws
        while True:
            await asyncio.sleep(0.25)
            mono = time.monotonic()
            if not self._stale and mono - self._last_rx > self.heartbeat_timeout:
                self._stale = True
                self.state.set_stale(None)
                self._set_status(
                    state=ms.STALE,
                    detail=f"no data for {mono - self._last_rx:.1f} s",
                )
                log.warning("feed %s: stale, no data for %.1f s", self.url, mono - self._last_rx)
            retry = [
                s for s, at in self._awaiting.items() if at and mono - at > self.resync_timeout
            ]
            if retry and ws is not None:
                log.info("feed %s: no snapshot yet for %s: asking again", self.url, retry)
                self._pending_resync = retry
                await self._send_resync(ws)
            while self._rate and mono - self._rate[0][0] > 1.0:
                self._rate.popleft()
            rate = float(sum(n for _, n in self._rate))
            self._set_status(
                msgs_per_sec=rate, last_tick=self._last_tick, gaps=self.gaps, resyncs=self.resyncs
            )


def decode_frame(data: str | bytes) -> list[Any]:
    """Decode a server frame (:func:`protocol.decode_frame` with the server-frame limit)."""
    return p.decode_frame(data, p.MAX_SERVER_FRAME)


SOCKET_BUFFER = 256 * 1024


def _limit_socket_buffer(transport: Any, option: int, size: int = SOCKET_BUFFER) -> None:
    """Cap a kernel socket buffer, so prices a slow reader has not taken yet wait (and are
    conflated) at the server instead of ageing in megabytes of auto-tuned TCP buffers."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, size)


def _jitter(backoff: tuple[float, float], attempt: int) -> float:
    base, cap = backoff
    return random.uniform(0.0, min(cap, base * (2.0 ** min(attempt, 30))))


def _close_info(exc: ConnectionClosed) -> tuple[int, str]:
    if exc.rcvd is not None:
        return int(exc.rcvd.code), exc.rcvd.reason
    return 1006, "connection lost" if exc.sent is None else f"closed by us ({exc.sent.code})"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------- token storage


def _keyring() -> Any | None:
    if os.environ.get("QE_NO_KEYRING"):
        log.warning("keyring disabled (QE_NO_KEYRING): feed token not stored or loaded")
        return None
    try:
        import keyring
        from keyring.backends import fail

        if isinstance(keyring.get_keyring(), fail.Keyring):
            log.warning("no keyring backend available: feed token not stored or loaded")
            return None
        return keyring
    except Exception as exc:
        log.warning("keyring unavailable (%s): feed token not stored or loaded", exc)
        return None


def store_token(url: str, token: str) -> bool:
    """Save the feed token for ``url`` in the OS keyring; False (logged) when there is none."""
    kr = _keyring()
    if kr is None:
        return False
    try:
        kr.set_password(KEYRING_SERVICE, url, token)
    except Exception as exc:
        log.warning("could not store the feed token in the keyring: %s", exc)
        return False
    return True


def load_token(url: str) -> str | None:
    """The feed token for ``url`` from the OS keyring, ``None`` when absent or unavailable."""
    kr = _keyring()
    if kr is None:
        return None
    try:
        value = kr.get_password(KEYRING_SERVICE, url)
    except Exception as exc:
        log.warning("could not read the feed token from the keyring: %s", exc)
        return None
    return value if isinstance(value, str) else None
