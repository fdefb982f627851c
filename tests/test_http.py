"""The HTTP/JSON front (``--http-listen``) through a real HTTP client (urllib) against a real server: the
same JSON grpcurl prints for Check, the bulk endpoint, bounded input, auth through the same principals,
the expiry refusal, and the exposure rule (issue 13, "JSON for non-Python dialers")."""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from conftest import RegisterFile, ServerFactory
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from nixlookup.bench.certs import write_pki
from nixlookup.bench.serverproc import ServerProcess
from nixlookup.server.policy._dates import add_calendar_months
from nixlookup.v1 import lookup_pb2, lookup_pb2_grpc

_MAX_BATCH = 500


def _http_port(server: ServerProcess) -> int:
    found = re.search(r'"listen": "127\.0\.0\.1:(\d+)"[^\n]*"event": "http_serving"', server.log_text())
    assert found, server.log_text()[-2000:]
    return int(found.group(1))


def _post(
    port: int,
    path: str,
    body: bytes | dict[str, Any],
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    scheme = "https" if tls is not None else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30, context=tls) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        content_type = error.headers["Content-Type"]
        code, document = error.code, json.loads(error.read())
    assert content_type.startswith("application/json"), content_type
    return code, document


@pytest.fixture(name="server", scope="module")
def fixture_server(
    module_server_factory: ServerFactory,
    small_register: RegisterFile,
    tmp_path_factory: pytest.TempPathFactory,
) -> ServerProcess:
    """A writer with a data directory (so a test can reload it) and the HTTP front on a free port."""
    data_dir = tmp_path_factory.mktemp("http") / "data"
    return module_server_factory(
        ["--data-dir", str(data_dir), "--register", str(small_register.path), "--max-batch", str(_MAX_BATCH),
         "--http-listen", "127.0.0.1:0"]
    )  # fmt: skip


@pytest.fixture(name="port", scope="module")
def fixture_port(server: ServerProcess) -> int:
    return _http_port(server)


@pytest.fixture(name="stub", scope="module")
def fixture_stub(server: ServerProcess) -> Any:
    with grpc.insecure_channel(server.target) as channel:
        yield lookup_pb2_grpc.LookupStub(channel)


def test_check_answers_the_json_grpcurl_prints(port: int, stub: Any, small_register: RegisterFile) -> None:
    """POST /v1/check: the CheckResponse the gRPC listener gives, as grpcurl -emit-defaults prints it."""
    member = int(small_register.keys[0])
    for request in ({"e164": str(member)}, {"text": "08-123 456 78", "purpose": "MARKETING"}, {"text": "0"}):
        status, answer = _post(port, "/v1/check", request)
        assert status == 200, answer
        expected = stub.Check(json_format.ParseDict(request, lookup_pb2.CheckRequest()), timeout=5)
        assert answer == json_format.MessageToDict(
            expected, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    status, answer = _post(port, "/v1/check", {"text": "070-12"})
    assert (answer["verdict"], answer["problem"], "valid_until" in answer) == (
        "INVALID",
        "PROBLEM_TOO_SHORT",
        False,
    )


def test_the_batch_endpoint_answers_each_number_in_order(
    port: int, stub: Any, small_register: RegisterFile
) -> None:
    """POST /v1/check:batch: one CheckResponse-shaped result per number, in order, agreeing with a set and
    with Check number by number; packed keys (grpcurl's base64) work too."""
    keys = [int(k) + (i % 2) for i, k in enumerate(small_register.keys[:200])]
    texts = [f"+{key}" for key in keys] + ["abc", ""]
    status, answer = _post(port, "/v1/check:batch", {"texts": texts, "caller": ""})
    assert status == 200, answer
    assert answer["count"] == len(texts)
    verdicts = [row["verdict"] for row in answer["results"]]
    assert (
        verdicts == ["BLOCKED" if k in small_register.key_set else "ALLOWED" for k in keys] + ["INVALID"] * 2
    )
    assert [row["problem"] for row in answer["results"][-2:]] == ["PROBLEM_BAD_CHARACTER", "PROBLEM_EMPTY"]
    assert "blocked" not in answer
    assert answer["register_version"]
    for text, row in zip(texts[:3] + texts[-1:], answer["results"][:3] + answer["results"][-1:], strict=True):
        one = json_format.MessageToDict(
            stub.Check(lookup_pb2.CheckRequest(text=text), timeout=5),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        assert row == {name: one[name] for name in row}, text
    packed = np.array(keys[:3], "<u8").tobytes()
    status, answer = _post(
        port, "/v1/check:batch", json_format.MessageToDict(lookup_pb2.CheckBatch(e164_le=packed))
    )
    assert status == 200, answer
    assert [row["e164"] for row in answer["results"]] == [str(key) for key in keys[:3]]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/check", b"{not json", 400, "not JSON"),
        ("/v1/check", b"[1, 2]", 400, "JSON object"),
        ("/v1/check", b"\xff\xfe", 400, "not JSON"),
        ("/v1/check", b'{"txt": "070-12"}', 400, 'no field named "txt"'),
        ("/v1/check", b'{"e164": "0701234567x"}', 400, "e164"),
        ("/v1/check", b'{"purpose": "TELEMARKETING", "text": "0"}', 400, "purpose"),
        ("/v1/check", b"{}", 400, "no number"),
        ("/v1/check:batch", b'{"texts": 5}', 400, "texts"),
        ("/v1/check:batch", json.dumps({"texts": ["0"] * (_MAX_BATCH + 1)}).encode(), 400, "--max-batch"),
        ("/v1/nothing", b"{}", 404, "POST /v1/check"),
    ],
)
def test_bad_input_is_a_clear_json_error_never_500(
    port: int, path: str, body: bytes, status: int, needle: str
) -> None:
    """Bad input gets a 4xx with Google's JSON error form naming the problem; no number in full."""
    got, answer = _post(port, path, body)
    assert got == status, answer
    assert needle in answer["error"]["message"], answer
    assert answer["error"]["code"] == status
    assert "0701234567" not in answer["error"]["message"]


def test_an_oversized_body_is_413_naming_the_limit(port: int) -> None:
    """A body over the bound is refused before it is read, naming the limit; the server keeps answering."""
    big = json.dumps({"texts": ["070-123 45 67"] * 300_000}).encode()
    status, answer = _post(port, "/v1/check:batch", big)
    assert status == 413
    assert "HTTP_MAX_BODY_BYTES" in answer["error"]["message"]
    assert _post(port, "/v1/check", {"text": "0"})[0] == 200


def test_get_is_405_and_json(port: int) -> None:
    """GET on an endpoint says it takes POST (JSON, not an HTML page)."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/check", timeout=10)
    assert refused.value.code == 405
    assert "POST" in json.loads(refused.value.read())["error"]["message"]


def test_an_expired_register_is_503_failed_precondition(
    server: ServerProcess, port: int, small_register: RegisterFile
) -> None:
    """Once the register's answers have expired, HTTP refuses as gRPC does (FAILED_PRECONDITION -> 503),
    and answers again after a current reload. (After the other tests of the module server.)"""
    ancient = add_calendar_months(datetime.now(UTC), -2) - timedelta(days=1)
    stamp = Timestamp()
    stamp.FromDatetime(ancient)
    with grpc.insecure_channel(server.target) as channel:
        admin = lookup_pb2_grpc.AdminStub(channel)
        request = lookup_pb2.ReloadRequest(path=str(small_register.path), force=True, register_date=stamp)
        admin.Reload(request, timeout=30)
        for path, body in (("/v1/check", {"text": "08-123 456 78"}), ("/v1/check:batch", {"texts": ["0"]})):
            status, answer = _post(port, path, body)
            assert status == 503, answer
            assert answer["error"]["status"] == "FAILED_PRECONDITION"
            assert "expired" in answer["error"]["message"]
        admin.Reload(lookup_pb2.ReloadRequest(path=str(small_register.path), force=True), timeout=30)
    assert _post(port, "/v1/check", {"text": "08-123 456 78"})[0] == 200


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_bearer_tokens_are_the_grpc_listeners_principals_over_tls(
    server_factory: ServerFactory, small_register: RegisterFile, tmp_path: Path
) -> None:
    """With --auth-file and --tls-cert/--tls-key: HTTPS with the server's certificate (renewed in place,
    the next connection gets the new one); no or an unknown
    token is 401, a principal acting as another caller 403, a known token answers as its principal (its
    one caller filled in, as on gRPC)."""
    pki = write_pki(tmp_path / "pki")
    tls = ssl.create_default_context(cafile=str(pki.ca_cert))
    auth = tmp_path / "auth.toml"
    auth.write_text(
        f'[[principal]]\nname = "acme-dialer"\ntoken_sha256 = "{_digest("acme-token")}"\n'
        'callers = ["acme"]\nroles = ["check"]\n',
        encoding="utf-8",
    )
    server = server_factory(
        ["--register", str(small_register.path), "--auth-file", str(auth), "--http-listen", "127.0.0.1:0",
         "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)],
        channel_credentials=grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()),
    )  # fmt: skip
    port = _http_port(server)
    status, answer = _post(port, "/v1/check", {"text": "0"}, tls=tls)
    assert (status, answer["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert "Bearer" in answer["error"]["message"]
    assert _post(port, "/v1/check", {"text": "0"}, token="guess", tls=tls)[0] == 401
    status, answer = _post(port, "/v1/check", {"text": "0", "caller": "other"}, token="acme-token", tls=tls)
    assert (status, answer["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, answer = _post(port, "/v1/check", {"text": "08-123 456 78"}, token="acme-token", tls=tls)
    assert status == 200, answer
    assert "caller 'acme' has no lists" in answer["detail"]
    status, answer = _post(port, "/v1/check:batch", {"texts": ["08-123 456 78"]}, token="acme-token", tls=tls)
    assert (status, answer["results"][0]["verdict"]) == (200, "ALLOWED")
    with pytest.raises((ConnectionError, urllib.error.URLError)):  # plaintext to TLS: no answer
        _post(port, "/v1/check", {"text": "0"}, token="acme-token")
    renewed = write_pki(tmp_path / "pki", name="renewed CA")  # new files in place: no restart
    status, _ = _post(
        port,
        "/v1/check",
        {"text": "0"},
        token="acme-token",
        tls=ssl.create_default_context(cafile=str(renewed.ca_cert)),
    )
    assert status == 200, "a renewed certificate serves the next connection"


def test_a_public_http_listener_without_auth_is_refused(tmp_path: Path) -> None:
    """A non-loopback --http-listen without --auth-file refuses the start (as --listen does), naming it."""
    started = subprocess.run(
        [sys.executable, "-m", "nixlookup.server.app", "serve", "--synthetic-size", "1000",
         "--listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0"],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert started.returncode != 0
    assert "0.0.0.0:0 is beyond loopback" in started.stderr
    assert "--insecure" in started.stderr
