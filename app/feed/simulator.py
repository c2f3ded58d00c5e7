"""The feed's simulate mode: a multi-commodity forward-curve market driven by
:class:`app.engine.market_model.MarketModel` with the defaults of :mod:`app.feed.sim_params`.

Time: ``speed`` trading days pass per wall-clock second (default 1/240: one trading day every
four minutes); one trading day is ``1/252`` year of diffusion and moves the calendar to the
next Monday-Friday date. At each simulated day end every instrument gets a ``settle`` tick and
every product a settlement curve (``settle='YYYY-MM-DD'``, ``full=True``).

Instruments are fixed for the source's life (``build_instruments(as_of)``); the curve keeps the
start and length of :func:`app.feed.instruments.curve_months`, so every instrument stays on it.
Months whose delivery has ended stop moving (and stop trading); a month in delivery keeps
trading as balance-of-month. Strips (quarters, seasons, cals) are priced from the monthly curve
with one precomputed sparse weight matrix (delivery days, or delivery hours for power), so
they are arbitrage-consistent with the months exactly as
:meth:`app.engine.curves.ForwardCurve.price` would price them.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
from scipy import sparse

from app.engine.curves import delivery_hours
from app.engine.market_model import (
    TRADING_DAYS_PER_YEAR,
    MarketModel,
    ModelParams,
    add_business_days,
    samuelson_total_variance,
    shifted_lognormal_black_vols,
)
from app.feed.instruments import Instrument, build_instruments, curve_months
from app.feed.protocol import CurveUpdate, Tick, VolSmile, VolUpdate
from app.feed.sim_params import HALF_SPREAD_DAILY_SD, TICK_SIZE, model_params
from app.feed.source import Batch
from app.models.catalogue import PRODUCT_SPECS, ProductSpec

__all__ = ["SimulatorSource"]

#: relative tick intensity: spot and front months trade most, decaying along the curve
_SPOT_WEIGHT = 3.0
_MONTH_FRONT_WEIGHT = 3.0
_MONTH_BACK_WEIGHT = 0.4
_MONTH_DECAY = 4.0  # months
_STRIP_WEIGHT = {"quarter": 0.6, "season": 0.5, "cal": 0.5}
#: trading days simulated before ``start`` so the curve has developed some shape; one month
#: keeps start-up levels near the catalogue's typical levels (power front 0.9-1.6x with the
#: winter factor in 30 seeds; 120 days gave 0.7-1.9x, a desk would not recognise its market)
_BURN_IN_DAYS = 20
#: part of a trading day already elapsed when the source starts (last settle -> first trade)
_START_DAY_FRACTION = 0.25
#: implied-vol surface: smiles for this many contract months, strikes at these standardised
#: moneyness points z (K = F exp(z sigma sqrt(T)))
_VOL_CONTRACTS = 12
_VOL_Z = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
#: option expiry: this many calendar days before delivery starts, moved back to a weekday (a
#: stand-in for exchange calendars: ICE Brent options expire 3 business days before the
#: futures, NYMEX Henry Hub options the business day before the futures)
_OPTION_LEAD_DAYS = 5
VOL_MODEL = (
    "simulator model-implied vols: Samuelson term structure integrated to expiry; "
    "shifted-lognormal skew for power; spikes not included"
)


def option_expiry(contract_start: date) -> date:
    """Expiry of the option on the contract delivering from ``contract_start`` (see above)."""
    d = contract_start - timedelta(days=_OPTION_LEAD_DAYS)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def _month_hours(first: date, n: int) -> np.ndarray:
    """Delivery hours (EU summer-time rules) of ``n`` months starting at ``first``'s month."""
    out = np.empty(n)
    y, m = first.year, first.month
    for k in range(n):
        days = calendar.monthrange(y, m)[1]
        out[k] = sum(delivery_hours(date(y, m, d)) for d in range(1, days + 1))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _month_days(first: date, n: int) -> np.ndarray:
    out = np.empty(n)
    y, m = first.year, first.month
    for k in range(n):
        out[k] = calendar.monthrange(y, m)[1]
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


class SimulatorSource:
    """A simulated market implementing :class:`app.feed.source.PriceSource`.

    Parameters
    ----------
    as_of : date
        Trading date the simulation starts on (instruments are built for it).
    seed : int or None
        Seed: the same seed and the same sequence of calls give the same output.
    speed : float
        Trading days per wall-clock second (default 1/240: a day every 4 minutes).
    products : iterable of ProductSpec
        Products to quote (default: the whole catalogue); each needs simulator defaults.
    tick_rate : float
        Average trade ticks per instrument per wall-clock second (default 1.0: about 460
        ticks/s for the 460 default instruments). Spot and front months tick more often.
    months, quarters, seasons, cals : int
        Instrument set sizes passed to :func:`app.feed.instruments.build_instruments`.
    curve_interval : float
        Wall-clock seconds between live curve updates of a product (default 0.5 s).
    params : ModelParams or None
        Model parameters; default :func:`app.feed.sim_params.model_params` of ``products``.
    """

    mode = "simulate"

    def __init__(
        self,
        as_of: date,
        seed: int | None = None,
        speed: float = 1.0 / 240.0,
        products: Iterable[ProductSpec] = PRODUCT_SPECS,
        tick_rate: float = 1.0,
        *,
        months: int = 24,
        quarters: int = 8,
        seasons: int = 4,
        cals: int = 3,
        curve_interval: float = 0.5,
        params: ModelParams | None = None,
    ) -> None:
        if speed <= 0 or tick_rate < 0 or curve_interval <= 0:
            raise ValueError("speed and curve_interval must be > 0, tick_rate >= 0")
        self.products = tuple(products)
        self.speed = float(speed)
        self.tick_rate = float(tick_rate)
        self.curve_interval = float(curve_interval)
        codes = [p.code for p in self.products]
        self.params = model_params(codes) if params is None else params
        if self.params.codes != tuple(codes):
            raise ValueError("params must list the products in the same order")
        self._instruments = build_instruments(
            as_of, self.products, months=months, quarters=quarters, seasons=seasons, cals=cals
        )
        self.curve_start, self.curve_length = curve_months(as_of, self._instruments)
        y, m = (int(v) for v in self.curve_start.split("-"))
        first = date(y, m, 1)
        n_prod, n_mon = len(codes), self.curve_length
        self._ncol = 1 + n_mon

        seeds = np.random.SeedSequence(seed).spawn(2)
        # burn-in: start _BURN_IN_DAYS trading days earlier so months reach their tenors the
        # way they would in a real market (each has rolled down the curve)
        burn_start = as_of
        for _ in range(_BURN_IN_DAYS):
            burn_start -= timedelta(days=1)
            while burn_start.weekday() >= 5:
                burn_start -= timedelta(days=1)
        self.model = MarketModel(self.params, burn_start, first, n_mon, seed=seeds[0])
        while self.model.date < as_of:
            self.model.step(1.0 / TRADING_DAYS_PER_YEAR)
            self.model.set_date(min(add_business_days(self.model.date, 1), as_of))
        self._rng = np.random.default_rng(seeds[1])
        self.date = as_of
        self._day_fraction = 0.0
        self._since_curve = 0.0

        # ---- instrument -> state-column weights (sparse, rows sum to 1)
        hours = _month_hours(first, n_mon)
        days = _month_days(first, n_mon)
        pos = {c: i for i, c in enumerate(codes)}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        n_inst = len(self._instruments)
        self._prod_of = np.empty(n_inst, dtype=np.int64)
        self._first_col = np.zeros(n_inst, dtype=np.int64)  # first curve month (0 = spot)
        self._last_day = np.empty(n_inst, dtype="datetime64[D]")
        self._tick = np.empty(n_inst)
        rate_w = np.empty(n_inst)
        self._is_month = np.zeros(n_inst, dtype=bool)
        m0 = first.year * 12 + first.month - 1
        for i, inst in enumerate(self._instruments):
            p = pos[inst.product]
            spec = self.products[p]
            self._prod_of[i] = p
            self._tick[i] = TICK_SIZE.get(inst.product, 0.01)
            self._last_day[i] = np.datetime64(inst.end, "D")
            base = p * self._ncol
            if inst.kind == "spot":
                rows.append(i)
                cols.append(base)
                vals.append(1.0)
                rate_w[i] = _SPOT_WEIGHT
                continue
            a = inst.start.year * 12 + inst.start.month - 1 - m0
            b = inst.end.year * 12 + inst.end.month - 1 - m0
            if inst.start.day != 1 or (inst.end + timedelta(days=1)).day != 1 or a < 0:
                raise ValueError(f"{inst.id}: delivery is not a run of whole curve months")
            w = (hours if spec.weights == "hours" else days)[a : b + 1]
            rows.extend([i] * (b - a + 1))
            cols.extend(range(base + 1 + a, base + 2 + b))
            vals.extend((w / w.sum()).tolist())
            self._first_col[i] = 1 + a
            if inst.kind == "month":
                self._is_month[i] = True
                rate_w[i] = _MONTH_BACK_WEIGHT + (
                    _MONTH_FRONT_WEIGHT - _MONTH_BACK_WEIGHT
                ) * math.exp(-a / _MONTH_DECAY)
            else:
                rate_w[i] = _STRIP_WEIGHT.get(inst.kind, 0.5)
        self.weights = sparse.csr_matrix(
            (np.array(vals), (np.array(rows), np.array(cols))), shape=(n_inst, n_prod * self._ncol)
        )
        self._rates = (
            rate_w / rate_w.mean() * self.tick_rate if n_inst else rate_w
        )  # ticks per second
        self._decimals = np.array(
            [max(0, -math.floor(math.log10(t)) + 2) for t in self._tick], dtype=np.int64
        )

        # ---- static half-spreads: fraction of a day's price SD at the instrument's tenor
        vols = self.model.column_vols()  # (P, 1 + M) at as_of; expired months none yet
        lvl = np.array([pp.level + pp.shift for pp in self.params.products])
        col_sd = vols * lvl[:, None] / math.sqrt(TRADING_DAYS_PER_YEAR)
        inst_sd = np.asarray(self.weights @ col_sd.ravel())
        self._half = np.maximum(HALF_SPREAD_DAILY_SD * inst_sd, 0.5 * self._tick)

        # per-product curve tick sizes for rounding published curves
        self._curve_tick = np.array([TICK_SIZE.get(c, 0.01) for c in codes])[:, None]
        self._published = self._rounded_curves()

    # ------------------------------------------------------------------ PriceSource API

    def instruments(self) -> list[Instrument]:
        """Every instrument this source quotes (fixed for the source's life)."""
        return list(self._instruments)

    @property
    def finished(self) -> bool:
        """A simulator never finishes."""
        return False

    def start(self, now_ns: int) -> Batch:
        """Previous settlement per instrument, a trade tick per instrument, full curves."""
        batch = Batch()
        batch.ticks.extend(self._settle_ticks(now_ns))
        self.model.step(_START_DAY_FRACTION / TRADING_DAYS_PER_YEAR)
        self._day_fraction = _START_DAY_FRACTION
        idx = np.arange(len(self._instruments))
        counts = np.ones(idx.size, dtype=np.int64)
        batch.ticks.extend(self._trade_ticks(idx, counts, now_ns))
        batch.curves.extend(self._full_curves(now_ns, settle=None))
        batch.vols.extend(self.vol_surfaces(now_ns))
        return batch

    def advance(self, wall_seconds: float, now_ns: int) -> Batch:
        """Move the market on by ``wall_seconds * speed`` trading days.

        Day ends crossed on the way emit settle ticks and settlement curves (in order); then
        a Poisson draw picks the instruments that trade, and changed curve blocks are
        published at most every ``curve_interval`` seconds per product.
        """
        batch = Batch()
        if wall_seconds <= 0:
            return batch
        remaining = wall_seconds * self.speed
        while remaining > 1e-15:
            chunk = min(remaining, 1.0 - self._day_fraction)
            self.model.step(chunk / TRADING_DAYS_PER_YEAR)
            self._day_fraction += chunk
            remaining -= chunk
            if self._day_fraction >= 1.0 - 1e-12:
                self._settle(batch, now_ns)
        counts = self._rng.poisson(self._rates * wall_seconds)
        counts[self._last_day < np.datetime64(self.date, "D")] = 0  # delivered: no trading
        idx = np.flatnonzero(counts)
        if idx.size:
            batch.ticks.extend(self._trade_ticks(idx, counts[idx], now_ns))
        self._since_curve += wall_seconds
        if self._since_curve >= self.curve_interval:
            self._since_curve = 0.0
            batch.curves.extend(self._curve_blocks(now_ns))
        return batch

    # ------------------------------------------------------------------ prices

    def mid_prices(self) -> np.ndarray:
        """Current model mid price of every instrument (order of :meth:`instruments`)."""
        return np.asarray(self.weights @ self.model.prices().ravel())

    def curve_prices(self) -> np.ndarray:
        """Current monthly curves ``(products, curve_length)`` as the model holds them."""
        return np.array(self.model.curves)

    def _rounded_curves(self) -> np.ndarray:
        t = self._curve_tick
        return np.asarray(np.round(self.model.curves / t) * t)

    # ------------------------------------------------------------------ messages

    def _trade_ticks(self, idx: np.ndarray, counts: np.ndarray, now_ns: int) -> list[Tick]:
        mids = self.weights[idx] @ self.model.prices().ravel()
        half = self._half[idx]
        tick = self._tick[idx]
        u = self._rng.uniform(-1.0, 1.0, idx.size)
        bid = np.floor((mids - half) / tick + 1e-9) * tick
        ask = np.ceil((mids + half) / tick - 1e-9) * tick
        last = np.clip(np.round((mids + u * half) / tick) * tick, bid, ask)
        size = counts * self._rng.integers(1, 11, idx.size)
        dec = self._decimals[idx].tolist()
        ids = [self._instruments[i].id for i in idx.tolist()]
        return [
            Tick(
                instrument=iid,
                bid=round(b, d),
                ask=round(a, d),
                last=round(la, d),
                size=float(s),
                ts=now_ns,
                kind="trade",
            )
            for iid, b, a, la, s, d in zip(
                ids, bid.tolist(), ask.tolist(), last.tolist(), size.tolist(), dec, strict=True
            )
        ]

    def _settle_ticks(self, now_ns: int) -> list[Tick]:
        # strips settle on the rounded settlement curve, so they are its exact averages
        state = np.array(self.model.prices())
        state[:, 1:] = self._rounded_curves()
        mids = np.asarray(self.weights @ state.ravel())
        settle = np.round(mids / self._tick) * self._tick
        return [
            Tick(
                instrument=inst.id,
                bid=None,
                ask=None,
                last=round(s, d),
                size=0.0,
                ts=now_ns,
                kind="settle",
            )
            for inst, s, d in zip(
                self._instruments, settle.tolist(), self._decimals.tolist(), strict=True
            )
        ]

    def _curve_decimals(self, p: int) -> int:
        return max(0, -math.floor(math.log10(float(self._curve_tick[p, 0]))) + 2)

    def _full_curves(self, now_ns: int, settle: str | None) -> list[CurveUpdate]:
        cur = self._rounded_curves()
        self._published = cur
        return [
            CurveUpdate(
                product=spec.code,
                start=self.curve_start,
                prices=[round(v, self._curve_decimals(p)) for v in cur[p].tolist()],
                ts=now_ns,
                full=True,
                settle=settle,
            )
            for p, spec in enumerate(self.products)
        ]

    def _curve_blocks(self, now_ns: int) -> list[CurveUpdate]:
        cur = self._rounded_curves()
        changed = cur != self._published
        any_changed = changed.any(axis=1)
        if not any_changed.any():
            return []
        first = np.argmax(changed, axis=1)
        last = changed.shape[1] - 1 - np.argmax(changed[:, ::-1], axis=1)
        self._published = cur
        y0, m0 = (int(v) for v in self.curve_start.split("-"))
        out = []
        for p in np.flatnonzero(any_changed).tolist():
            a, b = int(first[p]), int(last[p])
            k = y0 * 12 + m0 - 1 + a
            dec = self._curve_decimals(p)
            out.append(
                CurveUpdate(
                    product=self.products[p].code,
                    start=f"{k // 12:04d}-{k % 12 + 1:02d}",
                    prices=[round(v, dec) for v in cur[p, a : b + 1].tolist()],
                    ts=now_ns,
                    full=False,
                )
            )
        return out

    def vol_surfaces(self, now_ns: int) -> list[VolUpdate]:
        """The model's implied-vol smiles per product (published at start and each day end).

        For the next ``_VOL_CONTRACTS`` contract months whose option has not expired, the Black
        vol is the Samuelson vol integrated from today to expiry
        (:func:`~app.engine.market_model.samuelson_total_variance`); for shifted (power)
        products the smile is the displaced-diffusion skew around that level
        (:func:`~app.engine.market_model.shifted_lognormal_black_vols`). Contracts whose
        forward (or forward + shift) is not positive get no lognormal quotes.
        """
        today = self.date
        y, m = (int(v) for v in self.curve_start.split("-"))
        curves = self.model.curves
        rows: list[tuple[int, int, date, date]] = []  # product, month index, start, expiry
        per_product = dict.fromkeys(range(len(self.params.products)), 0)
        for j in range(self.curve_length):
            k = y * 12 + (m - 1) + j
            start = date(k // 12, k % 12 + 1, 1)
            expiry = option_expiry(start)
            if expiry <= today:
                continue
            for pi in per_product:
                if per_product[pi] < _VOL_CONTRACTS and curves[pi, j] > 0:
                    rows.append((pi, j, start, expiry))
                    per_product[pi] += 1
        if not rows:
            return []
        pi_ = np.array([r[0] for r in rows])
        F = np.array([curves[r[0], r[1]] for r in rows], dtype=float)
        te = np.array([(r[3] - today).days / 365.0 for r in rows])
        td = np.array([(r[2] - today).days / 365.0 for r in rows])
        pps = self.params.products
        var = np.array(
            [
                samuelson_total_variance(
                    pps[p].sigma_front, pps[p].sigma_long, pps[p].tau, te[i], td[i]
                )
                for i, p in enumerate(pi_)
            ],
            dtype=float,
        )
        sigma = np.sqrt(var / te)
        shift = np.array([pps[p].shift for p in pi_])
        strikes = F[:, None] * np.exp(np.asarray(_VOL_Z)[None, :] * (sigma * np.sqrt(te))[:, None])
        vols = shifted_lognormal_black_vols(
            F[:, None], strikes, te[:, None], sigma[:, None], shift[:, None]
        )
        smiles: dict[int, list[VolSmile]] = {}
        for i, (p, _j, start, expiry) in enumerate(rows):
            ok = np.isfinite(vols[i]) & (vols[i] > 0)
            if ok.sum() >= 5:
                smiles.setdefault(int(p), []).append(
                    VolSmile(
                        f"{start:%Y-%m}",
                        expiry.isoformat(),
                        round(float(F[i]), 6),
                        tuple(float(x) for x in np.round(strikes[i][ok], 6)),
                        tuple(float(x) for x in np.round(vols[i][ok], 8)),
                    )
                )
        return [VolUpdate(pps[p].code, now_ns, sm, VOL_MODEL) for p, sm in sorted(smiles.items())]

    def _settle(self, batch: Batch, now_ns: int) -> None:
        """Day end: settle ticks and settlement curves for ``self.date``, then the next day."""
        batch.ticks.extend(self._settle_ticks(now_ns))
        batch.curves.extend(self._full_curves(now_ns, settle=self.date.isoformat()))
        self._day_fraction = 0.0
        self.date = add_business_days(self.date, 1)
        self.model.set_date(self.date)
        batch.vols.extend(self.vol_surfaces(now_ns))
