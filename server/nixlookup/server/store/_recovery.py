"""Bring one list back from disk: the last acknowledged state, or the nearest safe one, said loudly.

Theory of operation:
- Normal start: CURRENT names snapshot N. Load ``N.snap``, replay ``N.journal`` up to its last whole record.
  That is exactly the last acknowledged state: every delta was journalled (fsync'd) before it was answered,
  every reload and compaction made its snapshot durable before CURRENT named it.
- Files with a sequence above N never committed (a reload or compaction killed before its CURRENT switch):
  nothing acknowledged depends on them, so they are removed. Files below the previous snapshot P are
  leftovers of an interrupted clean-up and are removed too.
- A torn or corrupt journal tail (kill -9 mid-write) is cut off at the last whole record; the cut bytes are
  kept in quarantine/ and the log says how many, where and why (`RecoveryNote`). A record that was cut was
  never acknowledged: its fdatasync had not returned.
- A refused current snapshot (bad checksum, truncated, missing) is quarantined and the list falls back to
  snapshot P, replaying every journal from P up to the newest in order. Compaction keeps ``P.journal`` until
  the compaction after it is durable, so this chain is complete. When N was a reload rather than a
  compaction, the deltas after it are replayed onto the older content (deltas are set operations, so every
  acknowledged add and remove still holds) and the log says that the reload itself was lost. The result is
  committed at once as a new snapshot with a new version id, so the next start is a normal one.
- Replaying many deltas rebuilds the index once (`fold_deltas`), not once per record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import SnapshotError, StoreError
from nixlookup.server.index import Index
from nixlookup.server.store._datadir import CurrentPointer, ListPaths
from nixlookup.server.store._journal import DeltaRecord, JournalScan, create_journal, scan_journal
from nixlookup.server.store._snapshot import read_snapshot, write_snapshot

__all__ = [
    "RecoveredList",
    "RecoveryNote",
    "commit_snapshot",
    "delta_source",
    "fold_deltas",
    "make_version",
    "recover_list",
]


@dataclass(frozen=True, slots=True)
class RecoveryNote:
    """Something recovery had to do that an operator must hear about (logged at error level)."""

    event: str
    detail: str
    path: str


@dataclass(frozen=True, slots=True)
class RecoveredList:
    index: Index
    pointer: CurrentPointer
    journal: JournalScan
    """The scan of the journal that appends continue (its trusted prefix is `valid_bytes`)."""
    replayed: tuple[DeltaRecord, ...]
    notes: tuple[RecoveryNote, ...] = field(default=())
    repaired: bool = False


def make_version(seq: int, checksum: str) -> str:
    """A version id: the list's sequence number and the start of its content digest (``000042-9f3a01bc``).

    The sequence orders versions within a data directory; the digest makes equal content recognisable
    across replicas and a replay verifiable (the rebuilt index must have the digest its id names).
    """
    digest = checksum.rpartition(":")[2]
    return f"{seq:06d}-{digest[:8]}"


def delta_source(base_source: str) -> str:
    """The source shown for a version made by deltas on top of `base_source`."""
    return base_source if base_source.endswith(" + deltas") else f"{base_source} + deltas"


def commit_snapshot(paths: ListPaths, index: Index, seq: int, previous_seq: int | None) -> None:
    """Make `index` the list's current snapshot at `seq`: snapshot, empty journal, then CURRENT."""
    kind, caller = paths.key
    extra = {"list_kind": kind.slug, "caller": caller, "seq": seq}
    write_snapshot(paths.snapshot(seq), index, extra=extra)
    create_journal(paths.journal(seq), seq, sync_directory=False)  # write_current fsyncs the directory
    paths.write_current(CurrentPointer(seq=seq, previous_seq=previous_seq))


def _sorted_isin(values: NDArray[np.uint64], sorted_set: NDArray[np.uint64]) -> NDArray[np.bool_]:
    if sorted_set.size == 0 or values.size == 0:
        return np.zeros(values.size, dtype=np.bool_)
    position = np.searchsorted(sorted_set, values)
    position[position >= sorted_set.size] = 0
    found: NDArray[np.bool_] = sorted_set[position] == values
    return found


def fold_deltas(
    base: Index, records: Sequence[DeltaRecord]
) -> tuple[NDArray[np.uint64], NDArray[np.uint32] | None]:
    """Keys (and values) of `base` after `records` in order, with `Index.with_delta`'s semantics.

    Every add and remove is one operation in a single stream (per record: its adds, then its removes); the
    last operation on a key decides whether it is present and with which value. One sort, no rebuild per
    record.
    """
    with_values = base.has_values
    keys_parts: list[NDArray[np.uint64]] = []
    is_add_parts: list[NDArray[np.bool_]] = []
    value_parts: list[NDArray[np.uint32]] = []
    for record in records:
        keys_parts += [record.add, record.remove]
        is_add_parts += [np.ones(record.add.size, np.bool_), np.zeros(record.remove.size, np.bool_)]
        if with_values:
            until = record.add_until_days
            value_parts += [
                until if until is not None else np.zeros(record.add.size, np.uint32),
                np.zeros(record.remove.size, np.uint32),
            ]
    base_keys = np.asarray(base.sorted_keys(), dtype=np.uint64)
    base_values = base.sorted_values()
    if not keys_parts:
        return base_keys, None if base_values is None else np.asarray(base_values)
    op_keys = np.concatenate(keys_parts).astype(np.uint64, copy=False)
    order = np.argsort(op_keys, kind="stable")
    ordered = op_keys[order]
    last = np.r_[ordered[1:] != ordered[:-1], True] if ordered.size else np.zeros(0, np.bool_)
    touched = ordered[last]
    added = np.concatenate(is_add_parts)[order][last]
    untouched = ~_sorted_isin(base_keys, touched)
    keys = np.concatenate([base_keys[untouched], touched[added]])
    if not with_values or base_values is None:
        return keys, None
    op_values = np.concatenate(value_parts)[order][last]
    values = np.concatenate([np.asarray(base_values)[untouched], op_values[added]])
    return keys, values


def _replay(base: Index, records: Sequence[DeltaRecord], notes: list[RecoveryNote], where: str) -> Index:
    if not records:
        return base
    keys, values = fold_deltas(base, records)
    last = records[-1]
    index = Index.build(
        keys,
        values=values,
        version=last.version,
        source=delta_source(base.meta.source),
        register_date=base.meta.register_date,
        synthetic=base.meta.synthetic,
        created_at=datetime.fromtimestamp(last.written_at, UTC),
    )
    if make_version(last.seq, index.meta.checksum) != last.version:
        notes.append(
            RecoveryNote(
                "replay_digest_mismatch",
                f"replaying {len(records)} deltas gave content whose digest differs from version "
                f"{last.version}; serving the replayed content",
                where,
            )
        )
    return index


def _scan_with_tail(paths: ListPaths, seq: int, notes: list[RecoveryNote]) -> JournalScan:
    """Scan ``seq.journal``; quarantine a copy of a bad tail, recreate an unreadable or missing journal."""
    path = paths.journal(seq)
    try:
        scan = scan_journal(path, expect_base_seq=seq)
    except (StoreError, FileNotFoundError) as error:
        if path.exists():
            kept = paths.quarantine_file(path, "unreadable")
            notes.append(RecoveryNote("journal_unreadable", f"{error}; kept as {kept.name}", str(path)))
        else:
            notes.append(RecoveryNote("journal_missing", "no journal; starting an empty one", str(path)))
        create_journal(path, seq)
        return scan_journal(path, expect_base_seq=seq)
    if scan.problem is not None:
        paths.quarantine.mkdir(exist_ok=True)
        tail_copy = paths.quarantine / f"{path.name}.tail-at-{scan.valid_bytes}"
        with path.open("rb") as handle:
            handle.seek(scan.valid_bytes)
            tail_copy.write_bytes(handle.read())
        notes.append(
            RecoveryNote(
                "journal_tail_discarded",
                f"{scan.problem}; kept {len(scan.records)} whole records, cut {scan.discarded_bytes} bytes "
                f"(copy in quarantine/{tail_copy.name})",
                str(path),
            )
        )
    return scan


def _remove_stale_files(paths: ListPaths, pointer: CurrentPointer, notes: list[RecoveryNote]) -> None:
    oldest_kept = pointer.seq if pointer.previous_seq is None else pointer.previous_seq
    sequences = paths.sequences()
    uncommitted = [seq for seq in sequences if seq > pointer.seq]
    stale = [seq for seq in sequences if seq < oldest_kept]
    if uncommitted:
        notes.append(
            RecoveryNote(
                "uncommitted_files_removed",
                f"sequences {uncommitted} were written but never committed (not acknowledged)",
                str(paths.directory),
            )
        )
    paths.remove_files(uncommitted + stale)
    for leftover in paths.directory.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def recover_list(paths: ListPaths) -> RecoveredList:
    """The list's last acknowledged state (or the nearest safe one, with notes saying why)."""
    pointer = paths.read_current()
    if pointer is None:
        raise StoreError(f"{paths.directory} has no CURRENT pointer")
    notes: list[RecoveryNote] = []
    _remove_stale_files(paths, pointer, notes)
    try:
        base, _extra = read_snapshot(paths.snapshot(pointer.seq))
    except SnapshotError as refused:
        return _fall_back(paths, pointer, refused, notes)
    scan = _scan_with_tail(paths, pointer.seq, notes)
    index = _replay(base, scan.records, notes, str(scan.path))
    return RecoveredList(index, pointer, scan, scan.records, tuple(notes))


def _fall_back(
    paths: ListPaths, pointer: CurrentPointer, refused: SnapshotError, notes: list[RecoveryNote]
) -> RecoveredList:
    current_path = paths.snapshot(pointer.seq)
    if current_path.exists():
        kept = paths.quarantine_file(current_path, "refused")
        where = f"kept as quarantine/{kept.name}"
    else:
        where = "file missing"
    notes.append(RecoveryNote("snapshot_refused", f"{refused}; {where}", str(current_path)))
    if pointer.previous_seq is None:
        raise StoreError(
            f"the current snapshot of {paths.directory} is refused ({refused.check} check) and there is no "
            "previous snapshot to fall back to; restore the directory from a backup or reload the list"
        ) from refused
    try:
        index, _extra = read_snapshot(paths.snapshot(pointer.previous_seq))
    except SnapshotError as also_refused:
        raise StoreError(
            f"both the current and the previous snapshot of {paths.directory} are refused "
            f"({refused.check}, {also_refused.check}); restore from a backup or reload the list"
        ) from also_refused
    chain = [seq for seq in paths.sequences() if pointer.previous_seq <= seq <= pointer.seq]
    replayed: list[DeltaRecord] = []
    for journal_seq in chain:
        if not paths.journal(journal_seq).exists():
            continue
        scan = _scan_with_tail(paths, journal_seq, notes)
        head_before = replayed[-1].seq if replayed else pointer.previous_seq
        if journal_seq > head_before:
            # The refused snapshot was not a compaction of the deltas before it (a reload or a repair).
            notes.append(
                RecoveryNote(
                    "reload_lost",
                    f"snapshot {journal_seq} did not follow from the journal before it (a reload); its "
                    f"content is gone, so the deltas after it are replayed onto version {index.meta.version}",
                    str(paths.snapshot(journal_seq)),
                )
            )
        index = _replay(index, scan.records, [], str(scan.path))
        replayed.extend(scan.records)
    head_seq = max([pointer.seq, *(record.seq for record in replayed)])
    new_seq = head_seq + 1
    repaired = index.with_meta(version=make_version(new_seq, index.meta.checksum))
    commit_snapshot(paths, repaired, new_seq, pointer.previous_seq)
    new_pointer = CurrentPointer(seq=new_seq, previous_seq=pointer.previous_seq)
    notes.append(
        RecoveryNote(
            "fell_back_to_previous_snapshot",
            f"serving snapshot {pointer.previous_seq} + {len(replayed)} journalled deltas, committed as "
            f"version {repaired.meta.version}",
            str(paths.directory),
        )
    )
    scan = scan_journal(paths.journal(new_seq), expect_base_seq=new_seq)
    return RecoveredList(repaired, new_pointer, scan, tuple(replayed), tuple(notes), repaired=True)
