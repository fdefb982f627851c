"""The store in-process: durable deltas, validated reloads, compaction, recovery from damaged files."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import RegisterFile, make_mobile_keys, write_register
from numpy.typing import NDArray

from nixlookup.server.errors import (
    DataDirDamagedError,
    FailedPreconditionError,
    InvalidArgumentError,
    SnapshotError,
    StoreError,
    ValidationError,
)
from nixlookup.server.store import REGISTER_KEY, ListKind, Store, StoreSettings, write_snapshot
from nixlookup.server.store._datadir import list_paths

OPT_OUT = (ListKind.OPT_OUT, "acme")
RELATIONSHIP = (ListKind.RELATIONSHIP, "Acme AB/Sverige")


def _keys(values: NDArray[np.uint64] | list[int]) -> NDArray[np.uint64]:
    return np.asarray(values, dtype=np.uint64)


def _serving_keys(store: Store, key: tuple[ListKind, str] = REGISTER_KEY) -> set[int]:
    index = store.holder.current().list_for(*key)
    assert index is not None
    return set(index.sorted_keys().tolist())


@pytest.fixture(name="base_register")
def fixture_base_register(tmp_path: Path) -> RegisterFile:
    """2,000 seeded mobile numbers as a text register."""
    return write_register(tmp_path / "base.txt", make_mobile_keys(2_000, seed=1))


@pytest.fixture(name="open_store")
def fixture_open_store(tmp_path: Path, base_register: RegisterFile) -> Iterator[Store]:
    """A store in tmp_path/data seeded from the base register; closed after the test."""
    store = Store.open(tmp_path / "data", initial_register=base_register.path)
    try:
        yield store
    finally:
        store.close()


def _reopen(store: Store, **settings: object) -> Store:
    store.close()
    return Store.open(store.root, settings=StoreSettings(**settings))  # type: ignore[arg-type]


def test_deltas_survive_a_restart_exactly(open_store: Store, base_register: RegisterFile) -> None:
    """Acknowledged deltas are replayed on open: same keys, same version id, history shows them."""
    fresh = make_mobile_keys(30, seed=2)
    first = open_store.apply_delta(REGISTER_KEY, add=fresh[:20])
    second = open_store.apply_delta(
        REGISTER_KEY, remove=base_register.keys[:5], add_texts=["070-123 45 67", "not a number"]
    )
    assert first.added == 20
    assert (second.removed, second.invalid) == (5, 1)
    assert second.previous_version == first.version
    expected = (base_register.key_set | set(fresh[:20].tolist()) | {46701234567}) - set(
        base_register.keys[:5].tolist()
    )
    assert _serving_keys(open_store) == expected
    reopened = _reopen(open_store)
    try:
        assert _serving_keys(reopened) == expected
        assert reopened.holder.current().register.meta.version == second.version
        kinds = [record.kind for record in reopened.history(REGISTER_KEY)]
        assert kinds[:3] == ["replay", "delta", "delta"]
    finally:
        reopened.close()


def test_expect_version_mismatch_is_refused(open_store: Store) -> None:
    """A delta naming a version that is not serving is refused and changes nothing."""
    before = open_store.holder.current().register
    with pytest.raises(FailedPreconditionError, match="expect_version"):
        open_store.apply_delta(REGISTER_KEY, add=_keys([46701234567]), expect_version="000000-deadbeef")
    assert open_store.holder.current().register is before


def test_reload_swaps_and_releases_the_old_version(open_store: Store, tmp_path: Path) -> None:
    """A reload serves the new set; the old index lives only as long as a caller holds it."""
    state_in_flight = open_store.holder.current()  # an RPC that started before the reload
    old = state_in_flight.register
    other = write_register(tmp_path / "other.txt", make_mobile_keys(2_050, seed=3))
    result = open_store.reload(REGISTER_KEY, other.path)
    assert result.previous_version == old.meta.version
    assert _serving_keys(open_store) == other.key_set
    assert state_in_flight.register is old  # the in-flight call still answers from its version
    del state_in_flight
    gc.collect()
    assert sys.getrefcount(old) == 2  # only `old` here (and getrefcount's argument): nobody else holds it


@pytest.mark.parametrize(
    ("damage", "error", "reason"),
    [
        ("truncated", ValidationError, "looks truncated"),
        ("smaller", ValidationError, r"20\.0% fewer"),
        ("bad-checksum", SnapshotError, "checksum check failed"),
        ("garbage", InvalidArgumentError, "not valid numbers"),
    ],
)
def test_bad_reloads_are_refused_and_the_old_version_serves(
    open_store: Store, base_register: RegisterFile, tmp_path: Path, *, damage: str, error: type, reason: str
) -> None:
    """Each damaged file is refused with a reason naming the check; the serving version is unchanged."""
    bigger = make_mobile_keys(2_100, seed=4)
    path = tmp_path / f"{damage}.dat"
    if damage == "truncated":
        text = "".join(f"+{int(key)}\n" for key in bigger)
        path.write_text(text[: len(text) - 5])  # cut mid-line
    elif damage == "smaller":
        write_register(path, base_register.keys[:1_600])
    elif damage == "bad-checksum":
        from nixlookup.server.index import Index

        write_snapshot(path, Index.build(bigger, version="x", source="test"))
        raw = bytearray(path.read_bytes())
        raw[len(raw) // 2] ^= 0x40
        path.write_bytes(bytes(raw))
    else:
        path.write_text("hello\n" * 50 + "".join(f"+{int(key)}\n" for key in bigger))
    before = open_store.holder.current().register
    with pytest.raises(error, match=reason):
        open_store.reload(REGISTER_KEY, path)
    assert open_store.holder.current().register is before
    assert open_store.history(REGISTER_KEY)[0].kind == "snapshot"


def test_force_accepts_a_large_drop(open_store: Store, base_register: RegisterFile, tmp_path: Path) -> None:
    """`force` loads a register 20% smaller that is otherwise refused."""
    smaller = write_register(tmp_path / "smaller.txt", base_register.keys[:1_600])
    open_store.reload(REGISTER_KEY, smaller.path, force=True)
    assert _serving_keys(open_store) == smaller.key_set


def test_compaction_on_threshold_keeps_the_previous_snapshot(
    tmp_path: Path, base_register: RegisterFile
) -> None:
    """After N deltas the journal folds into a snapshot; the previous one stays for a fallback."""
    store = Store.open(
        tmp_path / "data",
        settings=StoreSettings(compact_after_records=3),
        initial_register=base_register.path,
    )
    try:
        fresh = make_mobile_keys(10, seed=5)
        for key in fresh[:4]:
            store.apply_delta(REGISTER_KEY, add=_keys([int(key)]))
        paths = list_paths(store.root, REGISTER_KEY)
        pointer = paths.read_current()
        assert pointer is not None
        assert (pointer.seq, pointer.previous_seq) == (4, 1)
        assert paths.sequences() == [1, 4]
        assert store.describe()[0].journal_records == 1
        expected = base_register.key_set | set(fresh[:4].tolist())
        store = _reopen(store)
        assert _serving_keys(store) == expected
    finally:
        store.close()


def test_torn_journal_tail_keeps_the_whole_records(open_store: Store) -> None:
    """A record cut mid-write is discarded on open (and kept in quarantine); earlier records stay."""
    fresh = make_mobile_keys(3, seed=6)
    for key in fresh:
        open_store.apply_delta(REGISTER_KEY, add=_keys([int(key)]))
    paths = list_paths(open_store.root, REGISTER_KEY)
    open_store.close()
    journal = paths.journal(1)
    raw = journal.read_bytes()
    journal.write_bytes(raw[:-7])
    store = Store.open(open_store.root)
    try:
        serving = _serving_keys(store)
        assert set(fresh[:2].tolist()) <= serving
        assert int(fresh[2]) not in serving
        assert any(path.name.startswith("00000001.journal.tail-at-") for path in paths.quarantine.iterdir())
        store.apply_delta(REGISTER_KEY, add=fresh[2:])  # appends after the cut, not after the garbage
        store = _reopen(store)
        assert set(fresh.tolist()) <= _serving_keys(store)
    finally:
        store.close()


def test_corrupt_compacted_snapshot_falls_back_without_loss(
    tmp_path: Path, base_register: RegisterFile
) -> None:
    """A refused current snapshot: previous snapshot + both journals rebuild every acknowledged delta."""
    store = Store.open(
        tmp_path / "data",
        settings=StoreSettings(compact_after_records=2),
        initial_register=base_register.path,
    )
    fresh = make_mobile_keys(3, seed=7)
    for key in fresh:
        acknowledged = store.apply_delta(REGISTER_KEY, add=_keys([int(key)])).version
    paths = list_paths(store.root, REGISTER_KEY)
    store.close()
    current = paths.snapshot(3)  # the compaction after deltas 2 and 3; delta 4 is in its journal
    raw = bytearray(current.read_bytes())
    raw[100] ^= 0xFF
    current.write_bytes(bytes(raw))
    store = Store.open(tmp_path / "data")
    try:
        assert _serving_keys(store) == base_register.key_set | set(fresh.tolist())
        assert (paths.quarantine / "00000003.snap.refused").exists()
        pointer = paths.read_current()
        assert pointer is not None
        assert pointer.seq == 4  # the head's own sequence: the content is exactly version 4's
        assert store.holder.current().register.meta.version == acknowledged
        store = _reopen(store)
        assert _serving_keys(store) == base_register.key_set | set(fresh.tolist())
    finally:
        store.close()


def test_corrupt_reloaded_snapshot_refuses_to_start(open_store: Store, tmp_path: Path) -> None:
    """When the refused snapshot was a reload its content is gone: no start on an invented history."""
    other = write_register(tmp_path / "other.txt", make_mobile_keys(2_000, seed=8))
    open_store.reload(REGISTER_KEY, other.path)
    open_store.apply_delta(REGISTER_KEY, add=make_mobile_keys(2, seed=9))
    paths = list_paths(open_store.root, REGISTER_KEY)
    open_store.close()
    paths.snapshot(2).write_bytes(b"NIXSNAP\x00 cut short")
    with pytest.raises(DataDirDamagedError, match=r"it was a reload.*nixlookup-server repair"):
        Store.open(open_store.root)


def test_both_snapshots_refused_stops_the_store(open_store: Store, tmp_path: Path) -> None:
    """With no sound snapshot left the store refuses to start rather than serve a guess."""
    other = write_register(tmp_path / "other.txt", make_mobile_keys(2_000, seed=10))
    open_store.reload(REGISTER_KEY, other.path)
    paths = list_paths(open_store.root, REGISTER_KEY)
    open_store.close()
    for seq in (1, 2):
        paths.snapshot(seq).write_bytes(b"junk")
    with pytest.raises(StoreError, match="both the current and the previous snapshot"):
        Store.open(open_store.root)


def test_caller_lists_keep_end_days_through_restart_and_reload(open_store: Store, tmp_path: Path) -> None:
    """Relationship end days survive deltas, a restart and a CSV reload; lists can be dropped."""
    open_store.apply_delta(
        RELATIONSHIP,
        add=_keys([46701111111, 46702222222]),
        add_texts=["073-333 33 33"],
        add_until_days=np.array([20_000, 0, 21_000], np.uint32),
    )
    open_store.apply_delta(OPT_OUT, add_texts=["070-444 44 44"])
    store = _reopen(open_store)
    try:
        index = store.holder.current().list_for(*RELATIONSHIP)
        assert index is not None
        values = index.values_many(_keys([46701111111, 46702222222, 46733333333, 46709999999]))
        assert values.tolist() == [20_000, 0, 21_000, 0]
        csv = tmp_path / "rel.csv"
        csv.write_text("number,until\n070-111 11 11,2030-01-02\n070-555 55 55,\n")
        store.reload(RELATIONSHIP, csv, until_column="until", force=True)
        index = store.holder.current().list_for(*RELATIONSHIP)
        assert index is not None
        epoch_days = (datetime(2030, 1, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
        assert index.values_many(_keys([46701111111, 46705555555])).tolist() == [epoch_days, 0]
        assert store.drop(OPT_OUT)
        assert store.holder.current().list_for(*OPT_OUT) is None
        store = _reopen(store)
        assert set(store.keys()) == {REGISTER_KEY, RELATIONSHIP}
    finally:
        store.close()


def test_create_list_serves_a_built_index_durably_and_only_once(open_store: Store) -> None:
    """`create_list` serves an in-memory index as a new list's version 1, kept across a restart, and
    refuses a list that exists (its next version is a reload or a delta)."""
    from nixlookup.server.index import Index

    keys = make_mobile_keys(40, seed=7)
    created = open_store.create_list(OPT_OUT, Index.build(keys, version="", source="built"))
    assert created.meta.version.startswith("000001-")
    assert _serving_keys(open_store, OPT_OUT) == set(keys.tolist())
    assert open_store.history(OPT_OUT)[0].kind == "snapshot"
    with pytest.raises(FailedPreconditionError, match="exists already"):
        open_store.create_list(OPT_OUT, Index.build(keys[:3], version="", source="again"))
    store = _reopen(open_store)
    try:
        assert _serving_keys(store, OPT_OUT) == set(keys.tolist())
        assert store.describe()[1].version == created.meta.version
    finally:
        store.close()


def test_one_writer_per_directory(open_store: Store) -> None:
    """A second store on the same directory is refused while the first holds it."""
    with pytest.raises(StoreError, match="in use by pid"):
        Store.open(open_store.root)


def test_list_keys_are_validated(open_store: Store) -> None:
    """The register has no caller; a caller's list needs one; end days only on dated lists."""
    with pytest.raises(InvalidArgumentError, match="caller must be empty"):
        open_store.apply_delta((ListKind.REGISTER, "acme"), add=_keys([46701234567]))
    with pytest.raises(InvalidArgumentError, match="must not be empty"):
        open_store.apply_delta((ListKind.OPT_OUT, ""), add=_keys([46701234567]))
    with pytest.raises(InvalidArgumentError, match="end days apply"):
        open_store.apply_delta(OPT_OUT, add=_keys([46701234567]), add_until_days=np.array([5], np.uint32))


def test_big_files_are_built_in_a_child_process_with_the_same_answers(
    tmp_path: Path, base_register: RegisterFile
) -> None:
    """Built in a child process, a reload serves the same set, and a refusal keeps its class and reason."""
    settings = StoreSettings(build_in_child_from_bytes=0)
    store = Store.open(tmp_path / "data", settings=settings, initial_register=base_register.path)
    try:
        other = write_register(tmp_path / "other.txt", make_mobile_keys(2_040, seed=12))
        result = store.reload(REGISTER_KEY, other.path)
        assert _serving_keys(store) == other.key_set
        assert result.lines == 2_040
        cut = tmp_path / "cut.txt"
        cut.write_text(other.path.read_text()[:-4])
        with pytest.raises(ValidationError, match="looks truncated"):
            store.reload(REGISTER_KEY, cut)
        assert _serving_keys(store) == other.key_set
        assert not list((store.root / ".build").iterdir())
    finally:
        store.close()


def test_a_synthetic_register_is_replaced_without_force(tmp_path: Path, base_register: RegisterFile) -> None:
    """A real register much smaller than the synthetic one it replaces is no count drop."""
    store = Store.open(tmp_path / "data", synthetic_size=20_000)
    try:
        assert store.holder.current().register.meta.synthetic
        store.reload(REGISTER_KEY, base_register.path)
        assert _serving_keys(store) == base_register.key_set
        with pytest.raises(ValidationError, match="fewer"):
            store.reload(REGISTER_KEY, write_register(tmp_path / "tiny.txt", base_register.keys[:10]).path)
    finally:
        store.close()


def test_concurrent_deltas_are_serialised_and_all_kept(
    open_store: Store, base_register: RegisterFile
) -> None:
    """Deltas from several threads at once each get their own version; all are served and replayed."""
    fresh = np.setdiff1d(make_mobile_keys(400, seed=13), base_register.keys)[:320]
    versions: list[str] = []

    def apply_chunks(part: NDArray[np.uint64]) -> None:
        for start in range(0, part.size, 4):
            versions.append(open_store.apply_delta(REGISTER_KEY, add=part[start : start + 4]).version)

    threads = [threading.Thread(target=apply_chunks, args=(chunk,)) for chunk in np.split(fresh, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(set(versions)) == 80
    expected = base_register.key_set | set(fresh.tolist())
    assert _serving_keys(open_store) == expected
    store = _reopen(open_store)
    try:
        assert _serving_keys(store) == expected
        assert store.holder.current().register.meta.version == max(versions)
    finally:
        store.close()


def test_old_version_is_freed_once_no_call_holds_it_weakref(open_store: Store, tmp_path: Path) -> None:
    """Weak reference to an old version's storage dies when the last state holding it is released."""
    open_store.apply_delta(RELATIONSHIP, add=_keys([46701111111]), add_until_days=np.array([9], np.uint32))
    state_in_flight = open_store.holder.current()
    old = state_in_flight.list_for(*RELATIONSHIP)
    assert old is not None
    values = old.sorted_values()
    assert values is not None
    storage = weakref.ref(values.base)  # the index's own values array (Index itself has no __weakref__)
    del old, values
    csv = tmp_path / "rel.csv"
    csv.write_text("number,until\n070-111 11 11,2030-01-02\n")
    open_store.reload(RELATIONSHIP, csv, until_column="until")
    gc.collect()
    assert storage() is not None  # the in-flight call still holds the old version
    del state_in_flight
    gc.collect()
    assert storage() is None


def test_reload_killed_before_its_commit_leaves_the_old_version(
    open_store: Store, base_register: RegisterFile, tmp_path: Path
) -> None:
    """A snapshot written but never named by CURRENT (crash mid-reload) is removed; the old one serves."""
    from nixlookup.server.index import Index
    from nixlookup.server.store._journal import create_journal

    paths = list_paths(open_store.root, REGISTER_KEY)
    open_store.close()
    write_snapshot(paths.snapshot(2), Index.build(make_mobile_keys(2_000, seed=14), version="x", source="t"))
    create_journal(paths.journal(2), 2)
    store = Store.open(open_store.root)
    try:
        assert _serving_keys(store) == base_register.key_set
        assert paths.sequences() == [1]
        store.apply_delta(REGISTER_KEY, add=_keys([46701234567]))  # sequence 2 is free again
        assert store.holder.current().register.meta.version.startswith("000002-")
    finally:
        store.close()
