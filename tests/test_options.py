"""Tests for app.engine.options against QuantLib (test oracle), parity, finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import QuantLib as ql
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from app.engine.options import (
    REASON_ABOVE_UPPER_BOUND,
    REASON_AT_INTRINSIC,
    REASON_BELOW_INTRINSIC,
    REASON_OK,
    REASON_ZERO_EXPIRY,
    Greeks,
    bachelier,
    bachelier_greeks,
    black76,
    black76_greeks,
    black_scholes,
    implied_vol_bachelier,
    implied_vol_bachelier_detail,
    implied_vol_black76,
    implied_vol_black76_detail,
)

RTOL_QL = 1e-12  # closed forms vs QuantLib: same formula, rounding only
ATOL_QL = 1e-12
RTOL_FD = 1e-5  # greeks vs central finite differences

MONEYNESS = np.array([0.2, 0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0, 5.0])
EXPIRIES = np.array([1 / 365, 1 / 52, 0.25, 1.0, 3.0, 10.0])


def _ql_type(call: bool) -> int:
    return ql.Option.Call if call else ql.Option.Put


# ------------------------------------------------------------------ prices vs QuantLib


@pytest.mark.parametrize("call", [True, False])
def test_black76_grid_vs_quantlib(call: bool) -> None:
    F = 80.0
    K = F * MONEYNESS
    T = EXPIRIES[:, None]
    for sigma in (0.05, 0.3, 1.5):
        got = black76(F, K, T, 0.04, sigma, call)
        assert isinstance(got, np.ndarray)
        want = np.array(
            [
                [
                    ql.blackFormula(_ql_type(call), k, F, sigma * math.sqrt(t), math.exp(-0.04 * t))
                    for k in K
                ]
                for t in EXPIRIES
            ]
        )
        assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call", [True, False])
def test_bachelier_grid_vs_quantlib(call: bool) -> None:
    F = np.array([-37.63, -5.0, 0.0, 3.0, 60.0])
    K = np.array([-40.0, -10.0, 0.0, 2.5, 70.0])[:, None]
    T, r, sn = 0.5, 0.03, 25.0
    got = bachelier(F, K, T, r, sn, call)
    want = np.array(
        [
            [
                ql.bachelierBlackFormula(_ql_type(call), k, f, sn * math.sqrt(T), math.exp(-r * T))
                for f in F
            ]
            for k in K[:, 0]
        ]
    )
    assert_allclose(got, want, rtol=RTOL_QL, atol=ATOL_QL)


@settings(max_examples=150, deadline=None)
@given(
    F=st.floats(0.01, 1e4),
    m=st.floats(0.2, 5.0),
    T=st.floats(0.0, 10.0),
    r=st.floats(-0.05, 0.2),
    sigma=st.floats(0.0, 3.0),
    call=st.booleans(),
)
def test_black76_hypothesis_vs_quantlib(
    F: float, m: float, T: float, r: float, sigma: float, call: bool
) -> None:
    K = F * m
    got = black76(F, K, T, r, sigma, call)
    assert isinstance(got, float)
    want = ql.blackFormula(_ql_type(call), K, F, sigma * math.sqrt(T), math.exp(-r * T))
    # QuantLib does not floor at intrinsic: allow a few ulps of the notional
    assert_allclose(got, want, rtol=1e-10, atol=1e-13 * max(F, K))


@settings(max_examples=150, deadline=None)
@given(
    F=st.floats(-200.0, 200.0),
    K=st.floats(-200.0, 200.0),
    T=st.floats(0.0, 10.0),
    r=st.floats(-0.05, 0.2),
    sn=st.floats(0.0, 100.0),
    call=st.booleans(),
)
def test_bachelier_hypothesis_vs_quantlib(
    F: float, K: float, T: float, r: float, sn: float, call: bool
) -> None:
    got = bachelier(F, K, T, r, sn, call)
    want = ql.bachelierBlackFormula(_ql_type(call), K, F, sn * math.sqrt(T), math.exp(-r * T))
    assert_allclose(got, want, rtol=1e-10, atol=1e-12 * max(abs(F), abs(K), 1.0))


def test_black_scholes_vs_quantlib_and_black76() -> None:
    S, K, T, r, q, sigma = 50.0, np.array([30.0, 50.0, 75.0]), 0.75, 0.05, 0.02, 0.35
    F = S * math.exp((r - q) * T)
    for call in (True, False):
        got = black_scholes(S, K, T, r, q, sigma, call)
        assert_allclose(got, black76(F, K, T, r, sigma, call), rtol=1e-14)
        want = [
            ql.blackFormula(_ql_type(call), k, F, sigma * math.sqrt(T), math.exp(-r * T)) for k in K
        ]
        assert_allclose(got, want, rtol=RTOL_QL)
    # textbook value (Hull): S=42, K=40, r=10 %, sigma=20 %, T=0.5 -> call 4.76, put 0.81
    assert_allclose(black_scholes(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, True), 4.7594, atol=5e-5)
    assert_allclose(black_scholes(42.0, 40.0, 0.5, 0.1, 0.0, 0.2, False), 0.8086, atol=5e-5)


# ------------------------------------------------------------------ parity


@settings(max_examples=100, deadline=None)
@given(
    F=st.floats(0.01, 1e3),
    m=st.floats(0.2, 5.0),
    T=st.floats(0.0, 10.0),
    r=st.floats(-0.05, 0.2),
    sigma=st.floats(0.0, 3.0),
    sn=st.floats(0.0, 200.0),
)
def test_put_call_parity(F: float, m: float, T: float, r: float, sigma: float, sn: float) -> None:
    K = F * m
    df = math.exp(-r * T)
    scale = max(F, K)
    c, p = black76(F, K, T, r, sigma, np.array([True, False]))
    assert_allclose(c - p, df * (F - K), atol=1e-12 * scale)
    c, p = bachelier(F - K, K - F, T, r, sn, np.array([True, False]))
    assert_allclose(c - p, df * 2 * (F - K), atol=1e-12 * max(scale, sn))


# ------------------------------------------------------------------ greeks


def test_black76_greeks_vs_quantlib_calculator() -> None:
    F, T, r = 95.0, 0.6, 0.03
    df = math.exp(-r * T)
    for call in (True, False):
        for k in F * MONEYNESS:
            for sigma in (0.1, 0.45):
                g = black76_greeks(F, k, T, r, sigma, call)
                bc = ql.BlackCalculator(
                    ql.PlainVanillaPayoff(_ql_type(call), k), F, sigma * math.sqrt(T), df
                )
                assert_allclose(g.delta, bc.deltaForward(), rtol=1e-12, atol=1e-15)
                assert_allclose(g.gamma, bc.gammaForward(), rtol=1e-12, atol=1e-15)
                assert_allclose(g.vega, bc.vega(T), rtol=1e-12, atol=1e-13)
                # QuantLib's rho/theta are spot-model (forward moves with r): use closed form
                v = black76(F, k, T, r, sigma, call)
                assert_allclose(g.rho, -T * v, rtol=1e-14)


def _fd_greeks(price, F, K, T, r, vol, call, h_rel=1e-4):  # type: ignore[no-untyped-def]
    hF = h_rel * max(abs(F), 1.0)
    hv = h_rel * max(vol, 1e-2)
    hT = min(h_rel, T / 2)
    hr = 1e-5
    return Greeks(
        delta=(price(F + hF, K, T, r, vol, call) - price(F - hF, K, T, r, vol, call)) / (2 * hF),
        gamma=(
            price(F + hF, K, T, r, vol, call)
            - 2 * price(F, K, T, r, vol, call)
            + price(F - hF, K, T, r, vol, call)
        )
        / hF**2,
        vega=(price(F, K, T, r, vol + hv, call) - price(F, K, T, r, vol - hv, call)) / (2 * hv),
        theta=-(price(F, K, T + hT, r, vol, call) - price(F, K, T - hT, r, vol, call)) / (2 * hT),
        rho=(price(F, K, T, r + hr, vol, call) - price(F, K, T, r - hr, vol, call)) / (2 * hr),
    )


@pytest.mark.parametrize("call", [True, False])
@pytest.mark.parametrize("m", [0.5, 0.9, 1.0, 1.1, 2.0])
@pytest.mark.parametrize("T", [0.05, 1.0, 5.0])
def test_black76_greeks_vs_finite_differences(call: bool, m: float, T: float) -> None:
    F, r, sigma = 60.0, 0.04, 0.35
    g = black76_greeks(F, F * m, T, r, sigma, call)
    fd = _fd_greeks(black76, F, F * m, T, r, sigma, call)
    scale = F * math.exp(-r * T)
    for name in ("delta", "vega", "theta", "rho"):
        assert_allclose(getattr(g, name), getattr(fd, name), rtol=RTOL_FD, atol=1e-7 * scale)
    assert_allclose(g.gamma, fd.gamma, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("call", [True, False])
@pytest.mark.parametrize(("F", "K"), [(-37.63, -40.0), (-37.63, 10.0), (0.0, 0.0), (55.0, 50.0)])
@pytest.mark.parametrize("T", [0.05, 1.0])
def test_bachelier_greeks_vs_finite_differences(call: bool, F: float, K: float, T: float) -> None:
    r, sn = 0.02, 30.0
    g = bachelier_greeks(F, K, T, r, sn, call)
    fd = _fd_greeks(bachelier, F, K, T, r, sn, call)
    for name in ("delta", "vega", "theta", "rho"):
        assert_allclose(getattr(g, name), getattr(fd, name), rtol=RTOL_FD, atol=1e-7)
    assert_allclose(g.gamma, fd.gamma, rtol=1e-3, atol=1e-6)


def test_greeks_vectorised_and_frozen() -> None:
    g = black76_greeks(100.0, np.array([90.0, 110.0]), 1.0, 0.0, 0.2, np.array([True, False]))
    assert isinstance(g.delta, np.ndarray) and g.delta.shape == (2,)
    with pytest.raises(AttributeError):
        g.delta = 0.0  # type: ignore[misc]
    gs = bachelier_greeks(1.0, 1.0, 1.0, 0.0, 1.0, True)
    assert all(isinstance(v, float) for v in (gs.delta, gs.gamma, gs.vega, gs.theta, gs.rho))


def test_greeks_zero_vol_limits() -> None:
    g = black76_greeks(100.0, np.array([90.0, 100.0, 110.0]), 1.0, 0.05, 0.0, True)
    df = math.exp(-0.05)
    assert_allclose(g.delta, [df, df / 2, 0.0])
    assert_allclose(g.gamma, [0.0, np.inf, 0.0])
    assert_allclose(g.vega, [0.0, df * 100 / math.sqrt(2 * math.pi), 0.0])
    assert_allclose(g.theta, [0.05 * df * 10, 0.0, 0.0])
    g0 = bachelier_greeks(5.0, np.array([4.0, 5.0]), 0.0, 0.05, 10.0, False)
    assert_allclose(g0.delta, [0.0, -0.5])
    assert_allclose(g0.theta, [0.0, -np.inf])


# ------------------------------------------------------------------ negative prices


def test_bachelier_negative_wti_closed_form() -> None:
    F, K, T, r, sn = -37.63, np.array([-40.0, -37.63, -30.0, 0.0]), 1 / 12, 0.01, 60.0
    s = sn * math.sqrt(T)
    df = math.exp(-r * T)
    d = (F - K) / s
    npdf = np.exp(-0.5 * d * d) / math.sqrt(2 * math.pi)
    from scipy.stats import norm

    call = df * ((F - K) * norm.cdf(d) + s * npdf)
    put = df * ((K - F) * norm.cdf(-d) + s * npdf)
    assert_allclose(bachelier(F, K, T, r, sn, True), call, rtol=1e-14)
    assert_allclose(bachelier(F, K, T, r, sn, False), put, rtol=1e-14)
    # zero-vol and zero-expiry limits: intrinsic of a negative forward
    assert bachelier(F, -40.0, 0.0, r, sn, True) == pytest.approx(2.37, abs=1e-12)
    assert bachelier(F, -40.0, T, r, 0.0, False) == 0.0
    # implied normal vol round trip with a negative forward and strike
    vol, reason = implied_vol_bachelier_detail(call, F, K, T, r, True)
    assert_allclose(vol, sn, rtol=1e-10)
    assert list(reason) == [REASON_OK] * 4


# ------------------------------------------------------------------ implied vol


@pytest.mark.parametrize("call", [True, False])
def test_implied_vol_black76_round_trip(call: bool) -> None:
    F, r = 75.0, 0.03
    m = np.geomspace(0.2, 5.0, 25)
    T = np.array([1 / 365, 7 / 365, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0])[:, None]
    sigma = np.array([0.08, 0.3, 0.9])[:, None, None]
    price = black76(F, F * m, T, r, sigma, call)
    vol, reason = implied_vol_black76_detail(price, F, F * m, T, r, call)
    assert isinstance(reason, np.ndarray)
    ok = reason == REASON_OK
    # every element gets a finite answer except prices that rounded to intrinsic
    assert np.all(ok | (reason == REASON_AT_INTRINSIC))
    # price round trip to ~1e-10 (relative to the forward)
    assert_allclose(black76(F, F * m, T, r, vol, call), price, rtol=1e-10, atol=1e-10 * F)
    # vol itself wherever the price carries information (vega not negligible)
    vega = black76_greeks(F, F * m, T, r, sigma, call).vega
    informative = np.asarray(vega) * 1e-6 > 1e-12 * (np.asarray(price) + 1e-300) + 1e-14
    assert informative.sum() > 0.5 * informative.size
    assert_allclose(
        np.asarray(vol)[informative], np.broadcast_to(sigma, vol.shape)[informative], rtol=1e-6
    )


def test_implied_vol_black76_vs_quantlib() -> None:
    F, T, r = 100.0, 0.75, 0.02
    df = math.exp(-r * T)
    for call in (True, False):
        for k in F * MONEYNESS:
            p = black76(F, k, T, r, 0.4, call)
            want = ql.blackFormulaImpliedStdDev(_ql_type(call), k, F, p, df, 0.0, 0.3, 1e-14, 200)
            want /= math.sqrt(T)
            assert_allclose(implied_vol_black76(p, F, k, T, r, call), want, rtol=1e-8)


@pytest.mark.parametrize("call", [True, False])
def test_implied_vol_bachelier_round_trip_and_quantlib(call: bool) -> None:
    F, r = 40.0, 0.02
    K = F * np.geomspace(0.2, 5.0, 15)
    T = np.array([1 / 365, 0.1, 1.0, 10.0])[:, None]
    sn = 12.0
    price = bachelier(F, K, T, r, sn, call)
    vol, reason = implied_vol_bachelier_detail(price, F, K, T, r, call)
    assert np.all((reason == REASON_OK) | (reason == REASON_AT_INTRINSIC))
    assert_allclose(bachelier(F, K, T, r, vol, call), price, rtol=1e-10, atol=1e-10 * F)
    vega = np.asarray(bachelier_greeks(F, K, T, r, sn, call).vega)
    informative = vega * 1e-6 > 1e-12 * (np.asarray(price) + 1e-300) + 1e-14
    assert_allclose(np.asarray(vol)[informative], sn, rtol=1e-6)
    for k in K[3:12]:
        t = 1.0
        p = bachelier(F, k, t, r, sn, call)
        want = ql.bachelierBlackFormulaImpliedVol(_ql_type(call), k, F, t, p, math.exp(-r * t))
        assert_allclose(implied_vol_bachelier(p, F, k, t, r, call), want, rtol=1e-8)


@settings(max_examples=100, deadline=None)
@given(
    m=st.floats(0.2, 5.0),
    T=st.floats(1 / 365, 10.0),
    sigma=st.floats(0.02, 2.0),
    call=st.booleans(),
)
def test_implied_vol_black76_hypothesis(m: float, T: float, sigma: float, call: bool) -> None:
    F, r = 50.0, 0.01
    p = black76(F, F * m, T, r, sigma, call)
    vol, reason = implied_vol_black76_detail(p, F, F * m, T, r, call)
    if reason == REASON_AT_INTRINSIC:  # price indistinguishable from intrinsic in float64
        return
    assert reason == REASON_OK
    assert_allclose(black76(F, F * m, T, r, vol, call), p, rtol=1e-10, atol=1e-12 * F)


def test_implied_vol_bad_prices_return_nan_with_reason() -> None:
    F, K, T, r = 100.0, 100.0, 1.0, 0.05
    df = math.exp(-r * T)
    prices = np.array([-1.0, 0.0, 5.0, df * F, df * F + 1.0])
    vol, reason = implied_vol_black76_detail(prices, F, K, T, r, True)
    assert list(reason) == [
        REASON_BELOW_INTRINSIC,
        REASON_AT_INTRINSIC,
        REASON_OK,
        REASON_ABOVE_UPPER_BOUND,
        REASON_ABOVE_UPPER_BOUND,
    ]
    assert np.isnan(vol[[0, 3, 4]]).all() and vol[1] == 0.0 and np.isfinite(vol[2])
    # ITM call below intrinsic; put above df*K
    v, why = implied_vol_black76_detail(
        np.array([19.0, 200.0]), 120.0, 100.0, 0.0 + 1.0, 0.0, np.array([True, False])
    )
    assert list(why) == [REASON_BELOW_INTRINSIC, REASON_ABOVE_UPPER_BOUND] and np.isnan(v).all()
    # scalar forms
    assert math.isnan(implied_vol_black76(200.0, F, K, T, r, True))
    assert implied_vol_black76_detail(200.0, F, K, T, r, True)[1] == REASON_ABOVE_UPPER_BOUND
    # zero expiry: undetermined
    assert implied_vol_black76_detail(3.0, F, K, 0.0, r, True)[1] == REASON_ZERO_EXPIRY
    vb, rb = implied_vol_bachelier_detail(np.array([-0.1, 1.0, 1e6]), -5.0, -5.0, 1.0, 0.0, True)
    assert list(rb) == [REASON_BELOW_INTRINSIC, REASON_OK, REASON_OK]
    assert math.isnan(vb[0]) and vb[2] > 1e6
    assert implied_vol_bachelier_detail(1.0, 0.0, 0.0, 0.0, 0.0, False)[1] == REASON_ZERO_EXPIRY


def test_implied_vol_short_expiry_deep_otm() -> None:
    # one-day, 30 % OTM: tiny but representable price
    F, K, T = 100.0, 130.0, 1 / 365
    p = black76(F, K, T, 0.0, 0.8, True)
    assert 0 < p < 1e-9
    assert_allclose(implied_vol_black76(p, F, K, T, 0.0, True), 0.8, rtol=1e-9)
    p = black76(F, 1.0, 1.0, 0.0, 0.2, False)  # ~1e-118 put
    assert 0 < p < 1e-100
    assert_allclose(implied_vol_black76(p, F, 1.0, 1.0, 0.0, False), 0.2, rtol=1e-9)


# ------------------------------------------------------------------ edge cases


def test_edge_cases() -> None:
    # T = 0: intrinsic, r irrelevant since df = exp(-r*0) = 1
    assert black76(110.0, 100.0, 0.0, 0.5, 0.3, True) == 10.0
    assert black76(110.0, 100.0, 0.0, 0.5, 0.3, False) == 0.0
    assert bachelier(-37.63, -40.0, 0.0, 0.5, 30.0, True) == pytest.approx(2.37, abs=1e-12)
    # sigma = 0: discounted intrinsic of the forward
    df = math.exp(-0.05 * 2.0)
    assert_allclose(black76(110.0, 100.0, 2.0, 0.05, 0.0, True), df * 10.0, rtol=1e-15)
    assert_allclose(black76(90.0, 100.0, 2.0, 0.05, 0.0, False), df * 10.0, rtol=1e-15)
    assert black76(100.0, 100.0, 2.0, 0.05, 0.0, True) == 0.0
    assert_allclose(
        black_scholes(100.0, 90.0, 1.0, 0.05, 0.0, 0.0, True),
        100 - 90 * math.exp(-0.05),
        rtol=1e-14,
    )
    # K = 0: call worth df * F, put worthless
    assert_allclose(black76(80.0, 0.0, 1.0, 0.05, 0.3, True), math.exp(-0.05) * 80.0, rtol=1e-15)
    assert black76(80.0, 0.0, 1.0, 0.05, 0.3, False) == 0.0
    assert_allclose(black76(80.0, 0.0, 1.0, 0.05, 0.0, True), math.exp(-0.05) * 80.0, rtol=1e-15)
    # very large vol: call -> df * F, put -> df * K
    assert_allclose(black76(80.0, 100.0, 1.0, 0.05, 1e3, True), math.exp(-0.05) * 80.0, rtol=1e-12)
    assert_allclose(
        black76(80.0, 100.0, 1.0, 0.05, 1e3, False), math.exp(-0.05) * 100.0, rtol=1e-12
    )
    # return types
    assert isinstance(black76(1.0, 1.0, 1.0, 0.0, 0.2, True), float)
    assert isinstance(black76(1.0, 1.0, 1.0, 0.0, 0.2, np.array(True)), float)
    assert isinstance(black76(np.array([1.0]), 1.0, 1.0, 0.0, 0.2, True), np.ndarray)
    assert black76(1.0, 1.0, 1.0, 0.0, 0.2, [True, False]).shape == (2,)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"T": -1.0}, "T"),
        ({"sigma": -0.1}, "sigma"),
        ({"F": 0.0}, "F"),
        ({"F": -1.0}, "F"),
        ({"K": -1.0}, "K"),
        ({"F": np.array([1.0, np.nan])}, "F"),
        ({"K": np.nan}, "K"),
        ({"T": np.nan}, "T"),
        ({"r": np.nan}, "r"),
        ({"sigma": np.inf}, "sigma"),
        ({"call": 1}, "call"),
        ({"call": "yes"}, "call"),
    ],
)
def test_black76_bad_input(kwargs: dict, name: str) -> None:
    args = {"F": 100.0, "K": 100.0, "T": 1.0, "r": 0.0, "sigma": 0.2, "call": True} | kwargs
    with pytest.raises(ValueError, match=name):
        black76(**args)
    with pytest.raises(ValueError, match=name):
        black76_greeks(**args)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"T": -1e-9}, "T"),
        ({"sigma_n": -1.0}, "sigma_n"),
        ({"F": np.nan}, "F"),
        ({"K": [0.0, np.nan]}, "K"),
    ],
)
def test_bachelier_bad_input(kwargs: dict, name: str) -> None:
    args = {"F": -1.0, "K": -2.0, "T": 1.0, "r": 0.0, "sigma_n": 3.0, "call": True} | kwargs
    with pytest.raises(ValueError, match=name):
        bachelier(**args)
    with pytest.raises(ValueError, match=name):
        bachelier_greeks(**args)


def test_other_bad_input() -> None:
    with pytest.raises(ValueError, match="S"):
        black_scholes(0.0, 1.0, 1.0, 0.0, 0.0, 0.2, True)
    with pytest.raises(ValueError, match="q"):
        black_scholes(1.0, 1.0, 1.0, 0.0, np.nan, 0.2, True)
    with pytest.raises(ValueError, match="price"):
        implied_vol_black76(np.nan, 1.0, 1.0, 1.0, 0.0, True)
    with pytest.raises(ValueError, match="F"):
        implied_vol_black76(0.1, -1.0, 1.0, 1.0, 0.0, True)
    with pytest.raises(ValueError, match="T"):
        implied_vol_bachelier(0.1, 1.0, 1.0, -1.0, 0.0, True)
    with pytest.raises(ValueError, match="broadcast"):
        black76(np.ones(2), np.ones(3), 1.0, 0.0, 0.2, True)
