"""`coop serve --tls`: a self-signed certificate, made once and kept.

Kept (in the state dir, key 0600) so that a phone which accepted it once is not asked
again after every restart, and so its fingerprint, printed with the URL and put in the
QR code, stays the same. Browsers cannot verify a self-signed certificate: comparing the
fingerprint they show with the printed one is how the user knows it is theirs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from coop.web.addresses import lan_addresses


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str
    """SHA-256 of the DER certificate, as colon-separated hex (what browsers show)."""


def certificate(directory: Path, names: set[str]) -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    if not (cert_path.exists() and key_path.exists()):
        _make(directory, cert_path, key_path, names)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256())
    return Certificate(cert_path, key_path, ":".join(f"{b:02X}" for b in digest))


def _make(directory: Path, cert_path: Path, key_path: Path, names: set[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coop serve"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "coop")])
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names)]
    for address in ["127.0.0.1", "::1", *lan_addresses()]:
        alt.append(x509.IPAddress(ipaddress.ip_address(address)))
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=825))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
