"""Exotic option engines: American/Bermudan on futures, Asian (average price), spreads.

QuantLib is the independent oracle; Monte Carlo checks use small path counts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.engine.american import american_black76, barone_adesi_whaley_black76
from app.engine.asian import asian_geometric, asian_monte_carlo, asian_turnbull_wakeman
from app.engine.options import black76
from app.engine.spread import kirk_spread, margrabe

ql = pytest.importorskip("QuantLib")

TODAY = ql.Date(15, 1, 2025)
DC = ql.Actual365Fixed()


@pytest.fixture(autouse=True)
def _ql_date() -> None:
    ql.Settings.instance().evaluationDate = TODAY


def _yts(r: float) -> ql.YieldTermStructureHandle:
    return ql.YieldTermStructureHandle(ql.FlatForward(TODAY, r, DC))


def _vol(sigma: float) -> ql.BlackVolTermStructureHandle:
    return ql.BlackVolTermStructureHandle(ql.BlackConstantVol(TODAY, ql.NullCalendar(), sigma, DC))


def _black_process(F: float, r: float, sigma: float) -> ql.BlackProcess:
    return ql.BlackProcess(ql.QuoteHandle(ql.SimpleQuote(F)), _yts(r), _vol(sigma))


def _ql_type(call: bool) -> int:
    return ql.Option.Call if call else ql.Option.Put


# --------------------------------------------------------------------------- American


def _ql_american_fd(F: float, K: float, days: int, r: float, sigma: float, call: bool) -> float:
    # Futures = Black-Scholes with dividend yield q = r.
    proc = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(F)), _yts(r), _yts(r), _vol(sigma)
    )
    opt = ql.VanillaOption(
        ql.PlainVanillaPayoff(_ql_type(call), K), ql.AmericanExercise(TODAY, TODAY + days)
    )
    opt.setPricingEngine(ql.FdBlackScholesVanillaEngine(proc, 400, 400))
    return float(opt.NPV())


def _ql_american_lr(
    F: float, K: float, days: int, r: float, sigma: float, call: bool, steps: int
) -> float:
    opt = ql.VanillaOption(
        ql.PlainVanillaPayoff(_ql_type(call), K), ql.AmericanExercise(TODAY, TODAY + days)
    )
    opt.setPricingEngine(ql.BinomialVanillaEngine(_black_process(F, r, sigma), "lr", steps))
    return float(opt.NPV())


AM_CASES = [
    (100.0, 100.0, 365, 0.05, 0.2, True),
    (100.0, 110.0, 365, 0.05, 0.3, False),
    (80.0, 70.0, 182, 0.08, 0.45, True),
    (3.2, 3.5, 730, 0.04, 0.6, False),
]


@pytest.mark.parametrize(("F", "K", "days", "r", "sigma", "call"), AM_CASES)
def test_american_vs_quantlib(
    F: float, K: float, days: int, r: float, sigma: float, call: bool
) -> None:
    T = days / 365.0
    ours = american_black76(F, K, T, r, sigma, call, steps=201)
    # Same Leisen-Reimer tree: agreement to rounding.
    assert ours == pytest.approx(_ql_american_lr(F, K, days, r, sigma, call, 201), rel=1e-9)
    # Independent finite-difference solver.
    assert ours == pytest.approx(_ql_american_fd(F, K, days, r, sigma, call), rel=1e-3)


def test_american_vectorised_matches_scalar() -> None:
    F = np.array([[80.0], [100.0], [120.0]])
    call = np.array([True, False])
    vec = american_black76(F, 100.0, 0.5, 0.05, 0.3, call, steps=51)
    assert isinstance(vec, np.ndarray) and vec.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            one = american_black76(float(F[i, 0]), 100.0, 0.5, 0.05, 0.3, bool(call[j]), steps=51)
            assert isinstance(one, float)
            assert vec[i, j] == pytest.approx(one, rel=1e-13)


def test_american_at_least_european_and_intrinsic() -> None:
    F = np.linspace(50.0, 150.0, 11)[:, None]
    T = np.array([0.1, 1.0, 2.0])
    for call in (True, False):
        am = american_black76(F, 100.0, T, 0.06, 0.35, call, steps=101)
        eu = black76(F, 100.0, T, 0.06, 0.35, call)
        intrinsic = np.maximum((1 if call else -1) * (F - 100.0), 0.0)
        assert np.all(am >= eu - 1e-12)
        assert np.all(am >= intrinsic - 1e-12)


def test_american_call_on_future_has_early_exercise_premium() -> None:
    am = american_black76(150.0, 100.0, 1.0, 0.08, 0.2, True, steps=201)
    eu = black76(150.0, 100.0, 1.0, 0.08, 0.2, True)
    assert am > eu + 0.5  # deep ITM: exercise now (50) beats e^{-rT} * ~50
    assert am == pytest.approx(50.0, abs=1e-12)


def test_american_equals_european_when_rate_non_positive() -> None:
    for r in (0.0, -0.01):
        am = american_black76(100.0, 90.0, 1.0, r, 0.3, False, steps=201)
        eu = black76(100.0, 90.0, 1.0, r, 0.3, False)
        assert am == pytest.approx(eu, rel=2e-4)
        assert barone_adesi_whaley_black76(100.0, 90.0, 1.0, r, 0.3, False) == pytest.approx(
            eu, rel=1e-12
        )


def test_american_degenerate_limits() -> None:
    assert american_black76(120.0, 100.0, 0.0, 0.05, 0.3, True) == 20.0
    assert american_black76(120.0, 100.0, 1.0, 0.05, 0.0, True) == 20.0
    # Bermudan with sigma = 0 and one exercise date at 0.5y: best is e^{-0.05*0.5} * 20.
    berm = american_black76(120.0, 100.0, 1.0, 0.05, 0.0, True, exercise_times=[0.5])
    assert berm == pytest.approx(20.0 * math.exp(-0.025), rel=1e-14)


def test_bermudan_between_european_and_american() -> None:
    args = (100.0, 110.0, 1.0, 0.06, 0.3, False)
    eu = black76(*args)
    am = american_black76(*args, steps=201)
    berm = american_black76(*args, steps=201, exercise_times=[0.25, 0.5, 0.75])
    assert eu < berm < am
    # Bermudan with no intermediate dates is the European option.
    assert american_black76(*args, steps=201, exercise_times=[]) == pytest.approx(eu, rel=1e-3)


@pytest.mark.parametrize(("F", "K", "days", "r", "sigma", "call"), AM_CASES[:3])
def test_baw_close_to_tree_and_quantlib(
    F: float, K: float, days: int, r: float, sigma: float, call: bool
) -> None:
    T = days / 365.0
    baw = barone_adesi_whaley_black76(F, K, T, r, sigma, call)
    assert baw == pytest.approx(american_black76(F, K, T, r, sigma, call, steps=201), rel=0.01)
    opt = ql.VanillaOption(
        ql.PlainVanillaPayoff(_ql_type(call), K), ql.AmericanExercise(TODAY, TODAY + days)
    )
    opt.setPricingEngine(ql.BaroneAdesiWhaleyApproximationEngine(_black_process(F, r, sigma)))
    assert baw == pytest.approx(opt.NPV(), rel=1e-6)


def test_baw_vectorised() -> None:
    F = np.linspace(60.0, 160.0, 6)
    out = barone_adesi_whaley_black76(F, 100.0, 0.75, 0.05, 0.3, F > 100.0)
    assert isinstance(out, np.ndarray) and out.shape == (6,)
    for f, v in zip(F, out, strict=True):
        assert v == pytest.approx(
            barone_adesi_whaley_black76(float(f), 100.0, 0.75, 0.05, 0.3, bool(f > 100.0)),
            rel=1e-13,
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"F": -1.0}, "F"),
        ({"K": 0.0}, "K"),
        ({"T": -0.1}, "T"),
        ({"sigma": -0.2}, "sigma"),
        ({"F": float("nan")}, "F"),
        ({"r": float("nan")}, "r"),
    ],
)
def test_american_bad_input(kwargs: dict[str, float], name: str) -> None:
    base = {"F": 100.0, "K": 100.0, "T": 1.0, "r": 0.05, "sigma": 0.2, "call": True}
    base.update(kwargs)
    for fn in (american_black76, barone_adesi_whaley_black76):
        with pytest.raises(ValueError, match=name):
            fn(**base)  # type: ignore[operator]


# --------------------------------------------------------------------------- Asian


def _ql_asian(
    F: float,
    K: float,
    r: float,
    sigma: float,
    call: bool,
    fixing_days: list[int],
    expiry_days: int,
    engine: str,
    past_sum: float = 0.0,
    past_n: int = 0,
) -> float:
    proc = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(F)), _yts(r), _yts(r), _vol(sigma)
    )
    geo = engine == "geo"
    avg = ql.Average.Geometric if geo else ql.Average.Arithmetic
    acc = 1.0 if geo else past_sum
    opt = ql.DiscreteAveragingAsianOption(
        avg,
        acc,
        past_n,
        [TODAY + d for d in fixing_days],
        ql.PlainVanillaPayoff(_ql_type(call), K),
        ql.EuropeanExercise(TODAY + expiry_days),
    )
    if geo:
        opt.setPricingEngine(ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(proc))
    else:
        opt.setPricingEngine(ql.TurnbullWakemanAsianEngine(proc))
    return float(opt.NPV())


@pytest.mark.parametrize(
    ("F", "K", "sigma", "call", "start", "n"),
    [
        (80.0, 80.0, 0.4, True, 185, 19),
        (80.0, 90.0, 0.3, False, 5, 13),
        (3.0, 2.5, 0.7, True, 335, 31),
    ],
)
def test_geometric_and_tw_vs_quantlib(
    F: float, K: float, sigma: float, call: bool, start: int, n: int
) -> None:
    step = (365 - start) // (n - 1)
    days = [start + i * step for i in range(n)]
    assert days[-1] == 365
    a = start / 365.0
    geo = asian_geometric(F, K, 1.0, 0.03, sigma, call, a, n)
    assert geo == pytest.approx(_ql_asian(F, K, 0.03, sigma, call, days, 365, "geo"), rel=1e-10)
    tw = asian_turnbull_wakeman(F, K, 1.0, 0.03, sigma, call, a, n)
    assert tw == pytest.approx(_ql_asian(F, K, 0.03, sigma, call, days, 365, "tw"), rel=1e-10)


def test_tw_seasoned_vs_quantlib() -> None:
    # 21 daily-ish fixings every 9 days from -90d to +90d; 10 done with average 85.
    days = [-90 + 9 * i for i in range(21)]
    past = days[:10]
    future = days[10:]
    assert past[-1] < 0 <= future[0]
    T = 90 / 365.0
    tw = asian_turnbull_wakeman(
        80.0, 80.0, T, 0.03, 0.4, True, -90 / 365.0, 21, fixed_so_far=85.0, n_fixed=10
    )
    ref = _ql_asian(80.0, 80.0, 0.03, 0.4, True, future, 90, "tw", 850.0, 10)
    assert tw == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize(
    ("F", "K", "sigma", "call", "a", "n", "fixed", "n_fixed"),
    [
        (80.0, 80.0, 0.4, True, 11 / 12, 22, 0.0, 0),
        (80.0, 75.0, 0.35, False, 0.75, 60, 0.0, 0),
        (2.8, 3.0, 0.6, True, 0.5, 26, 0.0, 0),
        (80.0, 80.0, 0.4, True, -0.5, 21, 85.0, 10),
        (80.0, 84.0, 0.3, False, -0.25, 21, 82.0, 5),
    ],
)
def test_tw_vs_monte_carlo(
    F: float, K: float, sigma: float, call: bool, a: float, n: int, fixed: float, n_fixed: int
) -> None:
    T = 1.0 if a > 0 else 0.5
    tw = asian_turnbull_wakeman(F, K, T, 0.03, sigma, call, a, n, fixed, n_fixed)
    mc, se = asian_monte_carlo(
        F,
        K,
        T,
        0.03,
        sigma,
        call,
        a,
        n,
        n_paths=40_000,
        seed=7,
        fixed_so_far=fixed,
        n_fixed=n_fixed,
    )
    assert isinstance(mc, float) and isinstance(se, float)
    assert abs(tw - mc) <= 3.0 * se + 0.01 * tw


def test_mc_control_variate_reduces_error_and_agrees() -> None:
    args = (80.0, 80.0, 1.0, 0.03, 0.4, True, 0.5, 20)
    p_cv, se_cv = asian_monte_carlo(*args, n_paths=20_000, seed=3)
    p_pl, se_pl = asian_monte_carlo(*args, n_paths=20_000, seed=3, control_variate=False)
    assert se_cv < 0.1 * se_pl
    assert abs(p_cv - p_pl) <= 3.0 * math.hypot(se_cv, se_pl)


def test_mc_reproducible_with_seed() -> None:
    args = (80.0, 82.0, 1.0, 0.03, 0.4, False, 0.5, 12)
    assert asian_monte_carlo(*args, n_paths=5_000, seed=11) == asian_monte_carlo(
        *args, n_paths=5_000, seed=11
    )
    assert asian_monte_carlo(*args, n_paths=5_000, seed=11) != asian_monte_carlo(
        *args, n_paths=5_000, seed=12
    )


def test_single_fixing_at_expiry_is_black76() -> None:
    F = np.array([60.0, 80.0, 100.0])
    for call in (True, False):
        tw = asian_turnbull_wakeman(F, 80.0, 0.7, 0.04, 0.35, call, 0.7, 1)
        assert tw == pytest.approx(black76(F, 80.0, 0.7, 0.04, 0.35, call), rel=1e-12)


def test_fully_fixed_is_discounted_intrinsic() -> None:
    df = math.exp(-0.03 * 0.1)
    call = asian_turnbull_wakeman(80.0, 75.0, 0.1, 0.03, 0.4, True, -1.0, 12, 78.0, 12)
    put = asian_turnbull_wakeman(80.0, 75.0, 0.1, 0.03, 0.4, False, -1.0, 12, 78.0, 12)
    assert call == pytest.approx(3.0 * df, rel=1e-14)
    assert put == 0.0
    assert (
        asian_monte_carlo(80.0, 75.0, 0.1, 0.03, 0.4, True, -1.0, 12, 1000, 0, True, 78.0, 12)[1]
        == 0.0
    )


def test_adjusted_strike_non_positive_is_forward_value() -> None:
    # 15 of 20 fixings at 200 already exceed the strike: E[A] = (15*200 + 5*80)/20 = 170.
    df = math.exp(-0.03 * 0.25)
    call = asian_turnbull_wakeman(80.0, 80.0, 0.25, 0.03, 0.4, True, -1.0, 20, 200.0, 15)
    put = asian_turnbull_wakeman(80.0, 80.0, 0.25, 0.03, 0.4, False, -1.0, 20, 200.0, 15)
    assert call == pytest.approx(df * (170.0 - 80.0), rel=1e-14)
    assert put == 0.0


def test_asian_put_call_parity_and_bounds() -> None:
    F = np.linspace(60.0, 100.0, 5)
    c = asian_turnbull_wakeman(F, 80.0, 1.0, 0.03, 0.4, True, 0.5, 20)
    p = asian_turnbull_wakeman(F, 80.0, 1.0, 0.03, 0.4, False, 0.5, 20)
    np.testing.assert_allclose(c - p, math.exp(-0.03) * (F - 80.0), rtol=1e-10, atol=1e-10)
    # Averaging lowers the variance: the Asian is cheaper than the European.
    assert np.all(c <= black76(F, 80.0, 1.0, 0.03, 0.4, True) + 1e-12)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"F": 0.0}, "F"),
        ({"K": -1.0}, "K"),
        ({"T": -1.0}, "T"),
        ({"sigma": -0.1}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"averaging_start": 2.0}, "averaging_start"),
        ({"n_fixings": 0}, "n_fixings"),
        ({"n_fixings": 2.5}, "n_fixings"),
        ({"n_fixed": 30}, "n_fixed"),
    ],
)
def test_asian_bad_input(kwargs: dict[str, float], name: str) -> None:
    base: dict[str, object] = {
        "F": 80.0,
        "K": 80.0,
        "T": 1.0,
        "r": 0.03,
        "sigma": 0.4,
        "call": True,
        "averaging_start": 0.5,
        "n_fixings": 20,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=name):
        asian_turnbull_wakeman(**base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        asian_monte_carlo(**base, n_paths=100)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- spreads


def _ql_kirk(
    F1: float,
    F2: float,
    K: float,
    days: int,
    r: float,
    s1: float,
    s2: float,
    rho: float,
    call: bool,
) -> float:
    opt = ql.BasketOption(
        ql.SpreadBasketPayoff(ql.PlainVanillaPayoff(_ql_type(call), K)),
        ql.EuropeanExercise(TODAY + days),
    )
    opt.setPricingEngine(ql.KirkEngine(_black_process(F1, r, s1), _black_process(F2, r, s2), rho))
    return float(opt.NPV())


SPREAD_CASES = [
    (100.0, 90.0, 5.0, 365, 0.05, 0.3, 0.25, 0.6, True),
    (95.0, 80.0, 12.0, 182, 0.03, 0.35, 0.3, 0.85, False),
    (60.0, 45.0, -5.0, 273, 0.04, 0.5, 0.45, 0.3, True),
    (122.0, 120.0, 3.0, 37, 0.1, 0.2, 0.2, -0.5, True),
]


@pytest.mark.parametrize(("F1", "F2", "K", "days", "r", "s1", "s2", "rho", "call"), SPREAD_CASES)
def test_kirk_vs_quantlib(
    F1: float,
    F2: float,
    K: float,
    days: int,
    r: float,
    s1: float,
    s2: float,
    rho: float,
    call: bool,
) -> None:
    ours = kirk_spread(F1, F2, K, days / 365.0, r, s1, s2, rho, call)
    assert ours == pytest.approx(_ql_kirk(F1, F2, K, days, r, s1, s2, rho, call), rel=1e-10)


def _spread_mc(
    F1: float,
    F2: float,
    K: float,
    T: float,
    r: float,
    s1: float,
    s2: float,
    rho: float,
    call: bool,
    n: int = 200_000,
    seed: int = 1,
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    z1 = rng.standard_normal(n)
    z2 = rho * z1 + math.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
    f1 = F1 * np.exp(s1 * math.sqrt(T) * z1 - 0.5 * s1 * s1 * T)
    f2 = F2 * np.exp(s2 * math.sqrt(T) * z2 - 0.5 * s2 * s2 * T)
    w = 1.0 if call else -1.0
    x = math.exp(-r * T) * np.maximum(w * (f1 - f2 - K), 0.0)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))


@pytest.mark.parametrize(("F1", "F2", "K", "days", "r", "s1", "s2", "rho", "call"), SPREAD_CASES)
def test_kirk_vs_monte_carlo(
    F1: float,
    F2: float,
    K: float,
    days: int,
    r: float,
    s1: float,
    s2: float,
    rho: float,
    call: bool,
) -> None:
    T = days / 365.0
    kirk = kirk_spread(F1, F2, K, T, r, s1, s2, rho, call)
    mc, se = _spread_mc(F1, F2, K, T, r, s1, s2, rho, call)
    assert abs(kirk - mc) <= 3.0 * se + 0.01 * kirk


def test_margrabe_vs_monte_carlo_and_kirk_zero_strike() -> None:
    F1 = np.array([100.0, 90.0, 110.0])
    m = margrabe(F1, 95.0, 0.8, 0.04, 0.35, 0.3, 0.5, True)
    k = kirk_spread(F1, 95.0, 0.0, 0.8, 0.04, 0.35, 0.3, 0.5, True)
    assert np.array_equal(m, k)  # exactly equal, not just close
    for call in (True, False):
        mm = margrabe(100.0, 95.0, 0.8, 0.04, 0.35, 0.3, 0.5, call)
        assert mm == kirk_spread(100.0, 95.0, 0.0, 0.8, 0.04, 0.35, 0.3, 0.5, call)
        mc, se = _spread_mc(100.0, 95.0, 0.0, 0.8, 0.04, 0.35, 0.3, 0.5, call)
        assert abs(mm - mc) <= 3.5 * se


def test_spread_put_call_parity() -> None:
    K = np.array([-5.0, 0.0, 5.0, 20.0])
    c = kirk_spread(100.0, 90.0, K, 1.0, 0.05, 0.3, 0.25, 0.6, True)
    p = kirk_spread(100.0, 90.0, K, 1.0, 0.05, 0.3, 0.25, 0.6, False)
    np.testing.assert_allclose(c - p, math.exp(-0.05) * (100.0 - 90.0 - K), atol=1e-10)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"F1": 0.0}, "F1"),
        ({"F2": -1.0}, "F2"),
        ({"K": -95.0}, "K"),
        ({"T": -1.0}, "T"),
        ({"sigma1": -0.1}, "sigma1"),
        ({"sigma2": float("nan")}, "sigma2"),
        ({"rho": 1.5}, "rho"),
    ],
)
def test_spread_bad_input(kwargs: dict[str, float], name: str) -> None:
    base = {
        "F1": 100.0,
        "F2": 90.0,
        "K": 5.0,
        "T": 1.0,
        "r": 0.05,
        "sigma1": 0.3,
        "sigma2": 0.25,
        "rho": 0.6,
        "call": True,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=name):
        kirk_spread(**base)  # type: ignore[arg-type]
    if name != "K":
        base.pop("K")
        with pytest.raises(ValueError, match=name):
            margrabe(**base)  # type: ignore[arg-type]


def test_options_module_serves_every_pricer_in_a_fresh_interpreter() -> None:
    import subprocess
    import sys

    code = (
        "import app.engine.american, app.engine.spread\n"
        "from app.engine.options import american_black76, asian_turnbull_wakeman, kirk_spread,"
        " margrabe\n"
        "from app.engine import american, asian, spread\n"
        "assert american_black76 is american.american_black76\n"
        "assert asian_turnbull_wakeman is asian.asian_turnbull_wakeman\n"
        "assert kirk_spread is spread.kirk_spread and margrabe is spread.margrabe\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_american_far_from_the_money_at_tiny_vol_is_its_deterministic_limit() -> None:
    import math

    from app.engine.american import american_black76

    # vol * sqrt(T) tiny next to |ln F/K|: the tree probabilities would underflow (NaN before).
    otm = american_black76(74.0, 75.0, 0.25, 0.05, 1e-4, True)
    itm = american_black76(76.0, 75.0, 0.25, 0.05, 1e-4, True)
    itm_neg_rate = american_black76(76.0, 75.0, 0.25, -0.01, 1e-4, True)
    assert otm == 0.0
    assert itm == 1.0  # exercise now: intrinsic beats the discounted intrinsic for r > 0
    assert itm_neg_rate == pytest.approx(math.exp(0.01 * 0.25) * 1.0, rel=1e-12)


def test_american_richardson_is_much_closer_to_quantlib_qdfp() -> None:
    """Richardson-extrapolated tree vs QuantLib's high-precision QdFp American engine (an
    independent method), on a seeded grid of options on futures (q = r process)."""
    rng = np.random.default_rng(5)
    n = 24
    F, K = rng.uniform(50, 150, n), rng.uniform(50, 150, n)
    days = rng.integers(18, 730, n)
    T, vol, r = days / 365.0, rng.uniform(0.1, 0.8, n), rng.uniform(0.0, 0.08, n)
    call = rng.random(n) < 0.5
    today = ql.Date(24, 11, 2026)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    ref = np.empty(n)
    for i in range(n):
        rt = ql.YieldTermStructureHandle(ql.FlatForward(today, float(r[i]), dc))
        vs = ql.BlackVolTermStructureHandle(
            ql.BlackConstantVol(today, ql.NullCalendar(), float(vol[i]), dc)
        )
        proc = ql.BlackScholesMertonProcess(ql.QuoteHandle(ql.SimpleQuote(float(F[i]))), rt, rt, vs)
        kind = ql.Option.Call if call[i] else ql.Option.Put
        opt = ql.VanillaOption(
            ql.PlainVanillaPayoff(kind, float(K[i])),
            ql.AmericanExercise(today, today + int(days[i])),
        )
        opt.setPricingEngine(
            ql.QdFpAmericanEngine(proc, ql.QdFpAmericanEngine.highPrecisionScheme())
        )
        ref[i] = opt.NPV()
    single = np.asarray(american_black76(F, K, T, r, vol, call, steps=803))
    extrap = np.asarray(american_black76(F, K, T, r, vol, call, steps=401, richardson=True))
    err_single, err_extrap = np.abs(single - ref).max(), np.abs(extrap - ref).max()
    assert err_extrap < 3e-4
    assert err_extrap < err_single / 5
    assert np.all(extrap >= np.maximum(np.where(call, F - K, K - F), 0.0))
    # a scalar stays a float; sigma = 0 stays exact
    v = american_black76(100.0, 90.0, 0.5, 0.05, 0.0, True, richardson=True)
    assert isinstance(v, float) and v == pytest.approx(10.0)
