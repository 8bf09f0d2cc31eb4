"""One LISTEN connection: connected under an application name, telling which database it
reached, handing each NOTIFY payload of its channel to a callback and watching its own
liveness. Its owner (idnode.cache) decides what a lost connection means."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
import asyncpg

from idnode.store.identity import database_identity

#: How long connecting, and then closing, may take before the attempt counts as failed.
_CONNECT_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 2.0


class NotifyListener:
    """A connection that listens on one channel. `connect`, optionally `identity`, `listen`,
    then `watch` until the connection is lost; `close` in every case (also after a failure).

    `on_notify` receives each payload and `on_lost` is told once the connection has ended,
    however it ended (also by `close`); both run on the event loop, as asyncpg schedules them.
    """

    def __init__(self, dsn: str, channel: str, *, application_name: str,
                 on_notify: Callable[[str], None], on_lost: Callable[[], None]) -> None:
        self._dsn = dsn
        self._channel = channel
        self._application_name = application_name
        self._on_notify = on_notify
        self._on_lost = on_lost
        self._conn: asyncpg.Connection | None = None

    async def connect(self) -> None:
        """Opens the connection; `on_lost` is told from now on when it ends."""
        conn = await asyncpg.connect(
            self._dsn, timeout=_CONNECT_TIMEOUT,
            server_settings={"application_name": self._application_name})
        self._conn = conn
        conn.add_termination_listener(self._lost)

    async def identity(self) -> str:
        """Which database the connection reached (idnode.store.identity)."""
        return await database_identity(self._connection())

    async def listen(self) -> None:
        """LISTENs on the channel: every payload notified from now on reaches `on_notify`."""
        await self._connection().add_listener(self._channel, self._notified)

    async def watch(self, interval: float, timeout: float) -> None:
        """Returns when the connection is lost; raises when a liveness probe (`SELECT 1`,
        every `interval` seconds without a loss) fails or takes longer than `timeout`."""
        conn = self._connection()
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        while not conn.is_closed():
            # A cheap liveness probe: a half-open TCP connection, or a hung server, would
            # otherwise leave the owner believing it still receives notifications for as long
            # as it lasts.
            try:
                await asyncio.wait_for(lost.wait(), interval)
            except TimeoutError:
                await conn.execute("SELECT 1", timeout=timeout)

    async def close(self) -> None:
        """Closes the connection if it is open, and terminates it when closing hangs (a server
        that stopped answering would otherwise hold the caller up); never raises."""
        conn = self._conn
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), _CLOSE_TIMEOUT)
            if not conn.is_closed():
                conn.terminate()

    def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("NotifyListener.connect() has not succeeded")
        return self._conn

    def _lost(self, _conn: object) -> None:
        self._on_lost()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._on_notify(payload)
