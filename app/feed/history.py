"""Historical daily price series for the feed's replay mode: robust CSV readers.

Three public formats are recognised by their header line (see ``../shared/data/market/SOURCES.md``):

===========  ============================================  ===================================
format       header                                        quirks handled
===========  ============================================  ===================================
datahub      ``Date,Price``                                CRLF line endings, empty value =
                                                           missing (EIA Brent/WTI/Henry Hub)
FRED         ``DATE,VALUE``                                ``.`` = missing (holiday rows)
Ember        ``Country,ISO3 Code,Date,Price (EUR/MWhe)``   long format (one file, many
                                                           countries): ``country`` selects
                                                           one; duplicate dates on
                                                           clock-change days; empty prices
===========  ============================================  ===================================

Missing values are skipped and counted. Negative and zero prices are kept exactly as written
(WTI settled at -36.98 on 2020-04-20; power is often negative). Anything malformed raises a
:class:`ValueError` that names the file and the line: a bad date, a non-numeric or non-finite
value, a wrong number of fields, an unknown header, dates going backwards (or repeating, outside
Ember), an empty file or a file without a single value.

**Ember duplicate dates.** On and next to European clock-change days the Ember file holds two
rows with different prices for the same (country, date) (34 pairs, all United Kingdom and
Ireland): two daily averages built over differently cut days, with nothing saying which one is
right. The reader keeps **the arithmetic mean of the duplicates**: unlike "first" or "last" it
does not depend on the row order of the file, it lies between the two published figures (so it
never invents a level the source did not print), and it keeps exactly one price per day, which
the replay and any return series need. The number of dates resolved this way is counted in
:attr:`PriceSeries.duplicates`.

Only the standard library ``csv`` module and numpy are used (no pandas), so the feed server can
read history without the heavy imports.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from app.models.catalogue import PRODUCT_BY_CODE

__all__ = [
    "DATAHUB",
    "EMBER",
    "FRED",
    "PriceSeries",
    "SeriesMapping",
    "ember_countries",
    "parse_mapping_spec",
    "read_ember",
    "read_series",
]

DATAHUB = "datahub"
FRED = "fred"
EMBER = "ember"

_HEADERS: dict[tuple[str, ...], str] = {
    ("date", "price"): DATAHUB,
    ("date", "value"): FRED,
}
_EMBER_PREFIX = ("country", "iso3 code", "date")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MISSING = ("", ".")


@dataclass(frozen=True, eq=False)
class PriceSeries:
    """A daily price series as read from one file (one country for the Ember file).

    Attributes
    ----------
    name : str
        Series name: the file stem (``wti-daily``, ``DCOILWTICO``) or the Ember country name.
    dates : np.ndarray
        ``datetime64[D]`` observation dates, strictly increasing, read-only.
    values : np.ndarray
        ``float64`` prices, same length as ``dates``, read-only, kept exactly as written
        (negative and zero prices included).
    source : str
        Human-readable description: file path, format and (Ember) country.
    rows : int
        Data rows read for this series (header excluded; for Ember only the selected
        country's rows), including missing and duplicate rows.
    missing : int
        Rows skipped because the value was missing (empty, or ``.`` in FRED files).
    duplicates : int
        Dates that appeared more than once (Ember only) and were replaced by the mean.
    """

    name: str
    dates: np.ndarray
    values: np.ndarray
    source: str
    rows: int = 0
    missing: int = 0
    duplicates: int = 0

    def __post_init__(self) -> None:
        dates = np.array(self.dates, dtype="datetime64[D]")
        values = np.array(self.values, dtype=float)
        if dates.ndim != 1 or dates.shape != values.shape:
            raise ValueError(f"{self.name}: dates and values must be 1-D arrays of equal length")
        if dates.size > 1 and not np.all(np.diff(dates) > np.timedelta64(0, "D")):
            raise ValueError(f"{self.name}: dates must be strictly increasing")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{self.name}: values must be finite")
        dates.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "dates", dates)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return int(self.dates.size)

    @property
    def first(self) -> date:
        """First observation date."""
        return _to_date(self.dates[0])

    @property
    def last(self) -> date:
        """Last observation date."""
        return _to_date(self.dates[-1])

    def value_on(self, day: date) -> float | None:
        """Price on ``day``, ``None`` when the series has no value that day."""
        d = np.datetime64(day, "D")
        i = int(np.searchsorted(self.dates, d))
        if i < self.dates.size and self.dates[i] == d:
            return float(self.values[i])
        return None


def _to_date(d: np.datetime64) -> date:
    return date.fromisoformat(str(d.astype("datetime64[D]")))


# --------------------------------------------------------------------------- reading


def _where(path: Path, line: int) -> str:
    return f"{path}, line {line}"


def _parse_date(text: str, path: Path, line: int) -> date:
    s = text.strip()
    if _DATE_RE.match(s):
        try:
            return date.fromisoformat(s)
        except ValueError:
            pass
    raise ValueError(f"{_where(path, line)}: bad date {text!r} (expected YYYY-MM-DD)")


def _parse_value(text: str, path: Path, line: int) -> float | None:
    s = text.strip()
    if s in _MISSING:
        return None
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"{_where(path, line)}: value {text!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"{_where(path, line)}: value {text!r} is not a finite number")
    return v


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` for every non-blank row, header included."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"{path}: cannot open: {exc.strerror or exc}") from exc
    with fh:
        reader = csv.reader(fh)
        try:
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank line (e.g. a trailing empty line)
                yield reader.line_num, fields
        except (csv.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"{_where(path, reader.line_num)}: unreadable CSV: {exc}") from exc


def _detect(header: list[str], path: Path, line: int) -> str:
    norm = tuple(h.strip().lower() for h in header)
    fmt = _HEADERS.get(norm)
    if fmt is not None:
        return fmt
    if len(norm) == 4 and norm[:3] == _EMBER_PREFIX and norm[3].startswith("price"):
        return EMBER
    raise ValueError(
        f"{_where(path, line)}: unknown header {','.join(header)!r}; expected 'Date,Price' "
        "(datahub/EIA), 'DATE,VALUE' (FRED) or 'Country,ISO3 Code,Date,Price (EUR/MWhe)' (Ember)"
    )


def read_series(path: str | Path, *, country: str | None = None) -> PriceSeries:
    """Read a daily price series, detecting the format from the header.

    Parameters
    ----------
    path : str or Path
        A datahub (``Date,Price``), FRED (``DATE,VALUE``) or Ember long-format CSV file.
    country : str, optional
        Ember only, required there: country name (``Germany``) or ISO3 code (``DEU``),
        case-insensitive.

    Returns
    -------
    PriceSeries
        Strictly increasing dates with their values; missing values skipped and counted,
        Ember duplicate dates replaced by the mean of the duplicates and counted.

    Raises
    ------
    ValueError
        For a missing or unreadable file, an empty file, an unknown header, a malformed row
        (wrong field count, bad date, non-numeric value), dates going backwards, a repeated
        date outside Ember, a file without any value, a ``country`` given for a non-Ember file,
        or a missing / unknown Ember country (the message lists the available countries).
        Row-level messages name the file and the line.
    """
    p = Path(path)
    rows = _rows(p)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{p}: empty file (no header, no data)")
    header_line, header = first
    fmt = _detect(header, p, header_line)
    if fmt == EMBER:
        return _read_ember(p, rows, country)
    if country is not None:
        raise ValueError(f"{p}: country={country!r} applies only to the Ember long format")
    return _read_two_column(p, fmt, rows)


def _read_two_column(path: Path, fmt: str, rows: Iterator[tuple[int, list[str]]]) -> PriceSeries:
    dates: list[date] = []
    values: list[float] = []
    n_rows = n_missing = 0
    prev: date | None = None
    prev_line = 0
    for line, fields in rows:
        if len(fields) != 2:
            raise ValueError(f"{_where(path, line)}: expected 2 fields, got {len(fields)}")
        n_rows += 1
        d = _parse_date(fields[0], path, line)
        if prev is not None and d <= prev:
            what = "repeats" if d == prev else "goes backwards from"
            raise ValueError(
                f"{_where(path, line)}: date {d} {what} {prev} (line {prev_line}); "
                "dates must be strictly increasing"
            )
        prev, prev_line = d, line
        v = _parse_value(fields[1], path, line)
        if v is None:
            n_missing += 1
            continue
        dates.append(d)
        values.append(v)
    if not values:
        raise ValueError(f"{path}: no values ({n_rows} data rows, {n_missing} missing)")
    label = "datahub Date,Price" if fmt == DATAHUB else "FRED DATE,VALUE"
    return PriceSeries(
        name=path.stem,
        dates=np.array(dates, dtype="datetime64[D]"),
        values=np.array(values, dtype=float),
        source=f"{path} ({label})",
        rows=n_rows,
        missing=n_missing,
    )


class _EmberAcc:
    """One Ember country being read: distinct dates, sums and counts of their values."""

    __slots__ = (
        "counts",
        "days",
        "dup",
        "iso3",
        "missing",
        "name",
        "prev",
        "prev_line",
        "rows",
        "sums",
    )

    def __init__(self, name: str, iso3: str) -> None:
        self.name, self.iso3 = name, iso3
        self.days: list[date] = []
        self.sums: list[float] = []
        self.counts: list[int] = []
        self.rows = self.missing = self.dup = 0
        self.prev: date | None = None
        self.prev_line = 0

    def add(self, d: date, v: float | None, path: Path, line: int) -> None:
        self.rows += 1
        if self.prev is not None and d < self.prev:
            raise ValueError(
                f"{_where(path, line)}: date {d} for {self.name} goes backwards from {self.prev} "
                f"(line {self.prev_line})"
            )
        self.prev, self.prev_line = d, line
        if v is None:
            self.missing += 1
        elif self.days and self.days[-1] == d:
            if self.counts[-1] == 1:
                self.dup += 1
            self.sums[-1] += v
            self.counts[-1] += 1
        else:
            self.days.append(d)
            self.sums.append(v)
            self.counts.append(1)

    def series(self, path: Path) -> PriceSeries:
        label = f"{self.name} ({self.iso3})"
        if not self.days:
            raise ValueError(
                f"{path}: no values for {label} ({self.rows} rows, {self.missing} missing)"
            )
        return PriceSeries(
            name=self.name,
            dates=np.array(self.days, dtype="datetime64[D]"),
            values=np.array(self.sums, dtype=float) / np.array(self.counts, dtype=float),
            source=f"{path} (Ember long format, {label}; duplicate dates averaged)",
            rows=self.rows,
            missing=self.missing,
            duplicates=self.dup,
        )


def _scan_ember(
    path: Path, rows: Iterator[tuple[int, list[str]]], want: str | None, everything: bool
) -> tuple[dict[str, str], dict[str, _EmberAcc]]:
    """Countries (name -> ISO3) and the accumulated rows of the selected ones."""
    countries: dict[str, str] = {}
    accs: dict[str, _EmberAcc] = {}
    for line, fields in rows:
        if len(fields) != 4:
            raise ValueError(f"{_where(path, line)}: expected 4 fields, got {len(fields)}")
        cname, iso3 = fields[0].strip(), fields[1].strip()
        if not cname or not iso3:
            raise ValueError(f"{_where(path, line)}: empty country name or ISO3 code")
        countries.setdefault(cname, iso3)
        if not everything and (want is None or want not in (cname.lower(), iso3.lower())):
            continue
        acc = accs.get(cname)
        if acc is None:
            acc = accs[cname] = _EmberAcc(cname, iso3)
        acc.add(_parse_date(fields[2], path, line), _parse_value(fields[3], path, line), path, line)
    if not countries:
        raise ValueError(f"{path}: Ember file without data rows")
    return countries, accs


def _read_ember(
    path: Path, rows: Iterator[tuple[int, list[str]]], country: str | None
) -> PriceSeries:
    want = country.strip().lower() if country is not None else None
    countries, accs = _scan_ember(path, rows, want, everything=False)
    available = ", ".join(f"{n} ({c})" for n, c in sorted(countries.items()))
    if country is None:
        raise ValueError(
            f"{path}: Ember file holds {len(countries)} countries; choose one with country=... "
            f"(name or ISO3): {available}"
        )
    if not accs:
        raise ValueError(
            f"{path}: no country {country!r} in the Ember file; available: {available}"
        )
    return next(iter(accs.values())).series(path)


def _open_ember(path: str | Path) -> tuple[Path, Iterator[tuple[int, list[str]]]]:
    p = Path(path)
    rows = _rows(p)
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{p}: empty file (no header, no data)")
    if _detect(first[1], p, first[0]) != EMBER:
        raise ValueError(f"{p}: not an Ember long-format file")
    return p, rows


def read_ember(path: str | Path) -> dict[str, PriceSeries]:
    """Every country of an Ember long-format file in one pass.

    Returns
    -------
    dict of str -> PriceSeries
        Country name -> series, in order of first appearance (same rules as
        :func:`read_series`).

    Raises
    ------
    ValueError
        If the file is not an Ember file or anything in it is malformed (file and line named).
    """
    p, rows = _open_ember(path)
    countries, accs = _scan_ember(p, rows, None, everything=True)
    return {name: accs[name].series(p) for name in countries}


def ember_countries(path: str | Path) -> dict[str, str]:
    """Countries of an Ember long-format file: name -> ISO3 code, in order of first appearance.

    Raises
    ------
    ValueError
        If the file is not an Ember file or a row has the wrong number of fields.
    """
    p, rows = _open_ember(path)
    countries, _ = _scan_ember(p, rows, "", everything=False)
    return countries


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class SeriesMapping:
    """Which product a historical series drives in a replay.

    Attributes
    ----------
    path : Path
        The CSV file (any format :func:`read_series` reads).
    product : str
        Catalogue product code (``CR-WTI``); its ``SPOT`` instrument replays the series.
    country : str or None
        Ember country (name or ISO3), ``None`` for single-series files.
    label : str
        Display name; defaults to the file name (plus ``@country``).
    """

    path: Path
    product: str
    country: str | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.product not in PRODUCT_BY_CODE:
            known = ", ".join(PRODUCT_BY_CODE)
            raise ValueError(f"unknown product {self.product!r}; known products: {known}")
        if self.country is not None and not self.country.strip():
            raise ValueError("country must not be blank")
        if not self.label:
            suffix = f"@{self.country}" if self.country else ""
            object.__setattr__(self, "label", f"{self.path.name}{suffix}")

    def load(self) -> PriceSeries:
        """Read the series (see :func:`read_series`)."""
        return read_series(self.path, country=self.country)

    def spec(self) -> str:
        """The ``PATH=PRODUCT[@COUNTRY]`` text this mapping parses from."""
        suffix = f"@{self.country}" if self.country else ""
        return f"{self.path}={self.product}{suffix}"


def parse_mapping_spec(text: str) -> SeriesMapping:
    """Parse a user mapping ``PATH=PRODUCT[@COUNTRY]``.

    Examples: ``/data/wti.csv=CR-WTI``, ``/data/ember.csv=PWR-DE-BASE@DEU``. The path is
    everything before the *last* ``=`` (paths may contain ``=`` and ``@``); the file is not
    opened here.

    Raises
    ------
    ValueError
        If the text has no ``=``, an empty path, an unknown product code or an empty country.
    """
    path, sep, rest = text.strip().rpartition("=")
    if not sep or not path.strip():
        raise ValueError(f"mapping {text!r} is not PATH=PRODUCT[@COUNTRY]")
    product, at, country = rest.strip().partition("@")
    if at and not country.strip():
        raise ValueError(f"mapping {text!r}: empty country after '@'")
    return SeriesMapping(Path(path.strip()), product.strip(), country.strip() if at else None)
