"""The compiled loops: cached on disk where possible, compiled in memory where no cache directory is
writable (the server must start on a read-only image)."""

from __future__ import annotations

import numpy as np
import pytest
from numba.core import caching

from nixlookup.server._jit import compiled


def _total(values: np.ndarray) -> int:  # type: ignore[type-arg]
    result = 0
    for value in values:
        result += value
    return result


def test_compiled_loops_are_cached_on_disk() -> None:
    """With a writable place for it, numba's cache is on."""
    jitted = compiled(_total)
    assert jitted(np.arange(5)) == 10
    assert type(jitted._cache).__name__ == "FunctionCache"


def test_no_writable_cache_directory_still_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where numba finds no cache locator (read-only package and home), `compiled` falls back to an
    in-memory compile instead of failing the import."""
    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])
    jitted = compiled(_total)
    assert jitted(np.arange(4)) == 6
    assert type(jitted._cache).__name__ == "NullCache"
