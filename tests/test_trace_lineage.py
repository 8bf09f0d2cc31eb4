"""一品一码 lineage, event templates, attachments and recalls: a bag of rice traces back to the
fields it came from, and every bad input is refused precisely, changing nothing."""
from __future__ import annotations

import asyncpg
import grpc
import pytest

from idnode import keys as keyrings
from idnode.core.provenance import check_trace
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import trace_pb2 as tpb
from idnode.verify import verify_trace
from tests.conftest import Keys
from tests.helpers import http_get, record_input
from tests.test_trace import append, code_of, event

FIELDS = ("0.118.8/FIELD-A", "0.118.8/FIELD-B")
BATCH = "0.118.8/RICE-2026-B1"
UNITS = ("0.118.8/RICE-2026-B1-0001", "0.118.8/RICE-2026-B1-0002")


@pytest.fixture
async def chain(node: Node, keys: Keys, stub: object) -> None:
    """Two field lots harvested into one batch, packed into two bags."""
    await stub.RegisterBatch(pb.RegisterBatchRequest(  # type: ignore[attr-defined]
        idempotency_key="chain", records=[record_input(i) for i in (*FIELDS, BATCH, *UNITS)]))
    await append(node, keys.writer,
                 event(FIELDS[0], "planting", 0, attrs={"crop": "水稻", "area_mu": 120}),
                 event(FIELDS[1], "planting", 1, attrs={"crop": "水稻"}),
                 event(FIELDS[0], "fertilising", 30, attrs={"product": "有机肥", "kg_per_mu": 50}),
                 event(BATCH, "harvest", 150, inputs=list(FIELDS),
                       attrs={"quantity_kg": 80_000, "moisture": 14.5}),
                 event(BATCH, "processing", 160, attrs={"step": "脱壳抛光"}),
                 event(UNITS[0], "packing", 165, inputs=[BATCH], attrs={"net_weight_g": 5000}),
                 event(UNITS[1], "packing", 165, inputs=[BATCH], attrs={"net_weight_g": 5000}),
                 event(UNITS[0], "retail", 170, place="哈尔滨"))


async def trace_of(node: Node, ident: str) -> dict:
    return (await http_get(node.ports.http, f"/api/trace/{ident}")).json()


async def test_a_bag_traces_back_to_its_fields_without_copies(node: Node, chain: None,
                                                              db: asyncpg.Connection) -> None:
    doc = await trace_of(node, UNITS[0])
    events = [(e["identifier"], e["kind"]) for e in doc["events"]]
    assert events == [(FIELDS[0], "planting"), (FIELDS[1], "planting"),
                      (FIELDS[0], "fertilising"), (BATCH, "harvest"), (BATCH, "processing"),
                      (UNITS[0], "packing"), (UNITS[0], "retail")]
    assert {(link["child"], link["parent"]) for link in doc["lineage"]} == {
        (UNITS[0], BATCH), (BATCH, FIELDS[0]), (BATCH, FIELDS[1])}
    # Batch events are stored once, not per unit.
    assert await db.fetchval("SELECT count(*) FROM trace_events WHERE kind = 'harvest'") == 1
    trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
    anchor = keyrings.keyring(node.settings, "anchor").jwks()
    assert verify_trace(doc, trust, anchor) == 7


async def test_lineage_is_checked_offline(node: Node, chain: None) -> None:
    doc = await trace_of(node, UNITS[0])
    jwks = (await http_get(node.ports.http, "/.well-known/jwks.json")).json()
    assert check_trace(doc, jwks).ok
    # A field event slipped into a product that does not descend from the field...
    other = await trace_of(node, FIELDS[1])
    forged = dict(doc, lineage=[link for link in doc["lineage"]
                                if link["parent"] != FIELDS[0]])
    checked = check_trace(forged, jwks)
    assert {e["leaf"] for e in doc["events"] if e["identifier"] == FIELDS[0]} <= set(
        checked.failures)
    # ...or a link no event declared.
    fake = dict(other, lineage=[{"child": FIELDS[1], "parent": FIELDS[0], "leaf": 1}])
    assert check_trace(fake, jwks).failures[-1].reason == "content_mismatch"
    # Tampering with a field's event shows on the bag's trace.
    doc["events"][0]["attrs"]["area_mu"] = 12
    assert check_trace(doc, jwks).failures[0].reason == "root_mismatch"


@pytest.mark.parametrize("case,expected", [
    ("cycle", (grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_CYCLE")),
    ("cycle_in_request", (grpc.StatusCode.FAILED_PRECONDITION, "LINEAGE_CYCLE")),
    ("self", (grpc.StatusCode.INVALID_ARGUMENT, "LINEAGE_CYCLE")),
    ("unregistered_input", (grpc.StatusCode.NOT_FOUND, "IDENTIFIER_NOT_FOUND")),
    ("bad_input", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_IDENTIFIER")),
    ("template_required", (grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_VIOLATION")),
    ("template_type", (grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_VIOLATION")),
    ("oversize_attachment", (grpc.StatusCode.INVALID_ARGUMENT, "TOO_LARGE")),
    ("attachment_type", (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    ("operator_not_recall", (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")),
    ("other_recall", (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")),
])
async def test_bad_lineage_and_attributes_change_nothing(
        node: Node, keys: Keys, chain: None, db: asyncpg.Connection, case: str,
        expected: tuple[grpc.StatusCode, str]) -> None:
    before = await db.fetchval("SELECT size FROM trace_log")
    key = {"operator_not_recall": keys.operator, "other_recall": keys.other}.get(case, keys.writer)
    bad = {
        "cycle": [event(FIELDS[0], "note", 200, inputs=[UNITS[0]])],
        "cycle_in_request": [event(FIELDS[0], "note", 200, inputs=[FIELDS[1]]),
                             event(FIELDS[1], "note", 200, inputs=[FIELDS[0]])],
        "self": [event(BATCH, "note", 200, inputs=[BATCH])],
        "unregistered_input": [event(BATCH, "note", 200, inputs=["0.118.8/NO-SUCH-LOT"])],
        "bad_input": [event(BATCH, "note", 200, inputs=["not an identifier"])],
        "template_required": [event(BATCH, "inspection", 200, attrs={"lab": "HLJ-QC"})],
        "template_type": [event(FIELDS[0], "fertilising", 200,
                                attrs={"product": "尿素", "kg_per_mu": "lots"})],
        "oversize_attachment": [event(BATCH, "inspection", 200, attrs={"result": "pass"},
                                      attachments=[tpb.Attachment(media_type="application/pdf",
                                                                  content=b"%" * 600_000)])],
        "attachment_type": [event(BATCH, "inspection", 200, attrs={"result": "pass"},
                                  attachments=[tpb.Attachment(media_type="text/html",
                                                              content=b"<script>")])],
        "operator_not_recall": [event(BATCH, "retail", 200)],
        "other_recall": [event(BATCH, "recall", 200, attrs={"reason": "competitor"})],
    }[case]
    # A good event first: the request is all or nothing.
    assert await code_of(node, key, event(UNITS[1], "retail", 199), *bad) == expected
    assert await db.fetchval("SELECT size FROM trace_log") == before
    assert await db.fetchval("SELECT count(*) FROM trace_links") == 4
    assert await db.fetchval("SELECT count(*) FROM trace_attachments") == 0


async def test_template_errors_name_the_attribute(node: Node, keys: Keys, chain: None) -> None:
    try:
        await append(node, keys.writer, event(BATCH, "inspection", 200, attrs={"lab": "X"}))
    except grpc.aio.AioRpcError as exc:
        assert "result" in (exc.details() or "")
    else:
        raise AssertionError("an inspection without a result was accepted")


async def test_attachments_are_logged_by_hash_and_served(node: Node, keys: Keys,
                                                         chain: None) -> None:
    report = b"%PDF-1.4 test report: cadmium 0.02 mg/kg, pass\n"
    await append(node, keys.writer, event(
        BATCH, "inspection", 161, attrs={"result": "pass", "lab": "黑龙江省农产品质检中心"},
        attachments=[tpb.Attachment(media_type="application/pdf", content=report)]))
    doc = await trace_of(node, UNITS[0])
    inspection = next(e for e in doc["events"] if e["kind"] == "inspection")
    import hashlib
    digest = hashlib.sha256(report).hexdigest()
    assert inspection["attachments"] == [{"sha256": digest, "media_type": "application/pdf",
                                          "size": len(report)}]
    served = await http_get(node.ports.http, f"/api/attachments/{digest}")
    assert served.status == 200 and served.body == report
    assert served.headers["content-type"] == "application/pdf"
    assert served.headers["x-content-type-options"] == "nosniff"
    missing = await http_get(node.ports.http, "/api/attachments/" + "0" * 64)
    assert missing.status == 404
    assert (await http_get(node.ports.http, "/api/attachments/xyz")).status == 400


async def test_the_operator_may_recall_and_the_recall_reaches_every_unit(
        node: Node, keys: Keys, chain: None) -> None:
    await append(node, keys.operator, event(BATCH, "recall", 180,
                                            attrs={"reason": "镉超标", "authority": "省市场监管局"}))
    for unit in UNITS:
        doc = await trace_of(node, unit)
        assert [e["attrs"]["reason"] for e in doc["events"] if e["kind"] == "recall"] == ["镉超标"]
