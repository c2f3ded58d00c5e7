"""The feed simulator's defaults: the one documented place for every simulator number.

Every stochastic number below was estimated by ``tools/calibrate_feed.py`` (run it to
reproduce them) from the public daily series in ``../shared/data/market`` (see its
``SOURCES.md``); ``tests/test_feed_simulator.py`` re-estimates them and fails on drift.
Price *levels* are not estimated: they are the catalogue's ``typical_level``
(:mod:`app.models.catalogue`), a late-2026 level, so curves start where the desk expects.

Windows: EIA series (Brent RBRTE, WTI RWTC, Henry Hub) 2021-08-19..2026-08-18; FRED refined
products 2014-01-07..2019-01-07 (their last five years); Ember German day-ahead power
2021-01-31..2026-01-30 (365 observations per year).

From a spot series to a forward curve
-------------------------------------
A sampled forward curve moves less than a spot series: a month's forward is the expectation
of about a month of spot, so day-to-day noise that reverts within the month averages away.
The mapping (all volatilities annualised, of ``ln P`` or, for power, ``ln(P + c)``):

* oil, gas, products: ``sigma_front`` = vol of 21-trading-day changes of the spot (one month
  of averaging); ``sigma_long`` = vol of 252-day changes (only shocks that persist a year move
  the back of the curve), capped at ``sigma_front``; ``tau`` = ``1/kappa`` of the two-factor
  variance term-structure fit (:func:`app.engine.market_model.variance_term_structure`), the
  decay time of transient shocks. ULSD and heating oil show no transient part in 2014-2018
  (fit at its slowest grid speed, 0.05/yr): their curves get a flat vol, ``tau = 20`` y.
* power: German day-ahead spot is dominated by weather noise (daily ln(P + c) vol 421 %):
  two-factor fit; ``sigma_long`` = the permanent factor's vol, ``sigma_front`` =
  ``sqrt(sigma_L^2 + (a sigma_S)^2)`` with ``a = (1 - exp(-kappa/12)) / (kappa/12)``, the
  monthly average of the transient factor, ``tau = 1/kappa``.
* ``kappa``: AR(1) speed of daily ln(P + c) in the window; ``kappa_long``: AR(1) speed of the
  monthly means over the full history; ``sigma_spot``: vol of the daily returns left after
  removing spikes (at least ``sigma_front``); spikes: daily returns beyond 4 sd of the rest
  (intensity per year, mean |size|, share up), decaying at the fit's transient speed; only
  where that decay is faster than a month's half-life (gas, power) -- see
  :data:`SPIKE_MIN_DECAY`.

Power uses shifted-log dynamics with ``c = 0.5 x level`` (the calibration used
``c = 0.5 x`` the window's mean price, 60.09 EUR/MWh for Germany), so prices can go down
to ``-c``: simulated days at or below zero come from deep spot downturns and down-spikes
(Germany 2021-2026: 0.44 % of days ``<= 0``, SD of daily changes 39.6 EUR/MWh).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from app.engine.market_model import ModelParams, ProductParams
from app.models.catalogue import PRODUCT_BY_CODE

__all__ = [
    "CORRELATIONS",
    "DEFAULT_CROSS_CORRELATION",
    "HALF_SPREAD_DAILY_SD",
    "SEASONAL",
    "SIM_PARAMS",
    "SPIKE_MIN_DECAY",
    "TICK_SIZE",
    "model_params",
]

# ------------------------------------------------------------------ seasonal shapes (Jan..Dec)
# seasonal_ratios(): month mean / that year's mean, geometric mean over complete years.
SEASONAL: dict[str, tuple[float, ...]] = {
    # Crude has no seasonal forward premium; the estimated Brent ratios (0.954..1.043) follow
    # the intra-year trend of the sample, not a season, so crude is flat by design.
    "flat": (1.0,) * 12,
    # EIA Henry Hub daily 1997-2026: winter premium (Dec 1.064, Jan 1.047), spring low.
    "gas": (1.047, 0.990, 0.935, 0.955, 0.988, 1.010, 0.985, 0.991, 0.988, 1.022, 1.025, 1.064),
    # Ember Germany daily 2015-2025: winter high (Nov 1.205), late-spring low (May 0.799).
    "power": (1.014, 0.925, 0.879, 0.826, 0.799, 0.908, 1.011, 1.066, 1.137, 1.069, 1.205, 1.163),
    # FRED DGASNYH NY Harbor gasoline 1986-2018: summer driving-season premium.
    "gasoline": (
        0.909,
        0.920,
        0.972,
        1.039,
        1.062,
        1.035,
        1.037,
        1.061,
        1.052,
        1.020,
        0.976,
        0.916,
    ),
    # FRED DHOILNYH NY Harbor heating oil 1986-2018: autumn/winter distillate premium.
    "distillate": (
        0.976,
        0.969,
        0.975,
        0.992,
        0.985,
        0.973,
        0.983,
        1.013,
        1.042,
        1.055,
        1.032,
        1.006,
    ),
}


#: spikes are modelled only where the estimated jumps are short-lived (half-life under a
#: month, decay > 12 ln 2 = 8.3/yr: gas 39/yr, power 172/yr). Crude and products' 4-sd moves
#: are persistent repricings (decay 0.05..3.4/yr) that hit Brent, WTI and the products on the
#: same days and are already inside the 21-day vol behind ``sigma_front``; independent
#: spikes would double-count them and pull the Brent/WTI correlation from 0.93 to ~0.8.
SPIKE_MIN_DECAY = 12.0 * math.log(2.0)


def _p(code: str, seasonal: str, **kw: float) -> ProductParams:
    spec = PRODUCT_BY_CODE[code]
    level = spec.typical_level
    shift = kw.pop("shift_fraction", 0.0) * level
    if kw.get("jump_decay", 0.0) < SPIKE_MIN_DECAY:
        kw["jump_intensity"] = 0.0
    return ProductParams(
        code=code,
        level=level,
        seasonal=SEASONAL[seasonal],
        shift=shift,
        price_cap=float(spec.price_cap),  # the catalogue's exchange price limit
        **kw,
    )


# Power parameters: Ember Germany day-ahead 2021-01-31..2026-01-30, ln(P + c), c = 0.5 x mean.
_POWER = {
    "sigma_front": 0.575,  # fit: sigma_L 0.471, sigma_S 4.9 at kappa 172/yr, a = 0.069
    "sigma_long": 0.471,  # permanent factor of the two-factor fit
    "tau": 0.0058,  # 1 / 172.4 per year: transient weather shocks last ~2 days
    "kappa": 58.9,  # AR(1) of daily ln(P + c): half-life 4.3 days
    "kappa_long": 0.605,  # AR(1) of monthly means 2015-2026
    "sigma_spot": 4.03,  # non-spike daily vol (all days 4.21)
    "jump_intensity": 1.40,  # 7 spikes beyond 4 sd in 5 years
    "jump_size": 1.03,  # mean |spike| in ln(P + c)
    "jump_up_share": 0.714,  # 5 of 7 up; down-spikes make negative days
    "jump_decay": 172.4,  # the fit's transient speed: half-life 1.5 days
    "shift_fraction": 0.5,
}
# Gas parameters: EIA Henry Hub daily 2021-08-19..2026-08-18 (log-return vol 171.8 %).
_GAS = {
    "sigma_front": 1.030,  # 21-day-change vol (daily 1.718 is spike-driven)
    "sigma_long": 0.603,  # 252-day-change vol
    "tau": 0.0255,  # fit kappa 39.2/yr: transient shocks last ~9 days
    "kappa": 7.37,  # AR(1) of daily ln P: half-life 34 days
    "kappa_long": 0.746,  # AR(1) of monthly means 1997-2026
    "sigma_spot": 1.030,  # non-spike daily vol 0.965, raised to sigma_front
    "jump_intensity": 5.66,  # 28 returns beyond 4 sd in 5 years (2024-01, 2026-01 spikes)
    "jump_size": 0.493,
    "jump_up_share": 0.50,
    "jump_decay": 39.2,  # half-life 6.4 days (2026-01: 30.72 back to 9.34 within 3 days)
}

SIM_PARAMS: dict[str, ProductParams] = {
    # PWR-DE-BASE: Ember Germany day-ahead (a baseload daily average), parameters above.
    "PWR-DE-BASE": _p("PWR-DE-BASE", "power", **_POWER),
    # PWR-DE-PEAK: no peak series in ../shared (Ember is daily baseload); the German base
    # estimates are used, the peak premium comes from the catalogue level (101 vs 88).
    "PWR-DE-PEAK": _p("PWR-DE-PEAK", "power", **_POWER),
    # PWR-PJMW-*: no PJM series in ../shared (the Ember file is European only); German power
    # is the only power series, so PJM uses its dynamics and winter-high shape (PJM also has
    # a summer peak this shape lacks), at the catalogue's USD levels.
    "PWR-PJMW-PEAK": _p("PWR-PJMW-PEAK", "power", **_POWER),
    "PWR-PJMW-OFFPK": _p("PWR-PJMW-OFFPK", "power", **_POWER),
    # NG-HH: EIA Henry Hub daily, parameters above.
    "NG-HH": _p("NG-HH", "gas", **_GAS),
    # NG-TTF, NG-NBP: no European gas series in ../shared (TTF/NBP data found only under
    # non-open licences, SOURCES.md); Henry Hub is the only gas series: same storage-driven
    # winter premium and spike behaviour, so TTF and NBP use its estimates.
    "NG-TTF": _p("NG-TTF", "gas", **_GAS),
    "NG-NBP": _p("NG-NBP", "gas", **_GAS),
    # CR-BRENT: EIA RBRTE daily, log-return vol 41.4 %; 21-day 40.0 %, 252-day 21.5 %;
    # fit kappa 3.37/yr; AR(1) kappa 3.24/yr; monthly AR(1) 0.118/yr (1987-2026);
    # 9 returns beyond 4 sd (1.80/yr, mean 12.3 %, 22 % up).
    "CR-BRENT": _p(
        "CR-BRENT",
        "flat",
        sigma_front=0.400,
        sigma_long=0.215,
        tau=0.296,
        kappa=3.24,
        kappa_long=0.118,
        sigma_spot=0.400,
        jump_intensity=1.80,
        jump_size=0.123,
        jump_up_share=0.222,
        jump_decay=3.37,
    ),
    # CR-WTI: EIA RWTC daily, log-return vol 41.0 %; 21-day 37.0 %, 252-day 21.2 %;
    # fit kappa 3.37/yr; AR(1) kappa 3.34/yr; monthly AR(1) 0.125/yr (1986-2026);
    # 10 returns beyond 4 sd (2.02/yr, mean 11.7 %, 30 % up).
    "CR-WTI": _p(
        "CR-WTI",
        "flat",
        sigma_front=0.370,
        sigma_long=0.212,
        tau=0.296,
        kappa=3.34,
        kappa_long=0.125,
        sigma_spot=0.375,
        jump_intensity=2.02,
        jump_size=0.117,
        jump_up_share=0.300,
        jump_decay=3.37,
    ),
    # RP-ULSD-NYH: FRED DDFUELNYH (NY Harbor ULSD) 2014-2019, log-return vol 31.4 %;
    # 21-day 33.2 %, 252-day 36.3 % -> capped: flat vol; no transient part (tau 20 y);
    # AR(1) kappa 0.93/yr, monthly 0.40/yr (2006-2019); 1.61 spikes/yr, mean 8.6 %,
    # persistent (decay 0.05/yr). Shape: heating-oil (distillate) ratios.
    "RP-ULSD-NYH": _p(
        "RP-ULSD-NYH",
        "distillate",
        sigma_front=0.332,
        sigma_long=0.332,
        tau=20.0,
        kappa=0.926,
        kappa_long=0.400,
        sigma_spot=0.332,
        jump_intensity=1.61,
        jump_size=0.0857,
        jump_up_share=0.375,
        jump_decay=0.05,
    ),
    # RP-RBOB-NYH: proxy FRED DGASNYH (NY Harbor conventional gasoline; the FRED RBOB series
    # is Los Angeles, a different market): log-return vol 38.6 %; 21-day 36.3 %, 252-day
    # 30.9 %; fit kappa 0.73/yr; AR(1) 1.37/yr, monthly 0.163/yr (1986-2019);
    # 1.81 spikes/yr, mean 13.4 %, 44 % up.
    "RP-RBOB-NYH": _p(
        "RP-RBOB-NYH",
        "gasoline",
        sigma_front=0.363,
        sigma_long=0.309,
        tau=1.365,
        kappa=1.37,
        kappa_long=0.163,
        sigma_spot=0.363,
        jump_intensity=1.81,
        jump_size=0.134,
        jump_up_share=0.444,
        jump_decay=0.733,
    ),
    # RP-GASOIL: no ICE gasoil series; proxy FRED DHOILNYH (NY Harbor No. 2 heating oil, the
    # closest middle distillate to gasoil): log-return vol 35.4 %; 21-day 33.8 %, 252-day
    # 38.1 % -> capped, flat vol, tau 20 y; AR(1) 1.07/yr, monthly 0.114/yr (1986-2019);
    # 2.01 spikes/yr, mean 11.0 %, persistent.
    "RP-GASOIL": _p(
        "RP-GASOIL",
        "distillate",
        sigma_front=0.338,
        sigma_long=0.338,
        tau=20.0,
        kappa=1.07,
        kappa_long=0.114,
        sigma_spot=0.338,
        jump_intensity=2.01,
        jump_size=0.110,
        jump_up_share=0.500,
        jump_decay=0.05,
    ),
}

# ------------------------------------------------------------------ correlations
#: correlation of weekly log returns on common dates (every 5th common day: removes the
#: asynchronous-close bias of daily London/New York returns; daily Brent/WTI is 0.870).
CORRELATIONS: dict[tuple[str, str], float] = {
    ("CR-BRENT", "CR-WTI"): 0.936,  # EIA 2021-2026
    ("CR-BRENT", "NG-HH"): 0.094,  # EIA 2021-2026
    ("CR-WTI", "NG-HH"): 0.064,  # EIA 2021-2026
    ("CR-BRENT", "RP-ULSD-NYH"): 0.827,  # FRED DCOILBRENTEU / DDFUELNYH 2014-2019
    ("CR-BRENT", "RP-RBOB-NYH"): 0.629,  # FRED DCOILBRENTEU / DGASNYH
    ("CR-BRENT", "RP-GASOIL"): 0.817,  # FRED DCOILBRENTEU / DHOILNYH
    ("RP-ULSD-NYH", "RP-RBOB-NYH"): 0.740,  # FRED DDFUELNYH / DGASNYH
    ("RP-ULSD-NYH", "RP-GASOIL"): 0.935,  # FRED DDFUELNYH / DHOILNYH
    ("RP-RBOB-NYH", "RP-GASOIL"): 0.716,  # FRED DGASNYH / DHOILNYH
    # WTI vs products: no common FRED product/WTI estimate kept; Brent's values (WTI tracks
    # Brent at 0.936).
    ("CR-WTI", "RP-ULSD-NYH"): 0.827,
    ("CR-WTI", "RP-RBOB-NYH"): 0.629,
    ("CR-WTI", "RP-GASOIL"): 0.817,
    ("PWR-DE-BASE", "NG-HH"): 0.105,  # Ember Germany / EIA HH 2021-2026
    ("PWR-DE-BASE", "CR-BRENT"): 0.098,  # Ember Germany / EIA Brent 2021-2026
    ("PWR-DE-PEAK", "NG-HH"): 0.105,
    ("PWR-DE-PEAK", "CR-BRENT"): 0.098,
    # Judgement, no series in ../shared (stated as such):
    ("PWR-DE-BASE", "PWR-DE-PEAK"): 0.95,  # same market, peak hours inside base
    ("PWR-PJMW-PEAK", "PWR-PJMW-OFFPK"): 0.90,  # same hub
    ("NG-TTF", "NG-NBP"): 0.90,  # interconnected NW European hubs
    ("NG-TTF", "PWR-DE-BASE"): 0.70,  # gas plants set the German marginal price
    ("NG-TTF", "PWR-DE-PEAK"): 0.70,
    ("NG-NBP", "PWR-DE-BASE"): 0.60,
    ("NG-NBP", "PWR-DE-PEAK"): 0.60,
    ("NG-HH", "PWR-PJMW-PEAK"): 0.60,  # gas on the margin in PJM
    ("NG-HH", "PWR-PJMW-OFFPK"): 0.60,
    ("NG-HH", "NG-TTF"): 0.25,  # linked through LNG
    ("NG-HH", "NG-NBP"): 0.25,
    ("NG-TTF", "CR-BRENT"): 0.20,  # oil-indexed contracts, LNG netbacks
    ("NG-NBP", "CR-BRENT"): 0.20,
    ("RP-GASOIL", "NG-TTF"): 0.20,
}
#: every other pair (power/gas vs oil products, PJM vs Europe): the measured weekly
#: correlation of German power with Brent and Henry Hub (0.10) as the cross-complex level.
DEFAULT_CROSS_CORRELATION = 0.10

# ------------------------------------------------------------------ quoting conventions
#: minimum price increment per product (exchange conventions, not estimated): EEX/PJM
#: 0.01/MWh, NYMEX HH 0.001 $/MMBtu, ICE TTF 0.005 EUR/MWh, ICE NBP 0.01 p/therm
#: (= 0.0001 GBP), Brent/WTI 0.01 $/bbl, NYMEX ULSD/RBOB 0.0001 $/gal, ICE gasoil 0.25 $/t.
TICK_SIZE: dict[str, float] = {
    "PWR-DE-BASE": 0.01,
    "PWR-DE-PEAK": 0.01,
    "PWR-PJMW-PEAK": 0.01,
    "PWR-PJMW-OFFPK": 0.01,
    "NG-HH": 0.001,
    "NG-TTF": 0.005,
    "NG-NBP": 0.0001,
    "CR-BRENT": 0.01,
    "CR-WTI": 0.01,
    "RP-ULSD-NYH": 0.0001,
    "RP-RBOB-NYH": 0.0001,
    "RP-GASOIL": 0.25,
}
#: half bid/ask spread as a fraction of one trading day's price SD at the instrument's
#: tenor (``sigma(T) (level + c) / sqrt(252)``): spreads scale with vol x level; Brent front
#: month: 0.01 x 1.86 = 0.019 $/bbl before rounding out to the tick.
HALF_SPREAD_DAILY_SD = 0.01


def model_params(codes: Iterable[str]) -> ModelParams:
    """:class:`ModelParams` for the given product codes (in that order).

    Raises
    ------
    KeyError
        For a product without simulator defaults.
    """
    codes = list(codes)
    missing = [c for c in codes if c not in SIM_PARAMS]
    if missing:
        raise KeyError(f"no simulator defaults for {', '.join(missing)}")
    n = len(codes)
    corr = np.full((n, n), DEFAULT_CROSS_CORRELATION)
    np.fill_diagonal(corr, 1.0)
    pos = {c: i for i, c in enumerate(codes)}
    for (a, b), rho in CORRELATIONS.items():
        if a in pos and b in pos:
            corr[pos[a], pos[b]] = corr[pos[b], pos[a]] = rho
    return ModelParams(products=tuple(SIM_PARAMS[c] for c in codes), correlation=corr)
