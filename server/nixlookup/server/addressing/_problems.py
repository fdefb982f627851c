"""Why a name and address row cannot be keyed: the uint8 codes of the name-address bulk path.

One enum for the whole row (name, street, postcode), because a row has one name-address key and so one
answer; the first failing field in the order name, street, postcode is the one reported. The personnummer
has its own codes (`PersonnummerProblem`): a row carries both answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Final

__all__ = ["ADDRESS_PROBLEM_TEXT", "AddressProblem"]


class AddressProblem(IntEnum):
    """Why a row has no name-address key; ``OK`` (0) when it has one."""

    OK = 0
    EMPTY = 1  # no name, no street and no postcode: the row does not try to name anyone by address
    NO_NAME = 2
    NO_SURNAME = 3  # one word and no comma: a given name or a surname, we cannot tell which
    NO_GIVEN_NAME = 4  # "Andersson," : a surname alone would block a whole household
    NO_STREET = 5
    NO_POSTCODE = 6
    BAD_POSTCODE = 7


ADDRESS_PROBLEM_TEXT: Final[Mapping[AddressProblem, str]] = MappingProxyType(
    {
        AddressProblem.OK: "valid name and address",
        AddressProblem.EMPTY: "no name and address given",
        AddressProblem.NO_NAME: "the name is empty",
        AddressProblem.NO_SURNAME: "the name needs a given name and a surname ('Förnamn Efternamn' or "
        "'Efternamn, Förnamn')",
        AddressProblem.NO_GIVEN_NAME: "the name has a surname but no given name or initial",
        AddressProblem.NO_STREET: "the street address is empty",
        AddressProblem.NO_POSTCODE: "the postcode is empty",
        AddressProblem.BAD_POSTCODE: "a Swedish postcode has five digits, the first not 0 "
        "('NNN NN', 'SE-NNN NN')",
    }
)
"""One human reason per problem; never contains the row's text."""
