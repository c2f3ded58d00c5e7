"""``quantaenergi central ...``: set up the desk database and connect a workstation to it.

* ``central init URL`` - as a DBA/superuser: create the database if missing, run the migrations
  (tables, roles, row-level security, write functions) and add the standard products.
* ``central set-password URL [--save]`` - prompt for the password of URL's user and store it in
  the OS keyring (fails closed without one); ``--save`` also makes URL this workstation's desk
  database (``<data-dir>/central.json``).
* ``central test URL`` - connect as the workstation would and print the outcome.
* ``central user add NAME --role ROLE [--book B ...]`` and ``central book add NAME`` - admin
  functions, run as an admin user or superuser (``--url``, default: the configured database).

Passwords are read from the OS keyring or prompted (never taken from the command line).
Exit codes: 0 done, 1 the desk database or the keyring failed (message on stderr), 2 bad input.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable
from typing import Any

from app.cli_parser import OneLineParser
from app.settings import Settings
from app.sync.connection import (
    CentralConfig,
    CentralConfigError,
    CentralError,
    KeyringUnavailable,
    admin_create_user,
    admin_upsert_book,
    connect,
    get_password,
    init_database,
    store_password,
    test_connection,
)

ROLES = ("trader", "risk-manager", "back-office", "compliance", "admin")


def build_parser() -> argparse.ArgumentParser:
    """The ``quantaenergi central`` argument parser."""
    p = OneLineParser(
        prog="quantaenergi central",
        description="Set up the central desk database (PostgreSQL) and connect this workstation.",
        epilog="URL: postgresql://user@host[:port]/database (no password: passwords come from the "
        "OS keyring or a prompt). Exit codes: 0 done, 1 the database or keyring failed, "
        "2 bad input.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    init = sub.add_parser("init", help="create/upgrade the desk database (as DBA/superuser)")
    init.add_argument("url", metavar="URL")
    sp = sub.add_parser("set-password", help="store URL's user password in the OS keyring")
    sp.add_argument("url", metavar="URL")
    sp.add_argument("--save", action="store_true",
                    help="also make URL this workstation's desk database (central.json)")  # fmt: skip
    sp.add_argument("--data-dir", metavar="DIR", help="the workstation data dir (for --save)")
    t = sub.add_parser("test", help="connect to URL as the workstation would")
    t.add_argument("url", metavar="URL")
    user = sub.add_parser("user", help="manage workstation users (admin)")
    usub = user.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    ua = usub.add_parser("add", help="create or update a user (password prompted)")
    ua.add_argument("name", metavar="NAME")
    ua.add_argument("--role", required=True, type=str.lower, choices=ROLES)
    ua.add_argument("--book", metavar="B", action="append", default=[],
                    help="a book the trader may write (repeat for several)")  # fmt: skip
    ua.add_argument("--display", metavar="TEXT", default="", help="display name")
    book = sub.add_parser("book", help="manage books (admin)")
    bsub = book.add_subparsers(dest="action", required=True, parser_class=OneLineParser)
    ba = bsub.add_parser("add", help="create a book (or update its description)")
    ba.add_argument("name", metavar="NAME")
    ba.add_argument("--description", metavar="TEXT", default="")
    for q in (ua, ba):
        q.add_argument("--url", metavar="URL",
                       help="the desk database, as an admin user (default: --central-url, "
                            "$QE_CENTRAL_URL, else this workstation's saved setting)")  # fmt: skip
        q.add_argument("--data-dir", metavar="DIR", help="the workstation data dir")
    return p


def _fail(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _password(config: CentralConfig) -> str | None:
    """The connecting user's password: keyring, else $PGPASSWORD/.pgpass (libpq), else asked."""
    try:
        stored = get_password(config)
    except KeyringUnavailable:
        stored = None
    if stored is not None or os.environ.get("PGPASSWORD"):
        return stored
    return getpass.getpass(f"Password for {config.keyring_key} (Enter for none): ") or None


def _new_password(name: str) -> str:
    first = getpass.getpass(f"Password for the new user {name}: ")
    if not first:
        raise ValueError("the password is empty")
    if getpass.getpass("Repeat the password: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _cmd_init(config: CentralConfig, _args: Any) -> int:
    for line in init_database(config, _password(config)):
        print(line)
    print(f"Desk database {config.url} is ready. Next: `quantaenergi central book add NAME` and "
          "`quantaenergi central user add NAME --role ROLE --book NAME`.")  # fmt: skip
    return 0


def _cmd_set_password(config: CentralConfig, args: Any) -> int:
    password = getpass.getpass(f"Password for {config.keyring_key}: ")
    if not password:
        return _fail("empty password: nothing stored", 2)
    store_password(config, password)
    print(f"Password for {config.keyring_key} stored in the OS keyring")
    if args.save:
        path = config.save(Settings.load(args.data_dir).data_dir)
        print(f"Desk database set to {config.url} ({path})")
    return 0


def _cmd_test(config: CentralConfig, _args: Any) -> int:
    report = test_connection(config, None, _password(config))
    print(str(report))
    return 0 if report.ok else 1


def _cmd_user_add(config: CentralConfig, args: Any) -> int:
    password = _new_password(args.name)
    role = args.role.upper().replace("-", "_")
    with connect(config, password=_password(config), require_user=False, autocommit=True) as conn:
        existed = conn.execute("SELECT 1 FROM app_user WHERE username = %s",
                               (args.name,)).fetchone() is not None  # fmt: skip
        admin_create_user(conn, args.name, role, password, args.book, args.display)
    books = ", ".join(args.book) or "none"
    print(f"User {args.name} ({args.role}) {'updated' if existed else 'created'} in "
          f"{config.where}; books: {books}")  # fmt: skip
    return 0


def _cmd_book_add(config: CentralConfig, args: Any) -> int:
    with connect(config, password=_password(config), require_user=False, autocommit=True) as conn:
        book_id = admin_upsert_book(conn, args.name, args.description)
    print(f"Book {args.name} (id {book_id}) saved in {config.where}")
    return 0


def main(argv: list[str]) -> int:
    """Run ``quantaenergi central`` with ``argv`` (after ``central``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    url = getattr(args, "url", None) or Settings.load(getattr(args, "data_dir", None)).central_url
    if not url:
        return _fail("no desk database configured: pass --url URL (or --central-url, "
                     "QE_CENTRAL_URL)", 2)  # fmt: skip
    try:
        config = CentralConfig.from_url(url)
    except CentralConfigError as exc:
        return _fail(str(exc), 2)
    commands: dict[str, Callable[[CentralConfig, Any], int]] = {
        "init": _cmd_init, "set-password": _cmd_set_password, "test": _cmd_test,
        "user": _cmd_user_add, "book": _cmd_book_add,
    }  # fmt: skip
    try:
        return commands[args.command](config, args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    except (CentralError, KeyringUnavailable) as exc:
        return _fail(str(exc), 1)
    except (EOFError, KeyboardInterrupt):
        return _fail("cancelled", 2)
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}", 1)
