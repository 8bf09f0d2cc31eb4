"""The reference top-level node process (`idnode top serve`): the TopLevel gRPC service over
its own database, the Business Management System's EPP listener and the escrow report
listener, and the anchor's certification of the nodes' keys."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace

import grpc
import orjson
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idnode import grpc_tls, keys
from idnode.api.epp.server import EppServer
from idnode.api.epp.server import server_context as epp_server_context
from idnode.api.grpc.top import TopLevelService
from idnode.api.rri.server import ReportServer
from idnode.config import Settings
from idnode.core.handlecerts import handle_certifier
from idnode.crypto.certify import certify_key
from idnode.crypto.keys import KeyRing, thumbprint
from idnode.metrics import NodeMetrics
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.db import Limits as DbLimits
from idnode.store.top import BmsStore, EscrowReportStore, TopStore
from idnode.sync.bms import Bms, EscrowReports
from idnode.sync.top import TopLevel
from idnode.v1 import federation_pb2, federation_pb2_grpc

log = logging.getLogger(__name__)

#: The anchor's certification of a node's keys: (node prefix, its JWKS as JSON) ->
#: (key statements by thumbprint, the anchor's JWKS as JSON).
Certify = Callable[[str, str], tuple[dict[str, str], str]]


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

    async def start(self, certify: Certify | None = None) -> int:
        s = self.settings
        # The reference top's reads are reports over whole tables: the write limit for all.
        limits = DbLimits.of(s)
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
        # Every caller of the top is a node: with a client CA, each must present a certificate.
        credentials = grpc_tls.server_credentials(s.grpc_tls_cert, s.grpc_tls_key,
                                                  s.grpc_tls_client_ca, require_client_cert=True)
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


def _anchor_certifier(anchor: KeyRing) -> Certify:
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
