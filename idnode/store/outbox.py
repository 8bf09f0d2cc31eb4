"""The outbox: events for the top-level node, appended inside the writing transaction."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from idnode.store.db import Database

# The outbox order lock. Since migration 0008 a deferred trigger takes it at COMMIT and only
# then gives the event its seq, so seq order is commit order without the lock being held
# across the writer's round trips (sql/0008_outbox_commit_order.sql).
_ORDER_LOCK = 0x1D_0DE_0B0


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    kind: str
    payload: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SyncState:
    acked_seq: int
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    newest_seq: int
    oldest_pending_at: datetime | None


async def append(conn: asyncpg.Connection, kind: str, payload: dict[str, Any]) -> None:
    """Adds an event inside the caller's transaction; it gets its seq (in commit order) when
    the transaction commits."""
    await conn.execute("INSERT INTO outbox (kind, payload) VALUES ($1, $2::text::jsonb)",
                       kind, payload_json(payload))


def payload_json(payload: dict[str, Any]) -> str:
    """An event's payload as stored (for statements that insert events themselves)."""
    return orjson.dumps(payload).decode()


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def pending(self, after: int, limit: int) -> list[Event]:
        rows = await self.db.fetch(
            "SELECT seq, kind, payload::text, created_at FROM outbox WHERE seq > $1 "
            "ORDER BY seq LIMIT $2", after, limit)
        return [Event(r[0], r[1], r[2], r[3]) for r in rows]

    async def acked(self, upstream: str) -> int:
        value = await self.db.fetchval(
            "SELECT acked_seq FROM sync_state WHERE upstream = $1", upstream)
        return int(value or 0)

    async def ack(self, upstream: str, seq: int) -> None:
        async with self.db.transaction("sync_ack") as conn:
            await conn.execute(
                "INSERT INTO sync_state (upstream, acked_seq, last_success_at) VALUES ($1, $2, now())"
                " ON CONFLICT (upstream) DO UPDATE SET acked_seq = greatest(sync_state.acked_seq,"
                " EXCLUDED.acked_seq), last_success_at = now()", upstream, seq)
            # When: the retention of delivered events runs from here (prune).
            await conn.execute("INSERT INTO outbox_acks (upstream, seq) VALUES ($1, $2)"
                               " ON CONFLICT DO NOTHING", upstream, seq)

    async def failed(self, upstream: str, error: str) -> None:
        async with self.db.transaction("sync_failed") as conn:
            await conn.execute(
                "INSERT INTO sync_state (upstream, last_error, last_error_at) VALUES ($1, $2, now())"
                " ON CONFLICT (upstream) DO UPDATE SET last_error = EXCLUDED.last_error,"
                " last_error_at = now()", upstream, error[:500])

    async def state(self, upstream: str) -> SyncState:
        r = await self.db.fetchrow(
            "SELECT s.acked_seq, s.last_success_at, s.last_error, s.last_error_at,"
            # Pruning may have emptied the outbox: the newest seq is never below the acked one.
            " greatest((SELECT coalesce(max(seq), 0) FROM outbox), s.acked_seq),"
            " (SELECT min(created_at) FROM outbox o WHERE o.seq > coalesce(s.acked_seq, 0))"
            " FROM (SELECT $1::text AS upstream) u"
            " LEFT JOIN sync_state s ON s.upstream = u.upstream", upstream)
        assert r is not None
        return SyncState(int(r[0] or 0), r[1], r[2], r[3], int(r[4]), r[5])

    async def prune(self, upstream: str, retention: float, *, chunk: int = 10_000) -> int:
        """Drops events `upstream` acknowledged at least `retention` seconds ago, `chunk` rows
        a statement (a first prune of a long history holds no lock for long); returns how
        many. Events it has not acknowledged are never touched."""
        return await self.prune_all([upstream], retention, chunk=chunk)

    async def prune_all(self, upstreams: list[str], retention: float, *,
                        chunk: int = 10_000) -> int:
        """As prune, for a node shipping to several upstreams (gRPC and EPP): an event is
        dropped only once every one of them acknowledged it `retention` seconds ago."""
        horizons = [await self.db.fetchval(
            "SELECT max(seq) FROM outbox_acks WHERE upstream = $1"
            " AND acked_at <= now() - make_interval(secs => $2)", u, float(retention))
            for u in upstreams]
        if not horizons or any(h is None for h in horizons):
            return 0
        horizon = min(horizons)
        total = 0
        while True:
            async with self.db.transaction("outbox_prune") as conn:
                n = int(await conn.fetchval(
                    "WITH gone AS (DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
                    " WHERE seq > 0 AND seq <= $1 ORDER BY seq LIMIT $2) RETURNING 1)"
                    " SELECT count(*) FROM gone", horizon, chunk))
            total += n
            if n < chunk:
                break
        async with self.db.transaction("outbox_prune_acks") as conn:
            # The horizon's own row stays: it is what a later round measures from.
            await conn.execute("DELETE FROM outbox_acks WHERE upstream = ANY($1::text[])"
                               " AND seq < $2", upstreams, horizon)
        return total


class ShipperLock:
    """A session advisory lock on a connection of its own: one shipper per database at a time,
    released by PostgreSQL if its holder dies."""

    _KEY = 0x1D_0DE_5417
    #: The EPP shipper's: it ships the same outbox to another upstream, alongside the gRPC one.
    EPP_KEY = 0x1D_0DE_5418
    #: Scheduled escrow deposits: one process of a database makes them.
    ESCROW_KEY = 0x1D_0DE_5419

    def __init__(self, dsn: str, key: int = _KEY) -> None:
        self.dsn = dsn
        self.key = key
        self._conn: asyncpg.Connection | None = None

    async def try_acquire(self) -> bool:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.dsn, timeout=5, server_settings={"application_name": "idnode-sync"})
        return bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._conn = None
