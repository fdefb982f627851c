"""Reading a NIX-Adresserat file (the register or a caller's mail list) into uint64 keys.

Theory of operation:
- A CSV file (UTF-8, optional BOM) whose header names any of ``personnummer,name,street,postcode,city``
  (plus ``care_of``; header names are case-insensitive, other columns are ignored). At least a
  ``personnummer`` column or the ``name``, ``street`` and ``postcode`` columns must be there. A dated list
  (mail relationship or consent) also names its end-date column (`until_column`, ``YYYY-MM-DD``, empty =
  no end).
- Keys (`addressing.register_row_keys`, one home for how a person is keyed): a block list (the register,
  a "no more mail" list) stores each row's personnummer key and every register name-address key of the
  person (several spellings of the name); an exempting list (consent, relationship) stores the
  personnummer key and the strict exempt key, with the row's end day as the value. All in one uint64
  index, as the phone lists are, so snapshots, journal, deltas and replication work unchanged.
- Bad rows (an invalid personnummer, an incomplete address, a bad end date) are counted and sampled
  without their digits; the load is refused past `max_bad_share`, as for a phone file.
- Personnummer are judged against the day of the load (a birth date after it is invalid).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.addressing import ADDRESSEE_COLUMNS, register_row_keys, row_problem
from nixlookup.server.errors import RegisterFileError
from nixlookup.server.lists import ListRole, spec_of
from nixlookup.server.store._registerfile import LoadedRegister, shown_path
from nixlookup.server.store._state import ListKey

__all__ = ["load_address_file"]

_MAX_SAMPLES = 5
_EPOCH = date(1970, 1, 1)


def _until_days(texts: list[str]) -> tuple[NDArray[np.uint32], NDArray[np.bool_]]:
    days = np.zeros(len(texts), np.uint32)
    bad = np.zeros(len(texts), np.bool_)
    for row, raw in enumerate(texts):
        text = raw.strip()
        if not text:
            continue
        try:
            days[row] = (date.fromisoformat(text) - _EPOCH).days
        except ValueError:
            bad[row] = True
    return days, bad


@dataclass(frozen=True, slots=True)
class _Table:
    columns: dict[str, list[str]]
    until: list[str] | None


def _read_table(path: Path, *, until_column: str | None, dated: bool) -> _Table:
    name = shown_path(path.name)
    if not path.is_file():
        raise RegisterFileError(f"address file {shown_path(path)} does not exist or is not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RegisterFileError(f"{name} is not UTF-8 text (byte {error.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [field.strip().lower() for field in next(reader, [])]
    wanted: list[str] = [column for column in ADDRESSEE_COLUMNS if column in header]
    if "personnummer" not in wanted and not {"name", "street", "postcode"} <= set(wanted):
        raise RegisterFileError(
            f"{name}: the header must name a personnummer column or the name, street and postcode columns "
            f"(any of {','.join(ADDRESSEE_COLUMNS)}); it has {','.join(header) or 'nothing'}"
        )
    positions = [header.index(column) for column in wanted]
    until_name = (until_column or "").strip().lower() if dated else ""
    if until_name:
        if until_name not in header:
            raise RegisterFileError(f"{name}: no end-date column {until_column!r} in its header")
        positions.append(header.index(until_name))
    cells: list[list[str]] = [[] for _ in positions]
    width = len(header)
    for record in reader:
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        padded = record if len(record) >= width else record + [""] * (width - len(record))
        for cell, at in zip(cells, positions, strict=True):
            cell.append(padded[at])
    columns: dict[str, list[str]] = dict(zip(wanted, cells, strict=False))
    return _Table(columns, cells[-1] if until_name else None)


def load_address_file(
    key: ListKey, path: Path, *, until_column: str | None, max_bad_share: float
) -> LoadedRegister:
    """Read `path` as the list `key` of NIX-Adresserat; raises `RegisterFileError` when it cannot."""
    spec = spec_of(key[0])
    table = _read_table(path, until_column=until_column, dated=spec.dated)
    today = datetime.now(UTC).date()
    keys, rows, checked = register_row_keys(dict(table.columns), reference_date=today)
    bad = checked.invalid.copy()
    days = np.zeros(len(checked), np.uint32)
    if table.until is not None:
        days, bad_days = _until_days(table.until)
        bad |= bad_days
    if spec.role is ListRole.EXEMPTS:
        valid = ~bad
        pn_rows = np.flatnonzero(valid & (checked.personnummer != 0))
        ex_rows = np.flatnonzero(valid & (checked.exempt != 0))
        keys = np.concatenate([checked.personnummer[pn_rows], checked.exempt[ex_rows]]).astype(np.uint64)
        rows = np.concatenate([pn_rows, ex_rows])
    else:
        keep = ~bad[rows]
        keys, rows = keys[keep], rows[keep]
    lines = len(checked)
    bad_lines = int(bad.sum())
    samples = [
        (int(row) + 1, row_problem(checked, int(row)) if checked.invalid[row] else "bad end date")
        for row in np.flatnonzero(bad)[:_MAX_SAMPLES]
    ]
    share = bad_lines / lines if lines else 0.0
    if share > max_bad_share:
        shown = "; ".join(f"row {line}: {reason}" for line, reason in samples)
        raise RegisterFileError(
            f"{shown_path(path.name)}: {bad_lines} of {lines} rows are not valid addressees "
            f"({share:.2%} > the allowed {max_bad_share:.2%}); first: {shown}"
        )
    return LoadedRegister(
        keys=keys,
        until_days=days[rows].astype(np.uint32) if spec.dated else None,
        lines=lines,
        bad_lines=bad_lines,
        bad_samples=samples,
        format="csv",
    )
