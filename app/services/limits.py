"""Limits use case: live utilisation of VaR, ES, position and stress limits, and breaches.

No Qt and no ``app.feed``. The caller hands in the latest
:class:`~app.services.positions.PositionReport`, a way to get the
:class:`~app.services.risk.RiskService` (the Risk panel's, which holds the price histories),
the tenor volatility models and, for stress limits, the worst stress loss per book and
currency (``Mapping[book name or id, Mapping[currency, loss]]``, losses positive) -- so this
module depends on no particular stress engine.

**Usage** of a limit (see ``docs/limits.md``):

* VaR / ES: the book's *standalone* VaR or ES -- :func:`~app.services.risk.risk_inputs` with
  ``books=[book]`` and :meth:`~app.services.risk.RiskService.calculate` with the limit's
  confidence and horizon, historical simulation with full revaluation -- in the limit's
  currency (0 when the book holds nothing in that currency);
* position: ``|sum of delta_qty|`` of the book's open trades in the limit's product, in the
  product's unit (options by their Black-76 delta);
* stress: the book's worst stress loss in the limit's currency (a gain counts as 0).

**Status**: ``breach`` when usage > limit, ``warning`` when usage >= warning % of the limit,
``ok`` otherwise, ``n/a`` when the usage cannot be measured (no positions yet, no history, no
stress result...). :meth:`LimitService.refresh` records a breach row only when a limit's status
changes (``ok -> warning -> breach -> cleared``), never on a refresh that changes nothing;
``n/a`` leaves the recorded state alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.models.entities import BreachKind, LimitKind
from app.models.limits import (
    BreachRecord,
    LimitDraft,
    LimitObservation,
    LimitRecord,
    LimitRepository,
)
from app.models.types import utcnow
from app.services.approvals import FourEyes, check_limit_approval, check_limit_draft
from app.services.auth import Action, Principal, require
from app.services.risk import RiskResult, RiskService, TenorVol, risk_inputs

__all__ = [
    "RISK_METHOD",
    "LimitEvaluation",
    "LimitService",
    "LimitUsage",
    "StressLosses",
    "alert_text",
    "classify",
    "evaluate_limits",
    "position_deltas",
]

log = logging.getLogger(__name__)

#: VaR/ES limits are measured by historical simulation with full revaluation.
RISK_METHOD = "historical"

#: Worst stress loss (positive) per book (name or id) and currency.
StressLosses = Mapping[Any, Mapping[str, float]]


@dataclass(frozen=True)
class LimitUsage:
    """The measured usage of one limit."""

    limit: LimitRecord
    usage: float  # NaN when it cannot be measured
    utilisation: float  # usage / limit (NaN with the usage)
    status: str  # 'ok' | 'warning' | 'breach' | 'n/a'
    unit: str  # currency (VaR, ES, stress) or the product's unit (position)
    detail: str = ""


@dataclass(frozen=True)
class LimitEvaluation:
    """One refresh: every active limit's usage and the transitions it recorded."""

    evaluated_at: dt.datetime
    as_of: dt.date | None
    usages: tuple[LimitUsage, ...]
    transitions: tuple[BreachRecord, ...]

    def usage_of(self, limit_id: int) -> LimitUsage | None:
        for u in self.usages:
            if u.limit.id == limit_id:
                return u
        return None

    def alerts(self) -> list[str]:
        """Messages for the warnings and breaches recorded by this refresh."""
        out = []
        for t in self.transitions:
            u = self.usage_of(t.limit_id)
            if u is not None and t.kind is not BreachKind.CLEARED:
                out.append(alert_text(u, t.kind))
        return out


def classify(usage: float, limit_value: float, warning_pct: float) -> str:
    """``'breach'`` (usage > limit), ``'warning'`` (>= warning % of it), ``'ok'`` or ``'n/a'``."""
    if not math.isfinite(usage):
        return "n/a"
    if usage > limit_value:
        return "breach"
    if usage >= limit_value * warning_pct / 100.0:
        return "warning"
    return "ok"


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def alert_text(u: LimitUsage, kind: BreachKind) -> str:
    """``'Limit BREACH: DEMO Oil VaR USD 99% 1d: 1,234,567 USD > limit 1,000,000 (123.5%)'``."""
    lim = float(u.limit.limit_value)
    if kind is BreachKind.BREACH:
        return (
            f"Limit BREACH: {u.limit.title}: {_num(u.usage)} {u.unit} > limit {_num(lim)} "
            f"({u.utilisation:.1%})"
        )
    if kind is BreachKind.WARNING:
        return (
            f"Limit warning: {u.limit.title} at {u.utilisation:.1%} of its limit "
            f"({_num(u.usage)} of {_num(lim)} {u.unit})"
        )
    return f"Limit cleared: {u.limit.title} at {u.utilisation:.1%}"


def position_deltas(report: Any) -> dict[tuple[int, str], tuple[float, int]]:
    """``(book id, product code) -> (net delta, unmarked trades)`` over open trades.

    Delivered trades count 0; a trade whose delta is unknown (unmarked option) is left out of
    the sum and counted.
    """
    book = np.asarray(report.snapshot.columns["book_id"], dtype=np.int64)
    dq = np.asarray(report.valuation.delta_qty, dtype=float)
    out: dict[tuple[int, str], tuple[float, int]] = {}
    if book.size == 0:
        return out
    codes, pidx = np.unique(np.asarray(report.product, dtype=str), return_inverse=True)
    books, bidx = np.unique(book, return_inverse=True)
    key = bidx.ravel() * codes.size + pidx.ravel()
    ukey, inv = np.unique(key, return_inverse=True)
    inv = inv.ravel()
    known = np.isfinite(dq)
    sums = np.bincount(inv, weights=np.where(known, dq, 0.0), minlength=ukey.size)
    nans = np.bincount(inv, weights=(~known).astype(float), minlength=ukey.size)
    for k, total, n in zip(ukey.tolist(), sums.tolist(), nans.tolist(), strict=True):
        out[(int(books[k // codes.size]), str(codes[k % codes.size]))] = (total, int(n))
    return out


def _units(report: Any) -> dict[str, str]:
    product = np.asarray(report.product, dtype=object).tolist()
    unit = np.asarray(report.unit, dtype=object).tolist()
    return {str(p): str(u) for p, u in zip(product, unit, strict=True)}


def _usage(limit: LimitRecord, value: float, unit: str, detail: str = "") -> LimitUsage:
    lim = float(limit.limit_value)
    util = value / lim if math.isfinite(value) else math.nan
    status = classify(value, lim, float(limit.warning_pct))
    return LimitUsage(limit, value, util, status, unit, detail)


def _na(limit: LimitRecord, unit: str, why: str) -> LimitUsage:
    return LimitUsage(limit, math.nan, math.nan, "n/a", unit, why)


def evaluate_limits(
    limits: Sequence[LimitRecord],
    report: Any,
    *,
    risk: RiskService | Callable[[], RiskService] | None = None,
    tenor_vols: Mapping[str, TenorVol] | None = None,
    stress_losses: StressLosses | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[LimitUsage]:
    """The usage of every limit in ``limits`` (same order); pure, deterministic.

    ``risk`` is the risk service or a callable returning it (called only when a VaR/ES limit
    needs it, so the price histories load lazily). Each book's VaR/ES is computed once per
    (confidence, horizon), whatever the number of limits on it.
    """
    out: list[LimitUsage] = []
    if report is None:
        return [_na(lim, lim.currency or "", "no positions yet") for lim in limits]
    deltas: dict[tuple[int, str], tuple[float, int]] | None = None
    units = _units(report)
    inputs_cache: dict[str, Any] = {}
    result_cache: dict[tuple[str, float, int], RiskResult | str] = {}
    for lim in limits:
        if cancelled is not None and cancelled():
            from concurrent.futures import CancelledError

            raise CancelledError
        if lim.kind is LimitKind.POSITION:
            assert lim.product is not None
            if deltas is None:
                deltas = position_deltas(report)
            net, unmarked = deltas.get((lim.book_id, lim.product), (0.0, 0))
            unit = units.get(lim.product, "")
            detail = f"net delta {net:+,.3f} {unit}"
            if unmarked:
                detail += f"; {unmarked} trade(s) without a delta left out"
            out.append(_usage(lim, abs(net), unit, detail))
        elif lim.kind is LimitKind.STRESS:
            ccy = lim.currency or ""
            if stress_losses is None:
                out.append(_na(lim, ccy, "no stress results yet"))
                continue
            per_ccy = stress_losses.get(lim.book_name, stress_losses.get(lim.book_id))
            if per_ccy is None:
                out.append(_na(lim, ccy, "no stress result for this book"))
                continue
            loss = float(per_ccy.get(ccy, 0.0))
            out.append(_usage(lim, max(loss, 0.0), ccy, "worst stress loss"))
        else:
            out.append(_risk_usage(lim, report, risk, tenor_vols, inputs_cache, result_cache))
    return out


def _risk_usage(
    lim: LimitRecord,
    report: Any,
    risk: RiskService | Callable[[], RiskService] | None,
    tenor_vols: Mapping[str, TenorVol] | None,
    inputs_cache: dict[str, Any],
    result_cache: dict[tuple[str, float, int], RiskResult | str],
) -> LimitUsage:
    ccy = lim.currency or ""
    if risk is None:
        return _na(lim, ccy, "no risk service")
    assert lim.confidence is not None and lim.horizon_days is not None
    book = lim.book_name
    key = (book, float(lim.confidence), int(lim.horizon_days))
    if key not in result_cache:
        try:
            if book not in inputs_cache:
                inputs_cache[book] = risk_inputs(report, "product", [book], tenor_vols)
            inputs = inputs_cache[book]
            if not inputs.currencies:
                if inputs.skipped:
                    result_cache[key] = "no risk factor for " + ", ".join(inputs.skipped)
                else:
                    result_cache[key] = ""  # nothing open: usage 0
            else:
                service = risk if isinstance(risk, RiskService) else risk()
                result_cache[key] = service.calculate(inputs, RISK_METHOD, key[1], key[2])
        except ValueError as exc:
            result_cache[key] = str(exc) or type(exc).__name__
    res = result_cache[key]
    if res == "":
        return _usage(lim, 0.0, ccy, "no open positions")
    if isinstance(res, str):
        return _na(lim, ccy, res)
    try:
        cr = res.currency(ccy)
    except KeyError:
        return _usage(lim, 0.0, ccy, f"no {ccy} positions")
    value = cr.var if lim.kind is LimitKind.VAR else cr.es
    bits = [f"historical full revaluation, window to {res.window_end.isoformat()}"]
    if res.n_unmarked:
        bits.append(f"{res.n_unmarked} unmarked trade(s) left out")
    if res.skipped:
        bits.append("no risk factor: " + ", ".join(res.skipped))
    return _usage(lim, max(float(value), 0.0), ccy, "; ".join(bits))


class LimitService:
    """Limits CRUD (validated by the repository) and evaluation with recorded transitions.

    ``risk`` returns the risk service (called on the worker thread, only for VaR/ES limits);
    ``tenor_vols`` returns the tenor volatility models for :func:`risk_inputs`.
    Creating and changing limits needs :attr:`~app.services.auth.Action.SET_LIMIT` for the
    limit's book (``principal``: default the local owner, who may do everything).
    Thread-safe: every call opens its own sessions.
    """

    def __init__(
        self,
        repo: LimitRepository,
        risk: RiskService | Callable[[], RiskService] | None = None,
        tenor_vols: Callable[[], Mapping[str, TenorVol]] | None = None,
        *,
        principal: Principal | None = None,
    ) -> None:
        self.repo = repo
        self.risk = risk
        self.tenor_vols = tenor_vols
        self.principal = principal or Principal.local_owner("local")

    def set_principal(self, principal: Principal) -> None:
        """Switch the signed-in user."""
        self.principal = principal

    def _require_set_limit(self, book_id: int | None = None, limit_id: int | None = None) -> None:
        if self.principal.is_local_owner:
            return
        if limit_id is not None:
            require(self.principal, Action.SET_LIMIT, self.repo.get(limit_id).book_name)
        if book_id is not None:
            require(self.principal, Action.SET_LIMIT, self.repo.books().get(book_id, str(book_id)))

    # ------------------------------------------------------------------ CRUD

    def _four_eyes(
        self, approval: str | None, limit_id: int | None, book_id: int
    ) -> FourEyes | None:
        """Every limit change needs an approved four-eyes request (``ApprovalRequired``
        otherwise); with ``approval`` the approver executes it (APPROVE, not SET_LIMIT)."""
        if approval is None:
            self._require_set_limit(book_id, limit_id)
        book = self.repo.books().get(book_id, str(book_id))
        return check_limit_approval(self.repo.store, self.principal, approval, limit_id, book)

    def create(self, draft: LimitDraft, user: str, *, approval: str | None = None) -> LimitRecord:
        """Create a limit; needs an approved four-eyes request ``approval``."""
        if approval is None:
            check_limit_draft(self.repo, draft, None)  # a bad draft says so before four-eyes
        four_eyes = self._four_eyes(approval, None, draft.book_id)
        draft = dataclasses.replace(draft, comment=_annotate(four_eyes, draft.comment))
        lim = self.repo.create(draft, user)
        log.info("Limit #%d created by %s: %s %s", lim.id, user, lim.title, lim.limit_value)
        return lim

    def update(
        self,
        limit_id: int,
        version: int,
        draft: LimitDraft,
        user: str,
        *,
        approval: str | None = None,
    ) -> LimitRecord:
        """Change a limit; needs an approved four-eyes request ``approval``."""
        if approval is None:
            check_limit_draft(self.repo, draft, limit_id)
        four_eyes = self._four_eyes(approval, limit_id, draft.book_id)
        draft = dataclasses.replace(draft, comment=_annotate(four_eyes, draft.comment))
        lim = self.repo.update(limit_id, version, draft, user)
        log.info("Limit #%d changed by %s: %s %s", lim.id, user, lim.title, lim.limit_value)
        return lim

    def set_active(
        self,
        limit_id: int,
        version: int,
        active: bool,
        user: str,
        *,
        approval: str | None = None,
    ) -> LimitRecord:
        """(De)activate a limit; deactivating needs an approved four-eyes request."""
        if active:
            self._require_set_limit(limit_id=limit_id)
        else:
            self._four_eyes(approval, limit_id, self.repo.get(limit_id).book_id)
        lim = self.repo.set_active(limit_id, version, active, user)
        log.info("Limit #%d %s by %s", lim.id, "activated" if active else "deactivated", user)
        return lim

    # ------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        report: Any,
        stress_losses: StressLosses | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> list[LimitUsage]:
        """Usage of every active limit (nothing is written)."""
        vols = self.tenor_vols() if self.tenor_vols is not None else None
        return evaluate_limits(
            self.repo.list_limits(),
            report,
            risk=self.risk,
            tenor_vols=vols,
            stress_losses=stress_losses,
            cancelled=cancelled,
        )

    def refresh(
        self,
        report: Any,
        stress_losses: StressLosses | None = None,
        *,
        now: dt.datetime | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> LimitEvaluation:
        """Evaluate and record every status change (once per transition)."""
        usages = self.evaluate(report, stress_losses, cancelled)
        as_of = getattr(report, "as_of", None)
        obs = [
            LimitObservation(u.limit.id, u.status, u.usage, u.utilisation, as_of, u.detail)
            for u in usages
            if u.status != "n/a"
        ]
        when = now or utcnow()
        recorded = self.repo.record_states(obs, when)
        ev = LimitEvaluation(when, as_of, tuple(usages), tuple(recorded))
        for t in recorded:
            u = ev.usage_of(t.limit_id)
            if u is not None:
                log.info("%s", alert_text(u, t.kind))
        return ev


def _annotate(four_eyes: FourEyes | None, comment: str) -> str:
    return comment if four_eyes is None else four_eyes.annotate(comment, 200)
