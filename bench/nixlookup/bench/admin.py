"""Thin, timed wrappers over `nixlookup.v1.Admin` for the benchmarks: Reload, ApplyDelta, GetRegisterInfo.

Each call returns the wall time the client saw (request sent to answer received), which is what an
operator waits for: for ApplyDelta that includes making the delta durable, since the server answers only
once it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.grpcload import channel_options
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["AdminClient", "TimedDelta", "TimedReload"]

_ADMIN_TIMEOUT_S = 120.0  # a reload of a 30M-number text file takes tens of seconds on this machine


@dataclass(frozen=True)
class TimedReload:
    wall_s: float
    server_load_s: float
    version: str
    count: int


@dataclass(frozen=True)
class TimedDelta:
    wall_s: float
    version: str
    added: int
    removed: int


class AdminClient:
    """One channel to a server's Admin and Lookup services."""

    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target, options=channel_options())
        self._admin = lookup_pb2_grpc.AdminStub(self._channel)
        self._lookup = lookup_pb2_grpc.LookupStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def register_info(self) -> lookup_pb2.RegisterInfo:
        return self._lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=10.0)

    def reload(self, path: Path, *, fmt: str = "", force: bool = True) -> TimedReload:
        """Reload the register from a file on the server; `force` so a changed count is never refused."""
        request = lookup_pb2.ReloadRequest(
            list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_REGISTER),
            path=str(path),
            format=fmt,
            force=force,
        )
        started = time.perf_counter()
        answer = self._admin.Reload(request, timeout=_ADMIN_TIMEOUT_S)
        wall = time.perf_counter() - started
        return TimedReload(
            wall_s=wall,
            server_load_s=answer.load_seconds,
            version=answer.info.version,
            count=answer.info.count,
        )

    def apply_delta(
        self,
        *,
        kind: lookup_pb2.ListKind.ValueType = lookup_pb2.LIST_KIND_REGISTER,
        caller: str = "",
        add: NDArray[np.uint64] | None = None,
        remove: NDArray[np.uint64] | None = None,
        add_until_days: NDArray[np.uint32] | None = None,
    ) -> TimedDelta:
        """Apply a delta to one list; returns once the server says it is durable."""
        request = lookup_pb2.ApplyDeltaRequest(
            list=lookup_pb2.ListRef(kind=kind, caller=caller),
            add_e164_le=b"" if add is None else add.astype("<u8").tobytes(),
            remove_e164_le=b"" if remove is None else remove.astype("<u8").tobytes(),
            add_until_days_le=b"" if add_until_days is None else add_until_days.astype("<u4").tobytes(),
        )
        started = time.perf_counter()
        answer = self._admin.ApplyDelta(request, timeout=_ADMIN_TIMEOUT_S)
        wall = time.perf_counter() - started
        return TimedDelta(wall_s=wall, version=answer.version, added=answer.added, removed=answer.removed)
