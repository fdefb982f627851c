"""Building and validating a reloaded list off to the side, before anything serving is touched.

Two stages, so the expensive one runs without the store's write lock:
1. `build_off_to_the_side`: read the file (text, CSV or snapshot; `registerfile` refuses too many bad
   lines, `snapshot` a failed checksum), refuse a text file whose last line was cut short, and build the
   new `Index`. Readers keep answering from the serving version meanwhile.
2. `check_against_serving` (under the write lock): the request's ``expect_version`` must name the serving
   version, and the count must not drop by more than the configured share unless forced (a synthetic
   serving register is exempt: replacing it with a real one is not a drop).
Each refusal is a `ValidationError` (FAILED_PRECONDITION) or `RegisterFileError` (INVALID_ARGUMENT) whose
message names the file, the check and the numbers involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import get_args

import numpy as np

from nixlookup.server.errors import FailedPreconditionError, InvalidArgumentError, ValidationError
from nixlookup.server.index import Index
from nixlookup.server.lists import spec_of
from nixlookup.server.numbering import Problem, parse_numbers
from nixlookup.server.store._registerfile import LoadedRegister, RegisterFormat, load_register_file
from nixlookup.server.store._state import ListKey, ListKind

__all__ = ["BuiltVersion", "ReloadRequest", "build_off_to_the_side", "check_against_serving"]

_TAIL_BYTES = 256


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


def _refuse_truncated(path: Path, loaded: LoadedRegister) -> None:
    """A text/CSV file that ends mid-line in a line that does not parse was cut short: refuse it.

    A file cut at a line break looks whole; the count-drop check catches that case.
    """
    if loaded.bad_lines == 0:
        return
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last_line = tail.splitlines()[-1]
    if loaded.format == "text":
        problem = Problem(int(parse_numbers([last_line]).problems[0]))
        if problem in (Problem.OK, Problem.EMPTY):
            return
    raise ValidationError(
        f"{path.name} looks truncated: it ends without a line break in a line that is not a valid "
        f"number ({loaded.bad_lines} bad lines of {loaded.lines}); the file was probably cut off while "
        "being written or copied. The serving version is unchanged"
    )


def build_off_to_the_side(key: ListKey, request: ReloadRequest, *, max_bad_share: float) -> BuiltVersion:
    """Read and validate `request.path` into a new index for the list `key` (nothing serving changes)."""
    dated = spec_of(key[0]).dated
    if request.until_column and not dated:
        raise InvalidArgumentError(
            f"an end-date column applies to relationship and consent lists, not {key[0].slug}"
        )
    loaded = load_register_file(
        request.path,
        fmt=_format(request.fmt),
        column=request.column or None,
        until_column=request.until_column or None,
        max_bad_share=max_bad_share,
    )
    source = str(request.path)
    snapshot = loaded.snapshot
    if snapshot is not None and snapshot.has_values == dated:
        # A snapshot already holds the built index: reuse it, only the provenance changes.
        date = request.register_date or snapshot.meta.register_date
        index = snapshot.with_meta(source=source, register_date=date)
        return BuiltVersion(index, loaded.lines, loaded.bad_lines)
    _refuse_truncated(request.path, loaded)
    values = None
    if dated:
        values = loaded.until_days if loaded.until_days is not None else np.zeros(loaded.keys.size, np.uint32)
    index = Index.build(
        loaded.keys,
        values=values,
        version="",
        source=source,
        register_date=request.register_date,
    )
    return BuiltVersion(index, loaded.lines, loaded.bad_lines)


def check_against_serving(
    key: ListKey,
    new: Index,
    current: Index | None,
    *,
    force: bool,
    expect_version: str | None,
    max_count_drop_share: float,
) -> None:
    """Refuse a new version that does not fit the serving one (called under the write lock)."""
    if expect_version and (current is None or current.meta.version != expect_version):
        serving = "no list" if current is None else f"version {current.meta.version}"
        raise FailedPreconditionError(f"expect_version {expect_version} does not match: serving {serving}")
    if force or current is None or current.meta.synthetic:
        return  # replacing made-up numbers with a real register is never a "drop"
    old_count, new_count = current.meta.count, new.meta.count
    if old_count and new_count < old_count * (1.0 - max_count_drop_share):
        drop = 1.0 - new_count / old_count
        raise ValidationError(
            f"{new.meta.source}: {new_count:,} numbers is {drop:.1%} fewer than the serving version "
            f"{current.meta.version} ({old_count:,}); more than the allowed {max_count_drop_share:.0%} drop, "
            "so it looks truncated or partial. Pass force to load it anyway. The serving version is unchanged"
        )
    if key[0] is ListKind.REGISTER and new_count == 0:
        raise ValidationError(f"{new.meta.source}: an empty register is refused unless forced")
