"""The batch structure behind `Index.contains_many`: bitsets for busy blocks, a hash table for thin ones.

Theory of operation
-------------------
Keys are grouped in blocks of 2**16 consecutive values. A block with enough keys gets an 8 KiB bitset
(*dense*); the keys of every other block go to `_SparseTable`, a bucketed hash set (4-slot buckets, one
gather per query). A directory maps each block to a slot: 0 absent and 1 sparse are both all-zero
bitsets, so every query takes the same branch-free path (shift, directory gather, bitset gather, bit
test), and only the queries that land on slot 1 are looked up again in the hash table. Out-of-range
queries are clamped onto the absent entry. No per-number Python runs anywhere: `contains_many` runs that
path as one compiled loop (`_kernels.blocked_probe`, over the arrays `parts` lists); `contains_many_numpy`
is the same path in numpy passes, kept as the loop's reference (and for a directory too wide to be direct).

Everything here is immutable once built: `with_changes` returns a patched copy (copy-on-write of the
arrays it touches), and `export`/`restore` let snapshots store the structure instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import bulk_compiled
from nixlookup.server.index._roaring_build import or_bits_sorted

__all__ = ["BlockedBitset", "sorted_contains"]

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
_FIBONACCI: Final = U64(0x9E3779B97F4A7C15)


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
                overflow = overflow[~sorted_contains(np.sort(removed), overflow)]
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

    @property
    def parts(self) -> tuple[Any, ...]:
        """What the compiled probe reads of this table: flat buckets, count, empty marker, overflow."""
        return (self._buckets.reshape(-1), self._n_buckets, self._empty, self._overflow, self._overflowed)

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        bucket = self._bucket(queries)
        slot_matches = self._buckets[bucket] == queries[:, None]
        # Four bools per row viewed as one uint32: "any slot matched" without a slow reduction.
        found: NDArray[np.bool_] = slot_matches.view(np.uint32).ravel() != 0
        found &= queries != self._empty
        if self._overflow.size:
            spill = self._overflowed[bucket] & ~found
            if spill.any():
                found[spill] = sorted_contains(self._overflow, queries[spill])
        return found


class BlockedBitset:
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
    def restore(cls, scalars: Mapping[str, int], arrays: Mapping[str, NDArray[Any]]) -> BlockedBitset:
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

    def with_changes(self, added: NDArray[np.uint64], removed: NDArray[np.uint64]) -> BlockedBitset | None:
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
        batch = object.__new__(BlockedBitset)
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

    @property
    def parts(self) -> tuple[Any, ...] | None:
        """The arrays and scalars the compiled probe (`_kernels.blocked_probe`) takes after the queries, in
        its order; None for a sorted directory (keys spread over a huge range), which stays on numpy."""
        if self._directory_blocks is not None:
            return None
        return (self._directory, self._first_block, U64(self._span), self._bits, *self._sparse.parts)

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        parts = self.parts if bulk_compiled() else None
        if parts is not None:
            from nixlookup.server.index._kernels import blocked_probe

            found: NDArray[np.bool_] = blocked_probe(np.ascontiguousarray(queries, dtype=np.uint64), *parts)
            return found
        return self.contains_many_numpy(queries)

    def contains_many_numpy(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """`contains_many` in numpy passes: the reference the compiled probe is held to."""
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


def sorted_contains(sorted_keys: NDArray[np.uint64], queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
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
        elif not bool(sorted_contains(keys, np.array([candidate], dtype=np.uint64))[0]):
            return U64(candidate)
        candidate += 1
