"""Reading the audit trail: filtered, paged queries, export to CSV / Excel, chain verification.

The trail itself is written by :mod:`app.models.audit` in the same transaction as each change;
this service is what the Audit dock and ``quantaenergi audit`` use to look at it. Viewing needs
:attr:`~app.services.auth.Action.VIEW_AUDIT` and exporting
:attr:`~app.services.auth.Action.EXPORT_AUDIT` (compliance, admin, or the single user of a
workstation without users); the check is made here, for every call.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select

from app.models import audit
from app.models.entities import AuditRecord
from app.services.auth import Action, Principal, require

__all__ = [
    "EXPORT_COLUMNS",
    "AuditEntry",
    "AuditFilter",
    "AuditPage",
    "AuditService",
    "parse_day",
]

#: Columns of an export, in order.
EXPORT_COLUMNS = ("seq", "ts_utc", "user", "workstation", "entity", "entity_id", "action",
                  "before", "after", "extra", "prev_hash", "hash")  # fmt: skip
_EXPORT_SUFFIXES = (".csv", ".xlsx")
_MAX_PAGE = 10_000


def parse_day(text: str, what: str) -> dt.date | None:
    """``YYYY-MM-DD`` (blank: ``None``); ``ValueError`` naming ``what`` otherwise."""
    text = text.strip()
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{what} must be a date as YYYY-MM-DD, not {text!r}") from None


@dataclass(frozen=True)
class AuditFilter:
    """What to show: every field is optional (``None``/blank matches everything).

    ``since``/``until`` are UTC days, both inclusive; ``text`` is searched case-insensitively
    in the whole record (before/after values included).
    """

    entity: str | None = None
    entity_id: str | None = None
    user: str | None = None
    action: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.until < self.since:
            raise ValueError(f"the 'to' date {self.until} is before the 'from' date {self.since}")

    def apply(self, q: Select[Any]) -> Select[Any]:
        """``q`` restricted to the matching records."""
        for col, value in ((AuditRecord.entity, self.entity), (AuditRecord.entity_id,
                           self.entity_id), (AuditRecord.username, self.user),
                           (AuditRecord.action, self.action)):  # fmt: skip
            if value is not None and value.strip():
                q = q.where(col == value.strip())
        if self.since is not None:
            q = q.where(AuditRecord.ts >= _midnight(self.since))
        if self.until is not None:
            q = q.where(AuditRecord.ts < _midnight(self.until + dt.timedelta(days=1)))
        if self.text is not None and self.text.strip():
            needle = self.text.strip()
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(AuditRecord.body.ilike(f"%{escaped}%", escape="\\"))
        return q


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class AuditEntry:
    """One audit record, with its body parsed."""

    seq: int
    ts: dt.datetime
    user: str
    workstation: str
    entity: str
    entity_id: str
    action: str
    before: Any
    after: Any
    extra: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        doc = audit.parse_body(row.body)
        extra = doc.get("extra")
        return cls(row.seq, row.ts, row.username, row.workstation, row.entity, row.entity_id,
                   row.action, doc.get("before"), doc.get("after"),
                   extra if isinstance(extra, dict) else {}, row.prev_hash, row.hash)  # fmt: skip

    def changed_fields(self) -> list[str]:
        """Keys whose value differs between before and after (both objects), sorted."""
        b = self.before if isinstance(self.before, dict) else {}
        a = self.after if isinstance(self.after, dict) else {}
        return sorted(k for k in set(b) | set(a) if b.get(k) != a.get(k))

    def export_row(self) -> list[Any]:
        """The record as a row of :data:`EXPORT_COLUMNS` (JSON text for before/after/extra)."""

        def text(v: Any) -> str:
            return "" if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False)

        return [self.seq, audit.format_ts(self.ts), self.user, self.workstation, self.entity,
                self.entity_id, self.action, text(self.before), text(self.after),
                text(self.extra or None), self.prev_hash, self.hash]  # fmt: skip


@dataclass(frozen=True)
class AuditPage:
    """One page of a query: ``entries`` from ``offset`` on, out of ``total`` matches."""

    entries: list[AuditEntry]
    offset: int
    total: int
    filter: AuditFilter = field(default_factory=AuditFilter)


class AuditService:
    """The audit trail of a :class:`~app.models.store.Store`, for one signed-in principal.

    ``principal`` is a :class:`~app.services.auth.Principal` or a callable returning the
    current one (the GUI's user changes on sign-in).
    """

    def __init__(self, store: Any, principal: Principal | Callable[[], Principal]) -> None:
        self.store = store
        self._principal = principal

    @property
    def principal(self) -> Principal:
        p = self._principal
        return p if isinstance(p, Principal) else p()

    # -- queries -------------------------------------------------------------------------
    def query(self, flt: AuditFilter | None = None, offset: int = 0, limit: int = 500) -> AuditPage:
        """Matching records, newest first, ``limit`` of them from ``offset``."""
        require(self.principal, Action.VIEW_AUDIT)
        flt = flt or AuditFilter()
        limit = max(1, min(int(limit), _MAX_PAGE))
        offset = max(0, int(offset))
        with self.store.session() as s:
            total = int(s.scalar(flt.apply(select(func.count()).select_from(AuditRecord))) or 0)
            rows = s.scalars(
                flt.apply(select(AuditRecord))
                .order_by(AuditRecord.seq.desc())
                .offset(offset)
                .limit(limit)
            ).all()
            entries = [AuditEntry.from_row(r) for r in rows]
        return AuditPage(entries, offset, total, flt)

    def distinct_values(self) -> dict[str, list[str]]:
        """Known entities, users and actions (for the filter drop-downs)."""
        require(self.principal, Action.VIEW_AUDIT)
        out: dict[str, list[str]] = {}
        with self.store.session() as s:
            for key, col in (("entity", AuditRecord.entity), ("user", AuditRecord.username),
                             ("action", AuditRecord.action)):  # fmt: skip
                out[key] = [v for (v,) in s.execute(select(col).distinct().order_by(col))]
        return out

    def iter_entries(
        self, flt: AuditFilter | None = None, page: int = 2000
    ) -> Iterator[AuditEntry]:
        """Every matching record, oldest first, read ``page`` at a time (bounded memory)."""
        require(self.principal, Action.VIEW_AUDIT)
        flt = flt or AuditFilter()
        last = -1
        with self.store.session() as s:
            while True:
                rows = s.scalars(
                    flt.apply(select(AuditRecord))
                    .where(AuditRecord.seq > last)
                    .order_by(AuditRecord.seq)
                    .limit(page)
                ).all()
                for r in rows:
                    yield AuditEntry.from_row(r)
                if len(rows) < page:
                    return
                last = rows[-1].seq
                s.expunge_all()

    # -- verification ----------------------------------------------------------------------
    def verify(self) -> audit.AuditVerification:
        """Verify the local chain (see :func:`app.models.audit.verify_rows`)."""
        require(self.principal, Action.VIEW_AUDIT)
        return audit.verify_store(self.store)

    # -- export --------------------------------------------------------------------------
    def export(
        self,
        path: str | Path,
        flt: AuditFilter | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the matching records (oldest first) to ``path``, CSV or Excel by its
        extension; returns how many. The file is replaced atomically: a failed export leaves
        nothing half-written. ``ValueError`` for an unsupported extension, ``OSError`` when the
        file cannot be written."""
        require(self.principal, Action.EXPORT_AUDIT)
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in _EXPORT_SUFFIXES:
            raise ValueError(f"export to .csv or .xlsx, not {path.name!r}")
        if not path.parent.is_dir():
            raise OSError(f"the folder {path.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            rows = self.iter_entries(flt)
            n = _write_xlsx(tmp, rows, progress) if suffix == ".xlsx" else _write_csv(
                tmp, rows, progress)  # fmt: skip
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return n


def _write_csv(
    path: str, entries: Iterator[AuditEntry], progress: Callable[[int], None] | None
) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for e in entries:
            w.writerow([_cell_safe(v) for v in e.export_row()])
            n += 1
            if progress is not None and n % 1000 == 0:
                progress(n)
        f.flush()
        os.fsync(f.fileno())
    return n


def _write_xlsx(
    path: str, entries: Iterator[AuditEntry], progress: Callable[[int], None] | None
) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Audit trail")
    header = []
    for name in EXPORT_COLUMNS:
        cell = WriteOnlyCell(ws, value=name)
        cell.font = Font(bold=True)
        header.append(cell)
    ws.append(header)
    n = 0
    for e in entries:
        ws.append([_cell_safe(v) for v in e.export_row()])
        n += 1
        if progress is not None and n % 1000 == 0:
            progress(n)
    wb.save(path)
    return n


def _cell_safe(value: Any) -> Any:
    """Text that Excel would take for a formula is prefixed with ``'`` (no formula injection);
    control characters openpyxl refuses are replaced."""
    if not isinstance(value, str):
        return value
    value = "".join(c if c in "\t\n\r" or ord(c) >= 32 else "\ufffd" for c in value)
    if value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value
