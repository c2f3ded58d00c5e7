"""The standard product list a desk trades: one plain catalogue for the store, the feed and the pricer.

No database and no Qt here, so the feed server and the pricer can read it without SQLAlchemy.
``typical_level`` is a realistic late-2026 price level (currency per unit) used to centre demo
trades, the feed simulator's starting curves when no history is available, and pricer defaults.
``lot`` is the usual demo trade size in units.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.enums import Commodity, LoadShape, Unit


@dataclass(frozen=True, slots=True)
class ProductSpec:
    """One tradeable product (hub + load shape) and its contract conventions."""

    code: str
    name: str
    commodity: Commodity
    hub: str
    unit: Unit
    currency: str
    contract_size: str
    load_shape: LoadShape | None
    price_floor: str
    price_cap: str
    typical_level: float
    lot: int

    @property
    def weights(self) -> str:
        """Day weighting for averaging a monthly curve: delivery hours for power, days otherwise."""
        return "hours" if self.commodity is Commodity.POWER else "days"


PRODUCT_SPECS: tuple[ProductSpec, ...] = (
    ProductSpec(
        "PWR-DE-BASE",
        "EEX German Power Base",
        Commodity.POWER,
        "EEX German power",
        Unit.MWH,
        "EUR",
        "1",
        LoadShape.BASE,
        "-500",
        "4000",
        88.0,
        720,
    ),
    ProductSpec(
        "PWR-DE-PEAK",
        "EEX German Power Peak",
        Commodity.POWER,
        "EEX German power",
        Unit.MWH,
        "EUR",
        "1",
        LoadShape.PEAK,
        "-500",
        "4000",
        101.0,
        264,
    ),
    ProductSpec(
        "PWR-PJMW-PEAK",
        "PJM West Hub Peak",
        Commodity.POWER,
        "PJM West",
        Unit.MWH,
        "USD",
        "1",
        LoadShape.PEAK,
        "-500",
        "3000",
        58.0,
        800,
    ),
    ProductSpec(
        "PWR-PJMW-OFFPK",
        "PJM West Hub Off-peak",
        Commodity.POWER,
        "PJM West",
        Unit.MWH,
        "USD",
        "1",
        LoadShape.OFF_PEAK,
        "-500",
        "3000",
        39.0,
        1000,
    ),
    ProductSpec(
        "NG-HH",
        "Henry Hub Natural Gas",
        Commodity.NATURAL_GAS,
        "Henry Hub",
        Unit.MMBTU,
        "USD",
        "10000",
        None,
        "-5",
        "100",
        3.40,
        10000,
    ),
    ProductSpec(
        "NG-TTF",
        "TTF Natural Gas",
        Commodity.NATURAL_GAS,
        "TTF",
        Unit.MWH,
        "EUR",
        "1",
        None,
        "-20",
        "500",
        33.5,
        720,
    ),
    ProductSpec(
        "NG-NBP",
        "NBP Natural Gas",
        Commodity.NATURAL_GAS,
        "NBP",
        Unit.THERM,
        "GBP",
        "1000",
        None,
        "-0.5",
        "8",
        0.84,
        30000,
    ),
    ProductSpec(
        "CR-BRENT",
        "Brent Crude",
        Commodity.CRUDE,
        "Brent",
        Unit.BBL,
        "USD",
        "1000",
        None,
        "-50",
        "300",
        74.0,
        1000,
    ),
    ProductSpec(
        "CR-WTI",
        "WTI Crude (Cushing)",
        Commodity.CRUDE,
        "WTI Cushing",
        Unit.BBL,
        "USD",
        "1000",
        None,
        "-60",
        "300",
        70.0,
        1000,
    ),
    ProductSpec(
        "RP-ULSD-NYH",
        "NY Harbor ULSD",
        Commodity.REFINED,
        "NY Harbor ULSD",
        Unit.GAL,
        "USD",
        "42000",
        None,
        "-1",
        "10",
        2.38,
        42000,
    ),
    ProductSpec(
        "RP-RBOB-NYH",
        "NY Harbor RBOB Gasoline",
        Commodity.REFINED,
        "RBOB",
        Unit.GAL,
        "USD",
        "42000",
        None,
        "-1",
        "10",
        2.12,
        42000,
    ),
    ProductSpec(
        "RP-GASOIL",
        "ICE Low Sulphur Gasoil",
        Commodity.REFINED,
        "ARA",
        Unit.TONNE,
        "USD",
        "100",
        None,
        "-100",
        "3000",
        690.0,
        100,
    ),
)

PRODUCT_BY_CODE: dict[str, ProductSpec] = {p.code: p for p in PRODUCT_SPECS}
