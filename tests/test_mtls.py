"""Mutual TLS: a real TLS-terminated gRPC server, client certificates made here, one of them
bound to a credential."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from idnode.node import Node
from idnode.v1 import admin_pb2 as apb
from idnode.v1 import admin_pb2_grpc
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, make_settings
from tests.helpers import error_info, record_input

HOST = "idnode.test"


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          dns: str | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, bytes]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idnode test CA")])
    ca = _cert("idnode test CA", ca_key, ca_name, ca_key, ca=True)
    out = {"ca": _pem(ca)}
    for name, dns in (("server", HOST), ("client_a", None), ("client_b", None)):
        key = ec.generate_private_key(ec.SECP256R1())
        out[name] = _pem(_cert(name, key, ca_name, ca_key, dns=dns))
        out[name + "_key"] = _pem(key)
        (tmp_path / f"{name}.pem").write_bytes(out[name])
        (tmp_path / f"{name}.key").write_bytes(out[name + "_key"])
    (tmp_path / "ca.pem").write_bytes(out["ca"])
    out["dir"] = str(tmp_path).encode()
    return out


def tls_channel(port: int, pki: dict[str, bytes], client: str | None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"],
        private_key=pki[client + "_key"] if client else None,
        certificate_chain=pki[client] if client else None)
    return grpc.aio.secure_channel(f"127.0.0.1:{port}", creds,
                                   options=[("grpc.ssl_target_name_override", HOST),
                                            # Channels must not share a TLS connection made
                                            # with another client certificate.
                                            ("grpc.use_local_subchannel_pool", 1)])


async def test_client_certificate_authenticates_as_its_credential(
        dsn: str, keys: Keys, pki: dict[str, bytes]) -> None:
    d = Path(pki["dir"].decode())
    node = Node(make_settings(grpc_tls_cert=str(d / "server.pem"),
                              grpc_tls_key=str(d / "server.key"),
                              grpc_tls_client_ca=str(d / "ca.pem"),
                              grpc_tls_require_client_cert=True), dsn)
    await node.start()
    try:
        # The operator binds client A's certificate to a new write key of enterprise A.
        async with tls_channel(node.ports.grpc, pki, "client_b") as ch:
            issued = await admin_pb2_grpc.AdminStub(ch).IssueKey(
                apb.IssueKeyRequest(enterprise_id=keys.enterprise_a, scopes=["read", "write"],
                                    client_certificate_pem=pki["client_a"].decode()),
                metadata=[("authorization", f"Bearer {keys.operator}")])
            assert issued.credential.has_certificate
        # Client A registers with its certificate alone, no API key.
        async with tls_channel(node.ports.grpc, pki, "client_a") as ch:
            ok = await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="tls", records=[record_input("0.118.8/TLS-1")]))
            assert ok.registered == 1
        # Client B's certificate is trusted by the CA but bound to no credential.
        async with tls_channel(node.ports.grpc, pki, "client_b") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key="tls", records=[record_input("0.118.8/TLS-2")]))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_info(err.value)[0].reason == "CREDENTIAL_REQUIRED"
            # ...but it may still resolve, like anyone.
            rec = await registry_pb2_grpc.RegistryStub(ch).Resolve(
                pb.ResolveRequest(identifier="0.118.8/TLS-1"))
            assert rec.identifier == "0.118.8/TLS-1"
        # Without a client certificate the handshake itself is refused.
        async with tls_channel(node.ports.grpc, pki, None) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry_pb2_grpc.RegistryStub(ch).Resolve(
                    pb.ResolveRequest(identifier="0.118.8/TLS-1"), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await node.stop(grace=1)
