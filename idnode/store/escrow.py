"""Every SQL statement of data escrow: a consistent snapshot of the node's core data (whole,
or what changed after an outbox position), the deposits made, and a restore."""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from idnode.store.db import Database


@dataclass(frozen=True, slots=True)
class EnterpriseObj:
    prefix: str
    status: str
    refuse_resolution: bool
    name: str | None
    uscc: str | None
    contact: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IdentifierObj:
    prefix: str
    suffix: str
    vals: str
    version: int
    created_at: datetime
    updated_at: datetime
    jws: str | None
    jws_pq: str | None
    tree_size: int | None
    sig_index: int | None
    sig_proof: bytes | None


@dataclass(frozen=True, slots=True)
class DepositRow:
    id: str
    kind: str
    prev_id: str | None
    watermark: datetime
    outbox_seq: int


_PREFIXES = """
SELECT p.prefix, p.status, p.refuse_resolution, e.name, e.uscc, e.contact, p.created_at
FROM prefixes p LEFT JOIN enterprises e ON e.id = p.enterprise_id"""
_HANDLES = """
SELECT h.prefix, h.suffix, h.vals::text, h.version, h.created_at, h.updated_at, s.jws,
       s.jws_pq, s.tree_size, h.sig_index, h.sig_proof
FROM handles h LEFT JOIN signatures s ON s.id = h.sig_id"""


class Snapshot:
    """Reads of one REPEATABLE READ transaction: what they see is the node at one instant
    (the watermark), and the outbox up to `outbox_seq` is exactly what led to it (an event
    gets its seq at its transaction's commit)."""

    def __init__(self, conn: asyncpg.Connection, watermark: datetime, outbox_seq: int) -> None:
        self.conn, self.watermark, self.outbox_seq = conn, watermark, outbox_seq

    async def enterprises(self, prefixes: Sequence[str] | None = None) -> list[EnterpriseObj]:
        if prefixes is None:
            rows = await self.conn.fetch(_PREFIXES + " ORDER BY p.prefix")
        else:
            rows = await self.conn.fetch(_PREFIXES + " WHERE p.prefix = ANY($1::text[])"
                                         " ORDER BY p.prefix", list(prefixes))
        return [EnterpriseObj(*r) for r in rows]

    async def identifiers(self, after: tuple[str, str] = ("", ""), limit: int = 5000
                          ) -> list[IdentifierObj]:
        """All identifiers in (prefix, suffix) order, a page at a time."""
        rows = await self.conn.fetch(_HANDLES + " WHERE (h.prefix, h.suffix) > ($1, $2)"
                                     " ORDER BY h.prefix, h.suffix LIMIT $3", *after, limit)
        return [_ident(r) for r in rows]

    async def identifiers_named(self, names: Sequence[tuple[str, str]]) -> list[IdentifierObj]:
        rows = await self.conn.fetch(
            _HANDLES + " JOIN unnest($1::text[], $2::text[]) AS k(prefix, suffix)"
            " ON h.prefix = k.prefix AND h.suffix = k.suffix ORDER BY h.prefix, h.suffix",
            [n[0] for n in names], [n[1] for n in names])
        return [_ident(r) for r in rows]

    async def changes(self, after_seq: int) -> tuple[list[str], list[str], int | None]:
        """Identifiers and prefixes named by outbox events after `after_seq` (up to the
        snapshot's), and the oldest seq still kept (None: the outbox is empty)."""
        rows = await self.conn.fetch(
            "SELECT kind, payload FROM outbox WHERE seq > $1 AND seq <= $2 ORDER BY seq",
            after_seq, self.outbox_seq)
        oldest = await self.conn.fetchval("SELECT min(seq) FROM outbox WHERE seq > 0")
        idents: dict[str, None] = {}
        prefixes: dict[str, None] = {}
        for kind, payload in rows:
            p = orjson.loads(payload) if isinstance(payload, str) else payload
            if kind == "identifiers.registered":
                idents.update((str(i), None) for i in p.get("identifiers", []))
            elif kind in ("identifier.updated", "identifier.deleted"):
                idents[str(p.get("identifier", ""))] = None
            elif kind in ("prefix.allocated", "prefix.status"):
                prefixes[str(p.get("prefix", ""))] = None
        return list(idents), list(prefixes), oldest


def _ident(r: asyncpg.Record) -> IdentifierObj:
    return IdentifierObj(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                         None if r[10] is None else bytes(r[10]))


class EscrowStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Snapshot]:
        async with self.db.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                watermark = await conn.fetchval("SELECT now()")
                seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM outbox")
                yield Snapshot(conn, watermark, int(seq))

    async def last(self) -> DepositRow | None:
        r = await self.db.fetchrow("SELECT id, kind, prev_id, watermark, outbox_seq FROM"
                                   " escrow_deposits ORDER BY created_at DESC, id DESC LIMIT 1")
        return None if r is None else DepositRow(*r)

    async def next_number(self) -> int:
        return int(await self.db.fetchval("SELECT nextval('escrow_deposit_seq')"))

    async def record(self, row: DepositRow, objects: int, deletes: int, file: str,
                     sha256: str) -> None:
        async with self.db.transaction("escrow_deposit") as conn:
            await conn.execute(
                "INSERT INTO escrow_deposits (id, kind, prev_id, watermark, outbox_seq,"
                " objects, deletes, file, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                row.id, row.kind, row.prev_id, row.watermark, row.outbox_seq, objects, deletes,
                file, sha256)

    async def verified(self, deposit_id: str, result: str) -> None:
        async with self.db.transaction("escrow_verified") as conn:
            await conn.execute("UPDATE escrow_deposits SET verified = $2 WHERE id = $1",
                               deposit_id, result)


class RestoreStore:
    """Writes a deposit's objects into an empty node database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def empty(self) -> bool:
        return bool(await self.db.fetchval(
            "SELECT NOT EXISTS (SELECT 1 FROM handles) AND NOT EXISTS (SELECT 1 FROM prefixes)"))

    async def apply(self, enterprises: Sequence[EnterpriseObj],
                    identifiers: Sequence[IdentifierObj], deleted_prefixes: Sequence[str],
                    deleted_ids: Sequence[tuple[str, str]]) -> None:
        """One deposit, in one transaction (a restore stopped half way leaves whole deposits)."""
        async with self.db.transaction("escrow_restore") as conn:
            for e in enterprises:
                enterprise_id = None
                if e.uscc:
                    enterprise_id = await conn.fetchval(
                        "INSERT INTO enterprises (name, uscc, contact) VALUES ($1, $2, $3)"
                        " ON CONFLICT (uscc) DO UPDATE SET name = EXCLUDED.name,"
                        " contact = EXCLUDED.contact RETURNING id",
                        e.name or "", e.uscc, e.contact or "")
                await conn.execute(
                    "INSERT INTO prefixes (prefix, status, enterprise_id, refuse_resolution,"
                    " created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (prefix) DO UPDATE SET"
                    " status = EXCLUDED.status, enterprise_id = EXCLUDED.enterprise_id,"
                    " refuse_resolution = EXCLUDED.refuse_resolution",
                    e.prefix, e.status, enterprise_id, e.refuse_resolution, e.created_at)
            if deleted_ids:
                await conn.execute(
                    "DELETE FROM handles h USING unnest($1::text[], $2::text[]) AS k(p, s)"
                    " WHERE h.prefix = k.p AND h.suffix = k.s",
                    [d[0] for d in deleted_ids], [d[1] for d in deleted_ids])
            sig_ids: dict[str, int] = {}
            rows: list[tuple[Any, ...]] = []
            for i in identifiers:
                sig_id = None
                if i.jws is not None:
                    sig_id = sig_ids.get(i.jws)
                    if sig_id is None:
                        sig_id = sig_ids[i.jws] = await conn.fetchval(
                            "INSERT INTO signatures (jws, jws_pq, tree_size) VALUES ($1, $2, $3)"
                            " RETURNING id", i.jws, i.jws_pq, i.tree_size or 0)
                rows.append((i.prefix, i.suffix, i.vals, i.version, i.created_at, i.updated_at,
                             sig_id, i.sig_index, i.sig_proof))
            await conn.executemany(
                "INSERT INTO handles (prefix, suffix, vals, version, created_at, updated_at,"
                " sig_id, sig_index, sig_proof) VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7,"
                " $8, $9) ON CONFLICT (prefix, suffix) DO UPDATE SET vals = EXCLUDED.vals,"
                " version = EXCLUDED.version, created_at = EXCLUDED.created_at,"
                " updated_at = EXCLUDED.updated_at, sig_id = EXCLUDED.sig_id,"
                " sig_index = EXCLUDED.sig_index, sig_proof = EXCLUDED.sig_proof", rows)
            if deleted_prefixes:
                await conn.execute("UPDATE prefixes SET status = 'revoked' WHERE"
                                   " prefix = ANY($1::text[])", list(deleted_prefixes))
