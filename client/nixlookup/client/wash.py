"""Wash a call list: stream a CSV of any size through CheckStream and write it back with the answers.

Theory of operation:
- Before anything is washed, a file input is read once (`_files.scan_input`): its SHA-256 and size (the
  proof names the input as it was, never the washed file) and its encoding (a BOM decides; else UTF-8,
  falling back to cp1252 with a notice; `encoding=` forces one; a file valid in none is refused naming
  the line). Standard input (``-``) is read once, its encoding from a BOM, `encoding=` or UTF-8.
- The rows are read with the ``csv`` module (quoted fields, embedded delimiters and newlines; ``,`` ``;``
  tab ``|`` found by `csv.Sniffer` unless ``delimiter`` is given). The phone cell of each row goes to
  `Client.check_batches`; the row waits in a queue until its batch is answered, then is written out with
  the answer. Memory holds at most the client's in-flight batches of rows, whatever the file's size.
- Every row comes out, in input order. A row whose phone cell is empty, missing or not a number comes out
  INVALID with its reason; nothing is dropped. (A wholly empty line is no row: it is counted as
  `blank_lines` and skipped.)
- Appended columns (`OUTPUT_COLUMNS`): ``e164, verdict, reason, line_type, register_version,
  valid_until, mobile_flag``; columns of those names already present are overwritten in place. CSV output
  keeps the input's encoding, BOM and delimiter; ``output_format="jsonl"`` writes JSON lines (UTF-8).
- Output goes to ``OUT.partial``, renamed over ``OUT`` only when complete; an output that is the input
  itself is refused (`WashError`). ``-`` writes to standard output. The input is digested again as it is
  washed; a digest that differs from the first means the file changed under the wash: refused.
- `wash` returns a `WashSummary` (counts per verdict and reason, the register versions and whether each
  was SYNTHETIC, the caller's lists used, encodings and digests) and hands every raw `CheckBatchResult`
  to the `observers` (the proof record collector is one).
"""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from nixlookup.client._files import (
    STDIO,
    EncodingError,
    FileEncoding,
    HashingReader,
    HashingWriter,
    encoding_of_stream,
    scan_input,
)
from nixlookup.client._wash_output import OUTPUT_COLUMNS, OUTPUT_FORMATS, CsvRows, JsonRows, RowWriter
from nixlookup.client.results import ListVersion
from nixlookup.client.sync import Client
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import Purpose, Reason, Verdict

__all__ = [
    "OUTPUT_COLUMNS",
    "OUTPUT_FORMATS",
    "BatchObserver",
    "ProgressCallback",
    "WashError",
    "WashSummary",
    "wash",
]

_SNIFF_CHARS = 64 * 1024
_SNIFF_DELIMITERS = ",;\t|"

BatchObserver = Callable[[lookup_pb2.CheckBatchResult], None]
ProgressCallback = Callable[[int, int, int], None]
"""``progress(rows_done, bytes_read, bytes_total)``; `bytes_total` is 0 when unknown (standard input)."""


class WashError(ValueError):
    """The input cannot be washed as asked (missing column, unreadable CSV, output == input); the message
    says what to fix."""


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
    """ALLOWED rows whose `mobile_flag` is yes: mobile, and no live relationship or consent with the
    caller (the Swedma/Kontakta rule). Blocked and invalid rows are not counted: nobody calls them."""
    synthetic_versions: tuple[str, ...] = ()
    """Register versions that answered rows and are SYNTHETIC (made-up numbers, not the NIX register)."""
    lists_used: tuple[ListVersion, ...] = ()
    """The caller's own lists (opt-out, relationship, consent) that answered rows, each version once."""
    encoding: FileEncoding = field(default_factory=lambda: FileEncoding("utf-8"))
    input_sha256: str = ""
    input_bytes: int = 0
    output_sha256: str = ""
    output_bytes: int = 0
    output_format: str = "csv"

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


def _sniffed(sample: str, delimiter: str | None) -> type[csv.Dialect]:
    """The given delimiter, else the one `csv.Sniffer` finds in `sample` (only the delimiter is taken from
    it: its guesses about quoting are unreliable; quoting is RFC 4180)."""
    if delimiter is not None:
        if len(delimiter) != 1:
            raise WashError(f"--delimiter must be one character, got {delimiter!r}")
        return _dialect(delimiter)
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


def _is_stdio(path: Path) -> bool:
    return str(path) == STDIO


def _refuse_overwriting_input(input_path: Path, output_path: Path) -> None:
    if _is_stdio(input_path) or _is_stdio(output_path) or not output_path.exists():
        return
    if os.path.samefile(input_path, output_path):
        raise WashError(
            f"--output {output_path} is the input file: washing it in place would destroy the list the "
            "proof must name; write the washed list to another file"
        )


class _Input:
    """The opened input: text lines, the byte reader that digests them, the encoding, the size."""

    def __init__(self, path: Path, encoding: str | None) -> None:
        self.path = path
        self.scanned_sha256 = ""
        if _is_stdio(path):
            raw: BinaryIO = sys.stdin.buffer
            head = raw.peek(4)[:4] if isinstance(raw, io.BufferedReader) else b""
            self.encoding = encoding_of_stream(head, encoding)
            self.total_bytes = 0
        else:
            scanned = scan_input(path, encoding)
            self.encoding = scanned.encoding
            self.scanned_sha256 = scanned.sha256
            self.total_bytes = scanned.size
            raw = path.open("rb")
        self.reader = HashingReader(raw, skip=len(self.encoding.bom))
        self.text = io.TextIOWrapper(io.BufferedReader(self.reader), encoding=self.encoding.codec, newline="")

    def lines(self) -> tuple[str, Iterator[str]]:
        """The first ~64 KiB of whole lines (to sniff the dialect) and every line, those included."""
        head = self.text.read(_SNIFF_CHARS) + self.text.readline()

        def every() -> Iterator[str]:
            yield from io.StringIO(head, newline="")
            yield from self.text

        return head, every()

    def close(self) -> None:
        if not _is_stdio(self.path):
            self.text.close()


def _open_output(output_path: Path) -> tuple[BinaryIO, Path | None]:
    if _is_stdio(output_path):
        return sys.stdout.buffer, None
    partial = output_path.with_name(output_path.name + ".partial")
    return partial.open("wb"), partial


@dataclass(slots=True)
class _Request:
    """What one wash was asked to do, and where its answers go besides the output."""

    client: Client
    caller: str
    purpose: Purpose
    column: str
    delimiter: str | None
    output_format: str
    batch_size: int | None
    timeout: float | None
    observers: Sequence[BatchObserver]
    progress: ProgressCallback | None
    synthetic: dict[str, bool] = field(default_factory=dict)
    """Register version -> SYNTHETIC, from GetRegisterInfo (once per version seen)."""

    def note_version(self, version: str) -> None:
        if version not in self.synthetic:  # a reload mid-wash: asked once per new version
            self.synthetic[version] = self.client.register_info(timeout=self.timeout).register.synthetic


class _Rows:
    """The rows of an opened input, in order: the phone cells go out, the rows wait for their answers."""

    def __init__(self, source: _Input, request: _Request) -> None:
        self.source = source
        head, lines = source.lines()
        self.dialect = _sniffed(head, request.delimiter)
        self.reader = csv.reader(lines, self.dialect)
        header = next(self.reader, None)
        if header is None:
            raise WashError(
                f"{source.path} is empty: a header row naming the {request.column!r} column is needed"
            )
        self.header = header
        self.phone_at = _column_index(header, request.column, source.path)
        self.waiting: deque[list[str]] = deque()
        self.blank_lines = 0

    def phones(self) -> Iterator[str]:
        try:
            for row in self.reader:
                if not row:  # an empty line holds no record (e.g. trailing newlines): not a row
                    self.blank_lines += 1
                    continue
                self.waiting.append(row)
                yield row[self.phone_at] if self.phone_at < len(row) else ""
        except UnicodeDecodeError as error:
            raise EncodingError(
                f"{self.source.path}: line {self.reader.line_num + 1} is not valid "
                f"{self.source.encoding.codec} ({error.reason}); pass --encoding with the file's encoding "
                "(e.g. cp1252)"
            ) from None

    def answered(self, count: int) -> list[list[str]]:
        return [self.waiting.popleft() for _ in range(count)]


def _stream(rows: _Rows, writer: RowWriter, request: _Request) -> _Counts:
    counts = _Counts()
    for batch in request.client.check_batches(
        rows.phones(), caller=request.caller, purpose=request.purpose, want_details=True,
        batch_size=request.batch_size, timeout=request.timeout,
    ):  # fmt: skip
        for observe in request.observers:
            observe(batch.message)
        writer.write_batch(rows.answered(batch.count), batch)
        counts.add(batch.message, batch.verdicts(), batch.reasons, batch.mobile_flag)
        request.note_version(batch.register_version)
        if request.progress is not None:
            request.progress(counts.rows, rows.source.reader.size, rows.source.total_bytes)
    counts.blank_lines = rows.blank_lines
    return counts


def _write_output(source: _Input, output_path: Path, request: _Request) -> tuple[_Counts, HashingWriter]:
    """Wash into ``OUT.partial`` (or standard output) and rename it over ``OUT`` once complete."""
    rows = _Rows(source, request)
    raw_sink, partial = _open_output(output_path)
    sink = HashingWriter(raw_sink)
    try:
        encoding = source.encoding if request.output_format == "csv" else FileEncoding("utf-8")
        sink.write(encoding.bom)
        text = io.TextIOWrapper(sink, encoding=encoding.codec, newline="", write_through=True)  # type: ignore[type-var]
        writer: RowWriter = (
            CsvRows(text, rows.header, rows.dialect)
            if request.output_format == "csv"
            else JsonRows(text, rows.header)
        )
        counts = _stream(rows, writer, request)
        text.flush()
        if source.scanned_sha256 and source.scanned_sha256 != source.reader.sha256.hexdigest():
            raise WashError(f"{source.path} changed while it was washed; wash it again once it is complete")
        if partial is not None:
            os.fsync(raw_sink.fileno())
            raw_sink.close()
            os.replace(partial, output_path)
    except BaseException:
        if partial is not None:
            raw_sink.close()
            partial.unlink(missing_ok=True)
        raise
    return counts, sink


def wash(
    client: Client,
    input_path: Path | str,
    output_path: Path | str,
    *,
    column: str = "phone",
    caller: str = "",
    purpose: Purpose | int | str = Purpose.SALES,
    delimiter: str | None = None,
    encoding: str | None = None,
    output_format: str = "csv",
    batch_size: int | None = None,
    observers: Sequence[BatchObserver] = (),
    progress: ProgressCallback | None = None,
    timeout: float | None = None,
) -> WashSummary:
    """Wash `input_path` (``-``: standard input) into `output_path` (``-``: standard output) through
    `client`; see the module doc."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_format not in OUTPUT_FORMATS:
        raise WashError(f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    _refuse_overwriting_input(input_path, output_path)
    request = _Request(
        client, caller, Purpose.parse(purpose), column, delimiter, output_format, batch_size, timeout,
        observers, progress,
    )  # fmt: skip
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    register = client.register_info(timeout=timeout).register
    request.synthetic[register.version] = register.synthetic
    source = _Input(input_path, encoding)
    try:
        counts, sink = _write_output(source, output_path, request)
    finally:
        source.close()
    return WashSummary(
        input_path=input_path,
        output_path=output_path,
        rows=counts.rows,
        by_verdict={_name(Verdict, v): int(n) for v, n in enumerate(counts.verdicts) if n},
        by_reason={_name(Reason, r): int(n) for r, n in enumerate(counts.reasons) if n},
        register_versions=tuple(counts.versions),
        caller=caller,
        purpose=request.purpose.name,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        elapsed_seconds=time.perf_counter() - started,
        target=client.target,
        batches=counts.batches,
        blank_lines=counts.blank_lines,
        mobile_flagged=counts.mobile_flagged,
        synthetic_versions=tuple(version for version in counts.versions if request.synthetic.get(version)),
        lists_used=tuple(counts.lists.values()),
        encoding=source.encoding if output_format == "csv" else FileEncoding(source.encoding.codec),
        input_sha256=source.reader.sha256.hexdigest(),
        input_bytes=source.reader.size,
        output_sha256=sink.sha256.hexdigest(),
        output_bytes=sink.size,
        output_format=output_format,
    )


def _name(enum: type[Verdict] | type[Reason], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:  # a value newer than this client
        return str(value)


class _Counts:
    """Running totals of a wash, per batch (numpy bincounts, no per-row work)."""

    def __init__(self) -> None:
        self.rows = 0
        self.batches = 0
        self.blank_lines = 0
        self.mobile_flagged = 0
        self.verdicts = np.zeros(256, dtype=np.int64)
        self.reasons = np.zeros(256, dtype=np.int64)
        self.versions: dict[str, None] = {}
        self.lists: dict[tuple[int, str, str], ListVersion] = {}

    def add(
        self,
        message: lookup_pb2.CheckBatchResult,
        verdicts: NDArray[np.uint8],
        reasons: NDArray[np.uint8] | None,
        mobile_flag: NDArray[np.bool_],
    ) -> None:
        self.rows += int(message.count)
        self.batches += 1
        self.verdicts += np.bincount(verdicts, minlength=256)
        if reasons is not None:
            self.reasons += np.bincount(reasons, minlength=256)
        self.mobile_flagged += int(np.count_nonzero(mobile_flag & (verdicts == int(Verdict.ALLOWED))))
        self.versions[message.register_version] = None
        for used in _caller_lists(message.lists_used):
            self.lists.setdefault((int(used.kind), used.caller, used.version), used)


def _caller_lists(used: Iterable[lookup_pb2.ListVersion]) -> Iterator[ListVersion]:
    for item in used:
        if item.list.caller:
            yield ListVersion.from_proto(item)
