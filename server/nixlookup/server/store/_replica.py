"""A follower's copy of the writer's lists: changes are buffered and swapped in only at sync points.

Theory of operation:
- A follower serves from a `StateHolder` like the writer, but its states come from the writer's change
  feed instead of a data directory. Changes arrive whole (the wire layer joins the parts of a big one)
  and are buffered with `add`; `sync` applies every buffered change to a working copy of the lists and
  swaps the result in with ONE `holder.swap`. The writer sends a sync point only where the changes before
  it end in a state it served, so the follower never serves a mixture of two writer states, nor a
  version the writer did not acknowledge (the feed holds only acknowledged changes).
- Every change is checked before it can serve: a delta must apply to the version the follower holds
  (``previous_version``), and the content it yields must have the digest its version id names
  (``<seq>-<digest>``, as `recover_list` checks a replay) and the writer's count and checksum when sent.
  A change that fails raises `ReplicaDivergedError`: the buffered changes are discarded, the served state
  stays as it was, and the follower forgets that list's version so the next stream resends it whole.
- `versions()` is what the follower holds, for a resume (``ReplicateRequest.have``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import NixlookupError
from nixlookup.server.index import Index
from nixlookup.server.store._recovery import delta_source, make_version, version_seq
from nixlookup.server.store._state import REGISTER_KEY, ListKey, ServingState, StateHolder
from nixlookup.server.store._types import ListDescription
from nixlookup.v1.vocabulary import ChangeKind

__all__ = ["ReceivedChange", "Replica", "ReplicaDivergedError", "SyncResult"]


class ReplicaDivergedError(NixlookupError):
    """A change does not apply to what the follower holds, or yields other content than the writer's."""

    def __init__(self, key: ListKey, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True, slots=True)
class ReceivedChange:
    """One whole change as a follower received it (all parts joined)."""

    key: ListKey
    kind: ChangeKind
    version: str
    previous_version: str = ""
    keys: NDArray[np.uint64] | None = None
    """SNAPSHOT: every key of the list; DELTA: the keys added."""
    values: NDArray[np.uint32] | None = None
    """Dated lists: end days aligned with `keys`."""
    remove: NDArray[np.uint64] | None = None
    count: int | None = None
    checksum: str = ""
    source: str = ""
    register_date: datetime | None = None
    synthetic: bool = False
    acknowledged_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync point changed."""

    state: ServingState
    changes: int
    oldest_acknowledged_at: float
    """time.time() on the writer of the oldest change applied (0 when none): how stale the follower was."""


class Replica:
    """Buffers received changes and swaps them in at sync points; see the module doc."""

    def __init__(self, holder: StateHolder | None = None) -> None:
        self.holder = holder or StateHolder()
        self._pending: list[ReceivedChange] = []
        self._forgotten: set[ListKey] = set()
        self._loaded_at: dict[ListKey, datetime] = {}
        self._index_bytes: dict[tuple[ListKey, str], int] = {}
        self._lock = threading.Lock()
        self.synced_once = threading.Event()
        """Set at the first sync point: from then on the follower has a whole writer state to serve."""

    def versions(self) -> dict[ListKey, str]:
        """The version of every list the follower serves (minus the ones it must be resent)."""
        if not self.holder.loaded:
            return {}
        state = self.holder.current()
        held = {REGISTER_KEY: state.register.meta.version}
        held.update({key: index.meta.version for key, index in state.lists.items()})
        with self._lock:
            for key in self._forgotten:
                held.pop(key, None)
        return held

    def begin_stream(self) -> None:
        """A new stream starts from what is served: drop changes buffered on a stream that broke."""
        with self._lock:
            self._pending.clear()

    def add(self, change: ReceivedChange) -> None:
        with self._lock:
            self._pending.append(change)

    def sync(self) -> SyncResult:
        """Apply the buffered changes and swap the result in at once (raises `ReplicaDivergedError`)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            if not self.holder.loaded:
                raise ReplicaDivergedError(REGISTER_KEY, "the first sync point came before any snapshot")
            self.synced_once.set()
            return SyncResult(self.holder.current(), 0, 0.0)
        with self.holder.write_lock:
            base = self.holder.current() if self.holder.loaded else None
            lists: dict[ListKey, Index] = {}
            if base is not None:
                lists = {REGISTER_KEY: base.register, **base.lists}
            for change in pending:
                try:
                    self._apply(lists, change)
                except ReplicaDivergedError as diverged:
                    with self._lock:
                        self._forgotten.add(diverged.key)
                    raise
            register = lists.pop(REGISTER_KEY, None)
            if register is None:
                raise ReplicaDivergedError(REGISTER_KEY, "the writer's changes leave no register to serve")
            generation = base.generation + 1 if base is not None else 0
            state = ServingState(register=register, lists=MappingProxyType(lists), generation=generation)
            self.holder.swap(state)
        applied_at = datetime.now(UTC)
        with self._lock:
            self._forgotten.difference_update(change.key for change in pending)
            self._loaded_at.update((change.key, applied_at) for change in pending)
        self.synced_once.set()
        oldest = min(change.acknowledged_at for change in pending)
        return SyncResult(state, len(pending), oldest)

    def describe(self) -> list[ListDescription]:
        """What GetRegisterInfo shows on a follower: every served list (no history: the writer keeps it)."""
        if not self.holder.loaded:
            return []
        state = self.holder.current()
        described = []
        for key, index in {REGISTER_KEY: state.register, **state.lists}.items():
            meta = index.meta
            with self._lock:
                size = self._index_bytes.get((key, meta.version))
                loaded_at = self._loaded_at.get(key, meta.created_at)
            if size is None:
                size = index.nbytes_total  # serialises the bitmap: once per version, not per call
                with self._lock:
                    self._index_bytes = {k: v for k, v in self._index_bytes.items() if k[0] != key}
                    self._index_bytes[(key, meta.version)] = size
            described.append(ListDescription.of(key, index, loaded_at=loaded_at, index_bytes=size))
        return described

    @staticmethod
    def _apply(lists: dict[ListKey, Index], change: ReceivedChange) -> None:
        key = change.key
        if change.kind is ChangeKind.DROP:
            lists.pop(key, None)
            return
        if change.kind is ChangeKind.COMPACT:
            held = lists.get(key)
            if held is None or held.meta.version != change.version:
                raise ReplicaDivergedError(key, f"compaction of version {change.version} not held here")
            return
        if change.kind is ChangeKind.SNAPSHOT:
            index = Index.build(
                change.keys if change.keys is not None else np.zeros(0, np.uint64),
                values=change.values,
                version=change.version,
                source=change.source,
                register_date=change.register_date,
                synthetic=change.synthetic,
                created_at=datetime.fromtimestamp(change.acknowledged_at or time.time(), UTC),
            )
        elif change.kind is ChangeKind.DELTA:
            base = lists.get(key)
            if base is None or base.meta.version != change.previous_version:
                held_version = "nothing" if base is None else base.meta.version
                raise ReplicaDivergedError(
                    key,
                    f"delta {change.version} applies to {change.previous_version}; held here: {held_version}",
                )
            empty = np.zeros(0, np.uint64)
            index = base.with_delta(
                change.keys if change.keys is not None else empty,
                change.remove if change.remove is not None else empty,
                add_values=change.values,
                version=change.version,
                source=change.source or delta_source(base.meta.source),
            )
        else:
            raise ReplicaDivergedError(key, f"unknown change kind {change.kind}")
        _verify(key, index, change)
        lists[key] = index


def _verify(key: ListKey, index: Index, change: ReceivedChange) -> None:
    meta = index.meta
    seq = version_seq(change.version)
    if seq is None:
        raise ReplicaDivergedError(key, f"version {change.version!r} is not a data directory's version id")
    expected = make_version(seq, meta.checksum)
    if expected != change.version:
        raise ReplicaDivergedError(
            key, f"content received for version {change.version} has digest version {expected}"
        )
    if change.checksum and change.checksum != meta.checksum:
        raise ReplicaDivergedError(key, f"version {change.version}: checksum differs from the writer's")
    if change.count is not None and change.count != meta.count:
        raise ReplicaDivergedError(
            key, f"version {change.version}: {meta.count} keys here, {change.count} on the writer"
        )
