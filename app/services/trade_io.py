"""Trade import and export: CSV and Excel (.xlsx) files with a preview, all-or-nothing.

File layout (CSV and XLSX alike): one header row, then one trade per row. The columns are
:data:`COLUMNS` (= :data:`app.services.trading.TRADE_FIELDS`); header names are matched
case-insensitively with spaces read as underscores (``Trade Date`` = ``trade_date``) and may come
in any order. :data:`~app.services.trading.REQUIRED` columns must be present; option columns may
be left out for files without options.

``trade_id`` (the trade UUID) is written first on export so a file can be traced back to the
trades it came from. On import a ``trade_id`` column, like any other unknown column, is
*ignored*: an import always creates new trades (version 1) and never amends existing ones.

Import is two steps: :func:`preview_import` reads and validates every row (nothing is written),
and :func:`commit_import` stores all rows in one transaction, refusing while any row is bad.
Values go through :func:`app.services.trading.validate_trade`, the same path as the trade ticket.
Decimals are never read through binary floats from CSV (text is parsed exactly); Excel number
cells are floats by nature and are taken by their shortest repr, which is the number shown.
Exported values parse back to identical economics (exact decimals, ISO dates).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.models.repository import RefData, TradeRecord
from app.services.trading import REQUIRED, TRADE_FIELDS, TradingService

#: Trade columns of an import/export file, in file order (export puts ``trade_id`` first).
COLUMNS: tuple[str, ...] = TRADE_FIELDS
#: Export-only column holding the trade UUID; ignored on import (imports create new trades).
TRADE_ID = "trade_id"
#: File suffixes understood by :func:`read_rows` and :func:`export_trades`.
SUFFIXES = (".csv", ".xlsx")

#: A raw row: column -> text, or a ``date``/``datetime`` from an Excel date cell.
RawRow = dict[str, Any]


@dataclass
class _Table:
    rows: list[RawRow]
    row_numbers: list[int]  # spreadsheet row number of each row (the header is row 1)
    ignored_columns: list[str]


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        hint = " (save it as .xlsx)" if suffix in (".xls", ".xlsm", ".xlsb", ".ods") else ""
        raise ValueError(
            f"{path.name}: unsupported file type '{suffix or '(none)'}'{hint}; "
            f"use a .csv or .xlsx file"
        )
    return suffix


def _header_key(name: Any) -> str:
    return "_".join(str(name or "").strip().lower().split())


def _build_table(path: Path, records: Iterable[tuple[int, list[Any]]]) -> _Table:
    """Map header names to columns and turn the data records into raw rows."""
    it = iter(records)
    header: list[Any] | None = None
    for _n, values in it:
        if any(not _empty(v) for v in values):
            header = values
            break
    if header is None:
        raise ValueError(f"{path.name} is empty: expected a header row and one row per trade")
    keys = [_header_key(h) for h in header]
    seen: set[str] = set()
    for k in keys:
        if k and k in seen:
            raise ValueError(f"{path.name}: column '{k}' appears more than once in the header")
        seen.add(k)
    missing = [name for name in REQUIRED if name not in seen]
    if missing:
        hint = ""
        if len(header) == 1 and ";" in str(header[0]):
            hint = " (the file looks semicolon-separated; save it comma-separated)"
        raise ValueError(
            f"{path.name}: missing required column(s): {', '.join(missing)}{hint}. "
            f"Expected columns: {', '.join(COLUMNS)}"
        )
    wanted = {i: k for i, k in enumerate(keys) if k in COLUMNS}
    ignored = [str(h).strip() for i, h in enumerate(header) if i not in wanted and keys[i]]

    rows: list[RawRow] = []
    numbers: list[int] = []
    for n, values in it:
        if all(_empty(v) for v in values):
            continue  # blank lines (common at the end of spreadsheets) are not trades
        extra = [v for v in values[len(keys) :] if not _empty(v)]
        if extra:
            raise ValueError(
                f"{path.name}, row {n}: {len(keys) + len(extra)} values but the header has "
                f"{len(keys)} columns (is a number written with a thousands comma unquoted?)"
            )
        row: RawRow = dict.fromkeys(COLUMNS, "")
        for i, key in wanted.items():
            row[key] = values[i] if i < len(values) and values[i] is not None else ""
        rows.append(row)
        numbers.append(n)
    if not rows:
        raise ValueError(f"{path.name} has a header but no trade rows")
    return _Table(rows, numbers, ignored)


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _csv_records(path: Path) -> list[tuple[int, list[Any]]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return [(i, rec) for i, rec in enumerate(csv.reader(fh), start=1)]
    except UnicodeDecodeError:
        raise ValueError(
            f"{path.name} is not UTF-8 text: save it as 'CSV UTF-8 (comma delimited)'"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{path.name} is not a readable CSV file: {exc}") from None


def _excel_cell(v: Any) -> Any:
    """Excel cell value -> raw value: dates stay typed, numbers become exact text."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).upper()
    if isinstance(v, dt.datetime | dt.date):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # The shortest repr is the number Excel shows; never let binary float noise through.
        return format(Decimal(repr(v)), "f")
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


def _xlsx_records(path: Path) -> list[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    try:
        with warnings.catch_warnings():
            # openpyxl warns about styles/extensions it does not understand; they do not matter.
            warnings.simplefilter("ignore", UserWarning)
            wb = load_workbook(path, read_only=True, data_only=True)
    except OSError:
        raise
    except Exception as exc:  # BadZipFile, InvalidFileException, KeyError: not an .xlsx inside
        raise ValueError(f"{path.name} is not a readable .xlsx workbook: {exc}") from None
    try:
        ws = wb.worksheets[0]
        return [
            (i, [_excel_cell(v) for v in values])
            for i, values in enumerate(ws.iter_rows(values_only=True), start=1)
        ]
    finally:
        wb.close()


def _read_table(path: str | os.PathLike[str]) -> _Table:
    p = Path(path)
    suffix = _suffix(p)
    records = _csv_records(p) if suffix == ".csv" else _xlsx_records(p)
    return _build_table(p, records)


def read_rows(path: str | os.PathLike[str]) -> list[RawRow]:
    """Read the trade rows of a ``.csv`` (UTF-8, comma) or ``.xlsx`` (first sheet) file.

    Returns one dict per non-blank row with every :data:`COLUMNS` key: CSV values are text
    (``""`` when blank); Excel date cells stay ``date``/``datetime`` and number cells become exact
    decimal text. Unknown columns, including ``trade_id``, are dropped.

    Raises ``ValueError`` with a message for the user for an unsupported suffix, an empty file,
    missing required columns (all listed), a duplicated column or an unreadable file; ``OSError``
    when the file cannot be opened.
    """
    return _read_table(path).rows


@dataclass
class ImportPreview:
    """Rows read from a file and, per row, the validation errors (field -> message)."""

    path: Path
    rows: list[RawRow]
    errors: list[dict[str, str]]
    #: Spreadsheet row number of each row (the header is row 1), for messages to the user.
    row_numbers: list[int] = field(default_factory=list)
    #: Header names that are not trade columns (e.g. ``trade_id``) and were not read.
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        """Rows with at least one error."""
        return sum(1 for e in self.errors if e)

    @property
    def n_valid(self) -> int:
        """Rows without errors."""
        return len(self.rows) - self.n_bad

    @property
    def ok(self) -> bool:
        """True when there is something to import and every row is valid."""
        return bool(self.rows) and self.n_bad == 0

    def problems(self) -> list[str]:
        """One line per bad field, e.g. ``"row 3, quantity: must be positive"``."""
        return [
            f"row {n}, {name}: {msg}"
            for n, errs in zip(self.row_numbers, self.errors, strict=True)
            for name, msg in errs.items()
        ]


def preview_import(path: str | os.PathLike[str], service: TradingService) -> ImportPreview:
    """Read ``path`` and validate every row with ``service.validate``; writes nothing.

    Raises what :func:`read_rows` raises when the file itself cannot be used.
    """
    table = _read_table(path)
    errors = [dict(service.validate(row).errors) for row in table.rows]
    return ImportPreview(Path(path), table.rows, errors, table.row_numbers, table.ignored_columns)


def commit_import(preview: ImportPreview, service: TradingService) -> list[TradeRecord]:
    """Store every previewed row as a new trade in ONE transaction (all or nothing).

    Raises ``ValueError`` without writing anything when the preview has a bad row or no rows;
    the rows are validated again on capture (reference data may have changed since the preview),
    which raises :class:`~app.services.trading.TradeValidationError`.
    """
    if not preview.rows:
        raise ValueError(f"{preview.path.name}: nothing to import")
    if not preview.ok:
        shown = preview.problems()
        more = f" (and {len(shown) - 5} more)" if len(shown) > 5 else ""
        raise ValueError(
            f"{preview.path.name}: {preview.n_bad} of {len(preview.rows)} rows have errors; "
            f"nothing was imported. {'; '.join(shown[:5])}{more}"
        )
    return service.capture_many(preview.rows)


# -- export ---------------------------------------------------------------------------------


def format_decimal(d: Decimal) -> str:
    """Plain exact text for a decimal without trailing zeros (``100.000`` -> ``100``)."""
    if d == 0:
        return "0"
    text = format(d, "f")  # never scientific, unlike str(d.normalize()) for e.g. 1E+2
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _export_row(rec: TradeRecord, ref: RefData) -> dict[str, Any]:
    """A record as typed export values (Decimal, date, str) keyed by ``trade_id`` + COLUMNS."""

    def opt(v: Any) -> Any:
        if v is None:
            return ""
        if isinstance(v, enum.Enum):
            return v.label  # type: ignore[attr-defined]
        return v

    return {
        TRADE_ID: str(rec.trade_uuid),
        "book": ref.books[rec.book_id].name,
        "counterparty": ref.counterparties[rec.counterparty_id].name,
        "product": ref.products[rec.product_id].code,
        "instrument": opt(rec.instrument),
        "side": opt(rec.side),
        "quantity": rec.quantity,
        "price": rec.price,
        "trade_date": rec.trade_date,
        "delivery_start": rec.delivery_start,
        "delivery_end": rec.delivery_end,
        "option_type": opt(rec.option_type),
        "strike": opt(rec.strike),
        "expiry_date": opt(rec.expiry_date),
        "exercise_style": opt(rec.exercise_style),
        "premium": opt(rec.premium),
        "comment": rec.comment or "",
    }


def _as_text(v: Any) -> str:
    if isinstance(v, Decimal):
        return format_decimal(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file in the same directory and ``os.replace`` it into place."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_csv(rows: Sequence[dict[str, Any]], header: Sequence[str], tmp: Path) -> None:
    # utf-8-sig: Excel opens it as UTF-8; read_rows accepts it with or without the BOM.
    with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow([_as_text(row[c]) for c in header])


def _write_xlsx(rows: Sequence[dict[str, Any]], header: Sequence[str], tmp: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Trades"
    ws.append(list(header))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for r, row in enumerate(rows, start=2):
        for c, name in enumerate(header, start=1):
            v = row[name]
            cell = ws.cell(row=r, column=c)
            if isinstance(v, Decimal):
                # A number cell when the float is exactly this decimal (it reads back by
                # repr); text otherwise, so no digit is ever lost.
                as_float = float(v)
                if Decimal(repr(as_float)) == v:
                    cell.value = as_float
                else:
                    cell.value = format_decimal(v)
            elif isinstance(v, dt.date):
                cell.value = v
                cell.number_format = "yyyy-mm-dd"
            else:
                cell.value = str(v)
                if cell.value.startswith("="):
                    cell.data_type = "s"  # text, never a formula
    for c, name in enumerate(header, start=1):
        width = max([len(name), *(len(_as_text(row[name])) for row in rows)])
        ws.column_dimensions[ws.cell(row=1, column=c).column_letter].width = min(width + 2, 60)
    ws.freeze_panes = "A2"
    wb.save(tmp)


def export_trades(
    records: Iterable[TradeRecord], refdata: RefData, path: str | os.PathLike[str]
) -> int:
    """Write ``records`` to ``path`` (.csv or .xlsx by suffix); returns the rows written.

    Columns: ``trade_id`` then :data:`COLUMNS`; books, counterparties and products by name
    (product by code), enums by label, dates ISO, decimals exact without trailing zeros, blanks
    for missing option fields. :func:`preview_import` of the file gives back the same
    economics. The file is replaced atomically (temp file + ``os.replace``).
    """
    p = Path(path)
    suffix = _suffix(p)
    rows = [_export_row(rec, refdata) for rec in records]
    header = [TRADE_ID, *COLUMNS]
    if suffix == ".csv":
        _atomic_write(p, lambda tmp: _write_csv(rows, header, tmp))
    else:
        _atomic_write(p, lambda tmp: _write_xlsx(rows, header, tmp))
    return len(rows)
