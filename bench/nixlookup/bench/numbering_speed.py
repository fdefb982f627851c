"""Speed of the normaliser, with references measured in the same run.

Run ``python -m nixlookup.bench.numbering_speed [--size N] [--json]``. It times (best of
``--repeat``) `parse_numbers` on seeded synthetic lines of the shapes registers and call lists hold,
the ``np.array(list)`` conversion alone (a floor for list input), `classify_keys`, and per number the
scalar `parse_number` and libphonenumber itself. Shared machines are noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import phonenumbers

from nixlookup.server.numbering import classify_key, classify_keys, parse_number, parse_numbers

__all__ = ["main", "measure"]

_SHAPES = {
    "0701234567": b"0%d%07d",
    "46701234567": b"46%d%07d",
    "+46701234567": b"+46%d%07d",
    "070-123 45 67": b"0%d-%03d %02d %02d",
}
_MOBILE_PREFIXES = (70, 72, 73, 76, 79)


def _lines(shape: bytes, size: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    prefixes = rng.choice(_MOBILE_PREFIXES, size).tolist()
    subscribers = rng.integers(0, 10**7, size).tolist()
    if shape.count(b"%") == 2:
        return [shape % (prefix, number) for prefix, number in zip(prefixes, subscribers, strict=True)]
    return [
        shape % (prefix, number // 10_000, number // 100 % 100, number % 100)
        for prefix, number in zip(prefixes, subscribers, strict=True)
    ]


def _best(action: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure(size: int = 1_500_000, repeat: int = 3, sample: int = 20_000) -> dict[str, Any]:
    """Seconds for each batch operation on ``size`` lines, and ns per number for the scalar ones."""
    results: dict[str, Any] = {"size": size}
    for name, shape in _SHAPES.items():
        lines = _lines(shape, size, seed=len(name))
        array = np.array(lines)
        results[f"np_array_list_s[{name}]"] = _best(partial(np.array, lines), repeat)
        results[f"parse_numbers_list_s[{name}]"] = _best(partial(parse_numbers, lines), repeat)
        results[f"parse_numbers_array_s[{name}]"] = _best(partial(parse_numbers, array), repeat)
    texts = [line.decode() for line in _lines(_SHAPES["0701234567"], size, seed=1)]
    results["parse_numbers_list_str_s[0701234567]"] = _best(lambda: parse_numbers(texts), repeat)
    keys = parse_numbers(texts).keys
    results["classify_keys_ns_per_number"] = _best(lambda: classify_keys(keys), repeat) / size * 1e9
    few = texts[:sample]
    results["parse_number_ns_per_number"] = (
        _best(lambda: [parse_number(t) for t in few], repeat) / sample * 1e9
    )
    few_keys = keys[:sample].tolist()
    results["classify_key_ns_per_number"] = (
        _best(lambda: [classify_key(k) for k in few_keys], repeat) / sample * 1e9
    )
    reference = few[: sample // 10]
    results["phonenumbers_ns_per_number"] = (
        _best(lambda: [phonenumbers.is_valid_number(phonenumbers.parse(t, "SE")) for t in reference], 1)
        / len(reference)
        * 1e9
    )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1_500_000, help="lines per batch (default 1.5M)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args(argv)
    results = measure(options.size, options.repeat)
    if options.json:
        print(json.dumps(results))
        return
    for name, value in results.items():
        unit = "" if name == "size" else ("ns/number" if name.endswith("per_number") else "ms")
        shown = value if name == "size" else (value if unit == "ns/number" else value * 1e3)
        print(f"{name:45s} {shown:10.1f} {unit}")


if __name__ == "__main__":
    main()
