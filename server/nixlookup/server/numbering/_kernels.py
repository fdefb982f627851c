"""The key path's compiled loop: `classify_keys` for Swedish keys in one pass, no temporaries.

Theory of operation
-------------------
`_keys._classify_chunk` makes about fifteen numpy passes per chunk (log10, two range gathers, the NSN,
the table index, the plan gather, the line-type gather...), ~17-19 ns per key. `classify_swedish_keys`
does the same arithmetic per key in one loop over the same tables (`_keys` passes them in), writing the
key, problem and line type straight into the batch's arrays:

- The digit count is exact (19 comparisons against powers of ten, summed without a branch), where numpy
  estimates it with a float log10. The two differ only next to a power of ten, for keys that start with
  9 or 1: never a Swedish key, and such keys are decided by the scalar path in both versions.
- The plan index is the numpy version's float expression, `floor(float(nsn) / divisor)`, computed the
  same IEEE way, so both read the same table cell. The floor is the float-to-int conversion's own
  truncation: the quotient is never negative (nsn >= 0, divisor > 0 or inf), where the two are the same
  number, and an explicit `np.floor` before the conversion doubles the loop's cost (~13 -> ~6 ns a key:
  LLVM does not fuse the libm floor with the conversion and the table gather that follows it).
- Keys outside the Swedish ranges (and not 0) are foreign or invalid: their positions are returned for
  the scalar path (`classify_key`, libphonenumber), exactly as in the numpy version.

`tests/test_bulk_agreement.py` holds this loop, the numpy passes and `classify_key` to exact agreement.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled

__all__ = ["classify_swedish_keys"]

_U0: Final = np.uint64(0)
_EXPONENTS: Final = 20


@compiled
def classify_swedish_keys(  # noqa: PLR0917 - numba kernels take their arrays positionally
    values: NDArray[np.uint64],
    keys: NDArray[np.uint64],
    problems: NDArray[np.uint8],
    line_types: NDArray[np.uint8],
    powers: NDArray[np.uint64],
    swedish_low: NDArray[np.uint64],
    swedish_high: NDArray[np.uint64],
    row_base: NDArray[np.intp],
    prefix_divisor: NDArray[np.float64],
    type_code: NDArray[np.uint8],
    line_type_of_code: NDArray[np.uint8],
    length_problem: NDArray[np.uint8],
    pow10: NDArray[np.float64],
    no_type: int,
    ok: int,
    empty: int,
) -> NDArray[np.intp]:
    """Classify `values` into `keys`/`problems`/`line_types`; returns the rows the scalar path must judge.

    `powers[e]` is 10**e as uint64 (e < 20); the other tables are `_keys`'s per-exponent tables and the
    plan's flat tables."""
    count = values.size
    scalar_rows = np.empty(count, dtype=np.intp)
    foreign = 0
    unspecified = line_type_of_code[no_type]
    for i in range(count):
        value = values[i]
        exponent = 0  # digits - 1, counted without a branch
        for e in range(1, _EXPONENTS):
            exponent += int(value >= powers[e])
        low = swedish_low[exponent]
        swedish = (value >= low) & (value < swedish_high[exponent])
        nsn = np.float64(value - low) if swedish else 0.0
        code = type_code[row_base[exponent] + np.intp(nsn / prefix_divisor[exponent])]  # floor: >= 0
        valid = swedish & (code != no_type)
        # Selects, not branches: the invalid rows' problem is computed for every row and dropped if valid.
        nsn_length = max(exponent - 1, 0)
        leading_zero = 1 if nsn < pow10[max(nsn_length - 1, 0)] else 0
        problem = empty if value == _U0 else length_problem[max(nsn_length - leading_zero, 0)]
        keys[i] = value if valid else _U0
        problems[i] = ok if valid else problem
        line_types[i] = line_type_of_code[code] if valid else unspecified
        scalar_rows[foreign] = i
        foreign += int((not swedish) & (value != _U0))
    return scalar_rows[:foreign]
