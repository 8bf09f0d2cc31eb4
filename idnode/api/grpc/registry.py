"""The Registry gRPC service: decode, call core, encode. Errors map once, in `_call`."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from idnode.api.grpc.convert import record_out, ts, values_in
from idnode.api.grpc.status import to_status
from idnode.core.errors import IdnodeError, TooLarge
from idnode.core.registry import RecordInput, Registry
from idnode.core.resolver import Resolver
from idnode.metrics import NodeMetrics
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
T = TypeVar("T")


class RegistryService(pb_grpc.RegistryServicer):
    def __init__(self, registry: Registry, resolver: Resolver, metrics: NodeMetrics) -> None:
        self.registry = registry
        self.resolver = resolver
        self.metrics = metrics

    async def _call(self, method: str, context: grpc.aio.ServicerContext,
                    fn: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        code = "OK"
        try:
            return await fn()
        except IdnodeError as exc:
            status = to_status(exc)
            code = status.code.name
            await context.abort_with_status(status)
            raise  # unreachable: abort raises
        except Exception:
            code = "INTERNAL"
            log.exception("grpc method=%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            raise
        finally:
            self.metrics.grpc_requests.inc((method, code))
            self.metrics.grpc_latency.observe(time.perf_counter() - started, (method,))

    async def RegisterBatch(self, request: pb.RegisterBatchRequest,
                            context: grpc.aio.ServicerContext) -> pb.RegisterBatchResponse:
        async def run() -> pb.RegisterBatchResponse:
            if len(request.records) > self.registry.limits.max_batch:
                raise TooLarge(f"{len(request.records)} records, more than "
                               f"{self.registry.limits.max_batch} per batch", field="records")
            inputs = [RecordInput(r.identifier, values_in(r.values)) for r in request.records]
            result = await self.registry.register_batch(request.idempotency_key, inputs)
            if not result.replayed:
                self.metrics.registered.inc(amount=result.registered)
            return pb.RegisterBatchResponse(registered=result.registered, replayed=result.replayed,
                                            committed_at=ts(result.committed_at))
        return await self._call("RegisterBatch", context, run)

    async def UpdateValues(self, request: pb.UpdateValuesRequest,
                           context: grpc.aio.ServicerContext) -> pb.Record:
        async def run() -> pb.Record:
            record = await self.registry.update_values(
                request.identifier, values_in(request.values), request.expected_version)
            return record_out(record)
        return await self._call("UpdateValues", context, run)

    async def Delete(self, request: pb.DeleteRequest,
                     context: grpc.aio.ServicerContext) -> pb.DeleteResponse:
        async def run() -> pb.DeleteResponse:
            version = await self.registry.delete(request.identifier, request.expected_version)
            return pb.DeleteResponse(version=version)
        return await self._call("Delete", context, run)

    async def Resolve(self, request: pb.ResolveRequest,
                      context: grpc.aio.ServicerContext) -> pb.Record:
        async def run() -> pb.Record:
            record = await self.resolver.resolve(request.identifier)
            types = frozenset(request.types) or None
            indexes = frozenset(request.indexes) or None
            return record_out(record, record.select(types, indexes))
        return await self._call("Resolve", context, run)

    async def ResolveBatch(self, request: pb.ResolveBatchRequest,
                           context: grpc.aio.ServicerContext) -> pb.ResolveBatchResponse:
        async def run() -> pb.ResolveBatchResponse:
            records = await self.resolver.resolve_many(list(request.identifiers))
            out = pb.ResolveBatchResponse()
            for text, record in zip(request.identifiers, records):
                if record is None:
                    out.results.add(identifier=text, found=False)
                else:
                    out.results.add(identifier=record.identifier, found=True,
                                    record=record_out(record))
            return out
        return await self._call("ResolveBatch", context, run)

    async def List(self, request: pb.ListRequest,
                   context: grpc.aio.ServicerContext) -> pb.ListResponse:
        async def run() -> pb.ListResponse:
            ids, token = await self.registry.list(request.prefix, request.page_size,
                                                  request.page_token)
            return pb.ListResponse(identifiers=ids, next_page_token=token)
        return await self._call("List", context, run)
