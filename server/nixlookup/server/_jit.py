"""`compiled`: how the server's few compiled loops are made (numba, nopython mode, cached on disk).

numba compiles a loop on its first call (~0.5 s each) and, with `cache=True`, stores the machine code in
`__pycache__` beside the package, or in the user's cache directory when that is read-only, so the next
process only loads it (~30 ms). Where neither is writable (a read-only image with no writable home),
numba refuses `cache=True` when the module is imported; the server must still start, so such a process
compiles in memory instead (set NUMBA_CACHE_DIR to a writable directory to keep the cache). The loops keep
the GIL (numba's default; see `policy/_kernels` for why).

`bulk_compiled` says whether the bulk path runs those loops or the numpy passes kept as their reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["bulk_compiled", "compile_counts", "compiled", "set_bulk_path"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def compiled(function: _Function) -> _Function:
    """`numba.njit(cache=True)`, falling back to an in-memory compile when no cache directory is writable."""
    import numba

    try:
        jitted = numba.njit(cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        jitted = numba.njit(function)
    _compiled_functions.append(jitted)
    return cast("_Function", jitted)


_BULK_PATH_VARIABLE = "NIXLOOKUP_BULK_PATH"
_BULK_PATHS = ("compiled", "numpy")
_bulk_path = os.environ.get(_BULK_PATH_VARIABLE, "compiled")
if _bulk_path not in _BULK_PATHS:
    raise ImportError(f"{_BULK_PATH_VARIABLE}={_bulk_path!r}: expected one of {', '.join(_BULK_PATHS)}")


def bulk_compiled() -> bool:
    """Does the bulk path run its compiled loops (the default), or the numpy passes they replaced?

    The numpy passes stay as the reference the property tests hold the loops to, and so that a benchmark
    can run today's and the previous code path side by side (`NIXLOOKUP_BULK_PATH=numpy` in a server's
    environment, or `set_bulk_path` in process). Not an operator setting: both give the same answers.
    """
    return _bulk_path == "compiled"


def set_bulk_path(path: str) -> str:
    """Switch the bulk path ("compiled" or "numpy") for this process; returns the previous one."""
    global _bulk_path
    if path not in _BULK_PATHS:
        raise ValueError(f"bulk path {path!r}: expected one of {', '.join(_BULK_PATHS)}")
    previous, _bulk_path = _bulk_path, path
    return previous


_compiled_functions: list[Any] = []


def compile_counts() -> dict[str, int]:
    """How many of the compiled loops' versions this process loaded from numba's cache, and how many it
    had to compile (a cold start: nothing cached yet, or the cache is not writable)."""
    loaded = compiled_now = 0
    for function in _compiled_functions:
        stats = function.stats
        loaded += sum(stats.cache_hits.values())
        compiled_now += sum(stats.cache_misses.values())
    return {"loops_loaded_from_cache": loaded, "loops_compiled": compiled_now}
