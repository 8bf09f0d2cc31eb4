"""The README's demo, as a new user runs it: `idnode serve --demo` loads a rice batch traced from
two fields to the shop, a unit's scan page shows the verified timeline, and an event changed in
the database behind the node's back turns the page's badge into a warning."""
from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from idnode import demo
from idnode.embedded import free_port
from tests.conftest import with_database
from tests.helpers import eventually, http_get
from tests.nodeproc import NodeProcess, _spawn

pytestmark = pytest.mark.slow


@pytest.fixture
async def demo_node(pg_server_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[NodeProcess, str]]:
    name = f"idnode_demo_{os.getpid()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    http, grpc_port = free_port(), free_port()
    proc, log, m = _spawn(
        ["serve", "--demo", "--migrate", "--http-port", str(http), "--grpc-port",
         str(grpc_port), "--handle-port", "0"], r"READY http=(\d+) grpc=(\d+)",
        {"IDNODE_DATABASE_URL": dsn, "IDNODE_DATA_DIR": str(tmp_path),
         "IDNODE_TRACE_VIEW_MAX_AGE": "0.2", "IDNODE_HTTP_RATE_LIMIT": "0"}, 90)
    node = NodeProcess(proc, int(m.group(1)), int(m.group(2)), log)
    try:
        yield node, dsn
    finally:
        node.stop()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def status(page: str) -> str:
    m = re.search(r'id="status"[^>]*data-status="(\w+)"', page)
    assert m, page[:2000]
    return m.group(1)


async def test_the_demo_rice_is_verified_and_tampering_shows(
        demo_node: tuple[NodeProcess, str]) -> None:
    node, dsn = demo_node
    unit = demo.UNITS[0]
    html = {"Accept": "text/html", "Accept-Language": "zh-CN,zh;q=0.9"}
    page = (await http_get(node.http, f"/{unit}", html)).body.decode()
    assert status(page) == "verified"
    # Every step from the two fields to the shop, fields first.
    kinds = re.findall(r'<li class="ev[^"]*"[^>]*data-leaf="\d+"', page)
    assert len(kinds) == len([e for e in demo.trace_events()
                              if e.identifier in (*demo.FIELDS, demo.BATCH, unit)])
    for text in ("FIELD-WC-A07", "井冈霉素", "HLJ-2026-10-0412", "盒马鲜生"):
        assert text in page, text
    trace = (await http_get(node.http, f"/api/trace/{unit}")).json()
    assert {link["parent"] for link in trace["lineage"]} == {demo.BATCH, *demo.FIELDS}

    # The README's tamper step: lower a pesticide dose in the database, bypassing the
    # append-only trigger as a database superuser could.
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            changed = await conn.execute(
                "UPDATE trace_events SET attrs = jsonb_set(attrs, '{dose_ml_per_mu}', '5')"
                " WHERE identifier = $1 AND kind = 'pesticide'", demo.FIELDS[0])
        assert changed == "UPDATE 1"
    finally:
        await conn.close()

    async def warned() -> str | None:
        page = (await http_get(node.http, f"/{unit}", html)).body.decode()
        return page if status(page) == "failed" else None
    page = await eventually(warned, timeout=10)
    assert re.search(r'<li class="ev bad"', page)
    # Other bags of the same batch share the fields' history, so they warn too.
    other = (await http_get(node.http, f"/{demo.UNITS[1]}", html)).body.decode()
    assert status(other) == "failed"
