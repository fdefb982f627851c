"""The synthetic NIX-Adresserat register: seeded, valid, shaped like the real one, written as a CSV file."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np

from nixlookup.server.addressing import (
    REGISTER_CSV_HEADER,
    AddressRow,
    PersonnummerProblem,
    generate_address_register,
    name_address_keys,
    normalise_postcode,
    parse_personnummer,
    parse_personnummer_many,
    register_columns,
    register_rows,
    write_register_csv,
    write_variants,
)
from nixlookup.server.addressing._synthetic_data import TOWNS

REGISTER = generate_address_register(20_000, seed=3)


def test_same_seed_same_register_other_seed_other_register() -> None:
    """Generation is deterministic in (size, seed) and the seed matters."""
    again = generate_address_register(20_000, seed=3)
    other = generate_address_register(20_000, seed=4)
    assert register_rows(again, 0, 500) == register_rows(REGISTER, 0, 500)
    assert np.array_equal(again.personnummer, REGISTER.personnummer)
    assert not np.array_equal(other.personnummer, REGISTER.personnummer)


def test_personnummer_are_valid_unique_and_include_the_edge_cases() -> None:
    """Every key parses back to itself; some are samordningsnummer, some belong to people aged 100+."""
    texts = register_columns(REGISTER)["personnummer"].tolist()
    batch = parse_personnummer_many(texts, reference_date=REGISTER.reference_date)
    assert not batch.problems.any()
    assert np.array_equal(batch.keys, REGISTER.personnummer)
    assert len(np.unique(REGISTER.personnummer)) == len(REGISTER)
    day = REGISTER.personnummer // 10_000 % 100
    year = REGISTER.personnummer // 100_000_000
    assert 0.01 < float(np.mean(day > 60)) < 0.03
    assert 0.005 < float(np.mean(year <= REGISTER.reference_date.year - 100)) < 0.02
    old = str(int(REGISTER.personnummer[np.flatnonzero(year <= REGISTER.reference_date.year - 100)[0]]))
    plus_form = f"{old[2:8]}+{old[8:]}"
    assert parse_personnummer(plus_form, reference_date=REGISTER.reference_date).key == int(old)
    assert parse_personnummer(
        plus_form.replace("+", "-"), reference_date=REGISTER.reference_date
    ).problem in (
        PersonnummerProblem.FUTURE_DATE,
        PersonnummerProblem.OK,  # then it names someone born a century later: another person
    )


def test_rows_look_swedish() -> None:
    """Double and hyphenated surnames, extra given names, house letters, diacritics, postcodes of the town."""
    rows = register_rows(REGISTER)
    names = [row.name for row in rows]
    assert sum("-" in name.split()[-1] for name in names) > 100  # hyphenated double surnames
    assert sum(len(name.split()) >= 3 for name in names) > 10_000  # extra given names
    assert sum(any(char in name for char in "åäöÅÄÖé") for name in names) > 1_000
    streets = Counter(row.street.rsplit(" ", 2)[0] for row in rows)
    assert len(streets) > 300
    assert any(street.endswith(("gatan", "vägen", "gränd", "stigen", "torget")) for street in streets)
    assert 0.1 < sum(row.street[-1].isalpha() for row in rows) / len(rows) < 0.2  # house letters
    towns = {town: prefixes for town, prefixes, _ in TOWNS}
    for row in rows[:2_000]:
        postcode = normalise_postcode(row.postcode)
        assert isinstance(postcode, int)
        assert postcode // 100 in towns[row.city]
    assert 0.01 < sum(bool(row.care_of) for row in rows) / len(rows) < 0.03
    assert not name_address_keys(rows).problems.any()


def test_csv_has_the_issue_header_and_reads_back(tmp_path: Path) -> None:
    """write_register_csv writes personnummer,name,street,postcode,city,care_of and every row."""
    small = generate_address_register(1_234, seed=8)
    path = tmp_path / "adresserat.csv"
    write_register_csv(small, path, chunk_rows=500)
    with path.open(encoding="utf-8", newline="") as file:
        read = list(csv.reader(file))
    assert (
        tuple(read[0])
        == REGISTER_CSV_HEADER
        == ("personnummer", "name", "street", "postcode", "city", "care_of")
    )
    assert len(read) == 1 + len(small)
    assert [AddressRow(*row[1:]) for row in read[1:]] == register_rows(small)
    assert [int(row[0]) for row in read[1:]] == small.personnummer.tolist()


def test_variants_cover_every_kind_and_parse() -> None:
    """Over a few thousand variants every transformation shows up, and every personnummer form parses back."""
    people = list(range(4_000))
    variants = write_variants(REGISTER, people, seed=1)
    kinds = Counter(kind for variant in variants for kind in variant.kinds)
    expected = {
        "upper",
        "lower",
        "title",
        "comma_order",
        "first_given_only",
        "extra_given",
        "initials",
        "second_given_only",
        "hyphen_as_space",
        "first_surname_only",
        "second_surname_only",
        "surname_hyphen_toggle",
        "no_diacritics",
        "street_abbreviation",
        "letter_attached",
        "no_letter",
        "apartment",
        "floor",
        "floor_after_comma",
        "care_of_in_street",
        "care_of_field",
        "postcode_compact",
        "postcode_se",
        "postcode_s",
        "spaces",
    }
    assert set(kinds) == expected
    texts = [variant.personnummer for variant in variants]
    assert {len(text) for text in texts} == {10, 11, 12, 13}
    assert any("+" in text for text in texts)
    parsed = parse_personnummer_many(texts, reference_date=REGISTER.reference_date)
    assert parsed.keys.tolist() == REGISTER.personnummer[people].tolist()
    assert write_variants(REGISTER, people[:50], seed=1) == variants[:50]


def test_reference_date_shapes_the_ages() -> None:
    """Nobody is born after the reference date, and nobody is older than 105."""
    early = generate_address_register(5_000, seed=2, reference_date=date(2001, 6, 30))
    born = early.personnummer // 10_000
    born_day = np.where(born % 100 > 60, born - 60, born)
    assert int(born_day.max()) <= 20010630
    assert int(born_day.min()) >= 18960101
