"""What the NIX rules cost on the bulk path, in-process, against a plain register check in the same run.

The issue's budget: with a caller holding 100k opt-outs and 500k customer relationships, `decide_many`
may add at most ~0.25x of a plain register check's per-number budget (25 ns) on top of that check. Here a
1.5M-number synthetic register answers 10k-number batches of realistic queries (half registered, 5% on
the caller's lists), and the same batches go through:

- `register.contains_many` alone (the plain register check: the reference);
- `decide_many` without a caller, with the caller (sales), and with the caller for an exempt purpose.

Absolute times on a shared 2-core machine wander; the ratios to the reference measured in the same run
are what travel. Run `python tests/test_policy_cost.py` for the report (add `--batches N`); the test
asserts only a loose bound that a per-number Python loop or a per-batch rebuild would break.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import numpy as np
import pytest

from nixlookup.server.index import Index
from nixlookup.server.numbering import ParsedBatch, classify_keys
from nixlookup.server.policy import Policy
from nixlookup.server.store import ListKind, ServingState, generate_queries, generate_register
from nixlookup.v1.vocabulary import Purpose

BATCH = 10_000
REGISTER_SIZE = 1_500_000
OPT_OUTS = 100_000
RELATIONSHIPS = 500_000
LIST_HIT_SHARE = 0.05
REGISTER_BUDGET_NS = 25.0  # DESIGN.md: batch lookup <= 25 ns/number
NOW = datetime(2026, 3, 20, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class CostReport:
    """ns per number of each path, best of the repeats, and the derived ratios."""

    register_ns: float
    no_caller_ns: float
    caller_ns: float
    exempt_ns: float
    parse_ns: float

    @property
    def caller_on_top_ns(self) -> float:
        return self.caller_ns - self.register_ns

    def lines(self) -> list[str]:
        on_top = self.caller_on_top_ns
        return [
            f"batches of {BATCH:,}; register {REGISTER_SIZE:,}; caller lists {OPT_OUTS:,} opt-outs + "
            f"{RELATIONSHIPS:,} relationships; {LIST_HIT_SHARE:.0%} of queries on the caller's lists",
            f"  parse (classify_keys, not part of the policy)   {self.parse_ns:7.1f} ns/number",
            f"  plain register check (contains_many, reference) {self.register_ns:7.1f} ns/number",
            f"  decide_many, no caller                          {self.no_caller_ns:7.1f} ns/number",
            f"  decide_many, caller, SALES                      {self.caller_ns:7.1f} ns/number",
            f"  decide_many, caller, MARKET_RESEARCH (exempt)   {self.exempt_ns:7.1f} ns/number",
            f"  on top of the register check with the caller:  {on_top:7.1f} ns/number = "
            f"{on_top / self.register_ns:.2f}x the measured check, "
            f"{on_top / REGISTER_BUDGET_NS:.2f}x the 25 ns budget",
        ]


@dataclass(frozen=True)
class Workload:
    state: ServingState
    batches: list[ParsedBatch]


def build_workload(batch_count: int, seed: int = 7) -> Workload:
    """The register, the caller's lists and `batch_count` parsed query batches (untimed)."""
    register_keys = generate_register(REGISTER_SIZE)
    register = Index.build(
        register_keys, version="bench", source="synthetic", register_date=NOW - timedelta(days=10)
    )
    rng = np.random.default_rng(seed)
    caller_keys = generate_register(OPT_OUTS + RELATIONSHIPS, seed=seed)
    rng.shuffle(caller_keys)
    opt_out = Index.build(caller_keys[:OPT_OUTS], version="opt", source="bench")
    relationship_keys = caller_keys[OPT_OUTS:]
    ends = rng.integers(19_000, 21_000, size=relationship_keys.size).astype(np.uint32)
    ends[rng.random(relationship_keys.size) < 0.3] = 0  # 30% ongoing
    relationships = Index.build(relationship_keys, values=ends, version="rel", source="bench")
    state = ServingState(
        register=register,
        lists=MappingProxyType(
            {(ListKind.OPT_OUT, "acme"): opt_out, (ListKind.RELATIONSHIP, "acme"): relationships}
        ),
    )
    total = batch_count * BATCH
    queries = generate_queries(register_keys, total, hit_share=0.5, seed=seed)
    on_lists = rng.random(total) < LIST_HIT_SHARE
    queries[on_lists] = caller_keys[rng.integers(0, caller_keys.size, size=int(on_lists.sum()))]
    batches = [classify_keys(queries[i * BATCH : (i + 1) * BATCH]) for i in range(batch_count)]
    return Workload(state, batches)


def _interleaved_best_ns(
    runs: dict[str, Callable[[ParsedBatch], object]], batches: list[ParsedBatch], repeats: int
) -> dict[str, float]:
    """ns per number of each run: per batch the best of `repeats`, the runs interleaved batch by batch.

    Every run gets its own batches (the same distribution, different numbers), so no run finds index
    lines already cached by another run's probe of the same numbers. Interleaving puts every run under
    the same background load, and the per-batch minimum drops batches a burst of it landed on.
    """
    share = len(batches) // len(runs)
    if share == 0:
        raise ValueError(f"need at least {len(runs)} batches, one per run")
    best = {name: np.full(share, np.inf) for name in runs}
    for _ in range(repeats):
        for position in range(share):
            for offset, (name, run) in enumerate(runs.items()):
                batch = batches[offset * share + position]
                started = time.perf_counter_ns()
                run(batch)
                elapsed = time.perf_counter_ns() - started
                best[name][position] = min(best[name][position], elapsed)
    return {name: float(times.sum()) / (share * BATCH) for name, times in best.items()}


def measure(workload: Workload, repeats: int = 3) -> CostReport:
    policy = Policy()
    state = workload.state
    policy.decide_many(state, workload.batches[0], caller="acme", purpose=Purpose.SALES, now=NOW)  # overlay

    def decide(caller: str, purpose: Purpose) -> Callable[[ParsedBatch], object]:
        return lambda batch: policy.decide_many(state, batch, caller=caller, purpose=purpose, now=NOW)

    figures = _interleaved_best_ns(
        {
            "parse": lambda batch: classify_keys(batch.keys),
            "register": lambda batch: state.register.contains_many(batch.keys),
            "no_caller": decide("", Purpose.SALES),
            "caller": decide("acme", Purpose.SALES),
            "exempt": decide("acme", Purpose.MARKET_RESEARCH),
        },
        workload.batches,
        repeats,
    )
    return CostReport(
        register_ns=figures["register"],
        no_caller_ns=figures["no_caller"],
        caller_ns=figures["caller"],
        exempt_ns=figures["exempt"],
        parse_ns=figures["parse"],
    )


@pytest.mark.slow
def test_rules_cost_a_bounded_multiple_of_the_register_check() -> None:
    """With 100k opt-outs and 500k relationships, decide_many stays within a small multiple of the check."""
    report = measure(build_workload(batch_count=5 * 8))
    print("\n".join(report.lines()))
    # Loose on purpose (shared, noisy machine): a per-number Python loop costs ~50x, a per-batch overlay
    # rebuild ~1000x; the figure the issue asks for is printed above and reported by the bench.
    assert report.caller_ns <= 4.0 * report.register_ns + 50.0
    assert report.exempt_ns <= report.caller_ns * 1.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=40, help="10k-number batches per measured path")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    report = measure(build_workload(5 * args.batches), repeats=args.repeats)
    print("\n".join(report.lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
