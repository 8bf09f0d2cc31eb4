"""一品一码 traceability: events appended over gRPC into a Merkle log, proofs anyone can check."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import orjson
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idnode.crypto import b64, merkle
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import verify_compact
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import trace_pb2 as tpb
from idnode.v1 import trace_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import error_info, http_get, record_input

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def event(ident: str, kind: str, days: int, **kw: Any) -> tpb.TraceEvent:
    ts = Timestamp()
    ts.FromDatetime(T0 + timedelta(days=days))
    return tpb.TraceEvent(identifier=ident, kind=kind, occurred_at=ts,
                          place=kw.pop("place", "黑龙江省五常市"),
                          attrs_json=orjson.dumps(kw.pop("attrs", {})).decode(), **kw)


async def append(node: Node, key: str, *events: tpb.TraceEvent) -> tpb.AppendEventsResponse:
    async with channel(node.ports.grpc, key) as ch:
        return await trace_pb2_grpc.TraceStub(ch).AppendEvents(
            tpb.AppendEventsRequest(events=list(events)))


async def code_of(node: Node, key: str, *events: tpb.TraceEvent) -> tuple[grpc.StatusCode, str]:
    try:
        await append(node, key, *events)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), error_info(exc)[0].reason
    return grpc.StatusCode.OK, ""


@pytest.fixture
async def rice(stub: Any) -> str:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="rice", records=[
        record_input("88.118.8/RICE-BATCH-1"), record_input("88.118.8/RICE-UNIT-1")]))
    return "88.118.8/RICE-BATCH-1"


async def test_events_are_logged_and_every_proof_verifies(node: Node, keys: Keys,
                                                          rice: str) -> None:
    first = await append(node, keys.writer, event(rice, "planting", 0),
                         event(rice, "fertilising", 20, attrs={"product": "尿素", "kg_per_mu": 10}))
    head1 = (await http_get(node.ports.http, "/api/log/head")).json()
    assert list(first.leaves) == [0, 1] and head1["size"] == 2
    await append(node, keys.writer, event(rice, "harvest", 150, attrs={"moisture": 14.5}),
                 event(rice, "processing", 160), event(rice, "retail", 170, place="哈尔滨"))
    trace = (await http_get(node.ports.http, f"/api/trace/{rice}")).json()
    head = trace["tree_head"]
    assert head["size"] == 5 and [e["kind"] for e in trace["events"]] == [
        "planting", "fertilising", "harvest", "processing", "retail"]
    jwks = (await http_get(node.ports.http, "/.well-known/jwks.json")).json()
    _, payload = verify_compact(head["jws"], jwks, typ="idnode-sth+jws")
    assert orjson.loads(payload)["root"] == head["root"]
    for e in trace["events"]:
        assert e.pop("inclusion")  # the trace carries each event's proof in the served head
        proof = (await http_get(node.ports.http,
                                f"/api/log/inclusion?leaf={e['leaf']}&size=5")).json()["proof"]
        merkle.verify_inclusion(merkle.leaf_hash(canonicalize(e)), e["leaf"], 5,
                                [b64.dec(p) for p in proof], b64.dec(head["root"]))
    cons = (await http_get(node.ports.http, "/api/log/consistency?from=2&to=5")).json()
    merkle.verify_consistency(2, 5, [b64.dec(p) for p in cons["proof"]],
                              b64.dec(head1["root"]), b64.dec(head["root"]))
    tampered = dict(trace["events"][2], attrs={"moisture": 13.0})
    with pytest.raises(VerificationError):
        proof = (await http_get(node.ports.http, "/api/log/inclusion?leaf=2&size=5")).json()
        merkle.verify_inclusion(merkle.leaf_hash(canonicalize(tampered)), 2, 5,
                                [b64.dec(p) for p in proof["proof"]], b64.dec(head["root"]))


async def test_corrections_reference_earlier_events(node: Node, keys: Keys, rice: str) -> None:
    await append(node, keys.writer, event(rice, "inspection", 10, attrs={"result": "pass"}))
    fixed = await append(node, keys.writer, event(rice, "inspection", 5, corrects=0,
                                                  attrs={"result": "pass", "lab": "HLJ-QC"}))
    assert list(fixed.leaves) == [1]  # an earlier time is fine for a correction


@pytest.mark.parametrize("case,expected", [
    ("other_enterprise", (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")),
    ("unregistered", (grpc.StatusCode.NOT_FOUND, "IDENTIFIER_NOT_FOUND")),
    ("out_of_order", (grpc.StatusCode.FAILED_PRECONDITION, "OUT_OF_ORDER")),
    ("forged_correction", (grpc.StatusCode.INVALID_ARGUMENT, "FORGED_CORRECTION")),
    ("oversize", (grpc.StatusCode.INVALID_ARGUMENT, "TOO_LARGE")),
    ("unknown_kind", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    ("future", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
])
async def test_bad_events_are_refused_and_change_nothing(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection, case: str,
        expected: tuple[grpc.StatusCode, str]) -> None:
    await append(node, keys.writer, event(rice, "harvest", 100),
                 event("88.118.8/RICE-UNIT-1", "packing", 101))
    key = keys.other if case == "other_enterprise" else keys.writer
    ev = {
        "other_enterprise": event(rice, "retail", 120),
        "unregistered": event("88.118.8/NOPE", "retail", 120),
        "out_of_order": event(rice, "planting", 50),
        "forged_correction": event(rice, "harvest", 120, corrects=1),
        "oversize": event(rice, "note", 120, attrs={"x": "y" * 20_000}),
        "unknown_kind": event(rice, "teleport", 120),
        "future": event(rice, "retail", 10_000),
    }[case]
    # A good event beside the bad one: the batch is all or nothing.
    assert await code_of(node, key, event(rice, "processing", 110), ev) == expected
    assert await db.fetchval("SELECT size FROM trace_log") == 2
    assert await db.fetchval("SELECT count(*) FROM trace_events") == 2


async def test_trace_events_are_append_only(node: Node, keys: Keys, rice: str,
                                            db: asyncpg.Connection) -> None:
    await append(node, keys.writer, event(rice, "harvest", 100))
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE trace_events SET place = 'elsewhere'")
    bad = await http_get(node.ports.http, "/api/log/inclusion?leaf=5&size=1")
    assert bad.status == 400


async def test_a_trace_verifies_offline_and_tampering_is_caught(node: Node, keys: Keys,
                                                                rice: str) -> None:
    from idnode import keys as keyrings
    from idnode.verify import verify_trace

    await append(node, keys.writer, event(rice, "harvest", 100, attrs={"moisture": 14.5}),
                 event(rice, "retail", 110))
    doc = (await http_get(node.ports.http, f"/api/trace/{rice}")).json()
    trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
    anchor = keyrings.keyring(node.settings, "anchor").jwks()
    assert verify_trace(doc, trust, anchor) == 2
    doc["events"][0]["attrs"]["moisture"] = 12.0
    with pytest.raises(VerificationError) as err:
        verify_trace(doc, trust, anchor)
    assert err.value.reason == "root_mismatch"
