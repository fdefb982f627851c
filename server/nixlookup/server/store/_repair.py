"""`nixlookup-server repair DATA_DIR`: the explicit repair of damage the server refuses to start on.

Theory of operation (in the spirit of ``redis-check-aof --fix``):
- Planning only reads. For every list directory it runs the same read-only recovery a start runs
  (`recovery_chain`); a list that starts (cleanly, after a torn tail, or with an exact fallback) needs no
  repair and is left alone. For a damaged one it finds the longest history the files still prove: every
  readable snapshot (at or below CURRENT when CURRENT is readable) is a candidate base, `follow_chain` walks
  its journals up to the first damage, and the chain that reaches the highest sequence wins (a later base on
  a tie). It never skips a record and never replays deltas onto content they were not applied to, so what
  it serves is a version that really existed.
- The plan says what it keeps (the version it will serve and why) and everything it would lose: journal
  records behind the damage (those still readable are counted, with their sequence numbers), snapshots
  above the kept history (a reload's content; history.jsonl names the file that was loaded), refused files.
- Applying (``--yes``) moves every snapshot, journal and CURRENT file of a damaged list into
  ``quarantine/repair-<time>/`` (nothing is deleted) and commits the kept content: at its own sequence and
  version when nothing after it was lost, else as a new version at the next unused sequence (sequence
  numbers never go back). A list with no readable snapshot at all, or whose owner cannot be told (LIST and
  every snapshot header unreadable), is moved whole into ``DATA_DIR/quarantine/``; for the register the next
  start then seeds from ``--register``. The repair holds the directory's lock, so it never runs beside a
  server.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nixlookup.server.errors import DataDirDamagedError, SnapshotError, StoreError
from nixlookup.server.index import Index
from nixlookup.server.store._datadir import (
    CurrentPointer,
    DataDirLock,
    ListPaths,
    candidate_list_dirs,
    ensure_data_dir,
    list_paths,
    read_list_file,
    write_file_atomically,
)
from nixlookup.server.store._history import HistoryLog, VersionRecord
from nixlookup.server.store._journal import DeltaRecord, fsync_directory, scan_journal
from nixlookup.server.store._recovery import (
    Chain,
    commit_snapshot,
    follow_chain,
    make_version,
    recovery_chain,
)
from nixlookup.server.store._snapshot import read_snapshot
from nixlookup.server.store._state import REGISTER_KEY, ListKey, ListKind, list_name

__all__ = ["ListRepair", "RepairReport", "repair_data_dir"]

_HISTORY_LIMIT = 50


@dataclass(frozen=True, slots=True)
class ListRepair:
    """What the repair found in one list directory and what it would do there."""

    directory: Path
    key: ListKey | None
    damage: str | None
    """None: the list starts as it is (nothing to do)."""
    keeps: str = ""
    loses: tuple[str, ...] = ()
    chain: Chain | None = field(default=None, repr=False)
    """The history to commit; None with damage: the directory is moved whole into quarantine."""
    new_seq: int = 0
    rebuild_list_file: bool = False

    @property
    def needed(self) -> bool:
        return self.damage is not None

    def describe(self) -> list[str]:
        """Lines for the repair's report."""
        name = self.directory.name if self.key is None else list_name(self.key)
        if self.damage is None:
            return [f"{name}: ok ({self.keeps})" if self.keeps else f"{name}: ok"]
        lines = [f"{name}: DAMAGED: {self.damage}", f"  keeps: {self.keeps}"]
        lines += [f"  loses: {item}" for item in self.loses] or ["  loses: nothing acknowledged"]
        return lines


@dataclass(frozen=True, slots=True)
class RepairReport:
    """What `repair_data_dir` found in every list, and (with ``apply``) what it did."""

    plans: tuple[ListRepair, ...]
    done: tuple[str, ...] = ()

    @property
    def needed(self) -> bool:
        return any(plan.needed for plan in self.plans)


def repair_data_dir(root: Path, *, apply: bool) -> RepairReport:
    """Plan the repair of every list under `root` and, with `apply`, carry it out; under the directory's
    lock throughout, so never beside a running server (`StoreError` naming its pid)."""
    if not root.is_dir():
        raise StoreError(f"{root} is not a directory")
    ensure_data_dir(root)
    lock = DataDirLock(root)
    try:
        plans = tuple(_plan_list(root, kind, directory) for kind, directory in candidate_list_dirs(root))
        if not apply:
            return RepairReport(plans)
        done = tuple(line for plan in plans if plan.needed for line in _apply_one(root, plan))
        return RepairReport(plans, done)
    finally:
        lock.release()


# -- planning -----------------------------------------------------------------------------------------
_Snapshots = dict[int, tuple[Index, dict[str, object]] | SnapshotError]


def _plan_list(root: Path, kind: ListKind, directory: Path) -> ListRepair:
    scratch = ListPaths(REGISTER_KEY if kind is ListKind.REGISTER else (kind, ""), directory)
    snapshots = _read_snapshots(scratch)
    key, rebuild_list_file = _list_key(root, kind, directory, snapshots)
    if key is None:
        return ListRepair(
            directory,
            None,
            damage="LIST is unreadable (or names a list that lives elsewhere) and no snapshot header names "
            "the list's owner",
            keeps=f"nothing: the directory moves whole into {root / 'quarantine'}",
            loses=("the whole list (whose it is cannot be told)",),
        )
    paths = list_paths(root, key)
    damage = _start_damage(paths)
    if damage is None and not rebuild_list_file:
        return ListRepair(directory, key, None, keeps=_self_healing(paths))
    damage = damage or "LIST is unreadable (it is rebuilt from a snapshot header)"
    pointer = _pointer_or_none(paths)
    limit = pointer.seq if pointer is not None else None
    chains = [
        follow_chain(paths, seq, found[0])
        for seq, found in sorted(snapshots.items())
        if not isinstance(found, SnapshotError) and (limit is None or seq <= limit)
    ]
    if not chains:
        after = "; the next start seeds the register from --register" if key == REGISTER_KEY else ""
        return ListRepair(
            directory,
            key,
            damage,
            keeps=f"nothing (no readable snapshot): the directory moves whole into {root / 'quarantine'}",
            loses=(f"the whole list{after}",),
        )
    best = max(chains, key=lambda chain: (chain.head_seq, chain.base_seq))
    lost_records = _lost_records(paths, best)
    loses = tuple(_losses(paths, best, snapshots, lost_records))
    seen = [*snapshots, *_journal_seqs(paths), *(r.seq for r in lost_records), _history_last_seq(paths)]
    new_seq = best.head_seq if not loses else max(seen) + 1
    version = best.index.meta.version if not loses else make_version(new_seq, best.index.meta.checksum)
    keeps = (
        f"version {best.index.meta.version} ({best.index.meta.count:,} numbers): snapshot {best.base_seq} "
        f"+ {len(best.replayed)} journalled deltas"
        + ("" if not loses else f", committed as the new version {version}")
    )
    return ListRepair(directory, key, damage, keeps, loses, best, new_seq, rebuild_list_file)


def _read_snapshots(paths: ListPaths) -> _Snapshots:
    found: _Snapshots = {}
    for path in paths.data_files():
        if path.suffix == ".snap":
            try:
                found[int(path.stem)] = read_snapshot(path)
            except SnapshotError as refused:
                found[int(path.stem)] = refused
    return found


def _list_key(
    root: Path, kind: ListKind, directory: Path, snapshots: _Snapshots
) -> tuple[ListKey | None, bool]:
    """The list's key, and whether LIST must be rebuilt (from a snapshot header's list_kind and caller)."""
    if kind is ListKind.REGISTER:
        return REGISTER_KEY, False
    try:
        named = read_list_file(directory / "LIST")
        if list_paths(root, named).directory == directory:
            return named, False
    except DataDirDamagedError:
        pass  # unreadable: a snapshot header may still say whose list this is
    for seq in sorted(snapshots, reverse=True):
        found = snapshots[seq]
        if isinstance(found, SnapshotError):
            continue
        caller = found[1].get("caller")
        if found[1].get("list_kind") == kind.slug and isinstance(caller, str):
            key: ListKey = (kind, caller)
            if list_paths(root, key).directory == directory:
                return key, True
    return None, False


def _pointer_or_none(paths: ListPaths) -> CurrentPointer | None:
    try:
        return paths.read_current()
    except DataDirDamagedError:
        return None


def _start_damage(paths: ListPaths) -> str | None:
    """Why a start would refuse this list (None: it starts)."""
    try:
        pointer = paths.read_current()
        if pointer is None:
            files = paths.data_files()
            return "CURRENT is missing while snapshots or journals are present" if files else None
        recovery_chain(paths, pointer)
    except DataDirDamagedError as error:
        return error.finding.removeprefix(f"{paths.directory}: ")
    return None


def _self_healing(paths: ListPaths) -> str:
    """What a start does on its own to a list that needs no repair (for the report)."""
    pointer = paths.read_current()
    if pointer is None:
        return ""
    chain, refused = recovery_chain(paths, pointer)
    notes = []
    if refused is not None:
        notes.append(f"the server rebuilds the refused snapshot {pointer.seq} exactly at start")
    if chain.torn_scan is not None:
        notes.append(f"the server cuts the torn tail of {chain.torn_scan.path.name} at start")
    return "; ".join(notes)


def _journal_seqs(paths: ListPaths) -> list[int]:
    return [int(path.stem) for path in paths.data_files() if path.suffix == ".journal"]


def _lost_records(paths: ListPaths, chain: Chain) -> list[DeltaRecord]:
    """Whole records on disk that the kept chain does not include (beyond its head)."""
    lost: dict[int, DeltaRecord] = {}
    walked = {scan.path for scan in chain.scans}
    for scan in chain.scans:
        for record in scan.records_after:
            lost.setdefault(record.seq, record)
    for path in paths.data_files():
        if path.suffix != ".journal" or path in walked:
            continue
        try:
            scan = scan_journal(path)
        except StoreError:
            continue  # reported by _losses as an unreadable journal
        for record in (*scan.records, *scan.records_after):
            if record.seq > chain.head_seq:
                lost.setdefault(record.seq, record)
    return [lost[seq] for seq in sorted(lost)]


def _losses(
    paths: ListPaths, chain: Chain, snapshots: _Snapshots, lost_records: list[DeltaRecord]
) -> list[str]:
    losses: list[str] = []
    last = chain.scans[-1] if chain.scans else None
    if last is not None and last.corrupt:
        losses.append(f"{last.path.name}: the damaged record, sequence {last.head_seq + 1} ({last.problem})")
    elif chain.stopped is not None:
        losses.append(f"whatever followed where the history stops: {chain.stopped}")
    for path in paths.data_files():
        if path.suffix == ".journal" and int(path.stem) > chain.base_seq:
            try:
                scan_journal(path)
            except StoreError as error:
                losses.append(f"{path.name} is unreadable ({error}): every delta in it")
    if lost_records:
        adds = sum(record.add.size for record in lost_records)
        removes = sum(record.remove.size for record in lost_records)
        seqs = ", ".join(str(record.seq) for record in lost_records[:10])
        losses.append(
            f"{len(lost_records)} acknowledged deltas still readable behind the damage (sequences "
            f"{seqs}{' ...' if len(lost_records) > 10 else ''}; {adds:,} numbers added, {removes:,} removed)"
        )
    events = _history_events(paths)
    for seq, found in sorted(snapshots.items()):
        if seq <= chain.head_seq:
            continue  # older history, or a compaction the kept chain rebuilds
        event = events.get(seq)
        origin = f", a {event.kind} of {event.source}" if event is not None else ""
        if isinstance(found, SnapshotError):
            losses.append(f"snapshot {seq} (refused: {found.check} check{origin}): its content")
        else:
            meta = found[0].meta
            losses.append(
                f"snapshot {seq}: version {meta.version}, {meta.count:,} numbers{origin}; if it was a "
                "reload, reload that file again"
            )
    return losses


def _history_events(paths: ListPaths) -> dict[int, VersionRecord]:
    """The event that made each sequence (a reload, a compaction ...), not the replays of it."""
    found: dict[int, VersionRecord] = {}
    for event in HistoryLog(paths.history_file, limit=10_000).newest_first():
        if event.kind != "replay":
            found.setdefault(event.seq, event)
    return found


def _history_last_seq(paths: ListPaths) -> int:
    return HistoryLog(paths.history_file, limit=_HISTORY_LIMIT).last_seq


# -- applying -----------------------------------------------------------------------------------------
def _apply_one(root: Path, plan: ListRepair) -> list[str]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if plan.chain is None or plan.key is None:
        target = root / "quarantine" / f"{plan.directory.parent.name}-{plan.directory.name}-{stamp}"
        target.parent.mkdir(exist_ok=True)
        os.replace(plan.directory, target)
        fsync_directory(plan.directory.parent)
        fsync_directory(target.parent)
        return [f"moved {plan.directory} to {target}"]
    paths = list_paths(root, plan.key)
    folder = paths.quarantine / f"repair-{stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    moved = [*paths.data_files(), paths.current_file]
    if plan.rebuild_list_file:
        moved.append(paths.list_file)
    for path in moved:
        if path.exists():
            os.replace(path, folder / path.name)
    fsync_directory(folder)
    fsync_directory(paths.directory)
    if plan.rebuild_list_file:
        kind, caller = plan.key
        payload = json.dumps({"kind": kind.slug, "caller": caller}) + "\n"
        write_file_atomically(paths.list_file, payload.encode("utf-8"))
    chain = plan.chain
    index = chain.index
    if plan.new_seq != chain.head_seq:
        index = index.with_meta(version=make_version(plan.new_seq, index.meta.checksum))
    commit_snapshot(paths, index, plan.new_seq, None)
    HistoryLog(paths.history_file, limit=_HISTORY_LIMIT).append(
        VersionRecord(
            seq=plan.new_seq,
            version=index.meta.version,
            kind="repair",
            source=f"repair: {chain.index.meta.version} kept, damaged files in quarantine/{folder.name}",
            count=index.meta.count,
            loaded_at=datetime.fromtimestamp(time.time(), UTC),
        )
    )
    return [
        f"{list_name(plan.key)}: now serves version {index.meta.version} ({index.meta.count:,} numbers); "
        f"the files it had are in {folder}"
    ]
