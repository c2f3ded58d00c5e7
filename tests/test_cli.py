"""The command line as a user runs it: screenshot, no display, locked data dir, demo flags."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QLockFile


def _run(args: list[str], env_extra: dict[str, str] | None = None, timeout: int = 240):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_screenshot_offscreen_writes_png_and_exits_0(tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    res = _run(["--data-dir", str(tmp_path / "d"), "--screenshot", str(shot)],
               {"QT_QPA_PLATFORM": "offscreen"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    w, h = _png_size(shot)
    assert w >= 1200 and h >= 700
    assert (tmp_path / "d" / "store.db").exists()
    assert (tmp_path / "d" / "logs" / "quantaenergi.log").exists()
    assert "Traceback" not in res.stderr


def test_no_display_says_so_in_one_line(tmp_path: Path) -> None:
    env = {"QT_QPA_PLATFORM": ""}
    res = _run(["--data-dir", str(tmp_path / "d")], env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "No display found" in lines[0] and "--screenshot" in lines[0]


def test_second_instance_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    lock = QLockFile(str(data / "workstation.lock"))
    assert lock.tryLock(100)
    try:
        res = _run(["--data-dir", str(data), "--screenshot", str(tmp_path / "s.png")],
                   {"QT_QPA_PLATFORM": "offscreen"})  # fmt: skip
    finally:
        lock.unlock()
    assert res.returncode == 1
    assert "Another QuantaEnergi Workstation is using" in res.stderr
    assert "Traceback" not in res.stderr


def test_newer_store_gives_clear_message(tmp_path: Path) -> None:
    import sqlite3

    data = tmp_path / "d"
    data.mkdir()
    con = sqlite3.connect(data / "store.db")
    con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    con.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    con.commit()
    con.close()
    res = _run(["--data-dir", str(data), "--screenshot", str(tmp_path / "s.png")],
               {"QT_QPA_PLATFORM": "offscreen"})  # fmt: skip
    assert res.returncode == 1
    assert "newer version of QuantaEnergi" in res.stderr
    assert "Traceback" not in res.stderr


def test_clear_demo_flag_starts_with_an_empty_blotter(tmp_path: Path) -> None:
    from app.models.repository import TradeRepository
    from app.models.store import Store

    data = tmp_path / "d"
    shot = tmp_path / "s.png"
    env = {"QT_QPA_PLATFORM": "offscreen"}
    assert _run(["--data-dir", str(data), "--screenshot", str(shot)], env).returncode == 0
    res = _run(["--data-dir", str(data), "--clear-demo", "--screenshot", str(shot)], env)
    assert res.returncode == 0, res.stderr
    store = Store.open_file(data / "store.db")
    try:
        assert TradeRepository(store).count_current() == 0
    finally:
        store.close()


def test_feed_subcommands_say_what_is_wrong(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`quantaenergi feed ...` never starts the GUI; bad use and a missing keyring are said."""
    from app.cli import main

    assert main(["feed"]) == 2
    assert "usage: quantaenergi feed" in capsys.readouterr().err
    assert main(["feed", "set-token"]) == 2
    assert "usage: quantaenergi feed set-token URL" in capsys.readouterr().err
    monkeypatch.setenv("QE_FEED_TOKEN", "s3cret")  # no prompt; the test env has no keyring
    assert main(["feed", "set-token", "ws://desk:8765"]) == 1
    assert "no OS keyring" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["feed", "serve", "--mode", "nonsense"])
    assert exc.value.code == 2
