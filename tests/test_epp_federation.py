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

import orjson

from idnode import keys as keyrings
from idnode.embedded import free_port
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.top import BmsStore, TopStore
from idnode.sync.bms import Bms
from idnode.sync.top import TopLevel
from tests.conftest import TEMPLATE, Keys, make_settings, with_database
from tests.helpers import DelayProxy, eventually, http_get
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
    b_dsn: str = ""
    b_password: str = ""
    tokens: dict[str, str] | None = None
    anchor_file: str = ""
    top: TopProcess | None = None

    def top_env(self) -> dict[str, str]:
        return {"IDNODE_GRPC_TLS_CERT": str(self.pki.server_cert),
                "IDNODE_GRPC_TLS_KEY": str(self.pki.server_key),
                "IDNODE_GRPC_TLS_CLIENT_CA": str(self.pki.ca)}

    def start_top(self, escrow_port: int = -1) -> TopProcess:
        self.top = start_top(self.top_dsn, self.grpc_port, epp_port=self.epp_port,
                             escrow_port=escrow_port, env=self.top_env())
        return self.top

    def node_env(self, epp_port: int | None = None) -> dict[str, str]:
        return {"IDNODE_NODE_PREFIX": "0.118",
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
    b_dsn = await _database(pg_server_dsn, f"idnode_eb_{tag}", TEMPLATE)
    db = Database(await create_pool(top_dsn, min_size=1, max_size=1))
    tokens = {p: await TopLevel(TopStore(db)).add_node(p) for p in ("0.118", "0.200")}
    password = await Bms(BmsStore(db)).set_password("0.118")
    b_password = await Bms(BmsStore(db)).set_password("0.200")
    await db.close()
    # B is another province's node: its outbox still claims A's prefixes (cloned from the
    # template), which the BMS must refuse.
    conn = await asyncpg.connect(b_dsn)
    await conn.execute("DELETE FROM prefixes")
    await conn.close()
    anchor = tmp_path / "anchor.jwks.json"
    anchor.write_bytes(orjson.dumps(keyrings.keyring(make_settings(), "top-anchor").jwks()))
    f = EppFederation(top_dsn, a_dsn, free_port(), free_port(), password,
                      make_pki(tmp_path / "pki"), b_dsn, b_password, tokens, str(anchor))
    try:
        yield f
    finally:
        if f.top is not None:
            f.top.stop()
        admin = await asyncpg.connect(pg_server_dsn)
        for name in (f"idnode_etop_{tag}", f"idnode_ea_{tag}", f"idnode_eb_{tag}"):
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
            await register(a.grpc, keys.writer, [f"0.118.8/EK-{i}-{j}" for j in range(50)],
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
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM identifiers WHERE NOT "
                                             "deleted AND identifier LIKE '0.118.8/EK-%'") == 1000
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


def idnode(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "idnode", *args], capture_output=True,
                          text=True, timeout=120,
                          env=dict(os.environ, IDNODE_LOG_LEVEL="WARNING", **env))


async def test_two_nodes_provision_escrow_restore_and_answer_iiidap(
        efed: EppFederation, keys: Keys, pg_server_dsn: str, tmp_path: Path) -> None:
    """The federation of the issue's "done when": a top-level node (BMS, escrow reports,
    gRPC for what the drafts do not cover) and two secondary nodes on one machine."""
    import pysequoia as pgp

    top = efed.start_top(escrow_port=0)
    agent = pgp.Tsk.generate("escrow agent <dea@example.invalid>")
    (tmp_path / "agent.asc").write_text(str(agent))
    (tmp_path / "agent.pub.asc").write_text(str(agent.extract_certificate()))
    assert efed.tokens is not None
    grpc_env = {"IDNODE_UPSTREAM_GRPC": f"127.0.0.1:{efed.grpc_port}",
                "IDNODE_ANCHOR_JWKS": efed.anchor_file, "IDNODE_HEARTBEAT_INTERVAL": "0.3"}
    a_env = {**efed.node_env(), **grpc_env, "IDNODE_UPSTREAM_TOKEN": efed.tokens["0.118"],
             "IDNODE_ESCROW_AGENT_CERT": str(tmp_path / "agent.pub.asc"),
             "IDNODE_ESCROW_DIR": str(tmp_path / "escrow"),
             "IDNODE_ESCROW_REPORT_URL": f"https://127.0.0.1:{top.escrow}/report/escrow"}
    b_env = {**efed.node_env(), **grpc_env, "IDNODE_NODE_PREFIX": "0.200",
             "IDNODE_UPSTREAM_TOKEN": efed.tokens["0.200"],
             "IDNODE_UPSTREAM_EPP_CLIENT_ID": "0.200",
             "IDNODE_UPSTREAM_EPP_PASSWORD": efed.b_password}
    a = start_node(efed.a_dsn, env=a_env, worker_id="a")
    b = start_node(efed.b_dsn, env=b_env, worker_id="b")
    try:
        await register(a.grpc, keys.writer, [f"0.118.8/FED-{i:02d}" for i in range(20)], "f-1")

        async def provisioned() -> bool:
            return await top_count(efed.top_dsn, "SELECT count(*) FROM identifiers WHERE "
                                                 "node_prefix = '0.118'") == 20
        await eventually(provisioned, timeout=30)
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM enterprises WHERE "
                                             "node_prefix = '0.118'") == 2

        async def b_refused() -> bool:
            return await top_count(efed.b_dsn, "SELECT count(*) FROM sync_notices WHERE "
                                               "kind = 'refused' AND code = 2201") == 2
        await eventually(b_refused, timeout=30)

        # IIIDAP at A, and at B for A's identifier (located through the top, checked
        # against the pinned anchor, as every cross-node answer is).
        doc = (await http_get(a.http, "/iiidap/identifier/0.118.8/FED-03")).json()
        assert doc["objectClassName"] == "identifier" and doc["handle"] == "0.118.8/FED-03"

        async def through_b() -> bool:
            resp = await http_get(b.http, "/iiidap/identifier/0.118.8/FED-04")
            return resp.status == 200 and resp.json()["node"] == "0.118"
        await eventually(through_b, timeout=20)

        # Escrow: a full deposit, more registrations, an incremental one; both reported.
        full = idnode("escrow", "deposit", "--full", env={**a_env,
                                                          "IDNODE_DATABASE_URL": efed.a_dsn})
        assert full.returncode == 0, full.stderr
        assert "FULL" in full.stdout and "report: accepted" in full.stdout
        await register(a.grpc, keys.writer, [f"0.118.8/FED-{i:02d}" for i in range(20, 25)],
                       "f-2")
        incr = idnode("escrow", "deposit", "--incremental",
                      env={**a_env, "IDNODE_DATABASE_URL": efed.a_dsn})
        assert incr.returncode == 0, incr.stderr
        assert "DIFF" in incr.stdout and "report: accepted" in incr.stdout
        assert await top_count(efed.top_dsn, "SELECT count(*) FROM escrow_reports WHERE "
                                             "node_prefix = '0.118'") == 2
        files = sorted((tmp_path / "escrow").glob("*.ryde"))
        assert len(files) == 2
        key = ["--signer-cert", str(tmp_path / "escrow" / "signing-key.pub.asc"),
               "--agent-key", str(tmp_path / "agent.asc")]
        for f in files:
            ok = idnode("escrow", "verify", str(f), *key, env={})
            assert ok.returncode == 0, ok.stderr
        # Restore into an empty database: A's identifiers, all of them.
        name = f"idnode_erestore_{os.getpid()}"
        admin = await asyncpg.connect(pg_server_dsn)
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            restore_dsn = with_database(pg_server_dsn, name)
            conn = await asyncpg.connect(restore_dsn)
            await migrations.migrate(conn)
            await conn.close()
            full_file = next(f for f in files if "_full_" in f.name)
            diff_file = next(f for f in files if "_diff_" in f.name)
            done = idnode("escrow", "restore", str(full_file), str(diff_file), *key,
                          env={"IDNODE_DATABASE_URL": restore_dsn})
            assert done.returncode == 0, done.stderr
            assert "25 identifier(s)" in done.stdout
            assert await top_count(restore_dsn, "SELECT count(*) FROM handles") == 25
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await admin.close()
    finally:
        a.stop()
        b.stop()
