"""The `nixlookup.v1.Admin` service: proto in, `Store` calls, proto out. No rules live here.

- Reload, Upload, ApplyDelta, Compact and DropList map onto `Store.reload`, `apply_delta`, `compact` and
  `drop`; every refusal is a `NixlookupError` the `RpcGuard` interceptor turns into its status
  (FAILED_PRECONDITION for a failed validation or version mismatch, INVALID_ARGUMENT for a malformed
  request or unreadable file, NOT_FOUND for an unknown list, PERMISSION_DENIED for a principal without
  the role or caller, RESOURCE_EXHAUSTED for an upload over --max-upload-bytes).
- Authorisation (docs/security.md): a caller's list needs role ``lists`` and that caller; the register,
  Compact, reloads from server paths, the audit log and usage need role ``admin``.
- Every action, allowed or refused, appends one durable record to the audit log (`store.AuditLog`):
  principal, peer, list, versions before and after, counts, outcome. The record is written before the
  reply, so an acknowledged change always has one.
- ApplyDelta answers only after `Store.apply_delta` returned, i.e. after the delta is durable.
- The store's calls block (file reads, index builds, fsync, the write lock), so each RPC's body runs in
  the admin executor with the call's context (its principal) copied, never on the event loop that answers
  Checks; an Upload's chunks are fetched from the loop one at a time (`_chunks_from_the_loop`). The
  grpc.aio call context itself never leaves the loop: what a thread needs of it (the peer, for the audit
  record) is read before (grpc.aio's context is not thread-safe: reading it from a thread after the call
  failed, e.g. on an oversized Upload message, crashed the process).
- Upload sends the file's bytes instead of naming a path on the server (`_upload.UploadInbox`), validated
  exactly like a reload. Path reloads read with the server's permissions; with `reload_root`
  (``--reload-root``) only files inside that directory may be named (PERMISSION_DENIED otherwise,
  symlinks resolved first); with an auth file and no `reload_root`, path reloads are off (use Upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import numpy as np
from grpc import aio
from numpy.typing import NDArray

from nixlookup.server.errors import InvalidArgumentError, NixlookupError, PermissionDeniedError
from nixlookup.server.rpc._auth import authorize, current_principal
from nixlookup.server.rpc._convert import (
    audit_record,
    datetime_to_timestamp,
    described_list_info,
    list_ref,
    timestamp_to_datetime,
)
from nixlookup.server.rpc._metering import Meter
from nixlookup.server.rpc._principals import Role
from nixlookup.server.rpc._upload import DEFAULT_MAX_UPLOAD_BYTES, UploadInbox
from nixlookup.server.store import (
    REGISTER_KEY,
    AuditLog,
    AuditRecord,
    ListKey,
    ListKind,
    ReloadResult,
    Store,
    check_list_key,
    check_reload_path,
    shown_path,
)
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["AdminServicer"]

_T = TypeVar("_T")

if TYPE_CHECKING:
    _Context = aio.ServicerContext[Any, Any]
else:
    _Context = aio.ServicerContext


def _chunks_from_the_loop(requests: AsyncIterator[_T], loop: asyncio.AbstractEventLoop) -> Iterator[_T]:
    """The messages of a client stream, for a thread: each one awaited on the loop the call lives on."""
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(anext(requests), loop).result()  # type: ignore[arg-type]
        except StopAsyncIteration:
            return


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


def _authorize_list(key: ListKey) -> None:
    """A caller's list: role `lists` as that caller; the register: role `admin`."""
    if key == REGISTER_KEY:
        authorize(current_principal(), Role.ADMIN)
    else:
        authorize(current_principal(), Role.LISTS, key[1])


def _reload_response(result: ReloadResult) -> lookup_pb2.ReloadResponse:
    return lookup_pb2.ReloadResponse(
        info=described_list_info(result.info),
        previous_version=result.previous_version,
        bad_lines=result.bad_lines,
        load_seconds=result.load_seconds,
    )


@dataclass
class _Entry:
    """What one audited call has found out so far (the record is written when it ends)."""

    key: ListKey | None = None
    version_before: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class AdminServicer(lookup_pb2_grpc.AdminServicer):
    """Reloads, uploads, deltas, compaction and list removal over gRPC, on top of one `Store`; the audit
    log and usage."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        reload_root: Path | None = None,
        path_reloads_need_root: bool = False,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        meter: Meter | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._reload_root = reload_root.resolve() if reload_root is not None else None
        self._path_reloads_need_root = path_reloads_need_root
        self._audit = AuditLog(store.root)
        self._inbox = UploadInbox(store.root, max_bytes=max_upload_bytes)
        self._meter = meter or Meter()

    # -- shared -------------------------------------------------------------------------------------------
    def _version(self, key: ListKey | None) -> str:
        if key is None:
            return ""
        found = self._store.holder.current().list_for(*key)
        return found.meta.version if found is not None else ""

    @contextlib.contextmanager
    def _audited(self, peer: str, operation: str) -> Iterator[_Entry]:
        """Run one Admin action and append its audit record, whatever the outcome."""
        entry = _Entry()
        outcome, detail = "OK", ""
        try:
            yield entry
        except NixlookupError as error:
            outcome, detail = error.status_code.name, str(error)
            raise
        except grpc.RpcError:
            outcome, detail = "CANCELLED", "the client went away"
            raise
        except Exception:
            outcome, detail = "INTERNAL", "internal server error (see the server log)"
            raise
        finally:
            self._audit.append(
                AuditRecord(
                    time=datetime.now(UTC),
                    principal=current_principal().name,
                    peer=peer,
                    operation=operation,
                    list_kind=entry.key[0].name if entry.key is not None else "",
                    caller=entry.key[1] if entry.key is not None else "",
                    version_before=entry.version_before,
                    version_after=self._version(entry.key),
                    counts=entry.counts,
                    outcome=outcome,
                    detail=detail,
                )
            )

    def _target(self, entry: _Entry, ref: lookup_pb2.ListRef) -> ListKey:
        key = _list_key(ref)
        entry.key = key
        entry.version_before = self._version(key)
        return key

    def _allowed_path(self, raw: str) -> Path:
        path = check_reload_path(raw)  # INVALID_ARGUMENT for an empty, NUL-holding or overlong path
        if self._reload_root is None:
            if self._path_reloads_need_root:
                raise PermissionDeniedError(
                    "reloads from server paths are off on this server (an auth file is in force and no "
                    "--reload-root is set); send the file with Admin/Upload (nixlookup admin upload)"
                )
            return path
        resolved = path.resolve()
        if not resolved.is_relative_to(self._reload_root):
            raise PermissionDeniedError(
                f"reload path {shown_path(raw)!r} is outside the allowed directory "
                f"{str(self._reload_root)!r} (--reload-root); copy the file there first, or send it with "
                "Admin/Upload"
            )
        return resolved

    def _info(self, key: ListKey) -> lookup_pb2.ListInfo:
        for description in self._store.describe():
            if description.key == key:
                return described_list_info(description)
        return lookup_pb2.ListInfo(list=list_ref(key))

    def _reload(
        self,
        key: ListKey,
        path: Path,
        options: lookup_pb2.ReloadRequest,
        entry: _Entry,
        *,
        source: str | None,
    ) -> lookup_pb2.ReloadResponse:
        result = self._store.reload(
            key,
            path,
            fmt=options.format or None,
            column=options.column or None,
            until_column=options.until_column or None,
            force=options.force,
            register_date=(
                timestamp_to_datetime(options.register_date, "register_date")
                if options.HasField("register_date")
                else None
            ),
            expect_version=options.expect_version or None,
            source=source,
        )
        entry.counts.update(count=result.info.count, lines=result.lines, bad_lines=result.bad_lines)
        return _reload_response(result)

    # -- the RPCs -----------------------------------------------------------------------------------------
    def _reload_rpc(self, request: lookup_pb2.ReloadRequest, peer: str) -> lookup_pb2.ReloadResponse:
        with self._audited(peer, "Reload") as entry:
            key = self._target(entry, request.list)
            authorize(current_principal(), Role.ADMIN)  # a path on the server: the operator's
            _authorize_list(key)
            if not request.path:
                raise InvalidArgumentError("path is required: a register file on the server")
            return self._reload(key, self._allowed_path(request.path), request, entry, source=None)

    def _upload_rpc(
        self, request_iterator: Iterator[lookup_pb2.UploadRequest], peer: str
    ) -> lookup_pb2.ReloadResponse:
        with self._audited(peer, "Upload") as entry:
            first = self._inbox.first(request_iterator)
            key = self._target(entry, first.reload.list)
            _authorize_list(key)  # before a byte is written
            received = self._inbox.receive(first, request_iterator)
            entry.counts["bytes"] = received.size
            try:
                return self._reload(
                    key,
                    received.path,
                    received.options,
                    entry,
                    source=f"upload:{received.name} by {current_principal().name}",
                )
            finally:
                self._inbox.discard(received.path)

    def _apply_delta_rpc(
        self, request: lookup_pb2.ApplyDeltaRequest, peer: str
    ) -> lookup_pb2.ApplyDeltaResponse:
        with self._audited(peer, "ApplyDelta") as entry:
            key = self._target(entry, request.list)
            _authorize_list(key)
            until = _packed(request.add_until_days_le, "add_until_days_le", 4, "<u4")
            result = self._store.apply_delta(
                key,
                add=_packed(request.add_e164_le, "add_e164_le", 8, "<u8").astype(np.uint64),
                add_until_days=until.astype(np.uint32) if until.size else None,
                remove=_packed(request.remove_e164_le, "remove_e164_le", 8, "<u8").astype(np.uint64),
                add_texts=list(request.add_texts),
                remove_texts=list(request.remove_texts),
                expect_version=request.expect_version or None,
            )
            entry.counts.update(
                added=result.added, removed=result.removed, count=result.count, invalid=result.invalid
            )
            return lookup_pb2.ApplyDeltaResponse(
                version=result.version,
                previous_version=result.previous_version,
                added=result.added,
                removed=result.removed,
                count=result.count,
                invalid=result.invalid,
            )

    def _compact_rpc(self, request: lookup_pb2.CompactRequest, peer: str) -> lookup_pb2.CompactResponse:
        with self._audited(peer, "Compact") as entry:
            key = None
            if not request.all:
                key = self._target(entry, request.list) if request.HasField("list") else REGISTER_KEY
                entry.key = key
            authorize(current_principal(), Role.ADMIN)
            compacted = self._store.compact(key)
            entry.counts["compacted"] = len(compacted)
            return lookup_pb2.CompactResponse(compacted=[self._info(each) for each in compacted])

    def _drop_list_rpc(self, request: lookup_pb2.DropListRequest, peer: str) -> lookup_pb2.DropListResponse:
        with self._audited(peer, "DropList") as entry:
            key = self._target(entry, request.list)
            _authorize_list(key)
            return lookup_pb2.DropListResponse(last_version=self._store.drop(key))

    def _get_audit_log_rpc(self, request: lookup_pb2.GetAuditLogRequest, peer: str) -> lookup_pb2.AuditLog:
        authorize(current_principal(), Role.ADMIN)
        since = timestamp_to_datetime(request.since) if request.HasField("since") else None
        records, skipped = self._audit.read(limit=request.limit, since=since)
        return lookup_pb2.AuditLog(records=[audit_record(r) for r in records], skipped_lines=skipped)

    def _get_usage_rpc(self, request: lookup_pb2.GetUsageRequest, peer: str) -> lookup_pb2.Usage:
        authorize(current_principal(), Role.ADMIN)
        return lookup_pb2.Usage(
            since=datetime_to_timestamp(self._meter.since),
            rows=[
                lookup_pb2.UsageRow(
                    principal=row.principal,
                    caller=row.caller,
                    calls=row.calls,
                    allowed=row.allowed,
                    blocked=row.blocked,
                    invalid=row.invalid,
                )
                for row in self._meter.rows(request.principal or None)
            ],
        )

    # -- on the event loop: each RPC's body in the admin executor -------------------------------------------
    async def _off_the_loop(self, work: Callable[..., _T], *args: Any) -> _T:
        """Run `work(*args)` in the admin executor, in a copy of this call's context (its principal)."""
        call = functools.partial(contextvars.copy_context().run, work, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def Reload(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.ReloadRequest, context: _Context
    ) -> lookup_pb2.ReloadResponse:
        return await self._off_the_loop(self._reload_rpc, request, context.peer())

    async def Upload(  # noqa: N802 - the name is the RPC's
        self, request_iterator: AsyncIterator[lookup_pb2.UploadRequest], context: _Context
    ) -> lookup_pb2.ReloadResponse:
        chunks = _chunks_from_the_loop(request_iterator, asyncio.get_running_loop())
        return await self._off_the_loop(self._upload_rpc, chunks, context.peer())

    async def ApplyDelta(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.ApplyDeltaRequest, context: _Context
    ) -> lookup_pb2.ApplyDeltaResponse:
        return await self._off_the_loop(self._apply_delta_rpc, request, context.peer())

    async def Compact(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.CompactRequest, context: _Context
    ) -> lookup_pb2.CompactResponse:
        return await self._off_the_loop(self._compact_rpc, request, context.peer())

    async def DropList(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.DropListRequest, context: _Context
    ) -> lookup_pb2.DropListResponse:
        return await self._off_the_loop(self._drop_list_rpc, request, context.peer())

    async def GetAuditLog(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.GetAuditLogRequest, context: _Context
    ) -> lookup_pb2.AuditLog:
        return await self._off_the_loop(self._get_audit_log_rpc, request, context.peer())

    async def GetUsage(  # noqa: N802 - the name is the RPC's
        self, request: lookup_pb2.GetUsageRequest, context: _Context
    ) -> lookup_pb2.Usage:
        return await self._off_the_loop(self._get_usage_rpc, request, context.peer())
