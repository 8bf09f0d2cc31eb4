"""The node's front doors, each built from the settings over the core: the gRPC server (with
its services, health and reflection), the HTTP servers' connection limits, and the
Handle/IDIS protocol's TCP and UDP servers. idnode.node starts and stops them."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from idnode import grpc_tls, keys
from idnode.api.grpc.admin import AdminService
from idnode.api.grpc.limits import CallLimits, LimitsInterceptor
from idnode.api.grpc.registry import RegistryService
from idnode.api.grpc.trace import TraceService
from idnode.api.handle import server as handle_server
from idnode.api.handle.service import HandleService
from idnode.api.handle.site import build_site
from idnode.api.http import server as http_server
from idnode.config import Settings
from idnode.core.records import Record
from idnode.core.signing import verifies
from idnode.crypto.hdlkeys import handle_key_bytes
from idnode.crypto.keys import KeyRing
from idnode.metrics import NodeMetrics
from idnode.services import Core
from idnode.v1 import (admin_pb2, admin_pb2_grpc, registry_pb2, registry_pb2_grpc, trace_pb2,
                       trace_pb2_grpc)


#: What a process serves: everything, or (grpc_workers) gRPC only, or HTTP and Handle only.
ROLES = ("all", "grpc", "read")


@dataclass(slots=True)
class Ports:
    http: int
    grpc: int
    #: The Handle/IDIS protocol's TCP and UDP port (0 while it is off).
    handle: int = 0
    #: The operator listener (/metrics).
    metrics: int = 0


async def start_grpc(s: Settings, core: Core, metrics: NodeMetrics, *, reuse_port: bool
                     ) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """Registry, Admin, Trace, health and reflection behind the call limits, started; with
    its health servicer and its port."""
    limits = CallLimits(s.grpc_write_rate, s.grpc_write_burst, s.grpc_address_write_rate,
                        s.grpc_address_write_burst, s.grpc_anonymous_max_message_bytes,
                        certificates=bool(s.grpc_tls_client_ca))
    server = grpc.aio.server(
        interceptors=[LimitsInterceptor(core.authenticator, metrics, limits)],
        maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs or None,
        options=[
            ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
            ("grpc.max_send_message_length", s.grpc_max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ])
    registry_pb2_grpc.add_RegistryServicer_to_server(
        RegistryService(core.registry, core.resolver, core.authenticator, metrics,
                        forms=core.handle_forms), server)
    admin_pb2_grpc.add_AdminServicer_to_server(
        AdminService(core.tenancy, core.authenticator, metrics), server)
    trace_pb2_grpc.add_TraceServicer_to_server(
        TraceService(core.trace, core.authenticator, metrics), server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    names = (registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
             admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
             trace_pb2.DESCRIPTOR.services_by_name["Trace"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    address = f"{s.grpc_host}:{s.grpc_port}"
    credentials = grpc_tls.server_credentials(
        s.grpc_tls_cert, s.grpc_tls_key, s.grpc_tls_client_ca,
        require_client_cert=s.grpc_tls_require_client_cert)
    port: int = (server.add_secure_port(address, credentials) if credentials
                 else server.add_insecure_port(address))
    if port == 0:
        raise OSError(f"cannot bind gRPC on {address}")
    try:
        await server.start()
        for name in (*names[:2], ""):
            await checks.set(name, health_pb2.HealthCheckResponse.SERVING)
    except BaseException:
        await server.stop(0)
        raise
    return server, checks, port


def http(s: Settings, metrics: NodeMetrics, listener: str) -> http_server.HttpServer:
    """An HTTP server with the connection limits of the settings; refusals are counted
    under `listener` ("public", "metrics")."""
    limits = http_server.Limits(
        s.http_header_timeout, s.http_idle_timeout, s.http_body_timeout,
        s.http_send_timeout, s.http_max_pipeline, s.http_read_chunk,
        s.http_max_connections, s.http_backlog,
        0.0 if s.http_trust_forwarded else s.http_connection_rate, s.http_connection_burst)
    refused = metrics.http_refused
    return http_server.HttpServer(limits, lambda why: refused.inc((listener, why)))


async def start_handle(s: Settings, core: Core, metrics: NodeMetrics, *, http_port: int,
                       reuse_port: bool) -> tuple[handle_server.HandleServer, int]:
    """The Handle/IDIS protocol on TCP and UDP, started; with its port."""
    tcp, udp = handle_server.bind(s.handle_host, s.handle_port, reuse_port=reuse_port)
    port = int(tcp.getsockname()[1])
    key = keys.protocol_key(s)
    site = build_site(s.handle_advertise or s.handle_host, port, http_port,
                      handle_key_bytes(key.private.public_key()), s.node_prefix)
    service = HandleService(core.resolver, core.registry, core.authenticator,
                            core.challenges, site, key, metrics,
                            verify=functools.partial(_trusted, s.node_prefix, core.keyring),
                            password_login=s.handle_password_login,
                            login_ttl=s.handle_challenge_ttl, forms=core.handle_forms)
    server = handle_server.HandleServer(service, metrics, handle_server.Limits(
        s.handle_idle_timeout, s.handle_max_connections, s.handle_max_inflight,
        s.handle_rrl_rate, s.handle_rrl_burst, s.handle_rrl_slip))
    try:
        await server.start(tcp, udp)
    except BaseException:
        tcp.close()
        udp.close()
        raise
    return server, port


def _trusted(own: str, ring: KeyRing | None, record: Record) -> bool:
    """Whether the Handle protocol may serve `record` as signed. Another node's record was
    checked against the anchor when it was fetched (sync.remote serves nothing that fails);
    this node's own is checked now."""
    return record.signature is not None and (
        record.node != own or (ring is not None and verifies(record, ring.jwks())))
