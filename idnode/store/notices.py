"""sync_notices: what an upstream refused or told this node, for the operator."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from idnode.store.db import Database


@dataclass(frozen=True, slots=True)
class Notice:
    seq: int | None
    kind: str
    command: str
    code: int | None
    text: str
    at: datetime


class NoticeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, upstream: str, kind: str, text: str, *, seq: int | None = None,
                  command: str = "", code: int | None = None) -> None:
        async with self.db.transaction("sync_notice") as conn:
            await conn.execute(
                "INSERT INTO sync_notices (upstream, seq, kind, command, code, text)"
                " VALUES ($1, $2, $3, $4, $5, $6)", upstream, seq, kind, command[:200], code,
                text[:2000])

    async def recent(self, upstream: str, limit: int = 5) -> tuple[dict[str, int], list[Notice]]:
        """Counts by kind, and the latest `limit` notices (newest first)."""
        counts = {r[0]: int(r[1]) for r in await self.db.fetch(
            "SELECT kind, count(*) FROM sync_notices WHERE upstream = $1 GROUP BY kind",
            upstream)}
        rows = await self.db.fetch(
            "SELECT seq, kind, command, code, text, at FROM sync_notices WHERE upstream = $1"
            " ORDER BY id DESC LIMIT $2", upstream, limit)
        return counts, [Notice(*r) for r in rows]
