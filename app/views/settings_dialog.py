"""The Settings dialog (File > Settings...): the "Desk database" page.

Host, port, database and user are saved to ``<data-dir>/central.json``; the password only to
the OS keyring (never a file). "Test connection" and "Save" run on the job runner, never on the
GUI thread (libpq connects and keyring D-Bus calls can take seconds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.settings import Settings
from app.sync.connection import (
    DEFAULT_PORT,
    CentralConfig,
    CentralConfigError,
    ConnectionReport,
    KeyringUnavailable,
    store_password,
    test_connection,
)
from app.views.jobs import JobContext, JobRunner

ERROR_STYLE = "color: #b3261e;"
OK_STYLE = "color: #1b6e20;"


@dataclass(frozen=True)
class _SaveOutcome:
    config: CentralConfig
    error: str = ""  # the keyring refused the password (the settings were saved)


_W = TypeVar("_W", bound=QWidget)


def _named(widget: _W, name: str) -> _W:
    widget.setObjectName(name)
    return widget


class DeskDatabasePage(QWidget):
    """Host, port, database, user, password; "Test connection" with the exact outcome."""

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("desk_database_page")
        form = QFormLayout()
        self.host = _named(QLineEdit(placeholderText="db.desk.example"), "central_host")
        self.port = _named(QSpinBox(minimum=1, maximum=65535), "central_port")
        self.port.setValue(DEFAULT_PORT)
        self.database = _named(QLineEdit(placeholderText="quantaenergi"), "central_database")
        self.user = _named(QLineEdit(placeholderText="your desk user name"), "central_user")
        self.password = _named(QLineEdit(), "central_password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("kept in the OS keyring; empty = unchanged")
        self.password.setToolTip("Saved to the OS keyring only, never to a settings file or log.")
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Database", self.database)
        form.addRow("User", self.user)
        form.addRow("Password", self.password)
        self.test_button = _named(QPushButton("Test connection"), "central_test")
        self.result = _named(QLabel(wordWrap=True), "central_test_result")
        self.error = _named(QLabel(wordWrap=True), "central_error")
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()
        self.note = _named(QLabel(wordWrap=True), "central_override_note")
        override = os.environ.get("QE_CENTRAL_URL")
        self.note.setText(
            f"This run uses {override} (--central-url or QE_CENTRAL_URL); what you save here "
            "applies when that is not set."
            if override
            else "Ask your desk admin for these details; the admin creates your user."
        )
        row = QHBoxLayout()
        row.addWidget(self.test_button)
        row.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.result)
        lay.addWidget(self.error)
        lay.addStretch(1)
        lay.addWidget(self.note)
        try:
            saved = CentralConfig.load(settings.data_dir)
        except CentralConfigError as exc:
            saved = None
            self.show_error(str(exc))
        if saved is None and settings.central_url:
            try:
                saved = CentralConfig.from_url(settings.central_url)
            except CentralConfigError as exc:
                self.show_error(str(exc))
        if saved is not None:
            self.host.setText(saved.host)
            self.port.setValue(saved.port)
            self.database.setText(saved.database)
            self.user.setText(saved.user)

    def config(self) -> CentralConfig:
        """The desk database the fields describe; :class:`CentralConfigError` when not valid."""
        return CentralConfig(
            host=self.host.text().strip(),
            port=self.port.value(),
            database=self.database.text().strip(),
            user=self.user.text().strip(),
        )

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.setVisible(bool(message))

    def show_report(self, report: ConnectionReport) -> None:
        """Show ``report``'s category and message (green when ok, red otherwise)."""
        title = "Connection OK" if report.ok else f"Failed: {report.category}"
        self.result.setText(f"<b>{title}</b><br>{_escape(report.message)}")
        self.result.setStyleSheet(OK_STYLE if report.ok else ERROR_STYLE)
        self.result.setToolTip(report.message)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SettingsDialog(QDialog):
    """Application settings; today one page, "Desk database"."""

    sig_saved = Signal(object)
    """(CentralConfig) the desk database settings were saved (and the password, if typed)."""
    sig_tested = Signal(object)
    """(ConnectionReport) a "Test connection" finished."""

    def __init__(self, settings: Settings, runner: JobRunner, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("settings_dialog")
        self.setWindowTitle("Settings")
        self.settings = settings
        self.runner = runner
        self.tabs = QTabWidget(self)
        self.desk = DeskDatabasePage(settings, self)
        self.tabs.addTab(self.desk, "Desk database")
        self.buttons = QDialogButtonBox(self)
        self.save_button = self.buttons.addButton("Save", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        self.desk.test_button.clicked.connect(self.test_connection)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addWidget(self.buttons)
        self.resize(520, 420)

    def _config_or_error(self) -> CentralConfig | None:
        try:
            config = self.desk.config()
        except CentralConfigError as exc:
            self.desk.show_error(f"Check the desk database fields: {exc}.")
            return None
        self.desk.show_error("")
        return config

    def test_connection(self) -> None:
        """Connect with the fields (typed password, else the keyring's) off the GUI thread."""
        config = self._config_or_error()
        if config is None:
            return
        password = self.desk.password.text() or None
        self.desk.test_button.setEnabled(False)
        self.desk.result.setStyleSheet("")
        self.desk.result.setText(f"Testing {config.where}…")

        def work(_jc: JobContext) -> ConnectionReport:
            return test_connection(config, config.user, password)

        self.runner.submit("Test desk database connection", work, key="settings.central_test",
                           on_result=self._tested, on_error=self._test_failed)  # fmt: skip

    def _tested(self, report: ConnectionReport) -> None:
        self.desk.test_button.setEnabled(True)
        self.desk.show_report(report)
        self.sig_tested.emit(report)

    def _test_failed(self, message: str) -> None:
        self._tested(ConnectionReport(False, "error", message))

    def save(self) -> None:
        """Write central.json and put a typed password in the OS keyring (off the GUI thread).
        Without a usable keyring the password is not stored and the dialog stays open saying
        how to fix it."""
        config = self._config_or_error()
        if config is None:
            return
        password = self.desk.password.text()
        data_dir = self.settings.data_dir
        self.save_button.setEnabled(False)

        def work(_jc: JobContext) -> _SaveOutcome:
            config.save(data_dir)
            if password:
                try:
                    store_password(config, password)
                except KeyringUnavailable as exc:
                    return _SaveOutcome(config, str(exc))
            return _SaveOutcome(config)

        self.runner.submit("Save desk database settings", work, key="settings.central_save",
                           on_result=self._saved, on_error=self._save_failed)  # fmt: skip

    def _saved(self, outcome: Any) -> None:
        self.save_button.setEnabled(True)
        self.sig_saved.emit(outcome.config)
        if outcome.error:
            self.desk.show_error(
                f"Host, port, database and user were saved, but the password was NOT: "
                f"{outcome.error}"
            )
            return
        self.desk.password.clear()
        self.accept()

    def _save_failed(self, message: str) -> None:
        self.save_button.setEnabled(True)
        self.desk.show_error(message)


def initial_sync_status(central_url: str | None) -> Any:
    """What the status bar shows before the sync worker reports: "not configured" without a
    desk database URL, else "offline" until the first connection."""
    from app.sync.status import SyncStatus

    if not central_url:
        return SyncStatus(
            message="No desk database set: File > Settings… > Desk database, or start with "
            "--central-url / QE_CENTRAL_URL. The workstation works locally."
        )
    return SyncStatus(state="offline", message=f"Desk database {central_url}: not connected yet.")


def describe_sync_status(status: Any) -> tuple[str, str, str]:
    """Status-bar (text, tooltip, style sheet) of a :class:`app.sync.status.SyncStatus`."""
    lines = [status.message] if status.message else []
    lines.append(f"Pending outgoing changes: {status.pending:,}")
    if status.last_sync is not None:
        when = status.last_sync.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
        lines.append(f"Last successful sync: {when}")
    elif status.state != "not configured":
        lines.append("Last successful sync: never")
    if status.skew_s is not None:
        lines.append(f"Clock skew: {status.skew_s:+.1f} s (this machine minus the server)")
    if status.conflicts:
        lines.append(f"Open conflicts: {status.conflicts} (see the Conflicts dock)")
    if status.rejected:
        lines.append(f"Rejected changes: {status.rejected}")
    css = {"incompatible": ERROR_STYLE, "offline": "color: #8a5a00;"}.get(status.state, "")
    return status.label, "\n".join(lines), css
