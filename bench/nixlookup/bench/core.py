"""`nixlookup-bench core`: the lookup core in process, against its references, in one run.

On one seeded register (1.5M numbers by default) and one seeded query set (1M, half hits) it measures:
- `Index.contains_many` (the batch path), ns per number, compiled (the default) and through the numpy
  chain it replaced;
- `Index.contains` in a Python loop (the single-lookup path), ns per lookup;
- the references on the same queries: a Python `set` loop and the dense-bitset floor, probed in numpy and
  by a compiled loop;
- the bulk handler (classify, decide for a caller with lists, pack the bits), compiled and numpy
  (`core_handler`);
- memory: canonical (roaring) and all structures, bytes per number;
- loading: a text register file through `load_register_file` plus `Index.build`, and a snapshot through
  `read_snapshot`.
Each budgeted figure is judged against the design's budget ("ok" / "over budget" in the table's verdict
column; times stated at 1.5M numbers scale with the register size).
Each timing is best-of-N (minimum and median kept). Every answer is checked against the expected hits.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nixlookup.bench.core_handler import CompiledDenseFloor, best_of_alternating, handler_figures
from nixlookup.bench.references import DenseBitsetFloor, PythonSetLookup
from nixlookup.bench.report import Report, Table
from nixlookup.bench.timing import Timing, best_of, best_of_paired, progress, ratio
from nixlookup.bench.workload import Workload, make_workload, write_register_text
from nixlookup.server._jit import set_bulk_path
from nixlookup.server.index import Index
from nixlookup.server.store import load_register_file, read_snapshot, write_snapshot

__all__ = ["BUDGET_SIZE", "Budget", "CoreSettings", "budget_rows", "core_figures", "run_core"]

SINGLE_LOOKUPS = 200_000  # a Python loop of `contains`: enough calls for a stable per-call mean


@dataclass(frozen=True)
class CoreSettings:
    size: int = 1_500_000
    queries: int = 1_000_000
    seed: int = 20080101
    repeats: int = 5  # best-of-N for the fast measurements
    load_repeats: int = 3  # loads take longer; fewer repeats
    max_seconds_per_measurement: float = 10.0
    measure_text_load: bool = True
    measure_handler: bool = True  # the bulk handler with a caller's lists, compiled vs numpy (core_handler)


class CoreBenchError(AssertionError):
    """A contender gave a wrong answer: its timing would mean nothing."""


def _ns_per(timing: Timing, count: int) -> float:
    return timing.min_s / count * 1e9


def _check(name: str, got: np.ndarray[Any, Any], workload: Workload) -> None:
    if not np.array_equal(got, workload.expected_blocked):
        wrong = int(np.count_nonzero(got != workload.expected_blocked))
        raise CoreBenchError(f"{name} answered {wrong} of {workload.queries.size} queries wrongly")


def _measure_lookups(index: Index, workload: Workload, settings: CoreSettings) -> dict[str, Any]:
    queries = workload.queries
    repeats, budget = settings.repeats, settings.max_seconds_per_measurement
    _check("Index.contains_many", index.contains_many(queries), workload)
    floor = DenseBitsetFloor(workload.register)
    compiled_floor = CompiledDenseFloor(workload.register)
    _check("compiled dense floor", compiled_floor.contains_many(queries), workload)
    floor.contains_many(queries)

    def numpy_batch() -> None:
        previous = set_bulk_path("numpy")
        try:
            _check("Index.contains_many (numpy)", index.contains_many(queries), workload)
        finally:
            set_bulk_path(previous)

    # The batch path and its floors run in turn: their ratios are the figures that matter.
    timings = best_of_alternating(
        {
            "batch": lambda: index.contains_many(queries),
            "floor": lambda: floor.contains_many(queries),
            "compiled_floor": lambda: compiled_floor.contains_many(queries),
            "numpy_batch": numpy_batch,
        },
        repeats=repeats * 2,
        max_seconds=budget,
    )
    batch, floor_timing = timings["batch"], timings["floor"]

    single_keys = queries[:SINGLE_LOOKUPS].tolist()
    contains = index.contains

    def single_loop() -> None:
        for key in single_keys:
            contains(key)

    single = best_of(single_loop, repeats=repeats, max_seconds=budget)

    progress("core: Python set reference")
    pyset = PythonSetLookup(workload.register)
    _check("Python set", pyset.contains_many(queries), workload)
    # Paired with the batch path again, for the same reason as the floor.
    batch_again, pyset_timing = best_of_paired(
        lambda: index.contains_many(queries),
        lambda: pyset.contains_many(queries),
        repeats=max(2, repeats // 2),
        max_seconds=budget,
    )

    n = queries.size
    figures = {
        "batch_ns_per_number": min(_ns_per(batch, n), _ns_per(batch_again, n)),
        "pyset_vs_batch_speedup": pyset_timing.min_s / batch_again.min_s,
        "batch_vs_dense_floor": batch.min_s / floor_timing.min_s,
        "batch_vs_compiled_floor": batch.min_s / timings["compiled_floor"].min_s,
        "batch_numpy_ns_per_number": _ns_per(timings["numpy_batch"], n),
        "batch_numpy_vs_dense_floor": timings["numpy_batch"].min_s / floor_timing.min_s,
        "dense_bitset_compiled_ns_per_number": _ns_per(timings["compiled_floor"], n),
        "batch_ns_per_number_median": batch.median_s / n * 1e9,
        "single_ns_per_lookup": _ns_per(single, len(single_keys)),
        "pyset_batch_ns_per_number": _ns_per(pyset_timing, n),
        "dense_bitset_ns_per_number": _ns_per(floor_timing, n),
        "dense_bitset_ns_per_number_median": floor_timing.median_s / n * 1e9,
        "dense_bitset_bytes": floor.nbytes,
        "dense_bitset_exact_span": floor.exact_span,
        "dense_bitset_false_positives": floor.false_positives(queries, workload.expected_blocked),
    }
    return figures


def _measure_loads(index: Index, workload: Workload, settings: CoreSettings, workdir: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    repeats, budget = settings.load_repeats, settings.max_seconds_per_measurement
    if settings.measure_text_load:
        text_path = write_register_text(workdir / "register.txt", workload.register)
        loaded_keys: list[np.ndarray[Any, Any]] = []

        def load_text() -> None:
            loaded = load_register_file(text_path)
            loaded_keys.append(loaded.keys)

        parse = best_of(load_text, repeats=repeats, max_seconds=budget)
        keys = loaded_keys[-1]
        build = best_of(
            lambda: Index.build(keys, version="bench", source=str(text_path)),
            repeats=repeats,
            max_seconds=budget,
        )
        if int(np.unique(keys).size) != workload.size:
            raise CoreBenchError(f"text load found {np.unique(keys).size} numbers, wrote {workload.size}")
        figures |= {
            "text_parse_s": parse.min_s,
            "text_index_build_s": build.min_s,
            "text_load_s": parse.min_s + build.min_s,
            "text_file_bytes": text_path.stat().st_size,
        }
    snapshot_path = workdir / "register.snapshot"
    write_snapshot(snapshot_path, index)
    snapshot = best_of(lambda: read_snapshot(snapshot_path), repeats=repeats, max_seconds=budget)
    restored, _extra = read_snapshot(snapshot_path)
    if len(restored) != len(index):
        raise CoreBenchError("snapshot round trip changed the count")
    figures |= {"snapshot_load_s": snapshot.min_s, "snapshot_file_bytes": snapshot_path.stat().st_size}
    return figures


def core_figures(settings: CoreSettings, workdir: Path | None = None) -> dict[str, Any]:
    """Every core figure of one run, as a flat dict (see the module docstring)."""
    progress(
        f"core: register of {settings.size:,} numbers, {settings.queries:,} queries (seed {settings.seed})"
    )
    workload = make_workload(settings.size, settings.queries, settings.seed)
    started = time.perf_counter()
    index = Index.build(workload.register, version="bench", source="synthetic", synthetic=True)
    build_s = time.perf_counter() - started
    progress("core: batch and single lookups")
    figures: dict[str, Any] = {"register_size": workload.size, "query_count": int(workload.queries.size)}
    figures |= {"hit_share": float(workload.expected_blocked.mean()), "index_build_s": build_s}
    figures |= _measure_lookups(index, workload, settings)
    if settings.measure_handler:
        progress("core: bulk handler with a caller's lists, compiled and numpy")
        figures |= handler_figures(
            workload, repeats=settings.repeats, max_seconds=settings.max_seconds_per_measurement
        )
    figures["bytes_per_number_canonical"] = index.nbytes_canonical / workload.size
    figures["bytes_per_number_total"] = index.nbytes_total / workload.size
    progress("core: text and snapshot loads")
    with tempfile.TemporaryDirectory(prefix="nixlookup-bench-core-", dir=workdir) as tmp:
        figures |= _measure_loads(index, workload, settings, Path(tmp))
    figures["single_vs_batch"] = ratio(figures["single_ns_per_lookup"], figures["batch_ns_per_number"])
    return figures


@dataclass(frozen=True)
class Budget:
    """One figure's budget (DESIGN.md, "Performance budget"): `figure <op> limit`, where a limit stated
    at the budget's 1.5M register scales linearly with the register size (`per_size`)."""

    op: str  # "<=" or ">="
    limit: float
    text: str
    per_size: bool = False

    def verdict(self, value: float | None, size: int) -> str:
        """ "ok", "over budget", or "not measured"."""
        if value is None:
            return "not measured"
        limit = self.limit * size / BUDGET_SIZE if self.per_size else self.limit
        ok = value <= limit if self.op == "<=" else value >= limit
        return "ok" if ok else "over budget"


BUDGET_SIZE = 1_500_000
"""The register size the budget's absolute times are stated for."""

_BUDGET_ROWS: tuple[tuple[str, str, str, Budget | None], ...] = (
    ("batch lookup (Index.contains_many)", "batch_ns_per_number", "ns/number", Budget("<=", 25, "<= 25")),
    ("  the same, numpy chain (previous path)", "batch_numpy_ns_per_number", "ns/number", None),
    ("dense bitset floor (numpy)", "dense_bitset_ns_per_number", "ns/number", None),
    ("dense bitset floor (compiled)", "dense_bitset_compiled_ns_per_number", "ns/number", None),
    (
        "bulk handler, caller's lists (10k batches)",
        "handler_ns_per_number",
        "ns/number",
        Budget("<=", 40, "<= 40"),
    ),
    ("  the same, numpy chain (previous path)", "handler_numpy_ns_per_number", "ns/number", None),
    ("Python set loop", "pyset_batch_ns_per_number", "ns/number", None),
    ("single lookup (Index.contains)", "single_ns_per_lookup", "ns/lookup", Budget("<=", 300, "<= 300")),
    ("memory, canonical", "bytes_per_number_canonical", "bytes/number", Budget("<=", 3, "<= 3")),
    ("memory, all structures", "bytes_per_number_total", "bytes/number", Budget("<=", 10, "<= 10")),
    (
        "load from text (parse + build)",
        "text_load_s",
        "s",
        Budget("<=", 0.3, "<= 0.3 at 1.5M", per_size=True),
    ),
    ("  of which parsing the text", "text_parse_s", "s", None),
    ("  of which building the index", "text_index_build_s", "s", None),
    ("load from snapshot", "snapshot_load_s", "s", Budget("<=", 0.010, "<= 0.010 at 1.5M", per_size=True)),
    ("batch / dense floor (numpy)", "batch_vs_dense_floor", "ratio", Budget("<=", 1.0, "<= 1.0")),
    ("batch / dense floor (compiled)", "batch_vs_compiled_floor", "ratio", None),
    ("handler: numpy chain / compiled", "handler_numpy_vs_compiled", "ratio", None),
    ("Python set / batch", "pyset_vs_batch_speedup", "ratio", Budget(">=", 10, ">= 10")),
)
"""The core table: label, figure, unit, budget (None: a reference, measured to compare against)."""


def budget_rows(figures: dict[str, Any], size: int) -> list[list[Any]]:
    """The core table's rows: what, figure, unit, budget, and ok / over budget per budgeted figure."""
    rows: list[list[Any]] = []
    for label, key, unit, budget in _BUDGET_ROWS:
        value = figures.get(key)
        if budget is None:
            rows.append([label, value, unit, "reference", "-"])
        else:
            rows.append([label, value, unit, budget.text, budget.verdict(value, size)])
    return rows


def run_core(settings: CoreSettings, workdir: Path | None = None) -> Report:
    """`core` as a report: figures plus one table against the budget."""
    report = Report(
        command="core",
        parameters={"size": settings.size, "queries": settings.queries, "seed": settings.seed,
                    "repeats": settings.repeats},
    )  # fmt: skip
    started = time.perf_counter()
    report.figures = core_figures(settings, workdir)
    report.duration_s = time.perf_counter() - started
    table = Table(
        title=f"Lookup core, {settings.size:,} numbers",
        columns=["what", "figure", "unit", "budget", "verdict"],
    )
    table.rows = budget_rows(report.figures, settings.size)
    report.tables.append(table)
    over = [str(row[0]).strip() for row in table.rows if row[4] == "over budget"]
    report.figures["over_budget"] = over
    report.notes.append(
        "absolute budgets are this 2-core machine's (DESIGN.md); on another machine read the ratios: "
        + (f"over budget here: {', '.join(over)}" if over else "every budgeted figure is within budget")
    )
    if report.figures.get("dense_bitset_exact_span") is False:
        report.notes.append(
            "dense-bitset floor folded onto 512 MiB (the key span is wider): same work per probe, "
            f"{report.figures['dense_bitset_false_positives']} false positives on these queries"
        )
    return report
