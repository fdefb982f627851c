"""What a `nixlookup-bench compare` run shows: the contenders' names, their ratios, tables, plots, notes.

`compare.py` measures and hands over one flat dict of figures (``<contender>_<what>``); this module only
reads it. Each ratio is ``<what>_<contender>_vs_nixlookup`` (contender / nixlookup); the issue's targets are
one `Target` row each (`TARGETS`), stated the way round the issue states them, and the same rows give the
targets table, so a target is added in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nixlookup.bench.report import Plot, Table
from nixlookup.bench.timing import ratio

if TYPE_CHECKING:
    from nixlookup.bench.compare import CompareSettings

__all__ = [
    "CONTENDERS",
    "LABELS",
    "NIXLOOKUP",
    "PYSET",
    "REDIS",
    "REFERENCE",
    "TARGETS",
    "Target",
    "plots",
    "ratios",
    "redis_ahead",
    "tables",
]

NIXLOOKUP, REDIS, REFERENCE, PYSET = "nixlookup", "redis", "grpc_set", "python_set"
CONTENDERS = (NIXLOOKUP, REDIS, REFERENCE, PYSET)
LABELS = {
    NIXLOOKUP: "nixlookup gRPC",
    REDIS: "Redis (redis-py)",
    REFERENCE: "bare grpcio + set",
    PYSET: "Python set in process",
}


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: the figure ``numerator / denominator``, its label and its goal.

    ``{level}`` in the names stands for each per-call concurrency level (one row per level)."""

    figure: str
    numerator: str
    denominator: str
    label: str
    goal: str

    def at(self, level: int) -> Target:
        return Target(
            self.figure.format(level=level),
            self.numerator.format(level=level),
            self.denominator.format(level=level),
            self.label.format(level=level),
            self.goal,
        )


TARGETS = (
    Target("target_bulk_10k_nixlookup_over_redis", f"{NIXLOOKUP}_bulk_10000_numbers_per_s",
           f"{REDIS}_bulk_10000_numbers_per_s", "bulk 10k: nixlookup / Redis SMISMEMBER", ">= 50"),
    Target("target_memory_redis_over_nixlookup", f"{REDIS}_used_memory_bytes_per_number",
           f"{NIXLOOKUP}_index_bytes_per_number",
           "memory: Redis / nixlookup (data bytes, all index structures)", ">= 20"),
    Target("target_memory_redis_over_nixlookup_canonical", f"{REDIS}_used_memory_bytes_per_number",
           f"{NIXLOOKUP}_canonical_bytes_per_number",
           "memory: Redis / nixlookup (data bytes, canonical roaring store)", ">= 20"),
    Target("target_memory_rss_redis_over_nixlookup", f"{REDIS}_rss_bytes_per_number",
           f"{NIXLOOKUP}_rss_bytes_per_number", "memory: Redis / nixlookup (RSS growth)", "-"),
    Target("target_memory_rss_redis_over_nixlookup_snapshot", f"{REDIS}_rss_bytes_per_number",
           f"{NIXLOOKUP}_snapshot_rss_bytes_per_number",
           "memory: Redis / nixlookup started from a snapshot (RSS growth)", "-"),
    Target("target_load_redis_over_nixlookup", f"{REDIS}_load_s", f"{NIXLOOKUP}_load_s",
           "load: Redis fill / nixlookup load", ">= 10"),
)  # fmt: skip
"""The issue's targets, in the order of the targets table."""

PER_CALL_TARGET = Target(
    "target_unary_c{level}_nixlookup_over_grpc_set",
    f"{NIXLOOKUP}_unary_c{{level}}_qps",
    f"{REFERENCE}_unary_c{{level}}_qps",
    "per-call c={level}: nixlookup / bare grpcio",
    ">= 0.9",
)
"""The per-call target, one row per concurrency level, after `TARGETS`."""


def _targets(settings: CompareSettings) -> list[Target]:
    return [*TARGETS, *(PER_CALL_TARGET.at(level) for level in settings.concurrency)]


def _names(figures: dict[str, Any]) -> list[str]:
    return [name for name in CONTENDERS if name != REDIS or figures.get("redis_available")]


def ratios(figures: dict[str, Any], settings: CompareSettings) -> dict[str, Any]:
    """Each contender's figures as `<what>_<contender>_vs_nixlookup` (contender / nixlookup); the targets."""
    out: dict[str, Any] = {}
    for name in (REDIS, REFERENCE, PYSET):
        for level in settings.concurrency:
            out[f"unary_c{level}_qps_{name}_vs_nixlookup"] = ratio(
                figures.get(f"{name}_unary_c{level}_qps"), figures.get(f"{NIXLOOKUP}_unary_c{level}_qps")
            )
        for batch in settings.batch_sizes:
            out[f"bulk_{batch}_{name}_vs_nixlookup"] = ratio(
                figures.get(f"{name}_bulk_{batch}_numbers_per_s"),
                figures.get(f"{NIXLOOKUP}_bulk_{batch}_numbers_per_s"),
            )
    for target in _targets(settings):
        out[target.figure] = ratio(figures.get(target.numerator), figures.get(target.denominator))
    return out


def tables(figures: dict[str, Any], settings: CompareSettings) -> list[Table]:
    names = _names(figures)
    per_call = Table(
        title="Per-call check (Check / SISMEMBER / `in`), QPS and latency",
        columns=["contender", "in flight", "QPS", "p50 ms", "p99 ms", "QPS vs nixlookup"],
    )
    for level in settings.concurrency:
        for name in names:
            per_call.rows.append([
                LABELS[name], level, figures.get(f"{name}_unary_c{level}_qps"),
                figures.get(f"{name}_unary_c{level}_p50_ms"), figures.get(f"{name}_unary_c{level}_p99_ms"),
                1.0 if name == NIXLOOKUP else figures.get(f"unary_c{level}_qps_{name}_vs_nixlookup"),
            ])  # fmt: skip
    bulk = Table(
        title="Bulk check (CheckStream bytes / SMISMEMBER / set loop), numbers/s",
        columns=["contender", "batch", "numbers/s", "correct", "vs nixlookup"],
    )
    for batch in settings.batch_sizes:
        for name in names:
            bulk.rows.append([
                LABELS[name], batch, figures.get(f"{name}_bulk_{batch}_numbers_per_s"),
                figures.get(f"{name}_bulk_{batch}_correct"),
                1.0 if name == NIXLOOKUP else figures.get(f"bulk_{batch}_{name}_vs_nixlookup"),
            ])  # fmt: skip
    resources = Table(
        title=f"Load and memory, {figures.get('register_size', 0):,} numbers",
        columns=["contender", "load s", "bytes/number (data)", "bytes/number (RSS growth)"],
    )
    resources.rows.append([LABELS[NIXLOOKUP], figures.get(f"{NIXLOOKUP}_load_s"),
                           figures.get(f"{NIXLOOKUP}_index_bytes_per_number"),
                           figures.get(f"{NIXLOOKUP}_rss_bytes_per_number")])  # fmt: skip
    resources.rows.append(["nixlookup server started from a snapshot", None, None,
                           figures.get(f"{NIXLOOKUP}_snapshot_rss_bytes_per_number")])  # fmt: skip
    if figures.get(f"{NIXLOOKUP}_server_reload_s") is not None:
        resources.rows.append(
            [
                "nixlookup server, Admin/Reload of the file",
                figures[f"{NIXLOOKUP}_server_reload_s"],
                None,
                None,
            ]
        )
    if figures.get("redis_available"):
        resources.rows.append([LABELS[REDIS], figures.get(f"{REDIS}_load_s"),
                               figures.get(f"{REDIS}_used_memory_bytes_per_number"),
                               figures.get(f"{REDIS}_rss_bytes_per_number")])  # fmt: skip
    resources.rows.append([LABELS[PYSET], figures.get(f"{PYSET}_load_s"), None, None])
    targets = Table(title="Targets (issue 6)", columns=["target", "measured", "goal"])
    targets.rows = [[target.label, figures.get(target.figure), target.goal] for target in _targets(settings)]
    return [per_call, bulk, resources, targets]


def redis_ahead(figures: dict[str, Any], settings: CompareSettings) -> list[str]:
    notes: list[str] = []
    for level in settings.concurrency:
        theirs = figures.get(f"unary_c{level}_qps_{REDIS}_vs_nixlookup")
        if theirs is not None and theirs > 1.0:
            notes.append(f"Redis is ahead per call at {level} in flight: {theirs:.2f}x nixlookup's QPS")
    for batch in settings.batch_sizes:
        theirs = figures.get(f"bulk_{batch}_{REDIS}_vs_nixlookup")
        if theirs is not None and theirs > 1.0:
            notes.append(f"Redis is ahead in bulk at batches of {batch}: {theirs:.2f}x")
    return notes


def plots(figures: dict[str, Any], settings: CompareSettings) -> list[Plot]:
    names = _names(figures)
    # deliberate twins: two charts, each one literal Plot of its own axes and series
    return [
        Plot(
            name="throughput-vs-batch",
            title="Bulk check throughput vs batch size",
            xlabel="numbers per batch",
            ylabel="numbers/s",
            x=[float(b) for b in settings.batch_sizes],
            series={
                LABELS[n]: [figures.get(f"{n}_bulk_{b}_numbers_per_s") for b in settings.batch_sizes]
                for n in names
            },
            logx=True,
            logy=True,
        ),
        Plot(
            name="latency-vs-concurrency",
            title="Per-call p99 latency vs calls in flight",
            xlabel="calls in flight",
            ylabel="p99 latency (ms)",
            x=[float(c) for c in settings.concurrency],
            series={
                LABELS[n]: [figures.get(f"{n}_unary_c{c}_p99_ms") for c in settings.concurrency]
                for n in names
                if n != PYSET
            },
            logx=True,
        ),
    ]
