"""The PostgreSQL connection pool, and the one place connection failures become domain errors."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from idnode.core.errors import Unavailable

log = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now" rather than "the query is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,  # connecting took longer than the pool's connect timeout
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
)


async def _reset(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset sends a multi-statement query on every release (unlisten,
    # advisory unlocks, RESET ALL), which halves point-lookup throughput. Our code keeps no
    # session state on pooled connections, so only an abandoned transaction needs undoing.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10,
                      statement_timeout: float = 10.0, connect_timeout: float = 3.0
                      ) -> asyncpg.Pool:
    """A pool with a server-side statement timeout, so a stuck query cannot hang a request."""
    settings = {
        "statement_timeout": str(int(statement_timeout * 1000)),
        "application_name": "idnode",
        # A registration is durable when committed; say so even if the server default differs.
        "synchronous_commit": "on",
    }
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, reset=_reset,
        server_settings=settings, command_timeout=statement_timeout + 5,
        # A database that is down must turn into a quick 503, not a request that hangs.
        timeout=connect_timeout)
    assert pool is not None
    return pool


class Database:
    """Wraps the pool: named transactions, and connection failures mapped to Unavailable."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    yield conn
        except CONNECTION_ERRORS as exc:
            log.warning("transaction=%s database unavailable: %s", name, exc)
            raise Unavailable("the database is unavailable; retry later") from exc

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self.pool.fetchrow(query, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable("the database is unavailable; retry later") from exc

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return await self.pool.fetch(query, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable("the database is unavailable; retry later") from exc

    async def fetchval(self, query: str, *args: Any) -> Any:
        try:
            return await self.pool.fetchval(query, *args)
        except CONNECTION_ERRORS as exc:
            raise Unavailable("the database is unavailable; retry later") from exc

    async def close(self) -> None:
        await self.pool.close()

    def pool_stats(self) -> tuple[int, int]:
        """(connections in the pool, connections idle)."""
        return self.pool.get_size(), self.pool.get_idle_size()
