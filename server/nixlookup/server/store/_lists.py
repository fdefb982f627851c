"""Every list's bookkeeping on disk: its paths, CURRENT pointer, journal writer and history (`ListRuntime`).

Theory of operation:
- The `Store` decides when a list changes (validated, under ``holder.write_lock``, before its one swap);
  `ListTable` does the durable step each change needs and keeps that list's bookkeeping true after it.
  Every method that changes a list is called with the write lock held, and none of them swaps the serving
  state or publishes to the change feed: that is the Store's, once the durable step has returned.
- The durable steps, each returning only once it is acknowledged on disk:
  - `create`: a brand-new list, its snapshot 1 committed (CURRENT written, directories fsync'd);
  - `commit_reload` / `commit_compaction`: a snapshot at the next sequence (a new file) or at the head
    sequence (the journal folded in), CURRENT switched to it and a fresh journal opened behind it; files
    older than the fallback are removed. One that fails removes what it wrote: CURRENT still names the
    old snapshot, so nothing changed;
  - `commit_delta`: a delta record appended to the journal and fdatasync'd;
  - `remove`: the list's directory moved into ``.trash`` and its parent fsync'd (deleted afterwards).
- Version ids (``<seq>-<digest>``, `make_version`) are given here, where the sequence numbers live.
- `restore` brings one list back at open (`recover_list`) and logs what recovery had to do.
- `describe` and `history` are reads: they take ``_info_lock``, which guards the runtimes and their
  history deques against a writer appending; they never wait for the write lock.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import NotFoundError
from nixlookup.server.index import Index
from nixlookup.server.logs import get_logger
from nixlookup.server.store._datadir import CurrentPointer, ListPaths, list_paths
from nixlookup.server.store._history import HistoryLog, VersionEvent, VersionRecord
from nixlookup.server.store._journal import DeltaRecord, JournalWriter, fsync_directory, scan_journal
from nixlookup.server.store._recovery import commit_snapshot, make_version, recover_list
from nixlookup.server.store._state import ListKey, ServingState, list_name
from nixlookup.server.store._types import ListDescription

__all__ = ["ListRuntime", "ListTable"]

_log = get_logger("nixlookup.store")


@dataclass
class ListRuntime:
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


class ListTable:
    """The runtimes of every list the store holds, the register first. See the module doc."""

    def __init__(self, root: Path, *, history_limit: int) -> None:
        self._root = root
        self._history_limit = history_limit
        self._runtimes: dict[ListKey, ListRuntime] = {}
        self._info_lock = threading.Lock()  # guards history deques against describe() while appending

    # -- reads --------------------------------------------------------------------------------------------
    def keys(self) -> list[ListKey]:
        return list(self._runtimes)

    def __contains__(self, key: object) -> bool:
        return key in self._runtimes

    def require(self, key: ListKey) -> ListRuntime:
        runtime = self._runtimes.get(key)
        if runtime is None:
            raise NotFoundError(f"no {list_name(key)} list")
        return runtime

    def history(self, key: ListKey) -> list[VersionRecord]:
        runtime = self.require(key)
        with self._info_lock:
            return runtime.history.newest_first()

    def describe(self, state: ServingState) -> list[ListDescription]:
        """Every list `state` serves, with its history, the register first."""
        described: list[ListDescription] = []
        with self._info_lock:
            for key, runtime in list(self._runtimes.items()):
                index = state.list_for(*key)
                if index is None:
                    continue  # dropped or created between the state read and now
                described.append(
                    ListDescription.of(
                        key,
                        index,
                        loaded_at=runtime.loaded_at,
                        index_bytes=runtime.bytes_of(index),
                        journal_records=runtime.writer.records_written,
                        history=tuple(runtime.history.newest_first()),
                    )
                )
        return described

    def journal_tail(self, key: ListKey) -> tuple[DeltaRecord, ...]:
        """The records of the list's current journal, read from the file (none for a list it lacks)."""
        runtime = self._runtimes.get(key)
        if runtime is None or runtime.writer.records_written == 0:
            return ()
        scan = scan_journal(runtime.paths.journal(runtime.pointer.seq), expect_base_seq=runtime.pointer.seq)
        return scan.records

    # -- opening ------------------------------------------------------------------------------------------
    def restore(self, key: ListKey) -> Index:
        """Bring one list back from disk: exactly its last acknowledged state (`recover_list`)."""
        paths = list_paths(self._root, key)
        recovered = recover_list(paths)
        for note in recovered.notes:
            _log.error(note.event, list=list_name(key), path=note.path, detail=note.detail)
        scan = recovered.journal
        runtime = self._runtime(
            paths,
            recovered.pointer,
            valid_bytes=scan.valid_bytes,
            next_seq=scan.base_seq + len(scan.records) + 1,
        )
        self._runtimes[key] = runtime
        index = recovered.index
        if recovered.replayed:
            counts = [index.meta.count] * len(recovered.replayed)  # per-delta counts are not journalled
            with self._info_lock:
                runtime.history.merge_journal(recovered.replayed, counts, source="delta")
        self._record(runtime, index, event="replay", source=str(paths.directory))
        _log.info(
            "list_restored",
            list=list_name(key),
            version=index.meta.version,
            count=index.meta.count,
            replayed_deltas=len(recovered.replayed),
            repaired=recovered.repaired,
        )
        return index

    def _runtime(
        self, paths: ListPaths, pointer: CurrentPointer, *, valid_bytes: int | None, next_seq: int
    ) -> ListRuntime:
        journal_path = paths.journal(pointer.seq)
        if valid_bytes is None:
            valid_bytes = scan_journal(journal_path, expect_base_seq=pointer.seq).valid_bytes
        writer = JournalWriter(journal_path, base_seq=pointer.seq, valid_bytes=valid_bytes, next_seq=next_seq)
        history = HistoryLog(paths.history_file, limit=self._history_limit)
        return ListRuntime(paths, pointer, writer, history, loaded_at=_now())

    # -- durable steps (the caller holds the write lock) ---------------------------------------------------
    def create(self, key: ListKey, index: Index, *, event: VersionEvent, source: str) -> Index:
        """Commit a brand-new list at sequence 1; returns `index` with its version id."""
        paths = list_paths(self._root, key)
        paths.create()
        index = index.with_meta(version=make_version(1, index.meta.checksum))
        commit_snapshot(paths, index, 1, None)
        fsync_directory(paths.directory.parent)
        runtime = self._runtime(paths, CurrentPointer(1, None), valid_bytes=None, next_seq=2)
        with self._info_lock:
            self._runtimes[key] = runtime
        self._record(runtime, index, event=event, source=source)
        return index

    def commit_reload(self, key: ListKey, index: Index, *, source: str) -> Index:
        """Commit `index` as the list's next snapshot; returns it with its version id."""
        runtime = self._runtimes[key]
        seq = runtime.head_seq + 1
        index = index.with_meta(version=make_version(seq, index.meta.checksum))
        self._commit_snapshot(runtime, index, seq)
        self._record(runtime, index, event="reload", source=source)
        return index

    def commit_compaction(self, key: ListKey, index: Index) -> int:
        """Fold the journal: `index` (the serving version, at the head sequence) becomes the snapshot that
        the next journal starts from, the one it replaces the fallback. Returns the records folded (0:
        nothing to fold, nothing written)."""
        runtime = self._runtimes[key]
        records = runtime.writer.records_written
        if records == 0:
            return 0
        self._commit_snapshot(runtime, index, runtime.head_seq)
        self._record(runtime, index, event="compact", source=f"{records} deltas")
        with self._info_lock:
            runtime.history.rewrite()
        return records

    def commit_delta(
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
        """Journal the delta from `base` to `new` (durable once this returns: fdatasync'd); returns `new`
        with its version id, and the record followers replay."""
        runtime = self._runtimes[key]
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
        self._record(runtime, index, event="delta", source="delta", adds=added, removes=removed)
        return index, record

    def remove(self, key: ListKey) -> Path:
        """Move the list's directory into ``.trash`` (durably) and forget it; returns where it went, for
        the caller to delete once it has let go of the write lock."""
        runtime = self.require(key)
        trash = self._root / ".trash"
        trash.mkdir(exist_ok=True)
        target = trash / f"{runtime.paths.directory.name}-{time.time_ns()}"
        runtime.writer.close()
        os.replace(runtime.paths.directory, target)
        fsync_directory(runtime.paths.directory.parent)
        with self._info_lock:
            del self._runtimes[key]
        return target

    def close(self) -> None:
        for runtime in self._runtimes.values():
            runtime.writer.close()

    def _commit_snapshot(self, runtime: ListRuntime, index: Index, seq: int) -> None:
        """Write snapshot `seq` and move CURRENT to it (the commit point); then journal behind it."""
        try:
            commit_snapshot(runtime.paths, index, seq, runtime.pointer.seq)
        except BaseException:
            runtime.paths.remove_files([seq])  # never committed: CURRENT still names the old snapshot
            raise
        pointer = CurrentPointer(seq, runtime.pointer.seq)
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

    def _record(
        self,
        runtime: ListRuntime,
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
