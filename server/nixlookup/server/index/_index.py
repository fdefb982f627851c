"""The immutable index of a list of phone-number keys (E.164 as uint64).

Theory of operation
-------------------
An `Index` is built once and never changes; an update builds a new `Index` (`with_delta`) and the store swaps
the reference (see `state.py`). That is what lets readers use an index without locks and lets every answer
name the one version it came from.

Each index keeps two views of the same set of keys:

1. The canonical store, a roaring `FrozenBitMap64` (~2 bytes per Swedish number). It is what snapshots
   serialise, what set algebra for deltas runs on, and what answers a single `contains(key)` (~150 ns).
2. The batch structure (`_index_batch.BlockedBitset`), answering `contains_many` for a numpy array of
   queries with a fixed number of vectorised passes and no per-number Python: 8 KiB bitsets for busy
   2**16-blocks (mobile series), a bucketed hash table for the thin fixed-line blocks, and a directory
   that sends every query down the same branch-free path. About 3.4-9.6 bytes per number and 14-21 ns
   per query for realistic registers of 30M-1.5M numbers. Long query arrays are not chunked: measured,
   it did not help once other work evicts the caches between calls.
   `with_delta` patches a copy of it for small deltas instead of rebuilding it.

An index may also carry one uint32 *value* per key (the end day of a customer relationship or consent, in
days since 1970-01-01, 0 = no end); then it keeps its sorted keys beside the values for `values_many`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from pyroaring import BitMap64, FrozenBitMap64

from nixlookup.server.index._batch import BlockedBitset, sorted_contains
from nixlookup.server.index._roaring_build import bitmap_from_sorted_unique

__all__ = ["Index", "IndexMeta", "as_key_array", "sorted_unique"]

_INCREMENTAL_MAX_CHANGES: Final = 200_000  # larger deltas rebuild: the patch copies and re-sorts more


def as_key_array(keys: Iterable[int] | NDArray[np.generic]) -> NDArray[np.uint64]:
    """A contiguous uint64 array from an array or an iterable of ints (no copy when already one)."""
    if isinstance(keys, np.ndarray):
        if keys.dtype != np.uint64:
            if keys.size and keys.dtype.kind == "i" and int(keys.min()) < 0:
                raise ValueError("keys must be non-negative")
            keys = keys.astype(np.uint64)
        return np.ascontiguousarray(keys)
    return np.fromiter((int(k) for k in keys), dtype=np.uint64)


def sorted_unique(keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Sorted distinct keys. Sort + neighbour compare: np.unique is ~100x slower on uint64 in numpy 2.x."""
    if keys.size == 0:
        return np.empty(0, dtype=np.uint64)
    ordered = np.sort(keys)
    keep = np.empty(ordered.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered if keep.all() else ordered[keep]


@dataclass(frozen=True, slots=True)
class IndexMeta:
    """Where an index came from. `checksum` is a digest of its keys (and values): equal sets, equal sums."""

    version: str
    source: str
    register_date: datetime
    created_at: datetime
    count: int
    checksum: str
    synthetic: bool = False


class Index:
    """An immutable set of uint64 keys, optionally with one uint32 value per key. See the module doc."""

    __slots__ = ("__weakref__", "_batch", "_bitmap", "_sorted_keys", "_values", "meta")

    def __init__(
        self,
        bitmap: FrozenBitMap64,
        meta: IndexMeta,
        *,
        values: NDArray[np.uint32] | None = None,
        sorted_keys: NDArray[np.uint64] | None = None,
    ) -> None:
        """Wrap an already-built bitmap; use `Index.build` unless you are deserialising a snapshot."""
        self._bitmap = bitmap
        self.meta = meta
        keys = sorted_keys if sorted_keys is not None else _bitmap_keys(bitmap)
        if values is not None and values.shape != keys.shape:
            raise ValueError(f"values ({values.size}) must align with keys ({keys.size})")
        self._batch = BlockedBitset(keys)
        # Sorted keys are kept only when values need them (8 bytes per key); the bitmap has them otherwise.
        self._sorted_keys = keys if values is not None else None
        self._values = values

    def export_batch(self) -> tuple[dict[str, int], dict[str, NDArray[Any]]]:
        """The batch structure as scalars and arrays, for snapshots (see `snapshot.py`)."""
        scalars, arrays = self._batch.export()
        if self._sorted_keys is not None and self._values is not None:
            arrays = {**arrays, "sorted_keys": self._sorted_keys, "values": self._values}
        return scalars, arrays

    @classmethod
    def restore(
        cls,
        bitmap: FrozenBitMap64,
        meta: IndexMeta,
        scalars: Mapping[str, int],
        arrays: Mapping[str, NDArray[Any]],
    ) -> Index:
        """Reassemble an index from `export_batch` output without rebuilding anything (fast snapshot load)."""
        index = object.__new__(cls)
        index._bitmap = bitmap
        index.meta = meta
        index._sorted_keys = arrays.get("sorted_keys")
        index._values = arrays.get("values")
        batch_arrays = {k: v for k, v in arrays.items() if k not in ("sorted_keys", "values")}
        index._batch = BlockedBitset.restore(scalars, batch_arrays)
        return index

    @classmethod
    def build(
        cls,
        keys: NDArray[np.uint64] | Iterable[int],
        *,
        values: NDArray[np.uint32] | None = None,
        version: str,
        source: str,
        register_date: datetime | None = None,
        synthetic: bool = False,
        created_at: datetime | None = None,
    ) -> Index:
        """Build from keys in any order, duplicates allowed (with values: the last value of a key wins)."""
        key_array = as_key_array(keys)
        if values is None:
            unique_keys = sorted_unique(key_array)
            unique_values = None
        else:
            unique_keys, unique_values = _last_value_per_key(key_array, np.asarray(values, dtype=np.uint32))
        bitmap = bitmap_from_sorted_unique(unique_keys)
        now = datetime.now(UTC)
        meta = IndexMeta(
            version=version,
            source=source,
            register_date=register_date or now,
            created_at=created_at or now,
            count=int(unique_keys.size),
            checksum=_checksum(bitmap, unique_values),
            synthetic=synthetic,
        )
        return cls(bitmap, meta, values=unique_values, sorted_keys=unique_keys)

    # -- queries ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.meta.count

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.contains(key)

    def contains(self, key: int) -> bool:
        """Is `key` in the set? Keys outside uint64 are never members."""
        return 0 <= key < 2**64 and key in self._bitmap

    def contains_many(self, keys: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """Membership of every key in `keys`, vectorised; the result is a new bool array."""
        queries = as_key_array(keys)
        if queries.size == 0:
            return np.zeros(0, dtype=np.bool_)
        return self._batch.contains_many(queries)

    @property
    def probe_parts(self) -> tuple[Any, ...] | None:
        """What compiled loops pass to `index.probe_register_into` (`BlockedBitset.parts`: directory,
        first block, span, bitsets, then the hash table's arrays); None where the batch structure has no
        direct directory (keys spread over a huge range): callers then use `contains_many`."""
        return self._batch.parts

    @property
    def has_values(self) -> bool:
        return self._values is not None

    def value_of(self, key: int) -> int | None:
        """The value stored with `key` (None when absent; 0 when the index carries no values)."""
        if not self.contains(key):
            return None
        if self._values is None or self._sorted_keys is None:
            return 0
        return int(self._values[int(np.searchsorted(self._sorted_keys, np.uint64(key)))])

    def values_many(self, keys: NDArray[np.uint64]) -> NDArray[np.uint32]:
        """Values for `keys`: 0 where a key is absent or the index has no values."""
        queries = as_key_array(keys)
        result = np.zeros(queries.size, dtype=np.uint32)
        if self._values is None or self._sorted_keys is None or queries.size == 0:
            return result
        hit = self.contains_many(queries)
        if hit.any():
            result[hit] = self._values[np.searchsorted(self._sorted_keys, queries[hit])]
        return result

    def sorted_keys(self) -> NDArray[np.uint64]:
        """All keys in ascending order (a fresh read-only array)."""
        keys = self._sorted_keys if self._sorted_keys is not None else _bitmap_keys(self._bitmap)
        view = keys.view()
        view.flags.writeable = False
        return view

    def sorted_values(self) -> NDArray[np.uint32] | None:
        """Values aligned with `sorted_keys()`, or None when the index carries none."""
        if self._values is None:
            return None
        view = self._values.view()
        view.flags.writeable = False
        return view

    @property
    def bitmap(self) -> FrozenBitMap64:
        """The canonical store (immutable)."""
        return self._bitmap

    @property
    def nbytes_canonical(self) -> int:
        """Bytes of the canonical roaring store (its serialised size, a close proxy of its memory)."""
        return len(self._bitmap.serialize())

    @property
    def nbytes_total(self) -> int:
        """Bytes of every structure this index holds: bitmap, batch structure, keys and values kept."""
        total = self.nbytes_canonical + self._batch.nbytes
        if self._sorted_keys is not None:
            total += self._sorted_keys.nbytes
        if self._values is not None:
            total += self._values.nbytes
        return total

    # -- derivation ---------------------------------------------------------------------------------------

    def with_delta(
        self,
        add: NDArray[np.uint64],
        remove: NDArray[np.uint64],
        *,
        add_values: NDArray[np.uint32] | None = None,
        version: str,
        source: str,
        register_date: datetime | None = None,
    ) -> Index:
        """A new index: this one plus `add`, minus `remove` (a key in both ends up removed)."""
        add_keys = as_key_array(add)
        remove_keys = as_key_array(remove)
        date = register_date or self.meta.register_date
        if self._values is None:
            add_keys, remove_keys = sorted_unique(add_keys), sorted_unique(remove_keys)
            if remove_keys.size and add_keys.size:
                add_keys = add_keys[~sorted_contains(remove_keys, add_keys)]  # in both: removed
            bitmap = BitMap64(self._bitmap)
            bitmap.update(add_keys)
            bitmap.difference_update(BitMap64(remove_keys))
            frozen = FrozenBitMap64(bitmap)
            batch = None
            if add_keys.size + remove_keys.size <= _INCREMENTAL_MAX_CHANGES:
                # Small deltas (the daily kind) patch a copy of the batch structure: ~10 ms instead of a
                # rebuild of the whole register (~150 ms at 1.5M numbers).
                added = add_keys[~self.contains_many(add_keys)] if add_keys.size else add_keys
                removed = remove_keys[self.contains_many(remove_keys)] if remove_keys.size else remove_keys
                batch = self._batch.with_changes(added, removed)
            meta = self._delta_meta(frozen, version=version, source=source, register_date=date)
            return Index(frozen, meta) if batch is None else Index._assemble(frozen, meta, batch)
        assert self._sorted_keys is not None
        if add_values is None:
            add_values = np.zeros(add_keys.size, dtype=np.uint32)
        keys = np.concatenate([self._sorted_keys, add_keys])
        values = np.concatenate([self._values, np.asarray(add_values, dtype=np.uint32)])
        keys, values = _last_value_per_key(keys, values)
        if remove_keys.size:
            keep = ~np.isin(keys, remove_keys)
            keys, values = keys[keep], values[keep]
        return Index.build(
            keys,
            values=values,
            version=version,
            source=source,
            register_date=date,
            synthetic=self.meta.synthetic,
        )

    def _delta_meta(
        self, bitmap: FrozenBitMap64, *, version: str, source: str, register_date: datetime
    ) -> IndexMeta:
        return replace(
            self.meta,
            version=version,
            source=source,
            register_date=register_date,
            created_at=datetime.now(UTC),
            count=len(bitmap),
            checksum=_checksum(bitmap, None),
        )

    @classmethod
    def _assemble(cls, bitmap: FrozenBitMap64, meta: IndexMeta, batch: BlockedBitset) -> Index:
        index = object.__new__(cls)
        index._bitmap = bitmap
        index.meta = meta
        index._batch = batch
        index._sorted_keys = None
        index._values = None
        return index

    def with_meta(self, **changes: object) -> Index:
        """The same keys under different metadata (e.g. a new version id after a reload of equal content)."""
        clone = object.__new__(Index)
        clone._bitmap = self._bitmap
        clone._batch = self._batch
        clone._sorted_keys = self._sorted_keys
        clone._values = self._values
        clone.meta = replace(self.meta, **changes)  # type: ignore[arg-type]
        return clone

    def __repr__(self) -> str:
        return f"Index(version={self.meta.version!r}, count={self.meta.count}, source={self.meta.source!r})"


def _bitmap_keys(bitmap: FrozenBitMap64 | BitMap64) -> NDArray[np.uint64]:
    return np.asarray(bitmap.to_array(), dtype=np.uint64)


def _last_value_per_key(
    keys: NDArray[np.uint64], values: NDArray[np.uint32]
) -> tuple[NDArray[np.uint64], NDArray[np.uint32]]:
    if keys.shape != values.shape:
        raise ValueError(f"values ({values.size}) must align with keys ({keys.size})")
    if keys.size == 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint32)
    order = np.argsort(keys, kind="stable")
    ordered_keys = keys[order]
    last = np.r_[ordered_keys[1:] != ordered_keys[:-1], True]
    return ordered_keys[last], values[order][last]


def _checksum(bitmap: FrozenBitMap64, values: NDArray[np.uint32] | None) -> str:
    digest = hashlib.sha256(bitmap.serialize())
    if values is not None:
        digest.update(np.ascontiguousarray(values, dtype="<u4").tobytes())
    return "sha256:" + digest.hexdigest()
