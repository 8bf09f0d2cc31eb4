"""Credentials as the tenancy store keeps them, and a freshly issued key: the types the rules
(idnode.core.auth) and the store (idnode.store.tenancy) share."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class StoredCredential:
    key_id: str
    role: str
    enterprise_id: int | None
    scopes: tuple[str, ...]
    prefixes: tuple[str, ...] | None
    #: None for a Handle admin credential, which has a public key instead of a secret.
    salt: bytes | None
    secret_hash: bytes | None
    expires_at: datetime | None
    revoked_at: datetime | None
    handle_admin: str | None = None
    #: SubjectPublicKeyInfo DER of a Handle admin's key.
    public_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly issued key. `token` is shown once and never stored."""

    key_id: str
    token: str
    salt: bytes
    secret_hash: bytes
