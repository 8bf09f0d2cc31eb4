"""With the record cache switched off, the node still listens for invalidations: prefix states
and verified credentials come from memory (no query per request) and changes made by other
processes take effect as soon as they are notified."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from idnode.cache import HotCache
from idnode.cli import local_operator
from idnode.config import Settings
from idnode.node import Core, Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, make_settings
from tests.helpers import eventually, http_get, record_input


@pytest.fixture
def settings() -> Settings:
    return make_settings(cache_enabled=False)


@pytest.fixture
async def other_process(dsn: str) -> AsyncIterator[Core]:
    """The node's rules as another process (the CLI, another worker) has them."""
    core = await Core.open(make_settings(), dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                          enabled=False), pool_max=2)
    try:
        yield core
    finally:
        await core.db.close()


def count_calls(obj: Any, name: str) -> list[int]:
    calls = [0]
    original = getattr(obj, name)

    async def counted(*args: Any) -> Any:
        calls[0] += 1
        return await original(*args)

    setattr(obj, name, counted)
    return calls


async def test_prefix_states_and_credentials_come_from_memory(node: Node, keys: Keys) -> None:
    assert node.cache.listening and not node.cache.coherent  # listening, caching nothing
    async with channel(node.ports.grpc, keys.writer) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        await stub.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="m", records=[record_input("0.118.8/MEM")]))
        prefix_reads = count_calls(node.core.prefix_store, "get")
        credential_reads = count_calls(node.core.authenticator.source, "credential")
        for _ in range(5):
            assert (await http_get(node.ports.http, "/api/handles/0.118.8/MEM")).status == 200
            await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/MEM"))
    assert prefix_reads == [0] and credential_reads == [0]
    assert node.cache.hits == 0  # every record was read from the database


async def test_suspension_by_another_process_takes_effect_when_notified(
        node: Node, keys: Keys, other_process: Core) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="s", records=[record_input("0.118.8/SUSP")]))
    assert (await http_get(node.ports.http, "/api/handles/0.118.8/SUSP")).status == 200
    await other_process.tenancy.set_prefix_status(local_operator(), "0.118.8", "suspended",
                                                  refuse_resolution=True)

    async def refused() -> bool:
        return (await http_get(node.ports.http, "/api/handles/0.118.8/SUSP")).status == 403
    await eventually(refused, timeout=5)
    await other_process.tenancy.set_prefix_status(local_operator(), "0.118.8", "active")

    async def served() -> bool:
        return (await http_get(node.ports.http, "/api/handles/0.118.8/SUSP")).status == 200
    await eventually(served, timeout=5)


async def test_revoked_key_is_refused_when_notified(node: Node, keys: Keys,
                                                    other_process: Core) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        await stub.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="r0", records=[record_input("0.118.8/REV-0")]))  # remembered
        await other_process.tenancy.revoke_key(local_operator(), keys.writer.split("_")[1])

        async def refused() -> bool:
            try:
                await stub.RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key="r1", records=[record_input("0.118.8/REV-1")]))
            except Exception as exc:  # noqa: BLE001 - the refusal is what we wait for
                return "REVOKED" in str(exc) or "UNAUTHENTICATED" in str(exc)
            return False
        await eventually(refused, timeout=5)
