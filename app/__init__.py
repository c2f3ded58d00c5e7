"""QuantaEnergi Workstation: a desktop energy trading and risk management workstation."""

from __future__ import annotations

__version__ = "0.1.0"
