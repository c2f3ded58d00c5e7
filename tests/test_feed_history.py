"""Historical series readers (app.feed.history): the real files in ../shared/data/market checked
against the figures in SOURCES.md, and every malformation on small synthetic files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from app.feed.history import (
    PriceSeries,
    SeriesMapping,
    ember_countries,
    parse_mapping_spec,
    read_ember,
    read_series,
)
from tests.conftest import need_shared

EMBER = "ember-eu-power/european_wholesale_electricity_price_data_daily.csv"


def _write(tmp_path: Path, text: str, name: str = "s.csv", newline: str = "\n") -> Path:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return path


# --------------------------------------------------------------------------- real files

# (file, rows, missing, first, last, (min, min date), (max, max date)) from SOURCES.md
REAL = [
    ("eia-oil-prices/brent-daily.csv", 9958, 0, "1987-05-20", "2026-08-18",
     (9.10, "1998-12-10"), (143.95, "2008-07-03")),
    ("eia-oil-prices/wti-daily.csv", 10226, 0, "1986-01-02", "2026-08-18",
     (-36.98, "2020-04-20"), (145.31, "2008-07-03")),
    ("eia-natural-gas/daily.csv", 7437, 1, "1997-01-07", "2026-08-18",
     (1.05, "1998-12-04"), (30.72, "2026-01-23")),
    ("fred-eia-spot-2019/DCOILWTICO.csv", 8613, 290, "1986-01-02", "2019-01-07", None, None),
    ("fred-eia-spot-2019/DCOILBRENTEU.csv", 8254, 226, "1987-05-20", "2019-01-07", None, None),
    ("fred-eia-spot-2019/DHHNGSP.csv", 5740, 207, "1997-01-07", "2019-01-07", None, None),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "rows", "missing", "first", "last", "lo", "hi"), REAL)
def test_real_file_matches_sources_md(
    rel: str,
    rows: int,
    missing: int,
    first: str,
    last: str,
    lo: tuple[float, str] | None,
    hi: tuple[float, str] | None,
) -> None:
    s = read_series(need_shared(f"data/market/{rel}"))
    assert (s.rows, s.missing, s.duplicates) == (rows, missing, 0)
    assert len(s) == rows - missing
    assert (s.first, s.last) == (date.fromisoformat(first), date.fromisoformat(last))
    assert np.all(np.diff(s.dates) > np.timedelta64(0, "D"))
    assert s.dates.dtype == np.dtype("datetime64[D]") and s.values.dtype == np.float64
    for expected, fn in ((lo, np.argmin), (hi, np.argmax)):
        if expected is not None:
            i = int(fn(s.values))
            assert s.values[i] == expected[0]
            assert str(s.dates[i]) == expected[1]


def test_wti_negative_price_is_kept_exactly() -> None:
    s = read_series(need_shared("data/market/eia-oil-prices/wti-daily.csv"))
    assert s.value_on(date(2020, 4, 17)) == 18.31
    assert s.value_on(date(2020, 4, 20)) == -36.98
    assert s.value_on(date(2020, 4, 21)) == 8.91
    assert s.value_on(date(2020, 4, 18)) is None  # Saturday
    assert int(np.sum(s.values <= 0)) == 1  # the only value <= 0 (SOURCES.md)
    assert s.name == "wti-daily" and "datahub" in s.source


def test_henry_hub_missing_value_is_skipped() -> None:
    s = read_series(need_shared("data/market/eia-natural-gas/daily.csv"))
    assert s.value_on(date(2018, 1, 5)) is None
    assert s.value_on(date(2024, 1, 12)) == 13.20


@pytest.fixture(scope="module")
def ember_all() -> dict[str, PriceSeries]:
    return read_ember(need_shared(f"data/market/{EMBER}"))


def test_ember_totals_match_sources_md(ember_all: dict[str, PriceSeries]) -> None:
    assert len(ember_all) == 31
    assert sum(s.rows for s in ember_all.values()) == 114_808
    assert {k: s.missing for k, s in ember_all.items() if s.missing} == {"North Macedonia": 22}
    dups = {k: s.duplicates for k, s in ember_all.items() if s.duplicates}
    assert dups == {"United Kingdom": 19, "Ireland": 15}  # 34 pairs
    assert min(s.first for s in ember_all.values()) == date(2015, 1, 1)
    assert max(s.last for s in ember_all.values()) == date(2026, 1, 30)
    assert ember_all["Switzerland"].last == date(2025, 9, 30)
    assert ember_all["United Kingdom"].last == date(2026, 1, 28)
    assert ember_all["Ireland"].first == date(2018, 10, 1)
    assert ember_all["Montenegro"].first == date(2023, 4, 26)
    # duplicates are resolved to the mean of the two published prices
    assert ember_all["United Kingdom"].value_on(date(2016, 10, 30)) == pytest.approx(
        (45.57 + 47.63) / 2, abs=1e-12
    )


def test_ember_extremes_and_identical_series(ember_all: dict[str, PriceSeries]) -> None:
    de = ember_all["Germany"]
    assert de.values.min() == -47.46 and str(de.dates[np.argmin(de.values)]) == "2017-10-29"
    assert de.values.max() == 695.29 and str(de.dates[np.argmax(de.values)]) == "2022-08-26"
    assert int(np.sum(de.values <= 0)) == 29
    fi = ember_all["Finland"]
    assert fi.values.min() == -202.29 and str(fi.dates[np.argmin(fi.values)]) == "2023-11-24"
    assert int(np.sum(fi.values <= 0)) == 32
    assert fi.value_on(date(2024, 1, 5)) == 888.09
    assert ember_all["Belgium"].values.min() == -114.94
    lu = ember_all["Luxembourg"]
    assert np.array_equal(de.dates, lu.dates) and np.array_equal(de.values, lu.values)
    assert list(de.values[:4]) == [22.34] * 4


def test_ember_country_by_name_or_iso3() -> None:
    path = need_shared(f"data/market/{EMBER}")
    by_iso = read_series(path, country="DEU")
    by_name = read_series(path, country="germany")
    assert np.array_equal(by_iso.values, by_name.values)
    assert by_iso.name == "Germany" and "Germany (DEU)" in by_iso.source
    assert len(ember_countries(path)) == 31


def test_ember_country_required_or_unknown_lists_available() -> None:
    path = need_shared(f"data/market/{EMBER}")
    with pytest.raises(ValueError, match=r"31 countries.*Germany \(DEU\)"):
        read_series(path)
    with pytest.raises(ValueError, match=r"no country 'Atlantis'.*France \(FRA\)"):
        read_series(path, country="Atlantis")


# --------------------------------------------------------------------------- synthetic files


def test_datahub_crlf_bom_missing_and_negative(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeffDate,Price\n2020-04-17,18.31\n2020-04-20,-36.98\n2020-04-21,\n2020-04-22,0\n\n",
        newline="\r\n",
    )
    s = read_series(path)
    assert (s.rows, s.missing) == (4, 1)
    assert s.values.tolist() == [18.31, -36.98, 0.0]
    assert [str(d) for d in s.dates] == ["2020-04-17", "2020-04-20", "2020-04-22"]
    assert not s.values.flags.writeable and not s.dates.flags.writeable


def test_fred_dot_is_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, "DATE,VALUE\n2019-01-01,.\n2019-01-02,45.5\n2019-01-03,46\n")
    s = read_series(path)
    assert (s.rows, s.missing, len(s)) == (3, 1, 2)
    assert "FRED" in s.source


def test_ember_synthetic_duplicates_missing_and_selection(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "Country,ISO3 Code,Date,Price (EUR/MWhe)\n"
        "Germany,DEU,2020-03-28,10\nIreland,IRL,2020-03-28,20\n"
        "Germany,DEU,2020-03-29,-5.5\nIreland,IRL,2020-03-29,30\nIreland,IRL,2020-03-29,40\n"
        "Germany,DEU,2020-03-30,\nIreland,IRL,2020-03-30,50\n",
    )
    ie = read_series(path, country="IRL")
    assert (ie.rows, ie.missing, ie.duplicates) == (4, 0, 1)
    assert ie.values.tolist() == [20.0, 35.0, 50.0]
    de = read_series(path, country="Germany")
    assert (de.rows, de.missing, de.duplicates) == (3, 1, 0)
    assert de.values.tolist() == [10.0, -5.5]
    assert set(read_ember(path)) == {"Germany", "Ireland"}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("Date,Price\n2020-01-02,1\n2020-13-01,2\n", 3, "bad date '2020-13-01'"),
        ("Date,Price\n2020/01/02,1\n", 2, "bad date '2020/01/02'"),
        ("Date,Price\n20200102,1\n", 2, "bad date"),
        ("Date,Price\n2020-01-02,abc\n", 2, "'abc' is not a number"),
        ("Date,Price\n2020-01-02,nan\n", 2, "not a finite number"),
        ("Date,Price\n2020-01-02,inf\n", 2, "not a finite number"),
        ("Date,Price\n2020-01-02,1,2\n", 2, "expected 2 fields, got 3"),
        ("Date,Price\n2020-01-03,1\n2020-01-02,2\n", 3, "goes backwards from 2020-01-03"),
        ("Date,Price\n2020-01-03,1\n2020-01-03,2\n", 3, "repeats 2020-01-03"),
        ("DATE,VALUE\n2020-01-02,1\n2020-01-01,.\n", 3, "goes backwards"),
        ("Month,Price\n2020-01,1\n", 1, "unknown header 'Month,Price'"),
        ("Date;Price\n2020-01-02;1\n", 1, "unknown header"),
        (
            "Country,ISO3 Code,Date,Price (EUR/MWhe)\nX,XXX,2020-01-02,1\nX,XXX,2020-01-01,1\n",
            3,
            "for X goes backwards",
        ),
        ("Country,ISO3 Code,Date,Price (EUR/MWhe)\nX,XXX,2020-01-02\n", 2, "expected 4 fields"),
        ("Country,ISO3 Code,Date,Price (EUR/MWhe)\nX,XXX,2020-01-02,x1\n", 2, "not a number"),
    ],
)
def test_malformed_rows_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = _write(tmp_path, text, newline="\r\n")
    with pytest.raises(ValueError) as err:
        read_series(path, country="X" if text.startswith("Country") else None)
    assert f"{path}, line {line}" in str(err.value)
    assert message in str(err.value)


def test_empty_and_valueless_files(tmp_path: Path) -> None:
    empty = _write(tmp_path, "", "empty.csv")
    with pytest.raises(ValueError, match=r"empty\.csv: empty file"):
        read_series(empty)
    blank = _write(tmp_path, "\n\n", "blank.csv")
    with pytest.raises(ValueError, match="empty file"):
        read_series(blank)
    header_only = _write(tmp_path, "Date,Price\n", "header.csv")
    with pytest.raises(ValueError, match=r"header\.csv: no values \(0 data rows"):
        read_series(header_only)
    all_missing = _write(tmp_path, "DATE,VALUE\n2020-01-01,.\n", "dots.csv")
    with pytest.raises(ValueError, match=r"no values \(1 data rows, 1 missing\)"):
        read_series(all_missing)
    with pytest.raises(ValueError, match="cannot open"):
        read_series(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="Ember file without data rows"):
        read_series(_write(tmp_path, "Country,ISO3 Code,Date,Price (EUR/MWhe)\n"), country="X")


def test_country_on_a_single_series_file_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "Date,Price\n2020-01-02,1\n")
    with pytest.raises(ValueError, match="applies only to the Ember"):
        read_series(path, country="DEU")
    with pytest.raises(ValueError, match="not an Ember"):
        read_ember(path)


def test_price_series_validates_its_arrays() -> None:
    d = np.array(["2020-01-02", "2020-01-02"], dtype="datetime64[D]")
    with pytest.raises(ValueError, match="strictly increasing"):
        PriceSeries("x", d, np.array([1.0, 2.0]), "test")
    with pytest.raises(ValueError, match="equal length"):
        PriceSeries("x", d[:1], np.array([1.0, 2.0]), "test")


# --------------------------------------------------------------------------- mappings


def test_parse_mapping_spec() -> None:
    m = parse_mapping_spec("/data/ember.csv=PWR-DE-BASE@DEU")
    assert (m.path, m.product, m.country) == (Path("/data/ember.csv"), "PWR-DE-BASE", "DEU")
    assert m.spec() == "/data/ember.csv=PWR-DE-BASE@DEU"
    assert m.label == "ember.csv@DEU"
    m2 = parse_mapping_spec(" /tmp/a=b@c/wti.csv = CR-WTI ")
    assert (m2.path, m2.product, m2.country) == (Path("/tmp/a=b@c/wti.csv"), "CR-WTI", None)
    assert parse_mapping_spec("x.csv=PWR-DE-BASE@United Kingdom").country == "United Kingdom"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("/data/wti.csv", "not PATH=PRODUCT"),
        ("=CR-WTI", "not PATH=PRODUCT"),
        ("/data/wti.csv=CL", "unknown product 'CL'; known products: PWR-DE-BASE"),
        ("/data/ember.csv=PWR-DE-BASE@", "empty country"),
    ],
)
def test_parse_mapping_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mapping_spec(spec)


def test_mapping_loads_its_series(tmp_path: Path) -> None:
    path = _write(tmp_path, "Date,Price\n2020-01-02,61.17\n")
    s = SeriesMapping(path, "CR-WTI").load()
    assert s.values.tolist() == [61.17]
