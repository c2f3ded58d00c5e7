"""A workstation process for the sync fault tests: books trades, syncs, logs its history.

    python -m tests.sync_proc --dir D --dsn DSN --user U --book B --n N --history H.jsonl
        [--start K] [--sync-every K] [--kill-at before_local_commit|after_local_commit:K]
        [--amend-hot UUID,UUID,...] [--drain]

Every operation is logged as JSON lines ``{"desk", "op", "id", "version", "price", "phase"}``
with phase ``invoke`` before the local write and ``ok`` after its commit returned (an
acknowledged write: the trader saw it booked), or ``fail``. After each sync the process logs
``{"phase": "read", "checkpoint": seq}`` (monotonic reads are checked on these). ``QE_FAULT_POINT``
(app.sync.faults) arms the crash points inside the sync worker; ``--kill-at`` arms the two on
the local write path. ``--drain`` ends by syncing until nothing is pending.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, select

from app.models.demo import ensure_reference_data
from app.models.entities import OutboxItem, SyncState
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.trading import TradingService
from app.sync.engine import SyncEngine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--dsn", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--book", default="DESK-A")
    p.add_argument("--n", type=int, default=0)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--sync-every", type=int, default=5)
    p.add_argument("--kill-at", default="")
    p.add_argument("--amend-hot", default="")
    p.add_argument("--history", required=True)
    p.add_argument("--drain", action="store_true")
    a = p.parse_args(argv)

    store = Store.open_file(Path(a.dir) / "store.db")
    ensure_reference_data(store)
    bus = EventBus()

    def connect() -> Any:
        return psycopg.connect(a.dsn, connect_timeout=3, keepalives=1, keepalives_idle=1,
                               keepalives_interval=1, keepalives_count=2, tcp_user_timeout=3000)  # fmt: skip

    engine = SyncEngine(store, bus, connect, username=a.user, listen=False, batch=50)
    trading = TradingService(TradeRepository(store), bus, user=a.user)
    hist = open(a.history, "a", buffering=1)  # noqa: SIM115 - line-buffered log, closed at exit
    kill_name, _, kill_n = a.kill_at.partition(":")
    kill_k = int(kill_n or 1)

    def log(**rec: Any) -> None:
        rec["desk"] = a.user
        rec["t"] = time.time()
        hist.write(json.dumps(rec) + "\n")
        hist.flush()
        os.fsync(hist.fileno())

    def checkpoint() -> int:
        with store.session() as s:
            row = s.get(SyncState, "pull_seq")
            return int(row.value) if row and row.value else 0

    def sync() -> None:
        try:
            engine.sync_once()
            log(phase="read", checkpoint=checkpoint(), rewinds=engine.counters.rewinds)
        except Exception as exc:  # the network or the server is down: keep working offline
            engine._close()
            log(phase="sync_fail", error=str(exc)[:200])

    if a.n and not trading.refdata.book_by_name(a.book):
        sync()
        trading.refresh_refdata()
    hot = [uuid.UUID(h) for h in a.amend_hot.split(",") if h]
    for i in range(a.start, a.start + a.n):
        if hot:
            tid = hot[i % len(hot)]
            try:
                rec = trading.repo.get(tid)
            except KeyError:
                sync()
                continue
            price = f"{50 + (i % 97) + 0.01 * (hash(a.user) % 100):.2f}"
            log(op="amend", id=tid.hex, version=rec.version + 1, price=price, phase="invoke")
            try:
                raw = trading.raw_from_record(rec)
                raw["price"] = price
                new = trading.amend(tid, rec.version, raw)
                log(op="amend", id=tid.hex, version=new.version, price=price, phase="ok")
            except Exception as exc:
                log(op="amend", id=tid.hex, price=price, phase="fail", error=str(exc)[:200])
        else:
            tid = uuid.uuid5(uuid.NAMESPACE_URL, f"{a.user}/{i}")
            price = f"{60 + i % 40}.{i % 100:02d}"
            log(op="capture", id=tid.hex, version=1, price=price, phase="invoke")
            if kill_name == "before_local_commit" and i - a.start + 1 == kill_k:
                os.kill(os.getpid(), signal.SIGKILL)
            raw = {
                "trade_uuid": tid, "book": a.book, "counterparty": "Northwind Energy AG",
                "product": "CR-BRENT", "instrument": "Future", "side": "Buy" if i % 2 else "Sell",
                "quantity": str(100 + i), "price": price,
                "trade_date": dt.date.today().isoformat(), "delivery_start": "2027-01-01",
                "delivery_end": "2027-01-31",
            }  # fmt: skip
            try:
                trading.capture(raw)
                log(op="capture", id=tid.hex, version=1, price=price, phase="ok")
            except Exception as exc:
                log(op="capture", id=tid.hex, price=price, phase="fail", error=str(exc)[:200])
            if kill_name == "after_local_commit" and i - a.start + 1 == kill_k:
                os.kill(os.getpid(), signal.SIGKILL)
        if (i + 1) % a.sync_every == 0:
            sync()
    if a.drain:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sync()
            with store.session() as s:
                left = s.scalar(select(func.count()).where(OutboxItem.state == "pending"))
            if not left:
                sync()  # pull what others pushed meanwhile
                break
            time.sleep(0.2)
    log(phase="exit")
    engine.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
