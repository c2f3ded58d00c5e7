"""The main window: dockable panels, menus, status bar, layout persistence."""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QWidget,
)

from app import __version__
from app.feed.market_state import FeedStatus
from app.feed.service import MarketDataService
from app.models import demo
from app.models.enums import TradeStatus
from app.models.repository import RefData, TradeRepository
from app.models.store import Store, StoreError
from app.services.approvals import ApprovalService
from app.services.audit import AuditService
from app.services.auth import Action, PermissionDenied, Principal, why_not
from app.services.conflicts import ConflictService
from app.services.events import TRADES_RELOAD, EventBus
from app.services.positions import PositionService
from app.services.trading import TradingService
from app.settings import Settings
from app.sync.connection import CentralConfig
from app.sync.status import SyncStatus
from app.views import feed_status
from app.views.approvals_panel import ApprovalRequester, ApprovalsPanel
from app.views.audit_panel import AuditPanel
from app.views.blotter import BlotterPanel
from app.views.bridge import EventBridge
from app.views.conflicts_panel import ConflictsPanel
from app.views.curve_panel import ForwardCurvePanel
from app.views.jobs import JobContext, JobRunner
from app.views.jobs_dock import JobsIndicator, JobsPanel
from app.views.layout import LayoutStore
from app.views.limits_panel import install_limits_tab
from app.views.log_dock import LogPanel, QtLogHandler
from app.views.market_bridge import MarketBridge
from app.views.market_watch import MarketWatchPanel
from app.views.positions import PositionsPanel
from app.views.pricer import OptionsPricerPanel
from app.views.risk_charts import install_risk_charts
from app.views.risk_panel import RiskPanel
from app.views.settings_dialog import SettingsDialog, describe_sync_status, initial_sync_status
from app.views.stress_panel import install_stress_tabs
from app.views.ticket import TicketDialog
from app.views.whatif import WhatIfPanel

log = logging.getLogger(__name__)

FIRST_CHUNK_ROWS = 20_000  # small first chunk: the blotter paints before the store is read
CHUNK_ROWS = 100_000  # each append holds the GUI thread: keep it short


def _limit_alert(message: str) -> None:
    """A limit warning or breach: a WARNING record, so the Log/Alerts dock and the status bar
    count it."""
    logging.getLogger("app.limits").warning(message)


@dataclass
class AppContext:
    """Everything the window needs; built by :func:`app.views.application.build_context`."""

    settings: Settings
    store: Store
    repo: TradeRepository
    trading: TradingService
    bus: EventBus
    runner: JobRunner
    log_handler: QtLogHandler
    market: MarketDataService
    seed_demo_if_empty: bool = True
    #: Users of this workstation (app.models.users.UserRepository) and sign-in
    #: (app.services.session.SignInService); ``None`` in tests/scripts that need no sign-in.
    users: Any = None
    signin: Any = None
    #: Desk database connector for sign-in (app.services.session.CentralConnector) or None.
    central: Any = None
    #: Note from the last sign-in (e.g. "Working offline: ..."), shown in the status bar.
    signin_note: str = ""
    #: Opens a desk database connection as the signed-in user (from the sign-in dialog), or
    #: None: no sync worker runs (single-user, or no desk database configured).
    sync_connect: Any = None


class MainWindow(QMainWindow):
    """QuantaEnergi Workstation main window."""

    sig_ready = Signal()
    """The store is open and the blotter fully loaded (used by --screenshot and tests)."""

    def __init__(self, ctx: AppContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.setObjectName("main_window")
        self.setWindowTitle(f"QuantaEnergi Workstation {__version__}")
        self.setDockOptions(
            QMainWindow.DockOption.AnimatedDocks
            | QMainWindow.DockOption.AllowNestedDocks
            | QMainWindow.DockOption.AllowTabbedDocks
        )
        self.ready = False
        self.layouts = LayoutStore(ctx.settings.ui_settings_path)
        self.bridge = EventBridge(ctx.bus, self)
        self._pending: set[uuid.UUID] = set()
        self._select_after: str | None = None
        self._flush = QTimer(self, singleShot=True, interval=150)
        self._flush.timeout.connect(self._load_pending)

        self.blotter = BlotterPanel(ctx.runner)
        self.pricer = OptionsPricerPanel(ctx.runner, ctx.trading, market=ctx.market.state)
        self.log_panel = LogPanel(ctx.log_handler)
        self.jobs_panel = JobsPanel(ctx.runner)
        state = ctx.market.state
        self.market_bridge = MarketBridge(state, hz=15.0, parent=self)
        self.market_watch = MarketWatchPanel(
            state,
            self.market_bridge,
            self.layouts.settings,
            history_loader=ctx.market.history,
            runner=ctx.runner,
        )
        self.curve_panel = ForwardCurvePanel(
            state, self.market_bridge, history_curve=ctx.market.curve_at, runner=ctx.runner
        )
        self.positions = PositionsPanel(
            ctx.trading,
            ctx.runner,
            state,
            self.market_bridge,
            PositionService(ctx.repo, ctx.trading),
        )
        self.risk = RiskPanel(ctx.runner, self.positions, scheduler=ctx.settings.dask_scheduler)
        self.stress_panel, self.scenario_grid = install_stress_tabs(
            self.risk, ctx.settings.data_dir, ctx.store, lambda: ctx.trading.principal.username
        )
        self.backtest_panel, self.var_history = install_risk_charts(self.risk)
        self.limits_panel = install_limits_tab(
            self.risk, ctx.store, alert=_limit_alert, stress=self._stress_losses, runner=ctx.runner
        )
        self.whatif = WhatIfPanel(ctx.runner, self.positions, self.risk, ctx.trading)
        self.whatif.limits = self.limits_panel.service
        self.conflicts_panel = ConflictsPanel(
            ctx.runner, ConflictService(ctx.store, ctx.trading, ctx.bus), self.bridge
        )
        self.conflicts_panel.sig_count.connect(self._on_conflict_count)
        self.approvals = ApprovalService(ctx.store, ctx.bus, ctx.trading, self.limits_panel.service,
                                         lambda: ctx.trading.principal)  # fmt: skip
        self.approvals_panel = ApprovalsPanel(ctx.runner, self.approvals)
        self.approvals_panel.sig_message.connect(lambda m: self.show_message(m))
        requester = ApprovalRequester(self.approvals, ctx.runner)
        TicketDialog.approvals = requester  # "Request approval…" when four-eyes is needed
        self.limits_panel.approvals = requester
        self._conflicts_seen = 0
        TicketDialog.hooks = self.whatif  # pre-trade impact and "Add to what-if" in tickets
        self.docks: dict[str, QDockWidget] = {}
        self._add_dock("market_watch_dock", "Market Watch", self.market_watch)
        self._add_dock("forward_curve_dock", "Forward Curve", self.curve_panel)
        self._add_dock("blotter_dock", "Trade Blotter", self.blotter)
        self._add_dock("pricer_dock", "Options Pricer", self.pricer)
        self._add_dock("positions_dock", "Positions", self.positions)
        self._add_dock("risk_dock", "Risk", self.risk)
        self._add_dock("whatif_dock", "What-if", self.whatif)
        self._add_dock("jobs_dock", "Jobs", self.jobs_panel)
        self._add_dock("log_dock", "Log / Alerts", self.log_panel)
        self._add_dock("conflicts_dock", "Conflicts", self.conflicts_panel)
        self._add_dock("approvals_dock", "Approvals", self.approvals_panel)
        self.audit_panel = AuditPanel(
            ctx.runner, AuditService(ctx.store, lambda: ctx.trading.principal)
        )
        self.audit_panel.sig_message.connect(self.show_message)
        self._add_dock("audit_dock", "Audit", self.audit_panel)
        placeholder = QWidget()
        placeholder.setMaximumSize(0, 0)
        self.setCentralWidget(placeholder)  # all panels are docks

        self._build_status_bar()
        self._build_menus()
        self._shown_once = False
        self.apply_default_layout()
        self._restored = self.layouts.restore_session(self)

        self.blotter.sig_open_trade.connect(self.open_trade)
        self.blotter.sig_new_trade.connect(self.new_trade)
        self.blotter.sig_cancel_trade.connect(self.cancel_trade)
        self.blotter.sig_advance.connect(self.advance_trade)
        self.set_principal(ctx.trading.principal, ctx.signin_note)
        self.pricer.sig_booked.connect(self._on_option_booked)
        self.blotter.sig_message.connect(self.show_message)
        self.bridge.sig_trades_changed.connect(self._on_trades_changed)
        self.bridge.sig_trades_reload.connect(self.reload_blotter)
        self.log_panel.sig_alert.connect(self._on_alert)
        self.market_watch.sig_show_curve.connect(self.show_curve)
        self.bridge.sig_trades_changed.connect(lambda _uuids, _kind: self.positions.reload())
        self.bridge.sig_trades_reload.connect(self.positions.reload)
        self.bridge.sig_refdata_changed.connect(self.positions.reload)
        self.positions.sig_message.connect(self.show_message)
        self.risk.sig_message.connect(self.show_message)
        self.whatif.sig_message.connect(self.show_message)
        self.market_bridge.sig_curves.connect(self.pricer.on_curves)
        self.market_bridge.sig_vols.connect(self.pricer.on_vols)
        self.market_bridge.sig_status.connect(self._on_feed_status)
        self.bridge.sig_sync_status.connect(self._on_sync_status)
        QTimer.singleShot(0, self.start)

    def _stress_losses(self) -> dict[str, dict[str, float]] | None:
        """Worst stress loss per book and currency from the last Stress run, when it was
        grouped by book over all books (what the stress limits measure); else ``None``."""
        res = getattr(self.stress_panel, "result", None)
        if res is None or not res.rows:
            return None
        books = {b.name for b in self.ctx.trading.refdata.books.values()}
        out: dict[str, dict[str, float]] = {}
        for ccy, labels in res.group_labels.items():
            if not set(labels) <= books:
                return None  # grouped by product or trade: not a per-book figure
            for g, book in enumerate(labels):
                worst = min(float(r.by_group[ccy][g]) for r in res.rows if ccy in r.by_group)
                out.setdefault(book, {})[ccy] = max(-worst, 0.0)
        return out

    # -- construction ----------------------------------------------------------------------
    def _add_dock(self, name: str, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.docks[name] = dock
        self.addDockWidget(Qt.DockWidgetArea.TopDockWidgetArea, dock)
        return dock

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.store_status = QLabel("Local store: opening…")
        self.central_status = QLabel("Central DB: not configured")
        self._on_sync_status(initial_sync_status(self.ctx.settings.central_url))
        self.feed_status = QLabel("Price feed: not configured")
        self.user_status = QLabel("")
        self.user_status.setObjectName("status_user")
        self.jobs_indicator = JobsIndicator(self.ctx.runner)
        self.jobs_indicator.sig_clicked.connect(lambda: self.show_dock("jobs_dock"))
        self.alerts_label = QLabel("")
        self.alerts_label.setStyleSheet("color: #b3261e;")
        for w in (self.store_status, self.central_status, self.feed_status,
                  self.jobs_indicator, self.alerts_label):  # fmt: skip
            w.setObjectName(f"status_{len(sb.children())}")
            sb.addPermanentWidget(w)
        sb.addPermanentWidget(self.user_status)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self.act_new = f.addAction("&New trade…", QKeySequence("Ctrl+N"), self.new_trade)
        f.addAction("&Import trades (CSV/Excel)…", QKeySequence("Ctrl+I"), self.import_trades)
        f.addAction("&Export all trades (CSV/Excel)…", self.export_trades)
        f.addAction("&Back up local store…", self.backup_store)
        f.addSeparator()
        d = f.addMenu("&Demo data")
        d.addAction("Reseed demo desk", self.reseed_demo)
        d.addAction("Clear demo data", self.clear_demo)
        f.addSeparator()
        self.act_settings = f.addAction("&Settings…", QKeySequence.StandardKey.Preferences,
                                        self.open_settings)  # fmt: skip
        self.act_settings.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.act_sign_out = f.addAction("Sign &out / switch user…", self.sign_out)
        self.act_sign_out.setObjectName("act_sign_out")
        f.setToolTipsVisible(True)  # why New trade or Sign out is disabled
        f.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)
        v = mb.addMenu("&View")
        for dock in self.docks.values():
            v.addAction(dock.toggleViewAction())
        v.addSeparator()
        v.addAction("&Reset layout", self.reset_layout)
        v.addAction("&Save workspace as…", self.save_workspace)
        self.load_menu = v.addMenu("&Load workspace")
        self.delete_menu = v.addMenu("&Delete workspace")
        v.aboutToShow.connect(self._fill_workspace_menus)
        h = mb.addMenu("&Help")
        h.addAction("&About", self.about)

    def _fill_workspace_menus(self) -> None:
        names = self.layouts.workspaces()
        for menu, fn in ((self.load_menu, self.load_workspace),
                         (self.delete_menu, self.delete_workspace)):  # fmt: skip
            menu.clear()
            for name in names:
                menu.addAction(name, functools.partial(fn, name))
            menu.setEnabled(bool(names))

    # -- layout --------------------------------------------------------------------------------
    def apply_default_layout(self) -> None:
        """Market Watch over the Forward Curve on the left; Blotter on top (Options Pricer,
        Positions, Risk and What-if tabbed behind it); Log, Jobs, Conflicts, Approvals and
        Audit tabbed below."""
        b, j, lg = (self.docks[n] for n in ("blotter_dock", "jobs_dock", "log_dock"))
        pr, mw, fc = (
            self.docks[n] for n in ("pricer_dock", "market_watch_dock", "forward_curve_dock")
        )
        pos, rk = self.docks["positions_dock"], self.docks["risk_dock"]
        wi = self.docks["whatif_dock"]
        cf, ap, au = (self.docks[n] for n in ("conflicts_dock", "approvals_dock", "audit_dock"))
        for dock in (b, pr, j, lg, mw, fc, pos, rk, wi, cf, ap, au):
            dock.setFloating(False)
            dock.show()
        # The left column (market data) runs the full height; blotter and log sit to its right.
        self.setCorner(Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, mw)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, fc)
        self.splitDockWidget(mw, fc, Qt.Orientation.Vertical)
        self.addDockWidget(Qt.DockWidgetArea.TopDockWidgetArea, b)
        self.addDockWidget(Qt.DockWidgetArea.TopDockWidgetArea, pr)
        self.tabifyDockWidget(b, pr)
        self.tabifyDockWidget(b, pos)
        self.tabifyDockWidget(b, rk)
        self.tabifyDockWidget(b, wi)
        b.raise_()
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, lg)
        self.tabifyDockWidget(lg, j)
        self.tabifyDockWidget(lg, cf)
        self.tabifyDockWidget(lg, ap)
        self.tabifyDockWidget(lg, au)
        lg.raise_()
        h = max(self.height(), 860)
        self.resizeDocks([b, lg], [int(h * 0.72), int(h * 0.2)], Qt.Orientation.Vertical)
        self.resizeDocks([mw], [600], Qt.Orientation.Horizontal)
        self.resizeDocks([mw, fc], [int(h * 0.55), int(h * 0.4)], Qt.Orientation.Vertical)
        self.blotter.apply_default_columns()
        if not self.isVisible():
            self.resize(1500, 860)

    def table_states(self) -> dict[str, QByteArray]:
        return {"blotter": self.blotter.header_state()}

    def restore_table_states(self, states: dict[str, Any]) -> None:
        if not self.blotter.restore_header_state(states.get("blotter")):
            self.blotter.apply_default_columns()

    def reset_layout(self) -> None:
        self.apply_default_layout()
        self.show_message("Layout reset to default")

    def save_workspace(self) -> None:
        name, ok = QInputDialog.getText(self, "Save workspace", "Workspace name:")
        if not ok:
            return
        try:
            self.layouts.save_workspace(self, name)
        except ValueError as exc:
            QMessageBox.warning(self, "Save workspace", str(exc))
            return
        self.show_message(f"Workspace '{name.strip()}' saved")

    def load_workspace(self, name: str) -> None:
        try:
            ok = self.layouts.load_workspace(self, name)
        except ValueError as exc:
            QMessageBox.warning(self, "Load workspace", str(exc))
            return
        self.show_message(f"Workspace '{name}' loaded" if ok else
                          f"Workspace '{name}' could not be restored; default layout used")  # fmt: skip

    def delete_workspace(self, name: str) -> None:
        self.layouts.delete_workspace(name)
        self.show_message(f"Workspace '{name}' deleted")

    def show_curve(self, product: str) -> None:
        """Raise the Forward Curve dock on ``product`` (Market Watch context menu)."""
        self.show_dock("forward_curve_dock")
        self.curve_panel.show_product(product)

    def _on_feed_status(self, status: FeedStatus) -> None:
        text, tip, css = feed_status.describe(status)
        self.feed_status.setText(text)
        self.feed_status.setToolTip(tip)
        self.feed_status.setStyleSheet(css)

    def _on_sync_status(self, status: SyncStatus) -> None:
        """SYNC_STATUS from the sync worker (via the bridge): the Central DB status label."""
        text, tip, css = describe_sync_status(status)
        self.central_status.setText(text)
        self.central_status.setToolTip(tip)
        self.central_status.setStyleSheet(css)

    def open_settings(self) -> SettingsDialog:
        """File > Settings…: the desk database connection (non-modal; returns the dialog)."""
        dlg = SettingsDialog(self.ctx.settings, self.ctx.runner, self)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.sig_saved.connect(self._central_saved)
        dlg.show()
        return dlg

    def _central_saved(self, config: CentralConfig) -> None:
        if self.central_status.text() == SyncStatus().label:  # no worker has reported yet
            self._on_sync_status(initial_sync_status(self.ctx.settings.central_url))
        from app.views.login_dialog import central_factory

        try:
            self.ctx.central = central_factory(config.url)
        except ValueError as exc:
            self.show_message(str(exc))
            return
        self.act_sign_out.setEnabled(self.ctx.signin is not None)
        self.show_message(f"Desk database set to {config.url}: sign in again (File > Sign out / "
                          "switch user) to sync with it.")  # fmt: skip

    def show_dock(self, name: str) -> None:
        dock = self.docks[name]
        dock.show()
        dock.raise_()

    # -- start-up and loading -------------------------------------------------------------------
    def start(self) -> None:
        """Seed the demo desk on first start, then load reference data and the blotter."""
        ctx = self.ctx

        def prepare(jc: JobContext) -> RefData:
            demo.ensure_reference_data(ctx.store)
            if ctx.seed_demo_if_empty and ctx.repo.count_current() == 0:
                log.info("Empty store: seeding the demo desk (books named 'DEMO …')")
                demo.seed_demo(ctx.store, 5000, progress=lambda f: jc.progress(f, "seeding demo"),
                               cancelled=jc.cancelled)  # fmt: skip
            return ctx.trading.refresh_refdata()

        ctx.runner.submit("Opening store", prepare, on_result=self._refdata_ready,
                          on_error=self._fatal_store_error)  # fmt: skip
        ctx.market.start()  # returns at once: history, feed server and client start in background
        self.market_bridge.start()

    def _refdata_ready(self, ref: RefData) -> None:
        self.pricer.refresh_products()
        self.blotter.model.set_refdata(ref)
        self.blotter.fill_filter_choices()
        self.reload_blotter()
        self.positions.reload()  # a snapshot read while the demo desk was seeding is stale
        self.conflicts_panel.refresh()

    def reload_blotter(self) -> None:
        """(Re)load every current trade, first rows visible immediately."""
        repo = self.ctx.repo
        self.blotter.model.clear()
        self.blotter.count_label.setText("Loading…")

        def load(jc: JobContext) -> int:
            total = max(repo.count_current(), 1)
            done = 0
            for chunk in repo.blotter_chunks(CHUNK_ROWS, cancelled=jc.cancelled,
                                             first_chunk_rows=FIRST_CHUNK_ROWS):  # fmt: skip
                jc.partial(chunk)
                done += len(chunk["row_id"])
                jc.progress(done / total, f"{done:,} rows")
            return done

        self.ctx.runner.submit("Loading blotter", load, on_partial=self.blotter.model.append_chunk,
                               on_result=self._blotter_loaded, on_error=self._fatal_store_error,
                               key="blotter-load")  # fmt: skip

    def _blotter_loaded(self, n: int) -> None:
        self.blotter.update_count()
        self.blotter.fill_filter_choices()
        self._update_store_status()
        log.info("Blotter loaded: %s trades", f"{n:,}")
        if not self.ready:
            self.ready = True
            self.sig_ready.emit()

    def _update_store_status(self) -> None:
        n = self.blotter.model.total_rows
        demo_note = " (incl. DEMO books)" if any(
            b.is_demo for b in self.ctx.trading.refdata.books.values()
        ) else ""  # fmt: skip
        self.store_status.setText(f"Local store: OK · {n:,} trades{demo_note}")
        self.store_status.setToolTip(str(self.ctx.settings.store_path))

    def _fatal_store_error(self, message: str) -> None:
        self.store_status.setText("Local store: ERROR")
        self.store_status.setToolTip(message)
        QMessageBox.critical(self, "Local store", message)

    # -- trade changes ---------------------------------------------------------------------------
    def _on_trades_changed(self, trade_uuids: list[uuid.UUID], kind: str) -> None:
        self._pending.update(trade_uuids)
        if not self._flush.isActive():
            self._flush.start()

    def _load_pending(self) -> None:
        ids, self._pending = list(self._pending), set()
        repo = self.ctx.repo

        def load(_jc: JobContext) -> dict[str, Any]:
            return repo.blotter_rows(ids)

        self.ctx.runner.submit("Refreshing trades", load, on_result=self._apply_updates)

    def _apply_updates(self, rows: dict[str, Any]) -> None:
        self.blotter.model.upsert(rows)  # one merge for the whole burst
        self.blotter.update_count()
        self._update_store_status()
        if self._select_after and self.blotter.select_trade(self._select_after):
            self._select_after = None

    # -- users -----------------------------------------------------------------------------------
    def set_principal(self, principal: Principal, note: str = "") -> None:
        """Make ``principal`` the signed-in user everywhere and disable (not hide) what they may
        not do, with a tooltip saying why."""
        self.ctx.trading.set_principal(principal)
        self.blotter.principal = principal
        self.limits_panel.set_principal(principal)
        self.approvals_panel.set_principal(principal)
        self.conflicts_panel.update_permissions()
        self.audit_panel.apply_permissions()
        reason = why_not(principal, Action.CAPTURE)
        self.act_new.setEnabled(reason is None)
        self.act_new.setToolTip(reason or "Capture a new trade")
        if principal.is_local_owner:
            self.user_status.setText(f"User: {principal.username} · single-user")
            self.user_status.setToolTip("No users are configured on this workstation and no desk "
                                        "database is set: everything is allowed.")  # fmt: skip
        else:
            books = ", ".join(sorted(principal.books)) or "none"
            self.user_status.setText(f"User: {principal.description}"
                                     + (" · offline" if note.startswith("Working offline")
                                        else ""))  # fmt: skip
            self.user_status.setToolTip(f"Books: {books}" + (f"\n{note}" if note else ""))
        can_switch = self.ctx.signin is not None and (
            self.ctx.central is not None or not principal.is_local_owner
        )
        self.act_sign_out.setEnabled(can_switch)
        self.act_sign_out.setToolTip("" if can_switch else "Single-user workstation: no users "
                                     "are configured, so there is nobody to switch to.")  # fmt: skip
        if note:
            self.show_message(note)
        self._restart_sync(principal)

    # -- desk database sync ------------------------------------------------------------------
    def _restart_sync(self, principal: Principal) -> None:
        """Run the sync worker as ``principal`` (stopping the previous user's), when a desk
        database is configured and the user signed in with a password this session."""
        self._stop_sync()
        connect = self.ctx.sync_connect
        if connect is None or principal.is_local_owner:
            return
        from app.sync.engine import SyncEngine

        self.sync_engine: Any = SyncEngine(self.ctx.store, self.ctx.bus, connect,
                                      username=principal.username)  # fmt: skip
        self.sync_engine.start()

    def _stop_sync(self) -> None:
        engine = getattr(self, "sync_engine", None)
        self.sync_engine = None
        if engine is not None:
            engine.stop()

    def sign_out(self) -> None:
        """Sign out and ask for the next user; giving up (Quit) closes the workstation."""
        from app.views.login_dialog import LoginDialog

        if self.ctx.signin is None:
            return
        dlg = LoginDialog(self.ctx.signin, self.ctx.runner, self.ctx.central, parent=self)
        if dlg.exec() and dlg.result_ is not None:
            res = dlg.result_
            self.ctx.sync_connect = dlg.sync_connect
            self.set_principal(res.principal, res.note)
            self.show_message(f"Signed in as {res.principal.description}")
            return
        self.close()

    # -- actions ---------------------------------------------------------------------------------
    def new_trade(self) -> None:
        from app.views.ticket import TicketDialog

        reason = why_not(self.ctx.trading.principal, Action.CAPTURE)
        if reason is not None:
            QMessageBox.information(self, "New trade", reason)
            return
        dlg = TicketDialog(self.ctx.trading, parent=self)
        if dlg.exec() and dlg.saved is not None:
            self._select_after = dlg.saved.trade_uuid.hex
            self.show_message(f"Trade {dlg.saved.trade_uuid.hex[:8]} booked")

    def _on_option_booked(self, record: Any) -> None:
        self._select_after = record.trade_uuid.hex
        self.show_message(f"Option {record.trade_uuid.hex[:8]} booked from the pricer")

    def open_trade(self, trade_uuid_hex: str) -> None:
        from app.views.ticket import TicketDialog

        try:
            rec = self.ctx.repo.get(uuid.UUID(trade_uuid_hex))
        except (KeyError, StoreError) as exc:
            QMessageBox.warning(self, "Open trade", str(exc))
            return
        dlg = TicketDialog(self.ctx.trading, rec, parent=self)
        if dlg.exec() and dlg.saved is not None:
            self.show_message(f"Trade {trade_uuid_hex[:8]} is now version {dlg.saved.version} "
                              f"({dlg.saved.status.label})")  # fmt: skip

    def cancel_trade(self, trade_uuid_hex: str) -> None:
        """Cancel a trade from the blotter (asks for the reason)."""
        try:
            rec = self.ctx.repo.get(uuid.UUID(trade_uuid_hex))
        except (KeyError, StoreError) as exc:
            QMessageBox.warning(self, "Cancel trade", str(exc))
            return
        reason, ok = QInputDialog.getText(self, "Cancel trade",
                                          f"Reason for cancelling {trade_uuid_hex[:8]}:")  # fmt: skip
        if not ok:
            return
        trading = self.ctx.trading

        def work(_jc: JobContext) -> Any:
            try:
                return trading.cancel(rec.trade_uuid, rec.version, reason)
            except (ValueError, PermissionDenied) as exc:
                return exc

        self.ctx.runner.submit("Cancel trade", work,
                               on_result=lambda out: self._trade_written(out, "cancelled"),
                               on_error=lambda m: self._warn("Cancel trade", m))  # fmt: skip

    def advance_trade(self, trade_uuid_hex: str, version: int, to_status: TradeStatus) -> None:
        """Move a trade one lifecycle step (blotter context menu > Lifecycle)."""
        trading = self.ctx.trading

        def work(_jc: JobContext) -> Any:
            try:
                return trading.advance(uuid.UUID(trade_uuid_hex), version, to_status)
            except (ValueError, KeyError, PermissionDenied) as exc:
                return exc

        self.ctx.runner.submit("Lifecycle step", work,
                               on_result=lambda out: self._trade_written(out, to_status.label),
                               on_error=lambda m: self._warn("Lifecycle", m))  # fmt: skip

    def _trade_written(self, out: Any, what: str) -> None:
        if isinstance(out, Exception):
            self._warn("Trade not changed", str(out).strip("'\""))
            return
        self.show_message(f"Trade {out.trade_uuid.hex[:8]} {what.lower()} (version {out.version})")

    def import_trades(self, path: str | None = None) -> None:
        from app.views.import_dialog import ImportDialog

        if not path:
            path, _ = QFileDialog.getOpenFileName(
                self, "Import trades", "", "Trade files (*.csv *.xlsx);;All files (*)"
            )
        if not path:
            return
        dlg = ImportDialog(self.ctx.trading, Path(path), self)
        if dlg.exec():
            self.show_message(f"Imported {len(dlg.imported):,} trades from {Path(path).name}")

    def export_trades(self, path: str | None = None) -> None:
        if not path:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export all trades", "trades.csv", "CSV (*.csv);;Excel (*.xlsx)"
            )
        if not path:
            return
        from app.services.trade_io import export_trades

        repo, ref = self.ctx.repo, self.ctx.trading.refdata

        def work(jc: JobContext) -> str:
            records = repo.current_records()
            jc.progress(0.5, "writing")
            export_trades(records, ref, Path(path))
            return f"Exported {len(records):,} trades to {path}"

        self.ctx.runner.submit("Export trades", work, on_result=self.show_message,
                               on_error=lambda m: self._warn("Export", m))  # fmt: skip

    def backup_store(self, path: str | None = None, overwrite: bool = False) -> None:
        """File → Back up local store…: copy the store with SQLite's online backup API in a job.

        Without ``path`` a save dialog asks for one (and itself confirms replacing a file)."""
        if not path:
            import time

            default = Path.home() / f"quantaenergi-store-{time.strftime('%Y%m%d-%H%M')}.db"
            path, _ = QFileDialog.getSaveFileName(self, "Back up local store", str(default),
                                                  "SQLite store (*.db);;All files (*)")  # fmt: skip
            if not path:
                return
            overwrite = True  # the dialog has already asked before replacing an existing file
        store, dest = self.ctx.store, path

        def work(jc: JobContext) -> str:
            out = store.backup(dest, overwrite=overwrite,
                               progress=lambda f: jc.progress(f, "copying"))  # fmt: skip
            return f"Backed up the local store to {out} ({out.stat().st_size:,} bytes)"

        self.ctx.runner.submit("Back up local store", work, on_result=self.show_message,
                               on_error=lambda m: self._warn("Back up local store", m))  # fmt: skip

    def reseed_demo(self) -> None:
        self._demo_job(reseed=True)

    def clear_demo(self) -> None:
        if QMessageBox.question(self, "Clear demo data",
                                "Remove the DEMO books, their trades and the demo counterparties?"
                                " Your own books are not touched.") != QMessageBox.StandardButton.Yes:  # fmt: skip
            return
        self._demo_job(reseed=False)

    def _demo_job(self, reseed: bool) -> None:
        ctx = self.ctx

        def work(jc: JobContext) -> str:
            removed = demo.clear_demo(ctx.store)
            msg = f"Removed {removed:,} demo trade versions"
            if reseed:
                n = demo.seed_demo(ctx.store, 5000, progress=lambda f: jc.progress(f, "seeding"))
                msg += f"; seeded {n:,} demo trades"
            ctx.trading.refresh_refdata()
            return msg

        def done(msg: str) -> None:
            self.show_message(msg)
            self.blotter.model.set_refdata(ctx.trading.refdata)
            self.blotter.fill_filter_choices()
            ctx.bus.publish(TRADES_RELOAD)

        ctx.runner.submit("Demo data", work, on_result=done,
                          on_error=lambda m: self._warn("Demo data", m))  # fmt: skip

    def about(self) -> None:
        QMessageBox.about(self, "About QuantaEnergi Workstation",
                          f"QuantaEnergi Workstation {__version__}\n\nData directory: "
                          f"{self.ctx.settings.data_dir}\nLog file: {self.ctx.settings.log_dir}")  # fmt: skip

    def _warn(self, title: str, message: str) -> None:
        QMessageBox.warning(self, title, message)

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)
        log.info("%s", text)

    def _on_conflict_count(self, n: int) -> None:
        """Open sync conflicts: counted in the Conflicts dock's title, announced when new."""
        self.docks["conflicts_dock"].setWindowTitle(f"Conflicts ({n})" if n else "Conflicts")
        if n > self._conflicts_seen:
            self.show_message(f"{n} sync conflict(s) need your decision: see the Conflicts dock")
        self._conflicts_seen = n

    def _on_alert(self, message: str) -> None:
        n = self.log_panel.alerts
        self.alerts_label.setText(f"⚠ {n} alert(s)" if n else "")
        self.alerts_label.setToolTip(message)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            if not self._restored:  # dock sizes only apply once the window has a size
                self.resizeDocks([self.docks["blotter_dock"], self.docks["log_dock"]],
                                 [int(self.height() * 0.72), int(self.height() * 0.2)],
                                 Qt.Orientation.Vertical)  # fmt: skip
                self.resizeDocks([self.docks["market_watch_dock"]],
                                 [max(560, int(self.width() * 0.4))],
                                 Qt.Orientation.Horizontal)  # fmt: skip
                self.resizeDocks([self.docks["market_watch_dock"], self.docks["forward_curve_dock"]],
                                 [int(self.height() * 0.55), int(self.height() * 0.4)],
                                 Qt.Orientation.Vertical)  # fmt: skip

    # -- shutdown ----------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if TicketDialog.hooks is self.whatif:
            TicketDialog.hooks = None
        if TicketDialog.approvals is not None and TicketDialog.approvals.service is self.approvals:
            TicketDialog.approvals = None
        self.approvals_panel.detach()
        self._stop_sync()
        self.layouts.save_session(self)
        self.market_bridge.stop()
        self.ctx.runner.shutdown()
        self.bridge.detach()
        super().closeEvent(event)
