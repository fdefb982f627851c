"""Read-your-writes: is a serving state at least at the versions a client names (``min_version``)?

Version ids are ``<seq>-<digest>`` (`make_version`); within one list the sequence orders them. A state
satisfies ``min_version`` for a list when it serves that list at a sequence at least as high; the same
sequence with another digest is a different history (a writer restored from elsewhere) and does not.
A list the state does not have yet is behind any version. A version that is not a data directory's id
is a malformed request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.store._recovery import version_seq
from nixlookup.server.store._state import ListKey, ServingState

__all__ = ["Behind", "behind"]


@dataclass(frozen=True, slots=True)
class Behind:
    """One list the state serves at an older version than asked (or not at all)."""

    key: ListKey
    wanted: str
    serving: str
    """"" when the state has no such list."""


def behind(state: ServingState, wanted: Mapping[ListKey, str]) -> list[Behind]:
    """The lists of `wanted` that `state` serves at an older version (empty: the state is fresh enough)."""
    lagging: list[Behind] = []
    for key, version in wanted.items():
        if not version:
            continue
        wanted_seq = version_seq(version)
        if wanted_seq is None:
            raise InvalidArgumentError(f"min_version {version!r} is not a version id (<seq>-<digest>)")
        index = state.list_for(*key)
        serving = "" if index is None else index.meta.version
        serving_seq = version_seq(serving) if serving else None
        if (
            serving_seq is None
            or serving_seq < wanted_seq
            or (serving_seq == wanted_seq and serving != version)
        ):
            lagging.append(Behind(key, version, serving))
    return lagging
