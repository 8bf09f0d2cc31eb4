"""What a request asks for, read from its path and query: the identifier percent-decoded,
Handle REST's filters (type, index) and the shape of its answer (pretty, a JSONP callback),
integer parameters, and whether it prefers HTML; and an error answer put in the shape asked
for. Pure functions, no I/O."""
from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import orjson

from idnode.api.http.problems import PROBLEM
from idnode.api.http.server import Response
from idnode.core.errors import InvalidArgument, InvalidIdentifier
from idnode.core.negotiation import weighted

JSON = b"application/json"
JAVASCRIPT = b"application/javascript; charset=utf-8"
#: A JSONP callback: a dotted JavaScript identifier (what Handle's scrubbed callbacks and
#: jQuery's generated names are), nothing that could be script of the caller's choosing.
CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}(?:\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,7}\Z")


def prefers_html(accept: str) -> bool:
    """True when the client ranks text/html above application/json (browsers do; curl doesn't)."""
    if "html" not in accept:
        return False
    best_html = best_json = 0.0
    for media, q in weighted(accept):
        if media in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, q)
        elif media in ("application/json", "application/*"):
            best_json = max(best_json, q)
        elif media == "*/*":
            best_json = max(best_json, q * 0.999)  # json wins ties with a wildcard
    return best_html > best_json


def decoded(raw: str) -> str:
    """A path identifier percent-decoded; bytes that are not UTF-8 are refused, not replaced
    (U+FFFD would name another identifier)."""
    if "%" not in raw:
        return raw
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentifier("identifier is not valid UTF-8 once percent-decoded",
                                field="identifier") from None


def integer(query: dict[str, str], name: str) -> int:
    try:
        return int(query[name])
    except (KeyError, ValueError):
        raise InvalidArgument(f"query parameter {name} must be an integer", field=name) from None


@dataclass(frozen=True, slots=True)
class Shape:
    """How a Handle REST answer is written: indented (`pretty`) and/or as JSONP (`callback`),
    as Handle's servlets do (BaseHandleRequestProcessingServlet.processResponse)."""

    pretty: bool = False
    callback: str | None = None

    def render(self, body: bytes, headers: tuple[tuple[bytes, bytes], ...]
               ) -> tuple[bytes, tuple[tuple[bytes, bytes], ...], bytes]:
        """(body, headers, content type) of a JSON answer in this shape; the ETag names the
        shape, so a validator never matches another representation."""
        if self.pretty:
            body = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)
        ctype = JSON
        suffix = b"i" if self.pretty else b""
        if self.callback is not None:
            # The leading comment keeps a response from starting with bytes a plugin could
            # take for another format (the "Rosetta Flash" JSONP attack).
            body = b"/**/" + self.callback.encode() + b"(" + body + b");"
            ctype = JAVASCRIPT
            suffix += b"c" + self.callback.encode()
            headers = (*headers, (b"X-Content-Type-Options", b"nosniff"))
        return body, tuple((k, v[:-1] + b"-" + suffix + b'"' if k == b"ETag" else v)
                           for k, v in headers), ctype


PLAIN = Shape()


def shaped(resp: Response | Awaitable[Response], shape: Shape
            ) -> Response | Awaitable[Response]:
    """An error answer in the request's shape (record answers are shaped in _answer_handle)."""
    if not isinstance(resp, Response):
        async def later() -> Response:
            return shaped(await resp, shape)  # type: ignore[return-value]
        return later()
    if resp.content_type == PROBLEM:
        body, headers, ctype = shape.render(resp.body, resp.headers)
        return Response(resp.status, body, ctype if ctype != JSON else PROBLEM, headers)
    return resp


def requested(raw: str) -> str:
    """The identifier as the client asked for it (percent-decoded where that can be done),
    for the `handle` member of Handle REST errors."""
    try:
        return decoded(raw)
    except InvalidIdentifier:
        return raw


def flag(value: str) -> bool:
    """A Handle REST boolean parameter: present and empty, "true" or "yes"."""
    return value == "" or value.lower() in ("true", "yes")


def handle_query(query: str) -> tuple[frozenset[str] | None, frozenset[int] | None, Shape]:
    types, indexes = filters(query)
    pretty = False
    callback = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "pretty":
            pretty = flag(value)
        elif name == "callback":
            if CALLBACK.match(value) is None:
                raise InvalidArgument("callback must be a JavaScript identifier (letters, digits,"
                                      " _ and $, dot-separated), e.g. handleRecord",
                                      field="callback")
            callback = value
    return types, indexes, (Shape(pretty, callback) if pretty or callback else PLAIN)


def filters(query: str) -> tuple[frozenset[str] | None, frozenset[int] | None]:
    types: set[str] = set()
    indexes: set[int] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "type":
            types.add(value)
        elif name == "index":
            try:
                index = int(value)
            except ValueError:
                raise InvalidArgument(f"index {value!r} is not an integer", field="index") from None
            if index < 1:
                raise InvalidArgument(f"index {index} is not positive", field="index")
            indexes.add(index)
    return (frozenset(types) or None), (frozenset(indexes) or None)
