"""A seeded synthetic NIX register: realistic Swedish numbers for demos, tests and benchmarks.

Theory of operation
-------------------
The real register cannot be shipped (it is personal data), so `make serve`, the tests and the benchmarks
use this one. It is shaped like the real thing, because the index's speed and size depend on that shape:

- about 80% mobile numbers in the 070/072/073/076/079 series (46 7X NNNNNNN), weighted like the operators'
  market shares;
- the rest fixed lines behind real area codes with real NSN lengths, taken from libphonenumber's SE
  metadata (the same reference the normaliser follows), Stockholm (08) weighted like its population;
- registers beyond what Swedish number space can plausibly hold (more than `SWEDISH_CAPACITY`, for the
  US-scale `--huge` benchmark) are topped up with North American (+1) numbers.

The same (size, seed) always gives the same keys, sorted and unique. `write_synthetic_file` is what
``nixlookup-server synth`` does: the same register written as text or as a snapshot, atomically.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final, Literal

import numpy as np
import phonenumbers
from numpy.typing import NDArray

from nixlookup.server.index import Index, sorted_unique
from nixlookup.server.store._datadir import write_file_atomically
from nixlookup.server.store._snapshot import write_snapshot

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_SYNTHETIC_SIZE",
    "SWEDISH_CAPACITY",
    "SyntheticFileFormat",
    "generate_queries",
    "generate_register",
    "synthetic_index",
    "synthetic_source",
    "write_synthetic_file",
    "write_text_register",
]

DEFAULT_SYNTHETIC_SIZE: Final = 1_500_000
DEFAULT_SEED: Final = 20080101  # the register opened in 2008
SWEDISH_CAPACITY: Final = 60_000_000
MOBILE_SHARE: Final = 0.8
_MOBILE_SERIES: Final = {70: 0.38, 72: 0.14, 73: 0.26, 76: 0.17, 79: 0.05}
_MOBILE_MAX_DENSITY: Final = 0.6  # never register more than this share of a mobile series
_STOCKHOLM_SHARE: Final = 0.25
_LENGTH_WEIGHT: Final = {7: 0.2, 8: 1.0, 9: 3.0}  # 9-digit NSNs dominate today's fixed lines
_COUNTRY_SE: Final = 46


@dataclass(frozen=True, slots=True)
class _FixedPlan:
    """Valid (3-digit NSN prefix, NSN length) pairs and the weight each gets when drawing."""

    prefixes: NDArray[np.uint64]
    lengths: NDArray[np.int64]
    weights: NDArray[np.float64]


@cache
def _fixed_plan() -> _FixedPlan:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("SE")
    assert metadata is not None
    assert metadata.fixed_line is not None
    pattern = re.compile(metadata.fixed_line.national_number_pattern or "")
    prefixes, lengths, weights = [], [], []
    for prefix in range(100, 1000):
        head = str(prefix)
        for length in (7, 8, 9):
            tail = length - 3
            # Every SE fixed-line pattern ends in plain \d{n} after at most 3 digits, so validity depends
            # only on (prefix, length): check both extremes of the tail to be sure.
            if pattern.fullmatch(head + "0" * tail) and pattern.fullmatch(head + "9" * tail):
                prefixes.append(prefix)
                lengths.append(length)
                weights.append(_LENGTH_WEIGHT[length])
    weight_array = np.array(weights, dtype=np.float64)
    prefix_array = np.array(prefixes, dtype=np.uint64)
    stockholm = prefix_array // np.uint64(100) == np.uint64(8)
    weight_array[stockholm] *= _STOCKHOLM_SHARE / weight_array[stockholm].sum()
    weight_array[~stockholm] *= (1 - _STOCKHOLM_SHARE) / weight_array[~stockholm].sum()
    return _FixedPlan(prefix_array, np.array(lengths, dtype=np.int64), weight_array / weight_array.sum())


def _draw_mobile(rng: np.random.Generator, count: int) -> NDArray[np.uint64]:
    series = np.array(list(_MOBILE_SERIES), dtype=np.uint64)
    share = np.array(list(_MOBILE_SERIES.values()))
    chosen = series[rng.choice(series.size, size=count, p=share / share.sum())]
    subscriber = rng.integers(0, 10**7, size=count, dtype=np.uint64)
    return (np.uint64(_COUNTRY_SE * 100) + chosen) * np.uint64(10**7) + subscriber


def _draw_fixed(rng: np.random.Generator, count: int) -> NDArray[np.uint64]:
    plan = _fixed_plan()
    pick = rng.choice(plan.prefixes.size, size=count, p=plan.weights)
    tail_digits = plan.lengths[pick] - 3
    scale = (10**tail_digits).astype(np.uint64)
    tail = (rng.random(count) * scale).astype(np.uint64)
    nsn = plan.prefixes[pick] * scale + tail
    return np.uint64(_COUNTRY_SE) * scale * np.uint64(1000) + nsn


def _draw_nanp(rng: np.random.Generator, count: int) -> NDArray[np.uint64]:
    area = rng.integers(201, 990, size=count, dtype=np.uint64)
    exchange = rng.integers(200, 1000, size=count, dtype=np.uint64)
    line = rng.integers(0, 10_000, size=count, dtype=np.uint64)
    return np.uint64(10**10) + area * np.uint64(10**7) + exchange * np.uint64(10**4) + line


_Drawer = Callable[[np.random.Generator, int], NDArray[np.uint64]]


def _distinct(rng: np.random.Generator, draw: _Drawer, count: int) -> NDArray[np.uint64]:
    """`count` distinct keys from `draw`, topping up after duplicates (bounded: the spaces are large)."""
    keys = sorted_unique(draw(rng, count + count // 50 + 16))
    for _ in range(64):
        if keys.size >= count:
            break
        keys = sorted_unique(np.concatenate([keys, draw(rng, (count - keys.size) * 2 + 16)]))
    if keys.size < count:
        raise ValueError(f"could not draw {count} distinct numbers; is the size beyond the number space?")
    # Drop the surplus at random, not from the top, so no range is under-represented.
    surplus = keys.size - count
    if surplus:
        keys = np.delete(keys, rng.choice(keys.size, size=surplus, replace=False))
    return keys


def generate_register(size: int = DEFAULT_SYNTHETIC_SIZE, seed: int = DEFAULT_SEED) -> NDArray[np.uint64]:
    """`size` distinct realistic keys, sorted. Deterministic for a given (size, seed)."""
    if size < 0:
        raise ValueError("size must be >= 0")
    rng = np.random.default_rng(seed)
    swedish = min(size, SWEDISH_CAPACITY)
    mobile_capacity = int(len(_MOBILE_SERIES) * 10**7 * _MOBILE_MAX_DENSITY)
    mobile = min(round(swedish * MOBILE_SHARE), mobile_capacity)
    parts = [_distinct(rng, _draw_mobile, mobile), _distinct(rng, _draw_fixed, swedish - mobile)]
    if size > swedish:
        parts.append(_distinct(rng, _draw_nanp, size - swedish))
    return np.sort(np.concatenate(parts))


def generate_queries(
    register: NDArray[np.uint64], count: int, *, hit_share: float = 0.5, seed: int = 1
) -> NDArray[np.uint64]:
    """Seeded lookup queries: `hit_share` drawn from the register, the rest realistic numbers not in it."""
    rng = np.random.default_rng(seed)
    hits = round(count * hit_share) if register.size else 0
    hit_keys = register[rng.integers(0, register.size, size=hits)] if hits else np.empty(0, np.uint64)
    misses: list[NDArray[np.uint64]] = []
    needed = count - hits
    for _ in range(64):
        if needed <= 0:
            break
        mobile = round(needed * MOBILE_SHARE)
        candidates = np.concatenate([_draw_mobile(rng, mobile), _draw_fixed(rng, needed - mobile)])
        if register.size:
            position = np.minimum(np.searchsorted(register, candidates), register.size - 1)
            candidates = candidates[register[position] != candidates]
        misses.append(candidates[:needed])
        needed -= min(needed, candidates.size)
    queries = np.concatenate([hit_keys, *misses])
    rng.shuffle(queries)
    return queries


def synthetic_source(size: int, seed: int) -> str:
    """The `IndexMeta.source` of a synthetic register (what logs and GetRegisterInfo show)."""
    return f"synthetic:size={size},seed={seed}"


def synthetic_index(size: int = DEFAULT_SYNTHETIC_SIZE, seed: int = DEFAULT_SEED) -> Index:
    """The synthetic register as an `Index`, flagged synthetic so nobody mistakes it for the real one."""
    return Index.build(
        generate_register(size, seed),
        version=f"synthetic-{size}-{seed}",
        source=synthetic_source(size, seed),
        synthetic=True,
    )


def write_text_register(path: Path, keys: NDArray[np.uint64], *, national: bool = False) -> None:
    """Write keys one per line, as E.164 (`+46701234567`) or in national form (`0701234567`; numbers of
    other countries stay E.164), replacing `path` atomically."""
    digits = keys.astype(str).tolist()
    if national:
        lines = ["0" + line[2:] if line.startswith("46") else "+" + line for line in digits]
    else:
        lines = ["+" + line for line in digits]
    text = "\n".join(lines)
    write_file_atomically(path, (text + "\n" if text else "").encode("ascii"))


SyntheticFileFormat = Literal["text", "snapshot"]
"""``synth --format``: text (one ``+46...`` number per line) or the server's snapshot format."""


def write_synthetic_file(path: Path, *, size: int, seed: int | None, fmt: SyntheticFileFormat) -> Index:
    """Write the synthetic register of (`size`, `seed`) to `path` (``nixlookup-server synth``)."""
    index = synthetic_index(size, DEFAULT_SEED if seed is None else seed)
    if fmt == "snapshot":
        write_snapshot(path, index)
    else:
        write_text_register(path, index.sorted_keys())
    return index
