"""`nixlookup-bench guard`: a <= 60 s run that fails (exit 1) when a guarded ratio falls below its threshold.

It measures a small set of ratios, each between two figures of this same run (so the machine's speed and
load cancel out), and checks each against `bench/thresholds.toml`:
- core: the dense-bitset floor over `Index.contains_many`, and a Python set loop over `contains_many`;
  the numpy chain over the compiled bulk path, for the lookup and for the whole handler with a caller's
  lists (both in process, alternating);
- memory: a Python set's bytes per number over the index's (all structures);
- service: `CheckStream` numbers/s with packed bytes over texts, batches of 10k, one real server; and
  with a caller holding 100k opt-outs and 500k relationships over no caller (bytes, 10k).
A threshold names its ratio, a `min`, and (in a comment) why that number. `make test` runs the guard.
"""

from __future__ import annotations

import tempfile
import time
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nixlookup.bench.core import CoreSettings, core_figures
from nixlookup.bench.references import PythonSetLookup
from nixlookup.bench.report import Report, Table
from nixlookup.bench.rpc import OURS, RpcSettings, measure_bulk, measure_caller_lists, started_servers
from nixlookup.bench.timing import progress, ratio
from nixlookup.bench.workload import make_workload
from nixlookup.server.index import Index

__all__ = ["GuardSettings", "Threshold", "check_thresholds", "load_thresholds", "run_guard"]

_GUARD_BATCH = 10_000


@dataclass(frozen=True)
class Threshold:
    name: str
    minimum: float


@dataclass(frozen=True)
class GuardSettings:
    size: int = 1_500_000
    seed: int = 20080101
    queries: int = 1_000_000
    bulk_bytes_numbers: int = 500_000
    bulk_text_numbers: int = 150_000
    thresholds_path: Path | None = None


def load_thresholds(path: Path | None = None) -> list[Threshold]:
    """The `[ratios.<name>] min = X` entries of a thresholds file (default: the packaged one)."""
    if path is None:
        text = resources.files("nixlookup.bench").joinpath("thresholds.toml").read_text()
    else:
        text = path.read_text()
    data = tomllib.loads(text)
    ratios = data.get("ratios", {})
    if not isinstance(ratios, dict) or not ratios:
        raise ValueError("thresholds file has no [ratios.<name>] tables")
    out: list[Threshold] = []
    for name, entry in ratios.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("min"), int | float):
            raise ValueError(f"threshold {name!r} needs a numeric `min`")
        out.append(Threshold(name=name, minimum=float(entry["min"])))
    return out


@dataclass(frozen=True)
class Verdict:
    name: str
    measured: float | None
    minimum: float

    @property
    def passed(self) -> bool:
        return self.measured is not None and self.measured >= self.minimum


def check_thresholds(measured: dict[str, float | None], thresholds: list[Threshold]) -> list[Verdict]:
    """One verdict per threshold; a ratio not measured fails (a guard that cannot see is no guard)."""
    return [Verdict(t.name, measured.get(t.name), t.minimum) for t in thresholds]


def _core_ratios(settings: GuardSettings) -> dict[str, float | None]:
    core_settings = CoreSettings(
        size=settings.size,
        queries=settings.queries,
        seed=settings.seed,
        repeats=5,
        load_repeats=1,
        max_seconds_per_measurement=3.0,
        measure_text_load=False,
    )
    core = core_figures(core_settings)
    return {
        "dense_floor_over_batch": ratio(1.0, core["batch_vs_dense_floor"]),
        "pyset_over_batch": core["pyset_vs_batch_speedup"],
        "numpy_batch_over_compiled_batch": ratio(
            core["batch_numpy_ns_per_number"], core["batch_ns_per_number"]
        ),
        "numpy_handler_over_compiled_handler": core.get("handler_numpy_vs_compiled"),
    }


def _memory_ratio(settings: GuardSettings) -> dict[str, float | None]:
    workload = make_workload(settings.size, 1, settings.seed)
    index = Index.build(workload.register, version="guard", source="synthetic")
    pyset = PythonSetLookup(workload.register)
    return {"memory_pyset_over_index": ratio(pyset.nbytes, index.nbytes_total)}


def _bulk_ratio(settings: GuardSettings, workdir: Path | None) -> dict[str, float | None]:
    rpc = RpcSettings(
        size=settings.size,
        seed=settings.seed,
        batch_sizes=(_GUARD_BATCH,),
        modes=("bytes", "texts"),
        bulk_numbers=settings.bulk_bytes_numbers,
        text_numbers=settings.bulk_text_numbers,
        bulk_seconds=5.0,
        bulk_repeats=2,
    )
    workload = make_workload(settings.size, settings.bulk_bytes_numbers, settings.seed)
    with (
        tempfile.TemporaryDirectory(prefix="nixlookup-bench-guard-", dir=workdir) as tmp,
        started_servers(workload, Path(tmp), with_reference=False) as servers,
    ):
        bulk = measure_bulk(servers, workload, rpc)
        progress("guard: bulk with a caller's 600k listed numbers vs no caller")
        caller = measure_caller_lists(servers[OURS], workload, rpc)
    caller_ratio = caller.get("caller_lists_vs_plain") if caller.get("caller_lists_correct") else None
    if not (bulk[f"bulk_bytes_{_GUARD_BATCH}_correct"] and bulk[f"bulk_texts_{_GUARD_BATCH}_correct"]):
        # wrong answers: the ratio means nothing, fail the guard
        return {"bulk_bytes_over_texts": None, "caller_lists_over_plain": caller_ratio}
    return {
        "caller_lists_over_plain": caller_ratio,
        "bulk_bytes_over_texts": ratio(
            bulk[f"bulk_bytes_{_GUARD_BATCH}_numbers_per_s"], bulk[f"bulk_texts_{_GUARD_BATCH}_numbers_per_s"]
        ),
        "bulk_bytes_numbers_per_s": bulk[f"bulk_bytes_{_GUARD_BATCH}_numbers_per_s"],
        "bulk_texts_numbers_per_s": bulk[f"bulk_texts_{_GUARD_BATCH}_numbers_per_s"],
    }


def run_guard(settings: GuardSettings, workdir: Path | None = None) -> Report:
    thresholds = load_thresholds(settings.thresholds_path)
    report = Report(command="guard", parameters={"size": settings.size, "queries": settings.queries})
    started = time.perf_counter()
    measured: dict[str, float | None] = {}
    progress("guard: core ratios")
    measured |= _core_ratios(settings)
    progress("guard: memory ratio")
    measured |= _memory_ratio(settings)
    progress("guard: bulk bytes vs texts through a real server")
    measured |= _bulk_ratio(settings, workdir)
    verdicts = check_thresholds(measured, thresholds)
    report.duration_s = time.perf_counter() - started
    failed = [v for v in verdicts if not v.passed]
    figures: dict[str, Any] = dict(measured)
    figures |= {f"threshold_{v.name}": v.minimum for v in verdicts}
    figures["guard_failed"] = bool(failed)
    figures["guard_failures"] = [v.name for v in failed]
    report.figures = figures
    table = Table(title="Guarded ratios (higher is better)", columns=["ratio", "measured", "minimum", "ok"])
    table.rows = [[v.name, v.measured, v.minimum, "ok" if v.passed else "FAILED"] for v in verdicts]
    report.tables = [table]
    for verdict in failed:
        shown = "not measured" if verdict.measured is None else f"{verdict.measured:.3g}"
        report.notes.append(f"FAILED: {verdict.name} = {shown}, below its threshold {verdict.minimum}")
    return report
