"""`AdminClient`: the `nixlookup.v1.Admin` service (reload, deltas, compaction, dropping lists) for Python.

- One channel, opened with the same target resolution and channel options as `Client` (`BaseClient`);
  the deadline of every call defaults to `DEFAULT_ADMIN_TIMEOUT` (a reload of millions of numbers).
- Admin calls change the server, so they are never retried: a reload or delta that timed out may have
  landed. Failures raise the same typed `NixlookupClientError`s as the Lookup client.
- `apply_delta` cuts large adds/removes into `DEFAULT_DELTA_CHUNK`-number requests (each durable on its
  own when its answer arrives); only the first carries `expect_version`.
- Lists are named by `ListKind`, its value or its slug (``"register"``, ``"opt-out"``, ``"relationship"``,
  ``"consent"``: the CLI's ``--list-kind`` values), plus the owning caller ("" for the register).
- `upload` sends a file from this machine (client streaming, `UPLOAD_CHUNK_BYTES` per message) where a
  server reads no paths; `audit_log` and `usage` need the admin role.
- The token (per-call metadata) and TLS come from `ChannelSecurity`, as for `Client`.
- `nixlookup admin ...`, `nixlookup lists ...` and the benchmarks go through this class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from numpy.typing import NDArray

from nixlookup.client._base import BaseClient, ChannelOptions
from nixlookup.client.defaults import DEFAULT_ADMIN_TIMEOUT, DEFAULT_DELTA_CHUNK
from nixlookup.client.results import RegisterInfo
from nixlookup.client.security import ChannelSecurity
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc
from nixlookup.v1.vocabulary import ListKind

__all__ = ["CALLER_LIST_KINDS", "UPLOAD_CHUNK_BYTES", "AdminClient", "list_name", "list_ref"]

UPLOAD_CHUNK_BYTES = 1 << 20
"""1 MiB per UploadRequest: well under the server's --max-message-bytes (8 MiB by default)."""

CALLER_LIST_KINDS = tuple(kind for kind in ListKind if kind is not ListKind.REGISTER)
"""The lists a caller owns; each belongs to one caller, the register to none."""
_DATED = frozenset({ListKind.RELATIONSHIP, ListKind.CONSENT})


def list_ref(kind: ListKind | int | str, caller: str = "") -> lookup_pb2.ListRef:
    """The wire reference to one list; the register has no caller, every other list has one."""
    chosen = ListKind.parse(kind)
    if chosen is ListKind.REGISTER and caller:
        raise ValueError("a caller owns an opt-out, relationship or consent list, not the register")
    if chosen is not ListKind.REGISTER and not caller:
        raise ValueError(f"a {chosen.slug} list belongs to a caller: name it (--caller)")
    return lookup_pb2.ListRef(kind=int(chosen), caller=caller)  # type: ignore[arg-type]


def list_name(ref: lookup_pb2.ListRef) -> str:
    """``register``, or ``opt-out/acme``: how output names a list."""
    try:
        slug = ListKind(ref.kind).slug
    except ValueError:  # a kind newer than this client
        slug = str(ref.kind)
    return slug if not ref.caller else f"{slug}/{ref.caller}"


def _timestamp(moment: datetime) -> Timestamp:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return Timestamp(seconds=int(aware.timestamp()))


def _reload_request(
    path: str,
    *,
    kind: ListKind | int | str,
    caller: str,
    fmt: str,
    column: str,
    until_column: str,
    force: bool,
    register_date: datetime | None,
    expect_version: str,
) -> lookup_pb2.ReloadRequest:
    request = lookup_pb2.ReloadRequest(
        list=list_ref(kind, caller),
        path=path,
        format=fmt,
        column=column,
        until_column=until_column,
        force=force,
        expect_version=expect_version,
    )
    if register_date is not None:
        request.register_date.CopyFrom(_timestamp(register_date))
    return request


def _packed(keys: NDArray[np.uint64] | None) -> bytes:
    return b"" if keys is None else np.asarray(keys, dtype=np.uint64).astype("<u8").tobytes()


def _chunks(count: int, size: int) -> range:
    return range(0, max(count, 1), size)


class AdminClient(BaseClient):
    """Synchronous client of the Admin service (and GetRegisterInfo); see the module doc."""

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float = DEFAULT_ADMIN_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
        token: str | None = None,
        security: ChannelSecurity | None = None,
    ) -> None:
        super().__init__(
            target, timeout=timeout, credentials=credentials, options=options, token=token, security=security
        )

    def _connect(self) -> None:
        self._channel = self._sync_channel()
        self._admin = lookup_pb2_grpc.AdminStub(self._channel)
        self._lookup = lookup_pb2_grpc.LookupStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def register_info(self, *, timeout: float | None = None) -> RegisterInfo:
        """What the server serves (GetRegisterInfo, on the Lookup service)."""
        try:
            reply = self._lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "GetRegisterInfo") from None
        return RegisterInfo.from_proto(reply)

    def reload(
        self,
        path: Path | str,
        *,
        kind: ListKind | int | str = ListKind.REGISTER,
        caller: str = "",
        fmt: str = "",
        column: str = "",
        until_column: str = "",
        force: bool = False,
        register_date: datetime | None = None,
        expect_version: str = "",
        timeout: float | None = None,
    ) -> lookup_pb2.ReloadResponse:
        """Have the server load a new version of one list from `path` (a file the server can read)."""
        request = _reload_request(
            str(Path(path).resolve()), kind=kind, caller=caller, fmt=fmt, column=column,
            until_column=until_column, force=force, register_date=register_date,
            expect_version=expect_version,
        )  # fmt: skip
        try:
            reply: lookup_pb2.ReloadResponse = self._admin.Reload(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "Reload") from None
        return reply

    def apply_delta(
        self,
        *,
        kind: ListKind | int | str = ListKind.REGISTER,
        caller: str = "",
        add_texts: Sequence[str] = (),
        remove_texts: Sequence[str] = (),
        add_keys: NDArray[np.uint64] | None = None,
        remove_keys: NDArray[np.uint64] | None = None,
        until_day: int | NDArray[np.uint32] = 0,
        expect_version: str = "",
        chunk: int = DEFAULT_DELTA_CHUNK,
        timeout: float | None = None,
    ) -> list[lookup_pb2.ApplyDeltaResponse]:
        """Add and remove numbers (texts as written, or E.164 keys), durable when this returns.

        `until_day` is the end day (days since 1970-01-01) of the added entries of a relationship or
        consent list: one day for all, or one per added key (keys first, then texts, as on the wire).
        One request per `chunk` numbers; the answers in order.
        """
        ref = list_ref(kind, caller)
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        has_until = np.any(np.asarray(until_day) != 0)
        if has_until and ListKind(ref.kind) not in _DATED:
            raise ValueError("an end date (--until) applies to relationship and consent lists")
        add_keys = None if add_keys is None else np.asarray(add_keys, dtype=np.uint64)
        remove_keys = None if remove_keys is None else np.asarray(remove_keys, dtype=np.uint64)
        if add_keys is not None and add_keys.size and add_texts:
            raise ValueError("give the added numbers as keys or as texts, not both")
        add_count = add_keys.size if add_keys is not None and add_keys.size else len(add_texts)
        remove_count = remove_keys.size if remove_keys is not None and remove_keys.size else len(remove_texts)
        per_add = np.broadcast_to(np.asarray(until_day, dtype=np.uint32), (add_count,)) if has_until else None
        replies = []
        for start in _chunks(max(add_count, remove_count), chunk):
            window = slice(start, start + chunk)
            request = lookup_pb2.ApplyDeltaRequest(
                list=ref,
                add_e164_le=_packed(add_keys[window]) if add_keys is not None else b"",
                add_texts=list(add_texts[window]),
                remove_e164_le=_packed(remove_keys[window]) if remove_keys is not None else b"",
                remove_texts=list(remove_texts[window]),
                expect_version=expect_version if start == 0 else "",
            )
            if per_add is not None and per_add[window].size:
                request.add_until_days_le = per_add[window].astype("<u4").tobytes()
            try:
                replies.append(self._admin.ApplyDelta(request, **self._unary(timeout)))
            except grpc.RpcError as error:
                raise self._error(error, "ApplyDelta") from None
        return replies

    def compact(
        self, *, kind: ListKind | int | str = ListKind.REGISTER, caller: str = "", every_list: bool = False,
        timeout: float | None = None,
    ) -> list[lookup_pb2.ListInfo]:  # fmt: skip
        """Fold one list's journalled deltas (or every list's) into a new snapshot; the lists compacted."""
        request = lookup_pb2.CompactRequest(all=every_list)
        if not every_list:
            request.list.CopyFrom(list_ref(kind, caller))
        try:
            reply = self._admin.Compact(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "Compact") from None
        return list(reply.compacted)

    def drop(self, *, kind: ListKind | int | str, caller: str, timeout: float | None = None) -> str:
        """Drop a caller's list entirely; its last version."""
        request = lookup_pb2.DropListRequest(list=list_ref(kind, caller))
        try:
            reply = self._admin.DropList(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "DropList") from None
        return str(reply.last_version)

    def upload(  # deliberate twin of `reload`'s parameters: the same request, the file's bytes sent
        self,
        path: Path | str,
        *,
        kind: ListKind | int | str = ListKind.REGISTER,
        caller: str = "",
        fmt: str = "",
        column: str = "",
        until_column: str = "",
        force: bool = False,
        expect_version: str = "",
        timeout: float | None = None,
    ) -> lookup_pb2.ReloadResponse:
        """Send the file at `path` (on this machine) and have the server load it as a new version."""
        source = Path(path)
        if not source.is_file():
            raise ValueError(f"{source}: no such file")
        options = _reload_request(
            source.name, kind=kind, caller=caller, fmt=fmt, column=column, until_column=until_column,
            force=force, register_date=None, expect_version=expect_version,
        )  # fmt: skip

        def requests() -> Iterator[lookup_pb2.UploadRequest]:
            yield lookup_pb2.UploadRequest(reload=options)
            with source.open("rb") as handle:
                while chunk := handle.read(UPLOAD_CHUNK_BYTES):
                    yield lookup_pb2.UploadRequest(data=chunk)

        try:
            reply: lookup_pb2.ReloadResponse = self._admin.Upload(requests(), **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "Upload") from None
        return reply

    def audit_log(
        self, *, limit: int = 50, since: datetime | None = None, timeout: float | None = None
    ) -> lookup_pb2.AuditLog:
        """The newest `limit` audit records (0: all), at or after `since` (role admin)."""
        request = lookup_pb2.GetAuditLogRequest(limit=limit)
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        try:
            log: lookup_pb2.AuditLog = self._admin.GetAuditLog(request, **self._unary(timeout))
        except grpc.RpcError as error:
            raise self._error(error, "GetAuditLog") from None
        return log

    def usage(self, *, principal: str = "", timeout: float | None = None) -> lookup_pb2.Usage:
        """Numbers checked per principal and caller since the server started (role admin)."""
        try:
            usage: lookup_pb2.Usage = self._admin.GetUsage(
                lookup_pb2.GetUsageRequest(principal=principal), **self._unary(timeout)
            )
        except grpc.RpcError as error:
            raise self._error(error, "GetUsage") from None
        return usage
