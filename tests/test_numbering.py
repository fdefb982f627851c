"""The number normaliser, case by case: every written form, every problem, keys, masking, batch shapes.

The property tests against libphonenumber live in ``test_numbering_oracle.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nixlookup.server.numbering import (
    PROBLEM_TEXT,
    LineType,
    ParsedBatch,
    ParsedNumber,
    Problem,
    classify_key,
    classify_keys,
    mask_number,
    parse_number,
    parse_numbers,
)

MOBILE = 46701234567
STOCKHOLM = 46812345678

SAME_MOBILE = [
    "070-123 45 67",
    "070 123 45 67",
    "0701234567",
    "070.123.45.67",
    "070/123 45 67",
    "(070) 123 45 67",
    "+46 70 123 45 67",
    "+46 (0)70-123 45 67",
    "+46701234567",
    "+46 0701234567",
    "0046701234567",
    "0046 70 123 45 67",
    "0046 (0) 70 123 45 67",
    "+0046 70 123 45 67",
    "46701234567",
    "46 70 123 45 67",
    "460701234567",
    "4600701234567",
    "  070-123 45 67\r\n",
    "\t+46-70-123-45-67 ",
    "070\u00a0123\u00a045\u00a067",
    "070\u2013123 45 67",
    "++46 70 123 45 67",
    "0701234567\x00\x00",
]

SAME_STOCKHOLM = ["08-123 456 78", "08 123 456 78", "0812345678", "+46 8 123 456 78", "+46 (0)8-123 456 78",
                  "0046812345678", "46812345678", "08.123.456.78"]  # fmt: skip


@pytest.mark.parametrize("text", SAME_MOBILE)
def test_every_mobile_form_gives_one_key(text: str) -> None:
    """Each common way to write 070-123 45 67 normalises to 46701234567, mobile."""
    assert parse_number(text) == ParsedNumber(MOBILE, Problem.OK, LineType.MOBILE)


@pytest.mark.parametrize("text", SAME_STOCKHOLM)
def test_every_fixed_form_gives_one_key(text: str) -> None:
    """Each common way to write 08-123 456 78 normalises to 46812345678, fixed line."""
    assert parse_number(text) == ParsedNumber(STOCKHOLM, Problem.OK, LineType.FIXED)


@pytest.mark.parametrize(
    ("text", "key", "line_type"),
    [
        ("031-123 45 67", 46311234567, LineType.FIXED),  # Göteborg, 2-digit area code
        ("0910-123 45", 4691012345, LineType.FIXED),  # Skellefteå, 3-digit area code
        ("0980-123 45", 4698012345, LineType.FIXED),  # Kiruna
        ("0920-12 34 56", 46920123456, LineType.FIXED),  # Luleå, 6-digit subscriber number
        ("08-123 456", 468123456, LineType.FIXED),  # Stockholm, short subscriber number
        ("076-123 45 67", 46761234567, LineType.MOBILE),
        ("073-123 45 67", 46731234567, LineType.MOBILE),
        ("020-12 34 56", 4620123456, LineType.OTHER),  # toll free
        ("0900-123 45 67", 469001234567, LineType.OTHER),  # premium rate
        ("077-123 45 67", 46771234567, LineType.OTHER),  # shared cost
        ("075-123 45 67", 46751234567, LineType.OTHER),  # personal number
        ("074-012 34 56", 46740123456, LineType.OTHER),  # pager
        ("010-234 56 78", 46102345678, LineType.OTHER),  # UAN
        ("+1 650-253-0000", 16502530000, LineType.OTHER),  # foreign: valid per its own plan
        ("0044 20 7946 0958", 442079460958, LineType.OTHER),
        ("+47 22 12 34 56", 4722123456, LineType.OTHER),
    ],
)
def test_line_types_and_keys(text: str, key: int, line_type: LineType) -> None:
    """Fixed lines behind 2-4 digit area codes, mobile ranges, other Swedish types and foreign numbers."""
    assert parse_number(text) == ParsedNumber(key, Problem.OK, line_type)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", Problem.EMPTY),
        ("   ", Problem.EMPTY),
        ("+", Problem.EMPTY),
        ("( - )", Problem.EMPTY),
        ("070-ABC 45 67", Problem.BAD_CHARACTER),
        ("070-123 45 67 ext 12", Problem.BAD_CHARACTER),
        ("070+1234567", Problem.BAD_CHARACTER),
        ("070_123_45_67", Problem.BAD_CHARACTER),
        ("07\x0001234567", Problem.BAD_CHARACTER),
        ("０７０１２３４５６７", Problem.BAD_CHARACTER),  # full-width digits
        ("7", Problem.TOO_SHORT),
        ("00", Problem.TOO_SHORT),
        ("+46", Problem.TOO_SHORT),
        ("+46 70", Problem.TOO_SHORT),
        ("070-123", Problem.TOO_SHORT),  # the reason looks past the national prefix it could not drop
        ("070-123 45 67 89 01", Problem.TOO_LONG),
        ("9" * 30, Problem.TOO_LONG),
        ("0" * 65, Problem.TOO_LONG),  # longer than any written number we accept
        ("070-12 34 56", Problem.NOT_IN_PLAN),  # mobile ranges have 9-digit NSNs
        ("071-123 45 67", Problem.NOT_IN_PLAN),  # 071 is not allocated
        ("0046 0070 1234567", Problem.NOT_IN_PLAN),  # two national prefixes
        ("070-123 45 678", Problem.NOT_IN_PLAN),  # 11-digit NSNs do not exist
        ("+999 123 456", Problem.UNKNOWN_COUNTRY_CODE),
        ("+0 70 123 45 67", Problem.UNKNOWN_COUNTRY_CODE),
        ("+1 650 253 000", Problem.FOREIGN_NOT_IN_PLAN),
    ],
)
def test_each_problem(text: str, problem: Problem) -> None:
    """Invalid input yields key 0, no line type and the expected problem, from both entry points."""
    assert parse_number(text) == ParsedNumber(0, problem, LineType.UNSPECIFIED)
    assert parse_numbers([text])[0] == ParsedNumber(0, problem, LineType.UNSPECIFIED)


def test_non_text_is_an_answer_not_an_exception() -> None:
    """None, numbers and other objects are NOT_TEXT, alone and inside a batch."""
    not_text = ParsedNumber(0, Problem.NOT_TEXT, LineType.UNSPECIFIED)
    assert parse_number(None) == not_text
    assert parse_number(46701234567) == not_text
    batch = parse_numbers(["0701234567", None, 3.5])  # type: ignore[list-item]
    assert [batch[i] for i in range(3)] == [parse_number("0701234567"), not_text, not_text]


def test_bytes_are_read_as_utf8() -> None:
    """Bytes parse like their UTF-8 text; undecodable bytes are a bad character."""
    assert parse_number(b"070-123 45 67").key == MOBILE
    assert parse_number("070\u00a0123 45 67".encode()).key == MOBILE
    assert parse_number(b"070\xff1234567").problem is Problem.BAD_CHARACTER


def test_every_problem_has_a_reason_without_a_number() -> None:
    """Each problem has a human-readable reason, and no reason holds a run of more than two digits."""
    assert set(PROBLEM_TEXT) == set(Problem)
    for reason in PROBLEM_TEXT.values():
        assert reason
        assert not re.search(r"\d{3}", reason.replace("E.164", ""))


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("070-123 45 67", "********67"),
        (46701234567, "*********67"),
        ("+46 70 123 45 67", "*********67"),
        ("7", "7"),
        ("", "?"),
        (b"0701234567", "********67"),
        (None, "?"),
        ("ett två tre", "?"),
    ],
)
def test_mask_number(value: object, masked: str) -> None:
    """All but the last two digits become '*', everything else is dropped; no digits at all is '?'."""
    assert mask_number(value) == masked


def test_mask_number_never_raises() -> None:
    """An object whose str() fails still masks (to '?')."""

    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert mask_number(Hostile()) == "?"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (MOBILE, ParsedNumber(MOBILE, Problem.OK, LineType.MOBILE)),
        (STOCKHOLM, ParsedNumber(STOCKHOLM, Problem.OK, LineType.FIXED)),
        (16502530000, ParsedNumber(16502530000, Problem.OK, LineType.OTHER)),
        (0, ParsedNumber(0, Problem.EMPTY, LineType.UNSPECIFIED)),
        (4670123456, ParsedNumber(0, Problem.NOT_IN_PLAN, LineType.UNSPECIFIED)),
        (460701234567, ParsedNumber(0, Problem.NOT_IN_PLAN, LineType.UNSPECIFIED)),  # national 0 in a key
        (4670, ParsedNumber(0, Problem.TOO_SHORT, LineType.UNSPECIFIED)),
        (4670123456789012, ParsedNumber(0, Problem.TOO_LONG, LineType.UNSPECIFIED)),
        (9991234567, ParsedNumber(0, Problem.UNKNOWN_COUNTRY_CODE, LineType.UNSPECIFIED)),
        (1650253000, ParsedNumber(0, Problem.FOREIGN_NOT_IN_PLAN, LineType.UNSPECIFIED)),
        (2**64 - 1, ParsedNumber(0, Problem.TOO_LONG, LineType.UNSPECIFIED)),
        (-1, ParsedNumber(0, Problem.OUT_OF_RANGE, LineType.UNSPECIFIED)),
        (2**64, ParsedNumber(0, Problem.OUT_OF_RANGE, LineType.UNSPECIFIED)),
    ],
)
def test_classify_key(key: int, expected: ParsedNumber) -> None:
    """Keys are valid only as canonical E.164 numbers; out-of-range integers are an answer, not a crash."""
    assert classify_key(key) == expected
    if 0 <= key < 2**64:
        assert classify_keys(np.array([key], dtype=np.uint64))[0] == expected


def test_classify_keys_signed_input() -> None:
    """Signed arrays work too; negative values are OUT_OF_RANGE like in classify_key."""
    batch = classify_keys(np.array([MOBILE, -5, 0], dtype=np.int64))
    assert [batch[i] for i in range(3)] == [classify_key(MOBILE), classify_key(-5), classify_key(0)]


def _rows(batch: ParsedBatch) -> list[ParsedNumber]:
    return [batch[i] for i in range(len(batch))]


def test_batch_input_shapes_agree() -> None:
    """list[str], list[bytes], numpy S and U arrays and an empty batch all give the scalar results."""
    texts = [*SAME_MOBILE, *SAME_STOCKHOLM, "", "+1 650 253 0000", "abc", "0" * 70, "07012345678901234567"]
    expected = [parse_number(text) for text in texts]
    encoded = [text.encode() for text in texts]
    assert _rows(parse_numbers(texts)) == expected
    assert _rows(parse_numbers(encoded)) == expected
    assert _rows(parse_numbers(np.array(encoded))) == expected
    assert _rows(parse_numbers(np.array(texts))) == expected
    empty = parse_numbers([])
    assert len(empty) == 0
    assert empty.keys.dtype == np.uint64


def test_batch_arrays_have_the_documented_dtypes() -> None:
    """Keys are uint64, problems and line types uint8, all index-aligned with the input."""
    batch = parse_numbers([b"0701234567", b"x", b"08-123 456 78"])
    assert (batch.keys.dtype, batch.problems.dtype, batch.line_types.dtype) == (np.uint64, np.uint8, np.uint8)
    assert batch.keys.tolist() == [MOBILE, 0, STOCKHOLM]
    assert batch.valid.tolist() == [True, False, True]
    assert batch.line_types.tolist() == [LineType.MOBILE, LineType.UNSPECIFIED, LineType.FIXED]


def test_large_plain_batch_matches_scalar() -> None:
    """Tens of thousands of plain-digit lines (several chunks) agree with the scalar path row by row."""
    rng = np.random.default_rng(7)
    subscribers = rng.integers(0, 10**8, size=70_000)
    forms = [b"07%08d", b"467%08d", b"+467%08d", b"08%08d", b"0%09d"]
    lines = [forms[i % len(forms)] % number for i, number in enumerate(subscribers.tolist())]
    batch = parse_numbers(lines)
    sample = rng.integers(0, len(lines), size=3_000).tolist()
    assert [batch[i] for i in sample] == [parse_number(lines[i]) for i in sample]
    assert batch.valid.mean() > 0.5


def test_one_huge_text_does_not_blow_up_a_batch() -> None:
    """A megabyte-long item is one TOO_LONG row; the other rows are parsed normally."""
    texts = ["0701234567"] * 1_000 + ["7" * 1_000_000]
    batch = parse_numbers(texts)
    assert batch[len(texts) - 1] == ParsedNumber(0, Problem.TOO_LONG, LineType.UNSPECIFIED)
    assert batch.valid[:-1].all()
    assert parse_numbers([text.encode() for text in texts])[len(texts) - 1].problem is Problem.TOO_LONG


def test_items_without_a_length_are_not_text() -> None:
    """Numbers mixed into a list of texts are NOT_TEXT rows, exactly as parse_number says."""
    batch = parse_numbers(["0701234567", 46701234567])  # type: ignore[list-item]
    assert [batch[0], batch[1]] == [parse_number("0701234567"), parse_number(46701234567)]


def test_vectorised_path_has_no_per_number_python() -> None:
    """parse_numbers on plain lines costs far less per number than the scalar loop (ratio, same process)."""
    lines = [b"07%08d" % number for number in range(200_000)]
    array = np.array(lines)
    few = [line.decode() for line in lines[:4_000]]

    def best_ns_per_number(action: Callable[[], object], count: int) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            action()
            timings.append(time.perf_counter() - started)
        return min(timings) / count * 1e9

    vector_ns = best_ns_per_number(lambda: parse_numbers(array), len(lines))
    scalar_ns = best_ns_per_number(lambda: [parse_number(text) for text in few], len(few))
    assert vector_ns * 10 < scalar_ns, (vector_ns, scalar_ns)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60) | st.integers())
def test_mask_number_shows_at_most_two_digits(value: str | int) -> None:
    """Whatever it is given, a masked value shows at most the last two digits."""
    masked = mask_number(value)
    assert sum(char.isdigit() for char in masked) <= 2


def test_large_mixed_batch_matches_scalar() -> None:
    """Several chunks of mixed forms (separators, foreign, junk, non-ASCII) agree with the scalar path."""
    rng = np.random.default_rng(11)
    forms = ["070-%03d %02d %02d", "+46 8 %03d %02d %02d", "0046 (0)73 %03d %02d %02d", "x%03d%02d%02d",
             "+1 650 %03d %02d%02d", "07\u00a0%03d %02d %02d", "46 (0) 31-%03d %02d %02d"]  # fmt: skip
    numbers = rng.integers(0, 10**7, size=70_000).tolist()
    texts = [forms[i % len(forms)] % (n // 10_000, n // 100 % 100, n % 100) for i, n in enumerate(numbers)]
    batch = parse_numbers(texts)
    sample = rng.integers(0, len(texts), size=3_000).tolist()
    assert [batch[i] for i in sample] == [parse_number(texts[i]) for i in sample]
    assert 0.3 < batch.valid.mean() < 0.9
