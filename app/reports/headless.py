"""``quantaenergi risk report``: the VaR/ES report of the local store, without a window or a feed.

The same path as the GUI started with ``--no-feed``: open the store of the data dir, put the last
recorded settlement curves into a market state exactly as the market-data service does at
start-up (:meth:`~app.feed.service.MarketDataService.load_history`, all marked stale), revalue
the open trades with :class:`~app.services.positions.PositionService` (options at the default
vol, the feed quoting none), build the risk inputs with the feed simulator's tenor vols and
compute VaR/ES with :class:`~app.services.risk.RiskService` on the bundled EIA histories, then
write the file with :func:`app.reports.risk.write_report`.

``as_of`` (``--as-of``) values the book on that day with each product's settlement curve dated on
or before it, and ends the history window there; without it the book is valued today with the
latest curves and the whole bundled history, like the Risk dock.

Every problem a user can cause (unknown book or method, bad extension, unwritable path, missing
or empty store, no curves) raises :class:`~app.reports.risk.ReportError` or ``ValueError`` with
a one-line message; the command line prints it and exits with code 2.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.curves import ForwardCurve
from app.reports.risk import ReportError, check_output_path, write_report
from app.services.risk import (
    GROUP_BY,
    MAX_HORIZON,
    METHODS,
    HistorySeries,
    RiskResult,
    RiskService,
    TenorVol,
    risk_inputs,
)
from app.settings import Settings

__all__ = [
    "METHOD_ALIASES",
    "RiskReportRequest",
    "load_bundled_history",
    "recorded_curves",
    "resolve_method",
    "run_risk_report",
    "tenor_vols",
]

#: Short method names of the command line -> :data:`app.services.risk.METHODS` keys.
METHOD_ALIASES: dict[str, str] = {
    "hist": "historical",
    "hist-dg": "historical_dg",
    "param": "parametric",
    "dg-cf": "delta_gamma_cf",
    "mc": "monte_carlo",
}


def resolve_method(name: str) -> str:
    """The :data:`~app.services.risk.METHODS` key of a short or full method name (``-`` and
    ``_`` alike); ``ReportError`` naming the choices otherwise."""
    key = name.strip().lower()
    key = METHOD_ALIASES.get(key, key.replace("-", "_"))
    if key not in METHODS:
        choices = ", ".join([*METHOD_ALIASES, *METHODS])
        raise ReportError(f"unknown method {name!r}: choose one of {choices}")
    return key


def load_bundled_history() -> dict[str, HistorySeries]:
    """The bundled EIA Brent, WTI and Henry Hub daily series, keyed by the product they price
    (the Risk dock's source of history, without Qt)."""
    from app.feed.history import read_series
    from app.feed.replay import bundled_series

    return {m.product: read_series(m.path) for m in bundled_series()}


def tenor_vols() -> dict[str, TenorVol]:
    """The Samuelson vol term structure per product (the feed simulator's calibrated model)."""
    from app.feed.sim_params import SIM_PARAMS

    return dict(SIM_PARAMS)


def recorded_curves(
    store: Any, products: Sequence[str] | set[str], log_dir: Path, as_of: dt.date | None = None
) -> tuple[dict[str, ForwardCurve], set[str]]:
    """Curves to mark ``products`` with when no feed runs, and which are stale (all of them).

    Without ``as_of``: the latest recorded settlement curves, loaded the way the workstation does
    at start-up without a feed. With it: each product's settlement curve dated on or before it.
    """
    from app.feed.market_state import LiveCurve
    from app.feed.service import MarketDataService

    curves: dict[str, ForwardCurve] = {}
    if as_of is None:
        market = MarketDataService(store, log_dir, embedded=False)
        market.load_history()
        for p in sorted(products):
            crv = market.state.forward_curve(p)
            if crv is not None:
                curves[p] = crv
    else:
        from app.models.market_data import MarketDataRepository

        repo = MarketDataRepository(store)
        for p in sorted(products):
            rec = repo.settlement_curve(p, as_of)
            if rec is not None:
                live = LiveCurve(p, np.datetime64(rec.start, "M"), np.asarray(rec.prices),
                                 rec.ts, rec.settle_date.isoformat())  # fmt: skip
                curves[p] = live.to_forward_curve()
    return curves, set(curves)


@dataclass(frozen=True)
class RiskReportRequest:
    """What ``quantaenergi risk report`` was asked for (``method`` may be a short name)."""

    out: Path
    books: tuple[str, ...] = ()
    method: str = "historical"
    confidence: float = 0.99
    horizon_days: int = 1
    group_by: str = "product"
    as_of: dt.date | None = None
    data_dir: str | Path | None = None
    history: Callable[[], Mapping[str, HistorySeries]] = field(
        default=load_bundled_history, repr=False
    )


def _check(req: RiskReportRequest) -> tuple[str, Path]:
    """Validate the cheap things first, so a bad flag never waits for a calculation."""
    method = resolve_method(req.method)
    out = check_output_path(req.out)
    if not 0.5 <= req.confidence < 1.0:
        raise ReportError(f"confidence must be in [0.5, 1), e.g. 0.99; got {req.confidence:g}")
    if not 1 <= req.horizon_days <= MAX_HORIZON:
        raise ReportError(f"horizon must be 1..{MAX_HORIZON} business days, got {req.horizon_days}")
    if req.group_by not in GROUP_BY:
        raise ReportError(f"--group-by must be one of {', '.join(GROUP_BY)}, got {req.group_by!r}")
    return method, out


def run_risk_report(req: RiskReportRequest) -> tuple[Path, RiskResult]:
    """Compute the report of ``req`` and write it; returns the file and the result."""
    from app.models.repository import TradeRepository
    from app.models.store import Store
    from app.services.positions import PositionService

    method, out = _check(req)
    settings = Settings.load(req.data_dir)
    if not settings.store_path.is_file():
        raise ReportError(
            f"no store in {settings.data_dir} (start the workstation once, or pass --data-dir)"
        )
    store = Store.open_file(settings.store_path)
    try:
        service = PositionService(TradeRepository(store))
        snap = service.snapshot()
        if len(snap) == 0:
            raise ReportError(
                f"the store in {settings.data_dir} holds no trades: nothing to report"
            )
        known = {str(b.name).casefold() for b in snap.ref.books.values()}
        unknown = [b for b in req.books if b.casefold() not in known]
        if unknown:
            names = ", ".join(sorted(str(b.name) for b in snap.ref.books.values()))
            raise ReportError(
                f"unknown book {', '.join(map(repr, unknown))}: the store has {names}"
            )
        curves, stale = recorded_curves(store, snap.product_codes, settings.log_dir, req.as_of)
    finally:
        store.close()
    as_of = req.as_of or dt.date.today()
    report = service.revalue(snap, curves, as_of, dimension="product", stale=stale)
    inputs = risk_inputs(report, req.group_by, books=list(req.books) or None,
                         tenor_vols=tenor_vols())  # fmt: skip
    scope = "book " + ", ".join(req.books) if req.books else "the store"
    if not inputs.currencies:
        missing = sorted(p for p, s in report.curve_status.items() if s == "missing")
        if inputs.n_unmarked and missing:
            when = f" dated on or before {as_of.isoformat()}" if req.as_of else ""
            raise ReportError(f"no recorded settlement curve{when} for {', '.join(missing)}: "
                              f"the {inputs.n_unmarked} open trade(s) of {scope} cannot be "
                              "marked (run the workstation with a feed once to record curves)")  # fmt: skip
        if inputs.skipped:
            raise ReportError(f"no risk factor for the products held: {', '.join(inputs.skipped)}")
        raise ReportError(f"no open positions with a delta exposure in {scope} "
                          f"on {as_of.isoformat()}: nothing to report")  # fmt: skip
    result = RiskService(req.history()).calculate(
        inputs, method, req.confidence, req.horizon_days, window_end=req.as_of
    )
    return write_report(result, report, out, inputs=inputs), result
