"""Every SQL statement on the prefixes this node holds."""
from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from idnode.core.errors import AlreadyExists
from idnode.store.db import Database


class PrefixStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def statuses(self, prefixes: Sequence[str]) -> dict[str, str]:
        rows = await self.db.fetch(
            "SELECT prefix, status FROM prefixes WHERE prefix = ANY($1::text[])", list(prefixes))
        return {r[0]: r[1] for r in rows}

    async def create(self, prefix: str) -> None:
        try:
            async with self.db.transaction("create_prefix") as conn:
                await conn.execute("INSERT INTO prefixes (prefix) VALUES ($1)", prefix)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"prefix {prefix} already exists", field="prefix") from None

    async def list(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in await self.db.fetch(
            "SELECT prefix, status FROM prefixes ORDER BY prefix")]
