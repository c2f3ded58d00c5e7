"""Market model and estimators: each property against an independent reference (seeded)."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import numpy as np
import pytest

from app.engine.market_model import (
    MarketModel,
    ModelParams,
    ProductParams,
    add_business_days,
    annualised_vol,
    ar1_mean_reversion,
    arithmetic_change_stats,
    horizon_vol,
    jump_statistics,
    log_returns,
    monthly_means,
    nearest_correlation,
    return_correlation,
    seasonal_ratios,
    variance_term_structure,
)
from app.feed.sim_params import CORRELATIONS, SIM_PARAMS

DT = 1.0 / 252.0
FLAT = (1.0,) * 12


def _pp(code: str = "X", **kw: float) -> ProductParams:
    base: dict[str, float] = {
        "level": 70.0,
        "sigma_front": 0.45,
        "sigma_long": 0.20,
        "tau": 0.3,
        "kappa": 3.0,
        "kappa_long": 0.1,
        "sigma_spot": 0.45,
    }
    base.update(kw)
    if "sigma_spot" not in kw:
        base["sigma_spot"] = base["sigma_front"]
    seasonal = FLAT
    return ProductParams(code=code, seasonal=seasonal, **base)  # type: ignore[arg-type]


def _gbm(n: int, sigma: float, seed: int, ppy: float = 252.0) -> np.ndarray:
    r = np.random.default_rng(seed).normal(0.0, sigma / math.sqrt(ppy), n)
    return np.asarray(50.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)])))


def _ou(n: int, kappa: float, sigma: float, mean: float, seed: int, dt: float = DT) -> np.ndarray:
    rng = np.random.default_rng(seed)
    b = math.exp(-kappa * dt)
    sd = sigma * math.sqrt((1 - b * b) / (2 * kappa))
    x = np.empty(n)
    x[0] = mean
    eps = rng.standard_normal(n)
    for t in range(1, n):
        x[t] = mean + b * (x[t - 1] - mean) + sd * eps[t]
    return x


# ------------------------------------------------------------------ estimators


def test_log_returns_skip_non_positive_like_sources_md() -> None:
    p = np.array([1.0, 2.0, -1.0, 4.0, 8.0, np.nan, 3.0, 6.0])
    # brute force: consecutive pairs with both prices > 0
    ref = [
        math.log(b / a)
        for a, b in itertools.pairwise(p)
        if np.isfinite(a) and np.isfinite(b) and a > 0 and b > 0
    ]
    np.testing.assert_allclose(log_returns(p), ref)
    assert len(ref) == 3


def test_annualised_vol_matches_brute_force_and_known_sigma() -> None:
    p = _gbm(20_000, 0.35, seed=1)
    p[100] = -5.0  # two returns touch it and are skipped
    r = [math.log(b / a) for a, b in itertools.pairwise(p) if a > 0 and b > 0]
    m = sum(r) / len(r)
    ref = math.sqrt(sum((x - m) ** 2 for x in r) / (len(r) - 1) * 252)
    assert annualised_vol(p) == pytest.approx(ref, rel=1e-12)
    assert annualised_vol(p) == pytest.approx(0.35, rel=0.02)


def test_horizon_vol_of_random_walk_equals_daily_vol() -> None:
    p = _gbm(40_000, 0.30, seed=2)
    for h in (1, 5, 21):
        assert horizon_vol(p, h) == pytest.approx(0.30, rel=0.05)


def test_ar1_recovers_known_kappa_sigma_and_mean() -> None:
    x = _ou(60_000, kappa=6.0, sigma=0.5, mean=math.log(40.0), seed=3)
    fit = ar1_mean_reversion(np.exp(x), DT)
    assert fit.kappa == pytest.approx(6.0, rel=0.15)
    assert fit.sigma == pytest.approx(0.5, rel=0.02)
    assert fit.mean == pytest.approx(math.log(40.0), abs=0.02)
    assert fit.half_life == pytest.approx(math.log(2) / fit.kappa)
    # a random walk shows (almost) no reversion
    assert ar1_mean_reversion(_gbm(60_000, 0.3, seed=4), DT).kappa < 0.5


def test_jump_statistics_find_planted_jumps() -> None:
    rng = np.random.default_rng(5)
    n = 25_200  # 100 years of daily returns
    r = rng.normal(0.0, 0.02, n)
    where = rng.choice(n, 40, replace=False)
    signs = np.where(np.arange(40) < 30, 1.0, -1.0)
    r[where] = signs * 0.4  # 20 sd: unmistakable
    p = 30.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    js = jump_statistics(p, 252.0, k=4.0)
    assert js.n_jumps >= 40  # the planted ones (a rare Gaussian 4-sd return may join)
    assert js.n_jumps <= 45
    assert js.intensity == pytest.approx(js.n_jumps / (n / 252.0))
    assert js.mean_size == pytest.approx(0.4, rel=0.08)
    assert js.up_share == pytest.approx(30 / 40, abs=0.06)
    assert js.diffusive_vol == pytest.approx(0.02 * math.sqrt(252), rel=0.02)


def test_return_correlation_on_common_dates_vs_brute_force() -> None:
    rng = np.random.default_rng(6)
    n = 3000
    z = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], n) * 0.01
    dates = np.datetime64("2015-01-01") + np.arange(n + 1)
    pa = 60 * np.exp(np.concatenate([[0], np.cumsum(z[:, 0])]))
    pb = 55 * np.exp(np.concatenate([[0], np.cumsum(z[:, 1])]))
    keep_a = rng.random(n + 1) > 0.05
    keep_b = rng.random(n + 1) > 0.05
    da, xa, db, xb = dates[keep_a], pa[keep_a], dates[keep_b], pb[keep_b]
    got = return_correlation(da, xa, db, xb)
    # brute force with dicts
    a = dict(zip(da.tolist(), xa.tolist(), strict=True))
    b = dict(zip(db.tolist(), xb.tolist(), strict=True))
    common = sorted(set(a) & set(b))
    ra = [math.log(a[j] / a[i]) for i, j in itertools.pairwise(common)]
    rb = [math.log(b[j] / b[i]) for i, j in itertools.pairwise(common)]
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    ref = cov / math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    assert got == pytest.approx(ref, abs=1e-12)
    assert return_correlation(dates, pa, dates, pb) == pytest.approx(0.8, abs=0.03)
    # weekly sampling of the same random walk keeps the correlation
    assert return_correlation(dates, pa, dates, pb, every=5) == pytest.approx(0.8, abs=0.05)


def test_arithmetic_change_stats_vs_brute_force() -> None:
    p = np.array([10.0, -2.0, 5.0, 0.0, 7.5, 3.0])
    d = [b - a for a, b in itertools.pairwise(p)]
    m = sum(d) / len(d)
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1))
    st = arithmetic_change_stats(p)
    assert st.sd_change == pytest.approx(sd)
    assert st.share_nonpositive == pytest.approx(2 / 6)
    assert st.mean == pytest.approx(p.mean())


def test_monthly_means_and_seasonal_ratios_recover_known_shape() -> None:
    shape = np.array([1.2, 1.1, 1.0, 0.9, 0.85, 0.8, 0.85, 0.9, 0.95, 1.05, 1.15, 1.25])
    shape = shape / shape.mean()
    days = np.arange(np.datetime64("2010-01-01"), np.datetime64("2019-12-31"))
    month = days.astype("datetime64[M]").astype(int) % 12
    year = days.astype("datetime64[Y]").astype(int)
    level = 20.0 * 1.3 ** (year - year[0])  # a strong trend between years
    prices = level * shape[month]
    months, means = monthly_means(days, prices)
    assert months.size == 120
    np.testing.assert_allclose(means[:12], 20.0 * shape)
    np.testing.assert_allclose(seasonal_ratios(days, prices), shape, rtol=1e-12)


def test_variance_term_structure_splits_permanent_and_transient() -> None:
    n = 252 * 60
    rng = np.random.default_rng(7)
    long = np.cumsum(rng.normal(0, 0.2 * math.sqrt(DT), n))
    short = _ou(n, kappa=12.0, sigma=0.8, mean=0.0, seed=8)
    fit = variance_term_structure(np.exp(3.0 + long + short))
    assert fit.sigma_long == pytest.approx(0.2, rel=0.15)
    assert fit.sigma_short == pytest.approx(0.8, rel=0.15)
    assert fit.kappa == pytest.approx(12.0, rel=0.3)
    assert fit.sigma_front == pytest.approx(math.hypot(fit.sigma_long, fit.sigma_short))


def test_nearest_correlation() -> None:
    good = np.array([[1, 0.5, 0.2], [0.5, 1, 0.3], [0.2, 0.3, 1.0]])
    np.testing.assert_allclose(nearest_correlation(good), good, atol=1e-9)
    bad = np.array([[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1.0]])
    fixed = nearest_correlation(bad)
    assert np.linalg.eigvalsh(fixed).min() > 0
    np.testing.assert_allclose(np.diag(fixed), 1.0)
    np.linalg.cholesky(fixed)


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="seasonal"):
        ProductParams("X", 1.0, (1.0,) * 11, 0.3, 0.2, 0.1, 1.0, 0.1, 0.3)
    with pytest.raises(ValueError, match="sigma_spot"):
        _pp(sigma_spot=0.1)
    with pytest.raises(ValueError, match="symmetric"):
        ModelParams((_pp("A"), _pp("B")), np.array([[1, 0.5], [0.4, 1.0]]))
    with pytest.raises(ValueError, match="2x2"):
        ModelParams((_pp("A"), _pp("B")), np.eye(3))


# ------------------------------------------------------------------ model paths


AS_OF = date(2026, 11, 24)
FIRST = date(2026, 12, 1)


def _model(products: tuple[ProductParams, ...], corr: np.ndarray | None = None, seed: int = 11,
           n_months: int = 36) -> MarketModel:  # fmt: skip
    c = np.eye(len(products)) if corr is None else corr
    return MarketModel(ModelParams(products, c), AS_OF, FIRST, n_months, seed=seed)


def _samuelson(p: ProductParams, t: np.ndarray) -> np.ndarray:
    return p.sigma_long + (p.sigma_front - p.sigma_long) * np.exp(-t / p.tau)


def test_realised_vol_per_tenor_is_samuelson() -> None:
    p = _pp(sigma_front=0.6, sigma_long=0.2, tau=0.4)
    m = _model((p,))
    logs = np.empty((3000, m.n_months))
    for k in range(logs.shape[0]):
        m.step(DT)
        logs[k] = np.log(m.curves[0])
    realised = np.std(np.diff(logs, axis=0), axis=0, ddof=1) * math.sqrt(252)
    # reference: T from the calendar, formula written out here
    t = (
        np.array(
            [(date(2026 + (11 + j) // 12, (11 + j) % 12 + 1, 1) - AS_OF).days for j in range(36)]
        )
        / 365.25
    )
    np.testing.assert_allclose(realised, _samuelson(p, t), rtol=0.05)
    assert realised[0] > realised[6] > realised[18] > realised[35]
    np.testing.assert_allclose(m.column_vols()[0, 1:], _samuelson(p, t), rtol=1e-12)


def test_shipped_brent_curve_vol_falls_with_tenor() -> None:
    p = SIM_PARAMS["CR-BRENT"]
    m = _model((p,), seed=16, n_months=24)
    logs = np.empty((2000, 24))
    for k in range(logs.shape[0]):
        m.step(DT)
        logs[k] = np.log(m.curves[0])
    realised = np.std(np.diff(logs, axis=0), axis=0, ddof=1) * math.sqrt(252)
    t = m.times_to_delivery()
    np.testing.assert_allclose(realised, _samuelson(p, t), rtol=0.06)
    assert realised[0] > realised[3] > realised[11] > realised[23]


def test_realised_brent_wti_correlation_close_to_target() -> None:
    brent, wti = SIM_PARAMS["CR-BRENT"], SIM_PARAMS["CR-WTI"]
    rho = CORRELATIONS[("CR-BRENT", "CR-WTI")]
    m = _model((brent, wti), np.array([[1.0, rho], [rho, 1.0]]), seed=12)
    r = np.empty((5000, 2))
    prev = np.log(m.curves[:, 0])
    for k in range(r.shape[0]):
        m.step(DT)
        cur = np.log(m.curves[:, 0])
        r[k] = cur - prev
        prev = cur
    realised = float(np.asarray(np.corrcoef(r.T))[0, 1])
    # reference: per-factor loadings of the front month, correlated by rho factor by factor
    t0 = (FIRST - AS_OF).days / 365.25
    ls, ss = [], []
    for q in (brent, wti):
        sig = float(_samuelson(q, np.array(t0)))
        short = sig - q.sigma_long
        nrm = math.hypot(q.sigma_long, short)
        ls.append(sig * q.sigma_long / nrm)
        ss.append(sig * short / nrm)
    expected = (
        rho * (ls[0] * ls[1] + ss[0] * ss[1]) / math.hypot(ls[0], ss[0]) / math.hypot(ls[1], ss[1])
    )
    assert expected == pytest.approx(rho, abs=0.01)
    assert realised == pytest.approx(expected, abs=0.015)


def test_winter_gas_months_above_summer() -> None:
    gas_shape = (1.047, 0.990, 0.935, 0.955, 0.988, 1.010, 0.985, 0.991, 0.988, 1.022, 1.025, 1.064)
    p = ProductParams("G", 3.4, gas_shape, 0.9, 0.5, 0.03, 7.0, 0.7, 0.9)
    m = _model((p,), seed=13)
    months = m.months.astype(int) % 12  # 0 = Jan
    winter = np.isin(months, (11, 0)) & (np.arange(36) >= 12)
    summer = np.isin(months, (5, 6, 7)) & (np.arange(36) >= 12)
    wins = 0
    steps = 500
    for _ in range(steps):
        m.step(DT)
        c = m.curves[0]
        wins += bool(c[winter].min() > c[summer].max())
    assert wins == steps


def test_power_spikes_and_negative_prices_over_long_simulation() -> None:
    p = SIM_PARAMS["PWR-DE-BASE"]  # the shipped defaults
    m = _model((p,), seed=14, n_months=12)
    d = AS_OF
    n = 252 * 20
    spot = np.empty(n)
    spikes = np.empty(n)
    for k in range(n):
        m.step(DT)
        spot[k] = m.spot[0]
        spikes[k] = m.spikes[0]
        d = add_business_days(d, 1)
        m.set_date(d)
    share_neg = float(np.mean(spot <= 0))
    assert 0.0005 < share_neg < 0.03  # Germany 2021-2026: 0.44 % of days <= 0
    assert spot.min() > -p.shift  # the shift bounds prices below
    assert spot.max() <= p.price_cap
    assert np.sum(np.abs(np.diff(spikes)) > 0.5) >= 10  # ~28 spikes expected in 20 years
    assert spot.max() > 3 * np.median(spot)  # up-spikes visible in the spot
    # spikes are short-lived: a day after a big one the spike state has mostly decayed
    assert math.exp(-p.jump_decay * DT) < 0.6


def test_mean_reversion_visible_in_spot() -> None:
    p = _pp(kappa=8.0, sigma_front=0.5, sigma_spot=0.5, sigma_long=0.2)
    m = _model((p,), seed=15, n_months=3)
    spot = np.empty(252 * 30)
    for k in range(spot.size):
        m.step(DT)
        spot[k] = m.spot[0]
    fit = ar1_mean_reversion(spot, DT)
    assert fit.kappa == pytest.approx(8.0, rel=0.3)
    assert fit.mean == pytest.approx(math.log(70.0), abs=0.05)


def test_spike_weights_are_expected_delivery_averages() -> None:
    p = _pp(jump_decay=50.0, jump_intensity=0.0)
    m = _model((p,), n_months=4)
    m.spikes[:] = 1.0
    m._prices = None
    base = 70.0
    got = np.log(m.prices()[0] / base)  # x = 0: log ratio is the spike weight
    assert got[0] == pytest.approx(1.0)
    for j in range(4):
        y, mo = 2026 + (11 + j) // 12, (11 + j) % 12 + 1
        start = date(y, mo, 1)
        nxt = date(y + (mo == 12), mo % 12 + 1, 1)
        t_s, t_e = (start - AS_OF).days / 365.25, (nxt - AS_OF).days / 365.25
        s = np.linspace(t_s, t_e, 200_001)
        ref = float(np.mean(np.exp(-50.0 * s)))
        assert got[1 + j] == pytest.approx(ref, rel=1e-4)


def test_delivered_months_are_frozen() -> None:
    m = _model((_pp(),), n_months=6)
    m.set_date(date(2027, 1, 4))  # December 2026 delivered
    before = m.curves[0].copy()
    for _ in range(20):
        m.step(DT)
    assert m.curves[0, 0] == before[0]
    assert np.all(m.curves[0, 1:] != before[1:])
    assert m.column_vols()[0, 1] == 0.0


def test_same_seed_same_path_and_vectorised_step_is_fast() -> None:
    import time

    ps = tuple(_pp(f"P{i}") for i in range(12))
    a, b, c = (_model(ps, seed=s, n_months=120) for s in (1, 1, 2))
    for _ in range(50):
        a.step(DT / 10)
        b.step(DT / 10)
        c.step(DT / 10)
    np.testing.assert_array_equal(a.prices(), b.prices())
    assert not np.array_equal(a.prices(), c.prices())
    t0 = time.perf_counter()
    for _ in range(200):
        a.step(DT / 100)
        a.prices()
    assert (time.perf_counter() - t0) / 200 < 0.002  # 12 x 121 columns per step


def test_add_business_days_skips_weekends() -> None:
    assert add_business_days(date(2026, 11, 27), 1) == date(2026, 11, 30)  # Fri -> Mon
    d = date(2026, 11, 24)
    assert add_business_days(d, 5) == d + timedelta(days=7)


def test_samuelson_total_variance_matches_numerical_integration() -> None:
    from scipy.integrate import quad

    from app.engine.market_model import samuelson_total_variance

    rng = np.random.default_rng(11)
    for _ in range(20):
        sf, sl = rng.uniform(0.2, 1.2), rng.uniform(0.1, 0.5)
        tau = rng.uniform(0.02, 2.0)
        te = rng.uniform(0.01, 2.0)
        td = te + rng.uniform(0.0, 0.3)

        def sig2(
            t: float, sf: float = sf, sl: float = sl, tau: float = tau, td: float = td
        ) -> float:
            return float((sl + (sf - sl) * np.exp(-(td - t) / tau)) ** 2)

        ref = quad(sig2, 0.0, te, epsabs=1e-13, epsrel=1e-12)[0]
        got = float(samuelson_total_variance(sf, sl, tau, te, td))
        assert got == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError):
        samuelson_total_variance(0.5, 0.3, 0.5, 1.0, 0.5)  # expiry after delivery


def test_shifted_lognormal_vols_reprice_the_displaced_diffusion() -> None:
    from app.engine.market_model import shifted_lognormal_black_vols
    from app.engine.options import black76

    F, T, sigma, shift = 60.0, 0.75, 0.5, 30.0
    K = F * np.exp(np.linspace(-1.0, 1.0, 11))
    vols = shifted_lognormal_black_vols(F, K, T, sigma, shift)
    call = K >= F
    # Independent reference: the shifted model's own price.
    ref = black76(F + shift, K + shift, T, 0.0, sigma, call)
    np.testing.assert_allclose(black76(F, K, T, 0.0, vols, call), ref, rtol=1e-10, atol=1e-12)
    assert np.all(np.diff(vols) < 0)  # displaced diffusion: downward skew
    atm = shifted_lognormal_black_vols(F, F, T, sigma, shift)
    assert float(atm) == pytest.approx(sigma * (F + shift) / F, rel=0.03)  # textbook approx.
    np.testing.assert_allclose(shifted_lognormal_black_vols(F, K, T, sigma, 0.0), sigma)
