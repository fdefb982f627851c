"""Checking a delta's input: list keys, numbers (packed or as written), end days, and what it changes.

Invalid numbers are an answer, not an error: they are counted and left out, never applied. Malformed
requests (a caller on the register, end days on a list without them, misaligned end days) are
`InvalidArgumentError`s naming the field. A NIX-Adresserat list's delta carries personnummer keys or
name-address keys packed, and written personnummer as texts (a name and address needs a reload or the
client's own keying: `addressing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.addressing import NAME_ADDRESS_KEY_BIT, parse_personnummer_many
from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.lists import Register, spec_of
from nixlookup.server.numbering import classify_keys, parse_numbers
from nixlookup.server.store._state import ListKey, ListKind

__all__ = ["check_list_key", "delta_effect", "empty_index", "valid_delta"]


def empty_index(key: ListKey) -> Index:
    """What a delta to a list the store does not hold applies to: no keys (and no end days, if dated)."""
    values = np.zeros(0, np.uint32) if spec_of(key[0]).dated else None
    return Index.build(np.zeros(0, np.uint64), values=values, version="", source="empty")


def check_list_key(kind: ListKind, caller: str) -> ListKey:
    """Validate a (kind, caller) pair: the register has no caller, every other list has one."""
    if not spec_of(kind).per_caller:
        if caller:
            raise InvalidArgumentError(f"the {kind.slug} is shared: its caller must be empty")
        return (kind, "")
    if not caller:
        raise InvalidArgumentError(f"a {kind.slug} list belongs to a caller: caller must not be empty")
    if len(caller) > 256 or not caller.isprintable():
        raise InvalidArgumentError("caller must be at most 256 printable characters")
    return (kind, caller)


def valid_delta(
    key: ListKey,
    *,
    add: NDArray[np.uint64] | None,
    add_until_days: NDArray[np.uint32] | None,
    remove: NDArray[np.uint64] | None,
    add_texts: Sequence[str],
    remove_texts: Sequence[str],
) -> tuple[NDArray[np.uint64], NDArray[np.uint32] | None, NDArray[np.uint64], int]:
    """Valid add keys (with aligned end days for dated lists), valid remove keys, and the invalid count."""
    add_packed = np.zeros(0, np.uint64) if add is None else np.asarray(add, dtype=np.uint64)
    remove_packed = np.zeros(0, np.uint64) if remove is None else np.asarray(remove, dtype=np.uint64)
    parse = _address_side if spec_of(key[0]).register is Register.ADRESSERAT else _parse_side
    add_all, add_ok = parse(add_packed, add_texts)
    remove_all, remove_ok = parse(remove_packed, remove_texts)
    invalid = int((~add_ok).sum() + (~remove_ok).sum())
    until: NDArray[np.uint32] | None = None
    if spec_of(key[0]).dated:
        if add_until_days is None or len(add_until_days) == 0:
            until = np.zeros(int(add_ok.sum()), np.uint32)  # one per valid add (invalid ones are dropped)
        elif len(add_until_days) != add_all.size:
            raise InvalidArgumentError(
                f"add_until_days has {len(add_until_days)} entries for {add_all.size} added numbers"
            )
        else:
            until = np.asarray(add_until_days, dtype=np.uint32)[add_ok]
    elif add_until_days is not None and len(add_until_days):
        raise InvalidArgumentError(f"end days apply to relationship and consent lists, not {key[0].slug}")
    return add_all[add_ok], until, remove_all[remove_ok], invalid


def _address_side(
    packed: NDArray[np.uint64], texts: Sequence[str]
) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """NIX-Adresserat: packed keys are personnummer keys (YYYYMMDDNNNC, checked like a written one) or
    name-address keys (bit 63 set, `addressing`); texts are written personnummer."""
    today = datetime.now(UTC).date()
    name_address = (packed & np.uint64(NAME_ADDRESS_KEY_BIT)) != 0
    as_text = [str(int(key)) for key in packed[~name_address]]
    packed_ok = name_address.copy()
    packed_ok[~name_address] = parse_personnummer_many(as_text, reference_date=today).problems == 0
    parsed = parse_personnummer_many(list(texts), reference_date=today)
    return (
        np.concatenate([packed, parsed.keys]).astype(np.uint64, copy=False),
        np.concatenate([packed_ok, parsed.problems == 0]),
    )


def _parse_side(
    packed: NDArray[np.uint64], texts: Sequence[str]
) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    keys: list[NDArray[np.uint64]] = []
    valid: list[NDArray[np.bool_]] = []
    if packed.size:
        checked = classify_keys(packed)
        keys.append(packed)
        valid.append(checked.problems == 0)
    if texts:
        parsed = parse_numbers(list(texts))
        keys.append(parsed.keys)
        valid.append(parsed.problems == 0)
    if not keys:
        return np.zeros(0, np.uint64), np.zeros(0, np.bool_)
    return np.concatenate(keys).astype(np.uint64, copy=False), np.concatenate(valid)


def delta_effect(base: Index, add: NDArray[np.uint64], remove: NDArray[np.uint64]) -> tuple[int, int]:
    """(keys newly present, keys no longer present) when `add` then `remove` are applied to `base`."""
    unique_remove = sorted_unique(remove)
    unique_add = sorted_unique(add)
    if unique_remove.size:
        unique_add = unique_add[~np.isin(unique_add, unique_remove)]
    added = int((~base.contains_many(unique_add)).sum()) if unique_add.size else 0
    removed = int(base.contains_many(unique_remove).sum()) if unique_remove.size else 0
    return added, removed
