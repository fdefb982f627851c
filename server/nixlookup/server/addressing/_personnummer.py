"""Swedish personnummer and samordningsnummer -> the 12-digit key ``YYYYMMDDNNNC`` (an int < 2^40).

Theory of operation
-------------------
A personnummer is a birth date, a three-digit birth serial (födelsenummer, 001-999) and a Luhn check
digit over the last ten digits (Skatteverket, folkbokföringslagen 18 §). It is written

- with 12 digits ``YYYYMMDDNNNC``, optionally ``YYYYMMDD-NNNC`` (the separator is ignored: the century
  is explicit), or
- with 10 digits ``YYMMDDNNNC`` / ``YYMMDD-NNNC`` / ``YYMMDD+NNNC``. From the calendar year a person turns
  100 the separator is ``+``. So a 10-digit form names its century through the year of the reference
  date R (the day of the check, a parameter so that tests and reloads never read a clock): with ``-`` or
  no separator the birth year is the one year in ``R.year-99 .. R.year`` ending in ``YY``, with ``+`` the
  one in ``R.year-199 .. R.year-100``.

A samordningsnummer (coordination number, for people not registered in Sweden) is a personnummer whose
day is written plus 60 (61-91); its date rules are those of the real day, and its key keeps the day as
written, because that is the number.

The rules, in the order they are applied (the first failing one is the `Problem`):

1. surrounding whitespace is dropped; nothing left is ``EMPTY``;
2. only ASCII digits and at most one ``-``/``+`` may remain (``BAD_CHARACTER``, ``BAD_SEPARATOR``);
3. 10 or 12 digits (``BAD_LENGTH``), a separator only before the last four (``BAD_SEPARATOR``);
4. the century is 18, 19 or 20 (``OUT_OF_RANGE``; Skatteverket stores no other), the date is a real
   calendar date, leap years included, after taking 60 off a samordningsnummer's day (``BAD_DATE``), and
   not after the reference date (``FUTURE_DATE``);
5. the serial is not 000 (``SERIAL_ZERO``) and the check digit is right (``BAD_CHECK_DIGIT``).

Invalid input is an answer, never an exception: ``key == 0`` and a `Problem` whose `PROBLEM_TEXT` reason
never contains the number. Logs and errors mention a number only through
`nixlookup.v1.vocabulary.mask_number` (last two digits).

`parse_personnummer` decides one text; `parse_personnummer_many` decides a batch with numpy (no Python
per row except texts longer than `MAX_PERSONNUMMER_CHARS`, which the scalar path decides) and agrees with
it exactly (tests/test_addressing_personnummer.py). Where this differs from the `personnummer` and
`python-stdnum` packages is listed in docs/addresses.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import IntEnum
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "MAX_PERSONNUMMER_CHARS",
    "PERSONNUMMER_PROBLEM_TEXT",
    "ParsedPersonnummer",
    "PersonnummerBatch",
    "PersonnummerProblem",
    "parse_personnummer",
    "parse_personnummer_many",
]

# Texts longer than this (surrounding whitespace included) skip the vectorised path and are decided one by
# one, so a hostile long cell cannot blow up the fixed-width matrix of a whole batch.
MAX_PERSONNUMMER_CHARS: Final = 32
_FORM_CHARS: Final = 13  # the longest written form: YYYYMMDD-NNNC
_CHUNK_ROWS: Final = 1 << 16  # rows per vectorised step: the working matrices stay a few MiB
_CENTURIES: Final = (18, 19, 20)
_MIN_YEAR: Final = 1800
_SAMORDNING_DAY_OFFSET: Final = 60


class PersonnummerProblem(IntEnum):
    """Why a personnummer is invalid; ``OK`` (0) when it is valid. Values are the bulk path's uint8 codes."""

    OK = 0
    EMPTY = 1
    BAD_CHARACTER = 2
    BAD_SEPARATOR = 3
    BAD_LENGTH = 4
    OUT_OF_RANGE = 5
    BAD_DATE = 6
    FUTURE_DATE = 7
    SERIAL_ZERO = 8
    BAD_CHECK_DIGIT = 9


PERSONNUMMER_PROBLEM_TEXT: Final[Mapping[PersonnummerProblem, str]] = MappingProxyType(
    {
        PersonnummerProblem.OK: "valid personnummer",
        PersonnummerProblem.EMPTY: "no personnummer given",
        PersonnummerProblem.BAD_CHARACTER: "a personnummer holds only digits and one '-' or '+'",
        PersonnummerProblem.BAD_SEPARATOR: "one separator ('-' or '+'), only before the last four digits",
        PersonnummerProblem.BAD_LENGTH: "a personnummer has 10 or 12 digits",
        PersonnummerProblem.OUT_OF_RANGE: "the century must be 18, 19 or 20",
        PersonnummerProblem.BAD_DATE: "the birth date is not a calendar date (samordningsnummer: day + 60)",
        PersonnummerProblem.FUTURE_DATE: "the birth date is after the date of the check",
        PersonnummerProblem.SERIAL_ZERO: "the birth serial 000 is never issued",
        PersonnummerProblem.BAD_CHECK_DIGIT: "the check digit (Luhn, last ten digits) is wrong",
    }
)
"""One human reason per problem; never contains the number."""


@dataclass(frozen=True, slots=True)
class ParsedPersonnummer:
    """One decided text: `key` is ``YYYYMMDDNNNC`` as an int, 0 when `problem` is not ``OK``."""

    key: int
    problem: PersonnummerProblem

    @property
    def valid(self) -> bool:
        return self.problem is PersonnummerProblem.OK

    @property
    def reason(self) -> str:
        return PERSONNUMMER_PROBLEM_TEXT[self.problem]


@dataclass(frozen=True, slots=True)
class PersonnummerBatch:
    """A decided batch, in input order: `keys` 0 where `problems` (PersonnummerProblem codes) is not 0."""

    keys: NDArray[np.uint64]
    problems: NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.keys)


_INVALID: Final = {problem: ParsedPersonnummer(0, problem) for problem in PersonnummerProblem}
_ASCII_DIGITS: Final = frozenset("0123456789")
_SEPARATORS: Final = frozenset("-+")
_DAYS_IN_MONTH: Final = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _is_calendar_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= day <= (29 if month == 2 and leap else _DAYS_IN_MONTH[month])


def _luhn_ok(ten_digits: str) -> bool:
    total = 0
    for position, char in enumerate(ten_digits):
        product = int(char) * (2 - position % 2)  # weights 2, 1, 2, 1, ... from the left
        total += product - 9 if product > 9 else product
    return total % 10 == 0


def parse_personnummer(text: str, *, reference_date: date) -> ParsedPersonnummer:
    """Decide one written personnummer against `reference_date` (the day of the check); never raises."""
    shaped = _twelve_digits(text.strip(), reference_date.year)
    if isinstance(shaped, PersonnummerProblem):
        return _INVALID[shaped]
    problem = _date_and_check_problem(shaped, reference_date)
    return (
        ParsedPersonnummer(int(shaped), problem) if problem is PersonnummerProblem.OK else _INVALID[problem]
    )


def _twelve_digits(stripped: str, reference_year: int) -> str | PersonnummerProblem:
    """Rules 1-3 and the century: the 12 digits ``YYYYMMDDNNNC`` of a stripped text, or its problem."""
    if not stripped:
        return PersonnummerProblem.EMPTY
    if any(char not in _ASCII_DIGITS and char not in _SEPARATORS for char in stripped):
        return PersonnummerProblem.BAD_CHARACTER
    separators = [char for char in stripped if char in _SEPARATORS]
    if len(separators) > 1:
        return PersonnummerProblem.BAD_SEPARATOR
    digits = stripped.replace("-", "").replace("+", "")
    if len(digits) not in (10, 12):
        return PersonnummerProblem.BAD_LENGTH
    separator = separators[0] if separators else ""
    if separator and stripped[-5] != separator:
        return PersonnummerProblem.BAD_SEPARATOR
    if len(digits) == 10:
        newest = reference_year - 100 if separator == "+" else reference_year
        digits = f"{(newest - (newest - int(digits[:2])) % 100) // 100}{digits}"
    return digits


def _date_and_check_problem(digits: str, reference: date) -> PersonnummerProblem:
    """Rules 4-5 over the 12 digits."""
    if int(digits[:2]) not in _CENTURIES:
        return PersonnummerProblem.OUT_OF_RANGE
    year, month, written_day = int(digits[:4]), int(digits[4:6]), int(digits[6:8])
    day = written_day - _SAMORDNING_DAY_OFFSET if written_day > _SAMORDNING_DAY_OFFSET else written_day
    if not _is_calendar_date(year, month, day):
        return PersonnummerProblem.BAD_DATE
    if (year, month, day) > (reference.year, reference.month, reference.day):
        return PersonnummerProblem.FUTURE_DATE
    if digits[8:11] == "000":
        return PersonnummerProblem.SERIAL_ZERO
    if not _luhn_ok(digits[2:]):
        return PersonnummerProblem.BAD_CHECK_DIGIT
    return PersonnummerProblem.OK


# --- the vectorised path --------------------------------------------------------------------------------
#
# Per chunk: the stripped texts as a (rows, 13) uint8 matrix (code points above 255 become 255, which is
# no digit or separator); a class per character; then the four well-formed layouts (10 / 12 digits, with
# or without a separator) copied by fixed column lists into one (rows, 12) digit matrix, short forms
# getting their century; every later rule is a handful of operations on whole columns.

_CLASS_OTHER, _CLASS_DIGIT, _CLASS_SEPARATOR = 0, 1, 2
_CHAR_CLASS: Final = np.zeros(256, dtype=np.uint8)
_CHAR_CLASS[ord("0") : ord("9") + 1] = _CLASS_DIGIT
_CHAR_CLASS[[ord("-"), ord("+")]] = _CLASS_SEPARATOR
# (text length, column of the separator or -1, columns holding the digits in order)
_LAYOUTS: Final = (
    (10, -1, tuple(range(10))),
    (11, 6, (*range(6), *range(7, 11))),
    (12, -1, tuple(range(12))),
    (13, 8, (*range(8), *range(9, 13))),
)
_LUHN_DOUBLED: Final = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int32)  # digit sum of 2*d
_DAYS_TABLE: Final = np.array(_DAYS_IN_MONTH, dtype=np.int32)


def parse_personnummer_many(texts: Sequence[str], *, reference_date: date) -> PersonnummerBatch:
    """Decide a batch of written personnummer; the same answers as `parse_personnummer`, row for row."""
    count = len(texts)
    keys = np.zeros(count, dtype=np.uint64)
    problems = np.zeros(count, dtype=np.uint8)
    for start in range(0, count, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, count)
        _parse_chunk(texts[start:stop], reference_date, keys[start:stop], problems[start:stop])
    return PersonnummerBatch(keys, problems)


def _parse_chunk(
    texts: Sequence[str], reference: date, keys: NDArray[np.uint64], problems: NDArray[np.uint8]
) -> None:
    count = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    long_text = lengths > MAX_PERSONNUMMER_CHARS
    rows = np.array(texts if not long_text.any() else _short_rows(texts), dtype=f"<U{MAX_PERSONNUMMER_CHARS}")
    stripped = np.strings.strip(rows)
    length = np.strings.str_len(stripped)
    # numpy treats NUL as padding (it drops trailing ones, and stripping can make an inner one trailing),
    # so rows holding a NUL go to the scalar path, as do rows longer than the longest written form (their
    # problem depends on characters the matrix cuts off).
    nonzero = np.count_nonzero(rows.view(np.uint32).reshape(count, MAX_PERSONNUMMER_CHARS), axis=1)
    scalar_rows = np.flatnonzero(long_text | (nonzero != lengths) | (length > _FORM_CHARS))
    code_points = stripped.astype(f"<U{_FORM_CHARS}").view(np.uint32).reshape(count, _FORM_CHARS)
    chars = np.minimum(code_points, 255).astype(np.uint8)
    problem = np.zeros(count, dtype=np.uint8)
    digits, plus = _twelve_digits_many(chars, length, problem)
    key = _date_and_check_many(digits, length <= 11, plus, reference, problem)
    keys[:] = np.where(problem == 0, key, np.uint64(0))
    problems[:] = problem
    for row in scalar_rows.tolist():
        parsed = parse_personnummer(texts[row], reference_date=reference)
        keys[row] = parsed.key
        problems[row] = parsed.problem


def _twelve_digits_many(
    chars: NDArray[np.uint8], length: NDArray[np.int64], problem: NDArray[np.uint8]
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Rules 1-3 (into `problem`); the written digits right-aligned in 12 columns, and where ``+`` was."""
    count = len(chars)
    classes = _CHAR_CLASS[chars]
    classes[np.arange(_FORM_CHARS)[None, :] >= length[:, None]] = _CLASS_DIGIT  # padding is harmless
    separator_count = (classes == _CLASS_SEPARATOR).sum(axis=1)
    _first(problem, length == 0, PersonnummerProblem.EMPTY)
    _first(problem, (classes == _CLASS_OTHER).any(axis=1), PersonnummerProblem.BAD_CHARACTER)
    _first(problem, separator_count > 1, PersonnummerProblem.BAD_SEPARATOR)
    digit_count = length - separator_count
    _first(problem, (digit_count != 10) & (digit_count != 12), PersonnummerProblem.BAD_LENGTH)
    # What is left has 10 or 12 digits and at most one separator, so its length picks its layout.
    digits = np.zeros((count, 12), dtype=np.int32)
    plus = np.zeros(count, dtype=np.bool_)
    for text_length, separator_column, columns in _LAYOUTS:
        layout = (problem == 0) & (length == text_length)
        if separator_column >= 0:
            misplaced = layout & (classes[:, separator_column] != _CLASS_SEPARATOR)
            _first(problem, misplaced, PersonnummerProblem.BAD_SEPARATOR)
            layout &= ~misplaced
            plus[layout] = chars[layout, separator_column] == ord("+")
        selected = np.flatnonzero(layout)
        digits[selected, 12 - len(columns) :] = chars[selected[:, None], np.array(columns)[None, :]] - ord(
            "0"
        )
    return digits, plus


def _date_and_check_many(
    digits: NDArray[np.int32],
    short: NDArray[np.bool_],
    plus: NDArray[np.bool_],
    reference: date,
    problem: NDArray[np.uint8],
) -> NDArray[np.uint64]:
    """The century of short forms, rules 4-5 (into `problem`); the 12-digit keys (garbage where invalid)."""
    two_digit_year = digits[:, 2] * 10 + digits[:, 3]
    newest = np.where(plus, reference.year - 100, reference.year)
    century = np.where(
        short, (newest - (newest - two_digit_year) % 100) // 100, digits[:, 0] * 10 + digits[:, 1]
    )
    year = century * 100 + two_digit_year
    month = digits[:, 4] * 10 + digits[:, 5]
    written_day = digits[:, 6] * 10 + digits[:, 7]
    day = np.where(written_day > _SAMORDNING_DAY_OFFSET, written_day - _SAMORDNING_DAY_OFFSET, written_day)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _DAYS_TABLE[np.where(month_ok, month, 0)] + (leap & (month == 2))
    _first(problem, (century < _CENTURIES[0]) | (century > _CENTURIES[-1]), PersonnummerProblem.OUT_OF_RANGE)
    _first(problem, ~month_ok | (day < 1) | (day > days_in_month), PersonnummerProblem.BAD_DATE)
    reference_number = reference.year * 10_000 + reference.month * 100 + reference.day
    _first(problem, year * 10_000 + month * 100 + day > reference_number, PersonnummerProblem.FUTURE_DATE)
    serial = digits[:, 8] * 100 + digits[:, 9] * 10 + digits[:, 10]
    _first(problem, serial == 0, PersonnummerProblem.SERIAL_ZERO)
    luhn = _LUHN_DOUBLED[digits[:, 2:12:2]].sum(axis=1) + digits[:, 3:12:2].sum(axis=1)
    _first(problem, luhn % 10 != 0, PersonnummerProblem.BAD_CHECK_DIGIT)
    # YYYYMMDD and NNNC as two exact int halves, joined in uint64
    date_part = (year * 10_000 + month * 100 + written_day).astype(np.uint64)
    key: NDArray[np.uint64] = date_part * np.uint64(10_000) + (serial * 10 + digits[:, 11]).astype(np.uint64)
    return key


def _short_rows(texts: Sequence[str]) -> list[str]:
    return [text if len(text) <= MAX_PERSONNUMMER_CHARS else "" for text in texts]


def _first(problem: NDArray[np.uint8], failed: NDArray[np.bool_], code: PersonnummerProblem) -> None:
    """Record `code` where `failed` and no earlier rule failed: the scalar path's order of checks."""
    problem[(problem == 0) & failed] = code
