"""Who is calling over gRPC: a bearer API key in the call metadata, or a client certificate
bound to a credential (mTLS); neither means anonymous."""
from __future__ import annotations

from collections.abc import Iterable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from idnode.core.audit import Actor
from idnode.core.auth import ANONYMOUS, Authenticator
from idnode.core.errors import Unauthenticated


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The API key of `authorization: Bearer <key>` metadata, None without one."""
    for key, value in metadata:
        if key == "authorization":
            scheme, _, rest = str(value).partition(" ")
            if scheme.lower() != "bearer" or not rest.strip():
                raise Unauthenticated("authorization metadata must be 'Bearer <api key>'",
                                      reason="MALFORMED_CREDENTIAL")
            return rest.strip()
    return None


async def actor_of(context: grpc.aio.ServicerContext, authenticator: Authenticator) -> Actor:
    client = peer_host(context.peer() or "")
    token = bearer_token(context.invocation_metadata() or ())
    if token is not None:
        return Actor(await authenticator.from_token(token), client)
    pem = (context.auth_context() or {}).get("x509_pem_cert")
    if pem:
        der = x509.load_pem_x509_certificate(pem[0]).public_bytes(Encoding.DER)
        try:
            return Actor(await authenticator.from_certificate(der), client)
        except Unauthenticated as exc:
            # A certificate the CA vouches for but bound to no credential identifies no one:
            # its holder may still resolve, like any anonymous caller.
            if exc.reason != "UNKNOWN_CERTIFICATE":
                raise
    return Actor(ANONYMOUS, client)


def peer_host(peer: str) -> str:
    """The client address of a gRPC peer string."""
    # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer
