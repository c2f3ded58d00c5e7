"""Command line: ``quantaenergi`` / ``python -m app``.

``quantaenergi [--data-dir DIR] [--screenshot PNG] [--reseed-demo | --clear-demo]
[--feed URL | --no-feed] [--feed-mode simulate|replay] [--feed-speed X]`` starts the workstation.

Headless subcommands:

* ``quantaenergi feed serve [...]`` runs the price-feed server (see ``feed serve --help``);
* ``quantaenergi feed set-token URL`` stores the token of a remote feed in the OS keyring;
* ``quantaenergi central init|set-password|test|user add|book add ...`` sets up the central desk
  database and connects this workstation to it (see ``central --help`` and docs/desk-database.md);
* ``quantaenergi audit verify [--central URL --user NAME]`` / ``audit export --out FILE``
  check and export the hash-chained audit trail (see app/audit_cli.py);
* ``quantaenergi risk report --out FILE [...]`` writes a VaR/ES report (HTML, xlsx or PDF) of the
  local store without a window or a feed (see ``risk report --help``).
* ``quantaenergi backup OUT.db [--data-dir DIR] [--overwrite]`` copies the local store with
  SQLite's online backup API, also while the workstation runs (see app/store_cli.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from app import __version__
from app.cli_parser import OneLineParser
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
    p.add_argument("--central-url", metavar="URL",
                   help="the desk database, postgresql://user@host:port/db (password from the OS "
                        "keyring); default $QE_CENTRAL_URL, else the one saved in Settings")  # fmt: skip
    risk = p.add_argument_group("risk")
    risk.add_argument("--dask-scheduler", metavar="ADDRESS",
                      help="run Monte Carlo VaR on this Dask distributed scheduler "
                           "(tcp://host:8786); default $QE_DASK_SCHEDULER, else local threads")  # fmt: skip
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


def build_risk_parser() -> argparse.ArgumentParser:
    from app.reports.headless import METHOD_ALIASES

    aliases = ", ".join(f"{k} = {v}" for k, v in METHOD_ALIASES.items())
    p = OneLineParser(
        prog="quantaenergi risk report",
        description="Write the VaR/ES report of the local store as HTML, Excel or PDF (by the "
        "extension of --out), without a window or a live feed: positions are marked to the last "
        "recorded settlement curves, VaR/ES computed on the bundled EIA price history.",
        epilog="Exit codes: 0 written, 2 bad input (unknown book or method, bad extension, "
        "unwritable path, missing or empty store, no curves).",
    )
    p.add_argument("--out", metavar="FILE", required=True, type=Path,
                   help="the report to write: .html, .xlsx or .pdf")  # fmt: skip
    p.add_argument("--book", metavar="B", action="append", default=[],
                   help="only this book (repeat for several; default: all books)")  # fmt: skip
    p.add_argument("--method", default="hist",
                   help=f"VaR method (default hist): {aliases}; full names are accepted too")  # fmt: skip
    p.add_argument("--conf", metavar="C", type=float, default=0.99,
                   help="confidence level in [0.5, 1) (default 0.99)")  # fmt: skip
    p.add_argument("--horizon", metavar="DAYS", type=int, default=1,
                   help="horizon in business days, 1..10 (default 1)")  # fmt: skip
    p.add_argument("--group-by", choices=("product", "book", "trade"), default="product",
                   help="ES contributions by product (default), book or trade")  # fmt: skip
    p.add_argument("--as-of", metavar="YYYY-MM-DD", type=dt.date.fromisoformat,
                   help="value the book on this day with the settlement curves dated on or "
                        "before it, history window ending there (default: today, latest curves)")  # fmt: skip
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the local store lives (default: as the workstation: the platform "
                        "user data dir, or $QE_DATA_DIR)")  # fmt: skip
    return p


def risk_main(argv: list[str]) -> int:
    """``quantaenergi risk report ...``."""
    if not argv or argv[0] != "report":
        if argv and argv[0] in ("-h", "--help"):
            print("usage: quantaenergi risk report --out FILE [...]  "
                  "(quantaenergi risk report --help)")  # fmt: skip
            return 0
        print("usage: quantaenergi risk report --out FILE [...]  (quantaenergi risk report --help)",
              file=sys.stderr)  # fmt: skip
        return 2
    args = build_risk_parser().parse_args(argv[1:])
    from app.models.store import StoreError
    from app.reports.headless import RiskReportRequest, run_risk_report
    from app.reports.risk import ReportError

    req = RiskReportRequest(
        out=args.out,
        books=tuple(args.book),
        method=args.method,
        confidence=args.conf,
        horizon_days=args.horizon,
        group_by=args.group_by,
        as_of=args.as_of,
        data_dir=args.data_dir,
    )
    try:
        path, result = run_risk_report(req)
    except (ReportError, StoreError, ValueError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    totals = "; ".join(f"{c.currency} VaR {c.var:,.0f} ES {c.es:,.0f}" for c in result.currencies)
    print(f"Wrote {path} ({totals})")
    return 0


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _take_central_url(argv: list[str]) -> tuple[list[str], str | None]:
    """Remove ``--central-url URL`` (or ``=URL``) placed before any subcommand."""
    rest, url, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--central-url" and i + 1 < len(argv):
            url, i = argv[i + 1], i + 2
            continue
        if a.startswith("--central-url="):
            url, i = a.split("=", 1)[1], i + 1
            continue
        if not a.startswith("-"):  # a subcommand: its own options follow
            rest += argv[i:]
            break
        rest.append(a)
        i += 1
    return rest, url


def _use_central_url(url: str) -> bool:
    """Validate ``--central-url`` and export it as QE_CENTRAL_URL (read by
    ``Settings.central_url``); False (message printed) when malformed."""
    from app.sync.connection import CentralConfig, CentralConfigError

    try:
        CentralConfig.from_url(url)
    except CentralConfigError as exc:
        print(f"error: --central-url: {exc}", file=sys.stderr)
        return False
    os.environ["QE_CENTRAL_URL"] = url
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv, central_url = _take_central_url(argv)
    if central_url is not None and not _use_central_url(central_url):
        return 2
    if argv and argv[0] == "central":
        from app.sync.central_cli import main as central_main

        return central_main(argv[1:])
    if argv and argv[0] == "feed":
        return feed_main(argv[1:])
    if argv and argv[0] == "risk":
        return risk_main(argv[1:])
    if argv and argv[0] == "backup":
        from app.store_cli import backup_main

        return backup_main(argv[1:])
    if argv and argv[0] == "audit":
        from app.audit_cli import main as audit_main

        return audit_main(argv[1:])
    args = build_parser().parse_args(argv)
    if not has_display():
        if args.screenshot is None:
            print(NO_DISPLAY, file=sys.stderr)
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if args.central_url and not _use_central_url(args.central_url):
        return 2
    if args.dask_scheduler:
        os.environ["QE_DASK_SCHEDULER"] = args.dask_scheduler  # read by Settings.dask_scheduler
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
