"""A follower's Admin service: every write is refused with FAILED_PRECONDITION naming the writer.

A follower serves what it replayed from its writer and nothing else, so a reload, delta, compaction or
list removal sent to it would either be lost or fork its history. The refusal names the writer so a
misdirected client (or operator) knows where to send it. The methods are ``async`` like the writer's, so
the grpc.aio server's `RpcGuard` wraps them the same way (a sync streaming handler would bypass it).
"""

from __future__ import annotations

from typing import Any, NoReturn

from nixlookup.server.errors import FailedPreconditionError
from nixlookup.v1 import lookup_pb2_grpc

__all__ = ["ReadOnlyAdminServicer"]


class ReadOnlyAdminServicer(lookup_pb2_grpc.AdminServicer):
    """Refuses every Admin call on a follower (writes, and the audit log and usage the writer keeps)."""

    def __init__(self, writer: str) -> None:
        self._writer = writer

    def _refuse(self, method: str) -> NoReturn:
        raise FailedPreconditionError(
            f"this server is a read-only follower of {self._writer}; send {method} to the writer"
        )

    async def Reload(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("Reload")

    async def ApplyDelta(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("ApplyDelta")

    async def Compact(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("Compact")

    async def DropList(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("DropList")

    async def Upload(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("Upload")

    async def GetAuditLog(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("GetAuditLog")  # the audit log lives with the writer's data directory

    async def GetUsage(self, request: Any, context: Any) -> Any:  # noqa: N802 - the name is the RPC's
        self._refuse("GetUsage")
