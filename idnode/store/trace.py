"""Every SQL statement of the traceability log."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from idnode.core.audit import AuditEntry
from idnode.crypto import mlog
from idnode.store import audit, outbox
from idnode.store.db import Database


@dataclass(frozen=True, slots=True)
class EventRow:
    leaf: int
    identifier: str
    kind: str
    occurred_at: datetime
    place: str
    actor: str
    attrs: str
    corrects: int | None
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class NewEvent:
    identifier: str
    kind: str
    occurred_at: datetime
    place: str
    actor: str
    attrs: str
    corrects: int | None


_EVENTS = """SELECT leaf, identifier, kind, occurred_at, place, actor, attrs::text, corrects,
                    recorded_at FROM trace_events"""


async def _fetch(conn: asyncpg.Connection, keys: set[tuple[int, int]]
                 ) -> dict[tuple[int, int], bytes]:
    if not keys:
        return {}
    levels, idxs = zip(*keys)
    rows = await conn.fetch(
        "SELECT n.level, n.idx, n.hash FROM trace_nodes n JOIN unnest($1::int[], $2::bigint[])"
        " AS k(level, idx) ON n.level = k.level AND n.idx = k.idx", list(levels), list(idxs))
    return {(r[0], r[1]): bytes(r[2]) for r in rows}


class TraceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, events: Sequence[NewEvent],
                     check: Callable[[asyncpg.Connection, int], object],
                     leaf_hash: Callable[[int, NewEvent], bytes],
                     entry: AuditEntry) -> tuple[list[int], int]:
        """Appends in one transaction; `check(conn, size)` may refuse (it raises) before
        anything is written. Returns the events' leaves and the new log size."""
        async with self.db.transaction("trace_append") as conn:
            size = int(await conn.fetchval("SELECT size FROM trace_log FOR UPDATE"))
            await check(conn, size)  # type: ignore[misc]
            hashes = [leaf_hash(size + i, e) for i, e in enumerate(events)]
            known = await _fetch(conn, set(mlog.frontier(size)))
            nodes = mlog.appended_nodes(size, hashes, known)
            await conn.copy_records_to_table(
                "trace_events", columns=("leaf", "identifier", "kind", "occurred_at", "place",
                                         "actor", "attrs", "corrects", "leaf_hash"),
                records=[(size + i, e.identifier, e.kind, e.occurred_at, e.place, e.actor,
                          e.attrs, e.corrects, hashes[i]) for i, e in enumerate(events)])
            await conn.copy_records_to_table(
                "trace_nodes", columns=("level", "idx", "hash"),
                records=[(lv, idx, h) for (lv, idx), h in nodes.items()])
            await conn.execute("UPDATE trace_log SET size = $1", size + len(events))
            await audit.append(conn, [entry])
            return [size + i for i in range(len(events))], size + len(events)

    @staticmethod
    async def latest(conn: asyncpg.Connection, identifier: str) -> EventRow | None:
        r = await conn.fetchrow(_EVENTS + " WHERE identifier = $1 ORDER BY occurred_at DESC,"
                                " leaf DESC LIMIT 1", identifier)
        return None if r is None else EventRow(*r)

    @staticmethod
    async def event_on(conn: asyncpg.Connection, leaf: int) -> EventRow | None:
        r = await conn.fetchrow(_EVENTS + " WHERE leaf = $1", leaf)
        return None if r is None else EventRow(*r)

    @staticmethod
    async def exists(conn: asyncpg.Connection, prefix: str, suffix: str) -> bool:
        return bool(await conn.fetchval(
            "SELECT 1 FROM handles WHERE prefix = $1 AND suffix = $2", prefix, suffix))

    async def events(self, identifier: str) -> list[EventRow]:
        return [EventRow(*r) for r in await self.db.fetch(
            _EVENTS + " WHERE identifier = $1 ORDER BY occurred_at, leaf", identifier)]

    async def size(self) -> int:
        return int(await self.db.fetchval("SELECT size FROM trace_log"))

    async def nodes(self, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        async with self.db.pool.acquire() as conn:
            return await _fetch(conn, keys)

    async def head(self, size: int) -> tuple[bytes, str] | None:
        r = await self.db.fetchrow("SELECT root, jws FROM trace_heads WHERE size = $1", size)
        return None if r is None else (bytes(r[0]), r[1])

    async def latest_head(self) -> tuple[int, bytes, str] | None:
        r = await self.db.fetchrow("SELECT size, root, jws FROM trace_heads ORDER BY size DESC"
                                   " LIMIT 1")
        return None if r is None else (int(r[0]), bytes(r[1]), r[2])

    async def save_head(self, size: int, root: bytes, jws: str) -> None:
        """Keeps a signed tree head and reports it upward (outbox), so the node cannot later
        present a log that does not extend what it signed."""
        async with self.db.transaction("trace_head") as conn:
            new = await conn.fetchval(
                "INSERT INTO trace_heads (size, root, jws) VALUES ($1, $2, $3)"
                " ON CONFLICT (size) DO NOTHING RETURNING 1", size, root, jws)
            if new:
                await outbox.append(conn, "trace.head", {"size": size, "jws": jws})
