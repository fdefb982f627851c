"""How another list writes a synthetic person: the transformations behind `write_variants`.

Each variant picks one to four groups of transformations (case, name order, given names, surnames,
diacritics, street form, house letter, what is inside the house, c/o, postcode form, whitespace) and one
transformation from each, and always writes the personnummer in a random valid form. The kinds it
applied are returned, so tests know which keys must survive (see `REGISTER_ONLY_KINDS` and
`EXEMPT_CHANGING_KINDS`).
"""

from __future__ import annotations

import random
import unicodedata
from typing import TYPE_CHECKING, Final, NamedTuple

from nixlookup.server.addressing._keys import AddressRow
from nixlookup.server.addressing._synthetic_data import GIVEN_NAMES, STREETS, SURNAMES, TOWNS

if TYPE_CHECKING:
    from nixlookup.server.addressing._synthetic import SyntheticAddressRegister

__all__ = ["EXEMPT_CHANGING_KINDS", "REGISTER_ONLY_KINDS", "Variant", "write_variant"]


class Variant(NamedTuple):
    """One person written another way: which person, the row, its personnummer text, what was changed."""

    person: int
    row: AddressRow
    personnummer: str
    kinds: tuple[str, ...]


REGISTER_ONLY_KINDS: Final = frozenset({"second_given_only", "first_surname_only"})
"""After these the block key is one of the person's register keys, not the block key itself."""
EXEMPT_CHANGING_KINDS: Final = frozenset(
    {"initials", "second_given_only", "first_surname_only", "no_letter", "hyphen_as_space"}
)
"""After these the exempt key may differ (by design: exemptions match strictly)."""

_GROUPS: Final = (
    ("upper", "lower", "title"),
    ("comma_order",),
    ("first_given_only", "extra_given", "initials", "second_given_only"),
    ("hyphen_as_space",),
    ("first_surname_only", "second_surname_only", "surname_hyphen_toggle"),
    ("no_diacritics",),
    ("street_abbreviation",),
    ("letter_attached", "no_letter"),
    ("apartment", "floor", "floor_after_comma"),
    ("care_of_in_street", "care_of_field"),
    ("postcode_compact", "postcode_se", "postcode_s"),
    ("spaces",),
)
_ABBREVIATIONS: Final = (  # (written in full, abbreviated), the first that applies is used
    ("Sankt ", "S:t "), ("Första ", "1:a "), ("Andra ", "2:a "), ("gatan", "g."), ("vägen", "v."),
    ("gränd", "gr."),
)  # fmt: skip


def _without_diacritics(text: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFD", text) if not unicodedata.combining(char))


def _inapplicable(givens: list[str], surnames: list[str], letter: str, street: str) -> set[str]:
    """The kinds this person offers nothing to (one given name cannot lose its others, ...)."""
    needs = {
        "first_given_only": len(givens) > 1,
        "second_given_only": len(givens) > 1,
        "hyphen_as_space": any("-" in given for given in givens),
        "first_surname_only": len(surnames) > 1,
        "second_surname_only": len(surnames) > 1,
        "surname_hyphen_toggle": len(surnames) > 1,
        "letter_attached": bool(letter),
        "no_letter": bool(letter),
        "street_abbreviation": any(full in street for full, _ in _ABBREVIATIONS),
    }
    return {kind for kind, applies in needs.items() if not applies}


def write_variant(register: SyntheticAddressRegister, person: int, rng: random.Random) -> Variant:
    """Person `person` of `register` written with one to four random transformations."""
    givens = [GIVEN_NAMES[index] for index in register.given[person].tolist() if index >= 0]
    surnames = [SURNAMES[index] for index in register.surnames[person].tolist() if index >= 0]
    letter = chr(int(register.letter[person])) if register.letter[person] else ""
    street = STREETS[int(register.street[person])]
    inapplicable = _inapplicable(givens, surnames, letter, street)
    groups = [[kind for kind in group if kind not in inapplicable] for group in _GROUPS]
    chosen = rng.sample([group for group in groups if group], rng.randint(1, 4))
    kinds = {rng.choice(group) for group in chosen}
    hyphenated = bool(register.hyphenated[person]) != ("surname_hyphen_toggle" in kinds)
    name = _name_line(givens, surnames, hyphenated, kinds, rng)
    street_line = _street_line(street, int(register.number[person]), letter, kinds, rng)
    host = SURNAMES[int(register.care_of[person])] if register.care_of[person] >= 0 else rng.choice(SURNAMES)
    care_of = f"c/o {host}" if register.care_of[person] >= 0 or "care_of_field" in kinds else ""
    if "care_of_in_street" in kinds:
        street_line, care_of = f"c/o {host}, {street_line}", ""
    texts = [name, street_line, TOWNS[int(register.town[person])][0]]
    if "no_diacritics" in kinds:
        texts = [_without_diacritics(text) for text in texts]
    for kind, change in (("upper", str.upper), ("lower", str.lower), ("title", str.title)):
        if kind in kinds:
            texts = [change(text) for text in texts]
    if "spaces" in kinds:
        texts = [f" {text.replace(' ', '  ')} " for text in texts]
    name, street_line, city = texts
    return Variant(
        person,
        AddressRow(name, street_line, _postcode_line(int(register.postcode[person]), kinds), city, care_of),
        _personnummer_text(register, person, rng),
        tuple(sorted(kinds)),
    )


def _name_line(givens: list[str], surnames: list[str], hyphenated: bool, kinds: set[str],
               rng: random.Random) -> str:  # fmt: skip
    if "first_surname_only" in kinds:
        surnames = surnames[:1]
    elif "second_surname_only" in kinds:
        surnames = surnames[1:]
    if "first_given_only" in kinds:
        givens = givens[:1]
    elif "second_given_only" in kinds:
        givens = givens[1:2]
    elif "extra_given" in kinds:
        givens = [*givens, rng.choice(GIVEN_NAMES)]
    if "hyphen_as_space" in kinds:
        givens = [given.replace("-", " ") for given in givens]
    if "initials" in kinds:
        given_text = rng.choice([" ", ""]).join(given[0] + rng.choice([".", ""]) for given in givens)
    else:
        given_text = " ".join(givens)
    surname_text = ("-" if hyphenated else " ").join(surnames)
    return f"{surname_text}, {given_text}" if "comma_order" in kinds else f"{given_text} {surname_text}"


def _street_line(street: str, number: int, letter: str, kinds: set[str], rng: random.Random) -> str:
    if "street_abbreviation" in kinds:
        full, short = next((full, short) for full, short in _ABBREVIATIONS if full in street)
        street = street.replace(full, short, 1)
    if "no_letter" in kinds:
        house = str(number)
    elif "letter_attached" in kinds:
        house = f"{number}{letter.lower()}"
    else:
        house = f"{number} {letter}".rstrip()
    inside = {"apartment": f" lgh {rng.randint(1001, 1704)}", "floor": f" {rng.randint(1, 9)} tr",
              "floor_after_comma": f", {rng.randint(1, 9)} tr"}  # fmt: skip
    return f"{street} {house}" + "".join(inside[kind] for kind in sorted(kinds) if kind in inside)


def _postcode_line(postcode: int, kinds: set[str]) -> str:
    spaced = f"{postcode // 100} {postcode % 100:02d}"
    forms = {
        "postcode_compact": f"{postcode:05d}",
        "postcode_se": f"SE-{spaced}",
        "postcode_s": f"S-{spaced}",
    }
    return next((forms[kind] for kind in sorted(kinds) if kind in forms), spaced)


def _personnummer_text(register: SyntheticAddressRegister, person: int, rng: random.Random) -> str:
    twelve = str(int(register.personnummer[person]))
    centenarian = int(twelve[:4]) <= register.reference_date.year - 100
    forms = [twelve, f"{twelve[:8]}-{twelve[8:]}", f"{twelve[2:8]}{'+' if centenarian else '-'}{twelve[8:]}"]
    if not centenarian:
        forms.append(twelve[2:])
    return rng.choice(forms)
