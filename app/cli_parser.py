"""The argument parser every ``quantaenergi`` command uses: usage errors as ONE line on stderr
with exit code 2 (``prog: error: message (see --help)``), for scripts that read stderr."""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")
