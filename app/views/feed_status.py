"""The price-feed indicator in the status bar: state, messages per second and last tick age."""

from __future__ import annotations

import time

from app.feed import market_state as ms
from app.feed.market_state import FeedStatus

_COLOURS = {
    ms.CONNECTED: "#2e7d32",
    ms.CONNECTING: "#8a6d00",
    ms.STALE: "#c62828",
    ms.RECONNECTING: "#c62828",
    ms.DISCONNECTED: "#c62828",
    ms.NOT_CONFIGURED: "#666",
}


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(status: FeedStatus, now: float | None = None) -> tuple[str, str, str]:
    """``(text, tooltip, css)`` for the status-bar label; honest about staleness and age."""
    now = time.time() if now is None else now
    age = status.tick_age(now)
    age_text = "no tick yet" if age is None else f"last tick {_age(age)} ago"
    mode = f" ({status.mode})" if status.mode else ""
    if status.state == ms.CONNECTED:
        text = f"Price feed{mode}: connected · {status.msgs_per_sec:,.0f} msg/s · {age_text}"
    elif status.state == ms.STALE:
        text = f"Price feed{mode}: STALE · {age_text}"
    elif status.state == ms.RECONNECTING:
        text = f"Price feed: reconnecting… · {age_text}"
    elif status.state == ms.CONNECTING:
        text = "Price feed: connecting…"
    elif status.state == ms.DISCONNECTED:
        text = "Price feed: disconnected"
    else:
        text = "Price feed: not configured"
    tip = [f"State: {status.state}"]
    if status.url:
        tip.append(f"Feed: {status.url}")
    if status.detail:
        tip.append(status.detail)
    tip.append(
        f"Gaps healed: {status.gaps} · resyncs: {status.resyncs} · reconnects: {status.reconnects}"
    )
    css = f"color: {_COLOURS.get(status.state, '#666')};"
    if status.state in (ms.STALE, ms.RECONNECTING, ms.DISCONNECTED):
        css += " font-weight: bold;"
    return text, "\n".join(tip), css
