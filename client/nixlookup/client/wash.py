"""Wash a call list: stream a CSV of any size through CheckStream and write it back with the answers.

Theory of operation:
- The input is read row by row (``csv`` module: quoted fields, embedded delimiters and newlines, a UTF-8
  BOM, ``,`` / ``;`` / tab / ``|`` separators found by `csv.Sniffer` unless ``delimiter`` is given). The
  phone cell of each row goes to `Client.check_batches`; the row itself waits in a queue until its batch is
  answered, then is written out with the answer appended. So memory holds at most the client's in-flight
  batches of rows (``max_in_flight * batch_size``), whatever the file's size.
- Every row comes out, in input order. A row whose phone cell is empty, missing or not a number comes out
  with verdict INVALID and its reason; nothing is dropped. (A wholly empty line is no row: it is skipped
  and counted as `blank_lines`.)
- Appended columns: ``e164, verdict, reason, line_type, register_version, valid_until, mobile_flag``
  (``yes`` for a valid mobile number with no live relationship or consent: the Swedma/Kontakta ethics
  flag; ``no`` otherwise; empty for an invalid number). When the input already has columns of those names
  (a list washed before), they are overwritten in place instead.
- The output is written to ``OUT.partial`` and renamed over ``OUT`` only when the wash is complete, so a
  failed wash never leaves a half-written file under the final name.
- `wash` returns a `WashSummary` (counts per verdict and reason, register versions, times, paths) and
  hands every raw `CheckBatchResult` to the `observers` (a proof record collector uses this).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TextIO

import numpy as np

from nixlookup.client.results import BatchResult, day_to_date
from nixlookup.client.sync import Client
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import LineType, Purpose, Reason, Verdict

__all__ = ["OUTPUT_COLUMNS", "BatchObserver", "WashError", "WashSummary", "print_progress", "wash"]

OUTPUT_COLUMNS = ("e164", "verdict", "reason", "line_type", "register_version", "valid_until", "mobile_flag")
_SNIFF_BYTES = 64 * 1024
_SNIFF_DELIMITERS = ",;\t|"

BatchObserver = Callable[[lookup_pb2.CheckBatchResult], None]
ProgressCallback = Callable[[int, int, int], None]
"""``progress(rows_done, bytes_read, bytes_total)``."""

_VERDICT_NAMES = {int(v): v.name for v in Verdict}
_REASON_NAMES = {int(r): r.name for r in Reason}
_LINE_TYPE_NAMES = {int(t): ("" if t is LineType.UNSPECIFIED else t.name) for t in LineType}


class WashError(ValueError):
    """The input cannot be washed as asked (missing column, unreadable CSV); the message says what to fix."""


@dataclass(frozen=True, slots=True)
class WashSummary:
    """What a wash did: for the summary line, a proof record and monitoring."""

    input_path: Path
    output_path: Path
    rows: int
    by_verdict: dict[str, int]
    by_reason: dict[str, int]
    register_versions: tuple[str, ...]
    caller: str
    purpose: str
    started_at: datetime
    finished_at: datetime
    elapsed_seconds: float
    target: str = ""
    batches: int = 0
    blank_lines: int = 0
    """Empty lines in the input: they hold no record, so they are not rows and are not written."""
    mobile_flagged: int = 0
    """Rows whose `mobile_flag` is yes (the Swedma/Kontakta rule: mobile, no relationship or consent)."""

    @property
    def blocked(self) -> int:
        return self.by_verdict.get("BLOCKED", 0)

    @property
    def invalid(self) -> int:
        return self.by_verdict.get("INVALID", 0)

    @property
    def allowed(self) -> int:
        return self.by_verdict.get("ALLOWED", 0)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


def _dialect(delimiter: str) -> type[csv.Dialect]:
    """RFC 4180 CSV (quotes doubled inside quoted fields) with the given delimiter."""

    class _Dialect(csv.excel):
        pass

    _Dialect.delimiter = delimiter
    return _Dialect


def _sniff_dialect(handle: TextIO, delimiter: str | None) -> type[csv.Dialect]:
    """The dialect to read with: the given delimiter, else the one `csv.Sniffer` finds in the first 64 KiB
    (only the delimiter is taken from it: its guesses about quoting are unreliable; quoting is RFC 4180)."""
    if delimiter is not None:
        if len(delimiter) != 1:
            raise WashError(f"--delimiter must be one character, got {delimiter!r}")
        return _dialect(delimiter)
    sample = handle.read(_SNIFF_BYTES)
    handle.seek(0)
    try:
        return _dialect(csv.Sniffer().sniff(sample, delimiters=_SNIFF_DELIMITERS).delimiter)
    except csv.Error:
        return csv.excel  # one column, or too little to tell: plain comma CSV


def _column_index(header: Sequence[str], column: str, path: Path) -> int:
    wanted = column.strip().lower()
    for position, name in enumerate(header):
        if name.strip().lower() == wanted:
            return position
    names = ", ".join(repr(name) for name in header) or "(none)"
    raise WashError(f"{path} has no column {column!r}; its columns are {names} (use --column NAME)")


_FLAG_NAMES = {0: "", 1: "no", 2: "yes"}  # invalid / valid, not flagged / valid, flagged


def _names(values: list[int], names: dict[int, str]) -> list[str]:
    return [names.get(value, str(value)) for value in values]


def _answer_columns(batch: BatchResult) -> list[list[str]]:
    """The appended cells of a batch, column by column, in `OUTPUT_COLUMNS` order (built per column with
    table lookups: a batch has few distinct verdicts, reasons, line types and dates)."""
    count = batch.count
    zeros = np.zeros(count, dtype=np.uint8)
    reasons = batch.reasons if batch.reasons is not None else zeros
    line_types = batch.line_types if batch.line_types is not None else zeros
    days = batch.valid_until_days if batch.valid_until_days is not None else np.zeros(count, np.uint32)
    distinct_days, day_index = np.unique(days, return_inverse=True)
    day_texts = []
    for day in distinct_days.tolist():
        until = day_to_date(day)
        day_texts.append(until.isoformat() if until is not None else "")
    return [
        [f"+{key}" if key else "" for key in batch.e164.tolist()],
        _names(batch.verdicts().tolist(), _VERDICT_NAMES),
        _names(reasons.tolist(), _REASON_NAMES),
        _names(line_types.tolist(), _LINE_TYPE_NAMES),
        [batch.register_version] * count,
        [day_texts[index] for index in day_index.tolist()],
        _names(np.where(batch.invalid, 0, np.where(batch.mobile_flag, 2, 1)).tolist(), _FLAG_NAMES),
    ]


def wash(
    client: Client,
    input_path: Path,
    output_path: Path,
    *,
    column: str = "phone",
    caller: str = "",
    purpose: Purpose | int | str = Purpose.SALES,
    delimiter: str | None = None,
    batch_size: int | None = None,
    observers: Sequence[BatchObserver] = (),
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
) -> WashSummary:
    """Wash `input_path` into `output_path` through `client`; see the module doc."""
    chosen_purpose = Purpose.parse(purpose)
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    total_bytes = input_path.stat().st_size
    partial = output_path.with_name(output_path.name + ".partial")
    verdict_counts = np.zeros(256, dtype=np.int64)
    reason_counts = np.zeros(256, dtype=np.int64)
    versions: dict[str, None] = {}
    rows_done = 0
    batches = 0
    mobile_flagged = 0
    with input_path.open("r", encoding="utf-8-sig", newline="") as source:
        dialect = _sniff_dialect(source, delimiter)
        reader = csv.reader(source, dialect)
        header = next(reader, None)
        if header is None:
            raise WashError(f"{input_path} is empty: a header row naming the {column!r} column is needed")
        phone_at = _column_index(header, column, input_path)
        replaced = {name: header.index(name) for name in OUTPUT_COLUMNS if name in header}
        appended = [name for name in OUTPUT_COLUMNS if name not in replaced]
        waiting: deque[list[str]] = deque()
        blank_lines = 0

        def phones() -> Iterator[str]:
            nonlocal blank_lines
            for row in reader:
                if not row:  # an empty line holds no record (e.g. trailing newlines): not a row
                    blank_lines += 1
                    continue
                waiting.append(row)
                yield row[phone_at] if phone_at < len(row) else ""

        with partial.open("w", encoding="utf-8", newline="") as sink:
            writer = csv.writer(sink, dialect)
            writer.writerow([*header, *appended])
            width = len(header)
            for batch in client.check_batches(
                phones(),
                caller=caller,
                purpose=chosen_purpose,
                want_details=True,
                batch_size=batch_size,
                timeout=timeout,
            ):
                for observe in observers:
                    observe(batch.message)
                _write_batch(writer, waiting, batch, width, replaced)
                verdict_counts += np.bincount(batch.verdicts(), minlength=256)
                if batch.reasons is not None:
                    reason_counts += np.bincount(batch.reasons, minlength=256)
                versions[batch.register_version] = None
                rows_done += batch.count
                mobile_flagged += int(np.count_nonzero(batch.mobile_flag))
                batches += 1
                if progress is not None:
                    progress(rows_done, _bytes_read(source), total_bytes)
            sink.flush()
            os.fsync(sink.fileno())
    os.replace(partial, output_path)
    elapsed = time.perf_counter() - started
    return WashSummary(
        input_path=input_path,
        output_path=output_path,
        rows=rows_done,
        by_verdict={_VERDICT_NAMES.get(v, str(v)): int(n) for v, n in enumerate(verdict_counts) if n},
        by_reason={_REASON_NAMES.get(r, str(r)): int(n) for r, n in enumerate(reason_counts) if n},
        register_versions=tuple(versions),
        caller=caller,
        purpose=chosen_purpose.name,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        elapsed_seconds=elapsed,
        target=client.target,
        batches=batches,
        blank_lines=blank_lines,
        mobile_flagged=mobile_flagged,
    )


def _write_batch(
    writer: csv._writer,  # type: ignore[name-defined]
    waiting: deque[list[str]],
    batch: BatchResult,
    width: int,
    replaced: dict[str, int],
) -> None:
    """Write the batch's rows (taken from `waiting`, in order) with their answers."""
    columns = _answer_columns(batch)
    in_place = [
        (replaced[name], cells)
        for name, cells in zip(OUTPUT_COLUMNS, columns, strict=True)
        if name in replaced
    ]
    appended = [cells for name, cells in zip(OUTPUT_COLUMNS, columns, strict=True) if name not in replaced]
    rows = [waiting.popleft() for _ in range(batch.count)]
    for position, row in enumerate(rows):
        if len(row) < width:
            row.extend([""] * (width - len(row)))
        for column, column_cells in in_place:
            row[column] = column_cells[position]
    for position, row_cells in enumerate(zip(*appended, strict=True)):
        rows[position].extend(row_cells)
    writer.writerows(rows)


def _bytes_read(handle: IO[str]) -> int:
    try:
        return int(handle.buffer.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return 0


def print_progress(stream: TextIO = sys.stderr) -> ProgressCallback:
    """A one-line progress display (rows, percent of the file, rows/s), redrawn in place."""
    started = time.perf_counter()

    def show(rows: int, done_bytes: int, total_bytes: int) -> None:
        elapsed = max(time.perf_counter() - started, 1e-9)
        percent = 100.0 * done_bytes / total_bytes if total_bytes else 100.0
        stream.write(f"\r  {rows:>12,} rows  {min(percent, 100.0):5.1f}%  {rows / elapsed:>12,.0f} rows/s")
        stream.flush()

    return show
