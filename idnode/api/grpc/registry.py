"""The Registry gRPC service: decode, call core, encode."""
from __future__ import annotations

import grpc

from idnode.api.grpc.base import Servicer
from idnode.api.grpc.convert import record_out, ts, values_in
from idnode.core.audit import Actor
from idnode.core.auth import Authenticator
from idnode.core.errors import TooLarge
from idnode.core.handleform import HandleForms
from idnode.core.registry import Registry
from idnode.core.resolver import Resolver
from idnode.metrics import NodeMetrics
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc as pb_grpc


class RegistryService(Servicer, pb_grpc.RegistryServicer):
    def __init__(self, registry: Registry, resolver: Resolver, authenticator: Authenticator,
                 metrics: NodeMetrics, *, forms: HandleForms | None = None) -> None:
        super().__init__(authenticator, metrics)
        self.registry = registry
        self.resolver = resolver
        #: The Handle and IDIS signature forms, served with Resolve (signature_values).
        self.forms = forms

    async def RegisterBatch(self, request: pb.RegisterBatchRequest,
                            context: grpc.aio.ServicerContext) -> pb.RegisterBatchResponse:
        async def run(actor: Actor) -> pb.RegisterBatchResponse:
            if len(request.records) > self.registry.limits.max_batch:
                raise TooLarge(f"{len(request.records)} records, more than "
                               f"{self.registry.limits.max_batch} per batch", field="records")
            # The protobuf records already have what core reads (`identifier`, `values`, as
            # values_in says for values): no per-record copy of a 10,000-record batch.
            result = await self.registry.register_batch(actor, request.idempotency_key,
                                                        request.records)
            if not result.replayed:
                self.metrics.registered.inc(amount=result.registered)
            return pb.RegisterBatchResponse(registered=result.registered, replayed=result.replayed,
                                            committed_at=ts(result.committed_at))
        return await self.call("RegisterBatch", context, run)

    async def UpdateValues(self, request: pb.UpdateValuesRequest,
                           context: grpc.aio.ServicerContext) -> pb.Record:
        async def run(actor: Actor) -> pb.Record:
            record = await self.registry.update_values(
                actor, request.identifier, values_in(request.values), request.expected_version)
            return record_out(record, record.select(None, None, private=True))
        return await self.call("UpdateValues", context, run)

    async def Delete(self, request: pb.DeleteRequest,
                     context: grpc.aio.ServicerContext) -> pb.DeleteResponse:
        async def run(actor: Actor) -> pb.DeleteResponse:
            version = await self.registry.delete(actor, request.identifier,
                                                 request.expected_version)
            return pb.DeleteResponse(version=version)
        return await self.call("Delete", context, run)

    async def Resolve(self, request: pb.ResolveRequest,
                      context: grpc.aio.ServicerContext) -> pb.Record:
        async def run(actor: Actor) -> pb.Record:
            record = await self.resolver.resolve(request.identifier)
            private = await self.resolver.sees_private(actor.principal, record.identifier)
            extra = await self.forms.values(record) if self.forms is not None else ()
            return record_out(record, record.select(frozenset(request.types) or None,
                                                    frozenset(request.indexes) or None,
                                                    private=private), extra)
        return await self.call("Resolve", context, run)

    async def ResolveBatch(self, request: pb.ResolveBatchRequest,
                           context: grpc.aio.ServicerContext) -> pb.ResolveBatchResponse:
        async def run(actor: Actor) -> pb.ResolveBatchResponse:
            records = await self.resolver.resolve_many(list(request.identifiers))
            out = pb.ResolveBatchResponse()
            for text, record in zip(request.identifiers, records):
                if record is None:
                    out.results.add(identifier=text, found=False)
                    continue
                private = await self.resolver.sees_private(actor.principal, record.identifier)
                out.results.add(identifier=record.identifier, found=True, record=record_out(
                    record, record.select(None, None, private=private)))
            return out
        return await self.call("ResolveBatch", context, run)

    async def List(self, request: pb.ListRequest,
                   context: grpc.aio.ServicerContext) -> pb.ListResponse:
        async def run(actor: Actor) -> pb.ListResponse:
            ids, token = await self.registry.list_identifiers(
                actor, request.prefix, request.page_size, request.page_token)
            return pb.ListResponse(identifiers=ids, next_page_token=token)
        return await self.call("List", context, run)
