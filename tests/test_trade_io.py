"""Trade import/export: CSV and XLSX round trip, per-row errors, all-or-nothing, dialog."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from PySide6.QtCore import Qt

from app.models.demo import seed_demo
from app.models.enums import InstrumentType
from app.models.repository import TradeRepository
from app.models.store import Store
from app.services.events import EventBus
from app.services.trade_io import (
    COLUMNS,
    commit_import,
    export_trades,
    format_decimal,
    preview_import,
    read_rows,
)
from app.services.trading import TRADE_FIELDS, TradeValidationError, TradingService

# A fixed past "today" keeps the demo trades valid whatever the real date (no future trade
# dates, option expiries after their trade dates).
DEMO_TODAY = dt.date(2025, 3, 12)


@pytest.fixture
def repo(sqlite_store: Store) -> TradeRepository:
    seed_demo(sqlite_store, 50, today=DEMO_TODAY)
    return TradeRepository(sqlite_store)


@pytest.fixture
def service(repo: TradeRepository) -> TradingService:
    return TradingService(repo, EventBus(), user="tester")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_columns_are_the_trade_fields() -> None:
    assert COLUMNS == TRADE_FIELDS


@pytest.mark.parametrize("decimal_text, expected", [
    ("100.000", "100"), ("1E+2", "100"), ("0.000100", "0.0001"), ("-0.00", "0"),
    ("-12.500000", "-12.5"), ("88.120000", "88.12"), ("250000.000", "250000"),
])  # fmt: skip
def test_format_decimal_is_plain_and_exact(decimal_text: str, expected: str) -> None:
    assert format_decimal(Decimal(decimal_text)) == expected


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_round_trip_creates_identical_new_trades(
    repo: TradeRepository, service: TradingService, tmp_path: Path, suffix: str
) -> None:
    originals = repo.current_records()
    assert len(originals) == 50
    assert any(r.instrument is InstrumentType.OPTION for r in originals)
    assert any(r.instrument is InstrumentType.SWAP for r in originals)
    out = tmp_path / "out"
    out.mkdir()
    path = out / f"trades{suffix}"
    assert export_trades(originals, service.refdata, path) == 50
    assert [p.name for p in out.iterdir()] == [path.name]  # no temp file left behind
    if suffix == ".csv":
        assert "Fixed-for-floating swap" in {r["instrument"] for r in _read_csv(path)}

    preview = preview_import(path, service)
    assert preview.ok, preview.problems()
    assert (len(preview.rows), preview.n_valid, preview.n_bad) == (50, 50, 0)
    assert preview.ignored_columns == ["trade_id"]
    assert preview.row_numbers == list(range(2, 52))

    imported = commit_import(preview, service)
    assert repo.count_current() == 100
    assert len(imported) == 50
    assert {r.trade_uuid for r in imported}.isdisjoint({r.trade_uuid for r in originals})
    for old, new in zip(originals, imported, strict=True):
        assert new.version == 1 and new.created_by == "tester"
        old_econ, new_econ = old.economics(), new.economics()
        for name, value in old_econ.items():
            assert new_econ[name] == value, (name, value, new_econ[name])
            assert type(new_econ[name]) is type(value), name


def test_csv_export_is_plain_text(
    repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    rec = repo.current_records(limit=1)[0]
    path = tmp_path / "one.csv"
    export_trades([rec], service.refdata, path)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    (row,) = _read_csv(path)
    assert list(row) == ["trade_id", *COLUMNS]
    assert row["trade_id"] == str(rec.trade_uuid)
    assert row["trade_date"] == rec.trade_date.isoformat()
    assert Decimal(row["quantity"]) == rec.quantity and "E" not in row["quantity"]
    assert row["side"] == rec.side.label
    assert row["book"] == service.refdata.books[rec.book_id].name


def test_export_replaces_existing_file(
    repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    path = tmp_path / "out.csv"
    path.write_text("old content\n")
    export_trades(repo.current_records(limit=3), service.refdata, path)
    assert len(_read_csv(path)) == 3


def test_bad_rows_give_per_row_errors_and_nothing_is_stored(
    repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    export_trades(repo.current_records(limit=10), service.refdata, good)
    rows = _read_csv(good)
    rows[1]["quantity"] = "-5"
    rows[4]["counterparty"] = "Nobody Trading Ltd"
    rows[6]["delivery_end"] = (
        dt.date.fromisoformat(rows[6]["delivery_start"]) - dt.timedelta(days=1)
    ).isoformat()
    bad = tmp_path / "bad.csv"
    _write_csv(bad, rows)
    before = repo.count_current()

    preview = preview_import(bad, service)
    assert not preview.ok
    assert (preview.n_valid, preview.n_bad) == (7, 3)
    assert set(preview.errors[1]) == {"quantity"}
    assert "positive" in preview.errors[1]["quantity"]
    assert "unknown counterparty 'Nobody Trading Ltd'" in preview.errors[4]["counterparty"]
    assert "before delivery start" in preview.errors[6]["delivery_end"]
    problems = preview.problems()
    # Rows are named by their spreadsheet row number (header = row 1).
    assert any(p.startswith("row 3, quantity:") for p in problems)
    assert any(p.startswith("row 6, counterparty:") for p in problems)
    assert any(p.startswith("row 8, delivery_end:") for p in problems)

    with pytest.raises(ValueError, match="3 of 10 rows have errors; nothing was imported"):
        commit_import(preview, service)
    assert repo.count_current() == before
    # The service refuses too, whoever calls it: one transaction, all or nothing.
    with pytest.raises(TradeValidationError):
        service.capture_many(preview.rows)
    assert repo.count_current() == before


def test_headers_are_case_insensitive_and_option_columns_optional(
    service: TradingService, tmp_path: Path
) -> None:
    path = tmp_path / "hand.csv"
    path.write_text(
        "Book,Counterparty,Product,Instrument,Side,Quantity,Price,Trade Date,"
        "Delivery Start, delivery end ,Notes\n"
        'DEMO Gas,Meridian Gas Supply Ltd,NG-TTF,future,BUY,"1,440",33.125,2025-02-03,'
        "2025-04-01,2025-04-30,ignored\n"
        ",,,,,,,,,,\n",  # a blank line is not a trade
        encoding="utf-8",
    )
    preview = preview_import(path, service)
    assert preview.ok, preview.problems()
    assert preview.ignored_columns == ["Notes"]
    (rec,) = commit_import(preview, service)
    assert rec.quantity == Decimal("1440") and rec.price == Decimal("33.125")
    assert rec.instrument is InstrumentType.FUTURE


def test_excel_typed_cells_are_read_exactly(service: TradingService, tmp_path: Path) -> None:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["book", "counterparty", "product", "instrument", "side", "quantity", "price",
               "trade_date", "delivery_start", "delivery_end"])  # fmt: skip
    ws.append(["DEMO Gas", "Meridian Gas Supply Ltd", "NG-NBP", "Swap", "Sell", 30000, 0.1 + 0.7,
               dt.datetime(2025, 2, 3), dt.date(2025, 4, 1), "2025-04-30"])  # fmt: skip
    path = tmp_path / "typed.xlsx"
    wb.save(path)
    (row,) = read_rows(path)
    assert row["quantity"] == "30000"
    assert row["price"] == "0.7999999999999999"  # the float as Excel holds it, never rounded
    assert isinstance(row["trade_date"], dt.datetime)
    ws["G2"] = 0.8
    wb.save(path)
    preview = preview_import(path, service)
    assert preview.ok, preview.problems()
    assert service.validate(preview.rows[0]).economics["price"] == Decimal("0.8")


def test_xlsx_export_keeps_formula_like_comments_as_text(
    repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    rec = repo.current_records(limit=1)[0]
    amended = service.amend(
        rec.trade_uuid, rec.version, {**service.raw_from_record(rec), "comment": "=1+1"}
    )
    path = tmp_path / "f.xlsx"
    export_trades([amended], service.refdata, path)
    wb = load_workbook(path)
    ws = wb.worksheets[0]
    assert ws.cell(row=2, column=len(COLUMNS) + 1).value == "=1+1"
    assert ws.cell(row=2, column=len(COLUMNS) + 1).data_type == "s"
    wb.close()
    assert read_rows(path)[0]["comment"] == "=1+1"


def test_unknown_extension_is_a_clear_error(service: TradingService, tmp_path: Path) -> None:
    path = tmp_path / "trades.txt"
    path.write_text("book\n")
    with pytest.raises(ValueError, match=r"unsupported file type '\.txt'.*\.csv or \.xlsx"):
        read_rows(path)
    with pytest.raises(ValueError, match="unsupported file type"):
        export_trades([], service.refdata, tmp_path / "out.json")


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("book,counterparty,product,instrument,side,quantity,trade_date\n")
    with pytest.raises(ValueError) as info:
        read_rows(path)
    msg = str(info.value)
    assert "missing required column(s): price, delivery_start, delivery_end" in msg


def test_semicolon_file_gets_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("book;counterparty;product\nA;B;C\n")
    with pytest.raises(ValueError, match="semicolon-separated"):
        read_rows(path)


@pytest.mark.parametrize("content", ["", "\n\n", "book,counterparty\n"])
def test_empty_files_are_clear_errors(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"empty|missing required"):
        read_rows(path)


def test_header_only_file_has_no_rows(repo: TradeRepository, tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(ValueError, match="no trade rows"):
        read_rows(path)


def test_not_utf8_and_not_xlsx(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(",".join(COLUMNS).encode() + b"\nM\xfcnchen\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_rows(latin)
    fake = tmp_path / "fake.xlsx"
    fake.write_text("not a zip")
    with pytest.raises(ValueError, match=r"not a readable \.xlsx"):
        read_rows(fake)


# -- dialog ---------------------------------------------------------------------------------


def test_dialog_refuses_a_bad_file(
    qtbot, repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    from app.views.import_dialog import ImportDialog

    good = tmp_path / "good.csv"
    export_trades(repo.current_records(limit=5), service.refdata, good)
    rows = _read_csv(good)
    rows[2]["quantity"] = "-1"
    bad = tmp_path / "bad.csv"
    _write_csv(bad, rows)
    before = repo.count_current()

    dlg = ImportDialog(service, bad)
    qtbot.addWidget(dlg)
    assert not dlg.import_button.isEnabled()
    assert dlg.summary_label.text().startswith("5 rows: 4 valid, 1 with errors")
    model = dlg.table.model()
    assert model.headerData(0, Qt.Orientation.Horizontal) == "Errors"
    assert "quantity" in model.data(model.index(2, 0))
    assert model.data(model.index(2, 0), Qt.ItemDataRole.BackgroundRole) is not None
    assert model.data(model.index(0, 0), Qt.ItemDataRole.BackgroundRole) is None
    qtbot.mouseClick(dlg.import_button, Qt.MouseButton.LeftButton)
    assert repo.count_current() == before
    assert dlg.imported == []


def test_dialog_imports_a_good_file(
    qtbot, repo: TradeRepository, service: TradingService, tmp_path: Path
) -> None:
    from app.views.import_dialog import ImportDialog

    path = tmp_path / "good.xlsx"
    export_trades(repo.current_records(limit=5), service.refdata, path)
    before = repo.count_current()

    dlg = ImportDialog(service, path)
    qtbot.addWidget(dlg)
    assert dlg.import_button.isEnabled()
    qtbot.mouseClick(dlg.import_button, Qt.MouseButton.LeftButton)
    assert dlg.result() == ImportDialog.DialogCode.Accepted
    assert len(dlg.imported) == 5
    assert repo.count_current() == before + 5


def test_dialog_shows_read_errors(qtbot, service: TradingService, tmp_path: Path) -> None:
    from app.views.import_dialog import ImportDialog

    path = tmp_path / "trades.txt"
    path.write_text("x\n")
    dlg = ImportDialog(service, path)
    qtbot.addWidget(dlg)
    dlg.show()
    assert dlg.error_label.isVisible()
    assert "unsupported file type" in dlg.error_label.text()
    assert not dlg.import_button.isVisible()
    assert dlg.cancel_button.text() == "Close"

    missing = ImportDialog(service, tmp_path / "gone.csv")
    qtbot.addWidget(missing)
    assert "Cannot open gone.csv" in missing.error_label.text()


def test_dialog_shows_commit_failure(
    qtbot, repo: TradeRepository, service: TradingService, tmp_path: Path, monkeypatch
) -> None:
    from app.views import import_dialog
    from app.views.import_dialog import ImportDialog

    path = tmp_path / "good.csv"
    export_trades(repo.current_records(limit=2), service.refdata, path)
    dlg = ImportDialog(service, path)
    qtbot.addWidget(dlg)
    dlg.show()

    def boom(*_args: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(import_dialog, "commit_import", boom)
    with qtbot.capture_exceptions() as caught:
        qtbot.mouseClick(dlg.import_button, Qt.MouseButton.LeftButton)
    assert not caught
    assert dlg.error_label.isVisible()
    assert "database is locked" in dlg.error_label.text()
    assert dlg.result() != ImportDialog.DialogCode.Accepted
