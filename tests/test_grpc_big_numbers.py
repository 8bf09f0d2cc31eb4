"""64-bit unsigned fields whose values PostgreSQL's bigint cannot hold."""
from __future__ import annotations

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from idnode.v1 import trace_pb2 as tpb
from idnode.v1 import trace_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import error_info, record_input

HUGE = (2**63, 2**64 - 1)


@pytest.mark.parametrize("value", HUGE)
async def test_versions_and_leaves_past_bigint_are_the_clients_error(
        node: Node, keys: Keys, value: int) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        await stub.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key=f"big-{value}", records=[record_input(f"0.118.8/BIG-{value}")]))
        calls = [
            stub.Delete(pb.DeleteRequest(identifier=f"0.118.8/BIG-{value}",
                                         expected_version=value)),
            stub.UpdateValues(pb.UpdateValuesRequest(
                identifier=f"0.118.8/BIG-{value}", expected_version=value,
                values=[pb.Value(index=1, type="URL", data="https://example.com")])),
            trace_pb2_grpc.TraceStub(ch).AppendEvents(tpb.AppendEventsRequest(events=[
                tpb.TraceEvent(identifier=f"0.118.8/BIG-{value}", kind="note",
                               occurred_at=Timestamp(seconds=1_780_000_000),
                               attrs_json='{"note": "x"}', corrects=value)])),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                        grpc.StatusCode.NOT_FOUND,
                                        grpc.StatusCode.FAILED_PRECONDITION), err.value.details()
            error_info(err.value)
