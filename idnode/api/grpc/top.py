"""The reference top-level node's gRPC service: decode, call the role's rules, encode."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import orjson

from idnode.api.grpc.base import guarded
from idnode.api.grpc.convert import datetime_in, ts
from idnode.core.errors import InvalidArgument, Unauthenticated
from idnode.metrics import NodeMetrics
from idnode.store.top import IncomingEvent, NodeRow
from idnode.sync.top import LOCATE_TTL, Counter, TopLevel
from idnode.v1 import federation_pb2 as pb
from idnode.v1 import federation_pb2_grpc as pb_grpc

T = TypeVar("T")


class TopLevelService(pb_grpc.TopLevelServicer):
    def __init__(self, top: TopLevel, metrics: NodeMetrics) -> None:
        self.top = top
        self.metrics = metrics

    async def _call(self, method: str, context: grpc.aio.ServicerContext,
                    fn: Callable[[NodeRow], Awaitable[T]]) -> T:
        return await guarded(self.metrics, method, context, lambda: self._node(context), fn)

    async def _node(self, context: grpc.aio.ServicerContext) -> NodeRow:
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                scheme, _, token = str(value).partition(" ")
                if scheme.lower() == "bearer" and token:
                    return await self.top.authenticate(token.strip())
        raise Unauthenticated("a node token is required", reason="CREDENTIAL_REQUIRED")

    async def RegisterNode(self, request: pb.RegisterNodeRequest,
                           context: grpc.aio.ServicerContext) -> pb.RegisterNodeResponse:
        async def run(node: NodeRow) -> pb.RegisterNodeResponse:
            statements, anchor = await self.top.register_node(
                node, request.node_prefix, request.http_base, request.grpc_address,
                request.jwks_json)
            certs, root = self.top.handle_certificates(node, request.node_prefix,
                                                       request.handle_keys_json)
            return pb.RegisterNodeResponse(key_statements=statements, anchor_jwks_json=anchor,
                                           handle_certs=certs, handle_root_json=root)
        return await self._call("RegisterNode", context, run)

    async def Report(self, request: pb.ReportRequest,
                     context: grpc.aio.ServicerContext) -> pb.ReportResponse:
        async def run(node: NodeRow) -> pb.ReportResponse:
            events = [IncomingEvent(e.seq, e.kind, _payload(e.payload_json, i),
                                    datetime_in(e.created_at, f"events[{i}].created_at"))
                      for i, e in enumerate(request.events)]
            acked = await self.top.report(node, request.node_prefix, events)
            return pb.ReportResponse(acked_seq=acked)
        return await self._call("Report", context, run)

    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        async def run(node: NodeRow) -> pb.HeartbeatResponse:
            at = await self.top.heartbeat(node, request.node_prefix, [
                Counter(c.prefix, c.day, c.registrations, c.resolutions, c.errors)
                for c in request.counters], request.outbox_backlog)
            return pb.HeartbeatResponse(received_at=ts(at))
        return await self._call("Heartbeat", context, run)

    async def Locate(self, request: pb.LocateRequest,
                     context: grpc.aio.ServicerContext) -> pb.LocateResponse:
        async def run(_node: NodeRow) -> pb.LocateResponse:
            found = await self.top.locate(request.prefix)
            return pb.LocateResponse(node_prefix=found.node_prefix, http_base=found.http_base,
                                     grpc_address=found.grpc_address,
                                     key_statements=found.key_statements, ttl=LOCATE_TTL)
        return await self._call("Locate", context, run)


def _payload(text: str, i: int) -> dict[str, object]:
    """An event's payload: a JSON object (what a node's outbox holds), or the report's error."""
    try:
        payload = orjson.loads(text or "{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"payload_json is not JSON: {exc}",
                              field=f"events[{i}].payload_json") from None
    if not isinstance(payload, dict):
        raise InvalidArgument("payload_json must be a JSON object",
                              field=f"events[{i}].payload_json")
    return payload
