"""The service's limits, and the one counter that enforces how many calls and streams run at once.

Theory of operation:
- Every limit is a `Limit`: its value and the setting that changes it (``--max-batch (env
  NIXLOOKUP_MAX_BATCH)``), given by `app` from its option table, so every error a client gets for hitting a
  limit names the limit, its value and how an operator raises it; no flag name is spelled out here.
- `CallLimiter` counts calls in progress on the event loop (no lock: every call starts and ends on the
  loop thread). A call past `max_concurrent_rpcs`, or a streaming call past `max_streams`, is refused at
  once with RESOURCE_EXHAUSTED, before its handler runs: a caller never waits out its deadline in a
  queue. Streams have their own, lower ceiling so that streams which sit idle (health watchers, a
  dialer's open CheckStream, a client that stopped reading) can never take the slots unary Checks need.
"""

from __future__ import annotations

from dataclasses import dataclass

from nixlookup.server.errors import ResourceExhaustedError

__all__ = ["CallLimiter", "Limit", "ServiceLimits"]


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit's value and the setting an operator changes it with (named in the error it causes)."""

    value: int | float
    setting: str

    def named(self) -> str:
        """``100000 (--max-batch, env NIXLOOKUP_MAX_BATCH)``: how errors quote the limit."""
        shown = f"{self.value:g}" if isinstance(self.value, float) else str(self.value)
        return f"{shown} ({self.setting})" if self.setting else shown


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """The limits the services enforce themselves (grpc enforces message size and the transport ones)."""

    max_batch: Limit = Limit(100_000, "")
    """Numbers per CheckBatch; more is INVALID_ARGUMENT."""
    max_concurrent_rpcs: Limit = Limit(1024, "")
    """Calls in progress, every service and kind; one more is RESOURCE_EXHAUSTED at once."""
    max_streams: Limit = Limit(512, "")
    """Of those, streaming calls (CheckStream, Health/Watch, reflection); one more is RESOURCE_EXHAUSTED."""
    stream_idle_seconds: Limit = Limit(60.0, "")
    """A CheckStream that neither sends a batch nor takes a result this long is ended (DEADLINE_EXCEEDED)."""


class CallLimiter:
    """Counts calls and streams in progress; `enter` refuses one past its limit (see the module doc)."""

    def __init__(self, limits: ServiceLimits) -> None:
        self._limits = limits
        self.calls = 0
        self.streams = 0

    def enter(self, streaming: bool) -> None:
        """Count a starting call, or raise `ResourceExhaustedError` naming the limit it would pass."""
        if self.calls >= self._limits.max_concurrent_rpcs.value:
            raise ResourceExhaustedError(
                f"the server is at its limit of {self._limits.max_concurrent_rpcs.named()} calls in "
                "progress; retry with backoff, or spread the load over more replicas"
            )
        if streaming and self.streams >= self._limits.max_streams.value:
            raise ResourceExhaustedError(
                f"the server is at its limit of {self._limits.max_streams.named()} open streams; close "
                "streams you are not using, or retry with backoff"
            )
        self.calls += 1
        if streaming:
            self.streams += 1

    def leave(self, streaming: bool) -> None:
        """Count a call (that `enter` admitted) as finished."""
        self.calls -= 1
        if streaming:
            self.streams -= 1
