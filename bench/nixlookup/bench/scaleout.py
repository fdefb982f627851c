"""`nixlookup-bench scale-out`: what more processes and followers buy, on this machine, in one run.

What it measures (every server a separate process on 127.0.0.1, the clients on the same cores):
- **Unary Check QPS at 32 in flight, 1 vs 2 serving processes.** One plain server, then
  ``serve --processes 2`` (a writer and two serving processes on one port). The load comes from
  `CLIENT_PROCESSES` client processes (asyncio, `CHANNELS_PER_CLIENT` connections each, the in-flight
  calls spread over them), the same for both runs: SO_REUSEPORT spreads *connections*, so one connection
  would reach one process only, and one Python client process would be the bottleneck itself. The
  ratio is the figure; absolute QPS depends on what else runs on the machine.
- **Bulk numbers/s, 1 vs 2 serving processes**: one CheckStream of packed 10k-number batches per client
  process, in parallel, answers checked against the expected hits.
- **Follower lag under 100 deltas/s**: a writer and one follower; ApplyDelta of one number offered at
  100/s (each its own call, started on schedule whether or not the last has returned; durable, fsync'd,
  when it returns; the rate reached is reported); for each, a Check on the follower with ``min_version`` =
  the version it returned (the follower waits for it: ``--min-version-wait``). Lag = from the writer's
  answer to the follower's answer, i.e. until a client can read its write on the follower (one loopback
  round trip included).
- **A new follower of a 3M-number register**: from starting its process to health SERVING (snapshot
  streamed, verified and indexed; the interpreter's start included).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.procs import managed_process, wait_for_port_file
from nixlookup.bench.report import Report, Table
from nixlookup.bench.servers import RunningServer, nixlookup_server
from nixlookup.bench.timing import progress, ratio
from nixlookup.bench.workload import make_workload, write_register_text
from nixlookup.client import channel_options
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

__all__ = ["ScaleOutSettings", "add_command", "run_scale_out"]

CLIENT_PROCESSES = 2
"""Load generators; one asyncio Python process tops out near one core's worth of calls."""
CHANNELS_PER_CLIENT = 4
"""Connections per load generator (each its own subchannel pool), so the kernel can spread them."""
UNARY_TARGET_QPS_RATIO = 1.5
LAG_TARGET_P99_MS = 100.0
_CALL_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 300.0
_ADMIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ScaleOutSettings:
    size: int = 1_500_000
    seed: int = 20080101
    in_flight: int = 32
    unary_seconds: float = 5.0
    bulk_numbers: int = 2_000_000
    batch_size: int = 10_000
    deltas_per_second: float = 100.0
    lag_seconds: float = 5.0
    follower_register: int = 3_000_000


# -- load generators (child processes) --------------------------------------------------------------------
def _unary_worker(  # noqa: PLR0917 - a multiprocessing target takes its arguments positionally
    target: str, keys: bytes, expected: bytes, in_flight: int, seconds: float, conn: Connection
) -> None:
    """One client process: `in_flight` calls over `CHANNELS_PER_CLIENT` connections for `seconds`."""
    queries = np.frombuffer(keys, dtype=np.uint64)
    blocked = np.frombuffer(expected, dtype=np.bool_)
    requests = [lookup_pb2.CheckRequest(e164=key) for key in queries.tolist()]

    async def run() -> tuple[int, int, list[int]]:
        options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
        channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(CHANNELS_PER_CLIENT)]
        stubs = [lookup_pb2_grpc.LookupStub(channel) for channel in channels]
        await asyncio.gather(*(stub.Check(requests[0], timeout=_CALL_TIMEOUT_S) for stub in stubs))
        conn.send("ready")
        conn.recv()  # start together
        deadline = time.perf_counter() + seconds
        calls = wrong = 0
        latencies: list[int] = []
        cursor = 0

        async def worker(stub: Any) -> None:
            nonlocal calls, wrong, cursor
            while time.perf_counter() < deadline:
                index = cursor % len(requests)
                cursor += 1
                started = time.perf_counter_ns()
                answer = await stub.Check(requests[index], timeout=_CALL_TIMEOUT_S)
                latencies.append(time.perf_counter_ns() - started)
                calls += 1
                wrong += (answer.verdict == lookup_pb2.BLOCKED) != bool(blocked[index])

        started = time.perf_counter()
        await asyncio.gather(*(worker(stubs[i % len(stubs)]) for i in range(in_flight)))
        elapsed = time.perf_counter() - started
        for channel in channels:
            await channel.close(None)
        conn.send((calls, wrong, elapsed))
        return calls, wrong, latencies[:: max(1, len(latencies) // 20_000)]

    _calls, _wrong, sample = asyncio.run(run())
    conn.send(sample)


def _bulk_worker(target: str, keys: bytes, expected: bytes, batch_size: int, conn: Connection) -> None:
    """One client process: one CheckStream of packed batches over a connection of its own."""
    queries = np.frombuffer(keys, dtype=np.uint64)
    blocked = np.frombuffer(expected, dtype=np.bool_)
    batches = [
        lookup_pb2.CheckBatch(e164_le=queries[start : start + batch_size].tobytes(), batch_id=index)
        for index, start in enumerate(range(0, queries.size, batch_size))
    ]
    options = [*channel_options(), ("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = lookup_pb2_grpc.LookupStub(channel)
        for _ in stub.CheckStream(iter(batches[:1]), timeout=_CALL_TIMEOUT_S):
            pass
        conn.send("ready")
        conn.recv()
        started = time.perf_counter()
        answered = 0
        correct = True
        for result in stub.CheckStream(iter(batches), timeout=600):
            got = np.unpackbits(
                np.frombuffer(result.blocked, np.uint8), count=result.count, bitorder="little"
            ).astype(np.bool_)
            correct &= bool(np.array_equal(got, blocked[answered : answered + result.count]))
            answered += result.count
        conn.send((answered, correct, time.perf_counter() - started))


def _drive(target: Any, args_of: list[tuple[Any, ...]]) -> list[Any]:
    """Start one spawned process per argument tuple, start them together, collect what each sends."""
    context = multiprocessing.get_context("spawn")  # no grpc state inherited from this process
    pipes, processes = [], []
    for args in args_of:
        parent, child = context.Pipe()
        process = context.Process(target=target, args=(*args, child), daemon=True)
        process.start()
        pipes.append(parent)
        processes.append(process)
    try:
        for pipe in pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise TimeoutError("a load generator did not get ready")
        for pipe in pipes:
            pipe.send("go")
        results = []
        for pipe in pipes:
            if not pipe.poll(900):
                raise TimeoutError("a load generator did not finish")
            results.append(pipe.recv())
            if target is _unary_worker:
                results[-1] = (*results[-1], pipe.recv())
        return results
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


@dataclass(frozen=True)
class _Throughput:
    unary_qps: float
    unary_p50_ms: float
    unary_p99_ms: float
    unary_wrong: int
    bulk_numbers_per_s: float
    bulk_correct: bool


def _throughput(
    target: str, queries: NDArray[np.uint64], expected: NDArray[np.bool_], s: ScaleOutSettings
) -> _Throughput:
    per_client = s.in_flight // CLIENT_PROCESSES
    keys, hits = queries[:200_000].tobytes(), expected[:200_000].tobytes()
    unary = _drive(_unary_worker, [(target, keys, hits, per_client, s.unary_seconds)] * CLIENT_PROCESSES)
    calls = sum(result[0] for result in unary)
    wrong = sum(result[1] for result in unary)
    seconds = max(result[2] for result in unary)
    latencies = np.concatenate([np.asarray(result[3], dtype=np.int64) for result in unary])
    p50, p99 = np.percentile(latencies, [50, 99]) / 1e6
    share = s.bulk_numbers // CLIENT_PROCESSES
    bulk_args = [
        (
            target,
            queries[i * share : (i + 1) * share].tobytes(),
            expected[i * share : (i + 1) * share].tobytes(),
            s.batch_size,
        )
        for i in range(CLIENT_PROCESSES)
    ]
    bulk = _drive(_bulk_worker, bulk_args)
    numbers = sum(result[0] for result in bulk)
    return _Throughput(
        unary_qps=calls / seconds,
        unary_p50_ms=float(p50),
        unary_p99_ms=float(p99),
        unary_wrong=wrong,
        bulk_numbers_per_s=numbers / max(result[2] for result in bulk),
        bulk_correct=all(result[1] for result in bulk),
    )


def _every_process_serving(target: str, connections: int = 12) -> None:
    """Health SERVING on `connections` fresh connections in a row: every serving process has its data."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + _START_TIMEOUT_S
    streak = 0
    while streak < connections:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{target}: not every serving process became SERVING")
        with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                status = (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(), timeout=2)
                    .status
                )
            except grpc.RpcError:
                status = health_pb2.HealthCheckResponse.NOT_SERVING
        streak = streak + 1 if status == health_pb2.HealthCheckResponse.SERVING else 0
        if not streak:
            time.sleep(0.1)


# -- follower lag -----------------------------------------------------------------------------------------
async def _lag_run(writer: str, follower: str, s: ScaleOutSettings) -> tuple[list[float], int, float]:
    """Deltas paced at `deltas_per_second`; per delta, ms from its acknowledgement to the follower's
    answer; also the wrong answers and the delta rate reached."""
    lags: list[float] = []
    wrong = 0
    rng = np.random.default_rng(s.seed + 1)
    count = int(s.deltas_per_second * s.lag_seconds)
    keys = (46_700_000_000 + rng.choice(10_000_000, size=count, replace=False)).astype(np.uint64)
    async with grpc.aio.insecure_channel(writer) as wchannel, grpc.aio.insecure_channel(follower) as fchannel:
        admin = lookup_pb2_grpc.AdminStub(wchannel)
        lookup = lookup_pb2_grpc.LookupStub(fchannel)
        await lookup.Check(lookup_pb2.CheckRequest(e164=int(keys[0])), timeout=_CALL_TIMEOUT_S)

        async def observe(key: int, version: str, acknowledged: float) -> None:
            nonlocal wrong
            position = lookup_pb2.ListPosition(list=lookup_pb2.ListRef(), version=version)
            answer = await lookup.Check(
                lookup_pb2.CheckRequest(e164=key, min_version=[position]), timeout=_CALL_TIMEOUT_S
            )
            lags.append((time.perf_counter() - acknowledged) * 1000)
            wrong += answer.verdict != lookup_pb2.BLOCKED

        async def apply(key: int) -> None:
            reply = await admin.ApplyDelta(  # queued behind the others when the writer falls behind the rate
                lookup_pb2.ApplyDeltaRequest(add_e164_le=np.array([key], "<u8").tobytes()),
                timeout=_ADMIN_TIMEOUT_S,
            )
            await observe(key, reply.version, time.perf_counter())

        tasks = []
        started = time.perf_counter()
        for index, key in enumerate(keys.tolist()):  # offered at the rate, whether or not the last is done
            await asyncio.sleep(max(0.0, started + index / s.deltas_per_second - time.perf_counter()))
            tasks.append(asyncio.ensure_future(apply(key)))
        await asyncio.gather(*tasks)
        achieved = count / (time.perf_counter() - started)
    return lags, wrong, achieved


@contextmanager
def _follower(writer: RunningServer, workdir: Path, name: str) -> Iterator[tuple[str, float]]:
    """A follower of `writer`; yields its target and the seconds from process start to SERVING."""
    port_file = workdir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    argv = [
        sys.executable, "-m", "nixlookup.server.app", "serve", "--follow", writer.target,
        "--listen", "127.0.0.1:0", "--port-file", str(port_file), "--min-version-wait", "5",
        "--log-level", "warning", "--log-format", "json",
    ]  # fmt: skip
    started = time.perf_counter()
    with managed_process(argv, name=name, log_path=workdir / f"{name}.log", grace_s=5.0) as process:
        port = wait_for_port_file(process.popen, port_file, timeout_s=_START_TIMEOUT_S, describe=TimeoutError)
        target = f"127.0.0.1:{port}"
        _every_process_serving(target, connections=1)
        yield target, time.perf_counter() - started


def run_scale_out(settings: ScaleOutSettings, *, workdir: Path | None = None) -> Report:
    """Run every measurement of the module doc; one Report."""
    import tempfile

    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="nixlookup-scaleout-", dir=workdir))
    progress(f"scale-out: register of {settings.size:,} numbers")
    load = make_workload(settings.size, max(settings.bulk_numbers, 200_000), settings.seed)
    register = write_register_text(root / "register.txt", load.register)
    parameters = {**settings.__dict__, "client_processes": CLIENT_PROCESSES, "channels": CHANNELS_PER_CLIENT}
    report = Report(command="scale-out", parameters=parameters)
    measured: dict[int, _Throughput] = {}
    for processes in (1, 2):
        extra = ["--processes", str(processes)] if processes > 1 else []
        progress(f"scale-out: {processes} serving process(es): unary at {settings.in_flight} in flight, bulk")
        with nixlookup_server(register, root, extra_args=extra, name=f"processes-{processes}") as server:
            _every_process_serving(server.target)
            measured[processes] = _throughput(server.target, load.queries, load.expected_blocked, settings)
    one, two = measured[1], measured[2]
    unary_ratio = ratio(two.unary_qps, one.unary_qps)
    bulk_ratio = ratio(two.bulk_numbers_per_s, one.bulk_numbers_per_s)
    report.tables.append(
        Table(
            title=f"1 vs 2 serving processes ({CLIENT_PROCESSES} client processes on the same 2 cores)",
            columns=[
                "serving processes",
                f"unary QPS at {settings.in_flight} in flight",
                "p50 ms",
                "p99 ms",
                "bulk numbers/s (10k batches)",
                "answers right",
            ],
            rows=[
                [
                    n,
                    round(t.unary_qps),
                    round(t.unary_p50_ms, 3),
                    round(t.unary_p99_ms, 3),
                    round(t.bulk_numbers_per_s),
                    t.unary_wrong == 0 and t.bulk_correct,
                ]
                for n, t in measured.items()
            ],
        )
    )

    progress(f"scale-out: follower lag at {settings.deltas_per_second:g} deltas/s")
    lag_dir = root / "lag"
    lag_dir.mkdir()
    with (
        nixlookup_server(register, lag_dir, name="lag-writer") as writer,
        _follower(writer, lag_dir, "lag-follower") as (
            follower_target,
            _ready,
        ),
    ):
        values, lag_wrong, achieved_rate = asyncio.run(_lag_run(writer.target, follower_target, settings))
    lag_p50, lag_p99, lag_max = np.percentile(values, [50, 99, 100])

    progress(f"scale-out: a new follower of a {settings.follower_register:,}-number register")
    big_dir = root / "big"
    big_dir.mkdir()
    big = write_register_text(
        big_dir / "register.txt", make_workload(settings.follower_register, 1, settings.seed + 2).register
    )
    with (
        nixlookup_server(big, big_dir, name="big-writer") as big_writer,
        _follower(big_writer, big_dir, "new-follower") as (
            _target,
            new_follower_s,
        ),
    ):
        pass

    report.tables.append(
        Table(
            title="followers",
            columns=["measurement", "value"],
            rows=[
                [f"deltas/s reached (target {settings.deltas_per_second:g})", round(achieved_rate, 1)],
                ["lag p50 ms (ack on writer -> answer on follower)", round(float(lag_p50), 2)],
                ["lag p99 ms", round(float(lag_p99), 2)],
                ["lag max ms", round(float(lag_max), 2)],
                ["answers wrong on the follower", lag_wrong],
                [
                    f"new follower of {settings.follower_register:,} numbers: start -> SERVING s",
                    round(new_follower_s, 2),
                ],
                ["writer of that register: start -> SERVING s (for reference)", round(big_writer.ready_s, 2)],
            ],
        )
    )
    right = all(t.unary_wrong == 0 and t.bulk_correct for t in measured.values()) and lag_wrong == 0
    report.figures.update(
        unary_qps_1=round(one.unary_qps),
        unary_qps_2=round(two.unary_qps),
        unary_ratio=unary_ratio,
        bulk_numbers_per_s_1=round(one.bulk_numbers_per_s),
        bulk_numbers_per_s_2=round(two.bulk_numbers_per_s),
        bulk_ratio=bulk_ratio,
        lag_p50_ms=float(lag_p50),
        lag_p99_ms=float(lag_p99),
        lag_max_ms=float(lag_max),
        deltas_per_second=achieved_rate,
        new_follower_seconds=new_follower_s,
        correct=right,
    )
    verdict = "met" if (unary_ratio or 0.0) >= UNARY_TARGET_QPS_RATIO else "NOT met"
    report.notes.append(
        f"unary 2 vs 1 processes: {unary_ratio or 0.0:.2f}x "
        f"(target >= {UNARY_TARGET_QPS_RATIO}x: {verdict}); "
        f"bulk {bulk_ratio or 0.0:.2f}x; lag p99 {lag_p99:.1f} ms (target <= {LAG_TARGET_P99_MS:g} ms: "
        f"{'met' if lag_p99 <= LAG_TARGET_P99_MS else 'NOT met'}). The 2-process server also runs its writer "
        "process; the load generators share the same 2 cores."
    )
    report.duration_s = time.perf_counter() - began
    return report


def add_command(
    command: Callable[[str, str, Callable[[argparse.Namespace], Report]], argparse.ArgumentParser],
) -> None:
    """Register ``scale-out`` with the bench CLI (`command` is its subcommand maker)."""
    from nixlookup.bench.cli import parse_size

    def handler(args: argparse.Namespace) -> Report:
        return run_scale_out(
            ScaleOutSettings(
                size=args.size,
                seed=args.seed,
                in_flight=args.in_flight,
                unary_seconds=args.unary_seconds,
                bulk_numbers=args.bulk_numbers,
                deltas_per_second=args.deltas_per_second,
                lag_seconds=args.lag_seconds,
                follower_register=args.follower_register,
            ),
            workdir=args.workdir,
        )

    sub = command(
        "scale-out",
        "1 vs 2 serving processes (unary QPS at 32 in flight, bulk), follower lag under deltas, new follower",
        handler,
    )
    sub.add_argument(
        "--size", type=parse_size, default=1_500_000, help="register size of the throughput runs"
    )
    sub.add_argument("--in-flight", type=int, default=32, help="unary calls in flight (over all clients)")
    sub.add_argument("--unary-seconds", type=float, default=5.0, help="seconds of unary load per run")
    sub.add_argument("--bulk-numbers", type=parse_size, default=2_000_000, help="numbers per bulk run")
    sub.add_argument("--deltas-per-second", type=float, default=100.0, help="delta rate of the lag run")
    sub.add_argument("--lag-seconds", type=float, default=5.0, help="seconds of deltas in the lag run")
    sub.add_argument(
        "--follower-register", type=parse_size, default=3_000_000, help="register size for the new follower"
    )
