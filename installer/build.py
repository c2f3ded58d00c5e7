"""Build the PyInstaller bundle and smoke-test it (``make package``).

The build is good only if the frozen executable starts offscreen on a fresh data dir and on the
same data dir again, writes a plausible ``--screenshot`` PNG and exits 0. Prints the bundle size
and the cold-start time to first paint.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
BUILD = ROOT / "build"
EXE = DIST / "quantaenergi" / "quantaenergi"


def fail(msg: str) -> None:
    print(f"package: FAILED: {msg}", file=sys.stderr)
    raise SystemExit(1)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def dir_size_mb(path: Path) -> float:
    return (
        sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    )


def smoke(data_dir: Path, shot: Path) -> float:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("QE_DATA_DIR", None)
    t0 = time.perf_counter()
    res = subprocess.run([str(EXE), "--data-dir", str(data_dir), "--screenshot", str(shot)],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        fail(f"frozen app exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    if "Traceback" in res.stderr:
        fail(f"frozen app printed a traceback:\n{res.stderr}")
    w, h = png_size(shot)
    if w < 800 or h < 500:
        fail(f"screenshot is only {w}x{h}")
    return elapsed


def main() -> None:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
           "--distpath", str(DIST), "--workpath", str(BUILD),
           str(ROOT / "installer" / "quantaenergi.spec")]  # fmt: skip
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        fail("PyInstaller failed")
    build_s = time.perf_counter() - t0
    if not EXE.exists():
        fail(f"{EXE} was not built")
    tmp = Path(tempfile.mkdtemp(prefix="qe-package-"))
    try:
        cold = smoke(tmp / "data", tmp / "first.png")  # empty store: migrate + seed demo desk
        warm = smoke(tmp / "data", tmp / "second.png")  # existing store
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = dir_size_mb(DIST / "quantaenergi")
    print()
    print("QuantaEnergi package")
    print(f"  bundle            {DIST / 'quantaenergi'}")
    print(f"  bundle size       {size:8.1f} MB")
    print(f"  build time        {build_s:8.1f} s")
    print(f"  first start       {cold:8.2f} s  (new store, demo desk seeded, screenshot written)")
    print(f"  start to paint    {warm:8.2f} s  (existing store, screenshot written)")
    print("  smoke test        PASS (offscreen --screenshot, exit 0, PNG checked)")


if __name__ == "__main__":
    main()
