"""The blotter model against brute-force Python references, and Qt's model tester."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QTableView

from app.models.demo import seed_demo
from app.models.repository import TradeRepository
from app.models.store import Store
from app.views.blotter_model import COLUMN_INDEX, BlotterModel, Filters, format_scaled

DESC = Qt.SortOrder.DescendingOrder
ASC = Qt.SortOrder.AscendingOrder


@pytest.fixture
def loaded(sqlite_store: Store) -> tuple[BlotterModel, TradeRepository]:
    seed_demo(sqlite_store, 1500, today=dt.date(2026, 11, 24))
    repo = TradeRepository(sqlite_store)
    model = BlotterModel()
    model.set_refdata(repo.reference_data())
    for chunk in repo.blotter_chunks(400, first_chunk_rows=100):
        model.append_chunk(chunk)
    return model, repo


def test_format_scaled_is_exact() -> None:
    assert format_scaled(-37_630_000, 6) == "-37.63"
    assert format_scaled(1_234_567_891, 6) == "1,234.567891"
    assert format_scaled(7_200_000, 3, 0) == "7,200"
    assert format_scaled(5, 6) == "0.000005"


def test_qt_model_tester(qtmodeltester, loaded) -> None:  # type: ignore[no-untyped-def]
    model, _repo = loaded
    qtmodeltester.check(model)
    model.sort(COLUMN_INDEX["price"], DESC)
    model.set_text_filter("gas")
    qtmodeltester.check(model)


def _records_by_uuid(repo: TradeRepository) -> dict[str, object]:
    return {r.trade_uuid.hex: r for r in repo.current_records()}


def test_cells_match_the_store(loaded) -> None:  # type: ignore[no-untyped-def]
    model, repo = loaded
    recs = _records_by_uuid(repo)
    ref = repo.reference_data()
    assert model.rowCount() == len(recs) == 1500
    for row in range(0, 1500, 97):
        rec = recs[model.trade_uuid_at(row)]
        whole, _, frac = format(rec.price, "f").partition(".")
        frac = frac.rstrip("0").ljust(2, "0")
        assert model.text(row, COLUMN_INDEX["price"]) == f"{int(whole):,}.{frac}"
        assert (
            model.text(row, COLUMN_INDEX["counterparty_id"])
            == ref.counterparties[rec.counterparty_id].name
        )
        assert model.text(row, COLUMN_INDEX["delivery_start"]) == rec.delivery_start.isoformat()
        assert (
            model.text(row, COLUMN_INDEX["commodity"])
            == ref.products[rec.product_id].commodity.label
        )
        assert float(model.text(row, COLUMN_INDEX["price"]).replace(",", "")) == float(rec.price)


@pytest.mark.parametrize("key", ["price", "counterparty_id", "trade_date", "status", "quantity"])
@pytest.mark.parametrize("order", [ASC, DESC])
def test_sort_matches_python_sorted(loaded, key: str, order: Qt.SortOrder) -> None:  # type: ignore[no-untyped-def]
    model, repo = loaded
    recs = _records_by_uuid(repo)
    ref = repo.reference_data()
    model.sort(COLUMN_INDEX[key], order)

    def value(uid: str) -> object:
        r = recs[uid]
        if key == "counterparty_id":
            return ref.counterparties[r.counterparty_id].name.casefold()
        if key == "status":
            return list(type(r.status)).index(r.status)
        return getattr(r, key)

    got = [value(model.trade_uuid_at(i)) for i in range(model.rowCount())]
    assert got == sorted(got, reverse=order == DESC)


def test_filters_match_brute_force(loaded) -> None:  # type: ignore[no-untyped-def]
    model, repo = loaded
    recs = _records_by_uuid(repo)
    ref = repo.reference_data()
    gulf = next(c for c in ref.counterparties.values() if c.name.startswith("Gulf"))
    cp_code = gulf.id
    lo, hi = dt.date(2026, 9, 1), dt.date(2026, 10, 15)
    model.set_filters(Filters("", {"counterparty_id": frozenset([cp_code])}, lo, hi))
    want = {u for u, r in recs.items() if r.counterparty_id == cp_code and lo <= r.trade_date <= hi}
    got = {model.trade_uuid_at(i) for i in range(model.rowCount())}
    assert got == want and want

    model.set_filters(Filters("ttf"))
    want = {u for u, r in recs.items() if "ttf" in ref.products[r.product_id].code.lower()}
    got = {model.trade_uuid_at(i) for i in range(model.rowCount())}
    assert got == want and want

    some = next(iter(recs))[:7]
    model.set_filters(Filters(some))
    assert {model.trade_uuid_at(i) for i in range(model.rowCount())} == {
        u for u in recs if some in u
    }


def test_upsert_keeps_sort_filter_and_selection(qtbot, loaded) -> None:  # type: ignore[no-untyped-def]
    model, repo = loaded
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(model)
    view.resize(800, 400)
    view.show()
    qtbot.waitExposed(view)
    model.sort(COLUMN_INDEX["price"], DESC)
    view.scrollTo(model.index(700, 0), QTableView.ScrollHint.PositionAtTop)
    scroll_before = view.verticalScrollBar().value()
    assert scroll_before > 0
    selected = [model.trade_uuid_at(r) for r in (3, 4, 5)]
    sel = view.selectionModel()
    for r in (3, 4, 5):
        sel.select(model.index(r, 0), QItemSelectionModel.SelectionFlag.Select
                   | QItemSelectionModel.SelectionFlag.Rows)  # fmt: skip
    # Amend 50 trades (new prices) and add 5 new ones, like a burst from the desk.
    rng = np.random.default_rng(1)
    recs = repo.current_records()
    changed = [recs[i] for i in rng.choice(len(recs), 50, replace=False)]
    for rec in changed:
        repo.new_version(rec.trade_uuid, rec.version, "t",
                         {"price": rec.price + 1})  # fmt: skip
    first = changed[0].trade_uuid.hex
    price_before = model.text(model.row_of_trade(first), COLUMN_INDEX["price"])  # now memoised
    new = repo.insert_trades([recs[0].economics() for _ in range(5)], "t")
    chunk = next(repo.blotter_chunks(trade_uuids=[r.trade_uuid for r in changed + new]))
    updated, added = model.upsert(chunk)
    assert (updated, added) == (50, 5)
    assert model.rowCount() == 1505
    prices = [int(model._cols["price"][model._view[i]]) for i in range(model.rowCount())]
    assert prices == sorted(prices, reverse=True)
    still = {model.trade_uuid_at(i.row()) for i in sel.selectedRows()}
    assert still == set(selected)
    assert view.verticalScrollBar().value() == scroll_before  # the view did not jump
    uid = changed[0].trade_uuid.hex
    row = model.row_of_trade(uid)
    assert model.text(row, COLUMN_INDEX["version"]) == "2"
    new_price = format_scaled(int((changed[0].price + 1) * 10**6), 6)
    assert model.text(row, COLUMN_INDEX["price"]) == new_price != price_before
    assert model.row_of_trade(uuid.uuid4().hex) == -1

    # A second burst merges against the keys kept from the first one; with a filter on too.
    model.set_text_filter("gulf")
    more = [repo.get(recs[i].trade_uuid) for i in rng.choice(len(recs), 30, replace=False)]
    for rec in more:
        repo.new_version(rec.trade_uuid, rec.version, "t", {"price": rec.price * 2})
    model.upsert(repo.blotter_rows([r.trade_uuid for r in more]))
    prices = [int(model._cols["price"][model._view[i]]) for i in range(model.rowCount())]
    assert prices == sorted(prices, reverse=True)
    ref = repo.reference_data()
    brute = sorted((int(r.price * 10**6) for r in repo.current_records()
                    if "gulf" in ref.counterparties[r.counterparty_id].name.lower()),
                   reverse=True)  # fmt: skip
    assert prices == brute


def test_big_tables_sort_and_filter_off_the_gui_thread(qtbot, loaded) -> None:  # type: ignore[no-untyped-def]
    import threading

    from app.views.jobs import JobRunner

    model, _repo = loaded
    runner = JobRunner()
    threads: list[str] = []

    def run_async(fn, done):  # type: ignore[no-untyped-def]
        def work(_ctx):  # type: ignore[no-untyped-def]
            threads.append(threading.current_thread().name)
            return fn()

        runner.submit("view", work, on_result=done, key="view")

    model.async_runner = run_async
    model.async_rows = 1000
    model.sort(COLUMN_INDEX["price"], ASC)
    model.sort(COLUMN_INDEX["price"], DESC)  # supersedes the first request
    qtbot.waitUntil(lambda: not model.view_pending and not runner.active_jobs)
    prices = [int(model._cols["price"][model._view[i]]) for i in range(model.rowCount())]
    assert prices == sorted(prices, reverse=True)
    assert threads and threading.main_thread().name not in threads
    assert runner.shutdown()
