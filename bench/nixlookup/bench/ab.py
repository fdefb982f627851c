"""`nixlookup-bench ab`: this checkout's server against another build of it, in the same run.

Absolute figures on a shared 2-core machine swing by 2x between runs, so a change to the server (a new
server model, a compiled bulk path) is judged by running both builds side by side: the same register, the
same prebuilt queries, the contenders interleaved run by run (`rpc.measure_unary`, `rpc.measure_bulk`),
best of N each. The baseline is another checkout's virtualenv, e.g.::

    git worktree add /tmp/base <commit> && make -C /tmp/base venv
    nixlookup-bench ab --baseline-python /tmp/base/.venv/bin/python

and every row reports this build / the baseline (>= 1 means this build is faster).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nixlookup.bench.report import Report, Table
from nixlookup.bench.rpc import OURS, RpcSettings, measure_bulk, measure_unary
from nixlookup.bench.servers import nixlookup_server
from nixlookup.bench.timing import progress, ratio
from nixlookup.bench.workload import make_workload, write_register_text

__all__ = ["BASELINE", "AbSettings", "run_ab"]

BASELINE = "baseline"


@dataclass(frozen=True)
class AbSettings:
    baseline_python: str
    rpc: RpcSettings


def _figures(settings: AbSettings, workdir: Path) -> dict[str, Any]:
    rpc = settings.rpc
    workload = make_workload(rpc.size, max(rpc.bulk_numbers, rpc.text_numbers), rpc.seed)
    register_path = write_register_text(workdir / "register.txt", workload.register)
    with contextlib.ExitStack() as stack:
        progress(f"ab: starting this build's server on {workload.size:,} numbers")
        servers = {OURS: stack.enter_context(nixlookup_server(register_path, workdir, name="this-build"))}
        progress(f"ab: starting the baseline's server ({settings.baseline_python})")
        servers[BASELINE] = stack.enter_context(
            nixlookup_server(register_path, workdir, name="baseline", python=settings.baseline_python)
        )
        figures = measure_unary(servers, workload, rpc) | measure_bulk(servers, workload, rpc)
    for key in list(figures):
        if key.startswith(f"{BASELINE}_") or not key.endswith(("_qps", "_numbers_per_s")):
            continue
        figures[f"{key}_vs_{BASELINE}"] = ratio(figures[key], figures.get(f"{BASELINE}_{key}"))
    return figures


def _table(figures: dict[str, Any], rpc: RpcSettings) -> Table:
    table = Table(
        title="This build vs the baseline build, same run, interleaved (best of N each)",
        columns=["workload", "this build", "baseline", "this / baseline", "unit"],
    )
    rows: list[tuple[str, str, str]] = [
        (f"unary Check, {level} in flight", f"unary_c{level}_qps", "QPS") for level in rpc.concurrency
    ]
    rows += [
        (f"CheckStream {mode}, batches of {batch:,}", f"bulk_{mode}_{batch}_numbers_per_s", "numbers/s")
        for mode in rpc.modes
        for batch in rpc.batch_sizes
    ]
    for label, key, unit in rows:
        table.rows.append(
            [
                label,
                figures.get(key),
                figures.get(f"{BASELINE}_{key}"),
                figures.get(f"{key}_vs_{BASELINE}"),
                unit,
            ]
        )
    return table


def run_ab(settings: AbSettings, workdir: Path | None = None) -> Report:
    rpc = settings.rpc
    report = Report(
        command="ab",
        parameters={"baseline_python": settings.baseline_python, "size": rpc.size, "seed": rpc.seed,
                    "unary_calls": rpc.unary_calls, "unary_repeats": rpc.unary_repeats,
                    "bulk_numbers": rpc.bulk_numbers, "text_numbers": rpc.text_numbers,
                    "bulk_repeats": rpc.bulk_repeats},
    )  # fmt: skip
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nixlookup-ab-")))
        report.figures = _figures(settings, workdir)
    report.duration_s = time.perf_counter() - started
    report.tables = [_table(report.figures, rpc)]
    report.notes.append(
        "both servers, and the client, share this machine's cores; each row is the best of "
        f"{rpc.unary_repeats} (unary) / {rpc.bulk_repeats} (bulk) runs per build, the builds alternating"
    )
    return report


def ab_settings(baseline_python: str, **rpc_fields: Any) -> AbSettings:
    """Settings for `run_ab` with the rpc benchmark's defaults where a field is not given."""
    return AbSettings(baseline_python=baseline_python, rpc=replace(RpcSettings(), **rpc_fields))
