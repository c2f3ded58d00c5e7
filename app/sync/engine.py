"""The sync worker: local SQLite store <-> central PostgreSQL (see docs/sync.md).

Push: pending outbox rows, oldest first, in batches through the central ``qe_apply`` function.
Each change carries its idempotency key (``op_id``): a retry after a lost reply, a crash or a
cut at COMMIT is answered "duplicate" and applied once; the same key with another payload is
rejected. Results are acknowledged locally in one SQLite transaction.

Pull: rows of the server's ``change_log`` after the local checkpoint, in ``seq`` order (the
server assigns ``seq`` in commit order), applied to the local store in ONE SQLite transaction
together with the new checkpoint. The checkpoint also remembers the ``op_id`` found at its
``seq``: when the server no longer has that row (a database restored from an older dump), the
client rewinds, re-reads, and re-queues every acknowledged change the server lost.

Conflicts: a local version that meets a different central version of the same trade (pushed
from a stale base, or pulled while still pending) is moved aside into ``sync_conflict`` with
the central version; nothing is overwritten and the user decides (app.sync.conflicts).

Wake-ups: LISTEN on the server's ``qe_changes`` channel (a hint only: a lost notification is
covered by re-reading from the checkpoint after re-listening, and by a slow fallback poll),
local writes (``TRADES_CHANGED``), and a backoff timer while offline.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update

from app.models import audit
from app.models.entities import (
    ApprovalRequest,
    Book,
    Counterparty,
    LimitKind,
    OutboxItem,
    RiskLimit,
    SyncConflict,
    SyncState,
    Trade,
)
from app.models.payload import canonical, parse_ts
from app.models.repository import RefNames
from app.models.store import Store
from app.models.types import QUANTITY_PLACES, utcnow
from app.services.events import (
    APPROVALS_CHANGED,
    SYNC_CONFLICTS,
    SYNC_STATUS,
    TRADES_CHANGED,
    EventBus,
)
from app.sync import faults
from app.sync.status import SyncStatus

log = logging.getLogger(__name__)

Connect = Callable[[], Any]  # -> psycopg.Connection (autocommit off)

#: Clock difference to the server above which the user is warned.
SKEW_WARN_S = 120.0
#: Longest wait between reconnection attempts (with full jitter: 0.5x-1.5x). Short, so the
#: outbox drains within seconds of a healed network; one failed attempt costs one SYN.
MAX_BACKOFF_S = 2.0


class SchemaMismatch(Exception):
    """The central schema revision differs from this application's."""


@dataclass
class SyncCounters:
    """Totals since start (for tests and the bench)."""

    pushed: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    pulled: int = 0
    rewinds: int = 0
    requeued: int = 0
    cycles: int = 0
    errors: list[str] = field(default_factory=list)


def _get_state(s: Any, key: str, default: str = "") -> str:
    row = s.get(SyncState, key)
    return row.value if row is not None else default


def _set_state(s: Any, key: str, value: str) -> None:
    row = s.get(SyncState, key)
    if row is None:
        s.add(SyncState(key=key, value=value))
    else:
        row.value = value


class SyncEngine:
    """Replicates one local store with the central database as one signed-in user.

    ``connect`` opens a new psycopg connection as that user (autocommit off). Use
    :meth:`start`/:meth:`stop` for the background worker and listener threads, or call
    :meth:`sync_once` directly (tests, CLI).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        connect: Connect,
        *,
        username: str,
        schema_head: str | None = None,
        batch: int = 1000,
        pull_batch: int = 1000,
        poll_s: float = 15.0,
        listen: bool = True,
        op_timeout_s: float = 20.0,
    ) -> None:
        self.store = store
        self.bus = bus
        self._connect = connect
        self.username = username
        self.schema_head = schema_head or store.schema_revision
        self.batch = batch
        self.pull_batch = pull_batch
        self.poll_s = poll_s
        self.listen = listen
        self.counters = SyncCounters()
        self.op_timeout_s = op_timeout_s
        self._kicked = 0.0  # monotonic time of the last progress in a cycle; 0: idle
        self._watchdog: threading.Thread | None = None
        self._conn: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._status = SyncStatus(state="connecting")
        self._skew: float | None = None
        self._last_sync: dt.datetime | None = None
        self._lock = threading.Lock()  # one sync cycle at a time
        with store.session() as s:
            self.origin = audit.workstation_id(s)
            last = _get_state(s, "last_sync")
            self._last_sync = dt.datetime.fromisoformat(last) if last else None
        bus.subscribe(TRADES_CHANGED, self._on_local_change)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker (and listener) threads."""
        self._stop.clear()
        worker = threading.Thread(target=self._run, name="qe-sync", daemon=True)
        self._threads = [worker]
        if self.listen:
            self._threads.append(
                threading.Thread(target=self._listen_loop, name="qe-sync-listen", daemon=True)
            )
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads and close the connection (pending changes stay in the outbox)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        self._close()
        self.bus.unsubscribe(TRADES_CHANGED, self._on_local_change)

    def wake(self) -> None:
        """Ask the worker to sync now."""
        self._wake.set()

    def _on_local_change(self, **_: Any) -> None:
        self._wake.set()

    @property
    def status(self) -> SyncStatus:
        return self._status

    # -- worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.sync_once()
                backoff = 0.5
                timeout = self.poll_s
            except SchemaMismatch as exc:
                self._publish("incompatible", message=str(exc))
                self._close()
                timeout = 60.0
            except Exception as exc:  # connection problems: offline, retry with backoff
                if getattr(exc, "category", "") == "wrong schema version":
                    # app.sync.connection.CentralSchemaMismatch: stay offline, write nothing
                    self._publish("incompatible", message=str(exc))
                    self._close()
                    self._wake.wait(60.0)
                    self._wake.clear()
                    continue
                if not _is_connection_error(exc):
                    log.exception("Sync cycle failed")
                self.counters.errors.append(f"{type(exc).__name__}: {exc}")
                self._close()
                self._publish("offline", message=_short(exc))
                timeout = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            self._wake.wait(timeout)
            self._wake.clear()

    def _listen_loop(self) -> None:
        """LISTEN for the server's change notifications; wake the worker on each."""
        backoff = 0.5
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.autocommit = True
                conn.execute("LISTEN qe_changes")
                backoff = 0.5
                self._wake.set()  # (re-)listening: re-read from the checkpoint
                while not self._stop.is_set():
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        self._wake.set()
                    conn.execute("SELECT 1")  # notices a dead connection
            except Exception as exc:
                if not self._stop.is_set():
                    log.info("Sync listener lost its connection: %s", _short(exc))
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()

    # -- watchdog: no call may hang, whatever the network does ---------------------------------
    def _kick(self) -> None:
        self._kicked = time.monotonic()

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None or not self._watchdog.is_alive():
            self._watchdog = threading.Thread(target=self._watch, name="qe-sync-watchdog",
                                              daemon=True)  # fmt: skip
            self._watchdog.start()

    def _watch(self) -> None:
        """Abort the connection when a cycle makes no progress for ``op_timeout_s``.

        libpq's keepalives and TCP_USER_TIMEOUT do not notice a black hole that still
        acknowledges packets (a stateful firewall, a hung proxy) while we wait for a reply;
        shutting the socket down makes the blocked call fail at once.
        """
        while not self._stop.wait(0.25):
            kicked, conn = self._kicked, self._conn
            if kicked and conn is not None and time.monotonic() - kicked > self.op_timeout_s:
                log.warning("Desk database did not answer for %.0f s: dropping the connection",
                            self.op_timeout_s)  # fmt: skip
                _shutdown_socket(conn)
                self._kicked = time.monotonic()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def _connection(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            try:  # a server restart leaves the old connection looking open until used
                self._conn.execute("SELECT 1")
                self._conn.commit()
            except Exception:
                self._close()
        if self._conn is None or self._conn.closed:
            self._publish("connecting")
            conn = self._connect()
            try:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                who = conn.execute("SELECT qe_whoami()").fetchone()[0]
                conn.commit()
            except Exception:
                conn.close()
                raise
            server = row[0] if row else None
            if server != self.schema_head:
                conn.close()
                raise SchemaMismatch(
                    f"The desk database is at schema {server}, this workstation at "
                    f"{self.schema_head}: working offline, nothing is written centrally. "
                    "Upgrade the workstation or the desk database."
                )
            self._measure_skew(who.get("server_time"))
            self._conn = conn
        return self._conn

    def _measure_skew(self, server_time: str | None) -> None:
        if server_time:
            self._skew = (utcnow() - parse_ts(server_time)).total_seconds()

    # -- one cycle ----------------------------------------------------------------------------
    def sync_once(self) -> None:
        """Connect if needed, refresh reference data, push everything pending, pull until
        caught up. Raises on connection errors (the caller backs off)."""
        with self._lock:
            self._ensure_watchdog()
            self._kick()
            try:
                self._cycle()
            finally:
                self._kicked = 0.0

    def _cycle(self) -> None:
        conn = self._connection()
        self._publish("syncing")
        self.pull_refdata(conn)
        self._check_checkpoint(conn)  # a restored server: re-queue what it lost, then push
        self.push(conn)
        self.pull(conn)
        self.counters.cycles += 1
        self._last_sync = utcnow()
        with self.store.session() as s:
            _set_state(s, "last_sync", self._last_sync.isoformat())
        self._publish("online")

    # -- reference data -----------------------------------------------------------------------
    def pull_refdata(self, conn: Any) -> None:
        """Books, counterparties and products the desk database has and this store lacks."""
        books = conn.execute("SELECT name, description FROM book WHERE NOT is_demo").fetchall()
        cps = conn.execute(
            "SELECT name, lei, country, is_islamic FROM counterparty WHERE NOT is_demo"
        ).fetchall()
        conn.commit()
        with self.store.session() as s:
            have_books = set(s.scalars(select(Book.name)))
            have_leis = set(s.scalars(select(Counterparty.lei)))
            have_names = set(s.scalars(select(Counterparty.name)))
            for name, desc in books:
                if name not in have_books:
                    s.add(Book(name=name, description=desc or "", is_demo=False))
            for name, lei, country, islamic in cps:
                if lei not in have_leis and name not in have_names:
                    s.add(Counterparty(name=name, lei=lei, country=country,
                                       is_islamic=islamic, is_demo=False))  # fmt: skip

    # -- push ---------------------------------------------------------------------------------
    def pending_count(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).where(OutboxItem.state == "pending")) or 0)

    def push(self, conn: Any) -> int:
        """Push every pending change of this user; returns how many were acknowledged.

        The next batch is read and rendered on a helper thread while the server applies the
        current one (psycopg releases the GIL while it waits), so client and server overlap.
        """
        done = 0
        total = self.pending_count()
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="qe-sync-prep") as pool:
            nxt = pool.submit(self._prepare, 0)
            while not self._stop.is_set():
                items, text = nxt.result()
                if not items:
                    break
                nxt = pool.submit(self._prepare, items[-1].id)
                reply = conn.execute(
                    "SELECT qe_apply(%s::json, %s)", (text, self.origin)
                ).fetchone()[0]
                faults.point("push.before_commit")
                conn.commit()
                faults.point("push.after_commit")
                self._measure_skew(reply.get("server_time"))
                done += self._acknowledge(conn, items, reply["results"])
                self._kick()
                if total > self.batch:
                    self._publish("syncing", progress=(min(done, total), total))
            nxt.cancel()
        return done

    def _prepare(self, after_id: int) -> tuple[list[OutboxItem], str]:
        """The next batch of this user's pending changes after outbox id ``after_id``, and
        the JSON text of its operations."""
        with self.store.session() as s:
            items = list(
                s.scalars(
                    select(OutboxItem)
                    .where(
                        OutboxItem.state == "pending",
                        OutboxItem.username == self.username,
                        OutboxItem.id > after_id,
                    )
                    .order_by(OutboxItem.id)
                    .limit(self.batch)
                )
            )
            return items, json.dumps(self._build_ops(s, items)) if items else ""

    def _build_ops(self, s: Any, items: Sequence[OutboxItem]) -> list[dict[str, Any]]:
        refs = RefNames(s)
        trades = {
            (t.trade_uuid.hex, t.version): t
            for t in _versions(s, [(i.entity_key, i.version) for i in items if i.entity == "trade"])
        }
        ops = []
        for item in items:
            op: dict[str, Any] = {"op_id": item.op_id, "entity": item.entity,
                                  "version": item.version,
                                  "client_ts": audit.format_ts(item.created_at)}  # fmt: skip
            if item.entity == "trade":
                t = trades.get((item.entity_key, item.version))
                op["payload"] = canonical(refs.payload(t)) if t is not None else None
                if item.payload:  # executed under a four-eyes approval
                    op["approval"] = json.loads(item.payload).get("approval")
            else:
                op["payload"] = item.payload
            ops.append(op)
        return ops

    def _acknowledge(self, conn: Any, items: Sequence[OutboxItem], results: list[dict]) -> int:
        by_id = {r["op_id"]: r for r in results}
        acked = 0
        conflicts: list[tuple[OutboxItem, Any]] = []
        now = utcnow()
        rows: list[dict[str, Any]] = []
        head: tuple[int, str] | None = None
        for item in items:
            r = by_id.get(item.op_id)
            if r is None:
                continue
            status = r["status"]
            values: dict[str, Any] = {"id": item.id, "attempts": item.attempts + 1}
            if status in ("applied", "duplicate"):
                values.update(state="acked", server_seq=r.get("seq"), acked_at=now)
                acked += 1
                if status == "applied":
                    self.counters.pushed += 1
                else:
                    self.counters.duplicates += 1
            elif status == "conflict":
                # stays pending until _move_aside keeps it in a conflict record
                values.update(last_error=f"the desk database has version "
                                         f"{r.get('server_version')}")  # fmt: skip
                conflicts.append((item, r.get("server_version")))
                self.counters.conflicts += 1
            else:
                values.update(state="rejected", last_error=str(r.get("error", ""))[:2000])
                self.counters.rejected += 1
                log.warning("Desk database rejected change %s: %s", item.op_id, r.get("error"))
            rows.append(values)
            if r.get("audit_seq") is not None and (head is None or r["audit_seq"] > head[0]):
                head = (int(r["audit_seq"]), str(r["audit_hash"]))
        with self.store.session() as s:
            if rows:
                s.execute(update(OutboxItem), rows)  # one executemany by primary key
            if head is not None:  # the newest central chain head this push saw
                audit.remember_head(s, *head)
        if conflicts:
            ids = []
            for item, _server_version in conflicts:
                remote = conn.execute(
                    "SELECT qe_trade_payload(t) FROM trade t "
                    "WHERE t.trade_uuid = %s::uuid AND t.is_current",
                    (item.entity_key,),
                ).fetchone()
                conn.commit()
                with self.store.session() as s:
                    cid = self._move_aside(
                        s, item.entity_key, item.version,
                        remote[0] if remote else None,
                    )  # fmt: skip
                if cid is not None:
                    ids.append(cid)
            if ids:
                self.bus.publish(SYNC_CONFLICTS, conflict_ids=ids)
                self.bus.publish(TRADES_CHANGED, trade_uuids=[
                    uuid.UUID(i.entity_key) for i, _ in conflicts], kind="conflict")  # fmt: skip
        return acked

    # -- conflicts ----------------------------------------------------------------------------
    def _move_aside(
        self, s: Any, key: str, from_version: int, remote: dict[str, Any] | None
    ) -> int | None:
        """Move the local, unacknowledged versions ``>= from_version`` of trade ``key`` into a
        conflict record with the central version; the trade reverts to its last central
        version. Returns the conflict id (``None`` when nothing was tentative)."""
        tentative = list(
            s.scalars(
                select(OutboxItem)
                .where(
                    OutboxItem.entity == "trade",
                    OutboxItem.entity_key == key,
                    OutboxItem.version >= from_version,
                    OutboxItem.state == "pending",
                )
                .order_by(OutboxItem.version)
            )
        )
        if not tentative:
            return None
        tuid = uuid.UUID(key)
        rows = list(
            s.scalars(
                select(Trade)
                .where(Trade.trade_uuid == tuid, Trade.version >= tentative[0].version)
                .order_by(Trade.version)
            )
        )
        refs = RefNames(s)
        latest = refs.payload(rows[-1]) if rows else None
        base = tentative[0].version - 1
        for row in rows:
            s.delete(row)
        s.flush()
        s.execute(
            update(Trade).where(Trade.trade_uuid == tuid, Trade.version == base)
            .values(is_current=True)
        )  # fmt: skip
        for item in tentative:
            item.state = "conflict"
            item.last_error = "kept aside: the desk database has another version"
        if latest is None:
            return None
        conflict = SyncConflict(
            entity_key=key,
            op_id=tentative[-1].op_id,
            base_version=base,
            local_payload=canonical(latest),
            remote_version=None if remote is None else int(remote["version"]),
            remote_payload=None if remote is None else canonical(remote),
            detected_at=utcnow(),
            state="open",
            resolution="",
        )
        s.add(conflict)
        s.flush()
        audit.append(
            s, user=self.username, entity="trade", entity_id=key, action="conflict",
            before=latest, after=remote, extra={"conflict_id": conflict.id},
        )  # fmt: skip
        return conflict.id

    # -- pull ---------------------------------------------------------------------------------
    def pull(self, conn: Any) -> int:
        """Apply central changes after the checkpoint until caught up; returns rows applied.
        (``sync_once`` checks the checkpoint against the server first.)"""
        applied = 0
        while not self._stop.is_set():
            with self.store.session() as s:
                cp = int(_get_state(s, "pull_seq", "0") or 0)
            rows = conn.execute(
                "SELECT seq, op_id, entity, entity_key, version, payload, origin, username "
                "FROM change_log WHERE seq > %s ORDER BY seq LIMIT %s",
                (cp, self.pull_batch),
            ).fetchall()
            conn.commit()
            if not rows:
                break
            changed, conflict_ids = self._apply_pulled(conn, rows)
            self._kick()
            applied += len(rows)
            self.counters.pulled += len(rows)
            if changed:
                self.bus.publish(TRADES_CHANGED, trade_uuids=sorted(changed), kind="pulled")
            if conflict_ids:
                self.bus.publish(SYNC_CONFLICTS, conflict_ids=conflict_ids)
            if len(rows) < self.pull_batch:
                break
            self._publish("syncing", progress=(applied, applied + self.pull_batch))
        return applied

    def _check_checkpoint(self, conn: Any) -> None:
        """Detect a central database that lost history (restored from an older dump)."""
        with self.store.session() as s:
            cp = int(_get_state(s, "pull_seq", "0") or 0)
            fp = _get_state(s, "pull_op", "")
        if cp == 0:
            return
        row = conn.execute("SELECT op_id FROM change_log WHERE seq = %s", (cp,)).fetchone()
        conn.commit()
        if row is not None and row[0] == fp:
            return
        log.warning("The desk database no longer has change %s seen here: it was restored "
                    "from an older copy; re-reading and re-sending lost changes", cp)  # fmt: skip
        self.counters.rewinds += 1
        self.requeue_lost(conn)
        with self.store.session() as s:
            _set_state(s, "pull_seq", "0")
            _set_state(s, "pull_op", "")

    def requeue_lost(self, conn: Any) -> int:
        """Put acknowledged changes the server does not have back in the queue."""
        requeued = 0
        last_id = 0
        while True:
            with self.store.session() as s:
                chunk = s.execute(
                    select(OutboxItem.id, OutboxItem.op_id)
                    .where(OutboxItem.state == "acked", OutboxItem.id > last_id)
                    .order_by(OutboxItem.id)
                    .limit(1000)
                ).all()
            if not chunk:
                break
            last_id = chunk[-1][0]
            have = {
                r[0]
                for r in conn.execute(
                    "SELECT op_id FROM change_log WHERE op_id = ANY(%s)", ([c[1] for c in chunk],)
                ).fetchall()
            }
            conn.commit()
            lost = [c[0] for c in chunk if c[1] not in have]
            if lost:
                with self.store.session() as s:
                    s.execute(
                        update(OutboxItem).where(OutboxItem.id.in_(lost))
                        .values(state="pending", server_seq=None, acked_at=None)
                    )  # fmt: skip
                requeued += len(lost)
        self.counters.requeued += requeued
        return requeued

    def _apply_pulled(
        self, conn: Any, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[set[uuid.UUID], list[int]]:
        changed: set[uuid.UUID] = set()
        conflict_ids: list[int] = []
        approvals = False
        with self.store.session() as s:
            refs = RefNames(s)
            ours = {
                o.op_id: o
                for o in s.scalars(
                    select(OutboxItem).where(OutboxItem.op_id.in_([r[1] for r in rows]))
                )
            }
            for seq, op_id, entity, key, version, payload_text, origin, user in rows:
                mine = ours.get(op_id)
                if mine is not None:
                    if mine.state != "acked":
                        mine.state, mine.server_seq, mine.acked_at = "acked", seq, utcnow()
                    continue
                if entity == "approval":
                    self._apply_approval(s, refs, json.loads(payload_text), seq, origin)
                    approvals = True
                    continue
                if entity == "limit":
                    self._apply_limit(s, refs, json.loads(payload_text), seq, origin)
                    continue
                if entity != "trade":
                    continue
                p = json.loads(payload_text)
                tuid = uuid.UUID(key)
                have = {
                    t.version: t for t in s.scalars(select(Trade).where(Trade.trade_uuid == tuid))
                }
                pending_versions = set(
                    s.scalars(
                        select(OutboxItem.version).where(
                            OutboxItem.entity == "trade",
                            OutboxItem.entity_key == key,
                            OutboxItem.state == "pending",
                        )
                    )
                )
                clash = sorted(v for v in pending_versions if v <= version and v in have)
                if clash:
                    cid = self._move_aside(s, key, clash[0], p)
                    if cid is not None:
                        conflict_ids.append(cid)
                    have = {
                        t.version: t
                        for t in s.scalars(select(Trade).where(Trade.trade_uuid == tuid))
                    }
                elif version in have:
                    continue  # already here (re-read after a rewind)
                try:
                    cols = refs.columns(p)
                except LookupError:
                    self.pull_refdata(conn)
                    s.flush()
                    refs = RefNames(s)
                    cols = refs.columns(p)
                newest = version >= max(have, default=0)
                if newest:
                    s.execute(
                        update(Trade).where(Trade.trade_uuid == tuid, Trade.is_current.is_(True))
                        .values(is_current=False)
                    )  # fmt: skip
                s.add(Trade(is_current=newest, **cols))
                s.flush()
                audit.append(
                    s, user=p.get("updated_by", user), entity="trade", entity_id=key,
                    action="pulled", before=None, after=p,
                    extra={"seq": seq, "op_id": op_id, "origin": origin},
                )  # fmt: skip
                changed.add(tuid)
            last = rows[-1]
            faults.point("pull.before_commit")
            _set_state(s, "pull_seq", str(last[0]))
            _set_state(s, "pull_op", str(last[1]))
        faults.point("pull.after_commit")
        if approvals:
            self.bus.publish(APPROVALS_CHANGED, request_uuid=None, state="pulled")
        return changed, conflict_ids

    def _apply_limit(
        self, s: Any, refs: RefNames, p: dict[str, Any], seq: int, origin: str
    ) -> None:
        """A risk manager's limit change from the desk database: upsert it by ``limit_uuid``.
        A local change of the same limit still pending is refused by the server (stale
        version), visibly; the desk's version is what applies."""
        row = s.scalars(select(RiskLimit).where(RiskLimit.limit_uuid == p["limit_uuid"])).first()
        book_id = refs.book_ids.get(p["book"])
        if book_id is None:
            return  # a book this store does not know (refdata is pulled first)
        values = {
            "book_id": book_id, "kind": LimitKind[p["kind"]], "product": p.get("product"),
            "currency": p.get("currency"), "confidence": p.get("confidence"),
            "horizon_days": p.get("horizon_days"),
            "limit_value": Decimal(int(p["limit_value"])).scaleb(-QUANTITY_PLACES),
            "warning_pct": Decimal(int(p["warning_pct"])).scaleb(-2),
            "active": bool(p["active"]), "comment": p.get("comment") or "",
            "updated_by": p["updated_by"], "updated_at": parse_ts(p["updated_at"]),
            "version": int(p["version"]),
        }  # fmt: skip
        if row is None:
            s.add(RiskLimit(limit_uuid=p["limit_uuid"], created_by=p["created_by"],
                            created_at=parse_ts(p["created_at"]), **values))  # fmt: skip
        elif row.version < int(p["version"]):
            for key, value in values.items():
                setattr(row, key, value)
        s.flush()
        audit.append(
            s, user=p["updated_by"], entity="limit", entity_id=p["limit_uuid"],
            action="pulled", after=p, extra={"seq": seq, "origin": origin},
        )  # fmt: skip

    def _apply_approval(
        self, s: Any, refs: RefNames, p: dict[str, Any], seq: int, origin: str
    ) -> None:
        """Another desk's four-eyes request or decision: upsert it locally (the server
        checked who may make it)."""
        row = s.scalars(
            select(ApprovalRequest).where(ApprovalRequest.request_uuid == p["request_uuid"])
        ).first()
        decided_at = parse_ts(p["decided_at"]) if p.get("decided_at") else None
        if row is None:
            row = ApprovalRequest(
                request_uuid=p["request_uuid"], kind=p["kind"], entity_key=p["entity_key"],
                book_id=refs.book_ids.get(p.get("book") or ""), summary=p.get("summary") or "",
                payload=canonical(p.get("payload") or {}), requested_by=p["requested_by"],
                requested_at=parse_ts(p["requested_at"]), state=p["state"],
                decided_by=p.get("decided_by"), decided_at=decided_at,
                decision_comment=p.get("decision_comment") or "",
            )  # fmt: skip
            s.add(row)
        else:
            row.state = p["state"]
            row.decided_by = p.get("decided_by")
            row.decided_at = decided_at
            row.decision_comment = p.get("decision_comment") or ""
        s.flush()
        audit.append(
            s, user=p.get("decided_by") or p["requested_by"], entity="approval",
            entity_id=p["request_uuid"], action="pulled", after=p,
            extra={"seq": seq, "origin": origin},
        )  # fmt: skip

    # -- status -------------------------------------------------------------------------------
    def _publish(
        self, state: str, *, message: str = "", progress: tuple[int, int] | None = None
    ) -> None:
        with self.store.session() as s:
            # one pass over the outbox: counts by state, and pending changes of other users
            counts = {
                (state, mine): int(n)
                for state, mine, n in s.execute(
                    select(OutboxItem.state, OutboxItem.username == self.username, func.count())
                    .where(OutboxItem.state.in_(("pending", "rejected")))
                    .group_by(OutboxItem.state, OutboxItem.username == self.username)
                )
            }
            conflicts = int(s.scalar(select(func.count()).where(SyncConflict.state == "open")) or 0)
        pending = counts.get(("pending", True), 0) + counts.get(("pending", False), 0)
        rejected = counts.get(("rejected", True), 0) + counts.get(("rejected", False), 0)
        others = counts.get(("pending", False), 0)
        if not message and self._skew is not None and abs(self._skew) > SKEW_WARN_S:
            message = (
                f"This computer's clock is {_fmt_skew(self._skew)} the desk database's. "
                "Changes are ordered by the server, so nothing is lost, but fix the clock: "
                "times shown here are off."
            )
        if not message and others:
            message = f"{others} change(s) by other users wait until they sign in here"
        self._status = SyncStatus(
            state=state, pending=pending, last_sync=self._last_sync, conflicts=conflicts,
            rejected=rejected, progress=progress, skew_s=self._skew, message=message,
        )  # fmt: skip
        self.bus.publish(SYNC_STATUS, status=self._status)


def _versions(s: Any, keys: Iterable[tuple[str, int]]) -> list[Any]:
    """The trade versions ``(uuid hex, version)`` as Core rows (no ORM objects, no joins:
    attribute access by column name, column types applied)."""
    keys = list(keys)
    if not keys:
        return []
    wanted = set(keys)
    uuids = sorted({uuid.UUID(k) for k, _ in keys})
    table = Trade.__table__
    out: list[Any] = []
    for start in range(0, len(uuids), 500):
        part = uuids[start : start + 500]
        out += [
            t
            for t in s.execute(select(table).where(table.c.trade_uuid.in_(part)))
            if (t.trade_uuid.hex, t.version) in wanted
        ]
    return out


def _shutdown_socket(conn: Any) -> None:
    """Make every blocked call on ``conn`` fail now (shutdown on a duplicate of its fd)."""
    with contextlib.suppress(Exception):
        fd = conn.pgconn.socket
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _fmt_skew(skew: float) -> str:
    a = abs(skew)
    amount = f"{a / 3600:.1f} h" if a >= 3600 else f"{a / 60:.0f} min"
    return f"{amount} {'ahead of' if skew > 0 else 'behind'}"
