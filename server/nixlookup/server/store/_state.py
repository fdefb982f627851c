"""What the server serves, as one immutable value behind one swappable reference.

Theory of operation:
- A `ServingState` holds every list the policy reads (the NIX register and each caller's opt-out,
  relationship and consent lists), each an immutable `Index`. A state is never modified: an update builds
  a new state and swaps it in.
- `StateHolder.current()` is one attribute read. Readers call it once per RPC (once per batch on a stream)
  and keep using the state they got, so an answer is always computed from exactly one version of every
  list, and its reply names those versions. The swap is a single reference assignment (atomic under the
  GIL); an old state is freed when the last RPC holding it finishes.
- Writers (reloads, deltas) serialise among themselves with their own lock; readers never take a lock.
- Preparers (`add_preparer`) run on a new state *before* it is swapped in, in the writer's thread, so
  caches derived from a version (the policy's per-caller probes) are warm before the first reader sees it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

import structlog

from nixlookup.server.errors import UnavailableError
from nixlookup.server.index import Index
from nixlookup.v1.vocabulary import ListKind

__all__ = [
    "ADDRESS_REGISTER_KEY",
    "REGISTER_KEY",
    "ListKey",
    "ListKind",
    "PerStateMemo",
    "ServingState",
    "StateHolder",
    "list_name",
]


ListKey = tuple[ListKind, str]
"""(kind, caller): the register is ``(ListKind.REGISTER, "")``."""

REGISTER_KEY: ListKey = (ListKind.REGISTER, "")
ADDRESS_REGISTER_KEY: ListKey = (ListKind.ADDRESS_REGISTER, "")
"""NIX-Adresserat's register: a list of the state's `lists`, like a caller's (only NIX-Telefon's is
`ServingState.register`)."""


def list_name(key: ListKey) -> str:
    """How logs and errors name a list: its kind's slug, then ``/caller`` for a caller's own list."""
    kind, caller = key
    return kind.slug if not caller else f"{kind.slug}/{caller}"


_log = structlog.get_logger("nixlookup.state")


@dataclass(frozen=True, slots=True)
class ServingState:
    """One consistent version of everything served."""

    register: Index
    lists: Mapping[ListKey, Index] = field(default_factory=lambda: MappingProxyType({}))
    generation: int = 0

    def list_for(self, kind: ListKind, caller: str) -> Index | None:
        """The caller's list of this kind, or None when the caller has none."""
        if kind is ListKind.REGISTER:
            return self.register
        return self.lists.get((kind, caller))

    def replacing(self, key: ListKey, index: Index | None) -> ServingState:
        """A new state with one list replaced (or dropped, when `index` is None)."""
        if key == REGISTER_KEY:
            if index is None:
                raise ValueError("the register cannot be dropped")
            return ServingState(register=index, lists=self.lists, generation=self.generation + 1)
        lists = dict(self.lists)
        if index is None:
            lists.pop(key, None)
        else:
            lists[key] = index
        return ServingState(
            register=self.register, lists=MappingProxyType(lists), generation=self.generation + 1
        )


class StateHolder:
    """The one swappable reference to the serving state."""

    def __init__(self, initial: ServingState | None = None) -> None:
        self._state = initial
        self._write_lock = threading.Lock()
        self._preparers: list[Callable[[ServingState], object]] = []

    def add_preparer(self, prepare: Callable[[ServingState], object]) -> None:
        """Run `prepare(state)` on every new state before it serves (and now, on the current one)."""
        self._preparers.append(prepare)
        if self._state is not None:
            self._prepare(self._state, [prepare])

    def _prepare(
        self, state: ServingState, preparers: list[Callable[[ServingState], object]] | None = None
    ) -> None:
        for prepare in self._preparers if preparers is None else preparers:
            try:
                prepare(state)
            except Exception:  # a cache that is not warm is slower, not wrong: never block a swap on it
                _log.exception("state_prepare_failed", preparer=getattr(prepare, "__qualname__", "?"))

    @property
    def write_lock(self) -> threading.Lock:
        """Held by whoever builds the next state from the current one (reload, delta)."""
        return self._write_lock

    @property
    def loaded(self) -> bool:
        """True once a state was swapped in (a follower has none until its first sync point)."""
        return self._state is not None

    def current(self) -> ServingState:
        """The state to answer from; take it once per RPC or batch and keep it."""
        state = self._state
        if state is None:
            raise UnavailableError("no register loaded yet; retry shortly")
        return state

    def swap(self, new: ServingState) -> ServingState | None:
        """Make `new` the serving state (after running the preparers on it); returns the previous one."""
        self._prepare(new)
        old, self._state = self._state, new
        return old


_Value = TypeVar("_Value")


class PerStateMemo(Generic[_Value]):
    """Values derived from one serving state (per caller, say), kept while that state is the one asked about.

    A batch on a stream asks for the same derived values as the batch before it (the caller's overlay,
    the versions its answer names); recomputing them costs a few microseconds each. The memo holds one
    state and its values; a batch on another state (after a swap) starts a fresh memo, which also lets
    the old state go. Lock-free: two threads that race on a swap may each compute a value once.
    """

    def __init__(self) -> None:
        self._memo: tuple[ServingState | None, dict[str, _Value]] = (None, {})

    def get(self, state: ServingState, key: str, compute: Callable[[], _Value]) -> _Value:
        memo_state, values = self._memo
        if memo_state is not state:
            values = {}
            self._memo = (state, values)
        if key not in values:
            values[key] = compute()
        return values[key]
