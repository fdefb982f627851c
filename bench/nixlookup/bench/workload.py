"""The register and the queries every contender gets: seeded, half hits, identical across a run.

`make_workload` draws a synthetic register of realistic Swedish numbers (`nixlookup.server.store`)
and a stream of queries, half of them registered numbers and half realistic numbers that are not
registered, shuffled. The expected answer for every query is computed here once (a sorted-array
lookup), so every contender's answers can be checked against the same truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.store import generate_queries, generate_register, write_text_register

__all__ = ["Workload", "make_workload", "write_register_text", "written_forms"]

_QUERY_SEED_OFFSET = 7919  # queries use a seed of their own, derived from the run's seed


@dataclass(frozen=True)
class Workload:
    """One run's register (sorted, unique keys), queries and the expected BLOCKED answer per query."""

    seed: int
    register: NDArray[np.uint64]
    queries: NDArray[np.uint64]
    expected_blocked: NDArray[np.bool_]

    @property
    def size(self) -> int:
        return int(self.register.size)

    def query_texts(self, count: int) -> list[str]:
        """The first `count` queries as people write them (national and international forms mixed)."""
        return written_forms(self.queries[:count])


def _expected(register: NDArray[np.uint64], queries: NDArray[np.uint64]) -> NDArray[np.bool_]:
    if register.size == 0:
        return np.zeros(queries.size, dtype=np.bool_)
    position = np.minimum(np.searchsorted(register, queries), register.size - 1)
    found: NDArray[np.bool_] = register[position] == queries
    return found


def make_workload(size: int, query_count: int, seed: int) -> Workload:
    """A register of `size` numbers and `query_count` queries (half hits), both from `seed`."""
    register = generate_register(size, seed)
    queries = generate_queries(register, query_count, hit_share=0.5, seed=seed + _QUERY_SEED_OFFSET)
    return Workload(
        seed=seed, register=register, queries=queries, expected_blocked=_expected(register, queries)
    )


def written_forms(keys: NDArray[np.uint64]) -> list[str]:
    """Keys written the ways call lists write them: `0701234567`, `070-123 45 67`, `+46 70 123 45 67`,
    `0046701234567`. (Not bare `46...` digits: for short fixed-line numbers that form is ambiguous.)"""
    texts: list[str] = []
    for position, digits in enumerate(keys.astype(str).tolist()):
        if not digits.startswith("46"):
            texts.append("+" + digits)
            continue
        national = "0" + digits[2:]
        style = position % 4
        if style == 0:
            texts.append(national)
        elif style == 1:
            texts.append(f"{national[:3]}-{national[3:6]} {national[6:8]} {national[8:]}")
        elif style == 2:
            texts.append(f"+46 {digits[2:4]} {digits[4:7]} {digits[7:9]} {digits[9:]}")
        else:
            texts.append("0046" + digits[2:])
    return texts


def write_register_text(path: Path, keys: NDArray[np.uint64]) -> Path:
    """The register as a text file, one number per line in national form, as the operator ships it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_register(path, keys, national=True)
    return path
