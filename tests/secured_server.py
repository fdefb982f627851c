"""The TLS server the security tests run against, and the words they speak to it.

`start_secured` starts a real server (through the tests' server factory) with TLS made here, an auth
file of five token principals (`TOKENS`), Admin on its own listener and a small upload limit, and loads
acme's opt-out list. conftest.py's `secured` fixture (one server per test module) builds on it; the
test_security_*.py files use `bearer`, `check`, `code_of`, `details_of` to speak to it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory, make_mobile_keys

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


# deliberate twin of test_auth_rules.AUTH_FILE's shape: an auth file is data; these principals are the port's
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


def tls_server_args(pki: Pki, auth_file: Path) -> list[str]:
    """The flags of a TLS server with an auth file: every secured server in these tests has them."""
    return [
        "--auth-file",
        str(auth_file),
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
    ]


def start_secured(server_factory: ServerFactory, register: RegisterFile, directory: Path) -> Secured:
    """A TLS server with five token principals, Admin on its own listener, acme's opt-out list loaded."""
    pki = write_pki(directory / "pki")
    auth_file = directory / "auth.toml"
    auth_file.write_text(auth_file_text(), encoding="utf-8")
    server = server_factory(
        [
            "--data-dir",
            str(directory / "data"),
            "--register",
            str(register.path),
            *tls_server_args(pki, auth_file),
            "--admin-listen",
            "127.0.0.1:0",
            "--max-upload-bytes",
            str(UPLOAD_LIMIT),
        ],
        channel_credentials=grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()),
    )
    secured = Secured(server, pki, auth_file, register, directory / "data")
    opted_out = int(make_mobile_keys(1, seed=404)[0])
    assert opted_out not in register.key_set
    with secured.channel(server.admin_target) as channel:
        lookup_pb2_grpc.AdminStub(channel).ApplyDelta(
            lookup_pb2.ApplyDeltaRequest(
                list=opt_out("acme"), add_e164_le=np.array([opted_out], "<u8").tobytes()
            ),
            metadata=bearer("acme-lists"),
            timeout=30,
        )
    secured.opted_out = opted_out
    return secured


def check(
    lookup: lookup_pb2_grpc.LookupStub, who: str | None, key: int, caller: str = ""
) -> lookup_pb2.CheckResponse:
    metadata = bearer(who) if who else None
    return lookup.Check(lookup_pb2.CheckRequest(e164=key, caller=caller), metadata=metadata, timeout=10)  # type: ignore[no-any-return]


def opt_out(caller: str) -> lookup_pb2.ListRef:
    return lookup_pb2.ListRef(kind=lookup_pb2.LIST_KIND_OPT_OUT, caller=caller)


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
