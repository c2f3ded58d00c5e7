"""Helpers to start the workstation inside a test, as a user would."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from app.settings import Settings
from app.views.application import build_context, close_context
from app.views.main_window import AppContext, MainWindow


def open_window(qtbot: QtBot, data_dir: Path, seed: bool = True) -> MainWindow:
    """Start a main window on ``data_dir`` and wait until the blotter is loaded."""
    settings = Settings.load(data_dir)
    settings.ensure_dirs()
    ctx = build_context(settings, seed_demo_if_empty=seed)
    win = MainWindow(ctx)
    qtbot.addWidget(win)
    with qtbot.waitSignal(win.sig_ready, timeout=60_000):
        win.show()
    return win


def close_window(win: MainWindow) -> None:
    ctx: AppContext = win.ctx
    win.close()
    close_context(ctx)
