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
- `scan_journal` reads records until the first one that is incomplete (a crash mid-write: a torn tail) or
  whose checksum or sequence number is wrong (corruption). Everything before it is trusted; the rest is
  reported in `JournalScan.problem` with its byte offset, never silently dropped. The caller (the store) says
  so loudly, keeps a copy of the discarded bytes and cuts the file back before appending again.
- Records carry the version id they produce and the one they were applied to, so a replay can tell whether
  it is rebuilding exactly the history that was acknowledged.

All integers are little-endian. Keys are E.164 numbers as uint64; relationship and consent lists carry one
uint32 end day (days since 1970-01-01, 0 = no end) per added key.
"""

from __future__ import annotations

import os
import struct
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

    @property
    def discarded_bytes(self) -> int:
        return self.file_bytes - self.valid_bytes


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

    records: list[DeltaRecord] = []
    offset = HEADER_BYTES
    problem: str | None = None
    view = memoryview(data)
    while offset < len(data):
        if len(data) - offset < _FRAME.size:
            problem = f"torn record header at byte {offset} ({len(data) - offset} bytes)"
            break
        length, crc = _FRAME.unpack_from(data, offset)
        start = offset + _FRAME.size
        if length > MAX_RECORD_BYTES:
            problem = f"implausible record length {length} at byte {offset}"
            break
        if start + length > len(data):
            problem = f"torn record at byte {offset}: {length} byte payload, {len(data) - start} present"
            break
        payload = view[start : start + length]
        if zlib.crc32(payload) != crc:
            problem = f"checksum mismatch in the record at byte {offset}"
            break
        try:
            record = decode_record(payload)
        except ValueError as error:
            problem = f"malformed record at byte {offset}: {error}"
            break
        expected_seq = base_seq + len(records) + 1
        if record.seq != expected_seq:
            problem = f"record at byte {offset} has sequence {record.seq}, expected {expected_seq}"
            break
        records.append(record)
        offset = start + length
    return JournalScan(
        path=path,
        base_seq=base_seq,
        records=tuple(records),
        valid_bytes=offset,
        file_bytes=len(data),
        problem=problem,
    )


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
            os.fdatasync(self._fd)
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
