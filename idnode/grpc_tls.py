"""TLS for gRPC from PEM files named in settings: channels (the upstream channel to the
top-level node, the CLI's calls to a node) and listeners (a node's, the top-level node's)."""
from __future__ import annotations

from pathlib import Path

import grpc

from idnode.config import SettingsError


def channel_credentials(ca: str, cert: str = "", key: str = "") -> grpc.ChannelCredentials | None:
    """TLS credentials verifying the server against `ca` (a PEM bundle), presenting the client
    certificate `cert` with its private key `key` when both are given (mutual TLS); None when
    no CA is set, meaning plaintext. A client certificate without a CA is an error: it would
    otherwise be silently sent nowhere."""
    if not ca:
        if cert or key:
            raise SettingsError("a client certificate needs the CA that verifies the server")
        return None
    if bool(cert) != bool(key):
        raise SettingsError("a client certificate needs both its certificate and its key file")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None)


def server_credentials(cert: str, key: str, client_ca: str, *, require_client_cert: bool
                       ) -> grpc.ServerCredentials | None:
    """A gRPC listener's TLS from PEM files (None without a certificate: plaintext). With
    `client_ca`, client certificates are verified; `require_client_cert` refuses callers
    without one (mutual TLS)."""
    if not cert:
        return None
    ca = Path(client_ca).read_bytes() if client_ca else None
    return grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())],
                                       root_certificates=ca,
                                       require_client_auth=ca is not None and require_client_cert)


def channel(address: str, credentials: grpc.ChannelCredentials | None,
            options: list[tuple[str, object]] | None = None) -> grpc.aio.Channel:
    """An asyncio channel: TLS with `credentials`, plaintext without."""
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


def sync_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    """A blocking channel (the CLI's): TLS with `credentials`, plaintext without."""
    if credentials is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, credentials)
