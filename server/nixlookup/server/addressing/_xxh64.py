"""XXH64 of three little-endian uint64 words (a 24-byte record), over numpy arrays.

The name-address key of a row is XXH64 of the record (name-part hash, street-part hash, postcode), so a
batch hashes each distinct name and street once (with the xxhash package) and then every row with this
vectorised copy of XXH64's short-input path (the specification's ``len < 32`` branch: three 8-byte
lanes, no remainder, then the avalanche). tests/test_addressing_normalise.py checks it against
``xxhash.xxh64_intdigest(struct.pack("<QQQ", a, b, c), seed)`` bit for bit.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = ["xxh64_of_three_words"]

_PRIME_1: Final = np.uint64(0x9E3779B185EBCA87)
_PRIME_2: Final = np.uint64(0xC2B2AE3D27D4EB4F)
_PRIME_3: Final = np.uint64(0x165667B19E3779F9)
_PRIME_4: Final = np.uint64(0x85EBCA77C2B2AE63)
_PRIME_5: Final = 0x27D4EB2F165667C5
_RECORD_BYTES: Final = 24
_MASK: Final = (1 << 64) - 1


def _rotate_left(value: NDArray[np.uint64], bits: int) -> NDArray[np.uint64]:
    return (value << np.uint64(bits)) | (value >> np.uint64(64 - bits))


def xxh64_of_three_words(
    first: NDArray[np.uint64], second: NDArray[np.uint64], third: NDArray[np.uint64], seed: int
) -> NDArray[np.uint64]:
    """``XXH64(le64(first) + le64(second) + le64(third), seed)`` for every position of the three arrays."""
    start = np.uint64((seed + _PRIME_5 + _RECORD_BYTES) & _MASK)
    state = np.full(len(first), start, dtype=np.uint64)
    with np.errstate(over="ignore"):  # every product is meant modulo 2^64
        for lane in (first, second, third):
            state ^= _rotate_left(lane.astype(np.uint64) * _PRIME_2, 31) * _PRIME_1
            state = _rotate_left(state, 27) * _PRIME_1 + _PRIME_4
        state ^= state >> np.uint64(33)
        state *= _PRIME_2
        state ^= state >> np.uint64(29)
        state *= _PRIME_3
        state ^= state >> np.uint64(32)
    return state
