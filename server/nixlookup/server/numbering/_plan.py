"""The Swedish numbering plan as lookup tables, derived once at import from libphonenumber's metadata.

Theory of operation
-------------------
libphonenumber describes each number type of a region (general, fixed line, mobile, premium rate ...) by a
regular expression over the national significant number (NSN) plus a list of possible lengths. Its SE
patterns are built only from digits, ``\\d``, character classes, non-capturing groups, alternation and
counted repetition, so each pattern denotes a *finite* set of "digit-class sequences": one digit set per
position, fixed length. This module expands every pattern into those sequences (`expand_pattern`), checks
that beyond the first `PREFIX_DIGITS` positions every sequence only says "any digit", and then tabulates:

* ``TYPE_CODE[length, prefix]``: the libphonenumber number type of an NSN with that length whose first
  `PREFIX_DIGITS` digits are ``prefix`` (zero-padded on the right when the NSN is shorter), or `NO_TYPE`.
  It applies libphonenumber's own precedence (premium rate, toll free, shared cost, VoIP, personal, pager,
  UAN, voicemail, fixed line (or fixed line or mobile), mobile) and its possible-length filters, so a table
  lookup answers exactly what ``phonenumbers.number_type`` answers, for every NSN.
* ``GENERAL_MATCH[length, prefix]``: whether the general description's pattern alone matches (parsing
  uses this test, without the length filter, to decide whether to strip a country code or national prefix).
* ``STRIP_LENGTH_OK[length]``: whether an NSN of that length passes libphonenumber's length test when it
  decides to strip a national prefix (possible, or too long: not too short and not an invalid length).
* ``COUNTRY_CODE_LENGTH[three digits]``: the length of the country calling code that starts those digits
  (0 when none does); country codes are prefix-free, so the first match is the only one.

If a future metadata release uses a pattern construct the expander does not know, or needs more prefix
digits than `MAX_PREFIX_DIGITS`, import fails loudly instead of validating numbers wrongly.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import phonenumbers
from numpy.typing import NDArray
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberType

__all__ = [
    "COUNTRY_CODE_LENGTH",
    "GENERAL_MATCH",
    "MAX_NSN_DIGITS",
    "MAX_PLAN_LENGTH",
    "MIN_NSN_DIGITS",
    "MIN_PLAN_LENGTH",
    "NO_TYPE",
    "PREFIX_DIGITS",
    "PREFIX_SPAN",
    "STRIP_LENGTH_OK",
    "SWEDISH_COUNTRY_CODE",
    "SWEDISH_METADATA",
    "TABLE_LENGTHS",
    "TYPE_CODE",
    "expand_pattern",
]

SWEDISH_COUNTRY_CODE: Final = 46


def _swedish_metadata() -> PhoneMetadata:
    metadata = PhoneMetadata.metadata_for_region("SE")
    if metadata is None:
        raise RuntimeError("phonenumbers has no metadata for region SE")
    return metadata


SWEDISH_METADATA: Final = _swedish_metadata()

# libphonenumber refuses NSNs shorter than 2 or longer than 17 digits outright (TOO_SHORT_NSN / TOO_LONG).
MIN_NSN_DIGITS: Final = 2
MAX_NSN_DIGITS: Final = 17
# Rows of the tables: every NSN length libphonenumber lets through, plus 0 and 1 (always "no type").
TABLE_LENGTHS: Final = MAX_NSN_DIGITS + 1
MAX_PREFIX_DIGITS: Final = 5  # 10^5 prefixes x 18 lengths = 1.8 MB: the most we accept spending

ALL_DIGITS: Final = 0x3FF  # a digit set as a 10-bit mask: bit d set <=> digit d allowed

DigitClassSequence = tuple[int, ...]


class _PatternParser:
    """Recursive descent over the regex subset libphonenumber's SE patterns use."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"numbering plan pattern {self.pattern!r}: {what} at offset {self.pos}")

    def peek(self) -> str:
        return self.pattern[self.pos] if self.pos < len(self.pattern) else ""

    def parse(self) -> list[DigitClassSequence]:
        sequences = self.alternation()
        if self.pos != len(self.pattern):
            raise self.fail("unexpected character")
        return sequences

    def alternation(self) -> list[DigitClassSequence]:
        sequences = self.concatenation()
        while self.peek() == "|":
            self.pos += 1
            sequences += self.concatenation()
        return sequences

    def concatenation(self) -> list[DigitClassSequence]:
        sequences: list[DigitClassSequence] = [()]
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            low, high = self.quantifier()
            repeated = [
                tuple(itertools.chain.from_iterable(parts))
                for count in range(low, high + 1)
                for parts in itertools.product(atom, repeat=count)
            ]
            sequences = [head + tail for head in sequences for tail in repeated]
        return sequences

    def atom(self) -> list[DigitClassSequence]:
        char = self.peek()
        if char.isdigit():
            self.pos += 1
            return [(1 << int(char),)]
        if self.pattern.startswith("\\d", self.pos):
            self.pos += 2
            return [(ALL_DIGITS,)]
        if char == "[":
            return [(self.digit_class(),)]
        if char == "(":
            self.pos += 3 if self.pattern.startswith("(?:", self.pos) else 1
            inner = self.alternation()
            if self.peek() != ")":
                raise self.fail("unclosed group")
            self.pos += 1
            return inner
        raise self.fail("unsupported construct")

    def digit_class(self) -> int:
        self.pos += 1  # "["
        mask = 0
        while self.peek() != "]":
            start = self.peek()
            if not start.isdigit():
                raise self.fail("unsupported character class member")
            if (
                self.pattern.startswith("-", self.pos + 1)
                and self.pattern[self.pos + 2 : self.pos + 3].isdigit()
            ):
                end = self.pattern[self.pos + 2]
                self.pos += 3
            else:
                end = start
                self.pos += 1
            for digit in range(int(start), int(end) + 1):
                mask |= 1 << digit
        self.pos += 1  # "]"
        return mask

    def quantifier(self) -> tuple[int, int]:
        if self.peek() == "?":
            self.pos += 1
            return 0, 1
        if self.peek() != "{":
            return 1, 1
        close = self.pattern.index("}", self.pos)
        bounds = self.pattern[self.pos + 1 : close].split(",")
        self.pos = close + 1
        if len(bounds) == 1:
            return int(bounds[0]), int(bounds[0])
        return int(bounds[0]), int(bounds[1])


def expand_pattern(pattern: str) -> list[DigitClassSequence]:
    """All digit-class sequences a libphonenumber national-number pattern denotes."""
    return _PatternParser(pattern).parse()


def _needed_prefix_digits(sequences: Iterable[DigitClassSequence]) -> int:
    """Positions up to the last one that is not 'any digit', over all sequences."""
    needed = 0
    for sequence in sequences:
        for position, mask in enumerate(sequence):
            if mask != ALL_DIGITS:
                needed = max(needed, position + 1)
    return needed


class _Desc:
    """One number description: its sequences and the lengths libphonenumber allows it."""

    def __init__(self, desc: PhoneNumberDesc | None, *, filter_lengths: bool) -> None:
        pattern = desc.national_number_pattern if desc is not None else None
        self.sequences = expand_pattern(pattern) if pattern else []
        lengths = tuple(desc.possible_length) if desc is not None and filter_lengths else ()
        self.possible_lengths: tuple[int, ...] = lengths

    def matches(self, prefix_digits: NDArray[np.uint8], prefix_width: int) -> NDArray[np.bool_]:
        """Boolean [length, prefix] table of NSNs this description matches."""
        table = np.zeros((TABLE_LENGTHS, 10**prefix_width), dtype=np.bool_)
        for sequence in self.sequences:
            length = len(sequence)
            if length >= TABLE_LENGTHS or (self.possible_lengths and length not in self.possible_lengths):
                continue
            padded = sequence[:prefix_width] + (1,) * max(0, prefix_width - length)  # pad digits are 0
            hit = np.ones(10**prefix_width, dtype=np.bool_)
            for position, mask in enumerate(padded):
                allowed = np.array([(mask >> digit) & 1 for digit in range(10)], dtype=np.bool_)
                hit &= allowed[prefix_digits[:, position]]
            table[length] |= hit
        return table


def _build_tables(metadata: PhoneMetadata) -> tuple[int, NDArray[np.uint8], NDArray[np.bool_]]:
    general = _Desc(metadata.general_desc, filter_lengths=True)
    general_pattern_only = _Desc(metadata.general_desc, filter_lengths=False)
    # libphonenumber's _number_type_helper order: the first description that matches wins.
    ordered: list[tuple[PhoneNumberType | int, PhoneNumberDesc | None]] = [
        (PhoneNumberType.PREMIUM_RATE, metadata.premium_rate),
        (PhoneNumberType.TOLL_FREE, metadata.toll_free),
        (PhoneNumberType.SHARED_COST, metadata.shared_cost),
        (PhoneNumberType.VOIP, metadata.voip),
        (PhoneNumberType.PERSONAL_NUMBER, metadata.personal_number),
        (PhoneNumberType.PAGER, metadata.pager),
        (PhoneNumberType.UAN, metadata.uan),
        (PhoneNumberType.VOICEMAIL, metadata.voicemail),
    ]
    typed = [(number_type, _Desc(desc, filter_lengths=True)) for number_type, desc in ordered]
    fixed = _Desc(metadata.fixed_line, filter_lengths=True)
    mobile = _Desc(metadata.mobile, filter_lengths=True)

    every_sequence = itertools.chain(
        general.sequences, fixed.sequences, mobile.sequences, *(desc.sequences for _, desc in typed)
    )
    width = max(1, _needed_prefix_digits(every_sequence))
    if width > MAX_PREFIX_DIGITS:
        raise ValueError(f"numbering plan needs {width} prefix digits, more than {MAX_PREFIX_DIGITS}")
    prefixes = np.arange(10**width)
    prefix_digits = np.stack(
        [(prefixes // 10 ** (width - 1 - position)) % 10 for position in range(width)], axis=1
    ).astype(np.uint8)

    type_code = np.full((TABLE_LENGTHS, 10**width), NO_TYPE, dtype=np.uint8)
    undecided = general.matches(prefix_digits, width)
    for number_type, desc in typed:
        hit = undecided & desc.matches(prefix_digits, width)
        type_code[hit] = number_type
        undecided &= ~hit
    fixed_hit = undecided & fixed.matches(prefix_digits, width)
    mobile_hit = undecided & mobile.matches(prefix_digits, width)
    if metadata.same_mobile_and_fixed_line_pattern:
        type_code[fixed_hit] = PhoneNumberType.FIXED_LINE_OR_MOBILE
    else:
        type_code[fixed_hit & mobile_hit] = PhoneNumberType.FIXED_LINE_OR_MOBILE
        type_code[fixed_hit & ~mobile_hit] = PhoneNumberType.FIXED_LINE
        type_code[mobile_hit & ~fixed_hit] = PhoneNumberType.MOBILE
    general_match = general_pattern_only.matches(prefix_digits, width)
    type_code.setflags(write=False)
    general_match.setflags(write=False)
    return width, type_code, general_match


def _strip_length_ok(possible_lengths: Sequence[int], local_only: Sequence[int]) -> NDArray[np.bool_]:
    """Lengths at which libphonenumber strips a national prefix: not too short, local-only or invalid."""
    limit = 128  # beyond any text we accept
    verdict = np.zeros(limit, dtype=np.bool_)
    shortest, longest = min(possible_lengths), max(possible_lengths)
    for length in range(limit):
        if length in local_only or length < shortest:
            continue
        verdict[length] = length in possible_lengths or length > longest
    verdict.setflags(write=False)
    return verdict


def _country_code_lengths() -> NDArray[np.uint8]:
    lengths = np.zeros(1000, dtype=np.uint8)
    known = {str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}
    for three in range(100, 1000):
        digits = str(three)
        for size in (1, 2, 3):
            if digits[:size] in known:
                lengths[three] = size
                break
    lengths.setflags(write=False)
    return lengths


NO_TYPE: Final = 255  # not a valid number: no libphonenumber type matches (its UNKNOWN)

_TABLES: Final = _build_tables(SWEDISH_METADATA)
PREFIX_DIGITS: Final[int] = _TABLES[0]
TYPE_CODE: Final[NDArray[np.uint8]] = _TABLES[1]
GENERAL_MATCH: Final[NDArray[np.bool_]] = _TABLES[2]
PREFIX_SPAN: Final = 10**PREFIX_DIGITS

_GENERAL_DESC: Final = SWEDISH_METADATA.general_desc
assert _GENERAL_DESC is not None, "libphonenumber's SE metadata has a general description"
_GENERAL_LENGTHS: Final = tuple(_GENERAL_DESC.possible_length)
MIN_PLAN_LENGTH: Final = min(_GENERAL_LENGTHS)
MAX_PLAN_LENGTH: Final = max(_GENERAL_LENGTHS)
STRIP_LENGTH_OK: Final = _strip_length_ok(_GENERAL_LENGTHS, tuple(_GENERAL_DESC.possible_length_local_only))
COUNTRY_CODE_LENGTH: Final = _country_code_lengths()
