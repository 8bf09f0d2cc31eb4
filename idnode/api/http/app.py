"""HTTP routes: Handle REST resolution, negotiated resolution, health, readiness; and the
operator listener's metrics."""
from __future__ import annotations

import re
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import orjson

from idnode.api.http import gs1 as gs1http
from idnode.api.http import iiidap, openapi, render, scanpage
from idnode.api.http.problems import PROBLEM, from_error, problem
from idnode.api.http.server import Request, Response
from idnode.core import gs1compress, identifiers
from idnode.api.ratelimit import RateLimiter
from idnode.core.auth import Authenticator
from idnode.core.handleform import HandleForms
from idnode.core.errors import (IdentifierNotFound, IdnodeError, InvalidArgument,
                                InvalidIdentifier, RateLimited, Unauthenticated, Unavailable)
from idnode.core.provenance import Provenance
from idnode.core.scans import ScanCounter, ScanPolicy
from idnode.core.resolver import ABSENT, Resolved, Resolver
from idnode.core.stats import Stats
from idnode.core.trace import TraceLog
from idnode.sync.remote import FORWARDED_HEADER
from idnode.metrics import NodeMetrics

HANDLE_API = "/api/handles/"
JSON = b"application/json"
HTML = b"text/html; charset=utf-8"
_VARY = (b"Vary", b"Accept")
#: Cross-origin reads (the Handle REST API and GS1 resolvers are CORS-enabled; web apps read
#: them from other origins). Only anonymous requests get these: what anyone may read, any
#: origin may read. An owner's view (Authorization) carries private values and gets none, and
#: preflights do not allow the Authorization header, so browsers never send it cross-origin.
CORS = (b"Access-Control-Allow-Origin: *\r\n"
        b"Access-Control-Expose-Headers: ETag, Link, Content-Language, Retry-After\r\n")
_METHODS = b"GET, HEAD, OPTIONS"
_PREFLIGHT = ((b"Allow", _METHODS), (b"Access-Control-Allow-Methods", _METHODS),
              (b"Access-Control-Allow-Headers",
               b"Accept, Accept-Language, If-None-Match, Cache-Control"),
              (b"Access-Control-Max-Age", b"86400"))
JAVASCRIPT = b"application/javascript; charset=utf-8"
#: A JSONP callback: a dotted JavaScript identifier (what Handle's scrubbed callbacks and
#: jQuery's generated names are), nothing that could be script of the caller's choosing.
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]{0,63}(?:\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,7}\Z")
_NEGATIVE_CC = b"public, max-age=5"
#: Said of a record served from the cache because the database could not be asked
#: (stale-if-error): Cache-Status (RFC 9211) for caches and tools that read it, Warning 110
#: (RFC 7234; obsoleted by RFC 9111 but still what many clients and proxies log), and no-store,
#: so no cache downstream keeps an answer the node could not confirm.
_STALE = ((b"Cache-Status", b'idnode; hit; detail="stale: database unreachable"'),
          (b"Warning", b'110 idnode "Response is Stale"'))


def stale_headers(headers: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """`headers` (ETag first) of a fresh answer, made those of a stale one."""
    return tuple((k, b"no-store") if k == b"Cache-Control" else (k, v)
                 for k, v in headers) + _STALE


class HttpApp:
    """Routes a parsed request; returns a Response, or an awaitable when the database is needed."""

    def __init__(self, resolver: Resolver, authenticator: Authenticator, metrics: NodeMetrics,
                 ready: Callable[[], Awaitable[tuple[bool, dict[str, str]]]], *,
                 negative_max_age: int = 5, limiter: RateLimiter | None = None,
                 trust_forwarded: bool = False,
                 well_known: Callable[[str], dict[str, object] | None] | None = None,
                 trace: TraceLog | None = None, provenance: Provenance | None = None,
                 scans: ScanCounter | None = None, scan_policy: ScanPolicy = ScanPolicy(),
                 node: str = "", forms: HandleForms | None = None) -> None:
        #: The Handle and IDIS signature forms, whose values /api/handles serves.
        self.forms = forms
        self.well_known = well_known
        self.trace = trace
        self.provenance = provenance
        self.scans = scans
        self.scan_policy = scan_policy
        self.node = node
        self.resolver = resolver
        self._probe = resolver.probe
        self.stats = resolver.stats
        self.authenticator = authenticator
        self.metrics = metrics
        self.ready = ready
        self.negative_cc = f"public, max-age={negative_max_age}".encode()
        self.limiter = limiter
        self.trust_forwarded = trust_forwarded
        self.gs1 = gs1http.Gs1Resolver(resolver, trace, trust_forwarded=trust_forwarded,
                                       negative_cc=self.negative_cc)

    def __call__(self, req: Request) -> Response | Awaitable[Response]:
        path = req.path
        if self.limiter is not None and path[:3] not in ("/he", "/re"):
            # Health and readiness are for probes, not rationed.
            wait = self.limiter.take(self._client(req) if self.trust_forwarded else req.client)
            if wait:
                req.route = "rate_limited"
                return from_error(RateLimited("too many requests from this address; slow down",
                                              retry_after=wait), instance=path)
        if "authorization" not in req.headers:
            req.extra = CORS
        if req.method not in ("GET", "HEAD"):
            if req.method == "OPTIONS":
                # A CORS preflight, or a client asking what it may do: the same answer.
                req.route = "options"
                return Response(204, b"", headers=_PREFLIGHT)
            req.route = "method_not_allowed"
            return problem(405, f"{req.method} is not supported here; this API is read-only over "
                           "HTTP (register over gRPC)", headers=((b"Allow", _METHODS),))
        if path.startswith(HANDLE_API):
            req.route = "handle_api"
            return self.handle_api(req, path[len(HANDLE_API):])
        if path.startswith(iiidap.BASE):
            req.route = "iiidap"
            return iiidap.lookup(req, path[len(iiidap.BASE):], self.resolver,
                                 self._sees_private, self.node)
        if path == "/healthz":
            req.route = "healthz"
            return Response(200, b'{"status":"ok"}')
        if path == "/readyz":
            req.route = "readyz"
            return self._readyz()
        if path == "/openapi.json":
            req.route = "openapi"
            return Response(200, openapi.BODY, JSON, ((b"Cache-Control", b"public, max-age=300"),))
        if path.startswith("/.well-known/"):
            req.route = "well_known"
            if path == "/.well-known/gs1resolver":
                root = gs1http.origin(req, self.trust_forwarded)
                if root is None:
                    return problem(400, "a valid Host header is needed", instance=path)
                return Response(200, orjson.dumps(gs1http.description(root, self.node)), JSON,
                                ((b"Cache-Control", b"public, max-age=300"),))
            doc = self.well_known(path[13:]) if self.well_known is not None else None
            if doc is None:
                return problem(404, f"no such resource: {path}", instance=path)
            return Response(200, orjson.dumps(doc), JSON, ((b"Cache-Control", b"public, max-age=300"),))
        if path == "/":
            req.route = "index"
            return Response(200, orjson.dumps({
                "service": "idnode", "resolve": "/{prefix}/{suffix}",
                "handle_api": "/api/handles/{prefix}/{suffix}"}))
        if path.startswith(("/api/trace/", "/api/log/")) and self.trace is not None:
            req.route = "trace"
            return self._trace(req, path)
        if path.startswith("/api/attachments/") and self.trace is not None:
            req.route = "attachment"
            return self._attachment(path)
        if path.startswith(("/01/", "/gtin/")):
            req.route = "gs1"
            return self._gs1(req, path)
        req.route = "resolve"
        return self.resolve_page(req, path[1:])

    def hot(self, req: Request, client: str) -> Response | None:
        """A remembered request (`req.memo`, set below on cache hits whose answer depends on
        nothing but the identifier) answered again for `client` from the cache: the same
        checks as the first time (cache entry, forms, rate limit), no parsing or routing.
        None when it cannot be (a miss, forms not made, a rate limit): the server then
        parses and routes the request, which charges the limit and counts the miss once."""
        memo: tuple[str, str] = req.memo  # type: ignore[assignment]
        kind, raw = memo
        hit = self._probe(raw)
        if hit is None or hit is ABSENT:
            return None
        rendered = hit.rendered
        if kind == "h":
            forms = self.forms
            if forms is None:
                resp = rendered.get(_HANDLE_REPS[0])
            else:
                made = forms.cached(rendered)
                if made is None:
                    return None
                n = len(made)
                resp = rendered.get(_HANDLE_REPS[n] if n < 8 else ("handle", None, None, False, n))
        else:
            resp = rendered.get(_JSON_REP)
        if resp is None or hit.stale:
            return None
        limiter = self.limiter
        if limiter is not None and limiter.take(
                self._client(req, client) if self.trust_forwarded else client):
            return None
        self.stats.resolved(hit.prefix)
        return resp  # type: ignore[no-any-return]

    # -- /api/handles/{identifier} ----------------------------------------------------------
    def handle_api(self, req: Request, raw: str) -> Response | Awaitable[Response]:
        types: frozenset[str] | None = None
        indexes: frozenset[int] | None = None
        shape = PLAIN
        if req.query:
            try:
                types, indexes, shape = _handle_query(req.query)
            except InvalidArgument as exc:
                return from_error(exc, instance=req.path, handle=_requested(raw))
        if shape is not PLAIN:
            return _shaped(self._handle_api(req, raw, types, indexes, shape), shape)
        return self._handle_api(req, raw, types, indexes, shape)

    def _handle_api(self, req: Request, raw: str, types: frozenset[str] | None,
                    indexes: frozenset[int] | None, shape: Shape
                    ) -> Response | Awaitable[Response]:
        if "authorization" not in req.headers:
            # A raw path that is already a cache key needs no decoding or parsing: only valid,
            # normalised identifiers are ever cached. With a '%' it may decode to another key.
            hit = self.resolver.cached(raw) if "%" not in raw else None
            if hit is not None and (hit is ABSENT or self.forms is None
                                    or self.forms.cached(hit.rendered) is not None):
                if hit is not ABSENT:
                    self.stats.resolved(hit.prefix)
                    if not req.query and _memoisable(req):
                        req.memo = ("h", raw)
                return self._answer_handle(req, raw, raw, hit, ("handle", types, indexes, False),
                                           shape)
        return self._handle_api_slow(req, raw, types, indexes, shape)

    async def _handle_api_slow(self, req: Request, raw: str, types: frozenset[str] | None,
                               indexes: frozenset[int] | None, shape: Shape) -> Response:
        try:
            private = await self._sees_private(req, raw)
            key, entry = await self._lookup(req, raw)
            if self.forms is not None and isinstance(entry, Resolved):
                await self.forms.values(entry.record, entry.rendered)
        except IdnodeError as exc:
            return from_error(exc, instance=req.path, handle=_requested(raw))
        return self._answer_handle(req, key, _requested(raw), entry,
                                   ("handle", types, indexes, private), shape)

    async def _lookup(self, req: Request, raw: str) -> tuple[str, object]:
        """Decodes and parses a path identifier; returns its key and cache entry (or ABSENT)."""
        ident = identifiers.parse(_decoded(raw))
        entry = await self.resolver.lookup(ident, local_only=FORWARDED_HEADER in req.headers)
        return str(ident), (entry if entry is not None else ABSENT)

    def _answer_handle(self, req: Request, key: str, requested: str, entry: object,
                       rep: tuple[object, ...], shape: Shape) -> Response:
        if not isinstance(entry, Resolved):
            exc = IdentifierNotFound(f"identifier {key} is not registered", identifier=key)
            resp = from_error(exc, instance=req.path, handle=requested)
            resp.headers = ((b"Cache-Control", self.negative_cc),)
            return resp
        extra = (self.forms.cached(entry.rendered) or ()) if self.forms is not None else ()
        rep = (*rep, len(extra))
        cached = entry.rendered.get(rep)
        if cached is None:
            record = entry.record
            _, types, indexes, private, _ = rep
            # The node's HS_CERT / HS_SIGNATURE values are values of the served record:
            # filters see them too (a Handle client's chain lookup asks by index).
            served = self.forms.served(record, extra) if self.forms is not None else record
            body = render.handle_json(record, served.select(
                types, indexes, private=private))  # type: ignore[arg-type]
            cached = Response(200, body, JSON, (
                (b"ETag", render.etag(record, "ap" if private else "a")),
                (b"Cache-Control", render.cache_control(record, bool(private))))).kept()
            if not types and not indexes:
                # Only the unfiltered views are kept: filters are the client's to vary, and
                # keeping every combination asked for would let anyone grow the cache.
                entry.rendered[rep] = cached
        if shape is not PLAIN:
            body, headers, ctype = shape.render(cached.body, cached.headers)
            return self._conditional(req, Response(
                200, body, ctype, stale_headers(headers) if entry.stale else headers))
        if entry.stale:
            return self._conditional(req, Response(200, cached.body, JSON,
                                                   stale_headers(cached.headers)))
        return self._conditional(req, cached)

    # -- /{identifier}: content negotiation -------------------------------------------------
    def resolve_page(self, req: Request, raw: str) -> Response | Awaitable[Response]:
        if "/" not in raw:
            if len(raw) >= 8 and gs1compress.SEGMENT.match(raw):
                req.route = "gs1"  # perhaps a compressed GS1 Digital Link
                return self._gs1(req, req.path, single=True)
            return problem(404, f"no such resource: {req.path}", instance=req.path)
        want_html = prefers_html(req.headers.get("accept", ""))
        if "authorization" not in req.headers:
            hit = self.resolver.cached(raw) if "%" not in raw else None
            if hit is not None:
                if hit is not ABSENT:
                    self.stats.resolved(hit.prefix)
                    if not want_html and _memoisable(req):
                        req.memo = ("p", raw)
                return self._answer_page(req, raw, hit, want_html, False)
        return self._resolve_page_slow(req, raw, want_html)

    async def _resolve_page_slow(self, req: Request, raw: str, want_html: bool) -> Response:
        try:
            private = await self._sees_private(req, raw)
            key, entry = await self._lookup(req, raw)
        except IdnodeError as exc:
            return from_error(exc, instance=req.path)
        return await _settled(self._answer_page(req, key, entry, want_html, private))

    async def _trace(self, req: Request, path: str) -> Response:
        """The traceability log: an identifier's events, the signed tree head, and proofs."""
        assert self.trace is not None
        q = dict(parse_qsl(req.query))
        try:
            if path.startswith("/api/trace/"):
                body: object = await self.trace.trace(_decoded(path[len("/api/trace/"):]))
            elif path == "/api/log/head":
                body = await self.trace.head()
            elif path == "/api/log/inclusion":
                leaf, size = _int(q, "leaf"), _int(q, "size")
                body = {"leaf": leaf, "size": size,
                        "proof": await self.trace.inclusion(leaf, size)}
            elif path == "/api/log/consistency":
                first, second = _int(q, "from"), _int(q, "to")
                body = {"from": first, "to": second,
                        "proof": await self.trace.consistency(first, second)}
            else:
                return problem(404, f"no such resource: {path}", instance=path)
        except IdnodeError as exc:
            return from_error(exc, instance=path)
        return Response(200, orjson.dumps(body), JSON, ((b"Cache-Control", b"no-cache"),))

    async def _attachment(self, path: str) -> Response:
        assert self.trace is not None
        try:
            media_type, content = await self.trace.attachment(path[len("/api/attachments/"):])
        except IdnodeError as exc:
            return from_error(exc, instance=path)
        # Content-addressed, so immutable; nosniff and a download for anything but images
        # keep an uploaded file from being run as a page of this origin.
        headers = [(b"Cache-Control", b"public, max-age=31536000, immutable"),
                   (b"X-Content-Type-Options", b"nosniff"),
                   (b"Content-Security-Policy", b"default-src 'none'; sandbox")]
        if not media_type.startswith("image/"):
            headers.append((b"Content-Disposition", b"attachment"))
        return Response(200, content, media_type.encode(), tuple(headers))

    async def _scan_page(self, req: Request, entry: Resolved) -> Response:
        """The consumer's page: the record with its checked trace, recalls and scan count.
        Built per request (the count changes with every scan); the checked trace is cached
        until an event on the product or on what it was made from lands."""
        assert self.provenance is not None and self.scans is not None
        record = entry.record
        values = record.select(None, None, private=False)
        ident = record.identifier
        try:
            view = await self.provenance.view(
                ident, lambda: orjson.loads(render.record_json(record, values)),
                render.etag(record, "s"))
            seen = await self.scans.seen(ident)
        except Unavailable:
            # Hot records still answer while the database is away, without their trace.
            return Response(200, render.record_html(record, values), HTML,
                            ((b"Cache-Control", b"no-store"), _VARY,
                             *(_STALE if entry.stale else ())))
        except IdnodeError as exc:
            return from_error(exc, instance=req.path)
        if req.method == "GET":
            self.scans.record(ident, self._client(req))
        lang = self._lang(req)
        body = scanpage.render(record, values, view, seen, self.scan_policy.suspicious(seen),
                               lang, req.path, self.node)
        return Response(200, body, HTML, ((b"Cache-Control", b"no-store"), _VARY,
                                          (b"Content-Language", lang.encode()),
                                          *(_STALE if entry.stale else ())))

    def _gs1(self, req: Request, path: str, *, single: bool = False) -> Awaitable[Response]:
        """A GS1 Digital Link: answered as a GS1-Conformant resolver does (api/http/gs1.py);
        a consumer's scan is sent on to the scan page."""
        return self.gs1.answer(req, path, self._lang(req),
                               prefers_html(req.headers.get("accept", "")), single=single)

    def _answer_page(self, req: Request, key: str, entry: object, want_html: bool,
                     private: bool) -> Response | Awaitable[Response]:
        if not isinstance(entry, Resolved):
            if want_html and self.provenance is not None:
                return Response(404, scanpage.render_unknown(key, self._lang(req)), HTML,
                                ((b"Cache-Control", self.negative_cc), _VARY))
            resp = from_error(IdentifierNotFound(f"identifier {key} is not registered",
                                                 identifier=key), instance=req.path)
            resp.headers = ((b"Cache-Control", self.negative_cc), _VARY)
            return resp
        if want_html and self.provenance is not None:
            return self._scan_page(req, entry)
        rep = ("html" if want_html else "json", private)
        cached = entry.rendered.get(rep)
        if cached is None:
            record = entry.record
            values = record.select(None, None, private=private)
            body = (render.record_html(record, values) if want_html
                    else render.record_json(record, values))
            tag = ("h" if want_html else "j") + ("p" if private else "")
            cached = entry.rendered[rep] = Response(
                200, body, HTML if want_html else JSON,
                ((b"ETag", render.etag(record, tag)),
                 (b"Cache-Control", render.cache_control(record, private)), _VARY)).kept()
        if entry.stale:
            return self._conditional(req, Response(200, cached.body, cached.content_type,
                                                   stale_headers(cached.headers)))
        return self._conditional(req, cached)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _lang(req: Request) -> str:
        return scanpage.language(req.headers.get("accept-language", ""),
                                 dict(parse_qsl(req.query)).get("lang"))

    def _client(self, req: Request, connection: str | None = None) -> str:
        """The client's address: the first X-Forwarded-For hop behind a trusted proxy, else
        the connection's (`connection`, or the request's own)."""
        if self.trust_forwarded:
            forwarded = req.headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",", 1)[0].strip()
        return req.client if connection is None else connection

    async def _sees_private(self, req: Request, raw: str) -> bool:
        """Authenticates an Authorization header, if any; True when the caller owns the prefix."""
        header = req.headers.get("authorization")
        if header is None:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization must be 'Bearer <api key>'",
                                  reason="MALFORMED_CREDENTIAL")
        principal = await self.authenticator.from_token(token.strip())
        return await self.resolver.sees_private(principal, _decoded(raw))

    @staticmethod
    def _conditional(req: Request, resp: Response) -> Response:
        """`resp` (200, ETag its first header), or a 304 when the client holds it."""
        inm = req.headers.get("if-none-match")
        if inm is not None:
            headers = resp.headers
            tag = headers[0][1].decode()
            if inm.strip() == "*" or tag in (t.strip().removeprefix("W/") for t in inm.split(",")):
                return Response(304, b"", resp.content_type, headers)
        return resp

    async def _readyz(self) -> Response:
        ok, checks = await self.ready()
        body = orjson.dumps({"status": "ready" if ok else "not ready", "checks": checks})
        return Response(200 if ok else 503, body, JSON,
                        () if ok else ((b"Retry-After", b"1"),))


#: The keys of a record's anonymous JSON answer among its cache entry's renders, and of its
#: unfiltered anonymous Handle REST answer with n Handle-form values (_answer_handle's rep).
_JSON_REP = ("json", False)
_HANDLE_REPS = tuple(("handle", None, None, False, n) for n in range(8))


def _memoisable(req: Request) -> bool:
    """Whether a cache hit's answer to `req` depends only on its bytes and the cache: a GET
    without validators (If-None-Match makes a 304 of it) or credentials."""
    return req.method == "GET" and "if-none-match" not in req.headers


def prefers_html(accept: str) -> bool:
    """True when the client ranks text/html above application/json (browsers do; curl doesn't)."""
    if "html" not in accept:
        return False
    best_html = best_json = 0.0
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, val = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        media = media.strip().lower()
        if media in ("text/html", "application/xhtml+xml"):
            best_html = max(best_html, q)
        elif media in ("application/json", "application/*"):
            best_json = max(best_json, q)
        elif media == "*/*":
            best_json = max(best_json, q * 0.999)  # json wins ties with a wildcard
    return best_html > best_json


def metrics_app(metrics: NodeMetrics) -> Callable[[Request], Response]:
    """The operator listener (metrics_host:metrics_port): Prometheus' /metrics, which is
    large and says much about the node, kept off the public port; and /healthz."""
    def route(req: Request) -> Response:
        if req.method not in ("GET", "HEAD"):
            req.route = "method_not_allowed"
            return problem(405, f"{req.method} is not supported here",
                           headers=((b"Allow", b"GET, HEAD"),))
        if req.path == "/metrics":
            req.route = "metrics"
            return Response(200, metrics.registry.expose(),
                            b"text/plain; version=0.0.4; charset=utf-8")
        if req.path == "/healthz":
            req.route = "healthz"
            return Response(200, b'{"status":"ok"}')
        req.route = "other"
        return problem(404, f"no such resource: {req.path} (this listener serves /metrics "
                       "and /healthz)", instance=req.path)
    return route


def _decoded(raw: str) -> str:
    """A path identifier percent-decoded; bytes that are not UTF-8 are refused, not replaced
    (U+FFFD would name another identifier)."""
    if "%" not in raw:
        return raw
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidIdentifier("identifier is not valid UTF-8 once percent-decoded",
                                field="identifier") from None


async def _settled(resp: Response | Awaitable[Response]) -> Response:
    return resp if isinstance(resp, Response) else await resp


def _int(query: dict[str, str], name: str) -> int:
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


def _shaped(resp: Response | Awaitable[Response], shape: Shape
            ) -> Response | Awaitable[Response]:
    """An error answer in the request's shape (record answers are shaped in _answer_handle)."""
    if not isinstance(resp, Response):
        async def later() -> Response:
            return _shaped(await resp, shape)  # type: ignore[return-value]
        return later()
    if resp.content_type == PROBLEM:
        body, headers, ctype = shape.render(resp.body, resp.headers)
        return Response(resp.status, body, ctype if ctype != JSON else PROBLEM, headers)
    return resp


def _requested(raw: str) -> str:
    """The identifier as the client asked for it (percent-decoded where that can be done),
    for the `handle` member of Handle REST errors."""
    try:
        return _decoded(raw)
    except InvalidIdentifier:
        return raw


def _flag(value: str) -> bool:
    """A Handle REST boolean parameter: present and empty, "true" or "yes"."""
    return value == "" or value.lower() in ("true", "yes")


def _handle_query(query: str) -> tuple[frozenset[str] | None, frozenset[int] | None, Shape]:
    types, indexes = _filters(query)
    pretty = False
    callback = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "pretty":
            pretty = _flag(value)
        elif name == "callback":
            if _CALLBACK.match(value) is None:
                raise InvalidArgument("callback must be a JavaScript identifier (letters, digits,"
                                      " _ and $, dot-separated), e.g. handleRecord",
                                      field="callback")
            callback = value
    return types, indexes, (Shape(pretty, callback) if pretty or callback else PLAIN)


def _filters(query: str) -> tuple[frozenset[str] | None, frozenset[int] | None]:
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


def observer(metrics: NodeMetrics, stats: Stats) -> Callable[[Request, int], None]:
    """Counts each answered request and its latency: once per request, on every path, so
    the metrics' slots are held here (no call or label tuple a request)."""
    requests = metrics.http_requests
    latency = metrics.http_latency
    bounds = latency.bounds
    clock = time.perf_counter
    #: route -> (status -> its counter slot, the route's latency counts): a handful of each.
    slots: dict[str, tuple[dict[int, list[float]], list[float]]] = {}

    def observe(req: Request, status: int) -> None:
        route = req.route
        known = slots.get(route)
        if known is None:
            known = slots[route] = ({}, latency.slot((route,)))
        counted = known[0].get(status)
        if counted is None:
            counted = known[0][status] = requests.slot((route, str(status)))
        counted[0] += 1
        seconds = clock() - req.started
        counts = known[1]
        counts[bisect_left(bounds, seconds)] += 1
        counts[-1] += seconds
        if status >= 500:
            stats.error()

    return observe
