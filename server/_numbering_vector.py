"""The vectorised normaliser: the rules of `_numbering_scalar`, over numpy arrays of texts or keys.

Theory of operation
-------------------
Texts become a fixed-width character matrix (numpy ``S``/``U`` arrays, zero-padded on the right), cut
into chunks of `CHUNK_ROWS` rows and transposed so that each character position is one contiguous
vector: every step below is then a handful of whole-vector operations per character position, with no
per-number Python.

Per chunk:

1. Character classes by table lookup (digit, separator, ``+``, other); a row is bad if it holds another
   character, an embedded NUL, or a ``+`` after its first digit. Chunks of plain digits skip this.
2. Running digit counts give, per row, the digit count, the first five digits (``head``) and the value of
   the last 14 digits (``tail``, exact in float64: 10^14 < 2^53). These are all the rules need: every
   prefix decision looks at the first five digits, and the NSN is always a suffix of at most 12 digits.
3. The decisions of the scalar path, as masks: international prefix, country code, bare ``46``, national
   prefix; then the NSN length and its first digits index the plan tables.

Rows the fast path does not decide go to the scalar path one by one, so both agree by construction for
them: non-ASCII characters, texts longer than `MAX_TEXT_CHARS`, and foreign (non-+46) numbers. Those are
rare in Swedish registers and call lists.

Keys (`classify_keys`) need no text work: ``floor(log10(key))`` gives the digit count (exact for keys in
the ``46...`` ranges, which sit far from powers of ten), exact uint64 comparisons pick the Swedish ranges,
and the NSN's first digits index the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server._numbering_codes import (
    LINE_TYPE_OF_CODE,
    MAX_TEXT_CHARS,
    SWEDISH_LENGTH_PROBLEM,
    ParsedBatch,
    ParsedNumber,
    Problem,
)
from nixlookup.server._numbering_plan import (
    COUNTRY_CODE_LENGTH,
    GENERAL_MATCH,
    MAX_NSN_DIGITS,
    MAX_PLAN_LENGTH,
    MIN_NSN_DIGITS,
    NO_TYPE,
    PREFIX_DIGITS,
    PREFIX_SPAN,
    STRIP_LENGTH_OK,
    SWEDISH_COUNTRY_CODE,
    TABLE_LENGTHS,
    TYPE_CODE,
)
from nixlookup.server._numbering_scalar import ASCII_SEPARATORS, classify_key, parse_number

__all__ = ["CHUNK_ROWS", "classify_keys", "parse_numbers"]

# Rows per chunk: the transposed chunk and its float64 working vectors (8 x 16K = 128 KiB each) stay in
# L2 cache; bigger chunks measured slower, smaller ones pay more per-call overhead.
CHUNK_ROWS: Final = 1 << 14
TAIL_DIGITS: Final = 14  # digits kept in the float64 tail value: exact below 2^53
HEAD_DIGITS: Final = 5  # digits the prefix rules look at: 00 + country code 46 + national prefix 0

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
_TYPE_CODE_FLAT: Final = TYPE_CODE.ravel()
_GENERAL_MATCH_FLAT: Final = GENERAL_MATCH.ravel()
_POW10_FLOAT: Final = 10.0 ** np.arange(-PREFIX_DIGITS - TABLE_LENGTHS, TABLE_LENGTHS + PREFIX_DIGITS + 1)
_POW10_OFFSET: Final = PREFIX_DIGITS + TABLE_LENGTHS  # _POW10_FLOAT[_POW10_OFFSET + k] == 10.0**k
_HEAD_SCALE: Final = np.array([10 ** (HEAD_DIGITS - count) for count in range(HEAD_DIGITS + 1)], np.int32)


def _pow10(exponents: NDArray[np.int64]) -> NDArray[np.float64]:
    return _POW10_FLOAT[exponents + _POW10_OFFSET]


def _nsn_prefix(nsn: NDArray[np.float64], length: NDArray[np.int64]) -> NDArray[np.int64]:
    """The first PREFIX_DIGITS digits of an NSN, right-padded with zeros (exact for NSNs below 10^13)."""
    # Divide (never multiply by a reciprocal): a correctly rounded quotient of integers < 10^13 cannot
    # round up to the next integer, so floor() is exact.
    shift = length - PREFIX_DIGITS
    widened = nsn * _pow10(np.maximum(-shift, 0))
    return np.floor(widened / _pow10(np.maximum(shift, 0))).astype(np.int64)


def _table_index(length: NDArray[np.int64], nsn: NDArray[np.float64]) -> NDArray[np.int64]:
    """Flat index into the plan tables; lengths beyond the table or the exact range map to row 0."""
    usable = (length >= 0) & (length <= MAX_PLAN_LENGTH)
    clipped = np.where(usable, length, 0)
    return np.where(usable, clipped * PREFIX_SPAN + _nsn_prefix(np.where(usable, nsn, 0.0), clipped), 0)


def _suffix_value(tail: NDArray[np.float64], length: NDArray[np.int64]) -> NDArray[np.float64]:
    """The last ``length`` digits of the tail value (``length`` <= 13), exactly."""
    modulus = _pow10(np.clip(length, 0, TAIL_DIGITS - 1))
    return tail - np.floor(tail / modulus) * modulus


def _head_digit(head: NDArray[np.int32], position: int) -> NDArray[np.int32]:
    return (head // 10 ** (HEAD_DIGITS - 1 - position)) % 10  # type: ignore[no-any-return]


class _ChunkResult:
    __slots__ = ("keys", "line_types", "problems", "scalar_rows")

    def __init__(self, rows: int) -> None:
        self.keys = np.zeros(rows, dtype=np.uint64)
        self.problems = np.zeros(rows, dtype=np.uint8)
        self.line_types = np.zeros(rows, dtype=np.uint8)
        self.scalar_rows = np.zeros(rows, dtype=np.bool_)


def _scan_characters(
    columns: NDArray[np.uint8],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]:
    """Step 1: per row, (bad, has_plus, is_digit matrix) from the transposed character matrix."""
    is_digit = (columns - np.uint8(ord("0"))) < 10
    rows = columns.shape[1]
    non_digit = ~is_digit & (columns != 0)
    if not non_digit.any():
        # Plain digits: only an embedded NUL (a pad followed by a digit) can be wrong.
        embedded = (np.logical_or.accumulate(columns == 0, axis=0) & is_digit).any(axis=0)
        return embedded, np.zeros(rows, dtype=np.bool_), is_digit
    classes = _CHARACTER_CLASS[columns]
    is_plus = classes == _CLASS_PLUS
    digits_before = np.cumsum(is_digit, axis=0, dtype=np.uint8) - is_digit
    bad = (classes == _CLASS_OTHER).any(axis=0)
    bad |= (is_plus & (digits_before > 0)).any(axis=0)
    bad |= (np.logical_or.accumulate(classes == _CLASS_PAD, axis=0) & (classes != _CLASS_PAD)).any(axis=0)
    return bad, is_plus.any(axis=0), is_digit


def _digit_values(
    columns: NDArray[np.uint8], is_digit: NDArray[np.bool_]
) -> tuple[NDArray[np.int64], NDArray[np.int32], NDArray[np.float64]]:
    """Step 2: per row, the digit count, the first HEAD_DIGITS digits (right-padded) and the tail value."""
    width, rows = columns.shape
    digit_values = columns - np.uint8(ord("0"))
    digit_count = is_digit.sum(axis=0, dtype=np.int64)
    head = np.zeros(rows, dtype=np.int32)
    tail = np.zeros(rows, dtype=np.float64)
    seen = np.zeros(rows, dtype=np.int64)
    first_tail_digit = digit_count - TAIL_DIGITS
    for position in range(width):
        digit = is_digit[position]
        value = digit_values[position]
        if position < HEAD_DIGITS:
            in_head = digit  # fewer than HEAD_DIGITS digits can precede this position
        else:
            in_head = digit & (seen < HEAD_DIGITS)
        head = np.where(in_head, head * 10 + value, head)
        in_tail = digit if width <= TAIL_DIGITS else digit & (seen >= first_tail_digit)
        tail = np.where(in_tail, tail * 10.0 + value, tail)
        seen += digit
    head *= _HEAD_SCALE[np.minimum(digit_count, HEAD_DIGITS)]
    return digit_count, head, tail


def _decide(
    result: _ChunkResult,
    bad: NDArray[np.bool_],
    plus: NDArray[np.bool_],
    digit_count: NDArray[np.int64],
    head: NDArray[np.int32],
    tail: NDArray[np.float64],
) -> None:
    """Step 3: the scalar path's decisions as masks; fills ``result``."""
    d0, d1, d2, d3, d4 = (_head_digit(head, position) for position in range(HEAD_DIGITS))
    count = digit_count
    undecided = ~bad & (count > 0)

    # Step 2 of the rules: international prefix, country code.
    idd = (count >= 2) & (d0 == 0) & (d1 == 0) & ((count == 2) | (d2 != 0))
    international = undecided & (plus | idd)
    start = np.where(idd, 2, 0)
    too_short_international = international & (count - start <= MIN_NSN_DIGITS)
    code_digits = np.where(start == 0, d0 * 100 + d1 * 10 + d2, d2 * 100 + d3 * 10 + d4)
    code_length = COUNTRY_CODE_LENGTH[code_digits]
    unknown_code = (
        international & ~too_short_international & ((plus & (d0 == 0) & ~idd) | (code_length == 0))
    )
    international_ok = international & ~too_short_international & ~unknown_code
    is_swedish_code = (code_length == 2) & (code_digits // 10 == SWEDISH_COUNTRY_CODE)
    foreign = international_ok & ~is_swedish_code

    # Step 3: bare "46..." read as country code + national number?
    national = undecided & ~international
    bare = national & (count >= 2) & (d0 == 4) & (d1 == 6)
    rest_start = 2 + ((count > 2) & (d2 == 0))
    rest_length = count - rest_start
    whole_general = _GENERAL_MATCH_FLAT[_table_index(count, tail)]
    rest_general = _GENERAL_MATCH_FLAT[_table_index(rest_length, _suffix_value(tail, rest_length))]
    take_code = bare & ((count > MAX_PLAN_LENGTH) | (~whole_general & rest_general))

    # Step 4: national prefix, NSN.
    swedish = (international_ok & is_swedish_code) | national
    candidate_start = np.where(international, start + 2, np.where(take_code, rest_start, 0))
    # The candidate starts at index 0 (national), 2 (+46, bare 46), 3 (bare 460) or 4 (0046, +0046).
    candidate_first = np.select(
        [candidate_start == 0, candidate_start == 2, candidate_start == 3], [d0, d2, d3], default=d4
    )
    candidate_length = count - candidate_start
    strip = (
        (candidate_first == 0)
        & (candidate_length >= MIN_NSN_DIGITS)
        & STRIP_LENGTH_OK[np.clip(candidate_length - 1, 0, len(STRIP_LENGTH_OK) - 1)]
    )
    nsn_length = candidate_length - strip
    nsn = _suffix_value(tail, nsn_length)
    code = _TYPE_CODE_FLAT[_table_index(nsn_length, nsn)]
    valid = swedish & (code != NO_TYPE)

    problems = result.problems
    problems[bad] = Problem.BAD_CHARACTER
    problems[~bad & (count == 0)] = Problem.EMPTY
    problems[too_short_international] = Problem.TOO_SHORT
    problems[unknown_code] = Problem.UNKNOWN_COUNTRY_CODE
    invalid_swedish = swedish & ~valid
    problems[invalid_swedish] = SWEDISH_LENGTH_PROBLEM[np.clip(nsn_length[invalid_swedish], 0, 255)]
    result.scalar_rows |= foreign
    key = SWEDISH_COUNTRY_CODE * _pow10(np.clip(nsn_length, 0, MAX_NSN_DIGITS)) + nsn
    result.keys[valid] = key[valid].astype(np.uint64)
    result.line_types[valid] = LINE_TYPE_OF_CODE[code[valid]]


def _parse_chunk(cells: NDArray[Any]) -> _ChunkResult:
    rows = cells.shape[0]
    result = _ChunkResult(rows)
    columns_wide = np.ascontiguousarray(cells.T)
    if columns_wide.dtype != np.uint8:  # UCS-4: non-ASCII rows go to the scalar path
        result.scalar_rows |= (columns_wide >= 128).any(axis=0)
        columns = columns_wide.astype(np.uint8)
    else:
        columns = columns_wide
        result.scalar_rows |= (columns >= 128).any(axis=0)
    bad, plus, is_digit = _scan_characters(columns)
    digit_count, head, tail = _digit_values(columns, is_digit)
    _decide(result, bad, plus, digit_count, head, tail)
    return result


def _as_text_array(texts: Sequence[str] | Sequence[bytes] | NDArray[Any]) -> NDArray[Any] | None:
    """A 1-D ``S`` or ``U`` array of the texts, or None when they are not all texts."""
    if isinstance(texts, np.ndarray):
        array = texts
    else:
        try:
            array = np.array(texts)
        except (ValueError, TypeError):
            return None
    if array.ndim != 1 or array.dtype.kind not in "SU":
        return None
    return array


def parse_numbers(texts: Sequence[str] | Sequence[bytes] | NDArray[Any]) -> ParsedBatch:
    """Normalise many written numbers at once; agrees exactly with `parse_number` item by item.

    Fastest input: a numpy ``S`` array (``np.array(list_of_bytes)``); a list of ``bytes`` or ``str`` is
    converted with one ``np.array`` call. Never raises for texts; non-text items (None, ints in an object
    array) come back as NOT_TEXT.
    """
    count = len(texts)
    keys = np.zeros(count, dtype=np.uint64)
    problems = np.zeros(count, dtype=np.uint8)
    line_types = np.zeros(count, dtype=np.uint8)
    array = _as_text_array(texts) if count else None
    if array is None:
        for row in range(count):
            _store(parse_number(texts[row]), row, keys, problems, line_types)
        return ParsedBatch(keys, problems, line_types)

    character_size = 4 if array.dtype.kind == "U" else 1
    width = array.dtype.itemsize // character_size
    cells = array.view(np.uint32 if character_size == 4 else np.uint8).reshape(count, width)
    scalar_rows = np.zeros(count, dtype=np.bool_)
    if width > MAX_TEXT_CHARS:
        scalar_rows |= np.char.str_len(array) > MAX_TEXT_CHARS
        cells = cells[:, :MAX_TEXT_CHARS]
    for first in range(0, count, CHUNK_ROWS):
        last = min(first + CHUNK_ROWS, count)
        chunk = _parse_chunk(cells[first:last])
        keys[first:last] = chunk.keys
        problems[first:last] = chunk.problems
        line_types[first:last] = chunk.line_types
        scalar_rows[first:last] |= chunk.scalar_rows
    for row in np.flatnonzero(scalar_rows).tolist():
        _store(parse_number(array[row].item()), row, keys, problems, line_types)
    return ParsedBatch(keys, problems, line_types)


def _store(
    parsed: ParsedNumber,
    row: int,
    keys: NDArray[np.uint64],
    problems: NDArray[np.uint8],
    line_types: NDArray[np.uint8],
) -> None:
    keys[row] = parsed.key
    problems[row] = parsed.problem
    line_types[row] = parsed.line_type


# Keys: 46 * 10^L <= key < 47 * 10^L holds an NSN of L digits; indexed by floor(log10(key)) = L + 1.
# Ranges that do not fit in uint64 are empty (low == high).
def _swedish_key_range(exponent: int) -> tuple[int, int]:
    low, high = SWEDISH_COUNTRY_CODE * 10 ** max(exponent - 1, 0), (SWEDISH_COUNTRY_CODE + 1) * 10 ** max(
        exponent - 1, 0
    )
    return (low, high) if high < 2**64 else (0, 0)


_SWEDISH_LOW: Final = np.array([_swedish_key_range(exponent)[0] for exponent in range(20)], np.uint64)
_SWEDISH_HIGH: Final = np.array([_swedish_key_range(exponent)[1] for exponent in range(20)], np.uint64)


def classify_keys(keys: NDArray[np.uint64]) -> ParsedBatch:
    """Validate many E.164 keys at once; agrees exactly with `classify_key` item by item.

    Swedish keys are table lookups (a few ns each); foreign keys go through libphonenumber one by one.
    """
    values = np.asarray(keys)
    if values.dtype.kind == "i":
        negative = values < 0
        values = values.astype(np.uint64)
    elif values.dtype.kind == "u":
        negative = np.zeros(values.shape, dtype=np.bool_)
        values = values.astype(np.uint64, copy=False)
    else:
        return _classify_keys_one_by_one(values)
    values = values.ravel()
    negative = negative.ravel()
    exponent = np.floor(np.log10(np.maximum(values.astype(np.float64), 1.0))).astype(np.int64)
    exponent = np.minimum(exponent, 19)
    swedish = (values >= _SWEDISH_LOW[exponent]) & (values < _SWEDISH_HIGH[exponent]) & ~negative
    nsn_length = exponent - 1
    nsn = np.where(swedish, values - _SWEDISH_LOW[exponent], np.uint64(0)).astype(np.float64)
    code = _TYPE_CODE_FLAT[_table_index(nsn_length, nsn)]
    code = np.where(swedish, code, NO_TYPE)
    valid = swedish & (code != NO_TYPE)

    out_keys = np.where(valid, values, np.uint64(0))
    problems = np.where(valid, np.uint8(Problem.OK), SWEDISH_LENGTH_PROBLEM[np.clip(nsn_length, 0, 255)])
    problems = problems.astype(np.uint8)
    problems[values == 0] = Problem.EMPTY
    problems[negative] = Problem.OUT_OF_RANGE
    line_types = LINE_TYPE_OF_CODE[code]
    batch = ParsedBatch(out_keys, problems, line_types)
    for row in np.flatnonzero(~swedish & (values != 0) & ~negative).tolist():
        _store(classify_key(int(values[row])), row, batch.keys, batch.problems, batch.line_types)
    return batch


def _classify_keys_one_by_one(values: NDArray[Any]) -> ParsedBatch:
    flat = values.ravel()
    count = len(flat)
    batch = ParsedBatch(
        np.zeros(count, dtype=np.uint64), np.zeros(count, dtype=np.uint8), np.zeros(count, dtype=np.uint8)
    )
    for row in range(count):
        item = flat[row]
        parsed = classify_key(item.item() if isinstance(item, np.generic) else item)
        _store(parsed, row, batch.keys, batch.problems, batch.line_types)
    return batch

