"""Which database this is, as a string: processes on one host that compute the same string
use the same database (and share cache generations, idnode.cache_host)."""
from __future__ import annotations

import asyncpg


async def database_identity(conn: asyncpg.Connection) -> str:
    """Server address and port, database name and OID: the same for every connection to one
    database through one address (unix socket or TCP)."""
    row = await conn.fetchrow(
        "SELECT coalesce(host(inet_server_addr()), 'local'), coalesce(inet_server_port(), 0),"
        " current_database(), (SELECT oid FROM pg_database WHERE datname = current_database())")
    assert row is not None
    return f"{row[0]}:{row[1]}/{row[2]}#{row[3]}"
