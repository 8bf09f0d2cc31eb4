"""Appends check the log before taking its lock (sql/0016_trace_append.sql): an append that
another one overtook between its checks and the lock is checked again, so time order and
lineage hold under concurrency, leaves stay dense and the tree is the RFC 6962 one. An append
is one statement that commits as it ends (sql/0018); one overtaken again and again is made in
a transaction whose recheck holds the log's lock."""
from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import grpc
import orjson
import pytest

from idnode.core.trace import leaf_document, leaf_parts
from idnode.crypto import b64, merkle
from idnode.crypto.jcs import canonicalize
from idnode.model.events import AttachmentRef, NewEvent
from idnode.node import Node
from idnode.store import trace as trace_store
from idnode.store.trace import TraceTx
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import trace_pb2 as tpb
from tests.conftest import Keys
from tests.helpers import http_get, record_input
from tests.test_trace import T0, append, code_of, event

UNIT = "0.118.8/RICE-UNIT-1"


@pytest.fixture
async def rice(stub: Any) -> str:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="rice", records=[
        record_input("0.118.8/RICE-BATCH-1"), record_input(UNIT)]))
    return "0.118.8/RICE-BATCH-1"


@pytest.mark.parametrize("attrs,place,inputs", [
    ({}, "", ()),
    ({"log": "x", "leaf": 3, "z": [{"log": 1}]}, 'a ,"log": b', ("0.118.8/A",)),
    ({"note": '","log":"', "稻": "五常", "moisture": 14.5, "n": 1e-7, "big": 1e21,
      "whole": 3.0, "😀": True, "\ue000": None}, "哈尔滨", ("0.118.8/A", "0.118.8/B")),
])
@pytest.mark.parametrize("corrects,attachments", [
    (None, ()), (7, (AttachmentRef(b"\x01" * 32, "text/plain", 3),))])
def test_leaf_parts_join_to_the_canonical_leaf_document(
        attrs: dict[str, Any], place: str, inputs: tuple[str, ...], corrects: int | None,
        attachments: tuple[AttachmentRef, ...]) -> None:
    e = NewEvent("0.118.8/X", "harvest", T0.replace(microsecond=123456), place, "key-1",
                 orjson.dumps(attrs).decode(), corrects, inputs, attachments)
    before, after = leaf_parts("0.118.8", e)
    # The same parts when the caller passes the attributes it already canonicalised.
    assert leaf_parts("0.118.8", e, canonicalize(attrs)) == (before, after)
    for leaf in (0, 1, 9, 10, 123_456_789):
        assert before + str(leaf).encode() + after == canonicalize(
            leaf_document("0.118.8", leaf, e))


def _race_once(monkeypatch: pytest.MonkeyPatch, method: str,
               other: Any) -> list[int]:
    """After the first call of TraceTx.`method` (an append's checks, before the lock) has
    read the log, `other()` appends and commits before the checks go on."""
    original = getattr(TraceTx, method)
    raced: list[int] = []

    async def racing(self: TraceTx, *args: Any) -> Any:
        seen = await original(self, *args)
        if not raced:
            raced.append(1)
            await other()
        return seen
    monkeypatch.setattr(TraceTx, method, racing)
    return raced


async def _sizes_and_events(db: asyncpg.Connection) -> tuple[int, list[asyncpg.Record]]:
    size = await db.fetchval("SELECT size FROM trace_log")
    rows = await db.fetch("SELECT leaf, identifier, occurred_at FROM trace_events ORDER BY leaf")
    return int(size), rows


async def test_an_append_overtaken_by_a_later_event_is_refused(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    await append(node, keys.writer, event(rice, "planting", 0))

    async def later() -> None:
        assert list((await append(node, keys.writer, event(rice, "harvest", 20))).leaves) == [1]
    _race_once(monkeypatch, "standing", later)
    # Checked before the lock, day 10 follows day 0; by the time it takes the lock, day 20 is
    # in the log: the recheck under the lock refuses it.
    assert await code_of(node, keys.writer, event(UNIT, "packing", 5),
                         event(rice, "processing", 10)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_ORDER")
    size, rows = await _sizes_and_events(db)
    assert size == 2 and [r["leaf"] for r in rows] == [0, 1]
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'append_events'") == 2


async def test_an_append_overtaken_by_an_unrelated_one_goes_through(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def other() -> None:
        await append(node, keys.writer, event(UNIT, "packing", 20))
    _race_once(monkeypatch, "standing", other)
    assert list((await append(node, keys.writer, event(rice, "planting", 0))).leaves) == [1]
    size, rows = await _sizes_and_events(db)
    assert size == 2 and [r["identifier"] for r in rows] == [UNIT, rice]


async def test_an_append_overtaken_on_its_identifier_is_checked_again_and_goes_through(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def earlier() -> None:
        assert list((await append(node, keys.writer, event(rice, "harvest", 5))).leaves) == [0]
    raced = _race_once(monkeypatch, "standing", earlier)
    # Its statement finds an event of its identifier appended since its checks: nothing is
    # written (the audit row and NOTIFY of the same statement neither), it checks again
    # (day 10 follows day 5) and goes through.
    assert list((await append(node, keys.writer, event(rice, "processing", 10))).leaves) == [1]
    assert raced
    size, rows = await _sizes_and_events(db)
    assert size == 2 and [r["identifier"] for r in rows] == [rice, rice]
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'append_events'") == 2


async def test_an_overtaken_append_refused_on_its_recheck_keeps_no_attachment(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    report = b"%PDF-1.4 moisture 14.5%\n"
    shared = b"%PDF-1.4 the cooperative's licence\n"

    async def later() -> None:  # also carries `shared`: stored once, by this append
        await append(node, keys.writer, event(rice, "harvest", 20, attachments=[
            tpb.Attachment(media_type="application/pdf", content=shared)]))
    _race_once(monkeypatch, "standing", later)
    # The statement that would have stored the report, the audit row and the events is
    # undone when the log has moved on; the recheck then refuses day 10 after day 20.
    assert await code_of(node, keys.writer, event(rice, "processing", 10, attachments=[
        tpb.Attachment(media_type="application/pdf", content=report),
        tpb.Attachment(media_type="application/pdf", content=shared)])) == (
        grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_ORDER")
    assert [bytes(r[0]) for r in await db.fetch("SELECT content FROM trace_attachments")] == [
        shared]
    # An append whose attachment is already stored goes through and names it.
    assert list((await append(node, keys.writer, event(rice, "packing", 30, attachments=[
        tpb.Attachment(media_type="application/pdf", content=shared)]))).leaves) == [1]
    assert await db.fetchval("SELECT count(*) FROM trace_attachments") == 1
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'append_events'") == 2


async def test_an_append_overtaken_on_every_try_is_made_holding_the_logs_lock(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = TraceTx.standing
    calls: list[int] = []
    racing = False

    async def overtaken(self: TraceTx, *args: Any) -> Any:
        nonlocal racing
        seen = await original(self, *args)
        if racing:
            return seen  # the overtaking append's own checks
        calls.append(1)
        if len(calls) <= trace_store._TRIES_ALONE:
            racing = True
            try:
                await append(node, keys.writer, event(rice, "harvest", len(calls)))
            finally:
                racing = False
        return seen
    monkeypatch.setattr(TraceTx, "standing", overtaken)
    n = trace_store._TRIES_ALONE
    assert list((await append(node, keys.writer, event(rice, "packing", 10))).leaves) == [n]
    # Each statement tried alone was overtaken; then one transaction checked and appended.
    assert len(calls) == n + 1
    size, rows = await _sizes_and_events(db)
    assert size == n + 1 and [r["occurred_at"] for r in rows] == sorted(
        r["occurred_at"] for r in rows)
    assert await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'append_events'") == n + 1


async def test_a_lineage_cycle_made_by_a_racing_append_is_refused(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def reverse() -> None:  # the batch made from the unit...
        await append(node, keys.writer, event(rice, "processing", 1, inputs=[UNIT]))
    _race_once(monkeypatch, "ancestors", reverse)
    # ...while the unit is being declared made from the batch: checked alone, no cycle.
    assert await code_of(node, keys.writer, event(UNIT, "packing", 2, inputs=[rice])) == (
        grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_CYCLE")
    assert [tuple(r) for r in await db.fetch("SELECT child, parent, leaf FROM trace_links")] == [
        (rice, UNIT, 0)]
    assert (await _sizes_and_events(db))[0] == 1


def _in_order(rows: Sequence[asyncpg.Record]) -> dict[str, list[datetime]]:
    times: dict[str, list[datetime]] = {}
    for r in rows:
        times.setdefault(r["identifier"], []).append(r["occurred_at"])
    return times


async def test_concurrent_appenders_keep_time_order_dense_leaves_and_the_rfc_6962_tree(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection) -> None:
    rng = random.Random(16)

    async def appender(n: int) -> tuple[grpc.StatusCode, list[int]]:
        evs = [event(ident, "inspection", rng.randint(0, 40), attrs={"result": "pass", "lab": f"L{n}-{k}"})
               for k, ident in enumerate(sorted({rice, UNIT}, key=lambda _: rng.random()))]
        try:
            return grpc.StatusCode.OK, list((await append(node, keys.writer, *evs)).leaves)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), []

    results = await asyncio.gather(*(appender(n) for n in range(24)))
    assert {code for code, _ in results} <= {grpc.StatusCode.OK,
                                             grpc.StatusCode.FAILED_PRECONDITION}
    leaves = sorted(leaf for _, got in results for leaf in got)
    size, rows = await _sizes_and_events(db)
    assert leaves == list(range(size)) == [r["leaf"] for r in rows] and size >= 2
    for times in _in_order(rows).values():
        assert times == sorted(times)  # leaf order is time order for each identifier
    # The served head is the RFC 6962 root of the served leaves, hashed independently.
    docs = {}
    for ident in (rice, UNIT):
        trace = (await http_get(node.ports.http, f"/api/trace/{ident}")).json()
        for e in trace["events"]:
            e.pop("inclusion")
            docs[e["leaf"]] = e
    head = trace["tree_head"]
    assert head["size"] == size and sorted(docs) == list(range(size))
    assert merkle.root([merkle.leaf_hash(canonicalize(docs[i])) for i in range(size)]) == \
        b64.dec(head["root"])
