"""EPP provisioning (draft-chen-top-level-interface-protocol): the node's outbox reaches the
reference top-level node's Business Management System over EPP on mutual TLS, once, in commit
order; refusals are recorded and passed over; every data unit of every session validates
against the schemas (idnode/schemas/)."""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from idnode.api.epp.server import EppServer, server_context
from idnode.core.records import Value
from idnode.node import Node
from idnode.schemas import check, epp_schema, parse
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.notices import NoticeStore
from idnode.store.top import BmsStore, TopStore
from idnode.sync.bms import Bms
from idnode.sync.epp import client, messages
from idnode.sync.epp.client import EppRefused, EppSession, client_context
from idnode.sync.top import TopLevel
from idnode.v1 import admin_pb2, admin_pb2_grpc
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, make_settings, with_database
from tests.helpers import eventually, record_input
from tests.pki import Pki, make_pki


@pytest.fixture
def validated() -> Iterator[list[tuple[str, bytes]]]:
    """Every EPP data unit sent or received in the test, each checked against the schemas."""
    seen: list[tuple[str, bytes]] = []

    def observe(direction: str, data: bytes) -> None:
        check(parse(data), epp_schema())  # raises in the sender or reader: the test fails
        seen.append((direction, data))

    client.OBSERVERS.append(observe)
    yield seen
    client.OBSERVERS.remove(observe)


@dataclass
class Bmsd:
    db: Database
    dsn: str
    port: int
    password: str
    pki: Pki


@pytest.fixture
async def bms(pg_server_dsn: str, tmp_path: Path) -> AsyncIterator[Bmsd]:
    name = f"idnode_bms_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn, migrations.TOP_SQL_DIR)
    await conn.close()
    db = Database(await create_pool(dsn, min_size=1, max_size=4))
    await TopLevel(TopStore(db)).add_node("0.118")
    await TopLevel(TopStore(db)).add_node("0.200")
    store = BmsStore(db)
    password = await Bms(store).set_password("0.118")
    pki = make_pki(tmp_path / "pki")
    server = EppServer(Bms(store))
    port = await server.start("127.0.0.1", 0, server_context(
        str(pki.server_cert), str(pki.server_key), str(pki.ca)))
    try:
        yield Bmsd(db, dsn, port, password, pki)
    finally:
        await server.stop()
        await db.close()
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


@pytest.fixture
async def epp_node(dsn: str, bms: Bmsd) -> AsyncIterator[Node]:
    s = make_settings(upstream_epp=f"127.0.0.1:{bms.port}", upstream_epp_password=bms.password,
                      upstream_tls_ca=str(bms.pki.ca), upstream_tls_cert=str(bms.pki.client_cert),
                      upstream_tls_key=str(bms.pki.client_key), sync_batch=7)
    n = Node(s, dsn)
    await n.start()
    try:
        yield n
    finally:
        await n.stop(grace=1)


async def fetchval(dsn: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def shipped(node: Node, dsn: str) -> bool:
    newest = await fetchval(dsn, "SELECT coalesce(max(seq), 0) FROM outbox")
    assert node.epp_shipper is not None
    return node.epp_shipper.acked == newest and newest > 0


async def test_outbox_reaches_the_bms_once_in_order_over_mutual_tls(
        epp_node: Node, bms: Bmsd, dsn: str, keys: Keys,
        validated: list[tuple[str, bytes]]) -> None:
    ids = [f"0.118.8/EPP-{i:03d}" for i in range(25)]
    async with channel(epp_node.ports.grpc, keys.writer) as ch:
        reg = registry_pb2_grpc.RegistryStub(ch)
        await reg.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="epp-1", records=[record_input(i, product__name=i) for i in ids]))
        await eventually(lambda: shipped(epp_node, dsn), timeout=20)
        await reg.UpdateValues(pb.UpdateValuesRequest(identifier=ids[3], values=[
            pb.Value(index=1, type="product.name", data="renamed"),
            pb.Value(index=2, type="product.secret", data="cost 3", private=True)]))
        await reg.Delete(pb.DeleteRequest(identifier=ids[4]))
    async with channel(epp_node.ports.grpc, keys.operator) as ch:
        await admin_pb2_grpc.AdminStub(ch).SetPrefixStatus(admin_pb2.SetPrefixStatusRequest(
            prefix="0.118.9", status="suspended"))
    await eventually(lambda: shipped(epp_node, dsn), timeout=20)

    async def top(sql: str, *args: object) -> object:
        return await fetchval(bms.dsn, sql, *args)
    # The template's two enterprise prefixes, with their enterprises' names and codes.
    assert await top("SELECT count(*) FROM enterprises WHERE node_prefix = '0.118'") == 2
    assert await top("SELECT name || ' ' || org_code || ' ' || status FROM enterprises"
                     " WHERE prefix = '0.118.9'") == "Enterprise B 91110000600037341L clientHold"
    assert await top("SELECT count(*) FROM identifiers WHERE NOT deleted") == 24
    assert await top("SELECT deleted FROM identifiers WHERE identifier = $1", ids[4]) is True
    # The update arrived whole, its private value not at all.
    assert await top("SELECT version FROM identifiers WHERE identifier = $1", ids[3]) == 2
    vals = str(await top("SELECT vals::text FROM identifiers WHERE identifier = $1", ids[3]))
    assert "renamed" in vals and "cost 3" not in vals
    # Once each: 2 enterprises + 25 creates + 1 update + 1 delete + 1 status change.
    assert await top("SELECT count(*) FROM epp_transactions") == 30
    # Commit order: the transactions' client ids follow the outbox seqs.
    seqs = [int(r.split("-")[1]) for r in await _col(bms.dsn, "SELECT cltrid FROM "
                                                     "epp_transactions ORDER BY at, cltrid")]
    assert seqs == sorted(seqs)
    # Locate (the gRPC federation) sees what EPP provisioned.
    loc = await TopStore(bms.db).locate("0.118.8")
    assert loc is not None and loc.node_prefix == "0.118"
    sent = [d for way, d in validated if way == "sent"]
    assert any(b"<iid:create" in d for d in sent) and any(b"<ent:update" in d for d in sent)
    assert len(validated) >= 4 * 30  # client and server side, both ways, all valid


async def _col(dsn: str, sql: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return [r[0] for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_refused_commands_are_recorded_and_the_stream_goes_on(
        bms: Bmsd, dsn: str, keys: Keys, validated: list[tuple[str, bytes]]) -> None:
    # Another node holds 0.118.9 at the top: this node's claim on it, and its identifiers
    # there, are refused (2201); 0.118.8's go through; the refusals come back as messages.
    await fetchval(bms.dsn, "INSERT INTO node_prefixes (prefix, node_prefix) VALUES "
                            "('0.118.9', '0.200') RETURNING 1")
    s = make_settings(upstream_epp=f"127.0.0.1:{bms.port}", upstream_epp_password=bms.password,
                      upstream_tls_ca=str(bms.pki.ca), upstream_tls_cert=str(bms.pki.client_cert),
                      upstream_tls_key=str(bms.pki.client_key))
    node = Node(s, dsn)
    await node.start()
    try:
        async with channel(node.ports.grpc, keys.other) as ch:
            await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="b-1", records=[record_input("0.118.9/B-1")]))
        async with channel(node.ports.grpc, keys.writer) as ch:
            await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="a-1", records=[record_input("0.118.8/A-1")]))
        await eventually(lambda: shipped(node, dsn), timeout=20)
        assert node.epp_upstream is not None
        name = node.epp_upstream.name

        async def told() -> bool:
            counts, _ = await NoticeStore(node.core.db).recent(name)
            return counts.get("message", 0) >= 2
        await eventually(told, timeout=10)
        counts, recent = await NoticeStore(node.core.db).recent(name, 20)
        assert counts["refused"] == 2
        refused = [n for n in recent if n.kind == "refused"]
        assert {n.code for n in refused} == {2201}
        assert any("held by node 0.200" in n.text for n in refused)
        assert await fetchval(bms.dsn, "SELECT count(*) FROM identifiers") == 1
        assert await fetchval(bms.dsn, "SELECT count(*) FROM epp_messages WHERE acked_at "
                                       "IS NULL") == 0
    finally:
        await node.stop(grace=1)


async def test_a_resent_command_is_applied_once_and_bad_ones_are_refused(
        bms: Bmsd, validated: list[tuple[str, bytes]]) -> None:
    tls = client_context(str(bms.pki.ca), str(bms.pki.client_cert), str(bms.pki.client_key))
    wrong = EppSession("127.0.0.1", bms.port, "0.118", "not-the-pw", tls=tls, timeout=5)
    with pytest.raises(EppRefused) as refused:
        await wrong.connect()
    assert refused.value.response.code == 2200
    session = EppSession("127.0.0.1", bms.port, "0.118", bms.password, tls=tls, timeout=5)
    await session.connect()
    try:
        await session.call(messages.command("create", messages.ent_create("0.118.8"), "t-e"))
        create = messages.command("create", messages.iid_create(
            "0.118.8/X", 1, [Value(1, "URL", "https://example.invalid/x")]), "0.118-9-0")
        first = await session.call(create)
        again = await session.call(create)
        assert first.code == again.code == 1000 and first.svtrid == again.svtrid
        other = messages.command("create", messages.iid_create(
            "0.118.8/X", 2, [Value(1, "URL", "https://example.invalid/y")]), "0.118-9-0")
        assert (await session.call(other)).code == 2302
        info = await session.call(messages.command("info", messages.iid_id("info", "0.118.8/X"),
                                                   "t-i"))
        assert info.code == 1000 and info.resdata is not None
        assert messages.values_of(info.resdata)[0].data == "https://example.invalid/x"
        chk = await session.call(messages.command("check", messages.iid_check(
            ["0.118.8/X", "0.118.8/Y"]), "t-c"))
        assert chk.resdata is not None
        assert [i.get("avail") for i in chk.resdata.iter(messages.q("iid:id"))] == ["0", "1"]
        # A document the schemas refuse is answered 2001, not acted on.
        bad = create.replace(b"<iid:version>1</iid:version>", b"<iid:version>x</iid:version>")
        saved = list(client.OBSERVERS)
        client.OBSERVERS.clear()  # the malformed unit would fail the observer itself
        try:
            answer = await session.call(bad)
        finally:
            client.OBSERVERS[:] = saved
        assert answer.code == 2001 and "version" in answer.reasons[0]
        assert (await session.call(messages.command(
            "transfer", messages.iid_id("info", "0.118.8/X"), "t-t", op="query"))).code == 2101
    finally:
        await session.close()
    assert await fetchval(bms.dsn, "SELECT count(*) FROM identifiers") == 1


async def test_escrow_reports_must_continue_the_nodes_chain(node: Node, bms: Bmsd) -> None:
    from idnode.core.errors import InvalidArgument
    from idnode.store.escrow import EscrowStore
    from idnode.store.top import EscrowReportStore
    from idnode.sync import escrow
    from idnode.sync.bms import EscrowReports

    store = EscrowStore(node.core.db)
    reports = EscrowReports(EscrowReportStore(bms.db), Bms(BmsStore(bms.db)))
    deps = []
    for full in (True, False, False):
        dep = await escrow.make(store, "0.118", full=full)
        await store.record(escrow.DepositRow(dep.id, dep.kind, dep.prev_id, dep.watermark,
                                             dep.outbox_seq), 0, 0, "-", "0" * 64)
        deps.append(dep)
    xml = [escrow.report_xml("0.118", d) for d in deps]
    with pytest.raises(InvalidArgument, match="first deposit reported must be FULL"):
        await reports.accept("0.118", xml[1])
    assert await reports.accept("0.118", xml[0]) == "accepted"
    assert await reports.accept("0.118", xml[0]) == "accepted (already reported)"
    with pytest.raises(InvalidArgument, match="follows"):
        await reports.accept("0.118", xml[2])  # skips the DIFF in between
    with pytest.raises(InvalidArgument, match="report of node 0.118, sent by node 0.200"):
        await reports.accept("0.200", xml[1])
    with pytest.raises(InvalidArgument, match="report: "):
        await reports.accept("0.118", xml[1].replace(b"<rdeReport:kind>", b"<rdeReport:kinds>"))
    assert await reports.accept("0.118", xml[1]) == "accepted"
    assert await reports.accept("0.118", xml[2]) == "accepted"


async def test_the_operator_asks_the_bms_with_check_and_info(
        epp_node: Node, bms: Bmsd, dsn: str, validated: list[tuple[str, bytes]]) -> None:
    await eventually(lambda: shipped(epp_node, dsn), timeout=20)  # the template's prefixes
    lines = await client.query(epp_node.settings, "check",
                               ["0.118.8", "0.118.77", "0.118.8/NOT-YET"])
    assert lines == ["0.118.8/NOT-YET\tavailable", "0.118.8\tin use", "0.118.77\tavailable"]
    info = await client.query(epp_node.settings, "info", ["0.118.8", "0.118.8/NOT-YET"])
    assert "<ent:name>Enterprise A</ent:name>" in info[1] and "<ent:status s=\"ok\"" in info[1]
    assert info[0].startswith("EPP 2303 Object does not exist")


async def test_a_failure_of_the_bms_itself_is_2400_and_the_session_goes_on(
        bms: Bmsd, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 5730's "Command failed" for an error that is the server's, with the client's
    transaction id; the session stays open for the next command."""
    tls = client_context(str(bms.pki.ca), str(bms.pki.client_cert), str(bms.pki.client_key))
    session = EppSession("127.0.0.1", bms.port, "0.118", bms.password, tls=tls, timeout=5)
    await session.connect()
    try:
        async def broken(*_: object, **__: object) -> object:
            raise RuntimeError("the BMS's database went away")
        monkeypatch.setattr(Bms, "info", broken)
        failed = await session.call(messages.command(
            "info", messages.iid_id("info", "0.118.8/X"), "t-fail"))
        assert (failed.code, failed.cltrid) == (2400, "t-fail")
        monkeypatch.undo()
        again = await session.call(messages.command(
            "info", messages.iid_id("info", "0.118.8/X"), "t-again"))
        assert again.code == 2303  # object does not exist: answered on the same session
    finally:
        await session.close()
