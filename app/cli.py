"""Command line: ``quantaenergi`` / ``python -m app``.

``quantaenergi [--data-dir DIR] [--screenshot PNG] [--reseed-demo | --clear-demo]
[--feed URL | --no-feed] [--feed-mode simulate|replay] [--feed-speed X]`` starts the workstation.

Headless subcommands:

* ``quantaenergi feed serve [...]`` runs the price-feed server (see ``feed serve --help``);
* ``quantaenergi feed set-token URL`` stores the token of a remote feed in the OS keyring.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app import __version__
from app.settings import FeedOptions

NO_DISPLAY = (
    "No display found (DISPLAY/WAYLAND_DISPLAY unset). Run under a desktop, under Xvfb "
    "(xvfb-run make run), or headless: QT_QPA_PLATFORM=offscreen quantaenergi --screenshot "
    "shot.png"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quantaenergi", description="QuantaEnergi Workstation: energy trading and risk."
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the local store, settings and logs live (default: the platform "
                        "user data dir, or $QE_DATA_DIR)")  # fmt: skip
    p.add_argument("--screenshot", metavar="PNG", type=Path,
                   help="start, wait until the panels are populated, save a PNG of the main "
                        "window and exit (works offscreen)")  # fmt: skip
    demo = p.add_mutually_exclusive_group()
    demo.add_argument(
        "--reseed-demo",
        action="store_true",
        help="replace the demo desk (DEMO books) with a fresh one before starting",
    )
    demo.add_argument("--clear-demo", action="store_true",
                      help="remove the demo desk before starting (and do not seed it again)")  # fmt: skip
    feed = p.add_argument_group("price feed")
    src = feed.add_mutually_exclusive_group()
    src.add_argument("--feed", metavar="URL",
                     help="connect to a remote feed (ws://host:port); its token is read from the "
                          "OS keyring (store it with `quantaenergi feed set-token URL`). "
                          "Default: $QE_FEED_URL, else an embedded feed server on loopback")  # fmt: skip
    src.add_argument("--no-feed", action="store_true",
                     help="start without live prices (recorded settlements are shown, stale)")  # fmt: skip
    feed.add_argument("--feed-mode", choices=("simulate", "replay"), default="simulate",
                      help="what the embedded feed server plays: a simulated market (default) "
                           "or the bundled EIA history (Brent, WTI, Henry Hub)")  # fmt: skip
    feed.add_argument("--feed-speed", metavar="X", type=float,
                      help="embedded feed speed in trading days per second (simulate default "
                           "1/240, replay default 1)")  # fmt: skip
    return p


def feed_main(argv: list[str]) -> int:
    """``quantaenergi feed serve|set-token ...``."""
    if argv and argv[0] == "set-token":
        import getpass

        from app.feed.client import store_token

        if len(argv) != 2:
            print("usage: quantaenergi feed set-token URL", file=sys.stderr)
            return 2
        token = os.environ.get("QE_FEED_TOKEN") or getpass.getpass(f"Token for {argv[1]}: ")
        if not token:
            print("error: empty token", file=sys.stderr)
            return 2
        if not store_token(argv[1], token):
            print("error: no OS keyring is available to store the token", file=sys.stderr)
            return 1
        print(f"Token for {argv[1]} stored in the OS keyring")
        return 0
    if argv and argv[0] == "serve":
        from app.feed.serve import main as serve_main

        return serve_main(argv[1:])
    print("usage: quantaenergi feed {serve,set-token} ...  (quantaenergi feed serve --help)",
          file=sys.stderr)  # fmt: skip
    return 2


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "feed":
        return feed_main(argv[1:])
    args = build_parser().parse_args(argv)
    if not has_display():
        if args.screenshot is None:
            print(NO_DISPLAY, file=sys.stderr)
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from app.views.application import run_gui

    action = "reseed" if args.reseed_demo else "clear" if args.clear_demo else None
    feed = FeedOptions(
        url=args.feed, enabled=not args.no_feed, mode=args.feed_mode, speed=args.feed_speed
    )
    return run_gui(
        args.data_dir, args.screenshot, action, seed_demo_if_empty=not args.clear_demo, feed=feed
    )


if __name__ == "__main__":
    sys.exit(main())
