"""The immutable index of a list of phone-number keys (E.164 as uint64).

Theory of operation
-------------------
An `Index` is built once and never changes; an update builds a new `Index` (`with_delta`) and the store swaps
the reference (see `state.py`). That is what lets readers use an index without locks and lets every answer
name the one version it came from.

Each index keeps two views of the same set of keys:

1. The canonical store, a roaring `FrozenBitMap64` (~2 bytes per Swedish number). It is what snapshots
   serialise, what set algebra for deltas runs on, and what answers a single `contains(key)` (~150 ns).
2. The batch structure, `_BlockedBitset`, answering `contains_many` for a numpy array of queries with a
   fixed number of vectorised numpy passes and no per-number Python work:
   - keys are grouped in blocks of 2**16 consecutive values. A block with enough keys that a bitset costs at
     most 8 bytes per key is *dense* and gets an 8 KiB bitset; mobile series (70/72/73/76/79) are dense.
   - keys in the other blocks (fixed-line numbers spread thinly over a wide range) go to a *sparse*
     bucketed hash table: 4-slot buckets at <= 50% load, Fibonacci hashing, so a query needs one gather of
     4 slots; the few keys whose bucket overflowed sit in a small sorted array.
   - a directory maps a query's block to a byte offset into the bitsets: offset 0 is an all-zero block
     (absent), offset 8192 another all-zero block that marks "look in the sparse table". Out-of-range
     queries are clamped onto the absent entry, so the hot path has no branches.
   Together about 6-9 bytes per number for a realistic register, 15-25 ns per query on one core.

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

from nixlookup.server._roaring_build import bitmap_from_sorted_unique, or_bits_sorted

__all__ = ["Index", "IndexMeta", "as_key_array", "sorted_unique"]

U64 = np.uint64
_BLOCK_SHIFT: Final = 16
_BLOCK_BYTES: Final = 1 << (_BLOCK_SHIFT - 3)
_LOW_MASK: Final = U64((1 << _BLOCK_SHIFT) - 1)
# A block gets a dense bitset when that costs at most 32 bytes per key of the block (>= 256 keys), as long
# as all dense bitsets together stay within 6 bytes per key of the whole index; otherwise only blocks where
# it costs at most 8 bytes per key (>= 1024 keys). Large registers thus go almost all dense (30M numbers:
# 13 ns/number, 3.4 B/number), small ones keep thin fixed-line blocks in the hash table (1.5M: 9.6 B/number).
_DENSE_MIN_KEYS_GENEROUS: Final = _BLOCK_BYTES // 32
_DENSE_MIN_KEYS_FRUGAL: Final = _BLOCK_BYTES // 8
_DENSE_BUDGET_BYTES_PER_KEY: Final = 6
_ABSENT_SLOT: Final = 0  # an all-zero bitset: queries in empty blocks test a 0 bit, no branch needed
_SPARSE_SLOT: Final = 1  # also all-zero, and marks "ask the sparse table"
_FIRST_DENSE_SLOT: Final = 2
_MAX_DIRECTORY_ENTRIES: Final = 1 << 22  # 16 MiB of uint32; wider key spans use a sorted directory instead
_BUCKET_SLOTS: Final = 4
_KEYS_PER_BUCKET: Final = 3.0
_INCREMENTAL_MAX_CHANGES: Final = 200_000  # larger deltas rebuild: the patch copies and re-sorts more
_FIBONACCI: Final = U64(0x9E3779B97F4A7C15)


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


class _SparseTable:
    """Bucketed hash set of uint64 keys: one 4-slot gather per query, a sorted array for overflow."""

    __slots__ = ("_buckets", "_empty", "_n_buckets", "_overflow", "_overflowed", "nbytes")

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        # About 2.5 keys per 4-slot bucket on average: 20 bytes per key; ~10% of buckets spill over.
        n_buckets = max(1, int(keys.size / _KEYS_PER_BUCKET) + 1)
        self._n_buckets = U64(n_buckets)
        self._empty = _absent_value(keys)
        if keys.size == 0:
            keys = np.empty(0, dtype=np.uint64)
        buckets = np.full((n_buckets, _BUCKET_SLOTS), self._empty, dtype=np.uint64)
        bucket_of_key = self._bucket(keys)
        order = np.argsort(bucket_of_key, kind="stable")
        sorted_buckets = bucket_of_key[order]
        group_start = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        group_sizes = np.diff(np.r_[group_start, sorted_buckets.size])
        rank = np.arange(sorted_buckets.size) - np.repeat(group_start, group_sizes)
        fits = rank < _BUCKET_SLOTS
        buckets[sorted_buckets[fits], rank[fits]] = keys[order][fits]
        self._buckets = buckets
        self._overflow = np.sort(keys[order][~fits])
        self._overflowed = np.zeros(n_buckets, dtype=np.bool_)
        self._overflowed[sorted_buckets[~fits]] = True
        self.nbytes = buckets.nbytes + self._overflow.nbytes + self._overflowed.nbytes

    def export(self) -> tuple[dict[str, int], dict[str, NDArray[Any]]]:
        """Scalars and arrays that `restore` rebuilds this table from without rehashing (snapshots)."""
        scalars = {"n_buckets": int(self._n_buckets), "empty": int(self._empty)}
        arrays = {"buckets": self._buckets, "overflow": self._overflow, "overflowed": self._overflowed}
        return scalars, arrays

    @classmethod
    def restore(cls, scalars: Mapping[str, int], arrays: Mapping[str, NDArray[Any]]) -> _SparseTable:
        table = object.__new__(cls)
        table._n_buckets = U64(scalars["n_buckets"])
        table._empty = U64(scalars["empty"])
        table._buckets = arrays["buckets"].reshape(-1, _BUCKET_SLOTS)
        table._overflow = arrays["overflow"]
        table._overflowed = arrays["overflowed"]
        table.nbytes = table._buckets.nbytes + table._overflow.nbytes + table._overflowed.nbytes
        return table

    def with_changes(self, added: NDArray[np.uint64], removed: NDArray[np.uint64]) -> _SparseTable | None:
        """A copy with `added` (absent before) inserted and `removed` (present before) taken out.

        None when the change cannot be made in place (an added key equals the empty-slot marker); the
        caller then rebuilds. Removal leaves a hole; overflow flags stay set, which only costs a probe.
        """
        if added.size and bool((added == self._empty).any()):
            return None
        table = object.__new__(_SparseTable)
        table._n_buckets = self._n_buckets
        table._empty = self._empty
        buckets = self._buckets.copy()
        overflow = self._overflow
        overflowed = self._overflowed
        if removed.size:
            bucket = self._bucket(removed)
            rows, slots = np.nonzero(buckets[bucket] == removed[:, None])
            buckets[bucket[rows], slots] = self._empty
            if overflow.size:
                overflow = overflow[~_sorted_contains(np.sort(removed), overflow)]
        if added.size:
            bucket = self._bucket(added)
            order = np.argsort(bucket, kind="stable")
            bucket, keys = bucket[order], added[order]
            group_start = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
            rank = np.arange(bucket.size) - np.repeat(group_start, np.diff(np.r_[group_start, bucket.size]))
            free = buckets[bucket] == self._empty  # (n, 4): which slots of each add's bucket are free
            free_before = np.cumsum(free, axis=1) - free  # free slots to the left of each slot
            target = free & (free_before == rank[:, None])  # the rank-th free slot of the bucket
            fits = target.any(axis=1)
            buckets[bucket[fits], np.argmax(target[fits], axis=1)] = keys[fits]
            if not fits.all():
                overflow = np.sort(np.concatenate([overflow, keys[~fits]]))
                overflowed = overflowed.copy()
                overflowed[bucket[~fits]] = True
        table._buckets = buckets
        table._overflow = overflow
        table._overflowed = overflowed
        table.nbytes = buckets.nbytes + overflow.nbytes + overflowed.nbytes
        return table

    def _bucket(self, keys: NDArray[np.uint64]) -> NDArray[np.intp]:
        # Fibonacci hashing (the multiply wraps modulo 2**64 by design), then the top 32 bits scaled onto
        # [0, n_buckets) with a multiply-shift instead of a modulo.
        high = (keys * _FIBONACCI) >> U64(32)
        return ((high * self._n_buckets) >> U64(32)).astype(np.intp)

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        bucket = self._bucket(queries)
        slot_matches = self._buckets[bucket] == queries[:, None]
        # Four bools per row viewed as one uint32: "any slot matched" without a slow reduction.
        found: NDArray[np.bool_] = slot_matches.view(np.uint32).ravel() != 0
        found &= queries != self._empty
        if self._overflow.size:
            spill = self._overflowed[bucket] & ~found
            if spill.any():
                found[spill] = _sorted_contains(self._overflow, queries[spill])
        return found


class _BlockedBitset:
    """Vectorised membership: dense 8 KiB bitsets per busy 2**16-block, a hash table for the rest."""

    __slots__ = (
        "_bits",
        "_directory",
        "_directory_blocks",
        "_first_block",
        "_index_dtype",
        "_span",
        "_sparse",
        "nbytes",
    )

    def __init__(self, keys: NDArray[np.uint64]) -> None:
        blocks = keys >> U64(_BLOCK_SHIFT)
        starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]]) if keys.size else np.empty(0, np.intp)
        occupied = blocks[starts]
        counts = np.diff(np.r_[starts, keys.size])
        dense = counts >= _DENSE_MIN_KEYS_GENEROUS
        if int(dense.sum()) * _BLOCK_BYTES > _DENSE_BUDGET_BYTES_PER_KEY * keys.size:
            dense = counts >= _DENSE_MIN_KEYS_FRUGAL
        n_dense = int(dense.sum())
        # The directory holds slot numbers (0 absent, 1 sparse, 2.. dense): uint16 while they fit, which
        # halves the directory of a register spanning 7- to 9-digit NSNs (~700k blocks).
        slot_dtype = np.uint16 if n_dense + _FIRST_DENSE_SLOT <= np.iinfo(np.uint16).max else np.uint32
        slots = np.full(occupied.size, _SPARSE_SLOT, dtype=slot_dtype)
        slots[dense] = np.arange(n_dense, dtype=slot_dtype) + _FIRST_DENSE_SLOT
        total_bytes = (n_dense + _FIRST_DENSE_SLOT) * _BLOCK_BYTES
        self._index_dtype = np.uint32 if total_bytes <= 2**32 else np.uint64
        bits = np.zeros(total_bytes, dtype=np.uint8)
        key_is_dense = np.repeat(dense, counts)
        dense_keys = keys[key_is_dense]
        key_slots = np.repeat(slots, counts)[key_is_dense].astype(np.int64)
        byte_index = key_slots * _BLOCK_BYTES + ((dense_keys & _LOW_MASK) >> U64(3)).astype(np.int64)
        or_bits_sorted(bits, byte_index, (dense_keys & U64(7)).astype(np.uint8))
        self._bits = bits
        self._sparse = _SparseTable(keys[~key_is_dense])
        self._first_block = U64(occupied[0]) if occupied.size else U64(0)
        self._span = int(occupied[-1] - occupied[0]) + 1 if occupied.size else 0
        if self._span <= _MAX_DIRECTORY_ENTRIES:
            # Direct directory: one entry per block in [first, last], plus a trailing "absent" entry that
            # every out-of-range query is clamped onto.
            directory = np.zeros(self._span + 1, dtype=slot_dtype)
            directory[(occupied - self._first_block).astype(np.intp)] = slots
            self._directory = directory
            self._directory_blocks: NDArray[np.uint64] | None = None
        else:
            # Keys spread over a huge range (foreign numbers, test extremes): search the occupied blocks.
            self._directory = np.r_[slots, np.zeros(1, dtype=slot_dtype)]
            self._directory_blocks = occupied
        self.nbytes = self._bits.nbytes + self._directory.nbytes + self._sparse.nbytes
        if self._directory_blocks is not None:
            self.nbytes += self._directory_blocks.nbytes

    def export(self) -> tuple[dict[str, int], dict[str, NDArray[Any]]]:
        """Scalars and arrays that `restore` rebuilds this structure from without recomputing it."""
        sparse_scalars, sparse_arrays = self._sparse.export()
        scalars = {"first_block": int(self._first_block), "span": self._span}
        scalars.update({f"sparse.{name}": value for name, value in sparse_scalars.items()})
        arrays: dict[str, NDArray[Any]] = {"bits": self._bits, "directory": self._directory}
        if self._directory_blocks is not None:
            arrays["directory_blocks"] = self._directory_blocks
        arrays.update({f"sparse.{name}": array for name, array in sparse_arrays.items()})
        return scalars, arrays

    @classmethod
    def restore(cls, scalars: Mapping[str, int], arrays: Mapping[str, NDArray[Any]]) -> _BlockedBitset:
        batch = object.__new__(cls)
        batch._first_block = U64(scalars["first_block"])
        batch._span = int(scalars["span"])
        batch._bits = arrays["bits"]
        batch._index_dtype = np.uint32 if batch._bits.size <= 2**32 else np.uint64
        batch._directory = arrays["directory"]
        batch._directory_blocks = arrays.get("directory_blocks")
        prefix = "sparse."
        batch._sparse = _SparseTable.restore(
            {k.removeprefix(prefix): v for k, v in scalars.items() if k.startswith(prefix)},
            {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)},
        )
        batch.nbytes = batch._bits.nbytes + batch._directory.nbytes + batch._sparse.nbytes
        if batch._directory_blocks is not None:
            batch.nbytes += batch._directory_blocks.nbytes
        return batch

    def with_changes(self, added: NDArray[np.uint64], removed: NDArray[np.uint64]) -> _BlockedBitset | None:
        """A copy with `added` (sorted, absent before) and `removed` (sorted, present before) applied.

        Dense blocks get their bits set or cleared in a copy of the bitsets; everything else goes to the
        sparse table. None when a key falls outside the directory's block range (the caller rebuilds).
        """
        if self._directory_blocks is not None:
            return None
        directory = self._directory
        added_slots = self._block_slots(added)
        if added.size:
            added_blocks = (added >> U64(_BLOCK_SHIFT)) - self._first_block
            if bool((added_blocks >= U64(self._span)).any()):
                return None  # before the first or after the last block: the directory must grow
            new_blocks = added_slots == _ABSENT_SLOT
            if new_blocks.any():
                directory = directory.copy()
                directory[added_blocks[new_blocks].astype(np.intp)] = _SPARSE_SLOT
                added_slots = np.where(new_blocks, _SPARSE_SLOT, added_slots)
        removed_slots = self._block_slots(removed)
        bits = self._bits
        added_dense = added_slots >= _FIRST_DENSE_SLOT
        removed_dense = removed_slots >= _FIRST_DENSE_SLOT
        if added_dense.any() or removed_dense.any():
            bits = bits.copy()
            for keys, slots, dense, setting in (
                (added, added_slots, added_dense, True),
                (removed, removed_slots, removed_dense, False),
            ):
                if not dense.any():
                    continue
                byte_index = slots[dense].astype(np.int64) * _BLOCK_BYTES + (
                    (keys[dense] & _LOW_MASK) >> U64(3)
                ).astype(np.int64)
                bit = (keys[dense] & U64(7)).astype(np.uint8)
                if setting:
                    or_bits_sorted(bits, byte_index, bit)
                else:
                    cleared = np.zeros_like(bits)
                    or_bits_sorted(cleared, byte_index, bit)
                    bits &= ~cleared
        sparse = self._sparse
        added_sparse, removed_sparse = added[~added_dense], removed[~removed_dense]
        if added_sparse.size or removed_sparse.size:
            changed = self._sparse.with_changes(added_sparse, removed_sparse)
            if changed is None:
                return None
            sparse = changed
        batch = object.__new__(_BlockedBitset)
        batch._bits = bits
        batch._directory = directory
        batch._directory_blocks = None
        batch._first_block = self._first_block
        batch._span = self._span
        batch._index_dtype = self._index_dtype
        batch._sparse = sparse
        batch.nbytes = bits.nbytes + directory.nbytes + sparse.nbytes
        return batch

    def _block_slots(self, queries: NDArray[np.uint64]) -> NDArray[Any]:
        blocks = queries >> U64(_BLOCK_SHIFT)
        if self._directory_blocks is None:
            # Below-range blocks wrap around to huge values, so one minimum clamps both sides.
            slot = np.minimum(blocks - self._first_block, U64(self._span))
            slots: NDArray[Any] = self._directory[slot]
            return slots
        position = np.searchsorted(self._directory_blocks, blocks)
        position[position >= self._directory_blocks.size] = self._directory_blocks.size
        clipped = np.minimum(position, self._directory_blocks.size - 1)
        missing = self._directory_blocks[clipped] != blocks
        position[missing] = self._directory_blocks.size
        return self._directory[position]

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        slots = self._block_slots(queries)
        byte_index: NDArray[Any] = np.left_shift(slots.astype(self._index_dtype), _BLOCK_SHIFT - 3)
        byte_index |= ((queries & _LOW_MASK) >> U64(3)).astype(self._index_dtype)
        bit = (self._bits[byte_index] >> (queries & U64(7)).astype(np.uint8)) & np.uint8(1)
        found: NDArray[np.bool_] = bit.view(np.bool_)
        # Integer positions, not a boolean mask: masked gathers/scatters on a random mask mispredict.
        sparse_positions = np.flatnonzero(slots == _SPARSE_SLOT)
        if sparse_positions.size:
            found[sparse_positions] = self._sparse.contains_many(queries.take(sparse_positions))
        return found


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
        self._batch = _BlockedBitset(keys)
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
        index._batch = _BlockedBitset.restore(scalars, batch_arrays)
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
    def has_values(self) -> bool:
        return self._values is not None

    def value_of(self, key: int) -> int | None:
        """The value stored with `key` (None when absent; 0 when the index carries no values)."""
        if not self.contains(key):
            return None
        if self._values is None or self._sorted_keys is None:
            return 0
        return int(self._values[int(np.searchsorted(self._sorted_keys, U64(key)))])

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
                add_keys = add_keys[~_sorted_contains(remove_keys, add_keys)]  # in both: removed
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
    def _assemble(cls, bitmap: FrozenBitMap64, meta: IndexMeta, batch: _BlockedBitset) -> Index:
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


def _sorted_contains(sorted_keys: NDArray[np.uint64], queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
    position = np.searchsorted(sorted_keys, queries)
    position[position >= sorted_keys.size] = 0
    found: NDArray[np.bool_] = sorted_keys[position] == queries
    return found


def _absent_value(keys: NDArray[np.uint64]) -> np.uint64:
    """A uint64 that is not among `keys`: marks empty hash slots."""
    candidate = 0
    present = set(keys[:1_000].tolist()) if keys.size < 1_000 else None
    while True:
        if present is not None:
            if candidate not in present:
                return U64(candidate)
        elif not bool(_sorted_contains(keys, np.array([candidate], dtype=np.uint64))[0]):
            return U64(candidate)
        candidate += 1


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
