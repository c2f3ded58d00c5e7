"""The numba kernel path of the option engine agrees with the numpy path.

The kernels (``app.engine._kernels``) take over above a size threshold; here the threshold is
forced down (monkeypatch) so small, hand-made inputs go through them, and every result is
compared with the numpy path on the same input: prices, greeks, implied vols and reasons,
American/Bermudan trees, scalar/array return types, shapes, and the exact ``ValueError``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from app.engine import american as am
from app.engine import options as opt

pytest.importorskip("numba")

EPS = np.finfo(float).eps
GREEKS = ("delta", "gamma", "vega", "theta", "rho")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Send every call (even a scalar one) through the kernels."""
    monkeypatch.setattr(opt, "_KERNEL_MIN_SIZE", 1)
    monkeypatch.setattr(am, "_KERNEL_MIN_NODES", 1)
    yield


def _both(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``fn`` on the kernel path and on the numpy path (thresholds patched in turn)."""
    saved = opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES
    try:
        opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES = 1, 1
        fast = fn(*args, **kwargs)
        opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES = 10**18, 10**18
        slow = fn(*args, **kwargs)
    finally:
        opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES = saved
    return fast, slow


def _grid(n: int, seed: int = 1) -> dict[str, Any]:
    """Random Black-76 grid with deep ITM/OTM, short expiries and exact edge cases mixed in."""
    rng = np.random.default_rng(seed)
    F = rng.uniform(5.0, 200.0, n)
    K = F * np.exp(rng.uniform(-2.5, 2.5, n))
    T = np.exp(rng.uniform(np.log(1 / 365), np.log(10.0), n))
    r = rng.uniform(-0.02, 0.08, n)
    sigma = rng.uniform(0.01, 2.0, n)
    call = rng.random(n) < 0.5
    edge = rng.choice(n, n // 10, replace=False)
    q = len(edge) // 5
    T[edge[:q]] = 0.0
    sigma[edge[q : 2 * q]] = 0.0
    K[edge[2 * q : 3 * q]] = 0.0
    K[edge[3 * q : 4 * q]] = F[edge[3 * q : 4 * q]]  # exactly at the money
    sigma[edge[4 * q :]] = 0.0
    K[edge[4 * q :]] = F[edge[4 * q :]]  # at the money and no vol
    return {"F": F, "K": K, "T": T, "r": r, "sigma": sigma, "call": call}


# --------------------------------------------------------------------------- import hygiene


def test_importing_the_engine_does_not_import_numba() -> None:
    code = (
        "import sys, app.engine.options, app.engine.american\n"
        "assert 'numba' not in sys.modules, 'numba imported eagerly'\n"
        "assert 'app.engine._kernels' not in sys.modules\n"
        "app.engine.options.black76([100.0] * 10, 100.0, 1.0, 0.0, 0.2, True)\n"
        "app.engine.american.american_black76(100.0, 100.0, 1.0, 0.05, 0.2, True)\n"
        "assert 'numba' not in sys.modules, 'small call imported numba'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_numba_cache_dir_defaults_to_user_cache(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import os, app.engine._kernels\nprint(os.environ['NUMBA_CACHE_DIR'])"
    res = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(res.stdout.strip()) == tmp_path / "QuantaEnergi" / "numba"
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    res = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(res.stdout.strip()) == tmp_path / "mine"


# --------------------------------------------------------------------------- prices, greeks


def test_black76_kernel_matches_numpy_on_grid() -> None:
    g = _grid(50_000)
    fast, slow = _both(opt.black76, **g)
    scale = np.maximum(g["F"], g["K"])
    # Relative agreement except for far out-of-the-money prices that are rounding noise of
    # F N(d1) - K N(d2) (below ~eps * max(F, K)) in both paths.
    assert_allclose(fast, slow, rtol=1e-12, atol=4 * EPS * scale.max())
    assert np.max(np.abs(fast - slow) / scale) <= 4 * EPS
    assert not np.signbit(fast).any()
    edge = (g["T"] == 0) | (g["sigma"] == 0) | (g["K"] == 0)
    assert np.array_equal(fast[edge], slow[edge])


def test_black76_greeks_kernel_matches_numpy_on_grid() -> None:
    g = _grid(50_000, seed=2)
    fast, slow = _both(opt.black76_greeks, **g)
    for name in GREEKS:
        a, b = np.asarray(getattr(fast, name)), np.asarray(getattr(slow, name))
        assert a.shape == b.shape == (50_000,)
        assert np.array_equal(np.isinf(a), np.isinf(b)), name
        fin = np.isfinite(b)
        assert not np.isnan(a).any(), name
        assert_allclose(
            a[fin], b[fin], rtol=1e-12, atol=1e-13 * np.max(np.abs(b[fin])), err_msg=name
        )


def test_greeks_zero_vol_limits_on_kernel_path(kernel: None) -> None:
    g = opt.black76_greeks(
        np.array([100.0, 100.0, 120.0]), 100.0, np.array([1.0, 0.0, 1.0]), 0.05, 0.0, True
    )
    d0 = float(np.exp(-0.05))
    assert_allclose(np.asarray(g.delta), [0.5 * d0, 0.5, d0])
    assert np.asarray(g.gamma)[0] == np.inf and np.asarray(g.gamma)[2] == 0.0


def test_scalar_and_array_returns_unchanged(kernel: None) -> None:
    v = opt.black76(100.0, 100.0, 1.0, 0.05, 0.2, True)
    assert isinstance(v, float)
    assert v == pytest.approx(7.577082, abs=1e-6)
    assert isinstance(opt.black76(100.0, 100.0, 1.0, 0.05, 0.2, np.array(True)), float)
    assert isinstance(opt.black76(np.array([100.0]), 100.0, 1.0, 0.0, 0.2, True), np.ndarray)
    assert isinstance(opt.black76_greeks(100.0, 100.0, 1.0, 0.05, 0.2, True).gamma, float)
    vol, reason = opt.implied_vol_black76_detail(v, 100.0, 100.0, 1.0, 0.05, True)
    assert isinstance(vol, float) and isinstance(reason, str)
    assert vol == pytest.approx(0.2, abs=1e-13) and reason == opt.REASON_OK
    assert isinstance(am.american_black76(100.0, 100.0, 1.0, 0.05, 0.2, True, steps=51), float)


def test_broadcast_shapes_on_kernel_path() -> None:
    F = np.linspace(50.0, 150.0, 7)[:, None]
    K = np.linspace(60.0, 140.0, 5)[None, :]
    call = np.array([True, False, True, False, True])
    fast, slow = _both(opt.black76, F, K, 0.5, 0.03, 0.4, call)
    assert fast.shape == slow.shape == (7, 5)
    assert_allclose(fast, slow, rtol=1e-14, atol=1e-14)
    Fn = np.asfortranarray(np.tile(F, (1, 5)))  # non-contiguous in C order
    fast, slow = _both(opt.black76_greeks, Fn, K, 0.5, 0.03, 0.4, call)
    assert_allclose(np.asarray(fast.vega), np.asarray(slow.vega), rtol=1e-14)
    ints = _both(opt.black76, np.arange(1, 6), 3, 1, 0, 0.2, True)  # integer input
    assert_allclose(*ints, rtol=1e-12, atol=4 * EPS * 5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"T": np.array([1.0, -1.0])}, "T"),
        ({"sigma": np.array([0.2, -0.1])}, "sigma"),
        ({"F": np.array([1.0, 0.0])}, "F"),
        ({"K": np.array([1.0, -1.0])}, "K"),
        ({"F": np.array([1.0, np.nan])}, "F"),
        ({"r": np.array([0.0, np.inf])}, "r"),
        ({"sigma": np.array([np.inf, 0.1])}, "sigma"),
        ({"call": np.array([1, 0])}, "call"),
        ({"F": np.array([np.nan, 1.0]), "call": 1}, "F"),
        ({"F": np.ones(3)}, "broadcast"),
    ],
)
def test_bad_input_gives_the_same_error_on_kernel_path(kwargs: dict[str, Any], name: str) -> None:
    args = {"F": 100.0, "K": 100.0, "T": 1.0, "r": 0.0, "sigma": 0.2, "call": [True, False]}
    args |= kwargs
    iv_args = {k: v for k, v in args.items() if k != "sigma"} | {"price": 5.0}
    for fn, a in (
        (opt.black76, args),
        (opt.black76_greeks, args),
        (opt.implied_vol_black76, iv_args if "sigma" not in kwargs else None),
        (am.american_black76, args),
    ):
        if a is None:
            continue
        messages = []
        for size in (1, 10**18):
            old = opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES
            opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES = size, size
            try:
                with pytest.raises(ValueError, match=name) as exc:
                    fn(**a)  # type: ignore[arg-type]
            finally:
                opt._KERNEL_MIN_SIZE, am._KERNEL_MIN_NODES = old
            messages.append(str(exc.value))
        assert messages[0] == messages[1]


def test_implied_vol_bad_price_errors_on_kernel_path(kernel: None) -> None:
    with pytest.raises(ValueError, match="price contains NaN"):
        opt.implied_vol_black76(np.array([np.nan, 1.0]), 1.0, 1.0, 1.0, 0.0, True)
    with pytest.raises(ValueError, match="price must be finite"):
        opt.implied_vol_black76(np.array([np.inf, 1.0]), 1.0, 1.0, 1.0, 0.0, True)


# --------------------------------------------------------------------------- implied vol


def test_implied_vol_round_trip_through_kernel(kernel: None) -> None:
    """The bench's 1e-12 target on a big grid with deep ITM/OTM and one-day expiries."""
    rng = np.random.default_rng(20240601)
    n = 200_000
    F = rng.uniform(10.0, 150.0, n)
    K = F * rng.uniform(0.5, 2.0, n)
    T = rng.uniform(1.0 / 365.0, 5.0, n)
    r = rng.uniform(0.0, 0.05, n)
    sigma = rng.uniform(0.05, 1.5, n)
    call = rng.random(n) < 0.5
    price = np.asarray(opt.black76(F, K, T, r, sigma, call))
    vol, reason = opt.implied_vol_black76_detail(price, F, K, T, r, call)
    s = sigma * np.sqrt(T)
    with np.errstate(under="ignore"):
        vega_u = F * np.exp(-0.5 * ((np.log(F / K) + 0.5 * s * s) / s) ** 2)
    vega_u *= np.sqrt(T / (2 * np.pi))
    w = np.where(call, 1.0, -1.0)
    c = price * np.exp(r * T)
    valid = (c - np.maximum(w * (F - K), 0.0) > 0) & (c < np.where(call, F, K))
    with np.errstate(divide="ignore"):
        keep = valid & (EPS * np.maximum(F, K) / vega_u <= 1e-13)
    assert keep.sum() > 0.9 * n
    assert not np.isnan(np.asarray(vol)[valid]).any()
    assert np.max(np.abs(np.asarray(vol)[keep] - sigma[keep])) <= 1e-12
    assert set(np.unique(np.asarray(reason)[keep])) == {opt.REASON_OK}


def test_implied_vol_kernel_matches_numpy_with_reasons() -> None:
    g = _grid(40_000, seed=5)
    price = np.asarray(opt.black76(**g))
    rng = np.random.default_rng(9)
    w = np.where(g["call"], 1.0, -1.0)
    df = np.exp(-g["r"] * g["T"])
    # Bad prices mixed in: below intrinsic, at/above the upper bound, negative.
    idx = rng.choice(price.size, 4_000, replace=False)
    upper = df * np.where(g["call"], g["F"], g["K"])
    intrinsic = df * np.maximum(w * (g["F"] - g["K"]), 0.0)
    price[idx[:1000]] = intrinsic[idx[:1000]] - 1e-3
    price[idx[1000:2000]] = upper[idx[1000:2000]]
    price[idx[2000:3000]] = upper[idx[2000:3000]] * 1.5
    price[idx[3000:]] = intrinsic[idx[3000:]]
    args = {k: g[k] for k in ("F", "K", "T", "r", "call")}
    (vf, rf), (vs, rs) = _both(opt.implied_vol_black76_detail, price, **args)
    assert isinstance(rf, np.ndarray) and rf.dtype == rs.dtype
    assert np.array_equal(rf, rs)
    assert np.array_equal(np.isnan(vf), np.isnan(vs))
    ok = rs == opt.REASON_OK
    s = g["sigma"] * np.sqrt(g["T"])
    # Agreement to the solver's tolerance where the price determines the vol well.
    with np.errstate(all="ignore"):
        vega_u = g["F"] * np.exp(-0.5 * ((np.log(g["F"] / g["K"]) + 0.5 * s * s) / s) ** 2)
        cond = EPS * np.maximum(g["F"], g["K"]) / (vega_u * np.sqrt(g["T"]))
    good = ok & (cond <= 1e-13)
    good[idx] = False  # a price set at a bound is not the price of g["sigma"]
    assert good.sum() > 10_000
    assert_allclose(vf[good], vs[good], rtol=0, atol=1e-12)
    assert np.array_equal(vf[~ok & ~np.isnan(vs)], vs[~ok & ~np.isnan(vs)])  # at intrinsic: 0
    assert np.array_equal(
        opt.implied_vol_black76(price, **args), vf, equal_nan=True
    )  # same numbers without reasons


def test_implied_vol_reason_codes_on_kernel_path(kernel: None) -> None:
    df = np.exp(-0.05)
    cases = [
        (df * 5.0, 100.0, 105.0, 1.0, 0.05, True, opt.REASON_OK),
        (df * 10.0 - 1e-3, 110.0, 100.0, 1.0, 0.05, True, opt.REASON_BELOW_INTRINSIC),
        (df * 10.0, 110.0, 100.0, 1.0, 0.05, True, opt.REASON_AT_INTRINSIC),
        (df * 110.0, 110.0, 100.0, 1.0, 0.05, True, opt.REASON_ABOVE_UPPER_BOUND),
        (12.0, 110.0, 100.0, 0.0, 0.05, True, opt.REASON_ZERO_EXPIRY),
        (10.0, 110.0, 100.0, 0.0, 0.05, True, opt.REASON_ZERO_EXPIRY),
    ]
    p, F, K, T, r, call, expected = (np.array(x) for x in zip(*cases, strict=True))
    vol, reason = opt.implied_vol_black76_detail(p, F, K, T, r, call)
    vol = np.asarray(vol)
    assert list(np.asarray(reason)) == list(expected)
    assert vol[2] == 0.0 and np.isnan(vol[1:]).sum() == 4


# --------------------------------------------------------------------------- American


def test_american_kernel_matches_numpy() -> None:
    rng = np.random.default_rng(11)
    n = 300
    F = rng.uniform(10.0, 150.0, n)
    K = F * rng.uniform(0.5, 2.0, n)
    T = rng.uniform(0.0, 3.0, n)
    r = rng.uniform(-0.01, 0.08, n)
    sigma = rng.uniform(0.0, 1.5, n)
    call = rng.random(n) < 0.5
    T[:10] = 0.0
    sigma[10:20] = 0.0
    sigma[20:30] = 1e-5  # far from the money at tiny vol: the deterministic limit
    extras: list[dict[str, Any]] = [{}, {"exercise_times": [0.1, 0.5, 1.0, 2.0]}]
    extras.append({"exercise_times": []})
    for extra in extras:
        fast, slow = _both(am.american_black76, F, K, T, r, sigma, call, steps=101, **extra)
        assert_allclose(fast, slow, rtol=1e-12, atol=1e-12 * np.max(np.maximum(F, K)))


def test_american_kernel_scalar_and_broadcast(kernel: None) -> None:
    v = am.american_black76(100.0, 100.0, 1.0, 0.05, 0.2, True, steps=201)
    assert isinstance(v, float)
    assert round(v, 3) == 7.663
    F = np.linspace(80.0, 120.0, 6)[:, None]
    call = np.array([True, False])
    fast, slow = _both(am.american_black76, F, 100.0, 0.5, 0.05, 0.3, call, steps=51)
    assert fast.shape == (6, 2)
    assert_allclose(fast, slow, rtol=1e-13)
