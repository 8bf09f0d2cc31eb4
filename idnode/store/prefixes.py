"""Every SQL statement on the prefixes this node holds, and on their templates."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import orjson

from idnode.model.audit import AuditEntry
from idnode.model.errors import AlreadyExists, NotFound, PrefixNotFound
from idnode.model.invalidation import PREFIX_KEY
from idnode.store import audit, outbox
from idnode.store.db import Database
from idnode.store.handles import notify
from idnode.model.rows import PrefixRow


_SELECT = """
SELECT p.prefix, p.status, p.enterprise_id, p.refuse_resolution, t.schema::text, t.name,
       p.status_changed_at
FROM prefixes p LEFT JOIN templates t ON t.prefix = p.prefix"""


def _row(r: asyncpg.Record) -> PrefixRow:
    return PrefixRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


class PrefixStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[PrefixRow]:
        return [_row(r) for r in await self.db.fetch(_SELECT + " ORDER BY p.prefix")]

    async def get(self, prefix: str) -> PrefixRow | None:
        r = await self.db.fetchrow(_SELECT + " WHERE p.prefix = $1", prefix)
        return None if r is None else _row(r)

    async def statuses(self, prefixes: Sequence[str]) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT prefix, status FROM prefixes WHERE prefix = ANY($1::text[])", list(prefixes))
        return {r[0]: r[1] for r in rows}

    async def create(self, prefix: str, enterprise_id: int | None = None,
                     entry: AuditEntry | None = None) -> None:
        try:
            async with self.db.transaction("create_prefix") as conn:
                await conn.execute("INSERT INTO prefixes (prefix, enterprise_id) VALUES ($1, $2)",
                                   prefix, enterprise_id)
                if entry is not None:
                    await audit.append(conn, [entry])
                await outbox.append(conn, "prefix.allocated", {"prefix": prefix})
                await notify(conn, [PREFIX_KEY + prefix])
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"prefix {prefix} is already allocated", field="prefix") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"enterprise {enterprise_id} does not exist", field="enterprise_id",
                           reason="ENTERPRISE_NOT_FOUND") from None

    async def allocate_next(self, parent: str, enterprise_id: int, entry: AuditEntry) -> str:
        """Allocates `<parent>.<n>` with the smallest n not yet taken."""
        async with self.db.transaction("allocate_prefix") as conn:
            # Serialise allocations under one parent so two never pick the same n.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", parent)
            taken = await conn.fetch(
                "SELECT prefix FROM prefixes WHERE prefix LIKE $1 || '.%'", parent)
            used = set()
            for r in taken:
                rest = r[0][len(parent) + 1:]
                if rest.isdigit():
                    used.add(int(rest))
            n = 1
            while n in used:
                n += 1
            prefix = f"{parent}.{n}"
            try:
                await conn.execute(
                    "INSERT INTO prefixes (prefix, enterprise_id) VALUES ($1, $2)",
                    prefix, enterprise_id)
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(f"enterprise {enterprise_id} does not exist",
                               field="enterprise_id", reason="ENTERPRISE_NOT_FOUND") from None
            await audit.append(conn, [AuditEntry(
                entry.actor, entry.enterprise_id, entry.client, entry.action, prefix, prefix,
                detail={**entry.detail, "enterprise_id": enterprise_id})])
            await outbox.append(conn, "prefix.allocated", {"prefix": prefix})
            await notify(conn, [PREFIX_KEY + prefix])
            return prefix

    async def set_status(self, prefix: str, status: str, refuse_resolution: bool,
                         entry: AuditEntry) -> None:
        async with self.db.transaction("set_prefix_status") as conn:
            before = await conn.fetchval(
                "UPDATE prefixes SET status = $2, refuse_resolution = $3, status_changed_at = now()"
                " WHERE prefix = $1 RETURNING status", prefix, status, refuse_resolution)
            if before is None:
                raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="prefix")
            await audit.append(conn, [entry])
            await outbox.append(conn, "prefix.status", {"prefix": prefix, "status": status})
            await notify(conn, [PREFIX_KEY + prefix])

    async def set_template(self, prefix: str, name: str, schema: dict[str, object],
                           entry: AuditEntry) -> None:
        async with self.db.transaction("set_template") as conn:
            exists = await conn.fetchval("SELECT 1 FROM prefixes WHERE prefix = $1", prefix)
            if exists is None:
                raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="prefix")
            await conn.execute(
                "INSERT INTO templates (prefix, name, schema, updated_by) "
                "VALUES ($1, $2, $3::text::jsonb, $4) ON CONFLICT (prefix) DO UPDATE "
                "SET name = EXCLUDED.name, schema = EXCLUDED.schema, "
                "updated_by = EXCLUDED.updated_by, updated_at = now()",
                prefix, name, orjson.dumps(schema).decode(), entry.actor)
            await audit.append(conn, [entry])
            await notify(conn, [PREFIX_KEY + prefix])

    async def clear_template(self, prefix: str, entry: AuditEntry) -> bool:
        async with self.db.transaction("clear_template") as conn:
            gone = await conn.fetchval("DELETE FROM templates WHERE prefix = $1 RETURNING 1",
                                       prefix)
            if gone:
                await audit.append(conn, [entry])
                await notify(conn, [PREFIX_KEY + prefix])
            return bool(gone)

    async def list(self) -> list[tuple[str, str]]:
        return [(r.prefix, r.status) for r in await self.all()]

    async def map_gs1(self, gcp: str, prefix: str, entry: AuditEntry) -> None:
        try:
            async with self.db.transaction("map_gs1") as conn:
                await conn.execute(
                    "INSERT INTO gs1_prefixes (gcp, prefix) VALUES ($1, $2) ON CONFLICT (gcp)"
                    " DO UPDATE SET prefix = EXCLUDED.prefix", gcp, prefix)
                await audit.append(conn, [entry])
        except asyncpg.ForeignKeyViolationError:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node",
                                 field="prefix") from None

    async def gs1_prefix(self, gtin14: str) -> str | None:
        """The enterprise prefix of the longest GS1 Company Prefix the GTIN starts with (after
        its indicator digit)."""
        prefix: str | None = await self.db.fetchval(
            "SELECT prefix FROM gs1_prefixes WHERE $1 LIKE gcp || '%'"
            " ORDER BY length(gcp) DESC LIMIT 1", gtin14[1:])
        return prefix
