"""Hand freed heap memory back to the operating system after a big load.

Parsing a text register allocates a few hundred MB of short-lived numpy temporaries. glibc keeps freed
memory in its arenas, so without this the server's RSS stays 60-70 bytes per number above what the index
needs (measured by `nixlookup-bench compare`: RSS after a text load vs after a snapshot load).
`malloc_trim(0)` returns the free pages; it costs a few milliseconds and is a no-op elsewhere.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

__all__ = ["release_free_memory"]


@cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_free_memory() -> bool:
    """Return freed heap pages to the OS where the C library can; True when it did anything."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
