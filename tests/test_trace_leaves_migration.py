"""sql/0019 stores the tree's leaves once (in trace_events, not again as level 0 of
trace_nodes): a log written before it migrates to the same RFC 6962 tree, keeps growing to the
tree the leaves define, and a log whose two copies of a leaf hash disagree is not rewritten."""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from idnode.core.trace import leaf_parts
from idnode.crypto import merkle, mlog
from idnode.dsn import with_database
from idnode.model.events import NewEvent
from idnode.store import migrations
from idnode.store import trace as trace_store
from idnode.store.db import Database, create_pool

T0 = datetime(2026, 9, 1, tzinfo=UTC)
DB = "idnode_leaves_once"


@pytest.fixture
async def before_0019(pg_server_dsn: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database migrated up to 0018 (its sql dir: the landed files before 0019)."""
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    for m in migrations.available():
        if m.version < 19:
            (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    dsn = with_database(pg_server_dsn, DB)
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.migrate(conn, tmp_path)
        assert await migrations.current_version(conn) == 18
    finally:
        await conn.close()
    try:
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await admin.close()


def _events(first: int, n: int) -> list[NewEvent]:
    return [NewEvent(f"0.118.8/LOT-{(first + k) % 3}", "harvest",
                     T0 + timedelta(hours=first + k), "五常", "key-1",
                     f'{{"quantity_kg":{first + k}}}', None) for k in range(n)]


async def _append(conn: asyncpg.Connection, size: int, n: int) -> int:
    events = _events(size, n)
    args = trace_store._append_args(events, [leaf_parts("0.118.8", e) for e in events])
    first = int(await conn.fetchval(trace_store._APPEND, size, *args))
    assert first == size
    return size + n


async def _root_as_served(dsn: str, size: int) -> bytes:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        store = trace_store.TraceStore(Database(pool))
        nodes = await store.nodes(set(mlog.frontier(size)))
        return mlog.root(size, lambda wanted: {k: nodes[k] for k in wanted})
    finally:
        await pool.close()


async def _leaves(conn: asyncpg.Connection) -> list[bytes]:
    rows = await conn.fetch("SELECT leaf, leaf_hash FROM trace_events ORDER BY leaf")
    assert [r[0] for r in rows] == list(range(len(rows)))
    return [bytes(r[1]) for r in rows]


async def test_a_log_written_before_migrates_to_the_same_tree_and_grows_on(
        before_0019: str) -> None:
    conn = await asyncpg.connect(before_0019)
    try:
        size = 0
        for n in (3, 4, 6):                 # 13 leaves: an odd size, so level 0 is in the frontier
            size = await _append(conn, size, n)
        assert await conn.fetchval("SELECT count(*) FROM trace_nodes WHERE level = 0") == 13
        before = await _root_as_served(before_0019, size)
        assert before == merkle.root(await _leaves(conn))
        assert await migrations.migrate(conn) == ["0019_trace_leaves_once"]
        assert await conn.fetchval("SELECT count(*) FROM trace_nodes WHERE level = 0") == 0
        assert await _root_as_served(before_0019, size) == before
        for n in (1, 2, 5, 1):              # through odd and even sizes, on the new function
            size = await _append(conn, size, n)
            leaves = await _leaves(conn)
            assert await _root_as_served(before_0019, size) == merkle.root(leaves)
        assert await conn.fetchval("SELECT count(*) FROM trace_nodes WHERE level = 0") == 0
        # Every leaf hash is SHA-256(0x00 || its leaf document), as before.
        events = _events(0, size)
        for leaf, (e, h) in enumerate(zip(events, leaves, strict=True)):
            before_, after = leaf_parts("0.118.8", e)
            assert h == hashlib.sha256(b"\0" + before_ + str(leaf).encode() + after).digest()
    finally:
        await conn.close()


async def test_a_log_whose_two_copies_of_a_leaf_disagree_is_not_rewritten(
        before_0019: str) -> None:
    conn = await asyncpg.connect(before_0019)
    try:
        await _append(conn, 0, 4)
        await conn.execute("UPDATE trace_nodes SET hash = '\\x00' WHERE level = 0 AND idx = 2")
        with pytest.raises(asyncpg.RaiseError, match="disagrees"):
            await migrations.migrate(conn)
        assert await migrations.current_version(conn) == 18
        assert await conn.fetchval("SELECT count(*) FROM trace_nodes WHERE level = 0") == 4
    finally:
        await conn.close()

