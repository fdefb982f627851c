"""`LocalReplica`: the register and the caller's lists in the dialer's own process, answering in microseconds.

Theory of operation:
- It follows a server through its ``Replication/Replicate`` stream with the server's own follower
  (`nixlookup.server.rpc.Follower` over a `nixlookup.server.store.Replica`): a snapshot of every list it
  is entitled to, then every acknowledged change, swapped in only at the writer's sync points, so it never
  answers from a mixture of two writer states. Resumes, resends of a list that diverged, backoff and the
  cancelling of silent streams are the follower's. The stream's principal needs role ``replicate``; the
  writer sends the register and only the lists of callers that principal may act as (narrowed to
  `callers` when given): a company's lists never reach a replica whose principal cannot act as it.
- `check()` answers like the server's ``Check`` (`Client.check`'s `CheckResult`, from the server's
  `Policy.decide_one`; see `_answers`) with ``answered_by="replica"``, and names the versions it used
  (`register_version`, `lists_used`). It resolves the caller as the server would for the same principal
  (the stream's `ReplicationScope`: the principal's only caller when none is named), with the writer's
  rule settings when the scope carries them.
- Staleness: the writer sends a sync point at least once per heartbeat (1 s) even when idle. When none
  has come for `max_staleness_seconds` (default 3 s), before the first snapshot, for a caller outside the
  stream's scope, for a principal without role ``check``, or when the local decision refuses (an expired
  register), `check()` asks the server through a normal ``Check`` RPC instead (`Client.check`, with the
  same token and TLS), whose result says ``answered_by="rpc"`` — and whose errors are the server's.
- Memory: the replica holds full `Index` objects (roaring store plus the batch structure);
  `memory()` reports bytes in total and per register number.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType

from nixlookup.client import Client
from nixlookup.client.defaults import DEFAULT_TIMEOUT
from nixlookup.client.results import CheckResult
from nixlookup.client.security import ChannelSecurity
from nixlookup.replica._answers import Answers
from nixlookup.server.errors import NixlookupError
from nixlookup.server.numbering import classify_key, parse_number
from nixlookup.server.policy import Policy, PolicySettings
from nixlookup.server.rpc import Follower, FollowerSettings
from nixlookup.server.store import REGISTER_KEY, ListKey, Replica
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import Purpose

__all__ = ["DEFAULT_MAX_STALENESS_SECONDS", "LocalReplica", "ReplicaMemory", "ReplicaStats"]

DEFAULT_MAX_STALENESS_SECONDS = 3.0
"""Answer from memory only while the last word from the writer (a change or a heartbeat, sent at least
once a second) is at most this old; three missed heartbeats is a writer or a network in trouble."""


@dataclass(frozen=True, slots=True)
class ReplicaMemory:
    """What the replica's lists take in memory."""

    register_numbers: int
    register_bytes: int
    list_numbers: int
    list_bytes: int

    @property
    def bytes_per_register_number(self) -> float:
        return self.register_bytes / self.register_numbers if self.register_numbers else math.nan

    @property
    def total_bytes(self) -> int:
        return self.register_bytes + self.list_bytes


@dataclass(frozen=True, slots=True)
class ReplicaStats:
    """How the replica's checks were answered so far."""

    local: int
    rpc: int


class LocalReplica:
    """A replica of a nixlookup server's register (and the entitled callers' lists) in this process.

    ``with LocalReplica("lookup.internal:50051", token=TOKEN) as replica: replica.wait_ready(30);
    replica.check("070-123 45 67", caller="acme")``. `target` serves Lookup (the fallback RPC);
    `replicate_target` serves Replication when it is another listener (the admin one), else `target`.
    The rule settings are the writer's when its stream sends them (`ReplicationScope.rules_sent`); else
    `policy`, which must then carry the server's own ``--relationship-grace-days`` and
    ``--block-mobile-without-relationship`` (the defaults are the server's defaults).
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        replicate_target: str | None = None,
        token: str | None = None,
        security: ChannelSecurity | None = None,
        callers: tuple[str, ...] | list[str] = (),
        max_staleness_seconds: float = DEFAULT_MAX_STALENESS_SECONDS,
        policy: PolicySettings | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | None = None,
    ) -> None:
        if max_staleness_seconds <= 0:
            raise ValueError("max_staleness_seconds must be positive")
        chosen = security or ChannelSecurity()
        if token is not None:
            chosen = replace(chosen, token=token)
        self.max_staleness_seconds = max_staleness_seconds
        self._client = Client(target, security=chosen, timeout=timeout)
        self.target = self._client.target
        self.replicate_target = replicate_target or self.target
        self._replica = Replica()
        self._follower = Follower(
            self._replica,
            FollowerSettings(
                writer=self.replicate_target,
                name=name if name is not None else f"local-replica@{socket.gethostname()}",
                credentials=chosen.channel_credentials(),
                metadata=chosen.metadata or (),
                callers=tuple(callers),
            ),
        )
        self._policy = policy or PolicySettings()
        self._answers = Answers(Policy(self._policy))
        self._scope = _Scope.of(None)
        self._started = False
        self._closed = False
        self._local = 0
        self._rpc = 0
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> LocalReplica:
        """Open the stream (in the background); `check()` answers through RPC until the first snapshot."""
        with self._lock:
            if not self._started:
                self._follower.start()
                self._started = True
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._started:
            self._follower.stop()
        self._client.close()

    def __enter__(self) -> LocalReplica:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the first snapshot is in and fresh; TimeoutError after `timeout` seconds."""
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.fresh:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"the local replica of {self.replicate_target} has no current snapshot after {timeout} s "
                    f"(stream reconnects so far: {self._follower.reconnects}); checks go to the server by RPC"
                )
            self._replica.synced_once.wait(0.05 if left is None else min(0.05, left))

    # -- state -----------------------------------------------------------------------------------------
    @property
    def fresh(self) -> bool:
        """Has a whole writer state, and heard from the writer within `max_staleness_seconds`?"""
        return self._follower.scope is not None and (
            self._follower.seconds_since_sync() <= self.max_staleness_seconds
        )

    def seconds_since_sync(self) -> float:
        return self._follower.seconds_since_sync()

    def versions(self) -> dict[ListKey, str]:
        """The version of every list held (the register is ``(ListKind.REGISTER, "")``)."""
        return self._replica.versions()

    @property
    def register_version(self) -> str | None:
        return self.versions().get(REGISTER_KEY)

    @property
    def stats(self) -> ReplicaStats:
        return ReplicaStats(local=self._local, rpc=self._rpc)

    def memory(self) -> ReplicaMemory:
        """Bytes of the register and of the caller lists held (every structure of each `Index`)."""
        holder = self._replica.holder
        if not holder.loaded:
            return ReplicaMemory(0, 0, 0, 0)
        state = holder.current()
        lists = state.lists.values()
        return ReplicaMemory(
            register_numbers=state.register.meta.count,
            register_bytes=state.register.nbytes_total,
            list_numbers=sum(index.meta.count for index in lists),
            list_bytes=sum(index.nbytes_total for index in lists),
        )

    @property
    def policy_settings(self) -> PolicySettings:
        """The rule settings answers are made with: the writer's when its stream says, else `policy`."""
        self._current_scope()
        return self._answers.policy.settings

    def _current_scope(self) -> _Scope:
        scope = self._scope
        message = self._follower.scope
        if message is not scope.message:
            scope = self._scope = self._new_scope(message)
        return scope

    def _new_scope(self, message: lookup_pb2.ReplicationScope | None) -> _Scope:
        """A new stream's scope; the writer's rule settings, when it sends them, replace the replica's."""
        settings = self._policy
        if message is not None and message.rules_sent:
            settings = PolicySettings(
                relationship_grace_days=message.relationship_grace_days,
                block_mobile_without_relationship=message.block_mobile_without_relationship,
            )
        if settings != self._answers.policy.settings:
            self._answers = Answers(Policy(settings))
        return _Scope.of(message)

    # -- checks ----------------------------------------------------------------------------------------
    def check(
        self,
        number: str | int,
        *,
        caller: str = "",
        purpose: Purpose | int | str = Purpose.SALES,
        timeout: float | None = None,
    ) -> CheckResult:
        """May `number` be called by `caller` for `purpose`? As `Client.check`, answered from memory while
        fresh (``answered_by="replica"``), else by the server (``"rpc"``); see the module doc."""
        follower = self._follower
        scope = self._scope
        if follower.scope is not scope.message:
            scope = self._current_scope()
        acting = scope.acting.get(caller)
        if acting is None and scope.any_caller:
            acting = caller
        if acting is not None and follower.seconds_since_sync() <= self.max_staleness_seconds:
            kind = type(number)
            parsed = classify_key(number) if kind is int else parse_number(number) if kind is str else None
            if parsed is not None:
                chosen = purpose if type(purpose) is Purpose else Purpose.parse(purpose)
                try:
                    result = self._answers.answer(
                        self._replica.holder.current(), parsed, acting, chosen, time.time()
                    )
                except NixlookupError:
                    pass  # e.g. an expired register: the server says so, in its own words
                else:
                    self._local += 1
                    return result
        self._rpc += 1
        return self._client.check(number, caller=caller, purpose=purpose, timeout=timeout)


@dataclass(frozen=True, slots=True)
class _Scope:
    """A stream's `ReplicationScope` as plain Python, read on every check: caller as named -> caller
    acted as, for the callers answered locally (none before the first stream, or without role check)."""

    message: lookup_pb2.ReplicationScope | None
    acting: Mapping[str, str]
    any_caller: bool

    @classmethod
    def of(cls, message: lookup_pb2.ReplicationScope | None) -> _Scope:
        if message is None or not message.may_check:
            return cls(message, {}, any_caller=False)
        acting = {caller: caller for caller in message.callers}
        if not message.caller_required:
            acting[""] = message.default_caller
        return cls(message, acting, any_caller=message.any_caller)
