"""The hot cache: bounded, expiring, race-safe fills, and coherent across processes."""
from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from idnode.cache import BoundedMemoryCache, HotCache
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import channel
from tests.helpers import eventually, http_get, record_input
from tests.nodeproc import start_node


def coherent_cache(**kw: float) -> HotCache:
    cache = HotCache(max_entries=int(kw.get("max_entries", 100)), ttl=kw.get("ttl", 60),
                     negative_ttl=kw.get("negative_ttl", 5))
    cache.coherent = True  # as if the listener were up
    return cache


def test_lru_is_bounded() -> None:
    c = BoundedMemoryCache(max_entries=3)
    for k in "abcd":
        c.put(k, k.upper(), 60)
    assert len(c) == 3 and c.peek("a") is None
    c.peek("b")  # b is now most recent; c is the eldest
    c.put("e", "E", 60)
    assert c.peek("c") is None and c.peek("b") == "B"


def test_entries_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    c = BoundedMemoryCache(max_entries=3)
    now = time.monotonic()
    c.put("k", "v", 5)
    monkeypatch.setattr(time, "monotonic", lambda: now + 6)
    assert c.peek("k") is None and len(c) == 0


def test_fill_after_an_invalidation_during_the_read_is_dropped() -> None:
    cache = coherent_cache()
    ticket = cache.ticket("0.118.8/X")       # reader starts its database read
    cache.invalidate(["0.118.8/X"])           # a writer commits and notifies meanwhile
    cache.fill("0.118.8/X", "old row", ticket)  # the reader's (stale) result arrives
    assert cache.get("0.118.8/X") is None
    fresh = cache.ticket("0.118.8/X")
    cache.fill("0.118.8/X", "new row", fresh)
    assert cache.get("0.118.8/X") == "new row"


def test_cache_is_bypassed_while_not_coherent() -> None:
    cache = coherent_cache()
    cache.fill("k", "v", cache.ticket("k"))
    cache.coherent = False
    assert cache.get("k") is None
    cache.fill("k2", "v", cache.ticket("k2"))
    cache.coherent = True
    assert cache.get("k2") is None


def test_negative_entries_use_their_own_ttl() -> None:
    cache = coherent_cache(negative_ttl=0.0001)
    cache.fill("k", "absent", cache.ticket("k"), cache.negative_ttl)
    time.sleep(0.002)
    assert cache.get("k") is None


async def test_losing_the_listener_bypasses_the_cache_until_it_reconnects(
        node: Node, dsn: str, db: asyncpg.Connection) -> None:
    assert node.cache.coherent
    killed = await db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'idnode-cache-listener' AND datname = current_database()")
    assert killed == 1

    async def bypassed() -> bool:
        return not node.cache.coherent

    async def back() -> bool:
        return node.cache.coherent

    await eventually(bypassed, timeout=5, interval=0.005)
    await eventually(back, timeout=15)
    ready = await http_get(node.ports.http, "/readyz")
    assert ready.status == 200


@pytest.mark.slow
async def test_write_on_one_process_is_not_served_stale_by_another(dsn: str, api_key: str) -> None:
    a = start_node(dsn, worker_id="a")
    b = start_node(dsn, worker_id="b")
    try:
        async with channel(a.grpc, api_key) as ch:
            stub_a = registry_pb2_grpc.RegistryStub(ch)
            ident = "0.118.8/COHERENT-1"
            # B caches "not found" first; A's registration must clear it on B.
            assert (await http_get(b.http, f"/api/handles/{ident}")).status == 404
            await stub_a.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="c1", records=[record_input(ident, v="1")]))

            async def b_sees(value: str) -> bool:
                resp = await http_get(b.http, f"/api/handles/{ident}")
                return resp.status == 200 and resp.json()["values"][0]["data"]["value"] == value

            await eventually(lambda: b_sees("1"), timeout=5)
            for version in range(2, 12):
                # Warm B's cache with the current value, then write on A.
                assert await b_sees(str(version - 1))
                await stub_a.UpdateValues(pb.UpdateValuesRequest(
                    identifier=ident, values=[pb.Value(index=1, type="v", data=str(version))]))
                await eventually(lambda v=str(version): b_sees(v), timeout=5, interval=0.002)
                # Once B has seen the new value it never goes back to the old one.
                for _ in range(20):
                    assert await b_sees(str(version))
            metrics = (await http_get(b.metrics, "/metrics")).body.decode()
            assert 'worker="b"' in metrics
            hits = float(metrics.split("idnode_cache_hits_total{worker=\"b\"} ")[1].split()[0])
            assert hits > 100  # B really served from its cache in between
    finally:
        assert a.stop() == 0
        assert b.stop() == 0


@pytest.mark.slow
async def test_concurrent_writes_and_reads_settle_on_the_last_write(dsn: str,
                                                                   api_key: str) -> None:
    """Hammer reads on B while A writes; after the last write B converges and stays."""
    a = start_node(dsn, worker_id="a")
    b = start_node(dsn, worker_id="b")
    try:
        async with channel(a.grpc, api_key) as ca, channel(b.grpc, None) as cb:
            stub_a = registry_pb2_grpc.RegistryStub(ca)
            stub_b = registry_pb2_grpc.RegistryStub(cb)
            ident = "0.118.8/RACE-1"
            await stub_a.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="r", records=[record_input(ident, v="0")]))
            stop = asyncio.Event()

            async def reader() -> None:
                while not stop.is_set():
                    await stub_b.Resolve(pb.ResolveRequest(identifier=ident))

            readers = [asyncio.create_task(reader()) for _ in range(4)]
            for i in range(1, 51):
                await stub_a.UpdateValues(pb.UpdateValuesRequest(
                    identifier=ident, values=[pb.Value(index=1, type="v", data=str(i))]))
            stop.set()
            await asyncio.gather(*readers)

            async def settled() -> bool:
                r = await stub_b.Resolve(pb.ResolveRequest(identifier=ident))
                return r.version == 51

            await eventually(settled, timeout=5)
            for _ in range(50):
                r = await stub_b.Resolve(pb.ResolveRequest(identifier=ident))
                assert (r.version, r.values[0].data) == (51, "50")
    finally:
        a.stop()
        b.stop()


def test_subscribers_hear_every_kind_of_control_key_and_no_identifier() -> None:
    from idnode.model.invalidation import CONTROL_KEYS

    cache = coherent_cache()
    heard: list[object] = []
    cache.subscribe(heard.append)
    for kind in CONTROL_KEYS:
        cache.invalidate([kind + "x"])
    cache.invalidate(["0.118.8/X", "0.118.8/Y"])
    assert heard == [["prefix:x"], ["cred:x"], ["trace:x"], ()]
