"""A throwaway PKI for TLS tests, made with `cryptography`: a CA, a server certificate for
127.0.0.1 / localhost, and client certificates, written as PEM files."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def make_pki(directory: Path, tag: str = "idnode") -> Pki:
    """A CA named `tag`, the loopback server's certificate and one client's, under directory."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
             server: bool = False) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(f"{tag} CA"))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return b.sign(ca_key, hashes.SHA256())

    server_key = ec.generate_private_key(ec.SECP256R1())
    client_key = ec.generate_private_key(ec.SECP256R1())
    return Pki(
        ca=_write(directory / f"{tag}-ca.pem", cert(f"{tag} CA", ca_key, ca=True)),
        server_cert=_write(directory / f"{tag}-server.pem", cert("server", server_key,
                                                                 server=True)),
        server_key=_write(directory / f"{tag}-server.key", server_key),
        client_cert=_write(directory / f"{tag}-client.pem", cert("client", client_key)),
        client_key=_write(directory / f"{tag}-client.key", client_key))
