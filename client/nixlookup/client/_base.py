"""`BaseClient`: what `Client` and `AsyncClient` share, so only their I/O differs (httpx's pattern).

Held once, here: the configuration (target, deadlines, batch size, batches in flight, retry policy), the
security (`ChannelSecurity`: TLS credentials for the channel, the bearer token as per-call `metadata`),
the channel options (message limits and the retry service config), how a request is built from a number,
caller and purpose, how a deadline is chosen, how a bulk input is cut into batches and how a failure
becomes a typed error. `Client` opens a `grpc.Channel`, `AsyncClient` a `grpc.aio.Channel`; each then
only calls, awaits and loops. `AdminClient` reuses the same configuration and channel options.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc

from nixlookup.client._batching import Numbers, PreparedBatch, prepare_batches
from nixlookup.client._retry import DEFAULT_RETRY, RetryPolicy, StreamResume, service_config_json
from nixlookup.client.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_STREAM_TIMEOUT,
    DEFAULT_TIMEOUT,
    MESSAGE_LIMIT_BYTES,
    resolve_target,
)
from nixlookup.client.errors import NixlookupClientError, from_rpc_error
from nixlookup.client.security import ChannelSecurity
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import Purpose

__all__ = ["BaseClient", "ChannelOptions", "channel_options", "check_request"]

ChannelOptions = tuple[tuple[str, int | str], ...]


def channel_options(
    retry: RetryPolicy = DEFAULT_RETRY, extra: ChannelOptions = ()
) -> list[tuple[str, int | str]]:
    """The options every nixlookup channel is opened with (the bench's raw-stub path uses them too)."""
    return [
        # 100k-number batches of long texts and their detailed answers fit; the server sets its own limit.
        ("grpc.max_receive_message_length", MESSAGE_LIMIT_BYTES),
        ("grpc.max_send_message_length", MESSAGE_LIMIT_BYTES),
        # Unary calls retried by grpc on UNAVAILABLE (see _retry); on by default, said so here.
        ("grpc.enable_retries", 1),
        ("grpc.service_config", service_config_json(retry)),
        *extra,
    ]


def check_request(number: str | int, caller: str, purpose: Purpose | int | str) -> lookup_pb2.CheckRequest:
    """The CheckRequest for one number: a str goes as written, an int as an E.164 key."""
    chosen = int(Purpose.parse(purpose))
    if isinstance(number, str):
        return lookup_pb2.CheckRequest(text=number, caller=caller, purpose=chosen)  # type: ignore[arg-type]
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"a number is a str (as written) or an int (E.164 key), not {type(number).__name__}")
    if not 0 <= number < 2**64:
        raise ValueError("an int number must be an E.164 key between 0 and 2**64-1")
    return lookup_pb2.CheckRequest(e164=number, caller=caller, purpose=chosen)  # type: ignore[arg-type]


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
    ) -> None:
        """`token`: sent as ``authorization: Bearer`` with every call; `security`: a token and TLS/mTLS
        settings together (`ChannelSecurity`); `credentials`: grpc channel credentials of your own."""
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
        self.channel_options = channel_options(retry, options)
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
    ) -> Iterator[PreparedBatch]:
        return prepare_batches(
            numbers,
            batch_size=batch_size or self.batch_size,
            caller=caller,
            purpose=Purpose.parse(purpose),
            want_details=want_details,
        )

    # -- failures ----------------------------------------------------------------------------------
    def _error(self, error: grpc.RpcError, method: str) -> NixlookupClientError:
        return from_rpc_error(error, target=self.target, method=method)

    def _resume(self) -> StreamResume:
        return StreamResume(self.retry, target=self.target)
