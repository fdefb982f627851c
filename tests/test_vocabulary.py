"""The one wire vocabulary (`nixlookup.v1.vocabulary`) equals the proto enums and is the only copy."""

from enum import IntEnum

import pytest

from nixlookup.server.numbering import LineType as NumberingLineType
from nixlookup.server.numbering import Problem as NumberingProblem
from nixlookup.server.store import ListKind as StoreListKind
from nixlookup.v1 import lookup_pb2
from nixlookup.v1.vocabulary import LineType, ListKind, Problem, Purpose, Reason, Verdict, mask_number


@pytest.mark.parametrize(
    ("ours", "wire", "prefix"),
    [
        (Verdict, lookup_pb2.Verdict, "VERDICT_"),
        (Reason, lookup_pb2.Reason, "REASON_"),
        (Purpose, lookup_pb2.Purpose, "PURPOSE_"),
        (LineType, lookup_pb2.LineType, "LINE_TYPE_"),
        (ListKind, lookup_pb2.ListKind, "LIST_KIND_"),
        (Problem, lookup_pb2.Problem, "PROBLEM_"),
    ],
)
def test_enum_matches_proto(ours: type[IntEnum], wire: object, prefix: str) -> None:
    """Every member has the proto value of the same (prefix-free) name, and vice versa."""
    wire_values = {name.removeprefix(prefix): value for name, value in wire.items()}  # type: ignore[attr-defined]
    assert {member.name: member.value for member in ours} == wire_values


def test_server_families_use_the_wire_enums() -> None:
    """The server re-exports the wire enums; it keeps no copy of its own."""
    assert NumberingLineType is LineType
    assert NumberingProblem is Problem  # a numbering problem code is the wire's, byte for byte
    assert StoreListKind is ListKind


@pytest.mark.parametrize(
    ("text", "member"),
    [
        ("opt-out", ListKind.OPT_OUT),
        ("OPT_OUT", ListKind.OPT_OUT),
        (1, ListKind.OPT_OUT),
        ("register", ListKind.REGISTER),
    ],
)
def test_parse_reads_slugs_names_and_values(text: str | int, member: ListKind) -> None:
    """`parse` accepts the slug, the name and the value."""
    assert ListKind.parse(text) is member
    assert member.slug == member.name.lower().replace("_", "-")


def test_parse_names_the_choices() -> None:
    """An unknown word is a ValueError listing every slug."""
    with pytest.raises(ValueError, match="market-research"):
        Purpose.parse("telemarketing")


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("070-123 45 67", "********67"),
        (46701234567, "*********67"),
        ("abc", "?"),
        (b"0701234567", "********67"),
    ],
)
def test_mask_number_keeps_two_digits(value: object, masked: str) -> None:
    """A number in a log or error keeps only its last two digits."""
    assert mask_number(value) == masked
