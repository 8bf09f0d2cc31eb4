"""Read replicas: which replica pools may serve reads now, judged by how far behind they are.

Each replica is probed every `interval` seconds: its replay position is compared with the
primary's WAL position sampled `max_lag` seconds earlier. A replica that has not replayed that
far (or cannot be reached) is skipped until it has, so a read routed to a replica is at most
`max_lag` seconds old. Keys written within `max_lag` seconds are read from the primary (the
resolver asks for that), which gives a writer its own writes.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque

from idnode.store.db import Database

log = logging.getLogger(__name__)


class ReadRouter:
    def __init__(self, primary: Database, replicas: list[Database], *, max_lag: float = 5.0,
                 interval: float = 0.5) -> None:
        self.primary = primary
        self.replicas = replicas
        self.max_lag = max_lag
        self.interval = interval
        self.healthy: list[Database] = []
        self.lag_ok: dict[int, bool] = {}
        self._rr = itertools.count()
        self._samples: deque[tuple[float, int]] = deque()
        self._task: asyncio.Task[None] | None = None

    def pick(self) -> Database | None:
        """A replica fresh enough to read from, or None (read from the primary)."""
        healthy = self.healthy
        if not healthy:
            return None
        return healthy[next(self._rr) % len(healthy)]

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._loop(), name="replica-probe")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for db in self.replicas:
            await db.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.probe()
            except Exception as exc:  # noqa: BLE001 - a failed probe means: primary only
                log.warning("replica probe failed: %r", exc)
                self.healthy = []

    async def probe(self) -> None:
        now = time.monotonic()
        lsn = int(await self.primary.fetchval(
            "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        samples = self._samples
        samples.append((now, lsn))
        # The newest primary position at least max_lag old: a replica past it lags less.
        while len(samples) >= 2 and samples[1][0] <= now - self.max_lag:
            samples.popleft()
        # Until one is that old (just started), demand the current position.
        target = samples[0][1] if samples[0][0] <= now - self.max_lag else lsn
        healthy = []
        for i, db in enumerate(self.replicas):
            try:
                replayed = await asyncio.wait_for(db.fetchval(
                    "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) - '0/0'::pg_lsn"), 2)
                ok = replayed is not None and int(replayed) >= target
            except Exception:  # noqa: BLE001 - unreachable replica: skip it
                ok = False
            if ok != self.lag_ok.get(i):
                log.info("replica=%d fresh=%s", i, ok)
            self.lag_ok[i] = ok
            if ok:
                healthy.append(db)
        self.healthy = healthy
