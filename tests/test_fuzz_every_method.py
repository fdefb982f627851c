"""Every method of every service the server offers, fuzzed through the real port: never INTERNAL or UNKNOWN.

The methods are not listed here: they are discovered through the server's own reflection service (Lookup,
Admin, health, reflection itself), and each request type's fields come from its descriptor. Four kinds
of input per method:
- random bytes as the request message (a generic ``channel.unary_unary(method)`` with no serializer);
- valid messages whose every field hypothesis may fill with extreme values: integers at and beyond their
  edges, enum values that do not exist, NaN and infinities, strings with NUL bytes, phone numbers and
  paths, odd-length packed keys, Timestamps anywhere in int64 seconds;
- a valid request (`_SEEDS`) with one field, at any depth, replaced by an extreme value, so the value gets
  past the checks of the other fields and reaches the code that uses it;
- one message over the size limit (RESOURCE_EXHAUSTED).
Every status is allowed except INTERNAL and UNKNOWN (a bug, or an error the server failed to name). Server
streams are read up to their first message and then cancelled (Health/Watch never ends by itself).
Afterwards the server must be healthy: the same process, health SERVING, no ``rpc_failed`` in its log, and
a Check answered after a fresh reload. Bounded: a few hundred calls, well under 20 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import (
    RegisterFile,
    ServerFactory,
    data_dir_server,
    seeded_register,
)
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_TIMEOUT = 5.0
_EXAMPLES = 25
"""Per method and kind of input (60 for one changed field): ~12 methods x (25 + 25 + 60), ~1,300 calls."""
_MAX_DEPTH = 3

_INT_RANGES = {
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}


@dataclass(frozen=True)
class _Method:
    path: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [low, high, 0, 1, low + 1, high - 1, 46701234567 if high >= 46701234567 else high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _strings(register: Path) -> st.SearchStrategy[str]:
    interesting = [
        "",
        "\x00",
        "a\x00b",
        "070-123 45 67",
        "+46701234567",
        "x" * 5000,
        "/",
        ".",
        "..",
        "/dev/null",
        "/proc/self/status",
        str(register),
        str(register) + "\x00",
        str(register.parent),
        "/" + "d/" * 2100,
        "acme",
        "Acme AB/Sverige",
        "\ud7ff\ue000\U0010ffff",
    ]
    return st.one_of(st.sampled_from(interesting), st.text(max_size=40))


def _bytes() -> st.SearchStrategy[bytes]:
    packed = st.lists(st.integers(0, 2**64 - 1), max_size=20).map(
        lambda keys: np.array(keys, dtype="<u8").tobytes()
    )
    return st.one_of(st.binary(max_size=200), packed, st.sampled_from([b"\x00" * 7, b"\xff" * 8]))


def _value(field: FieldDescriptor, depth: int, register: Path) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one per type
    kind = field.type
    if kind in _INT_RANGES:
        return _integers(*_INT_RANGES[kind])
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        width = 64 if kind == FieldDescriptor.TYPE_DOUBLE else 32
        return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0]), st.floats(width=width))
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings(register)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(-(2**31), 2**31 - 1))
    return _messages(field.message_type, depth + 1, register)


def _messages(descriptor: Descriptor, depth: int, register: Path) -> st.SearchStrategy[Message]:
    """Messages of `descriptor` with any subset of fields set to extreme values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > _MAX_DEPTH:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        value = _value(field, depth, register)
        fields[field.name] = st.none() | (st.lists(value, max_size=4) if _repeated(field) else value)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            if value is not None:
                _set(message, descriptor.fields_by_name[name], value)
        return message

    return st.fixed_dictionaries(fields).map(build)


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if _repeated(field):
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _seeds(register: Path) -> dict[str, Message]:
    """A valid request for each of our methods (others start from the empty message)."""
    texts = ["070-123 45 67", "08-123 456 78"]
    return {
        "/nixlookup.v1.Lookup/Check": lookup_pb2.CheckRequest(text=texts[0], caller="acme"),
        "/nixlookup.v1.Lookup/CheckStream": lookup_pb2.CheckBatch(
            texts=texts, caller="acme", want_details=True
        ),
        "/nixlookup.v1.Admin/Reload": lookup_pb2.ReloadRequest(path=str(register), force=True),
        "/nixlookup.v1.Admin/ApplyDelta": lookup_pb2.ApplyDeltaRequest(
            list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_CONSENT, caller="acme"),
            add_texts=texts,
            add_until_days_le=np.array([20_500, 0], dtype="<u4").tobytes(),
        ),
        "/nixlookup.v1.Admin/Compact": lookup_pb2.CompactRequest(all=True),
        "/nixlookup.v1.Admin/DropList": lookup_pb2.DropListRequest(
            list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller="acme")
        ),
    }


def _fields(descriptor: Descriptor, prefix: tuple[str, ...] = (), depth: int = 0) -> list[tuple[str, ...]]:
    """Paths to every field of `descriptor`, nested messages' fields included (up to `_MAX_DEPTH`)."""
    found: list[tuple[str, ...]] = []
    for field in descriptor.fields:
        found.append((*prefix, field.name))
        if field.type == FieldDescriptor.TYPE_MESSAGE and not _repeated(field) and depth < _MAX_DEPTH:
            found.extend(_fields(field.message_type, (*prefix, field.name), depth + 1))
    return found


def _one_field_changed(seed: Message, register: Path) -> st.SearchStrategy[bytes]:
    """`seed` with one field (at any depth) set to an extreme value, serialized."""
    paths = _fields(seed.DESCRIPTOR)

    def change(path: tuple[str, ...]) -> st.SearchStrategy[bytes]:
        holder_descriptor = seed.DESCRIPTOR
        for name in path[:-1]:
            holder_descriptor = holder_descriptor.fields_by_name[name].message_type
        field = holder_descriptor.fields_by_name[path[-1]]
        value = _value(field, 0, register)

        def apply(chosen: Any) -> bytes:
            message = type(seed)()
            message.CopyFrom(seed)
            holder = message
            for name in path[:-1]:
                holder = getattr(holder, name)
            holder.ClearField(field.name)
            _set(holder, field, chosen)
            return message.SerializeToString()

        return (st.lists(value, max_size=4) if _repeated(field) else value).map(apply)

    return st.sampled_from(paths).flatmap(change)


def _discover(channel: grpc.Channel) -> list[_Method]:
    """Every method of every service the server lists through reflection."""
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)
    methods: list[_Method] = []
    for service_name in database.get_services():
        service = pool.FindServiceByName(service_name)
        method: MethodDescriptor
        for method in service.methods:
            methods.append(
                _Method(
                    path=f"/{service.full_name}/{method.name}",
                    request=message_factory.GetMessageClass(method.input_type),
                    client_streaming=method.client_streaming,
                    server_streaming=method.server_streaming,
                )
            )
    return methods


def _call(channel: grpc.Channel, method: _Method, payload: bytes) -> grpc.StatusCode:
    """Send `payload` as the request (the only message of a client stream); the status it ends with."""
    identity: Callable[[bytes], bytes] = lambda raw: raw  # noqa: E731 - a serializer that sends bytes as is
    options: dict[str, Any] = {"request_serializer": identity, "response_deserializer": identity}
    try:
        if method.server_streaming:
            factory = channel.stream_stream if method.client_streaming else channel.unary_stream
            stream = factory(method.path, **options)
            responses = stream(iter([payload]) if method.client_streaming else payload, timeout=_TIMEOUT)
            try:
                next(responses, None)
            finally:
                responses.cancel()
            code = responses.code()
            return grpc.StatusCode.OK if code is grpc.StatusCode.CANCELLED else code
        factory_unary = channel.stream_unary if method.client_streaming else channel.unary_unary
        unary = factory_unary(method.path, **options)
        unary(iter([payload]) if method.client_streaming else payload, timeout=_TIMEOUT)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture(name="register", scope="module")
def fixture_register(tmp_path_factory: pytest.TempPathFactory) -> RegisterFile:
    return seeded_register(tmp_path_factory, 1000, seed=601)


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory, register: RegisterFile, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    return data_dir_server(
        module_server_factory, register, tmp_path_factory, "--max-message-bytes", "1048576"
    )


@pytest.fixture(name="channel", scope="module")
def fixture_channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as channel:
        yield channel


@pytest.fixture(name="methods", scope="module")
def fixture_methods(channel: grpc.Channel) -> list[_Method]:
    methods = _discover(channel)
    services = {method.path.split("/")[1] for method in methods}
    assert {"nixlookup.v1.Lookup", "nixlookup.v1.Admin", "grpc.health.v1.Health"} <= services
    assert any("ServerReflection" in service for service in services)
    return methods


def _fuzz(
    channel: grpc.Channel,
    methods: list[_Method],
    payloads: Callable[[_Method], st.SearchStrategy[bytes]],
    *,
    examples: int = _EXAMPLES,
) -> None:
    """Up to `examples` payloads to each method; no INTERNAL or UNKNOWN."""
    for method in methods:
        _fuzzer(channel, method, payloads(method), examples)()


def _fuzzer(
    channel: grpc.Channel, method: _Method, payloads: st.SearchStrategy[bytes], examples: int
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(payload=payloads)
    def fuzz(payload: bytes) -> None:
        code = _call(channel, method, payload)
        assert code not in _FORBIDDEN, f"{method.path} answered {code.name} to {payload[:80]!r}"

    return fuzz  # type: ignore[no-any-return]


def test_random_bytes_to_every_method_never_internal(
    channel: grpc.Channel, methods: list[_Method], server: ServerProcess
) -> None:
    """Random bytes as the request message of every method: a status that names the problem."""
    _fuzz(channel, methods, lambda _method: st.binary(max_size=512))
    assert server.running


def test_extreme_field_values_to_every_method_never_internal(
    channel: grpc.Channel, methods: list[_Method], server: ServerProcess, register: RegisterFile
) -> None:
    """Well-formed messages with extreme values in every field of every method's request."""
    pool_strategies = {
        method.path: _messages(method.request.DESCRIPTOR, 0, register.path).map(
            lambda m: m.SerializeToString()
        )
        for method in methods
    }
    _fuzz(channel, methods, lambda method: pool_strategies[method.path])
    assert server.running


def test_one_extreme_field_in_a_valid_request_never_internal(
    channel: grpc.Channel, methods: list[_Method], server: ServerProcess, register: RegisterFile
) -> None:
    """A valid request of every method with one field, at any depth, set to an extreme value."""
    seeds = _seeds(register.path)
    strategies = {
        method.path: _one_field_changed(seeds.get(method.path) or method.request(), register.path)
        for method in methods
        if _fields(method.request.DESCRIPTOR)
    }
    _fuzz(
        channel,
        [method for method in methods if method.path in strategies],
        lambda method: strategies[method.path],
        examples=60,
    )
    assert server.running


def test_oversized_requests_are_resource_exhausted(channel: grpc.Channel, methods: list[_Method]) -> None:
    """A request over --max-message-bytes gets RESOURCE_EXHAUSTED from every method, client streams
    included (an oversized Upload message once crashed the grpc.aio server: a worker thread read the
    call's context after grpc had failed the call)."""
    oversized = lookup_pb2.CheckBatch(e164_le=bytes(2 * 1024 * 1024)).SerializeToString()
    for method in methods:
        assert _call(channel, method, oversized) == grpc.StatusCode.RESOURCE_EXHAUSTED, method.path


def test_the_server_is_healthy_after_the_fuzzing(
    server: ServerProcess, channel: grpc.Channel, register: RegisterFile
) -> None:
    """Same process, health SERVING, no unexpected failure in the log, and a fresh reload answers."""
    assert server.running
    assert server.health_status("") == "SERVING"
    assert "rpc_failed" not in server.log_text()
    admin = lookup_pb2_grpc.AdminStub(channel)
    admin.Reload(lookup_pb2.ReloadRequest(path=str(register.path), force=True), timeout=30)
    assert server.health_status("nixlookup.v1.Lookup") in {"SERVING", "NOT_SERVING"}
    lookup = lookup_pb2_grpc.LookupStub(channel)
    reply = lookup.Check(lookup_pb2.CheckRequest(e164=int(register.keys[0])), timeout=5)
    assert reply.verdict == lookup_pb2.BLOCKED
