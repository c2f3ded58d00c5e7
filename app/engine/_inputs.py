"""Input handling shared by the engine's pricers: validation, broadcasting, scalar output.

Every public pricer takes scalars or arrays that broadcast, rejects NaN/infinite inputs with a
``ValueError`` naming the argument, and returns a Python ``float`` when every input was a scalar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
FloatOrArray = float | FloatArray


def as_float(name: str, value: ArrayLike) -> FloatArray:
    """``value`` as a float array; ``ValueError`` naming ``name`` if not numeric or not finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric") from exc
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite")
    return arr


def as_bool(name: str, value: ArrayLike) -> NDArray[np.bool_]:
    """``value`` as a bool array; integers such as 1 are refused (a call flag must be a bool)."""
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise ValueError(f"{name} must be a bool or a boolean array, got dtype {arr.dtype}")
    return arr


def check(name: str, ok: NDArray[np.bool_] | bool, what: str) -> None:
    """Raise ``ValueError('<name> must be <what>')`` unless ``ok`` holds everywhere."""
    if not np.all(ok):
        raise ValueError(f"{name} must be {what}")


def out(x: Any, scalar: bool) -> FloatOrArray:
    """A float for scalar input, else a float64 array."""
    return float(x) if scalar else np.asarray(x, dtype=np.float64)


def broadcast(
    named: dict[str, ArrayLike], call: ArrayLike
) -> tuple[list[FloatArray], NDArray[np.bool_], bool]:
    """Validate and broadcast ``named`` float inputs with the ``call`` flag.

    Returns the float arrays (in ``named`` order), the broadcast call flags and whether every
    input was a scalar.
    """
    arrays: list[Any] = [as_float(k, v) for k, v in named.items()]
    is_call = as_bool("call", call)
    scalar = all(a.ndim == 0 for a in arrays) and is_call.ndim == 0
    try:
        *res, is_call_b = np.broadcast_arrays(*arrays, is_call)
    except ValueError as exc:
        raise ValueError(f"arguments do not broadcast together: {exc}") from exc
    return [np.array(a, dtype=np.float64) for a in res], np.array(is_call_b), scalar
