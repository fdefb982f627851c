"""A seeded synthetic NIX-Adresserat register, and a writer of the ways a company list spells its people.

Theory of operation
-------------------
The real register is personal data, so demos, tests and benchmarks use this one. A person is a row of
small integers (`SyntheticAddressRegister`): indices into the word lists of `_synthetic_data` for one to
three given names, one or two surnames (hyphenated or not), a street, a house number and letter, a town
and its postcode, an optional ``c/o`` host, and a valid personnummer key (unique; about 2% are
samordningsnummer, about 1% belong to people aged 100 or more). Every column is drawn with numpy in one
go, so 1M people take a second or two and 10M fit in memory; the texts are built on demand, column by
column, with numpy's string functions (`register_columns`).

`write_variants` is the test oracle for matching: for chosen people it writes the row the way another
list would (upper case, ``Efternamn, Förnamn``, initials, extra or fewer given names, the second given
name alone, ``Storg.``, ``12b``, ``lgh 1102``, ``3 tr``, ``c/o``, ``SE-123 45``, no diacritics, the 10-digit
personnummer with ``-`` or ``+``, ...) and says which transformations it applied (`Variant.kinds`), so a
test knows which key must stay equal: the block key, unless a kind in `REGISTER_ONLY_KINDS` was applied
(then it is one of the person's register keys), and the exempt key unless a kind in
`EXEMPT_CHANGING_KINDS` was.

`write_register_csv` writes the register file format of issue 15:
``personnummer,name,street,postcode,city,care_of``.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from nixlookup.server.addressing._keys import AddressRow
from nixlookup.server.addressing._synthetic_data import (
    FEMALE_GIVEN_NAMES,
    GIVEN_NAMES,
    MALE_GIVEN_NAMES,
    STREET_WEIGHTS,
    STREETS,
    SURNAMES,
    TOWNS,
)
from nixlookup.server.addressing._variants import (
    EXEMPT_CHANGING_KINDS,
    REGISTER_ONLY_KINDS,
    Variant,
    write_variant,
)

__all__ = [
    "DEFAULT_ADDRESS_SEED",
    "DEFAULT_REFERENCE_DATE",
    "EXEMPT_CHANGING_KINDS",
    "REGISTER_CSV_HEADER",
    "REGISTER_ONLY_KINDS",
    "STREETS",
    "SyntheticAddressRegister",
    "Variant",
    "generate_address_register",
    "register_columns",
    "register_rows",
    "write_register_csv",
    "write_variants",
]

DEFAULT_ADDRESS_SEED: Final = 15
DEFAULT_REFERENCE_DATE: Final = date(2026, 12, 1)  # the "today" personnummer are valid against
REGISTER_CSV_HEADER: Final = ("personnummer", "name", "street", "postcode", "city", "care_of")
_STREET_WEIGHTS: Final = np.array(STREET_WEIGHTS, dtype=np.float64)
_TEXT: Final = np.dtypes.StringDType()
# Shares of the population, roughly as in the real register.
_SAMORDNING_SHARE: Final = 0.02
_CENTENARIAN_SHARE: Final = 0.01
_DOUBLE_SURNAME_SHARE: Final = 0.06
_LETTER_SHARE: Final = 0.15
_CARE_OF_SHARE: Final = 0.02


@dataclass(frozen=True, slots=True)
class SyntheticAddressRegister:
    """People as columns of indices (see module doc); texts come from `register_columns`."""

    personnummer: NDArray[np.uint64]  # YYYYMMDDNNNC
    given: NDArray[np.int16]  # (n, 3) indices into GIVEN_NAMES (of the person's sex), -1 = no such name
    surnames: NDArray[np.int16]  # (n, 2) indices into SURNAMES, -1 = single surname
    hyphenated: NDArray[np.bool_]  # a double surname written with a hyphen
    street: NDArray[np.int32]  # index into STREETS
    number: NDArray[np.int16]
    letter: NDArray[np.uint8]  # 0 = no house letter, else the upper-case letter's code
    postcode: NDArray[np.int32]
    town: NDArray[np.int16]  # index into TOWNS
    care_of: NDArray[np.int16]  # index into SURNAMES of the c/o host, -1 = none
    reference_date: date

    def __len__(self) -> int:
        return len(self.personnummer)


def _zipf_weights(count: int) -> NDArray[np.float64]:
    weights: NDArray[np.float64] = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** 0.8
    normalised: NDArray[np.float64] = weights / weights.sum()
    return normalised


def generate_address_register(
    size: int, *, seed: int = DEFAULT_ADDRESS_SEED, reference_date: date = DEFAULT_REFERENCE_DATE
) -> SyntheticAddressRegister:
    """`size` synthetic people (any size to 10M and beyond); the same arguments give the same register."""
    rng = np.random.default_rng(seed)
    personnummer = _unique_personnummer(rng, size, reference_date)
    given = _given_names(rng, personnummer)
    surnames = rng.choice(len(SURNAMES), size=(size, 2), p=_zipf_weights(len(SURNAMES))).astype(np.int16)
    surnames[rng.random(size) >= _DOUBLE_SURNAME_SHARE, 1] = -1
    town_weights = np.array([weight for _, _, weight in TOWNS], dtype=np.float64)
    town = rng.choice(len(TOWNS), size=size, p=town_weights / town_weights.sum()).astype(np.int16)
    prefix_count = np.array([len(prefixes) for _, prefixes, _ in TOWNS])
    prefix_table = np.array([prefixes[i % len(prefixes)] for _, prefixes, _ in TOWNS for i in range(32)])
    prefix = prefix_table.reshape(len(TOWNS), 32)[town, rng.integers(0, 1 << 20, size) % prefix_count[town]]
    letters = rng.integers(ord("A"), ord("D") + 1, size=size, dtype=np.uint8)
    return SyntheticAddressRegister(
        personnummer=personnummer,
        given=given,
        surnames=surnames,
        hyphenated=rng.random(size) < 0.6,
        street=rng.choice(len(STREETS), size=size, p=_STREET_WEIGHTS / _STREET_WEIGHTS.sum()).astype(
            np.int32
        ),
        number=(1 + (rng.random(size) ** 2 * 120).astype(np.int16)).astype(np.int16),
        letter=np.where(rng.random(size) < _LETTER_SHARE, letters, 0).astype(np.uint8),
        postcode=(prefix * 100 + rng.integers(10, 100, size)).astype(np.int32),
        town=town,
        care_of=_care_of_hosts(rng, size),
        reference_date=reference_date,
    )


def _given_names(rng: np.random.Generator, personnummer: NDArray[np.uint64]) -> NDArray[np.int16]:
    """One to three given names per person, from the list of the sex the birth serial records (odd: male)."""
    size = len(personnummer)
    female = rng.choice(len(FEMALE_GIVEN_NAMES), size=(size, 3), p=_zipf_weights(len(FEMALE_GIVEN_NAMES)))
    male = len(FEMALE_GIVEN_NAMES) + rng.choice(
        len(MALE_GIVEN_NAMES), size=(size, 3), p=_zipf_weights(len(MALE_GIVEN_NAMES))
    )
    is_male = (personnummer // np.uint64(10) % np.uint64(2)).astype(np.bool_)
    given = np.where(is_male[:, None], male, female).astype(np.int16)  # indices into GIVEN_NAMES
    count = rng.choice(np.array([1, 2, 3]), size=size, p=[0.25, 0.6, 0.15])
    given[count < 2, 1] = -1
    given[count < 3, 2] = -1
    return given


def _care_of_hosts(rng: np.random.Generator, size: int) -> NDArray[np.int16]:
    hosts = rng.integers(0, len(SURNAMES), size)
    return np.where(rng.random(size) < _CARE_OF_SHARE, hosts, -1).astype(np.int16)


def _unique_personnummer(rng: np.random.Generator, size: int, reference: date) -> NDArray[np.uint64]:
    keys = _draw_personnummer(rng, size, reference)
    while True:  # redraw the few duplicates (about 15% at 10M people, none below a few thousand)
        _, first = np.unique(keys, return_index=True)
        duplicate = np.ones(size, dtype=np.bool_)
        duplicate[first] = False
        if not duplicate.any():
            return keys
        keys[duplicate] = _draw_personnummer(rng, int(duplicate.sum()), reference)


def _draw_personnummer(rng: np.random.Generator, size: int, reference: date) -> NDArray[np.uint64]:
    today = np.datetime64(reference.isoformat(), "D")
    adults_from = np.datetime64(f"{reference.year - 99}-01-01", "D")  # "-" for everyone up to 99 ...
    centenarians_from = np.datetime64(f"{reference.year - 105}-01-01", "D")  # ... "+" from the year of 100
    centenarians_to = np.datetime64(f"{reference.year - 100}-12-31", "D")
    span = (today - adults_from).astype(np.int64)
    born = adults_from + rng.integers(0, span, size).astype("timedelta64[D]")
    old = rng.random(size) < _CENTENARIAN_SHARE
    old_span = (centenarians_to - centenarians_from).astype(np.int64) + 1
    born[old] = centenarians_from + rng.integers(0, old_span, int(old.sum())).astype("timedelta64[D]")
    year = born.astype("datetime64[Y]").astype(np.int64) + 1970
    month = born.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day = (born - born.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    day = np.where(rng.random(size) < _SAMORDNING_SHARE, day + 60, day)
    serial = rng.integers(1, 1000, size)
    nine = ((year % 100) * 10_000 + month * 100 + day) * 1000 + serial  # YYMMDDNNN
    digits = (nine[:, None] // 10 ** np.arange(8, -1, -1)) % 10
    doubled = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9])[digits[:, 0::2]].sum(axis=1)
    check = (10 - (doubled + digits[:, 1::2].sum(axis=1)) % 10) % 10
    keys: NDArray[np.uint64] = (((year * 10_000 + month * 100 + day) * 1000 + serial) * 10 + check).astype(
        np.uint64
    )
    return keys


def _texts(words: Sequence[str]) -> NDArray[Any]:
    return np.array(words, dtype=_TEXT)


def register_columns(
    register: SyntheticAddressRegister, start: int = 0, stop: int | None = None
) -> dict[str, NDArray[Any]]:
    """The register's rows ``start:stop`` as text columns named like `REGISTER_CSV_HEADER`."""
    part = slice(start, len(register) if stop is None else stop)
    given_words, surname_words = _texts(GIVEN_NAMES), _texts(SURNAMES)
    given = register.given[part]
    given_text = given_words[given[:, 0]]
    for column in (1, 2):
        given_text = np.where(
            given[:, column] >= 0, given_text + " " + given_words[given[:, column]], given_text
        )
    surnames = register.surnames[part]
    joiner = np.where(register.hyphenated[part], "-", " ").astype(_TEXT)
    surname_text = np.where(
        surnames[:, 1] >= 0,
        surname_words[surnames[:, 0]] + joiner + surname_words[surnames[:, 1]],
        surname_words[surnames[:, 0]],
    )
    letter = register.letter[part]
    letter_text = np.where(letter > 0, " " + letter.view("S1").astype(_TEXT), "")
    postcode = register.postcode[part]
    care_of = register.care_of[part]
    return {
        "personnummer": register.personnummer[part].astype(_TEXT),
        "name": given_text + " " + surname_text,
        "street": _texts(STREETS)[register.street[part]]
        + " "
        + register.number[part].astype(_TEXT)
        + letter_text,
        "postcode": (postcode // 100).astype(_TEXT)
        + " "
        + np.strings.zfill((postcode % 100).astype(_TEXT), 2),
        "city": _texts([town for town, _, _ in TOWNS])[register.town[part]],
        "care_of": np.where(care_of >= 0, "c/o " + surname_words[care_of], "").astype(_TEXT),
    }


def register_rows(
    register: SyntheticAddressRegister, start: int = 0, stop: int | None = None
) -> list[AddressRow]:
    """The register's rows ``start:stop`` as `AddressRow` (name, street, postcode, city, care_of)."""
    columns = register_columns(register, start, stop)
    texts = [columns[field].tolist() for field in REGISTER_CSV_HEADER[1:]]
    return [AddressRow(*row) for row in zip(*texts, strict=True)]


def write_register_csv(register: SyntheticAddressRegister, path: Path, *, chunk_rows: int = 1 << 18) -> None:
    """Write the register file (UTF-8, header `REGISTER_CSV_HEADER`), chunk by chunk."""
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(REGISTER_CSV_HEADER)
        for start in range(0, len(register), chunk_rows):
            columns = register_columns(register, start, start + chunk_rows)
            writer.writerows(zip(*(columns[field].tolist() for field in REGISTER_CSV_HEADER), strict=True))


# --- variants -------------------------------------------------------------------------------------------


def write_variants(register: SyntheticAddressRegister, people: Sequence[int], *, seed: int) -> list[Variant]:
    """One variant per entry of `people` (repeats allowed), each with one to four transformations."""
    rng = random.Random(seed)  # noqa: S311 - seeded synthetic data, nothing secret
    return [write_variant(register, person, rng) for person in people]
