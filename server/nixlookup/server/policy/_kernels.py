"""The server's compiled loops (numba): the bulk path's caller-list probe and what is built on it.

Theory of operation:
- `probe_kernel` answers "which numbers of this batch are in a `KeyProbe`, with which payload" over the
  arrays `KeyProbe.parts` lists (its layout is documented in `_policy_probe`). In numpy the probe took
  about twenty passes over the batch and cost as much as the register check it rides along with; one
  compiled loop costs ~5 ns per number. The loop is arranged for memory-level parallelism, not for
  brevity: a first pass compacts the filter's candidates without a branch, a second computes their
  buckets and a third only touches each bucket's line (independent loads, many in flight), a fourth
  compares the eight slots with selects and appends hits without a branch, and only the rare rest goes
  to the overflow array. Written the obvious way (test, branch, compare in one loop) it was three times
  slower: every mispredicted filter branch threw away the loads in flight.
- `apply_caller_lists_kernel` (behind `_facts.apply_caller_lists`) runs the probe over a caller's
  overlay, takes each hit's payload apart field by field (one field per caller list, `_overlay`) and
  folds it straight into the batch's fact codes and valid_until days.
- `answer_batch_kernel` (behind `_bulk.answer_batch`) is a whole batch in one compiled pass after the
  parse: fact codes from the parse, the caller's lists through the same probe and fold, the register
  (`index.probe_register_into`, the register's own compiled probe, masked) only for numbers whose
  answer can still depend on it, and the answers as gathers from the rule table's per-code arrays.
  The numpy chain it replaced made ~20 passes over the batch that evicted each other's caches.
- The loops keep the GIL (numba's default). Released (`nogil=True`), the batch's thread had to win it
  back from the server's other threads after every loop, and bulk with a caller ran ~5-10% slower end to
  end on 2 cores; a loop takes ~50-80 us per 10k numbers, well under the interpreter's 5 ms switch
  interval.
- This module is imported on first use, by the functions that call it: a server whose callers have no
  lists never loads numba (+0.3 s of import, ~45 MB of anonymous memory and ~110 MB of shared library
  pages). `Policy.prepare` compiles the loops (or loads them from numba's cache) before a state with
  caller lists first serves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled
from nixlookup.server.index import probe_register_into
from nixlookup.server.policy._overlay import UNTIL_BITS, UNTIL_MASK
from nixlookup.server.policy._probe import (
    _EMPTY_SLOT,
    _FILTER_HASH,
    _NO_QUOTIENT,
    _ROW,
    _SLOTS,
    _U1,
    _U3,
    _U7,
    _U_NO_QUOTIENT,
)

__all__ = ["answer_batch_kernel", "apply_caller_lists_kernel", "probe_kernel"]

_U64 = np.uint64


@compiled
def probe_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    queries: NDArray[np.uint64],
    filter_bits: NDArray[np.uint8],
    filter_shift: np.uint64,
    table: NDArray[np.uint32],
    n_buckets: np.uint64,
    payload_values: NDArray[np.uint64],
    overflow_keys: NDArray[np.uint64],
    overflow_payloads: NDArray[np.uint64],
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    """(positions of the queries that are keys, their payloads): table hits in ascending order, then
    overflow hits. `table` is the flat bucket array (`_ROW` uint32 per bucket: quotients + 1, then
    payload indexes)."""
    count = queries.size
    positions = np.empty(count, dtype=np.intp)
    # 1. The filter: candidates compacted without a branch (a 0/1 increment, not an if).
    candidates = 0
    for i in range(count):
        slot = (queries[i] * _FILTER_HASH) >> filter_shift
        positions[candidates] = i
        candidates += int((filter_bits[slot >> _U3] >> (slot & _U7)) & _U1)
    # 2. Each candidate's bucket and stored quotient; then a loop that only touches each bucket's line:
    #    independent loads, so many misses overlap (fused into one loop, or left out, the probe is
    #    1.5-2x slower).
    bases = np.empty(candidates, dtype=np.intp)
    wanted = np.empty(candidates, dtype=np.uint32)
    for c in range(candidates):
        key = queries[positions[c]]
        bases[c] = int(key % n_buckets) * _ROW
        stored = key // n_buckets + _U1
        wanted[c] = stored if stored < _U_NO_QUOTIENT else _U_NO_QUOTIENT
    touched = 0
    for c in range(candidates):
        touched ^= table[bases[c]]
    # 3. Compare the eight slots with selects; hits are appended in place (hits <= c). Misses in a full
    #    bucket, and queries that cannot be quotiented, are set aside for the overflow array.
    payloads = np.empty(candidates, dtype=np.uint64)
    spilled = np.empty(candidates, dtype=np.intp)
    hits = 0
    spills = 0
    for c in range(candidates):
        base = bases[c]
        value = wanted[c]
        slot = _SLOTS
        for s in range(_SLOTS - 1, -1, -1):
            slot = s if table[base + s] == value else slot
        found = slot < _SLOTS
        positions[hits] = positions[c]
        payloads[hits] = payload_values[table[base + _SLOTS + (slot & (_SLOTS - 1))]]
        spilled[spills] = positions[c]
        hits += int(found)
        spills += int(
            (slot == _SLOTS) & ((table[base + _SLOTS - 1] != _EMPTY_SLOT) | (value == _NO_QUOTIENT))
        )
    # 4. The rare rest: the sorted overflow array.
    for s in range(spills):
        i = spilled[s]
        key = queries[i]
        at = np.searchsorted(overflow_keys, key)
        if at < overflow_keys.size and overflow_keys[at] == key:
            positions[hits] = i
            payloads[hits] = overflow_payloads[at]
            hits += 1
    if touched == 1 and hits < 0:  # never true: keeps step 2's loads from being optimised away
        hits = 0
    return positions[:hits], payloads[:hits]


_NO_CAP = 2**32 - 1  # above every uint32 day


@compiled
def apply_caller_lists_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    keys: NDArray[np.uint64],
    codes: NDArray[np.uint8],
    valid_until_days: NDArray[np.uint32],
    today: int,
    capped_by: NDArray[np.uint8],
    register_matters: NDArray[np.bool_],
    field_facts: NDArray[np.uint8],
    field_kinds: NDArray[np.uint8],
    *probe_parts: Any,
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    """`field_facts[i]` / `field_kinds[i]`: the fact bit payload field i sets while live, and the list
    kind it caps valid_until for (see `_overlay` for the payload layout)."""
    positions, payloads = probe_kernel(keys, *probe_parts)
    fields = field_facts.size
    # Selects, not ifs: the facts of consecutive hits are unpredictable.
    for hit in range(positions.size):
        at = positions[hit]
        payload = payloads[hit]
        code = np.int64(codes[at])
        for field in range(fields):
            until = np.int64((payload >> _U64(field * UNTIL_BITS)) & UNTIL_MASK)
            code |= np.int64(field_facts[field]) if until >= today else np.int64(0)
        codes[at] = code
        kind = capped_by[code]
        cap = np.int64(_NO_CAP)
        for field in range(fields):
            until = np.int64((payload >> _U64(field * UNTIL_BITS)) & UNTIL_MASK)
            cap = until if kind == field_kinds[field] else cap
        valid_until_days[at] = min(np.int64(valid_until_days[at]), cap)
    # The numbers the register must still decide, compacted without a branch.
    undecided = np.empty(keys.size, dtype=np.intp)
    undecided_keys = np.empty(keys.size, dtype=np.uint64)
    count = 0
    for at in range(keys.size):
        undecided[count] = at
        undecided_keys[count] = keys[at]
        count += int(register_matters[codes[at]])
    return undecided[:count], undecided_keys[:count]


@compiled
def answer_batch_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    keys: NDArray[np.uint64],
    problems: NDArray[np.uint8],
    line_types: NDArray[np.uint8],
    header: NDArray[np.int64],
    reasons_of_code: NDArray[np.uint8],
    blocked_of_code: NDArray[np.bool_],
    mobile_flag_of_code: NDArray[np.bool_],
    capped_by: NDArray[np.uint8],
    register_matters: NDArray[np.bool_],
    field_facts: NDArray[np.uint8],
    field_kinds: NDArray[np.uint8],
    register_parts: Any,
    probe_parts: Any,
) -> tuple[Any, ...]:
    """The whole batch (see `_bulk`): (blocked, invalid, reasons, mobile_flag, valid_until_days).

    `header`: until_day, today, ok problem, mobile line type, the REGISTERED bit, needs_register (0/1),
    has_overlay (0/1), as int64, so the kernel's signature does not change with their values' types."""
    until_day, today, ok, mobile, registered_bit = header[0], header[1], header[2], header[3], header[4]
    needs_register, has_overlay = header[5] != 0, header[6] != 0
    count = keys.size
    codes = np.empty(count, dtype=np.uint8)
    valid_until_days = np.empty(count, dtype=np.uint32)
    invalid = np.empty(count, dtype=np.bool_)
    # 1. What the parse gives: INVALID (bit 0), MOBILE (bit 1); valid_until 0 for invalid numbers.
    for i in range(count):
        bad = np.int64(problems[i]) != ok
        invalid[i] = bad
        codes[i] = np.uint8(bad) | (np.uint8(np.int64(line_types[i]) == mobile) << np.uint8(1))
        valid_until_days[i] = 0 if bad else until_day
    # 2. The caller's lists: one probe, each hit's payload folded into its code and valid_until.
    if has_overlay:
        positions, payloads = probe_kernel(keys, *probe_parts)
        fields = field_facts.size
        for hit in range(positions.size):
            at = positions[hit]
            payload = payloads[hit]
            code = np.int64(codes[at])
            for field in range(fields):
                until = np.int64((payload >> _U64(field * UNTIL_BITS)) & UNTIL_MASK)
                code |= np.int64(field_facts[field]) if until >= today else np.int64(0)
            codes[at] = code
            kind = capped_by[code]
            cap = np.int64(_NO_CAP)
            for field in range(fields):
                until = np.int64((payload >> _U64(field * UNTIL_BITS)) & UNTIL_MASK)
                cap = until if kind == field_kinds[field] else cap
            valid_until_days[at] = min(np.int64(valid_until_days[at]), cap)
    # 3. The register, only where it can still change the answer (the index's own compiled probe, with
    #    the other numbers masked off), then the answers: gathers from the rule table by code.
    found = np.zeros(count, dtype=np.bool_)
    if needs_register:
        active = np.empty(count, dtype=np.bool_)
        for i in range(count):
            active[i] = register_matters[codes[i]]
        probe_register_into(keys, active, found, *register_parts)
    blocked = np.empty(count, dtype=np.bool_)
    reasons = np.empty(count, dtype=np.uint8)
    mobile_flag = np.empty(count, dtype=np.bool_)
    for i in range(count):
        code = np.int64(codes[i]) | (registered_bit if found[i] else np.int64(0))
        blocked[i] = blocked_of_code[code]
        reasons[i] = reasons_of_code[code]
        mobile_flag[i] = mobile_flag_of_code[code]
    return blocked, invalid, reasons, mobile_flag, valid_until_days
