"""Registry rules: the idempotency digest is a stored format; batches are decided on the
in-memory prefix table and checked again by their own statement."""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
import grpc
import pytest

from idnode.cache import HotCache
from idnode.core import auth
from idnode.core.audit import Actor
from idnode.core.errors import AlreadyExists
from idnode.core.records import Value
from idnode.core.registry import Limits, RecordInput, Registry
from idnode.model.rows import BatchOutcome
from idnode.node import Node
from idnode.model.rows import PrefixRow
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.helpers import error_info, record_input

Stub = registry_pb2_grpc.RegistryStub


class _Handles:
    def __init__(self, stored: bytes | None = None) -> None:
        self.digest = b""
        #: The digest stored with the key by an earlier call (a replay), or None.
        self.stored = stored

    async def register_batch(self, key: str, digest: bytes, rows: Any, now: datetime,
                             *_: Any, **__: Any) -> BatchOutcome:
        self.digest = digest
        if self.stored is not None:
            return BatchOutcome(len(rows), now, True, self.stored)
        return BatchOutcome(len(rows), now, False, digest)


class _Prefixes:
    async def get(self, prefix: str) -> PrefixRow:
        return PrefixRow(prefix, "active", 1, False, None, None, None)  # type: ignore[arg-type]


BATCH = [RecordInput("0.118.8/A-1", [Value(2, "b", '{"x": 1}', "json"),
                                      Value(1, "product.name", "五常大米")]),
         RecordInput("0.118.8/B-2", [Value(1, "secret", "aGk=", "base64", ttl=60,
                                            private=True)])]
#: Known answers. The digest is stored with the key and compared with a retry's, which may
#: be computed by a later version of the node: a format, not a detail.
DIGEST = "6564ff1c071b6b3d71ab58a82dcadd915f996254c01b26aa258c2ff8c79c3ded"
#: The same batch's digest as versions before 2026-11 computed it.
DIGEST_BEFORE_2026_11 = "b64ece7062b662f86e00d9806228caa4cc8444030b2c875c8674b434fb619d22"


def _registry(handles: _Handles) -> Registry:
    return Registry(handles, _Prefixes(), HotCache(max_entries=1, ttl=1, negative_ttl=1),
                    Limits(100, 65_536, 262_144))  # type: ignore[arg-type]


ACTOR = Actor(auth.Principal("k", "enterprise", 1, frozenset({"read", "write"}), None))


async def test_idempotency_digest_has_its_known_answer() -> None:
    handles = _Handles()
    await _registry(handles).register_batch(ACTOR, "key-1", BATCH)
    assert handles.digest.hex() == DIGEST


@pytest.mark.parametrize("stored", [DIGEST, DIGEST_BEFORE_2026_11])
async def test_a_retry_is_recognised_whichever_version_stored_the_digest(stored: str) -> None:
    result = await _registry(_Handles(bytes.fromhex(stored))).register_batch(
        ACTOR, "key-1", BATCH)
    assert result.replayed


async def test_a_different_batch_under_a_used_key_is_refused() -> None:
    with pytest.raises(AlreadyExists) as err:
        await _registry(_Handles(bytes(32))).register_batch(ACTOR, "key-1", BATCH)
    assert err.value.reason == "IDEMPOTENCY_KEY_REUSED"


# -- deciding on the in-memory prefix table ----------------------------------------------------
async def test_batches_are_decided_on_the_prefix_table_without_a_query(
        node: Node, stub: Stub, db: asyncpg.Connection) -> None:
    reads = [0]
    store = node.core.prefix_store
    original = store.get

    async def counted(prefix: str) -> Any:
        reads[0] += 1
        return await original(prefix)

    store.get = counted  # type: ignore[method-assign]
    for n in range(3):
        await stub.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key=f"m{n}", records=[record_input(f"0.118.8/MEM-{n}")]))
    assert reads == [0]
    assert await db.fetchval("SELECT count(*) FROM handles WHERE suffix LIKE 'MEM-%'") == 3


@pytest.mark.parametrize("change, code, reason", [
    ("UPDATE prefixes SET status = 'suspended' WHERE prefix = '0.118.8'",
     grpc.StatusCode.FAILED_PRECONDITION, "PREFIX_SUSPENDED"),
    ("UPDATE prefixes SET enterprise_id = (SELECT enterprise_id FROM prefixes"
     " WHERE prefix = '0.118.9') WHERE prefix = '0.118.8'",
     grpc.StatusCode.PERMISSION_DENIED, None),
    ("INSERT INTO templates (prefix, name, schema, updated_by) VALUES ('0.118.8', 't',"
     " '{\"type\": \"object\", \"required\": [\"product.grade\"]}', 'test')",
     grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_VIOLATION"),
])
async def test_a_change_the_table_has_not_heard_of_is_caught_by_the_write_itself(
        node: Node, stub: Stub, db: asyncpg.Connection, change: str, code: grpc.StatusCode,
        reason: str | None) -> None:
    """Changed behind the node's back (no notification): the table still allows the write,
    the statement refuses it, and the registry decides again on the database's rows."""
    await stub.RegisterBatch(pb.RegisterBatchRequest(
        idempotency_key="before", records=[record_input("0.118.8/BEFORE")]))
    await db.execute(change)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="after", records=[record_input("0.118.8/AFTER")]))
    assert err.value.code() == code
    if reason is not None:
        assert error_info(err.value)[0].reason == reason
    assert await db.fetchval("SELECT count(*) FROM handles WHERE suffix = 'AFTER'") == 0
    assert await db.fetchval(
        "SELECT count(*) FROM register_batches WHERE idempotency_key LIKE '%:after'") == 0


async def test_a_large_batch_lets_the_event_loop_run(tmp_path: Any) -> None:
    """Checking and signing 10,000 records is a few hundred milliseconds of Python: the
    registration yields to the event loop along the way, so resolves on the same loop are
    served between its pieces (bench/mixed.py measures their p99 under registration)."""
    from idnode.core.signing import Signer
    from idnode.crypto.keys import KeyRing

    ring = KeyRing(tmp_path / "ring", b"pass")
    ring.generate("EdDSA")
    registry = Registry(_Handles(), _Prefixes(), HotCache(max_entries=1, ttl=1, negative_ttl=1),
                        Limits(10_000, 65_536, 262_144),  # type: ignore[arg-type]
                        signer=Signer(ring, "0.118"))
    batch = [RecordInput(f"0.118.8/Y-{i}", [Value(1, "product.name", f"米 {i}")])
             for i in range(10_000)]
    turns = 0
    done = asyncio.Event()

    async def other_work() -> None:
        nonlocal turns
        while not done.is_set():
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    result = await registry.register_batch(ACTOR, "big", batch)
    done.set()
    await ticker
    assert result.registered == 10_000
    # 10,000 / 64 + 10,000 / 128 pauses while checking, ~40 while signing.
    assert turns - before > 200


# -- the rows go in by COPY --------------------------------------------------------------------------
TRICKY = ["back\\slash \\N \\. \\x00 end\\", 'quote " and \\" escaped', "tab\there\nnew line\r",
          "五常大米 ✓ 𝄞", "\\\\server\\share"]


async def test_what_copy_might_mangle_comes_back_exactly_and_still_verifies(
        node: Node, stub: Stub, db: asyncpg.Connection) -> None:
    """Backslashes, COPY's text-format NULL and end-of-data markers, JSON escapes, tabs and
    newlines in values, and backslashes in identifiers are stored as sent (the rows go in
    by COPY), and each record's signature and inclusion path verify."""
    from idnode.core.identifiers import Identifier
    from idnode.core.resolver import record_from_row
    from idnode.core.signing import verifies
    from idnode.store.handles import HandleStore

    idents = ["0.118.8/COPY\\N", "0.118.8/COPY\\.x", "0.118.8/COPY-plain"]
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="copy-esc", records=[
        pb.RecordInput(identifier=ident, values=[
            *(pb.Value(index=i, type="note", data=d) for i, d in enumerate(TRICKY, start=1)),
            pb.Value(index=9, type="doc", format="json", data='{"k": "v\\\\w\\"x\\ty"}')])
        for ident in idents]))
    got = await HandleStore(node.core.db).get_many(
        [Identifier("0.118.8", i.split("/", 1)[1]) for i in idents])
    assert sorted(f"{p}/{s}" for p, s in got) == sorted(idents)
    assert node.core.keyring is not None
    for row in got.values():
        record = record_from_row(row, "0.118")
        assert [v.data for v in record.values] == [*TRICKY, '{"k": "v\\\\w\\"x\\ty"}']
        assert record.signature is not None and verifies(record, node.core.keyring.jwks())
    # What a client reads back is what it sent, too.
    back = await stub.Resolve(pb.ResolveRequest(identifier=idents[0]))
    assert [v.data for v in back.values if v.index < 100] == [*TRICKY, '{"k": "v\\\\w\\"x\\ty"}']
    assert await db.fetchval("SELECT count(*) FROM handles WHERE suffix LIKE 'COPY%'") == 3


async def test_a_batch_rows_get_its_time_and_later_inserts_their_own(
        node: Node, stub: Stub, db: asyncpg.Connection) -> None:
    """COPY leaves created_at and updated_at to the columns' defaults, which read the time the
    registering transaction set (sql/0017): every row gets the batch's time, to the
    microsecond; an insert in a later transaction of the same session gets now()."""
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="times", records=[
        record_input(f"0.118.8/TIME-{i}") for i in range(3)]))
    committed = await db.fetchval(
        "SELECT committed_at FROM register_batches WHERE idempotency_key LIKE '%:times'")
    assert await db.fetch("SELECT DISTINCT created_at, updated_at FROM handles"
                          " WHERE suffix LIKE 'TIME-%'") == [(committed, committed)]
    async with db.transaction():
        await db.execute("SELECT set_config('idnode.registered_at', '2020-01-01T00:00:00Z', true)")
    started = await db.fetchval("SELECT now()")
    await db.execute("INSERT INTO handles (prefix, suffix, vals) VALUES ('0.118.8', 'LATER', '[]')")
    assert await db.fetchval("SELECT created_at FROM handles WHERE suffix = 'LATER'") >= started
