"""Delivered outbox events are pruned outbox_retention seconds after the top-level node
acknowledged them; events it has not acknowledged are never touched."""
from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from idnode.node import Node
from idnode.topnode import TopNode
from idnode.store import migrations, outbox
from idnode.store.db import Database, create_pool
from idnode.store.outbox import OutboxStore
from idnode.store.top import TopStore
from idnode.sync.top import TopLevel
from tests.conftest import make_settings, with_database
from tests.helpers import eventually

UP = "grpc://test-top"


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[OutboxStore]:
    db = Database(await create_pool(dsn, min_size=1, max_size=2))
    try:
        yield OutboxStore(db)
    finally:
        await db.close()


async def append(conn: asyncpg.Connection, n: int) -> list[int]:
    for i in range(n):
        async with conn.transaction():
            await outbox.append(conn, "test.event", {"n": i})
    return [r[0] for r in await conn.fetch("SELECT seq FROM outbox ORDER BY seq")]


async def test_only_events_acknowledged_longer_ago_than_the_retention_go(
        store: OutboxStore, db: asyncpg.Connection) -> None:
    seqs = await append(db, 30)
    old, recent = seqs[9], seqs[19]
    await store.ack(UP, old)
    await store.ack(UP, recent)
    # The first acknowledgement was two hours ago, the second just now.
    await db.execute("UPDATE outbox_acks SET acked_at = now() - interval '2 hours'"
                     " WHERE seq = $1", old)
    assert await store.prune(UP, 3600, chunk=4) == 10  # in chunks of 4: 4 + 4 + 2
    left = [r[0] for r in await db.fetch("SELECT seq FROM outbox ORDER BY seq")]
    assert left == seqs[10:]  # acknowledged recently, or not at all (seqs[20:]): kept
    # Another upstream's acknowledgements do not count for this one.
    assert await store.prune("grpc://elsewhere", 0) == 0
    # Retention 0: everything acknowledged goes, nothing beyond the acknowledged seq.
    assert await store.prune(UP, 0) == 10
    assert [r[0] for r in await db.fetch("SELECT seq FROM outbox ORDER BY seq")] == seqs[20:]
    # The acknowledgements used are dropped too, but for the last one (the next horizon).
    assert [r[0] for r in await db.fetch("SELECT seq FROM outbox_acks ORDER BY seq")] == [recent]
    # What sync status shows stays true with the acknowledged rows gone.
    state = await store.state(UP)
    assert state.acked_seq == recent and state.newest_seq == seqs[-1]
    await store.prune(UP, 0)
    await db.execute("DELETE FROM outbox")
    state = await store.state(UP)
    assert state.newest_seq == state.acked_seq == recent  # a backlog of 0, not negative


async def test_nothing_is_pruned_before_anything_is_acknowledged(
        store: OutboxStore, db: asyncpg.Connection) -> None:
    seqs = await append(db, 5)
    assert await store.prune(UP, 0) == 0
    assert len(await db.fetch("SELECT seq FROM outbox")) >= len(seqs)


@pytest.fixture
async def top_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"idnode_top_prune_{os.getpid()}_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    try:
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_a_node_prunes_delivered_events_on_its_schedule(
        dsn: str, top_dsn: str, db: asyncpg.Connection, tmp_path: Path) -> None:
    tdb = Database(await create_pool(top_dsn, min_size=1, max_size=1))
    token = await TopLevel(TopStore(tdb)).add_node("0.118")
    await tdb.close()
    top = TopNode(make_settings(data_dir=tmp_path / "top"), top_dsn)
    await top.start()
    newest = int(await db.fetchval("SELECT max(seq) FROM outbox"))
    assert newest > 0  # the template's history, to deliver and then prune
    node = Node(make_settings(upstream_grpc=f"127.0.0.1:{top.port}", upstream_token=token,
                              outbox_retention=0.2, outbox_prune_interval=0.1), dsn)
    await node.start()
    try:
        async def pruned() -> bool:
            return await db.fetchval("SELECT count(*) FROM outbox WHERE seq <= $1",
                                     newest) == 0
        await eventually(pruned, timeout=15)
        # Every event reached the top before it went.
        conn = await asyncpg.connect(top_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM events") >= newest
            assert await conn.fetchval("SELECT max(seq) FROM events") >= newest
        finally:
            await conn.close()
        assert node.shipper is not None
        state = await node.core.outbox.state(node.shipper.upstream.name)
        assert state.newest_seq - state.acked_seq >= 0
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)
