"""The outbox: events get their seq in commit order, so a shipper reading at any moment never
skips an event whose transaction commits after a later-numbered one; and writers do not wait
for each other's round trips to do so."""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import pytest

from idnode.store import outbox
from idnode.store.db import Database, create_pool
from idnode.store.outbox import OutboxStore


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[OutboxStore]:
    db = Database(await create_pool(dsn, min_size=1, max_size=12))
    try:
        yield OutboxStore(db)
    finally:
        await db.close()


async def test_event_committed_late_is_numbered_after_one_committed_early(
        store: OutboxStore, dsn: str) -> None:
    start = await store.pending(0, 1000)
    after = start[-1].seq if start else 0
    early, late = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        late_tx = late.transaction()
        await late_tx.start()
        await outbox.append(late, "test.event", {"n": "late"})  # appended first …
        async with early.transaction():
            await outbox.append(early, "test.event", {"n": "early"})
        # … but still open: the early writer's commit did not wait for it, and a shipper
        # reading now sees (and may acknowledge) only the early event.
        seen = await store.pending(after, 1000)
        assert [e.payload for e in seen] == ['{"n": "early"}']
        acked = seen[-1].seq
        await late_tx.commit()
    finally:
        await early.close()
        await late.close()
    rest = await store.pending(acked, 1000)
    assert [e.payload for e in rest] == ['{"n": "late"}']  # not skipped


async def test_a_writer_does_not_hold_the_order_lock_before_commit(dsn: str) -> None:
    open_writer, other = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        async with open_writer.transaction():
            await outbox.append(open_writer, "test.event", {"n": 1})
            got = await other.fetchval("SELECT pg_try_advisory_xact_lock($1)",
                                       outbox._ORDER_LOCK)
            assert got is True
    finally:
        await open_writer.close()
        await other.close()


async def test_rolled_back_events_leave_nothing_and_committed_seqs_are_positive(
        store: OutboxStore, dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await outbox.append(conn, "test.event", {"n": "gone"})
                raise RuntimeError("abort")
        async with conn.transaction():
            await outbox.append(conn, "test.event", {"n": "kept"})
            await outbox.append(conn, "test.event", {"n": "kept too"})
        assert await conn.fetchval("SELECT count(*) FROM outbox WHERE seq <= 0") == 0
    finally:
        await conn.close()
    events = [e for e in await store.pending(0, 1000) if e.kind == "test.event"]
    assert [e.payload for e in events] == ['{"n": "kept"}', '{"n": "kept too"}']
    assert events[0].seq < events[1].seq


async def test_concurrent_writers_and_a_polling_shipper_see_every_event_once_in_order(
        store: OutboxStore, dsn: str) -> None:
    """Writers interleave inserts, round trips and commits (some roll back) while a shipper
    reads and acknowledges as it goes; it must end up with every committed event once."""
    rng = random.Random(7)
    start = await store.pending(0, 10_000)
    acked = start[-1].seq if start else 0
    committed: set[int] = set()
    writers_done = asyncio.Event()

    async def writer(w: int) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for i in range(25):
                n = w * 1000 + i
                tx = conn.transaction()
                await tx.start()
                await outbox.append(conn, "test.event", {"n": n})
                for _ in range(rng.randrange(3)):
                    await conn.execute("SELECT pg_sleep(0.002)")  # more work after the insert
                if rng.random() < 0.15:
                    await tx.rollback()
                else:
                    await tx.commit()
                    committed.add(n)
        finally:
            await conn.close()

    shipped: list[int] = []
    seqs: list[int] = []

    async def shipper() -> None:
        nonlocal acked
        while True:
            finished = writers_done.is_set()
            events = await store.pending(acked, 7)
            for e in events:
                seqs.append(e.seq)
                shipped.append(int(e.payload.split(":")[1].strip(" }")))
            if events:
                acked = events[-1].seq
            elif finished:
                return
            await asyncio.sleep(0.001)

    ship = asyncio.create_task(shipper())
    await asyncio.gather(*(writer(w) for w in range(8)))
    writers_done.set()
    await asyncio.wait_for(ship, 30)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert sorted(shipped) == sorted(committed)
