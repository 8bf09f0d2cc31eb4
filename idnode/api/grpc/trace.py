"""The Trace gRPC service: decode, call core, encode."""
from __future__ import annotations

import grpc

from idnode.api.grpc.base import Servicer
from idnode.api.grpc.convert import datetime_in
from idnode.core.audit import Actor
from idnode.core.auth import Authenticator
from idnode.core.errors import InvalidArgument
from idnode.core.trace import Attachment, EventInput, TraceLog
from idnode.metrics import NodeMetrics
from idnode.v1 import trace_pb2 as pb
from idnode.v1 import trace_pb2_grpc as pb_grpc


class TraceService(Servicer, pb_grpc.TraceServicer):
    def __init__(self, trace: TraceLog, authenticator: Authenticator,
                 metrics: NodeMetrics) -> None:
        super().__init__(authenticator, metrics)
        self.trace = trace

    async def AppendEvents(self, request: pb.AppendEventsRequest,
                           context: grpc.aio.ServicerContext) -> pb.AppendEventsResponse:
        async def run(actor: Actor) -> pb.AppendEventsResponse:
            events = []
            for i, e in enumerate(request.events):
                if not e.HasField("occurred_at"):
                    raise InvalidArgument("occurred_at is required",
                                          field=f"events[{i}].occurred_at")
                events.append(EventInput(
                    e.identifier, e.kind, datetime_in(e.occurred_at, f"events[{i}].occurred_at"),
                    e.place, None, e.attrs_json,
                    e.corrects if e.HasField("corrects") else None, tuple(e.inputs),
                    tuple(Attachment(a.media_type, a.content) for a in e.attachments)))
            leaves, size = await self.trace.append(actor, events)
            return pb.AppendEventsResponse(leaves=leaves, tree_size=size)
        return await self.call("AppendEvents", context, run)
