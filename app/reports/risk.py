"""The VaR/ES risk report of one :class:`~app.services.risk.RiskResult`, as HTML, Excel (.xlsx)
or PDF, chosen by the file's extension (:data:`FORMATS`).

:func:`write_report` is the one entry point: the command line (``quantaenergi risk report``,
:mod:`app.reports.headless`) and the Risk dock (on a worker thread, from the result on screen)
write the same document. Contents: title, as-of, book scope, method settings, VaR and ES per
currency (with the Monte Carlo confidence interval of the VaR), the method note
(:meth:`RiskResult.note`, verbatim) and how the positions were marked, per currency the histogram
of the scenario P&L (an SVG drawn by :mod:`app.reports.chart`; the parametric method shows the
normal density) and the ES contributions, and a positions summary of the book scope.

No Qt. The document is built once (:class:`_Table` rows with raw numbers) and rendered by three
small writers: numbers stay numbers in Excel (the VaR cell is the float the service returned),
HTML cells carry the exact value in ``data-value``. PDF uses fpdf2's core fonts, so its text is
mapped to Latin-1 (dashes, ellipses and the like; anything else becomes ``?``). Files are written
atomically (temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from app import __version__
from app.reports.chart import histogram, histogram_svg
from app.services.risk import GROUP_BY, METHODS, CurrencyRisk, RiskInputs, RiskResult

__all__ = ["FORMATS", "ReportError", "check_output_path", "report_format", "write_report"]

#: File extension -> format.
FORMATS: dict[str, str] = {".html": "html", ".htm": "html", ".xlsx": "xlsx", ".pdf": "pdf"}

TITLE = "QuantaEnergi risk report: VaR and ES"


class ReportError(Exception):
    """Bad input for a report (unknown format, unwritable path ...), with a one-line message."""


def report_format(path: str | Path) -> str:
    """``'html'``, ``'xlsx'`` or ``'pdf'`` from the extension of ``path`` (``ReportError``
    otherwise)."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise ReportError(f"cannot tell the report format from {str(path)!r}: use {known}")
    return FORMATS[ext]


def check_output_path(path: str | Path) -> Path:
    """``path`` resolved, after checking its format and that its folder exists and is writable
    (so a long calculation does not end in a failed write)."""
    p = Path(path).expanduser()
    report_format(p)
    folder = p.resolve().parent
    if p.is_dir():
        raise ReportError(f"{p} is a folder, not a file")
    if not folder.is_dir():
        raise ReportError(f"cannot write {p}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ReportError(f"cannot write {p}: permission denied")
    return p.resolve()


# --------------------------------------------------------------------------- document model

#: Column kinds: how each renderer formats a cell.
TEXT, MONEY, QTY, PCT, INT = "text", "money", "qty", "pct", "int"


@dataclass(frozen=True)
class _Table:
    title: str
    headers: tuple[str, ...]
    kinds: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    totals: list[tuple[Any, ...]] = field(default_factory=list)  # shown in bold


@dataclass(frozen=True)
class _Section:
    """One currency: its chart (SVG or ``None``) and its contributions."""

    currency: str
    risk: CurrencyRisk
    svg: str | None
    contributions: _Table


@dataclass(frozen=True)
class _Doc:
    title: str
    generated: str
    settings: list[tuple[str, str]]
    var_table: _Table
    notes: list[tuple[str, str]]  # (heading, paragraph)
    sections: list[_Section]
    positions: _Table
    totals: _Table


def _money(x: float) -> str:
    return f"{x:,.0f}" if math.isfinite(x) else "–"


def _cell_text(value: Any, kind: str) -> str:
    if value is None or value == "":
        return ""
    if kind == TEXT:
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return "–"
    if kind == PCT:
        return f"{x:.1%}"
    if kind == INT:
        return f"{int(x):,}"
    return f"{x:,.0f}"


def _scope(result: RiskResult) -> str:
    return "all books" if not result.books_filter else "book " + ", ".join(result.books_filter)


_MARKS = {"live": "live curve", "stale": "settlement (stale)", "missing": "no curve"}


def _positions(report: Any, books: Sequence[str]) -> tuple[_Table, _Table]:
    """Open positions of the book scope by (product, currency), and totals per currency."""
    val = report.valuation
    cols = report.snapshot.columns
    product = np.asarray(report.product, dtype=object)
    currency = np.asarray(report.currency, dtype=object)
    unit = np.asarray(report.unit, dtype=object)
    keep = np.asarray(val.open_qty) > 0
    if books:
        ref_books = report.snapshot.ref.books
        wanted = {b.casefold() for b in books}
        names = np.array([str(ref_books[int(b)].name).casefold() if int(b) in ref_books else ""
                          for b in cols["book_id"]], dtype=object)  # fmt: skip
        keep &= np.isin(names, list(wanted))
    mtm = np.asarray(val.mtm, dtype=float)
    delta = np.asarray(val.delta_qty, dtype=float)
    rows: list[tuple[Any, ...]] = []
    per_ccy: dict[str, list[float]] = {}
    for p, c in sorted({(str(p), str(c)) for p, c in zip(product[keep], currency[keep],
                                                           strict=True)}):  # fmt: skip
        m = keep & (product == p) & (currency == c)
        unmarked = int(np.isnan(mtm[m]).sum())
        units = sorted({str(u) for u in unit[m]})
        status = _MARKS.get(report.curve_status.get(p, "missing"), "")
        marks = status if not unmarked else f"{status}; {unmarked} unmarked"
        rows.append((p, c, units[0] if len(units) == 1 else "", int(m.sum()),
                     float(delta[m].sum()), float(np.nansum(mtm[m])), marks))  # fmt: skip
        acc = per_ccy.setdefault(c, [0, 0, 0.0])
        acc[0] += int(m.sum())
        acc[1] += unmarked
        acc[2] += float(np.nansum(mtm[m]))
    positions = _Table(
        "Positions",
        ("Product", "Ccy", "Unit", "Trades", "Net delta", "MTM", "Marks"),
        (TEXT, TEXT, TEXT, INT, QTY, MONEY, TEXT),
        rows,
    )
    totals = _Table(
        "Totals by currency",
        ("Currency", "Open trades", "Unmarked", "MTM (marked trades)"),
        (TEXT, INT, INT, MONEY),
        [(c, int(a[0]), int(a[1]), float(a[2])) for c, a in sorted(per_ccy.items())],
    )
    return positions, totals


def _contributions(result: RiskResult, c: CurrencyRisk) -> _Table:
    rows = sorted(c.contributions, key=lambda r: -abs(r.contribution))
    total = sum(r.contribution for r in rows)
    return _Table(
        f"ES contributions by {GROUP_BY.get(result.group_by, result.group_by).lower()} "
        f"({c.currency})",
        (
            GROUP_BY.get(result.group_by, "Group"),
            "Delta",
            "Unit",
            "ES contribution",
            "% of ES",
            "History",
        ),
        (TEXT, QTY, TEXT, MONEY, PCT, TEXT),
        [(r.label, r.exposure, r.unit, r.contribution, r.share, r.proxy) for r in rows],
        [("Total (= ES)", None, "", total, 1.0 if c.es else math.nan, "")],
    )


def _document(
    result: RiskResult, report: Any, inputs: RiskInputs | None, title: str, now: dt.datetime
) -> _Doc:
    method = METHODS.get(result.method, result.method)
    settings = [
        ("As of", result.as_of.isoformat()),
        ("Book scope", _scope(result)),
        ("Method", f"{method} ({result.method})"),
        ("Confidence", f"{result.confidence:.1%}"),
        ("Horizon", f"{result.horizon_days} business day{'s' if result.horizon_days > 1 else ''}"),
        ("History window", f"{result.window_days} business days, "
                           f"{result.window_start.isoformat()} .. {result.window_end.isoformat()}"),
        ("Contributions by", GROUP_BY.get(result.group_by, result.group_by)),
        ("Risk factors", f"{result.n_factors} curve-tenor factors, {result.n_options} options"),
    ]  # fmt: skip
    if result.n_scenarios:
        settings.append(("Scenarios", f"{result.n_scenarios:,}"))
    if inputs is not None:
        settings.append(("Trades in scope", f"{inputs.n_trades:,} open "
                                            f"({inputs.n_unmarked:,} unmarked, left out)"))  # fmt: skip
    mc = any(c.var_ci is not None for c in result.currencies)
    headers: tuple[str, ...] = ("Currency", "VaR", "ES")
    kinds: tuple[str, ...] = (TEXT, MONEY, MONEY)
    if mc:
        headers += ("VaR CI low", "VaR CI high", "CI level")
        kinds += (MONEY, MONEY, PCT)
    rows = []
    for c in result.currencies:
        row: tuple[Any, ...] = (c.currency, c.var, c.es)
        if mc:
            lo, hi = c.var_ci if c.var_ci is not None else (math.nan, math.nan)
            row += (lo, hi, c.ci_level)
        rows.append(row)
    var_table = _Table(
        f"VaR and ES ({result.confidence:.1%}, {result.horizon_days}-day; losses, per currency, "
        "never summed across currencies)",
        headers,
        kinds,
        rows,
    )
    notes = [("How the VaR and ES were computed", result.note())]
    note = getattr(report, "note", None)
    if callable(note):
        notes.append(("How the positions were marked", str(note())))
    sections = [
        _Section(
            c.currency,
            c,
            histogram_svg(
                currency=c.currency,
                var=c.var,
                es=c.es,
                pnl=np.asarray(c.pnl),
                sigma=c.sigma,
                horizon_days=result.horizon_days,
            ),
            _contributions(result, c),
        )
        for c in result.currencies
    ]
    positions, totals = _positions(report, result.books_filter)
    return _Doc(title, now.strftime("%Y-%m-%d %H:%M"), settings, var_table, notes, sections,
                positions, totals)  # fmt: skip


def _chart_caption(result: RiskResult, c: CurrencyRisk) -> str:
    if c.pnl.size:
        return (f"{c.pnl.size:,} scenarios of the {result.horizon_days}-day P&L ({c.currency}); "
                "red: bins beyond the VaR; dashed lines: VaR and ES (as losses, at -VaR, -ES).")  # fmt: skip
    if math.isfinite(c.sigma) and c.sigma > 0:
        return (f"Normal {result.horizon_days}-day P&L density, sigma {_money(c.sigma)} "
                f"({c.currency}); dashed lines: VaR and ES.")  # fmt: skip
    return "No scenario distribution for this method (Cornish-Fisher quantiles)."


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; color: #222; margin: 2em auto; max-width: 60em;
       padding: 0 1em; font-size: 14px; }
h1 { font-size: 22px; margin-bottom: 0.2em; } h2 { font-size: 17px; margin-top: 1.6em; }
h3 { font-size: 14px; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
table.kv th { background: none; font-weight: normal; color: #555; }
p.note { color: #444; font-size: 13px; } figure { margin: 0.5em 0; }
figcaption { color: #666; font-size: 12px; }
footer { color: #888; font-size: 11px; margin-top: 3em; }
"""


def _html_table(t: _Table, heading: str = "h3") -> str:
    out = [f"<{heading}>{escape(t.title)}</{heading}>", "<table>", "<thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in t.headers]
    out.append("</tr></thead><tbody>")
    for cls, rows in (("", t.rows), (' class="total"', t.totals)):
        for row in rows:
            out.append(f"<tr{cls}>")
            for v, k in zip(row, t.kinds, strict=True):
                if k == TEXT or v is None:
                    out.append(f"<td>{escape(_cell_text(v, TEXT))}</td>")
                else:
                    out.append(f'<td class="num" data-value="{float(v)!r}">'
                               f"{escape(_cell_text(v, k))}</td>")  # fmt: skip
            out.append("</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _html(doc: _Doc, result: RiskResult) -> bytes:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(doc.title)} {escape(result.as_of.isoformat())}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(doc.title)}</h1>",
        f'<p class="meta">As of {escape(result.as_of.isoformat())} · {escape(_scope(result))} · '
        f"generated {escape(doc.generated)}</p>",
        "<h2>Settings</h2>",
        '<table class="kv">',
    ]
    out += [f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in doc.settings]
    out.append("</table>")
    out.append(_html_table(doc.var_table, "h2"))
    for head, text in doc.notes:
        out.append(f"<h2>{escape(head)}</h2>")
        out.append(f'<p class="note">{escape(text)}</p>')
    for s in doc.sections:
        out.append(f"<h2>{escape(s.currency)}: VaR {escape(_money(s.risk.var))} · "
                   f"ES {escape(_money(s.risk.es))}</h2>")  # fmt: skip
        if s.svg is not None:
            out.append(f"<figure>{s.svg}<figcaption>{escape(_chart_caption(result, s.risk))}"
                       "</figcaption></figure>")  # fmt: skip
        else:
            out.append(f'<p class="note">{escape(_chart_caption(result, s.risk))}</p>')
        out.append(_html_table(s.contributions))
    out.append("<h2>Positions</h2>")
    out.append(_html_table(doc.totals))
    out.append(_html_table(doc.positions))
    out.append(f"<footer>QuantaEnergi Workstation {escape(__version__)}</footer>")
    out.append("</body></html>")
    return "\n".join(out).encode("utf-8")


# --------------------------------------------------------------------------- Excel

_XL_FORMATS = {MONEY: "#,##0", QTY: "#,##0", PCT: "0.0%", INT: "#,##0"}


def _xlsx(doc: _Doc, result: RiskResult) -> bytes:
    from openpyxl import Workbook
    from openpyxl.chart import BarChart, Reference
    from openpyxl.styles import Alignment, Font

    bold = Font(bold=True)
    wb = Workbook()
    ws: Any = wb.active
    ws.title = "Summary"

    def put_table(sheet: Any, t: _Table, row: int, lead: tuple[str, ...] = ()) -> int:
        """Write ``t`` from ``row`` (title, header, rows, totals); returns the next free row."""
        sheet.cell(row, 1, t.title).font = bold
        row += 1
        for j, h in enumerate((*lead, *t.headers), start=1):
            sheet.cell(row, j, h).font = bold
        row += 1
        for rows, font in ((t.rows, None), (t.totals, bold)):
            for r in rows:
                for j, (v, k) in enumerate(zip(r, t.kinds, strict=True), start=len(lead) + 1):
                    if v is None or (k != TEXT and not math.isfinite(float(v))):
                        continue
                    cell = sheet.cell(row, j, v if k == TEXT else float(v))
                    if k in _XL_FORMATS:
                        cell.number_format = _XL_FORMATS[k]
                    if font is not None:
                        cell.font = font
                row += 1
        return row + 1

    ws.cell(1, 1, doc.title).font = Font(bold=True, size=14)
    ws.cell(2, 1, f"Generated {doc.generated} by QuantaEnergi Workstation {__version__}")
    row = 4
    for k, v in doc.settings:
        ws.cell(row, 1, k)
        ws.cell(row, 2, v)
        row += 1
    row = put_table(ws, doc.var_table, row + 1)
    for head, text in doc.notes:
        ws.cell(row, 1, head).font = bold
        cell = ws.cell(row + 1, 1, text)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        ws.merge_cells(start_row=row + 1, start_column=1, end_row=row + 1, end_column=6)
        ws.row_dimensions[row + 1].height = 15 * max(2, len(text) // 110 + 1)
        row += 3
    ws.column_dimensions["A"].width = 22
    for col in "BCDEF":
        ws.column_dimensions[col].width = 16

    wc: Any = wb.create_sheet("Contributions")
    row = 1
    for s in doc.sections:
        row = put_table(wc, s.contributions, row)
    wc.column_dimensions["A"].width = 28
    wc.column_dimensions["F"].width = 40

    wp: Any = wb.create_sheet("Positions")
    row = put_table(wp, doc.totals, 1)
    put_table(wp, doc.positions, row)
    wp.column_dimensions["A"].width = 18
    wp.column_dimensions["G"].width = 24

    wh: Any = wb.create_sheet("Scenario P&L")
    row = 1
    for s in doc.sections:
        c = s.risk
        wh.cell(row, 1, f"{c.currency}: {_chart_caption(result, c)}").font = bold
        row += 1
        if not c.pnl.size:
            row += 1
            continue
        h = histogram(np.asarray(c.pnl))
        tail = h.tail(c.var)
        first = row + 1
        for j, head in enumerate(("P&L from", "P&L to", "Scenarios", "Beyond VaR"), start=1):
            wh.cell(row, j, head).font = bold
        for i in range(h.counts.size):
            row += 1
            wh.cell(row, 1, float(h.edges[i])).number_format = "#,##0"
            wh.cell(row, 2, float(h.edges[i + 1])).number_format = "#,##0"
            wh.cell(row, 3, int(h.counts[i]))
            wh.cell(row, 4, "yes" if tail[i] else "")
        chart = BarChart()
        chart.title = f"{result.horizon_days}-day P&L ({c.currency})"
        chart.y_axis.title = "scenarios"
        chart.legend = None
        chart.gapWidth = 0
        chart.add_data(
            Reference(wh, min_col=3, min_row=first - 1, max_row=row), titles_from_data=True
        )
        chart.set_categories(Reference(wh, min_col=1, min_row=first, max_row=row))
        chart.width, chart.height = 18, 8
        wh.add_chart(chart, f"F{first - 1}")
        row += max(3, 18 - h.counts.size)
    wb.properties.title = doc.title
    wb.properties.creator = f"QuantaEnergi Workstation {__version__}"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --------------------------------------------------------------------------- PDF

_LATIN1 = str.maketrans({"–": "-", "—": "-", "−": "-", "…": "...", "≤": "<=", "≥": ">=",
                         "‘": "'", "’": "'", "“": '"', "”": '"', "•": "·", "≈": "~"})  # fmt: skip


def _pdf_text(text: str) -> str:
    """Text for fpdf2's core (Latin-1) fonts."""
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _pdf(doc: _Doc, result: RiskResult) -> bytes:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(_pdf_text(doc.title))
    pdf.set_creator(f"QuantaEnergi Workstation {__version__}")
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_margins(15, 15, 15)
    pdf.add_page()
    head = FontFace(emphasis="BOLD", fill_color=(242, 242, 242))
    total_face = FontFace(emphasis="BOLD")

    def heading(text: str, size: float = 12) -> None:
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(0, size * 0.5, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 9)

    def table(t: _Table, widths: tuple[int, ...] | None = None) -> None:
        heading(t.title, 10)
        pdf.set_font("Helvetica", "", 8)
        align = tuple("LEFT" if k == TEXT else "RIGHT" for k in t.kinds)
        with pdf.table(col_widths=widths, text_align=align, headings_style=head,
                       line_height=4.2, padding=1, first_row_as_headings=True) as tab:  # fmt: skip
            r = tab.row()
            for h in t.headers:
                r.cell(_pdf_text(h))
            for rows, style in ((t.rows, None), (t.totals, total_face)):
                for row in rows:
                    r = tab.row(style=style)
                    for v, k in zip(row, t.kinds, strict=True):
                        r.cell(_pdf_text(_cell_text(v, k)))
        pdf.set_font("Helvetica", "", 9)

    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 8, _pdf_text(doc.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    pdf.set_text_color(100, 100, 100)
    pdf.multi_cell(0, 5, _pdf_text(f"As of {result.as_of.isoformat()} · {_scope(result)} · "
                                   f"generated {doc.generated}"),
                   new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.set_text_color(0, 0, 0)
    heading("Settings")
    for k, v in doc.settings:
        pdf.set_font("Helvetica", "", 9)
        pdf.cell(40, 5, _pdf_text(k))
        pdf.multi_cell(0, 5, _pdf_text(v), new_x="LMARGIN", new_y="NEXT")
    table(doc.var_table)
    for head_text, text in doc.notes:
        heading(head_text, 10)
        pdf.set_font("Helvetica", "", 8)
        pdf.multi_cell(0, 4, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
    for s in doc.sections:
        pdf.add_page()
        heading(f"{s.currency}: VaR {_money(s.risk.var)} · ES {_money(s.risk.es)}", 12)
        if s.svg is not None:
            pdf.image(io.BytesIO(s.svg.encode("utf-8")), w=pdf.epw)
        pdf.set_font("Helvetica", "I", 8)
        pdf.multi_cell(0, 4, _pdf_text(_chart_caption(result, s.risk)), new_x="LMARGIN",
                       new_y="NEXT")  # fmt: skip
        table(s.contributions, (34, 18, 12, 22, 14, 80))
    pdf.add_page()
    heading("Positions")
    table(doc.totals)
    table(doc.positions, (34, 12, 14, 14, 24, 26, 56))
    return bytes(pdf.output())


# --------------------------------------------------------------------------- entry point

_WRITERS: dict[str, Callable[[_Doc, RiskResult], bytes]] = {"html": _html, "xlsx": _xlsx,
                                                            "pdf": _pdf}  # fmt: skip


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    result: RiskResult,
    report: Any,
    path: str | Path,
    *,
    inputs: RiskInputs | None = None,
    title: str = TITLE,
    now: dt.datetime | None = None,
) -> Path:
    """Write the risk report of ``result`` to ``path`` (format from the extension) and return
    the resolved path.

    ``report`` is the :class:`~app.services.positions.PositionReport` the result was computed
    from (positions summary and marks note); ``inputs`` the :class:`RiskInputs` (trade counts).
    No Qt: call it from a worker thread. Raises :class:`ReportError` for a bad extension or an
    unwritable path (checked before anything is built) and when the file cannot be written.
    """
    target = check_output_path(path)
    fmt = report_format(target)
    doc = _document(result, report, inputs, title, now or dt.datetime.now())
    data = _WRITERS[fmt](doc, result)
    try:
        _write_atomic(target, data)
    except OSError as exc:
        raise ReportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return target
