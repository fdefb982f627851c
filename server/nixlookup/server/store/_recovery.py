"""Bring one list back from disk: exactly the last acknowledged state, or refuse to start.

Theory of operation:
- Normal start: CURRENT names snapshot N. Load ``N.snap``, replay ``N.journal``. That is exactly the last
  acknowledged state: every delta was journalled (fsync'd) before it was answered, every reload and
  compaction made its snapshot durable before CURRENT named it. The replay checks itself: the rebuilt
  content must have the digest the last record's version id names.
- The one kind of damage a crash leaves is repaired here without asking: a torn tail (the last journal
  record cut short mid-write, never acknowledged because its fdatasync had not returned) is cut off; a copy
  of the cut bytes is kept in quarantine/ and the log says how many, where and why (`RecoveryNote`).
  Files with a sequence above N never committed (a reload or compaction killed before its CURRENT switch;
  never acknowledged) and files below the previous snapshot P (an interrupted clean-up) are removed.
- A refused current snapshot (bad checksum, truncated, missing) is replaced only when that loses and
  invents nothing: when N was a compaction, snapshot P plus the journals after it (`follow_chain`) rebuild
  N's content, and the digests prove it. The result is committed as the same version at the head sequence,
  so the next start is a normal one.
- Everything else is damage recovery will not guess about, and the start is refused with a
  `DataDirDamagedError` that says what was found and names the repair command (`_repair`): a corrupt
  record before the tail (acknowledged deltas may sit behind it), an unreadable or missing journal, a
  refused snapshot that was a reload (its content is gone; replaying later deltas onto older content would
  serve a history that never existed), both snapshots refused, a digest that does not match.
- Replaying many deltas rebuilds the index once (`fold_deltas`), not once per record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import DataDirDamagedError, SnapshotError, StoreError
from nixlookup.server.index import Index
from nixlookup.server.store._datadir import CurrentPointer, ListPaths, repair_hint
from nixlookup.server.store._journal import DeltaRecord, JournalScan, create_journal, scan_journal
from nixlookup.server.store._snapshot import read_snapshot, write_snapshot

__all__ = [
    "Chain",
    "RecoveredList",
    "RecoveryNote",
    "commit_snapshot",
    "delta_source",
    "fold_deltas",
    "follow_chain",
    "keep_torn_tail",
    "make_version",
    "recover_list",
    "recovery_chain",
    "version_seq",
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


def version_seq(version: str) -> int | None:
    """The sequence number a version id starts with (``000042-9f3a01bc`` -> 42); None when it has none."""
    seq, _, digest = version.partition("-")
    return int(seq) if seq.isdigit() and digest else None


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


def _replay(base: Index, records: Sequence[DeltaRecord]) -> Index:
    """`base` with `records` applied, named by the last record's version (not checked here)."""
    if not records:
        return base
    keys, values = fold_deltas(base, records)
    last = records[-1]
    return Index.build(
        keys,
        values=values,
        version=last.version,
        source=delta_source(base.meta.source),
        register_date=base.meta.register_date,
        synthetic=base.meta.synthetic,
        created_at=datetime.fromtimestamp(last.written_at, UTC),
    )


def _digest_matches(index: Index, seq: int) -> bool:
    return make_version(seq, index.meta.checksum) == index.meta.version


@dataclass(frozen=True, slots=True)
class Chain:
    """A history rebuilt from one snapshot and the journals that follow it, as far as it provably goes."""

    base_seq: int
    index: Index
    """The content after every record used, named by the version id of the last one."""
    scans: tuple[JournalScan, ...]
    """The journals walked, in order; the records used are each scan's `records`."""
    head_seq: int
    stopped: str | None
    """Why the walk ended at damage (a corrupt record, an unreadable journal, a digest mismatch ...);
    None when it ended at the end of the last journal or at a torn tail (see `torn_scan`)."""
    verified: bool
    """Every replayed step has the digest its version id names."""

    @property
    def replayed(self) -> tuple[DeltaRecord, ...]:
        return tuple(record for scan in self.scans for record in scan.records)

    @property
    def torn_scan(self) -> JournalScan | None:
        last = self.scans[-1] if self.scans else None
        return last if last is not None and last.torn_tail else None


def follow_chain(paths: ListPaths, base_seq: int, base: Index) -> Chain:
    """Walk from snapshot `base_seq` through ``base_seq.journal`` and, where a journal's last record is the
    base of another journal (a compaction whose snapshot is gone), on into that one.

    The walk stops at the first damage: an unreadable journal, records that were not applied to the content
    reached so far (their previous version differs), a corrupt record, a torn tail, or a digest mismatch.
    It never skips a record: a history with a gap is one that never existed.
    """
    index, head, scans = base, base_seq, []
    stopped: str | None = None
    verified = True
    while True:
        path = paths.journal(head)
        if not path.exists():
            if head == base_seq:
                stopped = (
                    f"{path.name} is missing: the deltas acknowledged after snapshot {base_seq} are unknown"
                )
            break
        try:
            scan = scan_journal(path, expect_base_seq=head)
        except StoreError as error:
            stopped = str(error)
            break
        if scan.records and scan.records[0].previous_version != index.meta.version:
            stopped = (
                f"{path.name} was applied to version {scan.records[0].previous_version}, "
                f"not to {index.meta.version}"
            )
            break
        replayed = _replay(index, scan.records)
        if scan.records and not _digest_matches(replayed, scan.records[-1].seq):
            verified = False
            stopped = (
                f"replaying {path.name} gave content whose digest differs from version "
                f"{scan.records[-1].version}"
            )
            break
        index = replayed
        scans.append(scan)
        if scan.corrupt:
            stopped = f"{path.name}: {scan.problem}"
            break
        if scan.torn_tail or not scan.records:
            break
        head = scan.records[-1].seq
    head_seq = scans[-1].head_seq if scans else base_seq
    return Chain(base_seq, index, tuple(scans), head_seq, stopped, verified)


def _damaged(paths: ListPaths, what: str) -> DataDirDamagedError:
    return DataDirDamagedError(f"{paths.directory}: {what}", repair_hint(paths.data_dir))


def keep_torn_tail(paths: ListPaths, scan: JournalScan, notes: list[RecoveryNote]) -> None:
    """Copy a torn tail into quarantine/, cut it off the journal, and say so."""
    paths.quarantine.mkdir(exist_ok=True)
    tail_copy = paths.quarantine / f"{scan.path.name}.tail-at-{scan.valid_bytes}"
    with scan.path.open("rb") as handle:
        handle.seek(scan.valid_bytes)
        tail_copy.write_bytes(handle.read())
    fd = os.open(scan.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, scan.valid_bytes)
        os.fsync(fd)
    finally:
        os.close(fd)
    notes.append(
        RecoveryNote(
            "journal_tail_discarded",
            f"{scan.problem}; kept {len(scan.records)} whole records, cut {scan.discarded_bytes} bytes of a "
            f"record that was never acknowledged (copy in quarantine/{tail_copy.name})",
            str(scan.path),
        )
    )


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
    """The list's last acknowledged state; `DataDirDamagedError` when only a repair can say what it is."""
    pointer = paths.read_current()
    if pointer is None:
        raise StoreError(f"{paths.directory} has no CURRENT pointer")
    notes: list[RecoveryNote] = []
    _remove_stale_files(paths, pointer, notes)
    chain, refused = recovery_chain(paths, pointer)
    torn = chain.torn_scan
    if refused is None:
        scan = chain.scans[0]  # later journals would belong to uncommitted snapshots, removed above
        if torn is not None:
            keep_torn_tail(paths, torn, notes)
        return RecoveredList(chain.index, pointer, scan, scan.records, tuple(notes))
    current_path = paths.snapshot(pointer.seq)
    where = "file missing"
    if current_path.exists():
        where = f"kept as quarantine/{paths.quarantine_file(current_path, 'refused').name}"
    notes.append(RecoveryNote("snapshot_refused", f"{refused}; {where}", str(current_path)))
    if torn is not None:
        keep_torn_tail(paths, torn, notes)
    head = chain.head_seq
    commit_snapshot(paths, chain.index, head, pointer.previous_seq)
    new_pointer = CurrentPointer(seq=head, previous_seq=pointer.previous_seq)
    notes.append(
        RecoveryNote(
            "fell_back_to_previous_snapshot",
            f"rebuilt version {chain.index.meta.version} exactly (digest checked) from snapshot "
            f"{pointer.previous_seq} + {len(chain.replayed)} journalled deltas; committed at sequence {head}",
            str(paths.directory),
        )
    )
    scan = scan_journal(paths.journal(head), expect_base_seq=head)
    return RecoveredList(chain.index, new_pointer, scan, chain.replayed, tuple(notes), repaired=True)


def recovery_chain(paths: ListPaths, pointer: CurrentPointer) -> tuple[Chain, SnapshotError | None]:
    """The history a start serves, read-only: from the current snapshot, or (with the reason that snapshot
    was refused) rebuilt exactly from the previous one. `DataDirDamagedError` when neither holds."""
    try:
        base, _extra = read_snapshot(paths.snapshot(pointer.seq))
    except SnapshotError as refused:
        return _fallback_chain(paths, pointer, refused), refused
    chain = follow_chain(paths, pointer.seq, base)
    if chain.stopped is not None:
        raise _damaged(paths, chain.stopped)
    return chain, None


def _fallback_chain(paths: ListPaths, pointer: CurrentPointer, refused: SnapshotError) -> Chain:
    """The previous snapshot's chain, when it provably rebuilds the refused current one and everything
    after it (the current snapshot was a compaction of that chain)."""
    if pointer.previous_seq is None:
        raise _damaged(
            paths,
            f"the current snapshot is refused ({refused.check} check) and there is no previous snapshot "
            "to rebuild it from",
        )
    try:
        previous, _extra = read_snapshot(paths.snapshot(pointer.previous_seq))
    except SnapshotError as also_refused:
        raise _damaged(
            paths,
            f"both the current and the previous snapshot are refused ({refused.check}, {also_refused.check})",
        ) from also_refused
    chain = follow_chain(paths, pointer.previous_seq, previous)
    torn = chain.torn_scan
    if chain.stopped is not None:
        why = chain.stopped
    elif torn is not None and torn.base_seq != pointer.seq:
        why = f"{torn.path.name} ends in a torn record, so the history cannot reach snapshot {pointer.seq}"
    elif not any(scan.base_seq == pointer.seq for scan in chain.scans):
        why = (
            f"snapshot {pointer.seq} did not follow from the journal before it (it was a reload, whose "
            "content is gone); replaying the later deltas onto older content would serve a history that "
            "never existed"
        )
    else:
        return chain
    raise _damaged(paths, f"the current snapshot is refused ({refused.check} check) and {why}")
