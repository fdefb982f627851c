"""The replication wire: the store's changes as `ReplicationEvent`s and back, and the writer's Replicate.

Theory of operation:
- Writer side (`ReplicationServicer.Replicate`, an async generator on the grpc.aio loop: a follower
  waiting for news is a suspended coroutine, woken by the subscription's `on_ready`):
  `Store.replication_start` gives the follower's catch-up
  (what it lacks, or whole lists) and a subscription to every later change; the stream sends the
  catch-up, a `SyncPoint`, then each batch of queued changes followed by a `SyncPoint`, and a lone
  `SyncPoint` as a heartbeat every `HEARTBEAT_SECONDS` when nothing changed. A sync point always
  follows the last change of a state the writer served, so a follower that swaps only there never serves
  a mixture. A follower that fell too far behind is cut off with RESOURCE_EXHAUSTED naming the limit
  (it resumes from its versions); a writer shutting down ends streams with UNAVAILABLE.
- Scope: a stream carries the register and the lists of the callers its principal may act as, narrowed to
  `ReplicateRequest.callers` when it names some (each must be one the principal may act as, else
  PERMISSION_DENIED); a company's lists never reach a follower whose principal cannot act as it. The
  stream opens with a `ReplicationScope` saying so (and how a check naming no caller resolves), which a
  follower server ignores and a `LocalReplica` answers by.
- Keys travel as packed little-endian uint64 bytes (end days as uint32), never ``repeated uint64``: numpy
  writes and reads them at memory speed. A change is split into parts of at most `PART_KEYS` keys, so a
  3M-number register or a huge delta never exceeds a message size limit; `ChangeAssembler` joins the
  parts of one change on the follower (a part of another change before the last part is a protocol error).
- No rules here and no I/O beyond the stream: the store plans and publishes, the follower's `Replica`
  verifies and swaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from grpc import aio
from numpy.typing import NDArray

from nixlookup.server.errors import InvalidArgumentError, ResourceExhaustedError, UnavailableError
from nixlookup.server.lists import spec_of
from nixlookup.server.logs import get_logger
from nixlookup.server.policy import PolicySettings
from nixlookup.server.rpc._auth import authorize, current_principal
from nixlookup.server.rpc._convert import datetime_to_timestamp, list_key, list_ref, timestamp_to_datetime
from nixlookup.server.rpc._principals import ALL_CALLERS, Principal, Role
from nixlookup.server.store import (
    DEFAULT_MAX_PENDING,
    ListChange,
    ListKey,
    ReceivedChange,
    Store,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import ChangeKind

__all__ = [
    "HEARTBEAT_SECONDS",
    "PART_KEYS",
    "ChangeAssembler",
    "ReplicationServicer",
    "change_events",
    "have_map",
    "positions",
    "scope_of",
    "sync_event",
]

_log = get_logger("nixlookup.replication")

HEARTBEAT_SECONDS = 1.0
"""A writer with nothing new sends a lone sync point this often; a follower that hears nothing for 1.5x
this long counts its lag from the last one (and cuts a silent stream after `STALL_SECONDS`)."""
STALL_SECONDS = 10 * HEARTBEAT_SECONDS
"""A stream silent this long is taken as dead (a vanished host, a half-open connection) and reopened."""
PART_KEYS = 262_144
"""Keys per message part: 2 MiB of keys (+1 MiB of end days), under grpc's default 4 MiB message limit."""

_EMPTY_KEYS = np.zeros(0, np.uint64)

if TYPE_CHECKING:
    _Context = aio.ServicerContext[Any, Any]
else:
    _Context = aio.ServicerContext


def have_map(have: Iterator[lookup_pb2.ListPosition] | list[lookup_pb2.ListPosition]) -> dict[ListKey, str]:
    """ReplicateRequest.have / min_version as list -> version (INVALID_ARGUMENT for a bad list ref)."""
    return {list_key(position.list): position.version for position in have}


def positions(versions: Mapping[ListKey, str]) -> list[lookup_pb2.ListPosition]:
    return [lookup_pb2.ListPosition(list=list_ref(key), version=version) for key, version in versions.items()]


def _le(array: NDArray[np.generic] | None, dtype: str) -> bytes:
    return b"" if array is None else np.ascontiguousarray(array, dtype=dtype).tobytes()


def change_events(change: ListChange, part_keys: int = PART_KEYS) -> Iterator[lookup_pb2.ReplicationEvent]:
    """The events carrying one feed change: one message, or several parts of at most `part_keys` keys."""
    header = lookup_pb2.ListChange(
        list=list_ref(change.key),
        kind=int(change.kind),  # type: ignore[arg-type]
        version=change.version,
        acknowledged_at=datetime_to_timestamp(datetime.fromtimestamp(change.acknowledged_at, UTC)),
    )
    index = change.index
    if index is not None:
        meta = index.meta
        header.count = meta.count
        header.checksum = meta.checksum
        header.source = meta.source
        header.register_date.CopyFrom(datetime_to_timestamp(meta.register_date))
        header.synthetic = meta.synthetic
    keys: NDArray[np.uint64] = _EMPTY_KEYS
    values: NDArray[np.uint32] | None = None
    remove: NDArray[np.uint64] = _EMPTY_KEYS
    if change.kind is ChangeKind.SNAPSHOT and index is not None:
        keys, values = index.sorted_keys(), index.sorted_values()
    elif change.kind is ChangeKind.DELTA and change.record is not None:
        record = change.record
        header.previous_version = record.previous_version
        keys, values, remove = record.add, record.add_until_days, record.remove
    parts = max(1, -(-max(keys.size, remove.size) // part_keys))
    for part in range(parts):
        message = lookup_pb2.ListChange()
        message.CopyFrom(header)
        window = slice(part * part_keys, (part + 1) * part_keys)
        message.keys_le = _le(keys[window], "<u8")
        if values is not None:
            message.values_le = _le(values[window], "<u4")
        message.remove_le = _le(remove[window], "<u8")
        message.more = part < parts - 1
        yield lookup_pb2.ReplicationEvent(change=message)


def sync_event(position: int) -> lookup_pb2.ReplicationEvent:
    return lookup_pb2.ReplicationEvent(
        synced=lookup_pb2.SyncPoint(position=position, writer_time=datetime_to_timestamp(datetime.now(UTC)))
    )


def scope_of(
    principal: Principal, requested: Iterable[str], rules: PolicySettings | None = None
) -> tuple[lookup_pb2.ReplicationScope, set[str] | None]:
    """The scope of a stream for `principal` asking for `requested` callers (PERMISSION_DENIED for one it
    may not act as), and the callers whose lists it carries (None: every caller's)."""
    wanted = sorted({caller for caller in requested if caller})
    for caller in wanted:
        authorize(principal, Role.REPLICATE, caller)
    named = sorted(principal.callers - {ALL_CALLERS})
    any_caller = principal.any_caller and not wanted
    scope = lookup_pb2.ReplicationScope(
        callers=wanted or named,
        any_caller=any_caller,
        default_caller=named[0] if len(named) == 1 and not principal.any_caller else "",
        may_check=Role.CHECK in principal.roles,
        caller_required=len(named) > 1 and not principal.any_caller,
    )
    if rules is not None:
        scope.rules_sent = True
        scope.relationship_grace_days = rules.relationship_grace_days
        scope.block_mobile_without_relationship = rules.block_mobile_without_relationship
    return scope, None if any_caller else set(wanted or named)


class ChangeAssembler:
    """Joins the parts of each change into one `ReceivedChange` (follower side)."""

    def __init__(self) -> None:
        self._parts: list[lookup_pb2.ListChange] = []

    def add(self, part: lookup_pb2.ListChange) -> ReceivedChange | None:
        """The whole change once its last part is in, else None."""
        if self._parts and (self._parts[0].version != part.version or self._parts[0].list != part.list):
            raise InvalidArgumentError(
                f"replication stream: a part of version {part.version} arrived inside version "
                f"{self._parts[0].version}"
            )
        self._parts.append(part)
        if part.more:
            return None
        parts, self._parts = self._parts, []
        return _received(parts)

    @property
    def incomplete(self) -> bool:
        return bool(self._parts)


def _joined(parts: list[lookup_pb2.ListChange], field: str, dtype: str) -> NDArray[np.generic]:
    raw = b"".join(getattr(part, field) for part in parts)
    width = np.dtype(dtype).itemsize
    if len(raw) % width:
        raise InvalidArgumentError(f"replication stream: {field} is not a whole number of {width}-byte words")
    return np.frombuffer(raw, dtype=dtype)


def _received(parts: list[lookup_pb2.ListChange]) -> ReceivedChange:
    first = parts[0]
    try:
        kind = ChangeKind(first.kind)
    except ValueError:
        raise InvalidArgumentError(f"replication stream: unknown change kind {first.kind}") from None
    keys = _joined(parts, "keys_le", "<u8").astype(np.uint64)
    values_raw = _joined(parts, "values_le", "<u4")
    key = list_key(first.list)
    return ReceivedChange(
        key=key,
        kind=kind,
        version=first.version,
        previous_version=first.previous_version,
        keys=keys,
        values=values_raw.astype(np.uint32) if spec_of(key[0]).dated else None,
        remove=_joined(parts, "remove_le", "<u8").astype(np.uint64),
        count=first.count if first.checksum else None,
        checksum=first.checksum,
        source=first.source,
        register_date=timestamp_to_datetime(first.register_date) if first.HasField("register_date") else None,
        synthetic=first.synthetic,
        acknowledged_at=timestamp_to_datetime(first.acknowledged_at).timestamp(),
    )


class ReplicationServicer(lookup_pb2_grpc.ReplicationServicer):
    """The writer's Replicate stream over one `Store`; see the module doc."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        policy_settings: PolicySettings | None = None,
    ) -> None:
        """`policy_settings`: the rule settings the server answers with, sent in each stream's scope so a
        LocalReplica applies the same table (None: not sent)."""
        self._store = store
        self._rules = policy_settings
        self._heartbeat = heartbeat_seconds
        self._stopping = threading.Event()

    def stop(self) -> None:
        """End every open stream (the writer is shutting down); followers reconnect and resume."""
        self._stopping.set()
        self._store.feed.close_all()

    async def Replicate(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.ReplicateRequest, context: _Context
    ) -> AsyncIterator[lookup_pb2.ReplicationEvent]:
        """An async generator on the server's event loop: a follower waiting for news holds no thread.
        The catch-up plan (which takes the store's write lock briefly) runs in the default executor."""
        principal = current_principal()
        authorize(principal, Role.REPLICATE)  # a follower is a principal with its own role
        scope, carried = scope_of(principal, request.callers, self._rules)
        have = have_map(list(request.have))
        follower = request.follower[:128] or context.peer()
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        catch_up = await loop.run_in_executor(None, self._store.replication_start, have)
        subscription = catch_up.subscription
        news = asyncio.Event()

        def wake() -> None:  # in the publisher's thread
            loop.call_soon_threadsafe(news.set)

        subscription.on_ready(wake)
        _log.info(
            "replication_started",
            follower=follower,
            lists_held=len(have),
            lists_resumed=catch_up.resumed_lists,
            lists_sent_whole=catch_up.snapshot_lists,
            position=catch_up.position,
        )
        sent = 0

        def entitled(change: ListChange) -> bool:
            return carried is None or not change.key[1] or change.key[1] in carried

        try:
            yield lookup_pb2.ReplicationEvent(scope=scope)
            for change in catch_up.changes:
                if entitled(change):
                    for event in change_events(change):
                        yield event
            yield sync_event(catch_up.position)
            position = catch_up.position
            while not context.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), self._heartbeat)
                news.clear()
                changes = subscription.take()
                if subscription.overflowed:
                    raise ResourceExhaustedError(
                        f"this follower fell more than {DEFAULT_MAX_PENDING} changes behind the writer (the "
                        "limit) and was cut off; it resumes from the versions it holds when it reconnects"
                    )
                if self._stopping.is_set() or subscription.closed:
                    raise UnavailableError("the writer is shutting down; reconnect to resume")
                for change in changes:
                    if entitled(change):
                        for event in change_events(change):
                            yield event
                    position = change.position
                sent += len(changes)
                yield sync_event(position)
        finally:
            subscription.close()
            _log.info(
                "replication_ended",
                follower=follower,
                changes_sent=sent,
                seconds=round(time.perf_counter() - started, 3),
            )
