"""Who is calling, through the real port: bearer tokens over TLS, client certificates (mTLS), and the
setups the server refuses to start with (docs/security.md's table, the authentication rows)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from conftest import RegisterFile, ServerFactory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from secured_server import (
    Secured,
    auth_file_text,
    check,
    code_of,
    details_of,
    tls_server_args,
)

from nixlookup.bench.certs import write_pki
from nixlookup.bench.serverproc import ServerProcess
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def test_health_needs_no_token_but_everything_else_does(
    secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub
) -> None:
    """Health answers anyone; Check without a token or with a wrong one is UNAUTHENTICATED."""
    with secured.channel() as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    key = int(secured.register.keys[0])
    with pytest.raises(grpc.RpcError) as missing:
        check(secured_lookup, None, key)
    assert code_of(missing) == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer TOKEN" in details_of(missing)
    with pytest.raises(grpc.RpcError) as wrong:
        secured_lookup.Check(
            lookup_pb2.CheckRequest(e164=key), metadata=(("authorization", "Bearer guess"),), timeout=10
        )
    assert code_of(wrong) == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as streamed:
        list(secured_lookup.CheckStream(iter([lookup_pb2.CheckBatch(texts=["070-123 45 67"])]), timeout=10))
    assert code_of(streamed) == grpc.StatusCode.UNAUTHENTICATED


def test_plaintext_against_the_tls_port_fails(secured: Secured) -> None:
    """A plaintext client gets no answer from a TLS listener (the handshake fails: UNAVAILABLE)."""
    with grpc.insecure_channel(secured.server.target) as channel, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert code_of(refused) == grpc.StatusCode.UNAVAILABLE


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
            *tls_server_args(pki, auth_file),
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
