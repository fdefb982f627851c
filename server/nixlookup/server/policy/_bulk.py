"""A batch's answers from its parse: one compiled pass (`_kernels.answer_batch_kernel`), or the numpy chain.

Theory of operation
-------------------
`Policy.decide_many` holds each number's facts as a fact code (`_facts`) and answers by gathers from the
rule table's per-code arrays (`CodeTable`). Filling the codes takes three sources, in this order:

1. the parse (INVALID, MOBILE), and valid_until (0 for an invalid number);
2. the caller's lists, through its overlay's probe: each live entry sets its list's fact bit, and where
   the row that decides rests on a relationship or consent, that entry's end caps valid_until;
3. the register (REGISTERED), asked only where the code says it can still change the answer
   (`register_matters`), and not at all for an exempt purpose (`needs_register`).

`answer_batch` runs all three and the gathers in one compiled loop by default: the codes never leave
the cache, and the register is probed inline through the index's own compiled steps. `answer_batch_numpy`
is the chain of numpy passes it replaced (the caller-list fold was already compiled), kept as its
reference and for A/B runs (`NIXLOOKUP_BULK_PATH=numpy`). Both produce the same five arrays;
`tests/test_policy_agreement.py` holds them, and `decide_one`, to exact agreement.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._jit import bulk_compiled
from nixlookup.server.index import Index
from nixlookup.server.numbering import LineType, ParsedBatch, Problem
from nixlookup.server.policy._facts import _FIELDS, REGISTERED, Fact, apply_caller_lists, batch_codes
from nixlookup.server.policy._overlay import CallerOverlay
from nixlookup.server.policy._probe import KeyProbe

if TYPE_CHECKING:
    from nixlookup.server.policy._policy import CodeTable

__all__ = ["BatchArrays", "answer_batch", "answer_batch_numpy", "warm_up_batch"]

BatchArrays = tuple[
    NDArray[np.bool_], NDArray[np.bool_], NDArray[np.uint8], NDArray[np.bool_], NDArray[np.uint32]
]
"""blocked, invalid, reasons, mobile_flag, valid_until_days: one entry per number."""


@cache
def _no_lists() -> tuple[Any, ...]:
    """Probe arrays for a batch without caller lists: the kernel's signature stays the same either way."""
    return KeyProbe(np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.uint64)).parts


def answer_batch(
    table: CodeTable,
    register: Index,
    overlay: CallerOverlay | None,
    parsed: ParsedBatch,
    *,
    until_day: int,
    today: int,
) -> BatchArrays:
    """The batch's answers (see the module docstring): compiled unless the numpy path is selected."""
    register_parts = register.probe_parts if bulk_compiled() else None
    if register_parts is None:
        return answer_batch_numpy(table, register, overlay, parsed, until_day=until_day, today=today)
    from nixlookup.server.policy._kernels import answer_batch_kernel

    header = np.array(
        [until_day, today, int(Problem.OK), int(LineType.MOBILE), REGISTERED, int(table.needs_register),
         int(overlay is not None)],
        dtype=np.int64,
    )  # fmt: skip
    answers: BatchArrays = answer_batch_kernel(
        np.ascontiguousarray(parsed.keys, dtype=np.uint64),
        parsed.problems,
        parsed.line_types,
        header,
        table.reasons,
        table.blocked,
        table.mobile_flag,
        table.capped_by,
        table.register_matters,
        *_FIELDS,
        register_parts,
        overlay.probe_parts if overlay is not None else _no_lists(),
    )
    return answers


def answer_batch_numpy(
    table: CodeTable,
    register: Index,
    overlay: CallerOverlay | None,
    parsed: ParsedBatch,
    *,
    until_day: int,
    today: int,
) -> BatchArrays:
    """`answer_batch` as the numpy chain (the caller-list fold compiled): the compiled pass's reference."""
    keys = parsed.keys
    codes = batch_codes(parsed)
    invalid = (codes & np.uint8(Fact.INVALID)).view(np.bool_)
    valid_until_days = np.full(codes.size, until_day, dtype=np.uint32)
    np.putmask(valid_until_days, invalid, np.uint32(0))
    if overlay is None:
        if table.needs_register:  # the register decides every valid number: ask it for all of them
            codes |= register.contains_many(keys).view(np.uint8) * np.uint8(REGISTERED)
    else:  # first the caller's lists: the numbers they decide need no register lookup
        undecided, undecided_keys = apply_caller_lists(
            overlay,
            keys,
            codes,
            valid_until_days,
            today=today,
            capped_by=table.capped_by,
            register_matters=table.register_matters,
        )
        if undecided.size:
            found = register.contains_many(undecided_keys)
            codes[undecided] |= found.view(np.uint8) * np.uint8(REGISTERED)
    return (
        table.blocked.take(codes),
        invalid,
        table.reasons.take(codes),
        table.mobile_flag.take(codes),
        valid_until_days,
    )


def warm_up_batch(table: CodeTable, register: Index, overlay: CallerOverlay | None) -> None:
    """Run the compiled pass once on one number, so its code for these arrays' types is loaded."""
    keys = np.array([46701234567], dtype=np.uint64)
    parsed = ParsedBatch(keys, np.zeros(1, dtype=np.uint8), np.full(1, int(LineType.MOBILE), dtype=np.uint8))
    answer_batch(table, register, overlay, parsed, until_day=1, today=0)
