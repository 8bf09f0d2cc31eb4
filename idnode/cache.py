"""The hot cache: a bounded in-process LRU, kept coherent across
processes and replicas by PostgreSQL LISTEN/NOTIFY on every write."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from idnode import cache_host
from idnode.cache_host import HostGenerations
from idnode.model.invalidation import is_control
from idnode.store.handles import INVALIDATE_CHANNEL
from idnode.store.listener import NotifyListener

if TYPE_CHECKING:
    from idnode.cache_redis import SharedTier

log = logging.getLogger(__name__)

_BUCKETS = 4096
_monotonic = time.monotonic
#: Stands in for the host's shared counters where there are none: every entry is stamped 0 in
#: slot 0, which never moves.
_NO_HOST = [0]
# The invalidation listener's liveness probe: a server that stops answering is noticed within
# their sum, and cached records are served marked stale from then on.
_PROBE_INTERVAL = 2.0
_PROBE_TIMEOUT = 3.0


class BoundedMemoryCache:
    """An LRU of at most `max_entries`, each with its own deadline: expired lazily on read,
    the least recently used entry evicted when full (no timer per entry). `peek`, `put` and
    `discard` are the synchronous hot path used by the resolver."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        #: key -> (deadline, value, host slot, host generation when read; see HotCache.get).
        #: HotCache reads it directly on its hit path (one dict lookup, no call).
        self.entries: OrderedDict[str, tuple[float, Any, int, int]] = OrderedDict()

    def peek(self, key: str) -> Any:
        """The live value for key, or None."""
        item = self.entries.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return item[1]

    def put(self, key: str, value: Any, ttl: float, slot: int = 0, stamp: int = 0) -> None:
        data = self.entries
        data[key] = (time.monotonic() + ttl, value, slot, stamp)
        data.move_to_end(key)
        while len(data) > self.max_entries:
            data.popitem(last=False)

    def peek_stale(self, key: str) -> Any:
        """The value for key even if expired, without touching recency (stale-if-error)."""
        item = self.entries.get(key)
        return None if item is None else item[1]

    def discard(self, key: str) -> bool:
        return self.entries.pop(key, None) is not None

    def clear(self) -> None:
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


class HotCache:
    """Cache-aside for resolved records with coherent invalidation.

    A fill races with writes: a reader may fetch the old row, a writer commit and notify,
    and only then the reader store what it fetched. Each key hashes to a generation counter
    that every invalidation bumps; a reader takes a `ticket` before it reads the database
    and `fill` drops the value if the key's generation moved meanwhile.

    While the LISTEN connection is down, notifications may be missed, so the cache is
    bypassed until the listener is back and the cache has been emptied.

    Across the worker processes of one host, a NOTIFY takes a few milliseconds to arrive, and
    a read on another worker meanwhile would serve the old value from its cache. So a write
    also bumps host-shared counters (`written`, cache_host) before it returns, and a hit
    counts only if its key's counter is still the one its entry was read under: one more
    8-byte read per hit, nothing for the writer to wait on. Other hosts still rely on the
    NOTIFY alone.
    """

    def __init__(self, *, max_entries: int, ttl: float, negative_ttl: float,
                 enabled: bool = True, recent_window: float = 0.0,
                 l2: SharedTier | None = None) -> None:
        self.backend = BoundedMemoryCache(max_entries=max_entries)
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.enabled = enabled
        #: False while invalidations may be missed (listener down or not yet started).
        self.coherent = False
        #: True while invalidations are being received, whether or not records are cached:
        #: the prefix table and remembered credentials follow the same channel.
        self.listening = False
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self._generations = [0] * _BUCKETS
        self._entries = self.backend.entries
        #: The host's shared counters (None: this process shares none, every stamp is 0).
        self.host: HostGenerations | None = None
        self._host_view: Any = _NO_HOST
        #: Whether start() should share counters with the other processes of this host.
        self.share_host = True
        #: With read replicas: keys written in the last `recent_window` seconds, which are
        #: read from the primary (a replica may not have replayed them yet).
        self.recent_window = recent_window
        self._recent: dict[str, float] = {}
        #: Told of every invalidation (control keys, or () for identifiers only), or None when
        #: everything was dropped; other in-memory state (prefix table, verified credentials)
        #: follows the same channel.
        self.subscribers: list[Callable[[Sequence[str] | None], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        #: The shared second tier (Redis), or None: told of every invalidation and of the
        #: listener coming and going; the resolver reads and fills it.
        self.l2 = l2

    def subscribe(self, subscriber: Callable[[Sequence[str] | None], None]) -> None:
        """Tells `subscriber` of every invalidation from now on (see `subscribers`)."""
        self.subscribers.append(subscriber)

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The cached value, or None on a miss: an entry past its deadline, or whose key was
        written by any process of this host since it was read, is dropped."""
        value = self.probe(key)
        if value is None:
            self.misses += 1
        return value

    def probe(self, key: str) -> Any:
        """As `get`, but a miss is not counted: for a caller that asks `get` after a miss."""
        if self.coherent:
            entries = self._entries
            item = entries.get(key)
            if item is not None:
                if item[0] >= _monotonic() and self._host_view[item[2]] == item[3]:
                    entries.move_to_end(key)
                    self.hits += 1
                    return item[1]
                del entries[key]
        return None

    def stale(self, key: str) -> Any:
        """What the cache last held for key, coherent or not: for serving while the database
        is unreachable (no write can commit then either), never in place of a fresh read."""
        return self.backend.peek_stale(key) if self.enabled else None

    def ticket(self, key: str) -> tuple[int, int, int]:
        """Taken before the database read that a `fill` will store: this process's generation
        of the key's bucket, and the key's host slot with its counter."""
        slot = cache_host.slot(key) if self.host is not None else 0
        return self._generations[hash(key) & (_BUCKETS - 1)], slot, self._host_view[slot]

    def fill(self, key: str, value: Any, ticket: tuple[int, int, int],
             ttl: float | None = None) -> bool:
        """Stores value unless the key was invalidated since `ticket`; says whether it did.
        The entry keeps the ticket's host counter: a write by another process of the host
        since then (heard or not) makes it a miss."""
        if not (self.enabled and self.coherent):
            return False
        if self._generations[hash(key) & (_BUCKETS - 1)] != ticket[0]:
            return False
        self.backend.put(key, value, min(self.ttl, ttl) if ttl is not None else self.ttl,
                         ticket[1], ticket[2])
        return True

    # -- invalidation ---------------------------------------------------------------------
    def recently_written(self, key: str) -> bool:
        if not self.recent_window:
            return False
        if not self.coherent:
            return True  # writes may be going unheard: trust only the primary
        deadline = self._recent.get(key)
        return deadline is not None and deadline > time.monotonic()

    def written(self, keys: Sequence[str]) -> None:
        """A write of `keys` has committed and is about to return: from now on no process of
        this host serves them from its cache; then as `invalidate` for this one."""
        host = self.host
        if host is not None:
            host.bump([cache_host.slot(k) for k in keys])
        self.invalidate(keys)

    def invalidate(self, keys: Sequence[str]) -> None:
        gens = self._generations
        backend = self.backend
        if self.recent_window:
            deadline = time.monotonic() + self.recent_window
            recent = self._recent
            if len(recent) > 4 * self.backend.max_entries:
                now = time.monotonic()
                for k in [k for k, d in recent.items() if d <= now]:
                    del recent[k]
            for key in keys:
                recent[key] = deadline
        for key in keys:
            gens[hash(key) & (_BUCKETS - 1)] += 1
            backend.discard(key)
        self.invalidations += len(keys)
        if self.l2 is not None:
            self.l2.invalidate(keys)
        # Subscribers care about control keys ("prefix:…", "cred:…"), which never share a
        # notification with identifiers: a batch of identifiers reaches them as an empty
        # "something was written".
        control = keys if is_control(keys) else ()
        for subscriber in self.subscribers:
            subscriber(control)

    def clear(self) -> None:
        self._generations = [g + 1 for g in self._generations]
        self.backend.clear()
        for subscriber in self.subscribers:
            subscriber(None)

    def _on_notify(self, payload: str) -> None:
        self.invalidate(payload.split("\n"))

    def _on_lost(self) -> None:
        if self.listening:
            log.warning("cache listener connection lost; bypassing cache until it is back")
        self._incoherent()

    def _incoherent(self) -> None:
        # Entries stay for stale-if-error, but no fill that started before this may land, and
        # everything is dropped when the listener is back (see _listen_forever).
        self.coherent = self.listening = False
        self._generations = [g + 1 for g in self._generations]
        if self.l2 is not None:
            self.l2.suspend()
        for subscriber in self.subscribers:
            subscriber(None)

    async def start(self, dsn: str) -> None:
        """Starts listening for invalidations; returns once the first LISTEN is in place."""
        if self._listener is None:
            if self.l2 is not None:
                self.l2.start()
            self._listener = asyncio.create_task(self._listen_forever(dsn), name="cache-listener")
        await self._listening.wait()

    def _share_host(self, identity: str) -> None:
        host = HostGenerations.open(identity)
        if host is not None:
            # Entries stamped before have slot 0 and stamp 0: refill them under real stamps.
            self.backend.clear()
            self.host, self._host_view = host, host.view

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        self.coherent = False
        if self.host is not None:
            # Stamps of a closed mapping mean nothing: no entry may outlive it.
            host, self.host, self._host_view = self.host, None, _NO_HOST
            self.backend.clear()
            host.close()
        if self.l2 is not None:
            await self.l2.stop()

    async def _listen_forever(self, dsn: str) -> None:
        backoff = 0.1
        while True:
            listener = NotifyListener(dsn, INVALIDATE_CHANNEL,
                                      application_name="idnode-cache-listener",
                                      on_notify=self._on_notify, on_lost=self._on_lost)
            try:
                await listener.connect()
                if self.share_host and self.host is None:
                    self._share_host(await listener.identity())
                await listener.listen()
                # Anything cached before LISTEN took effect may have missed a notification.
                self.clear()
                self.coherent = self.enabled
                self.listening = True
                if self.l2 is not None and self.coherent:
                    self.l2.resume()
                self._listening.set()
                backoff = 0.1
                # Until the connection is lost (then _on_lost has made the cache incoherent)
                # or stops answering its liveness probe (an error: reconnect).
                await listener.watch(_PROBE_INTERVAL, _PROBE_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                log.warning("cache listener error=%r; reconnecting in %.1fs", exc, backoff)
            finally:
                # Incoherent before closing: the close's own termination notice then finds
                # the cache no longer listening and logs no loss.
                self._incoherent()
                await listener.close()
            self._listening.set()  # do not block start-up forever on a flapping database
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
