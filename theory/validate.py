"""One family of input validators for every entry point of ``theory`` and ``sims``.

Each validator takes the field's name as the caller should report it (``num_negatives``,
``train.steps``, ``--clusters``), the value, and the limits, and either returns the value in
a canonical type or raises a one-line ``ValueError``: ``"<name>: <what is wrong>, got <value>"``.
The rules are the same everywhere:

* a boolean is never a number (``True`` is not ``1``);
* integers are Python or numpy integers; a float is not an integer, not even ``2.0``, unless
  the caller asks for integral floats (array arguments of the theory functions);
* reals are Python or numpy numbers (not strings, not booleans), finite, within the limits;
* ``float32=True`` also requires the value to be representable in float32 with room to
  spare (:data:`FLOAT32_LIMIT`), for values that enter the compiled float32 program.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NoReturn, Sequence

import numpy as np

#: the largest magnitude a float32 input may have: float32's largest finite value divided by
#: 2^40, so that products of a few such values still fit.
FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 2.0**40
#: the smallest positive magnitude a float32 input may have (normal numbers, with room).
FLOAT32_TINY = float(np.finfo(np.float32).tiny) * 2.0**40
#: integer (array) arguments are below this in magnitude: int64 with room for sums (2^62).
MAX_INTEGER = 2**62
#: seeds are at most this (they may become ``jax.random.PRNGKey(seed)``, a uint32 seed).
MAX_SEED = 2**32 - 1


def fail(name: str, value: Any, why: str) -> NoReturn:
    """Raise the one-line ``ValueError`` of the family: ``"<name>: <why>, got <value>"``."""
    raise ValueError(f"{name}: {why}, got {_shown(value)}")


def _shown(value: Any) -> str:
    if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_integer(value: Any) -> bool:
    """A Python or numpy integer (0-d arrays included), not a boolean."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_real(value: Any) -> bool:
    """A Python or numpy real number (0-d arrays included), not a boolean or a string."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None,
            reason: str | None = None) -> int:
    """An integer within ``[minimum, maximum]`` (either end optional), as a Python ``int``.

    ``reason`` says why the maximum exists (``"memory"``, ``"time"``); it is shown with it:
    ``"--negatives: must be at most 4,096 (memory), got 5000"``.

    Example:
      >>> integer("train.steps", np.int64(5), minimum=1)
      5
      >>> integer("train.steps", True, minimum=1)
      Traceback (most recent call last):
      ...
      ValueError: train.steps: must be an integer, got True
    """
    if not is_integer(value):
        fail(name, value, "must be an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        fail(name, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        fail(name, value, f"must be at most {maximum:,}" + (f" ({reason})" if reason else ""))
    return value


def seed(name: str, value: Any, *, maximum: int = MAX_SEED, generator: bool = False):
    """A random seed: an integer in ``[0, maximum]`` or, with ``generator``, a
    ``numpy.random.Generator`` (returned as is). ``None`` (fresh entropy) is refused, so that
    every result can be reproduced.

    Example:
      >>> seed("seed", np.int64(7))
      7
    """
    if generator and isinstance(value, np.random.Generator):
        return value
    if not is_integer(value):
        fail(name, value, "must be an integer" + (" or a numpy.random.Generator" if generator else ""))
    return integer(name, value, minimum=0, maximum=maximum)


def boolean(name: str, value: Any) -> bool:
    """``True`` or ``False`` (Python or numpy), as a Python ``bool``."""
    if not isinstance(value, (bool, np.bool_)):
        fail(name, value, "must be True or False")
    return bool(value)


def real(name: str, value: Any, *, positive: bool = False, minimum: float | None = None,
         maximum: float | None = None, float32: bool = False) -> float:
    """A finite real number within the limits, as a Python ``float``.

    Args:
      positive: require ``value > 0``.
      minimum, maximum: inclusive limits.
      float32: require ``|value|`` between :data:`FLOAT32_TINY` (unless 0) and
        :data:`FLOAT32_LIMIT`, so that the value and its products stay exact enough in float32.

    Example:
      >>> real("data.gap", 0.05, positive=True)
      0.05
      >>> real("data.gap", "0.05", positive=True)
      Traceback (most recent call last):
      ...
      ValueError: data.gap: must be a real number, got '0.05'
    """
    if not is_real(value):
        fail(name, value, "must be a real number")
    try:
        value = float(value)
    except OverflowError:  # a Python integer beyond float64
        fail(name, value, "must be finite")
    if not math.isfinite(value):
        fail(name, value, "must be finite")
    if positive and value <= 0:
        fail(name, value, "must be > 0")
    if minimum is not None and value < minimum:
        fail(name, value, f"must be >= {minimum:g}")
    if maximum is not None and value > maximum:
        fail(name, value, f"must be <= {maximum:g}")
    if float32 and value != 0 and not FLOAT32_TINY <= abs(value) <= FLOAT32_LIMIT:
        fail(name, value, f"must be between {FLOAT32_TINY:.3g} and {FLOAT32_LIMIT:.3g} in magnitude "
                          "(computed in float32)")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` (strings)."""
    if not isinstance(value, str) or value not in choices:
        fail(name, value, f"must be one of {', '.join(choices)}")
    return value


def integer_array(name: str, value: Any, minimum: int) -> np.ndarray:
    """An integer or array of integers ``>= minimum`` (integral floats accepted), as int64.

    Example:
      >>> integer_array("num_atoms", [2, 3.0], 2).tolist()
      [2, 3]
    """
    if isinstance(value, (bool, np.bool_)):
        fail(name, value, "must be an integer (or array of integers)")
    if is_integer(value) and abs(int(value)) >= MAX_INTEGER:
        fail(name, value, "must be an integer below 2^62")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError):  # ragged nesting and the like
        fail(name, value, "must be an integer (or array of integers)")
    if arr.dtype == object and arr.size and all(is_integer(v) for v in arr.flat):
        fail(name, value, "must be an integer below 2^62")  # Python integers beyond int64
    if arr.dtype == object or arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        fail(name, value, "must be an integer (or array of integers)")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            fail(name, value, "must be an integer (or array of integers)")
        if arr.size and np.max(np.abs(arr)) >= 2.0**62:
            fail(name, value, "must be an integer below 2^62")
    elif arr.size and (np.max(arr) >= MAX_INTEGER or np.min(arr) <= -MAX_INTEGER):  # uint64 too
        fail(name, value, "must be an integer below 2^62")
    arr = arr.astype(np.int64)
    if np.any(arr < minimum):
        fail(name, arr[arr < minimum].flat[0], f"must be at least {minimum}")
    return arr


def real_array(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> np.ndarray:
    """A real number or array of them, finite (and ``> 0`` with ``positive``, ``>= 0`` with
    ``nonnegative``), as float64.

    Example:
      >>> real_array("temperature", [0.5, 1], positive=True).tolist()
      [0.5, 1.0]
    """
    if isinstance(value, (bool, np.bool_, str)):
        fail(name, value, "must be a real number (or array of them)")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(name, value, "must be a real number (or array of them)")
    if arr.dtype.kind == "b" or np.asarray(value).dtype.kind in "bOUS":
        fail(name, value, "must be a real number (or array of them)")
    low = (arr <= 0) if positive else (arr < 0) if nonnegative else np.zeros(arr.shape, bool)
    bad = ~np.isfinite(arr) | low
    if bad.any():
        why = "must be finite and > 0" if positive else "must be finite and >= 0" if nonnegative else "must be finite"
        fail(name, arr[bad].flat[0], why)
    return arr
