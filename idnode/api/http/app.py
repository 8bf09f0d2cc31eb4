"""HTTP routes: Handle REST resolution, negotiated resolution, traces and their proofs, GS1
Digital Link, IIIDAP, health and readiness (what a request asks for is read in query.py; the
operator listener is in operator.py)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson

from idnode.api.http import gs1 as gs1http
from idnode.api.http import iiidap, openapi, render, scanpage
from idnode.api.http.problems import from_error, problem
from idnode.api.http.query import (JSON, PLAIN, Shape, decoded, handle_query, integer,
                                   prefers_html, requested, shaped)
from idnode.api.http.server import Request, Response
from idnode.core import gs1compress, identifiers
from idnode.api.ratelimit import RateLimiter
from idnode.core.auth import Authenticator
from idnode.core.handleform import HandleForms
from idnode.core.errors import (IdentifierNotFound, IdnodeError, InvalidArgument,
                                RateLimited, Unauthenticated, Unavailable)
from idnode.core.provenance import Provenance
from idnode.core.scans import ScanCounter, ScanPolicy
from idnode.core.resolver import ABSENT, Resolved, Resolver
from idnode.core.trace import TraceLog
from idnode.sync.remote import FORWARDED_HEADER
from idnode.metrics import NodeMetrics

HANDLE_API = "/api/handles/"
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
                types, indexes, shape = handle_query(req.query)
            except InvalidArgument as exc:
                return from_error(exc, instance=req.path, handle=requested(raw))
        if shape is not PLAIN:
            return shaped(self._handle_api(req, raw, types, indexes, shape), shape)
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
            return from_error(exc, instance=req.path, handle=requested(raw))
        return self._answer_handle(req, key, requested(raw), entry,
                                   ("handle", types, indexes, private), shape)

    async def _lookup(self, req: Request, raw: str) -> tuple[str, object]:
        """Decodes and parses a path identifier; returns its key and cache entry (or ABSENT)."""
        ident = identifiers.parse(decoded(raw))
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
                body: object = await self.trace.trace(decoded(path[len("/api/trace/"):]))
            elif path == "/api/log/head":
                body = await self.trace.head()
            elif path == "/api/log/inclusion":
                leaf, size = integer(q, "leaf"), integer(q, "size")
                body = {"leaf": leaf, "size": size,
                        "proof": await self.trace.inclusion(leaf, size)}
            elif path == "/api/log/consistency":
                first, second = integer(q, "from"), integer(q, "to")
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
        return await self.resolver.sees_private(principal, decoded(raw))

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


async def _settled(resp: Response | Awaitable[Response]) -> Response:
    return resp if isinstance(resp, Response) else await resp
