"""What the server serves, as data: one `ListSpec` per list kind, the one table every family reads.

Theory of operation:
- Everything served is a set of uint64 keys (an `Index`), one per (kind, caller): a register (caller
  "") and each caller's own lists. A kind's row in `LIST_SPECS` says everything the code needs to know
  about it; nothing else names a kind's properties:
  - `register`: which NIX register's key space its keys live in (today NIX-Telefon's E.164 numbers);
  - `per_caller`: a caller's own list (opt-out, relationship, consent) or the register itself (caller "");
  - `dated`: each entry carries an end day (relationship end, consent expiry), stored as the index's
    uint32 value; reloads read an end-date column and deltas take end days only for these kinds;
  - `grace`: the end day is extended by the relationship grace setting before it is compared with today;
  - `role`: how a live entry acts in the rules: `BLOCKS` (the company's own opt-out), `EXEMPTS` (a live
    entry allows the call, caps `valid_until` at the entry's end and clears the mobile flag) or `REGISTER`.
- The store (directory names, which deltas may carry end days), the policy (the fact bit each list
  sets, the per-caller overlay's payload fields, the valid_until caps, the lists an answer names), the
  service and the CLI (slugs, from `nixlookup.v1.vocabulary.ListKind.slug`) all derive from this table.
  Adding a list kind is a `ListKind` value in lookup.proto (and `nixlookup.v1.vocabulary`), a row here
  and, when it decides answers, a row in the policy's rule table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from nixlookup.v1.vocabulary import ListKind

__all__ = [
    "CALLER_LISTS",
    "LIST_SPECS",
    "ListRole",
    "ListSpec",
    "Register",
    "caller_lists_of",
    "lists_of",
    "spec_of",
]


class Register(Enum):
    """A NIX register: the key space its lists live in."""

    TELEFON = "nix-telefon"
    """NIX-Telefon: keys are E.164 phone numbers as uint64 (`numbering`)."""


class ListRole(Enum):
    """How a live entry of a list acts in the rules."""

    REGISTER = "register"
    BLOCKS = "blocks"
    EXEMPTS = "exempts"


@dataclass(frozen=True, slots=True)
class ListSpec:
    """One list kind's properties (see the module docstring for what each one drives)."""

    kind: ListKind
    register: Register
    per_caller: bool
    dated: bool
    grace: bool
    role: ListRole
    about: str
    """One line for docs, help texts and error messages."""

    @property
    def slug(self) -> str:
        return self.kind.slug


# the table's rows: alike by design (one data row per list kind, like the rule rows of NIX_RULES)
LIST_SPECS: tuple[ListSpec, ...] = (
    ListSpec(
        ListKind.REGISTER,
        Register.TELEFON,
        per_caller=False,
        dated=False,
        grace=False,
        role=ListRole.REGISTER,
        about="the NIX-Telefon register (caller must be empty)",
    ),
    ListSpec(
        ListKind.OPT_OUT,
        Register.TELEFON,
        per_caller=True,
        dated=False,
        grace=False,
        role=ListRole.BLOCKS,
        about="numbers that told this caller 'don't call me' (wins over everything else)",
    ),
    ListSpec(
        ListKind.RELATIONSHIP,
        Register.TELEFON,
        per_caller=True,
        dated=True,
        grace=True,
        role=ListRole.EXEMPTS,
        about="the caller's customer relationships, each with an end date (0 = ongoing)",
    ),
    ListSpec(
        ListKind.CONSENT,
        Register.TELEFON,
        per_caller=True,
        dated=True,
        grace=False,
        role=ListRole.EXEMPTS,
        about="the persons' explicit consents to this caller, each with an expiry (0 = none)",
    ),
)
"""Every list kind, in the order the per-caller overlay lays out their payload fields."""

_BY_KIND: Mapping[ListKind, ListSpec] = MappingProxyType({spec.kind: spec for spec in LIST_SPECS})


def lists_of(register: Register) -> tuple[ListSpec, ...]:
    """The register's own row and its caller lists, in table order. A register's lists share one key
    space, one set of fact bits and one per-caller overlay; lists of different registers never meet."""
    return tuple(spec for spec in LIST_SPECS if spec.register is register)


def caller_lists_of(register: Register) -> tuple[ListSpec, ...]:
    """The lists a caller may have in `register`'s key space, in table order."""
    return tuple(spec for spec in lists_of(register) if spec.per_caller)


CALLER_LISTS: tuple[ListSpec, ...] = caller_lists_of(Register.TELEFON)
"""The lists a caller may have against NIX-Telefon (the phone policy's overlay fields, in this order)."""

if any(sum(not spec.per_caller for spec in lists_of(register)) != 1 for register in Register):
    raise ImportError("every register needs exactly one shared (not per-caller) list: itself")
if set(_BY_KIND) != set(ListKind):
    raise ImportError(f"LIST_SPECS must have exactly one row per ListKind, has {sorted(_BY_KIND)}")


def spec_of(kind: ListKind) -> ListSpec:
    """The row of `kind` (every `ListKind` has one)."""
    return _BY_KIND[kind]
