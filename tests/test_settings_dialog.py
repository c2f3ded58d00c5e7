"""The Settings dialog's Desk database page and the Central DB status-bar label."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu

from app.services.events import SYNC_STATUS
from app.settings import Settings
from app.sync.connection import KEYRING_SERVICE, CentralConfig
from app.sync.status import SyncStatus
from app.views.jobs import JobRunner
from app.views.settings_dialog import SettingsDialog, describe_sync_status
from tests.gui_helpers import close_window, open_window
from tests.memory_keyring import MemoryKeyring, use_keyring


@pytest.fixture(autouse=True)
def _test_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("QE_NO_KEYRING", raising=False)
    monkeypatch.setenv("QE_CENTRAL_URL", "")  # restored after the test even if main() sets it
    with use_keyring(fail.Keyring()):
        yield


@pytest.fixture
def dialog(qtbot: Any, tmp_path: Path) -> Iterator[SettingsDialog]:
    runner = JobRunner()
    dlg = SettingsDialog(Settings.load(tmp_path), runner)
    qtbot.addWidget(dlg)
    dlg.show()
    yield dlg
    runner.shutdown()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_prefilled_from_saved_settings(qtbot: Any, tmp_path: Path) -> None:
    CentralConfig("db.desk", "quanta", "alice", port=6000).save(tmp_path)
    runner = JobRunner()
    dlg = SettingsDialog(Settings.load(tmp_path), runner)
    qtbot.addWidget(dlg)
    assert dlg.tabs.tabText(0) == "Desk database"
    page = dlg.desk
    assert (page.host.text(), page.port.value(), page.database.text(), page.user.text()) == (
        "db.desk", 6000, "quanta", "alice")  # fmt: skip
    assert page.password.text() == ""
    runner.shutdown()


def test_bad_fields_show_a_visible_error(dialog: SettingsDialog, qtbot: Any) -> None:
    qtbot.keyClicks(dialog.desk.host, "db.desk")
    qtbot.mouseClick(dialog.desk.test_button, Qt.MouseButton.LeftButton)
    assert dialog.desk.error.isVisible() and "database name is empty" in dialog.desk.error.text()
    dialog.save_button.click()
    assert dialog.isVisible()
    assert not (Path(dialog.settings.data_dir) / "central.json").exists()


def test_test_connection_runs_off_thread_and_shows_category(
    dialog: SettingsDialog, qtbot: Any
) -> None:
    qtbot.keyClicks(dialog.desk.host, "127.0.0.1")
    dialog.desk.port.setValue(_closed_port())
    qtbot.keyClicks(dialog.desk.database, "quanta")
    qtbot.keyClicks(dialog.desk.user, "alice")
    qtbot.keyClicks(dialog.desk.password, "pw")
    with qtbot.waitSignal(dialog.sig_tested, timeout=15_000) as blocker:
        qtbot.mouseClick(dialog.desk.test_button, Qt.MouseButton.LeftButton)
        assert not dialog.desk.test_button.isEnabled()  # running in the background
        assert dialog.desk.result.text().startswith("Testing quanta at 127.0.0.1")
    report = blocker.args[0]
    assert report.category == "unreachable"
    assert "Failed: unreachable" in dialog.desk.result.text()
    assert "Cannot reach the desk database" in dialog.desk.result.text()
    assert dialog.desk.test_button.isEnabled()


def test_save_stores_password_in_keyring_only(
    dialog: SettingsDialog, qtbot: Any, tmp_path: Path
) -> None:
    qtbot.keyClicks(dialog.desk.host, "db.desk")
    qtbot.keyClicks(dialog.desk.database, "quanta")
    qtbot.keyClicks(dialog.desk.user, "alice")
    qtbot.keyClicks(dialog.desk.password, "Pa55-word")
    with use_keyring(MemoryKeyring()) as kr:
        with qtbot.waitSignal(dialog.sig_saved, timeout=10_000) as saved:
            dialog.save_button.click()
        qtbot.waitUntil(lambda: not dialog.isVisible())
    assert saved.args[0] == CentralConfig("db.desk", "quanta", "alice")
    assert kr.secrets == {(KEYRING_SERVICE, "alice@db.desk:5432/quanta"): "Pa55-word"}
    assert b"Pa55-word" not in (tmp_path / "central.json").read_bytes()
    assert Settings.load(tmp_path).central_url == "postgresql://alice@db.desk:5432/quanta"


def test_describe_sync_status() -> None:
    when = dt.datetime(2026, 11, 25, 10, 41, 2, tzinfo=dt.UTC)
    text, tip, css = describe_sync_status(SyncStatus(
        state="online", pending=3, last_sync=when, skew_s=-2.5, message="all good"))  # fmt: skip
    assert text.startswith("Central DB: online · 3 pending · synced ")
    assert (
        "all good" in tip and "Clock skew: -2.5 s" in tip and "Pending outgoing changes: 3" in tip
    )
    assert "Last successful sync: 2026-11-25" in tip and css == ""
    _t, tip2, css2 = describe_sync_status(SyncStatus(state="incompatible", message="newer"))
    assert "never" in tip2 and "b3261e" in css2


def test_main_window_status_and_settings_menu(qtbot: Any, tmp_path: Path) -> None:
    win = open_window(qtbot, tmp_path / "data", seed=False)
    try:
        assert win.central_status.text() == "Central DB: not configured"
        assert "Settings" in win.central_status.toolTip()
        file_menu = win.menuBar().actions()[0].menu()
        assert isinstance(file_menu, QMenu) and win.act_settings in file_menu.actions()
        when = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
        win.ctx.bus.publish(SYNC_STATUS, status=SyncStatus(
            state="online", pending=2, last_sync=when, skew_s=1.25, message="server db1"))  # fmt: skip
        qtbot.waitUntil(lambda: win.central_status.text().startswith("Central DB: online"))
        assert "2 pending" in win.central_status.text()
        tip = win.central_status.toolTip()
        assert "server db1" in tip and "+1.2 s" in tip and "Last successful sync" in tip
        win.act_settings.trigger()  # File > Settings…
        dlg = win.findChild(SettingsDialog)
        assert dlg is not None and dlg.isVisible()
        dlg.reject()
    finally:
        close_window(win)


def test_main_window_with_configured_url_starts_offline(qtbot: Any, tmp_path: Path) -> None:
    CentralConfig("db.desk", "quanta", "alice").save(tmp_path / "data")
    win = open_window(qtbot, tmp_path / "data", seed=False)
    try:
        assert win.central_status.text() == "Central DB: offline"
        assert "postgresql://alice@db.desk:5432/quanta" in win.central_status.toolTip()
    finally:
        close_window(win)
