"""Estimate the feed simulator's defaults from the public series in ../shared/data/market.

Run ``.venv/bin/python tools/calibrate_feed.py`` from the repository root: it prints the
estimates that ``app/feed/sim_params.py`` bakes in. Files are read with the ``csv`` module.
``tests/test_feed_simulator.py`` re-runs :func:`calibrate` and compares with the baked numbers.

Mapping from a spot series to forward-curve parameters (see ``app/feed/sim_params.py``):

* oil, gas, products: ``sigma_front`` = annualised vol of 21-trading-day changes of ln P (a
  front-month forward is an expectation of about a month of spot, so day-to-day noise that
  reverts within the month does not move it); ``sigma_long`` = vol of 252-day changes (only
  shocks that persist a year move the back of the curve), capped at ``sigma_front``;
  ``tau`` = 1 / kappa of the two-factor variance term-structure fit.
* power (day-ahead spot is dominated by weather noise that a monthly forward averages away):
  two-factor fit of ln(P + c); ``sigma_long`` = the permanent factor's vol, ``sigma_front`` =
  ``sqrt(sigma_L^2 + (a sigma_S)^2)`` with ``a = (1 - exp(-kappa/12)) / (kappa/12)`` the
  month-average of the transient factor's decay; ``tau`` = 1 / kappa.
* all: ``kappa`` = AR(1) speed of daily ln(P + c); ``kappa_long`` = AR(1) speed of monthly
  means (full history); ``sigma_spot`` = vol of the non-jump daily returns (at least
  ``sigma_front``); spikes: returns beyond 4 sd (intensity, mean size, up share), decaying at
  the fit's transient speed kappa.
"""

from __future__ import annotations

import csv
import math
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app.engine.market_model import (  # noqa: E402
    annualised_vol,
    ar1_mean_reversion,
    arithmetic_change_stats,
    horizon_vol,
    jump_statistics,
    monthly_means,
    return_correlation,
    seasonal_ratios,
    variance_term_structure,
)

MARKET = ROOT.parent / "shared" / "data" / "market"

#: estimation windows (inclusive): the last 5 years of each source
EIA_WINDOW = (date(2021, 8, 19), date(2026, 8, 18))
FRED_WINDOW = (date(2014, 1, 7), date(2019, 1, 7))
EMBER_WINDOW = (date(2021, 1, 31), date(2026, 1, 30))
JUMP_K = 4.0
#: shift c of ln(P + c) for power, as a fraction of the mean price
POWER_SHIFT_FRACTION = 0.5
POWER_HORIZONS = (1, 2, 5, 10, 30, 60, 91, 182, 273, 365)

Series = tuple[np.ndarray, np.ndarray]
Window = tuple[date, date]
FULL: Window = (date(1900, 1, 1), date(2100, 1, 1))


def read_two_columns(path: Path) -> Series:
    """Dates and values of a ``Date,Price`` / ``DATE,VALUE`` file (FRED ``.`` and empty -> NaN)."""
    dates: list[date] = []
    values: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for row in reader:
            if len(row) < 2:
                continue
            dates.append(date.fromisoformat(row[0].strip()))
            v = row[1].strip()
            values.append(float(v) if v not in ("", ".") else math.nan)
    return np.array(dates, dtype="datetime64[D]"), np.array(values)


def read_ember(country: str) -> Series:
    """One country's daily series from the Ember file (first value of a duplicated date)."""
    path = MARKET / "ember-eu-power" / "european_wholesale_electricity_price_data_daily.csv"
    seen: dict[date, float] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Country"] != country or not row["Price (EUR/MWhe)"].strip():
                continue
            seen.setdefault(date.fromisoformat(row["Date"]), float(row["Price (EUR/MWhe)"]))
    ds = sorted(seen)
    return np.array(ds, dtype="datetime64[D]"), np.array([seen[d] for d in ds])


def window(s: Series, w: Window) -> Series:
    """The finite observations of ``s`` inside the inclusive window ``w``."""
    d, p = s
    sel = (d >= np.datetime64(w[0])) & (d <= np.datetime64(w[1])) & np.isfinite(p)
    return d[sel], p[sel]


def load() -> dict[str, Series]:
    """Every series the calibration uses (full history), keyed by a short name."""
    fred = MARKET / "fred-eia-spot-2019"
    return {
        "brent": read_two_columns(MARKET / "eia-oil-prices" / "brent-daily.csv"),
        "wti": read_two_columns(MARKET / "eia-oil-prices" / "wti-daily.csv"),
        "hh": read_two_columns(MARKET / "eia-natural-gas" / "daily.csv"),
        "ulsd": read_two_columns(fred / "DDFUELNYH.csv"),
        "gasoline": read_two_columns(fred / "DGASNYH.csv"),
        "heating_oil": read_two_columns(fred / "DHOILNYH.csv"),
        "brent_fred": read_two_columns(fred / "DCOILBRENTEU.csv"),
        "de": read_ember("Germany"),
    }


def series_params(s: Series, w: Window, power: bool = False) -> dict[str, float]:
    """Forward-curve parameters of one spot series (mapping in the module docstring)."""
    _, p = window(s, w)
    ppy = 365.0 if power else 252.0
    shift = POWER_SHIFT_FRACTION * float(np.mean(p)) if power else 0.0
    if power:
        vt = variance_term_structure(p, ppy, shift, horizons=POWER_HORIZONS)
        a = -math.expm1(-vt.kappa / 12.0) / (vt.kappa / 12.0)
        sigma_long = vt.sigma_long
        sigma_front = math.hypot(vt.sigma_long, a * vt.sigma_short)
    else:
        vt = variance_term_structure(p, ppy, shift)
        sigma_front = horizon_vol(p, 21, ppy, shift)
        sigma_long = min(horizon_vol(p, 252, ppy, shift), sigma_front)
    js = jump_statistics(p, ppy, JUMP_K, shift)
    _, mp = monthly_means(*window(s, FULL))
    out = {
        "mean": float(np.mean(p)),
        "shift_fraction": shift / float(np.mean(p)),
        "vol_daily": annualised_vol(p, ppy, shift),
        "sigma_front": sigma_front,
        "sigma_long": sigma_long,
        "tau": 1.0 / vt.kappa,
        "kappa": ar1_mean_reversion(p, 1.0 / ppy, shift).kappa,
        "kappa_long": ar1_mean_reversion(mp, 1.0 / 12.0).kappa,
        "sigma_spot": max(js.diffusive_vol, sigma_front),
        "jump_intensity": js.intensity,
        "jump_size": js.mean_size,
        "jump_up_share": js.up_share,
        "jump_decay": vt.kappa,
    }
    if power:
        a_stats = arithmetic_change_stats(p)
        out["sd_daily_change"] = a_stats.sd_change
        out["share_nonpositive"] = a_stats.share_nonpositive
    return out


#: (name, series key, window, power?) of every calibrated series
SERIES: tuple[tuple[str, str, Window, bool], ...] = (
    ("brent", "brent", EIA_WINDOW, False),
    ("wti", "wti", EIA_WINDOW, False),
    ("hh", "hh", EIA_WINDOW, False),
    ("ulsd", "ulsd", FRED_WINDOW, False),
    ("gasoline", "gasoline", FRED_WINDOW, False),
    ("heating_oil", "heating_oil", FRED_WINDOW, False),
    ("de", "de", EMBER_WINDOW, True),
)

#: seasonal factors estimated over the full history of these series
SEASONAL = ("hh", "de", "gasoline", "heating_oil")

#: weekly-return correlations (every 5th common date), pair -> window
CORRELATIONS: tuple[tuple[str, str, Window], ...] = (
    ("brent", "wti", EIA_WINDOW),
    ("brent", "hh", EIA_WINDOW),
    ("wti", "hh", EIA_WINDOW),
    ("brent_fred", "ulsd", FRED_WINDOW),
    ("brent_fred", "gasoline", FRED_WINDOW),
    ("brent_fred", "heating_oil", FRED_WINDOW),
    ("ulsd", "gasoline", FRED_WINDOW),
    ("ulsd", "heating_oil", FRED_WINDOW),
    ("gasoline", "heating_oil", FRED_WINDOW),
    ("de", "hh", EMBER_WINDOW),
    ("de", "brent", EMBER_WINDOW),
)


def calibrate(
    series: dict[str, Series] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], dict[tuple[str, str], float]]:
    """Per-series parameters, seasonal factors and weekly-return correlations."""
    s = load() if series is None else series
    params = {name: series_params(s[key], w, power) for name, key, w, power in SERIES}
    seasonal = {key: seasonal_ratios(*s[key]) for key in SEASONAL}
    corr = {
        (a, b): return_correlation(*window(s[a], w), *window(s[b], w), every=5)
        for a, b, w in CORRELATIONS
    }
    return params, seasonal, corr


def main() -> int:
    if not MARKET.exists():
        print(f"{MARKET} not found", file=sys.stderr)
        return 1
    params, seasonal, corr = calibrate()
    for name, d in params.items():
        print(f"\n== {name}")
        for k, v in d.items():
            print(f"  {k:18s} {v:10.4f}")
    print("\n== seasonal factors Jan..Dec (full history)")
    for key, f in seasonal.items():
        print(f"  {key:12s} " + ", ".join(f"{v:.3f}" for v in f))
    print("\n== weekly log-return correlations on common dates")
    for (a, b), c in corr.items():
        print(f"  {a:12s} {b:12s} {c:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
