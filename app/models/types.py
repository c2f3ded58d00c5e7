"""Column types that behave identically on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator

#: Decimal places kept for quantities and prices. Storage is exact: a value with more places is
#: rejected, never rounded silently.
QUANTITY_PLACES = 3
PRICE_PLACES = 6


class ExactDecimal(TypeDecorator[Decimal]):
    """A ``Decimal`` stored as a scaled 64-bit integer (``value * 10**places``).

    SQLite has no exact decimal type (its NUMERIC affinity stores floats), so both back ends store
    the same scaled integer: arithmetic in SQL stays exact and the blotter can read a million rows
    straight into numpy ``int64`` arrays. Range: about +/-9.2e18 / 10**places.
    """

    impl = BigInteger
    cache_ok = True

    def __init__(self, places: int) -> None:
        super().__init__()
        self.places = places
        self.scale = 10**places

    def process_bind_param(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return to_scaled(value, self.places)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)).scaleb(-self.places)


def to_scaled(value: Any, places: int) -> int:
    """Exact ``Decimal``-compatible value -> scaled integer; ``ValueError`` if it needs rounding."""
    if isinstance(value, float):
        # Floats arrive from spreadsheets; their shortest repr is the number the user typed.
        value = repr(value)
    try:
        dec = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ValueError(f"'{value}' is not a number") from exc
    if not dec.is_finite():
        raise ValueError(f"'{value}' is not a finite number")
    scaled = dec.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {places} decimal places")
    return int(scaled)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC timestamps on both back ends (SQLite drops the offset otherwise)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware UTC timestamp")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)
