"""Never an answer from an expired register, and never a register with an impossible date, on a real server.

The clock is the real one: registers are made to expire by reloading them with a `register_date` two
months and a day ago (with `force`, since that is older than the serving version), which is the
operator-facing parameter, not a test hook.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from conftest import (
    RegisterFile,
    ServerFactory,
    data_dir_server,
    seeded_register,
)
from google.protobuf.timestamp_pb2 import Timestamp

from nixlookup.bench.serverproc import ServerProcess
from nixlookup.server.policy._dates import add_calendar_months
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_LOOKUP = "nixlookup.v1.Lookup"
_WAIT_SECONDS = 10.0


@pytest.fixture(name="register", scope="module")
def fixture_register(tmp_path_factory: pytest.TempPathFactory) -> RegisterFile:
    """2,000 seeded mobile numbers."""
    return seeded_register(tmp_path_factory, 2000, seed=401)


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory, register: RegisterFile, tmp_path_factory: pytest.TempPathFactory
) -> ServerProcess:
    """One server for the module, its data directory seeded from the register."""
    return data_dir_server(module_server_factory, register, tmp_path_factory)


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _reload(
    admin: lookup_pb2_grpc.AdminStub, register: RegisterFile, **fields: object
) -> lookup_pb2.ReloadResponse:
    return admin.Reload(lookup_pb2.ReloadRequest(path=str(register.path), **fields), timeout=30)  # type: ignore[arg-type]


def _refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def _await_health(server: ServerProcess, status: str) -> None:
    deadline = time.monotonic() + _WAIT_SECONDS
    while server.health_status(_LOOKUP) != status:
        assert time.monotonic() < deadline, f"health for {_LOOKUP} did not turn {status}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("seconds", "needle"),
    [
        (int(datetime(9999, 12, 31, tzinfo=UTC).timestamp()), "is in the future"),
        (2**63 - 1, "outside the Timestamp range"),
        (-(2**63), "outside the Timestamp range"),
        (0, "before 1999-01-01"),
        (int((datetime.now(UTC) + timedelta(days=3)).timestamp()), "is in the future"),
    ],
    ids=["9999-12-31", "2^63-1-seconds", "-2^63-seconds", "1970-01-01", "in-3-days"],
)
def test_impossible_register_dates_are_invalid_argument(
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register: RegisterFile,
    seconds: int,
    needle: str,
) -> None:
    """Dates no register version can have: INVALID_ARGUMENT naming the problem (even with force, never
    INTERNAL), and the serving version keeps answering."""
    lookup, admin = stubs
    before = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), timeout=5).register.version
    error = _refused(lambda: _reload(admin, register, force=True, register_date=Timestamp(seconds=seconds)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()  # type: ignore[attr-defined]
    assert needle in error.details()  # type: ignore[attr-defined]
    assert "register_date" in error.details()  # type: ignore[attr-defined]
    reply = lookup.Check(lookup_pb2.CheckRequest(e164=int(register.keys[0])), timeout=5)
    assert (reply.verdict, reply.register_version) == (lookup_pb2.BLOCKED, before)


def test_expired_register_answers_no_register_dependent_check_and_turns_lookup_not_serving(
    server: ServerProcess,
    stubs: tuple[lookup_pb2_grpc.LookupStub, lookup_pb2_grpc.AdminStub],
    register: RegisterFile,
) -> None:
    """Older than serving: refused unless forced. Dated 2 months - 3 days ago: a warning, answers valid for
    3 more days. Dated 2 months + 1 day ago: Check and CheckStream FAILED_PRECONDITION naming the expiry,
    exempt purposes answered without valid_until, Lookup NOT_SERVING ("" stays SERVING), an error in the
    log. A current register: SERVING again."""
    lookup, admin = stubs
    now = datetime.now(UTC)
    free = 46_812_345_670  # 08-123 456 70: not in the seeded mobile register
    ancient = add_calendar_months(now, -2) - timedelta(days=1)
    older = _refused(lambda: _reload(admin, register, register_date=_stamp(ancient)))
    assert older.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert "older than the serving version" in older.details()  # type: ignore[attr-defined]

    soon = add_calendar_months(now, -2) + timedelta(days=3)
    _reload(admin, register, force=True, register_date=_stamp(soon))
    answer = lookup.Check(lookup_pb2.CheckRequest(e164=free), timeout=5)
    assert (answer.verdict, answer.reason) == (lookup_pb2.ALLOWED, lookup_pb2.NOT_REGISTERED)
    assert answer.valid_until.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    deadline = time.monotonic() + _WAIT_SECONDS
    while "register_expires_soon" not in server.log_text():
        assert time.monotonic() < deadline, "no warning before the expiry"
        time.sleep(0.05)

    expired = _reload(admin, register, force=True, register_date=_stamp(ancient)).info.version
    expires_at = f"{add_calendar_months(ancient, 2):%Y-%m-%d %H:%M} UTC"
    for purpose in (lookup_pb2.SALES, lookup_pb2.MARKETING, lookup_pb2.FUNDRAISING):
        error = _refused(
            lambda p=purpose: lookup.Check(lookup_pb2.CheckRequest(e164=free, purpose=p), timeout=5)
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        details = error.details()  # type: ignore[attr-defined]
        assert expired in details
        assert f"expired at {expires_at}" in details
        assert "reload" in details
    batch = lookup_pb2.CheckBatch(texts=["08-123 456 70", "not a number"])
    stream_error = _refused(lambda: list(lookup.CheckStream(iter([batch]), timeout=5)))
    assert stream_error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    exempt = lookup.Check(lookup_pb2.CheckRequest(e164=free, purpose=lookup_pb2.MARKET_RESEARCH), timeout=5)
    assert (exempt.verdict, exempt.reason) == (lookup_pb2.ALLOWED, lookup_pb2.EXEMPT_PURPOSE)
    assert not exempt.HasField("valid_until"), "no valid_until counted from an expired register"
    exempt_batch = lookup_pb2.CheckBatch(
        texts=["08-123 456 70"], purpose=lookup_pb2.POLITICAL, want_details=True
    )
    (result,) = list(lookup.CheckStream(iter([exempt_batch]), timeout=5))
    assert not result.HasField("valid_until")
    assert result.valid_until_days_le == bytes(4)
    _await_health(server, "NOT_SERVING")
    assert server.health_status("") == "SERVING", "the process stays alive and mendable"
    assert "register_expired" in server.log_text()

    _reload(admin, register)  # dated now: newer than the expired one
    _await_health(server, "SERVING")
    answer = lookup.Check(lookup_pb2.CheckRequest(e164=free), timeout=5)
    assert answer.valid_until.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert "register_usable_again" in server.log_text()
