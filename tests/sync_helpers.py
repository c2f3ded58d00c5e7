"""A workstation in a test: its own SQLite store, trading service and sync engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import psycopg

from app.models.demo import ensure_reference_data
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.trading import TradingService
from app.sync.engine import SyncEngine

LEI_A = "5493001KJTIIGC8Y1R12"


class Workstation:
    """One desk's workstation signed in as ``user`` (see tests/desk.py for the central side)."""

    def __init__(self, path: Path, desk: Any, user: str, *, port: int | None = None,
                 listen: bool = False, **engine_kw: Any) -> None:  # fmt: skip
        self.path = path
        self.store = Store.open_file(path / "store.db")
        ensure_reference_data(self.store)
        self.bus = EventBus()
        self.repo = TradeRepository(self.store)
        self.user = user
        self.desk = desk
        self.dsn = desk.dsn(user, port=port)
        self.engine = SyncEngine(self.store, self.bus, self.connect, username=user,
                                 listen=listen, **engine_kw)  # fmt: skip
        conn = self.connect()
        try:
            self.engine.pull_refdata(conn)
        finally:
            conn.close()
        self.trading = TradingService(self.repo, self.bus, user=user)

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, connect_timeout=3, keepalives=1, keepalives_idle=1,
                               keepalives_interval=1, keepalives_count=2,
                               tcp_user_timeout=3000)  # fmt: skip

    def book(self, book: str = "DESK-A", **kw: Any) -> Any:
        raw = {
            "book": book, "counterparty": "Northwind Energy AG", "product": "CR-BRENT",
            "instrument": "Future", "side": "Buy", "quantity": "1000", "price": "81.5",
            "trade_date": dt.date.today().isoformat(), "delivery_start": "2027-01-01",
            "delivery_end": "2027-01-31",
        }  # fmt: skip
        raw.update(kw)
        return self.trading.capture(raw)

    def amend(self, rec: Any, **kw: Any) -> Any:
        raw = self.trading.raw_from_record(rec)
        raw.update(kw)
        return self.trading.amend(rec.trade_uuid, rec.version, raw)

    def close(self) -> None:
        self.engine.stop()
        self.store.close()
