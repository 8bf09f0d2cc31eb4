"""Schema migrations: applied once, locked, and a newer database is refused."""
from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from idnode.node import Node
from idnode.store import migrations
from idnode.dsn import with_database
from idnode.store.migrations import SchemaError
from tests.conftest import make_settings


async def test_migrate_is_idempotent(db: asyncpg.Connection) -> None:
    assert await migrations.migrate(db) == []
    assert await migrations.current_version(db) == migrations.SCHEMA_VERSION


async def test_fresh_database_gets_every_migration(pg_server_dsn: str) -> None:
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute("DROP DATABASE IF EXISTS idnode_fresh WITH (FORCE)")
    await admin.execute("CREATE DATABASE idnode_fresh")
    try:
        conn = await asyncpg.connect(with_database(pg_server_dsn, "idnode_fresh"))
        try:
            applied = await migrations.migrate(conn)
            assert applied == [f"{m.version:04d}_{m.name}" for m in migrations.available()]
            partitions = await conn.fetchval(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'handles'::regclass")
            assert partitions == 16
        finally:
            await conn.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS idnode_fresh WITH (FORCE)")
        await admin.close()


async def test_node_refuses_a_newer_schema(dsn: str, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, 'future', '')",
                     migrations.SCHEMA_VERSION + 1)
    node = Node(make_settings(), dsn)
    with pytest.raises(SchemaError, match="newer than this idnode knows"):
        await node.start()
    with pytest.raises(SchemaError, match="newer"):
        await migrations.migrate(db)


async def test_edited_migration_is_detected(db: asyncpg.Connection, tmp_path: Path) -> None:
    for m in migrations.available():
        (tmp_path / f"{m.version:04d}_{m.name}.sql").write_text(m.sql + "\n-- edited\n")
    with pytest.raises(SchemaError, match="changed after it was applied"):
        await migrations.migrate(db, tmp_path)


def test_migration_files_are_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(SchemaError, match="without gaps"):
        migrations.available(tmp_path)
