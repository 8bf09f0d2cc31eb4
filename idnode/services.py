"""The node's rules over its stores (Core): the pools, the stores, the rules and their
collaborators, built once in dependency order; used by the servers (idnode.node) and the CLI
alike."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from idnode import keys
from idnode.cache import HotCache
from idnode.cache_redis import SharedTier
from idnode.config import Settings
from idnode.core.auth import Authenticator
from idnode.core.challenges import Challenges
from idnode.core.handleform import HandleForms
from idnode.core.prefixes import PrefixTable
from idnode.core.provenance import Provenance
from idnode.core.registry import Limits, Registry
from idnode.core.resolver import Remote, Resolver
from idnode.core.scans import ScanCounter
from idnode.core.signing import Signer
from idnode.core.stats import Stats
from idnode.core.tenancy import Tenancy
from idnode.core.trace import TraceLog
from idnode.crypto.keys import KeyRing
from idnode.model.invalidation import CREDENTIAL_KEY, PREFIX_KEY
from idnode.store import migrations
from idnode.store.audit import AuditStore
from idnode.store.challenges import ChallengeStore
from idnode.store.db import Database, create_pool
from idnode.store.db import Limits as DbLimits
from idnode.store.handles import HandleStore
from idnode.store.hsigs import HsSignatureStore
from idnode.store.outbox import OutboxStore
from idnode.store.prefixes import PrefixStore
from idnode.store.replicas import ReadRouter
from idnode.store.tenancy import TenancyStore
from idnode.store.trace import TraceStore


@dataclass(slots=True)
class Core:
    """The node's rules over its stores: built once, used by the servers and the CLI alike."""

    db: Database
    replicas: ReadRouter | None
    cache: HotCache
    #: The stores, for the node's own jobs (upstream sync, cache warming, head signing); the
    #: rules hold them as the interfaces of idnode.core.ports.
    prefix_store: PrefixStore
    handles: HandleStore
    tenancy_store: TenancyStore
    trace_store: TraceStore
    prefixes: PrefixTable
    authenticator: Authenticator
    resolver: Resolver
    registry: Registry
    tenancy: Tenancy
    outbox: OutboxStore
    stats: Stats
    keyring: KeyRing | None
    trace: TraceLog
    #: The scan page's checked traces (None without signing: nothing to check against).
    provenance: Provenance | None
    scans: ScanCounter
    #: Pending Handle protocol authentication challenges.
    challenges: Challenges
    #: The Handle and IDIS signature forms (HS_CERT / HS_SIGNATURE values) of served records;
    #: None when signing_algorithms lists neither RS256 nor SM2SM3.
    handle_forms: HandleForms | None = None

    @staticmethod
    def cache_for(s: Settings) -> HotCache:
        """The hot cache the settings describe: with read replicas it sends keys written in
        the last replica_max_lag seconds to the primary; with cache_redis_url it has the
        shared tier."""
        shared = bool(s.cache_redis_url and s.cache_enabled)
        return HotCache(max_entries=s.cache_max_entries, ttl=s.cache_ttl,
                        negative_ttl=s.cache_negative_ttl, enabled=s.cache_enabled,
                        recent_window=s.replica_max_lag if _read_urls(s) else 0.0,
                        l2=_shared_tier(s) if shared else None)

    @staticmethod
    async def open(s: Settings, dsn: str, cache: HotCache, *, pool_max: int | None = None,
                   remote: Remote | None = None) -> Core:
        """Opens the pools (checking the schema) and builds the rules over them; `cache` as
        cache_for makes it, `remote` resolves other nodes' identifiers (federation)."""
        limits = DbLimits.of(s)
        pool = await create_pool(dsn, min_size=min(s.db_pool_min, pool_max or s.db_pool_min),
                                 max_size=pool_max or s.db_pool_max,
                                 statement_timeout=s.db_statement_timeout,
                                 connect_timeout=s.db_connect_timeout)
        db = Database(pool, limits)
        router = None
        try:
            async with pool.acquire() as conn:
                await migrations.check_compatible(conn)
            if _read_urls(s):
                replicas = [Database(await create_pool(
                    u, min_size=1, max_size=s.db_pool_max,
                    statement_timeout=s.db_statement_timeout,
                    connect_timeout=s.db_connect_timeout), limits) for u in _read_urls(s)]
                router = ReadRouter(db, replicas, max_lag=s.replica_max_lag)
                await router.start()
        except BaseException:
            if router is not None:
                await router.stop()
            await db.close()
            raise
        handles = HandleStore(db, router)
        prefix_store = PrefixStore(db)
        tenancy_store = TenancyStore(db)
        # Prefix states and verified credentials are trusted from memory while invalidations
        # are heard, whether or not records are cached.
        prefixes = PrefixTable(prefix_store, lambda: cache.listening)
        authenticator = Authenticator(tenancy_store, lambda: cache.listening)
        stats = Stats(s.stats_max_prefixes)
        ring = keys.keyring(s) if s.signing_enabled else None
        sign_plan = keys.plan(s)
        signer = (Signer(ring, s.node_prefix, post_quantum=sign_plan.post_quantum,
                         alg=sign_plan.batch) if ring is not None else None)
        trace_store = TraceStore(db)
        trace = TraceLog(trace_store, prefix_store, ring, s.node_prefix)
        registry = Registry(handles, prefix_store, cache,
                            Limits(s.max_batch_register, s.max_value_bytes, s.max_record_bytes),
                            stats, signer, table=prefixes)
        core = Core(
            db, router, cache, prefix_store, handles, tenancy_store, trace_store, prefixes,
            authenticator,
            Resolver(handles, cache, prefixes, prefix_store=prefix_store,
                     max_batch=s.max_batch_resolve, stats=stats,
                     node_prefix=s.node_prefix, remote=remote),
            registry,
            Tenancy(tenancy_store, prefix_store, AuditStore(db), cache, s.node_prefix, registry),
            OutboxStore(db), stats, ring, trace,
            (Provenance(trace, ring.jwks, max_age=s.trace_view_max_age)
             if ring is not None else None),
            ScanCounter(trace_store.scans, trace_store.add_scans),
            Challenges(ChallengeStore(db), authenticator, s.handle_challenge_ttl),
            (HandleForms(HsSignatureStore(db), s.node_prefix, ring.jwks,
                         signature_ttl=s.handle_signature_days * 86400)
             if ring is not None and sign_plan.forms else None))
        cache.subscribe(core.on_invalidated)
        if core.provenance is not None:
            cache.subscribe(core.provenance.views.on_invalidated)
        return core

    async def close(self) -> None:
        """Closes the replicas' and the primary's pools."""
        try:
            if self.replicas is not None:
                await self.replicas.stop()
        finally:
            await self.db.close()

    def on_invalidated(self, keys: Sequence[str] | None) -> None:
        """Keeps the prefix table and remembered credentials in step with the database."""
        if keys is None:
            self.prefixes.mark_dirty()
            self.authenticator.forget()
            return
        for key in keys:
            if key.startswith(PREFIX_KEY):
                self.prefixes.mark_dirty()
                # Cached records were served under the prefix's old status.
                self.cache.clear()
            elif key.startswith(CREDENTIAL_KEY):
                self.authenticator.forget(key[len(CREDENTIAL_KEY):])


def _read_urls(s: Settings) -> list[str]:
    return [u.strip() for u in s.database_read_urls.split(",") if u.strip()]


def _shared_tier(s: Settings) -> SharedTier:
    return SharedTier(s.cache_redis_url,
                      namespace=s.cache_redis_namespace or f"idnode:{s.node_prefix}",
                      ttl=s.cache_redis_ttl, timeout=s.cache_redis_timeout,
                      retry=s.cache_redis_retry,
                      replica_lag=s.replica_max_lag if s.database_read_urls.strip() else 0.0)
