"""The workstation window runs the sync worker for the signed-in user (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytestqt.qtbot import QtBot

from app.models.entities import UserRole
from app.services.auth import Principal
from tests.desk import CentralDesk
from tests.gui_helpers import close_window, open_window

pytestmark = pytest.mark.postgres


def test_signed_in_window_syncs_and_shows_it(qtbot: QtBot, tmp_path: Path,
                                             desk_server: Any) -> None:  # fmt: skip
    desk = CentralDesk.create(desk_server, "window1")
    desk.add_user("alice", "TRADER", ("DESK-A",))
    win = open_window(qtbot, tmp_path / "data")
    try:
        win.ctx.sync_connect = lambda: psycopg.connect(desk.dsn("alice"))
        win.set_principal(Principal("alice", UserRole.TRADER, frozenset({"DESK-A"})))
        assert win.sync_engine is not None
        qtbot.waitUntil(lambda: "online" in win.central_status.text(), timeout=20_000)
        win.ctx.trading.refresh_refdata()  # DESK-A arrived with the first pull
        rec = win.ctx.trading.capture({
            "book": "DESK-A", "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
            "instrument": "Future", "side": "Buy", "quantity": "1000", "price": "81.5",
            "trade_date": dt.date.today().isoformat(), "delivery_start": "2027-01-01",
            "delivery_end": "2027-01-31",
        })  # fmt: skip

        def central_has_it() -> bool:
            with desk.admin() as c:
                return bool(c.execute("SELECT count(*) FROM trade WHERE trade_uuid = %s",
                                      (rec.trade_uuid,)).fetchone()[0])  # fmt: skip

        qtbot.waitUntil(central_has_it, timeout=20_000)
        qtbot.waitUntil(lambda: win.central_status.text().startswith("Central DB: online")
                        and "pending" not in win.central_status.text(), timeout=20_000)  # fmt: skip
        # signing in as the local owner (no desk user) stops the worker
        win.set_principal(Principal.local_owner("me"))
        assert win.sync_engine is None
    finally:
        close_window(win)
