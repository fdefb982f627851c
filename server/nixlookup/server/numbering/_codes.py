"""The vocabulary of the normaliser: line types, problems and their reasons, the result records.

Everything here is data shared by the scalar (`_numbering_scalar`) and the vectorised
(`_numbering_vector`) paths, so the two speak the same codes: a `Problem` or `LineType` value is what
lands in a ``ParsedBatch`` array, byte for byte. Both are the wire enums (`nixlookup.v1.vocabulary`,
generated from ``lookup.proto``), so a problem code travels to clients unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray
from phonenumbers import PhoneNumberType

from nixlookup.server.numbering._plan import MAX_PLAN_LENGTH, MIN_PLAN_LENGTH, NO_TYPE
from nixlookup.v1.vocabulary import LineType, Problem

__all__ = [
    "LINE_TYPE_OF_CODE",
    "MAX_TEXT_CHARS",
    "PROBLEM_TEXT",
    "SWEDISH_LENGTH_PROBLEM",
    "LineType",
    "ParsedBatch",
    "ParsedNumber",
    "Problem",
]

# Longer texts are refused before any parsing (libphonenumber stops at 250; a written number, with
# generous separators and an international prefix, fits in 40).
MAX_TEXT_CHARS: Final = 64


PROBLEM_TEXT: Final[Mapping[Problem, str]] = MappingProxyType(
    {
        Problem.OK: "valid number",
        Problem.EMPTY: "no digits: the number is empty",
        Problem.BAD_CHARACTER: (
            "contains a character that is not a digit, a separator (space - . / ( )) or a leading +"
        ),
        Problem.TOO_SHORT: "too few digits for the numbering plan",
        Problem.TOO_LONG: "too many digits (or characters) for the numbering plan",
        Problem.NOT_IN_PLAN: "not a valid Swedish number: no number range of the numbering plan matches",
        Problem.UNKNOWN_COUNTRY_CODE: "the international prefix is followed by no known country code",
        Problem.FOREIGN_NOT_IN_PLAN: "not a valid number in the numbering plan of its country",
        Problem.OUT_OF_RANGE: "not an E.164 key: negative, or too large for an unsigned 64-bit integer",
        Problem.NOT_TEXT: "not a text (str or bytes) or an integer key",
    }
)

# libphonenumber number type -> our line type. FIXED_LINE_OR_MOBILE counts as mobile: the industry rule
# ("mobile numbers only for existing customers") must hold whenever a number may be mobile. Sweden's plan
# has no such overlap today.
_LINE_TYPE_OF_NUMBER_TYPE: Final = {
    PhoneNumberType.FIXED_LINE: LineType.FIXED,
    PhoneNumberType.MOBILE: LineType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: LineType.MOBILE,
}


def _line_type_table() -> NDArray[np.uint8]:
    table = np.full(256, LineType.OTHER, dtype=np.uint8)
    for number_type, line_type in _LINE_TYPE_OF_NUMBER_TYPE.items():
        table[number_type] = line_type
    table[NO_TYPE] = LineType.UNSPECIFIED
    table.setflags(write=False)
    return table


def _length_problem_table() -> NDArray[np.uint8]:
    table = np.full(256, Problem.NOT_IN_PLAN, dtype=np.uint8)
    table[:MIN_PLAN_LENGTH] = Problem.TOO_SHORT
    table[MAX_PLAN_LENGTH + 1 :] = Problem.TOO_LONG
    table.setflags(write=False)
    return table


# Indexed by a TYPE_CODE entry (a libphonenumber type, or NO_TYPE).
LINE_TYPE_OF_CODE: Final = _line_type_table()
# Indexed by the length of a Swedish NSN that matched no number range, not counting a leading 0 (a
# national prefix libphonenumber could not drop because the rest had a wrong length): why it is invalid.
SWEDISH_LENGTH_PROBLEM: Final = _length_problem_table()


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    """One normalised number: ``key`` is the E.164 number as an integer, 0 when ``problem`` is not OK."""

    key: int
    problem: Problem
    line_type: LineType

    @property
    def valid(self) -> bool:
        return self.problem is Problem.OK


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """Many normalised numbers, index-aligned with the input.

    ``keys`` (uint64, 0 where invalid), ``problems`` (uint8 `Problem` values), ``line_types`` (uint8
    `LineType` values).
    """

    keys: NDArray[np.uint64]
    problems: NDArray[np.uint8]
    line_types: NDArray[np.uint8]

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def valid(self) -> NDArray[np.bool_]:
        """Boolean mask of the valid numbers."""
        valid: NDArray[np.bool_] = self.problems == Problem.OK
        return valid

    def __getitem__(self, index: int) -> ParsedNumber:
        return ParsedNumber(
            int(self.keys[index]), Problem(int(self.problems[index])), LineType(int(self.line_types[index]))
        )
