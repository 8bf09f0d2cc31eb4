"""Database calls are bounded: a read past db_query_timeout fails at once and marks the database
down until the probe gets an answer; the server's own statement timeout is Unavailable too;
a call given up on is cancelled in the database, in the background."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from idnode.core.errors import Unavailable
from idnode.store.db import Database, Limits, create_pool
from tests.helpers import eventually


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[Database]:
    database = Database(await create_pool(dsn, min_size=1, max_size=2, statement_timeout=1.0),
                        Limits(query=0.3, statement=1.0, retry=0.1))
    try:
        yield database
    finally:
        await database.close()


async def sleeping(db: Database) -> int:
    return int(await db.pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'"
        " AND state = 'active' AND pid <> pg_backend_pid()"))


async def test_a_read_past_the_query_timeout_fails_marks_the_database_down_and_is_cancelled(
        db: Database) -> None:
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await db.fetchval("SELECT pg_sleep(5)")
    assert time.monotonic() - started < 1.0
    await eventually(lambda: _up(db), timeout=5)
    assert await db.fetchval("SELECT 1") == 1
    # the abandoned statement was cancelled, not left to run out its 5 s
    await eventually(lambda: _none_sleeping(db), timeout=3)


async def _up(db: Database) -> bool:
    return db.up


async def _none_sleeping(db: Database) -> bool:
    return await sleeping(db) == 0


async def test_the_servers_statement_timeout_is_unavailable_but_not_down(db: Database) -> None:
    with pytest.raises(Unavailable, match="did not finish in time"):
        await db.fetchval("SELECT pg_sleep(3)", timeout=db.write_timeout)
    assert db.up


async def test_a_transaction_given_up_on_commits_nothing_and_gives_its_connection_back(
        db: Database) -> None:
    with pytest.raises(Unavailable):
        async with db.transaction("abandoned") as conn:
            await conn.execute("CREATE TABLE kept_t (x int)")
            await conn.execute("SELECT pg_sleep(5)", timeout=0.2)
    await eventually(lambda: _up(db), timeout=5)
    assert await db.fetchval("SELECT to_regclass('kept_t') IS NULL")

    async def returned() -> bool:
        return db.pool_stats()[0] == db.pool_stats()[1]  # every connection idle

    await eventually(returned, timeout=5)
    assert await db.fetchval("SELECT 1") == 1


async def test_an_ordinary_error_is_not_unavailable(db: Database) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        await db.fetchval("SELECT * FROM no_such_table")
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.transaction("bad") as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert db.up
