"""The delta journal: an append-only file of whole, checksummed records, fsync'd before anyone is told.

Theory of operation:
- One journal belongs to one snapshot: ``<seq>.journal`` holds the deltas applied on top of
  ``<seq>.snap``, in order. Its header names that base sequence number, so a journal can never be replayed
  onto the wrong snapshot by accident.
- A journal is created whole or not at all: the header is written to a temporary file, fsync'd, renamed
  into place and the directory fsync'd. Only then may the CURRENT pointer name it.
- Each record is ``u32 payload length | u32 CRC32(payload) | payload``. `JournalWriter.append` writes the
  record with one ``os.write`` loop and ``fdatasync``: when it returns, the delta survives kill -9 and power
  loss (as far as the disk honours fsync). If a write fails half-way the file is cut back to its last whole
  record, so a later record is never stranded behind garbage.
- `scan_journal` reads records until the first one that is incomplete or whose checksum, shape or sequence
  number is wrong. Everything before it is trusted; the rest is reported in `JournalScan.problem` with its
  byte offset, never silently dropped, and `JournalScan.torn_tail` says which of two kinds it is:
  * a torn tail: the file ends inside the last record (a crash mid-write). What is there is a prefix of one
    record: a record header cut short, or a payload that stops before the length its header gives while
    its own fields (type, sequence, counts) agree with that length. That record was never acknowledged (its
    fdatasync had not returned), so the store may cut it off (keeping a copy in quarantine/).
  * corruption: anything else (a checksum mismatch, a malformed record, a wrong sequence number, a length
    that disagrees with the record's own fields, bytes after a bad record). Acknowledged records may sit
    behind it, so the store refuses to start until an explicit repair (`JournalScan.records_after` counts
    the whole records still readable behind the damage, for the repair's report).
- Records carry the version id they produce and the one they were applied to, so a replay can tell whether
  it is rebuilding exactly the history that was acknowledged.

All integers are little-endian. Keys are E.164 numbers as uint64; relationship and consent lists carry one
uint32 end day (days since 1970-01-01, 0 = no end) per added key.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import StoreError

__all__ = [
    "JOURNAL_FORMAT_VERSION",
    "MAX_RECORD_BYTES",
    "DeltaRecord",
    "JournalScan",
    "JournalWriter",
    "create_journal",
    "decode_record",
    "encode_record",
    "fsync_directory",
    "scan_journal",
]

JOURNAL_MAGIC = b"NIXJ"
JOURNAL_FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHQ")  # magic, format version, flags (0), base sequence number
_HEADER_CRC = struct.Struct("<I")
HEADER_BYTES = _HEADER.size + _HEADER_CRC.size
_FRAME = struct.Struct("<II")  # payload length, CRC32 of the payload
_FIXED = struct.Struct("<BBHQdII")  # type, flags, reserved, seq, written_at, n_add, n_remove
_STRING_LENGTH = struct.Struct("<H")

_RECORD_DELTA = 1
_FLAG_ADD_VALUES = 0x01

MAX_RECORD_BYTES = 512 * 1024 * 1024
"""A record longer than this is refused on write and treated as corruption on read (a bit-flipped length
would otherwise make the reader wait for gigabytes that never come)."""


@dataclass(frozen=True, slots=True)
class DeltaRecord:
    """One acknowledged delta: the keys it added (with end days for dated lists) and removed."""

    seq: int
    version: str
    previous_version: str
    written_at: float
    add: NDArray[np.uint64]
    remove: NDArray[np.uint64]
    add_until_days: NDArray[np.uint32] | None = None

    def __post_init__(self) -> None:
        if self.add_until_days is not None and len(self.add_until_days) != len(self.add):
            raise ValueError(
                f"add_until_days has {len(self.add_until_days)} entries for {len(self.add)} added keys"
            )


@dataclass(frozen=True, slots=True)
class JournalScan:
    """What a journal file holds: its base, its whole records, and what (if anything) was wrong after them."""

    path: Path
    base_seq: int
    records: tuple[DeltaRecord, ...]
    valid_bytes: int
    """Length of the trusted prefix: header plus whole, checksummed records."""
    file_bytes: int
    problem: str | None
    """None when the whole file was good; else what stopped the scan and where (torn tail, bad CRC ...)."""
    torn_tail: bool = False
    """The problem is a last record cut short by a crash (safe to cut off), not corruption."""
    records_after: tuple[DeltaRecord, ...] = ()
    """Whole, checksummed records found behind a corrupt one (acknowledged deltas a repair would lose)."""

    @property
    def discarded_bytes(self) -> int:
        return self.file_bytes - self.valid_bytes

    @property
    def corrupt(self) -> bool:
        """Damage other than a torn tail: records behind it may have been acknowledged."""
        return self.problem is not None and not self.torn_tail

    @property
    def head_seq(self) -> int:
        """The sequence number of the last whole record (the base's when there is none)."""
        return self.records[-1].seq if self.records else self.base_seq


def _encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("version ids are limited to 65535 bytes")
    return _STRING_LENGTH.pack(len(raw)) + raw


def encode_record(record: DeltaRecord) -> bytes:
    """The framed bytes of `record`: length, CRC32, payload."""
    add = np.ascontiguousarray(record.add, dtype="<u8")
    remove = np.ascontiguousarray(record.remove, dtype="<u8")
    flags = 0 if record.add_until_days is None else _FLAG_ADD_VALUES
    parts = [
        _FIXED.pack(_RECORD_DELTA, flags, 0, record.seq, record.written_at, len(add), len(remove)),
        _encode_string(record.version),
        _encode_string(record.previous_version),
        add.tobytes(),
    ]
    if record.add_until_days is not None:
        parts.append(np.ascontiguousarray(record.add_until_days, dtype="<u4").tobytes())
    parts.append(remove.tobytes())
    payload = b"".join(parts)
    if len(payload) > MAX_RECORD_BYTES:
        raise StoreError(
            f"a delta of {len(payload)} bytes exceeds the journal's {MAX_RECORD_BYTES} byte limit"
        )
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _take(payload: memoryview, offset: int, size: int) -> tuple[memoryview, int]:
    end = offset + size
    if end > len(payload):
        raise ValueError(f"payload ends at byte {len(payload)}, field needs bytes {offset}..{end}")
    return payload[offset:end], end


def _take_string(payload: memoryview, offset: int) -> tuple[str, int]:
    raw, offset = _take(payload, offset, _STRING_LENGTH.size)
    (length,) = _STRING_LENGTH.unpack(raw)
    raw, offset = _take(payload, offset, length)
    return bytes(raw).decode("utf-8"), offset


def decode_record(payload: bytes | memoryview) -> DeltaRecord:
    """Parse one record's payload (already checked against its CRC). Raises ValueError when malformed."""
    view = memoryview(payload)
    raw, offset = _take(view, 0, _FIXED.size)
    kind, flags, _reserved, seq, written_at, n_add, n_remove = _FIXED.unpack(raw)
    if kind != _RECORD_DELTA:
        raise ValueError(f"unknown record type {kind}")
    version, offset = _take_string(view, offset)
    previous_version, offset = _take_string(view, offset)
    raw, offset = _take(view, offset, n_add * 8)
    add = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    until: NDArray[np.uint32] | None = None
    if flags & _FLAG_ADD_VALUES:
        raw, offset = _take(view, offset, n_add * 4)
        until = np.frombuffer(raw, dtype="<u4").astype(np.uint32)
    raw, offset = _take(view, offset, n_remove * 8)
    remove = np.frombuffer(raw, dtype="<u8").astype(np.uint64)
    if offset != len(view):
        raise ValueError(f"{len(view) - offset} unexpected bytes after the record")
    return DeltaRecord(
        seq=seq,
        version=version,
        previous_version=previous_version,
        written_at=written_at,
        add=add,
        remove=remove,
        add_until_days=until,
    )


def _encode_header(base_seq: int) -> bytes:
    header = _HEADER.pack(JOURNAL_MAGIC, JOURNAL_FORMAT_VERSION, 0, base_seq)
    return header + _HEADER_CRC.pack(zlib.crc32(header))


def fsync_directory(directory: Path) -> None:
    """Make a rename or file creation in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_journal(path: Path, base_seq: int, *, sync_directory: bool = True) -> None:
    """Create an empty journal for the snapshot `base_seq`, durably and atomically (replacing any old one).

    `sync_directory=False` leaves the directory fsync to the caller, who must do it before relying on
    the journal (the store's commit fsyncs the same directory right after, when it switches CURRENT).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, _encode_header(base_seq))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    if sync_directory:
        fsync_directory(path.parent)


def scan_journal(path: Path, *, expect_base_seq: int | None = None) -> JournalScan:
    """Read every whole record of the journal at `path`; report (not raise) a torn or corrupt tail.

    Raises `StoreError` only when the header itself is unusable (wrong magic, format or base), because
    then not even the first record can be trusted to belong here.
    """
    data = path.read_bytes()
    base_seq = _read_header(data, path, expect_base_seq)
    records: list[DeltaRecord] = []
    offset = HEADER_BYTES
    problem: str | None = None
    torn = False
    view = memoryview(data)
    while offset < len(data):
        try:
            record, offset = _read_record(view, offset, base_seq + len(records) + 1)
        except _BadRecordError as bad:
            problem, torn = bad.problem, bad.torn
            break
        records.append(record)
    after = _whole_records_after(view, offset) if problem is not None and not torn else ()
    return JournalScan(
        path=path,
        base_seq=base_seq,
        records=tuple(records),
        valid_bytes=offset,
        file_bytes=len(data),
        problem=problem,
        torn_tail=torn,
        records_after=after,
    )


def _read_header(data: bytes, path: Path, expect_base_seq: int | None) -> int:
    """The base sequence number the journal's header names; `StoreError` when the header is unusable."""
    if len(data) < HEADER_BYTES:
        raise StoreError(f"journal {path} is {len(data)} bytes, shorter than its {HEADER_BYTES} byte header")
    header = data[: _HEADER.size]
    (stored_crc,) = _HEADER_CRC.unpack_from(data, _HEADER.size)
    if zlib.crc32(header) != stored_crc:
        raise StoreError(f"journal {path}: header checksum mismatch")
    magic, format_version, _flags, base_seq = _HEADER.unpack(header)
    if magic != JOURNAL_MAGIC or format_version != JOURNAL_FORMAT_VERSION:
        raise StoreError(f"journal {path}: not a format {JOURNAL_FORMAT_VERSION} nixlookup journal")
    if expect_base_seq is not None and base_seq != expect_base_seq:
        raise StoreError(f"journal {path} belongs to snapshot {base_seq}, expected {expect_base_seq}")
    return int(base_seq)


class _BadRecordError(Exception):
    """Why the record at an offset cannot be trusted, and whether it is a torn tail."""

    def __init__(self, problem: str, *, torn: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.torn = torn


def _read_record(view: memoryview, offset: int, expected_seq: int) -> tuple[DeltaRecord, int]:
    """The record at `offset` and the offset where it ends; `_BadRecordError` when it is torn or corrupt."""
    if len(view) - offset < _FRAME.size:
        raise _BadRecordError(f"torn record header at byte {offset} ({len(view) - offset} bytes)", torn=True)
    length, crc = _FRAME.unpack_from(view, offset)
    start = offset + _FRAME.size
    if length > MAX_RECORD_BYTES:
        raise _BadRecordError(f"implausible record length {length} at byte {offset}")
    if start + length > len(view):
        mismatch = _prefix_mismatch(view[start:], length, expected_seq)
        if mismatch is not None:
            raise _BadRecordError(f"record at byte {offset} runs past the end of the file and {mismatch}")
        present = len(view) - start
        problem = f"torn record at byte {offset}: {length} byte payload, {present} present"
        raise _BadRecordError(problem, torn=True)
    payload = view[start : start + length]
    if zlib.crc32(payload) != crc:
        raise _BadRecordError(f"checksum mismatch in the record at byte {offset}")
    try:
        record = decode_record(payload)
    except ValueError as error:
        raise _BadRecordError(f"malformed record at byte {offset}: {error}") from None
    if record.seq != expected_seq:
        raise _BadRecordError(f"record at byte {offset} has sequence {record.seq}, expected {expected_seq}")
    return record, start + length


def _prefix_mismatch(present: memoryview, length: int, expected_seq: int) -> str | None:
    """Why `present` (the bytes after a frame header, up to the end of the file) cannot be the start of
    the `length`-byte payload of record `expected_seq`; None when it can (a torn tail).

    A crash leaves a prefix of the one record being written, so its fixed fields are those of the next
    record and the length they imply (when enough of them are present) equals the frame's. A bit flipped
    in a middle record's length fails this: the record's own fields say it ends well before the file does.
    """
    if len(present) < _FIXED.size:
        return None  # too little to tell: only a crash mid-write leaves a header with almost nothing after
    kind, flags, reserved, seq, _written_at, n_add, n_remove = _FIXED.unpack_from(present, 0)
    if kind != _RECORD_DELTA or reserved != 0 or seq != expected_seq:
        return f"does not start like record {expected_seq}"
    implied = _FIXED.size + n_add * (12 if flags & _FLAG_ADD_VALUES else 8) + n_remove * 8
    offset = _FIXED.size
    for _ in range(2):  # the version and previous-version strings
        if offset + _STRING_LENGTH.size > len(present):
            return None
        (string_length,) = _STRING_LENGTH.unpack_from(present, offset)
        implied += _STRING_LENGTH.size + string_length
        offset += _STRING_LENGTH.size + string_length
    if implied != length:
        return f"its header says {length} payload bytes where its fields say {implied}"
    return None


def _whole_records_after(view: memoryview, offset: int) -> tuple[DeltaRecord, ...]:
    """Whole records behind the corrupt one at `offset`, found by trusting its length (best effort).

    Used only to report what a repair would lose; a record is counted only when its checksum holds.
    """
    found: list[DeltaRecord] = []
    if len(view) - offset < _FRAME.size:
        return ()
    length, _crc = _FRAME.unpack_from(view, offset)
    offset += _FRAME.size + length
    while len(view) - offset >= _FRAME.size:
        length, crc = _FRAME.unpack_from(view, offset)
        start = offset + _FRAME.size
        if length > MAX_RECORD_BYTES or start + length > len(view):
            break
        payload = view[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        try:
            found.append(decode_record(payload))
        except ValueError:
            break
        offset = start + length
    return tuple(found)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class JournalWriter:
    """Appends records to one journal; every `append` is durable when it returns.

    Not thread-safe on its own: the store calls it under its write lock.
    """

    def __init__(self, path: Path, *, base_seq: int, valid_bytes: int, next_seq: int) -> None:
        self.path = path
        self.base_seq = base_seq
        self._next_seq = next_seq
        self._fd = os.open(path, os.O_WRONLY)
        self._size = valid_bytes
        self._broken: str | None = None
        self.last_sync_seconds = 0.0
        """How long the last append's fdatasync took (the store reports it to its timings)."""
        try:
            if os.fstat(self._fd).st_size != valid_bytes:
                os.ftruncate(self._fd, valid_bytes)
                os.fsync(self._fd)
            os.lseek(self._fd, valid_bytes, os.SEEK_SET)
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def records_written(self) -> int:
        """Records in this journal (replayed ones included): the compaction trigger."""
        return self._next_seq - self.base_seq - 1

    @property
    def size_bytes(self) -> int:
        return self._size

    def append(self, record: DeltaRecord) -> None:
        """Write `record` and fdatasync. On any failure the file is cut back to its last whole record."""
        if self._broken is not None:
            raise StoreError(f"journal {self.path} is unusable after an earlier failure: {self._broken}")
        if record.seq != self._next_seq:
            raise StoreError(f"journal {self.path} expects sequence {self._next_seq}, got {record.seq}")
        frame = encode_record(record)
        try:
            _write_all(self._fd, frame)
            synced = time.perf_counter()
            os.fdatasync(self._fd)
            self.last_sync_seconds = time.perf_counter() - synced
        except OSError as error:
            self._cut_back(error)
            raise StoreError(f"journal {self.path}: write failed, delta not applied: {error}") from error
        self._size += len(frame)
        self._next_seq += 1

    def _cut_back(self, cause: OSError) -> None:
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError as error:
            self._broken = f"{cause}; cutting back to {self._size} bytes also failed: {error}"

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
