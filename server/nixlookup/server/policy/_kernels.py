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
- `apply_caller_lists_kernel` (behind `_policy_facts.apply_caller_lists`) runs the probe over a
  caller's overlay, takes each hit's payload apart (`decode_payload`) and folds it straight into the
  batch's fact codes and valid_until days.
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

import numba
import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import compiled
from nixlookup.server.policy._facts import Fact
from nixlookup.server.policy._overlay import (
    _CONSENT_SHIFT,
    _OPT_OUT_BIT,
    _RELATIONSHIP_SHIFT,
    _UNTIL_MASK,
)
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
from nixlookup.server.store import ListKind

__all__ = ["apply_caller_lists_kernel", "decode_payload", "probe_kernel"]

_U64 = np.uint64
_OPTED_OUT = int(Fact.OPTED_OUT)
_RELATIONSHIP_LIVE = int(Fact.RELATIONSHIP_LIVE)
_CONSENT_LIVE = int(Fact.CONSENT_LIVE)


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


@numba.njit(inline="always")
def decode_payload(payload: np.uint64) -> tuple[bool, np.int64, np.int64]:
    """(on the opt-out list, last day the relationship counts, last day the consent counts): see the
    payload layout above (FOREVER = no end, 0 = not on that list)."""
    return (
        (payload & _OPT_OUT_BIT) != _U64(0),
        np.int64((payload >> _RELATIONSHIP_SHIFT) & _UNTIL_MASK),
        np.int64((payload >> _CONSENT_SHIFT) & _UNTIL_MASK),
    )


_CAP_RELATIONSHIP = int(ListKind.RELATIONSHIP)
_CAP_CONSENT = int(ListKind.CONSENT)
_NO_CAP = 2**32 - 1  # above every uint32 day


@compiled
def apply_caller_lists_kernel(  # noqa: PLR0917 - numba kernels take their arrays positionally
    keys: NDArray[np.uint64],
    codes: NDArray[np.uint8],
    valid_until_days: NDArray[np.uint32],
    today: int,
    capped_by: NDArray[np.uint8],
    register_matters: NDArray[np.bool_],
    *probe_parts: Any,
) -> tuple[NDArray[np.intp], NDArray[np.uint64]]:
    positions, payloads = probe_kernel(keys, *probe_parts)
    # Selects, not ifs: the facts of consecutive hits are unpredictable.
    for hit in range(positions.size):
        at = positions[hit]
        opted_out, relationship_until, consent_until = decode_payload(payloads[hit])
        code = (
            codes[at]
            | (_OPTED_OUT if opted_out else 0)
            | (_RELATIONSHIP_LIVE if relationship_until >= today else 0)
            | (_CONSENT_LIVE if consent_until >= today else 0)
        )
        codes[at] = code
        kind = capped_by[code]
        cap = relationship_until if kind == _CAP_RELATIONSHIP else _NO_CAP
        cap = consent_until if kind == _CAP_CONSENT else cap
        valid_until_days[at] = min(valid_until_days[at], cap)
    # The numbers the register must still decide, compacted without a branch.
    undecided = np.empty(keys.size, dtype=np.intp)
    undecided_keys = np.empty(keys.size, dtype=np.uint64)
    count = 0
    for at in range(keys.size):
        undecided[count] = at
        undecided_keys[count] = keys[at]
        count += int(register_matters[codes[at]])
    return undecided[:count], undecided_keys[:count]
