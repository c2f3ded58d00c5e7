"""Helpers to start the workstation inside a test, as a user would."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.settings import FeedOptions, Settings
from app.views.application import build_context, close_context
from app.views.main_window import AppContext, MainWindow


def open_window(
    qtbot: QtBot, data_dir: Path, seed: bool = True, feed: FeedOptions | None = None
) -> MainWindow:
    """Start a main window on ``data_dir`` and wait until the blotter is loaded.

    ``feed=None`` starts without a price feed (recorded settlements only); pass
    ``FeedOptions()`` for the embedded feed server, as ``make run`` does."""
    settings = Settings.load(data_dir)
    settings.ensure_dirs()
    ctx = build_context(settings, seed_demo_if_empty=seed, feed=feed)
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.sig_ready, timeout=60_000):
        win.show()
    return win


def close_window(win: MainWindow) -> None:
    ctx: AppContext = win.ctx
    win.close()
    close_context(ctx)
