"""Headless feed server: ``quantaenergi feed serve`` (also ``python -m app.feed.serve``).

Builds a simulator or replay source, serves it over websockets, prints exactly one line
``LISTENING ws://HOST:PORT`` to stdout once listening and serves until SIGINT/SIGTERM (or, with
``--exit-on-stdin-eof``, until its stdin closes, so an embedded server dies with its parent).
The token is read from the environment variable named by ``--token-env``, never from the
command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import date
from typing import Any

from app.feed.server import FeedServer
from app.feed.source import PriceSource

__all__ = ["build_parser", "build_source", "main"]

log = logging.getLogger("app.feed.serve")


def build_parser(prog: str = "quantaenergi feed serve") -> argparse.ArgumentParser:
    """The ``feed serve`` argument parser (app/cli.py may reuse it as a sub-parser)."""
    ap = argparse.ArgumentParser(prog=prog, description="Run the QuantaEnergi price-feed server.")
    add_arguments(ap)
    return ap


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Add the ``feed serve`` options to ``ap``."""
    ap.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: loopback)"
    )
    ap.add_argument("--port", type=int, default=0, help="port (default 0: a free port)")
    ap.add_argument("--mode", choices=("simulate", "replay"), default="simulate")
    ap.add_argument("--speed", type=float, default=None,
                    help="trading days per wall-clock second (simulate default 1/240 = a day "
                         "every 4 minutes; replay default 1)")  # fmt: skip
    ap.add_argument("--token-env", metavar="VAR", default=None,
                    help="name of the environment variable holding the token clients must send")  # fmt: skip
    ap.add_argument("--seed", type=int, default=None, help="simulator random seed")
    ap.add_argument("--replay", metavar="FILE=PRODUCT[@COUNTRY]", action="append", default=[],
                    help="historical series to replay (repeatable; default: the bundled EIA series)")  # fmt: skip
    ap.add_argument("--print-url", action="store_true",
                    help="accepted for compatibility: the LISTENING line is always printed")  # fmt: skip
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="exit when stdin is closed (for a server embedded in another process)")  # fmt: skip
    ap.add_argument("--heartbeat", type=float, default=1.0, help=argparse.SUPPRESS)
    ap.add_argument("--step", type=float, default=0.05, help=argparse.SUPPRESS)


def build_source(args: argparse.Namespace) -> PriceSource:
    """The simulator or replay source the options ask for (imported lazily)."""
    if args.mode == "replay":
        from app.feed.history import parse_mapping_spec
        from app.feed.replay import ReplaySource

        mappings = [parse_mapping_spec(s) for s in args.replay] or None
        kwargs: dict[str, Any] = {"mappings": mappings}
        if args.speed is not None:
            kwargs["speed"] = args.speed
        return ReplaySource(**kwargs)  # type: ignore[no-any-return]
    if args.replay:
        raise ValueError("--replay needs --mode replay")
    from app.feed.simulator import SimulatorSource  # type: ignore[import-not-found,unused-ignore]

    kw: dict[str, Any] = {"as_of": date.today()}
    if args.seed is not None:
        kw["seed"] = args.seed
    if args.speed is not None:
        kw["speed"] = args.speed
    return SimulatorSource(**kw)  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the process exit code (0 on a clean stop, 2 on bad options)."""
    ap = build_parser()
    args = ap.parse_args(list(argv) if argv is not None else None)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    token: str | None = None
    if args.token_env:
        token = os.environ.get(args.token_env, "")
        if not token:
            print(f"error: environment variable {args.token_env} is empty or unset",
                  file=sys.stderr)  # fmt: skip
            return 2
    try:
        source = build_source(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = FeedServer(
        source,
        host=args.host,
        port=args.port,
        token=token,
        step_seconds=args.step,
        heartbeat=args.heartbeat,
    )
    try:
        asyncio.run(_serve(server, exit_on_eof=args.exit_on_stdin_eof))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(server: FeedServer, *, exit_on_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    url = await server.start()
    print(f"LISTENING {url}", flush=True)
    if exit_on_eof:

        def watch_stdin() -> None:
            with contextlib.suppress(Exception):
                while sys.stdin.buffer.read(4096):
                    pass
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-eof", daemon=True).start()
    try:
        await stop.wait()
    finally:
        log.info("feed server stopping")
        await server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
