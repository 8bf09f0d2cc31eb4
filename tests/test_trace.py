"""一品一码 traceability: events appended over gRPC into a Merkle log, proofs anyone can check."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import grpc
import orjson
import pytest
import rfc8785
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


def _at(e: tpb.TraceEvent, **fields: int) -> tpb.TraceEvent:
    for name, value in fields.items():
        setattr(e.occurred_at, name, value)
    return e


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
        record_input("0.118.8/RICE-BATCH-1"), record_input("0.118.8/RICE-UNIT-1")]))
    return "0.118.8/RICE-BATCH-1"


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
    ("year_10000", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    ("negative_nanos", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    ("a_second_of_nanos", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
])
async def test_bad_events_are_refused_and_change_nothing(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection, case: str,
        expected: tuple[grpc.StatusCode, str]) -> None:
    await append(node, keys.writer, event(rice, "harvest", 100),
                 event("0.118.8/RICE-UNIT-1", "packing", 101))
    key = keys.other if case == "other_enterprise" else keys.writer
    ev = {
        "other_enterprise": event(rice, "retail", 120),
        "unregistered": event("0.118.8/NOPE", "retail", 120),
        "out_of_order": event(rice, "planting", 50),
        "forged_correction": event(rice, "harvest", 120, corrects=1),
        "oversize": event(rice, "note", 120, attrs={"x": "y" * 20_000}),
        "unknown_kind": event(rice, "teleport", 120),
        "future": event(rice, "retail", 10_000),
        # Timestamps protobuf itself calls invalid (google/protobuf/timestamp.proto): past
        # 9999-12-31, or nanos outside 0..999,999,999.
        "year_10000": _at(event(rice, "retail", 120), seconds=253_402_300_800),
        "negative_nanos": _at(event(rice, "retail", 120), nanos=-1),
        "a_second_of_nanos": _at(event(rice, "retail", 120), nanos=1_000_000_000),
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


def _deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


@pytest.mark.parametrize("attrs_json,field,reason", [
    ('{"text": "a\\u0000b"}', "events[1].attrs_json.text", "INVALID_VALUE"),
    ('{"a\\u0000": 1}', "events[1].attrs_json", "INVALID_VALUE"),
    (_deep(300), "events[1].attrs_json" + ".a" * 32, "INVALID_VALUE"),
    (_deep(2000), "events[1].attrs_json", "INVALID_VALUE"),    # beyond the parser's own limit
    ('{"n": 9007199254740992}', "events[1].attrs_json.n", "INVALID_VALUE"),
    ('{"n": [-9007199254740992]}', "events[1].attrs_json.n[0]", "INVALID_VALUE"),
    ('{"x": "' + "y" * 20_000 + '"}', "events[1].attrs_json", "TOO_LARGE"),
    ("[1]", "events[1].attrs_json", "INVALID_VALUE"),
    ("{", "events[1].attrs_json", "INVALID_VALUE"),
])
async def test_hostile_attrs_are_invalid_argument_naming_the_field(
        node: Node, keys: Keys, rice: str, db: asyncpg.Connection, attrs_json: str,
        field: str, reason: str) -> None:
    """NUL (which PostgreSQL's jsonb refuses), nesting deeper than anyone's data, integers a
    JCS verifier cannot read: refused up front as RegisterBatch refuses them, not INTERNAL."""
    bad = event(rice, "note", 120)
    bad.attrs_json = attrs_json
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await append(node, keys.writer, event(rice, "processing", 110), bad)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    info, violations = error_info(err.value)
    assert info.reason == reason
    assert violations is not None and violations.field_violations[0].field == field
    assert await db.fetchval("SELECT count(*) FROM trace_events") == 0
    # the largest exact integers are fine, and the served leaf canonicalises with rfc8785
    ok = event(rice, "note", 130, attrs={"n": 2**53 - 1, "m": -(2**53 - 1), "f": 1e300})
    await append(node, keys.writer, ok)
    served = (await http_get(node.ports.http, f"/api/trace/{rice}")).json()["events"][-1]
    served.pop("inclusion")
    assert rfc8785.dumps(served) == canonicalize(served)


@pytest.mark.parametrize("data,field", [
    ('{"s": "\\u0000"}', "records[0].values[0].data.s"),
    (_deep(300), "records[0].values[0].data" + ".a" * 32),
    ('[9007199254740993]', "records[0].values[0].data[0]"),
])
async def test_json_values_obey_the_same_limits(stub: Any, data: str, field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="j", records=[
            pb.RecordInput(identifier="0.118.8/J-1", values=[
                pb.Value(index=1, type="lab.report", format="json", data=data)])]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, violations = error_info(err.value)
    assert info.reason == "INVALID_VALUE"
    assert violations is not None and violations.field_violations[0].field == field


async def test_consistency_from_zero_is_refused_as_rfc_9162_defines_none(
        node: Node, keys: Keys, rice: str) -> None:
    await append(node, keys.writer, event(rice, "harvest", 100), event(rice, "retail", 110))
    zero = await http_get(node.ports.http, "/api/log/consistency?from=0&to=2")
    assert zero.status == 400 and zero.json()["field"] == "from"
    assert "RFC 9162" in zero.json()["detail"]
    same = await http_get(node.ports.http, "/api/log/consistency?from=2&to=2")
    assert same.status == 200 and same.json()["proof"] == []
    backwards = await http_get(node.ports.http, "/api/log/consistency?from=2&to=1")
    assert backwards.status == 400


async def test_signing_md_documents_the_leaf_as_served(node: Node, keys: Keys,
                                                       rice: str) -> None:
    """docs/SIGNING.md's recipe (rfc8785 + hashlib, no idnode code) verifies a served event,
    and its worked example's leaf hash is what the node computes."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "SIGNING.md").read_text("utf-8")
    recipe = text.split("With the `rfc8785` package and hashlib")[1]
    recipe = recipe.split("```python\n", 1)[1].split("```", 1)[0]
    await append(node, keys.writer, event(rice, "harvest", 100, attrs={"moisture": 14.5}),
                 event(rice, "retail", 110), event(rice, "note", 111, attrs={"text": "x"}))
    trace = (await http_get(node.ports.http, f"/api/trace/{rice}")).json()
    for i in range(3):
        exec(recipe.replace('trace["events"][0]', f'trace["events"][{i}]'),  # noqa: S102
             {"trace": trace})
    example = text.split("JCS       ", 1)[1].split("\n", 1)[0]
    digest = text.split("\nleaf hash ", 1)[1].split()[0]
    assert b64.enc(merkle.leaf_hash(example.encode())) == digest
    assert rfc8785.dumps(orjson.loads(example)) == example.encode()


def test_event_templates_report_every_violation() -> None:
    from idnode.core import event_templates
    from idnode.core.errors import TemplateViolation

    with pytest.raises(TemplateViolation) as err:
        event_templates.check("inspection", {"lab": "", "report_no": 7},
                              field="events[0].attrs")
    assert sorted(f for f, _ in err.value.violations) == [
        "events[0].attrs.lab", "events[0].attrs.report_no", "events[0].attrs.result"]
    assert err.value.message.startswith("3 template violations")
