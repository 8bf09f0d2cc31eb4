"""Read-replica routing against a real streaming replica (two PostgreSQL servers on loopback)."""
from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import asyncpg
import pytest

from idnode.cache import HotCache
from idnode.cli import local_operator
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.node import Core, Node
from idnode.store import migrations
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import channel, make_settings
from tests.helpers import eventually, http_get, record_input

pytestmark = pytest.mark.slow


@pytest.fixture
async def primary_and_replica() -> object:
    base = Path(tempfile.mkdtemp(prefix="idnode-repl-"))
    primary = EmbeddedPostgres(base / "primary", free_port(), durable=False)
    replica = EmbeddedPostgres(base / "replica", free_port(), durable=False)
    try:
        dsn = primary.start()
        conn = await asyncpg.connect(dsn)
        await migrations.migrate(conn)
        await conn.close()
        core = await Core.open(make_settings(), dsn, HotCache(
            max_entries=1, ttl=1, negative_ttl=1, enabled=False), pool_max=2)
        op = local_operator()
        ent = await core.tenancy.create_enterprise(op, "Replica Co", "91350100M000100Y43")
        await core.tenancy.allocate_prefix(op, ent.id, "0.118.8")
        key = (await core.tenancy.issue_key(op, ent.id, ["read", "write"])).api_key
        await core.db.close()
        await asyncio.to_thread(replica.clone_as_replica, primary)
        replica_dsn = await asyncio.to_thread(replica.start)
        yield dsn, replica_dsn, key
    finally:
        replica.destroy()
        primary.destroy()


async def test_reads_go_to_a_fresh_replica_and_writers_read_their_writes(
        primary_and_replica: object) -> None:
    dsn, replica_dsn, key = primary_and_replica  # type: ignore[misc]
    rep = await asyncpg.connect(replica_dsn)
    prim = await asyncpg.connect(dsn)
    node = Node(make_settings(database_read_urls=replica_dsn, replica_max_lag=1.0,
                              cache_negative_ttl=0.05), dsn)
    await node.start()
    try:
        assert await rep.fetchval("SELECT pg_is_in_recovery()")

        async def replica_fresh() -> bool:
            return bool(node.core.replicas and node.core.replicas.healthy)

        await eventually(replica_fresh, timeout=10)
        # Freeze the replica: what is written on the primary behind the node's back is not
        # visible there, which shows where the node reads from.
        await rep.execute("SELECT pg_wal_replay_pause()")
        await prim.execute(
            "INSERT INTO handles (prefix, suffix, vals) VALUES ('0.118.8', 'BEHIND', '[]')")
        assert (await http_get(node.ports.http, "/api/handles/0.118.8/BEHIND")).status == 404

        # A registration through the node is read back at once (from the primary).
        async with channel(node.ports.grpc, key) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            await stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="ryw", records=[record_input("0.118.8/MINE")]))
            mine = await stub.Resolve(pb.ResolveRequest(identifier="0.118.8/MINE"))
            assert mine.identifier == "0.118.8/MINE"
        assert (await http_get(node.ports.http, "/api/handles/0.118.8/MINE")).status == 200

        # A replica paused for longer than the allowed lag is skipped: reads use the primary.
        async def replica_skipped() -> bool:
            return not node.core.replicas.healthy  # type: ignore[union-attr]

        await eventually(replica_skipped, timeout=10)
        await eventually(lambda: _status_is(node, "/api/handles/0.118.8/BEHIND", 200), timeout=5)
        ready = await http_get(node.ports.http, "/readyz")
        assert ready.json()["checks"]["replicas_fresh"] == "0/1"

        await rep.execute("SELECT pg_wal_replay_resume()")
        await eventually(replica_fresh, timeout=15)
    finally:
        await node.stop(grace=1)
        await rep.close()
        await prim.close()


async def _status_is(node: Node, target: str, status: int) -> bool:
    return (await http_get(node.ports.http, target)).status == status
