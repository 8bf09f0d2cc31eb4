"""The composition root: builds the node's objects once, in dependency order, starts its
servers (rolling back what started when a later step fails) and stops them (every part, even
when one fails). Gauges are wired in idnode.node_metrics, the top-level node is
idnode.topnode, the node's standing with its anchor idnode.sync.enrolment."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health

from idnode import frontdoors, grpc_tls, node_metrics
from idnode.frontdoors import ROLES, Ports
from idnode.api.handle import server as handle_server
from idnode.api.http import server as http_server
from idnode.api.http.app import HttpApp
from idnode.api.http.operator import metrics_app, observer
from idnode.api.http.problems import problem
from idnode.api.ratelimit import RateLimiter
from idnode.config import Settings
from idnode.core.registry import Registry
from idnode.core import warmup
from idnode.core.resolver import Resolver
from idnode.core.scans import ScanPolicy
from idnode.metrics import NodeMetrics, multiprocess_dir
from idnode.metrics import Registry as MetricRegistry
from idnode.services import Core
from idnode.store.db import Database
from idnode.store.escrow import EscrowStore
from idnode.store.notices import NoticeStore
from idnode.store.outbox import ShipperLock
from idnode.sync import anchor as anchors
from idnode.sync import escrow
from idnode.sync.enrolment import Enrolment
from idnode.sync.epp.client import client_context as epp_client_context
from idnode.sync.epp.upstream import KINDS as EPP_KINDS
from idnode.sync.epp.upstream import EppUpstream, NodeSource
from idnode.sync.remote import RemoteResolver
from idnode.sync.upstream import GrpcUpstream
from idnode.sync.worker import Heartbeat, Shipper

log = logging.getLogger(__name__)


class Node:
    """One node process: HTTP, gRPC and Handle front doors over one database pool and one hot
    cache. Built with its settings; `start` builds the rest once, in dependency order."""

    def __init__(self, settings: Settings, dsn: str, *, worker: str = "0",
                 role: str = ROLES[0]) -> None:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        self.settings = settings
        #: Which front doors this process serves (grpc_workers): "all", or "grpc" only, or
        #: "read" (HTTP and the Handle protocol) only.
        self.role = role
        self.dsn = dsn
        self.metrics = NodeMetrics(worker)
        self.cache = Core.cache_for(settings)
        #: The pinned trust anchor (anchor_jwks), read now so a wrong file stops the start.
        self.anchor = (anchors.load(settings.anchor_jwks)
                       if settings.anchor_jwks and settings.upstream_grpc else None)
        self.ports = Ports(0, 0)
        self._core: Core | None = None
        self.enrolment: Enrolment | None = None
        # Front doors (None until started).
        self._grpc: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._http: http_server.HttpServer | None = None
        self._metrics_http: http_server.HttpServer | None = None
        self._handle: handle_server.HandleServer | None = None
        # Federation (None on a standalone node): the gRPC upstream, resolution through it,
        # shipping and heartbeats; EPP provisioning to the BMS (upstream_epp) and its shipper.
        self.upstream: GrpcUpstream | None = None
        self.remote: RemoteResolver | None = None
        self.shipper: Shipper | None = None
        self.heartbeat: Heartbeat | None = None
        self.epp_upstream: EppUpstream | None = None
        self.epp_shipper: Shipper | None = None
        #: Held by the process that makes the scheduled escrow deposits.
        self._escrow_lock: ShipperLock | None = None
        #: Background rounds (scan counts saved, tree heads signed, ...), stopped with the node.
        self._rounds: list[asyncio.Task[object]] = []

    @property
    def core(self) -> Core:
        if self._core is None:
            raise RuntimeError("the node is not started")
        return self._core

    @property
    def db(self) -> Database:
        return self.core.db

    @property
    def resolver(self) -> Resolver:
        return self.core.resolver

    @property
    def registry(self) -> Registry:
        return self.core.registry

    @property
    def trust(self) -> dict[str, object]:
        """What verifiers need: the anchor's keys and the statements certifying ours."""
        return self.enrolment.trust if self.enrolment is not None else {}

    async def start(self, *, reuse_port: bool = False) -> Ports:
        """Starts every part; when one fails, what started is stopped again and the error
        raised (no port, task or pool is left behind)."""
        try:
            return await self._start(reuse_port)
        except BaseException:
            await self._stop(1.0, quiet=True)
            raise

    async def _start(self, reuse_port: bool) -> Ports:
        s = self.settings
        if s.upstream_grpc:
            self.upstream = GrpcUpstream(
                s.upstream_grpc, s.upstream_token,
                credentials=grpc_tls.channel_credentials(s.upstream_tls_ca, s.upstream_tls_cert,
                                                         s.upstream_tls_key),
                skip=EPP_KINDS if s.upstream_epp else frozenset())
            self.remote = RemoteResolver(
                self.upstream, s.node_prefix, timeout=s.remote_timeout,
                max_response=s.remote_max_response_bytes, max_locations=s.remote_locations_max,
                tls_ca=s.remote_tls_ca, anchor_jwks=self.anchor)
        core = self._core = await Core.open(s, self.dsn, self.cache, remote=self.remote)
        self.enrolment = Enrolment(s, core.keyring, core.handle_forms, core.resolver,
                                   self.anchor, self.upstream)
        # Listen even with the record cache off: without it the prefix table and the
        # authenticator could not trust their memory and would query on every request.
        await self.cache.start(self.dsn)
        node_metrics.core_gauges(self.metrics.registry, core)
        if multiprocess_dir() is not None:
            # The other workers answer scrapes too: they read this one's values from the
            # shared directory, so keep them fresh there.
            self._every(1.0, _refresh(self.metrics.registry), "metrics not refreshed",
                        "metrics-refresh")
        grpc_port = 0
        if self.role != "read":
            self._grpc, self._health, grpc_port = await frontdoors.start_grpc(
                s, core, self.metrics, reuse_port=reuse_port)
        if core.keyring is not None and not s.upstream_grpc:
            self.enrolment.self_certify()
        self._every(1.0, core.scans.flush, "scan counts not saved yet", "scan-flusher")
        if core.keyring is not None and s.tree_head_interval > 0:
            self._every(s.tree_head_interval, self._sign_head, "tree head not signed",
                        "tree-head-signer")
        reads = self.role != "grpc"
        self.ports = Ports(await self._start_http(core, reuse_port) if reads else 0, grpc_port)
        self.ports.metrics = await self._start_metrics(reuse_port)
        assert self._metrics_http is not None
        node_metrics.http_gauges(self.metrics.registry, self._http, self._metrics_http)
        if s.handle_enabled and reads:
            self._handle, self.ports.handle = await frontdoors.start_handle(
                s, core, self.metrics, http_port=self.ports.http, reuse_port=reuse_port)
        if s.cache_enabled and s.cache_warm_top > 0 and reads:
            # Serving already: the most scanned records come in behind the first requests.
            self._rounds.append(asyncio.create_task(warmup.warm_hot_cache(
                core.resolver, core.trace_store, core.handle_forms, s.cache_warm_top,
                s.cache_warm_window), name="cache-warm"))
        if s.upstream_grpc:
            self._start_sync(core)
        if s.upstream_epp:
            self._start_epp(core)
        if s.escrow_agent_cert and (s.escrow_full_interval or s.escrow_incremental_interval):
            self._start_escrow(core)
        log.info("node serving pid=%d http=%s:%d grpc=%s:%d handle=%s:%d", os.getpid(),
                 s.http_host, self.ports.http, s.grpc_host, self.ports.grpc, s.handle_host,
                 self.ports.handle)
        return self.ports

    def _every(self, seconds: float, work: Callable[[], Awaitable[object]], failed: str,
               name: str) -> None:
        self._rounds.append(asyncio.create_task(_every(seconds, work, failed), name=name))

    async def _start_http(self, core: Core, reuse_port: bool) -> int:
        """The public HTTP port; returns it."""
        s = self.settings
        limiter = (RateLimiter(s.http_rate_limit, s.http_rate_burst) if s.http_rate_limit > 0
                   else None)
        app = HttpApp(core.resolver, core.authenticator, self.metrics, self.ready,
                      well_known=self.well_known, trace=core.trace,
                      negative_max_age=int(s.cache_negative_ttl), limiter=limiter,
                      trust_forwarded=s.http_trust_forwarded, provenance=core.provenance,
                      scans=core.scans, node=s.node_prefix,
                      scan_policy=ScanPolicy(s.scan_warn_count, s.scan_warn_places),
                      forms=core.handle_forms)
        sock = http_server.bind_socket(s.http_host, s.http_port, reuse_port=reuse_port,
                                       backlog=s.http_backlog)
        self._http = frontdoors.http(s, self.metrics, "public")
        await self._http.start(app, observer(self.metrics, core.stats),
                               lambda st, d: problem(st, d), sock)
        return int(sock.getsockname()[1])

    async def _start_metrics(self, reuse_port: bool) -> int:
        """The operator listener (/metrics, /healthz); returns its port."""
        s = self.settings
        sock = http_server.bind_socket(s.metrics_host, s.metrics_port, reuse_port=reuse_port,
                                       backlog=s.http_backlog)
        self._metrics_http = frontdoors.http(s, self.metrics, "metrics")
        await self._metrics_http.start(metrics_app(self.metrics), lambda _r, _s: None,
                                       lambda st, d: problem(st, d), sock)
        return int(sock.getsockname()[1])

    def _start_sync(self, core: Core) -> None:
        """Ships the outbox to the top-level node, heartbeats, and (with the Handle forms)
        registers every worker for its certificates."""
        s, upstream, enrolment = self.settings, self.upstream, self.enrolment
        assert upstream is not None and enrolment is not None
        http = s.advertise_http or f"http://{s.http_host}:{self.ports.http}"
        grpc_addr = s.advertise_grpc or f"{s.grpc_host}:{self.ports.grpc}"
        self._every(s.outbox_prune_interval, self._prune_outbox, "outbox not pruned",
                    "outbox-pruner")
        if core.handle_forms is not None:
            # Every worker serves the Handle forms, so every worker needs the certificates:
            # it registers itself (idempotent), where otherwise only the shipper would.
            self._rounds.append(asyncio.create_task(
                enrolment.register_until_done(http, grpc_addr), name="handle-certificates"))
        shipper = self.shipper = Shipper(
            core.outbox, upstream, ShipperLock(self.dsn), s.node_prefix, batch=s.sync_batch,
            register=functools.partial(enrolment.register, http, grpc_addr))
        self.heartbeat = Heartbeat(upstream, core.stats, core.outbox, s.node_prefix,
                                   s.heartbeat_interval)
        # Any committed write notifies; that is the shipper's cue to look at the outbox.
        self.cache.subscribe(lambda _keys: shipper.wake())
        shipper.start()
        self.heartbeat.start()
        node_metrics.sync_gauges(self.metrics.registry, shipper, self.remote)

    def _start_epp(self, core: Core) -> None:
        """Ships the outbox's provisioning events to the top-level node's BMS over EPP, with
        a shipper of its own (its own lock and acknowledged position)."""
        s = self.settings
        if not s.upstream_tls_ca:
            log.warning("EPP to %s without TLS (upstream_tls_ca unset): RFC 5734 wants TLS; "
                        "only for a top-level node on this host", s.upstream_epp)
        tls = (epp_client_context(s.upstream_tls_ca, s.upstream_tls_cert, s.upstream_tls_key)
               if s.upstream_tls_ca else None)
        upstream = self.epp_upstream = EppUpstream(
            s.upstream_epp, s.upstream_epp_client_id or s.node_prefix, s.upstream_epp_password,
            NodeSource(core.handles, core.prefix_store, core.tenancy_store),
            NoticeStore(core.db), tls=tls, timeout=s.upstream_epp_timeout)
        shipper = self.epp_shipper = Shipper(
            core.outbox, upstream, ShipperLock(self.dsn, ShipperLock.EPP_KEY), s.node_prefix,
            batch=s.sync_batch)
        self.cache.subscribe(lambda _keys: shipper.wake())
        shipper.start()
        if not s.upstream_grpc:
            self._every(s.outbox_prune_interval, self._prune_outbox, "outbox not pruned",
                        "outbox-pruner")
        node_metrics.epp_gauges(self.metrics.registry, shipper, upstream)

    def _start_escrow(self, core: Core) -> None:
        """Scheduled escrow deposits; one process of the database makes them (a session
        lock, as the shipper's), the others skip their rounds."""
        s = self.settings
        lock = self._escrow_lock = ShipperLock(self.dsn, ShipperLock.ESCROW_KEY)
        store = EscrowStore(core.db)

        async def round_(full: bool) -> None:
            if await lock.try_acquire():
                dep = await escrow.scheduled(store, s, full=full)
                log.info("escrow deposit %s %s objects=%d deletes=%d", dep.id, dep.kind,
                         dep.objects, dep.deletes)

        for interval, full in ((s.escrow_full_interval, True),
                               (s.escrow_incremental_interval, False)):
            if interval > 0:
                self._every(interval, functools.partial(round_, full), "escrow deposit failed",
                            f"escrow-{'full' if full else 'incremental'}")

    async def _sign_head(self) -> None:
        """Signs a tree head whenever the log has grown (and so reports it upward), so the
        top-level node pins the log's history even when nobody asks for a proof. Every
        worker may do it: a head is kept once per size."""
        if await self.core.trace_store.size() > 0:
            await self.core.trace.head()

    async def _prune_outbox(self) -> int:
        """Drops outbox events every upstream acknowledged more than outbox_retention
        seconds ago (each worker may run it: deleting twice is harmless)."""
        names = [u.name for u in (self.upstream, self.epp_upstream) if u is not None]
        dropped: int = await self.core.outbox.prune_all(names, self.settings.outbox_retention)
        return dropped

    def well_known(self, name: str) -> dict[str, Any] | None:
        ring = self.core.keyring
        if name == "jwks.json":
            return ring.jwks() if ring is not None else {"keys": []}
        if name == "idnode-trust.json":
            return self.trust or None
        return None

    async def ready(self) -> tuple[bool, dict[str, str]]:
        checks: dict[str, str] = {}
        try:
            await self.core.db.ping(2)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self.settings.cache_enabled:
            checks["cache"] = ("ok" if self.cache.coherent
                               else "bypassed: invalidation listener down")
        ok = all(v == "ok" for v in checks.values())
        if self.cache.l2 is not None:
            # Informational: without Redis the node serves from its own cache and the database.
            checks["cache_l2"] = self.cache.l2.status()
        router = self.core.replicas
        if router is not None:
            # Informational: stale replicas are skipped, not a reason to stop serving.
            checks["replicas_fresh"] = f"{len(router.healthy)}/{len(router.replicas)}"
        return ok, checks

    async def stop(self, grace: float = 5.0) -> None:
        """Stops accepting, lets in-flight calls finish within `grace`, then stops every
        part; a part that fails to stop is logged and the others still stop (the first
        failure is raised at the end)."""
        await self._stop(grace, quiet=False)

    async def _stop(self, grace: float, *, quiet: bool) -> None:
        failures: list[Exception] = []

        async def step(what: str, work: Awaitable[object] | None) -> None:
            if work is None:
                return
            try:
                await work
            except Exception as exc:  # noqa: BLE001 - stop the rest all the same
                log.error("stopping the node: %s failed: %r", what, exc)
                failures.append(exc)

        if self._health is not None:
            await step("gRPC health", self._health.enter_graceful_shutdown())
        for server in (self._http, self._metrics_http, self._handle):
            if server is not None:
                server.stop_accepting()
        # In-flight calls finish within the grace; a batch still running after it is
        # cancelled, and its transaction rolls back (all or nothing holds).
        drained = await asyncio.gather(
            self._grpc.stop(grace) if self._grpc is not None else asyncio.sleep(0),
            self._http.drain(grace) if self._http is not None else asyncio.sleep(0),
            self._metrics_http.drain(grace) if self._metrics_http is not None
            else asyncio.sleep(0),
            self._handle.stop(grace) if self._handle is not None else asyncio.sleep(0),
            return_exceptions=True)
        for what, result in zip(("gRPC", "HTTP", "metrics HTTP", "Handle"), drained):
            if isinstance(result, Exception):
                log.error("stopping the node: %s failed: %r", what, result)
                failures.append(result)
        if self._rounds:
            for task in self._rounds:
                task.cancel()
            await asyncio.gather(*self._rounds, return_exceptions=True)
            if self._core is not None:
                with contextlib.suppress(Exception):
                    await self._core.scans.flush()  # the last second's scans
        await step("the shipper", self.shipper.stop() if self.shipper else None)
        await step("the EPP shipper", self.epp_shipper.stop() if self.epp_shipper else None)
        await step("the escrow lock",
                   self._escrow_lock.release() if self._escrow_lock else None)
        await step("the EPP upstream",
                   self.epp_upstream.close() if self.epp_upstream else None)
        await step("the heartbeat", self.heartbeat.stop() if self.heartbeat else None)
        await step("the upstream", self.upstream.close() if self.upstream else None)
        await step("remote resolution", self.remote.close() if self.remote else None)
        await step("the cache", self.cache.stop())
        if self._core is not None:
            await step("the database", asyncio.wait_for(self._core.close(), grace))
        if failures and not quiet:
            raise failures[0]


def _refresh(registry: MetricRegistry) -> Callable[[], Awaitable[None]]:
    async def refresh() -> None:
        registry.refresh()
    return refresh


async def _every(seconds: float, work: Callable[[], Awaitable[object]], failed: str) -> None:
    """Runs `work` every `seconds` until cancelled; a failed round is logged and retried at
    the next (scan tallies kept by a failed flush go out with the next one)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("%s: %r", failed, exc)


__all__ = ["Core", "Node", "Ports"]
