"""Fixtures that start real things: an ephemeral PostgreSQL (or $IDNODE_TEST_DSN), a migrated
template database cloned per test, and the node's gRPC and HTTP servers on free loopback ports."""
from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest

from idnode.config import Settings
from idnode.embedded import EmbeddedPostgres, free_port
from idnode.node import Node
from idnode.store import migrations
from idnode.v1 import registry_pb2_grpc

TEMPLATE = "idnode_test_template"
PREFIX = "88.118.8"
_counter = itertools.count()


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """A PostgreSQL server for the whole run: $IDNODE_TEST_DSN, or an embedded one we start."""
    given = os.environ.get("IDNODE_TEST_DSN")
    if given:
        yield given
        return
    tmp = Path(tempfile.mkdtemp(prefix="idnode-test-pg-"))
    pg = EmbeddedPostgres(tmp, free_port(), durable=False)
    try:
        yield pg.start()
    finally:
        pg.destroy()


@pytest.fixture(scope="session")
def template_dsn(pg_server_dsn: str) -> str:
    async def build() -> None:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await admin.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(with_database(pg_server_dsn, TEMPLATE))
        try:
            await migrations.migrate(conn)
            await conn.execute("INSERT INTO prefixes (prefix) VALUES ($1)", PREFIX)
        finally:
            await conn.close()

    asyncio.run(build())
    return with_database(pg_server_dsn, TEMPLATE)


@pytest.fixture
async def dsn(pg_server_dsn: str, template_dsn: str) -> AsyncIterator[str]:
    """A fresh, migrated database (holding prefix 88.118.8) for one test."""
    name = f"idnode_t{os.getpid()}_{next(_counter)}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    yield with_database(pg_server_dsn, name)
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def make_settings(**overrides: object) -> Settings:
    base = Settings(http_port=0, grpc_port=0, db_pool_min=1, db_pool_max=4, log_level="WARNING")
    return base.with_overrides(**overrides)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def node(dsn: str, settings: Settings) -> AsyncIterator[Node]:
    n = Node(settings, dsn)
    await n.start()
    try:
        yield n
    finally:
        await n.stop(grace=1)


@pytest.fixture
async def stub(node: Node) -> AsyncIterator[registry_pb2_grpc.RegistryStub]:
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{node.ports.grpc}",
            options=[("grpc.max_send_message_length", 64 << 20),
                     ("grpc.max_receive_message_length", 64 << 20)]) as channel:
        yield registry_pb2_grpc.RegistryStub(channel)


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection, for checking what the node did (or did not) write."""
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()
