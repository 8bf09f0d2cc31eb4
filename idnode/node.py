"""The composition root: builds the node's objects once, starts and stops its servers."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idnode.api.grpc.admin import AdminService
from idnode.api.grpc.limits import CallLimits, LimitsInterceptor
from idnode.api.grpc.registry import RegistryService
from idnode.api.grpc.top import TopLevelService
from idnode.api.grpc.trace import TraceService
from idnode.api.http import server as http_server
from idnode.api.http.app import HttpApp, metrics_app, observer
from idnode.api.http.problems import problem
from idnode.api.handle import server as handle_server
from idnode.api.handle.service import HandleService
from idnode.api.handle.site import build_site
from idnode.api.ratelimit import RateLimiter
from idnode.cache import HotCache
from idnode.cache_redis import SharedTier
from idnode.config import Settings
from idnode.core.auth import Authenticator
from idnode.core.challenges import Challenges
from idnode.core.prefixes import PrefixTable
from idnode.core.registry import Limits, Registry
from idnode.core.resolver import Resolved, Resolver
from idnode.core.tenancy import Tenancy
from idnode.core.provenance import Provenance
from idnode.core.handleform import Form, HandleForms, handle_certifier, issued_by_anchor
from idnode.core.records import Record, Value
from idnode.core.scans import ScanCounter, ScanPolicy
from idnode.core.trace import TraceLog
from idnode.metrics import NodeMetrics
from idnode.store import migrations
from idnode.store.audit import AuditStore
from idnode.store.challenges import ChallengeStore
from idnode.store.db import Database, create_pool
from idnode.store.db import Limits as DbLimits
from idnode.store.handles import HandleStore
from idnode.store.hsigs import HsSignatureStore
from idnode import grpc_tls, keys
from idnode.core.signing import Signer, verifies
from idnode.crypto.hdlkeys import handle_key_bytes
from idnode.core.stats import Stats
from idnode.crypto.certify import certify_key
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import KeyRing, SigningKey, thumbprint
from idnode.store.outbox import OutboxStore, ShipperLock
from idnode.store.prefixes import PrefixStore
from idnode.store.top import BmsStore, EscrowReportStore, TopStore
from idnode.api.rri.server import ReportServer
from idnode.api.epp.server import EppServer, server_context as epp_server_context
from idnode.sync.bms import Bms, EscrowReports
from idnode.store.trace import TraceStore
from idnode.sync import anchor as anchors
from idnode.sync.remote import RemoteResolver
from idnode.sync.top import TopLevel
from idnode.sync.upstream import GrpcUpstream
from idnode.sync.epp.client import client_context as epp_client_context
from idnode.sync.epp.upstream import KINDS as EPP_KINDS, EppUpstream, NodeSource
from idnode.store.notices import NoticeStore
from idnode.store.escrow import EscrowStore
from idnode.sync import escrow
from idnode.sync.worker import Heartbeat, Shipper
from idnode.store.replicas import ReadRouter
from idnode.store.tenancy import TenancyStore
from idnode.v1 import (admin_pb2, admin_pb2_grpc, federation_pb2, federation_pb2_grpc,
                       registry_pb2, registry_pb2_grpc, trace_pb2, trace_pb2_grpc)

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Ports:
    http: int
    grpc: int
    #: The Handle/IDIS protocol's TCP and UDP port (0 while it is off).
    handle: int = 0
    #: The operator listener (/metrics).
    metrics: int = 0


@dataclass(slots=True)
class Core:
    """The node's rules over its stores: built once, used by the servers and the CLI alike."""

    db: Database
    replicas: ReadRouter | None
    cache: HotCache
    prefix_store: PrefixStore
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
    async def open(s: Settings, dsn: str, cache: HotCache, *, pool_max: int | None = None) -> Core:
        pool = await create_pool(dsn, min_size=min(s.db_pool_min, pool_max or s.db_pool_min),
                                 max_size=pool_max or s.db_pool_max,
                                 statement_timeout=s.db_statement_timeout,
                                 connect_timeout=s.db_connect_timeout)
        db = Database(pool, db_limits(s))
        try:
            async with pool.acquire() as conn:
                await migrations.check_compatible(conn)
        except BaseException:
            await db.close()
            raise
        router = None
        read_urls = [u.strip() for u in s.database_read_urls.split(",") if u.strip()]
        if read_urls:
            replicas = [Database(await create_pool(
                u, min_size=1, max_size=s.db_pool_max, statement_timeout=s.db_statement_timeout,
                connect_timeout=s.db_connect_timeout), db_limits(s)) for u in read_urls]
            router = ReadRouter(db, replicas, max_lag=s.replica_max_lag)
            await router.start()
            cache.recent_window = s.replica_max_lag
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
            db, router, cache, prefix_store, prefixes, authenticator,
            Resolver(handles, cache, prefixes, max_batch=s.max_batch_resolve, stats=stats,
                     node_prefix=s.node_prefix),
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
        cache.subscribers.append(core.on_invalidated)
        if core.provenance is not None:
            cache.subscribers.append(core.provenance.views.on_invalidated)
        return core

    def on_invalidated(self, keys: Sequence[str] | None) -> None:
        """Keeps the prefix table and remembered credentials in step with the database."""
        if keys is None:
            self.prefixes.mark_dirty()
            self.authenticator.forget()
            return
        for key in keys:
            if key.startswith("prefix:"):
                self.prefixes.mark_dirty()
                # Cached records were served under the prefix's old status.
                self.cache.clear()
            elif key.startswith("cred:"):
                self.authenticator.forget(key[5:])


class Node:
    """One node process: HTTP and gRPC front doors over one database pool and one hot cache."""

    def __init__(self, settings: Settings, dsn: str, *, worker: str = "0") -> None:
        self.settings = settings
        self.dsn = dsn
        self.metrics = NodeMetrics(worker)
        self.cache = HotCache(max_entries=settings.cache_max_entries, ttl=settings.cache_ttl,
                              negative_ttl=settings.cache_negative_ttl,
                              enabled=settings.cache_enabled)
        if settings.cache_redis_url and settings.cache_enabled:
            self.cache.l2 = _shared_tier(settings)
        self.db: Database | None = None
        self.registry: Registry | None = None
        self.resolver: Resolver | None = None
        self._http: http_server.HttpServer | None = None
        self._metrics_http: http_server.HttpServer | None = None
        self._handle: handle_server.HandleServer | None = None
        self._grpc: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self.ports = Ports(0, 0)
        self.upstream: GrpcUpstream | None = None
        self.remote: RemoteResolver | None = None
        #: EPP provisioning to the top-level node's BMS (upstream_epp), and its shipper.
        self.epp_upstream: EppUpstream | None = None
        self.epp_shipper: Shipper | None = None
        #: The pinned trust anchor (anchor_jwks), read now so a wrong file stops the start.
        self.anchor = (anchors.load(settings.anchor_jwks)
                       if settings.anchor_jwks and settings.upstream_grpc else None)
        #: What verifiers need: the anchor's keys and the statements certifying ours.
        self.trust: dict[str, object] = {}
        self.shipper: Shipper | None = None
        self.heartbeat: Heartbeat | None = None
        #: Background rounds (scan counts saved, tree heads signed), stopped with the node.
        self._rounds: list[asyncio.Task[None]] = []

    async def start(self, *, reuse_port: bool = False) -> Ports:
        s = self.settings
        core = self.core = await Core.open(s, self.dsn, self.cache)
        self.db = core.db
        self.resolver, self.registry = core.resolver, core.registry
        self.prefixes, self.authenticator, self.tenancy = core.prefixes, core.authenticator, core.tenancy
        # Listen even with the record cache off: without it the prefix table and the
        # authenticator could not trust their memory and would query on every request.
        await self.cache.start(self.dsn)
        self._register_gauges()

        limits = CallLimits(s.grpc_write_rate, s.grpc_write_burst, s.grpc_address_write_rate,
                            s.grpc_address_write_burst, s.grpc_anonymous_max_message_bytes,
                            certificates=bool(s.grpc_tls_client_ca))
        self._grpc = grpc.aio.server(
            interceptors=[LimitsInterceptor(core.authenticator, self.metrics, limits)],
            maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs or None,
            options=[
                ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
                ("grpc.max_send_message_length", s.grpc_max_message_bytes),
                ("grpc.so_reuseport", 1 if reuse_port else 0),
            ])
        registry_pb2_grpc.add_RegistryServicer_to_server(
            RegistryService(self.registry, self.resolver, self.authenticator, self.metrics,
                            forms=core.handle_forms),
            self._grpc)
        admin_pb2_grpc.add_AdminServicer_to_server(
            AdminService(self.tenancy, self.authenticator, self.metrics), self._grpc)
        trace_pb2_grpc.add_TraceServicer_to_server(
            TraceService(core.trace, self.authenticator, self.metrics), self._grpc)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        names = (registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
                 admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
                 trace_pb2.DESCRIPTOR.services_by_name["Trace"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self._grpc)
        address = f"{s.grpc_host}:{s.grpc_port}"
        credentials = _server_credentials(s)
        grpc_port = (self._grpc.add_secure_port(address, credentials) if credentials
                     else self._grpc.add_insecure_port(address))
        if grpc_port == 0:
            raise OSError(f"cannot bind gRPC on {address}")
        await self._grpc.start()
        for name in (*names[:2], ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

        if core.keyring is not None and not s.upstream_grpc:
            if core.handle_forms is not None:
                # first: the anchor's RSA / SM2 keys belong in the anchor JWKS published below
                self._configure_forms(keys.self_certified_forms(s))
            statements, anchor = keys.self_certified(s, core.keyring)
            self.trust = {"node": s.node_prefix, "anchor_jwks": anchor,
                          "key_statements": statements}
        limiter = (RateLimiter(s.http_rate_limit, s.http_rate_burst) if s.http_rate_limit > 0
                   else None)
        app = HttpApp(self.resolver, self.authenticator, self.metrics, self.ready,
                      well_known=self.well_known, trace=core.trace,
                      negative_max_age=int(s.cache_negative_ttl), limiter=limiter,
                      trust_forwarded=s.http_trust_forwarded, provenance=core.provenance,
                      scans=core.scans, node=s.node_prefix,
                      scan_policy=ScanPolicy(s.scan_warn_count, s.scan_warn_places),
                      forms=core.handle_forms)
        self._rounds.append(asyncio.create_task(
            _every(1.0, core.scans.flush, "scan counts not saved yet"), name="scan-flusher"))
        if core.keyring is not None and s.tree_head_interval > 0:
            self._rounds.append(asyncio.create_task(
                _every(s.tree_head_interval, self._sign_head, "tree head not signed"),
                name="tree-head-signer"))
        self.ports = Ports(await self._start_http(app, reuse_port), grpc_port)
        self.ports.metrics = await self._start_metrics(reuse_port)
        public, operator = self._http, self._metrics_http
        assert public is not None and operator is not None
        self.metrics.registry.gauge(
            "idnode_http_connections", "Open HTTP connections by listener.",
            lambda: [(("public",), len(public.live)), (("metrics",), len(operator.live))],
            ("listener",))
        if s.handle_enabled:
            self.ports.handle = await self._start_handle(reuse_port)
        if s.upstream_grpc:
            self._start_sync()
        if s.upstream_epp:
            self._start_epp()
        if s.escrow_agent_cert and (s.escrow_full_interval or s.escrow_incremental_interval):
            self._start_escrow()
        log.info("node serving pid=%d http=%s:%d grpc=%s:%d handle=%s:%d", os.getpid(),
                 s.http_host, self.ports.http, s.grpc_host, self.ports.grpc, s.handle_host,
                 self.ports.handle)
        return self.ports

    def _http_server(self, listener: str) -> http_server.HttpServer:
        s = self.settings
        limits = http_server.Limits(
            s.http_header_timeout, s.http_idle_timeout, s.http_body_timeout,
            s.http_send_timeout, s.http_max_pipeline, s.http_read_chunk,
            s.http_max_connections, s.http_backlog,
            0.0 if s.http_trust_forwarded else s.http_connection_rate, s.http_connection_burst)
        refused = self.metrics.http_refused
        return http_server.HttpServer(limits, lambda why: refused.inc((listener, why)))

    async def _start_http(self, app: HttpApp, reuse_port: bool) -> int:
        """The public HTTP port; returns it."""
        s = self.settings
        sock = http_server.bind_socket(s.http_host, s.http_port, reuse_port=reuse_port,
                                       backlog=s.http_backlog)
        self._http = self._http_server("public")
        await self._http.start(app, observer(self.metrics, self.core.stats),
                               lambda st, d: problem(st, d), sock)
        return int(sock.getsockname()[1])

    async def _start_metrics(self, reuse_port: bool) -> int:
        """The operator listener (/metrics, /healthz); returns its port."""
        s = self.settings
        sock = http_server.bind_socket(s.metrics_host, s.metrics_port, reuse_port=reuse_port,
                                       backlog=s.http_backlog)
        self._metrics_http = self._http_server("metrics")
        await self._metrics_http.start(metrics_app(self.metrics), lambda _r, _s: None,
                                       lambda st, d: problem(st, d), sock)
        return int(sock.getsockname()[1])

    async def _start_handle(self, reuse_port: bool) -> int:
        """The Handle/IDIS protocol on TCP and UDP; returns its port."""
        s, core = self.settings, self.core
        tcp, udp = handle_server.bind(s.handle_host, s.handle_port, reuse_port=reuse_port)
        port = int(tcp.getsockname()[1])
        key = keys.protocol_key(s)
        site = build_site(s.handle_advertise or s.handle_host, port, self.ports.http,
                          handle_key_bytes(key.private.public_key()), s.node_prefix)
        ring = core.keyring
        own = s.node_prefix

        def trusted(record: Record) -> bool:
            # Another node's record was checked against the anchor when it was fetched
            # (sync.remote serves nothing that fails); this node's own is checked now.
            return record.signature is not None and (
                record.node != own or (ring is not None and verifies(record, ring.jwks())))

        service = HandleService(core.resolver, core.registry, core.authenticator,
                                core.challenges, site, key, self.metrics, verify=trusted,
                                password_login=s.handle_password_login,
                                login_ttl=s.handle_challenge_ttl, forms=core.handle_forms)
        self._handle = handle_server.HandleServer(service, self.metrics, handle_server.Limits(
            s.handle_idle_timeout, s.handle_max_connections, s.handle_max_inflight,
            s.handle_rrl_rate, s.handle_rrl_burst, s.handle_rrl_slip))
        await self._handle.start(tcp, udp)
        return port

    def _configure_forms(self, issued: keys.HandleCerts) -> None:
        """Serves the Handle and IDIS forms with these certificates, and the root record."""
        forms = self.core.handle_forms
        assert forms is not None
        algs = [k.alg for k, _ in issued.certs]
        forms.configure([Form.of(key, cert, self.settings.node_prefix, algs)
                         for key, cert in issued.certs],
                        [Value.from_json(v) for v in issued.root])
        if forms.root is not None:
            self.core.resolver.fixed[forms.root.identifier] = Resolved(forms.root)

    async def _sign_head(self) -> None:
        """Signs a tree head whenever the log has grown (and so reports it upward), so the
        top-level node pins the log's history even when nobody asks for a proof. Every
        worker may do it: a head is kept once per size."""
        if await self.core.trace.store.size() > 0:
            await self.core.trace.head()

    def well_known(self, name: str) -> dict[str, object] | None:
        ring = self.core.keyring
        if name == "jwks.json":
            return ring.jwks() if ring is not None else {"keys": []}
        if name == "idnode-trust.json":
            return self.trust or None
        return None

    async def _register_upward(self, http: str, grpc_addr: str) -> None:
        assert self.upstream is not None
        ring = self.core.keyring
        jwks = orjson.dumps(ring.jwks()).decode() if ring is not None else ""
        handle_keys = self._handle_keys()
        reg = await self.upstream.register_node(
            self.settings.node_prefix, http, grpc_addr, jwks,
            orjson.dumps({"keys": [k.to_jwk() for k in handle_keys]}).decode()
            if handle_keys else "")
        if self.anchor is None:
            # The anchor is never taken from the wire; the statements are still published
            # (verifiers check them against the anchor they were given).
            if reg.anchor_jwks_json:
                log.warning("the top-level node presents a trust anchor, but none is pinned "
                            "(anchor_jwks): records from other nodes are not served")
            self.trust = {"node": self.settings.node_prefix,
                          "key_statements": reg.key_statements}
            return
        try:
            anchors.check_presented(self.anchor, reg.anchor_jwks_json, reg.key_statements)
        except VerificationError as exc:
            log.error("REFUSED the top-level node at %s: it presents another trust anchor than "
                      "the pinned anchor_jwks (%s); not registering, not shipping, until the "
                      "anchor or the upstream is fixed", self.settings.upstream_grpc, exc)
            raise
        self.trust = {"node": self.settings.node_prefix, "anchor_jwks": self.anchor,
                      "key_statements": reg.key_statements}
        if handle_keys:
            self._accept_handle_certs(handle_keys, reg.handle_certs, reg.handle_root_json)

    async def _register_until_done(self, http: str, grpc_addr: str) -> None:
        delay = 1.0
        while True:
            try:
                await self._register_upward(http, grpc_addr)
                return
            except Exception as exc:  # noqa: BLE001 - the top may be down: try again
                log.warning("registration with the top-level node for certificates failed, "
                            "retrying in %.0f s: %r", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _handle_keys(self) -> list[SigningKey]:
        """The record keys of the Handle and IDIS forms this node serves."""
        if self.core.handle_forms is None:
            return []
        ring = keys.handle_keyring(self.settings)
        return [k for k in (ring.active(a) for a in keys.plan(self.settings).forms)
                if k is not None]

    def _accept_handle_certs(self, handle_keys: list[SigningKey], certs: dict[str, str],
                             root_json: str) -> None:
        """Serves the Handle/IDIS forms with the certificates the top-level node issued, each
        checked against the pinned anchor; a form whose certificate fails is not served."""
        assert self.anchor is not None
        root = tuple(orjson.loads(root_json)) if root_json else ()
        root_values = [Value.from_json(v) for v in root]
        accepted = []
        for key in handle_keys:
            cert = certs.get(key.alg)
            why = ("the top-level node issued none" if cert is None else
                   issued_by_anchor(self.anchor, self.settings.node_prefix, key, cert,
                                    root_values))
            if why is None:
                accepted.append((key, cert))
            else:
                log.error("the %s signature form is not served: its certificate from the "
                          "top-level node is refused: %s", key.alg, why)
        if accepted:
            self._configure_forms(keys.HandleCerts(tuple(accepted), root))  # type: ignore[arg-type]

    async def _prune_outbox(self) -> int:
        """Drops outbox events the top-level node acknowledged more than outbox_retention
        seconds ago (each worker may run it: deleting twice is harmless)."""
        assert self.upstream is not None
        names = [u.name for u in (self.upstream, self.epp_upstream) if u is not None]
        return await self.core.outbox.prune_all(names, self.settings.outbox_retention)

    def _start_sync(self) -> None:
        s = self.settings
        upstream = GrpcUpstream(s.upstream_grpc, s.upstream_token, credentials=(
            grpc_tls.channel_credentials(s.upstream_tls_ca, s.upstream_tls_cert,
                                         s.upstream_tls_key)),
            skip=EPP_KINDS if s.upstream_epp else frozenset())
        self.upstream = upstream
        http = s.advertise_http or f"http://{s.http_host}:{self.ports.http}"
        grpc_addr = s.advertise_grpc or f"{s.grpc_host}:{self.ports.grpc}"
        remote = RemoteResolver(upstream, s.node_prefix, timeout=s.remote_timeout,
                                max_response=s.remote_max_response_bytes,
                                max_locations=s.remote_locations_max, tls_ca=s.remote_tls_ca)
        remote.anchor_jwks = self.anchor
        self.core.resolver.remote = self.remote = remote
        self._rounds.append(asyncio.create_task(
            _every(s.outbox_prune_interval, self._prune_outbox, "outbox not pruned"),
            name="outbox-pruner"))
        if self.core.handle_forms is not None:
            # Every worker serves the Handle forms, so every worker needs the certificates:
            # it registers itself (idempotent), where otherwise only the shipper would.
            self._rounds.append(asyncio.create_task(
                self._register_until_done(http, grpc_addr), name="handle-certificates"))
        self.shipper = Shipper(self.core.outbox, upstream, ShipperLock(self.dsn), s.node_prefix,
                               batch=s.sync_batch,
                               register=lambda: self._register_upward(http, grpc_addr))
        self.heartbeat = Heartbeat(upstream, self.core.stats, self.core.outbox, s.node_prefix,
                                   s.heartbeat_interval)
        # Any committed write notifies; that is the shipper's cue to look at the outbox.
        shipper = self.shipper
        self.cache.subscribers.append(lambda _keys: shipper.wake())
        self.shipper.start()
        self.heartbeat.start()
        self._register_sync_gauges()

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
        """Stops accepting, lets in-flight calls finish within `grace`, then closes the pool."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.stop_accepting()
        if self._metrics_http is not None:
            self._metrics_http.stop_accepting()
        if self._handle is not None:
            self._handle.stop_accepting()
        # In-flight calls finish within the grace; a batch still running after it is
        # cancelled, and its transaction rolls back (all or nothing holds).
        await asyncio.gather(
            self._grpc.stop(grace) if self._grpc is not None else asyncio.sleep(0),
            self._http.drain(grace) if self._http is not None else asyncio.sleep(0),
            self._metrics_http.drain(grace) if self._metrics_http is not None
            else asyncio.sleep(0),
            self._handle.stop(grace) if self._handle is not None else asyncio.sleep(0))
        if self._rounds:
            for task in self._rounds:
                task.cancel()
            await asyncio.gather(*self._rounds, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.core.scans.flush()  # the last second's scans
        if self.shipper is not None:
            await self.shipper.stop()
        if self.epp_shipper is not None:
            await self.epp_shipper.stop()
        escrow_lock = getattr(self, "_escrow_lock", None)
        if escrow_lock is not None:
            await escrow_lock.release()
        if self.epp_upstream is not None:
            await self.epp_upstream.close()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        if self.upstream is not None:
            await self.upstream.close()
        remote = self.resolver.remote if self.resolver is not None else None
        if remote is not None:
            await remote.close()
        await self.cache.stop()
        core = getattr(self, "core", None)
        if core is not None and core.replicas is not None:
            await core.replicas.stop()
        if self.db is not None:
            await asyncio.wait_for(self.db.close(), grace)

    def _start_escrow(self) -> None:
        """Scheduled escrow deposits; one process of the database makes them (a session
        lock, as the shipper's), the others skip their rounds."""
        s = self.settings
        lock = ShipperLock(self.dsn, ShipperLock.ESCROW_KEY)
        store = EscrowStore(self.core.db)

        async def round_(full: bool) -> None:
            if await lock.try_acquire():
                dep = await escrow.scheduled(store, s, full=full)
                log.info("escrow deposit %s %s objects=%d deletes=%d", dep.id, dep.kind,
                         dep.objects, dep.deletes)

        for interval, full in ((s.escrow_full_interval, True),
                               (s.escrow_incremental_interval, False)):
            if interval > 0:
                self._rounds.append(asyncio.create_task(
                    _every(interval, functools.partial(round_, full), "escrow deposit failed"),
                    name=f"escrow-{'full' if full else 'incremental'}"))
        self._escrow_lock = lock

    def _start_epp(self) -> None:
        """Ships the outbox's provisioning events to the top-level node's BMS over EPP, with
        a shipper of its own (its own lock and acknowledged position)."""
        s, core = self.settings, self.core
        if not s.upstream_tls_ca:
            log.warning("EPP to %s without TLS (upstream_tls_ca unset): RFC 5734 wants TLS; "
                        "only for a top-level node on this host", s.upstream_epp)
        tls = (epp_client_context(s.upstream_tls_ca, s.upstream_tls_cert, s.upstream_tls_key)
               if s.upstream_tls_ca else None)
        upstream = EppUpstream(
            s.upstream_epp, s.upstream_epp_client_id or s.node_prefix, s.upstream_epp_password,
            NodeSource(core.registry.handles, core.prefix_store, core.tenancy.store),
            NoticeStore(core.db), tls=tls, timeout=s.upstream_epp_timeout)
        self.epp_upstream = upstream
        shipper = self.epp_shipper = Shipper(
            core.outbox, upstream, ShipperLock(self.dsn, ShipperLock.EPP_KEY), s.node_prefix,
            batch=s.sync_batch)
        self.cache.subscribers.append(lambda _keys: shipper.wake())
        shipper.start()
        if not s.upstream_grpc:
            self._rounds.append(asyncio.create_task(
                _every(s.outbox_prune_interval, self._prune_outbox, "outbox not pruned"),
                name="outbox-pruner"))
        r = self.metrics.registry
        r.gauge("idnode_sync_epp_acked_seq", "Highest outbox seq the top-level node's BMS "
                "acknowledged over EPP.", lambda: [((), shipper.acked)])
        r.gauge("idnode_sync_epp_backlog_events", "Outbox events not yet provisioned over EPP.",
                lambda: [((), shipper.backlog)])
        r.gauge("idnode_sync_epp_refused_total", "EPP commands the BMS refused for good "
                "(recorded in sync_notices; counter).", lambda: [((), upstream.refused)])

    def _register_sync_gauges(self) -> None:
        shipper = self.shipper
        assert shipper is not None
        r = self.metrics.registry
        r.gauge("idnode_sync_acked_seq", "Highest outbox seq the top-level node acknowledged.",
                lambda: [((), shipper.acked)])
        r.gauge("idnode_sync_last_success_timestamp_seconds",
                "When shipping last succeeded (0: never, or not this process).",
                lambda: [((), shipper.last_success)])
        r.gauge("idnode_sync_events_shipped_total", "Outbox events shipped by this process.",
                lambda: [((), shipper.shipped)])
        r.gauge("idnode_sync_backlog_events", "Outbox events not yet acknowledged upstream.",
                lambda: [((), shipper.backlog)])
        r.gauge("idnode_sync_lag_seconds", "Age of the oldest unacknowledged outbox event.",
                lambda: [((), shipper.lag)])
        remote = self.remote
        if remote is not None:
            r.gauge("idnode_remote_locations", "Prefix locations remembered from the "
                    "top-level node (at most remote_locations_max).",
                    lambda: [((), remote.locations_held)])

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
        r.gauge("idnode_cache_host_shared", "1 while this process shares write counters with "
                "the other processes of its host (a write is seen by all once it returns).",
                lambda: [((), 1 if cache.host is not None else 0)])
        stats = self.core.stats
        r.gauge("idnode_stats_prefixes_dropped_total", "Prefixes whose counts for the "
                "heartbeat were dropped, stats_max_prefixes being reached (counter).",
                lambda: [((), stats.dropped)])
        l2 = cache.l2
        if l2 is not None:
            r.gauge("idnode_cache_l2_hits_total", "Shared (Redis) cache hits (counter).",
                    lambda: [((), l2.hits)])
            r.gauge("idnode_cache_l2_misses_total", "Shared cache misses, including keys not "
                    "read there while their invalidation is on its way (counter).",
                    lambda: [((), l2.misses)])
            r.gauge("idnode_cache_l2_errors_total", "Failed or timed-out Redis operations "
                    "(counter); each skips the shared cache for cache_redis_retry seconds.",
                    lambda: [((), l2.errors)])
            r.gauge("idnode_cache_l2_fills_total", "Records stored in the shared cache (counter).",
                    lambda: [((), l2.fills)])
            r.gauge("idnode_cache_l2_fills_refused_total", "Fills refused because a write to "
                    "the key's bucket raced the database read (counter).",
                    lambda: [((), l2.fills_refused)])
            r.gauge("idnode_cache_l2_epoch_moves_total", "Times this process emptied the shared "
                    "cache on joining, no node having listened throughout (counter).",
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
        resolver = self.core.resolver
        r.gauge("idnode_stale_served_total", "Records served from the cache because the "
                "database could not be asked (stale-if-error; counter).",
                lambda: [((), resolver.stale_served)])


async def _every(seconds: float, work: Callable[[], Awaitable[object]], failed: str) -> None:
    """Runs `work` every `seconds` until cancelled; a failed round is logged and retried at
    the next (scan tallies kept by a failed flush go out with the next one)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await work()
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("%s: %r", failed, exc)


def db_limits(s: Settings) -> DbLimits:
    """The database call limits of the settings (idnode.store.db)."""
    return DbLimits(connect=s.db_connect_timeout, acquire=s.db_acquire_timeout,
                    query=s.db_query_timeout, statement=s.db_statement_timeout,
                    retry=s.db_retry_interval)


def _shared_tier(s: Settings) -> SharedTier:
    return SharedTier(s.cache_redis_url,
                      namespace=s.cache_redis_namespace or f"idnode:{s.node_prefix}",
                      ttl=s.cache_redis_ttl, timeout=s.cache_redis_timeout,
                      retry=s.cache_redis_retry,
                      replica_lag=s.replica_max_lag if s.database_read_urls.strip() else 0.0)


def _server_credentials(s: Settings) -> grpc.ServerCredentials | None:
    if not s.grpc_tls_cert:
        return None
    client_ca = Path(s.grpc_tls_client_ca).read_bytes() if s.grpc_tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(s.grpc_tls_key).read_bytes(), Path(s.grpc_tls_cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=bool(client_ca) and s.grpc_tls_require_client_cert)


def _top_credentials(s: Settings) -> grpc.ServerCredentials | None:
    """The top-level node's TLS (grpc_tls_cert/key): with grpc_tls_client_ca every caller must
    present a certificate that CA signed (mutual TLS), since every caller is a node."""
    if not s.grpc_tls_cert:
        return None
    client_ca = Path(s.grpc_tls_client_ca).read_bytes() if s.grpc_tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(Path(s.grpc_tls_key).read_bytes(), Path(s.grpc_tls_cert).read_bytes())],
        root_certificates=client_ca, require_client_auth=client_ca is not None)


class TopNode:
    """The reference top-level node process: the TopLevel gRPC service over its own database."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.metrics = NodeMetrics("top")
        self.db: Database | None = None
        self.top: TopLevel | None = None
        self._grpc: grpc.aio.Server | None = None
        self.port = 0
        #: The Business Management System's EPP listener (top_epp_port; 0 while off).
        self.epp: EppServer | None = None
        self.epp_port = 0
        #: The escrow report listener (top_escrow_port; 0 while off).
        self.reports: ReportServer | None = None
        self.escrow_port = 0

    async def start(self, certify: object = None) -> int:
        s = self.settings
        # The reference top's reads are reports over whole tables: the write limit for all.
        limits = db_limits(s)
        self.db = Database(await create_pool(self.dsn, min_size=1, max_size=s.db_pool_max,
                                             statement_timeout=s.db_statement_timeout,
                                             connect_timeout=s.db_connect_timeout),
                           replace(limits, query=limits.write))
        try:
            async with self.db.pool.acquire() as conn:
                await migrations.check_compatible(conn, migrations.TOP_SQL_DIR)
        except BaseException:
            await self.db.close()
            raise
        certify_handle = None
        if certify is None and s.signing_enabled:
            certify = _anchor_certifier(keys.keyring(s, "top-anchor"))
        if s.signing_enabled:
            handle_roots = keys.anchor_keyring(s, "top-anchor")
            certify_handle = handle_certifier(
                [k for k in (handle_roots.active(a) for a in ("RS256", "SM2SM3")) if k])
        self.top = TopLevel(TopStore(self.db), certify, certify_handle)
        self._grpc = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
            ("grpc.max_send_message_length", s.grpc_max_message_bytes)])
        federation_pb2_grpc.add_TopLevelServicer_to_server(
            TopLevelService(self.top, self.metrics), self._grpc)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, self._grpc)
        names = (federation_pb2.DESCRIPTOR.services_by_name["TopLevel"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self._grpc)
        address = f"{s.grpc_host}:{s.grpc_port}"
        credentials = _top_credentials(s)
        self.port = (self._grpc.add_secure_port(address, credentials) if credentials
                     else self._grpc.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot bind gRPC on {s.grpc_host}:{s.grpc_port}")
        await self._grpc.start()
        for name in (names[0], ""):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if s.top_epp_port >= 0:
            # EPP's TLS is the gRPC listener's: one certificate for the top, one client CA.
            tls = (epp_server_context(s.grpc_tls_cert, s.grpc_tls_key, s.grpc_tls_client_ca)
                   if s.grpc_tls_cert else None)
            self.epp = EppServer(Bms(BmsStore(self.db)))
            self.epp_port = await self.epp.start(s.top_epp_host, s.top_epp_port, tls)
        if s.top_escrow_port >= 0:
            tls = (epp_server_context(s.grpc_tls_cert, s.grpc_tls_key, s.grpc_tls_client_ca)
                   if s.grpc_tls_cert else None)
            self.reports = ReportServer(EscrowReports(EscrowReportStore(self.db),
                                                      Bms(BmsStore(self.db))))
            self.escrow_port = await self.reports.start(s.top_epp_host, s.top_escrow_port, tls)
        log.info("top-level node serving pid=%d grpc=%s:%d epp=%s:%d", os.getpid(), s.grpc_host,
                 self.port, s.top_epp_host, self.epp_port)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        if self.epp is not None:
            await self.epp.stop()
        if self.reports is not None:
            await self.reports.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self.db is not None:
            await self.db.close()


def _anchor_certifier(anchor: KeyRing) -> object:
    """The top-level node's certification: a key statement for each key a node presents."""
    def certify(node_prefix: str, jwks_json: str) -> tuple[dict[str, str], str]:
        key = anchor.active()
        assert key is not None
        node_keys = orjson.loads(jwks_json).get("keys", [])
        statements = {}
        for jwk in node_keys:
            public = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "alg", "pub")}
            statements[thumbprint(public)] = certify_key(key, node_prefix, public)
        return statements, orjson.dumps(anchor.jwks()).decode()
    return certify
