"""``quantaenergi risk report``: HTML, Excel and PDF risk reports of a demo desk, headless."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import subprocess
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from app.cli import main
from app.engine.curves import ForwardCurve
from app.feed.sim_params import SIM_PARAMS
from app.models.catalogue import PRODUCT_SPECS
from app.models.demo import ensure_reference_data, seed_demo
from app.models.market_data import MarketDataRepository
from app.models.repository import TradeRepository
from app.models.store import Store
from app.reports.headless import load_bundled_history, resolve_method
from app.reports.risk import ReportError, write_report
from app.services.positions import PositionReport, PositionService
from app.services.risk import RiskInputs, RiskResult, RiskService, risk_inputs

AS_OF = dt.date(2026, 11, 24)
START = "2026-12"
N_MONTHS = 49


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the demo desk and one flat settlement curve per product."""
    data = tmp_path_factory.mktemp("desk")
    store = Store.open_file(data / "store.db")
    try:
        ensure_reference_data(store)
        seed_demo(store, 200, today=AS_OF)
        repo = MarketDataRepository(store)
        for p in PRODUCT_SPECS:
            repo.save_settlement(p.code, AS_OF - dt.timedelta(days=1), START,
                                 [p.typical_level] * N_MONTHS, 0, "test")  # fmt: skip
    finally:
        store.close()
    return data


@pytest.fixture(scope="module")
def position_report(desk: Path) -> PositionReport:
    """The desk revalued on the curves seeded (built here, not read back by the report code)."""
    months = np.datetime64(START, "M") + np.arange(N_MONTHS)
    curves = {p.code: ForwardCurve(months, np.full(N_MONTHS, p.typical_level), p.code, p.weights)
              for p in PRODUCT_SPECS}  # fmt: skip
    store = Store.open_file(desk / "store.db")
    try:
        svc = PositionService(TradeRepository(store))
        return svc.revalue(svc.snapshot(), curves, AS_OF, dimension="product", stale=set(curves))
    finally:
        store.close()


@pytest.fixture(scope="module")
def service() -> RiskService:
    return RiskService(load_bundled_history())


Expect = Callable[..., tuple[RiskInputs, RiskResult]]


@pytest.fixture(scope="module")
def expected(position_report: PositionReport, service: RiskService) -> Expect:
    def run(method: str, group_by: str = "product", books: list[str] | None = None,
            conf: float = 0.99, horizon: int = 1) -> tuple[RiskInputs, RiskResult]:  # fmt: skip
        inputs = risk_inputs(position_report, group_by, books, tenor_vols=dict(SIM_PARAMS))
        return inputs, service.calculate(inputs, method, conf, horizon, window_end=AS_OF)

    return run


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse (usage errors, --help)
        return int(exc.code or 0)


def _report(desk: Path, out: Path, *extra: str) -> list[str]:
    return ["risk", "report", "--data-dir", str(desk), "--out", str(out),
            "--as-of", AS_OF.isoformat(), *extra]  # fmt: skip


class _Cells(HTMLParser):
    """Collects the text of every table cell and the ``data-value`` of numeric ones."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[float] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k == "data-value" and v is not None:
                self.values.append(float(v))


def test_html_report_shows_the_services_var(
    desk: Path, tmp_path: Path, expected: Expect, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "risk.html"
    assert _cli(_report(desk, out, "--method", "hist", "--conf", "0.99", "--horizon", "1")) == 0
    assert "Wrote" in capsys.readouterr().out
    _, res = expected("historical")
    text = out.read_text(encoding="utf-8")
    parser = _Cells()
    parser.feed(text)
    assert {"table", "svg", "rect", "figure"} <= set(parser.tags)
    assert text.count("<svg") == len(res.currencies) >= 2  # one histogram per currency
    for c in res.currencies:
        assert c.var in parser.values and c.es in parser.values  # exact floats
        assert f"{c.var:,.0f}" in text
    assert html.escape(res.note()) in text  # the method note, verbatim
    assert "<th>Book scope</th><td>all books</td>" in text and "Positions" in text


def test_xlsx_report_reads_back(desk: Path, tmp_path: Path, expected: Expect) -> None:
    out = tmp_path / "risk.xlsx"
    argv = _report(desk, out, "--method", "param", "--conf", "0.975", "--horizon", "5",
                   "--group-by", "book")  # fmt: skip
    assert _cli(argv) == 0
    _, res = expected("parametric", "book", conf=0.975, horizon=5)
    wb = load_workbook(out)
    assert wb.sheetnames == ["Summary", "Contributions", "Positions", "Scenario P&L"]
    rows = list(wb["Summary"].iter_rows(values_only=True))
    head = next(i for i, r in enumerate(rows) if r[:3] == ("Currency", "VaR", "ES"))
    got = {r[0]: (r[1], r[2]) for r in rows[head + 1 : head + 1 + len(res.currencies)]}
    for c in res.currencies:
        assert got[c.currency] == pytest.approx((c.var, c.es), rel=1e-12)
    assert any(r[0] == res.note() for r in rows)
    contrib = list(wb["Contributions"].iter_rows(values_only=True))
    for c in res.currencies:
        title = next(i for i, r in enumerate(contrib) if r[0] and f"({c.currency})" in r[0])
        assert contrib[title + 1][:5] == ("Book", "Delta", "Unit", "ES contribution", "% of ES")
        body = []
        for r in contrib[title + 2 :]:
            if r[0] == "Total (= ES)":
                assert r[3] == pytest.approx(c.es, rel=1e-9)
                break
            body.append(r[3])
        assert len(body) == len(c.contributions)
        assert sum(body) == pytest.approx(c.es, rel=1e-9)


def test_pdf_report_for_one_book(
    desk: Path, tmp_path: Path, expected: Expect, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gas.pdf"
    assert _cli(_report(desk, out, "--method", "mc", "--book", "demo gas")) == 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert pages >= 3  # summary, one page per currency, positions
    _, res = expected("monte_carlo", books=["demo gas"])
    said = capsys.readouterr().out
    for c in res.currencies:
        assert f"{c.currency} VaR {c.var:,.0f} ES {c.es:,.0f}" in said
        assert c.var_ci is not None


def test_cli_imports_no_qt(desk: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"rc = main({_report(desk, out, '--method', 'param')!r})\n"
        "qt = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        "print('QT_MODULES', qt)\n"
        "sys.exit(rc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY",
                                                            "QT_QPA_PLATFORM")}  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "QT_MODULES []" in res.stdout
    assert out.is_file()


def _empty_store(tmp_path: Path) -> Path:
    Store.open_file(tmp_path / "empty" / "store.db").close()
    return tmp_path / "empty"


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("unknown book", ["--book", "NOPE"], "unknown book 'NOPE'"),
        ("bad method", ["--method", "vibes"], "unknown method 'vibes'"),
        ("bad extension", ["OUT=r.docx"], "cannot tell the report format"),
        ("missing folder", ["OUT=no/such/dir/r.html"], "does not exist"),
        ("folder as file", ["OUT=."], "cannot tell the report format"),
        ("bad confidence", ["--conf", "99"], "confidence must be in [0.5, 1)"),
        ("bad horizon", ["--horizon", "11"], "horizon must be 1..10"),
        ("bad date", ["--as-of", "24/11/2026"], "--as-of"),
        ("bad group", ["--group-by", "desk"], "--group-by"),
        ("empty store", ["DATA=empty"], "holds no trades"),
        ("no store", ["DATA=none"], "no store in"),
        ("no curves", ["--as-of", "2026-11-01"], "no recorded settlement curve dated on or"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    desk: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    args: list[str],
    message: str,
) -> None:
    out, data, extra = tmp_path / "r.html", desk, []
    for a in args:
        if a.startswith("OUT="):
            out = tmp_path / a[4:]
        elif a == "DATA=empty":
            data = _empty_store(tmp_path)
        elif a == "DATA=none":
            data = tmp_path / "none"
        else:
            extra.append(a)
    argv = ["risk", "report", "--data-dir", str(data), "--out", str(out),
            "--method", "param", *extra]  # fmt: skip
    if "--as-of" not in extra:
        argv += ["--as-of", AS_OF.isoformat()]
    assert _cli(argv) == 2, case
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and message in err[0], err
    assert not (tmp_path / "r.html").exists()
    assert not (tmp_path / "none").exists()  # a missing store is not created


def test_bad_input_in_a_real_process_has_no_traceback(desk: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "app", *_report(desk, tmp_path / "r.html"),
                          "--book", "NOPE"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: unknown book 'NOPE': the store has DEMO Gas, DEMO Oil, DEMO Power"
    )


def test_help_and_method_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["risk", "report", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--method" in text and "hist-dg" in text and "monte_carlo" in text and "--as-of" in text
    assert _cli(["risk"]) == 2
    aliases = {"hist": "historical", "hist-dg": "historical_dg", "param": "parametric",
               "dg-cf": "delta_gamma_cf", "mc": "monte_carlo", "monte_carlo": "monte_carlo",
               "delta-gamma-cf": "delta_gamma_cf", "Historical": "historical"}  # fmt: skip
    for name, key in aliases.items():
        assert resolve_method(name) == key


def test_write_report_for_the_gui(
    tmp_path: Path, position_report: PositionReport, expected: Expect
) -> None:
    """The Risk dock's entry point: the on-screen result, no Qt, every format."""
    inputs, res = expected("delta_gamma_cf", "trade")
    for ext in ("html", "xlsx", "pdf"):
        path = write_report(res, position_report, tmp_path / f"r.{ext}", inputs=inputs)
        assert path == (tmp_path / f"r.{ext}").resolve() and path.stat().st_size > 1000
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<svg" not in text and "No scenario distribution" in text  # Cornish-Fisher: no chart
    with pytest.raises(ReportError, match="report format"):
        write_report(res, position_report, tmp_path / "r.txt")
    assert not (tmp_path / "r.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.pdf", "r.xlsx"]
