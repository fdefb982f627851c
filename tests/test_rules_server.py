"""The NIX rules end to end: a real server, caller lists set through Admin, answers by Check and CheckStream.

One server for the module, seeded with a small register; the caller "acme" gets an opt-out, relationships
(ongoing, ended 11 months ago, ended 13 months ago) and consents (live, expired) through `ApplyDelta`.
Every number is checked by unary `Check` (as e164 and as text) and by `CheckStream`, and the answers must
agree with each other and with the table. The server's clock is the real one, so end dates are set
relative to today (UTC).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import ServerFactory, write_register
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import cli_lists
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

EPOCH = date(1970, 1, 1)


def _today() -> date:
    return datetime.now(UTC).date()


def _day(value: date) -> int:
    return (value - EPOCH).days


OPTED_OUT = 46701110001
ONGOING_CUSTOMER = 46701110002
CUSTOMER_ENDED_11_MONTHS_AGO = 46701110003
CUSTOMER_ENDED_13_MONTHS_AGO = 46701110004
CONSENT_LIVE = 4681110005
CONSENT_EXPIRED = 4681110006
REGISTERED = 4681110007
UNREGISTERED_FIXED = 4681110008
UNREGISTERED_MOBILE = 46701110009
NUMBERS = (
    OPTED_OUT,
    ONGOING_CUSTOMER,
    CUSTOMER_ENDED_11_MONTHS_AGO,
    CUSTOMER_ENDED_13_MONTHS_AGO,
    CONSENT_LIVE,
    CONSENT_EXPIRED,
    REGISTERED,
    UNREGISTERED_FIXED,
    UNREGISTERED_MOBILE,
)
INVALID_TEXT = "12"
REGISTER = NUMBERS[:7]  # everything but the two unregistered numbers

R = lookup_pb2


@dataclass(frozen=True)
class Answer:
    """The parts of an answer unary and stream both carry."""

    reason: int
    blocked: bool
    invalid: bool
    mobile_flag: bool
    valid_until_day: int


@pytest.fixture(name="rules_server", scope="module")
def fixture_rules_server(
    module_server_factory: ServerFactory, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """A server whose register holds REGISTER and whose caller acme has all three lists."""
    directory = tmp_path_factory.mktemp("rules")
    register = write_register(directory / "register.txt", np.array(REGISTER, dtype=np.uint64))
    server = module_server_factory(["--data-dir", str(directory / "data"), "--register", str(register.path)])
    today = _today()
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        _apply(admin, R.LIST_KIND_OPT_OUT, {OPTED_OUT: 0})
        _apply(
            admin,
            R.LIST_KIND_RELATIONSHIP,
            {
                ONGOING_CUSTOMER: 0,
                CUSTOMER_ENDED_11_MONTHS_AGO: _day(today - timedelta(days=330)),
                CUSTOMER_ENDED_13_MONTHS_AGO: _day(today - timedelta(days=400)),
            },
        )
        _apply(
            admin,
            R.LIST_KIND_CONSENT,
            {
                CONSENT_LIVE: _day(today + timedelta(days=20)),
                CONSENT_EXPIRED: _day(today - timedelta(days=1)),
            },
        )
    return server


def _apply(
    admin: lookup_pb2_grpc.AdminStub, kind: int, entries: dict[int, int], caller: str = "acme"
) -> None:
    request = R.ApplyDeltaRequest(
        list=R.ListRef(kind=kind, caller=caller),  # type: ignore[arg-type]
        add_e164_le=np.array(list(entries), dtype="<u8").tobytes(),
    )
    if kind != R.LIST_KIND_OPT_OUT:  # an opt-out has no end date; the server refuses one
        request.add_until_days_le = np.array(list(entries.values()), dtype="<u4").tobytes()
    response = admin.ApplyDelta(request, timeout=10)
    assert response.added == len(entries)


@pytest.fixture(name="lookup")
def fixture_lookup(rules_server: ServerProcess) -> Iterator[lookup_pb2_grpc.LookupStub]:
    """A Lookup stub on a fresh channel to the module's server."""
    with grpc.insecure_channel(rules_server.target) as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


def _unary(lookup: lookup_pb2_grpc.LookupStub, number: int | str, caller: str, purpose: int) -> Answer:
    request = R.CheckRequest(caller=caller, purpose=purpose)  # type: ignore[arg-type]
    if isinstance(number, int):
        request.e164 = number
    else:
        request.text = number
    response = lookup.Check(request, timeout=5)
    valid_until_day = 0
    if response.HasField("valid_until"):
        valid_until_day = _day(response.valid_until.ToDatetime(tzinfo=UTC).date())
    return Answer(
        reason=response.reason,
        blocked=response.verdict == R.BLOCKED,
        invalid=response.verdict == R.INVALID,
        mobile_flag=response.mobile_flag,
        valid_until_day=valid_until_day,
    )


def _bits(packed: bytes, count: int) -> list[bool]:
    return [bool(b) for b in np.unpackbits(np.frombuffer(packed, np.uint8), count=count, bitorder="little")]


def _stream(
    lookup: lookup_pb2_grpc.LookupStub, numbers: list[int], caller: str, purpose: int
) -> list[Answer]:
    batch = R.CheckBatch(
        e164_le=np.array(numbers, dtype="<u8").tobytes(),
        caller=caller,
        purpose=purpose,  # type: ignore[arg-type]
        want_details=True,
    )
    (result,) = list(lookup.CheckStream(iter([batch]), timeout=10))
    count = len(numbers)
    reasons = list(result.reasons)
    blocked = _bits(result.blocked, count)
    invalid = _bits(result.invalid, count)
    flags = _bits(result.mobile_flag, count)
    days = np.frombuffer(result.valid_until_days_le, dtype="<u4").tolist()
    return [Answer(reasons[i], blocked[i], invalid[i], flags[i], days[i]) for i in range(count)]


SALES_EXPECTED = {
    OPTED_OUT: R.COMPANY_OPT_OUT,
    ONGOING_CUSTOMER: R.CUSTOMER_RELATIONSHIP,
    CUSTOMER_ENDED_11_MONTHS_AGO: R.CUSTOMER_RELATIONSHIP,
    CUSTOMER_ENDED_13_MONTHS_AGO: R.NIX_REGISTERED,
    CONSENT_LIVE: R.CONSENT,
    CONSENT_EXPIRED: R.NIX_REGISTERED,
    REGISTERED: R.NIX_REGISTERED,
    UNREGISTERED_FIXED: R.NOT_REGISTERED,
    UNREGISTERED_MOBILE: R.NOT_REGISTERED,
}


@pytest.mark.parametrize("number", NUMBERS, ids=lambda n: f"...{str(n)[-4:]}")
def test_each_rule_holds_for_acme_on_both_paths(lookup: lookup_pb2_grpc.LookupStub, number: int) -> None:
    """For caller acme selling, each number gets the table's reason, identically by Check and CheckStream."""
    unary = _unary(lookup, number, "acme", R.SALES)
    assert unary.reason == SALES_EXPECTED[number]
    assert _stream(lookup, [REGISTERED, number, UNREGISTERED_FIXED], "acme", R.SALES)[1] == unary


def test_opt_out_beats_exempt_purpose_and_exempt_beats_register(lookup: lookup_pb2_grpc.LookupStub) -> None:
    """For a political call the opt-out still blocks, every other valid number is EXEMPT_PURPOSE."""
    numbers = list(NUMBERS)
    answers = _stream(lookup, numbers, "acme", R.POLITICAL)
    assert answers[0].reason == R.COMPANY_OPT_OUT
    assert {answer.reason for answer in answers[1:]} == {R.EXEMPT_PURPOSE}
    assert answers == [_unary(lookup, number, "acme", R.POLITICAL) for number in numbers]


def test_lists_belong_to_their_caller(lookup: lookup_pb2_grpc.LookupStub) -> None:
    """Without a caller (or with another one) acme's lists do not apply: the register decides."""
    for caller in ("", "beta"):
        answers = _stream(lookup, list(NUMBERS), caller, R.SALES)
        expected = [R.NIX_REGISTERED] * len(REGISTER) + [R.NOT_REGISTERED] * 2
        assert [answer.reason for answer in answers] == expected


def test_valid_until_is_capped_by_a_relationship_ending_sooner(lookup: lookup_pb2_grpc.LookupStub) -> None:
    """A relationship ended 330 days ago (grace 365) makes the answer valid 35 days, not 2 months."""
    unary = _unary(lookup, CUSTOMER_ENDED_11_MONTHS_AGO, "acme", R.SALES)
    assert unary.valid_until_day == _day(_today() + timedelta(days=35))
    consent = _unary(lookup, CONSENT_LIVE, "acme", R.SALES)
    assert consent.valid_until_day == _day(_today() + timedelta(days=20))
    plain = _unary(lookup, UNREGISTERED_FIXED, "acme", R.SALES)
    assert plain.valid_until_day > _day(_today() + timedelta(days=55))


def test_mobile_flag_and_invalid_text(lookup: lookup_pb2_grpc.LookupStub) -> None:
    """An unregistered mobile is allowed but flagged, a customer's mobile is not; bad text is INVALID."""
    assert _unary(lookup, UNREGISTERED_MOBILE, "acme", R.SALES).mobile_flag
    assert not _unary(lookup, ONGOING_CUSTOMER, "acme", R.SALES).mobile_flag
    assert not _unary(lookup, UNREGISTERED_FIXED, "acme", R.SALES).mobile_flag
    invalid = _unary(lookup, INVALID_TEXT, "acme", R.SALES)
    assert (invalid.reason, invalid.invalid, invalid.valid_until_day) == (R.INVALID_NUMBER, True, 0)


def test_answers_name_the_lists_they_used(lookup: lookup_pb2_grpc.LookupStub) -> None:
    """A Check for acme names the register and acme's three lists with their versions."""
    response = lookup.Check(R.CheckRequest(e164=REGISTERED, caller="acme"), timeout=5)
    kinds = {used.list.kind for used in response.lists_used if used.list.caller == "acme"}
    assert kinds == {R.LIST_KIND_OPT_OUT, R.LIST_KIND_RELATIONSHIP, R.LIST_KIND_CONSENT}
    assert all(used.version for used in response.lists_used)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    numbers=st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=12),
    caller=st.sampled_from(["", "acme", "beta"]),
    purpose=st.sampled_from(list(R.Purpose.values())),
)
def test_unary_and_stream_agree(
    lookup: lookup_pb2_grpc.LookupStub, numbers: list[int], caller: str, purpose: int
) -> None:
    """For random batches, callers and purposes, CheckStream answers each number exactly as Check does."""
    assert _stream(lookup, numbers, caller, purpose) == [
        _unary(lookup, number, caller, purpose) for number in numbers
    ]


def _lists_cli(server: ServerProcess, *argv: str) -> int:
    return cli_lists.main([*argv[:2], "--target", server.target, *argv[2:]])


def test_lists_cli_add_remove_replace_drop(
    rules_server: ServerProcess, lookup: lookup_pb2_grpc.LookupStub, tmp_path: Path
) -> None:
    """`nixlookup lists` changes what the server answers for a caller, step by step."""
    text = "08-111 00 08"  # UNREGISTERED_FIXED as a person writes it

    def reason() -> int:
        return _unary(lookup, UNREGISTERED_FIXED, "gamma", R.SALES).reason

    assert reason() == R.NOT_REGISTERED
    assert _lists_cli(rules_server, "lists", "add", "--caller", "gamma", "--list-kind", "opt-out", text) == 0
    assert reason() == R.COMPANY_OPT_OUT
    # --kind: the deprecated spelling docs/rules.md used to show, still accepted
    assert _lists_cli(rules_server, "lists", "remove", "--caller", "gamma", "--kind", "opt-out", text) == 0
    assert reason() == R.NOT_REGISTERED

    until = (_today() + timedelta(days=10)).isoformat()
    registered_text = "+" + str(REGISTERED)
    assert (
        _lists_cli(
            rules_server, "lists", "add", "--caller", "gamma", "--list-kind", "consent", "--until", until,
            registered_text,
        )
        == 0
    )  # fmt: skip
    consent = _unary(lookup, REGISTERED, "gamma", R.SALES)
    assert (consent.reason, consent.valid_until_day) == (R.CONSENT, _day(_today() + timedelta(days=10)))

    customers = tmp_path / "customers.txt"
    customers.write_text(f"+{REGISTERED}\n+{UNREGISTERED_MOBILE}\n", encoding="ascii")
    assert (
        _lists_cli(
            rules_server, "lists", "replace", "--caller", "gamma", "--list-kind", "relationship",
            "--file", str(customers),
        )
        == 0
    )  # fmt: skip
    assert _unary(lookup, REGISTERED, "gamma", R.SALES).reason == R.CUSTOMER_RELATIONSHIP
    assert not _unary(lookup, UNREGISTERED_MOBILE, "gamma", R.SALES).mobile_flag

    assert _lists_cli(rules_server, "lists", "drop", "--caller", "gamma", "--list-kind", "relationship") == 0
    assert _unary(lookup, REGISTERED, "gamma", R.SALES).reason == R.CONSENT
    assert _lists_cli(rules_server, "lists", "drop", "--caller", "gamma", "--list-kind", "consent") == 0
    assert _unary(lookup, REGISTERED, "gamma", R.SALES).reason == R.NIX_REGISTERED


def test_lists_cli_refuses_nonsense_without_calling(rules_server: ServerProcess) -> None:
    """An end date on an opt-out, or a malformed date, is refused with exit 2 before any RPC."""
    argv = ["lists", "add", "--caller", "gamma", "--list-kind", "opt-out", "--until", "2026-01-01", "070111"]
    assert _lists_cli(rules_server, *argv) == 2
    argv = ["lists", "add", "--caller", "gamma", "--list-kind", "consent", "--until", "31/12/2026", "070111"]
    assert _lists_cli(rules_server, *argv) == 2


def test_wash_proof_verifies_and_catches_tampering(rules_server: ServerProcess, tmp_path: Path) -> None:
    """`wash` writes a proof `verify-proof` accepts, and rejects (exit 1) once the output changes."""
    source = tmp_path / "calls.csv"
    source.write_text(
        "phone\n" + "".join(f"+{number}\n" for number in NUMBERS) + f"{INVALID_TEXT}\n", encoding="utf-8"
    )
    output = tmp_path / "calls.washed.csv"
    cli = [sys.executable, "-m", "nixlookup.client.cli", "--target", rules_server.target]
    washed = subprocess.run(
        [
            *cli,
            "wash",
            str(source),
            "-o",
            str(output),
            "--caller",
            "acme",
            "--purpose",
            "sales",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert washed.returncode == 0, washed.stderr
    proof = Path(f"{output}.proof.json")
    verify = [*cli, "verify-proof", str(proof)]
    assert subprocess.run(verify, capture_output=True, timeout=60, check=False).returncode == 0
    record = json.loads(proof.read_text(encoding="utf-8"))
    assert record["rows"]["by_reason"]["COMPANY_OPT_OUT"] == 1
    assert record["rows"]["by_reason"]["INVALID_NUMBER"] == 1
    assert {item["kind"] for item in record["lists"]} == {"register", "opt-out", "relationship", "consent"}

    output.write_text(output.read_text(encoding="utf-8").replace("ALLOWED", "BLOCKED", 1), encoding="utf-8")
    tampered = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
    assert tampered.returncode == 1
    assert str(output) in tampered.stdout + tampered.stderr


def test_lists_show_names_a_callers_lists(
    rules_server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """`nixlookup lists show --caller acme` prints acme's three lists with versions and counts, no numbers."""
    assert _lists_cli(rules_server, "lists", "show", "--caller", "acme") == 0
    shown = capsys.readouterr().out
    for kind in ("opt-out", "relationship", "consent"):
        assert f"{kind}/acme: version " in shown
    assert str(OPTED_OUT)[-7:] not in shown
