"""The Python client and the `nixlookup` CLI against the real TLS server: token and CA options, check,
upload, audit and usage."""

from __future__ import annotations

from pathlib import Path

import pytest
from secured_server import (
    TOKENS,
    Secured,
)


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
