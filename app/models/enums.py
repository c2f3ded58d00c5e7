"""Enumerations of the trading domain.

Values are stored by *name* (upper-case) in the database, so renaming a label never migrates data.
``label`` gives the text shown to users.
"""

from __future__ import annotations

import enum


class _Labelled(enum.Enum):
    """Enum whose value is the user-facing label."""

    @property
    def label(self) -> str:
        return str(self.value)

    @classmethod
    def from_text(cls, text: str) -> _Labelled:
        """Parse a name or label, case-insensitively (``"buy"``, ``"BUY"`` and ``"Buy"`` all work).

        Raises ``ValueError`` listing the accepted values when nothing matches.
        """

        def norm(s: str) -> str:
            return " ".join(s.strip().lower().replace("-", " ").replace("_", " ").split())

        key = norm(text)
        for member in cls:
            if key in (norm(member.name), norm(str(member.value))):
                return member
        allowed = ", ".join(str(m.value) for m in cls)
        raise ValueError(f"'{text}' is not one of: {allowed}")


class Commodity(_Labelled):
    POWER = "Power"
    NATURAL_GAS = "Natural gas"
    CRUDE = "Crude oil"
    REFINED = "Refined products"


class Unit(_Labelled):
    MWH = "MWh"
    MMBTU = "MMBtu"
    THERM = "therm"
    BBL = "bbl"
    GAL = "gal"
    TONNE = "t"


class LoadShape(_Labelled):
    BASE = "Base"
    PEAK = "Peak"
    OFF_PEAK = "Off-peak"


class InstrumentType(_Labelled):
    PHYSICAL_FORWARD = "Physical forward"
    FUTURE = "Future"
    SWAP = "Fixed-for-floating swap"
    OPTION = "Option"


class Side(_Labelled):
    BUY = "Buy"
    SELL = "Sell"


class TradeStatus(_Labelled):
    """Lifecycle states. ``CANCELLED`` is terminal; trades are never deleted."""

    CAPTURED = "Captured"
    VALIDATED = "Validated"
    CONFIRMED = "Confirmed"
    ALLOCATED = "Allocated"
    SETTLED = "Settled"
    INVOICED = "Invoiced"
    PAID = "Paid"
    CANCELLED = "Cancelled"


class OptionType(_Labelled):
    CALL = "Call"
    PUT = "Put"


class ExerciseStyle(_Labelled):
    EUROPEAN = "European"
    AMERICAN = "American"
    ASIAN = "Asian"
