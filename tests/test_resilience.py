"""Graceful operation: SIGTERM drains, and a PostgreSQL restart while serving."""
from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
import pytest

from idnode.cache import HotCache
from idnode.cli import local_operator
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.node import Core
from idnode.store import migrations
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, make_settings
from tests.helpers import eventually, http_get, record_input
from tests.nodeproc import start_node

pytestmark = pytest.mark.slow


async def test_sigterm_finishes_or_rolls_back_an_open_batch(dsn: str, keys: Keys,
                                                           db: asyncpg.Connection) -> None:
    proc = start_node(dsn)
    try:
        async with channel(proc.grpc, keys.writer) as ch:
            call = registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="term", records=[record_input(f"88.118.8/T-{i:05d}")
                                                 for i in range(10_000)]))
            task = asyncio.ensure_future(call)
            await asyncio.sleep(0.05)
            proc.proc.send_signal(signal.SIGTERM)
            try:
                resp = await task
                outcome = resp.registered
            except grpc.aio.AioRpcError as exc:
                assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                outcome = 0
        assert await asyncio.to_thread(proc.proc.wait, 20) == 0
        assert await db.fetchval("SELECT count(*) FROM handles") == outcome
        assert outcome in (0, 10_000)
    finally:
        proc.stop()


async def test_http_keep_alive_connections_are_closed_on_shutdown(dsn: str) -> None:
    proc = start_node(dsn)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proc.http)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.proc.wait, 20) == 0
        assert time.monotonic() - started < 10
        writer.close()
    finally:
        proc.stop()


@pytest.fixture
async def own_postgres() -> object:
    """A PostgreSQL server of this test's own, so the test may restart it."""
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="idnode-restart-")), free_port(),
                          durable=False)
    dsn = pg.start()
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn)
    await conn.close()
    core = await Core.open(make_settings(), dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                          enabled=False), pool_max=2)
    op = local_operator()
    ent = await core.tenancy.create_enterprise(op, "Restart Co", "91350100M000100Y43")
    await core.tenancy.allocate_prefix(op, ent.id, "88.118.8")
    key = (await core.tenancy.issue_key(op, ent.id, ["read", "write"])).api_key
    await core.db.close()
    try:
        yield pg, dsn, key
    finally:
        pg.destroy()


async def test_postgres_restart_serves_hot_records_and_503_for_the_rest(own_postgres: object
                                                                        ) -> None:
    pg, dsn, key = own_postgres  # type: ignore[misc]
    proc = start_node(dsn)
    try:
        async with channel(proc.grpc, key) as ch:
            await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="hot", records=[record_input("88.118.8/HOT"),
                                                record_input("88.118.8/COLD")]))
        assert (await http_get(proc.http, "/api/handles/88.118.8/HOT")).status == 200
        await asyncio.to_thread(pg.stop, "fast")

        hot = await http_get(proc.http, "/api/handles/88.118.8/HOT")
        assert hot.status == 200 and hot.json()["handle"] == "88.118.8/HOT"
        started = time.monotonic()
        cold = await http_get(proc.http, "/api/handles/88.118.8/COLD")
        assert cold.status == 503 and cold.headers["retry-after"]
        assert cold.json()["reason"] == "UNAVAILABLE"
        assert time.monotonic() - started < 5, "a down database must not hang requests"
        assert (await http_get(proc.http, "/readyz")).status == 503
        async with channel(proc.grpc, key) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key="down", records=[record_input("88.118.8/DOWN")]), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        await asyncio.to_thread(pg.start)

        async def recovered() -> bool:
            return (await http_get(proc.http, "/readyz")).status == 200

        await eventually(recovered, timeout=30, interval=0.2)
        assert (await http_get(proc.http, "/api/handles/88.118.8/COLD")).status == 200
        async with channel(proc.grpc, key) as ch:
            ok = await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="up", records=[record_input("88.118.8/UP")]))
            assert ok.registered == 1
    finally:
        proc.stop()
