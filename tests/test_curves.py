"""Tests for app.engine.curves: monthly forward curves from strips, discount curves."""

from __future__ import annotations

import calendar
import math
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.curves import (
    DiscountCurve,
    ForwardCurve,
    Strip,
    build_monthly_curve,
    delivery_hours,
    year_fraction,
)

Y0 = 2027
N_MONTHS = 36  # Jan-27 .. Dec-29


def _all_strips(prices: np.ndarray, weights: str) -> list[Strip]:
    """Every month/quarter/season/cal strip inside the grid, priced off a monthly curve."""
    months = np.arange(np.datetime64(f"{Y0}-01"), np.datetime64(f"{Y0}-01") + N_MONTHS)
    truth = ForwardCurve(months, prices, weights=weights)
    out: list[Strip] = []
    for y in range(Y0, Y0 + N_MONTHS // 12):
        out += [Strip.month(y, m, 0.0) for m in range(1, 13)]
        out += [Strip.quarter(y, k, 0.0) for k in range(1, 5)]
        out.append(Strip.season("Sum", y, 0.0))
        if y + 1 < Y0 + N_MONTHS // 12:
            out.append(Strip.season("Win", y, 0.0))
        out.append(Strip.cal(y, 0.0))
    return [Strip(s.start, s.end, truth.price(s.start, s.end), s.label) for s in out]


@st.composite
def quote_sets(draw: st.DrawFn) -> tuple[np.ndarray, str, list[Strip], int | None]:
    prices = np.array(
        draw(
            st.lists(
                st.floats(-50, 300, allow_nan=False, allow_infinity=False),
                min_size=N_MONTHS,
                max_size=N_MONTHS,
            )
        )
    )
    weights = draw(st.sampled_from(["days", "hours"]))
    pool = _all_strips(prices, weights)
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=25, unique=True))
    full_year = draw(st.one_of(st.none(), st.sampled_from(range(Y0, Y0 + N_MONTHS // 12))))
    if full_year is not None:
        for s in pool:
            is_month = s.label[:3] in calendar.month_abbr[1:]
            if s.start.year == full_year and is_month and s not in chosen:
                chosen.append(s)
    return prices, weights, chosen, full_year


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quote_sets())
def test_random_consistent_quotes_reproduced(
    case: tuple[np.ndarray, str, list[Strip], int | None],
) -> None:
    prices, weights, strips, full_year = case
    curve = build_monthly_curve(strips, weights=weights)
    for s in strips:
        assert abs(curve.price(s.start, s.end) - s.price) <= 1e-10 * max(1.0, abs(s.price))
    if full_year is not None:
        for m in range(1, 13):
            i = int((np.datetime64(f"{full_year}-{m:02d}") - curve.months[0]).astype(int))
            expected = prices[(full_year - Y0) * 12 + m - 1]
            assert abs(curve.prices[i] - expected) <= 1e-10 * max(1.0, abs(expected))


def test_all_months_recovered_exactly() -> None:
    rng = np.random.default_rng(7)
    prices = rng.uniform(20, 120, N_MONTHS)
    strips = _all_strips(prices, "days")  # months + overlapping quarters/seasons/cals
    curve = build_monthly_curve(strips)
    np.testing.assert_allclose(curve.prices, prices, rtol=0, atol=1e-10)


def test_single_cal_with_shape_reproduces_ratios() -> None:
    shape = [1.3, 1.25, 1.1, 0.95, 0.85, 0.8, 0.8, 0.82, 0.9, 1.0, 1.15, 1.28]
    curve = build_monthly_curve([Strip.cal(2027, 40.0)], shape=shape)
    assert curve.months.size == 12
    np.testing.assert_allclose(curve.prices / curve.prices[0], np.array(shape) / shape[0], 1e-10)
    assert curve.price(date(2027, 1, 1), date(2027, 12, 31)) == pytest.approx(40.0, abs=1e-10)


def test_single_cal_without_shape_is_flat() -> None:
    curve = build_monthly_curve([Strip.cal(2027, 55.5)])
    np.testing.assert_allclose(curve.prices, 55.5, atol=1e-10)


def test_smooth_interpolation_between_quarters() -> None:
    strips = [Strip.quarter(2027, k, p) for k, p in enumerate([80.0, 50.0, 45.0, 70.0], 1)]
    curve = build_monthly_curve(strips)
    for s in strips:
        assert curve.price(s.start, s.end) == pytest.approx(s.price, abs=1e-10)
    # maximum smoothness: no month-to-month step larger than the quote differences
    assert np.max(np.abs(np.diff(curve.prices))) < 30.0


def test_inconsistent_cal_vs_quarters_names_strips() -> None:
    strips = [Strip.quarter(2027, k, p) for k, p in enumerate([80.0, 50.0, 45.0, 70.0], 1)]
    strips.append(Strip.cal(2027, 70.0))
    strips.append(Strip.month(2028, 1, 90.0))  # unrelated, consistent
    with pytest.raises(ValueError, match="inconsistent") as exc:
        build_monthly_curve(strips)
    msg = str(exc.value)
    for name in ("Cal-2027", "Q1-2027", "Q2-2027", "Q3-2027", "Q4-2027"):
        assert name in msg
    assert "Jan-2028" not in msg


def test_duplicate_conflicting_month() -> None:
    with pytest.raises(ValueError, match=r"Feb-2027 \(10\).*Feb-2027 \(11\)"):
        build_monthly_curve([Strip.month(2027, 2, 10.0), Strip.month(2027, 2, 11.0)])


def test_hours_weighting_differs_with_dst() -> None:
    assert delivery_hours(date(2027, 3, 28)) == 23.0  # last Sunday of March 2027
    assert delivery_hours(date(2027, 10, 31)) == 25.0  # last Sunday of October 2027
    assert delivery_hours(date(2027, 3, 27)) == 24.0
    months = np.arange(np.datetime64("2027-03"), np.datetime64("2027-05"))
    by_days = ForwardCurve(months, np.array([100.0, 50.0]), weights="days")
    by_hours = ForwardCurve(months, np.array([100.0, 50.0]), weights="hours")
    start, end = date(2027, 3, 1), date(2027, 4, 30)
    assert by_days.price(start, end) == pytest.approx((31 * 100 + 30 * 50) / 61, abs=1e-12)
    hm, ha = 31 * 24 - 1, 30 * 24
    assert by_hours.price(start, end) == pytest.approx((hm * 100 + ha * 50) / (hm + ha), 1e-12)
    assert by_hours.price(start, end) != pytest.approx(by_days.price(start, end), abs=1e-6)
    # and the fitted curves differ: Q-quote + one month, the remaining months depend on weights
    strips = [Strip.quarter(2027, 1, 60.0), Strip.month(2027, 1, 70.0)]
    p_days = build_monthly_curve(strips, weights="days").prices
    p_hours = build_monthly_curve(strips, weights="hours").prices
    assert not np.allclose(p_days, p_hours, atol=1e-9)


def test_callable_weights_and_partial_month() -> None:
    def weekdays(d: date) -> float:
        return 1.0 if d.weekday() < 5 else 0.0

    curve = build_monthly_curve([Strip.month(2027, 1, 30.0)], weights=weekdays)
    assert curve.price(date(2027, 1, 4), date(2027, 1, 8)) == pytest.approx(30.0)
    flat = ForwardCurve(
        np.arange(np.datetime64("2027-01"), np.datetime64("2027-03")), np.array([10.0, 20.0])
    )
    # 31 Jan + 1 Feb: pro rata by days
    assert flat.price(date(2027, 1, 31), date(2027, 2, 1)) == pytest.approx(15.0)
    assert flat.price(date(2027, 1, 22), date(2027, 2, 1)) == pytest.approx((10 * 10 + 20) / 11)


def test_to_dict_roundtrip_and_times() -> None:
    curve = build_monthly_curve([Strip.season("Win", 2027, 35.0)], product="TTF")
    d = curve.to_dict()
    assert d["months"][0] == "2027-10" and d["months"][-1] == "2028-03"
    assert d["product"] == "TTF" and d["weights"] == "days"
    back = ForwardCurve.from_dict(d)
    np.testing.assert_array_equal(back.prices, curve.prices)
    assert curve.times(date(2027, 1, 1))[0] == pytest.approx(273 / 365)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strips": []}, "strips"),
        ({"strips": [Strip.cal(2027, 1.0)], "shape": [1.0] * 11}, "shape"),
        ({"strips": [Strip.cal(2027, 1.0)], "shape": [1.0] * 11 + [-1.0]}, "shape"),
        ({"strips": [Strip.cal(2027, 1.0)], "weights": "minutes"}, "weights"),
        ({"strips": [Strip.cal(2027, 1.0)], "tol": 0.0}, "tol"),
        ({"strips": [Strip.month(2027, 1, 1.0)], "weights": lambda d: 0.0}, "zero delivery"),
    ],
)
def test_build_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_monthly_curve(**kwargs)


def test_strip_bad_input() -> None:
    with pytest.raises(ValueError, match="before start"):
        Strip(date(2027, 2, 1), date(2027, 1, 1), 1.0)
    with pytest.raises(ValueError, match="price"):
        Strip(date(2027, 1, 1), date(2027, 1, 2), math.nan)
    with pytest.raises(ValueError, match="month"):
        Strip.month(2027, 13, 1.0)
    with pytest.raises(ValueError, match="quarter"):
        Strip.quarter(2027, 5, 1.0)
    with pytest.raises(ValueError, match="season"):
        Strip.season("Spring", 2027, 1.0)
    assert Strip.season("winter", 2027, 1.0).end == date(2028, 3, 31)
    curve = build_monthly_curve([Strip.cal(2027, 1.0)])
    with pytest.raises(ValueError, match="outside"):
        curve.price(date(2026, 12, 1), date(2027, 1, 31))


# --------------------------------------------------------------------------- discount


def test_flat_discount_closed_form() -> None:
    as_of = date(2027, 1, 15)
    dc = DiscountCurve.flat(0.035, as_of)
    t = np.array([0.0, 0.25, 1.0, 7.5, 30.0])
    np.testing.assert_allclose(dc.df(t), np.exp(-0.035 * t), rtol=1e-14)
    d = date(2029, 6, 30)
    assert dc.df(d) == pytest.approx(math.exp(-0.035 * (d - as_of).days / 365), rel=1e-14)
    assert isinstance(dc.df(1.0), float) and isinstance(dc.zero(d), float)
    dates = np.array(["2027-07-15", "2028-01-15"], dtype="datetime64[D]")
    np.testing.assert_allclose(dc.df(dates), np.exp(-0.035 * np.array([181, 365]) / 365))


def test_zero_curve_interpolation_and_extrapolation() -> None:
    as_of = date(2027, 1, 1)
    nodes = [(date(2028, 1, 1), 0.02), (date(2030, 1, 1), 0.03)]
    dc = DiscountCurve.from_zero_rates(as_of, nodes)
    t1, t2 = year_fraction(as_of, nodes[0][0]), year_fraction(as_of, nodes[1][0])
    assert dc.zero(0.1) == pytest.approx(0.02)  # flat before first node
    assert dc.zero(50.0) == pytest.approx(0.03)  # flat after last node
    tm = 0.5 * (t1 + t2)
    assert dc.zero(tm) == pytest.approx(0.025)
    assert dc.df(tm) == pytest.approx(math.exp(-0.025 * tm))
    np.testing.assert_allclose(dc.zero([t1, t2]), [0.02, 0.03])


def test_zero_curve_vs_quantlib() -> None:
    ql = pytest.importorskip("QuantLib")
    as_of = date(2027, 3, 10)
    nodes = [
        (date(2027, 6, 10), 0.031),
        (date(2028, 3, 10), 0.028),
        (date(2030, 3, 11), 0.0335),
        (date(2037, 3, 10), 0.04),
    ]
    dc = DiscountCurve.from_zero_rates(as_of, nodes)

    def qd(d: date) -> object:
        return ql.Date(d.day, d.month, d.year)

    ql.Settings.instance().evaluationDate = qd(as_of)
    ql_dates = [qd(as_of)] + [qd(d) for d, _ in nodes]
    ql_rates = [nodes[0][1]] + [r for _, r in nodes]
    curve = ql.ZeroCurve(
        ql_dates,
        ql_rates,
        ql.Actual365Fixed(),
        ql.NullCalendar(),
        ql.Linear(),
        ql.Continuous,
    )
    for d in [date(2027, 4, 1), date(2027, 12, 24), date(2029, 1, 1), date(2033, 7, 4)]:
        assert dc.df(d) == pytest.approx(curve.discount(qd(d)), rel=1e-12)
        ql_zero = curve.zeroRate(qd(d), ql.Actual365Fixed(), ql.Continuous).rate()
        assert dc.zero(d) == pytest.approx(ql_zero, rel=1e-12)


def test_discount_bad_input() -> None:
    as_of = date(2027, 1, 1)
    with pytest.raises(ValueError, match="before as_of"):
        DiscountCurve.from_zero_rates(as_of, [(date(2026, 1, 1), 0.01)])
    with pytest.raises(ValueError, match="increasing"):
        DiscountCurve.from_zero_rates(as_of, [(date(2028, 1, 1), 0.01), (date(2028, 1, 1), 0.02)])
    with pytest.raises(ValueError, match="nodes"):
        DiscountCurve.from_zero_rates(as_of, [])
    with pytest.raises(ValueError, match="rate"):
        DiscountCurve.flat(math.inf, as_of)
    with pytest.raises(ValueError, match="t must"):
        DiscountCurve.flat(0.01, as_of).df(date(2026, 1, 1))
