"""Named crash points on the sync write path, for fault-injection tests.

``QE_FAULT_POINT=name[:n]`` in the environment makes the process kill itself with SIGKILL the
n-th time (default: first) it reaches :func:`point` ``(name)``. Unset (always, in production)
a point costs one dictionary lookup. The points: ``push.before_commit`` (the batch is applied
on the server but not committed), ``push.after_commit`` (committed centrally, not yet
acknowledged locally), ``pull.before_commit`` (pulled rows applied locally, not committed),
``pull.after_commit``.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("QE_FAULT_POINT", "")
_NAME, _, _N = _SPEC.partition(":")
_COUNT = {"n": int(_N) if _N.isdigit() else 1}


def point(name: str) -> None:
    """Crash here (SIGKILL) when this point is armed by ``QE_FAULT_POINT``."""
    if _NAME and name == _NAME:
        _COUNT["n"] -= 1
        if _COUNT["n"] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
