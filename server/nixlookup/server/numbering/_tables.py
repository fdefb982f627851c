"""Flat numpy views of the plan tables shared by the vectorised paths (texts and keys)."""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.numbering._codes import ParsedBatch, ParsedNumber
from nixlookup.server.numbering._plan import (
    GENERAL_MATCH,
    PREFIX_DIGITS,
    PREFIX_SPAN,
    TABLE_LENGTHS,
    TYPE_CODE,
)

__all__ = [
    "EXACT_LENGTH_LIMIT",
    "GENERAL_MATCH_FLAT",
    "LENGTH_LIMIT",
    "POW10",
    "PREFIX_DIVISOR",
    "ROW_BASE",
    "TYPE_CODE_FLAT",
    "store_parsed",
]

LENGTH_LIMIT: Final = 128  # per-length tables cover every digit count a text can have (<= 64)
# NSNs up to this length are handled exactly in float64 (the vector paths carry 14-digit tails).
EXACT_LENGTH_LIMIT: Final = 13

TYPE_CODE_FLAT: Final[NDArray[np.uint8]] = TYPE_CODE.ravel()
GENERAL_MATCH_FLAT: Final[NDArray[np.bool_]] = GENERAL_MATCH.ravel()
POW10: Final[NDArray[np.float64]] = 10.0 ** np.arange(LENGTH_LIMIT, dtype=np.float64)


def _usable_lengths() -> NDArray[np.bool_]:
    """Lengths whose table rows can hold anything; every other length must be all 'no'."""
    usable = np.zeros(LENGTH_LIMIT, dtype=np.bool_)
    usable[PREFIX_DIGITS : min(TABLE_LENGTHS, EXACT_LENGTH_LIMIT + 1)] = True
    for length in range(TABLE_LENGTHS):
        if not usable[length] and (TYPE_CODE[length] != TYPE_CODE[0, 0]).any() | GENERAL_MATCH[length].any():
            raise ValueError(f"numbering plan has numbers of length {length}: the vector paths cannot")
    if (TYPE_CODE[0] != TYPE_CODE[0, 0]).any() or GENERAL_MATCH[0].any():
        raise ValueError("numbering plan table row 0 must be empty: it is where unusable lengths land")
    return usable


_USABLE: Final = _usable_lengths()
# Flat index of an NSN = ROW_BASE[length] + floor(nsn / PREFIX_DIVISOR[length]); unusable lengths divide
# by infinity and land on row 0, column 0: no type.
ROW_BASE: Final[NDArray[np.intp]] = np.where(_USABLE, np.arange(LENGTH_LIMIT) * PREFIX_SPAN, 0).astype(
    np.intp
)
PREFIX_DIVISOR: Final[NDArray[np.float64]] = np.where(
    _USABLE, 10.0 ** np.maximum(np.arange(LENGTH_LIMIT) - PREFIX_DIGITS, 0), np.inf
)
for _table in (POW10, ROW_BASE, PREFIX_DIVISOR):
    _table.setflags(write=False)


def store_parsed(batch: ParsedBatch, row: int, parsed: ParsedNumber) -> None:
    """Write one scalar result into a batch (the per-item fallback of the vector paths)."""
    batch.keys[row] = parsed.key
    batch.problems[row] = parsed.problem
    batch.line_types[row] = parsed.line_type
