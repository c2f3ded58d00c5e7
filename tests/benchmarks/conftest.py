"""Benchmarks (``make bench``): always offscreen, so figures compare between machines and runs.

They are not part of ``make test`` (which passes ``--ignore=tests/benchmarks``).
"""

from __future__ import annotations

import os

# Forced, not setdefault: an on-screen platform paints differently and skews the figures.
os.environ["QT_QPA_PLATFORM"] = "offscreen"
