"""Swedish street addresses and postcodes -> the parts the name-address key is made of.

Theory of operation
-------------------
A street line arrives written ``Storgatan 12 B``, ``STORG. 12b``, ``Storgatan 12 lgh 1102``,
``Storgatan 12, 3 tr``, ``c/o Berg, Storgatan 12``, ``S:t Eriksgatan 5``, ``1:a Långgatan 3``.
`normalise_street` folds it (`_fold.fold_text`), then:

1. drops what says where *inside* the house, not which house: ``c/o ...`` segments (between commas),
   apartment numbers (``lgh 1102``, ``lägenhet 1102``), floors (``3 tr``, ``3 trappor``, ``1 tr ned``,
   ``n.b.``, ``bv``, ``bottenvåning``) — company lists carry them one way or not at all;
2. reads the first segment that has a house number as street name, number, optional house letter
   (``12 B``, ``12b``, ``12-14`` reads as 12); a segment without a number is a street name alone (rural
   addresses: ``Lilla Gården``);
3. canonicalises the street name: ordinal prefixes (``1:a`` -> ``forsta``), ``S:t``/``St.`` -> ``sankt``,
   street-type abbreviations at its end (``g.``/``gt`` -> ``gatan``, ``v.``/``vg`` -> ``vagen``, ``gr.``
   -> ``grand``), then every space, hyphen and period removed (``Stora Nygatan`` = ``Storanygatan``).

A postcode is five digits, the first not 0, written ``NNN NN``, ``NNNNN``, ``SE-NNN NN`` or ``S-NNN NN``
(`normalise_postcode`). The postal town is folded (`normalise_city`) but is not part of the key: the
postcode already names it, and towns are written many ways (``Göteborg``, ``GBG``, ``Göteborg C``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

from nixlookup.server.addressing._fold import fold_text
from nixlookup.server.addressing._problems import AddressProblem

__all__ = [
    "NormalisedStreet",
    "normalise_city",
    "normalise_postcode",
    "normalise_street",
    "normalise_street_in_full",
]

_STREET_KEEP: Final = ",./:-"
_ORDINALS: Final = {
    "1": "forsta", "2": "andra", "3": "tredje", "4": "fjarde", "5": "femte",
    "6": "sjatte", "7": "sjunde", "8": "attonde", "9": "nionde",
}  # fmt: skip
_ORDINAL_PREFIX: Final = re.compile(r"^\s*([1-9]):[ae]\b")
_CARE_OF: Final = re.compile(r"^\s*c\s*/\s*o\b")
_APARTMENT: Final = re.compile(r"\b(?:lgh|lght|lagenhet)\.?\s*(?:nr\.?\s*)?[0-9]+")
_FLOOR: Final = re.compile(
    r"\b[0-9]+\s*(?:tr|trp|trappa|trappor)\b\.?(?:\s*(?:ned|upp)\b)?"
    r"|\b(?:n\s*\.\s*b\b\.?|nb|b\s*\.\s*v\b\.?|bv|bottenvaning|nedre\s+botten|entreplan)(?=\s|,|$)"
)
_NUMBERED: Final = re.compile(
    r"\s*(?P<name>[^0-9]*?[^\W\d_][^0-9]*?)\s*(?P<number>[0-9]+)(?:\s*(?P<letter>[^\W\d_])(?![^\W\d_]))?"
)
_SANKT: Final = re.compile(r"^(?:s:t\.?\s*|st\.\s*|st\s+)(?=[^\W\d_])")
_SUFFIXES: Final = (  # (abbreviation at the end of the street name, full form), longest first
    ("gt.", "gatan"), ("gt", "gatan"), ("gr.", "grand"), ("vg.", "vagen"), ("vg", "vagen"),
    ("g.", "gatan"), ("v.", "vagen"),
)  # fmt: skip
_NOT_NAME_CHARS: Final = re.compile(r"[\W_]+")
# A line that is only "name number [letter]" (most of them) skips steps 1-2, unless its name holds a word
# that step 1 would remove; tests/test_addressing_normalise.py checks both paths agree.
_SIMPLE_STREET: Final = re.compile(
    r"\s*(?P<name>[^0-9,/]*?[^\W\d_][^0-9,/]*?)\s*(?P<number>[0-9]+)(?:\s*(?P<letter>[^\W\d_]))?\s*"
)
_INSIDE_WORD: Final = re.compile(
    r"\b(?:lgh|lght|lagenhet|nb|bv|bottenvaning|nedre\s+botten|entreplan)\b|\bn\s*\.\s*b\b|\bb\s*\.\s*v\b"
)
_POSTCODE: Final = re.compile(r"(?:se?\s*-?\s*)?([1-9][0-9][0-9]) ?([0-9][0-9])", re.ASCII)


class NormalisedStreet(NamedTuple):
    """Which house: canonical street name, house number ("" if none), house letter ("" if none)."""

    name: str
    number: str
    letter: str


def normalise_street(text: str) -> NormalisedStreet | AddressProblem:
    """The normalised form of one street line, or ``NO_STREET``; never raises."""
    simple = _SIMPLE_STREET.fullmatch(text)
    if simple is not None:
        name = _simple_street_name(simple.group("name"))
        letter = fold_text(simple.group("letter") or "")
        if name is not None and (not letter or (len(letter) == 1 and letter.isalpha())):
            return NormalisedStreet(name, str(int(simple.group("number"))), letter)
    return normalise_street_in_full(text)


@lru_cache(maxsize=1 << 14)
def _simple_street_name(written: str) -> str | None:
    """The street name of a line that is only name, number and letter; None if the name hides more."""
    folded = fold_text(written, keep=_STREET_KEEP)
    if _INSIDE_WORD.search(folded) or any("0" <= char <= "9" for char in folded):  # "¼" folds to "1 4"
        return None
    return _street_name(folded)


def normalise_street_in_full(text: str) -> NormalisedStreet | AddressProblem:
    """The general path of `normalise_street` (steps 1-3); `normalise_street` skips it for plain lines."""
    segments = [
        cleaned
        for segment in fold_text(text, keep=_STREET_KEEP).split(",")
        if not _CARE_OF.match(segment) and (cleaned := _without_inside(segment))
    ]
    for segment in segments:
        numbered = _NUMBERED.match(segment)
        if numbered:
            name = _street_name(numbered.group("name"))
            if name:
                return NormalisedStreet(
                    name, str(int(numbered.group("number"))), numbered.group("letter") or ""
                )
    for segment in segments:
        if not any("0" <= char <= "9" for char in segment) and (name := _street_name(segment)):
            return NormalisedStreet(name, "", "")
    return AddressProblem.NO_STREET


def _ordinal_word(match: re.Match[str]) -> str:
    return _ORDINALS[match.group(1)] + " "


def _without_inside(segment: str) -> str:
    """A segment with its ordinal prefix written out and apartment and floor removed (steps 1, 3)."""
    return _FLOOR.sub(" ", _APARTMENT.sub(" ", _ORDINAL_PREFIX.sub(_ordinal_word, segment))).strip()


def _street_name(written: str) -> str:
    name = _SANKT.sub("sankt ", written.strip())
    for abbreviation, full in _SUFFIXES:
        if name.endswith(abbreviation) and len(name) > len(abbreviation):
            name = name[: -len(abbreviation)] + full
            break
    return _NOT_NAME_CHARS.sub("", name)


def normalise_postcode(text: str) -> int | AddressProblem:
    """A Swedish postcode as its five-digit number (``SE-123 45`` -> 12345), or why it is not one."""
    folded = " ".join(fold_text(text, keep="-").split())
    if not folded:
        return AddressProblem.NO_POSTCODE
    matched = _POSTCODE.fullmatch(folded)
    if matched is None:
        return AddressProblem.BAD_POSTCODE
    return int(matched.group(1) + matched.group(2))


def normalise_city(text: str) -> str:
    """The postal town folded for display and comparison (``GÖTEBORG`` -> ``goteborg``); not in the key."""
    return " ".join(fold_text(text).split())
