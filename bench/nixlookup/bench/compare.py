"""`nixlookup-bench compare`: nixlookup beside what a team would pick instead, same register, same queries.

Contenders, all on loopback and all measured in this one run:
(a) nixlookup over gRPC (`nixlookup-server serve`): unary `Check`, bulk `CheckStream` with packed bytes;
(b) Redis through redis-py: `SISMEMBER` per call, `SMISMEMBER` per batch, the SET filled by pipelined SADD;
(c) the bare grpcio reference server answering from a Python `set` (`refserver`);
(d) a Python `set` in this process (``key in set``; no network at all: the ceiling of per-call speed).
Per-call QPS and p50/p99 at the same concurrency levels, bulk numbers/s at the same batch sizes, load
time and memory per number, each also as a ratio against nixlookup. Where redis-server is missing the run
says how to install it and compares the rest.

Load times: nixlookup = reading the register text file and building the index in process (what the server
does on start and on Reload), plus the server's own Reload of the same file over Admin when it answers;
Redis = pipelined SADD of the same numbers into a running redis-server; Python set = reading the file
into a set of ints. Memory: nixlookup's index bytes and its server's RSS growth over a near-empty server
(register loaded from text, and from a snapshot); Redis's `INFO memory` used_memory growth and RSS growth
for the SET.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nixlookup.bench.admin import TimedAdmin
from nixlookup.bench.compare_report import (
    CONTENDERS,
    NIXLOOKUP,
    PYSET,
    REDIS,
    REFERENCE,
    plots,
    ratios,
    redis_ahead,
    tables,
)
from nixlookup.bench.grpcload import bulk_check, unary_check
from nixlookup.bench.procs import rss_bytes
from nixlookup.bench.redisbench import (
    INSTALL_HINT,
    REDIS_SET_NAME,
    RedisHandle,
    load_register,
    redis_bulk_check,
    redis_memory,
    redis_server,
    redis_server_binary,
    redis_unary_check,
)
from nixlookup.bench.references import PythonSetLookup
from nixlookup.bench.report import Report
from nixlookup.bench.servers import RunningServer, nixlookup_server, reference_server
from nixlookup.bench.timing import BulkStats, LatencyStats, best_of, progress
from nixlookup.bench.workload import Workload, make_workload, write_register_text
from nixlookup.client import NixlookupClientError
from nixlookup.server.index import Index
from nixlookup.server.store import load_register_file, write_snapshot

__all__ = ["CONTENDERS", "CompareSettings", "compare_figures", "run_compare"]

_TINY_REGISTER = 1_000  # the near-empty server whose RSS is the baseline for "RSS growth"


@dataclass(frozen=True)
class CompareSettings:
    size: int = 1_500_000
    seed: int = 20080101
    concurrency: tuple[int, ...] = (1, 8, 32)
    batch_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    unary_calls: int = 6_000
    unary_seconds: float = 6.0
    unary_repeats: int = 2  # best of N per-call runs per contender and level (the machine is shared)
    bulk_numbers: int = 1_000_000
    bulk_seconds: float = 10.0
    bulk_repeats: int = 3
    load_repeats: int = 3


def _per_call_figures(name: str, level: int, stats: LatencyStats, wrong: int) -> dict[str, Any]:
    return {
        f"{name}_unary_c{level}_qps": stats.qps,
        f"{name}_unary_c{level}_p50_ms": stats.p50_ms,
        f"{name}_unary_c{level}_p99_ms": stats.p99_ms,
        f"{name}_unary_c{level}_wrong": wrong,
    }


def _bulk_figures(name: str, batch: int, stats: BulkStats) -> dict[str, Any]:
    return {
        f"{name}_bulk_{batch}_numbers_per_s": stats.numbers_per_s,
        f"{name}_bulk_{batch}_correct": stats.correct,
    }


def _best_per_call_runs(runs: list[dict[str, Any]], level: int) -> dict[str, Any]:
    """Of several per-call runs of each contender, keep the one with the highest QPS."""
    best: dict[str, dict[str, Any]] = {}
    for run in runs:
        qps_key = next(key for key in run if key.endswith(f"_unary_c{level}_qps"))
        name = qps_key.removesuffix(f"_unary_c{level}_qps")
        if name not in best or run[qps_key] > best[name][qps_key]:
            best[name] = run
    merged: dict[str, Any] = {}
    for run in best.values():
        merged |= run
    return merged


def _best_bulk(run: Callable[[], BulkStats], repeats: int) -> BulkStats:
    """The fastest of `repeats` bulk runs (at least one)."""
    runs = [run() for _ in range(max(1, repeats))]
    return max(runs, key=lambda stats: stats.numbers_per_s)


def _pyset_figures(workload: Workload, settings: CompareSettings) -> dict[str, Any]:
    lookup = PythonSetLookup(workload.register)
    queries = workload.queries[: settings.bulk_numbers]
    got = lookup.contains_many(queries)
    correct = bool(np.array_equal(got, workload.expected_blocked[: queries.size]))
    timing = best_of(lambda: lookup.contains_many(queries), repeats=settings.bulk_repeats, max_seconds=10.0)
    figures: dict[str, Any] = {}
    # In process there is no concurrency to speak of (the GIL): one caller, one lookup per call.
    per_call_s = timing.min_s / queries.size
    for level in settings.concurrency:
        figures[f"{PYSET}_unary_c{level}_qps"] = 1.0 / per_call_s
    for batch in settings.batch_sizes:
        figures[f"{PYSET}_bulk_{batch}_numbers_per_s"] = queries.size / timing.min_s
        figures[f"{PYSET}_bulk_{batch}_correct"] = correct
    return figures


def _grpc_contender(
    name: str, server: RunningServer, workload: Workload, settings: CompareSettings, *, level: int | None,
    batch: int | None,
) -> dict[str, Any]:  # fmt: skip
    if level is not None:
        stats, wrong = unary_check(
            server.target,
            workload.queries,
            workload.expected_blocked,
            in_flight=level,
            max_calls=settings.unary_calls,
            max_seconds=settings.unary_seconds,
        )
        return _per_call_figures(name, level, stats, wrong)
    assert batch is not None
    best = _best_bulk(
        lambda: bulk_check(
            server.target,
            workload.queries[: settings.bulk_numbers],
            workload.expected_blocked[: settings.bulk_numbers],
            batch_size=batch,
            mode="bytes",
            max_seconds=settings.bulk_seconds,
        ),
        settings.bulk_repeats,
    )
    return _bulk_figures(name, batch, best)


def _redis_contender(
    handle: RedisHandle,
    workload: Workload,
    settings: CompareSettings,
    *,
    level: int | None,
    batch: int | None,
) -> dict[str, Any]:
    if level is not None:
        stats, wrong = redis_unary_check(
            handle,
            workload.queries,
            workload.expected_blocked,
            in_flight=level,
            max_calls=settings.unary_calls,
            max_seconds=settings.unary_seconds,
        )
        return _per_call_figures(REDIS, level, stats, wrong)
    assert batch is not None
    # deliberate twin of _grpc_contender's bulk half: the same run, through Redis's driver
    best = _best_bulk(
        lambda: redis_bulk_check(
            handle,
            workload.queries[: settings.bulk_numbers],
            workload.expected_blocked[: settings.bulk_numbers],
            batch_size=batch,
            max_seconds=settings.bulk_seconds,
        ),
        max(1, settings.bulk_repeats - 1),  # Redis runs are the slow ones; one fewer repeat
    )
    return _bulk_figures(REDIS, batch, best)


def _load_figures(workload: Workload, register_path: Path, settings: CompareSettings) -> dict[str, Any]:
    def nixlookup_load() -> None:
        loaded = load_register_file(register_path)
        Index.build(loaded.keys, version="compare", source=str(register_path))

    def pyset_load() -> None:
        with register_path.open() as lines:
            members = {int("46" + line[1:]) if line[0] == "0" else int(line.lstrip("+")) for line in lines}
        if len(members) != workload.size:
            raise AssertionError(f"Python set load found {len(members)} numbers, wrote {workload.size}")

    ours = best_of(nixlookup_load, repeats=settings.load_repeats, max_seconds=30.0)
    pyset = best_of(pyset_load, repeats=settings.load_repeats, max_seconds=30.0)
    index = Index.build(workload.register, version="compare", source="synthetic")
    return {
        f"{NIXLOOKUP}_load_s": ours.min_s,
        f"{PYSET}_load_s": pyset.min_s,
        f"{NIXLOOKUP}_index_bytes_per_number": index.nbytes_total / workload.size,
        f"{NIXLOOKUP}_canonical_bytes_per_number": index.nbytes_canonical / workload.size,
    }


def _server_reload_figures(server: RunningServer, register_path: Path) -> dict[str, Any]:
    try:
        with TimedAdmin(server.target) as admin:
            reload = admin.reload(register_path, fmt="text")
    except NixlookupClientError as error:
        progress(f"compare: Admin/Reload unavailable ({error.code.name}); in-process load time only")
        return {}
    return {f"{NIXLOOKUP}_server_reload_s": reload.wall_s}


def _memory_of_servers(server: RunningServer, workload: Workload, workdir: Path) -> dict[str, Any]:
    """RSS growth per number of the running server (register loaded from text) and of a server started
    from a snapshot of the same register, both over a server holding a near-empty register."""
    tiny = workload.register[:: max(1, workload.size // _TINY_REGISTER)]
    tiny_path = write_register_text(workdir / "tiny-register.txt", tiny)
    with nixlookup_server(tiny_path, workdir / "tiny") as baseline:
        baseline_rss = rss_bytes(baseline.pid)
    snapshot_path = workdir / "register.snapshot"
    write_snapshot(snapshot_path, Index.build(workload.register, version="compare", source="synthetic"))
    with nixlookup_server(snapshot_path, workdir / "from-snapshot") as from_snapshot:
        snapshot_rss = rss_bytes(from_snapshot.pid)
    loaded_rss = rss_bytes(server.pid)
    return {
        f"{NIXLOOKUP}_server_rss_bytes": loaded_rss,
        f"{NIXLOOKUP}_baseline_rss_bytes": baseline_rss,
        f"{NIXLOOKUP}_rss_bytes_per_number": max(0, loaded_rss - baseline_rss) / workload.size,
        f"{NIXLOOKUP}_snapshot_rss_bytes_per_number": max(0, snapshot_rss - baseline_rss) / workload.size,
    }


def _redis_figures(handle: RedisHandle, workload: Workload) -> dict[str, Any]:
    client = handle.client()
    try:
        before = redis_memory(handle)
        progress(f"compare: filling Redis with {workload.size:,} numbers (pipelined SADD)")
        load_s = load_register(client, workload.register)
        after = redis_memory(handle)
        count = int(client.scard(REDIS_SET_NAME))
    finally:
        client.close()
    if count != workload.size:
        raise AssertionError(f"Redis SET holds {count} numbers, loaded {workload.size}")
    return {
        f"{REDIS}_load_s": load_s,
        f"{REDIS}_used_memory_bytes_per_number": (after.used_memory - before.used_memory) / workload.size,
        f"{REDIS}_rss_bytes_per_number": max(0, after.process_rss - before.process_rss) / workload.size,
    }


def compare_figures(
    settings: CompareSettings, workdir: Path | None = None
) -> tuple[dict[str, Any], list[str]]:
    """All figures of one compare run, and notes (e.g. Redis missing)."""
    notes: list[str] = []
    query_count = max(settings.bulk_numbers, settings.unary_calls)
    progress(f"compare: register of {settings.size:,}, {query_count:,} queries (seed {settings.seed})")
    workload = make_workload(settings.size, query_count, settings.seed)
    figures: dict[str, Any] = {
        "register_size": workload.size,
        "redis_available": redis_server_binary() is not None,
    }
    with (
        tempfile.TemporaryDirectory(prefix="nixlookup-bench-compare-", dir=workdir) as tmp,
        contextlib.ExitStack() as stack,
    ):
        scratch = Path(tmp)
        register_path = write_register_text(scratch / "register.txt", workload.register)
        progress("compare: load times in process")
        figures |= _load_figures(workload, register_path, settings)
        progress("compare: starting nixlookup-server and the reference server")
        ours = stack.enter_context(nixlookup_server(register_path, scratch / "nixlookup"))
        reference = stack.enter_context(reference_server(workload.register, scratch / "reference"))
        figures[f"{NIXLOOKUP}_server_ready_s"] = ours.ready_s
        figures |= _memory_of_servers(ours, workload, scratch)
        redis: RedisHandle | None = None
        if figures["redis_available"]:
            redis = stack.enter_context(redis_server(scratch / "redis"))
            figures |= _redis_figures(redis, workload)
        else:
            progress(INSTALL_HINT)
            notes.append(INSTALL_HINT)
        for level in settings.concurrency:
            progress(f"compare: per-call, {level} in flight")
            runs: list[dict[str, Any]] = []
            for _ in range(settings.unary_repeats):  # contenders interleaved, best run of each kept
                runs.append(_grpc_contender(NIXLOOKUP, ours, workload, settings, level=level, batch=None))
                if redis is not None:
                    runs.append(_redis_contender(redis, workload, settings, level=level, batch=None))
                runs.append(
                    _grpc_contender(REFERENCE, reference, workload, settings, level=level, batch=None)
                )
            figures |= _best_per_call_runs(runs, level)
        for batch in settings.batch_sizes:
            progress(f"compare: bulk, batches of {batch:,}")
            figures |= _grpc_contender(NIXLOOKUP, ours, workload, settings, level=None, batch=batch)
            if redis is not None:
                figures |= _redis_contender(redis, workload, settings, level=None, batch=batch)
            figures |= _grpc_contender(REFERENCE, reference, workload, settings, level=None, batch=batch)
        progress("compare: Python set in process")
        figures |= _pyset_figures(workload, settings)
        progress("compare: the server's own Reload of the register file")
        figures |= _server_reload_figures(ours, register_path)
    figures |= ratios(figures, settings)
    return figures, notes


def run_compare(settings: CompareSettings, workdir: Path | None = None) -> Report:
    report = Report(
        command="compare",
        parameters={"size": settings.size, "seed": settings.seed, "unary_calls": settings.unary_calls,
                    "bulk_numbers": settings.bulk_numbers, "bulk_repeats": settings.bulk_repeats},
    )  # fmt: skip
    started = time.perf_counter()
    report.figures, report.notes = compare_figures(settings, workdir)
    report.duration_s = time.perf_counter() - started
    report.tables = tables(report.figures, settings)
    report.plots = plots(report.figures, settings)
    report.notes += redis_ahead(report.figures, settings)
    report.notes.append(
        "Python set 'per call' is one `in` test in process (no network): the ceiling any server is measured "
        "against, the same figure at every concurrency level (the GIL runs one at a time)"
    )
    return report
