"""What-if sandbox and pre-trade impact: the book plus hypothetical trades, on shocked curves.

Nothing here writes to the store. A :class:`Sandbox` holds hypothetical trades (validated
economics, exactly what :func:`app.services.trading.validate_trade` returns) and curve shocks;
:meth:`WhatIfService.compare` revalues the real book and the sandbox with the same code path as
the Positions and Risk docks (:class:`~app.services.positions.PositionService`,
:func:`~app.services.risk.risk_inputs`, :class:`~app.services.risk.RiskService`) and returns
both side by side. :meth:`WhatIfService.pre_trade` is the same for one trade being typed in the
ticket: incremental VaR/ES in the trade's currency and the change of the book's position in the
product. Works offline: only the snapshot, the curves in hand and the bundled history are used.

Hypothetical trades enter the positions snapshot as extra rows with negative row ids and UUIDs
``what-if-<n>``; they are marked exactly like booked trades (forwards 1:1, options Black-76
with the product's vol).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from app.engine.curves import ForwardCurve
from app.models.enums import InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.repository import BLOTTER_DTYPES, NULL_INT
from app.models.types import PRICE_PLACES, QUANTITY_PLACES, to_scaled
from app.services.positions import PositionReport, PositionService, PositionSnapshot
from app.services.risk import RiskResult, RiskService, TenorVol, risk_inputs

__all__ = [
    "CurveShock",
    "PreTradeImpact",
    "Sandbox",
    "WhatIfResult",
    "WhatIfRow",
    "WhatIfService",
    "shock_curves",
    "snapshot_with",
]

_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class CurveShock:
    """Move every month of ``product``'s curve (``"*"``: every product) by ``shift`` price
    units, then by ``pct`` percent (``-10`` = 10 % lower)."""

    product: str
    shift: float = 0.0
    pct: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shift) and math.isfinite(self.pct)):
            raise ValueError("curve shocks must be finite numbers")
        if self.pct <= -100.0:
            raise ValueError("a percentage shock must be above -100 %")

    def text(self) -> str:
        what = "all curves" if self.product == "*" else self.product
        parts = []
        if self.shift:
            parts.append(f"{self.shift:+g}")
        if self.pct:
            parts.append(f"{self.pct:+g} %")
        return f"{what} {' and '.join(parts) or 'unchanged'}"


@dataclass
class Sandbox:
    """Hypothetical trades (validated economics) and curve shocks; never stored."""

    trades: list[dict[str, Any]] = field(default_factory=list)
    shocks: list[CurveShock] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not self.trades and not any(s.shift or s.pct for s in self.shocks)


def shock_curves(
    curves: Mapping[str, ForwardCurve], shocks: Sequence[CurveShock]
) -> dict[str, ForwardCurve]:
    """Copies of ``curves`` with ``shocks`` applied in order (unknown products: ``KeyError``)."""
    out = dict(curves)
    for s in shocks:
        targets = list(out) if s.product == "*" else [s.product]
        for p in targets:
            if p not in out:
                raise KeyError(f"no curve for {p} to shock")
            c = out[p]
            prices = (np.asarray(c.prices, dtype=float) + s.shift) * (1.0 + s.pct / 100.0)
            out[p] = ForwardCurve(c.months, prices, c.product, c.weights)
    return out


def _days(d: dt.date) -> int:
    return (d - _EPOCH).days


def _index(enum_cls: Any, member: Any) -> int:
    return list(enum_cls).index(member)


def snapshot_with(
    snapshot: PositionSnapshot, trades: Sequence[Mapping[str, Any]]
) -> PositionSnapshot:
    """``snapshot`` plus one row per hypothetical trade (validated economics)."""
    if not trades:
        return snapshot
    rows: dict[str, list[Any]] = {k: [] for k in BLOTTER_DTYPES}
    premium, expiry = [], []
    now = int(time.time())
    for n, e in enumerate(trades, start=1):
        opt = e["instrument"] is InstrumentType.OPTION
        vals = {
            "row_id": -n,
            "trade_uuid": f"what-if-{n}",
            "version": 0,
            "status": _index(TradeStatus, TradeStatus.CAPTURED),
            "book_id": int(e["book_id"]),
            "counterparty_id": int(e["counterparty_id"]),
            "product_id": int(e["product_id"]),
            "instrument": _index(InstrumentType, e["instrument"]),
            "side": _index(Side, e["side"]),
            "quantity": to_scaled(e["quantity"], QUANTITY_PLACES),
            "quantity_unit": _index(Unit, e["quantity_unit"]),
            "price": to_scaled(e["price"], PRICE_PLACES),
            "currency": str(e["currency"]),
            "trade_date": _days(e["trade_date"]),
            "delivery_start": _days(e["delivery_start"]),
            "delivery_end": _days(e["delivery_end"]),
            "option_type": _index(OptionType, e["option_type"]) if opt else -1,
            "strike": to_scaled(e["strike"], PRICE_PLACES) if opt else NULL_INT,
            "updated_by": "what-if",
            "updated_at": now,
        }
        for k, v in vals.items():
            rows[k].append(v)
        premium.append(float(e["premium"]) if opt and e.get("premium") is not None else np.nan)
        expiry.append(np.datetime64(e["expiry_date"], "D") if opt else np.datetime64("NaT", "D"))
    cols = {}
    for k, dtype in BLOTTER_DTYPES.items():
        extra = np.empty(len(rows[k]), dtype=object) if dtype is object else None
        if extra is not None:
            extra[:] = rows[k]
        else:
            extra = np.array(rows[k], dtype=dtype)
        cols[k] = np.concatenate([snapshot.columns[k], extra])
    return replace(
        snapshot,
        columns=cols,
        premium=np.concatenate([snapshot.premium, np.array(premium, dtype=float)]),
        expiry=np.concatenate(
            [snapshot.expiry.astype("datetime64[D]"), np.array(expiry, dtype="datetime64[D]")]
        ),
    )


@dataclass(frozen=True)
class WhatIfRow:
    """One line of the side-by-side comparison (``real`` and ``sandbox`` in ``unit``)."""

    section: str  # "risk" | "mtm" | "position" | "limit"
    label: str
    unit: str
    real: float
    sandbox: float

    @property
    def change(self) -> float:
        return self.sandbox - self.real


@dataclass(frozen=True)
class WhatIfResult:
    """The real book and the sandbox side by side, with how the risk was computed."""

    rows: tuple[WhatIfRow, ...]
    real_risk: RiskResult | None
    sandbox_risk: RiskResult | None
    real_report: PositionReport
    sandbox_report: PositionReport
    note: str


@dataclass(frozen=True)
class PreTradeImpact:
    """What booking one trade would change, in the trade's currency."""

    currency: str
    product: str
    book: str
    unit: str
    var_before: float
    var_after: float
    es_before: float
    es_after: float
    position_before: float  # net delta of the book in the product
    position_after: float
    mtm: float  # the trade's own mark-to-market at the current curves
    method: str
    confidence: float
    limits: tuple[tuple[str, float, float, str], ...] = ()  # (title, util before, after, status)

    @property
    def incremental_var(self) -> float:
        return self.var_after - self.var_before

    @property
    def incremental_es(self) -> float:
        return self.es_after - self.es_before

    def text(self) -> str:
        """One line for the ticket."""
        return (
            f"Pre-trade ({self.currency}, {self.method} {self.confidence:.0%} 1d): "
            f"VaR {self.var_before:,.0f} → {self.var_after:,.0f} "
            f"({self.incremental_var:+,.0f}) · ES {self.incremental_es:+,.0f} · "
            f"{self.book} {self.product} {self.position_before:,.0f} → "
            f"{self.position_after:,.0f} {self.unit} · MTM {self.mtm:+,.0f}"
        ) + "".join(f" · limit {t} {_pct(a)} → {_pct(b)} ({st})" for t, a, b, st in self.limits)


class WhatIfService:
    """Revalues the real book and a sandbox the same way (thread-safe, stateless)."""

    def __init__(
        self,
        positions: PositionService,
        risk: RiskService,
        tenor_vols: Mapping[str, TenorVol] | None = None,
        limits: Any = None,
    ) -> None:
        self.positions = positions
        self.risk = risk
        self.tenor_vols = tenor_vols
        #: A :class:`~app.services.limits.LimitService`: its ``evaluate`` measures usage
        #: without recording anything (``None``: no limit rows).
        self.limits = limits

    def _limit_usage(self, report: PositionReport, book_id: int | None = None) -> list[Any]:
        if self.limits is None:
            return []
        usages = self.limits.evaluate(report)
        return [u for u in usages if book_id is None or u.limit.book_id == book_id]

    def _risk(self, report: PositionReport, method: str, confidence: float, horizon: int,
              books: Sequence[str] | None) -> RiskResult | None:  # fmt: skip
        inputs = risk_inputs(report, "product", books, self.tenor_vols)
        if not inputs.currencies:
            return None
        return self.risk.calculate(inputs, method, confidence, horizon)

    def compare(
        self,
        snapshot: PositionSnapshot,
        curves: Mapping[str, ForwardCurve],
        as_of: dt.date,
        vol: float | Mapping[str, float],
        sandbox: Sandbox,
        *,
        method: str = "historical",
        confidence: float = 0.99,
        horizon_days: int = 1,
        books: Sequence[str] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> WhatIfResult:
        """Positions, MTM, VaR and ES of the real book and of the sandbox, per currency."""
        real = self.positions.revalue(snapshot, curves, as_of, vol, dimension="product")
        sand_snap = snapshot_with(snapshot, sandbox.trades)
        sand_curves = shock_curves(curves, sandbox.shocks)
        sand = self.positions.revalue(sand_snap, sand_curves, as_of, vol, dimension="product")
        if cancelled is not None and cancelled():
            from concurrent.futures import CancelledError

            raise CancelledError
        r_risk = self._risk(real, method, confidence, horizon_days, books)
        s_risk = self._risk(sand, method, confidence, horizon_days, books)
        rows: list[WhatIfRow] = []
        ccys = sorted(
            {c.currency for c in (r_risk.currencies if r_risk else ())}
            | {c.currency for c in (s_risk.currencies if s_risk else ())}
        )

        def risk_of(res: RiskResult | None, ccy: str) -> tuple[float, float]:
            if res is None:
                return 0.0, 0.0
            try:
                c = res.currency(ccy)
            except KeyError:
                return 0.0, 0.0
            return c.var, c.es

        for ccy in ccys:
            rv, re_ = risk_of(r_risk, ccy)
            sv, se = risk_of(s_risk, ccy)
            rows.append(WhatIfRow("risk", f"VaR {ccy}", ccy, rv, sv))
            rows.append(WhatIfRow("risk", f"ES {ccy}", ccy, re_, se))
        scope = _scope(real, books)
        scope_s = _scope(sand, books)
        for ccy in sorted(
            set(real.currency[scope].tolist()) | set(sand.currency[scope_s].tolist())
        ):
            rows.append(WhatIfRow("mtm", f"MTM {ccy}", str(ccy),
                                  _sum(real, scope & (real.currency == ccy), real.valuation.mtm),
                                  _sum(sand, scope_s & (sand.currency == ccy),
                                       sand.valuation.mtm)))  # fmt: skip
        prods = sorted(set(real.product[scope].tolist()) | set(sand.product[scope_s].tolist()))
        for p in prods:
            unit = str(sand.unit[sand.product == p][0]) if np.any(sand.product == p) else ""
            r = _sum(real, scope & (real.product == p), real.valuation.delta_qty)
            s = _sum(sand, scope_s & (sand.product == p), sand.valuation.delta_qty)
            if r or s:
                rows.append(WhatIfRow("position", f"{p} delta", unit, r, s))
        for ru, su in zip(self._limit_usage(real), self._limit_usage(sand), strict=True):
            util = f"{_pct(ru.utilisation)} → {_pct(su.utilisation)}, {su.status}"
            rows.append(WhatIfRow("limit", f"Limit {ru.limit.title} ({util})", ru.unit,
                                  ru.usage, su.usage))  # fmt: skip
        how = r_risk.note() if r_risk is not None else (s_risk.note() if s_risk else "")
        parts = [f"{len(sandbox.trades)} hypothetical trade(s)"]
        if sandbox.shocks:
            parts.append("curve shocks: " + "; ".join(s.text() for s in sandbox.shocks))
        parts.append("nothing is written to the store")
        return WhatIfResult(tuple(rows), r_risk, s_risk, real, sand,
                            ", ".join(parts) + ". Risk: " + how)  # fmt: skip

    def pre_trade(
        self,
        snapshot: PositionSnapshot,
        curves: Mapping[str, ForwardCurve],
        as_of: dt.date,
        vol: float | Mapping[str, float],
        trade: Mapping[str, Any],
        *,
        method: str = "historical",
        confidence: float = 0.99,
        base: PositionReport | None = None,
        base_risk: RiskResult | None = None,
    ) -> PreTradeImpact:
        """Impact of booking ``trade`` (validated economics) on the whole book.

        ``base``/``base_risk`` may carry the current book's report and 1-day risk to skip
        recomputing them (the ticket recomputes only the "after" side while the user types).
        """
        ref = snapshot.ref
        product = ref.products[int(trade["product_id"])]
        book_name = ref.books[int(trade["book_id"])].name
        ccy = str(trade["currency"])
        before = base or self.positions.revalue(snapshot, curves, as_of, vol, dimension="product")
        after = self.positions.revalue(snapshot_with(snapshot, [trade]), curves, as_of, vol,
                                       dimension="product")  # fmt: skip
        if base_risk is None:
            base_risk = self._risk(before, method, confidence, 1, None)
        after_risk = self._risk(after, method, confidence, 1, None)

        def var_es(res: RiskResult | None) -> tuple[float, float]:
            try:
                c = res.currency(ccy) if res is not None else None
            except KeyError:
                c = None
            return (c.var, c.es) if c is not None else (0.0, 0.0)

        vb, eb = var_es(base_risk)
        va, ea = var_es(after_risk)

        def position(rep: PositionReport) -> float:
            names = np.array(
                [ref.books[int(b)].name if int(b) in ref.books else "" for b in
                 rep.snapshot.columns["book_id"]], dtype=object)  # fmt: skip
            sel = (rep.product == product.code) & (names == book_name)
            return _sum(rep, sel, rep.valuation.delta_qty)

        mtm = float(after.valuation.mtm[-1])
        book_id = int(trade["book_id"])
        used_before = self._limit_usage(before, book_id)
        used_after = self._limit_usage(after, book_id)
        limits = tuple(
            (b.limit.title, b.utilisation, a.utilisation, a.status)
            for b, a in zip(used_before, used_after, strict=True)
        )
        return PreTradeImpact(
            currency=ccy,
            product=product.code,
            book=book_name,
            unit=product.unit.label,
            var_before=vb,
            var_after=va,
            es_before=eb,
            es_after=ea,
            position_before=position(before),
            position_after=position(after),
            mtm=mtm,
            method=method,
            confidence=confidence,
            limits=limits,
        )


def _pct(x: float) -> str:
    return f"{x:.0%}" if math.isfinite(x) else "n/a"


def _scope(report: PositionReport, books: Sequence[str] | None) -> np.ndarray:
    n = report.product.size
    if not books:
        return np.ones(n, dtype=bool)
    ref = report.snapshot.ref.books
    wanted = {b.casefold() for b in books}
    ids = report.snapshot.columns["book_id"]
    return np.array([int(b) in ref and ref[int(b)].name.casefold() in wanted for b in ids],
                    dtype=bool)  # fmt: skip


def _sum(report: PositionReport, mask: np.ndarray, values: np.ndarray) -> float:
    v = np.asarray(values, dtype=float)[mask]
    return float(np.nansum(v))
