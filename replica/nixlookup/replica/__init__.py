"""nixlookup.replica: the register in a dialer's own process, for per-call checks in microseconds.

Installed with ``pip install 'nixlookup[replica]'`` (it holds the server's index and applies the server's
policy, so it needs the server's dependencies); the plain client never imports it.
"""

from __future__ import annotations

try:
    from nixlookup.replica._local import (
        DEFAULT_MAX_STALENESS_SECONDS,
        LocalReplica,
        ReplicaMemory,
        ReplicaStats,
    )
except ModuleNotFoundError as missing:  # the lean client alone: say which extra brings it
    raise ModuleNotFoundError(
        f"nixlookup.replica needs the server's dependencies ({missing.name} is missing): "
        "pip install 'nixlookup[replica]'",
        name=missing.name,
    ) from missing

__all__ = ["DEFAULT_MAX_STALENESS_SECONDS", "LocalReplica", "ReplicaMemory", "ReplicaStats"]
