"""As which caller a principal checks, through the real TLS port: its own caller filled in, another's
refused, several callers named, register info and metering limited to its own callers."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from conftest import make_mobile_keys
from secured_server import (
    Secured,
    bearer,
    check,
    code_of,
    details_of,
)

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def test_a_one_caller_principal_gets_its_caller_when_the_request_leaves_it_empty(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """acme-dialer sends no caller and still gets acme's opt-out list (it cannot forget it)."""
    answer = check(secured_lookup, "acme-dialer", secured.opted_out)
    assert answer.reason == lookup_pb2.COMPANY_OPT_OUT
    assert {(used.list.kind, used.list.caller) for used in answer.lists_used} == {
        (lookup_pb2.LIST_KIND_REGISTER, ""),
        (lookup_pb2.LIST_KIND_OPT_OUT, "acme"),
    }
    assert (
        check(secured_lookup, "acme-dialer", secured.opted_out, caller="acme").reason
        == lookup_pb2.COMPANY_OPT_OUT
    )


def test_a_token_for_another_caller_is_denied_naming_principal_and_caller(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """bank-dialer may not check as acme: not by Check, not on a stream (the sweep of issue 12)."""
    with pytest.raises(grpc.RpcError) as denied:
        check(secured_lookup, "bank-dialer", secured.opted_out, caller="acme")
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    assert "'bank-dialer'" in details_of(denied)
    assert "'acme'" in details_of(denied)
    batch = lookup_pb2.CheckBatch(e164_le=np.array([secured.opted_out], "<u8").tobytes(), caller="acme")
    with pytest.raises(grpc.RpcError) as streamed:
        list(secured_lookup.CheckStream(iter([batch]), metadata=bearer("bank-dialer"), timeout=10))
    assert code_of(streamed) == grpc.StatusCode.PERMISSION_DENIED


def test_a_caller_without_lists_is_said_so(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """bank-y has no lists here: the answer says only the register answered, lists_used is the register."""
    answer = check(secured_lookup, "bank-dialer", int(secured.register.keys[1]))
    assert answer.reason == lookup_pb2.NIX_REGISTERED
    assert "caller 'bank-y' has no lists on this server" in answer.detail
    assert [used.list.kind for used in answer.lists_used] == [lookup_pb2.LIST_KIND_REGISTER]


def test_a_principal_with_several_callers_must_name_one(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """agency acts as acme and bank-y: an empty caller is refused; naming one works."""
    with pytest.raises(grpc.RpcError) as denied:
        check(secured_lookup, "agency", secured.opted_out)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    assert "several callers" in details_of(denied)
    assert (
        check(secured_lookup, "agency", secured.opted_out, caller="acme").reason == lookup_pb2.COMPANY_OPT_OUT
    )


def test_register_info_shows_only_the_principals_own_callers_lists(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """acme's opt-out list is visible to acme's principals and ops, not to bank-dialer; the NIX-Adresserat
    register (caller "") is listed for ops, who may act as any caller."""

    def callers(who: str) -> set[str]:
        info = secured_lookup.GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), metadata=bearer(who), timeout=10
        )
        assert info.register.count == len(secured.register.keys)
        return {item.list.caller for item in info.lists}

    assert callers("acme-dialer") == {"acme"}
    assert callers("ops") == {"acme", ""}
    assert callers("bank-dialer") == set()


def test_bulk_checks_are_metered_by_principal_caller_and_verdict(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub, secured_admin: lookup_pb2_grpc.AdminStub
) -> None:
    """GetUsage (secured_admin) counts each principal's numbers by verdict; the counts match the answers."""
    keys = np.concatenate([secured.register.keys[:300], make_mobile_keys(200, seed=9)]).astype("<u8")
    batches = [
        lookup_pb2.CheckBatch(e164_le=keys.tobytes(), batch_id=0),
        lookup_pb2.CheckBatch(texts=["12"], batch_id=1),
    ]
    results = list(secured_lookup.CheckStream(iter(batches), metadata=bearer("acme-lists"), timeout=30))
    blocked = sum(
        int(np.unpackbits(np.frombuffer(r.blocked, np.uint8), bitorder="little")[: r.count].sum())
        for r in results
    )
    usage = secured_admin.GetUsage(
        lookup_pb2.GetUsageRequest(principal="acme-lists"), metadata=bearer("ops"), timeout=10
    )
    (row,) = usage.rows
    assert (row.principal, row.caller, row.calls) == ("acme-lists", "acme", 2)
    assert (row.blocked, row.invalid, row.allowed) == (blocked, 1, len(keys) - blocked)
    with pytest.raises(grpc.RpcError) as denied:
        secured_admin.GetUsage(lookup_pb2.GetUsageRequest(), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
