"""The store: every list's versions on disk and in memory, hot reloads and durable deltas.

Theory of operation:
- The data directory is the source of truth (layout and file protocol: `datadir`, docs/data-dir.md). For
  each list (the register, and each caller's opt-out / relationship / consent list) it holds the current
  snapshot, the journal of deltas since it, the previous snapshot with its journal (the fallback), a CURRENT
  pointer (the commit point) and a history file. On open the store serves exactly the last acknowledged
  state: current snapshot + journal replayed (`_store_recovery`).
- Readers never lock: they take ``holder.current()`` once per RPC or batch. Every change (reload, delta,
  compaction, drop) runs under ``holder.write_lock`` and ends in ONE ``holder.swap`` of a new
  `ServingState`, so an answer always rests on one version of each list.
- Durable before visible: a delta is journalled and fdatasync'd, a reload's snapshot renamed into place and
  CURRENT switched, BEFORE the swap and before the call returns. A crash before that point leaves the old
  state (nothing was acknowledged); after it, the new one. Never half: the journal record is checksummed
  and a torn one is discarded on replay; snapshots are written whole or not at all.
- A reload is built and validated off to the side, outside the write lock (parse errors under
  ``max_bad_share``, a file that looks cut short or does not fit the list kind, a snapshot's checksum, the
  register date's range), then checked against the serving version under the lock (``expect_version``,
  the count not moving by more than ``max_count_change_share`` either way, a register not dated before
  the serving one, unless forced). A refusal raises a `ValidationError` (FAILED_PRECONDITION) or an
  `InvalidArgumentError` naming the check, logs the same, and leaves the serving version untouched. Peak
  memory is the old index plus the new one plus the parse buffers of one file; the old version is freed
  when the last RPC holding it returns.
- The journal is folded into a new snapshot (compaction) after ``compact_after_records`` deltas or on
  request. The snapshot it replaces is kept with its journal as the fallback until the next compaction.
- Version ids are ``<seq>-<digest>``: the list's sequence number (one per version, ordered) and the start
  of the content's SHA-256. They are written into the snapshot and the journal, never recomputed, so
  every process reading the directory names versions alike.
- Several processes: one writer per directory (`DataDirLock`); other processes may follow it read-only
  (CURRENT, then the journal's new records) - see docs/data-dir.md.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._memory import release_free_memory
from nixlookup.server.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    StoreError,
)
from nixlookup.server.index import Index
from nixlookup.server.lists import spec_of
from nixlookup.server.logs import get_logger
from nixlookup.server.store._build import build_in_child
from nixlookup.server.store._datadir import (
    CurrentPointer,
    DataDirLock,
    ListPaths,
    discover_lists,
    ensure_data_dir,
    list_paths,
)
from nixlookup.server.store._delta import check_list_key, delta_effect, valid_delta
from nixlookup.server.store._feed import ChangeFeed, ListChange
from nixlookup.server.store._history import HistoryLog, VersionEvent, VersionRecord
from nixlookup.server.store._journal import DeltaRecord, JournalWriter, fsync_directory, scan_journal
from nixlookup.server.store._recovery import (
    commit_snapshot,
    delta_source,
    make_version,
    recover_list,
)
from nixlookup.server.store._registerfile import shown_path
from nixlookup.server.store._reload import (
    BuiltVersion,
    ReloadRequest,
    build_off_to_the_side,
    check_against_serving,
)
from nixlookup.server.store._replication import CatchUp, plan_catch_up
from nixlookup.server.store._snapshot import is_snapshot
from nixlookup.server.store._state import REGISTER_KEY, ListKey, ServingState, StateHolder
from nixlookup.server.store._timings import OperationTimings
from nixlookup.server.store._types import DeltaResult, ListDescription, ReloadResult, StoreSettings

__all__ = [
    "DeltaResult",
    "ListDescription",
    "ReloadResult",
    "Store",
    "StoreSettings",
    "VersionRecord",
    "check_list_key",
]

_log = get_logger("nixlookup.store")


@dataclass
class _ListRuntime:
    """The mutable bookkeeping of one list; changed only under the holder's write lock."""

    paths: ListPaths
    pointer: CurrentPointer
    writer: JournalWriter
    history: HistoryLog
    loaded_at: datetime
    index_bytes: tuple[str, int] = ("", 0)
    """(version, Index.nbytes_total) of the last described version: measuring serialises the bitmap."""

    @property
    def head_seq(self) -> int:
        return self.writer.next_seq - 1

    def bytes_of(self, index: Index) -> int:
        version, size = self.index_bytes
        if version != index.meta.version:
            size = index.nbytes_total
            self.index_bytes = (index.meta.version, size)
        return size


def _now() -> datetime:
    return datetime.now(UTC)


def _empty_index(key: ListKey) -> Index:
    values = np.zeros(0, np.uint32) if spec_of(key[0]).dated else None
    return Index.build(np.zeros(0, np.uint64), values=values, version="", source="empty")


class Store:
    """Owns the data directory and the `StateHolder` the services read. See the module doc."""

    def __init__(self, root: Path, settings: StoreSettings, lock: DataDirLock, holder: StateHolder) -> None:
        """Use `Store.open`."""
        self.root = root
        self.settings = settings
        self.holder = holder
        self._lock = lock
        self._lists: dict[ListKey, _ListRuntime] = {}
        self._info_lock = threading.Lock()  # guards history deques against describe() while appending
        self._closed = False
        self._close_hooks: list[Callable[[], None]] = []
        self.timings = OperationTimings()
        """Durations of reloads, deltas, compactions and journal fsyncs, for the server's metrics."""
        self.feed = ChangeFeed()
        """Every acknowledged change, in order, for followers (`replication_start`) and metrics."""

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        data_dir: Path,
        *,
        settings: StoreSettings | None = None,
        initial_register: Path | None = None,
        synthetic_size: int | None = None,
        register_format: str | None = None,
        register_column: str | None = None,
    ) -> Store:
        """Open (or create and seed) the data directory and restore its last acknowledged state.

        An empty directory is seeded from `initial_register`, else from a synthetic register of
        `synthetic_size` numbers. A directory that has a real register ignores both (it is the source of
        truth); one that holds only the synthetic register (a `make serve` before the real file was at
        hand) has `initial_register` loaded over it as a validated reload.
        """
        settings = settings or StoreSettings()
        ensure_data_dir(data_dir)
        lock = DataDirLock(data_dir)
        try:
            store = cls(data_dir, settings, lock, StateHolder())
            store._clean_trash()
            store._restore_or_seed(initial_register, synthetic_size, register_format, register_column)
            if initial_register is not None and store.holder.current().register.meta.synthetic:
                _log.info("register_replacing_synthetic", path=shown_path(initial_register))
                store.reload(REGISTER_KEY, initial_register, fmt=register_format, column=register_column)
        except BaseException:
            lock.release()
            raise
        return store

    def _restore_or_seed(
        self,
        initial_register: Path | None,
        synthetic_size: int | None,
        register_format: str | None,
        register_column: str | None,
    ) -> None:
        started = time.perf_counter()
        keys = discover_lists(self.root)
        indexes: dict[ListKey, Index] = {}
        if REGISTER_KEY not in keys:
            indexes[REGISTER_KEY] = self._seed_register(
                initial_register, synthetic_size, register_format, register_column
            )
        for key in keys:
            indexes[key] = self._restore(key)
        register = indexes.pop(REGISTER_KEY)
        if initial_register is not None and REGISTER_KEY in keys and not register.meta.synthetic:
            _log.warning(
                "register_file_not_loaded_at_start",
                path=shown_path(initial_register),
                reason="the data directory holds a register and is the source of truth; "
                "send SIGHUP or use `nixlookup admin reload` to load the file",
            )
        self.holder.swap(ServingState(register=register, lists=MappingProxyType(indexes)))
        _log.info(
            "store_opened",
            data_dir=str(self.root),
            lists=len(indexes) + 1,
            register_version=register.meta.version,
            register_count=register.meta.count,
            seconds=round(time.perf_counter() - started, 3),
        )

    def _seed_register(
        self,
        initial_register: Path | None,
        synthetic_size: int | None,
        register_format: str | None,
        register_column: str | None,
    ) -> Index:
        if initial_register is not None:
            built = build_off_to_the_side(
                REGISTER_KEY,
                ReloadRequest(path=initial_register, fmt=register_format, column=register_column),
                max_bad_share=self.settings.max_bad_share,
            )
            index, source = built.index, str(initial_register)
        else:
            from nixlookup.server.store._synthetic import DEFAULT_SYNTHETIC_SIZE, generate_register

            size = synthetic_size if synthetic_size is not None else DEFAULT_SYNTHETIC_SIZE
            seed = self.settings.synthetic_seed
            source = f"synthetic:size={size},seed={seed}"
            index = Index.build(generate_register(size, seed), version="", source=source, synthetic=True)
        _log.info("store_seeding", data_dir=str(self.root), source=shown_path(source), count=index.meta.count)
        return self._create_list(REGISTER_KEY, index, event="snapshot", source=source)

    def _create_list(self, key: ListKey, index: Index, *, event: VersionEvent, source: str) -> Index:
        """Commit a brand-new list at sequence 1 and register its runtime (caller holds the write lock)."""
        paths = list_paths(self.root, key)
        paths.create()
        index = index.with_meta(version=make_version(1, index.meta.checksum))
        commit_snapshot(paths, index, 1, None)
        fsync_directory(paths.directory.parent)
        runtime = self._runtime(paths, CurrentPointer(1, None), valid_bytes=None, next_seq=2)
        with self._info_lock:
            self._lists[key] = runtime
        self._record(runtime, index, event=event, source=source)
        return index

    def _runtime(
        self, paths: ListPaths, pointer: CurrentPointer, *, valid_bytes: int | None, next_seq: int
    ) -> _ListRuntime:
        journal_path = paths.journal(pointer.seq)
        if valid_bytes is None:
            valid_bytes = scan_journal(journal_path, expect_base_seq=pointer.seq).valid_bytes
        writer = JournalWriter(journal_path, base_seq=pointer.seq, valid_bytes=valid_bytes, next_seq=next_seq)
        history = HistoryLog(paths.history_file, limit=self.settings.history_limit)
        return _ListRuntime(paths, pointer, writer, history, loaded_at=_now())

    def _restore(self, key: ListKey) -> Index:
        paths = list_paths(self.root, key)
        recovered = recover_list(paths)
        for note in recovered.notes:
            _log.error(note.event, list=_describe_key(key), path=note.path, detail=note.detail)
        scan = recovered.journal
        runtime = self._runtime(
            paths,
            recovered.pointer,
            valid_bytes=scan.valid_bytes,
            next_seq=scan.base_seq + len(scan.records) + 1,
        )
        self._lists[key] = runtime
        index = recovered.index
        if recovered.replayed:
            counts = [index.meta.count] * len(recovered.replayed)  # per-delta counts are not journalled
            with self._info_lock:
                runtime.history.merge_journal(recovered.replayed, counts, source="delta")
        self._record(runtime, index, event="replay", source=str(paths.directory))
        _log.info(
            "list_restored",
            list=_describe_key(key),
            version=index.meta.version,
            count=index.meta.count,
            replayed_deltas=len(recovered.replayed),
            repaired=recovered.repaired,
        )
        return index

    def _clean_trash(self) -> None:
        """Remove what a crash may have left: half-deleted lists and child builds' scratch snapshots."""
        for leftover in (self.root / ".trash", self.root / ".build"):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)

    # -- reads --------------------------------------------------------------------------------------------
    def keys(self) -> list[ListKey]:
        """Every list the store holds, the register first."""
        return list(self._lists)

    def history(self, key: ListKey) -> list[VersionRecord]:
        """Version events of one list, newest first."""
        runtime = self._require(key)
        with self._info_lock:
            return runtime.history.newest_first()

    def describe(self) -> list[ListDescription]:
        """Every list's serving version and history, the register first (for GetRegisterInfo)."""
        state = self.holder.current()
        described: list[ListDescription] = []
        with self._info_lock:
            runtimes = list(self._lists.items())
            for key, runtime in runtimes:
                index = state.list_for(*key)
                if index is None:
                    continue  # dropped or created between the state read and now
                meta = index.meta
                described.append(
                    ListDescription(
                        key=key,
                        version=meta.version,
                        source=meta.source,
                        count=meta.count,
                        register_date=meta.register_date,
                        loaded_at=runtime.loaded_at,
                        checksum=meta.checksum,
                        synthetic=meta.synthetic,
                        index_bytes=runtime.bytes_of(index),
                        journal_records=runtime.writer.records_written,
                        history=tuple(runtime.history.newest_first()),
                    )
                )
        return described

    def _require(self, key: ListKey) -> _ListRuntime:
        runtime = self._lists.get(key)
        if runtime is None:
            raise NotFoundError(f"no {_describe_key(key)} list")
        return runtime

    def _record(
        self,
        runtime: _ListRuntime,
        index: Index,
        *,
        event: VersionEvent,
        source: str,
        adds: int = 0,
        removes: int = 0,
    ) -> None:
        record = VersionRecord(
            seq=runtime.head_seq,
            version=index.meta.version,
            kind=event,
            source=source,
            count=index.meta.count,
            loaded_at=_now(),
            adds=adds,
            removes=removes,
        )
        with self._info_lock:
            runtime.history.append(record)
            runtime.loaded_at = record.loaded_at

    def _swap(self, key: ListKey, index: Index | None) -> None:
        self.holder.swap(self.holder.current().replacing(key, index))

    # -- reload -------------------------------------------------------------------------------------------
    def reload(
        self,
        key: ListKey,
        path: Path,
        *,
        fmt: str | None = None,
        column: str | None = None,
        until_column: str | None = None,
        force: bool = False,
        register_date: datetime | None = None,
        expect_version: str | None = None,
        source: str | None = None,
    ) -> ReloadResult:
        """Load `path` as the list's next version: validated off to the side, durable, then one swap.
        `source` names it in the history (default: the path; an upload names the sent file)."""
        self._check_open()
        key = check_list_key(*key)
        started = time.perf_counter()
        request = ReloadRequest(
            path=path, fmt=fmt, column=column, until_column=until_column, register_date=register_date
        )
        try:
            built = self._build(key, request)
            new = built.index.with_meta(source=source) if source else built.index
            with self.holder.write_lock:
                current = self.holder.current().list_for(*key)
                check_against_serving(
                    key,
                    new,
                    current,
                    force=force,
                    expect_version=expect_version,
                    max_count_change_share=self.settings.max_count_change_share,
                )
                if current is None or key not in self._lists:
                    index = self._create_list(key, new, event="reload", source=new.meta.source)
                else:
                    index = self._commit_reload(key, new, new.meta.source)
                self._swap(key, index)
                self.feed.publish(ListChange.snapshot(key, index))
        except (FailedPreconditionError, InvalidArgumentError, NotFoundError) as refused:
            _log.warning(
                "reload_refused", list=_describe_key(key), path=shown_path(path), reason=str(refused)
            )
            raise
        release_free_memory()  # the parse's temporaries; the old version's memory once its readers finish
        seconds = time.perf_counter() - started
        self.timings.record("reload", seconds)
        previous_version = "" if current is None else current.meta.version
        _log.info(
            "reload_done",
            list=_describe_key(key),
            path=shown_path(path),
            version=index.meta.version,
            previous_version=previous_version,
            count=index.meta.count,
            bad_lines=built.bad_lines,
            seconds=round(seconds, 3),
            forced=force,
        )
        return ReloadResult(
            info=self._describe_one(key),
            previous_version=previous_version,
            lines=built.lines,
            bad_lines=built.bad_lines,
            load_seconds=seconds,
        )

    def _build(self, key: ListKey, request: ReloadRequest) -> BuiltVersion:
        """Read and validate the file off to the side: big text/CSV files in a child process."""
        path = request.path
        try:
            big = path.stat().st_size >= self.settings.build_in_child_from_bytes
        except OSError:
            big = False  # let the in-process reader report the missing file
        if big and request.fmt != "snapshot" and not is_snapshot(path):
            return build_in_child(
                key,
                request,
                max_bad_share=self.settings.max_bad_share,
                scratch_dir=self.root / ".build",
                timeout=self.settings.build_timeout_seconds,
            )
        return build_off_to_the_side(key, request, max_bad_share=self.settings.max_bad_share)

    def _commit_reload(self, key: ListKey, index: Index, source: str) -> Index:
        runtime = self._lists[key]
        seq = runtime.head_seq + 1
        index = index.with_meta(version=make_version(seq, index.meta.checksum))
        try:
            commit_snapshot(runtime.paths, index, seq, runtime.pointer.seq)
        except BaseException:
            runtime.paths.remove_files([seq])  # never committed: CURRENT still names the old snapshot
            raise
        self._switch_runtime(runtime, CurrentPointer(seq, runtime.pointer.seq))
        self._record(runtime, index, event="reload", source=source)
        return index

    def _switch_runtime(self, runtime: _ListRuntime, pointer: CurrentPointer) -> None:
        """After CURRENT moved to `pointer`: append to its journal, drop files older than the fallback."""
        runtime.writer.close()
        journal_path = runtime.paths.journal(pointer.seq)
        runtime.writer = JournalWriter(
            journal_path,
            base_seq=pointer.seq,
            valid_bytes=journal_path.stat().st_size,
            next_seq=pointer.seq + 1,
        )
        runtime.pointer = pointer
        oldest_kept = pointer.previous_seq if pointer.previous_seq is not None else pointer.seq
        runtime.paths.remove_files([seq for seq in runtime.paths.sequences() if seq < oldest_kept])

    def _describe_one(self, key: ListKey) -> ListDescription:
        for description in self.describe():
            if description.key == key:
                return description
        raise NotFoundError(f"no {_describe_key(key)} list")

    # -- deltas -------------------------------------------------------------------------------------------
    def apply_delta(
        self,
        key: ListKey,
        *,
        add: NDArray[np.uint64] | None = None,
        add_until_days: NDArray[np.uint32] | None = None,
        remove: NDArray[np.uint64] | None = None,
        add_texts: Sequence[str] = (),
        remove_texts: Sequence[str] = (),
        expect_version: str | None = None,
    ) -> DeltaResult:
        """Add and remove numbers; returns once the delta is durable (journalled and fsync'd) and serving.

        `add_until_days` (dated lists only) aligns with the adds: first the packed keys, then the texts.
        Invalid numbers are counted in the result and not applied.
        """
        self._check_open()
        started = time.perf_counter()
        key = check_list_key(*key)
        add_keys, add_until, remove_keys, invalid = valid_delta(
            key,
            add=add,
            add_until_days=add_until_days,
            remove=remove,
            add_texts=add_texts,
            remove_texts=remove_texts,
        )
        with self.holder.write_lock:
            current = self.holder.current().list_for(*key)
            if expect_version and (current is None or current.meta.version != expect_version):
                serving = "no list" if current is None else f"version {current.meta.version}"
                raise FailedPreconditionError(
                    f"expect_version {expect_version} does not match: {_describe_key(key)} is at {serving}"
                )
            base = current if current is not None else _empty_index(key)
            added, removed = delta_effect(base, add_keys, remove_keys)
            new = base.with_delta(
                add_keys,
                remove_keys,
                add_values=add_until,
                version="",
                source=delta_source(base.meta.source) if current is not None else "delta",
            )
            if current is None or key not in self._lists:
                index = self._create_list(key, new, event="delta", source="delta")
                change = ListChange.snapshot(key, index)
            else:
                index, record = self._journal_delta(
                    key,
                    base=base,
                    new=new,
                    add=add_keys,
                    add_until=add_until,
                    remove=remove_keys,
                    added=added,
                    removed=removed,
                )
                change = ListChange.delta(key, record, index)
            self._swap(key, index)
            self.feed.publish(change)
            runtime = self._lists[key]
            if (
                runtime.writer.records_written >= self.settings.compact_after_records
                or runtime.writer.size_bytes >= self.settings.compact_after_bytes
            ):
                self._compact_locked(key, reason="threshold")
        self.timings.record("delta", time.perf_counter() - started)
        _log.info(
            "delta_applied",
            list=_describe_key(key),
            version=index.meta.version,
            added=added,
            removed=removed,
            invalid=invalid,
            count=index.meta.count,
        )
        return DeltaResult(
            key=key,
            version=index.meta.version,
            previous_version="" if current is None else current.meta.version,
            added=added,
            removed=removed,
            count=index.meta.count,
            invalid=invalid,
        )

    def _journal_delta(
        self,
        key: ListKey,
        *,
        base: Index,
        new: Index,
        add: NDArray[np.uint64],
        add_until: NDArray[np.uint32] | None,
        remove: NDArray[np.uint64],
        added: int,
        removed: int,
    ) -> tuple[Index, DeltaRecord]:
        runtime = self._lists[key]
        seq = runtime.writer.next_seq
        index = new.with_meta(version=make_version(seq, new.meta.checksum))
        record = DeltaRecord(
            seq=seq,
            version=index.meta.version,
            previous_version=base.meta.version,
            written_at=time.time(),
            add=add,
            remove=remove,
            add_until_days=add_until,
        )
        runtime.writer.append(record)  # durable from here on: fdatasync returned
        self.timings.record("journal_fsync", runtime.writer.last_sync_seconds)
        self._record(runtime, index, event="delta", source="delta", adds=added, removes=removed)
        return index, record

    # -- compaction and drop ------------------------------------------------------------------------------
    def compact(self, key: ListKey | None = None) -> list[ListKey]:
        """Fold journals into new snapshots (one list, or every list with journalled deltas)."""
        self._check_open()
        compacted: list[ListKey] = []
        with self.holder.write_lock:
            keys = [check_list_key(*key)] if key is not None else list(self._lists)
            for each in keys:
                self._require(each)
                if self._compact_locked(each, reason="request"):
                    compacted.append(each)
        return compacted

    def _compact_locked(self, key: ListKey, *, reason: str) -> bool:
        runtime = self._lists[key]
        if runtime.writer.records_written == 0:
            return False
        index = self.holder.current().list_for(*key)
        if index is None:
            return False
        started = time.perf_counter()
        seq = runtime.head_seq
        records = runtime.writer.records_written
        try:
            commit_snapshot(runtime.paths, index, seq, runtime.pointer.seq)
        except BaseException:
            runtime.paths.remove_files([seq])
            raise
        self._switch_runtime(runtime, CurrentPointer(seq, runtime.pointer.seq))
        self._record(runtime, index, event="compact", source=f"{records} deltas")
        with self._info_lock:
            runtime.history.rewrite()
        self.feed.publish(ListChange.compact(key, index.meta.version))
        self.timings.record("compact", time.perf_counter() - started)
        _log.info(
            "compacted",
            list=_describe_key(key),
            version=index.meta.version,
            records=records,
            reason=reason,
            seconds=round(time.perf_counter() - started, 3),
        )
        return True

    def drop(self, key: ListKey) -> str:
        """Remove a caller's list (durably: its directory is moved out, then deleted); returns its version."""
        self._check_open()
        key = check_list_key(*key)
        if key == REGISTER_KEY:
            raise FailedPreconditionError("the register cannot be dropped; reload it instead")
        with self.holder.write_lock:
            runtime = self._require(key)
            index = self.holder.current().list_for(*key)
            last_version = index.meta.version if index is not None else ""
            trash = self.root / ".trash"
            trash.mkdir(exist_ok=True)
            target = trash / f"{runtime.paths.directory.name}-{time.time_ns()}"
            runtime.writer.close()
            os.replace(runtime.paths.directory, target)
            fsync_directory(runtime.paths.directory.parent)
            with self._info_lock:
                del self._lists[key]
            self._swap(key, None)
            self.feed.publish(ListChange.drop(key, last_version))
        shutil.rmtree(target, ignore_errors=True)
        _log.info("list_dropped", list=_describe_key(key), version=last_version)
        return last_version

    # -- replication --------------------------------------------------------------------------------------
    def replication_start(self, have: Mapping[ListKey, str]) -> CatchUp:
        """A follower's start: the changes from the versions it holds (`have`) to the serving state, and a
        subscription to every change after that state (see `_replication`)."""
        self._check_open()
        with self.holder.write_lock:
            state = self.holder.current()
            subscription = self.feed.subscribe()
            changes, resumed, snapshots = plan_catch_up(state, have, self._journal_tail)
            position = self.feed.position
        return CatchUp(state, tuple(changes), subscription, position, resumed, snapshots)

    def _journal_tail(self, key: ListKey) -> tuple[DeltaRecord, ...]:
        runtime = self._lists.get(key)
        if runtime is None or runtime.writer.records_written == 0:
            return ()
        scan = scan_journal(runtime.paths.journal(runtime.pointer.seq), expect_base_seq=runtime.pointer.seq)
        return scan.records

    # -- lifecycle ----------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def on_close(self, hook: Callable[[], None]) -> None:
        """Call `hook` first thing in `close` (e.g. stop a thread that reloads through this store)."""
        self._close_hooks.append(hook)

    def close(self) -> None:
        """Close journals and release the directory lock (the state stays readable)."""
        for hook in self._close_hooks:
            hook()
        self._close_hooks.clear()
        with self.holder.write_lock:
            if self._closed:
                return
            self._closed = True
            for runtime in self._lists.values():
                runtime.writer.close()
            self._lock.release()


def _describe_key(key: ListKey) -> str:
    kind, caller = key
    return kind.slug if not caller else f"{kind.slug}/{caller}"
