"""A top-level node and two secondary nodes as separate processes with separate databases:
upward sync through the outbox, heartbeats, resolution across nodes, and the fault cases."""
from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import pytest

from idnode import keys as keyrings
from idnode.crypto.batch import bundle, sign_batch
from idnode.crypto.jcs import canonicalize
from idnode.crypto.keys import SigningKey
from idnode.embedded import free_port
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.top import TopStore
from idnode.sync.top import TopLevel
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import TEMPLATE, Keys, channel, make_settings, with_database
from tests.helpers import DelayProxy, eventually, http_get, record_input
from tests.nodeproc import NodeProcess, TopProcess, start_node, start_top

pytestmark = pytest.mark.slow
_n = itertools.count()


@dataclass
class Federation:
    top_dsn: str
    top_port: int
    a_dsn: str
    b_dsn: str
    tokens: dict[str, str]
    #: The top's anchor JWKS, pinned by the nodes (anchor_jwks), as an operator hands it over.
    anchor_file: str = ""
    top: TopProcess | None = None

    def node_env(self, node_prefix: str, upstream_port: int | None = None) -> dict[str, str]:
        return {"IDNODE_NODE_PREFIX": node_prefix,
                "IDNODE_UPSTREAM_GRPC": f"127.0.0.1:{upstream_port or self.top_port}",
                "IDNODE_UPSTREAM_TOKEN": self.tokens[node_prefix],
                "IDNODE_HEARTBEAT_INTERVAL": "0.3", "IDNODE_SYNC_BATCH": "10",
                "IDNODE_ANCHOR_JWKS": self.anchor_file}

    def start_a(self, **kw: int) -> NodeProcess:
        return start_node(self.a_dsn, env=self.node_env("0.118", **kw), worker_id="a")

    def start_b(self) -> NodeProcess:
        return start_node(self.b_dsn, env=self.node_env("0.200"), worker_id="b")


async def _database(server: str, name: str, template: str | None) -> str:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template
                                                          else ""))
    finally:
        await admin.close()
    return with_database(server, name)


@pytest.fixture
async def fed(pg_server_dsn: str, template_dsn: str, tmp_path: Path
              ) -> AsyncIterator[Federation]:
    tag = f"{os.getpid()}_{next(_n)}"
    top_dsn = await _database(pg_server_dsn, f"idnode_top_{tag}", None)
    a_dsn = await _database(pg_server_dsn, f"idnode_a_{tag}", TEMPLATE)
    b_dsn = await _database(pg_server_dsn, f"idnode_b_{tag}", TEMPLATE)
    conn = await asyncpg.connect(top_dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    # B is another province's node: it holds none of A's prefixes (its outbox still claims
    # them, cloned from the template: the top-level node must refuse those claims).
    conn = await asyncpg.connect(b_dsn)
    await conn.execute("DELETE FROM prefixes")
    await conn.close()
    db = Database(await create_pool(top_dsn, min_size=1, max_size=1))
    top = TopLevel(TopStore(db))
    tokens = {p: await top.add_node(p) for p in ("0.118", "0.200", "0.250")}
    await db.close()
    # The top process uses the same data_dir (IDNODE_DATA_DIR): this is its anchor.
    anchor = tmp_path / "anchor.jwks.json"
    anchor.write_bytes(orjson.dumps(keyrings.keyring(make_settings(), "top-anchor").jwks()))
    f = Federation(top_dsn, free_port(), a_dsn, b_dsn, tokens, str(anchor))
    f.top = start_top(top_dsn, f.top_port)
    try:
        yield f
    finally:
        if f.top is not None:
            f.top.stop()
        admin = await asyncpg.connect(pg_server_dsn)
        for name in (f"idnode_top_{tag}", f"idnode_a_{tag}", f"idnode_b_{tag}"):
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def anchored(node: NodeProcess) -> None:
    """Waits until the node has registered upward under its pinned anchor (it publishes no
    trust document until then)."""
    async def ready() -> bool:
        resp = await http_get(node.http, "/.well-known/idnode-trust.json")
        return resp.status == 200 and bool(resp.json().get("anchor_jwks", {}).get("keys"))
    await eventually(ready, timeout=15)


async def register(port: int, key: str, ids: list[str], idem: str) -> float:
    started = time.monotonic()
    async with channel(port, key) as ch:
        await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key=idem, records=[record_input(i, product__name=i) for i in ids]))
    return time.monotonic() - started


async def top_count(dsn: str, sql: str, *args: object) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def outbox_newest(dsn: str) -> int:
    return await top_count(dsn, "SELECT coalesce(max(seq), 0) FROM outbox")


async def synced(fed: Federation, dsn: str, node: str) -> bool:
    newest = await outbox_newest(dsn)
    acked = await top_count(fed.top_dsn, "SELECT coalesce(max(seq), 0) FROM events "
                                         "WHERE node_prefix = $1", node)
    return acked == newest


async def test_register_on_a_resolve_through_b(fed: Federation, keys: Keys) -> None:
    a, b = fed.start_a(), fed.start_b()
    try:
        ids = [f"0.118.8/FED-{i:03d}" for i in range(20)]
        await register(a.grpc, keys.writer, ids, "fed-1")
        await eventually(lambda: synced(fed, fed.a_dsn, "0.118"), timeout=15)
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM identifiers WHERE "
                                            "node_prefix = '0.118' AND NOT deleted") == 20
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM node_prefixes WHERE "
                                            "node_prefix = '0.118'") == 2
        # B's cloned claims on A's prefixes were refused, and Locate still points at A.
        await eventually(lambda: synced(fed, fed.b_dsn, "0.200"), timeout=15)
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM events WHERE node_prefix = "
                                            "'0.200' AND outcome LIKE 'refused%'") >= 2

        await anchored(b)
        resp = await http_get(b.http, "/api/handles/0.118.8/FED-007")
        assert resp.status == 200, resp.body
        # B checked A's signature against the top-level anchor before serving, and passes
        # the signed record on unchanged.
        doc = (await http_get(b.http, "/0.118.8/FED-007", {"Accept": "application/json"})).json()
        assert doc["node"] == "0.118" and doc["signature"]["jws"]
        assert resp.json()["values"][0]["data"]["value"] == "0.118.8/FED-007"
        async with channel(b.grpc, None) as ch:
            rec = await registry_pb2_grpc.RegistryStub(ch).Resolve(
                pb.ResolveRequest(identifier="0.118.8/FED-001"))
            assert rec.version == 1 and rec.values[0].data == "0.118.8/FED-001"
        assert (await http_get(b.http, "/api/handles/0.118.8/NOT-THERE")).status == 404
        unknown = await http_get(b.http, "/api/handles/0.999.1/X")
        assert unknown.status == 404 and unknown.json()["reason"] == "PREFIX_NOT_FOUND"

        async def stats_arrived() -> bool:
            return await top_count(fed.top_dsn, "SELECT coalesce(sum(registrations), 0) FROM "
                                                "stats WHERE node_prefix = '0.118'") == 20
        await eventually(stats_arrived, timeout=10)

        async def resolutions_arrived() -> bool:
            # B fetched two records from A: A counted those resolutions.
            return await top_count(fed.top_dsn, "SELECT coalesce(sum(resolutions), 0) FROM "
                                                "stats WHERE node_prefix = '0.118'") >= 2
        await eventually(resolutions_arrived, timeout=10)

        async def both_beating() -> bool:
            return await top_count(fed.top_dsn, "SELECT count(*) FROM nodes WHERE "
                                                "last_heartbeat_at IS NOT NULL") == 2
        await eventually(both_beating, timeout=10)
    finally:
        a.stop()
        b.stop()


async def test_top_level_node_down_loses_and_duplicates_nothing(fed: Federation,
                                                               keys: Keys) -> None:
    a = fed.start_a()
    try:
        await eventually(lambda: synced(fed, fed.a_dsn, "0.118"), timeout=15)
        assert fed.top is not None
        fed.top.stop(signal.SIGKILL)
        durations = [await register(a.grpc, keys.writer, [f"0.118.8/DOWN-{i}-{j}"
                                                          for j in range(50)], f"down-{i}")
                     for i in range(20)]
        assert max(durations) < 2.0, "registration must not wait for the top-level node"

        async def backlog_shown() -> bool:
            text = (await http_get(a.metrics, "/metrics")).body.decode()
            return 'idnode_sync_backlog_events{worker="a"} 0' not in text and \
                "idnode_sync_backlog_events" in text
        await eventually(backlog_shown, timeout=15)
        fed.top = start_top(fed.top_dsn, fed.top_port)
        await eventually(lambda: synced(fed, fed.a_dsn, "0.118"), timeout=60, interval=0.2)
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM identifiers WHERE identifier "
                                            "LIKE '0.118.8/DOWN-%'") == 1000
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM events WHERE node_prefix = "
                               "'0.118'") == await top_count(fed.a_dsn,
                                                              "SELECT count(*) FROM outbox")
    finally:
        a.stop()


async def test_sigkill_while_shipping_resumes_at_the_right_place(fed: Federation,
                                                                 keys: Keys) -> None:
    assert fed.top is not None
    fed.top.stop(signal.SIGKILL)
    a = fed.start_a()
    for i in range(60):
        await register(a.grpc, keys.writer, [f"0.118.8/K-{i}-{j}" for j in range(20)], f"k-{i}")
    newest = await outbox_newest(fed.a_dsn)
    # Slow the top-level node down so the kill lands mid-stream.
    proxy = DelayProxy(fed.top_port, 0.05)
    await proxy.start()
    a.stop()
    a = fed.start_a(upstream_port=proxy.port)
    fed.top = start_top(fed.top_dsn, fed.top_port)
    try:
        async def partly() -> bool:
            acked = await top_count(fed.top_dsn, "SELECT coalesce(max(seq), 0) FROM events "
                                                 "WHERE node_prefix = '0.118'")
            return 0 < acked < newest
        await eventually(partly, timeout=30, interval=0.01)
        a.stop(signal.SIGKILL)
        acked_then = await top_count(fed.a_dsn, "SELECT coalesce(max(acked_seq), 0) FROM "
                                                "sync_state")
        assert acked_then < newest
        a = fed.start_a()
        await eventually(lambda: synced(fed, fed.a_dsn, "0.118"), timeout=60, interval=0.2)
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM identifiers WHERE identifier "
                                            "LIKE '0.118.8/K-%'") == 1200
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM events WHERE node_prefix = "
                               "'0.118'") == await top_count(fed.a_dsn,
                                                              "SELECT count(*) FROM outbox")
    finally:
        a.stop()
        await proxy.stop()


async def test_slow_network_to_the_top_does_not_slow_registration(fed: Federation,
                                                                  keys: Keys) -> None:
    proxy = DelayProxy(fed.top_port, 0.5)
    await proxy.start()
    a = fed.start_a(upstream_port=proxy.port)
    try:
        durations = [await register(a.grpc, keys.writer, [f"0.118.8/SLOW-{i}-{j}"
                                                          for j in range(100)], f"slow-{i}")
                     for i in range(10)]
        assert max(durations) < 1.0, durations
        await eventually(lambda: synced(fed, fed.a_dsn, "0.118"), timeout=60, interval=0.2)
    finally:
        a.stop()
        await proxy.stop()


async def test_misrouted_and_malformed_peer_answers_are_refused(fed: Federation) -> None:
    """A peer at 0.250 that answers with another identifier's record, and a route back to
    the asking node itself: precise errors in bounded time, never a hang."""
    forger = SigningKey.generate()

    async def fake_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        doc = {"identifier": "0.250.1/OTHER", "node": "0.250", "version": 1,
               "created": "2026-01-01T00:00:00.000Z", "updated": "2026-01-01T00:00:00.000Z",
               "values": [{"index": 1, "type": "product.name", "ttl": 86400,
                           "data": {"format": "string", "value": "假冒"},
                           "timestamp": "2026-01-01T00:00:00.000Z"}]}
        if b"FORGED" in head:
            # The right identifier, signed by a key no anchor certified.
            doc["identifier"] = "0.250.1/FORGED"
            signed = sign_batch([canonicalize(doc)], forger, "0.250")
            doc["signature"] = bundle(signed.jws, 0, signed.proofs[0])
        body = orjson.dumps(doc)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(fake_peer, "127.0.0.1", 0)
    peer_port = server.sockets[0].getsockname()[1]
    conn = await asyncpg.connect(fed.top_dsn)
    await conn.execute("UPDATE nodes SET http_base = $1, registered_at = now() WHERE "
                       "node_prefix = '0.250'", f"http://127.0.0.1:{peer_port}")
    await conn.execute("INSERT INTO node_prefixes (prefix, node_prefix) VALUES "
                       "('0.250.1', '0.250'), ('0.200.7', '0.200')")
    await conn.close()
    b = fed.start_b()
    try:
        await anchored(b)
        started = time.monotonic()
        misrouted = await http_get(b.http, "/api/handles/0.250.1/WANTED")
        assert misrouted.status == 502
        assert misrouted.json()["reason"] == "REMOTE_RECORD_REJECTED"
        forged = await http_get(b.http, "/api/handles/0.250.1/FORGED")
        assert forged.status == 502 and "does not verify" in forged.json()["detail"]
        loop = await http_get(b.http, "/api/handles/0.200.7/X")
        assert loop.status == 404 and loop.json()["reason"] == "ROUTING_LOOP"
        # A node that is registered but not reachable: 503 quickly, not a hang.
        conn = await asyncpg.connect(fed.top_dsn)
        await conn.execute("UPDATE nodes SET http_base = $1 WHERE node_prefix = '0.250'",
                           f"http://127.0.0.1:{free_port()}")
        await conn.execute("INSERT INTO node_prefixes (prefix, node_prefix) VALUES "
                           "('0.250.2', '0.250')")
        await conn.close()
        down = await http_get(b.http, "/api/handles/0.250.2/X")
        assert down.status == 503 and "unreachable" in down.json()["detail"]
        # B → A → (top →) B …: B asks A for a prefix under A's node prefix that A does not
        # hold; A answers for itself only (the request is marked forwarded), so it ends there.
        a = fed.start_a()
        try:
            async def a_registered() -> bool:
                return await top_count(fed.top_dsn, "SELECT count(*) FROM nodes WHERE "
                                       "node_prefix = '0.118' AND registered_at IS NOT NULL") == 1
            await eventually(a_registered, timeout=10)
            hop = await http_get(b.http, "/api/handles/0.118.77/X")
            assert hop.status == 404
            direct = await http_get(a.http, "/api/handles/0.118.77/X",
                                    {"idnode-forwarded": "0.200"})
            assert direct.status == 404 and direct.json()["reason"] == "PREFIX_NOT_FOUND"
        finally:
            a.stop()
        assert time.monotonic() - started < 10
    finally:
        b.stop()
        server.close()


async def test_malformed_reports_are_refused_precisely(fed: Federation) -> None:
    """What a node reports that the top-level node cannot read is the reporter's error,
    named, never an internal one: a payload that is not a JSON object or an invalid
    timestamp refuses the report (nothing stored); identifiers or a version of the wrong
    type are kept as refused events, so the node's stream moves on."""
    import grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    from idnode.v1 import federation_pb2 as fpb
    from idnode.v1 import federation_pb2_grpc as fpb_grpc
    from tests.helpers import error_info

    def ev(seq: int, kind: str, payload: str, seconds: int = 1_780_000_000) -> fpb.SyncEvent:
        return fpb.SyncEvent(seq=seq, kind=kind, payload_json=payload,
                             created_at=Timestamp(seconds=seconds))

    md = (("authorization", f"Bearer {fed.tokens['0.118']}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fed.top_port}") as ch:
        stub = fpb_grpc.TopLevelStub(ch)
        for bad, field in ((ev(2**63, "identifier.updated", "{}"), "events"),
                           (ev(1, "identifier.updated", "{not json"), "events[1].payload_json"),
                           (ev(1, "identifier.updated", "[1, 2]"), "events[1].payload_json"),
                           (ev(1, "identifier.updated", "{}", seconds=10**12),
                            "events[1].created_at")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Report(fpb.ReportRequest(node_prefix="0.118", events=[
                    ev(1, "identifier.deleted", '{"identifier": "0.118.8/OK"}'), bad]),
                    metadata=md)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert error_info(err.value)[0].metadata["field"] == field
        assert await top_count(fed.top_dsn, "SELECT count(*) FROM events") == 0
        acked = await stub.Report(fpb.ReportRequest(node_prefix="0.118", events=[
            ev(1, "identifiers.registered", '{"identifiers": 5}'),
            ev(2, "identifiers.registered", '{"identifiers": ["0.118.8/A", 7]}'),
            ev(3, "identifier.updated", '{"identifier": "0.118.8/A", "version": "2"}'),
            ev(4, "identifier.updated", '{"identifier": "0.118.8/A", "version": 2.5}'),
            ev(5, "identifier.deleted",
               '{"identifier": "0.118.8/A", "version": 9223372036854775808}'),
            ev(6, "identifiers.registered", '{"identifiers": ["0.118.8/B"], "version": 1}')]),
            metadata=md)
    assert acked.acked_seq == 6
    conn = await asyncpg.connect(fed.top_dsn)
    try:
        outcomes = [r[0] for r in await conn.fetch("SELECT outcome FROM events ORDER BY seq")]
    finally:
        await conn.close()
    assert [o.startswith("refused: malformed payload") for o in outcomes] == [True] * 5 + [False]
    assert outcomes[-1] == "applied"

    # Heartbeats: counts for no prefix (errors core.stats could not name one for) are fine;
    # a day that is not YYYY-MM-DD, a count or backlog past what bigint sums hold are not.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fed.top_port}") as ch:
        stub = fpb_grpc.TopLevelStub(ch)

        def beat(day: str = "2026-12-01", errors: int = 1, backlog: int = 0,
                 prefix: str = "") -> fpb.HeartbeatRequest:
            return fpb.HeartbeatRequest(node_prefix="0.118", outbox_backlog=backlog, counters=[
                fpb.PrefixCounters(prefix=prefix, day=day, errors=errors)])

        await stub.Heartbeat(beat(), metadata=md)
        await stub.Heartbeat(beat(prefix="0.118.8"), metadata=md)
        for bad, field in ((beat(day="EdDSA"), "counters[0].day"),
                           (beat(day="2026-02-30"), "counters[0].day"),
                           (beat(day="20261201"), "counters[0].day"),
                           (beat(errors=2**64 - 1), "counters[0]"),
                           (beat(backlog=2**63), "outbox_backlog"),
                           (beat(prefix="0.118.8/x"), "counters[0].prefix")):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Heartbeat(bad, metadata=md)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert error_info(err.value)[0].metadata["field"] == field


async def test_no_report_to_the_top_gets_an_internal_error(fed: Federation) -> None:
    """The top-level node's RPCs under generated requests (tests/test_grpc_fuzz.py) with a
    node's token: a precise status with details for each, never INTERNAL."""
    from idnode.v1 import federation_pb2 as fpb
    from tests.test_grpc_fuzz import fuzz

    service = fpb.DESCRIPTOR.services_by_name["TopLevel"]
    failures = []
    for method in service.methods:
        failures += await fuzz(fed.top_port, fed.tokens["0.118"], service.full_name, method)
    assert not failures, "\n".join(failures[:5])
