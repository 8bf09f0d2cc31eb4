"""The composition root: builds the node's objects once, starts and stops its servers."""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idnode.api.grpc.registry import RegistryService
from idnode.api.http import server as http_server
from idnode.api.http.app import HttpApp, observer
from idnode.api.http.problems import problem
from idnode.cache import HotCache
from idnode.config import Settings
from idnode.core.registry import Limits, Registry
from idnode.core.resolver import Resolver
from idnode.metrics import NodeMetrics
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.handles import HandleStore
from idnode.store.prefixes import PrefixStore
from idnode.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Ports:
    http: int
    grpc: int


class Node:
    """One node process: HTTP and gRPC front doors over one database pool and one hot cache."""

    def __init__(self, settings: Settings, dsn: str, *, worker: str = "0") -> None:
        self.settings = settings
        self.dsn = dsn
        self.metrics = NodeMetrics(worker)
        self.cache = HotCache(max_entries=settings.cache_max_entries, ttl=settings.cache_ttl,
                              negative_ttl=settings.cache_negative_ttl,
                              enabled=settings.cache_enabled)
        self.db: Database | None = None
        self.registry: Registry | None = None
        self.resolver: Resolver | None = None
        self._http: asyncio.AbstractServer | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self.ports = Ports(0, 0)

    async def start(self, *, reuse_port: bool = False) -> Ports:
        s = self.settings
        pool = await create_pool(self.dsn, min_size=s.db_pool_min, max_size=s.db_pool_max,
                                 statement_timeout=s.db_statement_timeout)
        self.db = Database(pool)
        async with pool.acquire() as conn:
            await migrations.check_compatible(conn)
        handles = HandleStore(self.db)
        prefixes = PrefixStore(self.db)
        self.resolver = Resolver(handles, self.cache, max_batch=s.max_batch_resolve)
        self.registry = Registry(handles, prefixes, self.cache,
                                 Limits(s.max_batch_register, s.max_value_bytes, s.max_record_bytes))
        if s.cache_enabled:
            await self.cache.start(self.dsn)
        self._register_gauges()

        self._grpc = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
            ("grpc.max_send_message_length", s.grpc_max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ])
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryService(self.registry, self.resolver, self.metrics), self._grpc)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        names = (registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self._grpc)
        grpc_port = self._grpc.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        if grpc_port == 0:
            raise OSError(f"cannot bind gRPC on {s.grpc_host}:{s.grpc_port}")
        await self._grpc.start()
        for name in names[:1] + ("",):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

        app = HttpApp(self.resolver, self.metrics, self.ready,
                      negative_max_age=int(s.cache_negative_ttl))
        sock = http_server.bind_socket(s.http_host, s.http_port, reuse_port=reuse_port)
        self._http = await http_server.serve(app, observer(self.metrics),
                                             lambda st, d: problem(st, d), sock)
        self.ports = Ports(sock.getsockname()[1], grpc_port)
        log.info("node serving pid=%d http=%s:%d grpc=%s:%d", os.getpid(), s.http_host,
                 self.ports.http, s.grpc_host, self.ports.grpc)
        return self.ports

    async def ready(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        try:
            assert self.db is not None
            await asyncio.wait_for(self.db.fetchval("SELECT 1"), 2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self.settings.cache_enabled:
            checks["cache"] = "ok" if self.cache.coherent else "bypassed: invalidation listener down"
        return all(v == "ok" for v in checks.values()), checks

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting, lets in-flight calls finish within `grace`, then closes the pool."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.close()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._http is not None:
            try:
                await asyncio.wait_for(self._http.wait_closed(), grace)
            except TimeoutError:
                pass
        await self.cache.stop()
        if self.db is not None:
            await asyncio.wait_for(self.db.close(), grace)

    def _register_gauges(self) -> None:
        r = self.metrics.registry
        cache = self.cache
        db = self.db
        assert db is not None
        r.gauge("idnode_cache_entries", "Entries in the hot cache.",
                lambda: [((), len(cache.backend))])
        r.gauge("idnode_cache_hits_total", "Hot cache hits (counter).", lambda: [((), cache.hits)])
        r.gauge("idnode_cache_misses_total", "Hot cache misses (counter).",
                lambda: [((), cache.misses)])
        r.gauge("idnode_cache_invalidations_total", "Keys invalidated (counter).",
                lambda: [((), cache.invalidations)])
        r.gauge("idnode_cache_coherent", "1 while invalidations are being received.",
                lambda: [((), 1 if cache.coherent else 0)])
        r.gauge("idnode_db_pool_connections", "Database pool connections by state.",
                lambda: [(("open",), db.pool_stats()[0]), (("idle",), db.pool_stats()[1]),
                         (("in_use",), db.pool_stats()[0] - db.pool_stats()[1])],
                ("state",))
