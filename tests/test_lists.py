"""The `ListSpec` table is the one description of list kinds: the store and the policy follow it."""

import pytest

from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.lists import CALLER_LISTS, LIST_SPECS, ListRole, Register, lists_of, spec_of
from nixlookup.server.policy._facts import EXEMPTING_LISTS, FACT_OF_LIST, Fact
from nixlookup.server.store import check_list_key
from nixlookup.v1.vocabulary import ListKind


def test_every_kind_has_one_row_and_one_fact_bit() -> None:
    """Each ListKind has exactly one spec, and each spec its own fact bit, disjoint from the others."""
    assert sorted(spec.kind for spec in LIST_SPECS) == sorted(ListKind)
    bits = [FACT_OF_LIST[spec.kind] for spec in lists_of(Register.TELEFON)] + [
        int(Fact.INVALID),
        int(Fact.MOBILE),
    ]
    assert len(set(bits)) == len(bits)
    assert all(bit & (bit - 1) == 0 for bit in bits)


def test_exempting_lists_come_from_the_roles() -> None:
    """The lists that clear the mobile flag are exactly the EXEMPTS rows."""
    assert set(EXEMPTING_LISTS) == {spec.kind for spec in LIST_SPECS if spec.role is ListRole.EXEMPTS}
    assert set(EXEMPTING_LISTS) == {ListKind.RELATIONSHIP, ListKind.CONSENT}


@pytest.mark.parametrize("spec", LIST_SPECS, ids=lambda spec: spec.slug)
def test_list_keys_follow_per_caller(spec: object) -> None:
    """A per-caller kind needs a caller; a register refuses one."""
    kind = spec_of(spec.kind).kind  # type: ignore[attr-defined]
    if spec in CALLER_LISTS:
        assert check_list_key(kind, "acme") == (kind, "acme")
        with pytest.raises(InvalidArgumentError, match="caller must not be empty"):
            check_list_key(kind, "")
    else:
        assert check_list_key(kind, "") == (kind, "")
        with pytest.raises(InvalidArgumentError, match="caller must be empty"):
            check_list_key(kind, "acme")
