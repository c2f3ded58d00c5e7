"""Helpers for the feed tests: a deterministic price source and server/client plumbing."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.feed.client import FeedClient
from app.feed.instruments import Instrument, parse_instrument
from app.feed.market_state import MarketState
from app.feed.protocol import CurveUpdate, Tick
from app.feed.server import FeedServer, FeedServerThread
from app.feed.source import Batch

CURVE_START = "2030-01"


class ScriptedSource:
    """Deterministic source: ``products`` x ``months`` monthly instruments (``TSTA:2030-01``).

    Each step emits ``ticks_per_step`` trade ticks on instruments picked by a seeded RNG, a
    partial curve block every ``curve_every`` steps, a settle tick every ``settle_every`` steps,
    plus whatever was queued with :meth:`burst`. Set ``paused`` to emit nothing. Attribute
    writes from the test thread are picked up by the next step.
    """

    mode = "simulate"

    def __init__(
        self,
        products: int = 3,
        months: int = 12,
        *,
        ticks_per_step: int = 20,
        curve_every: int = 3,
        settle_every: int = 17,
        seed: int = 7,
    ) -> None:
        self.products = [f"TST{chr(ord('A') + i)}" for i in range(products)]
        self.months = months
        self._instruments: list[Instrument] = [
            parse_instrument(f"{prod}:{2030 + m // 12}-{m % 12 + 1:02d}")
            for prod in self.products
            for m in range(months)
        ]
        self.ids = [i.id for i in self._instruments]
        self.ticks_per_step = ticks_per_step
        self.curve_every = curve_every
        self.settle_every = settle_every
        self.paused = False
        self.rng = random.Random(seed)
        self.steps = 0
        self.ticks_emitted = 0
        self._burst = 0
        self._lock = threading.Lock()
        self._px = {i: 50.0 + k for k, i in enumerate(self.ids)}

    @property
    def finished(self) -> bool:
        return False

    def instruments(self) -> list[Instrument]:
        return list(self._instruments)

    def burst(self, n: int) -> None:
        """Emit ``n`` more ticks in the next step."""
        with self._lock:
            self._burst += n

    def _tick(self, inst: str, now_ns: int, kind: str = "trade") -> Tick:
        px = self._px[inst] = round(self._px[inst] + self.rng.uniform(-0.5, 0.5), 3)
        return Tick(inst, px - 0.05, px + 0.05, px, float(self.rng.randint(1, 50)), now_ns, kind)

    def _curve(self, prod: str, now_ns: int, full: bool = True) -> CurveUpdate:
        if full:
            prices = [60.0 + m * 0.1 for m in range(self.months)]
            return CurveUpdate(prod, CURVE_START, prices, now_ns, True)
        lo = self.rng.randrange(self.months)
        n = self.rng.randint(1, self.months - lo)
        prices = [round(self.rng.uniform(40, 80), 3) for _ in range(n)]
        start = f"{2030 + lo // 12}-{lo % 12 + 1:02d}"
        return CurveUpdate(prod, start, prices, now_ns, False)

    def start(self, now_ns: int) -> Batch:
        ticks = [self._tick(i, now_ns, "settle") for i in self.ids]
        ticks += [self._tick(i, now_ns) for i in self.ids]
        return Batch(ticks, [self._curve(p, now_ns) for p in self.products])

    def advance(self, wall_seconds: float, now_ns: int) -> Batch:
        with self._lock:
            extra, self._burst = self._burst, 0
        if self.paused and not extra:
            return Batch()
        self.steps += 1
        n = (0 if self.paused else self.ticks_per_step) + extra
        ids, rng = self.ids, self.rng
        ticks = [self._tick(ids[rng.randrange(len(ids))], now_ns) for _ in range(n)]
        curves: list[CurveUpdate] = []
        if not self.paused:
            if self.settle_every and self.steps % self.settle_every == 0:
                ticks.append(self._tick(ids[rng.randrange(len(ids))], now_ns, "settle"))
            if self.curve_every and self.steps % self.curve_every == 0:
                prod = self.products[rng.randrange(len(self.products))]
                curves.append(self._curve(prod, now_ns, full=rng.random() < 0.1))
        self.ticks_emitted += len(ticks)
        return Batch(ticks, curves)


class FastSource:
    """Benchmark source: ``rate`` ticks per wall second over ``products`` x ``months``
    instruments, each stamped with the wall clock (ns) at which the step produced it."""

    mode = "simulate"

    def __init__(self, rate: float, products: int = 10, months: int = 100) -> None:
        self.rate = rate
        self.src = ScriptedSource(products, months, ticks_per_step=0, curve_every=0)
        self._carry = 0.0
        self.ticks_emitted = 0
        self.running = False
        self._k = 0

    @property
    def finished(self) -> bool:
        return False

    def instruments(self) -> list[Instrument]:
        return self.src.instruments()

    def start(self, now_ns: int) -> Batch:
        return self.src.start(now_ns)

    def advance(self, wall_seconds: float, now_ns: int) -> Batch:
        if not self.running:
            return Batch()
        want = self.rate * wall_seconds + self._carry
        n = int(want)
        self._carry = want - n
        ids = self.src.ids
        m = len(ids)
        k = self._k
        ticks = []
        for j in range(n):
            inst = ids[(k + j) % m]
            px = 50.0 + ((k + j) % 997) * 0.01
            ticks.append(Tick(inst, px - 0.01, px + 0.01, px, 1.0, now_ns))
        self._k = (k + n) % m
        self.ticks_emitted += n
        return Batch(ticks)


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Poll ``cond`` until it is truthy (returns its value) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {cond}")
        time.sleep(interval)


@contextmanager
def running_server(source: Any, **kwargs: Any) -> Iterator[FeedServerThread]:
    """A started :class:`FeedServerThread` (stopped on exit)."""
    thread = FeedServerThread(FeedServer(source, **kwargs))
    thread.start()
    try:
        yield thread
    finally:
        thread.stop()


@contextmanager
def running_client(
    url: str, state: MarketState | None = None, **kwargs: Any
) -> Iterator[FeedClient]:
    """A started :class:`FeedClient` on ``url`` (stopped on exit)."""
    client = FeedClient(url, state if state is not None else MarketState(), **kwargs)
    client.start()
    try:
        yield client
    finally:
        client.stop()


class StatusRecorder:
    """Records every distinct ``FeedStatus.state`` a MarketState goes through."""

    def __init__(self, state: MarketState) -> None:
        self.states: list[str] = []
        self._state = state
        original = state.update_status

        def spy(**fields: Any) -> None:
            original(**fields)
            s = state.status().state
            if not self.states or self.states[-1] != s:
                self.states.append(s)

        state.update_status = spy  # type: ignore[method-assign]
