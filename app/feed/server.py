"""The feed server: publishes a :class:`~app.feed.source.PriceSource` over websockets.

One publisher task advances the source every ``step_seconds``, applies the batch to the
authoritative *book* (latest tick per instrument, settlement per instrument, live curve and
settlement curve per product) and fans every update out to the *conflating outbound buffer* of
each connection that holds the instrument or product. The publisher never awaits a client.

Outbound buffer (one per connection): an insertion-ordered dict keyed by what a message is
*about* — ``instrument`` for a trade tick, ``"S|" + instrument`` for a settle tick,
``"C|" + product`` for a live curve, ``"CS|" + product`` for a settlement curve,
``"#snap|" + stream`` for a snapshot request, ``"#hb"`` for the heartbeat and ``"#n|<k>"`` for
other control messages. A newer value replaces an older one under the same key, so the buffer
never holds more than a few entries per subscribed instrument whatever the consumer does.
Curves are materialised from the book when sent (a pending block is just a month range), so
merged blocks are always absolute and current. A trade tick pending behind a settle tick of the
same instrument is moved after it, so the client always ends on the latest values.

One sender task per connection drains the buffer in batches of up to ``batch_size`` messages,
assigns the per-(connection, stream) ``seq`` *at send time* (so conflation never creates a gap),
applies the optional ``fault_hook`` and sends one JSON-array frame. A connection whose send has
been blocked for longer than ``slow_consumer_timeout`` is closed with
:data:`~app.feed.protocol.CLOSE_SLOW`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from app.feed import protocol as p
from app.feed._aio import close_loop
from app.feed.instruments import matches
from app.feed.protocol import CurveUpdate, ProtocolError, Tick, VolUpdate
from app.feed.source import Batch, PriceSource

__all__ = ["FeedServer", "FeedServerThread", "ServerCounters"]

log = logging.getLogger("app.feed.server")

FaultHook = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]

_MAX_CONTROL = 256  # pending control messages (errors, replies) per connection before dropping


_repr = float.__repr__


def _dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False)


def _finite(t: Tick) -> bool:
    """All numbers of a tick finite (``x - x == 0`` is False for NaN and infinities)."""
    for x in (t.bid, t.ask, t.last):
        if x is not None and x - x != 0:
            return False
    return bool(t.size - t.size == 0) and type(t.ts) is int


def _clean(t: Tick) -> bool:
    """Make a tick's numbers plain floats/int in place; False when they are not finite."""
    try:
        if t.bid is not None and type(t.bid) is not float:
            t.bid = float(t.bid)
        if t.ask is not None and type(t.ask) is not float:
            t.ask = float(t.ask)
        if t.last is not None and type(t.last) is not float:
            t.last = float(t.last)
        if type(t.size) is not float:
            t.size = float(t.size)
        if type(t.ts) is not int:
            t.ts = int(t.ts)
    except (TypeError, ValueError, OverflowError):
        return False
    return _finite(t) and t.kind in ("trade", "settle") and t.ts >= 0


def _month_index(text: str) -> int:
    return int(text[:4]) * 12 + int(text[5:7]) - 1


def _month_text(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@dataclass(slots=True)
class _BookCurve:
    """A product's live curve in the book."""

    start: int  # month index
    prices: list[float]
    ts: int
    settle: str | None = None

    def message(self, product: str, lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
        """A ``curve`` message (no seq): the block ``lo..hi`` or the full curve."""
        end = self.start + len(self.prices)
        full = lo is None or hi is None or (lo <= self.start and hi >= end)
        full = full or lo is None or hi is None or lo < self.start or hi > end
        if full or lo is None or hi is None:
            start, prices = self.start, self.prices
        else:
            start, prices = lo, self.prices[lo - self.start : hi - self.start]
        return {
            "type": p.CURVE,
            "stream": product,
            "seq": 0,
            "product": product,
            "start": _month_text(start),
            "prices": list(prices),
            "ts": self.ts,
            "full": bool(full),
            "settle": self.settle,
        }


@dataclass(slots=True)
class _PendingCurve:
    """A live curve change waiting to be sent: months ``lo..hi-1`` or the whole curve."""

    full: bool
    lo: int = 0
    hi: int = 0


_VOLS = object()  # buffer marker: the product's vol surface is due


@dataclass(slots=True)
class _SnapRequest:
    stream: str


@dataclass
class ServerCounters:
    """Simple counters (read them from any thread; values are plain ints)."""

    connections: int = 0  # currently open
    accepted: int = 0  # ever accepted
    msgs_sent: int = 0
    frames_sent: int = 0
    conflated: int = 0  # updates replaced in an outbound buffer before being sent
    errors_sent: int = 0
    slow_closed: int = 0
    policy_closed: int = 0
    ticks_published: int = 0


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    session: str
    authed: bool = False
    client: str = ""
    subs: set[str] = field(default_factory=set)
    streams: dict[str, set[str]] = field(default_factory=dict)  # stream -> instruments held
    seq: dict[str, int] = field(default_factory=dict)
    buf: dict[str, Any] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_started: float | None = None
    closing: bool = False
    close_after: tuple[int, str] | None = None  # close once the buffer is flushed
    stalled: bool = False  # test hook: stop reading and sending
    tokens: float = 0.0
    token_time: float = 0.0
    over_since: float | None = None
    last_reject: float = 0.0
    last_rate_error: float = 0.0
    control_seq: int = 0
    control_pending: int = 0


class FeedServer:
    """Websocket price server over one :class:`~app.feed.source.PriceSource`.

    Parameters
    ----------
    source : PriceSource
        The market to publish (simulator or replay).
    host, port : str, int
        Where to listen; ``port=0`` picks a free port (see :attr:`url` once started).
    token : str or None
        Shared secret clients must present in ``hello``; ``None`` accepts any client.
    step_seconds : float
        Wall-clock cadence of ``source.advance``.
    heartbeat : float
        Seconds between heartbeats to each client.
    max_subscriptions : int
        Instruments one connection may hold.
    max_msgs_per_sec : float
        Inbound rate limit per connection (token bucket, burst twice that).
    slow_consumer_timeout : float
        Seconds a send may stay blocked before the connection is closed with ``CLOSE_SLOW``.
    fault_hook : callable or None
        ``hook(messages) -> messages`` applied to each outgoing batch after seq assignment
        (tests drop, duplicate or reorder messages with it).
    batch_size : int
        Most messages per outgoing frame.
    policy_after : float
        Seconds of continuous rate-limit violation before closing with ``CLOSE_POLICY``.
    close_timeout : float
        Seconds to wait for a peer's close handshake before dropping the connection.
    socket_buffer : int
        Kernel send buffer per connection (bytes; 0 keeps the system's auto-tuning).
    hello_timeout : float
        Seconds a new connection has to authenticate before it is closed (``CLOSE_AUTH``).
    """

    def __init__(
        self,
        source: PriceSource,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        step_seconds: float = 0.05,
        heartbeat: float = 1.0,
        max_subscriptions: int = 20000,
        max_msgs_per_sec: float = 50,
        slow_consumer_timeout: float = 30.0,
        fault_hook: FaultHook | None = None,
        batch_size: int = 2000,
        policy_after: float = 5.0,
        close_timeout: float = 2.0,
        socket_buffer: int = 256 * 1024,
        hello_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
    ) -> None:
        self.source = source
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.host = host
        self.port = port
        self.token = token
        self.step_seconds = step_seconds
        self.heartbeat = heartbeat
        self.max_subscriptions = max_subscriptions
        self.max_msgs_per_sec = float(max_msgs_per_sec)
        self.slow_consumer_timeout = slow_consumer_timeout
        self.fault_hook = fault_hook
        self.batch_size = batch_size
        self.policy_after = policy_after
        self.close_timeout = close_timeout
        self.socket_buffer = socket_buffer
        self.hello_timeout = hello_timeout
        self.counters = ServerCounters()
        self._instruments = [i.id for i in source.instruments()]
        self._product_of = {i.id: i.product for i in source.instruments()}
        self._by_product: dict[str, list[str]] = {}
        for i in source.instruments():
            self._by_product.setdefault(i.product, []).append(i.id)
        # JSON string literals of every instrument and stream (ticks are formatted directly)
        self._quoted = {n: json.dumps(n) for n in self._instruments}
        self._quoted.update({n: json.dumps(n) for n in set(self._product_of.values())})
        self._ticks: dict[str, Tick] = {}
        self._settles: dict[str, float] = {}
        self._curves: dict[str, _BookCurve] = {}
        self._settle_curves: dict[str, CurveUpdate] = {}
        self._vols: dict[str, VolUpdate] = {}
        self._conns: set[_Conn] = set()
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped: asyncio.Event | None = None
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``ws://host:port`` once listening."""
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> str:
        """Start the source, listen and start the publisher; returns :attr:`url`."""
        now = time.time_ns()
        if not self._started:
            self._apply(self.source.start(now))
            self._started = True
        self._stopped = asyncio.Event()
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=p.MAX_CLIENT_FRAME,
            compression=None,
            close_timeout=self.close_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publisher(), name="feed-publisher"),
            loop.create_task(self._heartbeats(), name="feed-heartbeat"),
        ]
        log.info("feed server listening on %s (mode %s)", self.url, self.source.mode)
        return self.url

    async def stop(self) -> None:
        """Close every connection with 1001, stop the publisher and stop listening."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._server is not None:
            for c in list(self._conns):
                c.closing = True
                c.wake.set()
            self._server.close(close_connections=True, code=p.CLOSE_SHUTDOWN, reason="shutdown")
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), self.close_timeout + 2)
            self._server = None
        if self._stopped is not None:
            self._stopped.set()

    async def serve(self) -> None:
        """Start and serve until :meth:`stop` is called (or the task is cancelled)."""
        await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            if self._server is not None:
                await self.stop()

    # ------------------------------------------------------------------ introspection

    def book_digest(self, instruments: list[str] | set[str] | None = None) -> dict[str, Any]:
        """The book in :meth:`MarketState.digest` shape for ``instruments`` (all when None).

        Curves are those of the products of the instruments asked for. Call on the server's
        loop thread (see :meth:`FeedServerThread.book_digest`).
        """
        names = set(self._instruments if instruments is None else instruments)
        quotes = {
            k: (t.bid, t.ask, t.last, float(t.size), t.ts)
            for k, t in sorted(self._ticks.items())
            if k in names
        }
        products = {n.split(":", 1)[0] for n in names}
        curves = {
            k: (_month_text(c.start), tuple(float(x) for x in c.prices))
            for k, c in sorted(self._curves.items())
            if k in products
        }
        return {"quotes": quotes, "curves": curves}

    def buffer_sizes(self) -> list[int]:
        """Entries waiting in each connection's outbound buffer (call on the loop thread)."""
        return [len(c.buf) for c in self._conns]

    def stall_connections(self, stalled: bool = True) -> int:
        """Test hook: stop (or resume) reading from and sending to every open connection, so
        clients see neither data nor pong. Returns the number of connections affected."""
        for c in self._conns:
            c.stalled = stalled
            transport = c.ws.transport
            if transport is not None and not transport.is_closing():
                if stalled:
                    transport.pause_reading()
                else:
                    transport.resume_reading()
            c.wake.set()
        return len(self._conns)

    def close_all(self, code: int, reason: str) -> None:
        """Close every connection with ``code`` (tests and admin)."""
        for c in list(self._conns):
            self._close(c, code, reason)

    # ------------------------------------------------------------------ book + fan-out

    def _apply(self, batch: Batch) -> None:
        """Apply a batch to the book and fan it out to every connection's buffer."""
        conns = [c for c in self._conns if c.authed and not c.closing and c.streams]
        product_of = self._product_of
        ticks_book = self._ticks
        conflated = 0
        for t in batch.ticks:
            product = product_of.get(t.instrument)
            if product is None:
                log.warning("tick for unknown instrument %r dropped", t.instrument)
                continue
            if not _clean(t):
                log.warning("malformed tick dropped: %s", t)
                continue
            t.stream = product
            ticks_book[t.instrument] = t
            if t.kind == "settle" and t.last is not None:
                self._settles[t.instrument] = t.last
            for c in conns:
                if t.instrument not in c.subs:
                    continue
                buf = c.buf
                inst = t.instrument
                if t.kind == "settle":
                    if buf.pop(inst, None) is not None:
                        conflated += 1
                    skey = "S|" + inst
                    if skey in buf:
                        conflated += 1
                    buf[skey] = t
                else:
                    old = buf.get(inst)
                    if old is not None:
                        conflated += 1
                        if "S|" + inst in buf:  # keep the trade after the settle
                            del buf[inst]
                    buf[inst] = t
        for cu in batch.curves:
            self._apply_curve(cu, conns)
        for vu in batch.vols:
            if vu.product not in self._quoted:
                log.warning("vols for unknown product %r dropped", vu.product)
                continue
            self._vols[vu.product] = vu
            vkey = "V|" + vu.product
            for c in conns:
                if vu.product in c.streams:
                    if vkey in c.buf:
                        conflated += 1
                    c.buf[vkey] = _VOLS
        self.counters.conflated += conflated
        self.counters.ticks_published += len(batch.ticks)
        for c in conns:
            if c.buf:
                c.wake.set()

    def _apply_curve(self, cu: CurveUpdate, conns: list[_Conn]) -> None:
        product = cu.product
        try:
            start = _month_index(cu.start)
            prices = [float(x) for x in cu.prices]
        except (TypeError, ValueError, OverflowError):
            log.warning("malformed curve for %s dropped", product)
            return
        if not prices or not all(x - x == 0 for x in prices) or product not in self._quoted:
            log.warning("curve for %s dropped: empty, non-finite or unknown product", product)
            return
        held = self._curves.get(product)
        if cu.full or held is None:
            if not cu.full:
                log.warning("partial curve for %s with no curve held: taken as full", product)
            self._curves[product] = held = _BookCurve(start, prices, cu.ts, cu.settle)
            lo, hi, full = start, start + len(prices), True
        else:
            off = start - held.start
            if off < 0 or off + len(prices) > len(held.prices):
                log.warning("partial curve %s+%d for %s off the curve: dropped",
                            cu.start, len(prices), product)  # fmt: skip
                return
            held.prices[off : off + len(prices)] = prices
            held.ts = cu.ts
            lo, hi, full = start, start + len(prices), False
        if cu.settle is not None:
            self._settle_curves[product] = CurveUpdate(
                product, cu.start, prices, cu.ts, cu.full, cu.settle
            )
        ckey, skey = "C|" + product, "CS|" + product
        for c in conns:
            if product not in c.streams:
                continue
            buf = c.buf
            if cu.settle is not None:
                if buf.pop(ckey, None) is not None:
                    self.counters.conflated += 1
                if skey in buf:
                    self.counters.conflated += 1
                buf[skey] = True
                if not cu.full:  # the live curve changes too: send it after the settlement
                    buf[ckey] = _PendingCurve(False, lo, hi)
                continue
            pend = buf.get(ckey)
            if pend is None:
                buf[ckey] = _PendingCurve(full, lo, hi)
                continue
            self.counters.conflated += 1
            if full or pend.full:
                pend.full = True
            else:
                pend.lo, pend.hi = min(pend.lo, lo), max(pend.hi, hi)
            if skey in buf:  # keep the live curve after a pending settlement
                del buf[ckey]
                buf[ckey] = pend

    def _settle_curve_message(self, product: str) -> dict[str, Any] | None:
        cu = self._settle_curves.get(product)
        if cu is None:
            return None
        return cu.to_message()

    def _snapshot(self, c: _Conn, stream: str) -> dict[str, Any]:
        quotes = []
        settles: dict[str, float] = {}
        for inst in sorted(c.streams.get(stream, ())):
            t = self._ticks.get(inst)
            if t is not None:
                quotes.append(
                    {
                        "instrument": inst,
                        "bid": t.bid,
                        "ask": t.ask,
                        "last": t.last,
                        "size": t.size,
                        "ts": t.ts,
                        "kind": t.kind,
                    }
                )
            s = self._settles.get(inst)
            if s is not None:
                settles[inst] = s
        curve = None
        held = self._curves.get(stream)
        if held is not None:
            m = held.message(stream)
            curve = {k: m[k] for k in ("product", "start", "prices", "ts", "full", "settle")}
        vu = self._vols.get(stream)
        vols = None
        if vu is not None:
            vols = {k: v for k, v in vu.to_message().items() if k not in ("type", "stream", "seq")}
        return {
            "type": p.SNAPSHOT,
            "stream": stream,
            "seq": 0,
            "quotes": quotes,
            "curve": curve,
            "settles": settles,
            "vols": vols,
        }

    # ------------------------------------------------------------------ tasks

    async def _publisher(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        next_at = last + self.step_seconds
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            now = loop.time()
            next_at = max(next_at + self.step_seconds, now)
            elapsed, last = now - last, now
            try:
                if not getattr(self.source, "finished", False):
                    self._apply(self.source.advance(elapsed, time.time_ns()))
            except Exception:
                log.exception("price source failed to advance")
            self._check_slow(now)

    def _check_slow(self, now: float) -> None:
        for c in list(self._conns):
            if c.closing or c.send_started is None:
                continue
            if now - c.send_started > self.slow_consumer_timeout:
                self.counters.slow_closed += 1
                log.warning(
                    "closing slow consumer %s (%s): send blocked %.1f s",
                    c.session,
                    c.client,
                    now - c.send_started,
                )
                self._close(c, p.CLOSE_SLOW, "slow consumer: send blocked too long")

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            msg = {"type": p.HEARTBEAT, "server_time": time.time_ns()}
            for c in self._conns:
                if c.authed and not c.closing:
                    c.buf["#hb"] = msg
                    c.wake.set()

    def _close(self, c: _Conn, code: int, reason: str, *, flush: bool = False) -> None:
        if c.closing or c.close_after is not None:
            return
        if flush:  # the sender closes once what is queued (the error message) is sent
            c.close_after = (code, reason)
            c.wake.set()
            return
        c.closing = True
        c.wake.set()
        asyncio.get_running_loop().create_task(self._do_close(c, code, reason))

    async def _do_close(self, c: _Conn, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.ws.close(code, reason), self.close_timeout + 1)
        transport = c.ws.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    # ------------------------------------------------------------------ connection

    async def _handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        c = _Conn(ws=ws, session=uuid.uuid4().hex[:16])
        c.tokens, c.token_time = 2 * self.max_msgs_per_sec, loop.time()
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is not None and self.socket_buffer:
            # a small kernel send buffer: what a slow client cannot take waits in the
            # conflating buffer (latest values) instead of queueing as megabytes of old ones
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.socket_buffer)
        self._conns.add(c)
        self.counters.connections += 1
        self.counters.accepted += 1
        sender = loop.create_task(self._sender(c), name=f"feed-sender-{c.session}")
        hello_timer = loop.call_later(self.hello_timeout, self._hello_timeout, c)
        try:
            async for raw in ws:
                if c.closing:
                    break
                self._on_frame(c, raw, loop.time())
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s failed", c.session)
        finally:
            hello_timer.cancel()
            c.closing = True
            c.wake.set()
            self._conns.discard(c)
            self.counters.connections -= 1
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            log.info("connection %s (%s) closed: %s", c.session, c.client, ws.close_code)

    def _hello_timeout(self, c: _Conn) -> None:
        if not c.authed and not c.closing:
            log.warning("connection %s: no hello within %.0f s", c.session, self.hello_timeout)
            self._error(c, ProtocolError(p.E_AUTH_REQUIRED, "no hello in time"))
            self._close(c, p.CLOSE_AUTH, "no hello in time", flush=True)

    async def _sender(self, c: _Conn) -> None:
        loop = asyncio.get_running_loop()
        while not c.closing:
            await c.wake.wait()
            c.wake.clear()
            await self._flush(c, loop)
            if c.close_after is not None and not c.closing and not c.stalled:
                code, reason = c.close_after
                c.closing = True
                await self._do_close(c, code, reason)
                return

    async def _flush(self, c: _Conn, loop: asyncio.AbstractEventLoop) -> None:
        hook = self.fault_hook
        while c.buf and not c.closing and not c.stalled:
            items = self._take(c)
            if hook is None:
                parts = self._build(c, items, text=True)
                if not parts:
                    continue
                n = len(parts)
                frame = "[" + ",".join(parts) + "]"
            else:
                msgs = self._build(c, items, text=False)
                msgs = hook(msgs)
                if not msgs:
                    continue
                n = len(msgs)
                try:
                    frame = p.encode_frame(msgs)
                except ValueError:
                    log.exception("dropping a batch that cannot be encoded")
                    continue
            c.send_started = loop.time()
            try:
                await c.ws.send(frame)
            except ConnectionClosed:
                c.closing = True
                return
            finally:
                c.send_started = None
            self.counters.msgs_sent += n
            self.counters.frames_sent += 1

    def _next_seq(self, c: _Conn, stream: str) -> int:
        n = c.seq.get(stream, 0) + 1
        c.seq[stream] = n
        return n

    def _take(self, c: _Conn) -> list[tuple[str, Any]]:
        """Take up to ``batch_size`` entries from the front of the buffer."""
        buf = c.buf
        if len(buf) <= self.batch_size:
            items = list(buf.items())
            buf.clear()
            return items
        keys = list(itertools.islice(buf, self.batch_size))
        return [(k, buf.pop(k)) for k in keys]

    def _build(self, c: _Conn, items: list[tuple[str, Any]], *, text: bool) -> list[Any]:
        """Messages for buffer entries, with seq assigned now: dicts, or (``text``) their
        compact JSON, ticks formatted directly (their numbers are checked finite on entry)."""
        out: list[Any] = []
        add = out.append
        seq = c.seq
        streams, subs = c.streams, c.subs
        quoted = self._quoted
        for key, v in items:
            if type(v) is Tick:
                stream = v.stream
                if stream not in streams or v.instrument not in subs:
                    continue
                n = seq.get(stream, 0) + 1
                seq[stream] = n
                if text:
                    bid, ask, last = v.bid, v.ask, v.last
                    add(
                        f'{{"type":"tick","stream":{quoted[stream]},"seq":{n},'
                        f'"instrument":{quoted[v.instrument]},'
                        f'"bid":{"null" if bid is None else _repr(bid)},'
                        f'"ask":{"null" if ask is None else _repr(ask)},'
                        f'"last":{"null" if last is None else _repr(last)},'
                        f'"size":{_repr(v.size)},"ts":{v.ts},"kind":"{v.kind}"}}'
                    )
                    continue
                add(
                    {
                        "type": p.TICK,
                        "stream": stream,
                        "seq": n,
                        "instrument": v.instrument,
                        "bid": v.bid,
                        "ask": v.ask,
                        "last": v.last,
                        "size": v.size,
                        "ts": v.ts,
                        "kind": v.kind,
                    }
                )
                continue
            m: dict[str, Any] | None
            if isinstance(v, _PendingCurve):
                product = key[2:]
                held = self._curves.get(product)
                if held is None or product not in streams:
                    continue
                m = held.message(product, None if v.full else v.lo, None if v.full else v.hi)
                m["seq"] = self._next_seq(c, product)
            elif v is _VOLS:
                product = key[2:]
                vu = self._vols.get(product)
                if vu is None or product not in streams:
                    continue
                m = vu.to_message()
                m["seq"] = self._next_seq(c, product)
            elif v is True:  # settlement curve
                product = key[3:]
                m = self._settle_curve_message(product)
                if m is None or product not in streams:
                    continue
                m["seq"] = self._next_seq(c, product)
            elif isinstance(v, _SnapRequest):
                m = self._snapshot(c, v.stream)
                m["seq"] = self._next_seq(c, v.stream)
            else:
                if key.startswith("#n|"):
                    c.control_pending -= 1
                m = v
            if text:
                try:
                    add(_dumps(m))
                except ValueError:
                    log.exception("dropping a message that cannot be encoded: %s", m.get("type"))
            else:
                add(m)
        return out

    # ------------------------------------------------------------------ inbound

    def _enqueue_control(self, c: _Conn, msg: dict[str, Any]) -> None:
        if c.control_pending >= _MAX_CONTROL:
            log.warning("connection %s: control queue full, dropping %s", c.session, msg["type"])
            return
        c.control_seq += 1
        c.control_pending += 1
        c.buf[f"#n|{c.control_seq}"] = msg
        c.wake.set()

    def _error(self, c: _Conn, exc: ProtocolError) -> None:
        self.counters.errors_sent += 1
        log.info("connection %s (%s): %s: %s", c.session, c.client, exc.code, exc.message)
        self._enqueue_control(c, exc.to_message())

    def _take_token(self, c: _Conn, now: float) -> bool:
        rate = self.max_msgs_per_sec
        c.tokens = min(2 * rate, c.tokens + (now - c.token_time) * rate)
        c.token_time = now
        if c.tokens >= 1.0:
            c.tokens -= 1.0
            if c.over_since is not None and now - c.last_reject > 1.0:
                c.over_since = None
            return True
        if c.over_since is None or now - c.last_reject > 1.0:
            c.over_since = now
        c.last_reject = now
        if now - c.over_since >= self.policy_after:
            self.counters.policy_closed += 1
            log.warning("closing %s (%s): rate limit exceeded persistently", c.session, c.client)
            self._close(c, p.CLOSE_POLICY, "rate limit exceeded persistently")
        elif now - c.last_rate_error >= 1.0:
            c.last_rate_error = now
            self._error(
                c,
                ProtocolError(
                    p.E_RATE_LIMIT, f"more than {rate:g} messages per second: messages dropped"
                ),
            )
        return False

    def _on_frame(self, c: _Conn, raw: str | bytes, now: float) -> None:
        if c.stalled or c.close_after is not None:
            return
        try:
            objs = p.decode_frame(raw, p.MAX_CLIENT_FRAME)
            if len(objs) > p.MAX_MESSAGES_PER_FRAME:
                raise ProtocolError(
                    p.E_BAD_FRAME, f"more than {p.MAX_MESSAGES_PER_FRAME} messages in one frame"
                )
            if not objs:
                raise ProtocolError(p.E_BAD_FRAME, "empty frame")
        except ProtocolError as exc:
            if self._take_token(c, now):
                self._error(c, exc)
            return
        for obj in objs:
            if c.closing or c.close_after is not None:
                return
            if not self._take_token(c, now):
                continue
            try:
                msg = p.parse_client_message(obj)
                self._on_message(c, msg)
            except ProtocolError as exc:
                self._error(c, exc)
            except Exception as exc:  # never let one message kill the connection
                log.exception("connection %s: internal error", c.session)
                self._error(c, ProtocolError(p.E_INTERNAL, f"internal error: {type(exc).__name__}"))

    def _on_message(self, c: _Conn, msg: p.ClientMessage) -> None:
        if not c.authed:
            if msg.type != p.HELLO:
                raise ProtocolError(p.E_AUTH_REQUIRED, "say hello first", msg.id)
            if msg.protocol != p.PROTOCOL_VERSION:
                self._error(
                    c,
                    ProtocolError(
                        p.E_VERSION,
                        f"protocol {msg.protocol} not supported (server speaks "
                        f"{p.PROTOCOL_VERSION})",
                    ),
                )
                self._close(
                    c, p.CLOSE_VERSION, f"unsupported protocol version {msg.protocol}", flush=True
                )
                return
            if self.token is not None and not hmac.compare_digest(
                (msg.token or "").encode(), self.token.encode()
            ):
                self._error(c, ProtocolError(p.E_AUTH_FAILED, "bad or missing token"))
                log.warning("connection %s: authentication failed", c.session)
                self._close(c, p.CLOSE_AUTH, "authentication failed", flush=True)
                return
            c.authed = True
            c.client = msg.client or ""
            self._enqueue_control(
                c,
                {
                    "type": p.WELCOME,
                    "protocol": p.PROTOCOL_VERSION,
                    "session": c.session,
                    "mode": self.source.mode,
                    "heartbeat": float(self.heartbeat),
                    "server_time": time.time_ns(),
                },
            )
            log.info("connection %s: hello from %r", c.session, c.client)
            return
        if msg.type == p.HELLO:
            raise ProtocolError(p.E_BAD_MESSAGE, "hello already received")
        if msg.type == p.SUBSCRIBE:
            self._subscribe(c, msg)
        elif msg.type == p.UNSUBSCRIBE:
            self._unsubscribe(c, msg)
        elif msg.type == p.RESYNC:
            unknown = [s for s in msg.streams if s not in c.streams]
            for s in msg.streams:
                if s in c.streams:
                    c.buf.pop("#snap|" + s, None)
                    c.buf["#snap|" + s] = _SnapRequest(s)
            c.wake.set()
            if unknown:
                raise ProtocolError(
                    p.E_UNKNOWN_STREAM, f"not subscribed to {', '.join(unknown[:5])}", msg.id
                )

    def _candidates(self, pattern: str) -> list[str]:
        """Instruments a pattern can match: an exact id, one product's, or all of them (so a
        flood of exact or product patterns never scans the whole universe each)."""
        if not any(ch in pattern for ch in "*?["):
            return [pattern] if pattern in self._product_of else []
        product, sep, _ = pattern.partition(":")
        if sep and not any(ch in product for ch in "*?["):
            return self._by_product.get(product, [])
        return self._instruments

    def _subscribe(self, c: _Conn, msg: p.ClientMessage) -> None:
        new: list[str] = []
        seen = set(c.subs)
        missing: list[str] = []
        for pat in msg.patterns:
            hit = False
            for inst in self._candidates(pat):
                if matches(pat, inst):
                    hit = True
                    if inst not in seen:
                        seen.add(inst)
                        new.append(inst)
            if not hit:
                missing.append(pat)
        if len(c.subs) + len(new) > self.max_subscriptions:
            raise ProtocolError(
                p.E_TOO_MANY,
                f"{len(c.subs) + len(new)} instruments exceed the limit of "
                f"{self.max_subscriptions}",
                msg.id,
            )
        affected: list[str] = []
        for inst in new:
            c.subs.add(inst)
            stream = self._product_of[inst]
            if stream not in affected:
                affected.append(stream)
            c.streams.setdefault(stream, set()).add(inst)
        if new or not missing:
            self._enqueue_control(c, {"type": p.SUBSCRIBED, "id": msg.id, "instruments": new})
        for s in affected:
            c.buf.pop("#snap|" + s, None)
            c.buf["#snap|" + s] = _SnapRequest(s)
        c.wake.set()
        if missing:
            raise ProtocolError(
                p.E_NO_MATCH, f"no instrument matches {', '.join(missing[:5])}", msg.id
            )

    def _unsubscribe(self, c: _Conn, msg: p.ClientMessage) -> None:
        gone = sorted(
            {
                inst
                for pat in msg.patterns
                for inst in self._candidates(pat)
                if inst in c.subs and matches(pat, inst)
            }
        )
        for inst in gone:
            c.subs.discard(inst)
            c.buf.pop(inst, None)
            c.buf.pop("S|" + inst, None)
            stream = self._product_of[inst]
            held = c.streams.get(stream)
            if held is not None:
                held.discard(inst)
                if not held:
                    del c.streams[stream]
                    for k in ("C|", "CS|", "#snap|"):
                        c.buf.pop(k + stream, None)
        self._enqueue_control(c, {"type": p.UNSUBSCRIBED, "id": msg.id, "instruments": gone})


class FeedServerThread:
    """Runs a :class:`FeedServer` on its own event loop in a daemon thread.

    Parameters
    ----------
    server : FeedServer
        The server to run (not yet started).
    """

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        """Start listening; returns the bound URL ``ws://127.0.0.1:PORT``."""
        self._thread = threading.Thread(target=self._run, name="feed-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("feed server did not start")
        if self._error is not None:
            raise RuntimeError(f"feed server failed to start: {self._error}") from self._error
        return self.url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                self.url = loop.run_until_complete(self.server.start())
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            loop.run_forever()
        finally:
            close_loop(loop)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn()`` on the server's loop thread and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("server thread not running")

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def book_digest(self, instruments: list[str] | set[str] | None = None) -> dict[str, Any]:
        """Thread-safe :meth:`FeedServer.book_digest`."""
        return self.call(lambda: self.server.book_digest(instruments))  # type: ignore[no-any-return]

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection with 1001, stop the loop and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
