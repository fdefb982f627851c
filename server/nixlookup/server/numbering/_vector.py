"""The vectorised normaliser: the rules of `_numbering_scalar` over numpy arrays of texts.

Theory of operation
-------------------
Texts become a fixed-width character matrix (numpy ``S``/``U`` arrays, zero-padded on the right), cut
into chunks of `CHUNK_ROWS` rows and transposed so that each character position is one contiguous
vector; every step is a handful of whole-vector operations per character position, with no per-number
Python. Per chunk:

1. Characters: digit or not; only chunks holding a non-digit pay for a class-table lookup (separator,
   ``+``, other). A row is bad if it holds another character, an embedded NUL, or a ``+`` after a digit.
2. Digits: per row the digit count, the first five digits (``head``) and the value of the last 14
   digits (``tail``, exact in float64 as 10^14 < 2^53). That is all the rules need: every prefix decision
   looks at the first five digits (``00`` + ``46`` + national prefix ``0``), and the national significant
   number (NSN) is always a suffix of at most 12 digits. Plain-digit chunks get both with one
   matrix-vector product; chunks with separators weigh each digit by its rank.
3. Decisions: the structure of a number (national, bare ``46``, ``+46``/``0046``, foreign, unknown
   country code; where the national candidate starts; whether it starts with ``0``) depends only on
   ``+`` and the first five digits, so it is one lookup in `_STRUCTURE`, a table computed at import from
   the same rules. The rest (bare ``46`` test, national prefix, NSN length, plan lookup) is a few
   vector operations.

Rows the fast path does not decide go to the scalar path one by one, so both agree by construction on
them: non-ASCII characters, texts longer than `MAX_TEXT_CHARS`, foreign (non-+46) numbers and ``+``
with 3-4 digits. They are rare in Swedish registers and call lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.numbering._codes import (
    LINE_TYPE_OF_CODE,
    MAX_TEXT_CHARS,
    SWEDISH_LENGTH_PROBLEM,
    ParsedBatch,
    Problem,
)
from nixlookup.server.numbering._plan import (
    COUNTRY_CODE_LENGTH,
    MAX_PLAN_LENGTH,
    MIN_NSN_DIGITS,
    MIN_PLAN_LENGTH,
    NO_TYPE,
    STRIP_LENGTH_OK,
    SWEDISH_COUNTRY_CODE,
)
from nixlookup.server.numbering._scalar import ASCII_SEPARATORS, parse_number
from nixlookup.server.numbering._tables import (
    EXACT_LENGTH_LIMIT,
    GENERAL_MATCH_FLAT,
    LENGTH_LIMIT,
    POW10,
    PREFIX_DIVISOR,
    ROW_BASE,
    TYPE_CODE_FLAT,
    store_parsed,
)

__all__ = ["CHUNK_ROWS", "parse_numbers"]

# Rows per chunk: a transposed chunk and its working vectors (8 bytes x 32K = 256 KiB each) stay in L2
# cache while the Python overhead per chunk (~100 numpy calls) stays small against the work.
CHUNK_ROWS: Final = 1 << 15
TAIL_DIGITS: Final = EXACT_LENGTH_LIMIT + 1  # digits kept in the float64 tail value: 10^14 < 2^53
HEAD_DIGITS: Final = 5  # digits the structure depends on
_HEAD_SPAN: Final = 10**HEAD_DIGITS
# Rows with fewer digits than HEAD_DIGITS: without "+" they are too short for the plan whatever they are
# (their NSN cannot reach MIN_PLAN_LENGTH); with "+" the scalar path decides.
assert MIN_PLAN_LENGTH > HEAD_DIGITS - 1, "short rows would need the structure table"

_CLASS_PAD, _CLASS_DIGIT, _CLASS_SEPARATOR, _CLASS_PLUS, _CLASS_OTHER = range(5)


def _character_classes() -> NDArray[np.uint8]:
    table = np.full(256, _CLASS_OTHER, dtype=np.uint8)
    table[0] = _CLASS_PAD
    table[ord("0") : ord("9") + 1] = _CLASS_DIGIT
    table[[ord(char) for char in ASCII_SEPARATORS]] = _CLASS_SEPARATOR
    table[ord("+")] = _CLASS_PLUS
    table.setflags(write=False)
    return table


_CHARACTER_CLASS: Final = _character_classes()
_PLUS: Final = np.uint8(ord("+"))

# Structure kinds; the Swedish ones first so "kind <= _SWEDISH_INTERNATIONAL" means "Swedish".
_NATIONAL, _BARE_COUNTRY_CODE, _SWEDISH_INTERNATIONAL, _FOREIGN, _UNKNOWN_CODE = range(5)


def _structure_table() -> NDArray[np.uint8]:
    """[plus * 10^5 + first five digits] -> kind | candidate start << 3 | candidate starts with 0 << 6.

    The same decisions as `_numbering_scalar._classify_digits`, for numbers of five digits or more.
    """
    head = np.arange(_HEAD_SPAN)
    d0, d1, d2, d3, d4 = ((head // 10 ** (HEAD_DIGITS - 1 - k)) % 10 for k in range(HEAD_DIGITS))
    idd = (d0 == 0) & (d1 == 0) & (d2 != 0)
    tables = []
    for plus in (False, True):
        international = idd | plus
        start = np.where(idd, 2, 0)
        code_digits = np.where(idd, d2 * 100 + d3 * 10 + d4, d0 * 100 + d1 * 10 + d2)
        code_length = COUNTRY_CODE_LENGTH[code_digits]
        unknown = (code_length == 0) | (plus & (d0 == 0) & ~idd)
        swedish_code = (code_length == 2) & (code_digits // 10 == SWEDISH_COUNTRY_CODE)
        bare = ~international & (d0 == 4) & (d1 == 6)
        kind = np.select(
            [~international & ~bare, bare, unknown, swedish_code],
            [_NATIONAL, _BARE_COUNTRY_CODE, _UNKNOWN_CODE, _SWEDISH_INTERNATIONAL],
            default=_FOREIGN,
        )
        rest_start = 2 + (d2 == 0)
        candidate_start = np.select([international, bare], [start + 2, rest_start], default=0)
        first_digit = np.choose(candidate_start, [d0, d1, d2, d3, d4])
        tables.append(kind | candidate_start << 3 | (first_digit == 0) << 6)
    table = np.concatenate(tables).astype(np.uint8)
    table.setflags(write=False)
    return table


_STRUCTURE: Final = _structure_table()
_KIND_PROBLEM: Final = np.array(
    [Problem.OK, Problem.OK, Problem.OK, Problem.OK, Problem.UNKNOWN_COUNTRY_CODE], dtype=np.uint8
)


def _nsn_length_table() -> NDArray[np.intp]:
    """[(candidate start | starts with 0 << 3) * LENGTH_LIMIT + digit count] -> NSN length (step 4).

    The second half (offset `_REST_OFFSET`) holds the length of the rest after the country code of a bare
    "46..." number, before step 4: what libphonenumber tests against the general pattern.
    """
    table = np.zeros((2, 16, LENGTH_LIMIT), dtype=np.intp)
    for code in range(16):
        candidate_start, starts_with_zero = code & 7, code >> 3
        for count in range(LENGTH_LIMIT):
            candidate = max(count - candidate_start, 0)
            strip = starts_with_zero and candidate >= MIN_NSN_DIGITS and STRIP_LENGTH_OK[candidate - 1]
            table[0, code, count] = candidate - strip
            table[1, code, count] = candidate
    table.setflags(write=False)
    return table.ravel()


_NSN_LENGTH: Final = _nsn_length_table()
_REST_OFFSET: Final = 16 * LENGTH_LIMIT
_SUFFIX_MODULUS: Final = POW10[np.minimum(np.arange(LENGTH_LIMIT), TAIL_DIGITS - 1)]
_LENGTH_PROBLEM: Final = SWEDISH_LENGTH_PROBLEM[:LENGTH_LIMIT]
# Weight of a digit by its rank from the start (head) and from the end (tail); 0 beyond the window.
_HEAD_WEIGHT: Final = np.array(
    [10 ** (HEAD_DIGITS - 1 - rank) if rank < HEAD_DIGITS else 0 for rank in range(256)], dtype=np.int32
)
_TAIL_WEIGHT: Final = np.array(
    [10.0 ** (index - 1) if 1 <= index <= TAIL_DIGITS else 0.0 for index in range(256)], dtype=np.float64
)  # indexed by rank from the end + 1: the last digit has index 1


def _digits_plain(
    digit_values: NDArray[np.uint8], count: NDArray[np.uint8], plus: NDArray[np.bool_]
) -> tuple[Any, Any]:
    """Head and tail of plain rows: digits left-aligned, or from column 1 behind a "+" in column 0.

    Needs a width of at most TAIL_DIGITS + 1 so that the left-aligned value stays below 2^53.
    """
    width = digit_values.shape[0]
    weights = 10.0 ** np.arange(width - 1, -1, -1)
    left_aligned = weights @ digit_values.astype(np.float64)  # value * 10^(width - plus - count)
    tail = left_aligned / POW10[width - plus - count]
    head = _head_of_columns(digit_values[:HEAD_DIGITS])
    if plus.any():
        head = np.where(plus, _head_of_columns(digit_values[1 : HEAD_DIGITS + 1]), head)
    return head, tail


def _head_of_columns(first_columns: NDArray[np.uint8]) -> NDArray[np.int32]:
    weights = 10.0 ** np.arange(HEAD_DIGITS - 1, HEAD_DIGITS - 1 - len(first_columns), -1)
    head: NDArray[np.int32] = (weights @ first_columns.astype(np.float64)).astype(np.int32)
    return head


def _digits_ranked(
    digit_values: NDArray[np.uint8],
    is_digit: NDArray[np.bool_],
    count: NDArray[np.uint8],
    is_plus: NDArray[np.bool_] | None,
) -> tuple[Any, Any, NDArray[np.bool_]]:
    """Head, tail and 'a + after a digit' for rows with separators: each digit weighed by its rank."""
    width, rows = digit_values.shape
    head = np.zeros(rows, dtype=np.int32)
    tail = np.zeros(rows, dtype=np.float64)
    plus_after_digit = np.zeros(rows, dtype=np.bool_)
    rank = np.zeros(rows, dtype=np.intp)  # digits seen so far
    tail_index = count.astype(np.intp)  # index into _TAIL_WEIGHT of the next digit: rank from the end + 1
    head_open = True  # some row still has fewer than HEAD_DIGITS digits before this position
    for position in range(width):
        value = digit_values[position]
        if head_open:
            head += value * _HEAD_WEIGHT[rank]
            head_open = position < HEAD_DIGITS or int(rank.min()) < HEAD_DIGITS
        tail += value * _TAIL_WEIGHT[tail_index]
        if is_plus is not None:
            plus_after_digit |= is_plus[position] & (rank > 0)
        digit = is_digit[position]
        rank += digit
        tail_index -= digit
    return head, tail, plus_after_digit


def _scan_chunk(columns: NDArray[np.uint8]) -> tuple[Any, Any, Any, Any, Any]:
    """Steps 1-2: per row (bad, plus, digit count, head, tail)."""
    width = columns.shape[0]
    digit_values = columns - np.uint8(ord("0"))
    is_digit = digit_values < 10
    digit_values *= is_digit
    count = is_digit.view(np.uint8).sum(axis=0, dtype=np.uint8)
    embedded_nul = ((columns[:-1] == 0) & (columns[1:] != 0)).any(axis=0)
    non_digit = ~is_digit & (columns != 0)
    leading_plus = columns[0] == _PLUS
    if not (non_digit[0] & ~leading_plus).any() and not non_digit[1:].any():
        # Plain rows (digits, perhaps behind a "+" in column 0): the common shape of register files.
        if width <= TAIL_DIGITS + 1 and not embedded_nul.any():
            head, tail = _digits_plain(digit_values, count, leading_plus)
            return embedded_nul, leading_plus, count, head, tail
        head, tail, _ = _digits_ranked(digit_values, is_digit, count, None)
        return embedded_nul, leading_plus, count, head, tail
    classes = np.take(_CHARACTER_CLASS, columns)
    is_plus = classes == _CLASS_PLUS
    any_plus = is_plus.any(axis=0)
    head, tail, plus_after_digit = _digits_ranked(
        digit_values, is_digit, count, is_plus if any_plus.any() else None
    )
    # A "+" is fine only before the first digit.
    bad = embedded_nul | (classes == _CLASS_OTHER).any(axis=0) | plus_after_digit
    return bad, any_plus, count, head, tail


def _decide(
    bad: NDArray[np.bool_],
    plus: NDArray[np.bool_],
    count_u8: NDArray[np.uint8],
    head: NDArray[np.int32],
    tail: NDArray[np.float64],
) -> tuple[NDArray[np.uint64], NDArray[np.uint8], NDArray[np.uint8], NDArray[np.bool_]]:
    """Step 3: (keys, problems, line types, rows for the scalar path)."""
    count = count_u8.astype(np.intp)
    structure = _STRUCTURE[head + plus * _HEAD_SPAN]
    kind = structure & 7
    nsn_length = _NSN_LENGTH[(structure >> 3).astype(np.intp) * LENGTH_LIMIT + count]
    long_enough = count >= HEAD_DIGITS
    all_decided = bool(long_enough.all()) and not bad.any()

    bare = kind == _BARE_COUNTRY_CODE
    if not all_decided:
        bare &= long_enough
    if bare.any():
        # libphonenumber reads "46..." as country code + national number when the whole does not match
        # the general pattern but the rest does, or the whole is too long for the plan.
        whole_general = GENERAL_MATCH_FLAT[_table_index(count, tail)]
        rest_length = _NSN_LENGTH[(structure >> 3).astype(np.intp) * LENGTH_LIMIT + count + _REST_OFFSET]
        rest_general = GENERAL_MATCH_FLAT[_table_index(rest_length, _suffix(tail, rest_length))]
        national_after_all = bare & (count <= MAX_PLAN_LENGTH) & (whole_general | ~rest_general)
        nsn_length = np.where(national_after_all, count, nsn_length)  # starts with 4: nothing to strip

    nsn = _suffix(tail, nsn_length)
    code = TYPE_CODE_FLAT[_table_index(nsn_length, nsn)]
    valid = code != NO_TYPE
    all_swedish = int(kind.max()) <= _SWEDISH_INTERNATIONAL
    if all_decided and all_swedish and valid.all():  # the common case: a clean batch of Swedish numbers
        keys = (SWEDISH_COUNTRY_CODE * POW10[nsn_length] + nsn).astype(np.uint64)
        no_problems = np.zeros(len(count), dtype=np.uint8)
        return keys, no_problems, LINE_TYPE_OF_CODE[code], np.zeros(len(count), dtype=np.bool_)

    decided = long_enough & ~bad
    swedish = decided & (kind <= _SWEDISH_INTERNATIONAL)
    valid &= swedish
    keys = np.where(valid, SWEDISH_COUNTRY_CODE * POW10[nsn_length] + nsn, 0.0).astype(np.uint64)
    line_types = LINE_TYPE_OF_CODE[np.where(valid, code, NO_TYPE)]
    leading_zero = nsn < POW10[np.maximum(nsn_length - 1, 0)]  # exact below TAIL_DIGITS; beyond: too long
    problems = np.where(
        swedish, _LENGTH_PROBLEM[np.maximum(nsn_length - leading_zero, 0)], _KIND_PROBLEM[kind]
    )
    problems[valid] = Problem.OK
    problems[~long_enough] = Problem.TOO_SHORT
    problems[count == 0] = Problem.EMPTY
    problems[bad] = Problem.BAD_CHARACTER
    scalar_rows = ~bad & ((decided & (kind == _FOREIGN)) | (plus & ~long_enough & (count > MIN_NSN_DIGITS)))
    return keys, problems, line_types, scalar_rows


def _suffix(tail: NDArray[np.float64], length: NDArray[np.intp]) -> NDArray[np.float64]:
    """The last ``length`` digits of the tail value, exactly (for lengths below TAIL_DIGITS)."""
    modulus = _SUFFIX_MODULUS[length]
    return tail - np.floor(tail / modulus) * modulus


def _table_index(length: NDArray[np.intp], nsn: NDArray[np.float64]) -> NDArray[np.intp]:
    """Flat plan-table index of an NSN; lengths outside the plan land on row 0 (no type)."""
    # A correctly rounded quotient of integers < 10^13 never rounds up to the next integer: floor is exact.
    return ROW_BASE[length] + np.floor(nsn / PREFIX_DIVISOR[length]).astype(np.intp)


def _parse_chunk(cells: NDArray[Any]) -> tuple[Any, Any, Any, Any]:
    columns = np.ascontiguousarray(cells.T)
    non_ascii = (columns >= 128).any(axis=0)  # done again by the scalar path
    bad, plus, count, head, tail = _scan_chunk(columns)
    keys, problems, line_types, scalar_rows = _decide(bad, plus, count, head, tail)
    return keys, problems, line_types, scalar_rows | non_ascii


def _as_text_array(texts: Sequence[str] | Sequence[bytes]) -> tuple[NDArray[Any], list[int]] | None:
    """One ``np.array`` call over a list of texts, and the rows too long for it; None if not all texts.

    The longest length is measured first: it bounds the array (numpy sizes every row by the longest
    item, and one megabyte line must not make a million rows allocate a terabyte; texts longer than
    MAX_TEXT_CHARS are replaced by "" and redone by the caller with the scalar path) and, given as the
    ``S`` width, spares numpy its own discovery pass (measured 2.5x faster conversion).
    """
    try:
        longest = max(map(len, texts))
    except TypeError:  # an item without a length: None, a number ...
        return None
    too_long = []
    if longest > MAX_TEXT_CHARS:
        too_long = [row for row, text in enumerate(texts) if len(text) > MAX_TEXT_CHARS]
        shortened = list(texts)
        for row in too_long:
            shortened[row] = shortened[row][:0]
        texts = shortened  # type: ignore[assignment]
        longest = max(map(len, texts))
    array: NDArray[Any] | None
    try:
        array = np.array(texts, dtype=f"S{max(longest, 1)}")  # str items must be ASCII here
    except UnicodeEncodeError:
        array = _unicode_array(texts)
    except (ValueError, TypeError):
        return None
    if array is None or array.ndim != 1 or array.dtype.kind not in "SU":
        return None
    return array, too_long


def _unicode_array(texts: Sequence[str] | Sequence[bytes]) -> NDArray[Any] | None:
    try:
        return np.array(texts)
    except (ValueError, TypeError, UnicodeError):
        return None


def parse_numbers(texts: Sequence[str] | Sequence[bytes] | NDArray[Any]) -> ParsedBatch:
    """Normalise many written numbers at once; agrees exactly with `parse_number` item by item.

    Fastest input: a numpy ``S`` array (``np.array(list_of_bytes)``); a list of ``bytes`` or ``str`` is
    converted with one ``np.array`` call. Never raises for texts; a sequence holding other objects
    (None, ...) is parsed item by item (those items are NOT_TEXT).
    """
    count = len(texts)
    batch = ParsedBatch(
        np.zeros(count, dtype=np.uint64), np.zeros(count, dtype=np.uint8), np.zeros(count, dtype=np.uint8)
    )
    if count == 0:
        return batch
    if isinstance(texts, np.ndarray):
        if texts.ndim != 1 or texts.dtype.kind not in "SU":
            return _parse_one_by_one(texts.ravel(), batch)
        array = np.ascontiguousarray(texts)
        too_long: list[int] = []
    else:
        converted = _as_text_array(texts)
        if converted is None:
            return _parse_one_by_one(texts, batch)
        array, too_long = converted
    scalar_rows = _parse_array(array, batch)
    scalar_rows[too_long] = True
    for row in np.flatnonzero(scalar_rows).tolist():
        item = texts[row]
        store_parsed(batch, row, parse_number(item.item() if isinstance(item, np.generic) else item))
    return batch


def _parse_one_by_one(texts: Sequence[Any] | NDArray[Any], batch: ParsedBatch) -> ParsedBatch:
    for row in range(len(texts)):
        item = texts[row]
        store_parsed(batch, row, parse_number(item.item() if isinstance(item, np.generic) else item))
    return batch


def _parse_array(array: NDArray[Any], batch: ParsedBatch) -> NDArray[np.bool_]:
    """The vector path over a 1-D ``S``/``U`` array; returns the rows the scalar path must redo."""
    count = len(array)
    keys, problems, line_types = batch.keys, batch.problems, batch.line_types
    scalar_rows = np.zeros(count, dtype=np.bool_)
    if array.dtype.kind == "U":
        width = array.dtype.itemsize // 4
        if width > MAX_TEXT_CHARS:
            scalar_rows |= np.char.str_len(array) > MAX_TEXT_CHARS
            width = MAX_TEXT_CHARS
        # UCS-4 -> bytes: any non-ASCII code point becomes a byte >= 128, which sends its row to the
        # scalar path (the ASCII rows are then byte for byte what an S array would hold).
        wide = array.view(np.uint32).reshape(count, -1)[:, :width]
        cells = np.minimum(wide, 255).astype(np.uint8)
    else:
        width = array.dtype.itemsize
        cells = array.view(np.uint8).reshape(count, width)
        if width > MAX_TEXT_CHARS:
            scalar_rows |= np.char.str_len(array) > MAX_TEXT_CHARS
            cells = cells[:, :MAX_TEXT_CHARS]
    for first in range(0, count, CHUNK_ROWS):
        last = min(first + CHUNK_ROWS, count)
        chunk = _parse_chunk(cells[first:last])
        keys[first:last], problems[first:last], line_types[first:last] = chunk[:3]
        scalar_rows[first:last] |= chunk[3]
    return scalar_rows
