"""Logging: a rotating file in the data dir plus hooks so no exception ends the program.

Uncaught exceptions in any thread (``sys.excepthook``, ``threading.excepthook``) are logged with
their traceback to the file; the GUI's Log/Alerts dock shows the message. The app keeps running.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from types import TracebackType

log = logging.getLogger("app")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(threadName)s %(name)s: %(message)s"


def setup_logging(log_dir: Path, level: int = logging.INFO) -> Path:
    """Send app logs to ``log_dir/quantaenergi.log`` (5 x 2 MB rotation); returns the path."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "quantaenergi.log"
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_qe_file", False):
            root.removeHandler(h)
            h.close()
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=2_000_000, backupCount=5, encoding="utf-8"
    )
    handler._qe_file = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(min(root.level or level, level))
    return path


def install_excepthooks() -> None:
    """Log uncaught exceptions of the main and every other thread instead of dying."""

    def main_hook(
        etype: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(etype, KeyboardInterrupt):
            sys.__excepthook__(etype, value, tb)
            return
        log.error("Unexpected error: %s", value, exc_info=(etype, value, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        log.error(
            "Unexpected error in thread %s: %s", name, args.exc_value,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )  # fmt: skip

    sys.excepthook = main_hook
    threading.excepthook = thread_hook
