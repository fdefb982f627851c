"""Redis as a contender, used the way a team would: one SET, redis-py, pipelined SADD to load it,
`SISMEMBER` per call and `SMISMEMBER` per batch.

`redis_server` starts a private `redis-server` on a free loopback port with persistence off
(``--save '' --appendonly no``), in a scratch directory, and stops it by pid when the block ends. Where the
binary is missing, `redis_server_binary` returns None and callers print `INSTALL_HINT` and go on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
import redis.asyncio
from numpy.typing import NDArray

from nixlookup.bench.procs import (
    ManagedProcess,
    ProcessStartError,
    free_port,
    managed_process,
    rss_bytes,
    wait_for_port,
)
from nixlookup.bench.timing import BulkStats, LatencyStats, bulk_stats, drive_calls, latency_stats

__all__ = [
    "INSTALL_HINT",
    "REDIS_SET_NAME",
    "RedisHandle",
    "load_register",
    "redis_bulk_check",
    "redis_memory",
    "redis_server",
    "redis_server_binary",
    "redis_unary_check",
]

INSTALL_HINT = "redis-server not found: install it with `apt-get install redis-server` to include Redis"
REDIS_SET_NAME = "nix:register"
_LOAD_CHUNK = 10_000  # members per SADD: a large multi-member SADD is how a team would bulk-load
_CHUNKS_PER_PIPELINE = 10  # SADDs queued before one round trip


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


@dataclass(frozen=True)
class RedisHandle:
    port: int
    process: ManagedProcess

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=30)


@contextlib.contextmanager
def redis_server(workdir: Path, *, start_timeout_s: float = 15.0) -> Iterator[RedisHandle]:
    """A private redis-server on 127.0.0.1 with persistence off; stopped by pid on exit."""
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError(INSTALL_HINT)
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",            # no RDB snapshots: a lookup cache, not a database
        "--appendonly", "no",    # no AOF either
        "--dir", str(workdir),
        "--daemonize", "no",     # we own the pid
        "--protected-mode", "yes",
    ]  # fmt: skip
    with managed_process(argv, name="redis-server", log_path=workdir / "redis.log") as process:
        wait_for_port(process, port, timeout_s=start_timeout_s)
        handle = RedisHandle(port=port, process=process)
        client = handle.client()
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        # The port came from a probe socket (redis cannot report a kernel-chosen one), so make sure the
        # server answering on it is the one we started, not another process that took the port first.
        answering_pid = int(client.info("server")["process_id"])
        client.close()
        if answering_pid != process.pid:
            raise ProcessStartError(
                f"127.0.0.1:{port} is answered by pid {answering_pid}, not our redis-server {process.pid}"
            )
        yield handle


def load_register(client: redis.Redis, keys: NDArray[np.uint64]) -> float:
    """Fill the SET with pipelined multi-member SADDs; returns the wall seconds it took."""
    members = keys.tolist()
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    queued = 0
    for start in range(0, len(members), _LOAD_CHUNK):
        pipe.sadd(REDIS_SET_NAME, *members[start : start + _LOAD_CHUNK])
        queued += 1
        if queued == _CHUNKS_PER_PIPELINE:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()
    return time.perf_counter() - started


@dataclass(frozen=True)
class RedisMemory:
    used_memory: int
    used_memory_rss: int
    process_rss: int


def redis_memory(handle: RedisHandle) -> RedisMemory:
    """Redis's own accounting (`INFO memory`) and the process RSS from /proc."""
    client = handle.client()
    try:
        info = client.info("memory")
    finally:
        client.close()
    return RedisMemory(
        used_memory=int(info["used_memory"]),
        used_memory_rss=int(info["used_memory_rss"]),
        process_rss=rss_bytes(handle.process.pid),
    )


async def _unary_run(
    port: int, members: list[str], expected: NDArray[np.bool_], *, in_flight: int, max_seconds: float
) -> tuple[list[int], float, int]:
    client = redis.asyncio.Redis(host="127.0.0.1", port=port, max_connections=in_flight, socket_timeout=30)
    try:
        await asyncio.gather(*(client.sismember(REDIS_SET_NAME, members[0]) for _ in range(in_flight)))

        async def check(index: int) -> bool:
            return bool(await client.sismember(REDIS_SET_NAME, members[index]))

        return await drive_calls(check, expected, in_flight=in_flight, max_seconds=max_seconds)
    finally:
        await client.aclose()


# deliberate twin of grpcload.unary_check (and redis_bulk_check of bulk_check): every contender is driven
# through the same signature, so compare can interleave them
def redis_unary_check(
    handle: RedisHandle,
    queries: NDArray[np.uint64],
    expected_blocked: NDArray[np.bool_],
    *,
    in_flight: int,
    max_calls: int,
    max_seconds: float,
) -> tuple[LatencyStats, int]:
    """`SISMEMBER` per number with `in_flight` concurrent callers (redis.asyncio, one pool)."""
    count = min(max_calls, queries.size)
    latencies, elapsed, wrong = asyncio.run(
        _unary_run(
            handle.port,
            [str(key) for key in queries[:count].tolist()],
            expected_blocked[:count],
            in_flight=in_flight,
            max_seconds=max_seconds,
        )
    )
    return latency_stats(latencies, elapsed), wrong


def redis_bulk_check(
    handle: RedisHandle,
    queries: NDArray[np.uint64],
    expected_blocked: NDArray[np.bool_],
    *,
    batch_size: int,
    max_seconds: float,
) -> BulkStats:
    """`SMISMEMBER` per batch, one after the other on one connection."""
    members = queries.tolist()
    client = handle.client()
    answered = 0
    batches = 0
    correct = True
    try:
        client.smismember(REDIS_SET_NAME, members[:16])
        started = time.perf_counter()
        deadline = started + max_seconds
        for start in range(0, len(members), batch_size):
            if time.perf_counter() > deadline:
                break
            chunk = members[start : start + batch_size]
            answers = client.smismember(REDIS_SET_NAME, chunk)
            got = np.fromiter((bool(a) for a in answers), dtype=np.bool_, count=len(chunk))
            if not np.array_equal(got, expected_blocked[start : start + len(chunk)]):
                correct = False
            answered += len(chunk)
            batches += 1
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    return bulk_stats(answered, batches, elapsed, correct=correct)
