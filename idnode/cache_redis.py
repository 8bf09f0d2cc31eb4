"""The shared second cache tier (L2): resolved records in Redis through aiocache's RedisCache,
shared by every node process of a deployment, kept coherent by the invalidations the hot cache
hears, and skipped (never waited on) while Redis is unreachable.

Coherence, in short (docs/OPERATIONS.md has the long form):

(1) Every node that hears an invalidation applies it to Redis itself: one Lua script deletes
    the entries and moves the generation of each key's bucket to Redis' clock. Until its own
    script has run, a node does not read those keys from Redis.
(2) A fill is conditional: the reader reads the bucket generation together with the entry (one
    MGET), and the fill script stores the record only if the generation has not moved since.
    A write that commits during the read moves it (or its delete comes later and removes the
    fill), so a stale fill cannot outlive the first node's invalidation script. A record read
    from a replica is stored only if its bucket was last written more than the replica lag ago.
(3) Invalidations nobody applied (every node stopped, or none listening, or Redis restarted or
    restored from disk) are covered by an epoch: entries carry the epoch they were stored in,
    and a node that starts listening joins the set of listening nodes and moves the epoch
    (everything stored before becomes a miss) unless another node has been listening all along.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
import zlib
from collections.abc import Coroutine, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from idnode.config import SettingsError
from idnode.model.invalidation import is_control
from idnode.model.shared import Probe

log = logging.getLogger(__name__)

#: Generation buckets. More buckets: fewer fills refused because another key of the bucket
#: was written during the read; each costs one small key in Redis.
BUCKETS = 16384
#: Seconds a node's membership of the listening set lasts without a refresh, and how often
#: it refreshes; a crashed node is believed to be listening for at most LEASE seconds.
LEASE = 6.0
REFRESH = 2.0
#: Locally heard invalidations not yet applied to Redis, at most; past it they are dropped and
#: the node rejoins as if it had just started (which moves the epoch if nobody else listened).
MAX_PENDING = 100_000
#: Background reads and fills in flight, at most; past it a fill is skipped (the next miss
#: tries again).
MAX_TASKS = 256
#: Keys per invalidation script call.
CHUNK = 1000
#: Seconds added to replica_max_lag for a replica read: the replicas are probed every 0.5 s.
REPLICA_MARGIN = 1.0

# KEYS: gen keys (ARGV[1] of them), then entry keys. Deletes the entries and moves each
# generation to Redis' clock in microseconds (strictly up, even if the clock is not).
_INVALIDATE = """
local n = tonumber(ARGV[1])
for i = n + 1, #KEYS do redis.call('DEL', KEYS[i]) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, n do
  local g = tonumber(redis.call('GET', KEYS[i]) or '0')
  local v = now
  if g >= v then v = g + 1 end
  redis.call('SET', KEYS[i], string.format('%.0f', v))
end
return n
"""

# KEYS: epoch, then (entry, gen) per item; ARGV: epoch read, replica lag in µs (0: the rows
# came from the primary), then (gen read, ttl ms, value) per item. Stores an item only if its
# bucket's generation is what the reader saw before reading the database, and, for replica
# reads, only if that write is older than the lag (a missing generation counts as written when
# the epoch began). Returns how many were stored.
_FILL = """
local e = redis.call('GET', KEYS[1])
if not e or e ~= ARGV[1] then return 0 end
local lag = tonumber(ARGV[2])
local oldest = 0
if lag > 0 then
  local t = redis.call('TIME')
  oldest = tonumber(t[1]) * 1000000 + tonumber(t[2]) - lag
end
local stored = 0
for k = 1, (#KEYS - 1) / 2 do
  local g = redis.call('GET', KEYS[2 * k + 1]) or ''
  if g == ARGV[3 * k] and (lag == 0 or tonumber(g ~= '' and g or e) <= oldest) then
    redis.call('SET', KEYS[2 * k], ARGV[3 * k + 2], 'PX', ARGV[3 * k + 1])
    stored = stored + 1
  end
end
return stored
"""

# KEYS: members (zset: node id → lease deadline in ms), epoch, run id; ARGV: node id, lease ms,
# "1" if this node has listened and applied every invalidation since it last joined, Redis'
# run id as the node saw it. Renews the node's membership; moves the epoch unless someone has
# been listening throughout (this node, or another live member of this Redis incarnation).
# Returns {epoch, 1 if moved}.
_JOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local move = false
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[4] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[3], ARGV[4])
  move = true
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local mine = redis.call('ZSCORE', KEYS[1], ARGV[1])
local others = redis.call('ZCARD', KEYS[1])
if mine then others = others - 1 end
if others == 0 and not (mine and ARGV[3] == '1') then move = true end
local e = redis.call('GET', KEYS[2])
if not e then move = true end
if move then
  local v = now
  if e and tonumber(e) >= v then v = tonumber(e) + 1 end
  e = string.format('%.0f', v)
  redis.call('SET', KEYS[2], e)
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
return {e, move and 1 or 0}
"""


class _Unusable(Exception):
    """The tier stopped being usable between a read's call and its round trip."""


class SharedTier:
    """The L2 tier. Reads and fills are called by the resolver; `invalidate`, `resume` and
    `suspend` by the hot cache as it hears writes and gains or loses its listener."""

    def __init__(self, url: str, *, namespace: str, ttl: float, timeout: float,
                 retry: float, replica_lag: float = 0.0) -> None:
        try:
            from aiocache import RedisCache
            from aiocache.serializers import NullSerializer
        except ImportError:
            raise SettingsError(
                "cache_redis_url is set but the Python package 'redis' is not installed; "
                "install the extra: pip install 'idnode[redis]'") from None
        if ttl <= 0 or timeout <= 0 or retry <= 0:
            raise SettingsError("cache_redis_ttl, cache_redis_timeout and cache_redis_retry must "
                             "be positive")
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise SettingsError(f"cache_redis_url {url!r} is not a redis:// or rediss:// URL")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise SettingsError(f"cache_redis_url {url!r}: the path must be a database number")
        pool_kwargs: dict[str, Any] = {}
        if parts.username:
            pool_kwargs["username"] = unquote(parts.username)
        self.backend = RedisCache(
            serializer=NullSerializer(encoding=None), endpoint=parts.hostname,
            port=parts.port or 6379, db=int(path or 0),
            password=unquote(parts.password) if parts.password else None,
            ssl=parts.scheme == "rediss", timeout=timeout, create_connection_timeout=timeout,
            connection_pool_kwargs={**pool_kwargs, "socket_timeout": timeout})
        self.url = parts._replace(netloc=f"{parts.hostname}:{parts.port or 6379}").geturl()
        self.namespace = namespace
        self.ttl = ttl
        self.timeout = timeout
        self.retry = retry
        #: Seconds a replica read may be behind (0: no replicas); see _FILL.
        self.replica_lag = replica_lag
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._epoch_key = f"{namespace}:epoch"
        self._members_key = f"{namespace}:members"
        self._run_id_key = f"{namespace}:run_id"
        # Counters for /metrics.
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.fills = 0
        self.fills_refused = 0
        self.epoch_moves = 0
        #: True while the hot cache's listener is up (invalidations are being heard).
        self.listening = False
        #: The epoch this node joined; None until it has (reads and fills wait for it).
        self.epoch: bytes | None = None
        #: Listening and applying every invalidation since the last join.
        self._continuous = False
        self._joined_at = 0.0
        self._down = False
        self._down_until = 0.0
        self.down_reason = ""
        #: Heard but not yet applied to Redis: key → the sequence number of its last hearing.
        self._pending: dict[str, int] = {}
        self._seq = 0
        #: Moves whenever continuity is lost, so a join begun before cannot claim it.
        self._lineage = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reads: list[tuple[Sequence[str], asyncio.Future[Probe | None]]] | None = None
        self._fills: dict[tuple[bytes, int], tuple[list[str], list[Any]]] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- keys -----------------------------------------------------------------------------
    def _entry(self, key: str) -> str:
        return f"{self.namespace}:r:{key}"

    def _gen(self, key: str) -> str:
        # crc32, not hash(): every process must put a key in the same bucket.
        return f"{self.namespace}:g:{zlib.crc32(key.encode()) & (BUCKETS - 1)}"

    # -- state ----------------------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self.listening and self.epoch is not None and not self._down

    @property
    def pending(self) -> int:
        return len(self._pending)

    def status(self) -> str:
        if self._down:
            return f"down: {self.down_reason}"
        if not self.listening:
            return "bypassed: invalidation listener down"
        if self.epoch is None:
            return "joining"
        return "ok"

    def _trip(self, exc: BaseException) -> None:
        """A failed operation: skip the tier for `retry` seconds (logged once per outage)."""
        self.errors += 1
        self._down_until = time.monotonic() + self.retry
        if not self._down:
            self._down = True
            self.down_reason = type(exc).__name__
            log.warning("shared cache %s unreachable (%r); serving from the hot cache and the "
                        "database, retrying every %.1fs", self.url, exc, self.retry)
        self._wake.set()

    # -- reads and fills ------------------------------------------------------------------
    # Calls made in the same event-loop iteration (concurrent requests) share one round trip,
    # as the database reads do (HandleStore.get): redis-py's work per command costs more than
    # the command itself, and concurrent misses would otherwise pay it each.

    async def get_many(self, keys: Sequence[str]) -> Probe | None:
        """The entries for keys with their bucket generations, or None when the tier is not
        usable now."""
        if not self.usable:
            return None
        loop = asyncio.get_running_loop()
        found: asyncio.Future[Probe | None] = loop.create_future()
        if self._reads is None:
            self._reads = []
            loop.call_soon(self._flush_reads)
        self._reads.append((keys, found))
        return await found

    def _flush_reads(self) -> None:
        reads, self._reads = self._reads or [], None
        self._spawn(self._read(reads), "l2-read")

    async def _read(self, reads: list[tuple[Sequence[str], asyncio.Future[Probe | None]]]
                    ) -> None:
        keys = [k for ks, _ in reads for k in ks]
        names = [self._entry(k) for k in keys]
        names += [self._gen(k) for k in keys]
        names.append(self._epoch_key)
        # Keys this node heard invalidated but has not yet deleted in Redis are not read from
        # it. Decided before the read: the answer may predate the delete even if the delete
        # has finished by the time the answer arrives.
        pending = self._pending
        skipped = [k in pending for k in keys]
        try:
            if not self.usable:
                raise _Unusable
            raw = await self.backend.multi_get(names)
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, _Unusable):
                self._trip(exc)
            for _, found in reads:
                if not found.done():
                    if isinstance(exc, Exception):
                        found.set_result(None)
                    else:
                        found.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        epoch = raw[-1]
        if epoch is None or epoch != self.epoch:
            # Someone moved the epoch (or Redis lost it): rejoin before trusting anything.
            self.epoch = None
            self._wake.set()
            for _, found in reads:
                if not found.done():
                    found.set_result(None)
            return
        n = len(keys)
        values: list[bytes | None] = []
        for value, skip in zip(raw[:n], skipped):
            if value is not None and not skip:
                stamp, _, payload = value.partition(b"\n")
                if stamp == epoch:
                    self.hits += 1
                    values.append(payload)
                    continue
            self.misses += 1
            values.append(None)
        gens = raw[n:2 * n]
        at = 0
        for ks, found in reads:
            if not found.done():  # its caller may have gone (a client hung up)
                found.set_result(Probe(values[at:at + len(ks)], gens[at:at + len(ks)], epoch))
            at += len(ks)

    def fill(self, probe: Probe, items: Sequence[tuple[int, str, bytes, float]], *,
             replica: bool) -> None:
        """Stores (index in the probe, key, payload, ttl) read from the database after `probe`,
        in the background, each only if no write raced its read (see _FILL)."""
        if not items or not self.usable or len(self._tasks) >= MAX_TASKS:
            return
        lag = int((self.replica_lag + REPLICA_MARGIN) * 1e6) if replica and self.replica_lag \
            else 0
        group = (probe.epoch, lag)
        if self._fills is None:
            self._fills = {}
            asyncio.get_running_loop().call_soon(self._flush_fills)
        keys, args = self._fills.setdefault(group, ([self._epoch_key], [probe.epoch, lag]))
        for i, key, payload, ttl in items:
            keys += (self._entry(key), self._gen(key))
            args += (probe.gens[i] or b"", max(1, int(min(ttl, self.ttl) * 1000)),
                     probe.epoch + b"\n" + payload)

    def _flush_fills(self) -> None:
        fills, self._fills = self._fills or {}, None
        for keys, args in fills.values():
            self._spawn(self._fill(keys, args, (len(keys) - 1) // 2), "l2-fill")

    async def _fill(self, keys: list[str], args: list[Any], n: int) -> None:
        try:
            stored = int(await self.backend.raw("eval", _FILL, len(keys), *keys, *args))
        except Exception as exc:  # noqa: BLE001 - any failure: skip the tier
            self._trip(exc)
            return
        self.fills += stored
        self.fills_refused += n - stored

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)  # held until done: the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    @property
    def busy(self) -> bool:
        """Reads, fills or invalidations are on their way (for tests and benchmarks)."""
        return bool(self._pending or self._tasks or self._reads or self._fills)

    # -- invalidation and membership ------------------------------------------------------
    def invalidate(self, keys: Sequence[str]) -> None:
        """Identifiers whose records changed: not read from Redis here until this node has
        deleted them there (in the background, as soon as Redis answers)."""
        if not keys or is_control(keys):
            return  # control keys ("prefix:…", "cred:…"): nothing of theirs is in the tier
        pending = self._pending
        self._seq += 1
        seq = self._seq
        for key in keys:
            pending.pop(key, None)  # re-inserted last: the dict stays in the order heard
            pending[key] = seq
        if len(pending) > MAX_PENDING:
            log.warning("shared cache: %d invalidations could not be applied; dropping them "
                        "and rejoining", len(pending))
            pending.clear()
            self._lost_continuity()
        self._wake.set()

    def resume(self) -> None:
        """The hot cache's listener is (back) up: join once Redis answers."""
        self.listening = True
        self._wake.set()

    def suspend(self) -> None:
        """The listener is down: invalidations may be going unheard."""
        self.listening = False
        self._lost_continuity()
        self._wake.set()

    def _lost_continuity(self) -> None:
        self._continuous = False
        self._lineage += 1
        self.epoch = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="l2-maintenance")

    async def stop(self) -> None:
        self.listening = False
        self._closing = True
        self._wake.set()
        if self._task is not None:
            # The loop ends at its next wake-up; an operation in flight ends by its timeout.
            done, _ = await asyncio.wait([self._task], timeout=self.timeout * 4 + 1)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        for task in list(self._tasks):
            task.cancel()
        if not self._down:
            # Best effort, briefly: apply what was heard, and stop claiming to listen.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout * 4 + 1):
                    await self._apply_pending()
                    await self.backend.raw("zrem", self._members_key, self.member)
        client = self.backend.client
        close = getattr(client, "aclose", None) or client.close
        with contextlib.suppress(Exception):
            await asyncio.wait_for(close(), 1)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            if self._down:
                wait = self._down_until - now
            elif self.listening and self.epoch is not None:
                wait = self._joined_at + REFRESH - now
            else:
                wait = REFRESH  # resume() and the readers wake it when there is work
            if wait > 0:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation
                # that arrives as the event is set.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()
            if self._closing:
                return
            self._wake.clear()
            if self._down and time.monotonic() < self._down_until:
                continue
            try:
                if self._down:
                    await self.backend.raw("ping")
                await self._apply_pending()
                if self.listening and (self.epoch is None or self._down
                                       or time.monotonic() >= self._joined_at + REFRESH):
                    await self._join()
                elif not self.listening and self._joined_at:
                    await self.backend.raw("zrem", self._members_key, self.member)
                    self._joined_at = 0.0
                if self._down:
                    self._down = False
                    log.warning("shared cache %s reachable again", self.url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: skip the tier, retry
                self._trip(exc)

    async def _apply_pending(self) -> None:
        pending = self._pending
        while pending:
            batch = list(itertools.islice(pending.items(), CHUNK))
            gens = sorted({self._gen(k) for k, _ in batch})
            await self.backend.raw("eval", _INVALIDATE, len(gens) + len(batch), *gens,
                                   *(self._entry(k) for k, _ in batch), len(gens))
            for key, seq in batch:
                # Heard again while the script was on its way: the script may have run before
                # that write committed, so it must run once more.
                if pending.get(key) == seq:
                    del pending[key]

    async def _join(self) -> None:
        lineage = self._lineage
        info = await self.backend.raw("info", "server")
        epoch, moved = await self.backend.raw(
            "eval", _JOIN, 3, self._members_key, self._epoch_key, self._run_id_key,
            self.member, int(LEASE * 1000), "1" if self._continuous else "0",
            info.get("run_id", ""))
        self._joined_at = time.monotonic()
        if lineage != self._lineage or not self.listening:
            self._wake.set()  # continuity was lost meanwhile: join again, without claiming it
            return
        if moved:
            self.epoch_moves += 1
            log.info("shared cache epoch moved (no node was listening throughout)")
        self.epoch = epoch
        self._continuous = True


__all__ = ["Probe", "SharedTier"]
