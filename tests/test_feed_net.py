"""Feed server + client over real loopback websockets."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.feed import protocol as p
from app.feed.client import FeedClient, load_token, store_token
from app.feed.market_state import (
    CONNECTED,
    DISCONNECTED,
    RECONNECTING,
    STALE,
    MarketState,
)
from app.feed.server import FeedServer, FeedServerThread
from tests.feed_helpers import (
    ScriptedSource,
    StatusRecorder,
    running_client,
    running_server,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]


def _synced(srv: FeedServerThread, client: FeedClient, state: MarketState) -> bool:
    """Client digest equals the server's book for the instruments the client holds."""
    insts = state.instruments()
    if not insts:
        return False
    mine = state.digest()
    # MarketState.forget drops quotes but keeps the curve of a product no longer held
    held = {i.split(":", 1)[0] for i in insts}
    mine["curves"] = {k: v for k, v in mine["curves"].items() if k in held}
    return bool(mine == srv.book_digest(insts))


def _quiesce_and_compare(
    src: ScriptedSource, srv: FeedServerThread, client: FeedClient, state: MarketState
) -> None:
    src.paused = True
    wait_for(lambda: not client._awaiting and _synced(srv, client, state), timeout=20)


def _fresh(state: MarketState, src: ScriptedSource) -> bool:
    return state.is_fresh() and not any(state.is_stale(prod) for prod in src.products)


# ---------------------------------------------------------------------------- happy path


def test_subscribe_receive_and_state_equals_server() -> None:
    src = ScriptedSource(products=3, months=12)
    with running_server(src) as srv:
        state = MarketState()
        with running_client(srv.url, state, patterns=["TSTA:*", "TSTB:2030-0?"]) as client:
            wait_for(lambda: state.status().state == CONNECTED)
            wait_for(lambda: set(state.products()) == {"TSTA", "TSTB"})
            wait_for(lambda: client.msgs_applied > 200)
            assert set(state.instruments()) == {f"TSTA:2030-{m:02d}" for m in range(1, 13)} | {
                f"TSTB:2030-0{m}" for m in range(1, 10)
            }
            st = state.status()
            assert st.mode == "simulate" and st.url == srv.url
            assert st.last_tick > 0
            wait_for(lambda: state.status().msgs_per_sec > 0)
            q = state.quote("TSTA:2030-01")
            assert q is not None and q.settle is not None and q.last is not None
            _quiesce_and_compare(src, srv, client, state)
            assert client.gaps == 0 and client.duplicates == 0
            assert _fresh(state, src)
            # idle: rate falls to 0, heartbeats keep it fresh
            wait_for(lambda: state.status().msgs_per_sec == 0.0, timeout=10)
            assert state.is_fresh()

            # re-subscribe: drop TSTA, add TSTC
            client.set_patterns(["TSTB:2030-0?", "TSTC:*"])
            wait_for(lambda: not any(i.startswith("TSTA") for i in state.instruments()))
            wait_for(lambda: any(i.startswith("TSTC") for i in state.instruments()))
            wait_for(lambda: _synced(srv, client, state))


def test_no_match_and_too_many_subscriptions_are_errors() -> None:
    src = ScriptedSource(products=2, months=6)
    with running_server(src, max_subscriptions=8) as srv:
        msgs = asyncio.run(
            _raw_session(
                srv.url,
                [
                    {"type": "subscribe", "id": "a", "patterns": ["NOPE:*"]},
                    {"type": "subscribe", "id": "b", "patterns": ["TSTA:*"]},
                    {"type": "subscribe", "id": "c", "patterns": ["TSTB:*"]},
                    {"type": "resync", "id": "d", "streams": ["TSTB"]},
                ],
                until=lambda ms: sum(m.get("type") == "error" for m in ms) >= 3,
            )
        )
    errors = {m["ref"]: m["code"] for m in msgs if m["type"] == "error"}
    assert errors == {"a": p.E_NO_MATCH, "c": p.E_TOO_MANY, "d": p.E_UNKNOWN_STREAM}
    subscribed = [m for m in msgs if m["type"] == "subscribed"]
    assert [m["id"] for m in subscribed] == ["b"] and len(subscribed[0]["instruments"]) == 6
    snaps = [m for m in msgs if m["type"] == "snapshot"]
    assert snaps and snaps[0]["stream"] == "TSTA" and snaps[0]["seq"] == 1
    assert len(snaps[0]["quotes"]) == 6 and snaps[0]["curve"]["full"] is True
    assert len(snaps[0]["settles"]) == 6
    parsed = p.parse_server_message(snaps[0])
    assert isinstance(parsed, p.Snapshot)


async def _raw_session(
    url: str,
    send: list[dict[str, Any]],
    until: Any,
    hello: dict[str, Any] | None = None,
    timeout: float = 15.0,
) -> list[dict[str, Any]]:
    """Hello + the given messages over a raw websocket; collect messages until ``until``."""
    got: list[dict[str, Any]] = []
    async with connect(url, max_size=p.MAX_SERVER_FRAME, compression=None, proxy=None) as ws:
        await ws.send(json.dumps(hello or {"type": "hello", "protocol": 1, "client": "raw"}))
        for m in send:
            await ws.send(json.dumps(m))
        deadline = time.monotonic() + timeout
        while not until(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; got {[m.get('type') for m in got][-20:]}")
            raw = await asyncio.wait_for(ws.recv(), left)
            got.extend(json.loads(raw))
    return got


def test_seq_is_contiguous_per_stream_and_snapshot_consumes_a_seq() -> None:
    src = ScriptedSource(products=2, months=6, ticks_per_step=30)

    async def run(url: str) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        async with connect(url, compression=None, proxy=None) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1}))
            await ws.send(json.dumps({"type": "subscribe", "id": "s", "patterns": ["*"]}))
            resynced = False
            deadline = time.monotonic() + 20
            while sum(m["type"] == "snapshot" for m in got) < 3 or len(got) < 400:
                assert time.monotonic() < deadline, [m["type"] for m in got][-20:]
                got.extend(json.loads(await asyncio.wait_for(ws.recv(), 10)))
                if not resynced and sum(m["type"] == "snapshot" for m in got) == 2:
                    await ws.send(json.dumps({"type": "resync", "id": "r", "streams": ["TSTA"]}))
                    resynced = True
        return got

    with running_server(src) as srv:
        msgs = asyncio.run(run(srv.url))
    last: dict[str, int] = {}
    for m in msgs:
        if m["type"] in ("tick", "curve", "snapshot"):
            assert m["seq"] == last.get(m["stream"], 0) + 1, m
            last[m["stream"]] = m["seq"]
    assert msgs[0]["type"] == "welcome" and msgs[0]["mode"] == "simulate"
    snaps = [m for m in msgs if m["type"] == "snapshot"]
    assert [s["stream"] for s in snaps] == ["TSTA", "TSTB", "TSTA"]
    assert snaps[0]["seq"] == snaps[1]["seq"] == 1 and snaps[2]["seq"] > 1


# ---------------------------------------------------------------------------- reconnect


def test_server_restart_reconnects_resubscribes_and_heals() -> None:
    src = ScriptedSource(products=2, months=6)
    first = FeedServerThread(FeedServer(src))
    url = first.start()
    port = first.server.port
    state = MarketState()
    rec = StatusRecorder(state)
    second: FeedServerThread | None = None
    try:
        with running_client(url, state, backoff=(0.05, 0.5)) as client:
            wait_for(lambda: _fresh(state, src) and len(state.instruments()) == 12)
            first.stop()
            wait_for(lambda: state.status().state == RECONNECTING)
            assert state.status().detail.startswith(("connection closed", "cannot connect"))
            assert all(state.is_stale(prod) for prod in src.products)
            assert all(q.stale for q in state.quotes().values())
            time.sleep(0.3)  # let it retry against the closed port a few times
            assert state.status().state == RECONNECTING
            src.burst(200)  # the market moves while we are away
            second = FeedServerThread(FeedServer(src, port=port))
            assert second.start() == url
            wait_for(lambda: state.status().state == CONNECTED)
            wait_for(lambda: client.reconnects == 1 and _fresh(state, src))
            _quiesce_and_compare(src, second, client, state)
            assert state.status().reconnects == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert rec.states[:2] == ["connecting", CONNECTED]
    i = rec.states.index(RECONNECTING)
    assert CONNECTED in rec.states[i:]


def test_close_detail_names_code_and_reason() -> None:
    src = ScriptedSource(products=1, months=4)
    details: list[str] = []
    with running_server(src) as srv:
        state = MarketState()
        orig = state.update_status

        def spy(**fields: Any) -> None:
            orig(**fields)
            if "detail" in fields:
                details.append(fields["detail"])

        state.update_status = spy  # type: ignore[method-assign]
        with running_client(srv.url, state, backoff=(0.5, 1.0)) as client:
            wait_for(lambda: _fresh(state, src))
            srv.call(lambda: srv.server.close_all(p.CLOSE_SLOW, "go away"))
            wait_for(lambda: any("4009" in d and "go away" in d for d in details))
            wait_for(lambda: client.reconnects == 1 and _fresh(state, src))
            assert state.status().reconnects == 1


def test_stalled_server_goes_stale_then_ping_timeout_reconnects() -> None:
    src = ScriptedSource(products=1, months=4)
    with running_server(src, heartbeat=0.2) as srv:
        state = MarketState()
        rec = StatusRecorder(state)
        with running_client(
            srv.url,
            state,
            heartbeat_timeout=1.0,
            ping_interval=0.5,
            ping_timeout=1.5,
            backoff=(0.05, 0.2),
        ) as client:
            wait_for(lambda: _fresh(state, src))
            assert srv.call(lambda: srv.server.stall_connections()) == 1
            wait_for(lambda: STALE in rec.states)
            assert all(state.is_stale(prod) for prod in src.products)
            wait_for(lambda: client.reconnects >= 1 and _fresh(state, src))
    i = rec.states.index(STALE)
    assert RECONNECTING in rec.states[i:] and rec.states[-1] in (CONNECTED, DISCONNECTED)


# ---------------------------------------------------------------------------- faults


def test_fault_injection_gaps_detected_and_state_heals() -> None:
    rng = random.Random(1234)
    injected = {"drop": 0, "dup": 0, "swap": 0, "dropped_seq": 0}

    def hook(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in msgs:
            r = rng.random()
            if "seq" in m and r < 0.01:
                injected["drop"] += 1
                injected["dropped_seq"] += 1
                continue
            out.append(m)
            if r > 0.99:
                injected["dup"] += 1
                out.append(m)
        if len(out) > 3 and rng.random() < 0.05:
            i = rng.randrange(len(out) - 1)
            out[i], out[i + 1] = out[i + 1], out[i]
            injected["swap"] += 1
        return out

    src = ScriptedSource(products=4, months=12, ticks_per_step=60)
    with running_server(src, fault_hook=hook, step_seconds=0.02) as srv:
        state = MarketState()
        with running_client(srv.url, state, resync_timeout=1.0) as client:
            wait_for(lambda: client.msgs_applied > 4000, timeout=40)
            dropped = injected["dropped_seq"]
            _quiesce_and_compare(src, srv, client, state)
            assert dropped > 10
            # every drop of a sequenced message is detected: either as a gap, or it fell
            # on a stream already waiting for its snapshot
            assert client.gaps >= 1
            assert client.gaps + client.snapshots >= dropped * 0.5
            assert client.duplicates >= 1
            assert state.status().gaps == client.gaps
            assert state.status().resyncs >= 1
            assert _fresh(state, src)


def test_every_drop_is_detected_as_gap() -> None:
    """1 % of sequenced messages dropped (at most one outstanding per stream): the client
    counts exactly one gap per drop and resyncs each, and ends equal to the server."""
    rng = random.Random(99)
    drops: list[tuple[str, int]] = []
    healing: dict[str, int] = {}  # stream -> seq dropped, until its next snapshot goes out
    enabled = [True]

    def hook(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in msgs:
            stream = m.get("stream")
            if m.get("type") == "snapshot" and stream in healing:
                if m["seq"] > healing[stream]:
                    del healing[stream]
            elif (
                enabled[0]
                and stream is not None
                and m.get("type") in ("tick", "curve")
                and stream not in healing
                and rng.random() < 0.01
            ):
                drops.append((stream, m["seq"]))
                healing[stream] = m["seq"]
                continue
            out.append(m)
        return out

    src = ScriptedSource(products=3, months=6, ticks_per_step=40, settle_every=5)
    with running_server(src, fault_hook=hook, step_seconds=0.02) as srv:
        state = MarketState()
        with running_client(srv.url, state) as client:
            wait_for(lambda: len(drops) >= 20 and client.msgs_applied > 3000, timeout=40)
            enabled[0] = False
            n = len(drops)
            # every stream moves on after the last drop, so every drop is noticed
            wait_for(lambda: client.gaps == n and not client._awaiting, timeout=20)
            _quiesce_and_compare(src, srv, client, state)
            assert client.gaps == n and client.resyncs >= n
            assert client.duplicates == 0
            assert _fresh(state, src)


# ---------------------------------------------------------------------------- auth


def test_wrong_token_disconnects_without_reconnect_storm() -> None:
    src = ScriptedSource(products=1, months=4)
    with running_server(src, token="s3cret") as srv:
        state = MarketState()
        with running_client(srv.url, state, token="wrong", backoff=(0.01, 0.02)) as client:
            wait_for(lambda: state.status().state == DISCONNECTED)
            assert "authentication failed" in state.status().detail
            time.sleep(1.0)
            assert client.connections == 1
            assert state.status().state == DISCONNECTED
        state2 = MarketState()
        with running_client(srv.url, state2, token="s3cret") as good:
            wait_for(lambda: state2.is_fresh() and state2.instruments())
            assert good.connections == 1


def test_version_mismatch_and_messages_before_hello() -> None:
    src = ScriptedSource(products=1, months=4)

    async def run(url: str) -> tuple[list[dict[str, Any]], int | None]:
        got: list[dict[str, Any]] = []
        async with connect(url, compression=None, proxy=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "patterns": ["*"]}))
            got.extend(json.loads(await ws.recv()))
            await ws.send(json.dumps({"type": "hello", "protocol": 99}))
            with pytest.raises(ConnectionClosed):
                while True:
                    got.extend(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return got, ws.close_code

    with running_server(src, token="t") as srv:
        got, code = asyncio.run(run(srv.url))
    assert [m["code"] for m in got] == [p.E_AUTH_REQUIRED, p.E_VERSION]
    assert code == p.CLOSE_VERSION


def test_silent_connection_is_closed_after_hello_timeout() -> None:
    async def run(url: str) -> tuple[list[dict[str, Any]], int | None]:
        got: list[dict[str, Any]] = []
        async with connect(url, compression=None, proxy=None) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    got.extend(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            return got, ws.close_code

    with running_server(ScriptedSource(1, 2), hello_timeout=0.3) as srv:
        got, code = asyncio.run(run(srv.url))
    assert [m["code"] for m in got] == [p.E_AUTH_REQUIRED] and code == p.CLOSE_AUTH


def test_token_helpers_degrade_without_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QE_NO_KEYRING", "1")
    assert store_token("ws://x:1", "t") is False
    assert load_token("ws://x:1") is None


def test_token_helpers_use_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        priority = 1  # type: ignore[assignment]
        data: dict[tuple[str, str], str] = {}  # noqa: RUF012

        def set_password(self, service: str, username: str, password: str) -> None:
            self.data[(service, username)] = password

        def get_password(self, service: str, username: str) -> str | None:
            return self.data.get((service, username))

        def delete_password(self, service: str, username: str) -> None:
            self.data.pop((service, username), None)

    monkeypatch.delenv("QE_NO_KEYRING", raising=False)
    old = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        assert store_token("ws://h:1", "tok") is True
        assert load_token("ws://h:1") == "tok"
        assert Memory.data == {("QuantaEnergi feed", "ws://h:1"): "tok"}
        assert load_token("ws://other:1") is None
    finally:
        keyring.set_keyring(old)


# ---------------------------------------------------------------------------- hostile clients


def test_hostile_client_gets_errors_and_others_keep_receiving() -> None:
    src = ScriptedSource(products=2, months=6)

    async def hostile(url: str) -> tuple[list[dict[str, Any]], int | None, int | None]:
        got: list[dict[str, Any]] = []

        async def reader(ws: Any) -> None:
            with pytest.raises(ConnectionClosed):
                async for raw in ws:
                    got.extend(json.loads(raw))

        async with connect(url, compression=None, proxy=None) as ws:
            r = asyncio.get_running_loop().create_task(reader(ws))
            await ws.send(json.dumps({"type": "hello", "protocol": 1}))
            garbage: list[str | bytes] = [
                b"\xff\xfe\x00garbage",
                "not json",
                "[1, 2, 3]",
                '{"type": "subscribe", "patterns": [NaN]}',
                '{"type": "frobnicate"}',
                '{"type": "subscribe", "patterns": "*"}',
                '"a string"',
                "[" * 5000 + "]" * 5000,
                json.dumps([{"type": "resync", "streams": ["x" * 100]}]),
                json.dumps([{"type": "hello"}] * 300),
            ]
            for g in garbage:
                await ws.send(g)
            await asyncio.sleep(0.5)
            # 1000 subscribes per second until the server gives up on us
            deadline = time.monotonic() + 15
            with pytest.raises(ConnectionClosed):
                while time.monotonic() < deadline:
                    await ws.send(json.dumps({"type": "subscribe", "patterns": ["TSTA:*"]}))
                    await asyncio.sleep(0.001)
            await r
        async with connect(url, compression=None, proxy=None, max_size=None) as ws2:
            await ws2.send(json.dumps({"type": "hello", "protocol": 1}))
            await ws2.recv()
            await ws2.send("x" * (p.MAX_CLIENT_FRAME + 10))
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws2.recv(), 10)
        return got, ws.close_code, ws2.close_code

    with running_server(src, max_msgs_per_sec=50, policy_after=2.0) as srv:
        state = MarketState()
        with running_client(srv.url, state) as good:
            wait_for(lambda: _fresh(state, src))
            applied: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    applied.append(good.msgs_applied)
                    time.sleep(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            got, code, code2 = asyncio.run(hostile(srv.url))
            stop.set()
            sampler.join()
            assert state.is_fresh() and good.gaps == 0
            # the good client kept receiving throughout (every half second)
            assert all(b > a for a, b in itertools.pairwise(applied)), applied
            assert srv.server.counters.policy_closed == 1
    codes = [m["code"] for m in got if m["type"] == "error"]
    for c in (p.E_BAD_FRAME, p.E_BAD_MESSAGE, p.E_UNKNOWN_TYPE, p.E_RATE_LIMIT):
        assert c in codes, (c, codes)
    assert code == p.CLOSE_POLICY
    assert code2 == 1009  # message too big: refused by the websocket layer


# ---------------------------------------------------------------------------- slow consumer


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_slow_consumer_is_conflated_bounded_and_closed() -> None:
    src = ScriptedSource(products=5, months=40, ticks_per_step=0, curve_every=1)

    async def stalled(url: str, release: threading.Event) -> int | None:
        async with connect(url, compression=None, proxy=None, max_queue=1) as ws:
            transport = ws.transport
            await ws.send(json.dumps({"type": "hello", "protocol": 1}))
            await ws.send(json.dumps({"type": "subscribe", "patterns": ["*"]}))
            await asyncio.sleep(0.3)
            transport.pause_reading()  # stop reading: the server's send blocks
            while not release.is_set():
                await asyncio.sleep(0.05)
            transport.resume_reading()
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code

    with running_server(src, slow_consumer_timeout=3.0, step_seconds=0.02) as srv:
        state = MarketState()
        with running_client(srv.url, state) as good:
            wait_for(lambda: _fresh(state, src))
            release = threading.Event()
            result: list[int | None] = []
            t = threading.Thread(
                target=lambda: result.append(asyncio.run(stalled(srv.url, release))), daemon=True
            )
            t.start()
            wait_for(lambda: srv.server.counters.connections == 2)
            time.sleep(0.5)
            base = _rss_mb()
            peak = base
            biggest = 0
            before = good.msgs_applied
            deadline = time.monotonic() + 60
            # keep the market bursting until the server gives up on the stalled consumer
            while srv.server.counters.slow_closed == 0 or src.ticks_emitted < 100_000:
                assert time.monotonic() < deadline, "stalled consumer never closed"
                src.burst(5_000)
                time.sleep(0.05)
                peak = max(peak, _rss_mb())
                biggest = max(biggest, *srv.call(srv.server.buffer_sizes), 0)
            assert peak - base < 50, (base, peak)
            # conflation: never more than one entry per instrument (+ curves, control)
            assert 0 < biggest <= len(src.ids) + 2 * len(src.products) + 10, biggest
            assert srv.server.counters.conflated > 50_000
            wait_for(lambda: good.msgs_applied > before + 1000)
            assert good.gaps == 0
            src.paused = True
            wait_for(lambda: _synced(srv, good, state))
            release.set()
            t.join(20)
    assert result and result[0] is not None and result[0] != 1000


# ---------------------------------------------------------------------------- CLI


def _reap(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None and not f.closed:
            f.close()


@pytest.mark.parametrize("mode", ["simulate", "replay"])
def test_serve_cli_prints_url_and_exits_on_sigterm(mode: str) -> None:
    module = "app.feed.simulator" if mode == "simulate" else "app.feed.replay"
    try:
        __import__(module)
    except Exception as exc:  # pragma: no cover - depends on another worker's module
        pytest.skip(f"{module} not importable yet: {exc}")
    env = {**os.environ, "QE_TEST_TOKEN": "abc"}
    cmd = [sys.executable, "-m", "app.feed.serve", "--port", "0", "--mode", mode]
    proc = subprocess.Popen(
        [*cmd, "--token-env", "QE_TEST_TOKEN", "--print-url"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("LISTENING ws://127.0.0.1:"), line
        url = line.split()[1]
        state = MarketState()
        with running_client(url, state, token="abc") as _client:
            wait_for(lambda: state.is_fresh() and state.instruments(), timeout=30)
            assert state.status().mode == mode
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stdout.read() == ""  # exactly one line on stdout
    finally:
        _reap(proc)


def test_serve_cli_exits_on_stdin_eof_and_rejects_empty_token() -> None:
    env = {**os.environ, "QE_TEST_TOKEN": ""}
    base = [sys.executable, "-m", "app.feed.serve", "--port", "0", "--mode", "replay"]
    bad = subprocess.run(
        [*base, "--token-env", "QE_TEST_TOKEN"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "QE_TEST_TOKEN" in bad.stderr and bad.stdout == ""
    proc = subprocess.Popen(
        [*base, "--exit-on-stdin-eof"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("LISTENING ws://")
        proc.stdin.close()
        assert proc.wait(20) == 0
    finally:
        _reap(proc)


# ---------------------------------------------------------------------------- conflation unit


def test_conflation_keeps_latest_values_settle_order_and_merges_curve_blocks() -> None:
    from app.feed.protocol import CurveUpdate, Tick
    from app.feed.server import _Conn
    from app.feed.source import Batch

    src = ScriptedSource(products=1, months=12)
    server = FeedServer(src)
    server._apply(src.start(1))
    conn = _Conn(ws=None, session="unit")  # type: ignore[arg-type]
    conn.authed = True
    conn.subs = set(src.ids)
    conn.streams = {"TSTA": set(src.ids)}
    server._conns.add(conn)
    a, b = "TSTA:2030-01", "TSTA:2030-02"
    server._apply(
        Batch(
            [
                Tick(a, 0.9, 1.1, 1.0, 1.0, 10),
                Tick(b, 4.9, 5.1, 5.0, 1.0, 10),
                Tick(a, 1.9, 2.1, 2.0, 1.0, 11, "settle"),
                Tick(a, 2.9, 3.1, 3.0, 1.0, 12),
                Tick(b, 5.9, 6.1, 6.0, 1.0, 12),
            ],
            [
                CurveUpdate("TSTA", "2030-02", [70.0, 71.0], 13, full=False),
                CurveUpdate("TSTA", "2030-06", [75.0], 14, full=False),
            ],
        )
    )
    assert list(conn.buf) == [b, "S|" + a, a, "C|TSTA"]
    assert server.counters.conflated >= 3
    msgs = server._build(conn, server._take(conn), text=False)
    assert [(m["type"], m.get("instrument"), m["seq"]) for m in msgs] == [
        ("tick", b, 1),
        ("tick", a, 2),
        ("tick", a, 3),
        ("curve", None, 4),
    ]
    assert msgs[0]["last"] == 6.0 and msgs[1]["kind"] == "settle" and msgs[2]["last"] == 3.0
    curve = msgs[3]
    assert curve["full"] is False and curve["start"] == "2030-02" and curve["ts"] == 14
    assert curve["prices"] == [70.0, 71.0, 60.3, 60.4, 75.0]
    # the text form the sender really writes is the same JSON
    server._apply(Batch([Tick(a, 7.0, 7.2, 7.1, 2.0, 20)]))
    (text,) = server._build(conn, server._take(conn), text=True)
    assert json.loads(text) == {
        "type": "tick",
        "stream": "TSTA",
        "seq": 5,
        "instrument": a,
        "bid": 7.0,
        "ask": 7.2,
        "last": 7.1,
        "size": 2.0,
        "ts": 20,
        "kind": "trade",
    }
    # and a client applying them ends on the latest values, with the settle as reference
    state = MarketState()
    state.apply_snapshot(p.parse_server_message(server._snapshot(conn, "TSTA") | {"seq": 1}))  # type: ignore[arg-type]
    q = state.quote(a)
    assert q is not None and q.last == 7.1 and q.settle == 2.0
    lc = state.live_curve("TSTA")
    assert lc is not None and list(lc.prices[:6]) == [60.0, 70.0, 71.0, 60.3, 60.4, 75.0]


def test_client_survives_a_hostile_server() -> None:
    """Garbage, wrong types and huge numbers from a server are counted, never fatal."""
    from websockets.asyncio.server import ServerConnection, serve

    ready = threading.Event()
    port: list[int] = []
    done = threading.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # hello
        await ws.send(json.dumps([{"type": "welcome", "protocol": 1, "session": "x",
                                   "mode": "evil", "heartbeat": 1.0, "server_time": 1}]))  # fmt: skip
        await ws.recv()  # subscribe
        snap = {"type": "snapshot", "stream": "EV", "seq": 1, "curve": None, "settles": {},
                "quotes": [{"instrument": "EV:1", "bid": 1.0, "ask": 2.0, "last": 1.5,
                            "size": 1.0, "ts": 5, "kind": "trade"}]}  # fmt: skip
        tick = {"type": "tick", "stream": "EV", "seq": 2, "instrument": "EV:1", "bid": 3.0,
                "ask": 4.0, "last": 3.5, "size": 1.0, "ts": 6, "kind": "trade"}  # fmt: skip
        frames: list[str | bytes] = [
            json.dumps([snap]),
            "not json",
            b"\xff\x00",
            "[1, 2]",
            '[{"type":"tick","stream":"EV","seq":2,"instrument":"EV:1","bid":NaN,"ts":1}]',
            json.dumps([{**tick, "bid": 10**400}]),
            json.dumps([{**tick, "seq": "2"}]),
            json.dumps([{"type": "snapshot", "stream": "EV", "seq": 9, "settles": {"a": 10**400}}]),
            json.dumps([{"type": "who-knows"}]),
            json.dumps([tick]),
        ]
        for frame in frames:
            await ws.send(frame)
        done.wait(20)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
            port.append(next(iter(srv.sockets)).getsockname()[1])
            ready.set()
            while not done.is_set():
                await asyncio.sleep(0.05)

    t = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    t.start()
    ready.wait(10)
    state = MarketState()
    try:
        with running_client(f"ws://127.0.0.1:{port[0]}", state) as client:
            wait_for(lambda: (q := state.quote("EV:1")) is not None and q.last == 3.5)
            assert client.bad_messages >= 7 and client.gaps == 0
            assert state.status().state == CONNECTED and state.status().mode == "evil"
    finally:
        done.set()
        t.join(10)


def test_client_stop_is_prompt_even_with_a_stalled_server() -> None:
    src = ScriptedSource(products=1, months=4)
    with running_server(src) as srv:
        state = MarketState()
        client = FeedClient(srv.url, state)
        client.start()
        try:
            wait_for(lambda: state.is_fresh())
            srv.call(lambda: srv.server.stall_connections())
            t0 = time.monotonic()
            client.stop(timeout=5.0)
            assert time.monotonic() - t0 < 3.0
            assert client._thread is not None and not client._thread.is_alive()
            assert state.status().state == DISCONNECTED
            assert all(q.stale for q in state.quotes().values())
        finally:
            client.stop()


def test_simulator_vol_surfaces_reach_the_client_and_heal_after_a_loss() -> None:
    """The simulator's implied-vol smiles travel as `vols` messages (sequenced like the rest of
    the product's stream) and inside snapshots: a lost one is a gap, healed by resync."""
    import datetime as dt

    from app.feed.simulator import SimulatorSource

    dropped: list[int] = []

    def hook(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for m in batch:
            if m.get("type") == "vols" and m.get("product") == "CR-WTI" and not dropped:
                dropped.append(m["seq"])
                continue
            out.append(m)
        return out

    src = SimulatorSource(dt.date(2026, 11, 24), seed=7, speed=2.0)  # a day end every 0.5 s
    with running_server(src, fault_hook=hook) as srv:
        state = MarketState()
        with running_client(srv.url, state, patterns=["CR-WTI:*", "PWR-DE-BASE:*"]) as client:
            wait_for(lambda: state.vol_surface("PWR-DE-BASE") is not None, timeout=30)
            assert state.vol_surface("NG-HH") is None  # not subscribed
            wait_for(lambda: dropped and client.gaps >= 1, timeout=30)

            def same(code: str) -> bool:
                mine = state.vol_surface(code)
                theirs = srv.call(lambda: srv.server._vols.get(code))
                return mine is not None and theirs is not None and mine.smiles == theirs.smiles

            wait_for(lambda: same("CR-WTI") and same("PWR-DE-BASE"), timeout=30)
            got = state.vol_surface("PWR-DE-BASE")
            assert got is not None and "model-implied" in got.model and len(got.smiles) == 12
