"""The core's enums and the wire contract's enums must never drift apart."""

from enum import IntEnum

import pytest

from nixlookup.client import vocabulary as client_vocabulary
from nixlookup.server.numbering import LineType
from nixlookup.server.store import ListKind
from nixlookup.server.vocabulary import Purpose, Reason, Verdict
from nixlookup.v1 import lookup_pb2


@pytest.mark.parametrize(
    ("core", "wire", "prefix"),
    [
        (Verdict, lookup_pb2.Verdict, ""),
        (Reason, lookup_pb2.Reason, ""),
        (Purpose, lookup_pb2.Purpose, ""),
        (LineType, lookup_pb2.LineType, ""),
        (ListKind, lookup_pb2.ListKind, "LIST_KIND_"),
        # The client keeps its own copies (it never imports the server): they must match the wire too.
        (client_vocabulary.Verdict, lookup_pb2.Verdict, ""),
        (client_vocabulary.Reason, lookup_pb2.Reason, ""),
        (client_vocabulary.Purpose, lookup_pb2.Purpose, ""),
        (client_vocabulary.LineType, lookup_pb2.LineType, ""),
        (client_vocabulary.ListKind, lookup_pb2.ListKind, "LIST_KIND_"),
    ],
)
def test_core_enum_matches_proto(core: type[IntEnum], wire: object, prefix: str) -> None:
    """Every core enum member has the proto value of the same name, and vice versa."""
    wire_values = dict(wire.items())  # type: ignore[attr-defined]
    for member in core:
        name = member.name
        candidates = [prefix + name, f"{name}"]
        if name == "UNSPECIFIED":
            candidates.append(f"{wire.DESCRIPTOR.name}_UNSPECIFIED".upper())  # type: ignore[attr-defined]
            candidates.append("LINE_TYPE_UNSPECIFIED")
        matches = [wire_values[c] for c in candidates if c in wire_values]
        assert matches, f"{core.__name__}.{name} has no proto counterpart"
        assert matches[0] == member.value
    assert len(wire_values) == len(core)
