"""`compiled`: how the server's few compiled loops are made (numba, nopython mode, cached on disk).

numba compiles a loop on its first call (~0.5 s each) and, with `cache=True`, stores the machine code in
`__pycache__` beside the package, or in the user's cache directory when that is read-only, so the next
process only loads it (~30 ms). Where neither is writable (a read-only image with no writable home),
numba refuses `cache=True` when the module is imported; the server must still start, so such a process
compiles in memory instead (set NUMBA_CACHE_DIR to a writable directory to keep the cache). The loops keep
the GIL (numba's default; see `_policy_kernels` for why).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

__all__ = ["compiled"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def compiled(function: _Function) -> _Function:
    """`numba.njit(cache=True)`, falling back to an in-memory compile when no cache directory is writable."""
    try:
        jitted = numba.njit(cache=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        jitted = numba.njit(function)
    return cast("_Function", jitted)
