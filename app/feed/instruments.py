"""Feed instruments: forward contracts per product and tenor, named ``PRODUCT:TENOR``.

Tenor codes (delivery periods are inclusive calendar-date ranges, as in
:mod:`app.engine.curves`):

==========  ==============  ===================================================
kind        tenor code      delivery
==========  ==============  ===================================================
spot        ``SPOT``        the next delivery day (day-ahead power, next-day gas,
                            dated crude) — the instrument historical spot series map to
month       ``2027-01``     January 2027
quarter     ``2027-Q1``     January to March 2027
season      ``2027-SUM``    April to September 2027 (power and gas only)
season      ``2027-WIN``    October 2027 to March 2028 (power and gas only)
cal         ``2027-CAL``    calendar year 2027
==========  ==============  ===================================================

So ``NG-TTF:2027-Q1`` is TTF gas delivered in the first quarter of 2027. Units and currencies
are those of the product in :mod:`app.models.catalogue`. Subscriptions use shell-style
patterns over these identifiers (``NG-*:*``, ``*:2027-*``, ``PWR-DE-BASE:*``).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from fnmatch import fnmatchcase

from app.models.catalogue import PRODUCT_BY_CODE, PRODUCT_SPECS, ProductSpec
from app.models.enums import Commodity

__all__ = [
    "KIND_ORDER",
    "Instrument",
    "build_instruments",
    "curve_months",
    "instrument_id",
    "matches",
    "parse_instrument",
]

KIND_ORDER = ("spot", "month", "quarter", "season", "cal")
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER_RE = re.compile(r"^(\d{4})-Q([1-4])$")
_SEASON_RE = re.compile(r"^(\d{4})-(SUM|WIN)$")
_CAL_RE = re.compile(r"^(\d{4})-CAL$")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One quoted forward contract (or the spot/day-ahead price) of a product."""

    id: str
    product: str
    kind: str
    tenor: str
    start: date
    end: date

    @property
    def spec(self) -> ProductSpec | None:
        """The product's conventions (unit, currency ...), ``None`` for a product not in the catalogue."""
        return PRODUCT_BY_CODE.get(self.product)

    @property
    def label(self) -> str:
        """Short trader label: ``Spot``, ``Jan-27``, ``Q1-27``, ``Sum-27``, ``Win-27``, ``Cal-27``."""
        yy = f"{self.start.year % 100:02d}"
        if self.kind == "spot":
            return "Spot"
        if self.kind == "month":
            return f"{calendar.month_abbr[self.start.month]}-{yy}"
        if self.kind == "quarter":
            return f"Q{(self.start.month - 1) // 3 + 1}-{yy}"
        if self.kind == "season":
            return ("Sum-" if self.start.month == 4 else "Win-") + yy
        return f"Cal-{yy}"

    @property
    def sort_key(self) -> tuple[str, int, date]:
        return (self.product, KIND_ORDER.index(self.kind), self.start)


def instrument_id(product: str, tenor: str) -> str:
    return f"{product}:{tenor}"


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def parse_instrument(text: str, as_of: date | None = None) -> Instrument:
    """Parse ``PRODUCT:TENOR``; ``SPOT`` needs ``as_of`` for its delivery day (default: today).

    Raises ValueError with the reason for anything malformed.
    """
    if not isinstance(text, str) or text.count(":") != 1:
        raise ValueError(f"instrument {text!r} is not PRODUCT:TENOR")
    product, tenor = text.split(":")
    if not product or not re.fullmatch(r"[A-Z0-9][A-Z0-9-]{0,31}", product):
        raise ValueError(f"instrument {text!r}: bad product code {product!r}")
    if tenor == "SPOT":
        day = (as_of or date.today()) + timedelta(days=1)
        return Instrument(text, product, "spot", tenor, day, day)
    if m := _MONTH_RE.match(tenor):
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            raise ValueError(f"instrument {text!r}: month {mo} out of range")
        return Instrument(text, product, "month", tenor, date(y, mo, 1), _month_end(y, mo))
    if m := _QUARTER_RE.match(tenor):
        y, q = int(m.group(1)), int(m.group(2))
        first = 3 * (q - 1) + 1
        return Instrument(
            text, product, "quarter", tenor, date(y, first, 1), _month_end(y, first + 2)
        )
    if m := _SEASON_RE.match(tenor):
        y = int(m.group(1))
        if m.group(2) == "SUM":
            return Instrument(text, product, "season", tenor, date(y, 4, 1), date(y, 9, 30))
        return Instrument(text, product, "season", tenor, date(y, 10, 1), date(y + 1, 3, 31))
    if m := _CAL_RE.match(tenor):
        y = int(m.group(1))
        return Instrument(text, product, "cal", tenor, date(y, 1, 1), date(y, 12, 31))
    raise ValueError(f"instrument {text!r}: unknown tenor {tenor!r}")


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    k = year * 12 + (month - 1) + n
    return k // 12, k % 12 + 1


def build_instruments(
    as_of: date,
    products: Iterable[ProductSpec] = PRODUCT_SPECS,
    *,
    months: int = 24,
    quarters: int = 8,
    seasons: int = 4,
    cals: int = 3,
) -> list[Instrument]:
    """The quoted instruments on ``as_of``: spot, then the next ``months`` months, ``quarters``
    quarters, ``seasons`` seasons (power and gas) and ``cals`` calendar years, each starting
    strictly after the current month / quarter / season / year."""
    out: list[Instrument] = []
    for p in products:
        code = p.code
        out.append(parse_instrument(instrument_id(code, "SPOT"), as_of))
        for n in range(1, months + 1):
            y, m = _add_months(as_of.year, as_of.month, n)
            out.append(parse_instrument(instrument_id(code, f"{y}-{m:02d}")))
        q0 = (as_of.month - 1) // 3
        for n in range(1, quarters + 1):
            k = as_of.year * 4 + q0 + n
            out.append(parse_instrument(instrument_id(code, f"{k // 4}-Q{k % 4 + 1}")))
        if p.commodity in (Commodity.POWER, Commodity.NATURAL_GAS):
            # Seasons alternate Sum (Apr-Sep) / Win (Oct-Mar); the first starts after today.
            y = as_of.year
            code_s = "SUM" if as_of.month < 4 else "WIN" if as_of.month < 10 else "SUM"
            if as_of.month >= 10:
                y += 1
            for _ in range(seasons):
                out.append(parse_instrument(instrument_id(code, f"{y}-{code_s}")))
                if code_s == "SUM":
                    code_s = "WIN"
                else:
                    code_s, y = "SUM", y + 1
        for n in range(1, cals + 1):
            out.append(parse_instrument(instrument_id(code, f"{as_of.year + n}-CAL")))
    return out


def curve_months(as_of: date, instruments: Iterable[Instrument]) -> tuple[str, int]:
    """First month (``YYYY-MM``, the month after ``as_of``) and the number of monthly points a
    curve needs so every forward instrument's delivery period lies on it."""
    y, m = _add_months(as_of.year, as_of.month, 1)
    last = max((i.end for i in instruments if i.kind != "spot"), default=date(y, m, 1))
    n = (last.year * 12 + last.month) - (y * 12 + m) + 1
    return f"{y}-{m:02d}", max(n, 1)


def matches(pattern: str, instrument: str) -> bool:
    """Shell-style, case-sensitive match of a subscription pattern against an instrument id."""
    return fnmatchcase(instrument, pattern)
