"""RiskBook full revaluation against brute force: re-marking the trades on shifted curves."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import CancelledError
from typing import Any

import numpy as np
import pytest
from scipy import sparse

from app.engine.curves import ForwardCurve
from app.engine.positions import TradeInputs, value_trades
from app.engine.risk import book as book_mod
from app.engine.risk.book import (
    RevalStats,
    RiskBook,
    _black,
    delta_gamma_pnl,
    revalue,
    risk_book,
)

AS_OF = dt.date(2027, 1, 15)


def _curves() -> list[ForwardCurve]:
    months = np.arange(np.datetime64("2027-01"), np.datetime64("2029-01"))
    a = ForwardCurve(months, 70.0 + 0.5 * np.arange(months.size), "CR-BRENT")
    b = ForwardCurve(months, 30.0 + 5.0 * np.cos(np.arange(months.size)), "NG-TTF")
    return [a, b]


def _trades(n: int = 60, seed: int = 3) -> TradeInputs:
    rng = np.random.default_rng(seed)
    start_m = np.datetime64("2027-01") + rng.integers(0, 18, n)
    start = start_m.astype("datetime64[D]") + rng.integers(0, 10, n)
    end = (start_m + rng.integers(0, 4, n)).astype("datetime64[D]") + 27
    is_opt = rng.random(n) < 0.4
    curve = rng.integers(0, 2, n)
    return TradeInputs(
        start=start,
        end=end,
        quantity=rng.uniform(100, 5000, n),
        sign=rng.choice([-1.0, 1.0], n),
        price=rng.uniform(25, 80, n),
        hourly=False,
        curve=curve,
        is_option=is_opt,
        is_call=rng.random(n) < 0.5,
        strike=np.where(curve == 0, rng.uniform(60, 85, n), rng.uniform(22, 40, n)),
        premium=rng.uniform(0, 5, n),
        expiry=start - 5,
        vol=rng.uniform(0.2, 0.6, n),
    )


def _book(tr: TradeInputs, curves: list[ForwardCurve], groups: np.ndarray | None = None):
    val = value_trades(tr, curves, AS_OF)
    n = val.open_qty.size
    curve = np.asarray(tr.curve)
    t_exp = (np.asarray(tr.expiry).astype("datetime64[D]") - np.datetime64(AS_OF, "D")).astype(
        float
    ) / 365.0
    grp = np.zeros(n, dtype=np.int64) if groups is None else groups
    book = risk_book(
        val,
        curve[val.slices.trade],
        grp,
        int(grp.max()) + 1,
        is_option=tr.is_option,
        is_call=tr.is_call,
        strike=tr.strike,
        t_expiry=t_exp,
        vol=tr.vol,
    )
    return val, book


def _shifted(curves: list[ForwardCurve], book, x: np.ndarray) -> list[ForwardCurve]:
    out = []
    for c, crv in enumerate(curves):
        p = crv.prices.copy()
        for j in np.flatnonzero(book.factor_curve == c):
            p[int((book.factor_month[j] - crv.months[0]).astype(int))] += x[j]
        out.append(ForwardCurve(crv.months, p, crv.product))
    return out


def _brute(tr, curves, book, x, vol_shift=0.0) -> float:
    base = value_trades(tr, curves, AS_OF)
    tr2 = TradeInputs(**{**tr.__dict__, "vol": np.asarray(tr.vol) + vol_shift})
    new = value_trades(tr2, _shifted(curves, book, x), AS_OF)
    ok = book.group >= 0
    return float(np.sum(new.mtm[ok] - base.mtm[ok]))


def test_full_revaluation_equals_remarking_the_trades() -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    assert book.n_options > 5 and book.n_factors > 10
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3.0, (6, book.n_factors))
    pnl = revalue(book, x, max_cells=50, workers=2)
    for i in range(6):
        assert pnl[i] == pytest.approx(_brute(tr, curves, book, x[i]), rel=1e-9, abs=1e-6)


def test_vol_shift_matches_remarking_with_higher_vols() -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    x = np.zeros((1, book.n_factors))
    pnl = revalue(book, x, vol_shift=0.05)
    assert pnl[0] == pytest.approx(_brute(tr, curves, book, x[0], 0.05), rel=1e-9)


def test_groups_sum_to_total_and_chunking_is_invisible() -> None:
    curves = _curves()
    tr = _trades()
    grp = np.arange(60) % 4
    _, book = _book(tr, curves, grp)
    x = np.random.default_rng(1).normal(0, 2.0, (101, book.n_factors))
    by_g = revalue(book, x, by_group=True, max_cells=37, workers=2)
    tot = revalue(book, x, workers=1)
    assert by_g.shape == (101, 4)
    np.testing.assert_allclose(by_g.sum(axis=1), tot, rtol=1e-12, atol=1e-8)


def test_negative_scenario_forward_is_valued_at_intrinsic_and_counted() -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    x = np.full((1, book.n_factors), -120.0)  # every forward below zero
    stats = RevalStats()
    pnl = revalue(book, x, stats=stats)
    assert np.isfinite(pnl).all()
    assert stats.nonpositive == book.n_options
    # Brute force by hand: calls worth 0, puts worth K - F.
    f = book.opt_forward0 - 120.0
    v = np.where(book.opt_call, 0.0, book.opt_strike - f)
    opt = float(np.sum((v - book.opt_value0) * book.opt_qty))
    lin = float(x[0] @ book.linear.sum(axis=1))
    assert pnl[0] == pytest.approx(opt + lin, rel=1e-12)


def test_delta_gamma_is_exact_for_linear_books_and_close_for_small_moves() -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    x = np.random.default_rng(5).normal(0, 0.05, (50, book.n_factors))
    full = revalue(book, x)
    dg = delta_gamma_pnl(book, x)
    scale = np.abs(full).max()
    assert np.max(np.abs(dg - full)) < 1e-4 * scale
    lin_tr = TradeInputs(**{**tr.__dict__, "is_option": False})
    _, lin_book = _book(lin_tr, curves)
    x2 = np.random.default_rng(6).normal(0, 5.0, (20, lin_book.n_factors))
    np.testing.assert_allclose(delta_gamma_pnl(lin_book, x2), revalue(lin_book, x2), rtol=1e-12)


def test_book_delta_matches_finite_difference() -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    h = 1e-4
    eye = np.eye(book.n_factors) * h
    fd = (revalue(book, eye) - revalue(book, -eye)) / (2 * h)
    np.testing.assert_allclose(book.delta(), fd, rtol=1e-6, atol=1e-4)


def test_bad_shapes_and_values_are_refused() -> None:
    curves = _curves()
    _, book = _book(_trades(), curves)
    with pytest.raises(ValueError, match="shape"):
        revalue(book, np.zeros((2, book.n_factors + 1)))
    with pytest.raises(ValueError, match="finite"):
        revalue(book, np.full((1, book.n_factors), np.nan))
    with pytest.raises(ValueError, match="horizon"):
        revalue(book, np.zeros(book.n_factors), horizon_days=-1)


# --------------------------------------------------------------------------- numba kernel path


def synthetic_book(
    n_options: int, n_factors: int, n_groups: int = 3, seed: int = 0, *, edge_cases: bool = True
) -> RiskBook:
    """A :class:`RiskBook` built directly: options on single tenors or strips of up to four
    factors, linear exposures, and (``edge_cases``) expired options, zero vols, zero strikes and
    forwards close to zero, so that scenarios push some of them below zero."""
    rng = np.random.default_rng(seed)
    m, o = n_factors, n_options
    base = rng.uniform(20.0, 90.0, m)
    first = rng.integers(0, m, o)
    length = np.minimum(rng.integers(1, 5, o), m - first)
    rows = np.repeat(np.arange(o), length)
    cols = np.concatenate([np.arange(f, f + n) for f, n in zip(first, length, strict=True)])
    w_raw = rng.uniform(0.5, 1.5, rows.size)
    tot = np.bincount(rows, weights=w_raw, minlength=o)
    weights = sparse.csr_matrix((w_raw / tot[rows], (rows, cols)), shape=(o, m))
    f0 = np.asarray(weights @ base).ravel()
    strike = f0 * rng.uniform(0.6, 1.5, o)
    t = rng.uniform(0.0, 2.0, o)
    vol = rng.uniform(0.1, 0.9, o)
    if edge_cases:
        t[rng.random(o) < 0.1] = 0.0
        vol[rng.random(o) < 0.1] = 0.0
        strike[rng.random(o) < 0.03] = 0.0
    call = rng.random(o) < 0.5
    grp = rng.integers(0, n_groups, o)
    return RiskBook(
        factor_curve=np.zeros(m, dtype=np.int64),
        factor_month=np.datetime64("2027-01") + np.arange(m),
        base=base,
        group=grp.astype(np.int64),
        n_groups=n_groups,
        linear=rng.normal(0.0, 1000.0, (m, n_groups)),
        opt_trade=np.arange(o, dtype=np.int64),
        opt_group=grp.astype(np.int64),
        opt_qty=rng.choice([-1.0, 1.0], o) * rng.uniform(100.0, 5000.0, o),
        opt_weights=weights,
        opt_strike=strike,
        opt_t=t,
        opt_vol=vol,
        opt_call=call,
        opt_forward0=f0,
        opt_value0=_black(f0, strike, t, vol, call),
    )


@pytest.fixture
def kernel_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(book_mod, "_KERNEL_MIN_CELLS", 1)


def _both_paths(monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> tuple:
    out = []
    for threshold in (10**18, 1):
        monkeypatch.setattr(book_mod, "_KERNEL_MIN_CELLS", threshold)
        st = RevalStats()
        out.append((revalue(*args, stats=st, **kwargs), st))
    return tuple(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_path_equals_numpy_path_on_random_books(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    book = synthetic_book(300, 12, n_groups=4, seed=seed)
    rng = np.random.default_rng(100 + seed)
    # Large moves: many scenario forwards end at or below zero (intrinsic, counted).
    x = rng.normal(0.0, 25.0, (257, book.n_factors))
    dv = rng.normal(0.0, 0.3, 257)  # some vols shifted below zero: floored at 0
    (p_np, st_np), (p_k, st_k) = _both_paths(
        monkeypatch, book, x, dv, 10.0, by_group=True, max_cells=7_000, workers=2
    )
    assert st_np.nonpositive > 0
    assert st_k.nonpositive == st_np.nonpositive and st_k.scenarios == st_np.scenarios
    scale = float(np.sum(np.abs(book.opt_qty) * np.maximum(book.opt_forward0, book.opt_strike)))
    np.testing.assert_allclose(p_k, p_np, rtol=1e-12, atol=1e-13 * scale)


def test_kernel_path_expired_zero_vol_and_negative_forwards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = synthetic_book(200, 6, seed=5)
    x = np.vstack(
        [
            np.zeros(book.n_factors),
            np.full(book.n_factors, -500.0),  # every forward below zero: intrinsic
            -book.base,  # every forward exactly at zero: intrinsic, counted
            np.full(book.n_factors, 3.0),
        ]
    )
    (p_np, st_np), (p_k, st_k) = _both_paths(monkeypatch, book, x, 0.0, 400.0)  # most expire
    assert st_k.nonpositive == st_np.nonpositive == 2 * book.n_options
    np.testing.assert_allclose(p_k, p_np, rtol=1e-12, atol=1e-6)
    (q_np, _), (q_k, _) = _both_paths(monkeypatch, book, x, -5.0, 0.0)  # every vol at 0
    np.testing.assert_allclose(q_k, q_np, rtol=1e-12, atol=1e-6)
    expired = _black(book.opt_forward0, book.opt_strike, 0.0, 0.0, book.opt_call)
    assert q_k[0] == pytest.approx(
        float(np.sum((expired - book.opt_value0) * book.opt_qty)), rel=1e-12
    )


def test_kernel_path_on_the_trade_book_matches_brute_force(kernel_always: None) -> None:
    curves = _curves()
    tr = _trades()
    _, book = _book(tr, curves)
    x = np.random.default_rng(7).normal(0, 3.0, (4, book.n_factors))
    stats = RevalStats()
    pnl = revalue(book, x, max_cells=50, workers=2, stats=stats)
    for i in range(4):
        assert pnl[i] == pytest.approx(_brute(tr, curves, book, x[i]), rel=1e-9, abs=1e-6)
    with pytest.raises(CancelledError):
        revalue(book, x, max_cells=50, workers=2, cancelled=lambda: True)
