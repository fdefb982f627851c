"""Certificates made in the test: a CA, a server certificate for 127.0.0.1, client certificates by CN.

Made with the `cryptography` package (EC P-256, valid for a day), written as PEM files, so tests run the
real server with TLS and mTLS exactly as an operator would configure it. Each `write_pki` call makes a new
CA: a "rotated certificate" is a `write_pki` into another folder, moved over the old files.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Pki", "write_pki"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class Pki:
    """PEM files of one CA, the server's certificate and key, and a way to issue client certificates."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    _ca_key: ec.EllipticCurvePrivateKey
    _ca: x509.Certificate

    def client(self, common_name: str) -> tuple[Path, Path]:
        """(certificate, key) files of a client certificate with subject ``CN=<common_name>``."""
        key = _key()
        cert = _sign(self._ca, self._ca_key, _name(common_name), key, server=False)
        cert_path = self.directory / f"client-{common_name}.pem"
        key_path = self.directory / f"client-{common_name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        return cert_path, key_path


def _sign(
    ca: x509.Certificate | None,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject if ca is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )
    if ca is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    elif server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(ca_key, hashes.SHA256())


def write_pki(directory: Path, *, name: str = "nixlookup test CA") -> Pki:
    """A new CA and a server certificate for 127.0.0.1/localhost, written into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _sign(None, ca_key, _name(name), ca_key, server=False)
    server_key = _key()
    server = _sign(ca, ca_key, _name("nixlookup-server"), server_key, server=True)
    pki = Pki(
        directory=directory,
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        _ca_key=ca_key,
        _ca=ca,
    )
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(_pem_key(server_key))
    return pki
