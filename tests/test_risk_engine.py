"""Risk engine: every number checked against an independent reference.

References used: brute-force sorting (historical VaR/ES), closed-form normal quantiles,
plain Python loops (EWMA, rolling windows, incremental VaR), numerical integration
(delta-gamma moments), brute-force Monte Carlo (Cornish-Fisher), scipy.stats.binom
log-likelihoods (Kupiec), hand-counted transitions (Christoffersen) and the Basel 1996 table.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from concurrent.futures import CancelledError

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, stats

from app.engine.risk import (
    basel_traffic_light,
    christoffersen_ind,
    component_es,
    component_var_parametric,
    delta_gamma_cornish_fisher_es,
    delta_gamma_cornish_fisher_var,
    delta_gamma_cumulants,
    ewma_cov,
    incremental_var,
    kupiec_pof,
    marginal_var_parametric,
    monte_carlo_var_es,
    parametric_var_es,
    rolling_var_backtest,
    tail_count,
    transition_counts,
    var_es,
)
from tests.conftest import need_shared

FINITE = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
COV3 = np.array([[0.04, 0.006, -0.002], [0.006, 0.09, 0.01], [-0.002, 0.01, 0.0225]])
W3 = np.array([1_000.0, -400.0, 2_500.0])


def brute_var_es(pnl: np.ndarray, permille: int) -> tuple[float, float]:
    """k-th largest loss and mean of the k largest, k = ceil(n (1000 - permille) / 1000)."""
    losses = np.sort(-np.asarray(pnl))[::-1]
    k = -(-losses.size * (1000 - permille) // 1000)  # exact integer ceiling
    return float(losses[k - 1]), float(np.mean(losses[:k]))


# --------------------------------------------------------------------------- historical


@settings(max_examples=150, deadline=None)
@given(
    pnl=arrays(np.float64, st.integers(1, 80), elements=FINITE),
    permille=st.integers(1, 999),
)
def test_var_es_matches_brute_force_sort(pnl: np.ndarray, permille: int) -> None:
    v, e = var_es(pnl, permille / 1000)
    bv, be = brute_var_es(pnl, permille)
    assert v == bv
    assert_allclose(e, be, rtol=1e-12, atol=1e-9)
    assert e >= v - 1e-9 * max(1.0, abs(v))


@settings(max_examples=60, deadline=None)
@given(
    pnl=arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 6)), elements=FINITE),
    permille=st.integers(1, 999),
)
def test_component_es_sums_to_es_and_matches_tail_mean(pnl: np.ndarray, permille: int) -> None:
    alpha = permille / 1000
    _, es = var_es(pnl, alpha)
    comp = component_es(pnl, alpha)
    assert_allclose(comp.sum(), es, rtol=1e-12, atol=1e-12 * np.abs(pnl).sum())
    # 2-D P&L is the sum over positions
    assert var_es(pnl, alpha) == var_es(pnl.sum(axis=1), alpha)
    # brute force: stable sort of losses (ties -> lowest index), tail mean per position
    losses = -pnl.sum(axis=1)
    order = np.argsort(-losses, kind="stable")
    k = -(-pnl.shape[0] * (1000 - permille) // 1000)
    assert_allclose(comp, -pnl[order[:k]].mean(axis=0), rtol=1e-12, atol=1e-9)


def test_tail_count_and_small_example() -> None:
    assert [tail_count(250, 0.99), tail_count(100, 0.99), tail_count(1000, 0.975)] == [3, 1, 25]
    assert tail_count(10, 0.999) == 1
    # losses 5, -1, 3, -2 at 50 %: k = 2 -> VaR 3, ES (5 + 3) / 2
    assert var_es([-5.0, 1.0, -3.0, 2.0], 0.5) == (3.0, 4.0)


def test_component_es_exact_on_large_book() -> None:
    rng = np.random.default_rng(7)
    pnl = rng.standard_normal((1_250, 300)) * rng.uniform(1, 1e4, 300)
    comp = component_es(pnl, 0.975)
    assert_allclose(comp.sum(), var_es(pnl, 0.975)[1], rtol=1e-12)


def test_historical_matches_gaussian_closed_form() -> None:
    """Seeded correlated normal returns through a linear book vs the delta-normal formulas."""
    n, alpha = 400_000, 0.99
    rng = np.random.default_rng(2024)
    returns = rng.multivariate_normal(np.zeros(3), COV3, size=n)
    pnl = returns * W3  # scenarios x positions
    v, e = var_es(pnl, alpha)
    pv, pe = parametric_var_es(W3, COV3, alpha)
    sd = math.sqrt(W3 @ COV3 @ W3)
    z = stats.norm.ppf(alpha)
    assert_allclose([pv, pe], [z * sd, sd * stats.norm.pdf(z) / (1 - alpha)], rtol=1e-14)
    # standard error of the sample quantile: sqrt(a (1 - a) / n) / f(q); 4 standard errors
    se_var = math.sqrt(alpha * (1 - alpha) / n) / (stats.norm.pdf(z) / sd)
    assert abs(v - pv) < 4 * se_var
    # ES: the tail mean of k = n (1 - a) draws; its sd is about sd_tail / sqrt(k) plus the
    # quantile error; 4 * (2 se_var) is a generous bound (about 1 % here)
    assert abs(e - pe) < 8 * se_var
    # component ES of a normal book tends to the Euler ES contributions w_i (S w)_i / sd * ...
    comp = component_es(pnl, alpha)
    expected = W3 * (COV3 @ W3) / sd * stats.norm.pdf(z) / (1 - alpha)
    assert_allclose(comp, expected, rtol=0.05, atol=0.02 * pe)


# --------------------------------------------------------------------------- parametric


def test_parametric_horizon_and_euler() -> None:
    v1, e1 = parametric_var_es(W3, COV3, 0.99)
    v10, e10 = parametric_var_es(W3, COV3, 0.99, horizon_days=10)
    assert_allclose([v10, e10], [v1 * math.sqrt(10), e1 * math.sqrt(10)], rtol=1e-14)
    comp = component_var_parametric(W3, COV3, 0.99, horizon_days=10)
    assert_allclose(comp.sum(), v10, rtol=1e-13)
    # marginal VaR vs central finite differences of the full VaR
    mvar = marginal_var_parametric(W3, COV3, 0.99)
    h = 1e-3
    fd = [
        (parametric_var_es(W3 + h * np.eye(3)[i], COV3, 0.99)[0]
         - parametric_var_es(W3 - h * np.eye(3)[i], COV3, 0.99)[0]) / (2 * h)
        for i in range(3)
    ]  # fmt: skip
    assert_allclose(mvar, fd, rtol=1e-7)
    assert_allclose(W3 @ mvar, v1, rtol=1e-13)


def test_incremental_var_is_full_recomputation() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 300)) / 30
    cov = a @ a.T / 300 + np.diag(rng.uniform(1e-4, 4e-4, 300))
    w = rng.normal(0, 1e4, 300)
    full = parametric_var_es(w, cov, 0.975, 5)[0]
    ivar = incremental_var(w, cov, 0.975, horizon_days=5)
    for i in (0, 17, 255, 256, 299):  # across the 256-row block boundary
        without = w.copy()
        without[i] = 0.0
        assert_allclose(ivar[i], full - parametric_var_es(without, cov, 0.975, 5)[0], rtol=1e-9)
    assert_allclose(incremental_var(w, cov, 0.975, positions=[256, 3], horizon_days=5),
                    ivar[[256, 3]], rtol=1e-12)  # fmt: skip
    # a flat book: zero contributions, NaN marginals
    assert_array_equal(component_var_parametric(np.zeros(3), COV3, 0.99), 0.0)
    assert np.isnan(marginal_var_parametric(np.zeros(3), COV3, 0.99)).all()


# --------------------------------------------------------------------------- EWMA


def test_ewma_matches_python_loop() -> None:
    rng = np.random.default_rng(11)
    r = rng.standard_normal((300, 4)) * [0.01, 0.02, 0.015, 0.03]
    for lam in (0.94, 0.97, 0.5):
        s = [[0.0] * 4 for _ in range(4)]
        for t in range(r.shape[0]):  # RiskMetrics recursion from S_0 = 0 ...
            for i in range(4):
                for j in range(4):
                    s[i][j] = lam * s[i][j] + (1 - lam) * r[t, i] * r[t, j]
        norm = 1 - lam ** r.shape[0]  # ... normalised so the weights sum to 1
        expected = np.array(s) / norm
        assert_allclose(ewma_cov(r, lam), expected, rtol=1e-12)
        assert_allclose(ewma_cov(r[:, 1], lam), expected[1, 1], rtol=1e-12)
    # no demeaning: a constant series has EWMA variance c^2, not 0
    assert_allclose(ewma_cov(np.full(50, 0.02)), 0.0004, rtol=1e-12)


# --------------------------------------------------------------------------- delta-gamma


def test_delta_gamma_moments_by_numerical_integration() -> None:
    """One factor: dP = d x + g x^2 / 2, x ~ N(0, s^2); gamma = 0 gives the delta-normal VaR."""
    d, g, s = 3.0, -2.5, 0.4
    pdf = stats.norm(0, s).pdf

    def moment(f: Callable[[float], float]) -> float:
        def integrand(x: float) -> float:
            return f(d * x + 0.5 * g * x * x) * float(pdf(x))

        return float(integrate.quad(integrand, -12 * s, 12 * s, epsabs=1e-13)[0])

    mean = moment(lambda q: q)
    k2 = moment(lambda q: (q - mean) ** 2)
    k3 = moment(lambda q: (q - mean) ** 3)
    k4 = moment(lambda q: (q - mean) ** 4) - 3 * k2**2
    # closed forms used by the implementation (1x1 case)
    assert_allclose(mean, 0.5 * g * s**2, rtol=1e-10)
    assert_allclose(k2, d**2 * s**2 + 0.5 * (g * s**2) ** 2, rtol=1e-10)
    assert_allclose(k3, 3 * d**2 * g * s**4 + (g * s**2) ** 3, rtol=1e-9)
    assert_allclose(k4, 12 * d**2 * g**2 * s**6 + 3 * (g * s**2) ** 4, rtol=1e-8)
    # Cornish-Fisher assembled by hand from the integrated cumulants
    z = stats.norm.ppf(0.01)
    sk, ek = k3 / k2**1.5, k4 / k2**2
    wq = z + (z**2 - 1) * sk / 6 + (z**3 - 3 * z) * ek / 24 - (2 * z**3 - 5 * z) * sk**2 / 36
    assert_allclose(delta_gamma_cornish_fisher_var(d, g, s**2, 0.99), -(mean + math.sqrt(k2) * wq),
                    rtol=1e-8)  # fmt: skip
    assert_allclose(delta_gamma_cornish_fisher_var(W3, np.zeros((3, 3)), COV3, 0.99),
                    parametric_var_es(W3, COV3, 0.99)[0], rtol=1e-14)  # fmt: skip


def test_cornish_fisher_vs_brute_force_monte_carlo() -> None:
    """Three factors, mixed gammas; CF within 2 % of a 10^6-path full-revaluation quantile.

    The P&L has skewness about -0.10 and excess kurtosis about 0.68; the observed CF error is
    -1.3 % at 95 % and +1.0 % at 99 % (the MC quantile's own standard error is ~0.2 %), the
    truncation error of the expansion.  The multi-factor cumulants themselves are checked
    against the sample k-statistics of the same paths (about 5 standard errors allowed).
    """
    delta = np.array([1_000.0, -600.0, 800.0])
    gamma = np.array([[-3_000.0, 500.0, 0.0], [500.0, 2_000.0, -400.0], [0.0, -400.0, -1_500.0]])
    cov = COV3 * 0.25
    x = np.random.default_rng(99).multivariate_normal(np.zeros(3), cov, size=1_000_000)
    pnl = x @ delta + 0.5 * np.einsum("ij,jk,ik->i", x, gamma, x)
    k1, k2, k3, k4 = delta_gamma_cumulants(delta, gamma, cov)
    n = pnl.size
    assert abs(k1 - pnl.mean()) < 5 * math.sqrt(k2 / n)
    # normal-theory standard errors of the k-statistics k2, k3, k4
    se = [math.sqrt(2 / n) * k2, math.sqrt(6 * k2**3 / n), math.sqrt(24 / n) * k2**2]
    for j, (k, e) in enumerate(zip([k2, k3, k4], se, strict=True), start=2):
        assert abs(k - stats.kstat(pnl, j)) < 5 * e
    assert_allclose(k3 / k2**1.5, -0.104, atol=0.01)
    for alpha in (0.95, 0.99):
        mc = -np.quantile(pnl, 1 - alpha)
        cf = delta_gamma_cornish_fisher_var(delta, gamma, cov, alpha)
        assert_allclose(cf, mc, rtol=0.02)


def test_cornish_fisher_es_closed_form_brute_force_and_rearranged() -> None:
    """ES: delta-normal closed form for G = 0; 10^6-path tail mean for the mixed-gamma case
    (within 4 %); never below VaR even where the expansion bends back."""
    var0, es0 = delta_gamma_cornish_fisher_es(W3, np.zeros((3, 3)), COV3, 0.975)
    sd = math.sqrt(W3 @ COV3 @ W3)
    z = stats.norm.ppf(0.975)
    assert_allclose(var0, z * sd, rtol=1e-12)
    assert_allclose(es0, sd * stats.norm.pdf(z) / 0.025, rtol=1e-10)
    delta = np.array([1_000.0, -600.0, 800.0])
    gamma = np.array([[-3_000.0, 500.0, 0.0], [500.0, 2_000.0, -400.0], [0.0, -400.0, -1_500.0]])
    cov = COV3 * 0.25
    x = np.random.default_rng(99).multivariate_normal(np.zeros(3), cov, size=1_000_000)
    pnl = x @ delta + 0.5 * np.einsum("ij,jk,ik->i", x, gamma, x)
    var, es = delta_gamma_cornish_fisher_es(delta, gamma, cov, 0.99)
    assert var == delta_gamma_cornish_fisher_var(delta, gamma, cov, 0.99)
    assert_allclose(es, brute_var_es(pnl, 990)[1], rtol=0.04)  # observed +3.3 %: truncation
    # Long gamma only (strong positive skew): the CF "quantile" falls back beyond alpha.
    var_s, es_s = delta_gamma_cornish_fisher_es([1.0], [[40.0]], [[1.0]], 0.99)
    assert es_s >= var_s


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_linear_equals_closed_form_and_is_chunk_invariant() -> None:
    def revalue(shocks: np.ndarray) -> np.ndarray:
        return (shocks * W3).sum(axis=1)  # row-wise, so bitwise independent of the chunk

    calls: list[float] = []
    res = monte_carlo_var_es(revalue, COV3, 0.99, 200_000, seed=42, chunk=50_000,
                             progress=calls.append)  # fmt: skip
    pv, pe = parametric_var_es(W3, COV3, 0.99)
    lo, hi = res.var_ci
    assert lo <= res.var <= hi
    assert lo <= pv <= hi
    assert_allclose(res.es, pe, rtol=0.02)
    assert calls[-1] == 1.0 and calls == sorted(calls) and len(calls) == 4
    for chunk in (1, 777, 200_000):
        other = monte_carlo_var_es(revalue, COV3, 0.99, 200_000, seed=42, chunk=chunk)
        assert (other.var, other.es, other.var_ci) == (res.var, res.es, res.var_ci)
        assert_array_equal(other.pnl, res.pnl)
    assert monte_carlo_var_es(revalue, COV3, 0.99, 200_000, seed=43).var != res.var


def test_monte_carlo_ci_ranks_have_binomial_coverage() -> None:
    """The CI ranks (r, s) satisfy P(r <= B < s) >= 95 % for B ~ Bin(n, alpha)."""
    n, alpha = 2_000, 0.99

    def revalue(shocks: np.ndarray) -> np.ndarray:
        return shocks[:, 0]

    res = monte_carlo_var_es(revalue, 1.0, alpha, n, seed=5)
    losses = np.sort(-res.pnl)
    r = int(np.searchsorted(losses, res.var_ci[0])) + 1
    s = int(np.searchsorted(losses, res.var_ci[1])) + 1
    b = stats.binom(n, alpha)
    assert b.cdf(s - 1) - b.cdf(r - 1) >= 0.95
    # and neither end can move inwards while keeping 95 %
    assert b.cdf(s - 2) - b.cdf(r - 1) < 0.95 or b.cdf(s - 1) - b.cdf(r) < 0.95


def test_monte_carlo_errors_and_cancel() -> None:
    def revalue(shocks: np.ndarray) -> np.ndarray:
        return shocks.sum(axis=1)

    with pytest.raises(ValueError, match="cov must be positive definite"):
        monte_carlo_var_es(revalue, [[1.0, 1.0], [1.0, 1.0]], 0.99, 100, seed=1)
    with pytest.raises(ValueError, match="revalue must return"):
        monte_carlo_var_es(lambda s: s, COV3, 0.99, 100, seed=1)
    with pytest.raises(ValueError, match="n_scenarios"):
        monte_carlo_var_es(revalue, COV3, 0.99, 0, seed=1)
    polls: list[int] = []

    def cancelled() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(CancelledError):
        monte_carlo_var_es(revalue, COV3, 0.99, 10_000, seed=1, chunk=256, cancelled=cancelled)
    assert len(polls) == 3


# --------------------------------------------------------------------------- backtests


def test_kupiec_against_binomial_likelihoods() -> None:
    # LR = -2 ln [ Bin(x; n, p) / Bin(x; n, x/n) ]: the binomial coefficients cancel, so this
    # is the Kupiec statistic computed by an independent path (scipy.stats.binom.logpmf).
    for n, x in [(250, 8), (250, 4), (500, 1), (1_000, 25), (250, 250)]:
        lr, pv = kupiec_pof(n, x, 0.99)
        ref = -2 * (stats.binom.logpmf(x, n, 0.01) - stats.binom.logpmf(x, n, x / n))
        assert_allclose(lr, ref, rtol=1e-10)
        assert_allclose(pv, stats.chi2.sf(ref, 1), rtol=1e-9)
    # by hand: 250 days, 8 exceptions at 99 % -> LR = 7.7336 (p = 0.0054), not 5.33
    lr, pv = kupiec_pof(250, 8, 0.99)
    assert round(lr, 4) == 7.7336 and round(pv, 4) == 0.0054
    # zero exceptions: 0 log 0 = 0, LR = -2 * 250 ln 0.99
    assert_allclose(kupiec_pof(250, 0, 0.99)[0], -500 * math.log(0.99), rtol=1e-14)


def test_christoffersen_hand_counted() -> None:
    seq = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0]
    # pairs: 00 01 11 10 00 00 01 10 00 -> n00 = 4, n01 = 2, n10 = 2, n11 = 1
    assert transition_counts(seq) == (4, 2, 2, 1)
    pi0, pi1, pi = 2 / 6, 1 / 3, 3 / 9
    ll_ind = 6 * math.log(1 - pi) + 3 * math.log(pi)
    ll_markov = (4 * math.log(1 - pi0) + 2 * math.log(pi0)
                 + 2 * math.log(1 - pi1) + 1 * math.log(pi1))  # fmt: skip
    lr, pv = christoffersen_ind(seq)
    assert_allclose(lr, -2 * (ll_ind - ll_markov), atol=1e-12)  # pi0 == pi1 -> LR = 0
    seq2 = [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1]  # clustered
    n00, n01, n10, n11 = transition_counts(seq2)
    assert (n00, n01, n10, n11) == (5, 2, 1, 3)
    pi0, pi1, pi = 2 / 7, 3 / 4, 5 / 11
    ref = -2 * (6 * math.log(1 - pi) + 5 * math.log(pi)
                - (5 * math.log(1 - pi0) + 2 * math.log(pi0)
                   + 1 * math.log(1 - pi1) + 3 * math.log(pi1)))  # fmt: skip
    lr, pv = christoffersen_ind(np.array(seq2, dtype=bool))
    assert_allclose(lr, ref, rtol=1e-13)
    assert_allclose(pv, stats.chi2.sf(ref, 1), rtol=1e-12)


def test_christoffersen_degenerate_counts() -> None:
    assert christoffersen_ind(np.zeros(250, bool)) == (0.0, 1.0)  # n01 = n10 = n11 = 0
    assert christoffersen_ind(np.ones(10, bool)) == (0.0, 1.0)  # n00 = n01 = n10 = 0
    last = np.zeros(20, bool)
    last[-1] = True  # n10 + n11 = 0: pi1 undefined, contributes 0
    assert transition_counts(last) == (18, 1, 0, 0)
    assert christoffersen_ind(last)[0] == pytest.approx(0.0, abs=1e-12)
    alt = np.tile([True, False], 10)  # n00 = n11 = 0: pi0 = 1, pi1 = 0, ll1 = 0
    assert transition_counts(alt) == (0, 9, 10, 0)
    assert_allclose(christoffersen_ind(alt)[0],
                    -2 * (10 * math.log(10 / 19) + 9 * math.log(9 / 19)), rtol=1e-13)  # fmt: skip


def test_basel_traffic_light_table() -> None:
    # Basel Committee (1996), table 2: cumulative probability (%) for 0..10 exceptions
    table = [8.11, 28.58, 54.32, 75.81, 89.22, 95.88, 98.63, 99.60, 99.89, 99.97, 99.99]
    assert_allclose(stats.binom.cdf(np.arange(11), 250, 0.01) * 100, table, atol=0.005)
    zones = [basel_traffic_light(x) for x in range(15)]
    assert zones == ["green"] * 5 + ["yellow"] * 5 + ["red"] * 5
    # generalised: 500 days at 99 % (expected 5); 250 days at 97.5 %
    assert basel_traffic_light(8, 500) == "green" and basel_traffic_light(9, 500) == "yellow"
    assert basel_traffic_light(10, 250, 0.975) == "green"
    assert basel_traffic_light(11, 250, 0.975) == "yellow"


@pytest.mark.parametrize("method", ["hist", "normal", "ewma"])
def test_rolling_backtest_matches_loop(method: str) -> None:
    rng = np.random.default_rng(8)
    pnl = rng.standard_t(4, 700) * 1_000
    res = rolling_var_backtest(pnl, 250, 0.99, method=method)  # type: ignore[arg-type]
    z = stats.norm.ppf(0.99)
    expected = []
    for t in range(250, 700):
        win = pnl[t - 250 : t]
        if method == "hist":
            expected.append(var_es(win, 0.99)[0])
        elif method == "normal":
            expected.append(z * math.sqrt(np.mean(win**2)))
        else:
            expected.append(z * math.sqrt(ewma_cov(win, 0.94)))  # type: ignore[arg-type]
    assert_allclose(res.var, expected, rtol=1e-12)
    exc = -pnl[250:] > np.array(expected)
    assert_array_equal(res.exceptions, exc)
    assert res.n_obs == 450 and res.n_exceptions == exc.sum()
    assert res.kupiec == kupiec_pof(450, int(exc.sum()), 0.99)
    assert res.christoffersen == christoffersen_ind(exc)
    assert_allclose(res.conditional_coverage[0], res.kupiec[0] + res.christoffersen[0])
    assert res.traffic_light == basel_traffic_light(int(exc.sum()), 450)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.5, 1.5, float("nan")])
def test_bad_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        var_es([1.0, 2.0], alpha)
    with pytest.raises(ValueError, match="alpha"):
        parametric_var_es([1.0], [[1.0]], alpha)
    with pytest.raises(ValueError, match="alpha"):
        kupiec_pof(250, 3, alpha)


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="pnl contains NaN"):
        var_es([1.0, float("nan")], 0.99)
    with pytest.raises(ValueError, match="pnl must be finite"):
        var_es(np.array([[1.0, np.inf]]), 0.99)
    with pytest.raises(ValueError, match="pnl must be 1-D"):
        var_es(np.zeros((2, 2, 2)), 0.99)
    with pytest.raises(ValueError, match="pnl must be non-empty"):
        var_es([], 0.99)
    with pytest.raises(ValueError, match="pnl_matrix must be 2-D"):
        component_es([1.0, 2.0], 0.99)
    with pytest.raises(ValueError, match="cov must be of shape"):
        parametric_var_es([1.0, 2.0], COV3, 0.99)
    with pytest.raises(ValueError, match="cov must be symmetric"):
        parametric_var_es([1.0, 2.0], [[1.0, 0.5], [0.0, 1.0]], 0.99)
    with pytest.raises(ValueError, match="cov must be positive semi-definite"):
        parametric_var_es([1.0, -1.0], [[1.0, 2.0], [2.0, 1.0]], 0.99)  # w'Sw = -2
    with pytest.raises(ValueError, match="cov must be positive semi-definite"):
        parametric_var_es([1.0, 0.0], [[-1.0, 0.0], [0.0, 1.0]], 0.99)
    with pytest.raises(ValueError, match="horizon_days"):
        parametric_var_es(W3, COV3, 0.99, horizon_days=0)
    with pytest.raises(ValueError, match="delta contains NaN"):
        delta_gamma_cornish_fisher_var([np.nan], [[1.0]], [[1.0]], 0.99)
    with pytest.raises(ValueError, match="gamma must be symmetric"):
        delta_gamma_cornish_fisher_var([1.0, 1.0], [[1.0, 2.0], [0.0, 1.0]], np.eye(2), 0.99)
    with pytest.raises(ValueError, match="gamma must be of shape"):
        delta_gamma_cornish_fisher_var(W3, np.eye(2), COV3, 0.99)
    with pytest.raises(ValueError, match="returns contains NaN"):
        ewma_cov([0.01, float("nan")])
    with pytest.raises(ValueError, match="lam"):
        ewma_cov([0.01, 0.02], lam=1.0)
    with pytest.raises(ValueError, match="positions"):
        incremental_var(W3, COV3, 0.99, positions=[3])
    with pytest.raises(ValueError, match="n_exceptions must be <= n_obs"):
        kupiec_pof(10, 11, 0.99)
    with pytest.raises(ValueError, match="exceptions must be boolean"):
        christoffersen_ind([0, 2, 1])
    with pytest.raises(ValueError, match="pnl_series must be longer than window"):
        rolling_var_backtest(np.zeros(10), 10, 0.99)
    with pytest.raises(ValueError, match="method"):
        rolling_var_backtest(np.zeros(20), 10, 0.99, method="garch")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- real data


@pytest.mark.shared
def test_wti_long_1000_bbl_historical_backtest_2019_2021() -> None:
    """EIA WTI spot: 1-day 99 % historical VaR of a long 1,000 bbl position, 250-day window.

    P&L is 1,000 x the daily price *difference* (USD), so the -36.98 USD/bbl print of
    2020-04-20 is an ordinary (large) loss; log returns would be undefined there.
    """
    path = need_shared("data/market/eia-oil-prices/wti-daily.csv")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    dates = np.array([r["Date"] for r in rows], dtype="datetime64[D]")
    price = np.array([float(r["Price"]) for r in rows])
    pnl, pnl_dates = 1_000.0 * np.diff(price), dates[1:]
    first = int(np.searchsorted(pnl_dates, np.datetime64("2019-01-01")))
    end = int(np.searchsorted(pnl_dates, np.datetime64("2022-01-01")))
    res = rolling_var_backtest(pnl[first - 250 : end], 250, 0.99)
    days = pnl_dates[first:end]
    assert res.n_obs == days.size == 753
    crash = int(np.flatnonzero(days == np.datetime64("2020-04-20"))[0])
    assert res.exceptions[crash] and -pnl[first + crash] == pytest.approx(55_290.0)
    per_year = {
        y: int(res.exceptions[(days >= np.datetime64(f"{y}-01-01"))
                              & (days < np.datetime64(f"{y + 1}-01-01"))].sum())
        for y in (2019, 2020, 2021)
    }  # fmt: skip
    print(
        f"\nWTI 1,000 bbl, 99 % 1-day hist VaR, 250-day window: {res.n_exceptions} exceptions in "
        f"{res.n_obs} days {per_year}; Kupiec LR {res.kupiec[0]:.3f} (p {res.kupiec[1]:.3f}), "
        f"Christoffersen LR {res.christoffersen[0]:.3f} (p {res.christoffersen[1]:.3f}); "
        f"traffic light {res.traffic_light}"
    )
    assert res.n_exceptions == 11 and per_year == {2019: 3, 2020: 5, 2021: 3}
    assert res.traffic_light == "green"  # 11 in 753 days (7.5 expected): F = 0.920 < 0.95
    assert basel_traffic_light(per_year[2020], 252) == "yellow"  # the 2020 year alone
