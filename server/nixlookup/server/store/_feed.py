"""The change feed: every acknowledged change of the store, in order, fanned out to followers.

Theory of operation:
- The store publishes one `ListChange` per change it acknowledged (a delta, a reload, a list created,
  a compaction, a drop), under its write lock and after the change is durable and serving, so the feed's
  order is the order the writer's states followed each other, and nothing unacknowledged is ever in it.
  Each change carries the version it produced (``<seq>-<digest>``), the durable id every process names it by.
- A follower subscribes under the same write lock (`Store.replication_start`), together with a plan to
  bring it from what it holds to the state of that moment; from then on its `Subscription` queues every
  change published after that state. Nothing is lost between the plan and the queue, nothing is doubled.
- Publishing never waits for a follower: it appends to each subscription's queue and wakes it. A follower
  that falls more than ``max_pending`` changes behind (it stopped reading, its link is too slow) is cut
  off (`Subscription.overflowed`); it reconnects and resumes from the versions it holds, which costs the
  writer a journal read or a snapshot, never unbounded memory.
- Waiting is model-neutral: `Subscription.wait` blocks a thread (a sync server); `on_ready` registers a
  callback run in the publisher's thread (an asyncio server hands it to its loop with
  ``call_soon_threadsafe``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nixlookup.server.index import Index
from nixlookup.server.store._journal import DeltaRecord
from nixlookup.server.store._state import ListKey
from nixlookup.v1.vocabulary import ChangeKind

__all__ = ["DEFAULT_MAX_PENDING", "ChangeFeed", "ChangeKind", "ListChange", "Subscription"]

DEFAULT_MAX_PENDING = 10_000
"""Changes a follower may have queued before it is cut off (and must resume): ten minutes of deltas at
the benchmark's 100 deltas/s on a follower that stopped reading entirely, at a few KB each."""


@dataclass(frozen=True, slots=True)
class ListChange:
    """One acknowledged change of one list, as the feed carries it."""

    key: ListKey
    kind: ChangeKind
    version: str
    """The list's version after the change (for DROP: the last version it had)."""
    acknowledged_at: float
    """time.time() when the change was durable and serving on the writer."""
    index: Index | None = None
    """SNAPSHOT: the list's whole content at `version`; DELTA: the content it produced, when known (a
    delta resent from the journal carries only its record)."""
    record: DeltaRecord | None = None
    """DELTA: the journal record (adds, end days, removes, previous version)."""
    position: int = 0
    """The feed's count of changes when this one was published (set by `ChangeFeed.publish`)."""

    @classmethod
    def snapshot(cls, key: ListKey, index: Index) -> ListChange:
        return cls(key, ChangeKind.SNAPSHOT, index.meta.version, time.time(), index=index)

    @classmethod
    def delta(cls, key: ListKey, record: DeltaRecord, index: Index) -> ListChange:
        return cls(key, ChangeKind.DELTA, record.version, time.time(), index=index, record=record)

    @classmethod
    def compact(cls, key: ListKey, version: str) -> ListChange:
        return cls(key, ChangeKind.COMPACT, version, time.time())

    @classmethod
    def drop(cls, key: ListKey, version: str) -> ListChange:
        return cls(key, ChangeKind.DROP, version, time.time())


class Subscription:
    """One follower's queue of changes published after its starting state."""

    def __init__(self, feed: ChangeFeed, max_pending: int) -> None:
        self._feed = feed
        self._max_pending = max_pending
        self._pending: deque[ListChange] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._callbacks: list[Callable[[], None]] = []
        self.overflowed = False
        """True once the follower fell more than ``max_pending`` changes behind; nothing more is queued."""
        self.closed = False

    def _offer(self, change: ListChange) -> None:
        with self._ready:
            if self.overflowed or self.closed:
                return
            if len(self._pending) >= self._max_pending:
                self.overflowed = True
                self._pending.clear()
            else:
                self._pending.append(change)
            self._ready.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (in the publisher's thread) when a change is queued or the queue overflows."""
        with self._ready:
            self._callbacks.append(callback)

    def take(self) -> list[ListChange]:
        """Every queued change, oldest first (empty when there is none); never blocks."""
        with self._ready:
            taken = list(self._pending)
            self._pending.clear()
            return taken

    def wait(self, timeout: float) -> list[ListChange]:
        """Queued changes, waiting up to `timeout` seconds for the first one (empty on timeout)."""
        with self._ready:
            if not self._pending and not self.overflowed and not self.closed:
                self._ready.wait(timeout)
            taken = list(self._pending)
            self._pending.clear()
            return taken

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Stop queueing (the follower went away); idempotent."""
        with self._ready:
            self.closed = True
            self._pending.clear()
            self._ready.notify_all()
        self._feed.unsubscribe(self)


class ChangeFeed:
    """Fans acknowledged changes out to subscriptions; `publish` and `subscribe` run under the store's
    write lock, so a subscription starts exactly at the state the lock holder sees."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._max_pending = max_pending
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self.position = 0
        """Changes published since the store opened."""
        self.last_published_at = 0.0
        """time.time() of the last change published (0 before the first)."""
        self._listeners: list[Callable[[ListChange], None]] = []

    def add_listener(self, listener: Callable[[ListChange], None]) -> None:
        """Call `listener(change)` for every change published (metrics); it must be quick and not raise."""
        self._listeners.append(listener)

    def publish(self, change: ListChange) -> ListChange:
        """Queue `change` for every subscription (caller holds the store's write lock)."""
        self.position += 1
        stamped = ListChange(
            change.key,
            change.kind,
            change.version,
            change.acknowledged_at,
            index=change.index,
            record=change.record,
            position=self.position,
        )
        self.last_published_at = stamped.acknowledged_at
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription._offer(stamped)
        for listener in self._listeners:
            listener(stamped)
        return stamped

    def subscribe(self) -> Subscription:
        """A new subscription receiving every change published from now on (caller holds the write lock)."""
        subscription = Subscription(self, self._max_pending)
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def close_all(self) -> None:
        """End every subscription (the writer is shutting down): their waits return at once."""
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscriptions)
