"""A feed server with a :class:`~tests.feed_helpers.FastSource` in a child process.

The workstation runs its feed server as a child process (app.feed.embedded); GUI tests that
measure the Qt event loop's lag do the same, so the server's work does not compete with the
GUI thread for this process's interpreter lock. Commands on stdin, one per line, answers on
stdout: ``rate X`` (ticks per second), ``emitted`` (ticks produced so far), ``pause`` (stop
ticking), ``digest ID ID ...`` (the book digest as JSON), ``quit``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from app.feed.server import FeedServer, FeedServerThread


def main(argv: list[str]) -> int:
    from tests.feed_helpers import FastSource

    rate, products, months = float(argv[0]), int(argv[1]), int(argv[2])
    src = FastSource(rate, products, months)
    src.running = True
    srv = FeedServerThread(
        FeedServer(src, heartbeat=1.0, slow_consumer_timeout=120.0, ping_interval=None)
    )
    print("LISTENING", srv.start(), flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "rate":
            src.rate = float(args[0])
            print("ok", flush=True)
        elif cmd == "emitted":
            print(src.ticks_emitted, flush=True)
        elif cmd == "pause":
            src.running = False
            print("ok", flush=True)
        elif cmd == "digest":
            print(json.dumps(srv.book_digest(args)), flush=True)
        elif cmd == "quit":
            break
    srv.stop()
    return 0


class ChildFeed:
    """Parent side: start the child, read its URL, send commands (blocking, short answers)."""

    def __init__(self, rate: float, products: int, months: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.feed_child", str(rate), str(products), str(months)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"feed child did not start: {line!r}")
        self.url = line.split()[1]

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def emitted(self) -> int:
        return int(self.ask("emitted"))

    def book_digest(self, ids: list[str]) -> Any:
        return json.loads(self.ask("digest " + " ".join(ids)))

    def stop(self) -> None:
        try:
            if self.proc.poll() is None and self.proc.stdin is not None:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
