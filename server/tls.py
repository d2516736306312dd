"""TLS material: server credentials from configured PEM files, and a self-signed certificate for a
fresh installation (``auto_tls``) so that the default ``nasname serve`` never speaks plaintext.

The self-signed certificate names ``localhost``, ``127.0.0.1``, ``::1``, the machine's host name, the
bound host and the configured ``tls_hosts`` (``--tls-host``), so stations on other machines can verify
it under the name or address they dial. Clients trust it by passing it as their CA (``nasname login
--ca server.crt`` once; on the same machine the CLI finds ``<data_dir>/tls/server.crt`` by itself).
When ``tls_hosts`` or the bound host name something the existing certificate lacks, a new one is made
(and clients must be given the new file).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import socket
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.errors import ConfigurationError
from server.config import ServerConfig

__all__ = ["AUTO_CERT", "AUTO_KEY", "certificate_names", "ensure_self_signed", "make_self_signed",
           "server_credentials"]

log = logging.getLogger(__name__)

AUTO_CERT = Path("tls") / "server.crt"
AUTO_KEY = Path("tls") / "server.key"


def make_self_signed(hosts: list[str], days: int = 3650) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for a P-256 key, valid for ``hosts`` (names or IPs)."""
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # ordered, unique
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nasname")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def certificate_names(pem: bytes) -> set[str]:
    """The DNS names and IP addresses a PEM certificate's SubjectAlternativeName lists."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {*san.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))}


def _wanted(host: str, extra: tuple[str, ...]) -> list[str]:
    """Names clients may dial; a wildcard bind address (0.0.0.0, ::) is no name."""
    named = [] if host in ("0.0.0.0", "::", "") else [host]
    return [*named, *extra]


def ensure_self_signed(data_dir: Path, host: str, extra_hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The auto certificate and key under ``data_dir`` (created on first use, or again when ``host`` or
    ``extra_hosts`` are not among its names; key file mode 0600)."""
    cert_path, key_path = data_dir / AUTO_CERT, data_dir / AUTO_KEY
    wanted = _wanted(host, extra_hosts)
    if cert_path.is_file() and key_path.is_file():
        missing = [n for n in wanted if n not in certificate_names(cert_path.read_bytes())]
        if not missing:
            return cert_path, key_path
        log.warning("the self-signed certificate lacks %s: making a new one (give clients the new %s)",
                    ", ".join(missing), cert_path)
    cert, key = make_self_signed(["localhost", "127.0.0.1", "::1", socket.gethostname(), *wanted])
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    cert_path.write_bytes(cert)
    log.info("created a self-signed TLS certificate at %s", cert_path)
    return cert_path, key_path


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read TLS {what} {path}: {exc}") from exc


def server_credentials(config: ServerConfig, data_dir: Path) -> grpc.ServerCredentials | None:
    """None for plaintext (allowed on loopback only, see ServerConfig.plaintext), else TLS credentials;
    with ``tls_client_ca`` clients must present a certificate signed by it (mutual TLS)."""
    if config.plaintext:
        return None
    if config.tls_cert is not None and config.tls_key is not None:
        cert_path, key_path = config.tls_cert, config.tls_key
    else:
        cert_path, key_path = ensure_self_signed(data_dir, config.host, config.tls_hosts)
    ca = _read(config.tls_client_ca, "client CA") if config.tls_client_ca else None
    return grpc.ssl_server_credentials([(_read(key_path, "key"), _read(cert_path, "certificate"))],
                                       root_certificates=ca, require_client_auth=ca is not None)
