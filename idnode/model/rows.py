"""Rows as the stores return them and the rules read them: a prefix's state, a pending Handle
challenge, a kept Handle/IDIS form signature, an identifier's record and its batch signature,
enterprises and their credentials as listed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: The largest value of a PostgreSQL bigint column (versions, log leaves, outbox seqs): what a
#: client's 64-bit unsigned field may carry only up to, or the store could not write it.
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PrefixRow:
    prefix: str
    status: str
    enterprise_id: int | None
    refuse_resolution: bool
    #: The template's canonical JSON text and name, when the prefix has one.
    template: str | None
    template_name: str | None
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    nonce: bytes
    digest: bytes
    request: bytes
    client: str


@dataclass(frozen=True, slots=True)
class HsRow:
    alg: str
    version: int
    record_created: datetime
    cert_id: str
    jws: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Sig:
    """A record's signature: its batch's JWS(s), its leaf index and inclusion path."""

    jws: str
    jws_pq: str | None
    index: int
    proof: bytes


@dataclass(frozen=True, slots=True)
class BatchSignature:
    """A batch's signature as it is stored once for all its records (the tree's size)."""

    jws: str
    jws_pq: str | None
    size: int


@dataclass(frozen=True, slots=True)
class Row:
    """A stored record as the database has it; `vals` is its JSON array text."""

    prefix: str
    suffix: str
    vals: str
    version: int
    created_at: datetime
    updated_at: datetime
    sig: Sig | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    registered: int
    committed_at: datetime
    #: True when the idempotency key was already used by an identical request.
    replayed: bool
    #: Digest stored with the key (differs from the request's when the key was reused).
    stored_digest: bytes


@dataclass(frozen=True, slots=True)
class EnterpriseRow:
    id: int
    name: str
    uscc: str
    contact: str
    created_at: datetime
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """A credential as listed (no secret, no key): what `keys` and `issue_key` show."""

    key_id: str
    role: str
    enterprise_id: int | None
    scopes: tuple[str, ...]
    prefixes: tuple[str, ...] | None
    label: str
    has_certificate: bool
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    #: `INDEX:PREFIX/SUFFIX` when the credential is a Handle admin bound to a public key.
    handle_admin: str | None = None
