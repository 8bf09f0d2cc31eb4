"""What the rules need of the stores and of the hot cache, as protocols: idnode.store and
idnode.cache implement them, and the composition root (idnode.services) hands the rules the
concrete objects, which fit structurally (mypy checks it there). The rules depend on these
interfaces, not on the store or cache classes, and each protocol names only the methods the
rules call."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeAlias

from idnode.core.entries import Absent, Resolved
from idnode.model.audit import AuditEntry
from idnode.model.credentials import NewKey
from idnode.model.events import AttachmentRef, EventRow, NewEvent
from idnode.model.identifiers import Identifier
from idnode.model.rows import (BatchOutcome, BatchSignature, CredentialRow, EnterpriseRow,
                               HsRow, PendingChallenge, PrefixRow, Row, Sig)
from idnode.model.shared import Probe


# -- prefixes (idnode.store.prefixes.PrefixStore) ----------------------------------------------
class PrefixLookup(Protocol):
    """One prefix's row."""

    async def get(self, prefix: str) -> PrefixRow | None: ...


class PrefixSource(PrefixLookup, Protocol):
    """The prefix table's source."""

    async def all(self) -> list[PrefixRow]: ...


class Gs1Prefixes(Protocol):
    """Which enterprise prefix serves a GTIN."""

    async def gs1_prefix(self, gtin14: str) -> str | None: ...


class PrefixAdmin(PrefixLookup, Protocol):
    """What onboarding changes of the prefixes; each change is audited with `entry`."""

    async def create(self, prefix: str, enterprise_id: int | None = None,
                     entry: AuditEntry | None = None) -> None: ...

    async def allocate_next(self, parent: str, enterprise_id: int, entry: AuditEntry
                            ) -> str: ...

    async def set_status(self, prefix: str, status: str, refuse_resolution: bool,
                         entry: AuditEntry) -> None: ...

    async def set_template(self, prefix: str, name: str, schema: dict[str, object],
                           entry: AuditEntry) -> None: ...

    async def map_gs1(self, gcp: str, prefix: str, entry: AuditEntry) -> None: ...


# -- records (idnode.store.handles.HandleStore) ------------------------------------------------
class RecordReader(Protocol):
    """Stored records, read from the primary or (unless `primary`) a replica."""

    @property
    def replicated(self) -> bool:
        """Whether reads not asked of the primary may go to a replica (which may lag)."""

    async def get(self, ident: Identifier, *, primary: bool = False) -> Row | None: ...

    async def get_many(self, idents: Sequence[Identifier], *, primary: bool = False
                       ) -> dict[tuple[str, str], Row]: ...


#: Given (new version, created_at, current values' JSON) under the row's lock: the new values'
#: JSON, their signature and inclusion path (None and b"" when not signing).
BuildValues: TypeAlias = Callable[[int, datetime, str], tuple[str, BatchSignature | None, bytes]]


class RecordWriter(Protocol):
    """Record writes, each with its audit entry, outbox event and invalidation in one
    transaction; raises AlreadyExists, and PrefixesChanged with `expect_owner`."""

    async def register_batch(self, key: str, digest: bytes,
                             records: Sequence[tuple[str, str, str]], now: datetime,
                             entry: AuditEntry, signature: BatchSignature | None = None,
                             proofs: Sequence[bytes] | None = None,
                             expect_owner: int | None = None) -> BatchOutcome: ...

    async def update(self, ident: Identifier, expected_version: int, now: datetime,
                     entry: AuditEntry, build: BuildValues
                     ) -> tuple[int, datetime, datetime, str, Sig | None] | None: ...

    async def delete(self, ident: Identifier, expected_version: int,
                     entry: AuditEntry) -> int | None: ...

    async def version(self, ident: Identifier) -> int | None: ...

    async def list_suffixes(self, prefix: str, after: str, limit: int) -> list[str]: ...


# -- enterprises, credentials, audit (idnode.store.tenancy, idnode.store.audit) ---------------
class TenantRecords(Protocol):
    """Enterprises and their credentials (idnode.store.tenancy.TenancyStore)."""

    async def create_enterprise(self, name: str, uscc: str, contact: str,
                                entry: AuditEntry) -> int: ...

    async def enterprises(self, enterprise_id: int | None = None) -> list[EnterpriseRow]: ...

    async def insert_credential(self, key: NewKey, role: str, enterprise_id: int | None,
                                scopes: list[str], prefixes: list[str] | None, label: str,
                                expires_at: datetime | None, cert_sha256: bytes | None,
                                entry: AuditEntry,
                                retire: tuple[str, datetime] | None = None) -> None: ...

    async def insert_handle_admin(self, key_id: str, role: str, enterprise_id: int | None,
                                  scopes: list[str], prefixes: list[str] | None, label: str,
                                  expires_at: datetime | None, handle_admin: str,
                                  public_key: bytes, entry: AuditEntry) -> None: ...

    async def revoke(self, key_id: str, entry: AuditEntry) -> bool: ...

    async def credentials(self, enterprise_id: int | None, key_id: str | None = None
                          ) -> list[CredentialRow]: ...


class AuditTrail(Protocol):
    """The audit log, a page at a time (idnode.store.audit.AuditStore)."""

    async def list(self, *, prefix: str | None, enterprise_id: int | None, after_id: int,
                   limit: int) -> list[tuple[int, AuditEntry]]: ...


# -- the traceability log (idnode.store.trace.TraceStore) --------------------------------------
class TraceReads(Protocol):
    """What an append's ordering and lineage checks read, inside the appending transaction
    (idnode.store.trace.TraceTx): the log as it stands, every append committed before the
    read included (and, on a recheck, under the log's lock: the log the append extends)."""

    async def registered(self, identifiers: Sequence[str]) -> set[str]: ...

    async def standing(self, identifiers: Sequence[str]) -> dict[str, datetime | None]: ...

    async def owners_of(self, leaves: Sequence[int]) -> dict[int, str]: ...

    async def ancestors(self, identifiers: Sequence[str], depth: int
                        ) -> dict[str, set[str]]: ...


#: An append's checks: given the transaction's reads and the log's size (every event the reads
#: may miss has a leaf at or above it), raises to refuse.
AppendCheck: TypeAlias = Callable[[TraceReads, int], Awaitable[None]]


class EventLog(Protocol):
    """The event log, its Merkle tree nodes and signed heads, lineage and attachments."""

    async def append(self, events: Sequence[NewEvent], check: AppendCheck,
                     leaf_parts: Sequence[tuple[bytes, bytes]], entry: AuditEntry,
                     blobs: Sequence[tuple[AttachmentRef, bytes]] = ()
                     ) -> tuple[list[int], int]: ...

    async def events(self, identifier: str) -> list[EventRow]: ...

    async def events_of(self, identifiers: Sequence[str]) -> list[EventRow]: ...

    async def lineage(self, identifier: str, depth: int) -> list[tuple[str, str, int]]: ...

    async def attachment(self, sha256: bytes) -> tuple[str, bytes] | None: ...

    async def producer(self, prefix: str) -> str | None: ...

    async def size(self) -> int: ...

    async def nodes(self, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]: ...

    async def current_head(self) -> tuple[int, tuple[bytes, str] | None]: ...

    async def save_head(self, size: int, root: bytes, jws: str,
                        link: Callable[[int], Awaitable[dict[str, Any]]]) -> str: ...


class ScanRanking(Protocol):
    """Which identifiers consumers scanned most (idnode.store.trace.TraceStore)."""

    async def most_scanned(self, limit: int, window: float) -> list[str]: ...


# -- Handle authentication and signature forms -------------------------------------------------
class ChallengeKeeper(Protocol):
    """Pending Handle authentication challenges (idnode.store.challenges.ChallengeStore)."""

    async def put(self, session_id: int, nonce: bytes, digest: bytes, request: bytes,
                  client: str, ttl: float) -> bool: ...

    async def take(self, session_id: int) -> PendingChallenge | None: ...


class FormSignatures(Protocol):
    """The kept Handle/IDIS form signatures (idnode.store.hsigs.HsSignatureStore)."""

    async def get(self, prefix: str, suffix: str) -> dict[str, HsRow]: ...

    async def get_many(self, keys: list[tuple[str, str]]
                       ) -> dict[tuple[str, str], dict[str, HsRow]]: ...

    async def put(self, prefix: str, suffix: str, rows: list[HsRow]) -> None: ...


# -- the hot cache (idnode.cache.HotCache, idnode.cache_redis.SharedTier) ---------------------
class SharedRecords(Protocol):
    """The cache's shared tier: records every process of a deployment may read, filled with
    what a reader then read from the database, unless a write raced it."""

    async def get_many(self, keys: Sequence[str]) -> Probe | None: ...

    def fill(self, probe: Probe, items: Sequence[tuple[int, str, bytes, float]], *,
             replica: bool) -> None: ...


#: What the hot cache holds for an identifier, or None: not cached.
Entry: TypeAlias = Resolved | Absent | None


class RecordCache(Protocol):
    """The resolver's cache-aside: a `ticket` taken before a database read, then a `fill`
    that stores only if no invalidation came in between."""

    @property
    def enabled(self) -> bool: ...

    @property
    def coherent(self) -> bool:
        """False while invalidations may be missed: nothing is served from it or filled."""

    @property
    def negative_ttl(self) -> float: ...

    @property
    def l2(self) -> SharedRecords | None: ...

    def get(self, key: str) -> Entry: ...

    def probe(self, key: str) -> Entry: ...

    def stale(self, key: str) -> Entry: ...

    def ticket(self, key: str) -> tuple[int, int, int]: ...

    def fill(self, key: str, value: Resolved | Absent, ticket: tuple[int, int, int],
             ttl: float | None = None) -> bool: ...

    def recently_written(self, key: str) -> bool: ...


class WrittenRecords(Protocol):
    """Told of identifiers a write committed, before the write returns (no process of the
    host serves them from its cache from then on)."""

    def written(self, keys: Sequence[str]) -> None: ...


class ControlInvalidation(Protocol):
    """Told of control keys (idnode.model.invalidation) a write committed: this process
    drops what it remembers of them at once, without waiting for the NOTIFY."""

    def invalidate(self, keys: Sequence[str]) -> None: ...
