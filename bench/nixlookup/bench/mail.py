"""Speed of the NIX-Adresserat key layer (personnummer and name-address keys), without the server.

Run ``python -m nixlookup.bench.mail [--size N] [--repeat R] [--json]``. On a seeded synthetic register it
times (best of ``--repeat``) the batch functions of `nixlookup.server.addressing` over two lists of
``--size`` rows: the register's own rows (clean, as the population register writes them) and one variant
of each person (a company list: other case and order, initials, abbreviations, ``lgh``/``tr``/``c/o``,
other postcode and personnummer forms). Beside them, in the same run, a plain Python pass over the rows
(a floor for anything that looks at each row once in Python) so that noisy-machine figures can be read as
ratios. The server path (``CheckAddresseeStream``) is not measured here; this is the key layer's share of
issue 15's >= 300k rows/s budget.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any

from nixlookup.bench.timing import best_of
from nixlookup.server.addressing import (
    AddressKeyCache,
    AddressRow,
    generate_address_register,
    name_address_keys,
    parse_personnummer_many,
    register_columns,
    register_name_address_keys,
    register_rows,
    write_variants,
)

__all__ = ["main", "measure"]


def _in_batches(rows: list[AddressRow], batch_rows: int, *, cached: bool) -> None:
    """Key `rows` the way a stream delivers them: batches of `batch_rows`, one cache for all of them."""
    cache = AddressKeyCache() if cached else None
    for start in range(0, len(rows), batch_rows):
        name_address_keys(rows[start : start + batch_rows], cache)


def _python_floor(rows: list[AddressRow]) -> int:
    return sum(len(row[0]) + len(row[1]) + len(row[2]) for row in rows)


def measure(size: int = 1_000_000, *, seed: int = 15, repeat: int = 3) -> dict[str, Any]:
    """Rows per second of each batch function on `size` clean and `size` variant rows."""
    register = generate_address_register(size, seed=seed)
    clean = register_rows(register)
    clean_personnummer = register_columns(register)["personnummer"].tolist()
    variants = write_variants(register, range(size), seed=seed)
    messy = [variant.row for variant in variants]
    messy_personnummer = [variant.personnummer for variant in variants]
    reference_date = register.reference_date
    figures: dict[str, Any] = {"size": size, "seed": seed}
    for label, rows, personnummer in (
        ("clean", clean, clean_personnummer),
        ("variants", messy, messy_personnummer),
    ):
        timings = {
            "name_address_keys": best_of(partial(name_address_keys, rows), repeats=repeat, max_seconds=60),
            "register_name_address_keys": best_of(
                partial(register_name_address_keys, rows), repeats=repeat, max_seconds=60
            ),
            "parse_personnummer_many": best_of(
                partial(parse_personnummer_many, personnummer, reference_date=reference_date),
                repeats=repeat,
                max_seconds=60,
            ),
            "name_address_keys_10k_batches": best_of(
                partial(_in_batches, rows, 10_000, cached=False), repeats=repeat, max_seconds=60
            ),
            "name_address_keys_10k_batches_cached": best_of(
                partial(_in_batches, rows, 10_000, cached=True), repeats=repeat, max_seconds=60
            ),
            "python_floor": best_of(partial(_python_floor, rows), repeats=repeat, max_seconds=60),
        }
        figures[label] = {
            name: {
                "rows_per_s": round(size / timing.min_s),
                "min_s": round(timing.min_s, 3),
                "median_s": round(timing.median_s, 3),
            }
            for name, timing in timings.items()
        }
        both = timings["name_address_keys"].min_s + timings["parse_personnummer_many"].min_s
        figures[label]["checked_row_both_keys_rows_per_s"] = round(size / both)
        figures[label]["register_keys_per_row"] = round(
            len(register_name_address_keys(rows[:100_000]).keys) / min(size, 100_000), 2
        )
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1_000_000, help="rows per list (default 1M)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args(argv)
    figures = measure(arguments.size, seed=arguments.seed, repeat=arguments.repeat)
    if arguments.json:
        print(json.dumps(figures))
        return
    for label in ("clean", "variants"):
        print(f"{label} rows ({figures['size']:,}):")
        for name, figure in figures[label].items():
            if isinstance(figure, dict):
                print(
                    f"  {name:38} {figure['rows_per_s']:>12,} rows/s  (best {figure['min_s']} s, "
                    f"median {figure['median_s']} s)"
                )
            else:
                print(f"  {name:38} {figure:>12,}")


if __name__ == "__main__":
    main()
