"""Upward sync: ships the outbox in order, in batches, with retries and backoff, and sends
heartbeats with statistics. Nothing here is on the registration path."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from idnode.core.stats import Stats
from idnode.store.outbox import OutboxStore, ShipperLock
from idnode.sync.top import Counter
from idnode.sync.upstream import Sink, Upstream

log = logging.getLogger(__name__)


class Shipper:
    """One per process; the one holding the database-wide lock ships, the others stand by.

    The top-level node stores each (node, seq) once and answers with the highest seq it holds,
    so a batch resent after a crash or a lost answer is harmless, and shipping resumes right
    after the last acknowledged event.
    """

    def __init__(self, store: OutboxStore, upstream: Sink, lock: ShipperLock,
                 node_prefix: str, *, batch: int = 500, max_backoff: float = 30.0,
                 register: Callable[[], Awaitable[object]] | None = None) -> None:
        self.register = register
        self.registered = register is None
        self.store = store
        self.upstream = upstream
        self.lock = lock
        self.node_prefix = node_prefix
        self.batch = batch
        self.max_backoff = max_backoff
        self.acked = 0
        self.last_success = 0.0  # epoch seconds
        self.last_error = ""
        self.shipped = 0
        #: Events not yet acknowledged, and the age in seconds of the oldest of them.
        self.backlog = 0
        self.lag = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-shipper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.lock.release()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if not self.registered and self.register is not None:
                    await self.register()  # idempotent; tells the top where to find us
                    self.registered = True
                if not await self.lock.try_acquire():
                    await self._sleep(2.0)
                    continue
                self.acked = await self.store.acked(self.upstream.name)
                while True:
                    events = await self.store.pending(self.acked, self.batch)
                    if not events:
                        break
                    acked = await self.upstream.report(self.node_prefix, events)
                    if acked < events[0].seq:
                        raise RuntimeError(f"upstream acknowledged {acked}, below the batch "
                                           f"starting at {events[0].seq}")
                    await self.store.ack(self.upstream.name, acked)
                    self.shipped += sum(1 for e in events if e.seq <= acked)
                    self.acked = acked
                    self.last_success = time.time()
                    self.last_error = ""
                backoff = 0.1
                await self._observe()
                await self._sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure means: back off, retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("sync shipping failed error=%s retry_in=%.1fs", self.last_error,
                            backoff)
                with contextlib.suppress(Exception):
                    await self.store.failed(self.upstream.name, self.last_error)
                    await self._observe()
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def _observe(self) -> None:
        state = await self.store.state(self.upstream.name)
        self.backlog = state.newest_seq - state.acked_seq
        self.lag = (time.time() - state.oldest_pending_at.timestamp()
                    if state.oldest_pending_at is not None else 0.0)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)


class Heartbeat:
    """Sends this process's statistics upward every `interval` seconds."""

    def __init__(self, upstream: Upstream, stats: Stats, store: OutboxStore, node_prefix: str,
                 interval: float) -> None:
        self.upstream = upstream
        self.stats = stats
        self.store = store
        self.node_prefix = node_prefix
        self.interval = interval
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def beat(self) -> None:
        taken = self.stats.take()
        try:
            state = await self.store.state(self.upstream.name)
            await self.upstream.heartbeat(
                self.node_prefix, [Counter(*t) for t in taken], state.newest_seq - state.acked_seq)
            self.sent += 1
        except BaseException:
            self.stats.give_back(taken)
            raise

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("heartbeat failed error=%r", exc)
