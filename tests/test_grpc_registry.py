"""The Registry gRPC service against a real server and a real database."""
from __future__ import annotations

import asyncio

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.helpers import error_info, record_input

Stub = registry_pb2_grpc.RegistryStub


async def count(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM handles"))


async def test_registered_identifier_resolves_with_its_values(stub: Stub) -> None:
    resp = await stub.RegisterBatch(pb.RegisterBatchRequest(
        idempotency_key="k1",
        records=[record_input("0.118.8/RICE-1", product__name="五常大米", URL="https://e.x/1")]))
    assert resp.registered == 1 and not resp.replayed
    record = await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/RICE-1"))
    assert record.identifier == "0.118.8/RICE-1"
    assert record.version == 1
    assert [(v.index, v.type, v.data, v.format, v.ttl) for v in record.values] == [
        (1, "product.name", "五常大米", "string", 86400), (2, "URL", "https://e.x/1", "string", 86400)]
    assert record.values[0].timestamp.seconds > 0


async def test_resolve_filters_by_type_or_index(stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="k", records=[
        record_input("0.118.8/A", a="1", b="2", c="3")]))
    record = await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/A", types=["a"], indexes=[3]))
    assert [v.type for v in record.values] == ["a", "c"]


async def test_batch_of_ten_thousand_registers_whole(stub: Stub, db: asyncpg.Connection) -> None:
    records = [record_input(f"0.118.8/UNIT-{i:06d}") for i in range(10_000)]
    resp = await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="big", records=records))
    assert resp.registered == 10_000
    assert await count(db) == 10_000


async def test_retried_batch_with_same_key_registers_once(stub: Stub, db: asyncpg.Connection) -> None:
    req = pb.RegisterBatchRequest(idempotency_key="retry-1", records=[
        record_input(f"0.118.8/R-{i}") for i in range(50)])
    first = await stub.RegisterBatch(req)
    second = await stub.RegisterBatch(req)
    assert (first.registered, first.replayed) == (50, False)
    assert (second.registered, second.replayed) == (50, True)
    assert second.committed_at == first.committed_at
    assert await count(db) == 50


async def test_concurrent_retries_with_same_key_register_once(stub: Stub, db: asyncpg.Connection) -> None:
    req = pb.RegisterBatchRequest(idempotency_key="race", records=[
        record_input(f"0.118.8/C-{i}") for i in range(200)])
    results = await asyncio.gather(*(stub.RegisterBatch(req) for _ in range(5)))
    assert sorted(r.replayed for r in results) == [False, True, True, True, True]
    assert await count(db) == 200


async def test_same_key_with_different_batch_is_refused(stub: Stub, db: asyncpg.Connection) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="k", records=[
        record_input("0.118.8/X-1")]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="k", records=[
            record_input("0.118.8/X-2")]))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info, _ = error_info(err.value)
    assert info.reason == "IDEMPOTENCY_KEY_REUSED" and info.domain == "idnode"
    assert await count(db) == 1


async def test_batch_with_one_existing_identifier_changes_nothing(stub: Stub,
                                                                  db: asyncpg.Connection) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="a", records=[
        record_input("0.118.8/EXISTS")]))
    batch = [record_input(f"0.118.8/NEW-{i}") for i in range(100)]
    batch.insert(57, record_input("0.118.8/EXISTS"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="b", records=batch))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "0.118.8/EXISTS" in err.value.details()
    info, _ = error_info(err.value)
    assert info.reason == "ALREADY_EXISTS" and info.metadata["identifier"] == "0.118.8/EXISTS"
    assert await count(db) == 1
    # The failed key was not consumed: a corrected batch under it goes through.
    batch.pop(57)
    ok = await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="b", records=batch))
    assert ok.registered == 100 and not ok.replayed


@pytest.mark.parametrize("records,field,reason", [
    ([record_input("0.118.8/D"), record_input("0.118.8/D")], "records[1].identifier",
     "DUPLICATE_IN_BATCH"),
    ([record_input("0.118.8/ok"), record_input("no-slash")], "records[1].identifier",
     "INVALID_IDENTIFIER"),
    ([record_input("0.118.08/x")], "records[0].identifier", "INVALID_IDENTIFIER"),
    ([record_input("0.118.8/a\u0000b")], "records[0].identifier", "INVALID_IDENTIFIER"),
    ([record_input("0.118.8/a\u202eb")], "records[0].identifier", "INVALID_IDENTIFIER"),
    ([record_input("0.118.8/" + "x" * 256)], "records[0].identifier", "INVALID_IDENTIFIER"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[pb.Value(index=1, type="a", data="x"),
                                                       pb.Value(index=1, type="b", data="y")])],
     "records[0].values[1].index", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[pb.Value(index=0, type="a", data="x")])],
     "records[0].values[0].index", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[pb.Value(index=1, type="", data="x")])],
     "records[0].values[0].type", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[
        pb.Value(index=1, type="a", format="json", data="{not json")])],
     "records[0].values[0].data", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[
        pb.Value(index=1, type="a", format="xml", data="<a/>")])],
     "records[0].values[0].format", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[
        pb.Value(index=1, type="a", format="base64", data="!!")])],
     "records[0].values[0].data", "INVALID_VALUE"),
    ([pb.RecordInput(identifier="0.118.8/v", values=[
        pb.Value(index=1, type="a", data="x" * 70_000)])],
     "records[0].values[0].data", "TOO_LARGE"),
])
async def test_bad_input_is_invalid_argument_with_field_and_changes_nothing(
        stub: Stub, db: asyncpg.Connection, records: list[pb.RecordInput], field: str,
        reason: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="bad", records=records))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, bad = error_info(err.value)
    assert (info.reason, info.metadata["field"]) == (reason, field)
    assert bad is not None and bad.field_violations[0].field == field
    assert await count(db) == 0
    assert await db.fetchval("SELECT count(*) FROM register_batches") == 0


async def test_oversize_batch_is_refused(stub: Stub, db: asyncpg.Connection) -> None:
    records = [record_input(f"0.118.8/O-{i}") for i in range(10_001)]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="o", records=records))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value)[0].reason == "TOO_LARGE"
    assert await count(db) == 0


@pytest.mark.parametrize("key", ["", "k" * 129, "ключ", "a\nb"])
async def test_bad_idempotency_key_is_refused(stub: Stub, key: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key=key, records=[
            record_input("0.118.8/K")]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value)[0].metadata["field"] == "idempotency_key"


async def test_empty_batch_is_refused(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="e"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_prefix_is_not_found_and_changes_nothing(stub: Stub,
                                                               db: asyncpg.Connection) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="u", records=[
            record_input("0.118.8/fine"), record_input("0.118.99/X")]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err.value)[0].reason == "PREFIX_NOT_FOUND"
    assert await count(db) == 0


async def test_suspended_prefix_refuses_writes(stub: Stub, db: asyncpg.Connection) -> None:
    await db.execute("UPDATE prefixes SET status = 'suspended'")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="s", records=[
            record_input("0.118.8/S")]))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value)[0].reason == "PREFIX_SUSPENDED"


async def test_update_bumps_version_and_checks_expected_version(stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="u", records=[
        record_input("0.118.8/U", a="1")]))
    updated = await stub.UpdateValues(pb.UpdateValuesRequest(
        identifier="0.118.8/U", values=[pb.Value(index=1, type="a", data="2")], expected_version=1))
    assert updated.version == 2 and updated.values[0].data == "2"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateValues(pb.UpdateValuesRequest(
            identifier="0.118.8/U", values=[pb.Value(index=1, type="a", data="3")],
            expected_version=1))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value)[0].reason == "VERSION_MISMATCH"
    record = await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/U"))
    assert (record.version, record.values[0].data) == (2, "2")


async def test_update_of_unregistered_identifier_is_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpdateValues(pb.UpdateValuesRequest(
            identifier="0.118.8/NONE", values=[pb.Value(index=1, type="a", data="2")]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err.value)[0].reason == "IDENTIFIER_NOT_FOUND"


async def test_delete_then_resolve_is_not_found(stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="d", records=[
        record_input("0.118.8/DEL")]))
    await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/DEL"))  # now cached
    deleted = await stub.Delete(pb.DeleteRequest(identifier="0.118.8/DEL"))
    assert deleted.version == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/DEL"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Delete(pb.DeleteRequest(identifier="0.118.8/DEL"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_registration_clears_a_cached_not_found(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/LATE"))
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="l", records=[
        record_input("0.118.8/LATE")]))
    record = await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/LATE"))
    assert record.identifier == "0.118.8/LATE"


async def test_resolve_batch_answers_in_order_with_misses(stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="rb", records=[
        record_input(f"0.118.8/B-{i}") for i in range(0, 1000, 2)]))
    ids = [f"0.118.8/B-{i}" for i in range(1000)]
    resp = await stub.ResolveBatch(pb.ResolveBatchRequest(identifiers=ids))
    assert [r.identifier for r in resp.results] == ids
    assert [r.found for r in resp.results] == [i % 2 == 0 for i in range(1000)]
    assert resp.results[0].record.values[0].data == "test"
    # Again, now partly from the cache: same answer.
    again = await stub.ResolveBatch(pb.ResolveBatchRequest(identifiers=ids))
    assert [r.found for r in again.results] == [r.found for r in resp.results]


async def test_resolve_batch_over_limit_is_refused(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResolveBatch(pb.ResolveBatchRequest(
            identifiers=[f"0.118.8/{i}" for i in range(1001)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_pages_through_a_prefix(stub: Stub) -> None:
    ids = sorted(f"0.118.8/L-{i:03d}" for i in range(25))
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="list", records=[
        record_input(i) for i in ids]))
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.List(pb.ListRequest(prefix="0.118.8", page_size=10, page_token=token))
        seen += page.identifiers
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == ids and pages == 3


@pytest.mark.parametrize("req,code", [
    (pb.ListRequest(prefix="0.118.8", page_token="garbage!"), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ListRequest(prefix="0.118.8", page_size=5000), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ListRequest(prefix="not-a-prefix"), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ListRequest(prefix="0.118.77"), grpc.StatusCode.NOT_FOUND),
])
async def test_list_bad_requests(stub: Stub, req: pb.ListRequest, code: grpc.StatusCode) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.List(req)
    assert err.value.code() == code


async def test_health_and_reflection_are_served(node: Node) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.ports.grpc}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "idnode.v1.Registry"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def requests():  # type: ignore[no-untyped-def]
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = []
        async for resp in refl.ServerReflectionInfo(requests()):
            names = [s.name for s in resp.list_services_response.service]
        assert "idnode.v1.Registry" in names and "grpc.health.v1.Health" in names
