"""The feed's replay mode: historical daily spot series replayed at a chosen speed.

:class:`ReplaySource` implements :class:`app.feed.source.PriceSource` (``mode = "replay"``).
Each mapped series (:class:`~app.feed.history.SeriesMapping`) drives one catalogue product.

Semantics
---------
* **Trading days.** The replay walks the union of the mapped series' dates from the first
  replay day on. ``speed`` is in trading days per wall-clock second: ``advance(2.5)`` at
  speed 2 replays 5 days. Fractions carry over in an accumulator; one call replays at most
  ``max_days_per_call`` days (default 500) and carries the rest, so a huge step never builds a
  huge batch.
* **Spot.** On each replayed day, each product whose series has a value gets a ``trade`` tick
  on ``PRODUCT:SPOT`` whose ``last`` is the series value *exactly* (WTI's -36.98 on 2020-04-20
  is delivered unchanged), with ``bid``/``ask`` = ``last`` ∓ a fixed half-spread of 0.05 % of
  the product's catalogue ``typical_level`` (absolute price units, so it is well defined for
  zero and negative prices: 0.035 USD/bbl for WTI, 0.0017 USD/MMBtu for Henry Hub), and a
  ``settle`` tick at the day's end with the same price (the daily series *is* the close). A day
  on which a series has no value (its holiday) produces nothing for that product.
* **Forwards (proxy).** The data holds no forward history, so the forward curve is an explicit
  proxy that moves in parallel with spot. With ``k`` the number of months between the replay
  date's month and a delivery month::

      curve[m] = spot + slope * k + seasonal[month(m)] - seasonal[month(replay date)]   (k >= 1)
      curve[m] = spot                                                                   (k <= 0)

  i.e. a fixed additive term-structure :class:`TermShape` per product (mild contango plus, for
  gas, power and refined products, a cosine seasonal premium), in absolute price units, so a
  negative spot stays a valid curve; months already delivering or delivered converge to spot.
  Month, quarter, season and cal instruments are the delivery-weighted averages of that curve
  (:meth:`app.engine.curves.ForwardCurve.price`, hours-weighted for power). Each replayed day
  emits one full live :class:`~app.feed.protocol.CurveUpdate` per product and one settlement
  curve (``settle`` = the historical date), and trade + settle ticks for every forward
  instrument.
* **Instruments** are built once, at construction, with
  :func:`~app.feed.instruments.build_instruments` on the first replay day, and stay fixed for the
  source's life (the protocol requires it). The curve covers every instrument's delivery
  period (:func:`~app.feed.instruments.curve_months`), so it stays fixed in length too; as the
  replay date moves past those months they converge to spot.
* **Default start: 2020-01-02**, the first trading day of 2020, so that at speed 1 the WTI
  event of April 2020 (18.31 → -36.98 → 8.91) is reached after about 75 seconds and the
  Covid-era volatility follows. ``start=None`` replays from the first date of the series.
* **Loop.** With ``loop=True`` (default; long benchmarks replay at full speed) the replay
  restarts at the first replay day when the history ends; with ``loop=False`` it stops and
  :attr:`ReplaySource.finished` becomes true.
* ``ts`` of every tick and curve is the ``now_ns`` passed in (the exchange time is wall time);
  the historical date travels in the settlement curves' ``settle`` and in
  :attr:`ReplaySource.replay_date`.

The default mappings (:func:`bundled_series`) are the public-domain EIA Brent, WTI and Henry Hub
daily series bundled in ``resources/market`` (see its README for attribution).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

import app
from app.engine.curves import ForwardCurve
from app.feed.history import PriceSeries, SeriesMapping
from app.feed.instruments import Instrument, build_instruments, curve_months
from app.feed.protocol import CurveUpdate, Tick
from app.feed.source import Batch
from app.models.catalogue import PRODUCT_BY_CODE, ProductSpec
from app.models.enums import Commodity

__all__ = [
    "DEFAULT_MAX_DAYS_PER_CALL",
    "DEFAULT_START",
    "HALF_SPREAD_FRACTION",
    "ReplaySource",
    "TermShape",
    "bundled_series",
    "default_shape",
    "market_resources_dir",
]

DEFAULT_START = date(2020, 1, 2)
DEFAULT_MAX_DAYS_PER_CALL = 500
#: half bid/ask spread as a fraction of the product's catalogue typical level (absolute units)
HALF_SPREAD_FRACTION = 0.0005
_MAX_CARRY = 1e12  # days the accumulator may carry (keeps floor() finite for absurd steps)
_EPS = 1e-9  # tolerance on the day accumulator (0.1 * 10 steps is one day, not 0.999...)

BUNDLED_FILES: tuple[tuple[str, str], ...] = (
    ("eia-brent-daily.csv", "CR-BRENT"),
    ("eia-wti-daily.csv", "CR-WTI"),
    ("eia-natural-gas-daily.csv", "NG-HH"),
)
_BUNDLED_LABELS = {
    "CR-BRENT": "EIA Brent spot (RBRTE)",
    "CR-WTI": "EIA WTI Cushing spot (RWTC)",
    "NG-HH": "EIA Henry Hub spot",
}


# --------------------------------------------------------------------------- bundled data


def market_resources_dir() -> Path:
    """Directory of the bundled market data (``resources/market``).

    Inside a PyInstaller bundle it is ``sys._MEIPASS/resources/market``; from a source checkout it
    is ``<repo>/resources/market`` (the repository root being the parent of the ``app`` package).
    """
    base = getattr(sys, "_MEIPASS", None)
    root = Path(base) if base else Path(app.__file__).resolve().parent.parent
    return root / "resources" / "market"


def bundled_series() -> list[SeriesMapping]:
    """The bundled EIA series: Brent -> ``CR-BRENT``, WTI -> ``CR-WTI``, Henry Hub -> ``NG-HH``.

    Returns
    -------
    list of SeriesMapping
        One mapping per bundled file (the files are read only when a replay loads them).
    """
    d = market_resources_dir()
    return [
        SeriesMapping(d / name, code, label=_BUNDLED_LABELS[code]) for name, code in BUNDLED_FILES
    ]


# --------------------------------------------------------------------------- term structure


@dataclass(frozen=True)
class TermShape:
    """Additive forward-curve shape of one product, in the product's price units.

    Attributes
    ----------
    slope : float
        Added per month of distance between the replay date and the delivery month (contango
        when positive).
    seasonal : tuple of 12 floats
        Additive premium by calendar delivery month, Jan..Dec; only differences to the replay
        month's entry matter.
    """

    slope: float
    seasonal: tuple[float, ...] = (0.0,) * 12

    def __post_init__(self) -> None:
        if len(self.seasonal) != 12:
            raise ValueError(f"seasonal needs 12 monthly values, got {len(self.seasonal)}")
        if not all(math.isfinite(float(x)) for x in (self.slope, *self.seasonal)):
            raise ValueError("slope and seasonal values must be finite")

    def offsets(self, months: np.ndarray, today: date) -> np.ndarray:
        """Curve minus spot for ``datetime64[M]`` delivery ``months`` seen from ``today``."""
        today_m = np.datetime64(today, "M")
        k = (months - today_m).astype(int)
        cal = months.astype(int) % 12  # 0 = January
        seas = np.asarray(self.seasonal, dtype=float)
        out = self.slope * k + seas[cal] - seas[today.month - 1]
        return np.where(k >= 1, out, 0.0)


def _cosine(amplitude: float) -> tuple[float, ...]:
    """Seasonal premium peaking in January (winter) for a positive amplitude."""
    return tuple(round(amplitude * math.cos(2 * math.pi * m / 12), 6) for m in range(12))


def default_shape(spec: ProductSpec) -> TermShape:
    """The documented default :class:`TermShape` of a catalogue product.

    Relative to the catalogue ``typical_level`` L, but fixed in absolute units: crude contango
    0.25 % of L per month, no seasonality; natural gas 0.2 %/month and a winter premium of
    amplitude 8 % of L; power 0.1 %/month and winter amplitude 10 %; refined products
    0.2 %/month with a 3 % winter premium (distillates) or summer premium (gasoline/RBOB).
    """
    level = spec.typical_level
    if spec.commodity is Commodity.CRUDE:
        return TermShape(round(0.0025 * level, 6))
    if spec.commodity is Commodity.NATURAL_GAS:
        return TermShape(round(0.002 * level, 6), _cosine(0.08 * level))
    if spec.commodity is Commodity.POWER:
        return TermShape(round(0.001 * level, 6), _cosine(0.10 * level))
    sign = -1.0 if "RBOB" in spec.code or "GASOLINE" in spec.name.upper() else 1.0
    return TermShape(round(0.002 * level, 6), _cosine(sign * 0.03 * level))


# --------------------------------------------------------------------------- replay source


@dataclass
class _Product:
    """Per-product replay state (internal)."""

    spec: ProductSpec
    mapping: SeriesMapping
    series: PriceSeries
    shape: TermShape
    half_spread: float
    instruments: list[Instrument]
    ids: list[str]
    forwards: list[Instrument]
    curve_start: str
    months: np.ndarray  # datetime64[M] curve months
    values: np.ndarray  # aligned with the replay days, NaN = no value that day
    initial: float  # previous settlement before the first replay day
    initial_date: date
    # replay month (year * 12 + month - 1) -> (curve offsets, forward-instrument offsets)
    offsets: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


class ReplaySource:
    """Replays historical daily spot series as a feed :class:`~app.feed.source.PriceSource`.

    Parameters
    ----------
    mappings : sequence of SeriesMapping, optional
        Series -> product; default :func:`bundled_series` (EIA Brent, WTI, Henry Hub). Each
        product may be mapped once.
    speed : float, default 1.0
        Trading days replayed per wall-clock second (> 0).
    start : date or None, default 2020-01-02
        First replay day (the first trading day on or after it); ``None``: the first date of
        any mapped series.
    loop : bool, default True
        Restart at the first replay day when the history ends (else stop: :attr:`finished`).
    max_days_per_call : int, default 500
        Cap on the days one :meth:`advance` replays; the rest is carried to the next call.
    shapes : mapping of product code -> TermShape, optional
        Overrides of :func:`default_shape`.

    Raises
    ------
    ValueError
        Bad speed / cap, no mappings, a product mapped twice, a file that cannot be read (the
        message names file and line), or no data on or after ``start``.
    """

    mode = "replay"

    def __init__(
        self,
        mappings: Sequence[SeriesMapping] | None = None,
        *,
        speed: float = 1.0,
        start: date | None = DEFAULT_START,
        loop: bool = True,
        max_days_per_call: int = DEFAULT_MAX_DAYS_PER_CALL,
        shapes: Mapping[str, TermShape] | None = None,
    ) -> None:
        maps = list(bundled_series() if mappings is None else mappings)
        if not maps:
            raise ValueError("a replay needs at least one series mapping")
        seen: set[str] = set()
        for m in maps:
            if m.product in seen:
                raise ValueError(f"product {m.product} is mapped more than once")
            seen.add(m.product)
        if isinstance(max_days_per_call, bool) or int(max_days_per_call) < 1:
            raise ValueError(f"max_days_per_call must be >= 1, got {max_days_per_call!r}")
        self.speed = speed
        self.loop = bool(loop)
        self.max_days_per_call = int(max_days_per_call)

        loaded = [(m, m.load()) for m in maps]
        all_dates = np.unique(np.concatenate([s.dates for _, s in loaded]))
        first_allowed = np.datetime64(start, "D") if start is not None else all_dates[0]
        days = all_dates[all_dates >= first_allowed]
        if days.size == 0:
            last = max(s.last for _, s in loaded)
            raise ValueError(
                f"start {start} is after the last date {last} of the mapped series; "
                "pass an earlier start or start=None to replay from the beginning"
            )
        days.setflags(write=False)
        self._days = days
        self._day_dates = [date.fromisoformat(str(d)) for d in days]
        first_day = self._day_dates[0]
        before = all_dates[all_dates < days[0]]
        self._initial_date = (
            date.fromisoformat(str(before[-1])) if before.size else first_day - timedelta(days=1)
        )

        self._products: list[_Product] = []
        self._instruments: list[Instrument] = []
        shape_over = dict(shapes or {})
        for mapping, series in loaded:
            spec = PRODUCT_BY_CODE[mapping.product]
            insts = build_instruments(first_day, [spec])
            cstart, n = curve_months(first_day, insts)
            months = np.datetime64(cstart, "M") + np.arange(n)
            idx = np.searchsorted(days, series.dates)
            inside = series.dates >= days[0]
            values = np.full(days.size, np.nan)
            values[idx[inside]] = series.values[inside]
            prior = series.dates < days[0]
            if prior.any():
                initial, initial_date = float(series.values[prior][-1]), _d(series.dates[prior][-1])
            else:  # the series starts on/after the first replay day: use its first value
                initial, initial_date = float(series.values[0]), series.first
            self._products.append(
                _Product(
                    spec=spec,
                    mapping=mapping,
                    series=series,
                    shape=shape_over.get(spec.code, default_shape(spec)),
                    half_spread=HALF_SPREAD_FRACTION * spec.typical_level,
                    instruments=insts,
                    ids=[i.id for i in insts],
                    forwards=[i for i in insts if i.kind != "spot"],
                    curve_start=cstart,
                    months=months,
                    values=values,
                    initial=initial,
                    initial_date=initial_date,
                )
            )
            self._instruments.extend(insts)
        self._pos = 0  # index of the next day to replay
        self._acc = 0.0
        self._finished = False
        self._loops = 0
        self._replay_date = self._initial_date

    # ------------------------------------------------------------------ properties

    @property
    def speed(self) -> float:
        """Trading days replayed per wall-clock second (settable, > 0)."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        v = float(value)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"speed must be a finite number > 0, got {value!r}")
        self._speed = v

    @property
    def finished(self) -> bool:
        """True only when ``loop`` is off and every replay day has been emitted."""
        return self._finished

    @property
    def replay_date(self) -> date:
        """The historical date last replayed (before the first day: the day before it)."""
        return self._replay_date

    @property
    def first_day(self) -> date:
        """The first replay day."""
        return self._day_dates[0]

    @property
    def last_day(self) -> date:
        """The last day of the mapped history."""
        return self._day_dates[-1]

    @property
    def days_total(self) -> int:
        """Number of replay days from the first to the last (one pass)."""
        return len(self._day_dates)

    @property
    def loops(self) -> int:
        """How many times the replay restarted at its first day."""
        return self._loops

    @property
    def pending_days(self) -> float:
        """Days accumulated but not yet replayed (fractional part and any capped remainder)."""
        return self._acc

    @property
    def series(self) -> list[tuple[SeriesMapping, PriceSeries]]:
        """The mappings and the series loaded for them, in mapping order."""
        return [(p.mapping, p.series) for p in self._products]

    def instruments(self) -> list[Instrument]:
        """Every instrument quoted (fixed): the mapped products' spot and forward instruments."""
        return list(self._instruments)

    # ------------------------------------------------------------------ pricing

    def _offsets(self, p: _Product, today: date) -> tuple[np.ndarray, np.ndarray]:
        """Curve and forward-instrument offsets to spot as of ``today`` (cached per month)."""
        key = today.year * 12 + today.month - 1
        cached = p.offsets.get(key)
        if cached is None:
            off = p.shape.offsets(p.months, today)
            # ForwardCurve.price is linear in the prices and its weights sum to one, so
            # price(spot + off) == spot + price(off): one pass per product and replay month,
            # kept for later loops (a few hundred months of history at most).
            curve = ForwardCurve(p.months, off, product=p.spec.code, weights=p.spec.weights)
            inst = np.array([curve.price(i.start, i.end) for i in p.forwards])
            cached = p.offsets[key] = (off, inst)
        return cached

    def curve_prices(self, product: str, spot: float, today: date) -> np.ndarray:
        """The proxy monthly curve of ``product`` for a given spot and replay date.

        Returns
        -------
        np.ndarray
            Prices for the months ``curve_start .. curve_start + n - 1`` (see module docs).
        """
        p = self._product(product)
        return spot + p.shape.offsets(p.months, today)

    def _product(self, code: str) -> _Product:
        for p in self._products:
            if p.spec.code == code:
                return p
        raise KeyError(f"product {code!r} is not replayed")

    def _quotes(
        self, p: _Product, spot: float, today: date
    ) -> tuple[list[float], list[float], list[float], list[float]]:
        """Instrument prices, bids, asks (in ``p.ids`` order) and the monthly curve."""
        curve_off, inst_off = self._offsets(p, today)
        arr = np.concatenate(([spot], spot + inst_off))
        prices: list[float] = arr.tolist()  # prices[0] is the series value, unchanged
        bids: list[float] = np.round(arr - p.half_spread, 6).tolist()
        asks: list[float] = np.round(arr + p.half_spread, 6).tolist()
        curve: list[float] = (spot + curve_off).tolist()
        return prices, bids, asks, curve

    def _emit(
        self, batch: Batch, p: _Product, spot: float, today: date, now_ns: int, settle: str
    ) -> None:
        """Trade ticks, live curve, settle ticks and settlement curve of one product and day."""
        prices, bids, asks, curve = self._quotes(p, spot, today)
        size = float(p.spec.lot)
        ticks = batch.ticks
        for iid, bid, ask, px in zip(p.ids, bids, asks, prices, strict=True):
            ticks.append(Tick(iid, bid, ask, px, size, now_ns))
        batch.curves.append(CurveUpdate(p.spec.code, p.curve_start, curve, now_ns))
        for iid, px in zip(p.ids, prices, strict=True):
            ticks.append(Tick(iid, None, None, px, 0.0, now_ns, kind="settle"))
        batch.curves.append(CurveUpdate(p.spec.code, p.curve_start, curve, now_ns, settle=settle))

    # ------------------------------------------------------------------ PriceSource

    def start(self, now_ns: int) -> Batch:
        """Rewind to the first replay day and return the initial state.

        Per product: a ``settle`` tick per instrument at the previous settlement (the series
        value on the last date before the first replay day, or its first value when it starts
        later), a ``trade`` tick per instrument at the same price, and one full curve marked as
        the settlement of that date.
        """
        self._pos = 0
        self._acc = 0.0
        self._finished = False
        self._loops = 0
        self._replay_date = self._initial_date
        batch = Batch()
        for p in self._products:
            prices, bids, asks, curve = self._quotes(p, p.initial, self._initial_date)
            size = float(p.spec.lot)
            for iid, px in zip(p.ids, prices, strict=True):
                batch.ticks.append(Tick(iid, None, None, px, 0.0, now_ns, kind="settle"))
            for iid, bid, ask, px in zip(p.ids, bids, asks, prices, strict=True):
                batch.ticks.append(Tick(iid, bid, ask, px, size, now_ns))
            settle = p.initial_date.isoformat()
            batch.curves.append(
                CurveUpdate(p.spec.code, p.curve_start, curve, now_ns, settle=settle)
            )
        return batch

    def advance(self, wall_seconds: float, now_ns: int) -> Batch:
        """Replay the trading days crossed by ``wall_seconds * speed``.

        At most ``max_days_per_call`` days are replayed per call; the rest (and any fraction of
        a day) is carried to the next call (at most 10**12 days are carried). Nothing happens
        once :attr:`finished`.

        Raises
        ------
        ValueError
            If ``wall_seconds`` is negative or not finite.
        """
        w = float(wall_seconds)
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"wall_seconds must be a finite number >= 0, got {wall_seconds!r}")
        batch = Batch()
        if self._finished:
            return batch
        self._acc = min(self._acc + w * self._speed, _MAX_CARRY)
        n = min(math.floor(self._acc + _EPS), self.max_days_per_call)
        self._acc = max(self._acc - n, 0.0)
        for _ in range(n):
            if self._pos >= len(self._day_dates):
                if not self.loop:
                    self._finished = True
                    self._acc = 0.0
                    break
                self._pos = 0
                self._loops += 1
            self._replay_day(batch, self._pos, now_ns)
            self._pos += 1
        if not self.loop and self._pos >= len(self._day_dates):
            self._finished = True
            self._acc = 0.0
        return batch

    def _replay_day(self, batch: Batch, i: int, now_ns: int) -> None:
        today = self._day_dates[i]
        self._replay_date = today
        settle = today.isoformat()
        for p in self._products:
            v = p.values[i]
            if not np.isnan(v):
                self._emit(batch, p, float(v), today, now_ns, settle)


def _d(d: np.datetime64) -> date:
    return date.fromisoformat(str(d.astype("datetime64[D]")))
