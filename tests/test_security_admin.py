"""Admin through the real TLS port: on its own listener only, list management by role and caller,
uploads instead of path reloads (limited), every action in the audit log."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from conftest import make_mobile_keys
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from secured_server import (
    UPLOAD_LIMIT,
    Secured,
    bearer,
    code_of,
    details_of,
    opt_out,
    upload,
)

from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def test_admin_is_not_on_the_public_listener_and_reflection_does_not_list_it(secured: Secured) -> None:
    """With --admin-listen, the public port answers Admin calls UNIMPLEMENTED and reflection omits it."""

    def services(target: str) -> set[str]:
        with secured.channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (reply,) = stub.ServerReflectionInfo(iter([request]), metadata=bearer("ops"), timeout=10)
        return {service.name for service in reply.list_services_response.service}

    assert "nixlookup.v1.Admin" not in services(secured.server.target)
    assert "nixlookup.v1.Lookup" in services(secured.server.target)
    assert "nixlookup.v1.Admin" in services(secured.server.admin_target)
    with secured.channel() as channel, pytest.raises(grpc.RpcError) as missing:
        lookup_pb2_grpc.AdminStub(channel).Compact(
            lookup_pb2.CompactRequest(), metadata=bearer("ops"), timeout=10
        )
    assert code_of(missing) == grpc.StatusCode.UNIMPLEMENTED


def test_list_management_needs_role_lists_and_that_caller(
    secured: Secured, secured_admin: lookup_pb2_grpc.AdminStub
) -> None:
    """acme-lists manages acme's lists only; a check-only token manages none; the register is admin's."""
    key = np.array([int(make_mobile_keys(1, seed=505)[0])], "<u8").tobytes()
    rows: list[tuple[str, lookup_pb2.ListRef, str]] = [
        ("acme-dialer", opt_out("acme"), "lacks role 'lists'"),
        ("acme-lists", opt_out("bank-y"), "may not act as caller 'bank-y'"),
        ("acme-lists", lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_REGISTER), "lacks role 'admin'"),
    ]
    for who, ref, named in rows:
        with pytest.raises(grpc.RpcError) as denied:
            secured_admin.ApplyDelta(
                lookup_pb2.ApplyDeltaRequest(list=ref, add_e164_le=key), metadata=bearer(who), timeout=10
            )
        assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED, who
        assert named in details_of(denied)
        assert f"'{who}'" in details_of(denied)
    with pytest.raises(grpc.RpcError) as denied:
        secured_admin.Compact(lookup_pb2.CompactRequest(all=True), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as denied:
        secured_admin.DropList(
            lookup_pb2.DropListRequest(list=opt_out("acme")), metadata=bearer("bank-dialer"), timeout=10
        )
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    reply = secured_admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(list=opt_out("acme"), add_e164_le=key),
        metadata=bearer("acme-lists"),
        timeout=30,
    )
    assert reply.added == 1
    with pytest.raises(grpc.RpcError) as unauthenticated:
        secured_admin.Compact(lookup_pb2.CompactRequest(all=True), timeout=10)
    assert code_of(unauthenticated) == grpc.StatusCode.UNAUTHENTICATED


def test_upload_replaces_path_reloads_and_is_limited(
    secured: Secured, secured_admin: lookup_pb2_grpc.AdminStub
) -> None:
    """Path reloads are off with an auth file and no --reload-root; Upload validates like a reload;
    an upload over --max-upload-bytes is RESOURCE_EXHAUSTED naming the limit; lists need their caller."""
    register = lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_REGISTER)
    with pytest.raises(grpc.RpcError) as off:
        secured_admin.Reload(
            lookup_pb2.ReloadRequest(list=register, path=str(secured.register.path)),
            metadata=bearer("ops"),
            timeout=10,
        )
    assert code_of(off) == grpc.StatusCode.PERMISSION_DENIED
    assert "Admin/Upload" in details_of(off)
    text = secured.register.path.read_bytes()
    reply = upload(secured_admin, "ops", register, text)
    assert reply.info.count == len(secured.register.keys)
    assert reply.info.source == "upload:register.txt by ops"
    with pytest.raises(grpc.RpcError) as truncated:  # validated exactly like a reload: a count drop
        upload(secured_admin, "ops", register, text[: len(text) // 2])
    assert code_of(truncated) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as too_big:
        upload(secured_admin, "ops", register, text * 2)
    assert code_of(too_big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"--max-upload-bytes ({UPLOAD_LIMIT} bytes)" in details_of(too_big)
    with pytest.raises(grpc.RpcError) as denied:
        upload(secured_admin, "acme-lists", register, text)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    listed = upload(
        secured_admin,
        "acme-lists",
        lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_CONSENT, caller="acme"),
        b"070-123 45 67\n",
        "c.txt",
    )
    assert listed.info.count == 1
    assert not any((secured.data_dir / "uploads").iterdir())  # every upload's file is removed


def test_every_admin_action_is_in_the_audit_log(
    secured: Secured, secured_admin: lookup_pb2_grpc.AdminStub
) -> None:
    """Allowed and refused actions alike, with principal, peer, list, versions, counts; no number."""
    denied_key = np.array([46701234567], "<u8").tobytes()
    with pytest.raises(grpc.RpcError):
        secured_admin.ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(list=opt_out("bank-y"), add_e164_le=denied_key),
            metadata=bearer("acme-lists"),
            timeout=10,
        )
    added = secured_admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(list=opt_out("acme"), add_texts=["070-765 43 21"]),
        metadata=bearer("acme-lists"),
        timeout=30,
    )
    log = secured_admin.GetAuditLog(
        lookup_pb2.GetAuditLogRequest(limit=2), metadata=bearer("ops"), timeout=10
    )
    refused, accepted = log.records
    assert (refused.principal, refused.operation, refused.outcome) == (
        "acme-lists",
        "ApplyDelta",
        "PERMISSION_DENIED",
    )
    assert refused.list.caller == "bank-y"
    assert "'acme-lists' may not act as caller 'bank-y'" in refused.detail
    assert (accepted.principal, accepted.outcome, accepted.list.caller) == ("acme-lists", "OK", "acme")
    assert accepted.version_after == added.version
    assert accepted.version_before == added.previous_version
    assert accepted.counts["added"] == added.added
    assert accepted.peer.startswith("ipv4:127.0.0.1:")
    everything = secured_admin.GetAuditLog(
        lookup_pb2.GetAuditLogRequest(), metadata=bearer("ops"), timeout=10
    )
    assert "7654321" not in str(everything)
    assert "1234567" not in str(everything)
    with pytest.raises(grpc.RpcError) as not_admin:
        secured_admin.GetAuditLog(lookup_pb2.GetAuditLogRequest(), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(not_admin) == grpc.StatusCode.PERMISSION_DENIED
