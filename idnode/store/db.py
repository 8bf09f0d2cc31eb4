"""The PostgreSQL connection pool, and the one place connection failures become domain errors.

Every call is bounded: a connection from the pool within `acquire` seconds, a read (and any
small statement the request path makes) within `query` seconds, a write within the server's
statement timeout plus a second. A call that runs out of time, or finds the server gone,
marks the database unreachable: until a background probe gets an answer again, calls fail
at once with Unavailable (HTTP 503, gRPC UNAVAILABLE, or a stale cached record) instead of
each waiting out its own timeout against a server that is down or hung.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from idnode.config import Settings
from idnode.model.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "the database is not reachable right now" rather than "the query is wrong".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,  # connecting, or a statement, took longer than allowed
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Seconds each kind of database call may take (see the module docstring)."""

    connect: float = 3.0
    acquire: float = 1.0
    query: float = 2.0
    #: Server-side statement_timeout; writes give up on the client side a second later.
    statement: float = 10.0
    #: Seconds between probes while the database is unreachable.
    retry: float = 1.0

    @property
    def write(self) -> float:
        return self.statement + 1.0

    @staticmethod
    def of(s: Settings) -> Limits:
        """The database call limits of the settings."""
        return Limits(connect=s.db_connect_timeout, acquire=s.db_acquire_timeout,
                      query=s.db_query_timeout, statement=s.db_statement_timeout,
                      retry=s.db_retry_interval)


async def _reset(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset sends a multi-statement query on every release (unlisten,
    # advisory unlocks, RESET ALL), which halves point-lookup throughput. Our code keeps no
    # session state on pooled connections, so only an abandoned transaction needs undoing.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _init(conn: asyncpg.Connection) -> None:
    # A connection given up on (timed out, cancelled) may be dropped rather than cancelled
    # politely; the server then notices within a second even while the statement waits on
    # a lock, and rolls it back instead of finishing it for nobody (PostgreSQL ≥ 14).
    if conn.get_server_version() >= (14,):
        await conn.execute("SET client_connection_check_interval = 1000")


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
        dsn, min_size=min_size, max_size=max_size, reset=_reset, init=_init,
        server_settings=settings, command_timeout=statement_timeout + 1,
        # A database that is down must turn into a quick 503, not a request that hangs.
        timeout=connect_timeout)
    assert pool is not None
    return pool


class Database:
    """Wraps the pool: bounded calls, named transactions, connection failures mapped to
    Unavailable, and fail-fast while the database is unreachable."""

    def __init__(self, pool: asyncpg.Pool, limits: Limits | None = None) -> None:
        self.pool = pool
        self.limits = limits or Limits()
        #: monotonic time the database was found unreachable, None while it answers.
        self.down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None
        #: Connections being given back in the background (see _let_go).
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        """False while calls fail fast (the database did not answer; a probe is retrying)."""
        return self.down_since is None

    @property
    def write_timeout(self) -> float:
        return self.limits.write

    # -- the one path every call takes ----------------------------------------------------
    async def _acquire(self, name: str) -> Any:
        if self.down_since is not None:
            raise Unavailable("the database is unavailable; retry later")
        pool: Any = self.pool
        try:
            free = getattr(pool, "_queue", None)
            if free is not None and not free.empty():
                # A free connection is taken without waiting (opening one, if it must, is
                # bounded by the connect timeout): the deadline is armed only for a call that
                # has to wait, which spares the hot path a timer.
                return await pool.acquire()
            async with asyncio.timeout(self.limits.acquire):
                return await pool.acquire()
        except CONNECTION_ERRORS as exc:
            raise self._failed(name, exc) from exc

    def _error(self, name: str, exc: BaseException) -> BaseException:
        """What an abandoned call raises: Unavailable for a lost or slow server (marking it
        down), or for the server's own statement timeout (not marking it: it answered);
        anything else as it was."""
        if isinstance(exc, CONNECTION_ERRORS):
            return self._failed(name, exc)
        if isinstance(exc, asyncpg.QueryCanceledError):
            return Unavailable("the database did not finish in time; retry later")
        return exc

    def _failed(self, name: str, exc: BaseException) -> Unavailable:
        """Marks the database unreachable (once) and starts the probe; the error to raise.
        The probe's first try is at once, so a false alarm (a pool that was merely busy)
        costs one round trip of failing fast."""
        if self.down_since is None and not isinstance(exc, asyncpg.TooManyConnectionsError):
            # (A full server is not a down one, and would refuse the probe's connection too.)
            log.warning("database unreachable call=%s error=%r; failing fast until it answers",
                        name, exc)
            self.down_since = time.monotonic()
            if self._probe is None or self._probe.done():
                self._probe = asyncio.get_running_loop().create_task(
                    self._probe_until_up(), name="db-probe")
        return Unavailable("the database is unavailable; retry later")

    async def _probe_until_up(self) -> None:
        # Its own connection: a pool whose connections are all stuck says nothing about
        # whether the server answers now.
        pool: Any = self.pool  # what the pool connects with (asyncpg keeps no public copy)
        args, kwargs = pool._connect_args, {**pool._connect_kwargs, "timeout": self.limits.connect}
        first = True
        while self.down_since is not None:
            if not first:
                await asyncio.sleep(self.limits.retry)
            first = False
            conn = None
            try:
                async with asyncio.timeout(self.limits.connect + self.limits.query):
                    conn = await asyncpg.connect(*args, **kwargs)
                    await conn.fetchval("SELECT 1")
            except Exception as exc:  # noqa: BLE001 - any failure: still unreachable
                log.debug("database probe failed: %r", exc)
                continue
            finally:
                if conn is not None:
                    conn.terminate()
            log.warning("database answers again after %.1fs",
                        time.monotonic() - (self.down_since or time.monotonic()))
            self.down_since = None

    def _let_go(self, conn: Any) -> None:
        """Gives back a connection whose call was abandoned (timed out, cancelled, broken)
        without making the caller wait: asyncpg finishes cancelling the statement, or drops
        the connection when the server does not acknowledge within `query` seconds."""
        async def release() -> None:
            with contextlib.suppress(Exception):
                await self.pool.release(conn, timeout=self.limits.query)

        task = asyncio.get_running_loop().create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _call(self, name: str, op: Callable[[Any], Awaitable[T]]) -> T:
        conn = await self._acquire(name)
        try:
            result = await op(conn)
        except BaseException as exc:
            self._let_go(conn)
            error = self._error(name, exc)
            if error is exc:
                raise
            raise error from exc
        try:
            # No deadline: after a call that succeeded, releasing sends nothing (see _reset).
            await self.pool.release(conn)
        except CONNECTION_ERRORS:
            pass  # the answer is in; the pool replaces the connection
        return result

    # -- the API the stores use -------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        """A transaction on one connection. Statements in it run under the write timeout;
        a transaction abandoned half way (timeout, cancellation, lost server) is not rolled
        back in line but by dropping or resetting the connection in the background."""
        async with self.connection(name) as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn
            except Exception as exc:
                if not isinstance(exc, CONNECTION_ERRORS) and not conn.is_closed():
                    # An ordinary error (a constraint, a rule): roll back now, as before.
                    await tx.rollback()
                raise
            await tx.commit()

    @contextlib.asynccontextmanager
    async def connection(self, name: str) -> AsyncIterator[asyncpg.Connection]:
        """One connection for several statements, each its own transaction unless the caller
        opens one (`transaction` does; TraceStore.append uses this for a write whose last
        statement must commit as it ends). Given back in the background if the block fails."""
        conn = await self._acquire(name)
        try:
            yield conn
        except BaseException as exc:
            self._let_go(conn)
            error = self._error(name, exc)
            if error is exc:
                raise
            log.warning("call=%s database unavailable: %r", name, exc)
            raise error from exc
        try:
            await self.pool.release(conn)
        except CONNECTION_ERRORS:
            pass  # done (committed, for a transaction); the pool replaces the connection

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None
                       ) -> asyncpg.Record | None:
        """One row; `timeout` defaults to the read limit (writes pass write_timeout)."""
        t = timeout or self.limits.query
        return await self._call("fetchrow", lambda c: c.fetchrow(query, *args, timeout=t))

    async def fetch(self, query: str, *args: Any, timeout: float | None = None
                    ) -> list[asyncpg.Record]:
        t = timeout or self.limits.query
        return await self._call("fetch", lambda c: c.fetch(query, *args, timeout=t))

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        t = timeout or self.limits.query
        return await self._call("fetchval", lambda c: c.fetchval(query, *args, timeout=t))

    async def ping(self, timeout: float) -> None:
        """Raises unless the database answers within `timeout` seconds (readiness)."""
        await asyncio.wait_for(self.fetchval("SELECT 1"), timeout)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)
        await self.pool.close()

    def pool_stats(self) -> tuple[int, int]:
        """(connections in the pool, connections idle)."""
        return self.pool.get_size(), self.pool.get_idle_size()
