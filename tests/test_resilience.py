"""Graceful operation: SIGTERM drains, and database faults (PostgreSQL hung by SIGSTOP, or
killed) while serving: hot records still answer, marked stale, the rest fail in bounded time."""
from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import grpc
import pytest

from idnode.cache import HotCache
from idnode.cli import local_operator
from idnode.core.audit import Actor
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.node import Core
from idnode.store import migrations
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests import hdlwire as w
from tests.conftest import Keys, channel, make_settings
from tests.helpers import child_pids, eventually, http_get, record_input
from tests.nodeproc import NodeProcess, start_node

pytestmark = pytest.mark.slow

T = TypeVar("T")

# What the node's defaults promise (config.py: db_acquire_timeout 1 s + db_query_timeout 2 s),
# with a second for a busy test machine.
BOUND = 4.0


# -- SIGTERM ----------------------------------------------------------------------------------
async def _batch_waiting_on_a_lock(dsn: str, key: str, db: asyncpg.Connection
                                   ) -> tuple[NodeProcess, asyncio.Future[pb.RegisterBatchResponse],
                                              grpc.aio.Channel]:
    """A node whose 10,000-record batch is in the database, waiting for a lock the test holds
    (so SIGTERM finds it in flight, however fast the machine)."""
    proc = start_node(dsn)
    ch = channel(proc.grpc, key)
    task = asyncio.ensure_future(registry_pb2_grpc.RegistryStub(ch).RegisterBatch(
        pb.RegisterBatchRequest(idempotency_key="term", records=[
            record_input(f"0.118.8/T-{i:05d}") for i in range(10_000)])))

    async def waiting() -> bool:
        assert not task.done(), task
        return bool(await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idnode'"
            " AND wait_event_type = 'Lock' AND datname = current_database()"))

    await eventually(waiting, timeout=30)
    return proc, task, ch


async def _stopped_accepting(proc: NodeProcess) -> None:
    async def refused() -> bool:
        try:
            await http_get(proc.http, "/healthz")
        except OSError:
            return True
        return False

    await eventually(refused, timeout=10)


async def test_sigterm_lets_a_batch_in_flight_commit(dsn: str, keys: Keys,
                                                      db: asyncpg.Connection) -> None:
    locker = await asyncpg.connect(dsn)
    lock = locker.transaction()
    await lock.start()
    await locker.execute("LOCK TABLE register_batches IN SHARE MODE")
    proc, task, ch = await _batch_waiting_on_a_lock(dsn, keys.writer, db)
    try:
        proc.proc.send_signal(signal.SIGTERM)
        await _stopped_accepting(proc)
        await lock.rollback()  # well within the 5 s grace
        assert (await task).registered == 10_000
        assert await asyncio.to_thread(proc.proc.wait, 20) == 0
        assert await db.fetchval("SELECT count(*) FROM handles") == 10_000
    finally:
        await ch.close()
        await locker.close()
        proc.stop()


async def test_sigterm_rolls_back_a_batch_still_waiting_after_the_grace(
        dsn: str, keys: Keys, db: asyncpg.Connection) -> None:
    locker = await asyncpg.connect(dsn)
    lock = locker.transaction()
    await lock.start()
    await locker.execute("LOCK TABLE register_batches IN SHARE MODE")
    proc, task, ch = await _batch_waiting_on_a_lock(dsn, keys.writer, db)
    try:
        proc.proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await task
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert await asyncio.to_thread(proc.proc.wait, 20) == 0

        # The statement was cancelled in the database, not left to commit for nobody once
        # the lock is gone.
        async def node_gone() -> bool:
            return not await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'idnode'"
                " AND datname = current_database()")

        await eventually(node_gone, timeout=10)
        await lock.rollback()
        assert await db.fetchval("SELECT count(*) FROM handles") == 0
        assert await db.fetchval("SELECT count(*) FROM register_batches") == 0
    finally:
        await ch.close()
        await locker.close()
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


# -- database faults --------------------------------------------------------------------------
@pytest.fixture
async def own_postgres() -> AsyncIterator[tuple[EmbeddedPostgres, str, str]]:
    """A PostgreSQL server of this test's own (never the machine's, nor the suite's shared
    one), holding 0.118.8/HOT and 0.118.8/COLD, so the test may hang or kill it. The
    records are written before any node listens, so no invalidation of them is on its way
    when a node caches one."""
    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="idnode-fault-")), free_port(),
                          durable=False)
    dsn = pg.start()
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn)
    await conn.close()
    core = await Core.open(make_settings(), dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                          enabled=False), pool_max=2)
    op = local_operator()
    try:
        ent = await core.tenancy.create_enterprise(op, "Fault Co", "91350100M000100Y43")
        await core.tenancy.allocate_prefix(op, ent.id, "0.118.8")
        key = (await core.tenancy.issue_key(op, ent.id, ["read", "write"])).api_key
        writer = Actor(await core.authenticator.from_token(key), "test")
        await core.registry.register_batch(writer, "seed", [
            record_input("0.118.8/HOT"), record_input("0.118.8/COLD")])
    finally:
        await core.db.close()
    try:
        yield pg, dsn, key
    finally:
        pg.destroy()


def postgres_processes(pg: EmbeddedPostgres) -> list[int]:
    postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
    return [postmaster, *child_pids(postmaster)]


def hang(pg: EmbeddedPostgres) -> list[int]:
    """SIGSTOPs the postmaster, then every backend and helper it had forked."""
    postmaster = postgres_processes(pg)[0]
    os.kill(postmaster, signal.SIGSTOP)  # first: it forks no one new meanwhile
    rest = child_pids(postmaster)
    for pid in rest:
        os.kill(pid, signal.SIGSTOP)
    return [postmaster, *rest]


def kill(pg: EmbeddedPostgres) -> list[int]:
    pids = postgres_processes(pg)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


async def ready(proc: NodeProcess) -> Any:
    return (await http_get(proc.http, "/readyz")).json()


@pytest.mark.parametrize("fault", ["hung", "killed"])
async def test_database_fault_serves_hot_records_stale_and_fails_the_rest_in_bounded_time(
        own_postgres: tuple[EmbeddedPostgres, str, str], fault: str) -> None:
    pg, dsn, key = own_postgres
    proc = start_node(dsn)
    stopped: list[int] = []
    killed: list[int] = []
    try:
        hot = await http_get(proc.http, "/api/handles/0.118.8/HOT")  # now in its cache
        assert hot.status == 200 and "warning" not in hot.headers
        etag = hot.headers["etag"]

        if fault == "hung":
            stopped = hang(pg)
            # A hung database holds up no cached answer, while the cache still counts as
            # coherent (its listener has not noticed yet) ...
            resp, took = await timed(http_get(proc.http, "/api/handles/0.118.8/HOT"))
            assert resp.status == 200 and took < 1.0, took
        else:
            killed = kill(pg)

        # ... and nothing else waits longer than the pool and query timeouts.
        cold, took = await timed(http_get(proc.http, "/api/handles/0.118.8/COLD"))
        assert cold.status == 503, cold
        assert cold.headers["retry-after"] and cold.json()["reason"] == "UNAVAILABLE"
        assert took < BOUND, f"a {fault} database must not hang requests ({took:.1f}s)"

        # Once the invalidation listener has given up on the database, cached records are
        # served marked stale, at once: the database counts as down and is not waited for.
        async def bypassed() -> bool:
            return (await ready(proc))["checks"]["cache"] != "ok"

        await eventually(bypassed, timeout=15, interval=0.2)
        stale, took = await timed(http_get(proc.http, "/api/handles/0.118.8/HOT"))
        assert stale.status == 200 and took < 1.0, took
        assert stale.json()["handle"] == "0.118.8/HOT"
        assert stale.headers["warning"].startswith("110 ")
        assert "stale" in stale.headers["cache-status"]
        assert stale.headers["cache-control"] == "no-store"
        again = await http_get(proc.http, "/api/handles/0.118.8/HOT", {"If-None-Match": etag})
        assert again.status == 304 and again.headers["warning"].startswith("110 ")
        page = await http_get(proc.http, "/0.118.8/HOT", {"Accept": "text/html"})
        assert page.status == 200 and page.headers["warning"].startswith("110 ")
        cold, took = await timed(http_get(proc.http, "/api/handles/0.118.8/COLD"))
        assert cold.status == 503 and took < 1.0, took
        assert (await http_get(proc.http, "/readyz")).status == 503

        # gRPC serves the hot record, and UNAVAILABLE for the rest, writes included.
        async with channel(proc.grpc, None) as ch:
            anon = registry_pb2_grpc.RegistryStub(ch)
            rec = await anon.Resolve(pb.ResolveRequest(identifier="0.118.8/HOT"), timeout=5)
            assert rec.identifier == "0.118.8/HOT"
            batch = await anon.ResolveBatch(pb.ResolveBatchRequest(
                identifiers=["0.118.8/HOT"]), timeout=5)
            assert batch.results[0].found
            for call in (anon.Resolve(pb.ResolveRequest(identifier="0.118.8/COLD"), timeout=5),
                         anon.ResolveBatch(pb.ResolveBatchRequest(
                             identifiers=["0.118.8/HOT", "0.118.8/COLD"]), timeout=5)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        async with channel(proc.grpc, key) as ch:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key="down", records=[record_input("0.118.8/DOWN")]),
                    timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < BOUND

        # The Handle protocol serves it too (UDP, as the ID-SDK and hdllib ask first).
        packets = await asyncio.to_thread(w.udp_call, proc.handle, w.request(
            1, w.resolution_body("0.118.8/HOT"), request_id=7))
        answer = w.parse(w.reassemble(packets))
        assert answer.rc == 1 and answer.values, answer

        # Back: the node reconnects by itself, serves fresh answers again.
        if fault == "hung":
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped = []
        else:
            # Until they are reaped, a new postmaster takes the old one's pid file for a
            # running server's.
            async def reaped() -> bool:
                return not any(os.path.exists(f"/proc/{pid}") for pid in killed)

            await eventually(reaped, timeout=30, interval=0.05)
            await asyncio.to_thread(pg.start)

        async def recovered() -> bool:
            return (await http_get(proc.http, "/readyz")).status == 200

        await eventually(recovered, timeout=30, interval=0.2)
        assert (await http_get(proc.http, "/api/handles/0.118.8/COLD")).status == 200
        fresh = await http_get(proc.http, "/api/handles/0.118.8/HOT")
        assert fresh.status == 200 and "warning" not in fresh.headers
        async with channel(proc.grpc, key) as ch:
            ok = await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="up", records=[record_input("0.118.8/UP")]))
            assert ok.registered == 1
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        proc.stop()
