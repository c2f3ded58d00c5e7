"""``quantaenergi audit verify|export``: check and export the audit trail without a window.

* ``audit verify [--data-dir DIR]`` verifies the local store's hash chain;
  ``audit verify --central URL [--user NAME] [--data-dir DIR]`` verifies the central desk
  database's chain as ``NAME`` (a compliance or admin user; password from the OS keyring, else
  asked for), also against the chain heads the workstation in ``DIR`` remembers, so a
  truncated tail is caught. Prints ``OK: N records, chain head <seq> <hash>`` (exit 0) or
  ``BROKEN at record N: reason`` (exit 1); exit 2 for bad input or an unreachable database.
* ``audit export --out FILE [filters]`` writes the local trail as CSV or Excel.

The local store is read with the rights of whoever can open its file (the workstation's owner).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli_parser import OneLineParser

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="quantaenergi audit",
                description="Verify or export the tamper-evident audit trail.")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    v = sub.add_parser("verify", help="verify the hash chain (local store, or --central)",
                       epilog="Exit codes: 0 chain intact, 1 chain broken, 2 bad input or the "
                              "database could not be read.")  # fmt: skip
    v.add_argument("--data-dir", metavar="DIR",
                   help="the workstation's data dir (default: platform user data dir or "
                        "$QE_DATA_DIR)")  # fmt: skip
    v.add_argument("--central", metavar="URL",
                   help="verify the central desk database postgresql://user@host:port/db "
                        "instead (password from the OS keyring, else prompted)")  # fmt: skip
    v.add_argument("--user", metavar="NAME",
                   help="connect to the central database as NAME (default: the URL's user)")  # fmt: skip
    e = sub.add_parser("export", help="export the local audit trail to CSV or Excel")
    e.add_argument("--out", metavar="FILE", required=True, type=Path,
                   help="the file to write: .csv or .xlsx")  # fmt: skip
    e.add_argument("--data-dir", metavar="DIR", help="the workstation's data dir")
    e.add_argument("--entity", help="only this entity (trade, limit, user, settings...)")
    e.add_argument("--entity-id", metavar="ID", help="only this entity id (e.g. a trade UUID)")
    e.add_argument("--user", metavar="NAME", help="only records written by NAME")
    e.add_argument("--action", help="only this action (capture, amend, cancel, update...)")
    e.add_argument("--from", dest="since", metavar="YYYY-MM-DD", help="from this UTC day on")
    e.add_argument("--to", dest="until", metavar="YYYY-MM-DD", help="up to this UTC day")
    e.add_argument("--text", help="records containing this text (case-insensitive)")
    return p


def _open_store(data_dir: str | None) -> Any:
    from app.models.store import Store
    from app.settings import Settings

    path = Settings.load(data_dir).store_path
    if not path.is_file():
        raise FileNotFoundError(f"no local store at {path} (wrong --data-dir?)")
    return Store.open_file(path)


def _local_heads(data_dir: str | None) -> list[tuple[int, str]]:
    from app.models import audit
    from app.settings import Settings

    if not Settings.load(data_dir).store_path.is_file():
        return []
    store = _open_store(data_dir)
    try:
        with store.session() as s:
            return audit.known_heads(s)
    finally:
        store.close()


def _verify_central(args: argparse.Namespace) -> Any:
    import getpass

    from app.models import audit
    from app.sync.connection import CentralConfig, KeyringUnavailable, connect, get_password

    config = CentralConfig.from_url(args.central)
    if args.user:
        config = config.with_user(args.user)
    try:
        password = get_password(config)
    except KeyringUnavailable:
        password = None
    if password is None:
        password = getpass.getpass(f"Password of {config.user} at {config.where}: ")
    heads = _local_heads(args.data_dir)
    conn = connect(config, config.user, password, require_user=False, autocommit=True)
    try:
        return audit.verify_connection(conn, heads)
    finally:
        conn.close()


def _verify(args: argparse.Namespace) -> int:
    from app.models import audit

    if args.central:
        result = _verify_central(args)
    else:
        if args.user:
            print("error: --user needs --central", file=sys.stderr)
            return EXIT_USAGE
        store = _open_store(args.data_dir)
        try:
            result = audit.verify_store(store)
        finally:
            store.close()
    print(result.summary())
    return EXIT_OK if result.ok else EXIT_BROKEN


def _export(args: argparse.Namespace) -> int:
    from app.models.audit import os_user
    from app.services.audit import AuditFilter, AuditService, parse_day
    from app.services.auth import Principal

    flt = AuditFilter(entity=args.entity, entity_id=args.entity_id, user=args.user,
                      action=args.action, since=parse_day(args.since or "", "--from"),
                      until=parse_day(args.until or "", "--to"), text=args.text)  # fmt: skip
    store = _open_store(args.data_dir)
    try:
        n = AuditService(store, Principal.local_owner(os_user())).export(args.out, flt)
    finally:
        store.close()
    print(f"Wrote {n} audit records to {args.out}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Run ``quantaenergi audit ...``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from app.models.store import StoreError
    from app.services.auth import PermissionDenied

    errors: tuple[type[BaseException], ...] = (StoreError, ValueError, OSError, PermissionError,
                                               PermissionDenied)  # fmt: skip
    try:
        from app.sync.connection import CentralError

        errors += (CentralError,)
    except ImportError:  # pragma: no cover - the sync package is part of the application
        pass
    try:
        return _verify(args) if args.command == "verify" else _export(args)
    except errors as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_USAGE
