"""NIX-Adresserat through the real server: every mail rule row, variants of registered people, personnummer
edge cases, and the address register's reload and delta (CheckAddressee and CheckAddresseeStream)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import ServerFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.server.addressing import (
    SyntheticAddressRegister,
    generate_address_register,
    register_columns,
    write_register_csv,
    write_variants,
)
from nixlookup.server.policy._mail import MAIL_RULES
from nixlookup.v1 import lookup_pb2 as R  # noqa: N812 - short, as in test_rules_server
from nixlookup.v1 import lookup_pb2_grpc
from nixlookup.v1.vocabulary import MatchedOn, Purpose, Reason, Verdict

PEOPLE = 300
REGISTERED = range(0, 200)  # people 0..199 are in the register; 200..299 are not
OPTED_OUT, CUSTOMER, OLD_CUSTOMER, CONSENTING, CUSTOMER_OPTED_OUT = 10, 11, 12, 13, 14
NOT_REGISTERED = 250


@pytest.fixture(name="people", scope="module")
def fixture_people() -> SyntheticAddressRegister:
    return generate_address_register(PEOPLE, seed=1515)


def _columns(people: SyntheticAddressRegister) -> dict[str, list[str]]:
    return {name: values.tolist() for name, values in register_columns(people).items()}


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _reload(admin: lookup_pb2_grpc.AdminStub, kind: int, path: Path, caller: str, **extra: Any) -> None:
    admin.Reload(
        R.ReloadRequest(list=R.ListRef(kind=kind, caller=caller), path=str(path), **extra),  # type: ignore[arg-type]
        timeout=30,
    )


@pytest.fixture(name="mail_server", scope="module")
def fixture_mail_server(
    module_server_factory: ServerFactory,
    tmp_path_factory: pytest.TempPathFactory,
    people: SyntheticAddressRegister,
) -> ServerProcess:
    """The first 200 people registered; caller acme has a no-mail list, relationships and a consent."""
    directory = tmp_path_factory.mktemp("mail")
    registered = generate_address_register(PEOPLE, seed=1515)
    full = directory / "all.csv"
    write_register_csv(registered, full)
    with full.open(encoding="utf-8") as file:
        lines = file.read().splitlines()
    register = directory / "register.csv"
    register.write_text("\n".join(lines[: 1 + len(REGISTERED)]) + "\n", encoding="utf-8")
    server = module_server_factory(
        ["--data-dir", str(directory / "data"), "--address-register", str(register)]
    )
    columns = _columns(people)
    today = datetime.now(UTC).date()
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        header = ["personnummer", "name", "street", "postcode"]

        def row(person: int) -> list[str]:
            return [columns[name][person] for name in header]

        no_mail = _write(directory / "no-mail.csv", header, [row(OPTED_OUT), row(CUSTOMER_OPTED_OUT)])
        _reload(admin, R.LIST_KIND_MAIL_OPT_OUT, no_mail, "acme")
        ended_long_ago = (today - timedelta(days=400)).isoformat()
        relationships = _write(
            directory / "customers.csv",
            [*header, "until"],
            [[*row(CUSTOMER), ""], [*row(OLD_CUSTOMER), ended_long_ago], [*row(CUSTOMER_OPTED_OUT), ""]],
        )
        _reload(admin, R.LIST_KIND_MAIL_RELATIONSHIP, relationships, "acme", until_column="until")
        consent_until = (today + timedelta(days=20)).isoformat()
        consents = _write(directory / "consents.csv", [*header, "until"], [[*row(CONSENTING), consent_until]])
        _reload(admin, R.LIST_KIND_MAIL_CONSENT, consents, "acme", until_column="until")
    return server


@pytest.fixture(name="lookup")
def fixture_lookup(mail_server: ServerProcess) -> Iterator[lookup_pb2_grpc.LookupStub]:
    with grpc.insecure_channel(mail_server.target) as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


def _request(
    columns: dict[str, list[str]], person: int, *, by: str = "both", **extra: Any
) -> R.CheckAddresseeRequest:
    fields: dict[str, str] = {}
    if by in ("both", "personnummer"):
        fields["personnummer"] = columns["personnummer"][person]
    if by in ("both", "address"):
        fields.update({name: columns[name][person] for name in ("name", "street", "postcode", "city")})
    return R.CheckAddresseeRequest(**fields, **extra)


def _stream(
    lookup: lookup_pb2_grpc.LookupStub, requests: list[R.CheckAddresseeRequest], caller: str, purpose: int
) -> R.CheckAddresseeBatchResult:
    names = ("personnummer", "name", "street", "postcode", "city", "care_of")
    batch = R.CheckAddresseeBatch(caller=caller, purpose=purpose, want_details=True)  # type: ignore[arg-type]
    for name in names:
        getattr(batch, name).extend(getattr(request, name) for request in requests)
    results = list(lookup.CheckAddresseeStream(iter([batch]), timeout=30))
    assert len(results) == 1
    return results[0]


# (person, purpose, verdict, reason, matched_on) for caller acme: one case per rule row of MAIL_RULES
CASES = [
    (None, Purpose.SALES, Verdict.INVALID, Reason.INVALID_ADDRESSEE, MatchedOn.NONE),
    (OPTED_OUT, Purpose.MARKET_RESEARCH, Verdict.BLOCKED, Reason.COMPANY_OPT_OUT, MatchedOn.PERSONNUMMER),
    (5, Purpose.POLITICAL, Verdict.ALLOWED, Reason.EXEMPT_PURPOSE, MatchedOn.NONE),
    (CUSTOMER, Purpose.SALES, Verdict.ALLOWED, Reason.CUSTOMER_RELATIONSHIP, MatchedOn.PERSONNUMMER),
    (CONSENTING, Purpose.MARKETING, Verdict.ALLOWED, Reason.CONSENT, MatchedOn.PERSONNUMMER),
    (OLD_CUSTOMER, Purpose.SALES, Verdict.BLOCKED, Reason.NIX_ADRESSERAT_REGISTERED, MatchedOn.PERSONNUMMER),
    (NOT_REGISTERED, Purpose.SALES, Verdict.ALLOWED, Reason.NOT_REGISTERED, MatchedOn.NONE),
]


def test_the_cases_cover_every_rule_row() -> None:
    assert {case[3] for case in CASES} == {rule.reason for rule in MAIL_RULES}


def test_every_mail_rule_row_on_both_paths(
    lookup: lookup_pb2_grpc.LookupStub, people: SyntheticAddressRegister
) -> None:
    columns = _columns(people)
    requests = []
    for person, purpose, verdict, reason, matched in CASES:
        if person is None:
            request = R.CheckAddresseeRequest(
                personnummer="19121212-1213", caller="acme", purpose=int(purpose)
            )  # type: ignore[arg-type]
        else:
            request = _request(columns, person, caller="acme", purpose=int(purpose))
        answer = lookup.CheckAddressee(request, timeout=10)
        assert (answer.verdict, answer.reason, answer.matched_on) == (verdict, reason, matched), (
            person,
            answer.detail,
        )
        requests.append(request)
        result = _stream(lookup, [request], "acme", int(purpose))
        assert (result.reasons[0], result.matched_on[0]) == (reason, matched)
    invalid = lookup.CheckAddressee(requests[0], timeout=10)
    assert "check digit" in invalid.detail
    assert "1212" not in invalid.detail
    assert not invalid.HasField("valid_until")


def test_no_mail_list_beats_a_relationship_and_lists_belong_to_their_caller(
    lookup: lookup_pb2_grpc.LookupStub, people: SyntheticAddressRegister
) -> None:
    columns = _columns(people)
    both = lookup.CheckAddressee(_request(columns, CUSTOMER_OPTED_OUT, caller="acme"), timeout=10)
    assert both.reason == Reason.COMPANY_OPT_OUT
    other = lookup.CheckAddressee(_request(columns, CUSTOMER, caller="globex"), timeout=10)
    assert other.reason == Reason.NIX_ADRESSERAT_REGISTERED
    assert "no mail lists" in other.detail


def test_a_consent_caps_valid_until(
    lookup: lookup_pb2_grpc.LookupStub, people: SyntheticAddressRegister
) -> None:
    answer = lookup.CheckAddressee(_request(_columns(people), CONSENTING, caller="acme"), timeout=10)
    assert answer.valid_until.ToDatetime().date() == datetime.now(UTC).date() + timedelta(days=20)
    plain = lookup.CheckAddressee(_request(_columns(people), NOT_REGISTERED), timeout=10)
    register_date = plain.register_date.ToDatetime().date()
    assert plain.valid_until.ToDatetime().date() > register_date + timedelta(days=85)


def test_either_key_blocks(lookup: lookup_pb2_grpc.LookupStub, people: SyntheticAddressRegister) -> None:
    columns = _columns(people)
    by_pn = lookup.CheckAddressee(_request(columns, 3, by="personnummer"), timeout=10)
    by_address = lookup.CheckAddressee(_request(columns, 3, by="address"), timeout=10)
    assert (by_pn.reason, by_pn.matched_on) == (Reason.NIX_ADRESSERAT_REGISTERED, MatchedOn.PERSONNUMMER)
    assert (by_address.reason, by_address.matched_on) == (
        Reason.NIX_ADRESSERAT_REGISTERED,
        MatchedOn.NAME_AND_ADDRESS,
    )
    unregistered_pn = _request(columns, NOT_REGISTERED, by="personnummer")
    unregistered_pn.name, unregistered_pn.street, unregistered_pn.postcode = (
        columns["name"][3],
        columns["street"][3],
        columns["postcode"][3],
    )
    assert lookup.CheckAddressee(unregistered_pn, timeout=10).matched_on == MatchedOn.NAME_AND_ADDRESS


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("191212121212", True),  # 12 digits
        ("121212-1212", True),  # 10 digits with '-'
        ("121212+1212", True),  # '+': aged 100 or more
        ("1212121212", True),  # 10 digits, no separator
        ("19121272-1219", True),  # samordningsnummer (day + 60)
        ("19121212-1213", False),  # bad Luhn
        ("12121212", False),  # 8 digits
        ("", False),  # nothing at all and no address
    ],
)
def test_personnummer_edge_cases(lookup: lookup_pb2_grpc.LookupStub, text: str, valid: bool) -> None:
    answer = lookup.CheckAddressee(R.CheckAddresseeRequest(personnummer=text), timeout=10)
    assert (answer.verdict != Verdict.INVALID) == valid, answer.detail


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_every_variant_of_a_registered_person_is_blocked_and_others_are_not(
    lookup: lookup_pb2_grpc.LookupStub, people: SyntheticAddressRegister, seed: int
) -> None:
    chosen = np.random.default_rng(seed).choice(PEOPLE, size=40, replace=False).tolist()
    variants = write_variants(people, chosen, seed=seed)
    requests = [
        R.CheckAddresseeRequest(
            name=v.row.name,
            street=v.row.street,
            postcode=v.row.postcode,
            city=v.row.city,
            care_of=v.row.care_of,
        )
        for v in variants
    ]
    result = _stream(lookup, requests, "", int(Purpose.SALES))
    blocked = np.unpackbits(np.frombuffer(result.blocked, np.uint8), bitorder="little")[: len(requests)]
    for variant, is_blocked in zip(variants, blocked, strict=True):
        assert bool(is_blocked) == (variant.person in REGISTERED), (variant.person, variant.kinds)


def test_address_register_reload_and_delta_under_load(
    mail_server: ServerProcess,
    lookup: lookup_pb2_grpc.LookupStub,
    people: SyntheticAddressRegister,
    tmp_path: Path,
) -> None:
    """Reload the address register with everyone, then remove one person by delta, while checks run."""
    import threading

    columns = _columns(people)
    failures: list[BaseException] = []
    calls = 0
    stop = threading.Event()

    def check_loop() -> None:
        nonlocal calls
        with grpc.insecure_channel(mail_server.target) as channel:
            stub = lookup_pb2_grpc.LookupStub(channel)
            while not stop.is_set():
                try:
                    stub.CheckAddressee(_request(columns, 7), timeout=10)
                    calls += 1
                except grpc.RpcError as error:
                    failures.append(error)

    thread = threading.Thread(target=check_loop)
    thread.start()
    try:
        everyone = tmp_path / "everyone.csv"
        write_register_csv(people, everyone)
        with grpc.insecure_channel(mail_server.target) as channel:
            admin = lookup_pb2_grpc.AdminStub(channel)
            _reload(admin, R.LIST_KIND_ADDRESS_REGISTER, everyone, "", force=True)
            assert (
                lookup.CheckAddressee(_request(columns, NOT_REGISTERED), timeout=10).verdict
                == Verdict.BLOCKED
            )
            delta = admin.ApplyDelta(
                R.ApplyDeltaRequest(
                    list=R.ListRef(kind=R.LIST_KIND_ADDRESS_REGISTER),
                    remove_texts=[columns["personnummer"][NOT_REGISTERED]],
                ),
                timeout=30,
            )
            assert delta.removed == 1
            assert delta.invalid == 0
            answer = lookup.CheckAddressee(_request(columns, NOT_REGISTERED, by="personnummer"), timeout=10)
            assert answer.verdict == Verdict.ALLOWED
            assert answer.register_version == delta.version
            # restore the module's register (the first 200 people) for the other tests
            names = list(columns)
            back = _write(tmp_path / "back.csv", names, [[columns[n][p] for n in names] for p in REGISTERED])
            _reload(admin, R.LIST_KIND_ADDRESS_REGISTER, back, "", force=True)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert calls > 0


def test_today_is_a_date() -> None:  # the module's dates are UTC calendar dates
    assert isinstance(datetime.now(UTC).date(), date)


def test_the_clients_check_addressee_and_bulk(
    mail_server: ServerProcess, people: SyntheticAddressRegister
) -> None:
    """Client.check_addressee, the bulk iterator, AsyncClient's twin and `nixlookup check-addressee`."""
    import asyncio
    import subprocess
    import sys

    from nixlookup.client import AsyncClient, Client

    columns = _columns(people)
    rows = [{name: columns[name][person] for name in ("name", "street", "postcode")} for person in (3, 250)]
    with Client(mail_server.target) as client:
        one = client.check_addressee(personnummer=columns["personnummer"][3])
        assert one.reason is Reason.NIX_ADRESSERAT_REGISTERED
        assert one.matched_on is MatchedOn.PERSONNUMMER
        bulk = list(client.check_addressees([*rows, {"personnummer": "1"}], batch_size=2))
    assert [answer.verdict for answer in bulk] == [Verdict.BLOCKED, Verdict.ALLOWED, Verdict.INVALID]
    assert "personnummer" in bulk[2].detail

    async def twin() -> list[Verdict]:
        async with AsyncClient(mail_server.target) as client:
            first = await client.check_addressee(rows[0])
            rest = [answer.verdict async for answer in client.check_addressees(rows)]
            return [first.verdict, *rest]

    assert asyncio.run(twin()) == [Verdict.BLOCKED, Verdict.BLOCKED, Verdict.ALLOWED]
    command = [
        sys.executable,
        "-m",
        "nixlookup.client.cli",
        "check-addressee",
        "--target",
        mail_server.target,
    ]
    done = subprocess.run(
        [*command, "--personnummer", columns["personnummer"][3], "--json", "--fail-on-blocked"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert '"NIX_ADRESSERAT_REGISTERED"' in done.stdout
