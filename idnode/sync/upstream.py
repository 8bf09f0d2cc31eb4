"""The one adapter through which a secondary node talks upward. `GrpcUpstream` speaks to
idnode's reference top-level node; a real national node interface implements `Upstream` too."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from idnode import grpc_tls
from idnode.core.errors import NotFound, Unavailable
from idnode.store.outbox import Event
from idnode.sync.top import Counter
from idnode.v1 import federation_pb2 as pb
from idnode.v1 import federation_pb2_grpc as pb_grpc


@dataclass(frozen=True, slots=True)
class Location:
    node_prefix: str
    http_base: str
    grpc_address: str
    key_statements: dict[str, str]
    ttl: int


@dataclass(frozen=True, slots=True)
class Registration:
    key_statements: dict[str, str]
    anchor_jwks_json: str
    #: HS_CERTs of the node's Handle-form keys by algorithm, and the root record's values.
    handle_certs: dict[str, str] = field(default_factory=dict)
    handle_root_json: str = ""


class Sink(Protocol):
    """Where a shipper sends the outbox: the gRPC upstream, or EPP to the BMS."""

    name: str

    async def report(self, node_prefix: str, events: Sequence[Event]) -> int: ...


class Upstream(Sink, Protocol):
    name: str

    async def register_node(self, node_prefix: str, http_base: str, grpc_address: str,
                            jwks_json: str, handle_keys_json: str = "") -> Registration: ...

    async def report(self, node_prefix: str, events: Sequence[Event]) -> int: ...

    async def heartbeat(self, node_prefix: str, counters: Sequence[Counter],
                        backlog: int) -> None: ...

    async def locate(self, prefix: str) -> Location: ...

    async def close(self) -> None: ...


class GrpcUpstream:
    """Every call is bounded by `timeout`: a slow or dead top-level node delays the shipper
    and cross-node resolution, never registration.

    With `credentials` (grpc_tls.channel_credentials) the channel is TLS only: a top-level
    node that answers in plaintext, or with a certificate the CA did not sign, is never
    spoken to, so neither the node token nor the events cross the network in the clear."""

    def __init__(self, address: str, token: str, *, timeout: float = 5.0,
                 credentials: grpc.ChannelCredentials | None = None,
                 skip: frozenset[str] = frozenset()) -> None:
        #: Event kinds another upstream carries (EPP provisioning): acknowledged unsent.
        self.skip = skip
        # The name keys sync_state (the acknowledged position): the same with or without TLS,
        # so switching TLS on does not resend the whole outbox.
        self.name = f"grpc://{address}"
        self.tls = credentials is not None
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = grpc_tls.channel(
            address, credentials, options=[("grpc.max_send_message_length", 64 << 20),
                                           ("grpc.max_receive_message_length", 64 << 20)])
        self._stub = pb_grpc.TopLevelStub(self._channel)

    async def _rpc(self, method: str, request: object) -> object:
        try:
            return await getattr(self._stub, method)(request, timeout=self.timeout,
                                                     metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or "not found", reason="PREFIX_NOT_FOUND") from None
            raise Unavailable(f"top-level node: {exc.code().name}: {exc.details()}") from None

    async def register_node(self, node_prefix: str, http_base: str, grpc_address: str,
                            jwks_json: str, handle_keys_json: str = "") -> Registration:
        resp = await self._rpc("RegisterNode", pb.RegisterNodeRequest(
            node_prefix=node_prefix, http_base=http_base, grpc_address=grpc_address,
            jwks_json=jwks_json, handle_keys_json=handle_keys_json))
        return Registration(dict(resp.key_statements), resp.anchor_jwks_json,  # type: ignore[attr-defined]
                            dict(resp.handle_certs), resp.handle_root_json)  # type: ignore[attr-defined]

    async def report(self, node_prefix: str, events: Sequence[Event]) -> int:
        sent = [e for e in events if e.kind not in self.skip]
        if not sent:
            return events[-1].seq
        resp = await self._rpc("Report", pb.ReportRequest(node_prefix=node_prefix, events=[
            pb.SyncEvent(seq=e.seq, kind=e.kind, payload_json=e.payload,
                         created_at=_timestamp(e.created_at)) for e in sent]))
        acked = int(resp.acked_seq)  # type: ignore[attr-defined]
        # The skipped events after the last one sent need no answer of the top's.
        return events[-1].seq if acked >= sent[-1].seq else acked

    async def heartbeat(self, node_prefix: str, counters: Sequence[Counter],
                        backlog: int) -> None:
        await self._rpc("Heartbeat", pb.HeartbeatRequest(
            node_prefix=node_prefix, outbox_backlog=backlog, counters=[
                pb.PrefixCounters(prefix=c.prefix, day=c.day, registrations=c.registrations,
                                  resolutions=c.resolutions, errors=c.errors) for c in counters]))

    async def locate(self, prefix: str) -> Location:
        resp = await self._rpc("Locate", pb.LocateRequest(prefix=prefix))
        return Location(resp.node_prefix, resp.http_base, resp.grpc_address,  # type: ignore[attr-defined]
                        dict(resp.key_statements), resp.ttl)  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self._channel.close()


def _timestamp(dt: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt)
    return out
