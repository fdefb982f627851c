"""The contenders the harness measures nixlookup against answer correctly: the bare grpcio reference
server (a real process) and Redis (a real redis-server, skipped with a message when it is not installed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nixlookup.bench.grpcload import bulk_check, unary_check
from nixlookup.bench.procs import live_pids
from nixlookup.bench.redisbench import (
    load_register,
    redis_bulk_check,
    redis_memory,
    redis_server,
    redis_server_binary,
    redis_unary_check,
)
from nixlookup.bench.refserver import naive_key
from nixlookup.bench.servers import RunningServer, reference_server
from nixlookup.bench.workload import Workload, make_workload
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

needs_redis = pytest.mark.skipif(
    redis_server_binary() is None,
    reason="redis-server is not installed (apt-get install redis-server): Redis contender not tested",
)


@pytest.fixture(name="workload", scope="module")
def fixture_workload() -> Workload:
    return make_workload(20_000, 6_000, seed=11)


@pytest.fixture(name="reference", scope="module")
def fixture_reference(
    workload: Workload, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with reference_server(workload.register, tmp_path_factory.mktemp("reference")) as server:
        yield server


@pytest.mark.parametrize(
    ("text", "key"),
    [("070-123 45 67", 46701234567), ("+46 70 123 45 67", 46701234567), ("0046701234567", 46701234567),
     ("08-123 456 78", 46812345678), ("", 0), ("abc", 0)],
)  # fmt: skip
def test_naive_key(text: str, key: int) -> None:
    """The reference server's minimal normaliser reads the written forms the benchmark sends."""
    assert naive_key(text) == key


def test_reference_server_answers_like_its_set(workload: Workload, reference: RunningServer) -> None:
    """Check and CheckStream (bytes and texts) of the reference server agree with the expected hits."""
    stats, wrong = unary_check(
        reference.target,
        workload.queries,
        workload.expected_blocked,
        in_flight=4,
        max_calls=400,
        max_seconds=20,
    )
    assert (stats.calls, wrong) == (400, 0)
    for mode in ("bytes", "texts"):
        bulk = bulk_check(
            reference.target, workload.queries, workload.expected_blocked, batch_size=1000, mode=mode,
            texts=workload.query_texts(workload.queries.size), max_seconds=20,
        )  # fmt: skip
        assert bulk.correct
        assert bulk.numbers == workload.queries.size


def test_reference_server_reports_its_register(workload: Workload, reference: RunningServer) -> None:
    """GetRegisterInfo carries the register's count, so a run can confirm what was loaded."""
    with grpc.insecure_channel(reference.target) as channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), timeout=10
        )
    assert info.register.count == workload.size


@needs_redis
def test_redis_contender_loads_answers_and_stops(workload: Workload, tmp_path: Path) -> None:
    """A private redis-server is filled, answers SISMEMBER/SMISMEMBER right, and is stopped by pid."""
    with redis_server(tmp_path / "redis") as handle:
        pid = handle.process.pid
        before = redis_memory(handle)
        client = handle.client()
        load_s = load_register(client, workload.register)
        assert client.scard("nix:register") == workload.size
        client.close()
        after = redis_memory(handle)
        assert load_s > 0
        assert (
            after.used_memory - before.used_memory > workload.size * 8
        )  # a SET costs far more than 8 B/number
        stats, wrong = redis_unary_check(
            handle, workload.queries, workload.expected_blocked, in_flight=4, max_calls=500, max_seconds=20
        )
        assert (stats.calls, wrong) == (500, 0)
        bulk = redis_bulk_check(
            handle, workload.queries, workload.expected_blocked, batch_size=1000, max_seconds=20
        )
        assert bulk.correct
        assert bulk.numbers == workload.queries.size
    assert pid not in live_pids()
    assert handle.process.popen.returncode is not None


def test_bulk_batches_carry_the_caller_and_every_number(workload: Workload) -> None:
    """Every batch the bulk driver sends names the caller; together they hold each query once, in order."""
    from nixlookup.bench.grpcload import build_batches

    batches = build_batches(workload.queries, None, 2500, "bytes", "acme")
    assert {batch.caller for batch in batches} == {"acme"}
    sent = b"".join(batch.e164_le for batch in batches)
    assert sent == workload.queries.astype("<u8").tobytes()
    texts = workload.query_texts(workload.queries.size)
    text_batches = build_batches(workload.queries, texts, 2500, "texts", "acme")
    assert {batch.caller for batch in text_batches} == {"acme"}
    assert [t for batch in text_batches for t in batch.texts] == texts
