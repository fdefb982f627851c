"""The audit log, metering, the exposure rules and the certificate source, each on its own."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nixlookup.bench.certs import write_pki
from nixlookup.server.app._exposure import ExposureError, plan_exposure
from nixlookup.server.app._tls import CertificateSource, TlsError, TlsFiles
from nixlookup.server.rpc._metering import Meter, UsageRow
from nixlookup.server.store._audit import AuditLog, AuditRecord

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def record(operation: str, minutes: int = 0, **fields: object) -> AuditRecord:
    return AuditRecord(
        time=NOW + timedelta(minutes=minutes), principal="ops", peer="ipv4:127.0.0.1:5", operation=operation,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_audit_records_survive_reopening_in_order(tmp_path: Path) -> None:
    """Every appended record reads back, oldest first, field for field; limit and since select."""
    log = AuditLog(tmp_path)
    written = [
        record(
            "Reload", 0, list_kind="REGISTER", version_before="v1", version_after="v2", counts={"count": 9}
        ),
        record("ApplyDelta", 1, list_kind="OPT_OUT", caller="acme", counts={"added": 2, "removed": 0}),
        record("DropList", 2, outcome="PERMISSION_DENIED", detail="principal 'x' lacks role 'lists'"),
    ]
    for each in written:
        log.append(each)
    assert AuditLog(tmp_path).read() == (written, 0)
    assert AuditLog(tmp_path).read(limit=2)[0] == written[1:]
    assert AuditLog(tmp_path).read(since=NOW + timedelta(minutes=1))[0] == written[1:]
    assert oct(os.stat(log.path).st_mode & 0o777) == "0o600"


def test_a_torn_audit_line_is_skipped_and_the_next_record_starts_clean(tmp_path: Path) -> None:
    """A crash mid-write leaves a torn tail: it is counted as skipped, later records are whole."""
    log = AuditLog(tmp_path)
    log.append(record("Reload"))
    with log.path.open("ab") as handle:
        handle.write(b'{"time": "2026-12-03T10:0')
    reopened = AuditLog(tmp_path)
    reopened.append(record("Compact", 5))
    records, skipped = reopened.read()
    assert [r.operation for r in records] == ["Reload", "Compact"]
    assert skipped == 1


def test_the_meter_counts_by_principal_caller_and_verdict() -> None:
    """Counts add up per (principal, caller); a principal's own rows can be asked for."""
    meter = Meter(now=NOW)
    meter.count("acme-dialer", "acme", allowed=1, blocked=0, invalid=0)
    meter.count("acme-dialer", "acme", allowed=6000, blocked=3000, invalid=1000)
    meter.count("agency", "bank-y", allowed=0, blocked=1, invalid=0)
    assert meter.rows() == [
        UsageRow("acme-dialer", "acme", calls=2, allowed=6001, blocked=3000, invalid=1000),
        UsageRow("agency", "bank-y", calls=1, allowed=0, blocked=1, invalid=0),
    ]
    assert meter.rows("agency")[0].numbers == 1
    assert meter.since == NOW


@pytest.mark.parametrize(
    ("listen", "admin_listen", "authenticated", "tokens", "tls", "refused"),
    [
        ("0.0.0.0:50051", None, False, False, False, "not authenticated"),
        ("0.0.0.0:50051", None, True, True, False, "plaintext"),
        ("127.0.0.1:50051", "10.0.0.5:50052", False, False, False, "10.0.0.5:50052 is beyond loopback"),
        ("[::]:50051", None, True, True, True, None),
        ("0.0.0.0:50051", None, True, False, False, None),  # mTLS subjects only, no tokens: TLS is implied
        ("127.0.0.1:50051", None, False, False, False, None),
        ("localhost:50051", None, True, True, False, None),
    ],
)
def test_exposure_rules(  # noqa: PLR0917 - one parameter per column of the table
    listen: str, admin_listen: str | None, authenticated: bool, tokens: bool, tls: bool, refused: str | None
) -> None:
    """Beyond loopback: authentication, and TLS when tokens are used, else a refusal naming the gap."""
    arguments = {
        "listen": listen, "admin_listen": admin_listen, "authenticated": authenticated,
        "uses_tokens": tokens, "tls": tls,
    }  # fmt: skip
    if refused is None:
        assert plan_exposure(**arguments, insecure=False).warnings == ()  # type: ignore[arg-type]
        return
    with pytest.raises(ExposureError, match=refused):
        plan_exposure(**arguments, insecure=False)  # type: ignore[arg-type]
    warned = plan_exposure(**arguments, insecure=True)  # type: ignore[arg-type]
    assert warned.warnings
    assert all(w.startswith("--insecure") for w in warned.warnings)


def test_admin_is_served_on_listen_only_when_that_is_loopback() -> None:
    """Default: Admin on a loopback --listen, nowhere on a public one; --admin-listen: only there."""
    common = {"authenticated": True, "uses_tokens": True, "tls": True, "insecure": False}
    assert plan_exposure(listen="127.0.0.1:1", admin_listen=None, **common).admin_on_listen  # type: ignore[arg-type]
    assert not plan_exposure(listen="0.0.0.0:1", admin_listen=None, **common).admin_on_listen  # type: ignore[arg-type]
    separate = plan_exposure(listen="127.0.0.1:1", admin_listen="127.0.0.1:2", **common)  # type: ignore[arg-type]
    assert not separate.admin_on_listen
    assert separate.admin_listen == "127.0.0.1:2"
    assert plan_exposure(listen="0.0.0.0:1", admin_listen=None, **{**common, "insecure": True}).warnings  # type: ignore[arg-type]


def test_the_certificate_source_rereads_changed_files_only(tmp_path: Path) -> None:
    """No change: None (keep). A rewritten certificate: a new configuration. A broken one: kept."""
    pki = write_pki(tmp_path / "one")
    files = TlsFiles(cert=pki.server_cert, key=pki.server_key, client_ca=pki.ca_cert)
    source = CertificateSource(files)
    assert source.mutual
    assert source.fetch() is None
    renewed = write_pki(tmp_path / "two")
    os.replace(renewed.server_key, pki.server_key)
    os.replace(renewed.server_cert, pki.server_cert)
    assert source.fetch() is not None
    assert source.reloads == 1
    assert source.fetch() is None
    pki.server_key.write_text("not a key", encoding="ascii")
    assert source.fetch() is None
    assert source.reloads == 1
    source.request_reload()
    assert source.fetch() is None


def test_a_missing_or_non_pem_file_refuses_the_start_naming_the_flag(tmp_path: Path) -> None:
    """The files are checked when the server starts."""
    pki = write_pki(tmp_path)
    with pytest.raises(TlsError, match=r"--tls-key .*cannot be read"):
        CertificateSource(TlsFiles(cert=pki.server_cert, key=tmp_path / "missing.pem"))
    with pytest.raises(TlsError, match=r"--tls-cert .*not a PEM file"):
        CertificateSource(TlsFiles(cert=pki.server_key, key=pki.server_key))
