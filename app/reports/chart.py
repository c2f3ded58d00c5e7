"""The scenario P&L histogram of one currency as a small, self-contained SVG (no Qt, no plotting
library): the same picture goes inline into the HTML report and, through fpdf2's SVG support,
into the PDF one.

Only plain SVG 1.1 elements (``rect``, ``line``, ``polyline``, ``text``) with presentation
attributes are used, and text is ASCII, so every renderer (browsers, fpdf2) draws it alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

__all__ = ["Histogram", "histogram", "histogram_svg"]

BAR = "#5a82c8"
TAIL = "#c85046"
VAR_COLOR = "#c87800"
ES_COLOR = "#b40000"
_FONT = 'font-family="Helvetica, Arial, sans-serif"'


@dataclass(frozen=True)
class Histogram:
    """Bins of a scenario P&L: ``counts[i]`` scenarios in ``[edges[i], edges[i + 1])``."""

    edges: np.ndarray
    counts: np.ndarray

    def tail(self, var: float) -> np.ndarray:
        """Bins lying (at least partly) beyond the VaR, as the Risk panel colours them."""
        return self.edges[:-1] < -var


def histogram(pnl: np.ndarray) -> Histogram:
    """The Risk panel's binning: ``pnl.size // 10`` bins, clipped to 10..60."""
    counts, edges = np.histogram(pnl, bins=min(60, max(10, pnl.size // 10)))
    return Histogram(edges, counts)


def _short(x: float) -> str:
    """Tick label: ``-1.2M``, ``250k``, ``12``."""
    a = abs(x)
    if a >= 1e9:
        s = f"{x / 1e9:.3g}G"
    elif a >= 1e6:
        s = f"{x / 1e6:.3g}M"
    elif a >= 1e3:
        s = f"{x / 1e3:.3g}k"
    else:
        s = f"{x:.3g}"
    return "0" if s in ("-0", "0") else s


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    """About ``n`` round tick values in ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo]
    raw = span / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "-"


def histogram_svg(
    *,
    currency: str,
    var: float,
    es: float,
    horizon_days: int,
    pnl: np.ndarray,
    sigma: float = math.nan,
    width: int = 640,
    height: int = 260,
) -> str | None:
    """The scenario P&L histogram (or, without scenarios, the normal density of ``sigma``) with
    the VaR and ES marked, as an SVG document; ``None`` when there is nothing to draw (the
    Cornish-Fisher method has neither scenarios nor a normal P&L)."""
    left, right, top, bottom = 62.0, 16.0, 30.0, 40.0
    pw, ph = width - left - right, height - top - bottom
    if pnl.size:
        h = histogram(pnl)
        lo, hi = float(min(h.edges[0], -es)), float(max(h.edges[-1], 0.0))
        ymax = float(h.counts.max()) or 1.0
        y_label = "scenarios"
    elif math.isfinite(sigma) and sigma > 0:
        lo, hi = -4.5 * sigma, 4.5 * sigma
        xs = np.linspace(lo, hi, 181)
        dens = np.exp(-0.5 * (xs / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
        ymax = float(dens.max())
        y_label = "density"
    else:
        return None
    pad = 0.03 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad

    def sx(x: float) -> float:
        return left + (x - lo) / (hi - lo) * pw

    def sy(y: float) -> float:
        return top + ph - y / (ymax * 1.08) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    # grid and axes
    for t in _ticks(lo, hi):
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{top + ph:.1f}" '
                   'stroke="#e6e6e6" stroke-width="1"/>')  # fmt: skip
        out.append(f'<text x="{x:.1f}" y="{top + ph + 14:.1f}" font-size="10" {_FONT} '
                   f'text-anchor="middle" fill="#333333">{_short(t)}</text>')  # fmt: skip
    for t in _ticks(0.0, ymax * 1.08, 4):
        y = sy(t)
        label = _short(t) if y_label == "scenarios" else f"{t:.2g}"
        out.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{left + pw:.1f}" y2="{y:.1f}" '
                   'stroke="#e6e6e6" stroke-width="1"/>')  # fmt: skip
        out.append(f'<text x="{left - 5:.1f}" y="{y + 3:.1f}" font-size="10" {_FONT} '
                   f'text-anchor="end" fill="#333333">{label}</text>')  # fmt: skip
    if pnl.size:
        tail = h.tail(var)
        for i in range(h.counts.size):
            if h.counts[i] == 0:
                continue
            x0, x1 = sx(float(h.edges[i])), sx(float(h.edges[i + 1]))
            y = sy(float(h.counts[i]))
            out.append(
                f'<rect x="{x0:.2f}" y="{y:.2f}" width="{max(x1 - x0, 0.5):.2f}" '
                f'height="{top + ph - y:.2f}" fill="{TAIL if tail[i] else BAR}" '
                'stroke="#3c3c3c" stroke-width="0.3"/>'
            )
    else:
        pts = " ".join(
            f"{sx(float(x)):.1f},{sy(float(y)):.1f}" for x, y in zip(xs, dens, strict=True)
        )
        out.append(f'<polyline points="{pts}" fill="none" stroke="{BAR}" stroke-width="2"/>')
    out.append(f'<line x1="{left:.1f}" y1="{top + ph:.1f}" x2="{left + pw:.1f}" '
               f'y2="{top + ph:.1f}" stroke="#333333" stroke-width="1"/>')  # fmt: skip
    out.append(f'<line x1="{left:.1f}" y1="{top:.1f}" x2="{left:.1f}" y2="{top + ph:.1f}" '
               'stroke="#333333" stroke-width="1"/>')  # fmt: skip
    # VaR and ES markers, labelled at the top, ES to the left of its line (it lies further out)
    for value, color, label, anchor, dx in (
        (-var, VAR_COLOR, f"VaR {_money(var)}", "start", 4),
        (-es, ES_COLOR, f"ES {_money(es)}", "end", -4),
    ):
        x = sx(value)
        out.append(f'<line x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{top + ph:.1f}" '
                   f'stroke="{color}" stroke-width="2" stroke-dasharray="6,4"/>')  # fmt: skip
        out.append(f'<text x="{x + dx:.1f}" y="{top - 8:.1f}" font-size="11" {_FONT} '
                   f'text-anchor="{anchor}" fill="{color}">{escape(label)}</text>')  # fmt: skip
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6:.1f}" font-size="11" {_FONT} '
               f'text-anchor="middle" fill="#333333">{horizon_days}-day P&amp;L '
               f"({escape(currency)})</text>")  # fmt: skip
    out.append(f'<text x="12" y="{top + ph / 2:.1f}" font-size="11" {_FONT} text-anchor="middle" '
               f'fill="#333333" transform="rotate(-90 12 {top + ph / 2:.1f})">{y_label}</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)
