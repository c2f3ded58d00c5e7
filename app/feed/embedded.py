"""The feed server the workstation starts for itself when no remote feed is configured.

It runs as a child process (``quantaenergi feed serve``) on a free loopback port, so its
simulation uses the second core and never competes with the GUI thread for the GIL. The child
gets a random one-time token through its environment (never on the command line, never in a
file), writes its log to ``<data dir>/logs/feed-server.log``, and exits when the workstation
closes its stdin — so it also dies with a crashed parent.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

__all__ = ["EmbeddedFeed", "EmbeddedFeedError", "feed_command"]

log = logging.getLogger(__name__)
TOKEN_ENV = "QE_EMBEDDED_FEED_TOKEN"


class EmbeddedFeedError(RuntimeError):
    """The embedded feed server could not be started (message says why)."""


def feed_command(*args: str) -> list[str]:
    """Command line that runs ``quantaenergi <args>`` from this installation (dev or frozen)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "app", *args]


class EmbeddedFeed:
    """Start/stop a local feed server child process and learn its URL and token."""

    def __init__(
        self,
        log_dir: Path,
        *,
        mode: str = "simulate",
        speed: float | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.log_dir = log_dir
        self.mode = mode
        self.speed = speed
        self.extra_args = extra_args
        self.token = secrets.token_urlsafe(24)
        self.url: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: object | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self, timeout: float = 60.0) -> str:
        """Start the child and wait until it listens; returns ``ws://127.0.0.1:PORT``.

        Raises EmbeddedFeedError with the child's last log lines when it fails or times out.
        """
        args = ["feed", "serve", "--host", "127.0.0.1", "--port", "0", "--mode", self.mode]
        args += ["--token-env", TOKEN_ENV, "--exit-on-stdin-eof"]
        if self.speed is not None:
            args += ["--speed", repr(self.speed)]
        args += list(self.extra_args)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / "feed-server.log"
        env = {**os.environ, TOKEN_ENV: self.token}
        env.pop("QT_QPA_PLATFORM", None)
        with self._lock:
            errf = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - lives with the child
            self._log_file = errf
            try:
                self._proc = subprocess.Popen(
                    feed_command(*args),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    env=env,
                    text=True,
                    bufsize=1,
                )
            except OSError as exc:
                raise EmbeddedFeedError(f"could not start the feed server: {exc}") from exc
        proc = self._proc
        assert proc.stdout is not None
        found: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("LISTENING "):
                    found.append(line.split(None, 1)[1].strip())
                    break
            # Keep draining so the child never blocks on a full pipe.
            for _ in proc.stdout:
                pass

        reader = threading.Thread(target=read, name="feed-server-stdout", daemon=True)
        reader.start()
        self._reader = reader
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        if not found:
            self.stop()
            raise EmbeddedFeedError(
                f"the feed server did not start (see {log_path}): {_tail(log_path)}"
            )
        self.url = found[0]
        log.info("Embedded feed server (%s) listening on %s, pid %d", self.mode, self.url, proc.pid)
        return self.url

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Close the child's stdin (it exits), terminate it if it lingers, then kill."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            except OSError:
                pass
            reader, self._reader = self._reader, None
            if reader is not None:
                reader.join(timeout=timeout)  # EOF once the child is gone
            if proc.stdout is not None and (reader is None or not reader.is_alive()):
                proc.stdout.close()
        f = self._log_file
        self._log_file = None
        if f is not None:
            f.close()  # type: ignore[attr-defined]


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"
