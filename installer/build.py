"""Build the PyInstaller bundle and smoke-test it (``make package``).

Runs PyInstaller with ``installer/quantaenergi.spec`` (bundle in ``dist/quantaenergi``, work files
in ``build/``), then checks the frozen app:

* the Alembic migrations are in the bundle as files and the modules imported by name at run time
  are in its archive;
* ``quantaenergi --data-dir TMP --screenshot TMP/shot.png`` with ``QT_QPA_PLATFORM=offscreen``
  exits 0 on a fresh data dir (migrate, seed the demo desk) and again on the same data dir
  (existing store), within a time limit, without a traceback or an ERROR in its log, with its
  embedded feed server child started from the bundle, and writes
  a valid, non-blank PNG of at least 800x500.

Prints the bundle size and the start-up times and exits non-zero with a message on any failure.

Usage: ``python installer/build.py [--skip-build] [--timeout SECONDS]``
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "installer" / "quantaenergi.spec"
DIST = ROOT / "dist"
BUILD = ROOT / "build"
BUNDLE = DIST / "quantaenergi"
EXE = BUNDLE / ("quantaenergi.exe" if sys.platform.startswith("win") else "quantaenergi")
MIN_W, MIN_H = 800, 500

# Loaded from disk by Alembic, relative to the bundle's app/models directory.
MIGRATION_FILES = (
    "env.py",
    "script.py.mako",
    "versions/0001_initial.py",
    "versions/0002_market_data.py",
    "versions/0003_limits.py",
)
# Imported by name or lazily at run time: must be in the bundle's module archive (pure Python;
# extension modules such as psycopg_binary.pq are covered by the import self-test).
REQUIRED_MODULES = (
    "app.cli", "app.views.application", "app.models.store", "app.models.migrations.env",
    "alembic.runtime.migration", "alembic.ddl.sqlite", "alembic.ddl.postgresql",
    "sqlalchemy.dialects.sqlite.pysqlite", "sqlalchemy.dialects.postgresql.psycopg", "psycopg",
    "openpyxl", "platformdirs", "logging.handlers", "mako.template",
    "app.feed.serve", "app.feed.simulator", "app.feed.replay", "app.feed.client", "websockets",
)  # fmt: skip


class Failure(Exception):
    """A build or smoke-test failure, with a message for the terminal."""


@dataclass
class Run:
    label: str
    wall_s: float = 0.0
    line_s: float | None = None  # time to the "Screenshot written" line
    png: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)


# ---- PNG -----------------------------------------------------------------------------------------


def check_png(path: Path) -> tuple[int, int]:
    """Validate ``path`` as a PNG (signature, IHDR and its CRC, IDAT, IEND, not blank); its size."""
    if not path.is_file():
        raise Failure(f"no screenshot was written at {path}")
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise Failure(f"{path} is not a PNG (bad signature)")
    pos, chunks, idat = 8, [], b""
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length] or b"\0\0\0\0")
        if zlib.crc32(kind + body) != crc:
            raise Failure(f"{path}: bad CRC in the {kind!r} chunk (truncated or corrupt PNG)")
        chunks.append(kind)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0] != b"IHDR" or chunks[-1] != b"IEND" or not idat:
        raise Failure(f"{path}: not a complete PNG (chunks {[c.decode() for c in chunks]})")
    w, h = struct.unpack(">II", data[16:24])
    if w < MIN_W or h < MIN_H:
        raise Failure(f"{path}: screenshot is {w}x{h}, expected at least {MIN_W}x{MIN_H}")
    try:
        raw = zlib.decompress(idat)
    except zlib.error as exc:
        raise Failure(f"{path}: image data does not decompress ({exc})") from exc
    if len(set(raw[: 4 * 1024 * 1024])) < 16:
        raise Failure(f"{path}: the screenshot looks blank (almost no distinct pixel values)")
    return w, h


# ---- bundle checks -------------------------------------------------------------------------------


def bundle_size_mib(path: Path) -> float:
    if shutil.which("du") and not sys.platform.startswith("win"):
        out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True)
        if out.returncode == 0:
            return int(out.stdout.split()[0]) / 1024
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def check_bundle_contents() -> None:
    envs = list(BUNDLE.rglob("app/models/migrations/env.py"))
    if not envs:
        raise Failure(f"app/models/migrations/env.py is not in {BUNDLE}: Alembic cannot migrate")
    mig = envs[0].parent
    missing = [f for f in MIGRATION_FILES if not (mig / f).is_file()]
    if missing:
        raise Failure(f"migration files missing from {mig}: {', '.join(missing)}")
    toc_file = BUILD / "quantaenergi" / "PYZ-00.toc"
    try:
        toc = ast.literal_eval(toc_file.read_text())
        modules = {entry[0] for entry in toc[1]}
    except (OSError, ValueError, SyntaxError, IndexError, TypeError) as exc:
        raise Failure(f"cannot read the module list {toc_file}: {exc}") from exc
    missing = [m for m in REQUIRED_MODULES if m not in modules]
    if missing:
        raise Failure(f"modules missing from the bundle: {', '.join(missing)}")


def source_app_modules() -> set[str]:
    """The ``app`` modules of the source tree (what the self-test should import)."""
    names = set()
    for f in (ROOT / "app").rglob("*.py"):
        rel = f.relative_to(ROOT).with_suffix("").parts
        if "migrations" in rel or "__pycache__" in rel or rel[-1] == "__main__":
            continue
        names.add(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
    return names


def selftest(expected: set[str], timeout: float) -> str:
    """Run the bundle's import self-test (see installer/entry.py); its summary line."""
    env = dict(os.environ, QE_PACKAGE_SELFTEST="1", QT_QPA_PLATFORM="offscreen")
    try:
        res = subprocess.run([str(EXE)], capture_output=True, text=True, errors="replace",
                             env=env, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise Failure(f"the import self-test did not finish within {timeout:.0f} s") from None
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines or not lines[0].startswith("selftest ok"):
        raise Failure(f"import self-test failed (exit {res.returncode}):\n{res.stdout}{res.stderr}")
    imported = {"app"} | {n for ln in lines if ln.startswith("modules:") for n in ln.split()[1:]}
    missing = sorted(expected - imported)
    if missing:
        raise Failure(f"app modules missing from the bundle: {', '.join(missing)}")
    return lines[0]


# ---- smoke run -----------------------------------------------------------------------------------


def smoke(label: str, data_dir: Path, shot: Path, timeout: float) -> Run:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONUNBUFFERED="1")
    for var in ("QE_DATA_DIR", "PYTHONPATH", "PYTHONHOME", "QT_PLUGIN_PATH", "LD_LIBRARY_PATH"):
        env.pop(var, None)
    cmd = [str(EXE), "--data-dir", str(data_dir), "--screenshot", str(shot)]
    run = Run(label)
    out_lines: list[str] = []
    err_lines: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", env=env, cwd=data_dir.parent)  # fmt: skip

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if run.line_s is None and line.startswith("Screenshot written"):
                run.line_s = time.perf_counter() - t0
            out_lines.append(line)

    def read_err() -> None:
        assert proc.stderr is not None
        err_lines.extend(proc.stderr)

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failure(f"{label}: the frozen app did not exit within {timeout:.0f} s "
                      f"({' '.join(cmd)})\n{''.join(err_lines)}") from None  # fmt: skip
    run.wall_s = time.perf_counter() - t0
    for t in readers:
        t.join(10)
    out, err = "".join(out_lines), "".join(err_lines)
    log = data_dir / "logs" / "quantaenergi.log"
    log_tail = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
    transcript = (
        f"$ QT_QPA_PLATFORM=offscreen {' '.join(cmd)}\n--- stdout\n{out}--- stderr\n{err}"
        f"--- end of {log}\n" + "\n".join(log_tail)
    )
    if rc != 0:
        raise Failure(f"{label}: the frozen app exited with code {rc}\n{transcript}")
    if "Traceback (most recent call last)" in err:
        raise Failure(f"{label}: the frozen app printed a traceback\n{transcript}")
    if "Screenshot written" not in out:
        if sys.platform.startswith("win"):
            run.notes.append("no stdout (windowed app)")
        else:
            raise Failure(f"{label}: no 'Screenshot written' line on stdout\n{transcript}")
    run.png = check_png(shot)
    if log.is_file():
        text = log.read_text(errors="replace")
        bad = [ln for ln in text.splitlines() if " ERROR " in ln or " CRITICAL " in ln]
        if bad or "Traceback (most recent call last)" in text:
            raise Failure(
                f"{label}: errors in {log}:\n" + "\n".join(bad or text.splitlines()[-30:])
            )
        # The frozen app starts its embedded feed server as `quantaenergi feed serve` (a child
        # of the bundle's own executable): it must have come up.
        if "Embedded feed server" not in text:
            raise Failure(f"{label}: the embedded feed server did not start (see {log})")
        warnings = [ln for ln in text.splitlines() if " WARNING " in ln]
        if warnings:
            run.notes.append(f"{len(warnings)} warning(s) in the log, first: {warnings[0][24:]}")
    else:
        run.notes.append("no log file")
    qt_warnings = [ln.strip() for ln in err.splitlines() if ln.strip()]
    if qt_warnings:
        run.notes.append(f"stderr: {qt_warnings[0][:120]}")
    return run


# ---- main ----------------------------------------------------------------------------------------


def _record_settlements(data_dir: Path) -> None:
    """Store one settlement curve per catalogue product in the smoke store (flat at its typical
    level, 36 months from next month), as a day with the feed running would: the report marks
    the book with the last recorded settlements and refuses to run without them."""
    import datetime as dt

    sys.path.insert(0, str(ROOT))
    from app.models.catalogue import PRODUCT_SPECS
    from app.models.market_data import MarketDataRepository
    from app.models.store import Store

    store = Store.open_file(data_dir / "store.db")
    try:
        repo = MarketDataRepository(store)
        today = dt.date.today()
        start = f"{today.year + today.month // 12}-{today.month % 12 + 1:02d}"
        for p in PRODUCT_SPECS:
            repo.save_settlement(p.code, today, start, [p.typical_level] * 36, time.time_ns(),
                                 "package smoke test")  # fmt: skip
    finally:
        store.close()


def report_smoke(data_dir: Path, out: Path, timeout: float) -> float:
    """``quantaenergi risk report`` from the bundle (headless; fpdf2 and the risk engine must
    be inside it): exit 0 and a PDF written."""
    _record_settlements(data_dir)
    t0 = time.monotonic()
    cmd = [str(EXE), "risk", "report", "--data-dir", str(data_dir), "--method", "hist",
           "--out", str(out)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout)
    if res.returncode != 0:
        raise Failure(f"risk report exited {res.returncode}: {res.stderr.strip()[-500:]}")
    if not out.is_file() or not out.read_bytes().startswith(b"%PDF"):
        raise Failure(f"risk report wrote no PDF at {out}")
    return time.monotonic() - t0


def build() -> float:
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(DIST), "--workpath", str(BUILD), str(SPEC)]  # fmt: skip
    print("package: building the bundle:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise Failure("PyInstaller failed (see its output above)")
    if not EXE.is_file():
        raise Failure(f"PyInstaller finished but {EXE} was not built")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-build", action="store_true", help="smoke-test the existing bundle")
    p.add_argument("--timeout", type=float, default=240, help="seconds allowed per smoke run")
    args = p.parse_args(argv)
    try:
        expected = source_app_modules()  # before building: the source may change meanwhile
        build_s = None if args.skip_build else build()
        if not EXE.is_file():
            raise Failure(f"{EXE} does not exist: run without --skip-build")
        check_bundle_contents()
        print("package: import self-test ...", flush=True)
        imports = selftest(expected, args.timeout)
        tmp = Path(tempfile.mkdtemp(prefix="qe-package-"))
        try:
            data = tmp / "data"
            print("package: smoke test 1/2 (fresh data dir) ...", flush=True)
            first = smoke("fresh data dir", data, tmp / "first.png", args.timeout)
            if not any(data.glob("*.db")):
                raise Failure(f"the first run created no store in {data}")
            print("package: smoke test 2/2 (existing store) ...", flush=True)
            second = smoke("existing store", data, tmp / "second.png", args.timeout)
            print("package: headless risk report (PDF) ...", flush=True)
            report_s = report_smoke(data, tmp / "risk.pdf", args.timeout)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size = bundle_size_mib(BUNDLE)
    except Failure as exc:
        print(f"\npackage: FAILED: {exc}", file=sys.stderr)
        return 1

    def secs(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.2f} s"

    header = ("smoke run", "exit", "start -> exit", "start -> 'Screenshot written'", "PNG")
    rows: list[tuple[str, ...]] = [header]
    rows += [
        (run.label, "0", secs(run.wall_s), secs(run.line_s), f"{run.png[0]}x{run.png[1]}")
        for run in (first, second)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    rows.insert(1, tuple("-" * w for w in widths))
    print("\nQuantaEnergi package: PASS\n")
    print(f"  bundle        {BUNDLE}")
    print(f"  bundle size   {size:.1f} MiB")
    print(f"  build time    {'n/a (--skip-build)' if build_s is None else f'{build_s:.1f} s'}")
    print(f"  self-test     {imports.removeprefix('selftest ok ')} imported")
    print(f"  risk report   PDF written headless in {report_s:.1f} s")
    print()
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for run in (first, second):
        for note in run.notes:
            print(f"  note ({run.label}): {note}")
    print("\n  Times are wall clock from process start, offscreen. The screenshot is taken 0.4 s")
    print("  after the panels report ready; the fresh run also migrates a new store and seeds the")
    print("  demo desk (5,000 trades).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
