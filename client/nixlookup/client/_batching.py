"""Cut any input of numbers into `CheckBatch` messages, lazily, and keep what is needed to decode answers.

- A numpy array is cut into slices and each slice sent as packed little-endian keys (``e164_le``): no
  per-number Python work at all.
- Any other iterable is read `batch_size` items at a time (never more: a generator over a huge file is
  never held whole). A chunk of ints only goes as packed keys; a chunk with any string goes as ``texts``
  (an int in such a chunk is written ``+<key>``, which normalises to the same key).
- Each batch gets a `batch_id` the server echoes, so answers are matched to their inputs and a reordered or
  missing answer is detected rather than misattributed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import Purpose

__all__ = ["Numbers", "PreparedBatch", "prepare_batches"]

Numbers = Iterable[str | int] | NDArray[np.uint64]
"""What `check_many` / `check_batches` accept: strings as written, int keys, or a uint64 array."""


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """One batch on its way: the message, and the inputs its answer is aligned with."""

    batch_id: int
    inputs: Sequence[str | int] | NDArray[np.uint64]
    sent_keys: NDArray[np.uint64] | None
    message: lookup_pb2.CheckBatch


def _keys_batch(
    batch_id: int,
    keys: NDArray[np.uint64],
    inputs: Sequence[str | int] | NDArray[np.uint64],
    common: dict[str, object],
) -> PreparedBatch:
    message = lookup_pb2.CheckBatch(
        e164_le=keys.astype("<u8", copy=False).tobytes(),
        batch_id=batch_id,
        **common,  # type: ignore[arg-type]
    )
    return PreparedBatch(batch_id, inputs, keys, message)


def _chunk_batch(batch_id: int, chunk: list[str | int], common: dict[str, object]) -> PreparedBatch:
    if all(type(item) is int for item in chunk):
        try:
            keys = np.fromiter(chunk, dtype=np.uint64, count=len(chunk))
        except OverflowError:
            raise ValueError(
                f"batch {batch_id} holds an int outside 0 .. 2**64-1; E.164 keys are unsigned 64-bit"
            ) from None
        return _keys_batch(batch_id, keys, chunk, common)
    texts: list[str] = []
    for position, item in enumerate(chunk):
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            texts.append(f"+{int(item)}")
        else:
            raise TypeError(
                f"item {position} of batch {batch_id} is a {type(item).__name__}; "
                "numbers must be str (as written) or int (E.164 key)"
            )
    message = lookup_pb2.CheckBatch(texts=texts, batch_id=batch_id, **common)  # type: ignore[arg-type]
    return PreparedBatch(batch_id, chunk, None, message)


def prepare_batches(
    numbers: Numbers,
    *,
    batch_size: int,
    caller: str,
    purpose: Purpose,
    want_details: bool,
    min_version: Sequence[lookup_pb2.ListPosition] = (),
) -> Iterator[PreparedBatch]:
    """Lazily turn `numbers` into prepared batches of at most `batch_size` numbers (each carrying
    `min_version`, checked by the server per batch)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    common: dict[str, object] = {"caller": caller, "purpose": int(purpose), "want_details": want_details}
    if min_version:
        common["min_version"] = list(min_version)
    if isinstance(numbers, np.ndarray):
        if numbers.ndim != 1 or numbers.dtype.kind not in "ui":
            raise TypeError(f"a numpy input must be a 1-d integer array, got {numbers.dtype} {numbers.shape}")
        keys = numbers.astype(np.uint64, copy=False)
        for batch_id, start in enumerate(range(0, keys.size, batch_size)):
            chunk = keys[start : start + batch_size]
            yield _keys_batch(batch_id, chunk, chunk, common)
        return
    if isinstance(numbers, str | bytes):
        raise TypeError("check_many takes an iterable of numbers; for one number use check()")
    iterator = iter(numbers)
    for batch_id in itertools.count():
        items: list[str | int] = list(itertools.islice(iterator, batch_size))
        if not items:
            return
        yield _chunk_batch(batch_id, items, common)
