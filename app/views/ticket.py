"""Trade ticket: capture, amend and cancel a trade, with inline validation per field.

Keyboard-first: every field is reachable with Tab, combos search as you type, Ctrl+Return books,
Escape closes. Validation is the service's (:func:`app.services.trading.validate_trade`), so the
ticket, CSV import and scripts accept exactly the same trades. Nothing is written until valid.

When the main window installs :data:`TicketDialog.hooks` (the What-if dock), a new-trade ticket
also shows the **pre-trade impact** while the trader types (incremental VaR/ES of the trade's
currency and the book's position change, computed off the GUI thread, 0.4 s after the last
keystroke) and offers **Add to what-if**, which puts the validated trade in the sandbox and
books nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QCompleter,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.enums import ExerciseStyle, InstrumentType, OptionType, Side
from app.models.repository import StaleVersionError, TradeRecord
from app.models.store import StoreError
from app.services.approvals import ApprovalRequired
from app.services.auth import Action, PermissionDenied, why_not
from app.services.trading import TradeValidationError, TradingService
from app.views.approvals_panel import ApprovalRequester
from app.views.widgets import FIELD_ERROR_STYLE, pydate, qdate, stacked, with_suffix

log = logging.getLogger(__name__)


def _dec_text(v: Decimal | None) -> str:
    if v is None:
        return ""
    text = format(v, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _month_bounds(today: dt.date) -> tuple[dt.date, dt.date]:
    start = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    end = (start + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return start, end


class TicketHooks(Protocol):
    """What a new-trade ticket may ask of the workstation (the What-if dock provides it)."""

    def add_to_whatif(self, raw: dict[str, Any], economics: dict[str, Any]) -> None: ...

    def request_impact(
        self,
        economics: dict[str, Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[str], None],
    ) -> str | None: ...


class TicketDialog(QDialog):
    """New trade (``record=None``) or amendment of ``record``'s current version."""

    #: Installed by the main window; ``None`` in scripts and tests that do not need it.
    hooks: ClassVar[TicketHooks | None] = None
    #: Installed by the main window: offers "Request approval…" when four-eyes is needed.
    approvals: ClassVar[ApprovalRequester | None] = None

    def __init__(
        self, service: TradingService, record: TradeRecord | None = None, parent: Any = None
    ) -> None:
        super().__init__(parent)
        self.service = service
        self.record = record
        #: The id this ticket books its trade under: pressing Book again (a double click, a
        #: retry after an error) stores the same booking once (TradeRepository.insert_trades).
        self.client_id = uuid.uuid4()
        self.saved: TradeRecord | None = None
        self.setObjectName("trade_ticket")
        self.setWindowTitle(
            "New trade"
            if record is None
            else f"Amend trade {record.trade_uuid.hex[:8]} (version {record.version})"
        )
        self.setMinimumWidth(520)
        ref = service.refdata
        self._errors: dict[str, QLabel] = {}
        self.fields: dict[str, QWidget] = {}

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.ExpandingFieldsGrow)
        self.book = self._combo([b.name for b in ref.books.values()])
        self.counterparty = self._combo(
            [c.name for c in ref.counterparties.values()], editable=True
        )
        self.product = self._combo([p.code for p in ref.products.values()], editable=True)
        for i, p in enumerate(ref.products.values()):
            self.product.setItemData(i, f"{p.name} ({p.currency}/{p.unit.label})",
                                     Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.instrument = self._combo([m.label for m in InstrumentType])
        self.side = self._combo([m.label for m in Side])
        self.quantity = QLineEdit(placeholderText="e.g. 10,000")
        self.unit_label = QLabel()
        self.price = QLineEdit(placeholderText="e.g. 88.50")
        self.price_label = QLabel()
        self.trade_date = self._date(dt.date.today())
        start, end = _month_bounds(dt.date.today())
        self.delivery_start = self._date(start)
        self.delivery_end = self._date(end)
        self.comment = QLineEdit(placeholderText="optional")

        self._row(form, "Book", "book", self.book)
        self._row(form, "Counterparty", "counterparty", self.counterparty)
        self._row(form, "Product", "product", self.product)
        self._row(form, "Instrument", "instrument", self.instrument)
        self._row(form, "Buy/Sell", "side", self.side)
        self._row(form, "Quantity", "quantity", with_suffix(self.quantity, self.unit_label, 90))
        self.fields["quantity"] = self.quantity
        self._row(form, "Price", "price", with_suffix(self.price, self.price_label, 90))
        self.fields["price"] = self.price
        self._row(form, "Trade date", "trade_date", self.trade_date)
        self._row(form, "Delivery start", "delivery_start", self.delivery_start)
        self._row(form, "Delivery end", "delivery_end", self.delivery_end)

        self.option_box = QGroupBox("Option")
        oform = QFormLayout(self.option_box)
        self.option_type = self._combo([m.label for m in OptionType])
        self.strike = QLineEdit(placeholderText="strike price")
        self.expiry_date = self._date(start - dt.timedelta(days=5))
        self.exercise_style = self._combo([m.label for m in ExerciseStyle])
        self.premium = QLineEdit(placeholderText="premium per unit")
        self._row(oform, "Call/Put", "option_type", self.option_type)
        self._row(oform, "Strike", "strike", self.strike)
        self._row(oform, "Expiry", "expiry_date", self.expiry_date)
        self._row(oform, "Style", "exercise_style", self.exercise_style)
        self._row(oform, "Premium", "premium", self.premium)
        self._row(form, "Comment", "comment", self.comment)

        self.summary = QLabel()
        self.summary.setStyleSheet(FIELD_ERROR_STYLE)
        self.summary.setWordWrap(True)
        self.summary.hide()
        self.impact = QLabel()
        self.impact.setObjectName("ticket_impact")
        self.impact.setWordWrap(True)
        self.impact.setStyleSheet("color: #333; background: #eef3fb; padding: 4px;")
        self.impact.setVisible(self.hooks is not None and record is None)
        self._impact_timer = QTimer(self)
        self._impact_timer.setSingleShot(True)
        self._impact_timer.setInterval(400)
        self._impact_timer.timeout.connect(self.request_impact)

        buttons = QDialogButtonBox()
        self.book_button = QPushButton("Book trade" if record is None else "Save amendment")
        self.book_button.setDefault(True)
        self.book_button.setToolTip("Ctrl+Return")
        buttons.addButton(self.book_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_trade_button = QPushButton("Cancel trade…")
        self.history_button = QPushButton("History…")
        self.whatif_button = QPushButton("Add to what-if")
        self.whatif_button.setObjectName("ticket_whatif")
        self.whatif_button.setToolTip("Put this trade in the What-if sandbox; nothing is booked")
        self.whatif_button.setAutoDefault(False)
        self.whatif_button.clicked.connect(self.add_to_whatif)
        if record is not None:
            buttons.addButton(self.cancel_trade_button, QDialogButtonBox.ButtonRole.ActionRole)
            buttons.addButton(self.history_button, QDialogButtonBox.ButtonRole.ActionRole)
        elif self.hooks is not None:
            buttons.addButton(self.whatif_button, QDialogButtonBox.ButtonRole.ActionRole)
        close = buttons.addButton(QDialogButtonBox.StandardButton.Close)
        close.setAutoDefault(False)
        self.book_button.clicked.connect(self.submit)
        self.cancel_trade_button.clicked.connect(self.cancel_trade)
        self.history_button.clicked.connect(self.show_history)
        close.clicked.connect(self.reject)
        QShortcut(QKeySequence("Ctrl+Return"), self, self.submit)
        QShortcut(QKeySequence("Ctrl+Enter"), self, self.submit)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.option_box)
        lay.addWidget(self.summary)
        lay.addWidget(self.impact)
        lay.addWidget(buttons)
        # Option fields sit after delivery in tab order, before the comment.
        self.setTabOrder(self.delivery_end, self.option_type)
        self.setTabOrder(self.premium, self.comment)

        self.product.currentTextChanged.connect(self._update_units)
        self.instrument.currentTextChanged.connect(self._update_option_visibility)
        if record is not None:
            self._fill(service.raw_from_record(record))
        self._update_units()
        self._update_option_visibility()
        self.counterparty.setFocus() if record is None else self.quantity.setFocus()
        if self.impact.isVisibleTo(self):
            self._watch_fields()
            self.impact.setText("Pre-trade impact appears here once the ticket is complete.")
        self.book.currentTextChanged.connect(lambda _t: self.apply_permissions())
        self.apply_permissions()

    def apply_permissions(self) -> None:
        """Disable Book / Save / Cancel trade when the signed-in user may not, with a tooltip
        saying why (the service refuses them anyway)."""
        p = self.service.principal
        book = self.book.currentText().strip() or None
        if self.record is None:
            reason = why_not(p, Action.CAPTURE, book)
            self.book_button.setEnabled(reason is None)
            self.book_button.setToolTip(reason or "Ctrl+Return")
            return
        old_book = self.service.refdata.books.get(self.record.book_id)
        reason = why_not(p, Action.AMEND, old_book) or why_not(p, Action.AMEND, book)
        self.book_button.setEnabled(reason is None)
        self.book_button.setToolTip(reason or "Ctrl+Return")
        reason = why_not(p, Action.CANCEL, old_book)
        self.cancel_trade_button.setEnabled(reason is None)
        self.cancel_trade_button.setToolTip(reason or "Cancel the trade (a reason is required)")

    # -- pre-trade impact and what-if --------------------------------------------------------
    def _watch_fields(self) -> None:
        start = self._impact_timer.start
        for w in self.fields.values():
            if isinstance(w, QLineEdit):
                w.textChanged.connect(start)
            elif isinstance(w, QComboBox):
                w.currentTextChanged.connect(start)
            elif isinstance(w, QDateEdit):
                w.dateChanged.connect(start)

    def request_impact(self) -> None:
        """Ask the hooks for the impact of the ticket's trade (when it validates)."""
        hooks = self.hooks
        if hooks is None:
            return
        res = self.service.validate(self.raw())
        if not res.ok:
            self.impact.setText("Pre-trade impact appears here once the ticket is complete.")
            return
        self.impact.setText("Pre-trade impact: calculating…")
        msg = hooks.request_impact(res.economics, self._on_impact, self._on_impact_error)
        if msg:
            self.impact.setText(msg)

    def _on_impact(self, impact: Any) -> None:
        self.impact.setText(impact.text())

    def _on_impact_error(self, text: str) -> None:
        self.impact.setText(f"Pre-trade impact unavailable: {text}")

    def add_to_whatif(self) -> None:
        """Validate and hand the trade to the What-if sandbox; nothing is written."""
        hooks = self.hooks
        if hooks is None:
            return
        raw = self.raw()
        res = self.service.validate(raw)
        if not res.ok:
            self.show_errors(res.errors)
            return
        hooks.add_to_whatif(raw, res.economics)
        self.reject()

    # -- construction helpers ---------------------------------------------------------------
    def _combo(self, items: list[str], editable: bool = False) -> QComboBox:
        box = QComboBox()
        box.addItems(items)
        if editable:
            box.setEditable(True)
            box.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            comp = QCompleter(items, box)
            comp.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
            comp.setFilterMode(Qt.MatchFlag.MatchContains)
            box.setCompleter(comp)
        return box

    def _date(self, d: dt.date) -> QDateEdit:
        w = QDateEdit(qdate(d))
        w.setCalendarPopup(True)
        w.setDisplayFormat("yyyy-MM-dd")
        return w

    def _row(self, form: QFormLayout, label: str, name: str, widget: QWidget) -> None:
        err = QLabel()
        err.setStyleSheet(FIELD_ERROR_STYLE)
        err.setObjectName(f"error_{name}")
        err.hide()
        form.addRow(label, stacked(widget, err))
        self._errors[name] = err
        self.fields.setdefault(name, widget)

    def _fill(self, raw: dict[str, Any]) -> None:
        for name in ("book", "counterparty", "product"):
            box: QComboBox = self.fields[name]  # type: ignore[assignment]
            box.setCurrentText(str(raw[name]))
        for name in ("instrument", "side", "option_type", "exercise_style"):
            if raw.get(name) is not None:
                self.fields[name].setCurrentText(raw[name].label)  # type: ignore[attr-defined]
        for name in ("quantity", "price", "strike", "premium"):
            self.fields[name].setText(_dec_text(raw.get(name)))  # type: ignore[attr-defined]
        for name in ("trade_date", "delivery_start", "delivery_end", "expiry_date"):
            if raw.get(name) is not None:
                self.fields[name].setDate(qdate(raw[name]))  # type: ignore[attr-defined]
        self.comment.setText(raw.get("comment") or "")

    def _update_units(self) -> None:
        p = self.service.refdata.product_by_code(self.product.currentText())
        self.unit_label.setText(p.unit.label if p else "")
        self.price_label.setText(f"{p.currency}/{p.unit.label}" if p else "")

    def _update_option_visibility(self) -> None:
        self.option_box.setVisible(self.instrument.currentText() == InstrumentType.OPTION.label)
        self.adjustSize()

    # -- values and validation ---------------------------------------------------------------
    def raw(self) -> dict[str, Any]:
        """The ticket's input, as the service's validation expects it."""
        is_option = self.instrument.currentText() == InstrumentType.OPTION.label
        raw: dict[str, Any] = {
            "book": self.book.currentText(),
            "counterparty": self.counterparty.currentText(),
            "product": self.product.currentText(),
            "instrument": self.instrument.currentText(),
            "side": self.side.currentText(),
            "quantity": self.quantity.text(),
            "price": self.price.text(),
            "trade_date": pydate(self.trade_date.date()),
            "delivery_start": pydate(self.delivery_start.date()),
            "delivery_end": pydate(self.delivery_end.date()),
            "comment": self.comment.text(),
        }
        if is_option:
            raw.update(
                option_type=self.option_type.currentText(),
                strike=self.strike.text(),
                expiry_date=pydate(self.expiry_date.date()),
                exercise_style=self.exercise_style.currentText(),
                premium=self.premium.text(),
            )
        return raw

    def show_errors(self, errors: dict[str, str]) -> None:
        for name, label in self._errors.items():
            msg = errors.get(name)
            label.setText(msg or "")
            label.setVisible(bool(msg))
        other = [f"{k}: {v}" for k, v in errors.items() if k not in self._errors]
        n = len(errors)
        text = f"{n} field(s) need attention; nothing was saved." if n else ""
        if other:
            text += " " + "; ".join(other)
        self.summary.setText(text)
        self.summary.setVisible(bool(text))
        first = next((self.fields[k] for k in self._errors if k in errors), None)
        if first is not None:
            first.setFocus()

    def submit(self) -> None:
        """Validate and save; on errors show them inline and write nothing."""
        raw = self.raw()
        res = self.service.validate(raw)
        if not res.ok:
            self.show_errors(res.errors)
            return
        try:
            if self.record is None:
                self.saved = self.service.capture({**raw, "trade_uuid": self.client_id})
            else:
                self.saved = self.service.amend(self.record.trade_uuid, self.record.version, raw)
        except ApprovalRequired as exc:
            rec, svc = self.record, self.approvals.service if self.approvals else None
            assert rec is not None
            self._offer_approval(str(exc), None if svc is None else (
                lambda reason: svc.request_trade_amend(rec.trade_uuid, rec.version, raw, reason)))  # fmt: skip
            return
        except TradeValidationError as exc:
            self.show_errors(exc.errors)
            return
        except (StaleVersionError, StoreError, PermissionDenied) as exc:
            self.show_errors({"store": str(exc)})
            return
        log.info("Trade %s saved (version %s)", self.saved.trade_uuid.hex[:8], self.saved.version)
        self.accept()

    def cancel_trade(self) -> None:
        assert self.record is not None
        reason, ok = QInputDialog.getText(self, "Cancel trade", "Reason for the cancellation:")
        if not ok:
            return
        try:
            self.saved = self.service.cancel(self.record.trade_uuid, self.record.version, reason)
        except ApprovalRequired as exc:
            rec, svc = self.record, self.approvals.service if self.approvals else None
            self._offer_approval(str(exc), None if svc is None else (
                lambda why: svc.request_trade_cancel(rec.trade_uuid, rec.version, why)), reason)  # fmt: skip
            return
        except TradeValidationError as exc:
            self.show_errors(exc.errors)
            return
        except (StaleVersionError, StoreError, PermissionDenied) as exc:
            self.show_errors({"store": str(exc)})
            return
        self.accept()

    def _offer_approval(
        self, message: str, submit: Callable[[str], Any] | None, reason: str = ""
    ) -> None:
        """Four-eyes is needed: say so (nothing was saved) and offer to submit a request."""
        self.summary.setText(f"{message} Nothing was saved.")
        self.summary.show()
        if self.approvals is None or submit is None:
            return

        def submitted(rec: Any) -> None:
            self.summary.setText(f"Approval request {rec.request_uuid} submitted; the change is "
                                 "made once a second user approves it.")  # fmt: skip

        self.approval_dialog = self.approvals.offer(self, message, submit, reason, submitted)

    def show_history(self) -> None:
        assert self.record is not None
        HistoryDialog(self.service, self.service.repo.history(self.record.trade_uuid), self).exec()


class HistoryDialog(QDialog):
    """Every version of a trade, oldest first, changed cells highlighted."""

    FIELDS = ("version", "status", "quantity", "price", "delivery_start", "delivery_end",
              "counterparty", "book", "updated_by", "updated_at", "comment")  # fmt: skip

    def __init__(self, service: TradingService, versions: list[TradeRecord], parent: Any = None):
        super().__init__(parent)
        self.setWindowTitle(f"History of trade {versions[0].trade_uuid.hex[:8]}")
        ref = service.refdata
        table = QTableWidget(len(versions), len(self.FIELDS))  # a handful of rows
        table.setHorizontalHeaderLabels([f.replace("_", " ").title() for f in self.FIELDS])
        prev: list[str] | None = None
        for r, rec in enumerate(versions):
            values = []
            for f in self.FIELDS:
                if f == "counterparty":
                    v: Any = ref.counterparties[rec.counterparty_id].name
                elif f == "book":
                    v = ref.books[rec.book_id].name
                else:
                    v = getattr(rec, f)
                if isinstance(v, Decimal):
                    v = _dec_text(v)
                elif hasattr(v, "label"):
                    v = v.label
                elif isinstance(v, dt.datetime):
                    v = v.strftime("%Y-%m-%d %H:%M:%S UTC")
                values.append(str(v))
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                if prev is not None and prev[c] != text:
                    item.setBackground(Qt.GlobalColor.yellow)
                table.setItem(r, c, item)
            prev = values
        table.resizeColumnsToContents()
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table = table
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        self.resize(900, 300)
