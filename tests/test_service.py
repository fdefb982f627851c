"""The Lookup service through a real server: verdicts, limits, malformed requests, health, reflection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from numpy.typing import NDArray

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_BIG = 64 * 1024 * 1024
_OPTIONS = [("grpc.max_send_message_length", _BIG), ("grpc.max_receive_message_length", _BIG)]


@pytest.fixture(name="server", scope="module")
def fixture_server(module_server_factory: ServerFactory, small_register: RegisterFile) -> ServerProcess:
    """One server for the module, serving the small register."""
    return module_server_factory(["--register", str(small_register.path)])


@pytest.fixture(name="stub", scope="module")
def fixture_stub(server: ServerProcess) -> Iterator[lookup_pb2_grpc.LookupStub]:
    """A raw generated stub (not the client) on one channel."""
    with grpc.insecure_channel(server.target, options=_OPTIONS) as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


def _queries(register: RegisterFile, seed: int = 7, size: int = 4_000) -> NDArray[np.uint64]:
    """Half register members, half random mobile numbers (mostly non-members), shuffled."""
    rng = np.random.default_rng(seed)
    members = rng.choice(register.keys, size=size // 2, replace=False)
    others = (
        np.uint64(46_700_000_000) + rng.integers(0, 10_000_000, size=size // 2).astype(np.uint64)
    ).astype(np.uint64)
    queries = np.concatenate([members, others])
    rng.shuffle(queries)
    return queries


def _bits(packed: bytes, count: int) -> NDArray[np.bool_]:
    return np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=count, bitorder="little").astype(bool)


def _stream(
    stub: lookup_pb2_grpc.LookupStub, batches: list[lookup_pb2.CheckBatch]
) -> list[lookup_pb2.CheckBatchResult]:
    return list(stub.CheckStream(iter(batches), timeout=30))


def test_unary_verdicts_agree_with_a_set(
    stub: lookup_pb2_grpc.LookupStub, small_register: RegisterFile
) -> None:
    """Check by key and by text says BLOCKED exactly for the register's members."""
    for key in _queries(small_register, size=200).tolist():
        expected = lookup_pb2.BLOCKED if key in small_register.key_set else lookup_pb2.ALLOWED
        by_key = stub.Check(lookup_pb2.CheckRequest(e164=key), timeout=5)
        national = "0" + str(key)[2:]
        by_text = stub.Check(
            lookup_pb2.CheckRequest(text=f"{national[:3]}-{national[3:6]} {national[6:]}"), timeout=5
        )
        assert by_key.verdict == expected
        assert by_text.verdict == expected
        assert by_text.e164 == key
        assert by_key.reason == (
            lookup_pb2.NIX_REGISTERED if expected == lookup_pb2.BLOCKED else lookup_pb2.NOT_REGISTERED
        )


def test_stream_verdicts_agree_with_a_set_and_with_texts(
    stub: lookup_pb2_grpc.LookupStub, small_register: RegisterFile
) -> None:
    """CheckStream over packed keys and over the same numbers as texts gives the set's answers."""
    queries = _queries(small_register)
    expected = np.array([int(k) in small_register.key_set for k in queries.tolist()])
    packed = [
        lookup_pb2.CheckBatch(e164_le=chunk.astype("<u8").tobytes(), batch_id=i, want_details=True)
        for i, chunk in enumerate(np.array_split(queries, 3))
    ]
    texts = [
        lookup_pb2.CheckBatch(texts=[f"+{k}" for k in chunk.tolist()], batch_id=i, want_details=True)
        for i, chunk in enumerate(np.array_split(queries, 3))
    ]
    by_keys = _stream(stub, packed)
    by_texts = _stream(stub, texts)
    assert [r.batch_id for r in by_keys] == [0, 1, 2]
    blocked_keys = np.concatenate([_bits(r.blocked, r.count) for r in by_keys])
    blocked_texts = np.concatenate([_bits(r.blocked, r.count) for r in by_texts])
    assert np.array_equal(blocked_keys, expected)
    assert np.array_equal(blocked_texts, expected)
    normalised = np.concatenate([np.frombuffer(r.e164_le, dtype="<u8") for r in by_texts])
    assert np.array_equal(normalised, queries)
    reasons = np.concatenate([np.frombuffer(r.reasons, dtype=np.uint8) for r in by_keys])
    assert set(reasons[expected].tolist()) == {lookup_pb2.NIX_REGISTERED}
    assert set(reasons[~expected].tolist()) == {lookup_pb2.NOT_REGISTERED}


def test_invalid_numbers_come_back_invalid_with_a_reason(stub: lookup_pb2_grpc.LookupStub) -> None:
    """Unparseable input is an INVALID answer with a reason and detail, never an error."""
    bad = ["", "hello", "070-12", "+46 70 123 45 67 89 01 23", "070-123 45 6x"]
    for text in bad:
        answer = stub.Check(lookup_pb2.CheckRequest(text=text), timeout=5)
        assert answer.verdict == lookup_pb2.INVALID, text
        assert answer.reason == lookup_pb2.INVALID_NUMBER
        assert answer.detail
        assert not answer.HasField("valid_until")
    (result,) = _stream(stub, [lookup_pb2.CheckBatch(texts=[*bad, "070-123 45 67"], want_details=True)])
    assert _bits(result.invalid, result.count).tolist() == [True] * len(bad) + [False]
    assert list(result.reasons[: len(bad)]) == [lookup_pb2.INVALID_NUMBER] * len(bad)
    (keys_result,) = _stream(stub, [lookup_pb2.CheckBatch(e164_le=np.array([0, 46, 2**63], "<u8").tobytes())])
    assert _bits(keys_result.invalid, 3).all()


def test_invalid_numbers_carry_their_problem_code(stub: lookup_pb2_grpc.LookupStub) -> None:
    """Check says why a number is invalid (`problem`); a stream batch with details carries one Problem
    byte per number when it holds an invalid one, and nothing at all when every number is valid."""
    cases = {
        "": lookup_pb2.PROBLEM_EMPTY,
        "hello": lookup_pb2.PROBLEM_BAD_CHARACTER,
        "070-12": lookup_pb2.PROBLEM_TOO_SHORT,
        "+46 70 123 45 67 89 01 23": lookup_pb2.PROBLEM_TOO_LONG,
        "070-123 45 67": lookup_pb2.PROBLEM_OK,
    }
    for text, problem in cases.items():
        assert stub.Check(lookup_pb2.CheckRequest(text=text), timeout=5).problem == problem, text
    (mixed,) = _stream(stub, [lookup_pb2.CheckBatch(texts=list(cases), want_details=True)])
    assert list(mixed.problems) == list(cases.values())
    keys = np.array([46_701_234_567, 2**63], "<u8").tobytes()
    (packed,) = _stream(stub, [lookup_pb2.CheckBatch(e164_le=keys, want_details=True)])
    assert list(packed.problems) == [lookup_pb2.PROBLEM_OK, lookup_pb2.PROBLEM_FOREIGN_NOT_IN_PLAN]
    (valid,) = _stream(stub, [lookup_pb2.CheckBatch(texts=["070-123 45 67"], want_details=True)])
    assert valid.problems == b"", "an all-valid batch pays nothing for problems"
    (lean,) = _stream(stub, [lookup_pb2.CheckBatch(texts=["070-12"])])
    assert lean.problems == b"", "without want_details no per-number bytes are sent"


def test_answers_name_the_register_version_and_valid_until(
    stub: lookup_pb2_grpc.LookupStub, small_register: RegisterFile
) -> None:
    """Every answer carries the register version and date; valid_until is that date + 2 months."""
    info = stub.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5)
    answer = stub.Check(lookup_pb2.CheckRequest(text="070-123 45 67"), timeout=5)
    assert answer.register_version == info.register.version
    assert info.register.count == len(small_register.key_set)
    assert info.register.source == str(small_register.path)
    register_date = answer.register_date.ToDatetime(tzinfo=UTC)
    valid_until = answer.valid_until.ToDatetime(tzinfo=UTC)
    months = (valid_until.year - register_date.year) * 12 + valid_until.month - register_date.month
    assert months == 2
    assert register_date <= datetime.now(UTC)


def test_oversized_batch_is_refused_naming_the_limit(stub: lookup_pb2_grpc.LookupStub) -> None:
    """A batch of 100,001 numbers gets INVALID_ARGUMENT and the message names 100000."""
    keys = np.full(100_001, 46_701_234_567, dtype="<u8")
    with pytest.raises(grpc.RpcError) as caught:
        _stream(stub, [lookup_pb2.CheckBatch(e164_le=keys.tobytes())])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "100000" in caught.value.details()  # type: ignore[attr-defined]
    (exactly,) = _stream(stub, [lookup_pb2.CheckBatch(e164_le=keys[:100_000].tobytes())])
    assert exactly.count == 100_000


@pytest.mark.parametrize(
    ("batch", "words"),
    [
        (lookup_pb2.CheckBatch(e164_le=b"\x01" * 8, texts=["070-123 45 67"]), "both"),
        (lookup_pb2.CheckBatch(e164_le=b"\x01" * 12), "multiple of 8"),
        (lookup_pb2.CheckBatch(texts=["070"], purpose=99), "purpose"),  # type: ignore[arg-type]
    ],
)
def test_malformed_batches_are_invalid_argument(
    stub: lookup_pb2_grpc.LookupStub, batch: lookup_pb2.CheckBatch, words: str
) -> None:
    """Both fields set, a length not a multiple of 8, an unknown purpose: INVALID_ARGUMENT saying which."""
    with pytest.raises(grpc.RpcError) as caught:
        _stream(stub, [batch])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert words in caught.value.details()  # type: ignore[attr-defined]


def test_check_without_a_number_is_invalid_argument(stub: lookup_pb2_grpc.LookupStub) -> None:
    """A CheckRequest with neither text nor e164 is a malformed request, not an INVALID answer."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Check(lookup_pb2.CheckRequest(caller="acme"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_too_large_message_is_resource_exhausted(stub: lookup_pb2_grpc.LookupStub) -> None:
    """A request over --max-message-bytes (8 MiB) gets RESOURCE_EXHAUSTED naming the limit in bytes."""
    texts = ["0" * 100] * 90_000  # ~9.2 MB, under the batch limit
    with pytest.raises(grpc.RpcError) as caught:
        _stream(stub, [lookup_pb2.CheckBatch(texts=texts)])
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    assert str(8 * 1024 * 1024) in caught.value.details()  # type: ignore[attr-defined]


def test_health_is_serving_and_reflection_lists_the_services(server: ServerProcess) -> None:
    """The standard health service says SERVING (server and Lookup); reflection names every service."""
    assert server.health_status() == "SERVING"
    assert server.health_status("nixlookup.v1.Lookup") == "SERVING"
    with grpc.insecure_channel(server.target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        names = {service.name for service in reply.list_services_response.service}
        health_stub = health_pb2_grpc.HealthStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            health_stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
    assert {
        "nixlookup.v1.Lookup",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_a_reader_that_stops_reading_does_not_make_the_server_buffer(
    stub: lookup_pb2_grpc.LookupStub, server: ServerProcess
) -> None:
    """With the answers unread, the server stops taking batches: a few are pulled, not all 400 (320 MB)."""
    keys = np.arange(46_700_000_000, 46_700_100_000, dtype="<u8").tobytes()
    pulled = 0
    total = 400

    def batches() -> Iterator[lookup_pb2.CheckBatch]:
        nonlocal pulled
        for batch_id in range(total):
            pulled += 1
            yield lookup_pb2.CheckBatch(e164_le=keys, want_details=True, batch_id=batch_id)

    rss_before = _rss_bytes(server.pid)
    responses = stub.CheckStream(batches(), timeout=60)
    first = next(responses)
    time.sleep(2.0)  # a reader that stopped reading
    pulled_while_stalled = pulled
    rss_growth = _rss_bytes(server.pid) - rss_before
    responses.cancel()  # type: ignore[attr-defined]
    assert first.batch_id == 0
    assert pulled_while_stalled < 60, f"{pulled_while_stalled} batches pulled with answers unread"
    assert rss_growth < 150 * 1024 * 1024


def test_each_batch_is_answered_from_one_version_while_streams_run_concurrently(
    stub: lookup_pb2_grpc.LookupStub, small_register: RegisterFile
) -> None:
    """Several concurrent streams each get every batch answered, in order, with the same version."""
    queries = _queries(small_register, seed=11)
    expected = np.array([int(k) in small_register.key_set for k in queries.tolist()])
    failures: list[str] = []

    def run() -> None:
        batches = [
            lookup_pb2.CheckBatch(e164_le=chunk.astype("<u8").tobytes(), batch_id=i)
            for i, chunk in enumerate(np.array_split(queries, 8))
        ]
        results = _stream(stub, batches)
        got = np.concatenate([_bits(r.blocked, r.count) for r in results])
        if [r.batch_id for r in results] != list(range(8)) or not np.array_equal(got, expected):
            failures.append("wrong answers")
        if len({r.register_version for r in results}) != 1:
            failures.append("mixed versions")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
