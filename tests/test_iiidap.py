"""IIIDAP lookups on the node's HTTP server: identifier registration data in the RDAP shape
(objectClassName, handle, events, links, notices, conformance), help, errors, and the
resolver's permissions (private values never shown anonymously)."""
from __future__ import annotations

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import http_get

#: Members every IIIDAP answer carries (RFC 9083 §4.1, §4.3 shapes), and an object's.
COMMON = {"iiidapConformance", "notices"}
IDENTIFIER = COMMON | {"objectClassName", "handle", "prefix", "status", "version", "values",
                       "events", "links"}
ERROR = COMMON | {"errorCode", "title", "description"}


async def test_identifier_lookup_help_and_errors(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="iiidap-1", records=[pb.RecordInput(
                identifier="0.118.8/玉米-2026/001", values=[
                    pb.Value(index=1, type="product.name", data="玉米"),
                    pb.Value(index=2, type="product.cost", data="3.20", private=True)])]))
    port = node.ports.http
    anon = await http_get(port, "/iiidap/identifier/0.118.8/%E7%8E%89%E7%B1%B3-2026/001")
    assert anon.status == 200 and anon.headers["content-type"] == "application/json"
    doc = anon.json()
    assert IDENTIFIER <= set(doc)
    assert doc["objectClassName"] == "identifier" and doc["handle"] == "0.118.8/玉米-2026/001"
    assert doc["iiidapConformance"] == ["iiidap_level_0"] and doc["prefix"] == "0.118.8"
    assert [v["type"] for v in doc["values"]] == ["product.name"]  # the private one withheld
    assert [e["eventAction"] for e in doc["events"]] == ["registration", "last changed"]
    assert doc["links"][0]["rel"] == "self" and doc["links"][0]["href"].endswith(
        "/iiidap/identifier/0.118.8/玉米-2026/001")
    owner = await http_get(port, "/iiidap/identifier/0.118.8/%E7%8E%89%E7%B1%B3-2026/001",
                           {"Authorization": f"Bearer {keys.writer}"})
    assert [v["type"] for v in owner.json()["values"]] == ["product.name", "product.cost"]
    assert "no-store" in owner.headers["cache-control"]
    other = await http_get(port, "/iiidap/identifier/0.118.8/%E7%8E%89%E7%B1%B3-2026/001",
                           {"Authorization": f"Bearer {keys.other}"})
    assert [v["type"] for v in other.json()["values"]] == ["product.name"]

    helped = await http_get(port, "/iiidap/help")
    assert helped.status == 200 and COMMON <= set(helped.json())
    assert any(n["title"] == "Help" for n in helped.json()["notices"])

    for target, status in (("/iiidap/identifier/0.118.8/NOPE", 404),
                           ("/iiidap/identifier/not-an-identifier", 400),
                           ("/iiidap/identifier/0.118.8/%FF", 400),
                           ("/iiidap/domain/example.com", 400)):
        resp = await http_get(port, target)
        assert resp.status == status, (target, resp.body)
        err = resp.json()
        assert ERROR <= set(err) and err["errorCode"] == status
        assert isinstance(err["description"], list) and err["description"][0]
    bad = await http_get(port, "/iiidap/identifier/0.118.8/X", {"Authorization": "Bearer nope"})
    assert bad.status == 401 and bad.json()["errorCode"] == 401
