"""Schema migrations: ordered sql/NNNN_name.sql files, applied once each, under an advisory lock."""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
#: The reference top-level node's own schema (a database of its own).
TOP_SQL_DIR = SQL_DIR / "top"
_NAME_RE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql\Z")
# Any constant shared by every idnode process: two processes never migrate at once.
_LOCK_KEY = 0x1D_0DE_5C4E


class SchemaError(Exception):
    """The database schema is newer than this code, or a landed migration was edited."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available(sql_dir: Path = SQL_DIR) -> list[Migration]:
    out = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _NAME_RE.match(path.name)
        if m is None:
            raise SchemaError(f"migration file {path.name} is not named NNNN_name.sql")
        out.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in out]
    if versions != list(range(1, len(out) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return out


SCHEMA_VERSION = len(available())

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


async def current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def migrate(conn: asyncpg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Applies pending migrations, each in its own transaction; returns the names applied."""
    migrations = available(sql_dir)
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        newest = max(done, default=0)
        if newest > len(migrations):
            raise SchemaError(f"database schema version {newest} is newer than this idnode "
                              f"knows ({len(migrations)}); upgrade idnode")
        for m in migrations:
            if m.version in done:
                if done[m.version] != m.checksum:
                    raise SchemaError(f"migration {m.version:04d}_{m.name} changed after it was "
                                      "applied; landed migrations are never edited")
                continue
            async with conn.transaction():
                # Fail fast instead of queueing behind long transactions on a live database.
                await conn.execute("SET LOCAL lock_timeout = '10s'")
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version, m.name, m.checksum)
            log.info("migration applied version=%d name=%s", m.version, m.name)
            applied.append(f"{m.version:04d}_{m.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied


async def migrate_dsn(dsn: str, sql_dir: Path = SQL_DIR) -> list[str]:
    """As `migrate`, on a connection of its own to `dsn` (closed before it returns)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, sql_dir)
    finally:
        await conn.close()


async def check_compatible(conn: asyncpg.Connection, sql_dir: Path = SQL_DIR) -> int:
    """Refuses a database whose schema is newer than, or behind, this code's migrations."""
    known = len(available(sql_dir))
    version = await current_version(conn)
    if version > known:
        raise SchemaError(f"database schema version {version} is newer than this idnode knows "
                          f"({known}); upgrade idnode before serving")
    if version < known:
        raise SchemaError(f"database schema version {version} is behind {known}; "
                          "run `idnode migrate`")
    return version
