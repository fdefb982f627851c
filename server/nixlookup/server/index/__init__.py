"""Immutable sets of uint64 keys with vectorised membership:
the roaring canonical store and the batch structures."""

from __future__ import annotations

from typing import Any

from nixlookup.server.index._index import (
    Index,
    IndexMeta,
    sorted_unique,
)

__all__ = [
    "Index",
    "IndexMeta",
    "probe_register_into",
    "sorted_unique",
]
_COMPILED_PROBES = ("probe_register_into",)


def __getattr__(name: str) -> Any:
    """`probe_register_into`: the register's compiled probe, for other compiled loops to call with an
    `active` mask (`Index.probe_parts` lists its arrays). Loaded on first use: importing it loads numba."""
    if name in _COMPILED_PROBES:
        from nixlookup.server.index import _kernels

        return getattr(_kernels, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
