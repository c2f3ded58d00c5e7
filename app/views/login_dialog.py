"""Sign-in dialog: user name and password, checked off the GUI thread.

Shown at start-up when this workstation has users (or a desk database is configured), and by
File > Sign out / switch user. The check itself is :meth:`SignInService.authenticate`: against
the desk database when it is reachable, else against the password cached on this workstation
(the dialog then says the workstation is working offline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from app.services.session import CentralFactory, SignInError, SignInResult, SignInService
from app.views.jobs import JobContext, JobRunner

log = logging.getLogger(__name__)

ERROR_STYLE = "color: #b3261e;"
NOTE_STYLE = "color: #555;"


class LoginDialog(QDialog):
    """Ask for user name and password; ``result_`` holds the :class:`SignInResult` once
    accepted.

    ``central`` is the desk database connector (``None``: not configured, offline sign-in);
    ``reject_text`` names the button that gives up ("Quit" at start-up and on sign-out).
    """

    def __init__(
        self,
        service: SignInService,
        runner: JobRunner,
        central: CentralFactory | None = None,
        *,
        username: str = "",
        reject_text: str = "Quit",
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.service = service
        self.runner = runner
        self.central = central
        self.result_: SignInResult | None = None
        self.sync_connect: Callable[[], Any] | None = None
        self.setObjectName("login_dialog")
        self.setWindowTitle("Sign in - QuantaEnergi Workstation")
        self.setMinimumWidth(420)

        self.username = QLineEdit(username)
        self.username.setObjectName("login_username")
        self.username.setPlaceholderText("user name")
        self.password = QLineEdit()
        self.password.setObjectName("login_password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("password")
        form = QFormLayout()
        form.addRow("&User:", self.username)
        form.addRow("&Password:", self.password)

        where = getattr(central, "where", None)
        self.note = QLabel(
            f"Checked with the desk database ({where}); offline, against the password last "
            "used on this workstation."
            if central is not None
            else "No desk database is configured: working offline, the password is checked "
            "on this workstation."
        )
        self.note.setObjectName("login_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet(NOTE_STYLE)
        self.error = QLabel()
        self.error.setObjectName("login_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet(ERROR_STYLE)
        self.error.hide()

        buttons = QDialogButtonBox()
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setObjectName("login_sign_in")
        self.sign_in_button.setDefault(True)
        buttons.addButton(self.sign_in_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.reject_button = QPushButton(reject_text)
        self.reject_button.setAutoDefault(False)
        buttons.addButton(self.reject_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.sign_in_button.clicked.connect(self.submit)
        self.reject_button.clicked.connect(self.reject)
        self.username.returnPressed.connect(self.password.setFocus)
        self.password.returnPressed.connect(self.submit)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        (self.password if username else self.username).setFocus()

    def _busy(self, busy: bool) -> None:
        for w in (self.username, self.password, self.sign_in_button):
            w.setEnabled(not busy)

    def show_error(self, text: str) -> None:
        """Show why the sign-in failed; the password is cleared for the next attempt."""
        self._busy(False)
        self.error.setText(text)
        self.error.show()
        self.password.clear()
        self.password.setFocus()

    def submit(self) -> None:
        """Check the credentials on the job runner; accept on success."""
        if not self.sign_in_button.isEnabled():
            return
        user, password = self.username.text().strip(), self.password.text()
        if not user or not password:
            self.show_error("Enter your user name and password.")
            return
        self._busy(True)
        self.error.setText("Signing in…")
        self.error.setStyleSheet(NOTE_STYLE)
        self.error.show()
        service, central = self.service, self.central

        def work(_jc: JobContext) -> SignInResult | SignInError:
            try:
                return service.authenticate(user, password, central)
            except SignInError as exc:
                return exc  # shown in the dialog, not as a job failure

        self.runner.submit("Sign in", work, on_result=self._on_result,
                           on_error=self._on_error, key="sign-in")  # fmt: skip

    def _on_result(self, out: SignInResult | SignInError) -> None:
        if isinstance(out, SignInError):
            self.error.setStyleSheet(ERROR_STYLE)
            self.show_error(str(out))
            return
        self.result_ = out
        central, user, password = self.central, out.principal.username, self.password.text()
        # The sync worker's connection factory for this user: the password lives only in this
        # closure (memory), never in a file, a log or the store.
        self.sync_connect = (None if central is None or out.principal.is_local_owner
                             else (lambda: central(user, password)))  # fmt: skip
        log.info("Signed in as %s%s", out.principal.description,
                 "" if out.online else " (offline)")  # fmt: skip
        self.accept()

    def _on_error(self, text: str) -> None:
        self.error.setStyleSheet(ERROR_STYLE)
        self.show_error(text)


class CentralConnector:
    """The sign-in :data:`~app.services.session.CentralFactory` of the desk database at a
    configured URL: connects as the signing-in user with :func:`app.sync.connection.connect`
    (libpq timeouts, schema and workstation-user checks)."""

    def __init__(self, url: str) -> None:
        from app.sync.connection import CentralConfig

        self.config = CentralConfig.from_url(url)

    @property
    def where(self) -> str:
        """``database at host:port``."""
        return self.config.where

    def __call__(self, username: str, password: str) -> Any:
        from app.sync.connection import connect

        return connect(self.config.with_user(username), username, password)


def central_factory(url: str | None) -> CentralConnector | None:
    """The connector for the desk database at ``url`` (``None`` when not configured).

    Raises ``app.sync.connection.CentralConfigError`` (a ``ValueError``) for a malformed URL.
    """
    return CentralConnector(url) if url else None
