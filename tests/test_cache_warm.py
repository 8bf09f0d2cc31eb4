"""A process that starts loads the most scanned records of the last window into its hot cache
(cache_warm_top, cache_warm_window): once serving, without counting resolutions, coherently
(a write after the warm-up is seen), and never records under prefixes that do not resolve."""
from __future__ import annotations

import asyncpg

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import make_settings
from tests.helpers import eventually, http_get, record_input


async def scans(dsn: str, rows: list[tuple[str, int, str]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO trace_scans (identifier, place, count, first_at, last_at) "
            "VALUES ($1, '10.0.0.0/24', $2, now() - $3::text::interval, now() - $3::text::interval)", rows)
    finally:
        await conn.close()


async def test_the_most_scanned_are_cached_at_start(
        dsn: str, node: Node, stub: registry_pb2_grpc.RegistryStub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="warm", records=[
        record_input(f"0.118.8/W-{i}") for i in range(5)]))
    # W-0 was read in its Handle form before (its signatures kept), W-1 never was.
    first = await http_get(node.ports.http, "/api/handles/0.118.8/W-0")
    assert [v["type"] for v in first.json()["values"]][-1] == "HS_SIGNATURE"
    await scans(dsn, [
        ("0.118.8/W-0", 50, "1 hour"), ("0.118.8/W-1", 40, "2 hours"),
        ("0.118.8/W-2", 1000, "3 days"),  # scanned most, but not in the last day
        ("0.118.8/NOT-REGISTERED", 45, "1 hour"),  # nothing to cache
        ("0.118.8/W-3", 2, "1 hour"),  # recent, but below the top
    ])
    late = Node(make_settings(cache_warm_top=3), dsn, worker="late")
    await late.start()
    try:
        await eventually(lambda: _is(late.resolver.warmed == 2))
        cached = set(late.cache.backend.entries)
        assert cached == {"0.118.8/W-0", "0.118.8/W-1"}
        forms = late.core.handle_forms
        assert forms is not None
        entries = {k: late.cache.backend.peek(k) for k in cached}
        # W-0's kept signatures came with it: its Handle REST reads are cache hits at once.
        assert forms.cached(entries["0.118.8/W-0"].rendered) is not None
        assert forms.cached(entries["0.118.8/W-1"].rendered) is None  # signed on first read
        assert all(q == 0 for *_, q, _e in late.resolver.stats.take())  # nothing resolved
        misses = late.cache.misses
        assert (await http_get(late.ports.http, "/api/handles/0.118.8/W-0")).status == 200
        assert late.cache.misses == misses  # answered from the warmed entry
        # A write after the warm-up is seen by the warmed process.
        await stub.UpdateValues(pb.UpdateValuesRequest(identifier="0.118.8/W-1", values=[
            pb.Value(index=1, type="product.name", data="changed")]))
        changed = await http_get(late.ports.http, "/api/handles/0.118.8/W-1")
        assert changed.json()["values"][0]["data"]["value"] == "changed"
    finally:
        await late.stop(grace=1)


async def test_no_warm_up_when_off_or_the_cache_is(dsn: str, node: Node,
                                                  stub: registry_pb2_grpc.RegistryStub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="warm2", records=[
        record_input("0.118.8/W-9")]))
    await scans(dsn, [("0.118.8/W-9", 5, "1 minute")])
    for settings in (make_settings(cache_warm_top=0), make_settings(cache_enabled=False)):
        other = Node(settings, dsn, worker="other")
        await other.start()
        try:
            assert (await http_get(other.ports.http, "/healthz")).status == 200
            assert other.resolver.warmed == 0 and len(other.cache.backend) == 0
        finally:
            await other.stop(grace=1)


async def _is(value: bool) -> bool:
    return value
