"""Read-your-writes on the Lookup side: answer only from a state at least at the request's ``min_version``.

Theory of operation:
- A request naming no ``min_version`` takes ``holder.current()`` as always: the hot path pays one length
  check.
- Otherwise the state must serve every named list at that version or a later one (`store.behind`). A
  server that is behind waits for its next states (a follower catching up, a writer whose delta lands)
  for up to `wait_seconds`, never past the call's deadline, then answers FAILED_PRECONDITION (`BehindError`)
  naming the list, the version asked and the version it serves, so a client retries on another replica.
- The wait polls every `POLL_SECONDS`; only calls that are behind wait, and they hold no lock. The check
  itself is shared by the thread (`state_for`) and asyncio (`state_for_async`) forms; only the sleep
  differs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from nixlookup.server.errors import FailedPreconditionError
from nixlookup.server.rpc._replication import have_map
from nixlookup.server.store import Behind, ListKey, ServingState, StateHolder, behind, list_name
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import BEHIND_DETAIL_PREFIX

__all__ = ["DEFAULT_MIN_VERSION_WAIT_SECONDS", "BehindError", "FreshnessGate"]

DEFAULT_MIN_VERSION_WAIT_SECONDS = 0.5
"""How long a Check or batch naming a ``min_version`` this server has not reached waits for it (within the
call's deadline) before FAILED_PRECONDITION sends the client to another replica: several times a healthy
follower's lag, short enough that a retry elsewhere still beats waiting."""
POLL_SECONDS = 0.005
"""How often a waiting call looks at the serving state again."""


class BehindError(FailedPreconditionError):
    """This server does not serve the version a request asked for (yet); another replica may."""


def _describe(lagging: Sequence[Behind]) -> str:
    first = lagging[0]
    name = list_name(first.key)
    serving = f"version {first.serving}" if first.serving else "no such list yet"
    more = f" (and {len(lagging) - 1} more lists)" if len(lagging) > 1 else ""
    return (
        f"{BEHIND_DETAIL_PREFIX} min_version {first.wanted} of {name} is not served here yet "
        f"({serving}){more}; retry another replica"
    )


class FreshnessGate:
    """Picks the state a request may be answered from; see the module doc."""

    def __init__(self, holder: StateHolder, wait_seconds: float = DEFAULT_MIN_VERSION_WAIT_SECONDS) -> None:
        self._holder = holder
        self._wait = wait_seconds

    def _wanted(self, min_version: Sequence[lookup_pb2.ListPosition]) -> dict[ListKey, str]:
        return have_map(list(min_version))

    def _budget(self, time_remaining: float | None) -> float:
        return self._wait if time_remaining is None else max(0.0, min(self._wait, time_remaining - 0.01))

    def state_for(
        self, min_version: Sequence[lookup_pb2.ListPosition], time_remaining: float | None
    ) -> ServingState:
        """The state to answer from (waiting in this thread while behind), or `BehindError`."""
        state = self._holder.current()
        if not min_version:
            return state
        wanted = self._wanted(min_version)
        lagging = behind(state, wanted)
        give_up = time.monotonic() + self._budget(time_remaining)
        while lagging and time.monotonic() < give_up:
            time.sleep(POLL_SECONDS)
            state = self._holder.current()
            lagging = behind(state, wanted)
        if lagging:
            raise BehindError(_describe(lagging))
        return state

    async def state_for_async(
        self, min_version: Sequence[lookup_pb2.ListPosition], time_remaining: float | None
    ) -> ServingState:
        """As `state_for`, waiting on the event loop."""
        state = self._holder.current()
        if not min_version:
            return state
        wanted = self._wanted(min_version)
        lagging = behind(state, wanted)
        give_up = time.monotonic() + self._budget(time_remaining)
        while lagging and time.monotonic() < give_up:
            await asyncio.sleep(POLL_SECONDS)
            state = self._holder.current()
            lagging = behind(state, wanted)
        if lagging:
            raise BehindError(_describe(lagging))
        return state
