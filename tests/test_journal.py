"""The delta journal: records round-trip, every torn or corrupt tail is detected, appends are whole."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.server.errors import StoreError
from nixlookup.server.store._journal import (
    HEADER_BYTES,
    DeltaRecord,
    JournalWriter,
    create_journal,
    decode_record,
    encode_record,
    scan_journal,
)

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
"""Bounded: the suite stays fast on a shared 2-core machine."""

_DAYS = st.integers(0, 2**32 - 1)
_keys = st.lists(st.integers(min_value=0, max_value=2**64 - 1), max_size=20).map(
    lambda values: np.array(values, dtype=np.uint64)
)


@st.composite
def _records(draw: st.DrawFn, base_seq: int = 0) -> list[DeltaRecord]:
    count = draw(st.integers(min_value=0, max_value=6))
    records = []
    for offset in range(count):
        add = draw(_keys)
        dated = draw(st.booleans())
        until = (
            np.array(
                draw(st.lists(st.integers(0, 2**32 - 1), min_size=add.size, max_size=add.size)), np.uint32
            )
            if dated
            else None
        )
        records.append(
            DeltaRecord(
                seq=base_seq + offset + 1,
                version=draw(st.text(max_size=12)),
                previous_version=draw(st.text(max_size=12)),
                written_at=draw(st.floats(allow_nan=False, allow_infinity=False)),
                add=add,
                remove=draw(_keys),
                add_until_days=until,
            )
        )
    return records


def _same(left: DeltaRecord, right: DeltaRecord) -> bool:
    until_equal = (left.add_until_days is None and right.add_until_days is None) or (
        left.add_until_days is not None
        and right.add_until_days is not None
        and np.array_equal(left.add_until_days, right.add_until_days)
    )
    return (
        left.seq == right.seq
        and left.version == right.version
        and left.previous_version == right.previous_version
        and left.written_at == right.written_at
        and np.array_equal(left.add, right.add)
        and np.array_equal(left.remove, right.remove)
        and until_equal
    )


def _write_journal(path: Path, base_seq: int, records: list[DeltaRecord]) -> None:
    create_journal(path, base_seq)
    writer = JournalWriter(path, base_seq=base_seq, valid_bytes=HEADER_BYTES, next_seq=base_seq + 1)
    try:
        for record in records:
            writer.append(record)
    finally:
        writer.close()


@_SETTINGS
@given(records=_records(base_seq=0))
def test_record_round_trip(records: list[DeltaRecord]) -> None:
    """Every record decodes to exactly what was encoded (keys, end days, versions, time)."""
    for record in records:
        decoded = decode_record(encode_record(record)[8:])
        assert _same(decoded, record)


@_SETTINGS
@given(records=_records(base_seq=7), data=st.data())
def test_any_cut_keeps_exactly_the_whole_records(
    tmp_path_factory: pytest.TempPathFactory, records: list[DeltaRecord], data: st.DataObject
) -> None:
    """Cutting the file at any byte keeps the records wholly before the cut and reports the rest."""
    path = tmp_path_factory.mktemp("journal") / "00000007.journal"
    _write_journal(path, 7, records)
    full = path.read_bytes()
    cut = data.draw(st.integers(min_value=HEADER_BYTES, max_value=len(full)))
    path.write_bytes(full[:cut])
    scan = scan_journal(path, expect_base_seq=7)
    ends = np.cumsum([HEADER_BYTES] + [len(encode_record(record)) for record in records])
    whole = int(np.searchsorted(ends, cut, side="right")) - 1
    assert len(scan.records) == whole
    assert all(_same(a, b) for a, b in zip(scan.records, records, strict=False))
    assert scan.valid_bytes == ends[whole]
    assert (scan.problem is None) == (cut == ends[whole])
    assert scan.torn_tail == (scan.problem is not None), "a cut is a torn tail, never corruption"


@_SETTINGS
@given(records=_records(base_seq=0).filter(lambda r: len(r) > 0), data=st.data())
def test_flipped_byte_is_detected(
    tmp_path_factory: pytest.TempPathFactory, records: list[DeltaRecord], data: st.DataObject
) -> None:
    """A flipped bit anywhere in a record stops the scan at that record: nothing corrupt is replayed, and
    it is corruption (the start refuses), never a torn tail (which a start would trim silently)."""
    path = tmp_path_factory.mktemp("journal") / "00000000.journal"
    _write_journal(path, 0, records)
    raw = bytearray(path.read_bytes())
    position = data.draw(st.integers(min_value=HEADER_BYTES, max_value=len(raw) - 1))
    raw[position] ^= 1 << data.draw(st.integers(0, 7))
    path.write_bytes(bytes(raw))
    scan = scan_journal(path)
    ends = np.cumsum([HEADER_BYTES] + [len(encode_record(record)) for record in records])
    damaged = int(np.searchsorted(ends, position, side="right")) - 1
    assert len(scan.records) == damaged
    assert scan.problem is not None
    assert scan.corrupt
    assert len(scan.records_after) <= len(records) - damaged - 1


def test_writer_cuts_a_torn_tail_before_appending(tmp_path: Path) -> None:
    """Reopening after a torn write truncates to the last whole record, so new records follow it."""
    path = tmp_path / "00000003.journal"
    first = DeltaRecord(4, "v4", "v3", 1.0, np.array([1, 2], np.uint64), np.zeros(0, np.uint64))
    _write_journal(path, 3, [first])
    with path.open("ab") as handle:
        handle.write(b"\x10\x00\x00\x00garbage")
    scan = scan_journal(path)
    assert scan.problem is not None
    assert len(scan.records) == 1
    writer = JournalWriter(path, base_seq=3, valid_bytes=scan.valid_bytes, next_seq=5)
    second = DeltaRecord(5, "v5", "v4", 2.0, np.zeros(0, np.uint64), np.array([1], np.uint64))
    writer.append(second)
    writer.close()
    rescanned = scan_journal(path)
    assert rescanned.problem is None
    assert [record.seq for record in rescanned.records] == [4, 5]


def test_writer_refuses_out_of_order_sequence(tmp_path: Path) -> None:
    """A record whose sequence is not the next one is refused before anything is written."""
    path = tmp_path / "00000000.journal"
    create_journal(path, 0)
    writer = JournalWriter(path, base_seq=0, valid_bytes=HEADER_BYTES, next_seq=1)
    try:
        with pytest.raises(StoreError, match="expects sequence 1"):
            writer.append(DeltaRecord(2, "v", "u", 0.0, np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
    finally:
        writer.close()
    assert os.path.getsize(path) == HEADER_BYTES


def test_header_damage_and_wrong_base_are_refused(tmp_path: Path) -> None:
    """A journal whose header is damaged, or that belongs to another snapshot, is never replayed."""
    path = tmp_path / "00000001.journal"
    create_journal(path, 1)
    with pytest.raises(StoreError, match="belongs to snapshot 1"):
        scan_journal(path, expect_base_seq=2)
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="header checksum"):
        scan_journal(path)
