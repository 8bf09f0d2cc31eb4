"""Client-side TLS for gRPC channels (the upstream channel to the top-level node, the CLI's
calls to a node): credentials from PEM files named in settings."""
from __future__ import annotations

from pathlib import Path

import grpc


def channel_credentials(ca: str, cert: str = "", key: str = "") -> grpc.ChannelCredentials | None:
    """TLS credentials verifying the server against `ca` (a PEM bundle), presenting the client
    certificate `cert` with its private key `key` when both are given (mutual TLS); None when
    no CA is set, meaning plaintext. A client certificate without a CA is an error: it would
    otherwise be silently sent nowhere."""
    if not ca:
        if cert or key:
            raise ValueError("a client certificate needs the CA that verifies the server")
        return None
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs both its certificate and its key file")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None)


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
