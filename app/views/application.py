"""Start-up of the GUI: QApplication, logging, store, context, main window, --screenshot."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QLockFile, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication, QMessageBox

from app.feed.service import MarketDataService
from app.logging_setup import install_excepthooks, setup_logging
from app.models.repository import TradeRepository
from app.models.store import Store, StoreError
from app.models.users import UserRepository
from app.services.events import EventBus
from app.services.session import SignInService
from app.services.trading import TradingService
from app.settings import FeedOptions, Settings
from app.views.jobs import JobRunner
from app.views.log_dock import QtLogHandler
from app.views.login_dialog import central_factory
from app.views.main_window import AppContext, MainWindow

log = logging.getLogger(__name__)
SCREENSHOT_TIMEOUT_MS = 180_000


def _qt_message(kind: QtMsgType, _ctx: object, message: str) -> None:
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.WARNING}.get(kind, logging.ERROR)  # fmt: skip
    if "propagateSizeHints" in message:  # harmless offscreen-platform chatter
        return
    logging.getLogger("qt").log(level, "%s", message)


def build_context(
    settings: Settings, *, seed_demo_if_empty: bool = True, feed: FeedOptions | None = None
) -> AppContext:
    """Open the store and build services; raises :class:`StoreError` with a user message.

    ``feed`` says where live prices come from; ``None`` (tests, scripts) means no feed: the
    market-data service only shows recorded settlements. The service is started by the window.
    """
    store = Store.open_file(settings.store_path)
    try:
        store.check_writable()
    except StoreError:
        store.close()
        raise
    repo = TradeRepository(store)
    bus = EventBus()
    users = UserRepository(store)
    try:
        central = central_factory(settings.central_url)
    except ValueError as exc:  # a malformed desk database URL: sign in offline
        log.warning("Desk database not used for sign-in: %s", exc)
        central = None
    handler = QtLogHandler()
    logging.getLogger().addHandler(handler)
    return AppContext(
        settings=settings, store=store, repo=repo, trading=TradingService(repo, bus), bus=bus,
        runner=JobRunner(), log_handler=handler, market=_market_service(settings, store, feed),
        seed_demo_if_empty=seed_demo_if_empty, users=users, signin=SignInService(users),
        central=central,
    )  # fmt: skip


def sign_in_at_start(ctx: AppContext, headless: bool) -> bool | str:
    """Ask who is signing in when this workstation has users or a desk database; returns
    ``True`` (signed in, or single-user: the local owner), ``False`` (the user quit) or a
    message why it cannot be done (headless runs cannot sign in)."""
    try:
        needed = ctx.central is not None or ctx.users.has_users()
    except StoreError as exc:
        return str(exc)
    if not needed:
        return True
    if headless:
        return ("This workstation has users (or a desk database): a screenshot run cannot sign "
                "in. Use a data directory without users (--data-dir).")  # fmt: skip
    from app.views.login_dialog import LoginDialog

    dlg = LoginDialog(ctx.signin, ctx.runner, ctx.central)
    if not dlg.exec() or dlg.result_ is None:
        return False
    ctx.trading.set_principal(dlg.result_.principal)
    ctx.signin_note = dlg.result_.note
    ctx.sync_connect = dlg.sync_connect
    return True


def _market_service(
    settings: Settings, store: Store, feed: FeedOptions | None
) -> MarketDataService:
    url = (feed.url if feed else None) or (settings.feed_url if feed else None)
    if feed is None or (not feed.enabled and url is None):
        return MarketDataService(store, settings.log_dir, embedded=False)
    if url is not None:
        from app.feed.client import load_token

        token = os.environ.get("QE_FEED_TOKEN") or load_token(url)
        return MarketDataService(store, settings.log_dir, url=url, token=token)
    return MarketDataService(store, settings.log_dir, mode=feed.mode, speed=feed.speed)


def close_context(ctx: AppContext) -> None:
    ctx.market.stop()
    ctx.runner.shutdown()
    logging.getLogger().removeHandler(ctx.log_handler)
    ctx.store.close()


def run_gui(
    data_dir: str | None,
    screenshot: Path | None = None,
    demo_action: str | None = None,
    seed_demo_if_empty: bool = True,
    feed: FeedOptions | None = None,
) -> int:
    """Run the workstation; returns the process exit code."""
    settings = Settings.load(data_dir)
    settings.ensure_dirs()
    log_path = setup_logging(settings.log_dir)
    install_excepthooks()
    qInstallMessageHandler(_qt_message)
    # The feed client and recorder threads run Python too: hand the GIL over every 1 ms (default
    # 5 ms) so the GUI thread gets it back quickly after a burst (Qt event-loop lag).
    sys.setswitchinterval(0.001)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("QuantaEnergi Workstation")
    app.setOrganizationName("QuantaEnergi")

    lock = QLockFile(str(settings.data_dir / "workstation.lock"))
    lock.setStaleLockTime(0)
    if not lock.tryLock(100):
        return _fail(screenshot, f"Another QuantaEnergi Workstation is using {settings.data_dir}. "
                     "Close it, or start with --data-dir pointing elsewhere.")  # fmt: skip
    try:
        ctx = build_context(
            settings, seed_demo_if_empty=seed_demo_if_empty, feed=feed or FeedOptions()
        )
    except StoreError as exc:
        return _fail(screenshot, str(exc))
    log.info("QuantaEnergi starting; data dir %s; log %s", settings.data_dir, log_path)
    if demo_action:
        from app.models import demo

        try:
            removed = demo.clear_demo(ctx.store)
            log.info("Cleared %s demo trade versions", removed)
            if demo_action == "reseed":
                demo.seed_demo(ctx.store, 5000)
        except (ValueError, StoreError) as exc:
            close_context(ctx)
            return _fail(screenshot, str(exc))
        ctx.seed_demo_if_empty = False
    signed = sign_in_at_start(ctx, headless=screenshot is not None)
    if signed is not True:
        close_context(ctx)
        lock.unlock()
        return 0 if signed is False else _fail(screenshot, str(signed))
    window = MainWindow(ctx)
    window.show()
    code = 0
    if screenshot is not None:
        code = _arm_screenshot(app, window, screenshot)
    # Everything built so far lives as long as the window: keep it out of the cyclic garbage
    # collector's full passes (70-90 ms pauses with thousands of ticking rows, measured).
    gc.collect()
    gc.freeze()
    collector = gui_thread_gc()
    rc = app.exec()
    collector.timer.stop()
    close_context(ctx)
    lock.unlock()
    return rc or code or _screenshot_status.get("rc", 0)


def gui_thread_gc(interval_s: float = 1.0) -> Any:
    """Run Python's cyclic garbage collector only on the GUI thread, on a timer.

    Left automatic, the collector runs in whichever thread allocates when a threshold is
    crossed -- often a job-runner worker -- and may then destroy Qt objects of a closed dialog
    or window there: shiboken needs the GIL inside ``~QObject`` while the GUI thread, holding the
    GIL, waits for the same object's mutex (a deadlock seen in the GUI tests). pyqtgraph's
    ``GarbageCollector`` disables automatic collection and collects from a ``QTimer``. Keep the
    returned object alive.
    """
    from pyqtgraph.util.garbage_collector import GarbageCollector

    return GarbageCollector(interval=interval_s)


_screenshot_status: dict[str, int] = {}


def _arm_screenshot(app: QApplication, window: MainWindow, path: Path) -> int:
    def shoot() -> None:
        app.processEvents()
        path.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(path), "PNG")
        if ok:
            print(f"Screenshot written to {path}")
            _screenshot_status["rc"] = 0
        else:
            print(f"error: could not write {path}", file=sys.stderr)
            _screenshot_status["rc"] = 1
        window.close()
        app.quit()

    def timeout() -> None:
        print("error: the workstation did not become ready in time", file=sys.stderr)
        _screenshot_status["rc"] = 1
        window.close()
        app.quit()

    if QApplication.platformName() == "offscreen":
        # The offscreen screen clamps restored geometry oddly: shoot at the documented size.
        window.resize(1500, 860)
    window.sig_ready.connect(lambda: QTimer.singleShot(400, shoot))
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, timeout)
    return 0


def _fail(headless: object, message: str) -> int:
    log.error("%s", message)
    if headless is None and QApplication.instance() is not None:
        QMessageBox.critical(None, "QuantaEnergi Workstation", message)
    else:
        print(f"error: {message}", file=sys.stderr)
    return 1
