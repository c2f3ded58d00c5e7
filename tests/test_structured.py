"""Tests for app.engine.structured: leg sums, payoffs, parity, bounds, finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from numpy.typing import ArrayLike

from app.engine.options import Greeks, bachelier, black76
from app.engine.structured import (
    Leg,
    StructuredProduct,
    breakevens,
    greeks,
    payoff,
    price,
)

SP = StructuredProduct
F_GRID = np.linspace(20.0, 160.0, 57)
SIGMAS = np.array([0.05, 0.2, 0.45, 0.9])
R = 0.04
T = 0.75
NAMES = ("delta", "gamma", "vega", "theta", "rho")


def _b(F: ArrayLike, K: float, T_: float, sig: ArrayLike, call: bool, r: float = R) -> np.ndarray:
    return np.asarray(black76(F, K, T_, r, sig, call))


# ------------------------------------------------------------------ independent references
# Each entry: product, reference price (black76 of the legs written out by hand), and the
# brute-force expiry payoff with explicit max() formulas.
CASES = {
    "producer collar": (
        SP.collar(70.0, 95.0, 3.0),
        lambda F, T_, s: 3.0 * (_b(F, 70.0, T_, s, False) - _b(F, 95.0, T_, s, True)),
        lambda F: 3.0 * (np.maximum(70.0 - F, 0) - np.maximum(F - 95.0, 0)),
    ),
    "consumer collar": (
        SP.collar(70.0, 95.0, 3.0, producer=False),
        lambda F, T_, s: 3.0 * (_b(F, 95.0, T_, s, True) - _b(F, 70.0, T_, s, False)),
        lambda F: 3.0 * (np.maximum(F - 95.0, 0) - np.maximum(70.0 - F, 0)),
    ),
    "three-way": (
        SP.three_way(55.0, 75.0, 100.0, 2.0),
        lambda F, T_, s: (
            2.0
            * (_b(F, 75.0, T_, s, False) - _b(F, 55.0, T_, s, False) - _b(F, 100.0, T_, s, True))
        ),
        lambda F: (
            2.0 * (np.maximum(75.0 - F, 0) - np.maximum(55.0 - F, 0) - np.maximum(F - 100.0, 0))
        ),
    ),
    "call spread": (
        SP.call_spread(80.0, 110.0, 5.0),
        lambda F, T_, s: 5.0 * (_b(F, 80.0, T_, s, True) - _b(F, 110.0, T_, s, True)),
        lambda F: 5.0 * (np.maximum(F - 80.0, 0) - np.maximum(F - 110.0, 0)),
    ),
    "put spread": (
        SP.put_spread(60.0, 90.0, 4.0),
        lambda F, T_, s: 4.0 * (_b(F, 90.0, T_, s, False) - _b(F, 60.0, T_, s, False)),
        lambda F: 4.0 * (np.maximum(90.0 - F, 0) - np.maximum(60.0 - F, 0)),
    ),
    "participating swap": (
        SP.participating_swap(85.0, 0.4, 7.0),
        lambda F, T_, s: (
            7.0 * math.exp(-R * T_) * (np.asarray(F) - 85.0) + 7.0 * 0.6 * _b(F, 85.0, T_, s, False)
        ),
        lambda F: 7.0 * (F - 85.0) + 7.0 * 0.6 * np.maximum(85.0 - F, 0),
    ),
    "custom strangle + swap": (
        SP.custom(
            "custom",
            [
                Leg("call", 120.0, -1.5),
                Leg("put", 50.0, -1.5),
                Leg("forward", 88.0, 2.0),
            ],
        ),
        lambda F, T_, s: (
            -1.5 * (_b(F, 120.0, T_, s, True) + _b(F, 50.0, T_, s, False))
            + 2.0 * math.exp(-R * T_) * (np.asarray(F) - 88.0)
        ),
        lambda F: -1.5 * (np.maximum(F - 120.0, 0) + np.maximum(50.0 - F, 0)) + 2.0 * (F - 88.0),
    ),
}
IDS = list(CASES)


@pytest.mark.parametrize("case", IDS)
def test_price_equals_sum_of_black76_legs(case: str) -> None:
    product, ref, _ = CASES[case]
    F = F_GRID[:, None]
    s = SIGMAS[None, :]
    got = price(product, F, T, R, s)
    assert isinstance(got, np.ndarray) and got.shape == (F_GRID.size, SIGMAS.size)
    assert_allclose(got, ref(F, T, s), rtol=1e-13, atol=1e-11)
    scalar = price(product, 83.0, T, R, 0.3)
    assert isinstance(scalar, float)
    assert_allclose(scalar, ref(83.0, T, 0.3), rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("case", IDS)
def test_payoff_matches_brute_force(case: str) -> None:
    product, _, brute = CASES[case]
    grid = np.concatenate([F_GRID, np.array(product.strikes)])
    assert_allclose(payoff(product, grid), brute(grid), rtol=0, atol=1e-12)
    assert isinstance(payoff(product, 77.0), float)


@pytest.mark.parametrize("case", IDS)
def test_price_at_zero_expiry_is_payoff(case: str) -> None:
    product, _, brute = CASES[case]
    assert_allclose(price(product, F_GRID, 0.0, R, 0.3), brute(F_GRID), rtol=0, atol=1e-11)


@pytest.mark.parametrize("case", IDS)
def test_linearity_in_quantity(case: str) -> None:
    product, _, _ = CASES[case]
    base = np.asarray(price(product, F_GRID, T, R, 0.35))
    for k in (-1.0, 2.5, 0.1):
        assert_allclose(price(product.scaled(k), F_GRID, T, R, 0.35), k * base, rtol=1e-13)
        assert_allclose(payoff(product.scaled(k), F_GRID), k * np.asarray(payoff(product, F_GRID)))


def test_constructor_qty_is_linear() -> None:
    one = SP.three_way(55.0, 75.0, 100.0, 1.0)
    many = SP.three_way(55.0, 75.0, 100.0, 12.5)
    assert_allclose(
        price(many, F_GRID, T, R, 0.3), 12.5 * np.asarray(price(one, F_GRID, T, R, 0.3))
    )
    g1, g2 = greeks(one, 80.0, T, R, 0.3), greeks(many, 80.0, T, R, 0.3)
    for name in ("delta", "gamma", "vega", "theta", "rho"):
        assert_allclose(getattr(g2, name), 12.5 * getattr(g1, name), rtol=1e-13)


def test_consumer_collar_is_producer_collar_reversed() -> None:
    prod = SP.collar(70.0, 95.0, 3.0)
    cons = SP.collar(70.0, 95.0, 3.0, producer=False)
    assert_allclose(price(cons, F_GRID, T, R, 0.3), -np.asarray(price(prod, F_GRID, T, R, 0.3)))


# ------------------------------------------------------------------ parity and bounds


@settings(max_examples=60, deadline=None)
@given(
    F=st.floats(1.0, 500.0),
    K=st.floats(1.0, 500.0),
    T_=st.floats(0.0, 5.0),
    r=st.floats(-0.05, 0.15),
    sigma=st.floats(0.0, 2.0),
    qty=st.floats(0.1, 1e4),
)
def test_collar_with_equal_strikes_is_short_forward(
    F: float, K: float, T_: float, r: float, sigma: float, qty: float
) -> None:
    """Put-call parity: long put - long call at the same strike = df * (K - F)."""
    product = SP.collar(K, K, qty)
    expected = qty * math.exp(-r * T_) * (K - F)
    scale = qty * (F + K)
    assert abs(float(price(product, F, T_, r, sigma)) - expected) <= 1e-12 * scale
    assert_allclose(payoff(product, F_GRID), qty * (K - F_GRID), rtol=0, atol=1e-9 * qty)
    g = greeks(product, F, T_, r, sigma)
    delta, gamma, vega, theta, rho = (float(x) for x in (g.delta, g.gamma, g.vega, g.theta, g.rho))
    assert abs(delta + qty * math.exp(-r * T_)) <= 1e-12 * qty
    assert abs(vega) <= 1e-12 * scale * (1.0 + math.sqrt(T_))
    assert gamma == 0.0  # offsetting legs cancel exactly, even at the money at expiry
    assert abs(theta - r * expected) <= 1e-12 * scale
    assert abs(rho + T_ * expected) <= 1e-12 * scale * (1.0 + T_)


@settings(max_examples=60, deadline=None)
@given(
    F=st.floats(1.0, 500.0),
    K1=st.floats(1.0, 400.0),
    width=st.floats(0.01, 200.0),
    T_=st.floats(0.0, 5.0),
    r=st.floats(-0.05, 0.15),
    sigma=st.floats(0.0, 2.0),
    qty=st.floats(0.1, 100.0),
)
def test_call_spread_bounded_by_discounted_width(
    F: float, K1: float, width: float, T_: float, r: float, sigma: float, qty: float
) -> None:
    K2 = K1 + width
    v = float(price(SP.call_spread(K1, K2, qty), F, T_, r, sigma))
    bound = qty * math.exp(-r * T_) * (K2 - K1)
    tol = 1e-12 * qty * (F + K2)
    assert -tol <= v <= bound + tol
    pv = float(price(SP.put_spread(K1, K2, qty), F, T_, r, sigma))
    assert -tol <= pv <= bound + tol
    # Call spread + put spread on the same strikes is a riskless bond paying K2 - K1.
    assert abs(v + pv - bound) <= tol


def test_three_way_payoff_profile() -> None:
    product = SP.three_way(55.0, 75.0, 100.0, 1.0)
    # Unhedged below 55 (protection capped at 20), full protection 55..75, flat 75..100.
    grid = [10.0, 55.0, 65.0, 75.0, 90.0, 100.0, 130.0]
    assert_allclose(payoff(product, grid), [20.0, 20.0, 10.0, 0.0, 0.0, 0.0, -30.0])


def test_participating_swap_limits() -> None:
    full = SP.participating_swap(85.0, 1.0, 2.0)
    assert [leg.kind for leg in full.legs] == ["forward"]
    assert_allclose(price(full, F_GRID, T, R, 0.3), 2.0 * math.exp(-R * T) * (F_GRID - 85.0))
    none = SP.participating_swap(85.0, 0.0, 2.0)  # forward + put = call
    call = 2.0 * _b(F_GRID, 85.0, T, 0.3, True)
    assert_allclose(price(none, F_GRID, T, R, 0.3), call, rtol=1e-12, atol=1e-10)


# ------------------------------------------------------------------ models and expiries


def test_bachelier_legs_with_negative_prices() -> None:
    product = SP.collar(-10.0, 15.0, 2.0, model="bachelier")
    F = np.array([-37.63, -5.0, 0.0, 12.0])
    got = price(product, F, 0.1, 0.02, None, sigma_n=30.0)
    ref = 2.0 * (
        np.asarray(bachelier(F, -10.0, 0.1, 0.02, 30.0, False))
        - np.asarray(bachelier(F, 15.0, 0.1, 0.02, 30.0, True))
    )
    assert_allclose(got, ref, rtol=1e-14, atol=1e-12)


def test_mixed_models_price() -> None:
    product = SP("mixed", (Leg("call", 90.0, 1.0), Leg("put", 70.0, -2.0, model="bachelier")))
    got = price(product, F_GRID, T, R, 0.3, sigma_n=25.0)
    ref = _b(F_GRID, 90.0, T, 0.3, True) - 2.0 * np.asarray(
        bachelier(F_GRID, 70.0, T, R, 25.0, False)
    )
    assert_allclose(got, ref, rtol=1e-14)


def test_leg_expiry_override() -> None:
    product = SP("strip", (Leg("call", 90.0, 1.0, expiry=0.25), Leg("call", 90.0, 1.0)))
    got = price(product, F_GRID, 1.0, R, 0.3)
    ref = _b(F_GRID, 90.0, 0.25, 0.3, True) + _b(F_GRID, 90.0, 1.0, 0.3, True)
    assert_allclose(got, ref, rtol=1e-14)
    fwd = SP("fwd", (Leg("forward", 90.0, 1.0, expiry=2.0),))
    assert_allclose(price(fwd, 100.0, 0.5, R, None), math.exp(-2.0 * R) * 10.0, rtol=1e-14)


# ------------------------------------------------------------------ greeks vs finite differences


def _fd_greeks(
    product: StructuredProduct, F: float, T_: float, r: float, vol: float, normal: bool
) -> list[float]:
    def p(F_: float = F, T__: float = T_, r_: float = r, v_: float = vol) -> float:
        if normal:
            return float(price(product, F_, T__, r_, None, sigma_n=v_))
        return float(price(product, F_, T__, r_, v_))

    hF = 1e-3 * max(abs(F), 1.0)
    hv = 1e-4 * vol
    ht, hr = 1e-5, 1e-5
    return [
        (p(F_=F + hF) - p(F_=F - hF)) / (2 * hF),
        (p(F_=F + hF) - 2 * p() + p(F_=F - hF)) / hF**2,
        (p(v_=vol + hv) - p(v_=vol - hv)) / (2 * hv),
        -(p(T__=T_ + ht) - p(T__=T_ - ht)) / (2 * ht),
        (p(r_=r + hr) - p(r_=r - hr)) / (2 * hr),
    ]


@pytest.mark.parametrize("case", IDS)
@pytest.mark.parametrize("F", [45.0, 85.0, 130.0])
def test_greeks_match_finite_differences_black76(case: str, F: float) -> None:
    product = CASES[case][0]
    g = greeks(product, F, T, R, 0.35)
    assert isinstance(g, Greeks)
    fd = _fd_greeks(product, F, T, R, 0.35, normal=False)
    scale = [1.0, 1e-2, 10.0, 10.0, 10.0]  # absolute floors, per greek
    got_all = (g.delta, g.gamma, g.vega, g.theta, g.rho)
    for name, got, ref, sc in zip(NAMES, got_all, fd, scale, strict=True):
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-6 * sc), name


@pytest.mark.parametrize("F", [-20.0, 5.0, 40.0])
def test_greeks_match_finite_differences_bachelier(F: float) -> None:
    product = SP.custom(
        "normal",
        [
            Leg("put", 0.0, 2.0, model="bachelier"),
            Leg("call", 30.0, -1.0, model="bachelier"),
            Leg("forward", 10.0, 1.5, model="bachelier"),
        ],
    )
    g = greeks(product, F, T, R, None, sigma_n=20.0)
    fd = _fd_greeks(product, F, T, R, 20.0, normal=True)
    got_all = (g.delta, g.gamma, g.vega, g.theta, g.rho)
    for name, got, ref in zip(NAMES, got_all, fd, strict=True):
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-6), name


def test_greeks_broadcast_and_forward_leg() -> None:
    fwd = SP("fwd", (Leg("forward", 80.0, -3.0),))
    g = greeks(fwd, F_GRID, T, R, None)
    df = math.exp(-R * T)
    v = -3.0 * df * (F_GRID - 80.0)
    assert_allclose(g.delta, np.full_like(F_GRID, -3.0 * df))
    assert_allclose(g.gamma, 0.0)
    assert_allclose(g.vega, 0.0)
    assert_allclose(g.theta, R * v)
    assert_allclose(g.rho, -T * v)


# ------------------------------------------------------------------ breakevens


def test_breakevens() -> None:
    cs = SP.call_spread(60.0, 80.0, 2.0)
    # premium 10 for 2 units: break-even at K1 + 10/2, found exactly on a coarse grid
    assert_allclose(breakevens(cs, 10.0, [0.0, 200.0]), [65.0], rtol=1e-14)
    assert breakevens(cs, 50.0, np.linspace(0.0, 200.0, 5)).size == 0  # max payoff 40
    straddle = SP("straddle", (Leg("call", 100.0, 1.0), Leg("put", 100.0, 1.0)))
    assert_allclose(breakevens(straddle, 12.0, np.linspace(0.0, 300.0, 7)), [88.0, 112.0])
    fwd = SP("fwd", (Leg("forward", 70.0, 1.0),))
    assert_allclose(breakevens(fwd, -5.0, [0.0, 100.0]), [65.0])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "swaption", "strike": 1.0, "quantity": 1.0}, "kind"),
        ({"kind": "call", "strike": 1.0, "quantity": 1.0, "model": "heston"}, "model"),
        ({"kind": "call", "strike": math.nan, "quantity": 1.0}, "strike"),
        ({"kind": "call", "strike": -1.0, "quantity": 1.0}, "strike"),
        ({"kind": "call", "strike": 1.0, "quantity": math.inf}, "quantity"),
        ({"kind": "call", "strike": 1.0, "quantity": "a lot"}, "quantity"),
        ({"kind": "put", "strike": 1.0, "quantity": 1.0, "expiry": -0.1}, "expiry"),
    ],
)
def test_bad_leg(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Leg(**kwargs)  # type: ignore[arg-type]


def test_negative_strikes_allowed_where_meaningful() -> None:
    Leg("put", -5.0, 1.0, model="bachelier")
    Leg("forward", -5.0, 1.0)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SP.collar(90.0, 80.0, 1.0), "K_put"),
        (lambda: SP.collar(70.0, 80.0, 0.0), "qty"),
        (lambda: SP.collar(70.0, 80.0, -1.0), "qty"),
        (lambda: SP.three_way(60.0, 55.0, 90.0, 1.0), "K_put_low"),
        (lambda: SP.three_way(50.0, 95.0, 90.0, 1.0), "K_put_high"),
        (lambda: SP.call_spread(80.0, 80.0, 1.0), "K1"),
        (lambda: SP.put_spread(90.0, 80.0, 1.0), "K1"),
        (lambda: SP.participating_swap(80.0, 1.5, 1.0), "participation"),
        (lambda: SP.participating_swap(80.0, -0.1, 1.0), "participation"),
        (lambda: SP.participating_swap(math.nan, 0.5, 1.0), "K_swap"),
        (lambda: SP("", (Leg("call", 1.0, 1.0),)), "name"),
        (lambda: SP("x", ()), "legs"),
        (lambda: SP("x", ("call",)), "legs"),  # type: ignore[arg-type]
    ],
)
def test_bad_product(build: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1.0, T, R, 0.3), {}, "F"),
        ((80.0, -0.5, R, 0.3), {}, "T"),
        ((80.0, T, R, -0.3), {}, "sigma"),
        ((80.0, T, math.nan, 0.3), {}, "r"),
        ((80.0, T, R, None), {}, "sigma"),
        ((np.ones(3), T, R, np.ones(4)), {}, "broadcast"),
    ],
)
def test_bad_market_input(args: tuple[object, ...], kwargs: dict[str, object], match: str) -> None:
    product = SP.collar(70.0, 95.0, 1.0)
    with pytest.raises(ValueError, match=match):
        price(product, *args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        greeks(product, *args, **kwargs)  # type: ignore[arg-type]


def test_bad_input_other() -> None:
    normal = SP.collar(-10.0, 10.0, 1.0, model="bachelier")
    with pytest.raises(ValueError, match="sigma_n"):
        price(normal, 0.0, T, R, 0.3)
    with pytest.raises(ValueError, match="sigma_n"):
        price(normal, 0.0, T, R, None, sigma_n=-1.0)
    mixed = SP("mixed", (Leg("call", 90.0, 1.0), Leg("put", 70.0, -1.0, model="bachelier")))
    with pytest.raises(ValueError, match="mixes"):
        greeks(mixed, 80.0, T, R, 0.3, sigma_n=20.0)
    with pytest.raises(ValueError, match="product"):
        price("collar", 80.0, T, R, 0.3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="F_grid"):
        payoff(normal, [1.0, math.inf])
    with pytest.raises(ValueError, match="F_grid"):
        breakevens(normal, 1.0, [5.0])
    with pytest.raises(ValueError, match="premium"):
        breakevens(normal, math.nan, [0.0, 5.0])


def test_products_are_frozen() -> None:
    product = SP.collar(70.0, 95.0, 1.0)
    with pytest.raises(AttributeError):
        product.name = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        product.legs[0].strike = 1.0  # type: ignore[misc]
    assert hash(product) == hash(SP.collar(70.0, 95.0, 1.0))
