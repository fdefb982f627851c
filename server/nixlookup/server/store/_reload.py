"""Building and validating a reloaded list off to the side, before anything serving is touched.

Two stages, so the expensive one runs without the store's write lock:
1. `build_off_to_the_side`: check the path (`check_reload_path`: not empty, no NUL byte, within the file
   system's name limits), read the file (text, CSV or snapshot; a NIX-Adresserat list's CSV through
   `_addressfile`; `registerfile` refuses too many bad lines,
   bytes that are not UTF-8 text, `snapshot` a failed checksum), refuse a text or CSV file that does not
   end in a line break (a file cut while copied ends mid-line, and its last line may still parse as a
   shorter valid number), refuse a file whose shape does not fit the list kind (a CSV with a column of
   dates loaded as the register or an opt-out list looks like a relationship or consent list; a dated
   list loaded from such a CSV without naming its end-date column would never end; a snapshot with end
   days loaded as an undated list), refuse a register date out of range (`_register_dates`), and build
   the new `Index`. Readers keep answering from the serving version meanwhile.
2. `check_against_serving` (under the write lock): the request's ``expect_version`` must name the serving
   version; unless forced, the count must not move by more than the configured share either way (a
   drop means a truncated or partial file, a jump the wrong file), an empty register is refused, and a
   register must not be dated before the serving one (a synthetic serving register is exempt from all of
   these: replacing it with a real one is neither a drop nor a rollback).
Each refusal is a `ValidationError` (FAILED_PRECONDITION) or `InvalidArgumentError` / `RegisterFileError`
(INVALID_ARGUMENT) whose message names the file (digit runs masked, as a path may hold a phone number), the
check and the numbers involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, get_args

import numpy as np

from nixlookup.server.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    RegisterFileError,
    ValidationError,
)
from nixlookup.server.index import Index
from nixlookup.server.lists import Register, spec_of
from nixlookup.server.store._addressfile import load_address_file
from nixlookup.server.store._register_dates import check_not_older, check_register_date
from nixlookup.server.store._registerfile import (
    LoadedRegister,
    RegisterFormat,
    load_register_file,
    shown_path,
)
from nixlookup.server.store._snapshot import is_snapshot
from nixlookup.server.store._state import ListKey

__all__ = [
    "BuiltVersion",
    "ReloadRequest",
    "build_off_to_the_side",
    "check_against_serving",
    "check_reload_path",
]

MAX_PATH_BYTES: Final = 4096
"""Linux's PATH_MAX: a longer reload path cannot name a file (and each part at most NAME_MAX, 255 bytes)."""
_MAX_NAME_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class ReloadRequest:
    path: Path
    fmt: str | None = None
    column: str | None = None
    until_column: str | None = None
    register_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class BuiltVersion:
    """A validated new version, not yet serving (its version id is given at commit)."""

    index: Index
    lines: int
    bad_lines: int


def _format(fmt: str | None) -> RegisterFormat | None:
    if not fmt:
        return None
    for known in get_args(RegisterFormat):
        if fmt == known:
            return known  # type: ignore[no-any-return]
    raise InvalidArgumentError(f"format {fmt!r} is not one of text, csv, snapshot (or empty: by content)")


def check_reload_path(raw: str) -> Path:
    """The reload path `raw` as a `Path`, or `InvalidArgumentError` naming what makes it unusable."""
    if not raw:
        raise InvalidArgumentError("path is required: a register file on the server")
    if "\x00" in raw:
        raise InvalidArgumentError(
            f"path {shown_path(raw.replace(chr(0), '?'))!r} contains a NUL byte (shown as ?), which no file "
            "name can hold"
        )
    encoded = os.fsencode(raw)
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidArgumentError(
            f"path is {len(encoded)} bytes, over the file system's limit of {MAX_PATH_BYTES}"
        )
    longest = max(len(part) for part in encoded.split(b"/"))
    if longest > _MAX_NAME_BYTES:
        raise InvalidArgumentError(
            f"path has a name of {longest} bytes, over the file system's limit of {_MAX_NAME_BYTES} per name"
        )
    return Path(raw)


def _refuse_truncated(path: Path, loaded: LoadedRegister) -> None:
    """A text or CSV file that does not end in a line break was cut short (or written without one): refuse.

    A file cut while being copied ends mid-line, and its last line may still parse as a shorter valid
    number (a fixed-line number has 7 to 9 digits), which would then turn BLOCKED while the rest of the
    file is gone; the count check misses a cut near the end. A whole file ends with a line break.
    """
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        last = handle.read(1)
    if last in (b"\n", b"\r"):
        return
    raise ValidationError(
        f"{shown_path(path.name)} looks truncated: it does not end with a line break, so its last line "
        f"(of {loaded.lines:,}) may have been cut off while the file was written or copied. A whole file "
        "ends with one: add it if the file is complete. The serving version is unchanged"
    )


def _refuse_wrong_shape(key: ListKey, request: ReloadRequest, loaded: LoadedRegister) -> None:
    """Refuse a file whose columns do not fit the list kind it is loaded as."""
    kind = key[0]
    name = shown_path(request.path.name)
    if loaded.snapshot is not None:
        if loaded.snapshot.has_values and not spec_of(kind).dated:
            raise RegisterFileError(
                f"{name} is a snapshot with end days (a relationship or consent list), not a {kind.slug} "
                "list; load it as the list it is"
            )
        return
    dates = loaded.date_columns  # the end-date column itself is not among them
    if not dates:
        return
    if not spec_of(kind).dated:
        raise RegisterFileError(
            f"{name} has a column of dates ({dates[0]!r}) beside the numbers: that is the shape of a "
            f"relationship or consent list (number + end date), not of a {kind.slug} list. Load it as a "
            "relationship or consent list with its end-date column, or drop the column"
        )
    if not request.until_column:
        raise RegisterFileError(
            f"{name} has a column of dates ({dates[0]!r}): name it as the end-date column (until_column), "
            f"or every {kind.slug} entry would be loaded as never ending"
        )


def _load(key: ListKey, request: ReloadRequest, *, max_bad_share: float) -> LoadedRegister:
    """A NIX-Adresserat list's text file goes to the address reader; everything else, and any snapshot,
    to the register file reader."""
    address = spec_of(key[0]).register is Register.ADRESSERAT
    if address and request.fmt != "snapshot" and not (request.path.is_file() and is_snapshot(request.path)):
        if request.fmt not in (None, "", "csv"):
            raise RegisterFileError(f"a {key[0].slug} list is read from CSV or a snapshot, not {request.fmt}")
        return load_address_file(
            key, request.path, until_column=request.until_column or None, max_bad_share=max_bad_share
        )
    return load_register_file(
        request.path,
        fmt=_format(request.fmt),
        column=request.column or None,
        until_column=request.until_column or None,
        max_bad_share=max_bad_share,
    )


def build_off_to_the_side(key: ListKey, request: ReloadRequest, *, max_bad_share: float) -> BuiltVersion:
    """Read and validate `request.path` into a new index for the list `key` (nothing serving changes)."""
    dated = spec_of(key[0]).dated
    if request.until_column and not dated:
        raise InvalidArgumentError(
            f"an end-date column applies to relationship and consent lists, not {key[0].slug}"
        )
    source = str(request.path)
    try:
        loaded = _load(key, request, max_bad_share=max_bad_share)
        _refuse_wrong_shape(key, request, loaded)
        if loaded.snapshot is None:
            _refuse_truncated(request.path, loaded)
    except OSError as error:
        raise RegisterFileError(
            f"cannot read {shown_path(source)}: {error.strerror or type(error).__name__}"
        ) from None
    snapshot = loaded.snapshot
    if snapshot is not None and snapshot.has_values == dated:
        # A snapshot already holds the built index: reuse it, only the provenance changes.
        date = request.register_date or snapshot.meta.register_date
        index = snapshot.with_meta(source=source, register_date=date)
    else:
        values = None
        if dated:
            until = loaded.until_days
            values = until if until is not None else np.zeros(loaded.keys.size, np.uint32)
        index = Index.build(
            loaded.keys, values=values, version="", source=source, register_date=request.register_date
        )
    check_register_date(index.meta.register_date, now=datetime.now(UTC), source=shown_path(source))
    return BuiltVersion(index, loaded.lines, loaded.bad_lines)


def check_against_serving(
    key: ListKey,
    new: Index,
    current: Index | None,
    *,
    force: bool,
    expect_version: str | None,
    max_count_change_share: float,
) -> None:
    """Refuse a new version that does not fit the serving one (called under the write lock)."""
    if expect_version and (current is None or current.meta.version != expect_version):
        serving = "no list" if current is None else f"version {current.meta.version}"
        raise FailedPreconditionError(f"expect_version {expect_version} does not match: serving {serving}")
    if force or current is None or current.meta.synthetic:
        return  # replacing made-up numbers with a real register is never a "drop"
    source = shown_path(new.meta.source)
    old_count, new_count = current.meta.count, new.meta.count
    if old_count and abs(new_count - old_count) > old_count * max_count_change_share:
        change = new_count / old_count - 1.0
        direction, looks = (
            ("fewer", "truncated or partial") if change < 0 else ("more", "like the wrong file")
        )
        raise ValidationError(
            f"{source}: {new_count:,} numbers is {abs(change):.1%} {direction} than the serving version "
            f"{current.meta.version} ({old_count:,}); more than the allowed {max_count_change_share:.0%} "
            f"change, so it looks {looks}. Pass force to load it anyway. The serving version is unchanged"
        )
    if not spec_of(key[0]).per_caller and new_count == 0:
        raise ValidationError(f"{source}: an empty register is refused unless forced")
    if not spec_of(key[0]).per_caller:
        check_not_older(new, current, source=source)
