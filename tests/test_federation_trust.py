"""Trust between a secondary node and the top-level node: mutual TLS on the upstream channel
(plaintext refused wherever TLS is configured), the trust anchor pinned in configuration (a
top presenting another one is refused), and TLS for the CLI's gRPC calls."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import orjson
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idnode import keys as keyrings
from idnode.config import Settings
from idnode.node import Node
from idnode.topnode import TopNode
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.top import TopStore
from idnode.sync.top import TopLevel
from tests.conftest import make_settings, with_database
from tests.helpers import eventually, http_get
from tests.pki import Pki, make_pki

NODE = "0.118"


@pytest.fixture
async def top_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"idnode_top_trust_{os.getpid()}_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    try:
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def admit(top_dsn: str) -> str:
    db = Database(await create_pool(top_dsn, min_size=1, max_size=1))
    try:
        return await TopLevel(TopStore(db)).add_node(NODE)
    finally:
        await db.close()


async def top_value(top_dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(top_dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def top_settings(tmp_path: Path, pki: Pki | None = None) -> Settings:
    tls = {} if pki is None else {"grpc_tls_cert": str(pki.server_cert),
                                  "grpc_tls_key": str(pki.server_key),
                                  "grpc_tls_client_ca": str(pki.ca)}
    return make_settings(data_dir=tmp_path / "top", **tls)


def pin(tmp_path: Path, jwks: dict[str, object], name: str = "anchor.json") -> str:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(jwks))
    return str(path)


async def health(channel: grpc.aio.Channel) -> int:
    resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=5)
    return int(resp.status)


async def test_node_and_top_speak_mutual_tls_under_the_pinned_anchor(
        dsn: str, top_dsn: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    ts = top_settings(tmp_path, pki)
    anchor = keyrings.keyring(ts, "top-anchor").jwks()
    top = TopNode(ts, top_dsn)
    await top.start()
    node = Node(make_settings(
        node_prefix=NODE, upstream_grpc=f"127.0.0.1:{top.port}",
        upstream_token=await admit(top_dsn), upstream_tls_ca=str(pki.ca),
        upstream_tls_cert=str(pki.client_cert), upstream_tls_key=str(pki.client_key),
        anchor_jwks=pin(tmp_path, anchor)), dsn)
    await node.start()
    try:
        assert node.upstream is not None and node.upstream.tls
        # Registered and shipping over mutual TLS; the trust document carries the pinned anchor.
        shipper = node.shipper
        assert shipper is not None

        async def shipped() -> bool:
            return shipper.acked > 0 and shipper.backlog == 0
        await eventually(shipped, timeout=15)
        assert await top_value(top_dsn, "SELECT count(*) FROM nodes WHERE registered_at "
                                        "IS NOT NULL") == 1
        trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
        assert trust["anchor_jwks"] == anchor and trust["key_statements"]
        metrics = (await http_get(node.ports.metrics, "/metrics")).body.decode()
        assert "\nidnode_remote_locations" in metrics
        # Plaintext to the TLS top: refused (the handshake never completes).
        async with grpc.aio.insecure_channel(f"127.0.0.1:{top.port}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health(ch)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # TLS without a client certificate: refused too (every caller of the top is a node).
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{top.port}", creds) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health(ch)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # With one, it answers.
        creds = grpc.ssl_channel_credentials(pki.ca.read_bytes(), pki.client_key.read_bytes(),
                                             pki.client_cert.read_bytes())
        async with grpc.aio.secure_channel(f"127.0.0.1:{top.port}", creds) as ch:
            assert await health(ch) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)


async def test_a_node_with_upstream_tls_refuses_a_plaintext_top(
        dsn: str, top_dsn: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    top = TopNode(top_settings(tmp_path), top_dsn)  # no TLS
    await top.start()
    node = Node(make_settings(node_prefix=NODE, upstream_grpc=f"127.0.0.1:{top.port}",
                              upstream_token=await admit(top_dsn),
                              upstream_tls_ca=str(pki.ca)), dsn)
    await node.start()
    try:
        shipper = node.shipper
        assert shipper is not None

        async def failed() -> str:
            return shipper.last_error
        error = await eventually(failed, timeout=15)
        assert "UNAVAILABLE" in error, error
        # The token never reached the top in the clear: nothing registered, nothing shipped.
        assert await top_value(top_dsn, "SELECT count(*) FROM nodes WHERE registered_at "
                                        "IS NOT NULL") == 0
        assert await top_value(top_dsn, "SELECT count(*) FROM events") == 0
        assert not shipper.registered
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)


async def test_a_top_presenting_another_anchor_is_refused_loudly(
        dsn: str, top_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Someone on the path (or a top that was replaced) certifies with its own anchor: the
    node keeps the anchor it was configured with, registers with no one and ships nothing."""
    ts = top_settings(tmp_path)
    top = TopNode(ts, top_dsn)
    await top.start()
    pinned = keyrings.keyring(make_settings(data_dir=tmp_path / "real-top"), "top-anchor").jwks()
    node = Node(make_settings(node_prefix=NODE, upstream_grpc=f"127.0.0.1:{top.port}",
                              upstream_token=await admit(top_dsn),
                              anchor_jwks=pin(tmp_path, pinned)), dsn)
    caplog.set_level(logging.ERROR, logger="idnode.node")
    await node.start()
    try:
        shipper = node.shipper
        assert shipper is not None

        async def failed() -> str:
            return shipper.last_error
        error = await eventually(failed, timeout=15)
        assert "wrong_anchor" in error and "pinned anchor_jwks" in error, error
        assert any(r.levelno == logging.ERROR and "REFUSED the top-level node" in r.getMessage()
                   for r in caplog.records)
        assert not shipper.registered
        assert await top_value(top_dsn, "SELECT count(*) FROM events") == 0
        # Nothing from the impostor was taken: remote records are still checked against the
        # pinned anchor, and the node publishes no trust document naming another anchor.
        assert node.resolver is not None and node.resolver.remote is not None
        assert node.resolver.remote.anchor_jwks == pinned
        assert (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).status == 404
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)


async def test_without_a_pinned_anchor_none_is_learned_from_the_top(
        dsn: str, top_dsn: str, tmp_path: Path) -> None:
    top = TopNode(top_settings(tmp_path), top_dsn)
    await top.start()
    node = Node(make_settings(node_prefix=NODE, upstream_grpc=f"127.0.0.1:{top.port}",
                              upstream_token=await admit(top_dsn)), dsn)
    await node.start()
    try:
        shipper = node.shipper
        assert shipper is not None

        async def registered() -> bool:
            return shipper.registered
        await eventually(registered, timeout=15)
        assert node.resolver is not None and node.resolver.remote is not None
        assert node.resolver.remote.anchor_jwks is None
        trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
        assert "anchor_jwks" not in trust and trust["key_statements"]
        # So another node's record cannot be checked, and is not served.
        resp = await http_get(node.ports.http, "/api/handles/0.200.1/X")
        assert resp.status in (404, 503), resp.status
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)


def test_a_wrong_anchor_file_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"keys": []}')
    with pytest.raises(ValueError, match="at least one key"):
        Node(make_settings(upstream_grpc="127.0.0.1:1", anchor_jwks=str(tmp_path / "a.json")),
             "postgresql://unused")
    with pytest.raises(ValueError, match="anchor_jwks"):
        Node(make_settings(upstream_grpc="127.0.0.1:1", anchor_jwks=str(tmp_path / "none")),
             "postgresql://unused")


async def cli(*args: str, stdout_only: bool = False, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "idnode", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL if stdout_only else asyncio.subprocess.STDOUT,
        env=dict(os.environ, IDNODE_LOG_LEVEL="WARNING", **env))
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_cli_speaks_tls_to_a_tls_node(dsn: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    node = Node(make_settings(grpc_tls_cert=str(pki.server_cert),
                              grpc_tls_key=str(pki.server_key)), dsn)
    await node.start()
    try:
        where = f"127.0.0.1:{node.ports.grpc}"
        # Plaintext to a TLS node: refused.
        code, out = await cli("resolve", "0.118.8/NONE", "--grpc", where)
        assert code == 1 and "UNAVAILABLE" in out, out
        # With the CA (flag or setting) the call goes through, and gets the node's answer.
        code, out = await cli("resolve", "0.118.8/NONE", "--grpc", where, "--tls-ca",
                              str(pki.ca))
        assert code == 1 and "NOT_FOUND" in out, out
        code, out = await cli("resolve", "0.118.8/NONE", "--grpc", where,
                              IDNODE_CLIENT_TLS_CA=str(pki.ca))
        assert code == 1 and "NOT_FOUND" in out, out
        # A CA that did not sign the node's certificate: refused.
        other = make_pki(tmp_path / "other", tag="other")
        code, out = await cli("resolve", "0.118.8/NONE", "--grpc", where, "--tls-ca",
                              str(other.ca))
        assert code == 1 and "UNAVAILABLE" in out, out
    finally:
        await node.stop(grace=1)


async def test_top_anchor_prints_what_nodes_pin(tmp_path: Path) -> None:
    code, out = await cli("top", "anchor", stdout_only=True,
                          IDNODE_DATA_DIR=str(tmp_path / "top"))
    assert code == 0, out
    ts = make_settings(data_dir=tmp_path / "top")
    assert orjson.loads(out) == keyrings.keyring(ts, "top-anchor").jwks()


async def test_verify_takes_no_anchor_over_plain_http(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("{}")
    (tmp_path / "t.json").write_text("{}")
    code, out = await cli("verify", str(tmp_path / "r.json"), "--trust", str(tmp_path / "t.json"),
                          "--anchor", "http://127.0.0.1:1/anchor.json")
    assert code == 2 and "not plain http" in out, out
