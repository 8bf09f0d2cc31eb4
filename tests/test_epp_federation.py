"""EPP provisioning with real processes: `idnode top serve` (its BMS on mutual TLS) and
secondary nodes as subprocesses on their own databases. A SIGKILL of the node, then of the
top-level node, in the middle of shipping loses and duplicates nothing; the node's sync
status shows where it stands."""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from idnode.embedded import free_port
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.top import BmsStore, TopStore
from idnode.sync.bms import Bms
from idnode.sync.top import TopLevel
from tests.conftest import TEMPLATE, Keys
from tests.helpers import DelayProxy, eventually
from tests.nodeproc import NodeProcess, TopProcess, start_node, start_top
from tests.pki import Pki, make_pki
from tests.test_federation import _database, register, top_count

pytestmark = pytest.mark.slow
_n = itertools.count()


@dataclass
class EppFederation:
    top_dsn: str
    a_dsn: str
    grpc_port: int
    epp_port: int
    password: str
    pki: Pki
    top: TopProcess | None = None

    def top_env(self) -> dict[str, str]:
        return {"IDNODE_GRPC_TLS_CERT": str(self.pki.server_cert),
                "IDNODE_GRPC_TLS_KEY": str(self.pki.server_key),
                "IDNODE_GRPC_TLS_CLIENT_CA": str(self.pki.ca)}

    def start_top(self) -> TopProcess:
        self.top = start_top(self.top_dsn, self.grpc_port, epp_port=self.epp_port,
                             env=self.top_env())
        return self.top

    def node_env(self, epp_port: int | None = None) -> dict[str, str]:
        return {"IDNODE_NODE_PREFIX": "88.118",
                "IDNODE_UPSTREAM_EPP": f"127.0.0.1:{epp_port or self.epp_port}",
                "IDNODE_UPSTREAM_EPP_PASSWORD": self.password,
                "IDNODE_UPSTREAM_TLS_CA": str(self.pki.ca),
                "IDNODE_UPSTREAM_TLS_CERT": str(self.pki.client_cert),
                "IDNODE_UPSTREAM_TLS_KEY": str(self.pki.client_key),
                "IDNODE_UPSTREAM_EPP_TIMEOUT": "3", "IDNODE_SYNC_BATCH": "50"}

    def start_a(self, epp_port: int | None = None) -> NodeProcess:
        return start_node(self.a_dsn, env=self.node_env(epp_port), worker_id="a")


@pytest.fixture
async def efed(pg_server_dsn: str, template_dsn: str, tmp_path: Path
               ) -> AsyncIterator[EppFederation]:
    tag = f"{os.getpid()}_{next(_n)}"
    top_dsn = await _database(pg_server_dsn, f"idnode_etop_{tag}", None)
    a_dsn = await _database(pg_server_dsn, f"idnode_ea_{tag}", TEMPLATE)
    conn = await asyncpg.connect(top_dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    db = Database(await create_pool(top_dsn, min_size=1, max_size=1))
    await TopLevel(TopStore(db)).add_node("88.118")
    password = await Bms(BmsStore(db)).set_password("88.118")
    await db.close()
    f = EppFederation(top_dsn, a_dsn, free_port(), free_port(), password,
                      make_pki(tmp_path / "pki"))
    try:
        yield f
    finally:
        if f.top is not None:
            f.top.stop()
        admin = await asyncpg.connect(pg_server_dsn)
        for name in (f"idnode_etop_{tag}", f"idnode_ea_{tag}"):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_sigkill_of_node_then_top_mid_sync_loses_and_duplicates_nothing(
        efed: EppFederation, keys: Keys) -> None:
    # The top is down while 1,000 identifiers are registered: registration does not wait.
    proxy = DelayProxy(efed.epp_port, 0.05)  # slow enough for the kills to land mid-stream
    await proxy.start()
    a = efed.start_a(proxy.port)
    try:
        for i in range(20):
            await register(a.grpc, keys.writer, [f"88.118.8/EK-{i}-{j}" for j in range(50)],
                           f"ek-{i}")
        newest = await top_count(efed.a_dsn, "SELECT max(seq) FROM outbox")
        efed.start_top()

        async def progressed(beyond: int) -> bool:
            n = await top_count(efed.top_dsn, "SELECT count(*) FROM epp_transactions")
            return n > beyond

        await eventually(lambda: progressed(5), timeout=30, interval=0.01)
        a.stop(signal.SIGKILL)  # the node, mid-stream
        acked = await top_count(efed.a_dsn, "SELECT coalesce(max(acked_seq), 0) FROM sync_state")
        assert acked < newest
        a = efed.start_a(proxy.port)
        done = await top_count(efed.top_dsn, "SELECT count(*) FROM epp_transactions")
        await eventually(lambda: progressed(done + 5), timeout=30, interval=0.01)
        assert efed.top is not None
        efed.top.stop(signal.SIGKILL)  # then the top-level node, mid-stream
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM identifiers") < 1000
        proxy.delay = 0.0
        efed.start_top()

        async def synced() -> bool:
            return await top_count(efed.a_dsn, "SELECT coalesce(max(acked_seq), 0) FROM "
                                                "sync_state WHERE upstream LIKE 'epp://%'") \
                == newest
        await eventually(synced, timeout=90, interval=0.2)
        # Every identifier once, both enterprise prefixes, one transaction per command:
        # resends after the kills were answered from the kept transactions, never re-applied.
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM identifiers WHERE "
                                             "NOT deleted AND identifier LIKE '88.118.8/EK-%'") == 1000
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM enterprises") == 2
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM epp_transactions") == 1002
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM epp_transactions WHERE "
                                             "code <> 1000") == 0
        assert await top_count(efed.a_dsn, "SELECT count(*) FROM sync_notices") == 0
        status = subprocess.run(
            [sys.executable, "-m", "idnode", "sync", "status"], capture_output=True, text=True,
            timeout=60, env=dict(os.environ, IDNODE_DATABASE_URL=efed.a_dsn,
                                 IDNODE_LOG_LEVEL="WARNING", **efed.node_env(proxy.port)))
        assert status.returncode == 0, status.stderr
        assert f"upstream:        epp://127.0.0.1:{proxy.port}" in status.stdout
        assert "backlog:         0 event(s)" in status.stdout
        assert "refused:         0 command(s)" in status.stdout
    finally:
        a.stop()
        await proxy.stop()
