"""TLS for STARTTLS: the configured certificate, or a self-signed one.

When no certificate is configured, one is generated on first start (an
ECDSA P-256 key and a self-signed certificate for the host name, valid two
years) and kept in the data directory, so opportunistic TLS works from the
first connection. Client certificates are asked for, not required; they
identify trusted outbound connectors when a CA for them is configured.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailward.config import ConfigError

log = logging.getLogger("mailward.smtp")


def self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    """self_signed - write a new key and self-signed certificate for hostname."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = dt.datetime.now(dt.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=730))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    key_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("generated a self-signed certificate for %s in %s", hostname, cert_path.parent)


def server_context(cert: str, key: str, data_dir: Path, hostname: str,
                   client_ca: str = "") -> ssl.SSLContext:
    """server_context - the STARTTLS context; generates a certificate if needed."""
    if not cert:
        cert_path, key_path = data_dir / "tls" / "smtp.crt", data_dir / "tls" / "smtp.key"
        if not cert_path.exists() or not key_path.exists():
            self_signed(hostname, cert_path, key_path)
        cert, key = str(cert_path), str(key_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"smtp.tls_cert/tls_key: cannot load {cert}: {error}") from None
    if client_ca:
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as error:
            raise ConfigError(f"outbound.client_ca_file: cannot load {client_ca}: "
                              f"{error}") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def peer_names(ssl_object: ssl.SSLObject | None) -> list[str]:
    """peer_names - the verified client certificate's CN and DNS names."""
    if ssl_object is None:
        return []
    certificate = ssl_object.getpeercert()
    if not certificate:
        return []
    names = [value for rdn in certificate.get("subject", ()) for key, value in rdn
             if key == "commonName"]
    names += [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    return [name.lower() for name in names]
