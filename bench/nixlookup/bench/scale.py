"""`nixlookup-bench scale`: cost per number as the register grows, 1.5M -> 3M -> 30M (-> 250M with --huge).

For each size, on the same query count (half hits): load time from text and from a snapshot, index build
time, bytes per number (canonical and all structures) and batch lookup ns per number, with the dense-bitset
floor measured at the same size as the yardstick. Costs are per number so a flat line means the index
scales; the `*_growth` figures divide the largest size's cost by the smallest's (target: within 1.3x).
Text files beyond `text_load_max_size` are not written (a 250M-line file is ~3 GB); that row says so.
"""

from __future__ import annotations

import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixlookup.bench.references import DenseBitsetFloor
from nixlookup.bench.report import Plot, Report, Table
from nixlookup.bench.timing import best_of, best_of_paired, progress, ratio
from nixlookup.bench.workload import make_workload, write_register_text
from nixlookup.server.index import Index
from nixlookup.server.store import load_register_file, read_snapshot, write_snapshot

__all__ = ["ScaleSettings", "run_scale", "scale_figures"]

_PER_SIZE = ("load_ns_per_number", "load_parse_ns_per_number", "load_build_ns_per_number",
             "snapshot_load_ns_per_number", "bytes_per_number_canonical", "bytes_per_number_total",
             "batch_ns_per_number", "dense_bitset_ns_per_number", "peak_rss_bytes")  # fmt: skip


@dataclass(frozen=True)
class ScaleSettings:
    sizes: tuple[int, ...] = (1_500_000, 3_000_000, 30_000_000)
    seed: int = 20080101
    queries: int = 1_000_000
    repeats: int = 3
    text_load_max_size: int = 30_000_000


def _one_size(size: int, settings: ScaleSettings, workdir: Path) -> dict[str, Any]:
    progress(f"scale: {size:,} numbers: generating")
    workload = make_workload(size, settings.queries, settings.seed)
    started = time.perf_counter()
    index = Index.build(workload.register, version="scale", source="synthetic", synthetic=True)
    build_s = time.perf_counter() - started
    figures: dict[str, Any] = {"build_s": build_s, "build_ns_per_number": build_s / size * 1e9}
    if size <= settings.text_load_max_size:
        progress(f"scale: {size:,} numbers: text load")
        text_path = write_register_text(workdir / f"register-{size}.txt", workload.register)

        parts: dict[str, list[float]] = {"parse": [], "build": []}

        def load_text() -> None:
            started = time.perf_counter()
            loaded = load_register_file(text_path)
            parsed = time.perf_counter()
            Index.build(loaded.keys, version="scale", source=str(text_path))
            parts["parse"].append(parsed - started)
            parts["build"].append(time.perf_counter() - parsed)

        text = best_of(load_text, repeats=max(1, settings.repeats - 1), max_seconds=60.0)
        text_path.unlink()
        figures["load_s"] = text.min_s
        figures["load_ns_per_number"] = text.min_s / size * 1e9
        # Which half grows: the text parse (store) or the index build (index), best of the same runs.
        figures["load_parse_ns_per_number"] = min(parts["parse"]) / size * 1e9
        figures["load_build_ns_per_number"] = min(parts["build"]) / size * 1e9
    progress(f"scale: {size:,} numbers: snapshot load and lookups")
    snapshot_path = workdir / f"register-{size}.snapshot"
    write_snapshot(snapshot_path, index)
    snapshot = best_of(lambda: read_snapshot(snapshot_path), repeats=settings.repeats, max_seconds=30.0)
    snapshot_path.unlink()
    queries = workload.queries
    if not (index.contains_many(queries) == workload.expected_blocked).all():
        raise AssertionError(f"Index.contains_many answered wrongly at {size:,} numbers")
    floor = DenseBitsetFloor(workload.register)
    batch, floor_timing = best_of_paired(
        lambda: index.contains_many(queries),
        lambda: floor.contains_many(queries),
        repeats=settings.repeats * 2,
        max_seconds=30.0,
    )
    figures |= {
        "snapshot_load_s": snapshot.min_s,
        "snapshot_load_ns_per_number": snapshot.min_s / size * 1e9,
        "bytes_per_number_canonical": index.nbytes_canonical / size,
        "bytes_per_number_total": index.nbytes_total / size,
        "batch_ns_per_number": batch.min_s / queries.size * 1e9,
        "dense_bitset_ns_per_number": floor_timing.min_s / queries.size * 1e9,
        # The process's peak RSS so far (it only grows across sizes): what this size needed at most.
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    return figures


def scale_figures(settings: ScaleSettings, workdir: Path | None = None) -> dict[str, Any]:
    """Figures per size, keyed `<figure>_<size>`, plus growth ratios largest/smallest."""
    figures: dict[str, Any] = {"sizes": list(settings.sizes)}
    with tempfile.TemporaryDirectory(prefix="nixlookup-bench-scale-", dir=workdir) as tmp:
        for size in settings.sizes:
            for key, value in _one_size(size, settings, Path(tmp)).items():
                figures[f"{key}_{size}"] = value
    for key in _GROWTH:
        # Over the sizes that have the figure: a size past text_load_max_size has no text load.
        measured = [size for size in settings.sizes if figures.get(f"{key}_{size}") is not None]
        if measured:
            smallest, largest = min(measured), max(measured)
            figures[f"{key}_growth"] = ratio(figures[f"{key}_{largest}"], figures[f"{key}_{smallest}"])
            figures[f"{key}_growth_sizes"] = [smallest, largest]
    return figures


_GROWTH = ("batch_ns_per_number", "bytes_per_number_total", "load_ns_per_number", "load_parse_ns_per_number",
           "load_build_ns_per_number", "build_ns_per_number")  # fmt: skip


def run_scale(settings: ScaleSettings, workdir: Path | None = None) -> Report:
    report = Report(
        command="scale",
        parameters={"sizes": list(settings.sizes), "queries": settings.queries, "seed": settings.seed},
    )
    started = time.perf_counter()
    figures = scale_figures(settings, workdir)
    report.figures = figures
    report.duration_s = time.perf_counter() - started
    table = Table(
        title="Cost per number as the register grows",
        columns=["numbers", "text load ns/number", "parse", "build", "snapshot load ns/number",
                 "bytes/number canonical", "bytes/number total", "batch ns/number", "dense floor ns/number",
                 "peak RSS bytes"],
    )  # fmt: skip
    for size in settings.sizes:
        table.rows.append([size, *(figures.get(f"{key}_{size}") for key in _PER_SIZE)])
    growth = Table(title="Growth, largest size / smallest size", columns=["figure", "growth", "target"])
    growth.rows = [
        ["batch ns/number", figures.get("batch_ns_per_number_growth"), "<= 1.3"],
        ["bytes/number total", figures.get("bytes_per_number_total_growth"), "<= 1.3"],
        ["text load ns/number", figures.get("load_ns_per_number_growth"), "<= 1.3"],
        ["  of which the text parse", figures.get("load_parse_ns_per_number_growth"), "-"],
        ["  of which the index build", figures.get("load_build_ns_per_number_growth"), "-"],
        ["index build from keys ns/number", figures.get("build_ns_per_number_growth"), "-"],
    ]
    report.tables = [table, growth]
    sizes = [float(size) for size in settings.sizes]
    report.plots = [
        Plot(
            name="cost-vs-size",
            title="Cost per number vs register size",
            xlabel="numbers in the register",
            ylabel="ns per number / bytes per number",
            x=sizes,
            series={
                "batch lookup ns/number": [figures.get(f"batch_ns_per_number_{s}") for s in settings.sizes],
                "dense floor ns/number": [
                    figures.get(f"dense_bitset_ns_per_number_{s}") for s in settings.sizes
                ],
                "bytes/number (all structures)": [
                    figures.get(f"bytes_per_number_total_{s}") for s in settings.sizes
                ],
                "text load ns/number / 100": [
                    None
                    if figures.get(f"load_ns_per_number_{s}") is None
                    else figures[f"load_ns_per_number_{s}"] / 100
                    for s in settings.sizes
                ],
            },
            logx=True,
        )
    ]
    return report
