"""``quantaenergi backup OUT.db [--data-dir DIR] [--overwrite]``: copy the local store.

The copy is made with SQLite's online backup API (:func:`app.models.store.backup_file`), so it
is consistent even while a running workstation keeps writing. The store is read as it is: it
is not opened through the application, hence never migrated by a backup. Prints
``Backed up <store> to <OUT> (<size>)`` and exits 0; bad input (missing store, existing
output, unwritable folder, full disk) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli_parser import OneLineParser

EXIT_OK, EXIT_USAGE = 0, 2


def build_backup_parser() -> argparse.ArgumentParser:
    """The ``quantaenergi backup`` argument parser."""
    p = OneLineParser(
        prog="quantaenergi backup",
        description="Copy the local store to OUT with SQLite's online backup API. Safe while the "
        "workstation is running; the copy is checked with PRAGMA integrity_check.",
        epilog="Exit codes: 0 written, 2 bad input (no store, OUT exists, folder missing, "
        "disk full).",
    )
    p.add_argument("out", metavar="OUT.db", type=Path, help="the backup file to create")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the local store lives (default: as the workstation: the platform "
                        "user data dir, or $QE_DATA_DIR)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it already exists")  # fmt: skip
    return p


def _size(n: int) -> str:
    """``n`` bytes, human-readable."""
    if n < 1024:
        return f"{n:,} bytes"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:,.1f} {unit} ({n:,} bytes)"


def backup_main(argv: list[str]) -> int:
    """Run ``quantaenergi backup``; returns the exit code."""
    args = build_backup_parser().parse_args(argv)
    from app.models.store import StoreError, backup_file
    from app.settings import Settings

    src = Settings.load(args.data_dir).store_path
    try:
        out = backup_file(src, args.out, overwrite=args.overwrite)
    except StoreError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
    print(f"Backed up {src} to {out} ({_size(out.stat().st_size)})")
    return EXIT_OK
