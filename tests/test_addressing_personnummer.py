"""Personnummer parsing: edge cases, the bulk path against the scalar one, and two reference packages.

The oracles are the `personnummer` package (``personnummer.parse(...).format(long_format=True)``) and
python-stdnum (``stdnum.se.personnummer.validate`` + ``get_birth_date``), both with "today" pinned to the
reference date. Where the two agree, this parser must agree too, except for the disagreements that
docs/addresses.md lists; each of those has its own test below that also pins what the packages do, so the
page goes stale loudly if a package changes.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import numpy as np
import personnummer.personnummer as pn_package
import pytest
import stdnum.se.personnummer as stdnum_pn
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nixlookup.server.addressing import (
    PERSONNUMMER_PROBLEM_TEXT,
    PersonnummerProblem,
    parse_personnummer,
    parse_personnummer_many,
)
from nixlookup.v1.vocabulary import mask_number

REFERENCE = dt.date(2026, 3, 15)
EXAMPLES = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def luhn_digit(nine_digits: str) -> str:
    total = 0
    for position, char in enumerate(nine_digits):
        product = int(char) * (2 - position % 2)
        total += product - 9 if product > 9 else product
    return str((10 - total % 10) % 10)


def with_check(twelve_without_check: str) -> str:
    """YYYYMMDDNNN -> YYYYMMDDNNNC with the right check digit."""
    return twelve_without_check + luhn_digit(twelve_without_check[2:])


def parse(text: str) -> tuple[int, PersonnummerProblem]:
    parsed = parse_personnummer(text, reference_date=REFERENCE)
    return parsed.key, parsed.problem


# --- edge cases ----------------------------------------------------------------------------------------

VALID_FORMS = [
    # (written, key): 10 vs 12 digits, with and without separators and whitespace
    ("811228-9874", 198112289874),
    ("8112289874", 198112289874),
    ("198112289874", 198112289874),
    ("19811228-9874", 198112289874),
    ("  811228-9874\t", 198112289874),
    ("\u00a0198112289874\n", 198112289874),
    # 100 or more: "+" moves the 10-digit form back a century
    ("121212+1212", 191212121212),
    ("19121212+1212", 191212121212),  # 12 digits: the separator is ignored, the century is written
    ("19121212-1212", 191212121212),
    # born in 2026 before the reference date; 1926 would need "+" this year
    (f"{with_check('20260101002')[2:8]}-{with_check('20260101002')[8:]}", int(with_check("20260101002"))),
    # the calendar year a person turns 100 the separator is "+", even before the birthday
    (f"{with_check('19261231123')[2:8]}+{with_check('19261231123')[8:]}", int(with_check("19261231123"))),
    # samordningsnummer: day + 60, key keeps the written day
    (with_check("19811288987")[2:], int(with_check("19811288987"))),
    (with_check("20000289123"), int(with_check("20000289123"))),  # Feb 29 2000 + 60
    # Feb 29 in leap years (2000 is one, 1900 is not)
    (with_check("20000229123"), int(with_check("20000229123"))),
    (with_check("20240229123")[2:], int(with_check("20240229123"))),
    (with_check("18960229123"), int(with_check("18960229123"))),
]


@pytest.mark.parametrize(("text", "key"), VALID_FORMS)
def test_valid_forms_give_the_12_digit_key(text: str, key: int) -> None:
    """Every accepted way of writing a number gives YYYYMMDDNNNC, in both entry points."""
    assert parse(text) == (key, PersonnummerProblem.OK)
    batch = parse_personnummer_many([text], reference_date=REFERENCE)
    assert (int(batch.keys[0]), int(batch.problems[0])) == (key, 0)


INVALID_FORMS = [
    ("", PersonnummerProblem.EMPTY),
    ("   ", PersonnummerProblem.EMPTY),
    ("811228 9874", PersonnummerProblem.BAD_CHARACTER),
    ("811228:9874", PersonnummerProblem.BAD_CHARACTER),
    ("８１１２２８-９８７４", PersonnummerProblem.BAD_CHARACTER),  # full-width digits
    ("811228-9874\x00", PersonnummerProblem.BAD_CHARACTER),
    ("811228--9874", PersonnummerProblem.BAD_SEPARATOR),
    ("81-1228-9874", PersonnummerProblem.BAD_SEPARATOR),
    ("81122-89874", PersonnummerProblem.BAD_SEPARATOR),
    ("+8112289874", PersonnummerProblem.BAD_SEPARATOR),
    ("811228-987", PersonnummerProblem.BAD_LENGTH),
    ("19811228987", PersonnummerProblem.BAD_LENGTH),
    ("1981122898744", PersonnummerProblem.BAD_LENGTH),
    ("19811228-98744444444444444444444444444444", PersonnummerProblem.BAD_LENGTH),  # scalar-path row
    (with_check("17991231123"), PersonnummerProblem.OUT_OF_RANGE),
    (with_check("21000101123"), PersonnummerProblem.OUT_OF_RANGE),
    (with_check("19811328987"), PersonnummerProblem.BAD_DATE),
    (with_check("19810229123"), PersonnummerProblem.BAD_DATE),  # 1981 is no leap year
    (with_check("19000229123"), PersonnummerProblem.BAD_DATE),  # nor is 1900
    (with_check("19810289123"), PersonnummerProblem.BAD_DATE),  # samordningsnummer of Feb 29 1981
    (with_check("19811292123"), PersonnummerProblem.BAD_DATE),  # day 92 = 32 + 60
    (with_check("19811260123"), PersonnummerProblem.BAD_DATE),  # day 60 = 0 + 60
    (with_check("19811200123"), PersonnummerProblem.BAD_DATE),
    (with_check("20260316123"), PersonnummerProblem.FUTURE_DATE),  # the day after the reference date
    (with_check("20261231123")[2:], PersonnummerProblem.FUTURE_DATE),  # "-" means 2026, not 1926
    (with_check("19811228000"), PersonnummerProblem.SERIAL_ZERO),
    ("811228-9875", PersonnummerProblem.BAD_CHECK_DIGIT),
    ("198112289870", PersonnummerProblem.BAD_CHECK_DIGIT),
]


@pytest.mark.parametrize(("text", "problem"), INVALID_FORMS)
def test_invalid_forms_name_their_problem(text: str, problem: PersonnummerProblem) -> None:
    """Each rule has its own problem code, key 0, and a reason that does not repeat the number."""
    parsed = parse_personnummer(text, reference_date=REFERENCE)
    assert (parsed.key, parsed.problem) == (0, problem)
    assert not parsed.valid
    digits = "".join(char for char in text if char.isdigit())
    assert len(digits) < 6 or digits[:6] not in parsed.reason
    batch = parse_personnummer_many([text], reference_date=REFERENCE)
    assert (int(batch.keys[0]), int(batch.problems[0])) == (0, problem)


def test_every_problem_has_a_reason_without_digits() -> None:
    """The reason table covers every code, and no reason carries digits that could be part of a number."""
    assert set(PERSONNUMMER_PROBLEM_TEXT) == set(PersonnummerProblem)
    for problem, reason in PERSONNUMMER_PROBLEM_TEXT.items():
        assert reason
        assert not any(char.isdigit() for char in reason.replace("60", "").replace("000", "")
                       .replace("10 or 12", "").replace("18, 19 or 20", "")), problem  # fmt: skip


def test_century_inference_follows_the_reference_date() -> None:
    """The same 10-digit text names another century when the reference year crosses its 100th year."""
    text = with_check("19270101123")[2:]
    assert parse_personnummer(text, reference_date=dt.date(2026, 12, 31)).key == int(
        with_check("19270101123")
    )
    # in 2027 someone born in 1927 turns 100: "-" now means 2027, a future date on Jan 1 2027 it isn't
    assert parse_personnummer(text, reference_date=dt.date(2027, 1, 1)).key == int(with_check("20270101123"))
    plus = text[:6] + "+" + text[6:]
    assert parse_personnummer(plus, reference_date=dt.date(2026, 12, 31)).key == int(
        with_check("18270101123")
    )
    assert parse_personnummer(plus, reference_date=dt.date(2027, 1, 1)).key == int(with_check("19270101123"))


def test_mask_number_shows_only_the_last_two_digits() -> None:
    """Logs mention a personnummer through vocabulary.mask_number: the last two digits, nothing else."""
    assert mask_number("811228-9874") == "********74"
    assert mask_number("19811228-9874") == "**********74"
    assert mask_number(198112289874) == "**********74"


# --- bulk against scalar --------------------------------------------------------------------------------


def corpus_text(rng: random.Random) -> str:
    """Mostly near-valid numbers written every way, some mutated: the space the rules care about."""
    if rng.random() < 0.6:  # a real date, sometimes as a samordningsnummer
        born = dt.date(1880, 1, 1) + dt.timedelta(days=rng.randrange((REFERENCE - dt.date(1880, 1, 1)).days))
        year, month, day = born.year, born.month, born.day + (60 if rng.random() < 0.2 else 0)
    else:
        year, month = rng.randint(1750, 2130), rng.randint(0, 13)
        day = rng.choice([rng.randint(0, 32), rng.randint(58, 93)])
    serial = 0 if rng.random() < 0.05 else rng.randint(0, 999)
    body = f"{year:04d}{month:02d}{day:02d}{serial:03d}"
    full = body + (luhn_digit(body[2:]) if rng.random() < 0.8 else str(rng.randint(0, 9)))
    separator = rng.choice(["", "", "-", "+"])
    written = (full[2:8] if rng.random() < 0.5 else full[:8]) + separator + full[8:]
    if rng.random() < 0.1:  # a mutation: insert, drop or replace one character
        position = rng.randint(0, len(written))
        char = rng.choice("0123456789-+ :a\x00\u00a0８")
        written = written[:position] + char + written[position + rng.randint(0, 1) :]
    if rng.random() < 0.8:
        return written
    padding = ["", " ", "\t", "\n", "\u00a0", "\u2003", "  "]
    return rng.choice(padding) + written + rng.choice(padding)


WRITTEN_PERSONNUMMER = st.randoms(use_true_random=False).map(corpus_text)
ANY_TEXT = st.one_of(
    WRITTEN_PERSONNUMMER,
    st.text(alphabet=st.sampled_from("0123456789-+ \t\x00a٨"), max_size=16),
    st.text(max_size=40),
)


@EXAMPLES
@given(st.lists(ANY_TEXT, max_size=40), st.dates(dt.date(1990, 1, 1), dt.date(2090, 12, 31)))
@example(["x" * 200, "811228-9874" + " " * 40, "8112289874\x00", "19811228-9874"], REFERENCE)
@example(["8001610016\x00 ", "\x00811228-9874", "811228\x00-9874"], REFERENCE)
def test_bulk_agrees_with_scalar(texts: list[str], reference: dt.date) -> None:
    """parse_personnummer_many gives exactly parse_personnummer's key and problem, row for row."""
    batch = parse_personnummer_many(texts, reference_date=reference)
    assert batch.keys.dtype == np.uint64
    assert batch.problems.dtype == np.uint8
    expected = [parse_personnummer(text, reference_date=reference) for text in texts]
    assert batch.keys.tolist() == [parsed.key for parsed in expected]
    assert batch.problems.tolist() == [int(parsed.problem) for parsed in expected]


def test_bulk_over_chunk_boundaries() -> None:
    """Batches larger than one vectorised chunk keep their order."""
    texts = [with_check(f"1981{month:02d}{day:02d}{serial:03d}") for month in range(1, 13)
             for day in range(1, 29) for serial in range(1, 220)]  # fmt: skip
    texts[70_000] = "broken"
    batch = parse_personnummer_many(texts, reference_date=REFERENCE)
    assert batch.problems[70_000] == PersonnummerProblem.BAD_CHARACTER
    keep = np.ones(len(texts), dtype=bool)
    keep[70_000] = False
    assert batch.keys[keep].tolist() == [int(text) for position, text in enumerate(texts) if keep[position]]


# --- against the two packages ----------------------------------------------------------------------------


class _PinnedDate(dt.date):
    @classmethod
    def today(cls) -> _PinnedDate:
        return cls(REFERENCE.year, REFERENCE.month, REFERENCE.day)


@contextmanager
def packages_pinned_to_reference() -> Iterator[None]:
    """Both packages read the clock for the century; make their "today" the reference date."""
    with (
        mock.patch.object(pn_package, "_get_current_date", return_value=REFERENCE),
        mock.patch.object(stdnum_pn, "datetime", SimpleNamespace(date=_PinnedDate)),
    ):
        yield


def personnummer_package_key(text: str) -> int:
    try:
        return int(pn_package.parse(text).format(long_format=True))
    except Exception:  # the package raises several kinds (its own, ValueError, TypeError)
        return 0


def stdnum_key(text: str) -> int:
    try:
        compact = stdnum_pn.validate(text)
        if len(compact) == 13:
            return int(compact[:8] + compact[9:])
        century = stdnum_pn.get_birth_date(compact).year // 100
        return int(f"{century}{compact[:6]}{compact[7:]}")
    except Exception:  # ValidationError, and ValueError on odd input
        return 0


def documented_disagreement(text: str) -> str | None:
    """Which entry of docs/addresses.md's list covers a text on which both packages agree, if any."""
    stripped = text.strip()
    if any(not char.isascii() for char in stripped if char.isdigit()):
        return "non-ASCII digits"
    if stripped != text:
        return "surrounding whitespace"  # the personnummer package refuses it (but a trailing newline)
    parsed = parse_personnummer(text, reference_date=REFERENCE)
    if parsed.problem in (PersonnummerProblem.FUTURE_DATE, PersonnummerProblem.OUT_OF_RANGE):
        return parsed.problem.name
    if parsed.valid and parsed.key // 10_000 % 100 > 60:
        return "samordningsnummer"  # python-stdnum refuses every one
    return None


@EXAMPLES
@given(WRITTEN_PERSONNUMMER)
def test_agrees_with_both_packages_where_they_agree(text: str) -> None:
    """Where `personnummer` and python-stdnum give the same answer, so does this parser (or it is listed)."""
    with packages_pinned_to_reference():
        package, stdnum = personnummer_package_key(text), stdnum_key(text)
    if package != stdnum or documented_disagreement(text):
        return
    assert parse(text)[0] == package


def test_seeded_corpus_against_both_packages() -> None:
    """3000 seeded corpus texts: agreement where the packages agree, and the corpus has all three kinds."""
    rng = random.Random(15)
    texts = [corpus_text(rng) for _ in range(3000)]
    with packages_pinned_to_reference():
        pairs = [(personnummer_package_key(text), stdnum_key(text)) for text in texts]
    checked = 0
    for text, (package, stdnum) in zip(texts, pairs, strict=True):
        if package == stdnum and not documented_disagreement(text):
            assert parse(text)[0] == package, text
            checked += 1
    assert checked > 1500
    assert sum(1 for package, stdnum in pairs if package == stdnum != 0) > 800
    assert sum(1 for package, stdnum in pairs if package == stdnum == 0) > 500
    assert sum(1 for package, stdnum in pairs if package != stdnum) > 300


DISAGREEMENTS = [
    # (text, personnummer package valid?, python-stdnum valid?, our problem)
    (with_check("19811288987"), True, False, PersonnummerProblem.OK),  # samordningsnummer
    (with_check("19811228000"), False, True, PersonnummerProblem.SERIAL_ZERO),
    (with_check("20261231123"), True, True, PersonnummerProblem.FUTURE_DATE),
    (with_check("20261231123")[2:], True, True, PersonnummerProblem.FUTURE_DATE),
    (with_check("17991231123"), True, True, PersonnummerProblem.OUT_OF_RANGE),
    ("８１１２２８-９８７４", True, True, PersonnummerProblem.BAD_CHARACTER),
    ("\u0668\u0661\u0661\u0662\u0662\u0668-9874", True, False, PersonnummerProblem.BAD_CHARACTER),
    (" 811228-9874", False, True, PersonnummerProblem.OK),
    ("811228 9874", False, True, PersonnummerProblem.BAD_CHARACTER),
    ("811228:9874", False, True, PersonnummerProblem.BAD_CHARACTER),
    ("81-12-28-9874", False, True, PersonnummerProblem.BAD_SEPARATOR),
    ("811228--9874", False, True, PersonnummerProblem.BAD_SEPARATOR),
]


@pytest.mark.parametrize(("text", "package_valid", "stdnum_valid", "ours"), DISAGREEMENTS)
def test_documented_disagreements(text: str, package_valid: bool, stdnum_valid: bool,
                                  ours: PersonnummerProblem) -> None:  # fmt: skip
    """Each disagreement docs/addresses.md lists, as the packages and this parser decide it today."""
    with packages_pinned_to_reference():
        assert (personnummer_package_key(text) != 0) is package_valid
        assert (stdnum_key(text) != 0) is stdnum_valid
    assert parse(text)[1] is ours
