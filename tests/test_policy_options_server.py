"""The rule options are server flags: the relationship grace period and the mobile ethics block."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import grpc
import numpy as np
from conftest import RegisterFile, ServerFactory, write_register

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

R = lookup_pb2
UNREGISTERED_MOBILE = 46701110009
UNREGISTERED_FIXED = 4681110008
CUSTOMER_ENDED_40_DAYS_AGO = 46701110003


def _days_since_epoch(value: date) -> int:
    return (value - date(1970, 1, 1)).days


def test_block_mobile_and_short_grace(server_factory: ServerFactory, tmp_path: Path) -> None:
    """With the flags set, mobiles without a relationship are BLOCKED and a 30-day grace has lapsed."""
    directory = tmp_path
    register = write_register(directory / "register.txt", np.array([4681110007], dtype=np.uint64))
    server = server_factory(
        [
            "--data-dir",
            str(directory / "data"),
            "--register",
            str(register.path),
            "--block-mobile-without-relationship",
            "--relationship-grace-days",
            "30",
        ]
    )
    ended = _days_since_epoch(datetime.now(UTC).date() - timedelta(days=40))
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        admin.ApplyDelta(
            R.ApplyDeltaRequest(
                list=R.ListRef(kind=R.LIST_KIND_RELATIONSHIP, caller="acme"),
                add_e164_le=np.array([CUSTOMER_ENDED_40_DAYS_AGO], "<u8").tobytes(),
                add_until_days_le=np.array([ended], "<u4").tobytes(),
            ),
            timeout=10,
        )
        lookup = lookup_pb2_grpc.LookupStub(channel)

        def reason(number: int, purpose: int = R.SALES) -> int:
            return lookup.Check(R.CheckRequest(e164=number, caller="acme", purpose=purpose), timeout=5).reason

        assert reason(UNREGISTERED_MOBILE) == R.MOBILE_WITHOUT_RELATIONSHIP
        assert reason(UNREGISTERED_FIXED) == R.NOT_REGISTERED
        assert reason(CUSTOMER_ENDED_40_DAYS_AGO) == R.MOBILE_WITHOUT_RELATIONSHIP, "grace of 30 days is over"
        assert reason(UNREGISTERED_MOBILE, R.MARKET_RESEARCH) == R.EXEMPT_PURPOSE


def test_default_only_flags_mobiles(server_factory: ServerFactory, small_register: RegisterFile) -> None:
    """By default a mobile without relationship is ALLOWED with mobile_flag set, not blocked."""
    server = server_factory(["--register", str(small_register.path)])
    free_mobile = next(
        46_700_000_000 + n for n in range(1_000_000) if 46_700_000_000 + n not in small_register.key_set
    )
    with grpc.insecure_channel(server.target) as channel:
        answer = lookup_pb2_grpc.LookupStub(channel).Check(R.CheckRequest(e164=free_mobile), timeout=5)
    assert (answer.verdict, answer.reason, answer.mobile_flag) == (R.ALLOWED, R.NOT_REGISTERED, True)
