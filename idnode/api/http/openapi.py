"""/openapi.json: the OpenAPI 3.1 description of the node's public HTTP API, every route of
app.HttpApp with its parameters, answers and problem types. tests/test_openapi.py validates it
and checks the running server against it (each route, each documented answer's status, media
type and body schema), so it stays true.

Each operation names the `req.route` that app.HttpApp gives it (x-idnode-route), which is also
the route label of the idnode_http_requests_total metric.

An identifier's suffix may hold '/' (0.118.8/a/b): OpenAPI path parameters cannot, so
{suffix} stands for the rest of the path, percent-encoded where needed.
"""
from __future__ import annotations

from typing import Any

import orjson

from idnode.core import errors

VERSION = "1.0.0"
PROBLEM_PREFIX = "urn:idnode:problem:"
#: Reasons the transports give problems of their own (no domain error behind them).
_HTTP_REASONS = ("BAD_REQUEST", "NOT_FOUND", "METHOD_NOT_ALLOWED", "NOT_ACCEPTABLE",
                 "CONTENT_TOO_LARGE", "URI_TOO_LONG", "REQUEST_HEADER_FIELDS_TOO_LARGE",
                 "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TOO_MANY_REQUESTS")
#: Reasons domain errors are raised with besides their class's (reason="..." in core/ and
#: api/; tests/test_openapi.py fails on one missing here).
_MORE_REASONS = (
    "BAD_HANDLE_INDEX", "BAD_SIGNATURE", "CHALLENGE_UNKNOWN", "CREDENTIAL_REQUIRED",
    "DOT_SEGMENT", "DUPLICATE_IN_BATCH", "ENTERPRISE_NOT_FOUND", "EXPIRED_CREDENTIAL",
    "FOREIGN_PREFIX", "FORGED_CORRECTION", "GS1_KEY_NOT_SERVED", "GS1_PREFIX_NOT_MAPPED",
    "HANDLE_ADMIN_CREDENTIAL", "HANDLE_ADMIN_EXISTS",
    "IDEMPOTENCY_KEY_REUSED", "INVALID_CREDENTIAL", "INVALID_DIGITAL_LINK", "INVALID_GCP",
    "INVALID_GTIN", "INVALID_TEMPLATE", "INVALID_USCC", "KEY_NOT_FOUND", "LINEAGE_CYCLE",
    "LINK_TYPE_NOT_FOUND", "MALFORMED_CREDENTIAL", "MALFORMED_HANDLE_ADMIN", "NO_SIGNING",
    "OUT_OF_ORDER", "PREFIX_REVOKED", "PREFIX_SUSPENDED", "REVOKED_CREDENTIAL", "ROUTING_LOOP",
    "UNKNOWN_CERTIFICATE", "UNKNOWN_HANDLE_ADMIN", "UNSUPPORTED_AUTHENTICATION",
    "VERSION_MISMATCH")


def _reasons() -> list[str]:
    found: set[str] = set(_HTTP_REASONS) | set(_MORE_REASONS)
    todo: list[type[errors.IdnodeError]] = [errors.IdnodeError]
    while todo:
        kind = todo.pop()
        found.add(kind.reason)
        todo.extend(kind.__subclasses__())
    return sorted(found)


def problem_types() -> list[str]:
    """Every problem `type` the node answers with."""
    return [PROBLEM_PREFIX + r.lower().replace("_", "-") for r in _reasons()]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in statuses}


_PREFIX = {"name": "prefix", "in": "path", "required": True,
           "description": "The identifier's prefix, e.g. 0.118.8",
           "schema": {"type": "string"}, "example": "0.118.8"}
_SUFFIX = {"name": "suffix", "in": "path", "required": True,
           "description": "The identifier's suffix (the rest of the path; '/' may appear)",
           "schema": {"type": "string"}, "example": "X-1"}
_AUTH: dict[str, list[str]] = {"bearer": []}
_ANONYMOUS: dict[str, list[str]] = {}


def _get(route: str, summary: str, responses: dict[str, Any], *,
         parameters: list[dict[str, Any]] | None = None, description: str = "",
         private: bool = False, operation: str = "") -> dict[str, Any]:
    """A GET operation (HEAD answers the same without a body); every route may answer 429."""
    op: dict[str, Any] = {"operationId": operation or route, "summary": summary,
                          "x-idnode-route": route,
                          "responses": {**responses, **_problems(429)}}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if private:
        # Anonymous, or an API key that sees its own prefixes' private values.
        op["security"] = [_ANONYMOUS, _AUTH]
    return {"get": op}


def _paths() -> dict[str, Any]:
    rec = _ref("HandleRecord")
    return {
        "/": _get("index", "What this server serves", {
            "200": _json(_ref("Index"), "The service and where to resolve")}),
        "/healthz": _get("healthz", "Liveness: the process answers", {
            "200": _json({"type": "object", "required": ["status"],
                          "properties": {"status": {"const": "ok"}}}, "Alive")}),
        "/readyz": _get("readyz", "Readiness: the database answers and the cache is coherent", {
            "200": _json(_ref("Readiness"), "Ready"),
            "503": _json(_ref("Readiness"), "Not ready (the checks say why)")}),
        "/openapi.json": _get("openapi", "This description", {
            "200": _json({"type": "object", "required": ["openapi", "paths"]},
                         "OpenAPI 3.1")}),
        "/.well-known/jwks.json": _get("well_known", "The node's record-signing public keys", {
            "200": _json(_ref("Jwks"), "JSON Web Key Set (RFC 7517)")}, operation="jwks"),
        "/.well-known/idnode-trust.json": _get(
            "well_known", "The trust anchor and the statements certifying the node's keys",
            {"200": _json({"type": "object", "required": ["node"],
                           "properties": {"node": {"type": "string"},
                                          "anchor_jwks": _ref("Jwks"),
                                          "key_statements": {"type": "object"}}},
                          "Trust document"), **_problems(404)}, operation="trust"),
        "/.well-known/gs1resolver": _get(
            "well_known", "The GS1-Conformant resolver description", {
                "200": _json({"type": "object", "required": ["resolverRoot"]},
                             "Resolver description (GS1 Conformant Resolver standard)"),
                **_problems(400)}, operation="gs1resolver"),
        "/api/handles/{prefix}/{suffix}": _get(
            "handle_api", "A record in the Handle System REST API's shape", {
                "200": {"description": "The record (responseCode 1, or 200 when filters left "
                                       "no value); JSONP with callback",
                        "headers": {"ETag": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": rec},
                                    "application/javascript": {"schema": {"type": "string"}}}},
                "304": {"description": "Not modified (If-None-Match)"},
                **_problems(400, 401, 403, 404, 502, 503)},
            parameters=[_PREFIX, _SUFFIX,
                        {"name": "type", "in": "query", "required": False,
                         "description": "Only values of this type (repeatable; 'T.' matches "
                                        "the subtypes T.x)",
                         "schema": {"type": "string"}},
                        {"name": "index", "in": "query", "required": False,
                         "description": "Only the value at this index (repeatable)",
                         "schema": {"type": "integer"}},
                        {"name": "pretty", "in": "query", "required": False,
                         "description": "Indent the JSON",
                         "schema": {"type": "string", "enum": ["", "true", "yes", "false"]}},
                        {"name": "callback", "in": "query", "required": False,
                         "description": "JSONP: a dotted JavaScript identifier",
                         "schema": {"type": "string"}}],
            private=True),
        "/{prefix}/{suffix}": _get(
            "resolve", "Resolution, negotiated: JSON, the consumer scan page, or a redirect", {
                "200": {"description": "The record as idnode JSON (signed document and "
                                       "bundle), or the scan page (Accept: text/html)",
                        "content": {"application/json": {"schema": _ref("Record")},
                                    "text/html": {"schema": {"type": "string"}}}},
                "302": {"description": "Redirect to the record's URL value (?redirect)"},
                "304": {"description": "Not modified (If-None-Match)"},
                **_problems(400, 401, 403, 404, 406, 502, 503)},
            parameters=[_PREFIX, _SUFFIX,
                        {"name": "lang", "in": "query", "required": False,
                         "description": "The scan page's language",
                         "schema": {"type": "string", "enum": ["zh", "en"]}}],
            private=True),
        "/api/trace/{prefix}/{suffix}": _get(
            "trace", "A product's traceability events, lineage and the log's signed head", {
                "200": _json(_ref("Trace"), "The events"), **_problems(400, 404, 503)},
            parameters=[_PREFIX, _SUFFIX]),
        "/api/log/head": _get("trace", "The traceability log's signed tree head", {
            "200": _json(_ref("TreeHead"), "The head (idnode-sth+jws)"),
            **_problems(409, 503)}, operation="log_head"),
        "/api/log/inclusion": _get(
            "trace", "An inclusion proof (RFC 9162 §2.1.3)", {
                "200": _json({"type": "object", "required": ["leaf", "size", "proof"],
                              "properties": {"leaf": {"type": "integer"},
                                             "size": {"type": "integer"},
                                             "proof": _ref("Hashes")}}, "The proof"),
                **_problems(400, 503)}, operation="log_inclusion",
            parameters=[{"name": "leaf", "in": "query", "required": True,
                         "schema": {"type": "integer", "minimum": 0}},
                        {"name": "size", "in": "query", "required": True,
                         "schema": {"type": "integer", "minimum": 1}}]),
        "/api/log/consistency": _get(
            "trace", "A consistency proof (RFC 9162 §2.1.4)", {
                "200": _json({"type": "object", "required": ["from", "to", "proof"],
                              "properties": {"from": {"type": "integer"},
                                             "to": {"type": "integer"},
                                             "proof": _ref("Hashes")}}, "The proof"),
                **_problems(400, 503)}, operation="log_consistency",
            parameters=[{"name": "from", "in": "query", "required": True,
                         "schema": {"type": "integer", "minimum": 1}},
                        {"name": "to", "in": "query", "required": True,
                         "schema": {"type": "integer", "minimum": 1}}]),
        "/api/attachments/{sha256}": _get(
            "attachment", "An event's attachment, by the SHA-256 of its content", {
                "200": {"description": "The content, as its media type (immutable)",
                        "content": {"*/*": {"schema": {}}}},
                **_problems(400, 404, 503)},
            parameters=[{"name": "sha256", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}]),
        "/01/{gtin}": _get(
            "gs1", "A GS1 Digital Link (also /01/{gtin}/10/{lot}, /21/{serial}, /22/{cpv}, "
                   "/235/{tpx}, compressed links and the deprecated /gtin/ names; docs/GS1.md)",
            {"307": {"description": "Redirect to the default link (the scan page) or to "
                                    "?linkType's"},
             "303": {"description": "Redirect from a less specific level"},
             "300": {"description": "Several links fit: a linkset to choose from",
                     "content": {"application/linkset+json": {"schema": _ref("Linkset")}}},
             "200": {"description": "The RFC 9264 linkset (linkType=linkset|all, or Accept)",
                     "content": {"application/linkset+json": {"schema": _ref("Linkset")},
                                 "application/json": {"schema": _ref("Linkset")}}},
             **_problems(400, 404, 503)},
            parameters=[{"name": "gtin", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[0-9]{8,14}$"}},
                        {"name": "linkType", "in": "query", "required": False,
                         "schema": {"type": "string"}}]),
        "/iiidap/identifier/{prefix}/{suffix}": _get(
            "iiidap", "IIIDAP registration data of an identifier (RDAP-shaped, RFC 9083)", {
                "200": _json(_ref("IiidapIdentifier"), "The identifier"),
                **{str(s): _json(_ref("IiidapError"), "RFC 9083 §6 error")
                   for s in (400, 401, 404, 503)}},
            parameters=[_PREFIX, _SUFFIX], private=True),
        "/iiidap/help": _get("iiidap", "IIIDAP help: the server's notices", {
            "200": _json({"type": "object", "required": ["iiidapConformance", "notices"]},
                         "Help")}, operation="iiidap_help"),
    }


def _schemas() -> dict[str, Any]:
    value = {"type": "object", "required": ["index", "type", "data"],
             "properties": {"index": {"type": "integer"}, "type": {"type": "string"},
                            "data": {}, "ttl": {"type": "integer"},
                            "timestamp": {"type": "string"}, "private": {"type": "boolean"}}}
    return {
        "Problem": {
            "type": "object", "description": "RFC 9457 problem details, with idnode's reason",
            "required": ["type", "title", "status", "detail", "reason"],
            "properties": {
                "type": {"type": "string", "enum": problem_types()},
                "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "reason": {"type": "string"},
                "instance": {"type": "string"}, "field": {"type": "string"},
                "violations": {"type": "array", "items": {
                    "type": "object", "properties": {"field": {"type": "string"},
                                                     "detail": {"type": "string"}}}},
                "handle": {"type": "string", "description": "Handle REST: as requested"},
                "responseCode": {"type": "integer", "description": "Handle REST's code"},
                "message": {"type": "string"}}},
        "Value": value,
        "HandleRecord": {"type": "object", "required": ["responseCode", "handle", "values"],
                         "properties": {"responseCode": {"enum": [1, 200]},
                                        "handle": {"type": "string"},
                                        "values": {"type": "array", "items": value}}},
        "Record": {"type": "object",
                   "required": ["identifier", "version", "created", "updated", "values"],
                   "properties": {"identifier": {"type": "string"},
                                  "version": {"type": "integer"},
                                  "created": {"type": "string"}, "updated": {"type": "string"},
                                  "values": {"type": "array", "items": value},
                                  "node": {"type": "string"},
                                  "private_digest": {"type": "string"},
                                  "signature": {"type": "object"}}},
        "Index": {"type": "object", "required": ["service", "resolve", "handle_api"],
                  "properties": {"service": {"const": "idnode"},
                                 "resolve": {"type": "string"},
                                 "handle_api": {"type": "string"}}},
        "Readiness": {"type": "object", "required": ["status", "checks"],
                      "properties": {"status": {"enum": ["ready", "not ready"]},
                                     "checks": {"type": "object",
                                                "additionalProperties": {"type": "string"}}}},
        "Jwks": {"type": "object", "required": ["keys"],
                 "properties": {"keys": {"type": "array", "items": {"type": "object"}}}},
        "Hashes": {"type": "array", "items": {"type": "string"},
                   "description": "base64url SHA-256 hashes"},
        "TreeHead": {"type": "object", "required": ["log", "size", "root", "jws"],
                     "properties": {"log": {"type": "string"}, "size": {"type": "integer"},
                                    "root": {"type": "string"}, "jws": {"type": "string"}}},
        "Trace": {"type": "object", "required": ["identifier", "events"],
                  "properties": {"identifier": {"type": "string"},
                                 "tree_head": {"oneOf": [{"type": "null"}, _ref("TreeHead")]},
                                 "lineage": {"type": "array"},
                                 "events": {"type": "array", "items": {"type": "object"}}}},
        "Linkset": {"type": "object", "required": ["linkset"],
                    "properties": {"linkset": {"type": "array", "items": {"type": "object"}}}},
        "IiidapIdentifier": {"type": "object",
                             "required": ["iiidapConformance", "objectClassName", "handle"],
                             "properties": {"iiidapConformance": {"type": "array"},
                                            "objectClassName": {"const": "identifier"},
                                            "handle": {"type": "string"}}},
        "IiidapError": {"type": "object", "required": ["errorCode", "title"],
                        "properties": {"errorCode": {"type": "integer"},
                                       "title": {"type": "string"},
                                       "description": {"type": "array"}}},
    }


def _responses() -> dict[str, Any]:
    out = {}
    for status in (400, 401, 403, 404, 406, 409, 429, 502, 503):
        out[f"Problem{status}"] = {
            "description": f"Problem details (status {status})",
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}
    return out


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "idnode secondary node HTTP API", "version": VERSION,
                 "description": "Resolution (Handle REST, negotiated, GS1 Digital Link, "
                                "IIIDAP), the traceability log, health. Read-only: writes "
                                "go over gRPC (proto/). OPTIONS answers 204 (CORS "
                                "preflight); other methods 405 with a problem."},
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "An API key (`idnode key create`): the owner's view, with "
                               "private values, of its own prefixes"}}},
        "x-problem-types": problem_types(),
    }


#: Served as is: built once at import.
BODY = orjson.dumps(document())
