"""Secrets rotated without a restart, through the real TLS port: the auth file re-read on SIGHUP, new
certificate files served on the next connection."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from secured_server import (
    TOKENS,
    Secured,
    auth_file_text,
    check,
    code_of,
)

from nixlookup.bench.certs import write_pki
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc


def test_sighup_rereads_the_auth_file(secured: Secured, secured_lookup: lookup_pb2_grpc.LookupStub) -> None:
    """A principal added to the auth file works after SIGHUP, without a restart; a broken file is kept out."""
    TOKENS["newcomer"] = "newcomer-token-91"
    digest = hashlib.sha256(TOKENS["newcomer"].encode()).hexdigest()
    newcomer = f'[[principal]]\nname = "newcomer"\ntoken_sha256 = "{digest}"\nroles = ["check"]\n'
    key = int(secured.register.keys[2])
    secured.auth_file.write_text(auth_file_text("\nname = 'broken'"), encoding="utf-8")  # invalid TOML
    secured.server.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert (
        check(secured_lookup, "acme-dialer", key).reason == lookup_pb2.NIX_REGISTERED
    )  # the old file still rules
    secured.auth_file.write_text(auth_file_text(newcomer), encoding="utf-8")
    secured.server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert check(secured_lookup, "newcomer", key).reason == lookup_pb2.NIX_REGISTERED
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
