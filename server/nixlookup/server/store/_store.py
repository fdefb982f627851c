"""The store: every list's versions on disk and in memory, hot reloads and durable deltas.

Theory of operation:
- The data directory is the source of truth (layout and file protocol: `datadir`, docs/data-dir.md). For
  each list (the register, and each caller's opt-out / relationship / consent list) it holds the current
  snapshot, the journal of deltas since it, the previous snapshot with its journal (the fallback), a CURRENT
  pointer (the commit point) and a history file. On open the store serves exactly the last acknowledged
  state: current snapshot + journal replayed (`_opening`, `_recovery`).
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
- `Store` is the sequence of each operation (check, build, lock, durable step, swap, publish, log); the
  steps are elsewhere: opening in `_opening`, each list's durable steps and bookkeeping in `_lists`,
  building and validating a file in `_reload` (`_build` for a child process), a delta's input in
  `_delta`, a follower's catch-up in `_replication`.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

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
from nixlookup.server.logs import get_logger
from nixlookup.server.store._build import build_in_child
from nixlookup.server.store._datadir import DataDirLock, ensure_data_dir
from nixlookup.server.store._delta import check_list_key, delta_effect, empty_index, valid_delta
from nixlookup.server.store._feed import ChangeFeed, ListChange
from nixlookup.server.store._history import VersionRecord
from nixlookup.server.store._lists import ListTable
from nixlookup.server.store._opening import clean_leftovers, open_state
from nixlookup.server.store._recovery import delta_source
from nixlookup.server.store._registerfile import shown_path
from nixlookup.server.store._reload import (
    BuiltVersion,
    ReloadRequest,
    build_off_to_the_side,
    check_against_serving,
)
from nixlookup.server.store._replication import CatchUp, plan_catch_up
from nixlookup.server.store._snapshot import is_snapshot
from nixlookup.server.store._state import REGISTER_KEY, ListKey, StateHolder, list_name
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


class Store:
    """Owns the data directory and the `StateHolder` the services read. See the module doc."""

    def __init__(self, root: Path, settings: StoreSettings, lock: DataDirLock, holder: StateHolder) -> None:
        """Use `Store.open`."""
        self.root = root
        self.settings = settings
        self.holder = holder
        self._lock = lock
        self._lists = ListTable(root, history_limit=settings.history_limit)
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
    ) -> Store:
        """Open (or create and seed) the data directory and restore its last acknowledged state.

        An empty directory is seeded from `initial_register`, else from a synthetic register of
        `synthetic_size` numbers. A directory that has a real register ignores both (it is the source of
        truth); one that holds only the synthetic register (a `make serve` before the real file was at
        hand) has `initial_register` loaded over it as a validated reload (`_opening`).
        """
        settings = settings or StoreSettings()
        ensure_data_dir(data_dir)
        lock = DataDirLock(data_dir)
        try:
            store = cls(data_dir, settings, lock, StateHolder())
            clean_leftovers(data_dir)
            store.holder.swap(
                open_state(
                    data_dir,
                    settings,
                    store._lists,
                    initial_register=initial_register,
                    synthetic_size=synthetic_size,
                )
            )
            if initial_register is not None and store.holder.current().register.meta.synthetic:
                _log.info("register_replacing_synthetic", path=shown_path(initial_register))
                store.reload(REGISTER_KEY, initial_register)
        except BaseException:
            lock.release()
            raise
        return store

    def create_list(self, key: ListKey, index: Index) -> Index:
        """Serve `index` as the first version of a list the store does not hold yet, with no file to read
        (a register built in memory, such as a synthetic one): committed at sequence 1 (snapshot, CURRENT
        and directory fsync'd), then swapped in and published to followers, as a reload that creates a
        list is. Its history names the event ``snapshot`` and the index's own source. Returns the version
        served (its version id given). `FailedPreconditionError` when the list exists: its next version
        is a `reload` or an `apply_delta`."""
        self._check_open()
        key = check_list_key(*key)
        with self.holder.write_lock:
            if key in self._lists or self.holder.current().list_for(*key) is not None:
                raise FailedPreconditionError(f"the {list_name(key)} list exists already; reload it instead")
            created = self._lists.create(key, index, event="snapshot", source=index.meta.source)
            self._serve(key, created, ListChange.snapshot(key, created))
        return created

    # -- reads --------------------------------------------------------------------------------------------
    def keys(self) -> list[ListKey]:
        """Every list the store holds, the register first."""
        return self._lists.keys()

    def history(self, key: ListKey) -> list[VersionRecord]:
        """Version events of one list, newest first."""
        return self._lists.history(key)

    def describe(self) -> list[ListDescription]:
        """Every list's serving version and history, the register first (for GetRegisterInfo)."""
        return self._lists.describe(self.holder.current())

    def _describe_one(self, key: ListKey) -> ListDescription:
        for description in self.describe():
            if description.key == key:
                return description
        raise NotFoundError(f"no {list_name(key)} list")

    def _serve(self, key: ListKey, index: Index | None, change: ListChange) -> None:
        """After the durable step: the one swap that makes `index` serve, then tell followers (write lock)."""
        self.holder.swap(self.holder.current().replacing(key, index))
        self.feed.publish(change)

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
                    index = self._lists.create(key, new, event="reload", source=new.meta.source)
                else:
                    index = self._lists.commit_reload(key, new, source=new.meta.source)
                self._serve(key, index, ListChange.snapshot(key, index))
        except (FailedPreconditionError, InvalidArgumentError, NotFoundError) as refused:
            _log.warning("reload_refused", list=list_name(key), path=shown_path(path), reason=str(refused))
            raise
        release_free_memory()  # the parse's temporaries; the old version's memory once its readers finish
        seconds = time.perf_counter() - started
        self.timings.record("reload", seconds)
        previous_version = "" if current is None else current.meta.version
        _log.info(
            "reload_done",
            list=list_name(key),
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
                    f"expect_version {expect_version} does not match: {list_name(key)} is at {serving}"
                )
            base = current if current is not None else empty_index(key)
            added, removed = delta_effect(base, add_keys, remove_keys)
            new = base.with_delta(
                add_keys,
                remove_keys,
                add_values=add_until,
                version="",
                source=delta_source(base.meta.source) if current is not None else "delta",
            )
            if current is None or key not in self._lists:
                index = self._lists.create(key, new, event="delta", source="delta")
                change = ListChange.snapshot(key, index)
            else:
                index, record = self._lists.commit_delta(
                    key,
                    base=base,
                    new=new,
                    add=add_keys,
                    add_until=add_until,
                    remove=remove_keys,
                    added=added,
                    removed=removed,
                )
                self.timings.record("journal_fsync", self._lists.require(key).writer.last_sync_seconds)
                change = ListChange.delta(key, record, index)
            self._serve(key, index, change)
            writer = self._lists.require(key).writer
            if (
                writer.records_written >= self.settings.compact_after_records
                or writer.size_bytes >= self.settings.compact_after_bytes
            ):
                self._compact_locked(key, reason="threshold")
        self.timings.record("delta", time.perf_counter() - started)
        _log.info(
            "delta_applied",
            list=list_name(key),
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

    # -- compaction and drop ------------------------------------------------------------------------------
    def compact(self, key: ListKey | None = None) -> list[ListKey]:
        """Fold journals into new snapshots (one list, or every list with journalled deltas)."""
        self._check_open()
        compacted: list[ListKey] = []
        with self.holder.write_lock:
            keys = [check_list_key(*key)] if key is not None else self._lists.keys()
            for each in keys:
                self._lists.require(each)
                if self._compact_locked(each, reason="request"):
                    compacted.append(each)
        return compacted

    def _compact_locked(self, key: ListKey, *, reason: str) -> bool:
        index = self.holder.current().list_for(*key)
        if index is None:
            return False
        started = time.perf_counter()
        records = self._lists.commit_compaction(key, index)
        if records == 0:
            return False
        self.feed.publish(ListChange.compact(key, index.meta.version))
        self.timings.record("compact", time.perf_counter() - started)
        _log.info(
            "compacted",
            list=list_name(key),
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
            self._lists.require(key)
            index = self.holder.current().list_for(*key)
            last_version = index.meta.version if index is not None else ""
            trash = self._lists.remove(key)
            self._serve(key, None, ListChange.drop(key, last_version))
        shutil.rmtree(trash, ignore_errors=True)
        _log.info("list_dropped", list=list_name(key), version=last_version)
        return last_version

    # -- replication --------------------------------------------------------------------------------------
    def replication_start(self, have: Mapping[ListKey, str]) -> CatchUp:
        """A follower's start: the changes from the versions it holds (`have`) to the serving state, and a
        subscription to every change after that state (see `_replication`)."""
        self._check_open()
        with self.holder.write_lock:
            state = self.holder.current()
            subscription = self.feed.subscribe()
            changes, resumed, snapshots = plan_catch_up(state, have, self._lists.journal_tail)
            position = self.feed.position
        return CatchUp(state, tuple(changes), subscription, position, resumed, snapshots)

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
            self._lists.close()
            self._lock.release()
