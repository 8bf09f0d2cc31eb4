"""HandleStore point lookups: concurrent ones share a query, and each caller gets its own row."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from idnode.core.identifiers import Identifier
from idnode.store.db import Database, create_pool
from idnode.store.handles import HandleStore


class CountingDatabase(Database):
    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.queries = 0

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        self.queries += 1
        return await super().fetchrow(query, *args)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.queries += 1
        return await super().fetch(query, *args)


@pytest.fixture
async def store(dsn: str) -> AsyncIterator[tuple[HandleStore, CountingDatabase]]:
    db = CountingDatabase(await create_pool(dsn, min_size=1, max_size=4))
    now = datetime.now(UTC)
    await db.pool.executemany(
        "INSERT INTO handles (prefix, suffix, vals, version, created_at, updated_at)"
        " VALUES ('0.118.8', $1, $2::text::jsonb, 1, $3, $3)",
        [(f"H-{i}", f'[{{"index": 1, "n": {i}}}]', now) for i in range(5)])
    try:
        yield HandleStore(db), db
    finally:
        await db.close()


async def test_concurrent_lookups_share_one_query_and_get_their_own_rows(
        store: tuple[HandleStore, CountingDatabase]) -> None:
    handles, db = store
    wanted = [Identifier("0.118.8", s) for s in ("H-3", "H-0", "NONE", "H-3", "H-4")]
    rows = await asyncio.gather(*(handles.get(i) for i in wanted))
    assert db.queries == 1
    assert [r.suffix if r else None for r in rows] == ["H-3", "H-0", None, "H-3", "H-4"]
    assert rows[0] is not None and '"n": 3' in rows[0].vals
    one = await handles.get(Identifier("0.118.8", "H-1"))  # alone: a plain point lookup
    assert one is not None and one.suffix == "H-1" and db.queries == 2


async def test_a_caller_that_goes_away_does_not_disturb_the_others(
        store: tuple[HandleStore, CountingDatabase]) -> None:
    handles, _ = store
    gone = asyncio.ensure_future(handles.get(Identifier("0.118.8", "H-1")))
    stays = asyncio.ensure_future(handles.get(Identifier("0.118.8", "H-2")))
    await asyncio.sleep(0)
    gone.cancel()
    row = await stays
    assert row is not None and row.suffix == "H-2" and gone.cancelled()


async def test_a_failed_query_fails_every_caller_of_its_group(
        store: tuple[HandleStore, CountingDatabase]) -> None:
    handles, db = store
    await db.close()
    results = await asyncio.gather(*(handles.get(Identifier("0.118.8", s))
                                     for s in ("H-1", "H-2")), return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results)
