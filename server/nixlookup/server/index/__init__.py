"""Immutable sets of uint64 keys with vectorised membership:
the roaring canonical store and the batch structures."""

from __future__ import annotations

from nixlookup.server.index._index import (
    Index,
    IndexMeta,
    sorted_unique,
)

__all__ = [
    "Index",
    "IndexMeta",
    "sorted_unique",
]
