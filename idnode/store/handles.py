"""Every SQL statement on identifier records (the `handles` table) and batch idempotency."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import asyncpg

from idnode.model.audit import AuditEntry
from idnode.model.errors import AlreadyExists, PrefixesChanged
from idnode.model.identifiers import Identifier
from idnode.model.rows import BatchOutcome, BatchSignature, Row, Sig
from idnode.store import audit, outbox
from idnode.store.db import Database
from idnode.store.replicas import ReadRouter

INVALIDATE_CHANNEL = "idnode_invalidate"
# pg_notify payloads must stay under 8000 bytes.
_NOTIFY_LIMIT = 7900

# What a registration's COPY sends: version, created_at and updated_at are the columns'
# defaults (1, and the transaction's idnode.registered_at: sql/0017_registered_at.sql).
_COPIED = ("prefix", "suffix", "vals", "sig_id", "sig_index", "sig_proof")


def _sig(jws: str | None, jws_pq: str | None, index: int | None, proof: bytes | None
         ) -> Sig | None:
    return None if jws is None else Sig(jws, jws_pq, index or 0, bytes(proof or b""))


_GET = """
SELECT h.vals::text, h.version, h.created_at, h.updated_at, s.jws, s.jws_pq, h.sig_index,
       h.sig_proof
FROM handles h LEFT JOIN signatures s ON s.id = h.sig_id
WHERE h.prefix = $1 AND h.suffix = $2"""
_GET_MANY = """
SELECT h.prefix, h.suffix, h.vals::text, h.version, h.created_at, h.updated_at, s.jws, s.jws_pq,
       h.sig_index, h.sig_proof
FROM unnest($1::text[], $2::text[]) AS k(prefix, suffix)
JOIN handles h ON h.prefix = k.prefix AND h.suffix = k.suffix
LEFT JOIN signatures s ON s.id = h.sig_id"""
_SIGNATURE = "INSERT INTO signatures (jws, jws_pq, tree_size) VALUES ($1, $2, $3) RETURNING id"
_LOCK_ROW = """
SELECT version, created_at, vals::text FROM handles WHERE prefix = $1 AND suffix = $2 FOR UPDATE"""
_KEY = "SELECT request_digest, registered, committed_at FROM register_batches WHERE idempotency_key = $1"
# A batch registration is three statements in one transaction: the claim, the rows by COPY,
# and the report. The claim takes the idempotency key and, only if it was free, inserts the
# signature; a replayed key, or a batch whose prefixes are no longer as the caller expected
# ($8, $9: see register_batch's `expect_owner`), claims nothing, and nothing more is written.
# COPY, not `INSERT ... SELECT`: PostgreSQL inserts a COPY's rows a page at a time (one WAL
# record and one extension a page, not a row), which is what concurrent batches queued on
# (issue 16, target 2: Lock/extend was the most waited-for event).
_CLAIM = """
WITH allowed AS (
    SELECT $9::bigint IS NULL OR count(*) = cardinality(string_to_array($8, E'\\n')) AS ok
    FROM prefixes p
    WHERE $9::bigint IS NOT NULL AND p.prefix = ANY(string_to_array($8, E'\\n'))
      AND p.status = 'active' AND p.enterprise_id = $9
      AND NOT EXISTS (SELECT 1 FROM templates t WHERE t.prefix = p.prefix)),
claim AS (
    INSERT INTO register_batches (idempotency_key, request_digest, registered, committed_at)
    SELECT $1, $2, $3, $4 FROM allowed WHERE allowed.ok
    ON CONFLICT (idempotency_key) DO NOTHING RETURNING committed_at),
sig AS (
    INSERT INTO signatures (jws, jws_pq, tree_size)
    SELECT $5, $6, $7 FROM claim WHERE $5::text IS NOT NULL RETURNING id)
SELECT (SELECT committed_at FROM claim), (SELECT id FROM sig), (SELECT ok FROM allowed),
       set_config('idnode.registered_at', $10, true)
"""
# The audit entry (audit.append's columns), the outbox event (outbox.append's) and the
# notifications of a claimed batch, in one round trip.
_REPORT = f"""
WITH audited AS (
    INSERT INTO audit_log ({audit.COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)),
reported AS (
    INSERT INTO outbox (kind, payload) VALUES ('identifiers.registered', $10::text::jsonb))
SELECT count(pg_notify('{INVALIDATE_CHANNEL}', p)) FROM unnest($11::text[]) AS p
"""
_UPDATE = """
UPDATE handles SET vals = $3::text::jsonb, version = $4, updated_at = $5, sig_id = $6,
       sig_index = $7, sig_proof = $8
WHERE prefix = $1 AND suffix = $2"""
# The record's kept Handle-form signatures go with it (they are never served for another
# registration, whose created_at differs, but would stay in the table for good).
_DELETE = """
WITH gone AS (
    DELETE FROM handles WHERE prefix = $1 AND suffix = $2 AND ($3::bigint = 0 OR version = $3)
    RETURNING version
), forms AS (
    DELETE FROM hs_signatures WHERE prefix = $1 AND suffix = $2 AND EXISTS (SELECT FROM gone)
)
SELECT version FROM gone"""
_VERSION = "SELECT version FROM handles WHERE prefix = $1 AND suffix = $2"
_LIST = """
SELECT suffix FROM handles WHERE prefix = $1 AND suffix > $2 ORDER BY suffix LIMIT $3"""


def notify_payloads(keys: Iterable[str]) -> list[str]:
    """Newline-joined keys, split so that no NOTIFY payload goes over PostgreSQL's limit."""
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for key in keys:
        n = len(key.encode()) + 1
        if chunk and size + n > _NOTIFY_LIMIT:
            out.append("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(key)
        size += n
    if chunk:
        out.append("\n".join(chunk))
    return out


async def notify(conn: asyncpg.Connection, keys: Iterable[str]) -> None:
    # Inside the writing transaction: the notification is delivered if and only if the
    # write commits, and after it commits. One round trip however many payloads.
    await conn.execute("SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p",
                       INVALIDATE_CHANNEL, notify_payloads(keys))


class HandleStore:
    def __init__(self, db: Database, replicas: ReadRouter | None = None) -> None:
        self.db = db
        #: Where reads go; the primary itself when no replica is configured.
        self.replicas = replicas
        # Point lookups waiting for this loop iteration's query, per database (see `get`).
        self._waiting: dict[Database, list[tuple[Identifier, asyncio.Future[Row | None]]]] = {}
        self._loads: set[asyncio.Task[None]] = set()

    @property
    def replicated(self) -> bool:
        """Whether reads not asked of the primary may go to a replica (which may lag)."""
        return self.replicas is not None

    def _reader(self, primary: bool) -> Database:
        if primary or self.replicas is None:
            return self.db
        return self.replicas.pick() or self.db

    async def get(self, ident: Identifier, *, primary: bool = False) -> Row | None:
        """The stored record, or None.

        Lookups made in the same event-loop iteration (concurrent requests for one identifier
        each) share one query: a pool acquire and release, a round trip and the protocol work
        cost about as much as the lookup itself, and paying them once per group instead of
        once per request is what lets one-at-a-time resolution keep up with batches. A lone
        lookup waits one loop iteration longer.
        """
        db = self._reader(primary)
        loop = asyncio.get_running_loop()
        found: asyncio.Future[Row | None] = loop.create_future()
        waiting = self._waiting.get(db)
        if waiting is None:
            waiting = self._waiting[db] = []
            loop.call_soon(self._flush, db)
        waiting.append((ident, found))
        return await found

    def _flush(self, db: Database) -> None:
        task = asyncio.ensure_future(self._load(db, self._waiting.pop(db)))
        self._loads.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._loads.discard)

    async def _load(self, db: Database,
                    waiting: list[tuple[Identifier, asyncio.Future[Row | None]]]) -> None:
        try:
            if len(waiting) == 1:
                ident = waiting[0][0]
                r = await db.fetchrow(_GET, ident.prefix, ident.suffix)
                rows = {} if r is None else {(ident.prefix, ident.suffix): Row(
                    ident.prefix, ident.suffix, r[0], r[1], r[2], r[3],
                    _sig(r[4], r[5], r[6], r[7]))}
            else:
                rows = await self._get_many(db, [ident for ident, _ in waiting])
        except BaseException as exc:
            for _, found in waiting:
                if not found.done():
                    if isinstance(exc, asyncio.CancelledError):
                        found.cancel()
                    else:
                        found.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for ident, found in waiting:
            if not found.done():  # its caller may have gone (a client hung up)
                found.set_result(rows.get((ident.prefix, ident.suffix)))

    async def get_many(self, idents: Sequence[Identifier], *, primary: bool = False
                       ) -> dict[tuple[str, str], Row]:
        return await self._get_many(self._reader(primary), idents)

    @staticmethod
    async def _get_many(db: Database, idents: Sequence[Identifier]
                        ) -> dict[tuple[str, str], Row]:
        rows = await db.fetch(_GET_MANY, [i.prefix for i in idents], [i.suffix for i in idents])
        return {(r[0], r[1]): Row(r[0], r[1], r[2], r[3], r[4], r[5], _sig(r[6], r[7], r[8], r[9]))
                for r in rows}

    async def register_batch(self, key: str, digest: bytes, records: Sequence[tuple[str, str, str]],
                             now: datetime, entry: AuditEntry,
                             signature: BatchSignature | None = None,
                             proofs: Sequence[bytes] | None = None,
                             expect_owner: int | None = None) -> BatchOutcome:
        """Inserts (prefix, suffix, vals_json) rows, their signature, the idempotency key, the
        audit entry and the outbox event, and notifies, all in one transaction, committed
        durably when it returns.

        With `expect_owner`, the transaction first checks that every prefix of the batch is
        active, held by that enterprise and without a template, and writes nothing otherwise
        (raising PrefixesChanged): for callers that decided from memory.

        Several round trips, where this was once one statement: while this process is busy
        with other batches between them, the open transaction holds only its own new rows
        and key (the outbox's order lock is taken at COMMIT, sql/0008); in exchange COPY costs
        PostgreSQL, which every process of a deployment shares, less CPU a row and no queue
        for its relation extension lock (docs/PERFORMANCE.md, target 2).

        Raises AlreadyExists naming the identifiers that are already registered.
        """
        names = [f"{p}/{s}" for p, s, _ in records]
        jws = jws_pq = size = None
        if signature is not None and proofs is not None:
            jws, jws_pq, size = signature.jws, signature.jws_pq, signature.size
        try:
            async with self.db.transaction("register_batch") as conn:
                r = await conn.fetchrow(_CLAIM, key, digest, len(records), now, jws, jws_pq, size,
                                        "\n".join(sorted({p for p, _, _ in records})),
                                        expect_owner, now.isoformat())
                assert r is not None
                if not r[2]:
                    raise PrefixesChanged(
                        "a prefix of the batch is no longer active, held by the expected "
                        "enterprise or without a template", field="records")
                if r[0] is not None:
                    sig_id = r[1]
                    await conn.copy_records_to_table(
                        "handles", columns=_COPIED, records=(
                            [(p, s, v, sig_id, i, proof) for i, ((p, s, v), proof)
                             in enumerate(zip(records, proofs, strict=True))]
                            if proofs is not None and sig_id is not None else
                            [(p, s, v, None, None, None) for p, s, v in records]))
                    await conn.execute(_REPORT, *audit.params(entry),
                                       outbox.payload_json({"identifiers": names, "version": 1}),
                                       notify_payloads(names))
        except asyncpg.UniqueViolationError:
            existing = await self.get_many([Identifier(p, s) for p, s, _ in records], primary=True)
            found = sorted(f"{p}/{s}" for p, s in existing)
            raise AlreadyExists(
                f"{len(found)} identifier(s) already registered: {', '.join(found[:10])}"
                + (" …" if len(found) > 10 else ""),
                field="records", identifier=found[0] if found else None) from None
        if r[0] is None:
            # The key was already claimed (by this batch, or by another one: the caller
            # compares digests); nothing was written.
            prev = await self.db.fetchrow(_KEY, key)
            assert prev is not None
            return BatchOutcome(prev[1], prev[2], True, bytes(prev[0]))
        return BatchOutcome(len(records), now, False, digest)

    async def update(self, ident: Identifier, expected_version: int, now: datetime,
                     entry: AuditEntry,
                     build: Callable[[int, datetime, str],
                                     tuple[str, BatchSignature | None, bytes]]
                     ) -> tuple[int, datetime, datetime, str, Sig | None] | None:
        """Replaces the values with what `build(new_version, created_at, current_vals_json)`
        returns (the values' JSON, and their signature and inclusion path when signing), under
        the row's lock, so edits of the current values are never lost; None if nothing
        matched. An exception from `build` rolls everything back."""
        async with self.db.transaction("update_values") as conn:
            current = await conn.fetchrow(_LOCK_ROW, ident.prefix, ident.suffix)
            if current is None or (expected_version and current[0] != expected_version):
                return None
            version, created_at = current[0] + 1, current[1]
            vals, signature, proof = build(version, created_at, current[2])
            sig_id = None
            if signature is not None:
                sig_id = await conn.fetchval(_SIGNATURE, signature.jws, signature.jws_pq,
                                             signature.size)
            await conn.execute(_UPDATE, ident.prefix, ident.suffix, vals, version, now, sig_id,
                               0 if sig_id else None, proof if sig_id else None)
            await audit.append(conn, [replace(entry, before_version=version - 1,
                                              after_version=version)])
            await outbox.append(conn, "identifier.updated",
                                {"identifier": str(ident), "version": version})
            await notify(conn, (str(ident),))
            sig = (Sig(signature.jws, signature.jws_pq, 0, proof)
                   if signature is not None else None)
            return version, created_at, now, vals, sig

    async def delete(self, ident: Identifier, expected_version: int,
                     entry: AuditEntry) -> int | None:
        async with self.db.transaction("delete_identifier") as conn:
            version: int | None = await conn.fetchval(_DELETE, ident.prefix, ident.suffix,
                                                      expected_version)
            if version is not None:
                await audit.append(conn, [replace(entry, before_version=version)])
                await outbox.append(conn, "identifier.deleted",
                                    {"identifier": str(ident), "version": version})
                await notify(conn, (str(ident),))
            return version

    async def version(self, ident: Identifier) -> int | None:
        version: int | None = await self.db.fetchval(_VERSION, ident.prefix, ident.suffix)
        return version

    async def list_suffixes(self, prefix: str, after: str, limit: int) -> list[str]:
        return [r[0] for r in await self.db.fetch(_LIST, prefix, after, limit)]
