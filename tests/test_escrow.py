"""Data escrow: full and incremental deposits in the RFC 8909 framework, schema-valid,
encrypted to the escrow agent and signed by the node; `idnode escrow verify` checks one as the
agent would; a node's identifiers rebuilt from a full deposit plus incrementals equal the
original's, record for record (signatures included, so they still verify)."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pysequoia as pgp
import pytest

from idnode.core.identifiers import Identifier
from idnode.core.resolver import record_from_row
from idnode.core.signing import verifies
from idnode.node import Node
from idnode.store import migrations
from idnode.store.db import Database, create_pool
from idnode.store.escrow import EscrowStore, RestoreStore
from idnode.store.handles import HandleStore
from idnode.sync import escrow
from idnode.sync.escrow import EscrowError
from idnode.v1 import admin_pb2, admin_pb2_grpc
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel, with_database
from tests.helpers import record_input

_HANDLES = ("SELECT h.prefix, h.suffix, h.vals::text, h.version, h.created_at, h.updated_at,"
            " s.jws, s.jws_pq, h.sig_index, h.sig_proof FROM handles h"
            " LEFT JOIN signatures s ON s.id = h.sig_id ORDER BY 1, 2")
_PREFIXES = ("SELECT p.prefix, p.status, p.refuse_resolution, e.name, e.uscc, e.contact,"
             " p.created_at FROM prefixes p LEFT JOIN enterprises e ON e.id = p.enterprise_id"
             " ORDER BY 1")


@pytest.fixture
async def empty_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    name = f"idnode_restore_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(pg_server_dsn, name)
    conn = await asyncpg.connect(dsn)
    await migrations.migrate(conn)
    await conn.close()
    try:
        yield dsn
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def rows(dsn: str, sql: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_full_plus_incrementals_rebuild_the_node_record_for_record(
        node: Node, dsn: str, empty_dsn: str, keys: Keys, tmp_path: Path) -> None:
    agent = pgp.Tsk.generate("escrow agent <dea@example.invalid>")
    signer = escrow.signing_key(tmp_path / "keys" / "signing-key.asc")
    store = EscrowStore(node.core.db)
    out = tmp_path / "deposits"

    async def deposit(full: bool) -> escrow.Deposit:
        return await escrow.deposit(store, "0.118", out, signer, agent.extract_certificate(),
                                    full=full)

    with pytest.raises(EscrowError, match="full deposit first"):
        await deposit(False)
    async with channel(node.ports.grpc, keys.writer) as ch:
        reg = registry_pb2_grpc.RegistryStub(ch)
        await reg.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="e-1", records=[
            record_input(f"0.118.8/ESC-{i:03d}", product__name=f"n{i}") for i in range(30)]))
        await reg.UpdateValues(pb.UpdateValuesRequest(identifier="0.118.8/ESC-001", values=[
            pb.Value(index=1, type="product.name", data="v2"),
            pb.Value(index=2, type="product.cost", data="secret", private=True)]))
        full = await deposit(True)
        await reg.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="e-2", records=[
            record_input(f"0.118.8/NEW-{i:03d}", product__name=f"m{i}") for i in range(10)]))
        await reg.Delete(pb.DeleteRequest(identifier="0.118.8/ESC-002"))
        await reg.Delete(pb.DeleteRequest(identifier="0.118.8/NEW-009"))
        await reg.UpdateValues(pb.UpdateValuesRequest(identifier="0.118.8/ESC-003", values=[
            pb.Value(index=1, type="product.name", data="v2")]))
        diff1 = await deposit(False)
        async with channel(node.ports.grpc, keys.operator) as op:
            await admin_pb2_grpc.AdminStub(op).SetPrefixStatus(admin_pb2.SetPrefixStatusRequest(
                prefix="0.118.9", status="suspended", refuse_resolution=True))
        await reg.UpdateValues(pb.UpdateValuesRequest(identifier="0.118.8/NEW-000", values=[
            pb.Value(index=1, type="product.name", data="v3")]))
        diff2 = await deposit(False)
    assert (full.kind, diff1.kind, diff2.kind) == ("FULL", "DIFF", "DIFF")
    assert diff1.prev_id == full.id and diff2.prev_id == diff1.id
    assert full.objects == 2 + 30 and diff1.deletes == 2 and diff2.objects == 1 + 1
    assert b"secret" not in full.files[0].read_bytes()  # encrypted

    contents = [escrow.read(escrow.open_deposit(d.files[0], agent_key=agent,
                                                signer=signer.extract_certificate()))
                for d in (full, diff1, diff2)]
    assert [c.id for c in contents] == [full.id, diff1.id, diff2.id]
    with pytest.raises(EscrowError, match="chain"):
        escrow.chain([contents[0], contents[2]])

    db = Database(await create_pool(empty_dsn, min_size=1, max_size=2))
    try:
        assert await escrow.restore(RestoreStore(db), contents) == 30 + 10 - 2
        # The restored records still verify against the node's keys.
        names = [Identifier(r[0], r[1]) for r in await db.fetch("SELECT prefix, suffix FROM "
                                                                "handles")]
        got = await HandleStore(db).get_many(names)
        assert node.core.keyring is not None and len(got) == 38
        assert all(verifies(record_from_row(r, "0.118"), node.core.keyring.jwks())
                   for r in got.values())
    finally:
        await db.close()
    assert await rows(empty_dsn, _HANDLES) == await rows(dsn, _HANDLES)
    assert await rows(empty_dsn, _PREFIXES) == await rows(dsn, _PREFIXES)


async def test_verify_refuses_a_tampered_or_inconsistent_deposit(
        node: Node, tmp_path: Path) -> None:
    agent = pgp.Tsk.generate("escrow agent <dea@example.invalid>")
    (tmp_path / "agent.asc").write_text(str(agent))
    signer = escrow.signing_key(tmp_path / "signing-key.asc")
    dep = await escrow.deposit(EscrowStore(node.core.db), "0.118", tmp_path, signer,
                               agent.extract_certificate(), full=True)
    ryde = dep.files[0]

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "idnode", "escrow", "verify", *args],
                              capture_output=True, text=True, timeout=60)

    ok = verify(str(ryde), "--signer-cert", str(tmp_path / "signing-key.pub.asc"),
                "--agent-key", str(tmp_path / "agent.asc"))
    assert ok.returncode == 0, ok.stderr
    assert f"deposit {dep.id} FULL" in ok.stdout and "OK" in ok.stdout
    bad = bytearray(ryde.read_bytes())
    bad[len(bad) // 2] ^= 1
    tampered = tmp_path / "tampered.ryde"
    tampered.write_bytes(bytes(bad))
    (tmp_path / "tampered.sig").write_bytes(dep.files[1].read_bytes())
    no = verify(str(tampered), "--signer-cert", str(tmp_path / "signing-key.pub.asc"),
                "--agent-key", str(tmp_path / "agent.asc"))
    assert no.returncode == 1 and "signature" in no.stderr
    # A deposit whose header miscounts its objects fails the count check.
    xml = dep.xml.replace(b'rdeIid-1.0">0<', b'rdeIid-1.0">7<')
    assert xml != dep.xml
    (tmp_path / "miscounted.xml").write_bytes(xml)
    no = verify(str(tmp_path / "miscounted.xml"))
    assert no.returncode == 1 and "header: counts 7" in no.stderr


async def test_the_serving_node_deposits_on_schedule(dsn: str, tmp_path: Path) -> None:
    agent = pgp.Tsk.generate("escrow agent <dea@example.invalid>")
    (tmp_path / "agent.pub.asc").write_text(str(agent.extract_certificate()))
    from tests.conftest import make_settings
    from tests.helpers import eventually

    s = make_settings(escrow_agent_cert=str(tmp_path / "agent.pub.asc"),
                      escrow_dir=str(tmp_path / "out"), escrow_incremental_interval=0.2)
    n = Node(s, dsn)
    await n.start()
    try:
        async def two() -> list[tuple[object, ...]]:
            found = await rows(dsn, "SELECT kind, prev_id FROM escrow_deposits ORDER BY "
                                    "created_at, id")
            return found if len(found) >= 2 else []
        found = await eventually(two, timeout=10)
        # The first scheduled incremental deposit had nothing before it: it was a full one.
        assert found[0] == ("FULL", None) and found[1][0] == "DIFF"
        assert len(list((tmp_path / "out").glob("*.ryde"))) >= 2
    finally:
        await n.stop(grace=1)
