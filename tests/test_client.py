"""The Python client (sync and asyncio) against a real server: answers, order, bounded streaming, errors."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import SERVER_ONLY_PACKAGES, RegisterFile, ServerFactory, national

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.client import (
    AsyncClient,
    CheckResult,
    Client,
    InvalidRequestError,
    LineType,
    Purpose,
    Reason,
    RetryPolicy,
    ServerUnavailableError,
    Verdict,
)
from nixlookup.v1 import lookup_pb2


@pytest.fixture(name="server", scope="module")
def fixture_server(module_server_factory: ServerFactory, small_register: RegisterFile) -> ServerProcess:
    """One server for the module, serving the small register, with a small batch limit to test against."""
    return module_server_factory(["--register", str(small_register.path), "--max-batch", "5000"])


@pytest.fixture(name="client", scope="module")
def fixture_client(server: ServerProcess) -> Iterator[Client]:
    """One sync client (one channel) for the module."""
    with Client(server.target, batch_size=700, max_in_flight=3) as client:
        yield client


def test_check_returns_a_typed_result(client: Client, small_register: RegisterFile) -> None:
    """check() by text and by key gives the register's verdict as enums, dates and versions."""
    member = int(small_register.keys[0])
    blocked = client.check(national(member))
    allowed = client.check(46_709_999_999 if 46_709_999_999 not in small_register.key_set else 46_709_999_998)
    assert (blocked.verdict, blocked.reason, blocked.e164) == (Verdict.BLOCKED, Reason.NIX_REGISTERED, member)
    assert blocked.blocked
    assert not blocked.allowed
    assert blocked.line_type is LineType.MOBILE
    assert allowed.verdict is Verdict.ALLOWED
    assert allowed.valid_until is not None
    assert allowed.register_date is not None
    assert allowed.valid_until > allowed.register_date
    assert blocked.register_version == client.register_info().register.version


def test_exempt_purpose_is_allowed_even_when_registered(client: Client, small_register: RegisterFile) -> None:
    """The purpose reaches the policy: market research may call a registered number."""
    member = int(small_register.keys[1])
    result = client.check(member, purpose="market-research")
    assert (result.verdict, result.reason) == (Verdict.ALLOWED, Reason.EXEMPT_PURPOSE)


def test_check_many_keeps_input_order_over_mixed_inputs(client: Client, small_register: RegisterFile) -> None:
    """check_many over strs, ints and bad input yields one answer per input, in order, agreeing with a set."""
    rng = np.random.default_rng(3)
    randoms = (46_700_000_000 + rng.integers(0, 10**7, 1500)).astype(np.uint64)
    keys = np.concatenate([small_register.keys[:1500], randoms])
    rng.shuffle(keys)
    inputs: list[str | int] = []
    for position, key in enumerate(keys.tolist()):
        inputs.append(key if position % 3 == 0 else national(key) if position % 3 == 1 else f"+{key}")
    inputs[10] = "not a number"
    inputs[2000] = ""
    results = list(client.check_many(inputs))
    assert [r.number for r in results] == inputs
    for position, (result, key) in enumerate(zip(results, keys.tolist(), strict=True)):
        if position in (10, 2000):
            assert (result.verdict, result.e164) == (Verdict.INVALID, 0)
            continue
        assert result.e164 == key
        assert (result.verdict is Verdict.BLOCKED) == (key in small_register.key_set)


def test_check_batches_takes_a_numpy_array_as_packed_keys(
    client: Client, small_register: RegisterFile
) -> None:
    """A uint64 array is streamed as packed keys and the batches' bits agree with a set."""
    keys = np.concatenate([small_register.keys, small_register.keys + np.uint64(1)])
    expected = np.array([k in small_register.key_set for k in keys.tolist()])
    batches = list(client.check_batches(keys, want_details=False))
    assert sum(batch.count for batch in batches) == keys.size
    assert np.array_equal(np.concatenate([b.blocked for b in batches]), expected)
    assert all(batch.reasons is None for batch in batches)


def test_a_generator_input_is_read_lazily_with_bounded_batches_in_flight(client: Client) -> None:
    """Consuming one batch pulls at most (max_in_flight + 1) batches of input, not the whole input."""
    pulled = 0

    def numbers() -> Iterator[int]:
        nonlocal pulled
        for offset in range(700 * 200):
            pulled += 1
            yield 46_701_000_000 + offset

    batches = client.check_batches(numbers())
    first = next(batches)
    pulled_after_first = pulled
    rest = sum(batch.count for batch in batches)
    assert first.count == 700
    assert pulled_after_first <= 700 * (3 + 2)
    assert first.count + rest == 700 * 200


def test_a_failing_input_surfaces_its_own_error(client: Client) -> None:
    """An exception raised by the caller's iterable ends the stream and reaches the caller unchanged."""

    def numbers() -> Iterator[str]:
        yield from ["070-123 45 67"] * 1000
        raise LookupError("the caller's source broke")

    with pytest.raises(LookupError, match="source broke"):
        list(client.check_many(numbers()))


def test_server_refusals_are_typed_errors_with_advice(server: ServerProcess) -> None:
    """A batch over the server's limit raises InvalidRequestError carrying the status and the limit."""
    with Client(server.target, batch_size=6000) as client, pytest.raises(InvalidRequestError) as caught:
        list(client.check_batches(np.arange(46_700_000_000, 46_700_006_000, dtype=np.uint64)))
    assert caught.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "5000" in str(caught.value)
    assert "fix the field or limit" in str(caught.value)


def _dead_target() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_an_unreachable_server_is_retried_then_reported(small_register: RegisterFile) -> None:
    """UNAVAILABLE is retried with backoff, then raised as ServerUnavailableError naming the target."""
    target = _dead_target()
    retry = RetryPolicy(attempts=3, initial_backoff=0.05)
    with Client(target, timeout=2, retry=retry) as client, pytest.raises(ServerUnavailableError) as caught:
        client.check("070-123 45 67")
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert target in str(caught.value)
    assert "1234567" not in str(caught.value)


def test_unary_retries_are_grpcs_own_service_config(server: ServerProcess) -> None:
    """The channel carries a retryPolicy for Check and GetRegisterInfo (UNAVAILABLE only, capped at grpc's
    5 tries), the real server accepts calls on it, and a policy of one try configures no retries."""
    retry = RetryPolicy(attempts=9, initial_backoff=0.25, max_backoff=3.0, multiplier=1.5)
    with Client(server.target, retry=retry) as client:
        options = dict(client.channel_options)
        assert client.check("070-123 45 67").verdict in (Verdict.ALLOWED, Verdict.BLOCKED)
    assert options["grpc.enable_retries"] == 1
    (method,) = json.loads(str(options["grpc.service_config"]))["methodConfig"]
    assert {(name["service"], name["method"]) for name in method["name"]} == {
        ("nixlookup.v1.Lookup", "Check"),
        ("nixlookup.v1.Lookup", "GetRegisterInfo"),
    }
    assert method["retryPolicy"] == {
        "maxAttempts": 5,
        "initialBackoff": "0.250s",
        "maxBackoff": "3.000s",
        "backoffMultiplier": 1.5,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    with Client(server.target, retry=RetryPolicy(attempts=1)) as single:
        (plain,) = json.loads(str(dict(single.channel_options)["grpc.service_config"]))["methodConfig"]
    assert "retryPolicy" not in plain


def test_a_check_sent_while_the_server_is_down_is_answered_after_its_restart(
    server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """grpc's retryPolicy carries a Check over a restart: the first try meets a closed port (UNAVAILABLE),
    a later one reaches the restarted server. (Backoffs of seconds, so the tries outlast the restart.)"""
    first = server_factory(["--register", str(small_register.path)])
    retry = RetryPolicy(attempts=5, initial_backoff=3.0, max_backoff=12.0)
    reconnect_fast = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500))
    member = int(small_register.keys[5])
    answers: list[CheckResult | BaseException] = []
    with Client(first.target, timeout=60, retry=retry, options=reconnect_fast) as client:
        assert client.check(member).verdict is Verdict.BLOCKED
        first.stop(signal.SIGKILL)

        def check() -> None:
            try:
                answers.append(client.check(member))
            except BaseException as error:  # handed to the test thread
                answers.append(error)

        caller = threading.Thread(target=check)
        caller.start()
        server_factory(["--listen", f"127.0.0.1:{first.port}", "--register", str(small_register.path)])
        caller.join(timeout=60)
    (answer,) = answers
    assert isinstance(answer, CheckResult), answer
    assert (answer.verdict, answer.e164) == (Verdict.BLOCKED, member)


def test_a_stream_survives_a_server_crash_between_batches(
    server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """A stream cut by UNAVAILABLE (server killed, restarted) resumes with the unanswered batches."""
    first = server_factory(["--register", str(small_register.path)])
    keys = np.concatenate([small_register.keys[:2000], small_register.keys[:2000] + np.uint64(1)])
    expected = np.array([k in small_register.key_set for k in keys.tolist()])
    retry = RetryPolicy(attempts=60, initial_backoff=0.05, max_backoff=0.25)
    with Client(first.target, batch_size=500, max_in_flight=2, retry=retry) as client:
        batches = client.check_batches(keys, want_details=False)
        results = [next(batches)]
        first.stop(signal.SIGKILL)
        server_factory(["--listen", f"127.0.0.1:{first.port}", "--register", str(small_register.path)])
        results.extend(batches)
    assert [batch.count for batch in results] == [500] * 8
    assert np.array_equal(np.concatenate([batch.blocked for batch in results]), expected)


def test_async_client_agrees_with_the_sync_client(
    server: ServerProcess, small_register: RegisterFile
) -> None:
    """AsyncClient's check, check_many (sync and async input) and register_info match the sync client's."""
    inputs: list[str | int] = [national(int(k)) for k in small_register.keys[:900]] + list(range(5))

    async def numbers() -> AsyncIterator[str | int]:
        for item in inputs:
            yield item

    async def run() -> tuple[Verdict, list[Verdict], list[Verdict], str]:
        async with AsyncClient(server.target, batch_size=250, max_in_flight=2) as client:
            one = await client.check(int(small_register.keys[0]))
            from_list = [r.verdict async for r in client.check_many(inputs)]
            from_async = [r.verdict async for r in client.check_many(numbers())]
            info = await client.register_info()
            return one.verdict, from_list, from_async, info.register.version

    one, from_list, from_async, version = asyncio.run(run())
    with Client(server.target) as sync_client:
        expected = [r.verdict for r in sync_client.check_many(inputs)]
        assert version == sync_client.register_info().register.version
    assert one is Verdict.BLOCKED
    assert from_list == expected == from_async
    assert expected[:900] == [Verdict.BLOCKED] * 900
    assert expected[900:] == [Verdict.INVALID] * 5


def test_async_client_reports_an_unreachable_server() -> None:
    """The asyncio client raises the same typed error after its retries."""

    async def run() -> None:
        async with AsyncClient(_dead_target(), retry=RetryPolicy(attempts=2, initial_backoff=0.05)) as client:
            await client.check("070-123 45 67")

    with pytest.raises(ServerUnavailableError):
        asyncio.run(run())


def test_purpose_parsing() -> None:
    """Purposes parse from names in any case."""
    assert Purpose.parse("market-research") is Purpose.MARKET_RESEARCH
    assert Purpose.parse("SALES") is Purpose.SALES
    assert Purpose.parse(2) is Purpose.FUNDRAISING
    with pytest.raises(ValueError, match="unknown purpose"):
        Purpose.parse("cold-calling")


@pytest.mark.parametrize(
    ("client_enum", "wire_enum", "prefix"),
    [
        (Verdict, lookup_pb2.Verdict, ""),
        (Reason, lookup_pb2.Reason, ""),
        (LineType, lookup_pb2.LineType, ""),
        (Purpose, lookup_pb2.Purpose, ""),
    ],
)
def test_client_enums_equal_the_wire_enums(client_enum: type, wire_enum: object, prefix: str) -> None:
    """The client's own enums have exactly the proto's names and values (UNSPECIFIED spelled per enum)."""
    wire = dict(wire_enum.items())  # type: ignore[attr-defined]
    ours = {member.name: int(member) for member in client_enum}  # type: ignore[attr-defined]
    unspecified = [name for name in wire if name.endswith("_UNSPECIFIED")]
    for name in unspecified:
        wire["UNSPECIFIED"] = wire.pop(name)
    assert ours == wire


_CLIENT_MODULES = [
    f"nixlookup.client.{path.stem}"
    for path in sorted((Path(__file__).parent.parent / "client" / "nixlookup" / "client").glob("*.py"))
    if path.stem not in ("__init__", "pandas")  # pandas: an optional extra of its own
]
_BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r} or name.startswith("nixlookup.server"):
            raise ImportError(f"server-only module {{name}} imported by the client")
sys.meta_path.insert(0, Block())
"""


def test_the_client_imports_without_the_server() -> None:
    """Every client module imports with the server's packages (and nixlookup.server) made unimportable:
    what `pip install nixlookup` without extras must run on."""
    code = _BLOCKER.format(blocked=sorted(SERVER_ONLY_PACKAGES)) + (
        "import importlib, json\n"
        f"for name in {_CLIENT_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nixlookup'))))\n"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = json.loads(output)
    assert "nixlookup.client.cli_wash" in modules
    assert len(_CLIENT_MODULES) >= 15  # the glob found the client's modules
    assert [name for name in modules if name.startswith("nixlookup.server")] == []


def test_an_async_stream_survives_a_server_crash_between_batches(
    server_factory: ServerFactory, small_register: RegisterFile
) -> None:
    """The asyncio client's stream also resumes after UNAVAILABLE with the unanswered batches."""
    first = server_factory(["--register", str(small_register.path)])
    keys = np.concatenate([small_register.keys[:1500], small_register.keys[:1500] + np.uint64(1)])
    expected = np.array([k in small_register.key_set for k in keys.tolist()])
    retry = RetryPolicy(attempts=60, initial_backoff=0.05, max_backoff=0.25)

    async def run() -> list[np.ndarray]:
        blocked = []
        async with AsyncClient(first.target, batch_size=500, max_in_flight=2, retry=retry) as client:
            batches = client.check_batches(keys, want_details=False)
            blocked.append((await anext(batches)).blocked)
            first.stop(signal.SIGKILL)
            server_factory(["--listen", f"127.0.0.1:{first.port}", "--register", str(small_register.path)])
            blocked.extend([batch.blocked async for batch in batches])
        return blocked

    blocked = asyncio.run(run())
    assert [bits.size for bits in blocked] == [500] * 6
    assert np.array_equal(np.concatenate(blocked), expected)
