"""Tests for app.engine.vol: SVI smile, fitting, arbitrage checks and the vol surface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from app.engine.options import black76
from app.engine.vol import (
    SVIFit,
    SVIParams,
    VolSurface,
    butterfly_density_g,
    calendar_arbitrage,
    fit_svi,
)

SANE = SVIParams(a=0.04, b=0.4, rho=-0.4, m=0.1, sigma=0.2)  # T = 0.5
# Axel Vogt's example (Gatheral-Jacquier 2013): butterfly arbitrage for 0.65 < k < 1.25
VOGT = SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)  # T = 1
K_GRID = np.linspace(-1.0, 1.0, 41)


def _param_vec(p: SVIParams) -> np.ndarray:
    return np.array([p.a, p.b, p.rho, p.m, p.sigma])


# --------------------------------------------------------------------------- SVIParams


def test_total_variance_formula_and_scalar_return() -> None:
    k = 0.3
    x = k - SANE.m
    expected = SANE.a + SANE.b * (SANE.rho * x + math.sqrt(x * x + SANE.sigma**2))
    w = SANE.total_variance(k)
    assert isinstance(w, float)
    assert w == pytest.approx(expected, rel=1e-15)
    assert SANE.implied_vol(k, 0.5) == pytest.approx(math.sqrt(expected / 0.5), rel=1e-15)
    assert isinstance(SANE.implied_vol(K_GRID, 0.5), np.ndarray)
    assert SANE.min_total_variance == pytest.approx(
        SANE.a + SANE.b * SANE.sigma * math.sqrt(1 - SANE.rho**2)
    )


def test_implied_vol_matches_quantlib_svi() -> None:
    T, F = 0.5, 100.0
    # QuantLib orders the raw SVI parameters as (a, b, sigma, rho, m)
    qls = ql.SviSmileSection(T, F, [SANE.a, SANE.b, SANE.sigma, SANE.rho, SANE.m])
    strikes = F * np.exp(K_GRID)
    ours = SANE.implied_vol(np.log(strikes / F), T)
    theirs = np.array([qls.volatility(float(K)) for K in strikes])
    assert_allclose(ours, theirs, rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"b": -0.1}, "b"),
        ({"rho": 1.0}, "rho"),
        ({"rho": -1.5}, "rho"),
        ({"sigma": 0.0}, "sigma"),
        ({"a": -1.0}, "a"),
        ({"a": float("nan")}, "a"),
        ({"m": float("inf")}, "m"),
    ],
)
def test_svi_params_bad_input(kwargs: dict[str, float], name: str) -> None:
    base = {"a": 0.04, "b": 0.4, "rho": -0.4, "m": 0.1, "sigma": 0.2}
    base.update(kwargs)
    with pytest.raises(ValueError, match=name):
        SVIParams(**base)


def test_svi_params_frozen() -> None:
    with pytest.raises(AttributeError):
        SANE.a = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- fitting


@pytest.mark.parametrize(("params", "T"), [(SANE, 0.5), (VOGT, 1.0)])
def test_fit_recovers_known_svi(params: SVIParams, T: float) -> None:
    vols = params.implied_vol(K_GRID, T)
    fit = fit_svi(K_GRID, vols, T)
    assert isinstance(fit, SVIFit)
    assert_allclose(_param_vec(fit.params), _param_vec(params), atol=1e-6)
    assert_allclose(fit.params.implied_vol(K_GRID, T), vols, atol=1e-8)
    assert fit.rmse < 1e-8
    assert fit.T == T


def test_fit_noisy_rmse_small_and_weights() -> None:
    rng = np.random.default_rng(42)
    T = 0.5
    clean = np.asarray(SANE.implied_vol(K_GRID, T))
    noisy = clean + rng.normal(0.0, 0.002, K_GRID.size)
    fit = fit_svi(K_GRID, noisy, T)
    assert fit.rmse < 0.003
    assert np.max(np.abs(np.asarray(fit.params.implied_vol(K_GRID, T)) - clean)) < 0.004
    assert fit.butterfly_ok
    # A far-off outlier with zero weight does not move the fit.
    bad = noisy.copy()
    bad[5] += 0.5
    wts = np.ones_like(K_GRID)
    wts[5] = 0.0
    fit_w = fit_svi(K_GRID, bad, T, weights=wts)
    assert_allclose(_param_vec(fit_w.params), _param_vec(fit.params), atol=0.05)
    assert fit_w.rmse < 0.003


def test_fit_respects_domain_on_hard_data() -> None:
    # A smile with a negative-variance-looking shape: the fit must stay in the SVI domain.
    k = np.linspace(-0.5, 0.5, 11)
    vols = 0.3 + 0.4 * np.abs(k) ** 3 - 0.2 * k**2
    fit = fit_svi(k, vols, 0.25)
    p = fit.params
    assert p.b >= 0 and abs(p.rho) < 1 and p.sigma > 0 and p.min_total_variance >= -1e-14
    assert np.isfinite(fit.rmse)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((K_GRID, np.full(41, 0.2), 0.0), "T"),
        ((K_GRID, np.full(41, 0.2), float("nan")), "T"),
        ((K_GRID, np.full(40, 0.2), 1.0), "implied_vols"),
        ((K_GRID, np.full(41, -0.2), 1.0), "implied_vols"),
        ((K_GRID[:4], np.full(4, 0.2), 1.0), "k"),
        ((np.append(K_GRID[:-1], np.nan), np.full(41, 0.2), 1.0), "k"),
    ],
)
def test_fit_bad_input(args: tuple[object, object, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        fit_svi(*args)  # type: ignore[arg-type]


def test_fit_bad_weights() -> None:
    vols = SANE.implied_vol(K_GRID, 0.5)
    with pytest.raises(ValueError, match="weights"):
        fit_svi(K_GRID, vols, 0.5, weights=-np.ones(41))
    with pytest.raises(ValueError, match="weights"):
        fit_svi(K_GRID, vols, 0.5, weights=np.ones(3))


# --------------------------------------------------------------------------- butterfly


def test_butterfly_flags_vogt_and_passes_sane() -> None:
    k = np.linspace(-2.0, 2.0, 401)
    g_vogt = np.asarray(butterfly_density_g(VOGT, k))
    assert g_vogt.min() < -0.03
    neg = k[g_vogt < 0]
    assert 0.6 < neg.min() < 0.7 and 1.2 < neg.max() < 1.3
    assert np.all(np.asarray(butterfly_density_g(SANE, k)) > 0)
    assert isinstance(butterfly_density_g(SANE, 0.0), float)
    # g(k) closed form at the vertex-free point k = 0 with w' and w''
    x = -SANE.m
    r = math.hypot(x, SANE.sigma)
    w = SANE.a + SANE.b * (SANE.rho * x + r)
    w1 = SANE.b * (SANE.rho + x / r)
    w2 = SANE.b * SANE.sigma**2 / r**3
    g0 = 1.0 - w1 * w1 / 4 * (1 / w + 0.25) + w2 / 2
    assert butterfly_density_g(SANE, 0.0) == pytest.approx(g0, rel=1e-14)


def _fd_density(params: SVIParams, T: float, k: np.ndarray) -> np.ndarray:
    """Risk-neutral density of K (F = 1, r = 0) by central differences of Black-76 calls."""
    K = np.exp(k)
    h = 1e-3 * K

    def call(strike: np.ndarray) -> np.ndarray:
        vol = params.implied_vol(np.log(strike), T)
        return np.asarray(black76(1.0, strike, T, 0.0, vol, True))

    return (call(K + h) - 2.0 * call(K) + call(K - h)) / (h * h)


@pytest.mark.parametrize(("params", "T"), [(SANE, 0.5), (VOGT, 1.0)])
def test_g_matches_finite_difference_density(params: SVIParams, T: float) -> None:
    k = np.linspace(-1.5, 1.5, 151)
    dens = _fd_density(params, T, k)
    g = np.asarray(butterfly_density_g(params, k))
    w = np.asarray(params.total_variance(k))
    d2 = -k / np.sqrt(w) - 0.5 * np.sqrt(w)
    analytic = g / np.sqrt(2 * np.pi * w) * np.exp(-0.5 * d2 * d2) / np.exp(k)
    assert_allclose(dens, analytic, rtol=1e-4, atol=1e-6)
    # sign agreement: density >= 0 wherever g >= 0, and < 0 where g is clearly negative
    assert np.all(dens[g >= 0] >= -1e-8)
    assert np.all(dens[g < -1e-3] < 0)
    if params is VOGT:
        assert (g < -1e-3).any()


def test_fit_reports_butterfly() -> None:
    fit = fit_svi(K_GRID, VOGT.implied_vol(K_GRID, 1.0), 1.0)
    assert not fit.butterfly_ok
    assert fit.min_g < -0.03


# --------------------------------------------------------------------------- calendar


def test_calendar_no_violation_when_variance_grows() -> None:
    later = SVIParams(2 * SANE.a, 2 * SANE.b, SANE.rho, SANE.m, SANE.sigma)  # w2 = 2 w1
    assert calendar_arbitrage({0.5: SANE, 1.0: later}) == []
    fit = fit_svi(K_GRID, SANE.implied_vol(K_GRID, 0.5), 0.5)
    assert calendar_arbitrage({1.0: later, 0.5: fit}) == []


def test_calendar_violation_detected_when_later_smile_lies_below() -> None:
    # Same wings, lower ATM level: the later smile lies below near the money only.
    later = SVIParams(SANE.a - 0.02, SANE.b, SANE.rho, SANE.m, SANE.sigma)
    k = np.linspace(-1.0, 1.0, 21)
    viol = calendar_arbitrage({1.0: later, 0.5: SANE}, k=k)
    assert viol
    assert all(t1 == 0.5 and t2 == 1.0 for t1, t2, _ in viol)
    assert [kk for _, _, kk in viol] == pytest.approx(list(k))
    # Only near the money: steeper later wings cross above.
    steep = SVIParams(0.0, 0.55, SANE.rho, SANE.m, SANE.sigma)
    ks = np.array([kk for _, _, kk in calendar_arbitrage({0.5: SANE, 1.0: steep})])
    w1 = np.asarray(SANE.total_variance(ks))
    w2 = np.asarray(steep.total_variance(ks))
    assert ks.size > 0 and np.all(w2 < w1)
    assert ks.min() > -2.0 and ks.max() < 2.0
    surf = VolSurface.from_smiles({0.5: SANE, 1.0: steep})
    assert [kk for *_, kk in surf.calendar_arbitrage()] == pytest.approx(list(ks))


def test_calendar_bad_input() -> None:
    with pytest.raises(ValueError, match="fits"):
        calendar_arbitrage({0.5: SANE, 1.0: 0.2})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="T"):
        calendar_arbitrage({-0.5: SANE, 1.0: SANE})


# --------------------------------------------------------------------------- surface

P1 = SANE  # T = 0.5
P2 = SVIParams(0.09, 0.5, -0.3, 0.05, 0.3)  # T = 1.0
P3 = SVIParams(0.25, 0.6, -0.2, 0.0, 0.4)  # T = 2.0


def _surface() -> VolSurface:
    return VolSurface.from_smiles({1.0: P2, 0.5: P1, 2.0: P3})


def test_surface_exact_at_nodes() -> None:
    s = _surface()
    F = 80.0
    K = F * np.exp(K_GRID)
    for T, p in [(0.5, P1), (1.0, P2), (2.0, P3)]:
        assert_allclose(s.vol(T, K, F), p.implied_vol(K_GRID, T), rtol=1e-14)
    assert_allclose(s.expiries, [0.5, 1.0, 2.0])


def test_surface_linear_in_total_variance_between_nodes() -> None:
    s = _surface()
    F = 50.0
    K = F * np.exp(K_GRID)
    for lam in (0.1, 0.5, 0.9):
        T = 1.0 + lam * 1.0
        w = (1 - lam) * np.asarray(P2.total_variance(K_GRID)) + lam * np.asarray(
            P3.total_variance(K_GRID)
        )
        assert_allclose(np.asarray(s.vol(T, K, F)) ** 2 * T, w, rtol=1e-13)
        assert_allclose(s.total_variance(T, K_GRID), w, rtol=1e-13)


def test_surface_flat_extrapolation_in_T() -> None:
    s = _surface()
    assert_allclose(s.vol(0.1, 100 * np.exp(K_GRID), 100.0), P1.implied_vol(K_GRID, 0.5))
    assert_allclose(s.vol(7.0, 100 * np.exp(K_GRID), 100.0), P3.implied_vol(K_GRID, 2.0))


def test_surface_broadcasting_and_scalars() -> None:
    s = _surface()
    v = s.vol(0.75, 100.0, 100.0)
    assert isinstance(v, float)
    T = np.array([[0.25], [0.75], [1.5], [3.0]])
    K = np.array([80.0, 100.0, 120.0])
    out = np.asarray(s.vol(T, K, 100.0))
    assert out.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert out[i, j] == pytest.approx(s.vol(float(T[i, 0]), float(K[j]), 100.0), rel=1e-15)


def test_flat_surface() -> None:
    s = VolSurface.flat(0.35)
    rng = np.random.default_rng(1)
    T = rng.uniform(0.01, 30.0, 50)
    K = rng.uniform(1.0, 500.0, 50)
    F = rng.uniform(1.0, 500.0, 50)
    assert_allclose(s.vol(T, K, F), 0.35, rtol=1e-15)
    _, atm = s.atm_term_structure([0.1, 5.0])
    assert_allclose(atm, 0.35)
    assert s.calendar_arbitrage() == []


def test_mixed_flat_and_svi_nodes_and_atm_term_structure() -> None:
    s = VolSurface({0.5: 0.3, 1.0: P2})
    Ts, atm = s.atm_term_structure()
    assert_allclose(Ts, [0.5, 1.0])
    assert_allclose(atm, [0.3, P2.implied_vol(0.0, 1.0)], rtol=1e-14)
    w_mid = 0.5 * (0.3**2 * 0.5 + float(P2.total_variance(0.0)))
    assert s.vol(0.75, 10.0, 10.0) == pytest.approx(math.sqrt(w_mid / 0.75), rel=1e-14)


def test_surface_fit_round_trip() -> None:
    forwards = {0.5: 70.0, 1.0: 72.0, 2.0: 75.0}
    quotes = {}
    for T, p in [(0.5, P1), (1.0, P2), (2.0, P3)]:
        K = forwards[T] * np.exp(K_GRID)
        quotes[T] = (K, np.asarray(p.implied_vol(K_GRID, T)))
    s = VolSurface.fit(quotes, forwards)
    assert set(s.fits) == {0.5, 1.0, 2.0}
    assert all(f.rmse < 1e-8 and f.butterfly_ok for f in s.fits.values())
    ref = _surface()
    K = np.linspace(40.0, 140.0, 11)
    for T in (0.3, 0.5, 0.8, 1.0, 1.7, 2.0, 4.0):
        F = 73.0
        assert_allclose(s.vol(T, K, F), ref.vol(T, K, F), atol=1e-8)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0.0, 100.0, 100.0), "T"),
        ((1.0, 0.0, 100.0), "K"),
        ((1.0, 100.0, -1.0), "F"),
        ((1.0, float("nan"), 100.0), "K"),
        ((1.0, [1.0, 2.0], [1.0, 2.0, 3.0]), "broadcast"),
    ],
)
def test_surface_vol_bad_input(args: tuple[object, object, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _surface().vol(*args)  # type: ignore[arg-type]


def test_surface_constructor_bad_input() -> None:
    with pytest.raises(ValueError, match="smiles"):
        VolSurface({})
    with pytest.raises(ValueError, match="smiles"):
        VolSurface({1.0: -0.2})
    with pytest.raises(ValueError, match="T"):
        VolSurface({0.0: 0.2})
    with pytest.raises(ValueError, match="sigma"):
        VolSurface.flat(0.0)
    with pytest.raises(ValueError, match="forwards"):
        VolSurface.fit({1.0: (np.linspace(80, 120, 9), np.full(9, 0.3))}, {})
    with pytest.raises(ValueError, match="strikes"):
        VolSurface.fit({1.0: (np.linspace(-1, 120, 9), np.full(9, 0.3))}, {1.0: 100.0})


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.05, 5.0),
    st.floats(0.0, 3.0),
    st.floats(-1.5, 1.5),
)
def test_surface_variance_monotone_in_T_when_nodes_are(t: float, dt: float, k: float) -> None:
    s = _surface()
    assert s.calendar_arbitrage() == []
    w_a = float(s.total_variance(t, k))
    w_b = float(s.total_variance(t + dt, k))
    assert w_b >= w_a - 1e-14
