"""Stress use case: the historical scenario library and user scenarios on a book, and grids.

No Qt and no ``app.feed``: the caller hands in the daily price histories (as for
:class:`~app.services.risk.RiskService`) and :class:`~app.services.risk.RiskInputs`.  The
numerics are :mod:`app.engine.risk.stress`.  See ``docs/stress.md``.

**Historical scenarios** (:data:`LIBRARY`) take the move of each bundled EIA series (WTI,
Brent, Henry Hub) between two dates of the *real* series and map it to the book's factors with
the same proxy and tenor loadings the VaR uses: ``shift_j = CurrencyBook.loading[j] x
(level_end - level_start)`` of the factor's source series.  ``mode="relative"`` applies the
source's return to each factor's base level instead (``base_j x tenor_j x (end/start - 1)``),
which keeps a 2008-sized move from driving today's lower prices far below zero.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.engine.risk.stress import (
    FactorMeta,
    HistoricalMove,
    Scenario,
    ScenarioError,
    ScenarioGrid,
    evaluate_grid,
    evaluate_scenarios,
)
from app.models.catalogue import PRODUCT_BY_CODE
from app.services.risk import PROXIES, SOURCE_LABELS, CurrencyBook, HistorySeries, RiskInputs

__all__ = [
    "LIBRARY",
    "GridResult",
    "StressResult",
    "StressRow",
    "StressService",
    "factor_meta",
]


def _hist(name: str, start: str, end: str, description: str) -> Scenario:
    return Scenario(
        name=name,
        description=description,
        history=HistoricalMove(dt.date.fromisoformat(start), dt.date.fromisoformat(end)),
        tags=("builtin",),
    )


#: The built-in historical scenarios (dates are EIA observation dates present in all three
#: bundled series; the levels are in ``docs/stress.md`` and checked by the tests).
LIBRARY: tuple[Scenario, ...] = (
    _hist(
        "2008 crash",
        "2008-07-03",
        "2008-12-23",
        "July 2008 peak to the December 2008 low: WTI 145.31 -> 30.28, Brent 143.95 -> 35.27 "
        "$/bbl, Henry Hub 13.00 -> 5.37 $/MMBtu.",
    ),
    _hist(
        "2014-15 oil collapse",
        "2014-06-20",
        "2016-01-20",
        "June 2014 high to the January 2016 Brent low: WTI 107.95 -> 26.68, Brent 114.55 -> "
        "26.01 $/bbl, Henry Hub 4.53 -> 2.18 $/MMBtu.",
    ),
    _hist(
        "2020 COVID / negative WTI",
        "2020-03-06",
        "2020-04-20",
        "OPEC+ break-up and lockdowns, to the day WTI settled negative: WTI 41.14 -> -36.98, "
        "Brent 45.60 -> 17.36 $/bbl, Henry Hub 1.76 -> 1.78 $/MMBtu.",
    ),
    _hist(
        "2021 winter storm Uri",
        "2021-02-08",
        "2021-02-17",
        "February 2021 Texas freeze, Henry Hub spot 3.40 -> 23.86 $/MMBtu (WTI 57.95 -> 61.09, "
        "Brent 60.17 -> 65.02 $/bbl).",
    ),
    _hist(
        "2022 European energy crisis (Henry Hub proxy)",
        "2022-02-23",
        "2022-08-22",
        "Eve of the invasion of Ukraine to the August 2022 peak. The app bundles only EIA series: "
        "TTF, NBP and power move by the documented Henry Hub proxy (HH 4.59 -> 9.85 $/MMBtu), "
        "which understates the real European move (TTF roughly tripled). Brent 99.29 -> 95.06, "
        "WTI 92.14 -> 93.42 $/bbl.",
    ),
    _hist(
        "2026 January Henry Hub spike",
        "2026-01-05",
        "2026-01-23",
        "January 2026 cold snap: Henry Hub spot 2.82 -> 30.72 $/MMBtu (WTI 58.10 -> 60.70, "
        "Brent 63.00 -> 68.16 $/bbl).",
    ),
)

BUILTIN_NAMES = frozenset(s.name.casefold() for s in LIBRARY)


def factor_meta(cb: CurrencyBook, as_of: dt.date) -> FactorMeta:
    """The engine's :class:`FactorMeta` of a currency book (commodity from the catalogue)."""
    prods = [str(p) for p in cb.factor_product]
    scale = np.array([PROXIES[p].scale for p in prods]) if prods else np.zeros(0)
    return FactorMeta.build(
        prods,
        cb.book.factor_month,
        cb.book.base,
        as_of,
        commodity=[PRODUCT_BY_CODE[p].commodity.value for p in prods],
        source=[str(s) for s in cb.factor_source],
        loading=cb.loading,
        tenor=np.divide(cb.loading, scale, out=np.ones_like(cb.loading), where=scale != 0),
    )


@dataclass(frozen=True, eq=False)
class StressRow:
    """One scenario's P&L: per currency, and per group of each currency."""

    scenario: Scenario
    builtin: bool
    pnl: dict[str, float]
    by_group: dict[str, np.ndarray]
    levels: dict[str, tuple[float, float]] = field(default_factory=dict)  # source: (start, end)

    def levels_text(self) -> str:
        if self.scenario.history is None:
            return ""
        h = self.scenario.history
        return "; ".join(
            f"{SOURCE_LABELS.get(s, s)} {a:g} ({h.start}) -> {b:g} ({h.end})"
            for s, (a, b) in sorted(self.levels.items())
        )


@dataclass(frozen=True, eq=False)
class StressResult:
    """All scenarios on one book."""

    as_of: dt.date
    currencies: tuple[str, ...]
    group_labels: dict[str, tuple[str, ...]]
    rows: tuple[StressRow, ...]
    errors: tuple[str, ...] = ()  # scenarios that could not run (e.g. a date without data)

    def worst(self, currency: str) -> int | None:
        """Index of the row with the lowest P&L in ``currency`` (``None`` without rows)."""
        if not self.rows:
            return None
        return int(np.argmin([r.pnl.get(currency, math.inf) for r in self.rows]))


@dataclass(frozen=True, eq=False)
class GridResult:
    """A grid's P&L per currency, shape ``grid.shape``."""

    as_of: dt.date
    grid: ScenarioGrid
    values: dict[str, np.ndarray]
    by_group: dict[str, np.ndarray]
    group_labels: dict[str, tuple[str, ...]]


class StressService:
    """Runs scenarios on :class:`RiskInputs`; ``history`` as for
    :class:`~app.services.risk.RiskService` (source code -> daily series)."""

    def __init__(self, history: Mapping[str, HistorySeries]) -> None:
        self.history = dict(history)

    @staticmethod
    def library() -> tuple[Scenario, ...]:
        return LIBRARY

    def source_levels(
        self, move: HistoricalMove, sources: Sequence[str]
    ) -> dict[str, tuple[float, float]]:
        """``{source: (level on start, level on end)}``; both dates must be observations."""
        out: dict[str, tuple[float, float]] = {}
        for s in sources:
            if s not in self.history:
                raise ScenarioError(f"no price history for {SOURCE_LABELS.get(s, s)}")
            h = self.history[s]
            d = np.asarray(h.dates, dtype="datetime64[D]")
            v = np.asarray(h.values, dtype=float)
            pair = []
            for day in (move.start, move.end):
                i = int(np.searchsorted(d, np.datetime64(day, "D")))
                if i >= d.size or d[i] != np.datetime64(day, "D"):
                    raise ScenarioError(
                        f"{SOURCE_LABELS.get(s, s)} has no price on {day} (not a business day, "
                        f"or outside {d[0]} .. {d[-1]})"
                    )
                pair.append(float(v[i]))
            out[s] = (pair[0], pair[1])
        return out

    def run(
        self,
        inputs: RiskInputs,
        scenarios: Sequence[Scenario] | None = None,
        *,
        mode: str | None = None,
        progress: Callable[[float], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> StressResult:
        """P&L of each scenario (default: :data:`LIBRARY`) per currency and group.

        ``mode`` overrides the historical scenarios' mode (``absolute``/``relative``).  A
        scenario that cannot run (a date without data) is reported in ``errors`` and the
        others still run.
        """
        scen = list(LIBRARY if scenarios is None else scenarios)
        if not inputs.currencies:
            if inputs.skipped:
                raise ValueError(
                    f"no risk factor for the products held: {', '.join(inputs.skipped)}"
                )
            raise ValueError("no open positions with a delta exposure")
        if mode is not None:
            scen = [
                Scenario(s.name, s.description, s.price, s.vol_points, s.horizon_days,
                         HistoricalMove(s.history.start, s.history.end, mode), s.tags)
                if s.history is not None else s
                for s in scen
            ]  # fmt: skip
        sources = sorted({s for cb in inputs.currencies for s in cb.sources})
        levels: list[dict[str, tuple[float, float]] | None] = []
        errors: list[str] = []
        ok: list[int] = []
        for i, s in enumerate(scen):
            if s.history is None:
                levels.append({})
                ok.append(i)
                continue
            try:
                levels.append(self.source_levels(s.history, sources))
                ok.append(i)
            except ScenarioError as exc:
                levels.append(None)
                errors.append(f"{s.name}: {exc}")
        pnl: dict[str, np.ndarray] = {}
        n_ccy = len(inputs.currencies)
        for c, cb in enumerate(inputs.currencies):
            meta = factor_meta(cb, inputs.as_of)
            x = np.array([scen[i].shifts(meta, levels[i]) for i in ok]).reshape(len(ok), -1)
            dv = np.array([scen[i].vol_shift for i in ok])
            hz = np.array([scen[i].horizon_days for i in ok])

            def sub(f: float, c: int = c) -> None:
                if progress is not None:
                    progress((c + f) / n_ccy)

            pnl[cb.currency] = evaluate_scenarios(cb.book, x, dv, hz, by_group=True,
                                                  progress=sub, cancelled=cancelled)  # fmt: skip
        rows = []
        for r, i in enumerate(ok):
            s = scen[i]
            rows.append(
                StressRow(
                    scenario=s,
                    builtin=s.name.casefold() in BUILTIN_NAMES and "builtin" in s.tags,
                    pnl={k: float(v[r].sum()) for k, v in pnl.items()},
                    by_group={k: v[r].copy() for k, v in pnl.items()},
                    levels=levels[i] or {},
                )
            )
        return StressResult(
            as_of=inputs.as_of,
            currencies=tuple(cb.currency for cb in inputs.currencies),
            group_labels={cb.currency: cb.group_labels for cb in inputs.currencies},
            rows=tuple(rows),
            errors=tuple(errors),
        )

    def grid(
        self,
        inputs: RiskInputs,
        grid: ScenarioGrid,
        *,
        progress: Callable[[float], object] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> GridResult:
        """P&L of every grid cell per currency (and per group)."""
        if not inputs.currencies:
            raise ValueError("no open positions with a delta exposure")
        values: dict[str, np.ndarray] = {}
        groups: dict[str, np.ndarray] = {}
        n_ccy = len(inputs.currencies)
        for c, cb in enumerate(inputs.currencies):

            def sub(f: float, c: int = c) -> None:
                if progress is not None:
                    progress((c + f) / n_ccy)

            meta = factor_meta(cb, inputs.as_of)
            g = evaluate_grid(cb.book, meta, grid, by_group=True, progress=sub, cancelled=cancelled)
            groups[cb.currency] = g
            values[cb.currency] = g.sum(axis=-1)
        return GridResult(
            as_of=inputs.as_of,
            grid=grid,
            values=values,
            by_group=groups,
            group_labels={cb.currency: cb.group_labels for cb in inputs.currencies},
        )
