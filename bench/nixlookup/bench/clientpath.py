"""The real Python client's bulk paths, as ratios against the raw-stub path in the same run.

`nixlookup-bench rpc` measures the server with prebuilt requests on raw stubs (`grpcload.bulk_check`); what
an internal service gets is that minus the client's own work. Here, against the same running server and on
the same queries, alternating run by run:
- raw stub, packed keys, batches of 10k  vs  `Client.check_batches(uint64 array, want_details=False)` and
  `Client.check_many(uint64 array)` (one `BulkResult` per number);
- raw stub, texts as written, batches of 10k  vs  `wash` of a CSV holding the same texts, end to end
  (CSV read, stream, CSV write), the library function `nixlookup wash` runs.
Every run checks its answers against the expected blocked set; a wrong answer voids the figure.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.grpcload import bulk_check
from nixlookup.bench.report import Table
from nixlookup.bench.timing import BulkStats, bulk_stats, progress, ratio
from nixlookup.bench.workload import Workload
from nixlookup.client import Client, Verdict
from nixlookup.client.wash import wash

__all__ = ["CLIENT_BATCH", "ClientPathSettings", "client_path_figures", "client_path_table"]

CLIENT_BATCH = 10_000
"""The client's default batch size (`DEFAULT_BATCH_SIZE`), so the figures are what a default client gets."""


@dataclass(frozen=True)
class ClientPathSettings:
    numbers: int = 300_000  # per check_batches / check_many run (and the raw bytes run beside them)
    wash_rows: int = 100_000  # rows of the washed CSV (and raw texts beside it)
    repeats: int = 3  # best of N, contenders alternating
    max_seconds: float = 8.0  # per raw-stub run


def _timed(work: Callable[[], tuple[int, bool]]) -> BulkStats:
    started = time.perf_counter()
    numbers, correct = work()
    return bulk_stats(numbers, 0, time.perf_counter() - started, correct=correct)


def _check_batches(client: Client, keys: NDArray[np.uint64], expected: NDArray[np.bool_]) -> tuple[int, bool]:
    blocked = [batch.blocked for batch in client.check_batches(keys, want_details=False)]
    got = np.concatenate(blocked) if blocked else np.zeros(0, dtype=np.bool_)
    return int(got.size), bool(np.array_equal(got, expected))


def _check_many(client: Client, keys: NDArray[np.uint64], expected: NDArray[np.bool_]) -> tuple[int, bool]:
    verdicts = [result.verdict is Verdict.BLOCKED for result in client.check_many(keys)]
    return len(verdicts), verdicts == expected.tolist()


def _write_calls(path: Path, texts: list[str]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "phone"])
        writer.writerows([position, text] for position, text in enumerate(texts))
    return path


def _wash(client: Client, source: Path, output: Path, expected: NDArray[np.bool_]) -> tuple[int, bool]:
    summary = wash(client, source, output, column="phone")
    with output.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        at = header.index("verdict")
        blocked = [row[at] == "BLOCKED" for row in reader]
    return summary.rows, blocked == expected.tolist()


def _best(runs: list[BulkStats]) -> BulkStats:
    return max(runs, key=lambda stats: stats.numbers_per_s if stats.correct else -1.0)


def client_path_figures(
    target: str, workload: Workload, settings: ClientPathSettings, scratch: Path
) -> dict[str, Any]:
    """Raw-stub and client figures against the server at `target` (see the module doc)."""
    count = min(settings.numbers, workload.queries.size)
    keys, expected = workload.queries[:count], workload.expected_blocked[:count]
    rows = min(settings.wash_rows, workload.queries.size)
    texts = workload.query_texts(rows)
    calls = _write_calls(scratch / "calls.csv", texts)
    washed = scratch / "calls.washed.csv"
    runs: dict[str, list[BulkStats]] = {
        name: [] for name in ("raw_bytes", "batches", "many", "raw_texts", "wash")
    }
    with Client(target, batch_size=CLIENT_BATCH) as client:
        client.register_info()  # the channel is connected before any clock starts
        for _ in range(settings.repeats):
            progress(f"rpc: client paths vs raw stubs, {count:,} numbers, {rows:,} CSV rows")
            runs["raw_bytes"].append(
                bulk_check(
                    target,
                    keys,
                    expected,
                    batch_size=CLIENT_BATCH,
                    mode="bytes",
                    max_seconds=settings.max_seconds,
                )
            )
            runs["batches"].append(_timed(lambda: _check_batches(client, keys, expected)))
            runs["many"].append(_timed(lambda: _check_many(client, keys, expected)))
            runs["raw_texts"].append(
                bulk_check(
                    target, workload.queries[:rows], workload.expected_blocked[:rows],
                    batch_size=CLIENT_BATCH, mode="texts", texts=texts, max_seconds=settings.max_seconds,
                )
            )  # fmt: skip
            runs["wash"].append(
                _timed(lambda: _wash(client, calls, washed, workload.expected_blocked[:rows]))
            )
    best = {name: _best(stats) for name, stats in runs.items()}
    figures: dict[str, Any] = {}
    for name, stats in best.items():
        figures[f"client_{name}_numbers_per_s"] = stats.numbers_per_s
        figures[f"client_{name}_correct"] = stats.correct
    figures |= {
        "client_numbers": count,
        "client_wash_rows": rows,
        "client_check_batches_vs_raw": ratio(best["batches"].numbers_per_s, best["raw_bytes"].numbers_per_s),
        "client_check_many_vs_raw": ratio(best["many"].numbers_per_s, best["raw_bytes"].numbers_per_s),
        "client_wash_vs_raw_texts": ratio(best["wash"].numbers_per_s, best["raw_texts"].numbers_per_s),
    }
    return figures


def client_path_table(figures: dict[str, Any]) -> Table:
    """The client-path rows of the rpc report."""
    table = Table(
        title=f"The Python client vs the raw-stub path, batches of {CLIENT_BATCH:,}, same server and run",
        columns=["path", "numbers/s", "correct", "raw stub numbers/s", "vs raw stub"],
    )
    rows = (
        (
            "Client.check_batches(array, want_details=False)",
            "batches",
            "raw_bytes",
            "client_check_batches_vs_raw",
        ),
        ("Client.check_many(array)", "many", "raw_bytes", "client_check_many_vs_raw"),
        ("wash (CSV in, CSV out; texts as written)", "wash", "raw_texts", "client_wash_vs_raw_texts"),
    )
    for label, ours, raw, versus in rows:
        table.rows.append(
            [
                label,
                figures.get(f"client_{ours}_numbers_per_s"),
                figures.get(f"client_{ours}_correct"),
                figures.get(f"client_{raw}_numbers_per_s"),
                figures.get(versus),
            ]
        )
    return table
