"""The top-level node keeps each secondary node honest about its traceability log: every reported
tree head must be signed by the node and be one log with the heads kept before it, so a node
that rewrites its history is caught at its next report (RFC 9162 consistency proofs)."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from idnode import keys as keyrings
from idnode.crypto import b64, merkle
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import KeySet, SigningKey
from idnode.node import Node
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.top import IncomingEvent, TopStore
from idnode.sync.heads import STH_TYP
from idnode.sync.top import TopLevel
from idnode.verify import verify_log_growth
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, make_settings, with_database
from tests.helpers import eventually, http_get, record_input
from tests.test_trace import append, event
from tests.test_trace_lineage import BATCH, UNITS, chain  # noqa: F401  (fixture)


@pytest.fixture
async def top(pg_server_dsn: str, node: Node) -> AsyncIterator[tuple[TopLevel, Database]]:
    name = f"idnode_top_heads_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    db = Database(await create_pool(dsn, min_size=1, max_size=2))
    t = TopLevel(TopStore(db))
    prefix = node.settings.node_prefix
    await t.add_node(prefix)
    jwks = (await http_get(node.ports.http, "/.well-known/jwks.json")).json()
    row = await t.store.node(prefix)
    assert row is not None
    await t.register_node(row, prefix, "http://127.0.0.1:1", "127.0.0.1:1",
                          orjson.dumps(jwks).decode())
    try:
        yield t, db
    finally:
        await db.close()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def reported_heads(db: asyncpg.Connection) -> list[dict]:
    rows = await db.fetch("SELECT payload::text FROM outbox WHERE kind = 'trace.head'"
                          " ORDER BY seq")
    return [orjson.loads(r[0]) for r in rows]


async def report(top: tuple[TopLevel, Database], node: Node, *payloads: dict) -> list[str]:
    t, db = top
    prefix = node.settings.node_prefix
    row = await t.store.node(prefix)
    assert row is not None
    first = await t.store.acked(prefix) + 1
    await t.report(row, prefix, [IncomingEvent(first + i, "trace.head", p, datetime.now(UTC))
                                 for i, p in enumerate(payloads)])
    return [r[0] for r in await db.fetch(
        "SELECT outcome FROM events WHERE seq >= $1 ORDER BY seq", first)]


async def head(node: Node) -> dict:
    return (await http_get(node.ports.http, "/api/log/head")).json()


def signed(node: Node, size: int, root: bytes, key: SigningKey | None = None,
           log: str | None = None, **link: object) -> dict:
    key = key or node.core.keyring.active()  # type: ignore[union-attr]
    body = canonicalize({"log": log or node.settings.node_prefix, "size": size,
                         "root": b64.enc(root), "iat": int(time.time())})
    # shaped as GET /api/log/head (log, size, root, jws), plus what a report links it with
    return {"log": log or node.settings.node_prefix, "size": size, "root": b64.enc(root),
            "jws": sign_compact(body, key, {"typ": STH_TYP}), **link}


async def test_each_reported_head_is_proven_to_extend_the_last(
        node: Node, keys: Keys, chain: None, db: asyncpg.Connection,  # noqa: F811
        top: tuple[TopLevel, Database]) -> None:
    first = await head(node)
    await append(node, keys.writer, event(UNITS[1], "retail", 171, place="大连"))
    second = await head(node)
    assert second["size"] == first["size"] + 1
    payloads = await reported_heads(db)
    assert [p["size"] for p in payloads] == [first["size"], second["size"]]
    assert "with" not in payloads[0]
    assert payloads[1]["with"] == first["size"] and payloads[1]["consistency"]
    assert await report(top, node, *payloads) == ["applied: first head of the node",
                                                  "applied"]
    # A resent report changes nothing.
    t, tdb = top
    row = await t.store.node(node.settings.node_prefix)
    await t.report(row, node.settings.node_prefix,  # type: ignore[arg-type]
                   [IncomingEvent(1, "trace.head", payloads[0], datetime.now(UTC))])
    assert [r[0] for r in await tdb.fetch("SELECT size FROM trace_heads ORDER BY size")] == [
        first["size"], second["size"]]


async def test_a_rewritten_log_is_caught_at_the_next_report(
        node: Node, keys: Keys, chain: None, db: asyncpg.Connection,  # noqa: F811
        top: tuple[TopLevel, Database]) -> None:
    first = await head(node)
    await report(top, node, *await reported_heads(db))
    size = first["size"]
    # The node rewrites event 3 (say, a pesticide dose) and signs the new history with its
    # own key: any consistency proof it can make from its kept head fails.
    leaves = [merkle.leaf_hash(f"event {i}".encode()) for i in range(size + 2)]
    forged = signed(node, size + 2, merkle.root(leaves), **{"with": size, "consistency": [
        b64.enc(h) for h in merkle.consistency_proof(leaves, size, size + 2)]})
    fork = signed(node, size, merkle.root(leaves[:size]))
    stranger = signed(node, size + 3, merkle.root(leaves + [leaves[0]]),
                      key=SigningKey.generate())
    other_log = signed(node, size + 4, merkle.root(leaves + leaves[:2]), log="0.200")
    outcomes = await report(top, node, forged, fork, stranger, other_log)
    assert outcomes[0].startswith("refused: root_mismatch"), outcomes
    assert outcomes[1].startswith("refused: root_mismatch"), outcomes
    assert outcomes[2].startswith("refused: unknown_key"), outcomes
    assert outcomes[3].startswith("refused: content_mismatch"), outcomes
    t, tdb = top
    assert await tdb.fetchval("SELECT count(*) FROM trace_heads") == 1


async def test_a_head_not_linked_to_the_last_kept_one_is_refused(
        node: Node, keys: Keys, chain: None, db: asyncpg.Connection,  # noqa: F811
        top: tuple[TopLevel, Database]) -> None:
    """A node that rewrote its log from scratch cannot prove the new history extends the
    old, so it would just report the new head without a link: only the first head of a node
    may come unlinked. A link to an older kept head is not enough either: two heads that both
    extend it may still fork from each other."""
    first = await head(node)
    await append(node, keys.writer, event(UNITS[1], "retail", 171, place="大连"))
    second = await head(node)
    assert await report(top, node, *await reported_heads(db)) == [
        "applied: first head of the node", "applied"]
    size = second["size"]
    leaves = [merkle.leaf_hash(f"rewritten {i}".encode()) for i in range(size + 3)]
    bare = signed(node, size + 3, merkle.root(leaves))
    # Linked to the first kept head with a valid proof of *its own* history: refused, because
    # the last kept head is the second one.
    old_link = signed(node, size + 2, merkle.root(leaves[:size + 2]), **{
        "with": first["size"], "consistency": [b64.enc(h) for h in merkle.consistency_proof(
            leaves[:size + 2], first["size"], size + 2)]})
    outcomes = await report(top, node, bare, old_link)
    assert outcomes[0].startswith("refused: unlinked: head of size"), outcomes
    assert "links to no head, not to the last kept head" in outcomes[0]
    assert outcomes[1].startswith("refused: unlinked"), outcomes
    t, tdb = top
    assert [r[0] for r in await tdb.fetch("SELECT size FROM trace_heads ORDER BY size")] == [
        first["size"], size]
    # The node's own next head, linked to the last kept one, is still taken.
    await append(node, keys.writer, event(UNITS[1], "retail", 172, place="大连"))
    third = await head(node)
    payloads = [p for p in await reported_heads(db) if p["size"] == third["size"]]
    assert await report(top, node, *payloads) == ["applied"]


async def test_a_head_refused_for_a_key_registered_later_is_taken_when_linked_to(
        node: Node, top: tuple[TopLevel, Database]) -> None:
    """A worker that restarted with a rotated key signs a head before the top has the key
    (the shipper of an older worker reports it): refused. Once the key is registered, the
    next head, which links to that one, brings it back: it is checked again, and kept."""
    t, tdb = top
    leaves = [merkle.leaf_hash(f"event {i}".encode()) for i in range(9)]

    def proof(a: int, b: int) -> dict[str, object]:
        return {"with": a, "consistency": [b64.enc(h) for h in
                                           merkle.consistency_proof(leaves[:b], a, b)]}
    rotated = SigningKey.generate()
    first = signed(node, 3, merkle.root(leaves[:3]))
    early = signed(node, 5, merkle.root(leaves[:5]), key=rotated, **proof(3, 5))
    forged = signed(node, 6, merkle.root([merkle.leaf_hash(b"x")] * 6), key=rotated,
                    **proof(3, 5))  # a proof for another history: never passes
    outcomes = await report(top, node, first, early, forged)
    assert outcomes[0] == "applied: first head of the node"
    assert outcomes[1].startswith("refused: unknown_key") and outcomes[2].startswith("refused")
    prefix = node.settings.node_prefix
    ring = node.core.keyring
    assert ring is not None
    row = await t.store.node(prefix)
    await t.register_node(row, prefix, "http://127.0.0.1:1", "127.0.0.1:1",  # type: ignore[arg-type]
                          orjson.dumps(KeySet.of(*ring.keys, rotated).to_json()).decode())
    after_forged = signed(node, 8, merkle.root(leaves[:8]), key=rotated, **{
        "with": 6, "consistency": [b64.enc(h) for h in merkle.consistency_proof(
            leaves[:8], 6, 8)]})
    after_early = signed(node, 7, merkle.root(leaves[:7]), key=rotated, **proof(5, 7))
    outcomes = await report(top, node, after_forged, after_early)
    assert outcomes[0].startswith("refused: unlinked"), outcomes  # the forged one stays out
    assert outcomes[1] == "applied", outcomes
    assert [r[0] for r in await tdb.fetch("SELECT size FROM trace_heads ORDER BY size")] == [
        3, 5, 7]


async def test_a_smaller_head_signed_late_links_forward(
        node: Node, keys: Keys, chain: None, db: asyncpg.Connection,  # noqa: F811
        top: tuple[TopLevel, Database]) -> None:
    first = await head(node)
    await append(node, keys.writer, event(UNITS[1], "retail", 171, place="大连"))
    second = await head(node)
    # The top learns the larger head first; the smaller one comes with a proof that the
    # larger extends it.
    late = signed(node, first["size"], b64.dec(first["root"]))
    proof = (await http_get(node.ports.http, f"/api/log/consistency?from={first['size']}"
                                             f"&to={second['size']}")).json()["proof"]
    big = signed(node, second["size"], b64.dec(second["root"]))
    outcomes = await report(top, node, big, dict(late, **{"with": second["size"],
                                                          "consistency": proof}))
    assert outcomes == ["applied: first head of the node", "applied"]


async def test_heads_are_signed_and_reported_as_the_log_grows(
        dsn: str, keys: Keys, db: asyncpg.Connection) -> None:
    node = Node(make_settings(tree_head_interval=0.1), dsn)
    await node.start()
    try:
        await asyncio.sleep(0.3)  # an empty log gets no head
        async with channel(node.ports.grpc, keys.writer) as ch:
            await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="heads", records=[record_input(BATCH)]))
        for day in (1, 2):
            await append(node, keys.writer, event(BATCH, "inspection", day,
                                                  attrs={"result": "pass"}))

            async def reported(size: int = day) -> bool:
                return any(p["size"] == size for p in await reported_heads(db))
            await eventually(reported, timeout=5)
        sizes = [p["size"] for p in await reported_heads(db)]
        assert sizes == [1, 2]  # one head per size the log reached, none for the empty log
    finally:
        await node.stop(grace=1)


async def cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "idnode", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=dict(os.environ, IDNODE_LOG_LEVEL="WARNING"))
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_an_auditor_checks_the_log_only_grew(
        node: Node, keys: Keys, chain: None, tmp_path: Path) -> None:  # noqa: F811
    anchor = tmp_path / "anchor.json"
    anchor.write_bytes(orjson.dumps(keyrings.keyring(node.settings, "anchor").jwks()))
    kept = await head(node)
    (tmp_path / "kept.json").write_bytes(orjson.dumps(kept))
    await append(node, keys.writer, event(UNITS[1], "retail", 171, place="大连"))
    url = f"http://127.0.0.1:{node.ports.http}/api/log/head"
    code, out = await cli("verify", url, "--since", str(tmp_path / "kept.json"),
                          "--anchor", str(anchor))
    assert code == 0 and out.startswith(f"OK log {node.settings.node_prefix} grew from "
                                        f"{kept['size']} to {kept['size'] + 1}"), out

    trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
    jwks = orjson.loads(anchor.read_bytes())
    new = await head(node)
    proof = (await http_get(node.ports.http, f"/api/log/consistency?from={kept['size']}"
                                             f"&to={new['size']}")).json()["proof"]
    assert verify_log_growth(kept, new, proof, trust, jwks) == (kept["size"], new["size"])
    # A history the node signed once and then rewrote: validly signed, not extended.
    rewritten = signed(node, kept["size"], merkle.root(
        [merkle.leaf_hash(b"x")] * kept["size"]))
    cases = {
        "root_mismatch": (rewritten, new, proof),
        "bad_consistency_path": (kept, new, proof[:-1]),
        "content_mismatch": (dict(kept, size=kept["size"] - 1), new, proof),
    }
    for reason, (old, newer, path) in cases.items():
        with pytest.raises(VerificationError) as err:
            verify_log_growth(old, newer, path, trust, jwks)
        assert err.value.reason == reason, (reason, err.value)
    (tmp_path / "rewritten.json").write_bytes(orjson.dumps(rewritten))
    code, out = await cli("verify", url, "--since", str(tmp_path / "rewritten.json"),
                          "--anchor", str(anchor))
    assert code == 1 and out.startswith("FAIL root_mismatch"), out
