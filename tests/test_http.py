"""The HTTP front door against a real server: Handle REST shape, negotiation, caching headers,
problems, health and metrics."""
from __future__ import annotations

import asyncio
from urllib.parse import quote

import orjson
import pytest

from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.helpers import http_get, read_response

Stub = registry_pb2_grpc.RegistryStub


@pytest.fixture
async def rice(stub: Stub) -> str:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="rice", records=[
        pb.RecordInput(identifier="0.118.8/RICE-1", values=[
            pb.Value(index=1, type="product.name", data="五常大米", ttl=600),
            pb.Value(index=2, type="URL", data="https://example.com/r/1"),
            pb.Value(index=3, type="lab.report", format="json", data='{"moisture": 14.2}'),
        ])]))
    return "0.118.8/RICE-1"


async def test_handle_api_answers_in_handle_rest_shape(node: Node, rice: str) -> None:
    resp = await http_get(node.ports.http, f"/api/handles/{rice}")
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["responseCode"] == 1 and body["handle"] == rice
    assert body["values"][0] == {
        "index": 1, "type": "product.name", "data": {"format": "string", "value": "五常大米"},
        "ttl": 600, "timestamp": body["values"][0]["timestamp"]}
    assert body["values"][0]["timestamp"].endswith("Z")
    # then the node's own Handle-form values: its certificate and its signature (issue 12)
    assert [v["index"] for v in body["values"]] == [1, 2, 3, 2147483600, 2147483601]
    assert [v["type"] for v in body["values"][3:]] == ["HS_CERT", "HS_SIGNATURE"]
    assert resp.headers["cache-control"] == "public, max-age=600"
    assert resp.headers["etag"].startswith('"1-')


async def test_handle_api_filters_by_type_and_index(node: Node, rice: str) -> None:
    resp = await http_get(node.ports.http, f"/api/handles/{rice}?type=URL&index=3")
    assert [v["index"] for v in resp.json()["values"]] == [2, 3]
    none = await http_get(node.ports.http, f"/api/handles/{rice}?type=EMAIL")
    assert none.status == 200
    assert none.json() == {"responseCode": 200, "handle": rice, "values": []}


async def test_unknown_identifier_is_404_problem_with_handle_code_100(node: Node) -> None:
    for _ in range(2):  # the second answer comes from the negative cache
        resp = await http_get(node.ports.http, "/api/handles/0.118.8/NOPE")
        assert resp.status == 404
        assert resp.headers["content-type"] == "application/problem+json"
        body = resp.json()
        assert body["responseCode"] == 100 and body["handle"] == "0.118.8/NOPE"
        assert body["status"] == 404 and body["reason"] == "IDENTIFIER_NOT_FOUND"
        assert body["type"].startswith("urn:idnode:problem:")


@pytest.mark.parametrize("target,reason,code,handle", [
    # Handle's RC_INVALID_HANDLE (102) with HTTP 400, the handle echoed as it was asked for
    ("/api/handles/0.118.8", "INVALID_IDENTIFIER", 102, "0.118.8"),
    ("/api/handles/0.118.08/x", "INVALID_IDENTIFIER", 102, "0.118.08/x"),
    ("/api/handles/0.118.8/a%00b", "INVALID_IDENTIFIER", 102, "0.118.8/a\x00b"),
    ("/api/handles/0.118.8/a%20b", "INVALID_IDENTIFIER", 102, "0.118.8/a b"),
    ("/api/handles/0.118.8/%ff%fe", "INVALID_IDENTIFIER", 102, "0.118.8/%ff%fe"),
    ("/api/handles/0.118.8/" + "x" * 300, "INVALID_IDENTIFIER", 102, "0.118.8/" + "x" * 300),
    ("/api/handles/0.118.8/x?index=abc", "INVALID_ARGUMENT", 2, "0.118.8/x"),
    ("/api/handles/0.118.8/x?callback=alert(1)", "INVALID_ARGUMENT", 2, "0.118.8/x"),
])
async def test_malformed_identifier_is_400_problem(node: Node, target: str, reason: str,
                                                   code: int, handle: str) -> None:
    resp = await http_get(node.ports.http, target)
    assert resp.status == 400, resp.body
    body = resp.json()
    assert body["reason"] == reason and body["responseCode"] == code
    assert body["handle"] == handle and body["message"] == body["detail"]
    assert resp.headers["content-type"] == "application/problem+json"


async def test_type_filter_matches_subtypes_over_http(node: Node, rice: str) -> None:
    # Handle's type rules (hdllib Util.isParentTypeInArray): "product." is every product.*
    # type and "product" itself; case does not matter.
    for asked in ("product.", "PRODUCT.NAME", "Product."):
        resp = await http_get(node.ports.http, f"/api/handles/{rice}?type={asked}")
        assert [v["type"] for v in resp.json()["values"]] == ["product.name"], asked
    resp = await http_get(node.ports.http, f"/api/handles/{rice}?type=lab.&type=url")
    assert [v["index"] for v in resp.json()["values"]] == [2, 3]
    # "product" alone is a type, not a family: no product.name
    none = await http_get(node.ports.http, f"/api/handles/{rice}?type=product")
    assert none.json()["values"] == [] and none.json()["responseCode"] == 200


async def test_pretty_and_jsonp_as_handle_writes_them(node: Node, rice: str) -> None:
    plain = await http_get(node.ports.http, f"/api/handles/{rice}")
    pretty = await http_get(node.ports.http, f"/api/handles/{rice}?pretty")
    assert pretty.status == 200 and b"\n  " in pretty.body and b"\n" not in plain.body
    assert pretty.json() == plain.json()
    assert pretty.headers["etag"] != plain.headers["etag"]
    again = await http_get(node.ports.http, f"/api/handles/{rice}?pretty=true",
                           {"If-None-Match": pretty.headers["etag"]})
    assert again.status == 304
    assert b"\n" not in (await http_get(node.ports.http,
                                        f"/api/handles/{rice}?pretty=no")).body
    jsonp = await http_get(node.ports.http, f"/api/handles/{rice}?callback=jQuery.cb_1&pretty")
    assert jsonp.status == 200
    assert jsonp.headers["content-type"] == "application/javascript; charset=utf-8"
    assert jsonp.headers["x-content-type-options"] == "nosniff"
    assert jsonp.body.startswith(b"/**/jQuery.cb_1(") and jsonp.body.endswith(b");")
    assert orjson.loads(jsonp.body[len(b"/**/jQuery.cb_1("):-2]) == plain.json()
    # errors too, with their status
    missing = await http_get(node.ports.http, "/api/handles/0.118.8/NOPE?callback=cb")
    assert missing.status == 404 and missing.body.startswith(b"/**/cb(")
    assert orjson.loads(missing.body[7:-2])["responseCode"] == 100
    for bad in ("alert(1)", "a;b", "1abc", "", "a..b", "x" * 65):
        resp = await http_get(node.ports.http, f"/api/handles/{rice}?callback={quote(bad)}")
        assert resp.status == 400 and resp.json()["field"] == "callback", bad


async def test_anonymous_reads_are_cors_enabled(node: Node, rice: str) -> None:
    origin = {"Origin": "https://app.example"}
    for target in (f"/api/handles/{rice}", f"/{rice}", "/api/handles/0.118.8/NOPE",
                   "/api/handles/0.118.8", "/healthz"):
        resp = await http_get(node.ports.http, target, origin)
        assert resp.headers["access-control-allow-origin"] == "*", target
        assert "ETag" in resp.headers["access-control-expose-headers"]
    # a preflight (and any OPTIONS) is answered, not refused
    pre = await http_get(node.ports.http, f"/api/handles/{rice}", {
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept-language"}, method="OPTIONS")
    assert pre.status == 204 and pre.body == b"" and "content-length" not in pre.headers
    assert pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"
    assert "Accept-Language" in pre.headers["access-control-allow-headers"]
    assert "Authorization" not in pre.headers["access-control-allow-headers"]
    assert pre.headers["allow"] == "GET, HEAD, OPTIONS"
    # an owner's view (Authorization) is not offered to other origins
    owner = await http_get(node.ports.http, f"/api/handles/{rice}",
                           {**origin, "Authorization": "Bearer nope"})
    assert owner.status == 401 and "access-control-allow-origin" not in owner.headers


async def test_percent_encoded_identifier_resolves(node: Node, stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="enc", records=[
        pb.RecordInput(identifier="0.118.8/批次/2026-A%B", values=[
            pb.Value(index=1, type="a", data="x")])]))
    resp = await http_get(node.ports.http, "/api/handles/" + quote("0.118.8/批次/2026-A%B"))
    assert resp.status == 200 and resp.json()["handle"] == "0.118.8/批次/2026-A%B"
    # Slashes may also be encoded, as Handle clients do.
    resp = await http_get(node.ports.http, "/api/handles/" + quote("0.118.8/批次/2026-A%B", safe=""))
    assert resp.status == 200


async def test_etag_gives_304_and_changes_with_version(node: Node, stub: Stub, rice: str) -> None:
    first = await http_get(node.ports.http, f"/api/handles/{rice}")
    tag = first.headers["etag"]
    again = await http_get(node.ports.http, f"/api/handles/{rice}", {"If-None-Match": tag})
    assert again.status == 304 and again.body == b""
    await stub.UpdateValues(pb.UpdateValuesRequest(identifier=rice, values=[
        pb.Value(index=1, type="product.name", data="新")]))
    after = await http_get(node.ports.http, f"/api/handles/{rice}", {"If-None-Match": tag})
    assert after.status == 200 and after.headers["etag"] != tag
    assert after.json()["values"][0]["data"]["value"] == "新"


async def test_identifier_path_negotiates_json_and_html(node: Node, rice: str) -> None:
    js = await http_get(node.ports.http, f"/{rice}", {"Accept": "application/json"})
    assert js.status == 200 and js.headers["content-type"] == "application/json"
    assert js.json()["identifier"] == rice and js.json()["version"] == 1
    assert js.headers["vary"] == "Accept"
    curl = await http_get(node.ports.http, f"/{rice}", {"Accept": "*/*"})
    assert curl.headers["content-type"] == "application/json"
    browser = await http_get(node.ports.http, f"/{rice}", {
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
    assert browser.status == 200 and browser.headers["content-type"].startswith("text/html")
    page = browser.body.decode()
    assert "五常大米" in page and rice in page
    # The scan page carries live scan counts: never stored, no validator.
    assert "etag" not in browser.headers and browser.headers["cache-control"] == "no-store"


async def test_html_page_escapes_values(node: Node, stub: Stub) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="xss", records=[
        pb.RecordInput(identifier="0.118.8/XSS", values=[
            pb.Value(index=1, type="product.name", data="<script>alert(1)</script>")])]))
    page = await http_get(node.ports.http, "/0.118.8/XSS", {"Accept": "text/html"})
    assert b"<script>alert" not in page.body and b"&lt;script&gt;" in page.body


async def test_health_ready_and_metrics(node: Node, rice: str) -> None:
    assert (await http_get(node.ports.http, "/healthz")).status == 200
    ready = await http_get(node.ports.http, "/readyz")
    assert ready.status == 200 and ready.json()["checks"] == {"database": "ok", "cache": "ok"}
    await http_get(node.ports.http, f"/api/handles/{rice}")
    await http_get(node.ports.http, f"/api/handles/{rice}")
    text = (await http_get(node.ports.metrics, "/metrics")).body.decode()
    assert 'idnode_http_requests_total{route="handle_api",status="200",worker="0"} 2.0' in text
    assert "idnode_http_request_duration_seconds_bucket" in text
    assert "idnode_cache_hits_total" in text and "idnode_db_pool_connections" in text
    assert 'idnode_http_connections{listener="metrics",worker="0"} 1' in text


async def test_metrics_are_on_the_operator_listener_only(node: Node) -> None:
    public = await http_get(node.ports.http, "/metrics")
    assert public.status == 404 and public.headers["content-type"] == "application/problem+json"
    assert node.ports.metrics not in (0, node.ports.http)
    assert (await http_get(node.ports.metrics, "/healthz")).status == 200
    assert (await http_get(node.ports.metrics, "/api/handles/0.118.8/X")).status == 404
    assert (await http_get(node.ports.metrics, "/metrics", method="POST")).status == 405


async def test_non_get_methods_are_405_problem(node: Node) -> None:
    resp = await http_get(node.ports.http, "/api/handles/0.118.8/x", method="POST")
    assert resp.status == 405 and resp.headers["allow"] == "GET, HEAD, OPTIONS"


async def test_head_has_headers_without_body(node: Node, rice: str) -> None:
    resp = await http_get(node.ports.http, f"/api/handles/{rice}", method="HEAD")
    assert resp.status == 200 and int(resp.headers["content-length"]) > 0 and resp.body == b""


async def test_pipelined_requests_answer_in_order(node: Node, rice: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.ports.http)
    targets = [f"/api/handles/{rice}", "/api/handles/0.118.8/MISSING-1", "/healthz",
               f"/api/handles/{rice}?index=2", "/api/handles/0.118.8/MISSING-2"]
    writer.write(b"".join(f"GET {t} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for t in targets))
    statuses = [(await read_response(reader)).status for _ in targets]
    writer.close()
    assert statuses == [200, 404, 200, 200, 404]


async def test_malformed_http_is_400_and_closes(node: Node) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", node.ports.http)
    writer.write(b"GARBAGE\x00 / HTTP/1.1\r\n\r\n")
    resp = await read_response(reader)
    assert resp.status == 400
    assert await reader.read() == b""
    writer.close()


async def test_overlong_url_is_414(node: Node) -> None:
    resp = await http_get(node.ports.http, "/api/handles/0.118.8/" + "x" * 9000)
    assert resp.status == 414


async def test_unknown_top_level_path_is_404(node: Node) -> None:
    assert (await http_get(node.ports.http, "/favicon.ico")).status == 404
