"""The node's gauges: values read at scrape time from the objects the composition root built
(the cache, the database pool, the shippers, ...). Counters and histograms that code bumps as
it works live on NodeMetrics itself (idnode.metrics)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from idnode.metrics import Registry

if TYPE_CHECKING:
    from idnode.api.http.server import HttpServer
    from idnode.node import Core
    from idnode.sync.epp.upstream import EppUpstream
    from idnode.sync.remote import RemoteResolver
    from idnode.sync.worker import Shipper


def core_gauges(r: Registry, core: Core) -> None:
    """The hot cache (and its shared tier), the database pool, the per-prefix statistics."""
    cache, db, stats, resolver = core.cache, core.db, core.stats, core.resolver
    r.gauge("idnode_cache_entries", "Entries in the hot cache.",
            lambda: [((), len(cache.backend))])
    r.counted("idnode_cache_hits_total", "Hot cache hits.", lambda: [((), cache.hits)])
    r.counted("idnode_cache_misses_total", "Hot cache misses.",
            lambda: [((), cache.misses)])
    r.counted("idnode_cache_invalidations_total", "Keys invalidated.",
            lambda: [((), cache.invalidations)])
    r.gauge("idnode_cache_warmed", "Records this process loaded into its hot cache when it "
            "started (cache_warm_top: the most scanned).", lambda: [((), resolver.warmed)])
    r.gauge("idnode_cache_coherent", "1 while invalidations are being received.",
            lambda: [((), 1 if cache.coherent else 0)])
    r.gauge("idnode_cache_host_shared", "1 while this process shares write counters with "
            "the other processes of its host (a write is seen by all once it returns).",
            lambda: [((), 1 if cache.host is not None else 0)])
    r.counted("idnode_stats_prefixes_dropped_total", "Prefixes whose counts for the "
            "heartbeat were dropped, stats_max_prefixes being reached.",
            lambda: [((), stats.dropped)])
    l2 = cache.l2
    if l2 is not None:
        r.counted("idnode_cache_l2_hits_total", "Shared (Redis) cache hits.",
                lambda: [((), l2.hits)])
        r.counted("idnode_cache_l2_misses_total", "Shared cache misses, including keys not "
                "read there while their invalidation is on its way.",
                lambda: [((), l2.misses)])
        r.counted("idnode_cache_l2_errors_total", "Failed or timed-out Redis operations "
                "; each skips the shared cache for cache_redis_retry seconds.",
                lambda: [((), l2.errors)])
        r.counted("idnode_cache_l2_fills_total", "Records stored in the shared cache.",
                lambda: [((), l2.fills)])
        r.counted("idnode_cache_l2_fills_refused_total", "Fills refused because a write to "
                "the key's bucket raced the database read.",
                lambda: [((), l2.fills_refused)])
        r.counted("idnode_cache_l2_epoch_moves_total", "Times this process emptied the shared "
                "cache on joining, no node having listened throughout.",
                lambda: [((), l2.epoch_moves)])
        r.gauge("idnode_cache_l2_up", "1 while the shared cache is read and filled.",
                lambda: [((), 1 if l2.usable else 0)])
        r.gauge("idnode_cache_l2_pending_invalidations",
                "Invalidations heard but not yet applied to Redis.",
                lambda: [((), l2.pending)])
    r.gauge("idnode_db_pool_connections", "Database pool connections by state.",
            lambda: [(("open",), db.pool_stats()[0]), (("idle",), db.pool_stats()[1]),
                     (("in_use",), db.pool_stats()[0] - db.pool_stats()[1])],
            ("state",))
    r.gauge("idnode_db_up", "0 while the database does not answer (requests fail fast "
            "and a probe retries every db_retry_interval seconds).",
            lambda: [((), 1 if db.up else 0)])
    r.counted("idnode_stale_served_total", "Records served from the cache because the "
            "database could not be asked (stale-if-error).",
            lambda: [((), resolver.stale_served)])


def http_gauges(r: Registry, public: HttpServer | None, operator: HttpServer) -> None:
    """`public` is None in a gRPC-only worker (grpc_workers)."""
    r.gauge("idnode_http_connections", "Open HTTP connections by listener.",
            lambda: [(("metrics",), len(operator.live))]
            + ([(("public",), len(public.live))] if public is not None else []),
            ("listener",))


def sync_gauges(r: Registry, shipper: Shipper, remote: RemoteResolver | None) -> None:
    """Shipping the outbox to the top-level node over gRPC, and cross-node resolution."""
    r.gauge("idnode_sync_acked_seq", "Highest outbox seq the top-level node acknowledged.",
            lambda: [((), shipper.acked)])
    r.gauge("idnode_sync_last_success_timestamp_seconds",
            "When shipping last succeeded (0: never, or not this process).",
            lambda: [((), shipper.last_success)])
    r.counted("idnode_sync_events_shipped_total", "Outbox events shipped by this process.",
            lambda: [((), shipper.shipped)])
    r.gauge("idnode_sync_backlog_events", "Outbox events not yet acknowledged upstream.",
            lambda: [((), shipper.backlog)])
    r.gauge("idnode_sync_lag_seconds", "Age of the oldest unacknowledged outbox event.",
            lambda: [((), shipper.lag)])
    if remote is not None:
        r.gauge("idnode_remote_locations", "Prefix locations remembered from the "
                "top-level node (at most remote_locations_max).",
                lambda: [((), remote.locations_held)])


def epp_gauges(r: Registry, shipper: Shipper, upstream: EppUpstream) -> None:
    """Provisioning to the top-level node's BMS over EPP."""
    r.gauge("idnode_sync_epp_acked_seq", "Highest outbox seq the top-level node's BMS "
            "acknowledged over EPP.", lambda: [((), shipper.acked)])
    r.gauge("idnode_sync_epp_backlog_events", "Outbox events not yet provisioned over EPP.",
            lambda: [((), shipper.backlog)])
    r.counted("idnode_sync_epp_refused_total", "EPP commands the BMS refused for good "
            "(recorded in sync_notices).", lambda: [((), upstream.refused)])
