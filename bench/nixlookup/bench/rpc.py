"""`nixlookup-bench rpc`: the gRPC service end to end, against a bare grpcio server in the same run.

It starts the real server (`nixlookup-server serve`, register from a text file) and the reference server
(`refserver`: grpcio answering from a Python set) on loopback, then, with the same prebuilt requests:
- unary `Check` by e164 at 1, 8 and 32 calls in flight: QPS, p50, p99, server CPU per call;
- bulk `CheckStream` with packed bytes and with texts, at batch sizes 1k, 10k, 100k: numbers/s (best of N)
  and server CPU per number;
- bulk bytes for a caller with 100k opt-outs and 500k relationships (loaded through Admin/ApplyDelta)
  against no caller, answers checked against the rule order (opt-out, relationship, register);
- the same unary and bulk runs against a second nixlookup server with TLS and an auth file, the client
  sending a bearer token (`--security`, on by default), as a ratio to the plaintext server;
- the real Python client (`Client.check_batches`, `Client.check_many`, `wash`) against the raw-stub path
  on the same server (`clientpath`);
and reports nixlookup's figures as ratios against the reference. Contenders alternate at every step, so
drift in the machine's load hits both alike. Server CPU comes from /proc/<pid>/stat (user + system).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.admin import TimedAdmin
from nixlookup.bench.clientpath import ClientPathSettings, client_path_figures, client_path_table
from nixlookup.bench.grpcload import BulkMode, bulk_check, unary_check
from nixlookup.bench.procs import cpu_seconds, rss_bytes
from nixlookup.bench.report import Plot, Report, Table
from nixlookup.bench.servers import (
    RunningServer,
    nixlookup_server,
    reference_server,
    secured_nixlookup_server,
)
from nixlookup.bench.timing import BulkStats, LatencyStats, progress, ratio
from nixlookup.bench.workload import Workload, make_workload, write_register_text
from nixlookup.client import NixlookupClientError
from nixlookup.server.index import sorted_unique
from nixlookup.v1.vocabulary import ListKind

__all__ = [
    "CALLER",
    "OURS",
    "RpcSettings",
    "measure_bulk",
    "measure_caller_lists",
    "measure_unary",
    "rpc_figures",
    "run_rpc",
    "started_servers",
]

OURS = "nixlookup"
"""The name of our own server among `started_servers`."""
_REFERENCE = "reference"  # bare grpcio, sync server with a thread pool: the same model as ours
_REFERENCE_AIO = "reference-aio"  # bare grpc.aio: shown beside it, for the choice of server model
SECURED = "nixlookup-tls"  # our server with TLS and an auth file, clients sending a bearer token


@dataclass(frozen=True)
class RpcSettings:
    size: int = 1_500_000
    seed: int = 20080101
    concurrency: tuple[int, ...] = (1, 8, 32)
    batch_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    modes: tuple[BulkMode, ...] = ("bytes", "texts")
    unary_calls: int = 6_000  # per level and contender
    unary_seconds: float = 6.0
    unary_repeats: int = 2  # best of N unary runs per level and contender (the machine is shared)
    bulk_numbers: int = 1_000_000  # per bulk run (bytes)
    text_numbers: int = 300_000  # per bulk run (texts: ~10x slower per number)
    bulk_seconds: float = 8.0
    bulk_repeats: int = 3  # best of N bulk runs
    caller_lists: bool = True  # also the caller with 100k opt-outs + 500k relationships (needs Admin)
    security: bool = True  # also the server with TLS + a bearer token, as a ratio to plaintext
    client_numbers: int = 300_000  # per Client.check_batches / check_many run (0: skip the client paths)
    wash_rows: int = 100_000  # rows of the CSV `wash` runs


def _unary_key(contender: str, level: int, what: str) -> str:
    prefix = "" if contender == OURS else f"{contender}_"
    return f"{prefix}unary_c{level}_{what}"


def _bulk_key(contender: str, mode: str, batch: int, what: str) -> str:
    prefix = "" if contender == OURS else f"{contender}_"
    return f"{prefix}bulk_{mode}_{batch}_{what}"


def measure_unary(
    servers: dict[str, RunningServer], workload: Workload, settings: RpcSettings
) -> dict[str, Any]:
    """Per-call figures for every server at every concurrency level: best of `unary_repeats` runs (by QPS),
    contenders interleaved run by run. Wrong answers are summed over all runs."""
    figures: dict[str, Any] = {}
    for level in settings.concurrency:
        best: dict[str, tuple[LatencyStats, float]] = {}
        wrong: dict[str, int] = dict.fromkeys(servers, 0)
        for _ in range(settings.unary_repeats):
            for name, server in servers.items():
                progress(f"rpc: unary Check, {level} in flight, {name}")
                cpu_before = cpu_seconds(server.pid)
                stats, run_wrong = unary_check(
                    server.target,
                    workload.queries,
                    workload.expected_blocked,
                    in_flight=level,
                    max_calls=settings.unary_calls,
                    max_seconds=settings.unary_seconds,
                    security=server.security,
                )
                cpu_per_call = (cpu_seconds(server.pid) - cpu_before) / max(1, stats.calls)
                wrong[name] += run_wrong
                if name not in best or stats.qps > best[name][0].qps:
                    best[name] = (stats, cpu_per_call)
        for name, (stats, cpu_per_call) in best.items():
            figures |= {
                _unary_key(name, level, "qps"): stats.qps,
                _unary_key(name, level, "p50_ms"): stats.p50_ms,
                _unary_key(name, level, "p99_ms"): stats.p99_ms,
                _unary_key(name, level, "calls"): stats.calls,
                _unary_key(name, level, "wrong"): wrong[name],
                _unary_key(name, level, "server_cpu_us_per_call"): cpu_per_call * 1e6,
            }
    return figures


def _best_bulk(
    server: RunningServer,
    *,
    workload: Workload,
    texts: Sequence[str],
    mode: BulkMode,
    batch: int,
    settings: RpcSettings,
) -> tuple[BulkStats, float]:
    count = settings.bulk_numbers if mode == "bytes" else settings.text_numbers
    queries, expected = workload.queries[:count], workload.expected_blocked[:count]
    best: BulkStats | None = None
    best_cpu = 0.0
    for _ in range(settings.bulk_repeats):
        cpu_before = cpu_seconds(server.pid)
        stats = bulk_check(
            server.target,
            queries,
            expected,
            batch_size=batch,
            mode=mode,
            texts=texts[:count] if mode == "texts" else None,
            max_seconds=settings.bulk_seconds,
            security=server.security,
        )
        cpu_used = cpu_seconds(server.pid) - cpu_before
        if best is None or stats.numbers_per_s > best.numbers_per_s:
            best, best_cpu = stats, cpu_used / max(1, stats.numbers) * 1e9
        if not stats.correct:
            break
    assert best is not None
    return best, best_cpu


def measure_bulk(
    servers: dict[str, RunningServer], workload: Workload, settings: RpcSettings
) -> dict[str, Any]:
    """Bulk figures for every server, mode and batch size, contenders interleaved."""
    texts = workload.query_texts(settings.text_numbers) if "texts" in settings.modes else []
    figures: dict[str, Any] = {}
    for mode in settings.modes:
        for batch in settings.batch_sizes:
            for name, server in servers.items():
                progress(f"rpc: CheckStream {mode}, batches of {batch:,}, {name}")
                stats, cpu_ns = _best_bulk(
                    server, workload=workload, texts=texts, mode=mode, batch=batch, settings=settings
                )
                figures |= {
                    _bulk_key(name, mode, batch, "numbers_per_s"): stats.numbers_per_s,
                    _bulk_key(name, mode, batch, "numbers"): stats.numbers,
                    _bulk_key(name, mode, batch, "correct"): stats.correct,
                    _bulk_key(name, mode, batch, "server_cpu_ns_per_number"): cpu_ns,
                }
    return figures


CALLER = "bench-caller"
_CALLER_OPT_OUTS = 100_000
_CALLER_RELATIONSHIPS = 500_000
_CALLER_BATCH = 10_000


def _caller_lists(
    admin: TimedAdmin, workload: Workload, seed: int
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Give CALLER 100k opt-outs and 500k live relationships, drawn from the register and the queries."""
    rng = np.random.default_rng(seed)
    pool = sorted_unique(np.concatenate([workload.register, workload.queries]))
    opt_outs = np.sort(rng.choice(pool, size=min(_CALLER_OPT_OUTS, pool.size), replace=False))
    relationships = np.sort(rng.choice(pool, size=min(_CALLER_RELATIONSHIPS, pool.size), replace=False))
    admin.apply_delta(kind=ListKind.OPT_OUT, caller=CALLER, add=opt_outs)
    admin.apply_delta(kind=ListKind.RELATIONSHIP, caller=CALLER, add=relationships)
    return opt_outs, relationships


def measure_caller_lists(server: RunningServer, workload: Workload, settings: RpcSettings) -> dict[str, Any]:
    """Bulk bytes throughput for a caller with 100k opt-outs and 500k relationships vs no caller.

    Expected answers for the caller: an opt-out is always blocked; otherwise a live relationship allows
    the call; otherwise the register decides. Runs alternate between the plain and the caller case.
    """
    with TimedAdmin(server.target) as admin:
        try:
            opt_outs, relationships = _caller_lists(admin, workload, settings.seed + 99)
        except NixlookupClientError as error:
            progress(f"rpc: caller lists unavailable ({error}); skipping the caller-lists case")
            return {}
    count = settings.bulk_numbers
    queries = workload.queries[:count]
    plain_expected = workload.expected_blocked[:count]
    caller_expected = np.isin(queries, opt_outs) | (plain_expected & ~np.isin(queries, relationships))
    best: dict[str, BulkStats] = {}
    for _ in range(settings.bulk_repeats):
        for name, caller, expected in (("plain", "", plain_expected), ("caller", CALLER, caller_expected)):
            progress(f"rpc: CheckStream bytes, batches of {_CALLER_BATCH:,}, {name}")
            stats = bulk_check(
                server.target, queries, expected, batch_size=_CALLER_BATCH, mode="bytes", caller=caller,
                max_seconds=settings.bulk_seconds,
            )  # fmt: skip
            if name not in best or stats.numbers_per_s > best[name].numbers_per_s:
                best[name] = stats
    return {
        "caller_lists_opt_outs": int(opt_outs.size),
        "caller_lists_relationships": int(relationships.size),
        "caller_lists_plain_numbers_per_s": best["plain"].numbers_per_s,
        "caller_lists_numbers_per_s": best["caller"].numbers_per_s,
        "caller_lists_correct": best["caller"].correct and best["plain"].correct,
        "caller_lists_vs_plain": ratio(best["caller"].numbers_per_s, best["plain"].numbers_per_s),
    }


def _ratios(figures: dict[str, Any], settings: RpcSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for level in settings.concurrency:
        for name, suffix in ((_REFERENCE, ""), (_REFERENCE_AIO, "_aio")):
            out[f"unary_c{level}_vs_reference{suffix}"] = ratio(
                figures.get(_unary_key(OURS, level, "qps")), figures.get(_unary_key(name, level, "qps"))
            )
    for mode in settings.modes:
        for batch in settings.batch_sizes:
            out[f"bulk_{mode}_{batch}_vs_reference"] = ratio(
                figures.get(_bulk_key(OURS, mode, batch, "numbers_per_s")),
                figures.get(_bulk_key(_REFERENCE, mode, batch, "numbers_per_s")),
            )
    for level in settings.concurrency:
        out[f"tls_token_unary_c{level}_vs_plaintext"] = ratio(
            figures.get(_unary_key(SECURED, level, "qps")), figures.get(_unary_key(OURS, level, "qps"))
        )
    for batch in settings.batch_sizes:
        out[f"tls_token_bulk_bytes_{batch}_vs_plaintext"] = ratio(
            figures.get(_bulk_key(SECURED, "bytes", batch, "numbers_per_s")),
            figures.get(_bulk_key(OURS, "bytes", batch, "numbers_per_s")),
        )
    for batch in settings.batch_sizes:
        out[f"bulk_bytes_vs_texts_{batch}"] = ratio(
            figures.get(_bulk_key(OURS, "bytes", batch, "numbers_per_s")),
            figures.get(_bulk_key(OURS, "texts", batch, "numbers_per_s")),
        )
    return out


@contextlib.contextmanager
def started_servers(
    workload: Workload, workdir: Path, *, with_reference: bool = True, with_security: bool = False
) -> Iterator[dict[str, RunningServer]]:
    """The real server (register from a text file) and the reference server, both on loopback."""
    register_path = write_register_text(workdir / "register.txt", workload.register)
    with contextlib.ExitStack() as stack:
        progress(f"starting nixlookup-server on {workload.size:,} numbers")
        servers = {OURS: stack.enter_context(nixlookup_server(register_path, workdir))}
        if with_security:
            progress("starting nixlookup-server with TLS and an auth file")
            servers[SECURED] = stack.enter_context(secured_nixlookup_server(register_path, workdir))
        if with_reference:
            progress("starting the reference grpcio server")
            servers[_REFERENCE] = stack.enter_context(
                reference_server(workload.register, workdir / "reference")
            )
            servers[_REFERENCE_AIO] = stack.enter_context(
                reference_server(workload.register, workdir / "reference-aio", mode="aio")
            )
        yield servers


_UNARY_COLUMNS = ("qps", "p50_ms", "p99_ms", "server_cpu_us_per_call")
_BULK_COLUMNS = ("numbers_per_s", "server_cpu_ns_per_number", "correct")


def _tables(figures: dict[str, Any], settings: RpcSettings) -> list[Table]:
    unary = Table(
        title="Unary Check (e164), nixlookup vs bare grpcio reference (sync, same thread pool) and grpc.aio",
        columns=["in flight", "QPS", "p50 ms", "p99 ms", "server CPU us/call", "ref QPS", "ref p50 ms",
                 "ref p99 ms", "ref CPU us/call", "QPS vs ref", "aio ref QPS", "QPS vs aio ref"],
    )  # fmt: skip
    for level in settings.concurrency:
        ours = [figures.get(_unary_key(OURS, level, what)) for what in _UNARY_COLUMNS]
        reference = [figures.get(_unary_key(_REFERENCE, level, what)) for what in _UNARY_COLUMNS]
        unary.rows.append(
            [
                level,
                *ours,
                *reference,
                figures.get(f"unary_c{level}_vs_reference"),
                figures.get(_unary_key(_REFERENCE_AIO, level, "qps")),
                figures.get(f"unary_c{level}_vs_reference_aio"),
            ]
        )
    bulk = Table(
        title="Bulk CheckStream, numbers/s",
        columns=[
            "payload",
            "batch",
            "numbers/s",
            "server CPU ns/number",
            "correct",
            "ref numbers/s",
            "vs ref",
        ],
    )
    for mode in settings.modes:
        for batch in settings.batch_sizes:
            ours = [figures.get(_bulk_key(OURS, mode, batch, what)) for what in _BULK_COLUMNS]
            reference = [
                figures.get(_bulk_key(_REFERENCE, mode, batch, "numbers_per_s")),
                figures.get(f"bulk_{mode}_{batch}_vs_reference"),
            ]
            bulk.rows.append([mode, batch, *ours, *reference])
    tables = [unary, bulk]
    if "caller_lists_vs_plain" in figures:
        lists = Table(
            title=f"Bulk bytes, batches of {_CALLER_BATCH:,}: caller with {_CALLER_OPT_OUTS:,} opt-outs and "
            f"{_CALLER_RELATIONSHIPS:,} relationships vs no caller",
            columns=["no caller numbers/s", "caller numbers/s", "correct", "caller / no caller", "target"],
        )
        keys = ("caller_lists_plain_numbers_per_s", "caller_lists_numbers_per_s", "caller_lists_correct",
                "caller_lists_vs_plain")  # fmt: skip
        lists.rows.append([*(figures[key] for key in keys), ">= 0.8"])
        tables.append(lists)
    if _unary_key(SECURED, settings.concurrency[0], "qps") in figures:
        secured = Table(
            title="TLS + bearer token (auth file) vs plaintext without auth, same server, same run",
            columns=["call", "plaintext", "TLS + token", "ratio", "target"],
        )
        for level in settings.concurrency:
            secured.rows.append([
                f"unary QPS, {level} in flight", figures.get(_unary_key(OURS, level, "qps")),
                figures.get(_unary_key(SECURED, level, "qps")),
                figures.get(f"tls_token_unary_c{level}_vs_plaintext"), ">= 0.8",
            ])  # fmt: skip
        for batch in settings.batch_sizes:
            secured.rows.append([
                f"bulk bytes numbers/s, batches of {batch:,}",
                figures.get(_bulk_key(OURS, "bytes", batch, "numbers_per_s")),
                figures.get(_bulk_key(SECURED, "bytes", batch, "numbers_per_s")),
                figures.get(f"tls_token_bulk_bytes_{batch}_vs_plaintext"), ">= 0.9",
            ])  # fmt: skip
        tables.append(secured)
    if "client_check_many_vs_raw" in figures:
        tables.append(client_path_table(figures))
    return tables


def _plots(figures: dict[str, Any], settings: RpcSettings) -> list[Plot]:
    levels = [float(level) for level in settings.concurrency]
    # deliberate twins: two charts, each one literal Plot of its own axes and series
    latency = Plot(
        name="latency-vs-concurrency",
        title="Unary Check p99 latency vs calls in flight",
        xlabel="calls in flight",
        ylabel="p99 latency (ms)",
        x=levels,
        series={
            f"{name} p99": [figures.get(_unary_key(name, level, "p99_ms")) for level in settings.concurrency]
            for name in (OURS, _REFERENCE)
        },
        logx=True,
    )
    batches = [float(batch) for batch in settings.batch_sizes]
    throughput = Plot(
        name="throughput-vs-batch",
        title="CheckStream throughput vs batch size",
        xlabel="numbers per batch",
        ylabel="numbers/s",
        x=batches,
        series={
            f"{name} {mode}": [
                figures.get(_bulk_key(name, mode, batch, "numbers_per_s")) for batch in settings.batch_sizes
            ]
            for name in (OURS, _REFERENCE)
            for mode in settings.modes
        },
        logx=True,
        logy=True,
    )
    return [latency, throughput]


def rpc_figures(settings: RpcSettings, workdir: Path | None = None) -> dict[str, Any]:
    """Every rpc figure of one run (see the module docstring)."""
    query_count = max(
        settings.bulk_numbers, settings.text_numbers, settings.unary_calls, settings.client_numbers,
        settings.wash_rows,
    )  # fmt: skip
    workload = make_workload(settings.size, query_count, settings.seed)
    figures: dict[str, Any] = {"register_size": workload.size}
    with (
        tempfile.TemporaryDirectory(prefix="nixlookup-bench-rpc-", dir=workdir) as tmp,
        started_servers(workload, Path(tmp), with_security=settings.security) as servers,
    ):
        figures["server_ready_s"] = servers[OURS].ready_s
        figures["reference_ready_s"] = servers[_REFERENCE].ready_s
        figures["server_rss_bytes"] = rss_bytes(servers[OURS].pid)
        figures["reference_rss_bytes"] = rss_bytes(servers[_REFERENCE].pid)
        figures |= measure_unary(servers, workload, settings)
        bulk_servers = {name: server for name, server in servers.items() if name != _REFERENCE_AIO}
        figures |= measure_bulk(bulk_servers, workload, settings)
        if settings.client_numbers:
            client_settings = ClientPathSettings(
                numbers=settings.client_numbers,
                wash_rows=settings.wash_rows,
                repeats=settings.bulk_repeats,
                max_seconds=settings.bulk_seconds,
            )
            figures |= client_path_figures(servers[OURS].target, workload, client_settings, Path(tmp))
        if settings.caller_lists:
            figures |= measure_caller_lists(servers[OURS], workload, settings)
    figures |= _ratios(figures, settings)
    return figures


def run_rpc(settings: RpcSettings, workdir: Path | None = None) -> Report:
    report = Report(
        command="rpc",
        parameters={"size": settings.size, "seed": settings.seed, "unary_calls": settings.unary_calls,
                    "bulk_numbers": settings.bulk_numbers, "text_numbers": settings.text_numbers,
                    "bulk_repeats": settings.bulk_repeats, "client_numbers": settings.client_numbers,
                    "wash_rows": settings.wash_rows},
    )  # fmt: skip
    started = time.perf_counter()
    report.figures = rpc_figures(settings, workdir)
    report.duration_s = time.perf_counter() - started
    report.tables = _tables(report.figures, settings)
    report.plots = _plots(report.figures, settings)
    report.notes.append(
        "client, nixlookup server and reference server share this machine's cores; requests are prebuilt, "
        "so client encoding cost is not in the figures, except in the Python-client table, which runs the "
        "real client (and wash) against the raw-stub path"
    )
    return report
