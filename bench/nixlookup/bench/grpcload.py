"""Load drivers for any server speaking `nixlookup.v1.Lookup`: per-call `Check` and bulk `CheckStream`.

The same drivers, with the same prebuilt requests, run against the real server and the reference server,
so the only thing that differs between two figures of a run is the server. Requests are built before the
clock starts (the client shares the machine's cores with the server; its own encoding cost is not what is
measured). Every run is bounded by a count and by a time budget, whichever comes first, and checks the
answers it gets against the expected hits: a fast wrong answer is reported as wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import grpc
import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.timing import BulkStats, LatencyStats, bulk_stats, drive_calls, latency_stats
from nixlookup.client import channel_options
from nixlookup.client.security import ChannelSecurity
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = [
    "BulkMode",
    "build_batches",
    "bulk_check",
    "unary_check",
    "wait_until_serving",
]

BulkMode = Literal["bytes", "texts"]

_CALL_TIMEOUT_S = 10.0


def _sync_channel(target: str, security: ChannelSecurity | None, **options: Any) -> grpc.Channel:
    credentials = security.channel_credentials() if security is not None else None
    if credentials is None:
        return grpc.insecure_channel(target, **options)
    return grpc.secure_channel(target, credentials, **options)


def _metadata(security: ChannelSecurity | None) -> tuple[tuple[str, str], ...] | None:
    return security.metadata if security is not None else None


def wait_until_serving(
    target: str, *, timeout_s: float, service: str = "", security: ChannelSecurity | None = None
) -> None:
    """Poll the standard health service until it says SERVING; raise TimeoutError otherwise."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with _sync_channel(target, security) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = f"status {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}"
            except grpc.RpcError as error:
                last_error = str(error.code())
            time.sleep(0.1)
    raise TimeoutError(f"{target} not SERVING after {timeout_s:.0f} s ({last_error})")


async def _unary_run(
    target: str,
    requests: Sequence[lookup_pb2.CheckRequest],
    expected_blocked: NDArray[np.bool_],
    *,
    in_flight: int,
    max_seconds: float,
    security: ChannelSecurity | None,
) -> tuple[list[int], float, int]:
    credentials = security.channel_credentials() if security is not None else None
    metadata = _metadata(security)
    channel = (
        grpc.aio.secure_channel(target, credentials, options=channel_options())
        if credentials is not None
        else grpc.aio.insecure_channel(target, options=channel_options())
    )
    async with channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        # One warm-up call per worker: connection set-up is not part of the steady-state figure.
        await asyncio.gather(
            *(stub.Check(requests[0], timeout=_CALL_TIMEOUT_S, metadata=metadata) for _ in range(in_flight))
        )

        async def check(index: int) -> bool:
            answer = await stub.Check(requests[index], timeout=_CALL_TIMEOUT_S, metadata=metadata)
            return bool(answer.verdict == lookup_pb2.BLOCKED)

        return await drive_calls(check, expected_blocked, in_flight=in_flight, max_seconds=max_seconds)


def unary_check(
    target: str,
    queries: NDArray[np.uint64],
    expected_blocked: NDArray[np.bool_],
    *,
    in_flight: int,
    max_calls: int,
    max_seconds: float,
    security: ChannelSecurity | None = None,
) -> tuple[LatencyStats, int]:
    """`Check` by e164 with `in_flight` concurrent callers (asyncio tasks on one channel).

    Returns the latency statistics and the number of wrong answers.
    """
    count = min(max_calls, queries.size)
    requests = [lookup_pb2.CheckRequest(e164=key) for key in queries[:count].tolist()]
    latencies, elapsed, wrong = asyncio.run(
        _unary_run(
            target,
            requests,
            expected_blocked[:count],
            in_flight=in_flight,
            max_seconds=max_seconds,
            security=security,
        )
    )
    return latency_stats(latencies, elapsed), wrong


def build_batches(
    queries: NDArray[np.uint64], texts: Sequence[str] | None, batch_size: int, mode: BulkMode, caller: str
) -> list[lookup_pb2.CheckBatch]:
    """`queries` (or their written `texts`) cut into CheckBatch messages of `batch_size`, all for `caller`."""
    batches: list[lookup_pb2.CheckBatch] = []
    for batch_id, start in enumerate(range(0, queries.size, batch_size)):
        stop = min(start + batch_size, queries.size)
        if mode == "bytes":
            batch = lookup_pb2.CheckBatch(
                e164_le=queries[start:stop].astype("<u8").tobytes(), batch_id=batch_id, caller=caller
            )
        else:
            if texts is None:
                raise ValueError("texts mode needs the queries as written")
            batch = lookup_pb2.CheckBatch(texts=texts[start:stop], batch_id=batch_id, caller=caller)
        batches.append(batch)
    return batches


def bulk_check(
    target: str,
    queries: NDArray[np.uint64],
    expected_blocked: NDArray[np.bool_],
    *,
    batch_size: int,
    mode: BulkMode,
    texts: Sequence[str] | None = None,
    caller: str = "",
    max_seconds: float,
    security: ChannelSecurity | None = None,
) -> BulkStats:
    """Send `queries` through one `CheckStream` in batches; numbers/s from first send to last answer.

    `caller` selects that company's lists on the server (its opt-outs and relationships change the
    expected answers, which `expected_blocked` must reflect).
    """
    batches = build_batches(queries, texts, batch_size, mode, caller)
    deadline_holder: list[float] = []

    def requests() -> Iterator[lookup_pb2.CheckBatch]:
        for batch in batches:
            if time.perf_counter() > deadline_holder[0]:
                return
            yield batch

    answered = 0
    answered_batches = 0
    blocked_seen = 0
    blocked_expected = 0
    correct = True
    metadata = _metadata(security)
    with _sync_channel(target, security, options=channel_options()) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        # Warm-up: one small batch on the same channel, so connection set-up is not timed.
        warm = lookup_pb2.CheckBatch(e164_le=queries[:16].astype("<u8").tobytes())
        for _ in stub.CheckStream(iter([warm]), timeout=_CALL_TIMEOUT_S, metadata=metadata):
            pass
        started = time.perf_counter()
        deadline_holder.append(started + max_seconds)
        for result in stub.CheckStream(requests(), timeout=max_seconds + 60, metadata=metadata):
            start = answered
            answered += result.count
            answered_batches += 1
            blocked = np.unpackbits(
                np.frombuffer(result.blocked, dtype=np.uint8), count=result.count, bitorder="little"
            ).astype(np.bool_)
            expected = expected_blocked[start:answered]
            if result.count != expected.size or not np.array_equal(blocked, expected):
                correct = False
            blocked_seen += int(blocked.sum())
            blocked_expected += int(expected.sum())
        elapsed = time.perf_counter() - started
    return bulk_stats(
        answered, answered_batches, elapsed, correct=correct and blocked_seen == blocked_expected
    )
