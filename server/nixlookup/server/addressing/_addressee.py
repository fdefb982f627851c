"""Addressees as columns -> every key they are looked up or stored by, plus why a row is invalid.

Theory of operation:
- A row (of a register file, a caller's list or a check) may give a personnummer, a name and address,
  or both. `addressee_keys` decides whole columns at once: the personnummer column through
  `parse_personnummer_many`, the name/street/postcode columns through `name_address_keys` (checked
  rows: the block and the strict exempt key) and, for block lists, `register_name_address_keys` (every
  register key of a person). All keys live in one uint64 space: personnummer keys are below 2^40,
  name-address keys have bit 63 set.
- A row is INVALID when it gives a personnummer that is not valid (an invalid personnummer is reported,
  never silently unmatched, even when the address is fine), or when it gives no valid key at all. An
  address that is only partly given (a name without a street) is INVALID too unless a valid personnummer
  carries the row. `problems` says which, in words (`row_problem`), never repeating the row's digits.
- Used by the store (loading the address register and mail lists) and by the mail service (checks), so
  both key the same person the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.addressing._keys import (
    AddressKeyCache,
    AddressRow,
    name_address_keys,
    register_name_address_keys,
)
from nixlookup.server.addressing._personnummer import (
    PERSONNUMMER_PROBLEM_TEXT,
    PersonnummerProblem,
    parse_personnummer_many,
)
from nixlookup.server.addressing._problems import ADDRESS_PROBLEM_TEXT, AddressProblem

__all__ = [
    "ADDRESSEE_COLUMNS",
    "AddresseeKeys",
    "addressee_keys",
    "register_row_keys",
    "row_count",
    "row_problem",
]

ADDRESSEE_COLUMNS: Final = ("personnummer", "name", "street", "postcode", "city", "care_of")
"""The columns an addressee may have (file headers, request fields, CSV options): one spelling."""


@dataclass(frozen=True, slots=True)
class AddresseeKeys:
    """Per row: the personnummer key, the name-address block and exempt keys (0 = none) and problems."""

    personnummer: NDArray[np.uint64]
    block: NDArray[np.uint64]
    exempt: NDArray[np.uint64]
    personnummer_problem: NDArray[np.uint8]  # PersonnummerProblem; EMPTY where none was given
    address_problem: NDArray[np.uint8]  # AddressProblem; EMPTY where no address was given
    invalid: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.invalid)


def _column(columns: dict[str, Sequence[str]], name: str, count: int) -> Sequence[str]:
    values = columns.get(name)
    if not values:
        return [""] * count
    if len(values) != count:
        raise ValueError(f"column {name!r} has {len(values)} entries for {count} rows")
    return values


def row_count(columns: dict[str, Sequence[str]]) -> int:
    """The longest column's length (an empty column is absent for every row)."""
    return max((len(values) for values in columns.values()), default=0)


def addressee_keys(
    columns: dict[str, Sequence[str]],
    *,
    reference_date: date,
    cache: AddressKeyCache | None = None,
) -> AddresseeKeys:
    """Keys of checked rows given as columns named like `ADDRESSEE_COLUMNS` (absent columns: empty)."""
    count = row_count(columns)
    personnummer = parse_personnummer_many(
        list(_column(columns, "personnummer", count)), reference_date=reference_date
    )
    rows = _address_rows(columns, count)
    address = name_address_keys(rows, cache)
    pn_given = personnummer.problems != PersonnummerProblem.EMPTY
    pn_ok = personnummer.problems == PersonnummerProblem.OK
    address_given = address.problems != AddressProblem.EMPTY
    address_ok = address.problems == AddressProblem.OK
    invalid = (pn_given & ~pn_ok) | (~pn_ok & ~address_ok) | (address_given & ~address_ok & ~pn_ok)
    return AddresseeKeys(
        personnummer=np.where(pn_ok, personnummer.keys, np.uint64(0)),
        block=address.block_keys,
        exempt=address.exempt_keys,
        personnummer_problem=personnummer.problems,
        address_problem=address.problems,
        invalid=invalid,
    )


def _address_rows(columns: dict[str, Sequence[str]], count: int) -> list[AddressRow]:
    fields = [_column(columns, name, count) for name in ADDRESSEE_COLUMNS[1:]]
    return [AddressRow(*row) for row in zip(*fields, strict=True)]


def register_row_keys(
    columns: dict[str, Sequence[str]], *, reference_date: date
) -> tuple[NDArray[np.uint64], NDArray[np.int64], AddresseeKeys]:
    """Every key a block list (the register, a "no more mail" list) stores for its rows, with the row
    each came from; rows that are invalid contribute no key."""
    checked = addressee_keys(columns, reference_date=reference_date)
    count = len(checked)
    registered = register_name_address_keys(_address_rows(columns, count))
    valid = ~checked.invalid
    pn_rows = np.flatnonzero(valid & (checked.personnummer != 0))
    keep = valid[registered.rows]
    keys = np.concatenate([checked.personnummer[pn_rows], registered.keys[keep]])
    rows = np.concatenate([pn_rows, registered.rows[keep]])
    return keys.astype(np.uint64, copy=False), rows.astype(np.int64, copy=False), checked


def row_problem(keys: AddresseeKeys, row: int) -> str:
    """Why row `row` is invalid, in words (no digits of it)."""
    pn = PersonnummerProblem(int(keys.personnummer_problem[row]))
    address = AddressProblem(int(keys.address_problem[row]))
    if pn not in (PersonnummerProblem.OK, PersonnummerProblem.EMPTY):
        return f"invalid personnummer: {PERSONNUMMER_PROBLEM_TEXT[pn]}"
    if pn is PersonnummerProblem.EMPTY and address is AddressProblem.EMPTY:
        return "no personnummer and no name and address given"
    return f"incomplete name and address: {ADDRESS_PROBLEM_TEXT[address]}"
