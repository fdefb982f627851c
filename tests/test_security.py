"""Security through the real port: TLS, mTLS, bearer tokens, every row of docs/security.md's table.

One server for most tests: TLS (certificates made here), an auth file with several principals, Admin on
its own listener, a small upload limit. A second one requires client certificates (mTLS). Refusals to
start are checked on servers that exit before they listen.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from nixlookup.bench.certs import Pki, write_pki
from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

TOKENS = {
    "acme-dialer": "acme-dialer-token-3f9a",
    "acme-lists": "acme-lists-token-77c1",
    "bank-dialer": "bank-dialer-token-0b2e",
    "agency": "agency-token-5d40",
    "ops": "ops-token-e812",
}
UPLOAD_LIMIT = 120_000
"""Bytes: the 5,000-number register as text (~65 KB) fits, twice it does not."""


def auth_file_text(extra: str = "") -> str:
    def digest(name: str) -> str:
        return hashlib.sha256(TOKENS[name].encode()).hexdigest()

    return f"""
[[principal]]
name = "acme-dialer"
token_sha256 = "{digest("acme-dialer")}"
cert_subject = "CN=acme-mtls"
callers = ["acme"]
roles = ["check"]

[[principal]]
name = "acme-lists"
token_sha256 = "{digest("acme-lists")}"
callers = ["acme"]
roles = ["check", "lists"]

[[principal]]
name = "bank-dialer"
token_sha256 = "{digest("bank-dialer")}"
callers = ["bank-y"]
roles = ["check"]

[[principal]]
name = "agency"
token_sha256 = "{digest("agency")}"
callers = ["acme", "bank-y"]
roles = ["check"]

[[principal]]
name = "ops"
token_sha256 = "{digest("ops")}"
callers = ["*"]
roles = ["admin", "lists", "check"]
{extra}
"""


@dataclass
class Secured:
    """The module's TLS server, its PKI and auth file, and the keys it serves."""

    server: ServerProcess
    pki: Pki
    auth_file: Path
    register: RegisterFile
    data_dir: Path
    opted_out: int = 0  # acme's opt-out: not in the register

    def channel(self, target: str | None = None, *, ca: Path | None = None) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials((ca or self.pki.ca_cert).read_bytes())
        # a local subchannel pool: every channel makes its own connection (and TLS handshake)
        options = [("grpc.use_local_subchannel_pool", 1)]
        return grpc.secure_channel(target or self.server.target, credentials, options=options)


def bearer(name: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[name]}"),)


def code_of(error: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return error.value.code()  # type: ignore[attr-defined, no-any-return]


def details_of(error: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return str(error.value.details())  # type: ignore[attr-defined]


@pytest.fixture(name="secured", scope="module")
def fixture_secured(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> Secured:
    """A TLS server with five token principals, Admin on its own listener, acme's opt-out list loaded."""
    directory = tmp_path_factory.mktemp("secured")
    pki = write_pki(directory / "pki")
    auth_file = directory / "auth.toml"
    auth_file.write_text(auth_file_text(), encoding="utf-8")
    server = module_server_factory(
        [
            "--data-dir",
            str(directory / "data"),
            "--register",
            str(small_register.path),
            "--auth-file",
            str(auth_file),
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--admin-listen",
            "127.0.0.1:0",
            "--max-upload-bytes",
            str(UPLOAD_LIMIT),
        ],
        channel_credentials=grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()),
    )
    secured = Secured(server, pki, auth_file, small_register, directory / "data")
    opted_out = int(make_mobile_keys(1, seed=404)[0])
    assert opted_out not in small_register.key_set
    with secured.channel(server.admin_target) as channel:
        lookup_pb2_grpc.AdminStub(channel).ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(
                list=lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller="acme"),
                add_e164_le=np.array([opted_out], "<u8").tobytes(),
            ),
            metadata=bearer("acme-lists"),
            timeout=30,
        )
    secured.opted_out = opted_out
    return secured


@pytest.fixture(name="lookup")
def fixture_lookup(secured: Secured) -> Iterator[lookup_pb2_grpc.LookupStub]:
    with secured.channel() as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


@pytest.fixture(name="admin")
def fixture_admin(secured: Secured) -> Iterator[lookup_pb2_grpc.AdminStub]:
    with secured.channel(secured.server.admin_target) as channel:
        yield lookup_pb2_grpc.AdminStub(channel)


def check(
    lookup: lookup_pb2_grpc.LookupStub, who: str | None, key: int, caller: str = ""
) -> lookup_pb2.CheckResponse:
    metadata = bearer(who) if who else None
    return lookup.Check(lookup_pb2.CheckRequest(e164=key, caller=caller), metadata=metadata, timeout=10)  # type: ignore[no-any-return]


# -- authentication ---------------------------------------------------------------------------------------
def test_health_needs_no_token_but_everything_else_does(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """Health answers anyone; Check without a token or with a wrong one is UNAUTHENTICATED."""
    with secured.channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    key = int(secured.register.keys[0])
    with pytest.raises(grpc.RpcError) as missing:
        check(lookup, None, key)
    assert code_of(missing) == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer TOKEN" in details_of(missing)
    with pytest.raises(grpc.RpcError) as wrong:
        lookup.Check(
            lookup_pb2.CheckRequest(e164=key), metadata=(("authorization", "Bearer guess"),), timeout=10
        )
    assert code_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as streamed:
        list(lookup.CheckStream(iter([lookup_pb2.CheckBatch(texts=["070-123 45 67"])]), timeout=10))
    assert code_of(streamed) == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_against_the_tls_port_fails(secured: Secured) -> None:
    """A plaintext client gets no answer from a TLS listener (the handshake fails: UNAVAILABLE)."""
    with grpc.insecure_channel(secured.server.target) as channel, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert code_of(refused) == grpc.StatusCode.UNAVAILABLE


# -- checks ---------------------------------------------------------------------------------------------
def test_a_one_caller_principal_gets_its_caller_when_the_request_leaves_it_empty(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """acme-dialer sends no caller and still gets acme's opt-out list (it cannot forget it)."""
    answer = check(lookup, "acme-dialer", secured.opted_out)
    assert answer.reason == lookup_pb2.COMPANY_OPT_OUT
    assert {(used.list.kind, used.list.caller) for used in answer.lists_used} == {
        (lookup_pb2.LIST_KIND_REGISTER, ""),
        (lookup_pb2.LIST_KIND_OPT_OUT, "acme"),
    }
    assert check(lookup, "acme-dialer", secured.opted_out, caller="acme").reason == lookup_pb2.COMPANY_OPT_OUT


def test_a_token_for_another_caller_is_denied_naming_principal_and_caller(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """bank-dialer may not check as acme: not by Check, not on a stream (the sweep of issue 12)."""
    with pytest.raises(grpc.RpcError) as denied:
        check(lookup, "bank-dialer", secured.opted_out, caller="acme")
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    assert "'bank-dialer'" in details_of(denied)
    assert "'acme'" in details_of(denied)
    batch = lookup_pb2.CheckBatch(e164_le=np.array([secured.opted_out], "<u8").tobytes(), caller="acme")
    with pytest.raises(grpc.RpcError) as streamed:
        list(lookup.CheckStream(iter([batch]), metadata=bearer("bank-dialer"), timeout=10))
    assert code_of(streamed) == grpc.StatusCode.PERMISSION_DENIED


def test_a_caller_without_lists_is_said_so(secured: Secured, lookup: lookup_pb2_grpc.LookupStub) -> None:
    """bank-y has no lists here: the answer says only the register answered, lists_used is the register."""
    answer = check(lookup, "bank-dialer", int(secured.register.keys[1]))
    assert answer.reason == lookup_pb2.NIX_REGISTERED
    assert "caller 'bank-y' has no lists on this server" in answer.detail
    assert [used.list.kind for used in answer.lists_used] == [lookup_pb2.LIST_KIND_REGISTER]


def test_a_principal_with_several_callers_must_name_one(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """agency acts as acme and bank-y: an empty caller is refused; naming one works."""
    with pytest.raises(grpc.RpcError) as denied:
        check(lookup, "agency", secured.opted_out)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    assert "several callers" in details_of(denied)
    assert check(lookup, "agency", secured.opted_out, caller="acme").reason == lookup_pb2.COMPANY_OPT_OUT


def test_register_info_shows_only_the_principals_own_callers_lists(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """acme's opt-out list is visible to acme's principals and ops, not to bank-dialer."""

    def callers(who: str) -> set[str]:
        info = lookup.GetRegisterInfo(lookup_pb2.GetRegisterInfoRequest(), metadata=bearer(who), timeout=10)
        assert info.register.count == len(secured.register.keys)
        return {item.list.caller for item in info.lists}

    assert callers("acme-dialer") == {"acme"}
    assert callers("ops") == {"acme"}
    assert callers("bank-dialer") == set()


def test_bulk_checks_are_metered_by_principal_caller_and_verdict(
    secured: Secured, lookup: lookup_pb2_grpc.LookupStub, admin: lookup_pb2_grpc.AdminStub
) -> None:
    """GetUsage (admin) counts each principal's numbers by verdict; the counts match the answers."""
    keys = np.concatenate([secured.register.keys[:300], make_mobile_keys(200, seed=9)]).astype("<u8")
    batches = [
        lookup_pb2.CheckBatch(e164_le=keys.tobytes(), batch_id=0),
        lookup_pb2.CheckBatch(texts=["12"], batch_id=1),
    ]
    results = list(lookup.CheckStream(iter(batches), metadata=bearer("acme-lists"), timeout=30))
    blocked = sum(
        int(np.unpackbits(np.frombuffer(r.blocked, np.uint8), bitorder="little")[: r.count].sum())
        for r in results
    )
    usage = admin.GetUsage(
        lookup_pb2.GetUsageRequest(principal="acme-lists"), metadata=bearer("ops"), timeout=10
    )
    (row,) = usage.rows
    assert (row.principal, row.caller, row.calls) == ("acme-lists", "acme", 2)
    assert (row.blocked, row.invalid, row.allowed) == (blocked, 1, len(keys) - blocked)
    with pytest.raises(grpc.RpcError) as denied:
        admin.GetUsage(lookup_pb2.GetUsageRequest(), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED


# -- Admin ----------------------------------------------------------------------------------------------
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


def opt_out(caller: str) -> lookup_pb2.ListRef:
    return lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller=caller)


def test_list_management_needs_role_lists_and_that_caller(
    secured: Secured, admin: lookup_pb2_grpc.AdminStub
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
            admin.ApplyDelta(
                lookup_pb2.ApplyDeltaRequest(list=ref, add_e164_le=key), metadata=bearer(who), timeout=10
            )
        assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED, who
        assert named in details_of(denied)
        assert f"'{who}'" in details_of(denied)
    with pytest.raises(grpc.RpcError) as denied:
        admin.Compact(lookup_pb2.CompactRequest(all=True), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as denied:
        admin.DropList(
            lookup_pb2.DropListRequest(list=opt_out("acme")), metadata=bearer("bank-dialer"), timeout=10
        )
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    reply = admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(list=opt_out("acme"), add_e164_le=key),
        metadata=bearer("acme-lists"),
        timeout=30,
    )
    assert reply.added == 1
    with pytest.raises(grpc.RpcError) as unauthenticated:
        admin.Compact(lookup_pb2.CompactRequest(all=True), timeout=10)
    assert code_of(unauthenticated) == grpc.StatusCode.UNAUTHENTICATED


def upload(
    admin: lookup_pb2_grpc.AdminStub,
    who: str,
    ref: lookup_pb2.ListRef,
    data: bytes,
    name: str = "register.txt",
) -> lookup_pb2.ReloadResponse:
    chunks = [data[start : start + 16_384] for start in range(0, len(data), 16_384)]
    messages = [lookup_pb2.UploadRequest(reload=lookup_pb2.ReloadRequest(list=ref, path=name))]
    messages += [lookup_pb2.UploadRequest(data=chunk) for chunk in chunks]
    return admin.Upload(iter(messages), metadata=bearer(who), timeout=60)  # type: ignore[no-any-return]


def test_upload_replaces_path_reloads_and_is_limited(
    secured: Secured, admin: lookup_pb2_grpc.AdminStub
) -> None:
    """Path reloads are off with an auth file and no --reload-root; Upload validates like a reload;
    an upload over --max-upload-bytes is RESOURCE_EXHAUSTED naming the limit; lists need their caller."""
    register = lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_REGISTER)
    with pytest.raises(grpc.RpcError) as off:
        admin.Reload(
            lookup_pb2.ReloadRequest(list=register, path=str(secured.register.path)),
            metadata=bearer("ops"),
            timeout=10,
        )
    assert code_of(off) == grpc.StatusCode.PERMISSION_DENIED
    assert "Admin/Upload" in details_of(off)
    text = secured.register.path.read_bytes()
    reply = upload(admin, "ops", register, text)
    assert reply.info.count == len(secured.register.keys)
    assert reply.info.source == "upload:register.txt by ops"
    with pytest.raises(grpc.RpcError) as truncated:  # validated exactly like a reload: a count drop
        upload(admin, "ops", register, text[: len(text) // 2])
    assert code_of(truncated) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as too_big:
        upload(admin, "ops", register, text * 2)
    assert code_of(too_big) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"--max-upload-bytes ({UPLOAD_LIMIT} bytes)" in details_of(too_big)
    with pytest.raises(grpc.RpcError) as denied:
        upload(admin, "acme-lists", register, text)
    assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
    listed = upload(
        admin,
        "acme-lists",
        lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_CONSENT, caller="acme"),
        b"070-123 45 67\n",
        "c.txt",
    )
    assert listed.info.count == 1
    assert not any((secured.data_dir / "uploads").iterdir())  # every upload's file is removed


def test_every_admin_action_is_in_the_audit_log(secured: Secured, admin: lookup_pb2_grpc.AdminStub) -> None:
    """Allowed and refused actions alike, with principal, peer, list, versions, counts; no number."""
    denied_key = np.array([46701234567], "<u8").tobytes()
    with pytest.raises(grpc.RpcError):
        admin.ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(list=opt_out("bank-y"), add_e164_le=denied_key),
            metadata=bearer("acme-lists"),
            timeout=10,
        )
    added = admin.ApplyDelta(
        lookup_pb2.ApplyDeltaRequest(list=opt_out("acme"), add_texts=["070-765 43 21"]),
        metadata=bearer("acme-lists"),
        timeout=30,
    )
    log = admin.GetAuditLog(lookup_pb2.GetAuditLogRequest(limit=2), metadata=bearer("ops"), timeout=10)
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
    everything = admin.GetAuditLog(lookup_pb2.GetAuditLogRequest(), metadata=bearer("ops"), timeout=10)
    assert "7654321" not in str(everything)
    assert "1234567" not in str(everything)
    with pytest.raises(grpc.RpcError) as not_admin:
        admin.GetAuditLog(lookup_pb2.GetAuditLogRequest(), metadata=bearer("acme-lists"), timeout=10)
    assert code_of(not_admin) == grpc.StatusCode.PERMISSION_DENIED


# -- rotation -----------------------------------------------------------------------------------------
def test_sighup_rereads_the_auth_file(secured: Secured, lookup: lookup_pb2_grpc.LookupStub) -> None:
    """A principal added to the auth file works after SIGHUP, without a restart; a broken file is kept out."""
    TOKENS["newcomer"] = "newcomer-token-91"
    digest = hashlib.sha256(TOKENS["newcomer"].encode()).hexdigest()
    newcomer = f'[[principal]]\nname = "newcomer"\ntoken_sha256 = "{digest}"\nroles = ["check"]\n'
    key = int(secured.register.keys[2])
    secured.auth_file.write_text(auth_file_text("\nname = 'broken'"), encoding="utf-8")  # invalid TOML
    secured.server.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert check(lookup, "acme-dialer", key).reason == lookup_pb2.NIX_REGISTERED  # the old file still rules
    secured.auth_file.write_text(auth_file_text(newcomer), encoding="utf-8")
    secured.server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert check(lookup, "newcomer", key).reason == lookup_pb2.NIX_REGISTERED
            break
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert "auth_file_refused" in secured.server.log_text()


def test_a_rotated_certificate_is_used_without_a_restart(secured: Secured, tmp_path: Path) -> None:
    """New certificate files (another CA) serve the next connection; the server never restarted."""
    pid = secured.server.pid
    renewed = write_pki(tmp_path / "renewed", name="renewed CA")
    old_ca = tmp_path / "old-ca.pem"
    old_ca.write_bytes(secured.pki.ca_cert.read_bytes())
    os.replace(renewed.server_key, secured.pki.server_key)
    os.replace(renewed.server_cert, secured.pki.server_cert)
    with secured.channel(ca=renewed.ca_cert) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with secured.channel(secured.server.admin_target, ca=renewed.ca_cert) as channel:  # every listener
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with secured.channel(ca=old_ca) as channel, pytest.raises(grpc.RpcError) as distrusted:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert code_of(distrusted) == grpc.StatusCode.UNAVAILABLE
    assert secured.server.pid == pid
    assert secured.server.running
    os.replace(renewed.ca_cert, secured.pki.ca_cert)  # later tests trust the renewed CA
    assert "tls_certificate_reloaded" in secured.server.log_text()


# -- mTLS -----------------------------------------------------------------------------------------------
def test_mtls_subjects_are_principals(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """With --tls-client-ca a client certificate is required; its subject names the principal."""
    pki = write_pki(tmp_path / "pki")
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(auth_file_text(), encoding="utf-8")
    acme_cert, acme_key = pki.client("acme-mtls")
    stranger_cert, stranger_key = pki.client("stranger")

    def credentials(cert: Path | None, key: Path | None) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            pki.ca_cert.read_bytes(),
            private_key=key.read_bytes() if key else None,
            certificate_chain=cert.read_bytes() if cert else None,
        )

    server = server_factory(
        [
            "--register",
            str(small_register.path),
            "--auth-file",
            str(auth_file),
            "--tls-cert",
            str(pki.server_cert),
            "--tls-key",
            str(pki.server_key),
            "--tls-client-ca",
            str(pki.ca_cert),
        ],
        channel_credentials=credentials(acme_cert, acme_key),
    )
    key = int(small_register.keys[3])
    options = [("grpc.use_local_subchannel_pool", 1)]
    with grpc.secure_channel(server.target, credentials(acme_cert, acme_key), options=options) as channel:
        answer = lookup_pb2_grpc.LookupStub(channel).Check(lookup_pb2.CheckRequest(e164=key), timeout=10)
        assert answer.reason == lookup_pb2.NIX_REGISTERED
        assert "caller 'acme' has no lists" in answer.detail  # CN=acme-mtls is acme-dialer: caller acme
    with (
        grpc.secure_channel(
            server.target, credentials(stranger_cert, stranger_key), options=options
        ) as channel,
        pytest.raises(grpc.RpcError) as unknown,
    ):
        lookup_pb2_grpc.LookupStub(channel).Check(lookup_pb2.CheckRequest(e164=key), timeout=10)
    assert code_of(unknown) == grpc.StatusCode.UNAUTHENTICATED
    assert "'CN=stranger' is no principal" in details_of(unknown)
    no_certificate_channel = grpc.secure_channel(server.target, credentials(None, None), options=options)
    with no_certificate_channel, pytest.raises(grpc.RpcError) as no_certificate:
        lookup_pb2_grpc.LookupStub(no_certificate_channel).Check(lookup_pb2.CheckRequest(e164=key), timeout=5)
    assert code_of(no_certificate) == grpc.StatusCode.UNAVAILABLE


# -- refusing to start ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--listen", "0.0.0.0:0"], "not authenticated (set --auth-file)"),
        (["--listen", "0.0.0.0:0", "--auth-file", "{auth}"], "bearer tokens would travel in plaintext"),
        (["--auth-file", "{broken}"], "unknown role 'root'"),
        (["--tls-cert", "{auth}", "--tls-key", "{auth}"], "--tls-cert"),
    ],
)
def test_an_unsafe_or_broken_setup_refuses_to_start(tmp_path: Path, extra: list[str], named: str) -> None:
    """Beyond loopback without auth, tokens without TLS, a broken auth or TLS file: exit 1, saying why
    (before anything listens)."""
    auth = tmp_path / "auth.toml"
    auth.write_text(auth_file_text(), encoding="utf-8")
    broken = tmp_path / "broken.toml"
    broken.write_text(
        "[[principal]]\nname='x'\ntoken_sha256='" + "0" * 64 + "'\nroles=['root']\n", encoding="utf-8"
    )
    arguments = [part.format(auth=auth, broken=broken) for part in extra]
    server = ServerProcess([*arguments, "--synthetic-size", "1000"], wait_for_serving=False)
    with pytest.raises(Exception, match="exited with code 1"):
        server.start()
    assert named in server.log_text()


def test_insecure_is_warned_at_start(server_factory: ServerFactory) -> None:
    """--insecure starts, and says so at warning level."""
    server = server_factory(["--synthetic-size", "1000", "--insecure"])
    assert '"event": "insecure"' in server.log_text()
    assert "--insecure is set" in server.log_text()


# -- the client and the CLI -----------------------------------------------------------------------------
def test_the_client_and_the_cli_send_the_token_over_tls(
    secured: Secured, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Client(token=..., security=...) and `nixlookup --token-file --ca` check, upload, audit and usage."""
    from nixlookup.client import Client, cli
    from nixlookup.client.security import ChannelSecurity

    security = ChannelSecurity(ca=secured.pki.ca_cert.read_bytes())
    with Client(secured.server.target, token=TOKENS["acme-dialer"], security=security) as client:
        assert client.check(secured.opted_out).reason.name == "COMPANY_OPT_OUT"
        results = list(client.check_many([secured.opted_out, int(secured.register.keys[0])]))
        assert [r.verdict.name for r in results] == ["BLOCKED", "BLOCKED"]
    token_file = tmp_path / "ops.token"
    token_file.write_text(TOKENS["ops"] + "\n", encoding="utf-8")
    tls = ["--ca", str(secured.pki.ca_cert), "--token-file", str(token_file)]
    assert cli.main(["--target", secured.server.target, *tls, "check", "070-123 45 67"]) == 0
    consent = tmp_path / "consent.txt"
    consent.write_text("070-111 22 33\n070-111 22 44\n", encoding="ascii")
    admin = ["--target", secured.server.admin_target]
    upload = ["admin", "upload", str(consent), "--list-kind", "consent", "--caller", "bank-y", *admin, *tls]
    assert cli.main(upload) == 0
    assert "2 numbers" in capsys.readouterr().out
    assert cli.main(["admin", "audit", "--limit", "1", *admin, *tls]) == 0
    line = capsys.readouterr().out
    assert "ops" in line
    assert "Upload" in line
    assert "consent/bank-y" in line
    assert cli.main(["admin", "usage", *admin, *tls]) == 0
    assert "acme-dialer" in capsys.readouterr().out
    assert cli.main(["--target", secured.server.target, "--ca", str(secured.pki.ca_cert), "info"]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert cli.main(["--target", secured.server.target, "--token-file", str(tmp_path / "none"), "info"]) == 2
