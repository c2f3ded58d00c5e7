"""Stress scenarios and scenario grids on a :class:`~app.engine.risk.book.RiskBook`.

Pure numpy (the revaluation is :func:`app.engine.risk.book.revalue`); no Qt, no I/O.

A :class:`Scenario` is a named combination of

* price shocks (:class:`PriceShock`): an *absolute* shift in the product's price unit or a
  *relative* shift in percent of each factor's base level, applied to the factors selected by
  product, commodity, tenor bucket (months ahead of the valuation month, ``M0`` being the
  valuation month itself, ``M1`` the front month) and/or a delivery-month range.  Several shocks
  that select the same factor add up (relative shocks are not compounded);
* a historical move (:class:`HistoricalMove`): each source series' price change between two
  dates, mapped to the factors by the VaR's proxy/tenor loadings (``shift_j = loading_j x
  (level_end - level_start)`` of the factor's source; or, in ``relative`` mode, ``base_j x
  tenor_j x (level_end / level_start - 1)``).  The caller supplies the levels
  (``source_levels``); the engine never reads files;
* a vol shift in absolute vol points (``5`` = +5 points = ``vol_shift=0.05``), for every option
  (``revalue`` takes one vol shift per scenario);
* a horizon in calendar days (options lose that much time to expiry).

Scenarios and grids round-trip through plain dicts (JSON): ``to_dict`` / ``from_dict``, and
``from_dict`` raises :class:`ScenarioError` (a ``ValueError``) naming the bad field, e.g.
``"price[1].value: must be a finite number, got 'abc'"``.

A :class:`ScenarioGrid` has two or three :class:`GridAxis` (price shift %, price shift in price
units, vol points, days forward); :func:`evaluate_grid` revalues every cell in chunks with
``progress(fraction)`` / ``cancelled()``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.engine.risk.book import RiskBook, revalue

__all__ = [
    "GRID_AXES",
    "PRICE_MODES",
    "FactorMeta",
    "GridAxis",
    "HistoricalMove",
    "PriceShock",
    "Scenario",
    "ScenarioError",
    "ScenarioGrid",
    "evaluate_grid",
    "evaluate_scenarios",
    "scenario_cells",
]

FloatArray = NDArray[np.float64]

#: Price shock modes: ``absolute`` (price units) or ``relative`` (percent of the base level).
PRICE_MODES: tuple[str, ...] = ("absolute", "relative")

#: Grid axis kind -> title (with unit).
GRID_AXES: dict[str, str] = {
    "price_pct": "Price shift (%)",
    "price_abs": "Price shift (price units)",
    "vol_points": "Vol shift (points)",
    "days": "Days forward",
}

#: Bounds that catch typing slips (a vol shift of 500 points, a 10-year horizon).
MAX_VOL_POINTS = 200.0
MAX_HORIZON_DAYS = 3650.0
MAX_GRID_CELLS = 250_000


class ScenarioError(ValueError):
    """A scenario or grid specification is invalid (the message names the field)."""


# --------------------------------------------------------------------------- factor metadata


@dataclass(frozen=True, eq=False)
class FactorMeta:
    """What a shock needs to know about each of a book's ``m`` factors.

    ``product``, ``commodity`` (object arrays of str), ``month`` (``datetime64[M]``),
    ``months_ahead`` (delivery month minus the valuation month), ``base`` (level), ``source``
    (the history series the factor moves with), ``loading`` (factor move per unit source move:
    proxy scale x tenor loading) and ``tenor`` (the tenor loading alone, for relative moves).
    """

    product: np.ndarray
    commodity: np.ndarray
    month: np.ndarray
    months_ahead: NDArray[np.int64]
    base: FloatArray
    source: np.ndarray
    loading: FloatArray
    tenor: FloatArray

    @property
    def n_factors(self) -> int:
        return int(self.base.size)

    @classmethod
    def build(
        cls,
        product: Sequence[str] | np.ndarray,
        month: ArrayLike,
        base: ArrayLike,
        as_of: dt.date | np.datetime64,
        *,
        commodity: Sequence[str] | np.ndarray | None = None,
        source: Sequence[str] | np.ndarray | None = None,
        loading: ArrayLike | None = None,
        tenor: ArrayLike | None = None,
    ) -> FactorMeta:
        """Check shapes and fill the defaults (commodity ``""``, source = product, loading 1)."""
        prod = np.asarray(product, dtype=object)
        m = prod.size
        mon = np.asarray(month).astype("datetime64[M]")
        b = np.asarray(base, dtype=float)

        def obj(x: Any, default: np.ndarray) -> np.ndarray:
            return default if x is None else np.asarray(x, dtype=object)

        def num(x: Any) -> FloatArray:
            return np.ones(m) if x is None else np.asarray(x, dtype=float)

        meta = cls(
            product=prod,
            commodity=obj(commodity, np.full(m, "", dtype=object)),
            month=mon,
            months_ahead=(
                mon - np.asarray(as_of, dtype="datetime64[D]").astype("datetime64[M]")
            ).astype(np.int64),
            base=b,
            source=obj(source, prod),
            loading=num(loading),
            tenor=num(tenor),
        )
        for name in ("commodity", "month", "base", "source", "loading", "tenor"):
            if np.shape(getattr(meta, name)) != (m,):
                raise ValueError(f"{name} must have one entry per factor ({m})")
        return meta


# --------------------------------------------------------------------------- validation helpers


def _num(d: Mapping[str, Any], key: str, where: str, default: float | None = None) -> float:
    if key not in d or d[key] is None:
        if default is None:
            raise ScenarioError(f"{where}{key}: required")
        return default
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ScenarioError(f"{where}{key}: must be a finite number, got {v!r}")
    try:
        x = float(v)
    except ValueError:
        raise ScenarioError(f"{where}{key}: must be a finite number, got {v!r}") from None
    if not math.isfinite(x):
        raise ScenarioError(f"{where}{key}: must be a finite number, got {v!r}")
    return x


def _opt_int(d: Mapping[str, Any], key: str, where: str) -> int | None:
    if d.get(key) is None or d.get(key) == "":
        return None
    x = _num(d, key, where)
    if x != int(x) or x < 0:
        raise ScenarioError(f"{where}{key}: must be a whole number of months >= 0, got {d[key]!r}")
    return int(x)


def _opt_month(d: Mapping[str, Any], key: str, where: str) -> str | None:
    v = d.get(key)
    if v is None or v == "":
        return None
    try:
        return str(np.datetime64(str(v), "M"))
    except ValueError:
        raise ScenarioError(f"{where}{key}: must be a month like 2027-01, got {v!r}") from None


def _names(d: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    v = d.get(key) or ()
    if isinstance(v, str):
        v = [x for x in v.replace(";", ",").split(",")]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        raise ScenarioError(f"{where}{key}: must be a list of names, got {v!r}")
    return tuple(x.strip() for x in v if x.strip())


def _date(d: Mapping[str, Any], key: str, where: str) -> dt.date:
    v = d.get(key)
    if isinstance(v, dt.date):
        return v
    try:
        return dt.date.fromisoformat(str(v))
    except (TypeError, ValueError):
        raise ScenarioError(f"{where}{key}: must be a date like 2020-04-20, got {v!r}") from None


def _unknown(d: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise ScenarioError(f"{where}unknown field(s): {', '.join(map(str, extra))}")


def _mapping(d: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(d, Mapping):
        raise ScenarioError(f"{where or 'scenario'}: must be an object, got {type(d).__name__}")
    return d


# --------------------------------------------------------------------------- shocks


@dataclass(frozen=True)
class PriceShock:
    """A price shift of the factors matching every given filter (empty filter: all).

    ``value`` is in price units (``mode="absolute"``) or percent of the base level
    (``"relative"``); ``tenor_from``/``tenor_to`` bound the months ahead (inclusive, ``None``:
    open); ``month_from``/``month_to`` bound the delivery month (``"YYYY-MM"``, inclusive).
    Products and commodities match case-insensitively.
    """

    value: float
    mode: str = "relative"
    products: tuple[str, ...] = ()
    commodities: tuple[str, ...] = ()
    tenor_from: int | None = None
    tenor_to: int | None = None
    month_from: str | None = None
    month_to: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, where: str = "") -> None:
        if self.mode not in PRICE_MODES:
            raise ScenarioError(
                f"{where}mode: must be one of {list(PRICE_MODES)}, got {self.mode!r}"
            )
        if not math.isfinite(self.value):
            raise ScenarioError(f"{where}value: must be a finite number")
        if self.mode == "relative" and self.value <= -1000:
            raise ScenarioError(f"{where}value: a relative shift must be above -1000 %")
        lo, hi = self.tenor_from, self.tenor_to
        if lo is not None and hi is not None and hi < lo:
            raise ScenarioError(f"{where}tenor_to: must be >= tenor_from ({hi} < {lo})")
        a, b = self.month_from, self.month_to
        if a is not None and b is not None and np.datetime64(b, "M") < np.datetime64(a, "M"):
            raise ScenarioError(f"{where}month_to: must not be before month_from ({b} < {a})")

    def mask(self, meta: FactorMeta) -> NDArray[np.bool_]:
        """The factors this shock moves."""
        sel = np.ones(meta.n_factors, dtype=bool)
        if self.products:
            want = {p.casefold() for p in self.products}
            sel &= np.array([str(p).casefold() in want for p in meta.product], dtype=bool)
        if self.commodities:
            want = {c.casefold() for c in self.commodities}
            sel &= np.array([str(c).casefold() in want for c in meta.commodity], dtype=bool)
        if self.tenor_from is not None:
            sel &= meta.months_ahead >= self.tenor_from
        if self.tenor_to is not None:
            sel &= meta.months_ahead <= self.tenor_to
        if self.month_from is not None:
            sel &= meta.month >= np.datetime64(self.month_from, "M")
        if self.month_to is not None:
            sel &= meta.month <= np.datetime64(self.month_to, "M")
        return sel

    def shifts(self, meta: FactorMeta) -> FloatArray:
        """Additive factor shifts, shape ``(m,)``."""
        size = self.value if self.mode == "absolute" else meta.base * (self.value / 100.0)
        return np.where(self.mask(meta), size, 0.0)

    def text(self) -> str:
        """``'+10 % CR-WTI M1-M3'``-like summary."""
        size = f"{self.value:+g} %" if self.mode == "relative" else f"{self.value:+g} abs"
        parts = [size]
        if self.products:
            parts.append("/".join(self.products))
        if self.commodities:
            parts.append("/".join(self.commodities))
        if self.tenor_from is not None or self.tenor_to is not None:
            lo = "" if self.tenor_from is None else str(self.tenor_from)
            hi = "+" if self.tenor_to is None else f"-M{self.tenor_to}"
            parts.append(f"M{lo or 0}{hi}")
        if self.month_from or self.month_to:
            parts.append(f"{self.month_from or '…'}..{self.month_to or '…'}")
        if len(parts) == 1:
            parts.append("all")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": self.mode, "value": self.value}
        for key in ("products", "commodities"):
            if getattr(self, key):
                d[key] = list(getattr(self, key))
        for key in ("tenor_from", "tenor_to", "month_from", "month_to"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> PriceShock:
        d = _mapping(d, where)
        _unknown(d, ("mode", "value", "products", "commodities", "tenor_from", "tenor_to",
                     "month_from", "month_to"), where)  # fmt: skip
        mode = d.get("mode", "relative")
        if mode not in PRICE_MODES:
            raise ScenarioError(f"{where}mode: must be one of {list(PRICE_MODES)}, got {mode!r}")
        return cls(
            value=_num(d, "value", where),
            mode=str(mode),
            products=_names(d, "products", where),
            commodities=_names(d, "commodities", where),
            tenor_from=_opt_int(d, "tenor_from", where),
            tenor_to=_opt_int(d, "tenor_to", where),
            month_from=_opt_month(d, "month_from", where),
            month_to=_opt_month(d, "month_to", where),
        )


@dataclass(frozen=True)
class HistoricalMove:
    """The move of every source series from ``start`` to ``end`` (both observation dates)."""

    start: dt.date
    end: dt.date
    mode: str = "absolute"

    def __post_init__(self) -> None:
        if self.mode not in PRICE_MODES:
            raise ScenarioError(
                f"history.mode: must be one of {list(PRICE_MODES)}, got {self.mode!r}"
            )
        if self.end <= self.start:
            raise ScenarioError(
                f"history.end: must be after history.start ({self.end} <= {self.start})"
            )

    def shifts(self, meta: FactorMeta, levels: Mapping[str, tuple[float, float]]) -> FloatArray:
        """Factor shifts from the source levels ``{source: (level_start, level_end)}``."""
        out = np.zeros(meta.n_factors)
        for src in sorted({str(s) for s in meta.source}):
            if src not in levels:
                raise ScenarioError(f"history: no levels for source {src}")
            a, b = (float(x) for x in levels[src])
            j = meta.source == src
            if self.mode == "absolute":
                out[j] = meta.loading[j] * (b - a)
            else:
                if not a > 0:
                    raise ScenarioError(
                        f"history: {src} level on {self.start} is {a}, a relative move needs > 0"
                    )
                out[j] = meta.base[j] * meta.tenor[j] * (b / a - 1.0)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "mode": self.mode}

    @classmethod
    def from_dict(cls, d: Any, where: str = "history.") -> HistoricalMove:
        d = _mapping(d, where)
        _unknown(d, ("start", "end", "mode"), where)
        return cls(_date(d, "start", where), _date(d, "end", where), str(d.get("mode", "absolute")))


@dataclass(frozen=True)
class Scenario:
    """A named stress scenario (see the module docstring)."""

    name: str
    description: str = ""
    price: tuple[PriceShock, ...] = ()
    vol_points: float = 0.0
    horizon_days: float = 0.0
    history: HistoricalMove | None = None
    tags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ScenarioError("name: required")
        if len(self.name) > 80:
            raise ScenarioError("name: at most 80 characters")
        if not math.isfinite(self.vol_points) or abs(self.vol_points) > MAX_VOL_POINTS:
            raise ScenarioError(f"vol_points: must be within ±{MAX_VOL_POINTS:g} vol points")
        if not math.isfinite(self.horizon_days) or not 0 <= self.horizon_days <= MAX_HORIZON_DAYS:
            raise ScenarioError(f"horizon_days: must be 0..{MAX_HORIZON_DAYS:g} calendar days")
        if (
            not self.price
            and self.history is None
            and self.vol_points == 0
            and self.horizon_days == 0
        ):
            raise ScenarioError(
                "scenario: shocks nothing (add a price shock, a vol shift, a horizon or a historical move)"
            )

    @property
    def vol_shift(self) -> float:
        """The vol shift as :func:`revalue` takes it (``0.05`` = 5 points)."""
        return self.vol_points / 100.0

    def shifts(
        self, meta: FactorMeta, levels: Mapping[str, tuple[float, float]] | None = None
    ) -> FloatArray:
        """Factor shifts, shape ``(m,)``: the sum of the price shocks and the historical move."""
        out = np.zeros(meta.n_factors)
        for s in self.price:
            out += s.shifts(meta)
        if self.history is not None:
            if levels is None:
                raise ScenarioError(f"{self.name}: a historical move needs the source levels")
            out += self.history.shifts(meta, levels)
        return out

    def text(self) -> str:
        """A one-line summary of the shocks."""
        parts = [s.text() for s in self.price]
        if self.history is not None:
            h = self.history
            parts.append(f"history {h.start}..{h.end} ({h.mode})")
        if self.vol_points:
            parts.append(f"vol {self.vol_points:+g} pts")
        if self.horizon_days:
            parts.append(f"{self.horizon_days:g} days")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.price:
            d["price"] = [s.to_dict() for s in self.price]
        if self.vol_points:
            d["vol_points"] = self.vol_points
        if self.horizon_days:
            d["horizon_days"] = self.horizon_days
        if self.history is not None:
            d["history"] = self.history.to_dict()
        if self.tags:
            d["tags"] = list(self.tags)
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Scenario:
        """Build and validate; :class:`ScenarioError` names the bad field."""
        d = _mapping(d, "scenario")
        _unknown(d, ("name", "description", "price", "vol_points", "horizon_days", "history",
                     "tags"), "")  # fmt: skip
        name = d.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ScenarioError("name: required")
        desc = d.get("description", "") or ""
        if not isinstance(desc, str):
            raise ScenarioError("description: must be text")
        raw = d.get("price", []) or []
        if not isinstance(raw, list):
            raise ScenarioError("price: must be a list of price shocks")
        price = tuple(PriceShock.from_dict(x, f"price[{i}].") for i, x in enumerate(raw))
        hist = d.get("history")
        return cls(
            name=name.strip(),
            description=desc,
            price=price,
            vol_points=_num(d, "vol_points", "", 0.0),
            horizon_days=_num(d, "horizon_days", "", 0.0),
            history=None if hist is None else HistoricalMove.from_dict(hist),
            tags=_names(d, "tags", ""),
        )


# --------------------------------------------------------------------------- evaluation


def evaluate_scenarios(
    book: RiskBook,
    shifts: ArrayLike,
    vol_shift: ArrayLike,
    horizon_days: ArrayLike,
    *,
    by_group: bool = False,
    chunk_rows: int = 256,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FloatArray:
    """Full-revaluation P&L of ``k`` scenarios with their own vol shift and horizon.

    ``shifts`` is ``(k, m)``; ``vol_shift`` and ``horizon_days`` broadcast to ``(k,)``.  Rows
    of equal horizon go to :func:`revalue` together, in chunks of ``chunk_rows``; ``cancelled()``
    is polled between chunks (raises :class:`concurrent.futures.CancelledError`).
    Returns ``(k,)`` totals or ``(k, n_groups)``.
    """
    x = np.asarray(shifts, dtype=float).reshape(-1, book.n_factors)
    k = x.shape[0]
    dv = np.broadcast_to(np.asarray(vol_shift, dtype=float), (k,))
    hz = np.broadcast_to(np.asarray(horizon_days, dtype=float), (k,))
    out = np.zeros((k, book.n_groups))
    done = 0
    for h in np.unique(hz):
        rows = np.flatnonzero(hz == h)
        for a in range(0, rows.size, max(1, chunk_rows)):
            if cancelled is not None and cancelled():
                raise CancelledError
            r = rows[a : a + chunk_rows]
            out[r] = revalue(book, x[r], dv[r], float(h), by_group=True, workers=1)
            done += r.size
            if progress is not None:
                progress(done / k)
    if progress is not None and k == 0:
        progress(1.0)
    return out if by_group else out.sum(axis=1)


@dataclass(frozen=True)
class GridAxis:
    """One axis of a scenario grid: a kind of :data:`GRID_AXES` and its values."""

    kind: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.kind not in GRID_AXES:
            raise ScenarioError(f"axis kind must be one of {list(GRID_AXES)}, got {self.kind!r}")
        if not self.values:
            raise ScenarioError(f"{self.kind}: needs at least one value")
        v = np.asarray(self.values, dtype=float)
        if not np.all(np.isfinite(v)):
            raise ScenarioError(f"{self.kind}: values must be finite")
        if self.kind == "days" and (np.any(v < 0) or np.any(v > MAX_HORIZON_DAYS)):
            raise ScenarioError(f"days: must be 0..{MAX_HORIZON_DAYS:g}")
        if self.kind == "vol_points" and np.any(np.abs(v) > MAX_VOL_POINTS):
            raise ScenarioError(f"vol_points: must be within ±{MAX_VOL_POINTS:g}")

    @property
    def title(self) -> str:
        return GRID_AXES[self.kind]

    @classmethod
    def steps(cls, kind: str, start: float, stop: float, steps: int) -> GridAxis:
        """``steps`` evenly spaced values from ``start`` to ``stop`` inclusive."""
        if int(steps) != steps or not 1 <= steps <= 201:
            raise ScenarioError(f"{kind}: steps must be a whole number 1..201, got {steps!r}")
        if steps == 1:
            return cls(kind, (float(start),))
        vals = np.linspace(float(start), float(stop), int(steps))
        return cls(kind, tuple(float(round(v, 10)) for v in vals))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "") -> GridAxis:
        d = _mapping(d, where)
        vals = d.get("values")
        if not isinstance(vals, list) or not vals:
            raise ScenarioError(f"{where}values: must be a non-empty list of numbers")
        nums = tuple(_num({"v": v}, "v", f"{where}values[{i}]") for i, v in enumerate(vals))
        return cls(str(d.get("kind")), nums)


@dataclass(frozen=True)
class ScenarioGrid:
    """A grid of scenarios over two or three axes of distinct kinds (C order over the axes).

    Price axes shift every factor (``price_pct``: percent of its base; ``price_abs``: price
    units); the vol axis is in vol points; the days axis is the horizon in calendar days.
    """

    axes: tuple[GridAxis, ...]

    def __post_init__(self) -> None:
        if not 2 <= len(self.axes) <= 3:
            raise ScenarioError(f"a grid needs 2 or 3 axes, got {len(self.axes)}")
        kinds = [a.kind for a in self.axes]
        if len(set(kinds)) != len(kinds):
            raise ScenarioError(f"grid axes must be different kinds, got {kinds}")
        if math.prod(self.shape) > MAX_GRID_CELLS:
            raise ScenarioError(
                f"grid has {math.prod(self.shape):,} cells, at most {MAX_GRID_CELLS:,}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"axes": [a.to_dict() for a in self.axes]}

    @classmethod
    def from_dict(cls, d: Any) -> ScenarioGrid:
        d = _mapping(d, "grid")
        axes = d.get("axes")
        if not isinstance(axes, list):
            raise ScenarioError("axes: must be a list")
        return cls(tuple(GridAxis.from_dict(a, f"axes[{i}].") for i, a in enumerate(axes)))


def scenario_cells(
    grid: ScenarioGrid, meta: FactorMeta, cells: ArrayLike | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(shifts (n, m), vol_shift (n,), horizon_days (n,))`` of grid cells (flat C-order
    indices ``cells``, default all)."""
    idx = np.arange(grid.size) if cells is None else np.asarray(cells, dtype=np.int64)
    subs = np.unravel_index(idx, grid.shape)
    pct = np.zeros(idx.size)
    absolute = np.zeros(idx.size)
    vol = np.zeros(idx.size)
    days = np.zeros(idx.size)
    for axis, sub in zip(grid.axes, subs, strict=True):
        v = np.asarray(axis.values, dtype=float)[sub]
        if axis.kind == "price_pct":
            pct = v
        elif axis.kind == "price_abs":
            absolute = v
        elif axis.kind == "vol_points":
            vol = v / 100.0
        else:
            days = v
    shifts = pct[:, None] / 100.0 * meta.base[None, :] + absolute[:, None]
    return shifts, vol, days


def evaluate_grid(
    book: RiskBook,
    meta: FactorMeta,
    grid: ScenarioGrid,
    *,
    by_group: bool = False,
    max_cells: int = 1_000_000,
    progress: Callable[[float], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FloatArray:
    """P&L of every grid cell, shape ``grid.shape`` (``+ (n_groups,)`` with ``by_group``).

    Cells are built and revalued in chunks of at most ``max_cells`` (cells x factors) so
    memory stays bounded; ``progress``/``cancelled`` as in :func:`evaluate_scenarios`.
    """
    if meta.n_factors != book.n_factors:
        raise ValueError(f"meta has {meta.n_factors} factors, the book {book.n_factors}")
    n = grid.size
    rows = max(1, min(n, max_cells // max(book.n_factors, 1)))
    out = np.zeros((n, book.n_groups))
    for a in range(0, n, rows):
        if cancelled is not None and cancelled():
            raise CancelledError
        b = min(a + rows, n)
        x, dv, hz = scenario_cells(grid, meta, np.arange(a, b))

        def sub(f: float, a: int = a, b: int = b) -> None:
            if progress is not None:
                progress((a + f * (b - a)) / n)

        out[a:b] = evaluate_scenarios(book, x, dv, hz, by_group=True, progress=sub,
                                      cancelled=cancelled)  # fmt: skip
    shape = grid.shape + ((book.n_groups,) if by_group else ())
    return (out if by_group else out.sum(axis=1)).reshape(shape)
