"""Names, streets and postcodes to name-address keys: every written form, both paths, the variant oracle.

Table tests pin each Swedish form docs/addresses.md lists; property tests check that the fast paths
(folding, plain street lines, batches) agree with the general ones, that every variant the synthetic
generator writes of a person gets that person's key, and that distinct people do not collide.
"""

from __future__ import annotations

import struct
import unicodedata

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.server.addressing import (
    ADDRESS_PROBLEM_TEXT,
    EXEMPT_CHANGING_KINDS,
    NAME_ADDRESS_KEY_BIT,
    REGISTER_ONLY_KINDS,
    AddressKeyCache,
    AddressProblem,
    AddressRow,
    NormalisedAddressee,
    NormalisedStreet,
    block_key,
    exempt_key,
    generate_address_register,
    name_address_keys,
    normalise_city,
    normalise_name,
    normalise_postcode,
    normalise_row,
    normalise_street,
    register_keys,
    register_name_address_keys,
    register_rows,
    write_variants,
)
from nixlookup.server.addressing._fold import _fold_char_by_char, fold_text
from nixlookup.server.addressing._streets import normalise_street_in_full
from nixlookup.server.addressing._synthetic_data import GIVEN_NAMES, STREETS, SURNAMES
from nixlookup.server.addressing._xxh64 import xxh64_of_three_words

EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def person(name: str, street: str = "Storgatan 12 B", postcode: str = "123 45") -> NormalisedAddressee:
    found = normalise_row(AddressRow(name, street, postcode))
    assert isinstance(found, NormalisedAddressee), found
    return found


# --- names ---------------------------------------------------------------------------------------------

SAME_AS_ANNA_MARIA_SVENSSON_BERG = [
    "Anna Maria Svensson-Berg",
    "anna maria svensson-berg",
    "ANNA MARIA SVENSSON-BERG",
    "Anna Maria Svensson Berg",  # double surname without the hyphen
    "Svensson-Berg, Anna Maria",  # Efternamn, Förnamn
    "SVENSSON BERG, Anna",
    "Berg, Anna",
    "Anna Berg",  # the last surname alone, extra given names dropped
    "Anna Maria Lisa Svensson-Berg",  # an extra given name
    "A. Svensson-Berg",  # initials
    "A. M. Svensson-Berg",
    "A.M. Berg",
    "AM Berg",  # run-together initials read as one given word starting with A
    "  Anna   Maria\tSvensson-Berg ",  # whitespace
    "Anna-Maria Svensson-Berg",  # a hyphenated given name
    "Ánna Maria Svensson-Berg",  # a stray accent
    "Anna Maria Svensson\u2010Berg",  # a Unicode hyphen is punctuation: same tokens
]


@pytest.mark.parametrize("written", SAME_AS_ANNA_MARIA_SVENSSON_BERG)
def test_name_forms_give_the_same_block_key(written: str) -> None:
    """Every way of writing one name gives the block key of the registered form."""
    assert block_key(person(written)) == block_key(person("Anna Maria Svensson-Berg"))


@pytest.mark.parametrize(
    "written",
    ["Maria Berg", "Maria Svensson-Berg", "Anna Svensson", "Svensson, Maria", "M. Berg", "Berg, Maria Anna"],
)
def test_other_given_names_and_first_surnames_are_register_keys(written: str) -> None:
    """Lists that know her by a later given name or her first surname still find her in a block list."""
    registered = person("Anna Maria Svensson-Berg")
    assert block_key(person(written)) != block_key(registered)
    assert block_key(person(written)) in register_keys(registered)


@pytest.mark.parametrize(
    ("written", "same"),
    [
        ("Åsa Öberg", "Asa Oberg"),
        ("ÅSA ÖBERG", "åsa öberg"),
        ("A\u030asa O\u0308berg", "Åsa Öberg"),  # decomposed (NFD) vs composed
        ("Ａｓａ Öberg", "Asa Oberg"),  # full-width
        ("Émilie Lindé", "Emilie Linde"),
        ("Søren Ærø", "Soren Aro"),
        ("Sean O'Brien", "Sean OBrien"),
        ("Sean O’Brien", "sean obrien"),
        ("Anna De la Cruz", "De la Cruz, Anna"),
        ("Karl von Essen", "von Essen, Karl"),
    ],
)
def test_case_diacritics_unicode_and_punctuation_fold_away(written: str, same: str) -> None:
    """Case, diacritics, NFC/NFD/NFKC forms and apostrophes do not change the key."""
    assert block_key(person(written)) == block_key(person(same))


def test_different_people_at_one_address_differ_by_initial_or_surname() -> None:
    """Anna and Bertil Berg at one address have different keys; Anna and Anders Berg share the block key."""
    assert block_key(person("Anna Berg")) != block_key(person("Bertil Berg"))
    assert block_key(person("Anna Berg")) != block_key(person("Anna Lind"))
    assert block_key(person("Anna Berg")) == block_key(person("Anders Berg"))  # when in doubt, block
    assert exempt_key(person("Anna Berg")) != exempt_key(person("Anders Berg"))  # ... but never exempt


@pytest.mark.parametrize(
    ("written", "exempt_given"),
    [
        ("Anna Berg", "anna"),
        ("Berg, Anna", "anna"),
        ("Anna-Karin Berg", "anna-karin"),
        ("A. Berg", ""),
        ("A-K Berg", ""),
        ("Berg, A.", ""),
        ("ANNA KARIN BERG", "anna"),
    ],
)
def test_exempt_key_uses_the_whole_first_given_name(written: str, exempt_given: str) -> None:
    """The strict key holds the first given name as written whole; an initial gives no exempt key."""
    found = normalise_name(written)
    assert not isinstance(found, AddressProblem)
    assert found.exempt_given == exempt_given
    assert (exempt_key(person(written)) == 0) == (exempt_given == "")


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("", AddressProblem.NO_NAME),
        ("   ", AddressProblem.NO_NAME),
        ("Anna", AddressProblem.NO_SURNAME),
        ("Berg,", AddressProblem.NO_GIVEN_NAME),
        ("Berg, ", AddressProblem.NO_GIVEN_NAME),
        ("- ,", AddressProblem.NO_NAME),
        ("'", AddressProblem.NO_NAME),
    ],
)
def test_names_that_cannot_be_keyed(written: str, problem: AddressProblem) -> None:
    """One word, no given name or nothing at all is a problem, never a key that blocks a household."""
    assert normalise_name(written) is problem


# --- streets, postcodes, towns ---------------------------------------------------------------------------

STOREGATAN_12_B = [
    "Storgatan 12 B",
    "Storgatan 12B",
    "Storgatan 12b",
    "STORGATAN 12 B",
    "Storg. 12b",
    "Storgt 12 B",
    "Storgatan 12 B lgh 1102",
    "Storgatan 12 B, lgh 1102",
    "Storgatan 12 B lägenhet 1102",
    "Storgatan 12B, 3 tr",
    "Storgatan 12 B 3 tr",
    "Storgatan 12 B, 1 tr ned",
    "Storgatan 12 B, nb",
    "Storgatan 12 B bv",
    "c/o Berg, Storgatan 12 B",
    "C/O Berg, Storgatan 12 B, 2 tr",
    "  Storgatan  12 B  ",
    "Storgatan 12 B-C",
]


@pytest.mark.parametrize("written", STOREGATAN_12_B)
def test_street_forms(written: str) -> None:
    """Abbreviations, house letters, apartment, floor and c/o forms all read as Storgatan 12 B."""
    assert normalise_street(written) == NormalisedStreet("storgatan", "12", "b")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("Storgatan 12", ("storgatan", "12", "")),
        ("Storgatan 012", ("storgatan", "12", "")),
        ("Storgatan 12-14", ("storgatan", "12", "")),
        ("S:t Eriksgatan 5", ("sankteriksgatan", "5", "")),
        ("St. Eriksgatan 5", ("sankteriksgatan", "5", "")),
        ("St Eriksgatan 5", ("sankteriksgatan", "5", "")),
        ("Sankt Eriksg. 5", ("sankteriksgatan", "5", "")),
        ("1:a Långgatan 3", ("forstalanggatan", "3", "")),
        ("Första Långgatan 3", ("forstalanggatan", "3", "")),
        ("c/o Ek, 2:a Långgatan 3", ("andralanggatan", "3", "")),
        ("Stora Nygatan 7", ("storanygatan", "7", "")),
        ("Storanygatan 7", ("storanygatan", "7", "")),
        ("Björkv. 3 A", ("bjorkvagen", "3", "a")),
        ("Björkvg 3a", ("bjorkvagen", "3", "a")),
        ("Kvarngr. 9", ("kvarngrand", "9", "")),
        ("Östra Vägen 1", ("ostravagen", "1", "")),
        ("Lilla Gården", ("lillagarden", "", "")),
        ("Box 123", ("box", "123", "")),
    ],
)
def test_street_canonical_forms(written: str, expected: tuple[str, str, str]) -> None:
    """Street names are canonicalised: Sankt, ordinals, type abbreviations, spaces; numbers lose zeros."""
    assert normalise_street(written) == NormalisedStreet(*expected)


@pytest.mark.parametrize("written", ["", "   ", "12", "c/o Berg", "lgh 1102", "3 tr"])
def test_streets_that_cannot_be_keyed(written: str) -> None:
    """A street line without a street name is NO_STREET."""
    assert normalise_street(written) is AddressProblem.NO_STREET


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("123 45", 12345),
        ("12345", 12345),
        ("SE-123 45", 12345),
        ("se-12345", 12345),
        ("SE 123 45", 12345),
        ("S-123 45", 12345),
        (" 123\u00a045 ", 12345),
        ("981 99", 98199),
        ("", AddressProblem.NO_POSTCODE),
        ("012 34", AddressProblem.BAD_POSTCODE),
        ("1234", AddressProblem.BAD_POSTCODE),
        ("123 456", AddressProblem.BAD_POSTCODE),
        ("123  45", 12345),
        ("１２３ ４５", 12345),
        ("DK-1234", AddressProblem.BAD_POSTCODE),
        ("123 45 Stockholm", AddressProblem.BAD_POSTCODE),
    ],
)
def test_postcodes(written: str, expected: int | AddressProblem) -> None:
    """NNN NN, NNNNN, SE-NNN NN and S-NNN NN are one postcode; anything else names its problem."""
    assert normalise_postcode(written) == expected


def test_postal_town_is_folded_but_not_keyed() -> None:
    """The town is folded for display; it is not part of any key (the postcode names it)."""
    assert normalise_city(" GÖTEBORG ") == normalise_city("Göteborg") == "goteborg"
    a = normalise_row(AddressRow("Anna Berg", "Storgatan 1", "411 01", "Göteborg"))
    b = normalise_row(AddressRow("Anna Berg", "Storgatan 1", "411 01", "GBG", "c/o Lind"))
    assert isinstance(a, NormalisedAddressee)
    assert isinstance(b, NormalisedAddressee)
    assert block_key(a) == block_key(b)
    assert exempt_key(a) == exempt_key(b)


def test_house_letter_counts_only_for_the_exempt_key() -> None:
    """12 A and 12 B share the block key (when in doubt, block) but not the exempt key."""
    a, b = person("Anna Berg", "Storgatan 12 A"), person("Anna Berg", "Storgatan 12 B")
    assert block_key(a) == block_key(b)
    assert exempt_key(a) != exempt_key(b)
    assert block_key(a) != block_key(person("Anna Berg", "Storgatan 14 A"))
    assert block_key(a) != block_key(person("Anna Berg", "Storgatan 12 A", "123 46"))


def test_row_problems_come_in_field_order_with_reasons() -> None:
    """Name problems before street before postcode; an all-empty row is EMPTY; every code has a reason."""
    assert normalise_row(AddressRow("", "", "")) is AddressProblem.EMPTY
    assert normalise_row(AddressRow("Anna", "", "x")) is AddressProblem.NO_SURNAME
    assert normalise_row(AddressRow("Anna Berg", "", "x")) is AddressProblem.NO_STREET
    assert normalise_row(AddressRow("Anna Berg", "Storgatan 1", "x")) is AddressProblem.BAD_POSTCODE
    assert set(ADDRESS_PROBLEM_TEXT) == set(AddressProblem)


# --- keys ------------------------------------------------------------------------------------------------


def test_key_space_never_meets_personnummer_keys() -> None:
    """Name-address keys have bit 63 set: never 0, never below 2^40 where personnummer keys live."""
    people = register_rows(generate_address_register(2_000, seed=7))
    batch = name_address_keys(people)
    for keys in (batch.block_keys, batch.exempt_keys[batch.exempt_keys != 0]):
        assert np.all(keys & np.uint64(NAME_ADDRESS_KEY_BIT))
    assert int(batch.block_keys.min()) >= NAME_ADDRESS_KEY_BIT > 999_912_319_999


def test_keys_are_stable() -> None:
    """The key of a fixed row never changes between versions (stored registers depend on it)."""
    anna = person("Anna Maria Svensson-Berg", "Storgatan 12 B", "123 45")
    assert f"{block_key(anna):016x}" == "8aa24c98903a9ca0"
    assert f"{exempt_key(anna):016x}" == "ca4269b709c50fbb"


def test_vectorised_xxh64_is_xxh64() -> None:
    """The batch path's XXH64 of three uint64 words equals the xxhash package's, bit for bit."""
    rng = np.random.default_rng(3)
    words = [rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True) for _ in range(3)]
    for seed in (0, 0x4E49_5841_0000_0001, 2**64 - 1):
        expected = [
            xxhash.xxh64_intdigest(struct.pack("<QQQ", *map(int, row)), seed)
            for row in zip(*words, strict=True)
        ]
        assert xxh64_of_three_words(*words, seed).tolist() == expected


# --- fast paths against general ones --------------------------------------------------------------------

STREET_TEXT = st.one_of(
    st.builds(
        lambda name, number, letter, tail: f"{name} {number}{letter}{tail}",
        st.sampled_from(
            [
                "Storgatan",
                "Storg.",
                "S:t Eriksgatan",
                "Lgh",
                "nb gatan",
                "Ö\u0308stra v.",
                "B.v. väg",
                "Lilla Gården",
                "Ringvägen",
                "St Jakob",
                "Bottenvåning",
            ]
        ),
        st.integers(0, 200),
        st.sampled_from(["", " B", "b", " bv", " ß", " É", " tr", "-14", " A-C"]),
        st.sampled_from(["", " lgh 1102", ", 3 tr", " 2 tr ned", ", c/o Ek", " n.b.", "  "]),
    ),
    st.text(alphabet=st.sampled_from("Stogaän 12B,./:-ctrlgh\u00a0"), max_size=24),
    st.text(max_size=20),
)


@EXAMPLES
@given(STREET_TEXT)
def test_plain_street_fast_path_agrees_with_the_full_path(text: str) -> None:
    """normalise_street's shortcut for "name number letter" lines gives the full path's answer."""
    assert normalise_street(text) == normalise_street_in_full(text)


@EXAMPLES
@given(st.text(max_size=30), st.sampled_from(["", ",-.", ",./:-"]))
def test_fold_fast_path_agrees_with_char_by_char(text: str, keep: str) -> None:
    """fold_text's C-level path gives what the character-by-character rules give."""
    assert fold_text(text, keep) == _fold_char_by_char(unicodedata.normalize("NFKD", text.lower()), keep)


NAME_TEXT = st.one_of(
    st.lists(
        st.sampled_from(
            ["Anna", "ÅSA", "Berg", "Svensson-Berg", "A.", "m", "O'Brien", ",", "-", "de", "la", "Cruz", "Ø"]
        ),
        max_size=6,
    ).map(" ".join),
    st.text(max_size=20),
)
ROWS = st.lists(
    st.builds(
        AddressRow,
        NAME_TEXT,
        STREET_TEXT,
        st.sampled_from(["123 45", "12345", "SE-123 45", "", "012 34", "98765"]),
    ),
    max_size=25,
)


@EXAMPLES
@given(ROWS)
def test_batches_agree_with_the_scalar_functions(rows: list[AddressRow]) -> None:
    """name_address_keys and register_name_address_keys give the scalar keys and problems, row for row."""
    batch = name_address_keys(rows)
    stored = register_name_address_keys(rows)
    expected_register: list[tuple[int, int]] = []
    for position, row in enumerate(rows):
        found = normalise_row(row)
        if isinstance(found, AddressProblem):
            assert (batch.problems[position], batch.block_keys[position], batch.exempt_keys[position]) == (
                found,
                0,
                0,
            )
            continue
        assert batch.problems[position] == 0
        assert int(batch.block_keys[position]) == block_key(found)
        assert int(batch.exempt_keys[position]) == exempt_key(found)
        expected_register.extend((position, key) for key in register_keys(found))
    assert list(zip(stored.rows.tolist(), stored.keys.tolist(), strict=True)) == expected_register
    assert stored.problems.tolist() == batch.problems.tolist()


# --- the synthetic oracle -------------------------------------------------------------------------------

PEOPLE = generate_address_register(3_000, seed=11)
PEOPLE_ROWS = register_rows(PEOPLE)
PEOPLE_KEYS = name_address_keys(PEOPLE_ROWS)
PEOPLE_REGISTER = register_name_address_keys(PEOPLE_ROWS)


@EXAMPLES
@given(st.lists(st.integers(0, len(PEOPLE) - 1), min_size=1, max_size=20), st.integers(0, 2**32))
def test_every_variant_gets_its_persons_key(people: list[int], seed: int) -> None:
    """Each variant the generator writes is blocked by its person's entry; exemptions survive as promised."""
    variants = write_variants(PEOPLE, people, seed=seed)
    batch = name_address_keys([variant.row for variant in variants])
    for variant, block, exempt, problem in zip(
        variants, batch.block_keys.tolist(), batch.exempt_keys.tolist(), batch.problems.tolist(), strict=True
    ):
        assert problem == 0, variant
        stored = set(PEOPLE_REGISTER.keys[PEOPLE_REGISTER.rows == variant.person].tolist())
        assert block in stored, variant
        if not REGISTER_ONLY_KINDS & set(variant.kinds):
            assert block == int(PEOPLE_KEYS.block_keys[variant.person]), variant
        if not EXEMPT_CHANGING_KINDS & set(variant.kinds):
            assert exempt == int(PEOPLE_KEYS.exempt_keys[variant.person]), variant


def street_name_of(street: str) -> str:
    found = normalise_street(f"{street} 1")
    assert isinstance(found, NormalisedStreet)
    return found.name


def canonical_ids(texts: list[str]) -> np.typing.NDArray[np.int64]:
    """Per entry, an id that is equal exactly where the texts are."""
    first: dict[str, int] = {}
    return np.array([first.setdefault(text, len(first)) for text in texts], dtype=np.int64)


def test_distinct_people_do_not_collide() -> None:
    """200k generated people: as many block keys as distinct (surname, initial, street, number, postcode)."""
    register = generate_address_register(200_000, seed=5)
    keys = name_address_keys(register_rows(register)).block_keys
    initials = np.array([ord(fold_text(name)[0]) for name in GIVEN_NAMES])[register.given[:, 0]]
    surname_token = canonical_ids([fold_text(surname).split()[-1] for surname in SURNAMES])
    last_surname = np.where(register.surnames[:, 1] >= 0, register.surnames[:, 1], register.surnames[:, 0])
    street_name = canonical_ids([street_name_of(street) for street in STREETS])
    identities = np.stack(
        [
            surname_token[last_surname],
            initials,
            street_name[register.street],
            register.number,
            register.postcode,
        ],
        axis=1,
    )
    assert len(np.unique(identities, axis=0)) == len(np.unique(keys))
    assert len(np.unique(keys)) > 199_000  # people sharing an identity are rare, not the rule


@pytest.mark.parametrize("text", ["¼0", "Storgatan 12²", "Storgatan ½ 3", "Stor\u00adgatan 5", "Ringväg 4 ß"])
def test_fast_path_corner_cases(text: str) -> None:
    """Signs that fold into digits or several letters take the full path and agree with it."""
    assert normalise_street(text) == normalise_street_in_full(text)


@EXAMPLES
@given(st.lists(ROWS, min_size=1, max_size=4), st.integers(1, 40))
def test_a_cache_across_batches_changes_no_answer(batches: list[list[AddressRow]], max_texts: int) -> None:
    """Batches keyed through one AddressKeyCache (trimmed often) answer exactly as without one."""
    cache = AddressKeyCache(max_texts=max_texts)
    for rows in batches:
        cached, fresh = name_address_keys(rows, cache), name_address_keys(rows)
        assert cached.block_keys.tolist() == fresh.block_keys.tolist()
        assert cached.exempt_keys.tolist() == fresh.exempt_keys.tolist()
        assert cached.problems.tolist() == fresh.problems.tolist()
        assert (
            register_name_address_keys(rows, cache).keys.tolist()
            == register_name_address_keys(rows).keys.tolist()
        )
        assert max(len(cache.names), len(cache.streets), len(cache.folded_words)) <= max(
            max_texts, len(rows) * 8
        )
