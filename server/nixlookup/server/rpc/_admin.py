"""The `nixlookup.v1.Admin` service: proto in, `Store` calls, proto out. No rules live here.

- Reload, ApplyDelta, Compact and DropList map one-to-one onto `Store.reload`, `apply_delta`, `compact`
  and `drop`; every refusal is a `NixlookupError` the `RpcGuard` interceptor turns into its status
  (FAILED_PRECONDITION for a failed validation or version mismatch, INVALID_ARGUMENT for a malformed
  request or unreadable file, NOT_FOUND for an unknown list).
- ApplyDelta answers only after `Store.apply_delta` returned, i.e. after the delta is durable.
- Admin is a separate service so a deployment can expose Lookup and keep Admin on loopback or behind
  authentication. Reload paths are files on the server, read with the server's permissions; with
  `reload_root` (``--reload-root``) only files inside that directory may be named (PERMISSION_DENIED
  otherwise, symlinks resolved first).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from nixlookup.server.errors import InvalidArgumentError, PermissionDeniedError
from nixlookup.server.rpc._convert import described_list_info, list_ref, timestamp_to_datetime
from nixlookup.server.store import (
    REGISTER_KEY,
    ListKey,
    ListKind,
    Store,
    check_list_key,
    check_reload_path,
    shown_path,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["AdminServicer"]


def _list_key(ref: lookup_pb2.ListRef) -> ListKey:
    try:
        kind = ListKind(ref.kind)
    except ValueError:
        raise InvalidArgumentError(f"list.kind {ref.kind} is not a known ListKind") from None
    return check_list_key(kind, ref.caller)


def _packed(data: bytes, field: str, width: int, dtype: str) -> NDArray[np.generic]:
    if len(data) % width:
        raise InvalidArgumentError(f"{field} must be a whole number of {width}-byte little-endian words")
    return np.frombuffer(data, dtype=dtype)


class AdminServicer(lookup_pb2_grpc.AdminServicer):
    """Reloads, deltas, compaction and list removal over gRPC, on top of one `Store`."""

    def __init__(self, store: Store, *, reload_root: Path | None = None) -> None:
        self._store = store
        self._reload_root = reload_root.resolve() if reload_root is not None else None

    def _allowed_path(self, raw: str) -> Path:
        path = check_reload_path(raw)  # INVALID_ARGUMENT for an empty, NUL-holding or overlong path
        if self._reload_root is None:
            return path
        resolved = path.resolve()
        if not resolved.is_relative_to(self._reload_root):
            raise PermissionDeniedError(
                f"reload path {shown_path(raw)!r} is outside the allowed directory "
                f"{str(self._reload_root)!r} (--reload-root); copy the file there first"
            )
        return resolved

    def _info(self, key: ListKey) -> lookup_pb2.ListInfo:
        for description in self._store.describe():
            if description.key == key:
                return described_list_info(description)
        return lookup_pb2.ListInfo(list=list_ref(key))

    def Reload(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.ReloadRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.ReloadResponse:
        result = self._store.reload(
            _list_key(request.list),
            self._allowed_path(request.path),
            fmt=request.format or None,
            column=request.column or None,
            until_column=request.until_column or None,
            force=request.force,
            register_date=(
                timestamp_to_datetime(request.register_date, "register_date")
                if request.HasField("register_date")
                else None
            ),
            expect_version=request.expect_version or None,
        )
        return lookup_pb2.ReloadResponse(
            info=described_list_info(result.info),
            previous_version=result.previous_version,
            bad_lines=result.bad_lines,
            load_seconds=result.load_seconds,
        )

    def ApplyDelta(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.ApplyDeltaRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.ApplyDeltaResponse:
        until = _packed(request.add_until_days_le, "add_until_days_le", 4, "<u4")
        result = self._store.apply_delta(
            _list_key(request.list),
            add=_packed(request.add_e164_le, "add_e164_le", 8, "<u8").astype(np.uint64),
            add_until_days=until.astype(np.uint32) if until.size else None,
            remove=_packed(request.remove_e164_le, "remove_e164_le", 8, "<u8").astype(np.uint64),
            add_texts=list(request.add_texts),
            remove_texts=list(request.remove_texts),
            expect_version=request.expect_version or None,
        )
        return lookup_pb2.ApplyDeltaResponse(
            version=result.version,
            previous_version=result.previous_version,
            added=result.added,
            removed=result.removed,
            count=result.count,
            invalid=result.invalid,
        )

    def Compact(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.CompactRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.CompactResponse:
        key = None if request.all else (_list_key(request.list) if request.HasField("list") else REGISTER_KEY)
        compacted = self._store.compact(key)
        return lookup_pb2.CompactResponse(compacted=[self._info(each) for each in compacted])

    def DropList(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.DropListRequest, context: grpc.ServicerContext
    ) -> lookup_pb2.DropListResponse:
        return lookup_pb2.DropListResponse(last_version=self._store.drop(_list_key(request.list)))
