"""GS1: GTIN check digits, Digital Link parsing and compression, and the node as a
GS1-Conformant resolver (the behaviours gs1/GS1DL-resolver-testsuite checks)."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from idnode.cli import local_operator
from idnode.core import gs1, gs1compress
from idnode.core.errors import InvalidArgument, NotFound
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from tests.conftest import Keys
from tests.helpers import http_get, read_response, record_input

VECTORS = json.loads((Path(__file__).parent / "vectors" / "gs1_compression.json").read_text())
GTIN = "09506000134352"
BATCH_ID = f"0.118.8/01/{GTIN}/10/AB%2F12"


@pytest.mark.parametrize("gtin", ["09506000134352", "4006381333931", "96385074", "036000291452"])
def test_valid_gtins(gtin: str) -> None:
    assert gs1.gtin14(gtin) == gtin.zfill(14)


@pytest.mark.parametrize("gtin", ["09506000134353", "4006381333930", "123", "0950600013435a"])
def test_invalid_gtins_are_refused(gtin: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        gs1.gtin14(gtin)
    assert err.value.reason == "INVALID_GTIN"


@given(st.text("0123456789", min_size=13, max_size=13))
def test_any_body_with_its_check_digit_is_valid(body: str) -> None:
    full = body + gs1.check_digit(body)
    assert gs1.gtin14(full) == full
    wrong = body + str((int(full[-1]) + 1) % 10)
    with pytest.raises(InvalidArgument):
        gs1.gtin14(wrong)


@pytest.mark.parametrize("path", [
    "/01/09506000134352/21/7/10/A", "/01/09506000134352/17/2612", "/02/09506000134352",
    "/01/09506000134352/10/" + "x" * 21, "/01/09506000134352/10", "/01/09506000134352/10/a b",
    "/01/09506000134352/10/A/10/B", "/01/09506000134352/235/T/21/7", "/01/09506000134352/10/%ff",
    "/01/09506000134352/10/ABC1/foo", "/ARFKk4XBo~", "/01/09506000134352/ARFKk4XBoA"])
def test_bad_digital_links_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument):
        gs1.parse_path(path)


@pytest.mark.parametrize("path,qualifiers", [
    # what GS1's toolkit and biip write: "/" in a batch percent-encoded, every GTIN qualifier
    ("/01/09506000134352/10/AB%2F12", (("10", "AB/12"),)),
    ("/01/09506000134352/22/2A/10/ABC1/21/XYZ-1234", (("22", "2A"), ("10", "ABC1"),
                                                      ("21", "XYZ-1234"))),
    ("/01/09506000134352/22/V1/", (("22", "V1"),)),               # a trailing slash tolerated
    ("/01/09506000134352/235/TPX-1", (("235", "TPX-1"),)),
    ("/01/09506000134352/10/ABC%26%2B123/21/12345", (("10", "ABC&+123"), ("21", "12345"))),
    ("/gtin/9506000134352/cpv/V1/lot/L%2F1/ser/9", (("22", "V1"), ("10", "L/1"), ("21", "9"))),
])
def test_digital_links_the_tools_write_are_accepted(path: str, qualifiers: Any) -> None:
    link = gs1.parse_path(path).link
    assert link.gtin == GTIN and link.qualifiers == qualifiers
    # the identifier suffix keeps "/" out of the path structure; the canonical path encodes
    assert link.suffix().count("/") == 1 + 2 * len(qualifiers)
    assert gs1.parse_path(link.path()).link == link


def test_a_batch_with_a_slash_is_its_own_identifier() -> None:
    link = gs1.parse_path("/01/09506000134352/10/AB%2F12/21/7").link
    assert link.suffix() == "01/09506000134352/10/AB%2F12/21/7"
    assert [b.suffix() for b in link.broader()] == [
        "01/09506000134352/10/AB%2F12/21/7", "01/09506000134352/10/AB%2F12", "01/09506000134352"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["compressed"])
def test_compressed_links_decompress_as_gs1s_toolkit_does(vector: dict[str, Any]) -> None:
    compressed = urlsplit(vector["compressed"])
    parsed = gs1.parse_path(compressed.path)
    assert parsed.compressed
    expected = urlsplit(vector["uncompressed"])
    assert parsed.link == gs1.parse_path(expected.path).link
    plain = [p.split("=", 1) for p in expected.query.split("&")] if expected.query else []
    passed = [(k, v) for k, v in plain if k.isdigit()]
    # non-GS1 pairs are in the segment, or left in the query string beside it
    if not compressed.query:
        passed += [(k, v) for k, v in plain if not k.isdigit()]
    assert sorted(parsed.attributes) == sorted((k, v) for k, v in passed)
    if "optimised" in vector:  # and packing them again gives the toolkit's bytes exactly
        segment = compressed.path.rsplit("/", 1)[1]
        ais, other = gs1compress.decompress(segment)
        assert gs1compress.compress(ais.items(), other.items(),
                                    optimise=vector["optimised"]) == segment


_CSET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


@given(st.lists(st.sampled_from(["22", "10", "21"]), unique=True),
       st.lists(st.text(_CSET82, min_size=1, max_size=20), min_size=3, max_size=3),
       st.booleans(), st.text("0123456789", min_size=6, max_size=6))
def test_any_link_survives_compression(order: list[str], values: list[str], optimise: bool,
                                       expiry: str) -> None:
    ais = {"01": GTIN, **dict(zip(sorted(order, key=["22", "10", "21"].index), values)),
           "17": expiry}
    segment = gs1compress.compress(ais.items(), [("utm", "x y")], optimise=optimise)
    assert gs1compress.decompress(segment) == (ais, {"utm": "x y"})
    parsed = gs1.parse_path("/" + segment)
    assert parsed.link.qualifiers == tuple((k, ais[k]) for k in ("22", "10", "21") if k in ais)
    assert dict(parsed.attributes) == {"17": expiry, "utm": "x y"}


def test_other_primary_keys_are_not_served() -> None:
    sscc = gs1compress.compress([("00", "106141412345678908")])
    with pytest.raises(NotFound) as err:
        gs1.parse_path("/" + sscc)
    assert err.value.reason == "GS1_KEY_NOT_SERVED"


# -- the node as a GS1-Conformant resolver -----------------------------------------------------

#: The GS1 linkset schema's rules (https://ref.gs1.org/standards/resolver/linkset-schema):
#: every context has an anchor and an item description, every link an http(s) href and a
#: title, languages and media types of the given shapes, nothing else.
LINKSET_SCHEMA = {
    "type": "object", "required": ["linkset"], "additionalProperties": False,
    "properties": {"linkset": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["anchor", "itemDescription"],
        "properties": {"anchor": {"type": "string", "pattern": "^https?://"},
                       "itemDescription": {"type": "string"}},
        "patternProperties": {"^https://ref\\.gs1\\.org/voc/[A-Za-z]+$": {
            "type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["href", "title"], "additionalProperties": False,
                "properties": {
                    "href": {"type": "string", "pattern": "^https?://[a-zA-Z0-9./]+"},
                    "title": {"type": "string", "minLength": 1},
                    "hreflang": {"type": "array", "items": {
                        "type": "string", "pattern": "(^\\w{2}$)|(^\\w{2}-\\w{2}$)"}},
                    "type": {"type": "string", "pattern": "\\w+/[-+.\\w]+"},
                    "context": {"type": "array"}}}}},
        "additionalProperties": False}}}}


def _json(obj: object) -> str:
    return orjson.dumps(obj).decode()


@pytest.fixture
async def rice(node: Node, stub: Any) -> str:
    await node.core.tenancy.map_gs1(local_operator(), "9506000", "0.118.8")
    cert = {"title": "有机认证", "type": "text/html"}
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="gs1", records=[
        pb.RecordInput(identifier=f"0.118.8/01/{GTIN}", values=[
            pb.Value(index=1, type="product.name", data="五常大米"),
            pb.Value(index=2, type="URL", data="https://brand.example/rice"),
            pb.Value(index=3, type="gs1:certificationInfo", format="json", data=_json(
                {**cert, "href": "https://cert.example/zh", "hreflang": "zh"})),
            pb.Value(index=4, type="gs1:certificationInfo", format="json", data=_json(
                {**cert, "href": "https://cert.example/en", "hreflang": ["en"],
                 "title": "Organic certificate"})),
            pb.Value(index=5, type="gs1:instructions", data="https://brand.example/cook-1"),
            pb.Value(index=6, type="gs1:instructions", data="https://brand.example/cook-2"),
            pb.Value(index=7, type="gs1:recallStatus", data="javascript:alert(1)"),  # not a link
        ]),
        pb.RecordInput(identifier=BATCH_ID, values=[
            pb.Value(index=1, type="product.name", data="五常大米 AB/12"),
            pb.Value(index=2, type="gs1:recallStatus", data="https://recall.example/ab12")])]))
    return f"/01/{GTIN}/10/AB%2F12"


def _page(node: Node, identifier: str) -> str:
    return f"http://127.0.0.1:{node.ports.http}/" + identifier.replace("%", "%25")


async def test_a_scan_is_redirected_to_the_default_link(node: Node, rice: str) -> None:
    port = node.ports.http
    resp = await http_get(port, rice)
    assert resp.status == 307 and resp.headers["location"] == _page(node, BATCH_ID)
    assert resp.headers["access-control-allow-origin"] == "*"
    assert (f'<http://127.0.0.1:{port}{rice}?linkType=linkset>; rel="linkset"; '
            'type="application/linkset+json"') == resp.headers["link"]
    assert 'rel="gs1:' not in resp.headers["link"]  # no legacy list of every link
    slash = await http_get(port, rice + "/")
    assert (slash.status, slash.headers["location"]) == (307, resp.headers["location"])
    query = await http_get(port, rice + "?foo=bar&17=261231")
    assert query.headers["location"] == _page(node, BATCH_ID) + "?foo=bar&17=261231"
    # walking up: a serial with no record of its own, a batch nobody registered: 303
    unit = await http_get(port, rice + "/21/NOPE")
    assert (unit.status, unit.headers["location"]) == (303, _page(node, BATCH_ID))
    other = await http_get(port, f"/01/{GTIN}/10/KL8G")
    assert (other.status, other.headers["location"]) == (303, _page(node, f"0.118.8/01/{GTIN}"))
    # the default link is the consumer scan page, which counts the scan
    page = await http_get(port, urlsplit(resp.headers["location"]).path,
                          {"Accept": "text/html"})
    assert page.status == 200 and "五常大米 AB/12" in page.body.decode()
    head = await http_get(port, rice, method="HEAD")
    assert head.status == 307 and head.body == b""


async def test_the_linkset_covers_every_level(node: Node, rice: str) -> None:
    port = node.ports.http
    asked = [await http_get(port, rice + "?linkType=linkset"),
             await http_get(port, rice + "?linkType=all"),
             await http_get(port, rice, {"Accept": "application/linkset+json"})]
    for resp in asked:
        assert resp.status == 200 and resp.headers["content-type"] == "application/linkset+json"
        assert ('<https://ref.gs1.org/standards/resolver/linkset-context>; '
                'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
                in resp.headers["link"])
        assert resp.json() == asked[0].json()
    doc = asked[0].json()
    Draft7Validator(LINKSET_SCHEMA).validate(doc)
    base = f"http://127.0.0.1:{port}"
    batch, product = doc["linkset"]
    assert batch["anchor"] == base + rice and product["anchor"] == f"{base}/01/{GTIN}"
    voc = "https://ref.gs1.org/voc/"
    assert batch[voc + "defaultLink"] == [{"href": _page(node, BATCH_ID),
                                           "title": "五常大米 AB/12"}]
    assert batch[voc + "recallStatus"][0]["href"] == "https://recall.example/ab12"
    assert [c["hreflang"] for c in product[voc + "certificationInfo"]] == [["zh"], ["en"]]
    assert product[voc + "pip"] == [{"href": "https://brand.example/rice",
                                     "title": "Product information"}]
    assert voc + "recallStatus" not in product  # javascript: is no link
    js = await http_get(port, rice, {"Accept": "application/json"})
    assert js.status == 200 and js.headers["content-type"] == "application/json"
    assert js.json() == doc


async def test_link_types_are_followed_by_type_language_and_level(node: Node,
                                                                  rice: str) -> None:
    port = node.ports.http

    async def where(query: str, **headers: str) -> tuple[int, str | None]:
        resp = await http_get(port, rice + query, headers)
        return resp.status, resp.headers.get("location")

    assert await where("?linkType=gs1:recallStatus") == (307, "https://recall.example/ab12")
    # found only higher up: 303; the language decides between two certificates
    cert = "?linkType=https://ref.gs1.org/voc/certificationInfo"
    assert await where(cert, **{"Accept-Language": "en-GB,en;q=0.9"}) == (
        303, "https://cert.example/en")
    assert await where(cert, **{"Accept-Language": "zh-CN"}) == (303, "https://cert.example/zh")
    assert await where("?linkType=gs1:certificationInfo&utm=x") == (
        303, "https://cert.example/zh?utm=x")
    # two links nothing tells apart: the client chooses
    many = await http_get(port, rice + "?linkType=gs1:instructions")
    assert many.status == 300 and len(many.json()["linkset"][0][
        "https://ref.gs1.org/voc/instructions"]) == 2
    missing = await http_get(port, rice + "?linkType=gs1:nosuchlt")
    assert missing.status == 404 and missing.json()["reason"] == "LINK_TYPE_NOT_FOUND"
    assert (await http_get(port, rice + "?linkType=schema:foo")).status == 404
    # the batch has no pip of its own: its scan page is one; the product's is its URL value
    assert await where("?linkType=gs1:pip") == (307, _page(node, BATCH_ID))
    assert (await http_get(port, f"/01/{GTIN}?linkType=gs1:pip")).headers["location"] == \
        "https://brand.example/rice"


async def test_resolver_description_cors_and_methods(node: Node, rice: str) -> None:
    port = node.ports.http
    desc = await http_get(port, "/.well-known/gs1resolver")
    assert desc.status == 200 and desc.headers["access-control-allow-origin"] == "*"
    body = desc.json()
    assert body["resolverRoot"] == f"http://127.0.0.1:{port}"
    assert body["supportedPrimaryKeys"] == ["01"] and body["supportedLinkType"][0]["prefix"] == \
        "gs1:"
    # targets and anchors are absolute, on the host the client asked
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {rice} HTTP/1.1\r\nHost: id.example.cn\r\n\r\n".encode())
    behind = await read_response(reader)
    writer.close()
    assert behind.headers["location"].startswith("http://id.example.cn/0.118.8/")
    assert (await http_get(port, rice, {"Host": "evil\"host"})).status == 400
    pre = await http_get(port, rice, {"Origin": "https://ref.gs1.org",
                                      "Access-Control-Request-Method": "GET"}, method="OPTIONS")
    assert pre.status == 204 and pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS"


async def test_errors_are_not_200(node: Node, rice: str) -> None:
    port = node.ports.http
    assert (await http_get(port, rice + "/foo")).status == 400
    bad = await http_get(port, "/01/09506000134353")
    assert bad.status == 400 and bad.json()["reason"] == "INVALID_GTIN"
    unmapped = await http_get(port, "/01/04006381333931")
    assert unmapped.status == 404 and unmapped.json()["reason"] == "GS1_PREFIX_NOT_MAPPED"
    unknown = await http_get(port, "/01/09506000134369", {"Accept": "text/html"})
    assert unknown.status == 404 and "未找到此标识码" in unknown.body.decode()
    assert (await http_get(port, "/favicon.ico")).status == 404
    assert (await http_get(port, "/NotACompressedLink")).status == 404


async def test_compressed_links_resolve_with_their_uncompressed_form(node: Node,
                                                                     rice: str) -> None:
    port = node.ports.http
    base = f"http://127.0.0.1:{port}"
    full = await http_get(port, "/CxFKk4XBoQsGEvYsg")  # toolkit: /01/…/10/AB%2F12
    assert full.status == 307 and full.headers["location"] == _page(node, BATCH_ID)
    assert f'<{base}{rice}>; rel="owl:sameAs"' in full.headers["link"]
    part = await http_get(port, f"/01/{GTIN}/EIWDCXsWQuf43g")  # … with ?17=261231 packed
    assert part.headers["location"] == _page(node, BATCH_ID) + "?17=261231"
    assert f'<{base}{rice}?17=261231>; rel="owl:sameAs"' in part.headers["link"]
    linkset = (await http_get(port, "/CxFKk4XBoQsGEvYsg?linkType=linkset")).json()
    assert linkset["linkset"][0]["anchor"] == base + rice  # the uncompressed URI


async def test_gtin8_maps_with_five_leading_zeros(node: Node, stub: Any) -> None:
    await node.core.tenancy.map_gs1(local_operator(), "00000963", "0.118.8")
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="g8", records=[
        record_input("0.118.8/01/00000096385074", product__name="八位码")]))
    for path in ("/01/96385074", "/01/00000096385074"):
        resp = await http_get(node.ports.http, path)
        assert resp.status == 307, resp.body
        assert resp.headers["location"] == _page(node, "0.118.8/01/00000096385074")


async def test_an_untraced_products_own_default_link_until_it_is_traced(
        node: Node, stub: Any, keys: Keys) -> None:
    from tests.test_trace import append, event

    await node.core.tenancy.map_gs1(local_operator(), "9506000", "0.118.8")
    ident = f"0.118.8/01/{GTIN}"
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="dl", records=[
        pb.RecordInput(identifier=ident, values=[
            pb.Value(index=1, type="product.name", data="米", ttl=1),
            pb.Value(index=2, type="gs1:defaultLink", data="https://brand.example/")])]))
    resp = await http_get(node.ports.http, f"/01/{GTIN}")
    assert resp.headers["location"] == "https://brand.example/"
    await append(node, keys.writer, event(ident, "harvest", 100))
    node.cache.clear()  # the record did not change; the test does not wait for its TTL
    resp = await http_get(node.ports.http, f"/01/{GTIN}")
    assert resp.headers["location"] == _page(node, ident)  # where recalls show
