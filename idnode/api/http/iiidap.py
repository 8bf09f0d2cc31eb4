"""IIIDAP, the Industrial Internet Identifier Data Access Protocol (draft-mcd-identifier-
access-query / -http / -response / -authority): RDAP-shaped RESTful lookups of identifier
registration data. The drafts' bodies could not be obtained (docs/FEDERATION.md): the paths,
members and error shape here follow RDAP (RFC 9082 query paths, RFC 9083 responses and
errors, RFC 7480 HTTP usage) with `identifier` as the object class, which is what the drafts'
abstracts describe. Lookups go through the resolver and its permissions: private values only
for a caller whose API key owns the prefix, never anonymously."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson

from idnode.api.http.server import Request, Response
from idnode.core import clock, identifiers
from idnode.core.errors import IdnodeError, InvalidIdentifier
from idnode.core.resolver import Resolved, Resolver

BASE = "/iiidap/"
CONFORMANCE = ["iiidap_level_0"]
CTYPE = b"application/json"
NOTICES = [{
    "title": "Terms of Use",
    "description": [
        "Registration data of industrial internet identifiers held by this secondary node.",
        "Private values are shown only to the enterprise that registered them."],
}]
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}


def _json(status: int, doc: dict[str, Any], *, cache: bytes = b"no-store") -> Response:
    return Response(status, orjson.dumps(doc), CTYPE, ((b"Cache-Control", cache),))


def error(status: int, description: str) -> Response:
    """RFC 9083 §6: errorCode, title, description, and the conformance of the server."""
    return _json(status, {"iiidapConformance": CONFORMANCE, "errorCode": status,
                          "title": _TITLES.get(status, "Error"), "description": [description],
                          "notices": NOTICES})


def help_doc(node: str) -> Response:
    return _json(200, {"iiidapConformance": CONFORMANCE, "notices": [*NOTICES, {
        "title": "Help",
        "description": [
            f"This is secondary node {node}. Queries:",
            "GET /iiidap/identifier/{prefix}/{suffix}: an identifier's registration data",
            "GET /iiidap/help: this document",
            "Authorization: Bearer <API key> shows the caller's own private values."],
        "links": [{"value": "/iiidap/help", "rel": "self", "href": "/iiidap/help",
                   "type": "application/json"}]}]}, cache=b"public, max-age=3600")


def identifier_doc(entry: Resolved, private: bool, base: str) -> dict[str, Any]:
    record = entry.record
    values = record.select(None, None, private=private)
    href = f"{base}{BASE}identifier/{record.identifier}"
    return {
        "iiidapConformance": CONFORMANCE,
        "objectClassName": "identifier",
        "handle": record.identifier,
        "prefix": record.identifier.split("/", 1)[0],
        "status": ["active"],
        "version": record.version,
        "values": [v.to_json() for v in values],
        "events": [{"eventAction": "registration", "eventDate": clock.iso(record.created_at)},
                   {"eventAction": "last changed", "eventDate": clock.iso(record.updated_at)}],
        "links": [{"value": href, "rel": "self", "href": href, "type": "application/json"}],
        **({"node": record.node} if record.node else {}),
        "notices": NOTICES,
    }


async def lookup(req: Request, rest: str, resolver: Resolver,
                 sees_private: Callable[[Request, str], Awaitable[bool]], node: str
                 ) -> Response:
    if rest == "help":
        return help_doc(node)
    kind, _, target = rest.partition("/")
    if kind != "identifier":
        return error(400, f"unknown query {kind!r}: this server answers identifier and help")
    try:
        try:
            text = unquote(target, errors="strict")
        except UnicodeDecodeError:
            raise InvalidIdentifier("identifier is not valid UTF-8 once percent-decoded",
                                    field="identifier") from None
        ident = identifiers.parse(text)
        private = await sees_private(req, target)
        entry = await resolver.lookup(ident)
    except InvalidIdentifier as exc:
        return error(400, exc.message)
    except IdnodeError as exc:
        from idnode.api.http.problems import status_of

        return error(status_of(exc), exc.message)
    if entry is None:
        return error(404, f"identifier {ident} is not registered")
    host = req.headers.get("host", "")
    return _json(200, identifier_doc(entry, private, f"http://{host}" if host else ""),
                 cache=b"private, no-store" if private else b"public, max-age=60")
