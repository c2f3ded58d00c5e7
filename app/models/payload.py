"""The wire form of a trade version, shared by the outbox, the central database and the audit.

A payload is a flat JSON object: natural keys instead of local ids (``book`` name,
``counterparty_lei``, ``product`` code), enum *names*, decimals as scaled integers (exactly what
both databases store), dates as ISO text, timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. The
central ``qe_trade_payload`` renders a stored row in the same form, so economics compare equal
across desks, and the canonical text (sorted keys, no spaces) is what the idempotency hash
covers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from app.models.audit import format_ts
from app.models.enums import ExerciseStyle, InstrumentType, OptionType, Side, TradeStatus, Unit
from app.models.types import PRICE_PLACES, QUANTITY_PLACES, to_scaled

#: Payload keys that make up a trade's economics (same list as the central SQL).
ECONOMIC_KEYS = (
    "book", "counterparty_lei", "product", "instrument", "side", "quantity", "quantity_unit",
    "price", "currency", "trade_date", "delivery_start", "delivery_end", "option_type",
    "strike", "expiry_date", "exercise_style", "premium", "comment",
)  # fmt: skip

_ENUMS: dict[str, Any] = {
    "instrument": InstrumentType,
    "side": Side,
    "quantity_unit": Unit,
    "status": TradeStatus,
    "option_type": OptionType,
    "exercise_style": ExerciseStyle,
}
_SCALED = {"quantity": QUANTITY_PLACES, "price": PRICE_PLACES, "strike": PRICE_PLACES,
           "premium": PRICE_PLACES}  # fmt: skip
_DATES = ("trade_date", "delivery_start", "delivery_end", "expiry_date")
_TIMES = ("created_at", "updated_at")


class UnknownReference(LookupError):
    """A payload names a book, counterparty or product this store does not have."""


def canonical(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 (the hashed form)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def trade_payload(
    version: Any, book_name: str, counterparty_lei: str, product_code: str
) -> dict[str, Any]:
    """The payload of one trade version (an ORM ``Trade`` or a ``TradeRecord``)."""
    out: dict[str, Any] = {
        "trade_uuid": version.trade_uuid.hex,
        "version": int(version.version),
        "book": book_name,
        "counterparty_lei": counterparty_lei,
        "product": product_code,
        "currency": version.currency,
        "comment": version.comment or "",
        "created_by": version.created_by,
        "updated_by": version.updated_by,
    }
    for key in _ENUMS:
        v = getattr(version, key)
        out[key] = None if v is None else v.name
    for key, places in _SCALED.items():
        v = getattr(version, key)
        out[key] = None if v is None else to_scaled(v, places)
    for key in _DATES:
        v = getattr(version, key)
        out[key] = None if v is None else v.isoformat()
    for key in _TIMES:
        out[key] = format_ts(getattr(version, key))
    return out


def economics_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The economic part of a payload (for comparisons and the conflict view)."""
    return {k: payload.get(k) for k in ECONOMIC_KEYS}


def columns_from_payload(
    payload: Mapping[str, Any],
    book_ids: Mapping[str, int],
    counterparty_ids: Mapping[str, int],
    product_ids: Mapping[str, int],
) -> dict[str, Any]:
    """ORM ``Trade`` column values (local ids) for a pulled payload; raises
    :class:`UnknownReference` for a name this store does not know."""
    try:
        cols: dict[str, Any] = {
            "book_id": book_ids[payload["book"]],
            "counterparty_id": counterparty_ids[payload["counterparty_lei"]],
            "product_id": product_ids[payload["product"]],
        }
    except KeyError as exc:
        raise UnknownReference(f"unknown reference {exc.args[0]!r}") from None
    cols["trade_uuid"] = uuid.UUID(payload["trade_uuid"])
    cols["version"] = int(payload["version"])
    cols["currency"] = payload["currency"]
    cols["comment"] = payload.get("comment") or ""
    cols["created_by"] = payload["created_by"]
    cols["updated_by"] = payload["updated_by"]
    for key, cls in _ENUMS.items():
        v = payload.get(key)
        cols[key] = None if v is None else cls[v]
    for key, places in _SCALED.items():
        v = payload.get(key)
        cols[key] = None if v is None else Decimal(int(v)).scaleb(-places)
    for key in _DATES:
        v = payload.get(key)
        cols[key] = None if v is None else dt.date.fromisoformat(v)
    for key in _TIMES:
        cols[key] = parse_ts(payload[key])
    return cols


def parse_ts(text: str) -> dt.datetime:
    """Parse a payload timestamp (``...Z``) to an aware UTC datetime."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
