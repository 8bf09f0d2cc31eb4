"""/openapi.json is a valid OpenAPI 3.1 document, names every route the HTTP app has, and the
running server keeps to it: for requests across every path (answers and errors alike) the
status is one the operation documents, the media type one it lists, the JSON body valid
against its schema, and every problem's type one of the documented problem types."""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import idnode.api.http.app as app_module
from idnode.api.http import openapi
from idnode.node import Node
from tests.helpers import http_get
from tests.test_scanpage import rice, settings  # noqa: F401 - fixtures: a traced product
from tests.test_trace_lineage import UNITS

DOC = openapi.document()
BASE = "urn:idnode:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    BASE, Resource.from_contents(DOC, default_specification=DRAFT202012))
#: Routes app.HttpApp gives requests that no path of its own describes: rate limiting (429 on
#: every operation), OPTIONS preflights and other methods (the document's description).
GENERIC_ROUTES = {"rate_limited", "options", "method_not_allowed"}


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for piece in re.split(r"(\{[^}]+\})", template):
        if piece == "{suffix}":
            pattern += ".+"
        elif piece.startswith("{"):
            pattern += "[^/]+"
        else:
            pattern += re.escape(piece)
    return re.compile(pattern + "$")


#: Paths most literal first, so /api/handles/{prefix}/{suffix} wins over /{prefix}/{suffix}.
TEMPLATES = sorted(DOC["paths"], key=lambda t: -len(re.sub(r"\{[^}]+\}", "", t)))


def _operation(path: str) -> tuple[str, dict[str, Any]]:
    for template in TEMPLATES:
        if _template_regex(template).match(path):
            return template, DOC["paths"][template]["get"]
    raise AssertionError(f"no documented path matches {path}")


def _response(op: dict[str, Any], status: int) -> tuple[dict[str, Any], str]:
    responses = op["responses"]
    assert str(status) in responses, f"{op['operationId']}: undocumented status {status}"
    answer = responses[str(status)]
    if "$ref" in answer:
        name = answer["$ref"].rsplit("/", 1)[1]
        return DOC["components"]["responses"][name], _pointer("components", "responses", name)
    return answer, ""


def check(path_and_query: str, status: int, content_type: str, body: bytes) -> None:
    path = urlsplit(path_and_query).path
    template, op = _operation(path)
    answer, ref = _response(op, status)
    content = answer.get("content")
    if not content:
        return
    media = content_type.split(";")[0].strip()
    assert media in content or "*/*" in content, (
        f"{template} {status}: {media} is not among {list(content)}")
    if media not in content or not media.endswith("json"):
        return
    where = ref or _pointer("paths", template, "get", "responses", str(status))
    schema = {"$ref": f"{BASE}#/{where}/content/{_pointer(media)}/schema"}
    doc = orjson.loads(body)
    errors = list(Draft202012Validator(schema, registry=REGISTRY).iter_errors(doc))
    assert not errors, f"{path_and_query} {status}: {errors[0].message} in {doc}"
    if media == "application/problem+json":
        assert doc["type"] in openapi.problem_types()


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOC)
    assert DOC["openapi"].startswith("3.1")
    assert orjson.loads(openapi.BODY) == DOC


def test_every_route_of_the_app_is_documented_and_nothing_else() -> None:
    # HttpApp's routes: the operator listener's (metrics_app) are not on the public port
    source = inspect.getsource(app_module.HttpApp)
    routes = set(re.findall(r'req\.route = "(\w+)"', source)) - GENERIC_ROUTES
    documented = {op["x-idnode-route"] for item in DOC["paths"].values()
                  for op in item.values()}
    assert routes == documented


def test_every_problem_reason_in_the_code_is_a_documented_type() -> None:
    root = Path(app_module.__file__).resolve().parents[2]
    reasons = set()
    for py in root.rglob("*.py"):
        reasons |= set(re.findall(r'reason="([A-Z0-9_]+)"', py.read_text(encoding="utf-8")))
    types = set(openapi.problem_types())
    missing = {r for r in reasons if openapi.PROBLEM_PREFIX + r.lower().replace("_", "-")
               not in types}
    assert not missing


async def test_the_server_answers_as_documented(node: Node, rice: None) -> None:
    port = node.ports.http
    unit = UNITS[0]
    served = await http_get(port, "/openapi.json")
    assert served.status == 200 and orjson.loads(served.body) == DOC
    requests: list[tuple[str, dict[str, str], int]] = [
        ("/", {}, 200), ("/healthz", {}, 200), ("/readyz", {}, 200), ("/openapi.json", {}, 200),
        ("/.well-known/jwks.json", {}, 200), ("/.well-known/idnode-trust.json", {}, 200),
        ("/.well-known/gs1resolver", {}, 200),
        (f"/api/handles/{unit}", {}, 200), (f"/api/handles/{unit}?type=product.", {}, 200),
        (f"/api/handles/{unit}?index=999", {}, 200), (f"/api/handles/{unit}?pretty", {}, 200),
        (f"/api/handles/{unit}?callback=cb", {}, 200),
        (f"/api/handles/{unit}?callback=1x", {}, 400),
        ("/api/handles/0.118.8/NO-SUCH", {}, 404), ("/api/handles/99.999/X", {}, 404),
        (f"/api/handles/{unit}", {"Authorization": "Bearer nonsense"}, 401),
        (f"/{unit}", {"Accept": "application/json"}, 200),
        (f"/{unit}", {"Accept": "text/html"}, 200),
        ("/0.118.8/NO-SUCH", {"Accept": "application/json"}, 404),
        (f"/api/trace/{unit}", {}, 200), ("/api/log/head", {}, 200),
        ("/api/log/inclusion?leaf=0&size=1", {}, 200),
        ("/api/log/consistency?from=1&to=2", {}, 200),
        ("/api/log/consistency?from=0&to=2", {}, 400), ("/api/log/inclusion", {}, 400),
        ("/api/attachments/" + "0" * 64, {}, 404),
        ("/01/09506000134352", {}, 404),
        (f"/iiidap/identifier/{unit}", {}, 200), ("/iiidap/help", {}, 200),
        ("/iiidap/identifier/0.118.8/NO-SUCH", {}, 404),
    ]
    for target, headers, want in requests:
        resp = await http_get(port, quote(target, safe="/?=&"), headers)
        assert resp.status == want, (target, resp.status, resp.body[:300])
        check(target, resp.status, resp.headers.get("content-type", ""), resp.body)


def test_every_operation_documents_rate_limiting() -> None:
    # The limiter answers 429 before any route is chosen.
    for template, item in DOC["paths"].items():
        assert "429" in item["get"]["responses"], template
