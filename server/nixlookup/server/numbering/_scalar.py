"""The scalar normaliser: one text (or one key) at a time, in plain Python.

It is the executable statement of the rules; `_numbering_vector` implements the same rules over arrays
and the tests hold the two to exact agreement. The steps follow libphonenumber's ``parse(text, "SE")``:

1. Characters: digits, separators (whitespace, ``- . / ( )``, Unicode dashes and no-break spaces) and any
   number of ``+`` before the first digit. Anything else is BAD_CHARACTER; no digits is EMPTY.
2. International prefix: ``+``, ``00`` (unless a third ``0`` follows) or ``+00``. After it come the
   country code (prefix-free, 1-3 digits) and the national number. ``+46`` numbers continue at step 4;
   other countries are classified by libphonenumber itself (rare; cached).
3. Without one: a number starting ``46`` is read as country code + national number when libphonenumber
   would (the whole does not fit the Swedish general pattern but the rest does, or the whole is too long);
   otherwise it is a national number.
4. National prefix: one leading ``0`` is dropped when what remains has a length the plan allows (or is
   too long). What is left is the national significant number (NSN), looked up in the plan tables.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
import phonenumbers

from nixlookup.server.numbering._codes import (
    LINE_TYPE_OF_CODE,
    MAX_TEXT_CHARS,
    SWEDISH_LENGTH_PROBLEM,
    LineType,
    ParsedNumber,
    Problem,
)
from nixlookup.server.numbering._plan import (
    COUNTRY_CODE_LENGTH,
    GENERAL_MATCH,
    MAX_NSN_DIGITS,
    MAX_PLAN_LENGTH,
    MIN_NSN_DIGITS,
    NO_TYPE,
    PREFIX_DIGITS,
    STRIP_LENGTH_OK,
    SWEDISH_COUNTRY_CODE,
    TYPE_CODE,
)

__all__ = ["SEPARATORS", "classify_key", "classify_swedish_nsn", "parse_number"]

ASCII_SEPARATORS: Final = " \t\n\r\f\v-./()"
# Unicode separators people paste: no-break, figure, thin and narrow no-break spaces (Swedish digit
# grouping), hyphens and dashes, minus sign.
UNICODE_SEPARATORS: Final = "\u00a0\u2007\u2009\u202f\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
SEPARATORS: Final = ASCII_SEPARATORS + UNICODE_SEPARATORS
_DELETE_SEPARATORS: Final = str.maketrans("", "", SEPARATORS)
_UINT64_LIMIT: Final = 1 << 64
_SWEDISH_CODE_TEXT: Final = str(SWEDISH_COUNTRY_CODE)

# Plain-Python views of the plan tables: list indexing beats numpy scalar indexing ~10x.
_TYPE_CODE_ROWS: Final[list[bytes]] = [row.tobytes() for row in TYPE_CODE]
_GENERAL_MATCH_ROWS: Final[list[bytes]] = [row.tobytes() for row in GENERAL_MATCH.view(np.uint8)]
_STRIP_LENGTH_OK: Final[list[bool]] = [bool(ok) for ok in STRIP_LENGTH_OK]
_COUNTRY_CODE_LENGTH: Final[bytes] = COUNTRY_CODE_LENGTH.tobytes()
_LINE_TYPE_OF_CODE: Final[list[LineType]] = [LineType(int(line)) for line in LINE_TYPE_OF_CODE]
_LENGTH_PROBLEM: Final[list[Problem]] = [Problem(int(problem)) for problem in SWEDISH_LENGTH_PROBLEM]
_PREFIX_PAD: Final = "0" * PREFIX_DIGITS

_INVALID: Final = {problem: ParsedNumber(0, problem, LineType.UNSPECIFIED) for problem in Problem}


def _prefix(nsn: str) -> int:
    if len(nsn) >= PREFIX_DIGITS:
        return int(nsn[:PREFIX_DIGITS])
    return int((nsn + _PREFIX_PAD)[:PREFIX_DIGITS]) if nsn else 0


def _general_pattern_matches(nsn: str) -> bool:
    """libphonenumber's general-description pattern test (no length filter), by table."""
    return len(nsn) <= MAX_NSN_DIGITS and bool(_GENERAL_MATCH_ROWS[len(nsn)][_prefix(nsn)])


def classify_swedish_nsn(nsn: str) -> ParsedNumber:
    """Validate a Swedish national significant number (digits only, national prefix already removed)."""
    length = len(nsn)
    if length > MAX_NSN_DIGITS:
        return _INVALID[Problem.TOO_LONG]
    code = _TYPE_CODE_ROWS[length][_prefix(nsn)]
    if code == NO_TYPE:
        return _INVALID[_LENGTH_PROBLEM[length - nsn.startswith("0")]]
    return ParsedNumber(int(_SWEDISH_CODE_TEXT + nsn), Problem.OK, _LINE_TYPE_OF_CODE[code])


def _swedish_national(candidate: str) -> ParsedNumber:
    """Step 4: drop a national prefix 0 when libphonenumber would, then validate the NSN."""
    if len(candidate) < MIN_NSN_DIGITS:
        return _INVALID[Problem.TOO_SHORT]
    if candidate[0] == "0" and _STRIP_LENGTH_OK[len(candidate) - 1]:
        candidate = candidate[1:]
    return classify_swedish_nsn(candidate)


_FOREIGN_PARSE_PROBLEM: Final = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: Problem.UNKNOWN_COUNTRY_CODE,
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: Problem.TOO_SHORT,
    phonenumbers.NumberParseException.TOO_SHORT_NSN: Problem.TOO_SHORT,
    phonenumbers.NumberParseException.TOO_LONG: Problem.TOO_LONG,
}


@lru_cache(maxsize=8192)
def classify_foreign(international_digits: str) -> ParsedNumber:
    """A non-Swedish number (country code + national number, digits only), judged by libphonenumber.

    Valid iff ``phonenumbers.is_valid_number``; the key is its E.164 form; the line type is OTHER (the
    NIX rules and the Swedish numbering plan say nothing about foreign lines).
    """
    try:
        number = phonenumbers.parse("+" + international_digits, "SE")
    except phonenumbers.NumberParseException as error:
        return _INVALID[_FOREIGN_PARSE_PROBLEM.get(error.error_type, Problem.FOREIGN_NOT_IN_PLAN)]
    if not phonenumbers.is_valid_number(number):
        return _INVALID[Problem.FOREIGN_NOT_IN_PLAN]
    key = int(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:])
    if key >= _UINT64_LIMIT:
        return _INVALID[Problem.TOO_LONG]
    return ParsedNumber(key, Problem.OK, LineType.OTHER)


def _has_idd(digits: str) -> bool:
    """``00`` is an international prefix unless a third 0 follows (libphonenumber's rule)."""
    return digits.startswith("00") and (len(digits) == 2 or digits[2] != "0")


def _international(digits: str, start: int) -> ParsedNumber:
    """Step 2: ``digits[start:]`` is country code + national number."""
    rest = digits[start:]
    if len(rest) <= MIN_NSN_DIGITS:
        return _INVALID[Problem.TOO_SHORT]
    code_length = _COUNTRY_CODE_LENGTH[int(rest[:3])]
    if code_length == 0:
        return _INVALID[Problem.UNKNOWN_COUNTRY_CODE]
    if rest[:code_length] != _SWEDISH_CODE_TEXT:
        return classify_foreign(rest)
    return _swedish_national(rest[code_length:])


def _classify_digits(digits: str, plus: bool) -> ParsedNumber:
    if plus:
        if digits[0] != "0":
            return _international(digits, 0)
        if len(digits) <= MIN_NSN_DIGITS:
            return _INVALID[Problem.TOO_SHORT]
        # "+00 46 ...": libphonenumber retries without the plus and finds the 00 prefix.
        return _international(digits, 2) if _has_idd(digits) else _INVALID[Problem.UNKNOWN_COUNTRY_CODE]
    if _has_idd(digits):
        return _international(digits, 2)
    if digits.startswith(_SWEDISH_CODE_TEXT):
        rest = digits[2:]
        if rest.startswith("0"):
            rest = rest[1:]
        if len(digits) > MAX_PLAN_LENGTH or (
            not _general_pattern_matches(digits) and _general_pattern_matches(rest)
        ):
            return _swedish_national(rest)
    return _swedish_national(digits)


def parse_number(text: object) -> ParsedNumber:
    """Normalise one written number to its E.164 key; never raises.

    ``bytes`` are read as UTF-8 (invalid sequences become U+FFFD, hence BAD_CHARACTER). Trailing NUL
    characters are ignored (numpy's fixed-width strings drop them too).
    """
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return _INVALID[Problem.NOT_TEXT]
    text = text.rstrip("\x00")
    if len(text) > MAX_TEXT_CHARS:
        return _INVALID[Problem.TOO_LONG]
    if text.isdigit() and text.isascii():  # the common plain form: nothing to remove
        return _classify_digits(text, plus=False)
    compact = text.translate(_DELETE_SEPARATORS)
    digits = compact.lstrip("+")
    if not (digits.isascii() and digits.isdigit()):
        return _INVALID[Problem.EMPTY if not digits else Problem.BAD_CHARACTER]
    return _classify_digits(digits, plus=len(digits) != len(compact))


def classify_key(key: object) -> ParsedNumber:
    """Validate an already-normalised E.164 key; never raises.

    A key is valid iff it is the E.164 form of a valid number: a Swedish key must carry a valid NSN (no
    national prefix 0), a foreign key must be what libphonenumber itself formats for that number.
    """
    if isinstance(key, bool) or not isinstance(key, int | np.integer):
        return _INVALID[Problem.NOT_TEXT]
    value = int(key)
    if value < 0 or value >= _UINT64_LIMIT:
        return _INVALID[Problem.OUT_OF_RANGE]
    if value == 0:
        return _INVALID[Problem.EMPTY]
    return _classify_positive_key(value)


def _classify_positive_key(value: int) -> ParsedNumber:
    digits = str(value)
    if digits.startswith(_SWEDISH_CODE_TEXT):
        return classify_swedish_nsn(digits[2:])
    if len(digits) <= MIN_NSN_DIGITS:
        return _INVALID[Problem.TOO_SHORT]
    if _COUNTRY_CODE_LENGTH[int(digits[:3])] == 0:
        return _INVALID[Problem.UNKNOWN_COUNTRY_CODE]
    parsed = classify_foreign(digits)
    if parsed.valid and parsed.key != value:
        return _INVALID[Problem.FOREIGN_NOT_IN_PLAN]  # a non-canonical spelling of a valid number
    return parsed
