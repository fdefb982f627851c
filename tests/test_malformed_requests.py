"""Bytes that are not a valid request message get INVALID_ARGUMENT naming the request, never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
from conftest import RegisterFile, ServerFactory

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

CORRUPT = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, with a length that runs off the end


def _raw(value: bytes) -> bytes:
    return value


@pytest.mark.parametrize(("method", "streaming"), [("Check", False), ("CheckStream", True)])
def test_corrupt_request_bytes_are_invalid_argument(
    server_factory: ServerFactory, small_register: RegisterFile, method: str, streaming: bool
) -> None:
    """A corrupt message is refused as INVALID_ARGUMENT naming the RPC; the server keeps answering."""
    server = server_factory(["--register", str(small_register.path)])
    with grpc.insecure_channel(server.target) as channel:
        path = f"/nixlookup.v1.Lookup/{method}"

        def send_corrupt() -> None:
            if streaming:
                call = channel.stream_stream(path, request_serializer=_raw, response_deserializer=_raw)
                list(call(iter([CORRUPT]), timeout=5))
            else:
                unary = channel.unary_unary(path, request_serializer=_raw, response_deserializer=_raw)
                unary(CORRUPT, timeout=5)

        with pytest.raises(grpc.RpcError) as caught:
            send_corrupt()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert f"malformed {method} request" in (caught.value.details() or "")  # type: ignore[attr-defined]
        stub = lookup_pb2_grpc.LookupStub(channel)
        answer = stub.Check(lookup_pb2.CheckRequest(text="0701234567"), timeout=5)
        assert answer.verdict in (lookup_pb2.ALLOWED, lookup_pb2.BLOCKED)
