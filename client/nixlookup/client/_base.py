"""`BaseClient`: what `Client` and `AsyncClient` share, so only their I/O differs (httpx's pattern).

Held once, here: the configuration (target, deadlines, batch size, batches in flight, retry policy), the
security (`ChannelSecurity`: TLS credentials for the channel, the bearer token as per-call `metadata`),
the channel options (message limits, the retry and load-balancing service config), how a request is built
from a number, caller, purpose and `min_version`, how a deadline is chosen, how a bulk input is cut into
batches and how a failure becomes a typed error.

`min_version` (read-your-writes) is what an ``ApplyDelta`` or ``Reload`` answered: a version string for the
register, or a mapping from list names (``"register"``, ``"opt-out/acme"``, as ``nixlookup`` prints them)
to versions. A replica that serves an older version answers "behind" and the call is retried on another
(`_retry`). `Client` opens a `grpc.Channel`, `AsyncClient` a `grpc.aio.Channel`; each then
only calls, awaits and loops. `AdminClient` reuses the same configuration and channel options.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import grpc

from nixlookup.client._batching import Numbers, PreparedBatch, prepare_batches
from nixlookup.client._retry import DEFAULT_RETRY, BehindRetry, RetryPolicy, StreamResume, service_config_json
from nixlookup.client.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOAD_BALANCING,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    MESSAGE_LIMIT_BYTES,
    resolve_target,
)
from nixlookup.client.errors import NixlookupClientError, from_rpc_error
from nixlookup.client.security import ChannelSecurity
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import ListKind, Purpose

__all__ = ["BaseClient", "ChannelOptions", "MinVersion", "channel_options", "check_request", "min_positions"]

ChannelOptions = tuple[tuple[str, int | str], ...]
MinVersion = str | Mapping[str, str] | None
"""The versions an answer must rest on at least (see the module doc)."""


def min_positions(min_version: MinVersion) -> list[lookup_pb2.ListPosition]:
    """`min_version` as the wire's ListPositions (a str: the register's version)."""
    if not min_version:
        return []
    named = {"register": min_version} if isinstance(min_version, str) else min_version
    positions = []
    for name, version in named.items():
        slug, _, caller = name.partition("/")
        kind = ListKind.parse(slug)
        if (kind is ListKind.REGISTER) == bool(caller):
            raise ValueError(
                f"min_version names a list as register or KIND/CALLER (opt-out/acme), got {name!r}"
            )
        ref = lookup_pb2.ListRef(kind=int(kind), caller=caller)  # type: ignore[arg-type]
        positions.append(lookup_pb2.ListPosition(list=ref, version=version))
    return positions


def channel_options(
    retry: RetryPolicy = DEFAULT_RETRY,
    extra: ChannelOptions = (),
    load_balancing: str = DEFAULT_LOAD_BALANCING,
) -> list[tuple[str, int | str]]:
    """The options every nixlookup channel is opened with (the bench's raw-stub path uses them too)."""
    return [
        # 100k-number batches of long texts and their detailed answers fit; the server sets its own limit.
        ("grpc.max_receive_message_length", MESSAGE_LIMIT_BYTES),
        ("grpc.max_send_message_length", MESSAGE_LIMIT_BYTES),
        # Unary calls retried by grpc on UNAVAILABLE, spread over replicas by round_robin (see _retry).
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config_json(retry, load_balancing)),
        *extra,
    ]


def check_request(
    number: str | int, caller: str, purpose: Purpose | int | str, min_version: MinVersion = None
) -> lookup_pb2.CheckRequest:
    """The CheckRequest for one number: a str goes as written, an int as an E.164 key."""
    chosen = int(Purpose.parse(purpose))
    positions = min_positions(min_version)
    if isinstance(number, str):
        return lookup_pb2.CheckRequest(text=number, caller=caller, purpose=chosen, min_version=positions)  # type: ignore[arg-type]
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"a number is a str (as written) or an int (E.164 key), not {type(number).__name__}")
    if not 0 <= number < 2**64:
        raise ValueError("an int number must be an E.164 key between 0 and 2**64-1")
    return lookup_pb2.CheckRequest(e164=number, caller=caller, purpose=chosen, min_version=positions)  # type: ignore[arg-type]


class BaseClient:
    """Configuration and request building shared by the sync and asyncio clients; no I/O."""

    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        stream_timeout: float = DEFAULT_STREAM_TIMEOUT,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        retry: RetryPolicy = DEFAULT_RETRY,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
        token: str | None = None,
        security: ChannelSecurity | None = None,
        load_balancing: str = DEFAULT_LOAD_BALANCING,
    ) -> None:
        """`token`: sent as ``authorization: Bearer`` with every call; `security`: a token and TLS/mTLS
        settings together (`ChannelSecurity`); `credentials`: grpc channel credentials of your own;
        `load_balancing`: ``round_robin`` over every replica the target names, or ``pick_first``."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.target = resolve_target(target)
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.retry = retry
        chosen = security or ChannelSecurity()
        if token is not None:
            chosen = replace(chosen, token=token)
        self.metadata = chosen.metadata
        """What every call carries (the bearer token), or None."""
        self.credentials = credentials or chosen.channel_credentials()
        """The channel's TLS credentials; None: plaintext."""
        self.channel_options = channel_options(retry, options, load_balancing)
        self._connect()

    # -- the I/O twin's part -----------------------------------------------------------------------
    def _connect(self) -> None:
        """Open the channel and the stubs (`Client`: a sync channel, `AsyncClient`: a grpc.aio one)."""
        raise NotImplementedError

    def _sync_channel(self) -> grpc.Channel:
        if self.credentials is not None:
            return grpc.secure_channel(self.target, self.credentials, options=self.channel_options)
        return grpc.insecure_channel(self.target, options=self.channel_options)

    def _aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.target, self.credentials, options=self.channel_options)
        return grpc.aio.insecure_channel(self.target, options=self.channel_options)

    # -- requests ----------------------------------------------------------------------------------
    def _unary_deadline(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else timeout

    def _unary(self, timeout: float | None) -> dict[str, Any]:
        """The keyword arguments of one unary call: its deadline and the token."""
        return {"timeout": self._unary_deadline(timeout), "metadata": self.metadata}

    def _stream(self, timeout: float | None) -> dict[str, Any]:
        """The keyword arguments of one bulk stream: its deadline and the token."""
        return {"timeout": self._stream_deadline(timeout), "metadata": self.metadata}

    def _stream_deadline(self, timeout: float | None) -> float:
        return self.stream_timeout if timeout is None else timeout

    def _prepared(
        self,
        numbers: Numbers,
        *,
        caller: str,
        purpose: Purpose | int | str,
        want_details: bool,
        batch_size: int | None,
        min_version: MinVersion = None,
    ) -> Iterator[PreparedBatch]:
        return prepare_batches(
            numbers,
            batch_size=batch_size or self.batch_size,
            caller=caller,
            purpose=Purpose.parse(purpose),
            want_details=want_details,
            min_version=min_positions(min_version),
        )

    # -- failures ----------------------------------------------------------------------------------
    def _error(self, error: grpc.RpcError, method: str) -> NixlookupClientError:
        return from_rpc_error(error, target=self.target, method=method)

    def _resume(self) -> StreamResume:
        return StreamResume(self.retry, target=self.target)

    def _behind(self, method: str) -> BehindRetry:
        return BehindRetry(self.retry, target=self.target, method=method)
