"""The `ListSpec` table is the one description of list kinds: the store and the policy follow it."""

import pytest

from nixlookup.server.errors import InvalidArgumentError
from nixlookup.server.lists import (
    LIST_SPECS,
    MAIL_CALLER_LISTS,
    ListRole,
    Register,
    lists_of,
    register_of,
    spec_of,
)
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
    """The lists that clear the mobile flag (a NIX-Telefon rule) are exactly its EXEMPTS rows."""
    phone = lists_of(Register.TELEFON)
    assert set(EXEMPTING_LISTS) == {spec.kind for spec in phone if spec.role is ListRole.EXEMPTS}
    assert set(EXEMPTING_LISTS) == {ListKind.RELATIONSHIP, ListKind.CONSENT}


@pytest.mark.parametrize("spec", LIST_SPECS, ids=lambda spec: spec.slug)
def test_list_keys_follow_per_caller(spec: object) -> None:
    """A per-caller kind needs a caller; a register refuses one."""
    kind = spec_of(spec.kind).kind  # type: ignore[attr-defined]
    if spec.per_caller:  # type: ignore[attr-defined]
        assert check_list_key(kind, "acme") == (kind, "acme")
        with pytest.raises(InvalidArgumentError, match="caller must not be empty"):
            check_list_key(kind, "")
    else:
        assert check_list_key(kind, "") == (kind, "")
        with pytest.raises(InvalidArgumentError, match="caller must be empty"):
            check_list_key(kind, "acme")


def test_each_register_has_its_own_row_and_caller_lists() -> None:
    """Both NIX registers have one shared row and the same three caller lists, in the same roles."""
    for register in Register:
        specs = lists_of(register)
        assert [spec.per_caller for spec in specs] == [False, True, True, True]
        assert [spec.role for spec in specs] == [
            ListRole.REGISTER,
            ListRole.BLOCKS,
            ListRole.EXEMPTS,
            ListRole.EXEMPTS,
        ]
    assert register_of(Register.ADRESSERAT).kind is ListKind.ADDRESS_REGISTER
    assert [spec.kind for spec in MAIL_CALLER_LISTS] == [
        ListKind.MAIL_OPT_OUT,
        ListKind.MAIL_RELATIONSHIP,
        ListKind.MAIL_CONSENT,
    ]
