"""nixlookup.server.addressing: who a NIX-Adresserat row is, as uint64 keys (text -> key, like numbering).

Offers the personnummer key (`parse_personnummer`, `parse_personnummer_many`).
"""

from nixlookup.server.addressing.personnummer import (
    MAX_PERSONNUMMER_CHARS,
    PERSONNUMMER_PROBLEM_TEXT,
    ParsedPersonnummer,
    PersonnummerBatch,
    PersonnummerProblem,
    parse_personnummer,
    parse_personnummer_many,
)

__all__ = [
    "MAX_PERSONNUMMER_CHARS",
    "PERSONNUMMER_PROBLEM_TEXT",
    "ParsedPersonnummer",
    "PersonnummerBatch",
    "PersonnummerProblem",
    "parse_personnummer",
    "parse_personnummer_many",
]
