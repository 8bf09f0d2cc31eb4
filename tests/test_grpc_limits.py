"""gRPC limits that act before a message is parsed: writes need a credential that checks
out, writes are rate-limited per credential and per address, anonymous messages are small,
and calls served at once are capped."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, make_settings
from tests.helpers import error_info, record_input

GARBAGE = b"\xff\xff\xff\xff not a protobuf message" * 1000


async def raw_call(port: int, method: str, payload: bytes, key: str | None) -> grpc.aio.AioRpcError:
    async with channel(port, key) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(payload)
    return err.value


async def test_writes_without_a_valid_credential_are_refused_before_parsing(
        node: Node, api_key: str) -> None:
    # Garbage bytes: had the message been parsed, the answer would be a parse failure.
    port = node.ports.grpc
    anonymous = await raw_call(port, "/idnode.v1.Registry/RegisterBatch", GARBAGE, None)
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(anonymous)[0].reason == "CREDENTIAL_REQUIRED"
    forged = await raw_call(port, "/idnode.v1.Trace/AppendEvents", GARBAGE,
                            "idn_000000000000_" + "A" * 43)
    assert forged.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(forged)[0].reason == "INVALID_CREDENTIAL"
    malformed = await raw_call(port, "/idnode.v1.Admin/IssueKey", GARBAGE, "not-a-key")
    assert malformed.code() == grpc.StatusCode.UNAUTHENTICATED
    # a real credential gets as far as the parse
    parsed = await raw_call(port, "/idnode.v1.Registry/RegisterBatch", GARBAGE, api_key)
    assert parsed.code() != grpc.StatusCode.UNAUTHENTICATED


async def test_read_only_keys_are_refused_before_validation(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.reader) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            # 10,000 invalid identifiers: a refusal that names none of them was not validated
            await stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="ro", records=[record_input(f"bad {i}") for i in range(10_000)]))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not write" in (err.value.details() or "")


async def test_anonymous_messages_are_held_to_a_small_size(node: Node, api_key: str) -> None:
    ids = [f"0.118.8/LIMIT-{i:06d}-" + "x" * 200 for i in range(1000)]  # ~220 KB
    small = make_settings().grpc_anonymous_max_message_bytes
    request = pb.ResolveBatchRequest(identifiers=ids * 5)  # ~1.1 MB
    assert request.ByteSize() > small
    async with channel(node.ports.grpc, None) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await registry_pb2_grpc.RegistryStub(ch).ResolveBatch(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value)[0].reason == "TOO_LARGE"
    async with channel(node.ports.grpc, api_key) as ch:
        ok = await registry_pb2_grpc.RegistryStub(ch).ResolveBatch(
            pb.ResolveBatchRequest(identifiers=ids))
    assert len(ok.results) == 1000


@pytest.fixture
async def tight(dsn: str) -> AsyncIterator[Node]:
    node = Node(make_settings(grpc_write_rate=0.01, grpc_write_burst=2,
                              grpc_address_write_rate=0.01, grpc_address_write_burst=3), dsn)
    await node.start()
    try:
        yield node
    finally:
        await node.stop(grace=1)


async def test_writes_are_rate_limited_per_credential_and_per_address(tight: Node,
                                                                      keys: Keys) -> None:
    async def register(key: str, name: str) -> grpc.StatusCode:
        async with channel(tight.ports.grpc, key) as ch:
            try:
                await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key=name, records=[record_input(f"0.118.8/{name}")]))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert error_info(exc)[0].reason == "RATE_LIMITED"
                    assert dict(exc.trailing_metadata() or ())["retry-after"]
                return exc.code()
            return grpc.StatusCode.OK

    writer = [await register(keys.writer, f"RL-W{i}") for i in range(3)]
    assert writer == [grpc.StatusCode.OK, grpc.StatusCode.OK,
                      grpc.StatusCode.RESOURCE_EXHAUSTED]
    # another credential has its own budget, but the address's is nearly spent
    assert await register(keys.admin, "RL-A0") == grpc.StatusCode.OK
    assert await register(keys.admin, "RL-A1") == grpc.StatusCode.RESOURCE_EXHAUSTED
    # reads are not limited
    async with channel(tight.ports.grpc, keys.writer) as ch:
        got = await registry_pb2_grpc.RegistryStub(ch).Resolve(
            pb.ResolveRequest(identifier="0.118.8/RL-W0"))
    assert got.identifier == "0.118.8/RL-W0"


async def test_calls_past_the_concurrency_cap_are_refused(dsn: str, api_key: str) -> None:
    node = Node(make_settings(grpc_max_concurrent_rpcs=1), dsn)
    await node.start()
    try:
        async with channel(node.ports.grpc, api_key) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)

            async def batch(n: int) -> grpc.StatusCode:
                try:
                    await stub.RegisterBatch(pb.RegisterBatchRequest(
                        idempotency_key=f"cap-{n}",
                        records=[record_input(f"0.118.8/CAP-{n}-{i}") for i in range(3000)]))
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK
            codes = await asyncio.gather(*(batch(n) for n in range(6)))
    finally:
        await node.stop(grace=1)
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
