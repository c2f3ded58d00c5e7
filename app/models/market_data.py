"""Market-data repository: recorded ticks and settlement curves in the local store.

The feed recorder (app.feed.recorder) writes here in batches from its own thread; the price
history chart, the Forward Curve overlay and the start-up fallback ("last settlement when no
feed runs") read from here. Reads return numpy arrays, not ORM objects.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, insert, select

from app.models.entities import PriceTick, SettlementCurve
from app.models.store import Store

__all__ = ["MarketDataRepository", "RecordedCurve", "TickRow"]


@dataclass(frozen=True, slots=True)
class TickRow:
    """One price to record (the fields of a feed tick that history needs)."""

    instrument: str
    ts: int
    kind: str
    bid: float | None
    ask: float | None
    last: float | None
    size: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedCurve:
    """A stored settlement curve: monthly ``prices`` from ``start`` (``YYYY-MM``)."""

    product: str
    settle_date: dt.date
    start: str
    prices: tuple[float, ...]
    ts: int
    source: str = ""

    @property
    def months(self) -> np.ndarray:
        return np.datetime64(self.start, "M") + np.arange(len(self.prices))


def _curve(row: SettlementCurve) -> RecordedCurve:
    return RecordedCurve(
        product=row.product,
        settle_date=row.settle_date,
        start=row.start_month,
        prices=tuple(float(x) for x in json.loads(row.prices)),
        ts=row.ts,
        source=row.source,
    )


class MarketDataRepository:
    """Reads and writes recorded market data of one :class:`~app.models.store.Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ writes

    def record_ticks(self, rows: Sequence[TickRow]) -> int:
        """Insert ticks in one transaction; returns how many were written."""
        if not rows:
            return 0
        values: list[dict[str, Any]] = [
            {
                "instrument": r.instrument,
                "ts": int(r.ts),
                "kind": r.kind,
                "bid": r.bid,
                "ask": r.ask,
                "last": r.last,
                "size": float(r.size),
            }
            for r in rows
        ]
        with self.store.session() as s:
            s.execute(insert(PriceTick), values)
        return len(values)

    def save_settlement(
        self,
        product: str,
        settle_date: dt.date,
        start: str,
        prices: Iterable[float],
        ts: int,
        source: str = "",
    ) -> None:
        """Store (or replace) the settlement curve of ``product`` on ``settle_date``."""
        data = [float(p) for p in prices]
        if not data or not all(np.isfinite(data)):
            raise ValueError(f"settlement curve for {product} must be non-empty and finite")
        np.datetime64(start, "M")  # validates 'YYYY-MM'
        with self.store.session() as s:
            row = s.scalars(
                select(SettlementCurve).where(
                    SettlementCurve.product == product, SettlementCurve.settle_date == settle_date
                )
            ).one_or_none()
            if row is None:
                row = SettlementCurve(product=product, settle_date=settle_date)
                s.add(row)
            row.start_month = start
            row.prices = json.dumps(data)
            row.ts = int(ts)
            row.source = source[:80]

    def prune_ticks(self, before_ns: int) -> int:
        """Delete intraday (``trade``) ticks older than ``before_ns``; settlements are kept."""
        with self.store.session() as s:
            result = s.execute(
                delete(PriceTick).where(PriceTick.kind == "trade", PriceTick.ts < int(before_ns))
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # ------------------------------------------------------------------ reads

    def tick_history(
        self,
        instrument: str,
        since_ns: int | None = None,
        until_ns: int | None = None,
        *,
        kind: str | None = None,
        limit: int = 500_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Recorded ``(ts_ns int64, last float64)`` of one instrument in time order.

        Rows without a last price are skipped. At most the latest ``limit`` rows are returned.
        """
        conds = [PriceTick.instrument == instrument, PriceTick.last.is_not(None)]
        if since_ns is not None:
            conds.append(PriceTick.ts >= int(since_ns))
        if until_ns is not None:
            conds.append(PriceTick.ts <= int(until_ns))
        if kind is not None:
            conds.append(PriceTick.kind == kind)
        q = (
            select(PriceTick.ts, PriceTick.last)
            .where(and_(*conds))
            .order_by(PriceTick.ts.desc())
            .limit(limit)
        )
        with self.store.session() as s:
            rows = s.execute(q).all()
        ts = np.fromiter((r[0] for r in reversed(rows)), dtype=np.int64, count=len(rows))
        last = np.fromiter((r[1] for r in reversed(rows)), dtype=np.float64, count=len(rows))
        return ts, last

    def tick_count(self) -> int:
        with self.store.session() as s:
            return int(s.scalar(select(func.count()).select_from(PriceTick)) or 0)

    def latest_ticks(self) -> list[TickRow]:
        """The most recent recorded tick of every instrument (start-up fallback, shown stale)."""
        latest = (
            select(PriceTick.instrument, func.max(PriceTick.ts).label("ts"))
            .group_by(PriceTick.instrument)
            .subquery()
        )
        q = select(PriceTick).join(
            latest, and_(PriceTick.instrument == latest.c.instrument, PriceTick.ts == latest.c.ts)
        )
        with self.store.session() as s:
            out: dict[str, TickRow] = {}
            for r in s.scalars(q):
                out[r.instrument] = TickRow(
                    r.instrument, r.ts, r.kind, r.bid, r.ask, r.last, r.size
                )
        return [out[k] for k in sorted(out)]

    def latest_settles(self) -> dict[str, float]:
        """The most recent settlement price of every instrument."""
        latest = (
            select(PriceTick.instrument, func.max(PriceTick.ts).label("ts"))
            .where(PriceTick.kind == "settle")
            .group_by(PriceTick.instrument)
            .subquery()
        )
        q = select(PriceTick.instrument, PriceTick.last).join(
            latest, and_(PriceTick.instrument == latest.c.instrument, PriceTick.ts == latest.c.ts)
        )
        with self.store.session() as s:
            return {i: float(v) for i, v in s.execute(q) if v is not None}

    def settlement_curve(
        self, product: str, on_or_before: dt.date | None = None
    ) -> RecordedCurve | None:
        """The latest settlement curve of ``product`` dated on or before ``on_or_before``."""
        q = select(SettlementCurve).where(SettlementCurve.product == product)
        if on_or_before is not None:
            q = q.where(SettlementCurve.settle_date <= on_or_before)
        q = q.order_by(SettlementCurve.settle_date.desc()).limit(1)
        with self.store.session() as s:
            row = s.scalars(q).one_or_none()
            return None if row is None else _curve(row)

    def settlement_history(
        self, products: Iterable[str], until: dt.date | None = None
    ) -> dict[str, list[RecordedCurve]]:
        """All settlement curves of ``products`` dated on or before ``until``, oldest first
        (one query; realised P&L looks up the settlement of every delivered month)."""
        names = sorted(set(products))
        out: dict[str, list[RecordedCurve]] = {p: [] for p in names}
        if not names:
            return out
        q = select(SettlementCurve).where(SettlementCurve.product.in_(names))
        if until is not None:
            q = q.where(SettlementCurve.settle_date <= until)
        q = q.order_by(SettlementCurve.product, SettlementCurve.settle_date)
        with self.store.session() as s:
            for row in s.scalars(q):
                out[row.product].append(_curve(row))
        return out

    def latest_settlement_curves(self) -> dict[str, RecordedCurve]:
        """The most recent settlement curve of every product."""
        latest = (
            select(SettlementCurve.product, func.max(SettlementCurve.settle_date).label("d"))
            .group_by(SettlementCurve.product)
            .subquery()
        )
        q = select(SettlementCurve).join(
            latest,
            and_(
                SettlementCurve.product == latest.c.product,
                SettlementCurve.settle_date == latest.c.d,
            ),
        )
        with self.store.session() as s:
            return {r.product: _curve(r) for r in s.scalars(q)}

    def settlement_dates(self, product: str) -> list[dt.date]:
        with self.store.session() as s:
            return list(
                s.scalars(
                    select(SettlementCurve.settle_date)
                    .where(SettlementCurve.product == product)
                    .order_by(SettlementCurve.settle_date)
                )
            )
