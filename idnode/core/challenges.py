"""Challenge and response, the Handle protocol's public-key authentication.

The node sends a random nonce with a digest of the request it challenges; the client signs
nonce || digest with the private key of an admin identity (`INDEX:HANDLE`) bound to a
credential (core.auth); the node checks the signature with the bound key, and the caller
then acts with that credential's rights. Each challenge is answered at most once and only
within its lifetime, so a recorded answer cannot be replayed.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from idnode.core.auth import Authenticator, Principal
from idnode.core.errors import Unauthenticated
from idnode.core.ports import ChallengeKeeper

NONCE_BYTES = 16
#: The only authentication type served: public keys (HS_PUBKEY). Secret keys (HS_SECKEY)
#: would need the node to keep client secrets, and Handle clients rarely use them.
PUBKEY = b"HS_PUBKEY"


@dataclass(frozen=True, slots=True)
class Challenge:
    session_id: int
    nonce: bytes


def new_session_id() -> int:
    """A random positive int32 (0 means "no session" on the wire)."""
    return secrets.randbelow(2**31 - 1) + 1


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


async def verify_answer(authenticator: Authenticator, auth_type: bytes, admin_handle: str,
                        admin_index: int, hash_name: bytes, signature: bytes, nonce: bytes,
                        digest: bytes) -> Principal:
    """The principal an answer to (nonce, digest) proves to be; Unauthenticated otherwise."""
    if auth_type != PUBKEY:
        raise Unauthenticated(f"authentication type {auth_type!r} is not supported; use "
                              "HS_PUBKEY (public-key) authentication",
                              reason="UNSUPPORTED_AUTHENTICATION")
    return await authenticator.from_handle_signature(f"{admin_index}:{admin_handle}",
                                                     hash_name, signature, nonce + digest)


class Challenges:
    """Pending challenges in the database, so an answer may reach any process of the node."""

    def __init__(self, store: ChallengeKeeper, authenticator: Authenticator,
                 ttl: float = 60.0) -> None:
        self.store = store
        self.authenticator = authenticator
        self.ttl = ttl

    async def issue(self, request: bytes, digest: bytes, client: str) -> Challenge:
        """A challenge of `request` (kept to be carried out once answered)."""
        nonce = new_nonce()
        while True:
            session_id = new_session_id()
            if await self.store.put(session_id, nonce, digest, request, client, self.ttl):
                return Challenge(session_id, nonce)

    async def answer(self, session_id: int, auth_type: bytes, admin_handle: str,
                     admin_index: int, hash_name: bytes, signature: bytes
                     ) -> tuple[Principal, bytes]:
        """(principal, the challenged request) for a valid answer. The challenge is used up
        whatever the outcome: a wrong answer cannot be retried against the same nonce."""
        pending = await self.store.take(session_id)
        if pending is None:
            raise Unauthenticated(f"no challenge {session_id} is waiting for an answer (never "
                                  "issued, expired or already answered)",
                                  reason="CHALLENGE_UNKNOWN")
        principal = await verify_answer(self.authenticator, auth_type, admin_handle,
                                        admin_index, hash_name, signature, pending.nonce,
                                        pending.digest)
        return principal, pending.request
