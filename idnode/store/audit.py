"""The append-only audit log's SQL."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from idnode.model.audit import AuditEntry
from idnode.store.db import Database

#: The columns `params` gives values for, in order (detail as JSON text).
COLUMNS = ("actor, enterprise_id, client, action, target, prefix, before_version, after_version,"
           " detail")
_INSERT = f"""
INSERT INTO audit_log ({COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)"""


def params(e: AuditEntry) -> tuple[object, ...]:
    return (e.actor, e.enterprise_id, e.client, e.action, e.target, e.prefix, e.before_version,
            e.after_version, orjson.dumps(e.detail).decode())


async def append(conn: asyncpg.Connection, entries: Sequence[AuditEntry]) -> None:
    """Writes entries on the caller's connection, inside the caller's transaction."""
    await conn.executemany(_INSERT, [params(e) for e in entries])


class AuditStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, entries: Sequence[AuditEntry]) -> None:
        async with self.db.transaction("audit_append") as conn:
            await append(conn, entries)

    async def list(self, *, prefix: str | None, enterprise_id: int | None, after_id: int,
                   limit: int) -> list[tuple[int, AuditEntry]]:
        rows = await self.db.fetch(
            "SELECT id, at, actor, enterprise_id, client, action, target, prefix, before_version,"
            " after_version, detail::text FROM audit_log"
            " WHERE ($1::text IS NULL OR prefix = $1) AND ($2::bigint IS NULL OR enterprise_id = $2)"
            " AND id > $3 ORDER BY id LIMIT $4", prefix, enterprise_id, after_id, limit)
        return [(r[0], AuditEntry(r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                                  orjson.loads(r[10]), r[1])) for r in rows]
