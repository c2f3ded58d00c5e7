"""The Approvals dock (four-eyes) and the "Request approval…" dialog.

The dock lists the open requests (who asked, when, what, a summary, and for the selected one a
before / after diff of the change) with Approve / Reject buttons -- disabled, with a tooltip
saying why, when the signed-in user may not decide it (their own request, wrong role) -- and the
user's own requests with their state (Withdraw while pending). The service enforces the same
rules; every database call runs on the job runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.approvals import ApprovalError, ApprovalRecord
from app.models.limits import LimitValidationError, StaleLimitError
from app.models.repository import StaleVersionError, TradeNotFoundError
from app.models.store import StoreError
from app.services.approvals import ApprovalService, changes, why_cannot_decide
from app.services.auth import PermissionDenied, Principal
from app.services.events import APPROVALS_CHANGED
from app.views.jobs import JobContext, JobRunner

__all__ = ["ApprovalRequester", "ApprovalsPanel", "RequestApprovalDialog"]

#: Errors that are answers for the user, not bugs (shown in the panel / dialog).
USER_ERRORS: tuple[type[BaseException], ...] = (
    ApprovalError, PermissionDenied, StaleVersionError, StaleLimitError, LimitValidationError,
    TradeNotFoundError, StoreError, ValueError,
)  # fmt: skip

_KIND = {"trade_amend": "Amend trade", "trade_cancel": "Cancel trade", "limit_change": "Limit"}
_ERROR_STYLE = "color: #b3261e;"
_OK_STYLE = "color: #1e6b2e;"


def _when(rec: ApprovalRecord) -> str:
    return rec.requested_at.astimezone().strftime("%Y-%m-%d %H:%M")


def _error_text(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in errors.items())
    return str(exc).strip("'\"") or type(exc).__name__


def waiting_note(principal: Principal) -> str:
    """What happens next with a submitted request (single-user mode says it must wait)."""
    if principal.is_local_owner:
        return ("This workstation runs single-user: you cannot approve your own request, so it "
                "waits until a second user (risk manager or back office) signs in and approves "
                "it.")  # fmt: skip
    return "It takes effect once a risk manager (or back office, for trades) approves it."


class RequestApprovalDialog(QDialog):
    """Explains why approval is needed, asks for a reason and submits the request (on the job
    runner); shows the request's id when it is stored."""

    sig_submitted = Signal(object)
    """(ApprovalRecord) the request was stored"""

    def __init__(
        self,
        runner: JobRunner,
        message: str,
        submit: Callable[[str], ApprovalRecord],
        principal: Principal,
        reason: str = "",
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("request_approval_dialog")
        self.setWindowTitle("Four-eyes approval needed")
        self.runner = runner
        self._submit = submit
        self.principal = principal
        self.record: ApprovalRecord | None = None
        self.explain = QLabel(message)
        self.explain.setWordWrap(True)
        self.reason = QLineEdit(reason)
        self.reason.setPlaceholderText("why is this change needed? (required)")
        self.reason.setMaxLength(250)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.hide()
        self.buttons = QDialogButtonBox()
        self.submit_button = QPushButton("Submit request")
        self.submit_button.setDefault(True)
        self.buttons.addButton(self.submit_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.submit_button.clicked.connect(self.submit)
        self.close_button.clicked.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.explain)
        lay.addWidget(QLabel("Reason for the request:"))
        lay.addWidget(self.reason)
        lay.addWidget(self.status)
        lay.addWidget(self.buttons)
        self.setMinimumWidth(460)

    def _show(self, text: str, style: str) -> None:
        self.status.setStyleSheet(style)
        self.status.setText(text)
        self.status.show()

    def submit(self) -> None:
        """Submit the request with the reason entered (refused inline when empty)."""
        reason = self.reason.text().strip()
        if not reason:
            self._show("Give a reason: the approver sees it with the change.", _ERROR_STYLE)
            return
        self.submit_button.setEnabled(False)
        self._show("Submitting…", "color: #555;")
        submit = self._submit

        def work(_ctx: JobContext) -> ApprovalRecord | BaseException:
            try:
                return submit(reason)
            except USER_ERRORS as exc:
                return exc

        self.runner.submit("Request approval", work, on_result=self._on_done,
                           on_error=self._on_error)  # fmt: skip

    def _on_error(self, text: str) -> None:
        self.submit_button.setEnabled(True)
        self._show(f"Not submitted: {text}", _ERROR_STYLE)

    def _on_done(self, out: ApprovalRecord | BaseException) -> None:
        if isinstance(out, BaseException):
            self._on_error(_error_text(out))
            return
        self.record = out
        self.reason.setEnabled(False)
        self.submit_button.hide()
        self._show(f"Request {out.request_uuid} submitted. {waiting_note(self.principal)}",
                   _OK_STYLE)  # fmt: skip
        self.sig_submitted.emit(out)


class ApprovalRequester:
    """What the ticket and the limits tab need to offer "Request approval…"."""

    def __init__(self, service: ApprovalService, runner: JobRunner) -> None:
        self.service = service
        self.runner = runner

    def offer(
        self,
        parent: QWidget,
        message: str,
        submit: Callable[[str], ApprovalRecord],
        reason: str = "",
        on_submitted: Callable[[ApprovalRecord], None] | None = None,
    ) -> RequestApprovalDialog:
        """Open (non-modally) the dialog that submits ``submit(reason)``."""
        dlg = RequestApprovalDialog(self.runner, message, submit, self.service.principal,
                                    reason, parent)  # fmt: skip
        if on_submitted is not None:
            dlg.sig_submitted.connect(on_submitted)
        dlg.open()
        return dlg


class _Bridge(QObject):
    sig_changed = Signal()


class ApprovalsPanel(QWidget):
    """The Approvals dock; see the module docstring."""

    sig_message = Signal(str)
    """(a status message for the user)"""
    sig_loaded = Signal()
    """The lists were (re)loaded."""

    def __init__(self, runner: JobRunner, service: ApprovalService, parent: Any = None) -> None:
        super().__init__(parent)
        self.setObjectName("approvals_panel")
        self.runner = runner
        self.service = service
        self.pending: list[ApprovalRecord] = []
        self.mine: list[ApprovalRecord] = []

        self.pending_tree = self._tree(["Requested", "By", "What", "Book", "State", "Summary"])
        self.mine_tree = self._tree(["Requested", "What", "State", "Decided by", "Comment",
                                     "Summary"])  # fmt: skip
        self.diff = self._tree(["Field", "Before", "After"])
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.comment = QLineEdit(placeholderText="comment for the requester (optional)")
        self.approve_button = QPushButton("Approve")
        self.reject_button = QPushButton("Reject")
        self.withdraw_button = QPushButton("Withdraw")
        self.refresh_button = QPushButton("Refresh")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)

        self.approve_button.clicked.connect(self.approve_selected)
        self.reject_button.clicked.connect(self.reject_selected)
        self.withdraw_button.clicked.connect(self.withdraw_selected)
        self.refresh_button.clicked.connect(self.refresh)
        self.pending_tree.itemSelectionChanged.connect(self._on_pending_selected)
        self.mine_tree.itemSelectionChanged.connect(self._on_mine_selected)

        buttons = QHBoxLayout()
        for b in (self.approve_button, self.reject_button, self.withdraw_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(QLabel("Waiting for approval"))
        tl.addWidget(self.pending_tree)
        mid = QWidget()
        ml = QVBoxLayout(mid)
        ml.setContentsMargins(0, 0, 0, 0)
        ml.addWidget(self.detail)
        ml.addWidget(self.diff)
        ml.addWidget(self.comment)
        ml.addLayout(buttons)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(QLabel("My requests"))
        bl.addWidget(self.mine_tree)
        split = QSplitter(Qt.Orientation.Vertical)
        for w in (top, mid, bottom):
            split.addWidget(w)
        lay = QVBoxLayout(self)
        lay.addWidget(split)
        lay.addWidget(self.count_label)
        lay.addWidget(self.status)

        self._bridge = _Bridge(self)
        self._bridge.sig_changed.connect(self.refresh)
        service.bus.subscribe(APPROVALS_CHANGED, self._on_event)
        self._update_buttons()

    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def _tree(headers: Sequence[str]) -> QTreeWidget:
        t = QTreeWidget()
        t.setHeaderLabels(list(headers))
        t.setRootIsDecorated(False)
        t.setAlternatingRowColors(True)
        t.setUniformRowHeights(True)
        return t

    def _on_event(self, **_: Any) -> None:
        # Any thread: the signal is queued to the GUI thread.
        self._bridge.sig_changed.emit()

    def detach(self) -> None:
        """Stop listening to the event bus (before the panel is destroyed)."""
        self.service.bus.unsubscribe(APPROVALS_CHANGED, self._on_event)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setStyleSheet(_ERROR_STYLE if error else "")
        self.status.setText(text)
        self.sig_message.emit(text)

    # -- loading --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Reload both lists on the job runner (the latest request wins)."""
        service = self.service

        def work(_ctx: JobContext) -> tuple[list[ApprovalRecord], list[ApprovalRecord]]:
            return service.pending(), service.mine()

        self.runner.submit("Load approvals", work, on_result=self._on_loaded,
                           on_error=lambda t: self._say(f"Approvals not loaded: {t}", True),
                           key="approvals-load")  # fmt: skip

    def _on_loaded(self, out: tuple[list[ApprovalRecord], list[ApprovalRecord]]) -> None:
        selected = self.selected_pending()
        self.pending, self.mine = out
        self.pending_tree.clear()
        for rec in self.pending:
            item = QTreeWidgetItem([_when(rec), rec.requested_by, _KIND.get(rec.kind, rec.kind),
                                    rec.book_name or "", rec.state, rec.summary])  # fmt: skip
            item.setToolTip(5, rec.summary)
            self.pending_tree.addTopLevelItem(item)
            if selected is not None and rec.request_uuid == selected.request_uuid:
                item.setSelected(True)
        self.mine_tree.clear()
        for rec in self.mine:
            item = QTreeWidgetItem([_when(rec), _KIND.get(rec.kind, rec.kind), rec.state,
                                    rec.decided_by or "", rec.decision_comment, rec.summary])  # fmt: skip
            item.setToolTip(4, rec.decision_comment)
            item.setToolTip(5, rec.summary)
            self.mine_tree.addTopLevelItem(item)
        for t in (self.pending_tree, self.mine_tree):
            for c in range(4):
                t.resizeColumnToContents(c)
        n = len(self.pending)
        p = self.service.principal
        note = f"{n} request(s) waiting for approval."
        if p.is_local_owner and any(r.requested_by == p.username for r in self.pending):
            note += " " + waiting_note(p)
        self.count_label.setText(note)
        self._update_buttons()
        self.sig_loaded.emit()

    # -- selection ------------------------------------------------------------------------
    def selected_pending(self) -> ApprovalRecord | None:
        rows = [self.pending_tree.indexOfTopLevelItem(i) for i in self.pending_tree.selectedItems()]
        return self.pending[rows[0]] if rows and 0 <= rows[0] < len(self.pending) else None

    def selected_mine(self) -> ApprovalRecord | None:
        rows = [self.mine_tree.indexOfTopLevelItem(i) for i in self.mine_tree.selectedItems()]
        return self.mine[rows[0]] if rows and 0 <= rows[0] < len(self.mine) else None

    def select_pending(self, request_uuid: str) -> bool:
        """Select the open request ``request_uuid`` (``False`` when it is not listed)."""
        for i, rec in enumerate(self.pending):
            if rec.request_uuid == request_uuid:
                item = self.pending_tree.topLevelItem(i)
                if item is not None:
                    self.pending_tree.setCurrentItem(item)
                    return True
        return False

    def _on_pending_selected(self) -> None:
        if self.pending_tree.selectedItems():
            self.mine_tree.clearSelection()
        self._show_detail(self.selected_pending())
        self._update_buttons()

    def _on_mine_selected(self) -> None:
        if self.mine_tree.selectedItems():
            self.pending_tree.clearSelection()
        self._show_detail(self.selected_mine())
        self._update_buttons()

    def _show_detail(self, rec: ApprovalRecord | None) -> None:
        self.diff.clear()
        if rec is None:
            self.detail.setText("")
            return
        decided = f"; {rec.state} by {rec.decided_by}" if rec.decided_by else ""
        self.detail.setText(
            f"Request {rec.request_uuid} by {rec.requested_by} at {_when(rec)}{decided}\n"
            f"{rec.summary}\nReason: {rec.reason}"
        )
        for field, before, after in changes(rec):
            item = QTreeWidgetItem([field, before, after])
            item.setToolTip(1, before)
            item.setToolTip(2, after)
            self.diff.addTopLevelItem(item)
        self.diff.resizeColumnToContents(0)

    def _update_buttons(self) -> None:
        p = self.service.principal
        rec = self.selected_pending()
        why = "Select a request waiting for approval." if rec is None else why_cannot_decide(rec, p)
        self.approve_button.setEnabled(why is None)
        self.approve_button.setToolTip(why or "Approve: the change is applied at once")
        label = "Apply" if rec is not None and rec.state == "approved" else "Approve"
        self.approve_button.setText(label)
        why_rej = why
        if why is None and rec is not None and rec.state != "pending":
            why_rej = f"The request is {rec.state}."
        self.reject_button.setEnabled(why_rej is None)
        self.reject_button.setToolTip(why_rej or "Reject: nothing changes")
        mine = self.selected_mine()
        own = mine or (rec if rec is not None and rec.requested_by == p.username else None)
        if own is None:
            why_w = "Select one of your own pending requests."
        elif own.requested_by != p.username:
            why_w = "Only the requester can withdraw a request."
        elif own.state != "pending":
            why_w = f"The request is {own.state}."
        else:
            why_w = None
        self.withdraw_button.setEnabled(why_w is None)
        self.withdraw_button.setToolTip(why_w or "Take the request back")

    def set_principal(self, _principal: Principal) -> None:
        """The signed-in user changed (the service reads it itself): reload."""
        self._update_buttons()
        self.refresh()

    # -- actions --------------------------------------------------------------------------
    def _act(self, title: str, fn: Callable[[], ApprovalRecord], done: str) -> None:
        for b in (self.approve_button, self.reject_button, self.withdraw_button):
            b.setEnabled(False)

        def work(_ctx: JobContext) -> ApprovalRecord | BaseException:
            try:
                return fn()
            except USER_ERRORS as exc:
                return exc

        def finished(out: ApprovalRecord | BaseException) -> None:
            if isinstance(out, BaseException):
                self._say(_error_text(out), True)
            else:
                self._say(done.format(id=out.request_uuid[:8], state=out.state))
                self.comment.clear()
            self.refresh()

        def failed(text: str) -> None:
            self._say(text, True)
            self.refresh()

        self.runner.submit(title, work, on_result=finished, on_error=failed)

    def approve_selected(self) -> None:
        """Approve (and apply) the selected request."""
        rec = self.selected_pending()
        if rec is None:
            return
        service, uid, comment = self.service, rec.request_uuid, self.comment.text()
        self._act("Approve request", lambda: service.approve(uid, comment),
                  "Request {id} approved and applied.")  # fmt: skip

    def reject_selected(self) -> None:
        """Reject the selected request."""
        rec = self.selected_pending()
        if rec is None:
            return
        service, uid, comment = self.service, rec.request_uuid, self.comment.text()
        self._act("Reject request", lambda: service.reject(uid, comment),
                  "Request {id} rejected.")  # fmt: skip

    def withdraw_selected(self) -> None:
        """Withdraw the selected own request."""
        p = self.service.principal
        rec = self.selected_mine() or self.selected_pending()
        if rec is None or rec.requested_by != p.username:
            return
        service, uid, comment = self.service, rec.request_uuid, self.comment.text()
        self._act("Withdraw request", lambda: service.withdraw(uid, comment),
                  "Request {id} withdrawn.")  # fmt: skip
