"""`nixlookup-bench core`'s bulk-handler figures: a packed batch to its answer bits, in process, per number.

What one `CheckStream` batch of packed keys costs the server outside gRPC: `classify_keys` on the
frombuffer'd bytes, `Policy.decide_many` for a caller with 100k opt-outs and 500k relationships, and
packing the blocked / invalid / mobile bits, over 10k-number batches. The same work runs through the
compiled bulk path (the default) and through the numpy chain it replaced (`set_bulk_path("numpy")`),
alternately in this process, so their ratio holds on a busy machine. Every answer is checked: the
two paths must give the same bits, and the caller's opt-outs must come out blocked.

`CompiledDenseFloor` is the lookup's second floor: the dense bitset of `references.DenseBitsetFloor`
probed by a compiled loop (numba) instead of numpy passes, the least a compiled lookup can cost.
`best_of_alternating` is the timing helper both this and the lookup figures use: N pieces of work,
run in turn, best (and median) of each.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from nixlookup.bench.references import DenseBitsetFloor
from nixlookup.bench.timing import Timing
from nixlookup.bench.workload import Workload
from nixlookup.server._jit import set_bulk_path
from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.numbering import classify_keys
from nixlookup.server.policy import Policy
from nixlookup.server.store import ListKind, ServingState
from nixlookup.v1.vocabulary import Purpose

__all__ = ["HANDLER_BATCH", "CompiledDenseFloor", "best_of_alternating", "handler_figures"]

HANDLER_BATCH = 10_000
_OPT_OUTS = 100_000
_RELATIONSHIPS = 500_000
_CALLER = "bench-caller"
_U0, _U1, _U3, _U7 = np.uint64(0), np.uint64(1), np.uint64(3), np.uint64(7)


@numba.njit(cache=True)
def _dense_probe(
    queries: NDArray[np.uint64], bitset: NDArray[np.uint8], low: np.uint64, mask: np.uint64
) -> NDArray[np.bool_]:
    found = np.empty(queries.size, dtype=np.bool_)
    for i in range(queries.size):
        offset = (queries[i] - low) & mask
        found[i] = ((np.uint64(bitset[offset >> _U3]) >> (offset & _U7)) & _U1) != _U0
    return found


class CompiledDenseFloor(DenseBitsetFloor):
    """The dense-bitset floor, probed by one compiled loop: shift, gather, bit test per query."""

    def contains_many(self, queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
        found: NDArray[np.bool_] = _dense_probe(queries, self._bitset, self._low, self._mask)
        return found


def best_of_alternating(
    works: Mapping[str, Callable[[], Any]], *, repeats: int, max_seconds: float
) -> dict[str, Timing]:
    """Each piece of work `repeats` times (fewer once `max_seconds` have passed), in turn, so a busy spell
    on the machine hits all of them alike; best and median per name."""
    samples: dict[str, list[float]] = {name: [] for name in works}
    budget_end = time.perf_counter() + max_seconds
    for _ in range(max(1, repeats)):
        for name, work in works.items():
            start = time.perf_counter()
            work()
            samples[name].append(time.perf_counter() - start)
        if time.perf_counter() >= budget_end:
            break
    return {
        name: Timing(min_s=min(runs), median_s=statistics.median(runs), runs=len(runs))
        for name, runs in samples.items()
    }


def _caller_state(workload: Workload, seed: int) -> tuple[ServingState, NDArray[np.uint64]]:
    """The register plus a caller with 100k opt-outs and 500k ongoing relationships from the same pool."""
    rng = np.random.default_rng(seed)
    pool = sorted_unique(np.concatenate([workload.register, workload.queries]))
    opt_outs = np.sort(rng.choice(pool, size=min(_OPT_OUTS, pool.size), replace=False))
    related = np.sort(rng.choice(pool, size=min(_RELATIONSHIPS, pool.size), replace=False))
    register = Index.build(workload.register, version="bench", source="synthetic", synthetic=True)
    state = ServingState(register=register)
    state = state.replacing((ListKind.OPT_OUT, _CALLER), Index.build(opt_outs, version="o", source="bench"))
    relationships = Index.build(
        related, values=np.zeros(related.size, dtype=np.uint32), version="r", source="bench"
    )
    state = state.replacing((ListKind.RELATIONSHIP, _CALLER), relationships)
    return state, opt_outs


def handler_figures(workload: Workload, *, repeats: int, max_seconds: float) -> dict[str, Any]:
    """ns per number of the bulk handler with a caller's lists, compiled and numpy, and their ratio."""
    state, opt_outs = _caller_state(workload, workload.seed + 99)
    policy = Policy()
    with contextlib.redirect_stdout(sys.stderr):  # its "bulk_kernels_ready" line: stdout may be --json
        policy.prepare(state)
    now = datetime.now(UTC)
    queries = workload.queries
    payloads = [
        queries[at : at + HANDLER_BATCH].astype("<u8").tobytes()
        for at in range(0, queries.size, HANDLER_BATCH)
    ]
    answers: dict[str, list[bytes]] = {}

    def handler(path: str) -> Callable[[], None]:
        def run() -> None:
            previous = set_bulk_path(path)
            try:
                out: list[bytes] = []
                for payload in payloads:
                    parsed = classify_keys(np.frombuffer(payload, dtype="<u8"))
                    decision = policy.decide_many(
                        state, parsed, caller=_CALLER, purpose=Purpose.SALES, now=now
                    )
                    out.append(np.packbits(decision.blocked, bitorder="little").tobytes())
                    np.packbits(decision.invalid, bitorder="little")
                    np.packbits(decision.mobile_flag, bitorder="little")
                answers[path] = out
            finally:
                set_bulk_path(previous)

        return run

    timings = best_of_alternating(
        {"compiled": handler("compiled"), "numpy": handler("numpy")}, repeats=repeats, max_seconds=max_seconds
    )
    if answers["compiled"] != answers["numpy"]:
        raise AssertionError("the compiled and the numpy bulk paths answered differently")
    blocked = np.unpackbits(
        np.frombuffer(b"".join(answers["compiled"]), dtype=np.uint8), bitorder="little", count=queries.size
    ).astype(np.bool_)
    if not blocked[np.isin(queries, opt_outs)].all():
        raise AssertionError("an opted-out number was not blocked")
    n = queries.size
    compiled_ns = timings["compiled"].min_s / n * 1e9
    numpy_ns = timings["numpy"].min_s / n * 1e9
    return {
        "handler_batch": HANDLER_BATCH,
        "handler_ns_per_number": compiled_ns,
        "handler_ns_per_number_median": timings["compiled"].median_s / n * 1e9,
        "handler_numpy_ns_per_number": numpy_ns,
        "handler_numpy_vs_compiled": numpy_ns / compiled_ns,
    }
