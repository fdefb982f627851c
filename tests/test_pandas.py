"""`nixlookup.client.pandas.check_series` against a real server: one row per number, in order, typed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers
import pytest
from conftest import RegisterFile, ServerFactory, national

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import Client
from nixlookup.client.pandas import ANSWER_COLUMNS, check_series


@pytest.fixture(name="server", scope="module")
def fixture_server(module_server_factory: ServerFactory, small_register: RegisterFile) -> ServerProcess:
    """The small register."""
    return module_server_factory(["--register", str(small_register.path)])


def test_a_series_of_texts_comes_back_as_typed_answers_in_order(
    server: ServerProcess, small_register: RegisterFile
) -> None:
    """Mixed written forms, missing values and garbage over several batches, on a shuffled index: the
    DataFrame keeps the index and order and agrees with a set (blocked) and phonenumbers (validity)."""
    rng = np.random.default_rng(13)
    keys = np.concatenate([small_register.keys[:700], small_register.keys[:700] + np.uint64(1)])
    rng.shuffle(keys)
    texts: list[object] = [national(int(k)) if i % 2 else f"+{int(k)}" for i, k in enumerate(keys)]
    texts[3], texts[500], texts[901] = None, "not a number", "08-123 456 78"
    series = pd.Series(texts, index=rng.permutation(len(texts)) + 1000, name="phone")
    with Client(server.target, batch_size=300) as client:
        answers = check_series(client, series)
    assert list(answers.columns) == list(ANSWER_COLUMNS)
    assert answers.index.equals(series.index)
    for position, text in enumerate(texts):
        row = answers.iloc[position]
        parsed = phonenumbers.parse(text, "SE") if isinstance(text, str) and text[0] in "+0" else None
        if parsed is None or not phonenumbers.is_valid_number(parsed):
            assert (row["verdict"], row["reason"]) == ("INVALID", "INVALID_NUMBER"), text
            assert row["e164"] is pd.NA
            assert row["mobile_flag"] is pd.NA
            assert row["valid_until"] is pd.NaT
            continue
        key = int(f"{parsed.country_code}{parsed.national_number}")
        assert row["e164"] == key
        assert row["verdict"] == ("BLOCKED" if key in small_register.key_set else "ALLOWED")
        assert isinstance(row["valid_until"], pd.Timestamp)
    assert str(answers["verdict"].dtype) == "category"
    assert str(answers["e164"].dtype) == "UInt64"
    assert str(answers["mobile_flag"].dtype) == "boolean"
    assert answers.loc[answers.index[901], "line_type"] == "FIXED"
    assert answers.loc[answers.index[[3, 500, 901]], "problem"].tolist() == ["EMPTY", "BAD_CHARACTER", "OK"]
    allowed = answers["verdict"] == "ALLOWED"
    assert answers.loc[allowed, "mobile_flag"].sum() == allowed.sum() - 1  # all mobiles but 08-


def test_an_integer_series_goes_as_packed_keys_with_the_caller_purpose(
    server: ServerProcess, small_register: RegisterFile
) -> None:
    """A uint64 Series of E.164 keys is checked as keys; an exempt purpose allows the registered ones."""
    series = pd.Series(small_register.keys[:50].astype(np.uint64))
    with Client(server.target) as client:
        sales = check_series(client, series)
        research = check_series(client, series, purpose="market-research")
    assert (sales["verdict"] == "BLOCKED").all()
    assert (research["reason"] == "EXEMPT_PURPOSE").all()
    assert sales["e164"].astype("uint64").tolist() == small_register.keys[:50].tolist()
