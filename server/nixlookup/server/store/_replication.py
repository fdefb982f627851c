"""Where a follower starts: the changes that bring it from the versions it holds to the writer's state.

Theory of operation:
- `Store.replication_start` takes the store's write lock, reads the serving state, subscribes to the
  change feed and calls `plan_catch_up`, all under that lock: the plan leads exactly to that state, and
  the subscription holds exactly the changes after it.
- Per list, against what the follower says it holds (``have``: list -> version):
  - the same version: nothing to send;
  - a version still in the list's current journal (the snapshot the journal starts from, or a record in
    it): the journal's records after it, as DELTA changes, oldest first (only what it lacks);
  - anything else (no such list there, a version from before the last compaction or reload, a version
    this writer never had): the list's whole content as one SNAPSHOT change;
  - a list the follower holds and the writer does not: a DROP.
- Journal records are read from the file (`scan_journal`), so resuming costs the writer a read of one
  journal, never memory kept around for followers that may never come back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from nixlookup.server.store._feed import ListChange, Subscription
from nixlookup.server.store._journal import DeltaRecord
from nixlookup.server.store._state import REGISTER_KEY, ListKey, ServingState
from nixlookup.v1.vocabulary import ChangeKind

__all__ = ["CatchUp", "JournalTail", "plan_catch_up"]

JournalTail = Callable[[ListKey], Sequence[DeltaRecord]]
"""The records of a list's current journal, oldest first (the deltas since its current snapshot)."""


@dataclass(frozen=True, slots=True)
class CatchUp:
    """A follower's starting point: the changes to apply, the state they lead to, the live queue after it."""

    state: ServingState
    changes: tuple[ListChange, ...]
    subscription: Subscription
    position: int
    """The feed position of `state` (changes published before the subscription)."""
    resumed_lists: int
    """Lists brought up to date from the journal (only what the follower lacked)."""
    snapshot_lists: int
    """Lists sent whole."""


def _deltas_after(version: str, records: Sequence[DeltaRecord]) -> list[DeltaRecord] | None:
    """The records after `version`, or None when the journal does not reach back to it."""
    if not records:
        return None
    if records[0].previous_version == version:
        return list(records)
    for position, record in enumerate(records):
        if record.version == version:
            return list(records[position + 1 :])
    return None


def plan_catch_up(
    state: ServingState, have: Mapping[ListKey, str], journal_tail: JournalTail
) -> tuple[list[ListChange], int, int]:
    """The changes that bring a follower holding `have` to `state`; (changes, resumed, snapshots)."""
    changes: list[ListChange] = []
    resumed = snapshots = 0
    serving = {REGISTER_KEY: state.register, **state.lists}
    for key, index in serving.items():
        current = index.meta.version
        held = have.get(key)
        if held == current:
            continue
        records = _deltas_after(held, journal_tail(key)) if held else None
        if records and records[-1].version == current:
            changes.extend(
                ListChange(key, ChangeKind.DELTA, record.version, record.written_at, record=record)
                for record in records
            )
            resumed += 1
            continue
        changes.append(ListChange(key, ChangeKind.SNAPSHOT, current, time.time(), index=index))
        snapshots += 1
    for key, version in have.items():
        if key not in serving:
            changes.append(ListChange.drop(key, version))
    return changes, resumed, snapshots
