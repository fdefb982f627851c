"""Timing that holds up on a shared, noisy machine: best-of-N runs and latency percentiles.

Each measurement repeats a bounded number of times and within a time budget (whichever ends first, but
at least once), and keeps the minimum and the median: the minimum is the cost of the work itself, the
median shows how noisy the machine was. Ratios are always taken between figures of the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BulkStats",
    "LatencyStats",
    "Timing",
    "best_of",
    "best_of_paired",
    "bulk_stats",
    "drive_calls",
    "latency_stats",
    "progress",
    "ratio",
]


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per run of one measured piece of work."""

    min_s: float
    median_s: float
    runs: int


def best_of(work: Callable[[], Any], *, repeats: int, max_seconds: float) -> Timing:
    """Run `work` up to `repeats` times (at least once, no more once `max_seconds` have passed)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    samples: list[float] = []
    budget_end = time.perf_counter() + max_seconds
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        end = time.perf_counter()
        samples.append(end - start)
        if end >= budget_end:
            break
    return Timing(min_s=min(samples), median_s=statistics.median(samples), runs=len(samples))


def best_of_paired(
    first: Callable[[], Any], second: Callable[[], Any], *, repeats: int, max_seconds: float
) -> tuple[Timing, Timing]:
    """Like `best_of` for two pieces of work, run alternately, so a busy spell on the machine hits both.

    Used where the figure that matters is their ratio (the index vs the dense-bitset floor).
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    samples: tuple[list[float], list[float]] = ([], [])
    budget_end = time.perf_counter() + max_seconds
    for _ in range(repeats):
        for work, into in ((first, samples[0]), (second, samples[1])):
            start = time.perf_counter()
            work()
            into.append(time.perf_counter() - start)
        if time.perf_counter() >= budget_end:
            break
    first_timing, second_timing = (
        Timing(min_s=min(runs), median_s=statistics.median(runs), runs=len(runs)) for runs in samples
    )
    return first_timing, second_timing


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Per-call latencies of one load run and the throughput it reached."""

    calls: int
    seconds: float
    qps: float
    p50_ms: float
    p99_ms: float
    max_ms: float


async def drive_calls(
    call: Callable[[int], Awaitable[bool]],
    expected: NDArray[np.bool_],
    *,
    in_flight: int,
    max_seconds: float,
) -> tuple[list[int], float, int]:
    """Run `call(index)` for index 0, 1, ... with `in_flight` concurrent workers, until every index is
    done or `max_seconds` passed. Each call answers "blocked?"; returns (latencies in ns, elapsed seconds,
    answers that differ from `expected`). The caller warms its connections up before."""
    latencies: list[int] = []
    wrong = 0
    next_index = 0
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal next_index, wrong
        while next_index < len(expected) and time.perf_counter() < deadline:
            index = next_index
            next_index += 1
            start = time.perf_counter_ns()
            blocked = await call(index)
            latencies.append(time.perf_counter_ns() - start)
            if blocked != bool(expected[index]):
                wrong += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return latencies, time.perf_counter() - started, wrong


def latency_stats(latencies_ns: NDArray[np.int64] | list[int], seconds: float) -> LatencyStats:
    """Summarise per-call latencies (ns) of a run that took `seconds` of wall time."""
    values = np.asarray(latencies_ns, dtype=np.int64)
    if values.size == 0:
        return LatencyStats(calls=0, seconds=seconds, qps=0.0, p50_ms=0.0, p99_ms=0.0, max_ms=0.0)
    p50, p99 = np.percentile(values, [50, 99])
    return LatencyStats(
        calls=int(values.size),
        seconds=seconds,
        qps=values.size / seconds if seconds > 0 else 0.0,
        p50_ms=float(p50) / 1e6,
        p99_ms=float(p99) / 1e6,
        max_ms=float(values.max()) / 1e6,
    )


@dataclass(frozen=True, slots=True)
class BulkStats:
    """Numbers checked through a bulk path, the wall time it took, and whether the answers were right."""

    numbers: int
    batches: int
    seconds: float
    numbers_per_s: float
    correct: bool


def bulk_stats(numbers: int, batches: int, seconds: float, *, correct: bool) -> BulkStats:
    return BulkStats(
        numbers=numbers,
        batches=batches,
        seconds=seconds,
        numbers_per_s=numbers / seconds if seconds > 0 else 0.0,
        correct=correct,
    )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def progress(message: str) -> None:
    """One progress line on stderr (stdout is kept for --json)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)
