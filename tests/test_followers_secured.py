"""A follower is a principal: it follows a writer with an auth file over TLS (and mTLS), by token.

One writer as production runs it: TLS with client certificates required (mTLS), an auth file, Admin and
Replication on their own listener. A follower whose token is a `replicate` principal converges on the
writer's lists; one whose token lacks the role is refused with a clear log line and stays NOT_SERVING.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nixlookup.bench.certs import write_pki
from nixlookup.bench.serverproc import ServerProcess, ServerStartError
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

TOKENS = {"replica": "replica-token-19ce", "dialer": "dialer-token-a4f0", "ops": "ops-token-7b21"}
ROLES = {"replica": ["replicate"], "dialer": ["check"], "ops": ["admin", "check"]}
_SECONDS = 30.0


def _auth_file(path: Path) -> Path:
    text = "".join(
        f'[[principal]]\nname = "{name}"\ntoken_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
        f'callers = ["*"]\nroles = {json.dumps(ROLES[name])}\n\n'
        for name, token in TOKENS.items()
    )
    path.write_text(text, encoding="utf-8")
    return path


def _token_file(directory: Path, name: str) -> Path:
    path = directory / f"{name}.token"
    path.write_text(TOKENS[name] + "\n", encoding="utf-8")
    return path


def _register(target: str, credentials: grpc.ChannelCredentials | None, token: str | None) -> tuple[str, int]:
    channel = (
        grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
    )
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    with channel:
        info = lookup_pb2_grpc.LookupStub(channel).GetRegisterInfo(
            lookup_pb2.GetRegisterInfoRequest(), metadata=metadata, timeout=10
        )
    return info.register.version, info.register.count


def _plaintext_health(port: int, service: str = "") -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _wait_for_log(server: ServerProcess, event: str) -> str:
    deadline = time.monotonic() + _SECONDS
    while time.monotonic() < deadline:
        for line in server.log_text().splitlines():
            if f'"{event}"' in line:
                return line
        time.sleep(0.1)
    pytest.fail(f"no {event} in the log:\n{server.log_text()[-3000:]}")


def test_a_follower_with_a_replicate_token_converges_and_one_without_is_refused_and_not_serving(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """mTLS + token to the writer's Admin/Replication listener: the `replicate` principal's follower
    serves the writer's register, follows a delta; the `check` principal's follower is refused, logs why
    and what to change, and stays NOT_SERVING."""
    pki = write_pki(tmp_path / "pki")
    client_cert, client_key = pki.client("nixlookup-follower")
    ca = pki.ca_cert.read_bytes()
    ops_credentials = grpc.ssl_channel_credentials(ca, client_key.read_bytes(), client_cert.read_bytes())
    writer = server_factory(
        [
            "--data-dir", str(tmp_path / "writer"),
            "--register", str(small_register.path),
            "--auth-file", str(_auth_file(tmp_path / "auth.toml")),
            "--tls-cert", str(pki.server_cert),
            "--tls-key", str(pki.server_key),
            "--tls-client-ca", str(pki.ca_cert),
            "--admin-listen", "127.0.0.1:0",
            "--health-listen", "127.0.0.1:0",
        ],
        channel_credentials=ops_credentials,
    )  # fmt: skip
    tls = [
        "--follow-ca",
        str(pki.ca_cert),
        "--follow-cert",
        str(client_cert),
        "--follow-key",
        str(client_key),
    ]
    follower = server_factory(
        ["--follow", writer.admin_target, "--follow-token-file", str(_token_file(tmp_path, "replica")), *tls]
    )
    refused = server_factory(
        ["--follow", writer.admin_target, "--follow-token-file", str(_token_file(tmp_path, "dialer")), *tls],
        wait_for_serving=False,
    )
    assert _plaintext_health(writer.health_port) == "SERVING"  # the probes' port of a TLS server
    assert _register(follower.target, None, None) == _register(writer.target, ops_credentials, TOKENS["ops"])
    key = int(make_mobile_keys(1, seed=1401)[0])
    with grpc.secure_channel(writer.admin_target, ops_credentials) as channel:
        reply = lookup_pb2_grpc.AdminStub(channel).ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(add_e164_le=np.array([key], "<u8").tobytes()),
            metadata=(("authorization", f"Bearer {TOKENS['ops']}"),),
            timeout=30,
        )
    deadline = time.monotonic() + _SECONDS
    while _register(follower.target, None, None)[0] != reply.version and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _register(follower.target, None, None)[0] == reply.version
    serving = json.loads(_wait_for_log(follower, "serving"))
    assert (serving["follow_tls"], serving["follow_auth"]) == ("mTLS", "token")
    assert TOKENS["replica"] not in follower.log_text()  # the token is never logged

    line = json.loads(_wait_for_log(refused, "replication_refused"))
    assert line["code"] == "PERMISSION_DENIED"
    assert "role replicate" in line["hint"]
    assert refused.health_status() == "NOT_SERVING"
    assert refused.health_status("nixlookup.v1.Lookup") == "NOT_SERVING"
    with grpc.insecure_channel(writer.admin_target) as plaintext, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert TOKENS["dialer"] not in refused.log_text()


def test_a_follower_refuses_to_start_on_a_missing_token_file_or_a_token_in_plaintext(tmp_path: Path) -> None:
    """Start-time checks name the flag: an unreadable --follow-token-file, and a token that would travel in
    plaintext to a writer beyond loopback (without --insecure)."""
    missing = ServerProcess(["--follow", "127.0.0.1:1", "--follow-token-file", str(tmp_path / "none")])
    with pytest.raises(ServerStartError):
        missing.start()
    assert "--follow-token-file" in missing.log_text()
    assert "cannot be read" in missing.log_text()
    token = _token_file(tmp_path, "replica")
    plaintext = ServerProcess(["--follow", "writer.example:50052", "--follow-token-file", str(token)])
    with pytest.raises(ServerStartError):
        plaintext.start()
    assert "plaintext" in plaintext.log_text()
