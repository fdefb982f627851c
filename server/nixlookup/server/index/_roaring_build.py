"""Build a roaring `FrozenBitMap64` from sorted unique keys in a few vectorised numpy passes.

pyroaring's constructor adds keys one container at a time (~50 ms for 1.5M keys, more on a busy machine).
Sorted unique keys already *are* a roaring bitmap in all but framing: the low 16 bits of the keys of one
2**16 chunk, in order, are exactly an array container. So we write the portable serialization directly
(https://github.com/RoaringBitmap/RoaringFormatSpec) and let CRoaring deserialize it (~1 ms):

    64-bit portable: u64 bucket count, then per 2**32 bucket: u32 high key + a 32-bit portable bitmap
    32-bit portable (no run containers): u32 cookie 12346, u32 container count,
        per container (u16 key, u16 cardinality - 1), per container u32 byte offset, then the containers:
        an array container (cardinality <= 4096) is its sorted u16 values, a bitset container 1024 u64 words.

`tests/test_index.py` checks the result equals pyroaring's own construction for arbitrary key sets.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray
from pyroaring import FrozenBitMap64

__all__ = ["bitmap_from_sorted_unique", "or_bits_sorted"]

_COOKIE_NO_RUNS: Final = 12346
_ARRAY_MAX: Final = 4096
_BITSET_BYTES: Final = 8192


def or_bits_sorted(target: NDArray[np.uint8], byte_index: NDArray[np.int64], bit: NDArray[np.uint8]) -> None:
    """`target[byte_index] |= 1 << bit` for non-decreasing `byte_index` with distinct (index, bit) pairs.

    Distinct bits of one byte OR together as they add, so one `add.reduceat` per run of equal indexes
    replaces the slow unbuffered `bitwise_or.at`.
    """
    if byte_index.size == 0:
        return
    values = np.left_shift(np.uint8(1), bit).astype(np.uint8)
    starts = np.flatnonzero(np.r_[True, byte_index[1:] != byte_index[:-1]])
    target[byte_index[starts]] |= np.add.reduceat(values, starts).astype(np.uint8)


def _serialize32(low: NDArray[np.uint64]) -> bytes:
    """Portable serialization of a 32-bit roaring bitmap holding `low` (sorted, unique, < 2**32)."""
    chunk = (low >> np.uint64(16)).astype(np.uint16)
    starts = np.flatnonzero(np.r_[True, chunk[1:] != chunk[:-1]])
    cardinality = np.diff(np.r_[starts, low.size])
    count = starts.size
    is_bitset = cardinality > _ARRAY_MAX
    sizes = np.where(is_bitset, _BITSET_BYTES, cardinality * 2)
    header_bytes = 8 + 4 * count + 4 * count
    offsets = header_bytes + np.r_[0, np.cumsum(sizes)[:-1]]
    descriptive = np.empty(count * 2, dtype="<u2")
    descriptive[0::2] = chunk[starts]
    descriptive[1::2] = (cardinality - 1).astype(np.uint16)
    values16 = (low & np.uint64(0xFFFF)).astype("<u2")
    parts = [
        np.array([_COOKIE_NO_RUNS, count], dtype="<u4").tobytes(),
        descriptive.tobytes(),
        offsets.astype("<u4").tobytes(),
    ]
    if not is_bitset.any():
        parts.append(values16.tobytes())
        return b"".join(parts)
    for position in range(count):
        start, size = int(starts[position]), int(cardinality[position])
        members = values16[start : start + size]
        if is_bitset[position]:
            bits = np.zeros(_BITSET_BYTES, dtype=np.uint8)
            or_bits_sorted(bits, (members >> 3).astype(np.int64), (members & 7).astype(np.uint8))
            parts.append(bits.tobytes())
        else:
            parts.append(members.tobytes())
    return b"".join(parts)


def bitmap_from_sorted_unique(keys: NDArray[np.uint64]) -> FrozenBitMap64:
    """The roaring bitmap of `keys`, which must be sorted ascending and unique."""
    if keys.size == 0:
        return FrozenBitMap64()
    high = keys >> np.uint64(32)
    starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]])
    ends = np.r_[starts[1:], keys.size]
    parts = [np.array([starts.size], dtype="<u8").tobytes()]
    low_mask = np.uint64(0xFFFFFFFF)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        parts.append(np.array([int(high[start])], dtype="<u4").tobytes())
        parts.append(_serialize32(keys[start:end] & low_mask))
    return FrozenBitMap64.deserialize(b"".join(parts))
