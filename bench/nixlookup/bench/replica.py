"""`nixlookup-bench replica`: a `LocalReplica` in this process beside a gRPC `Check` and Redis, in one run.

What a dialer does before each call, one number at a time (1 in flight), on the same register and queries:
(a) `LocalReplica.check` from memory, register only (caller "") and as a caller with an opt-out, a
    relationship and a consent list (the server's `Policy` over the replica's copy of the lists);
(b) the same check through `Client.check` (the ``Check`` RPC) against the server the replica follows;
(c) Redis via redis-py with hiredis when it is installed (redis-py's C reply parser, how a Redis user runs
    it; the run says which parser it used): ``SISMEMBER`` on one SET, on one synchronous connection;
(d) the floor: ``Index.contains`` alone (a roaring probe) in this process.
Per-call figures are the mean over a timed loop (best of `repeats`) and p50/p99 from per-call timings.
Every replica answer is checked against the workload's expected verdict, and a sample of them against the
server's own answer, field for field. Convergence: `deltas` single-number ApplyDelta calls on the writer,
each timed from its acknowledgement (the RPC's return) to the replica holding the version it produced.
Memory: every structure of the replica's register `Index`, per register number.
Where redis-server is missing, the run says how to install it and measures the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import structlog
from numpy.typing import NDArray

from nixlookup.bench.redisbench import INSTALL_HINT, load_register, redis_server, redis_server_binary
from nixlookup.bench.report import Report, Table
from nixlookup.bench.servers import nixlookup_server
from nixlookup.bench.timing import progress, ratio
from nixlookup.bench.workload import Workload, make_workload, write_register_text
from nixlookup.client import Client
from nixlookup.client.results import CheckResult
from nixlookup.replica import LocalReplica
from nixlookup.server.index import Index
from nixlookup.server.logs import configure_logging
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["ReplicaSettings", "replica_figures", "run_replica"]

CALLER = "dialer-co"
"""The caller whose lists the 'with lists' rows use."""
_TARGET_REGISTER_US = 5.0
_TARGET_LISTS_US = 15.0
_TARGET_REDIS_RATIO = 10.0
_TARGET_CONVERGE_P99_MS = 100.0


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    size: int = 1_500_000
    seed: int = 20080101
    local_calls: int = 50_000
    """Checks per replica loop (the register's queries, half hits)."""
    remote_calls: int = 3_000
    """Calls per gRPC and Redis loop (each ~100 us to 1 ms)."""
    list_size: int = 20_000
    """Numbers on each of the caller's three lists."""
    deltas: int = 100
    repeats: int = 3


def _packed(keys: NDArray[np.uint64] | list[int], dtype: str = "<u8") -> bytes:
    return np.asarray(keys, dtype=dtype).tobytes()


def _per_call(
    check: Callable[[int], object], keys: list[int], repeats: int
) -> tuple[float, NDArray[np.int64]]:
    """Best-of-`repeats` mean seconds per call over `keys`, and one run's per-call ns timings."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for key in keys:
            check(key)
        best = min(best, (time.perf_counter() - started) / len(keys))
    timings = np.empty(len(keys), dtype=np.int64)
    clock = time.perf_counter_ns
    for position, key in enumerate(keys):
        begun = clock()
        check(key)
        timings[position] = clock() - begun
    return best, timings


def _latency(prefix: str, mean_s: float, timings: NDArray[np.int64]) -> dict[str, float]:
    p50, p99 = np.percentile(timings, [50, 99])
    return {
        f"{prefix}_mean_us": mean_s * 1e6,
        f"{prefix}_p50_us": float(p50) / 1e3,
        f"{prefix}_p99_us": float(p99) / 1e3,
    }


def _add_lists(target: str, workload: Workload, settings: ReplicaSettings) -> None:
    """The caller's opt-out, relationship (ending on various days) and consent lists, from the queries."""
    rng = np.random.default_rng(settings.seed + 7)
    today = int(time.time() // 86_400)
    with grpc.insecure_channel(target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        for offset, kind in enumerate(
            (lookup_pb2.LIST_KIND_OPT_OUT, lookup_pb2.LIST_KIND_RELATIONSHIP, lookup_pb2.LIST_KIND_CONSENT)
        ):
            keys = np.unique(workload.queries[offset::7][: settings.list_size])
            days = b""
            if kind != lookup_pb2.LIST_KIND_OPT_OUT:
                ends = rng.choice([0, today - 400, today - 10, today + 30, today + 365], size=keys.size)
                days = _packed(ends.astype(np.uint32), "<u4")
            admin.ApplyDelta(
                lookup_pb2.ApplyDeltaRequest(
                    list=lookup_pb2.ListRef(kind=kind, caller=CALLER),
                    add_e164_le=_packed(keys),
                    add_until_days_le=days,
                ),
                timeout=60,
            )


def _same(local: CheckResult, remote: CheckResult) -> bool:
    used = tuple(dataclasses.replace(item, loaded_at=None) for item in local.lists_used)
    theirs = tuple(dataclasses.replace(item, loaded_at=None) for item in remote.lists_used)
    return dataclasses.replace(local, answered_by="", lists_used=used) == dataclasses.replace(
        remote, answered_by="", lists_used=theirs
    )


def _convergence(target: str, replica: LocalReplica, settings: ReplicaSettings) -> dict[str, Any]:
    fresh = np.random.default_rng(settings.seed + 11).integers(
        46_700_000_000, 46_709_999_999, settings.deltas
    )
    waits: list[float] = []
    with grpc.insecure_channel(target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        for key in fresh.tolist():
            reply = admin.ApplyDelta(lookup_pb2.ApplyDeltaRequest(add_e164_le=_packed([key])), timeout=30)
            acknowledged = time.perf_counter()
            deadline = acknowledged + 10.0
            while replica.register_version != reply.version:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"the replica did not reach {reply.version} within 10 s of its ack")
                time.sleep(0.0002)
            waits.append(time.perf_counter() - acknowledged)
            if not replica.check(key).blocked:
                raise AssertionError("the replica holds the delta's version but not its number")
    values = np.asarray(waits) * 1e3
    p50, p99 = np.percentile(values, [50, 99])
    return {
        "converge_p50_ms": float(p50),
        "converge_p99_ms": float(p99),
        "converge_max_ms": float(values.max()),
    }


def _redis_figures(workload: Workload, keys: list[int], scratch: Path, repeats: int) -> dict[str, Any]:
    import redis
    from redis.utils import HIREDIS_AVAILABLE

    figures: dict[str, Any] = {"redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python (hiredis missing)"}
    with redis_server(scratch / "redis") as handle:
        client: redis.Redis = handle.client()
        try:
            load_register(client, workload.register)
            members = [str(key) for key in keys]
            expected = workload.expected_blocked[: len(keys)]
            answers = [bool(client.sismember("nix:register", member)) for member in members]
            if answers != expected.tolist():
                raise AssertionError("Redis SISMEMBER disagrees with the workload's expected answers")
            lookup = dict(zip(keys, members, strict=True))
            mean, timings = _per_call(
                lambda key: client.sismember("nix:register", lookup[key]), keys, repeats
            )
            figures |= _latency("redis_sismember", mean, timings)
        finally:
            client.close()
    return figures


def _verify(
    replica: LocalReplica, client: Client, workload: Workload, local_keys: list[int], remote_keys: list[int]
) -> None:
    """Figures are void unless the replica's answers are the workload's and, field for field, the server's."""
    progress("replica: checking answers against the workload and the server")
    expected = workload.expected_blocked[: len(local_keys)]
    blocked = [replica.check(key).blocked for key in local_keys]
    if blocked != expected.tolist():
        raise AssertionError("the replica's register-only answers differ from the workload's")
    for caller in ("", CALLER):
        for key in remote_keys[:300]:
            local, remote = replica.check(key, caller=caller), client.check(key, caller=caller)
            if local.answered_by != "replica" or not _same(local, remote):
                raise AssertionError(f"replica and server differ as {caller!r}: {local} / {remote}")


def _per_call_figures(
    replica: LocalReplica,
    client: Client,
    workload: Workload,
    local_keys: list[int],
    remote_keys: list[int],
    *,
    repeats: int,
) -> dict[str, Any]:
    progress("replica: per-call checks from memory, gRPC Check, the in-process floor")
    figures: dict[str, Any] = {}
    register = Index.build(workload.register, version="floor", source="bench")
    mean, timings = _per_call(register.contains, local_keys, repeats)
    figures |= _latency("floor_contains", mean, timings)
    mean, timings = _per_call(replica.check, local_keys, repeats)
    figures |= _latency("replica_register", mean, timings)
    mean, timings = _per_call(lambda key: replica.check(key, caller=CALLER), local_keys, repeats)
    figures |= _latency("replica_lists", mean, timings)
    mean, timings = _per_call(client.check, remote_keys, repeats)
    figures |= _latency("grpc_check", mean, timings)
    return figures


def replica_figures(
    settings: ReplicaSettings, workdir: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    notes: list[str] = []
    count = max(settings.local_calls, settings.remote_calls, settings.list_size * 8)
    progress(f"replica: register of {settings.size:,}, {count:,} queries (seed {settings.seed})")
    workload = make_workload(settings.size, count, settings.seed)
    local_keys = workload.queries[: settings.local_calls].tolist()
    remote_keys = workload.queries[: settings.remote_calls].tolist()
    figures: dict[str, Any] = {"register_size": workload.size}
    with (
        tempfile.TemporaryDirectory(prefix="nixlookup-bench-replica-", dir=workdir) as tmp,
        contextlib.ExitStack() as stack,
    ):
        scratch = Path(tmp)
        register_path = write_register_text(scratch / "register.txt", workload.register)
        progress("replica: starting nixlookup-server, adding the caller's lists")
        server = stack.enter_context(nixlookup_server(register_path, scratch / "nixlookup"))
        _add_lists(server.target, workload, settings)
        started = time.perf_counter()
        replica = stack.enter_context(LocalReplica(server.target))
        replica.wait_ready(120)
        figures["replica_ready_s"] = time.perf_counter() - started
        client = stack.enter_context(Client(server.target))

        _verify(replica, client, workload, local_keys, remote_keys)
        figures |= _per_call_figures(
            replica, client, workload, local_keys, remote_keys, repeats=settings.repeats
        )
        if replica.stats.rpc:
            notes.append(f"{replica.stats.rpc} replica checks went to the server by RPC (stale moments)")

        if redis_server_binary() is None:
            progress(INSTALL_HINT)
            notes.append(INSTALL_HINT)
        else:
            progress("replica: Redis SISMEMBER")
            figures |= _redis_figures(workload, remote_keys, scratch, settings.repeats)

        progress(f"replica: convergence over {settings.deltas} deltas")
        figures |= _convergence(server.target, replica, settings)
        memory = replica.memory()
        figures["replica_register_bytes"] = memory.register_bytes
        figures["replica_bytes_per_register_number"] = memory.bytes_per_register_number
        figures["replica_list_numbers"] = memory.list_numbers
        figures["replica_list_bytes"] = memory.list_bytes
    figures["redis_over_replica_register"] = ratio(
        figures.get("redis_sismember_mean_us"), figures["replica_register_mean_us"]
    )
    figures["redis_over_replica_lists"] = ratio(
        figures.get("redis_sismember_mean_us"), figures["replica_lists_mean_us"]
    )
    figures["grpc_over_replica_register"] = ratio(
        figures["grpc_check_mean_us"], figures["replica_register_mean_us"]
    )
    return figures, notes


def _tables(figures: dict[str, Any]) -> list[Table]:
    per_call = Table(
        title="Per-call check, 1 in flight (us)",
        columns=["path", "mean", "p50", "p99", "x replica (register)"],
    )
    base = figures["replica_register_mean_us"]
    for prefix, label in (
        ("floor_contains", "Index.contains alone (floor, in process)"),
        ("replica_register", "LocalReplica.check, register only"),
        ("replica_lists", f"LocalReplica.check as {CALLER} (3 lists)"),
        ("grpc_check", "Client.check over gRPC (loopback)"),
        ("redis_sismember", f"Redis SISMEMBER ({figures.get('redis_parser', 'not run')})"),
    ):
        if f"{prefix}_mean_us" in figures:
            mean = figures[f"{prefix}_mean_us"]
            per_call.rows.append(
                [label, mean, figures[f"{prefix}_p50_us"], figures[f"{prefix}_p99_us"], ratio(mean, base)]
            )
    targets = Table(title="Targets (issue 16, section 2)", columns=["target", "measured", "goal", "met"])

    def target(name: str, measured: float | None, goal: str, met: bool | None) -> None:
        targets.rows.append([name, measured, goal, "n/a" if met is None else ("yes" if met else "NO")])

    register = figures["replica_register_mean_us"]
    lists = figures["replica_lists_mean_us"]
    target(
        "replica check, register only (us)",
        register,
        f"<= {_TARGET_REGISTER_US}",
        register <= _TARGET_REGISTER_US,
    )
    target(
        "replica check with a caller's lists (us)", lists, f"<= {_TARGET_LISTS_US}", lists <= _TARGET_LISTS_US
    )
    for key, what in (
        ("redis_over_replica_register", "register only"),
        ("redis_over_replica_lists", "with lists"),
    ):
        value = figures.get(key)
        target(f"Redis round trip / replica, {what}", value, f">= {_TARGET_REDIS_RATIO}x",
               None if value is None else value >= _TARGET_REDIS_RATIO)  # fmt: skip
    p99 = figures["converge_p99_ms"]
    target(
        "convergence after a delta, p99 (ms)",
        p99,
        f"<= {_TARGET_CONVERGE_P99_MS}",
        p99 <= _TARGET_CONVERGE_P99_MS,
    )
    target(
        "replica memory per register number (B)",
        figures["replica_bytes_per_register_number"],
        "reported",
        None,
    )
    return [per_call, targets]


def run_replica(settings: ReplicaSettings, workdir: Path | None = None) -> Report:
    if not structlog.is_configured():  # the replica's follower logs through structlog: keep stdout for --json
        # The process's own stderr, not sys.stderr: a caller's replacement (pytest's capture) may be
        # closed later, and every later structlog line would fail on it (tests/test_store.py did).
        configure_logging("warning", stream=sys.__stderr__ or sys.stderr)
    report = Report(command="replica", parameters=dataclasses.asdict(settings))
    started = time.perf_counter()
    report.figures, report.notes = replica_figures(settings, workdir)
    report.duration_s = time.perf_counter() - started
    report.tables = _tables(report.figures)
    report.notes.append(
        "per-call means are best of the repeats over a loop; p50/p99 from one timed pass (timer overhead "
        "~0.1 us included); convergence counts from the writer's acknowledgement to the replica holding the "
        "version (sync point + swap), polled every 0.2 ms"
    )
    return report
