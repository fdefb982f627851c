"""`nixlookup-bench reload`: what reloads and updates cost the callers, and how fast they land.

In one run against one real server (register of 1.5M numbers from a text file, a data directory):
1. steady state: unary `Check` at 8 in flight for a fixed time: QPS, p50, p99;
2. the same load while `Admin/Reload` swaps the whole register from a text file once a second
   (alternating between two registers A and B that give the same answer for every query: B is A plus 1%
   new numbers none of the queries hit, so any wrong answer would mean a half-built index was served);
   the ratio of p99 under reload to steady p99 is the headline (target <= 2);
3. snapshot reload end to end (client sends Reload of a snapshot file, server answers): best and median;
4. durable `ApplyDelta` throughput: rounds of fresh numbers added, each acknowledged only once durable.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nixlookup.bench.admin import TimedAdmin
from nixlookup.bench.grpcload import unary_check
from nixlookup.bench.report import Report, Table
from nixlookup.bench.servers import RunningServer, nixlookup_server
from nixlookup.bench.timing import LatencyStats, progress, ratio
from nixlookup.bench.workload import Workload, make_workload, write_register_text
from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.store import generate_register, write_snapshot

__all__ = ["ReloadSettings", "reload_figures", "run_reload"]


@dataclass(frozen=True)
class ReloadSettings:
    size: int = 1_500_000
    seed: int = 20080101
    reloads: int = 10  # one per second: the load phases last this many seconds
    in_flight: int = 8
    snapshot_reloads: int = 6
    delta_rounds: int = 20
    delta_numbers: int = 10_000  # numbers added per ApplyDelta
    query_count: int = 200_000  # enough for `reloads` seconds of unary calls


@dataclass(frozen=True)
class _Registers:
    workload: Workload
    text_a: Path
    text_b: Path
    snapshot_a: Path
    snapshot_b: Path
    fresh: np.ndarray[Any, np.dtype[np.uint64]]  # numbers in neither register nor queries, for deltas


def _fresh_numbers(workload: Workload, count: int, seed: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Realistic numbers in neither the register nor the queries."""
    candidates = generate_register(count * 3 + 1000, seed)
    taken = sorted_unique(np.concatenate([workload.register, workload.queries]))
    position = np.minimum(np.searchsorted(taken, candidates), taken.size - 1)
    fresh = candidates[taken[position] != candidates]
    np.random.default_rng(seed).shuffle(fresh)
    chosen: np.ndarray[Any, np.dtype[np.uint64]] = fresh[:count]
    return chosen


def _prepare(settings: ReloadSettings, workdir: Path) -> _Registers:
    workload = make_workload(settings.size, settings.query_count, settings.seed)
    fresh = _fresh_numbers(
        workload, settings.size // 100 + settings.delta_rounds * settings.delta_numbers, settings.seed + 1
    )
    extra, for_deltas = fresh[: settings.size // 100], fresh[settings.size // 100 :]
    register_b = sorted_unique(np.concatenate([workload.register, extra]))
    snapshot_a, snapshot_b = workdir / "register-a.snapshot", workdir / "register-b.snapshot"
    write_snapshot(snapshot_a, Index.build(workload.register, version="bench-a", source="bench"))
    write_snapshot(snapshot_b, Index.build(register_b, version="bench-b", source="bench"))
    return _Registers(
        workload=workload,
        text_a=write_register_text(workdir / "register-a.txt", workload.register),
        text_b=write_register_text(workdir / "register-b.txt", register_b),
        snapshot_a=snapshot_a,
        snapshot_b=snapshot_b,
        fresh=for_deltas,
    )


def _load(server: RunningServer, workload: Workload, settings: ReloadSettings) -> tuple[LatencyStats, int]:
    return unary_check(
        server.target,
        workload.queries,
        workload.expected_blocked,
        in_flight=settings.in_flight,
        max_calls=workload.queries.size,
        max_seconds=float(settings.reloads),
    )


def _reload_every_second(
    server: RunningServer,
    registers: _Registers,
    settings: ReloadSettings,
    walls: list[float],
    stop: threading.Event,
) -> None:
    with TimedAdmin(server.target) as admin:
        for round_number in range(settings.reloads):
            if stop.is_set():
                return
            started = time.perf_counter()
            path = registers.text_b if round_number % 2 == 0 else registers.text_a
            walls.append(admin.reload(path, fmt="text").wall_s)
            stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))


def _latency_figures(prefix: str, stats: LatencyStats, wrong: int) -> dict[str, Any]:
    return {
        f"{prefix}_qps": stats.qps,
        f"{prefix}_p50_ms": stats.p50_ms,
        f"{prefix}_p99_ms": stats.p99_ms,
        f"{prefix}_max_ms": stats.max_ms,
        f"{prefix}_calls": stats.calls,
        f"{prefix}_wrong": wrong,
    }


def _snapshot_figures(
    server: RunningServer, registers: _Registers, settings: ReloadSettings
) -> dict[str, Any]:
    walls: list[float] = []
    server_side: list[float] = []
    with TimedAdmin(server.target) as admin:
        for round_number in range(settings.snapshot_reloads):
            path = registers.snapshot_b if round_number % 2 == 0 else registers.snapshot_a
            timed = admin.reload(path, fmt="snapshot")
            walls.append(timed.wall_s)
            server_side.append(timed.server_load_s)
    return {
        "snapshot_reload_s": min(walls),
        "snapshot_reload_s_median": statistics.median(walls),
        "snapshot_reload_server_load_s": min(server_side),
    }


def _delta_figures(server: RunningServer, registers: _Registers, settings: ReloadSettings) -> dict[str, Any]:
    walls: list[float] = []
    added = 0
    with TimedAdmin(server.target) as admin:
        for round_number in range(settings.delta_rounds):
            start = round_number * settings.delta_numbers
            batch = registers.fresh[start : start + settings.delta_numbers]
            if batch.size == 0:
                break
            timed = admin.apply_delta(add=batch)
            walls.append(timed.wall_s)
            added += timed.added
        info = admin.register_info()
    total = sum(walls)
    return {
        "delta_rounds": len(walls),
        "delta_numbers_per_call": settings.delta_numbers,
        "delta_added": added,
        "delta_numbers_per_s": added / total if total > 0 else None,
        "delta_call_ms_median": statistics.median(walls) * 1e3 if walls else None,
        "delta_final_count": int(info.register.count),
    }


def reload_figures(settings: ReloadSettings, workdir: Path | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {"register_size": settings.size}
    with tempfile.TemporaryDirectory(prefix="nixlookup-bench-reload-", dir=workdir) as tmp:
        scratch = Path(tmp)
        progress(f"reload: preparing two registers of ~{settings.size:,} numbers and their snapshots")
        registers = _prepare(settings, scratch)
        with nixlookup_server(registers.text_a, scratch) as server:
            progress(f"reload: steady state, {settings.reloads} s of Check at {settings.in_flight} in flight")
            figures |= _latency_figures("steady", *_load(server, registers.workload, settings))
            progress("reload: the same load while reloading the register from text once a second")
            walls: list[float] = []
            stop = threading.Event()
            reloader = threading.Thread(
                target=_reload_every_second, args=(server, registers, settings, walls, stop), daemon=True
            )
            reloader.start()
            try:
                figures |= _latency_figures("during_reload", *_load(server, registers.workload, settings))
            finally:
                stop.set()
                reloader.join(timeout=120)
            figures |= {
                "text_reloads": len(walls),
                "text_reload_s_median": statistics.median(walls) if walls else None,
                "text_reload_s_max": max(walls) if walls else None,
            }
            progress("reload: snapshot reloads end to end")
            figures |= _snapshot_figures(server, registers, settings)
            progress(
                f"reload: {settings.delta_rounds} durable ApplyDelta calls of {settings.delta_numbers:,}"
            )
            figures |= _delta_figures(server, registers, settings)
    figures["p99_during_reload_vs_steady"] = ratio(
        figures.get("during_reload_p99_ms"), figures.get("steady_p99_ms")
    )
    figures["p50_during_reload_vs_steady"] = ratio(
        figures.get("during_reload_p50_ms"), figures.get("steady_p50_ms")
    )
    return figures


def run_reload(settings: ReloadSettings, workdir: Path | None = None) -> Report:
    report = Report(
        command="reload",
        parameters={"size": settings.size, "seed": settings.seed, "reloads": settings.reloads,
                    "in_flight": settings.in_flight, "delta_rounds": settings.delta_rounds,
                    "delta_numbers": settings.delta_numbers},
    )  # fmt: skip
    started = time.perf_counter()
    figures = reload_figures(settings, workdir)
    report.figures = figures
    report.duration_s = time.perf_counter() - started
    title = f"Check at {settings.in_flight} in flight: steady vs reloading {settings.size:,} numbers a second"
    latency = Table(
        title=title,
        columns=["phase", "QPS", "p50 ms", "p99 ms", "max ms", "wrong answers"],
    )
    for phase, label in (("steady", "steady state"), ("during_reload", "during reloads")):
        latency.rows.append(
            [label] + [figures.get(f"{phase}_{w}") for w in ("qps", "p50_ms", "p99_ms", "max_ms", "wrong")]
        )
    summary = Table(title="Reloads and deltas", columns=["what", "figure", "target"])
    summary.rows = [
        ["p99 during reload / steady p99", figures.get("p99_during_reload_vs_steady"), "<= 2"],
        ["text reload, wall s (median)", figures.get("text_reload_s_median"), "-"],
        ["snapshot reload end to end, s (best)", figures.get("snapshot_reload_s"), "<= 0.050"],
        ["snapshot reload end to end, s (median)", figures.get("snapshot_reload_s_median"), "-"],
        ["durable ApplyDelta, numbers/s", figures.get("delta_numbers_per_s"), "-"],
        ["ApplyDelta call, ms (median)", figures.get("delta_call_ms_median"), "-"],
    ]
    report.tables = [latency, summary]
    return report
