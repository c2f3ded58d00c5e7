"""Command line: ``quantaenergi`` / ``python -m app``.

``quantaenergi [--data-dir DIR] [--screenshot PNG] [--reseed-demo | --clear-demo]`` starts the
workstation. Headless subcommands (report, var, feed server ...) are added here by their modules.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app import __version__

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
    return p


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not has_display():
        if args.screenshot is None:
            print(NO_DISPLAY, file=sys.stderr)
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from app.views.application import run_gui

    action = "reseed" if args.reseed_demo else "clear" if args.clear_demo else None
    return run_gui(args.data_dir, args.screenshot, action, seed_demo_if_empty=not args.clear_demo)


if __name__ == "__main__":
    sys.exit(main())
