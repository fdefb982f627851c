"""Snapshots round-trip exactly and refuse damaged or foreign files, naming the check that failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nixlookup.server.errors import SnapshotError
from nixlookup.server.index import Index
from nixlookup.server.store import (
    generate_queries,
    generate_register,
    is_snapshot,
    read_snapshot,
    write_snapshot,
)
from nixlookup.server.store._snapshot import MAGIC


@pytest.fixture(name="register_index", scope="module")
def fixture_register_index() -> Index:
    return Index.build(generate_register(40_000, seed=11), version="v7", source="test", synthetic=True)


@pytest.fixture(name="snapshot_path")
def fixture_snapshot_path(tmp_path: Path, register_index: Index) -> Path:
    path = tmp_path / "register.snap"
    write_snapshot(path, register_index, extra={"list": "register"})
    return path


def test_round_trip_preserves_answers_and_metadata(snapshot_path: Path, register_index: Index) -> None:
    """A loaded snapshot answers every query like the index it was written from, with the same metadata."""
    loaded, extra = read_snapshot(snapshot_path)
    queries = generate_queries(register_index.sorted_keys(), 20_000, seed=5)
    assert np.array_equal(loaded.contains_many(queries), register_index.contains_many(queries))
    assert loaded.meta == register_index.meta
    assert extra == {"list": "register"}
    assert is_snapshot(snapshot_path)


def test_round_trip_with_values_and_empty(tmp_path: Path) -> None:
    """Dated lists keep their values; an empty index is a valid snapshot too."""
    dated = Index.build(
        np.array([46701234567, 4681234567], np.uint64),
        values=np.array([20000, 0], np.uint32),
        version="r1",
        source="csv",
    )
    write_snapshot(tmp_path / "dated.snap", dated)
    loaded, _ = read_snapshot(tmp_path / "dated.snap")
    assert loaded.values_many(np.array([46701234567, 4681234567, 5], np.uint64)).tolist() == [20000, 0, 0]
    empty = Index.build(np.empty(0, np.uint64), version="e", source="none")
    write_snapshot(tmp_path / "empty.snap", empty)
    assert len(read_snapshot(tmp_path / "empty.snap")[0]) == 0


def test_flipped_bit_fails_the_checksum(snapshot_path: Path) -> None:
    """One flipped bit anywhere in the body is caught by the CRC before anything is trusted."""
    data = bytearray(snapshot_path.read_bytes())
    data[len(data) // 2] ^= 0x10
    snapshot_path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="checksum") as caught:
        read_snapshot(snapshot_path)
    assert caught.value.check == "checksum"


@pytest.mark.parametrize("keep", [0, 10, 100, -1])
def test_truncated_file_is_refused(snapshot_path: Path, keep: int) -> None:
    """A file cut short at any point is refused as truncated (size) or by the checksum."""
    data = snapshot_path.read_bytes()
    snapshot_path.write_bytes(data[:keep] if keep >= 0 else data[:-3])
    with pytest.raises(SnapshotError) as caught:
        read_snapshot(snapshot_path)
    assert caught.value.check in {"size", "checksum", "magic"}


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    """A file that is not a snapshot at all is refused on its magic bytes."""
    path = tmp_path / "numbers.txt"
    path.write_text("0701234567\n" * 10)
    with pytest.raises(SnapshotError, match="magic"):
        read_snapshot(path)
    assert not is_snapshot(path)


def test_newer_format_version_is_refused(snapshot_path: Path) -> None:
    """A snapshot from a newer format is refused by name, not misread."""
    data = bytearray(snapshot_path.read_bytes())
    data[len(MAGIC)] = 99
    snapshot_path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="format-version"):
        read_snapshot(snapshot_path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A missing file is a SnapshotError naming the open check, not an OSError."""
    with pytest.raises(SnapshotError, match="open"):
        read_snapshot(tmp_path / "nope.snap")


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path, register_index: Index) -> None:
    """Rewriting replaces the file whole and leaves no temporary files behind."""
    path = tmp_path / "r.snap"
    write_snapshot(path, register_index)
    write_snapshot(path, register_index.with_meta(version="v8"))
    assert read_snapshot(path)[0].meta.version == "v8"
    assert [p.name for p in tmp_path.iterdir()] == ["r.snap"]
