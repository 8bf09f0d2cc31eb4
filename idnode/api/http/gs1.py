"""GS1 Digital Link URIs over HTTP, as a GS1-Conformant resolver answers them (GS1-Conformant
Resolver standard 1.x, checked by gs1/GS1DL-resolver-testsuite):

- a plain request is redirected to the default link (the consumer scan page): 307, or 303
  when the entry is a less specific one (a serial with no record of its own answered by its
  batch's or product's);
- `?linkType=gs1:pip` (any GS1 vocabulary spelling) redirects to a link of that type, chosen
  by Accept-Language, Accept and `context`; 300 when links are indistinguishable; 404 when
  there is none;
- `?linkType=linkset` (or the older `all`), `Accept: application/linkset+json` (or JSON
  preferred to HTML) answer the RFC 9264 linkset of every level from the entry up to the GTIN;
- every answer links to the linkset (`rel="linkset"`), a linkset to its JSON-LD context, a
  compressed request to its uncompressed form (`rel="owl:sameAs"`); the query string is passed
  on to the target (less `linkType`);
- `/.well-known/gs1resolver` describes the resolver.
Which links a record offers is core/gs1links.py's affair.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode

import orjson

from idnode.api.http import scanpage
from idnode.api.http.problems import from_error, problem
from idnode.api.http.server import Request, Response
from idnode.core import gs1, gs1links
from idnode.core.errors import IdentifierNotFound, IdnodeError, InvalidArgument
from idnode.core.resolver import Resolved, Resolver

if TYPE_CHECKING:
    from idnode.core.trace import TraceLog

LINKSET = b"application/linkset+json"
JSON = b"application/json"
CONTEXT = "https://ref.gs1.org/standards/resolver/linkset-context"
_CONTEXT_LINK = (f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
                 'type="application/ld+json"').encode()
_VARY = (b"Vary", b"Accept, Accept-Language")
_HOST = re.compile(
    r"(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")


def origin(req: Request, trust_forwarded: bool) -> str | None:
    """The scheme and host the client used, for anchors and targets (absolute, as the
    standard's tests compare them); behind a trusted proxy, what it says it was asked."""
    host = req.headers.get("host", "")
    scheme = "http"
    if trust_forwarded:
        proto = req.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded = req.headers.get("x-forwarded-host", "").split(",")[0].strip()
        if forwarded:
            host = forwarded
    return f"{scheme}://{host}" if _HOST.match(host) else None


def description(root: str, node: str) -> dict[str, Any]:
    """The resolver description file (/.well-known/gs1resolver)."""
    return {"name": f"idnode {node} GS1-Conformant resolver".replace("  ", " "),
            "resolverRoot": root, "supportedPrimaryKeys": ["01"],
            "supportedLinkType": [{"namespace": gs1links.VOC, "prefix": "gs1:"}],
            "linkTypeDefaultCanBeLinkset": False, "jsonLdContextLocation": CONTEXT}


class Gs1Resolver:
    def __init__(self, resolver: Resolver, trace: TraceLog | None, *, trust_forwarded: bool,
                 negative_cc: bytes) -> None:
        self.resolver = resolver
        self.trace = trace
        self.trust_forwarded = trust_forwarded
        self.negative_cc = negative_cc

    async def answer(self, req: Request, path: str, lang: str, want_html: bool, *,
                     single: bool = False) -> Response:
        """The answer to a Digital Link; `single` for a one-segment path, which is a
        compressed link or no resource at all."""
        try:
            parsed = gs1.parse_path(path)
        except InvalidArgument as exc:
            if single:
                return problem(404, f"no such resource: {path}", instance=path)
            return from_error(exc, instance=path)
        except IdnodeError as exc:
            return from_error(exc, instance=path)
        root = origin(req, self.trust_forwarded)
        if root is None:
            return problem(400, "a GS1 Digital Link request needs a valid Host header",
                           instance=path)
        query = parse_qsl(req.query, keep_blank_values=True)
        params = dict(query)
        passed = list(parsed.attributes) + [(k, v) for k, v in query if k != "linkType"]
        canonical = root + parsed.link.path()
        headers = [(b"Link", f'<{canonical}?linkType=linkset>; rel="linkset"; '
                             f'type="application/linkset+json"'.encode())]
        if parsed.compressed:
            same = canonical + ("?" + urlencode(parsed.attributes) if parsed.attributes else "")
            headers.append((b"Link", f'<{same}>; rel="owl:sameAs"'.encode()))
        try:
            key, levels = await self.resolver.gs1_levels(parsed.link)
        except IdnodeError as exc:
            return from_error(exc, instance=path)
        accept = req.headers.get("accept", "")
        if not levels:
            if want_html:
                return Response(404, scanpage.render_unknown(key, lang),
                                b"text/html; charset=utf-8",
                                ((b"Cache-Control", self.negative_cc), _VARY, *headers))
            resp = from_error(IdentifierNotFound(f"identifier {key} is not registered",
                                                 identifier=key), instance=path)
            resp.headers = ((b"Cache-Control", self.negative_cc), _VARY, *headers)
            return resp
        entries = [(link, ident, entry, await self._links(root, ident, entry))
                   for link, ident, entry in levels]
        ttl = min(entry.record.min_ttl for _, _, entry, _ in entries)
        headers += [_VARY, (b"Cache-Control", f"public, max-age={ttl}".encode())]
        wanted = params.get("linkType")
        if wanted in ("linkset", "all") or (wanted is None and _wants_linkset(accept,
                                                                              want_html)):
            body = {"linkset": [gs1links.linkset_entry(root + link.path(), item, links)
                                for link, _, _, (item, links) in entries]}
            ctype = JSON if "linkset+json" not in accept and "application/json" in accept \
                else LINKSET
            return Response(200, orjson.dumps(body), ctype,
                            (*headers, (b"Link", _CONTEXT_LINK)))
        rel = gs1links.DEFAULT if not wanted else gs1links.link_type(wanted)
        for depth, (link, _, _, (_, links)) in enumerate(entries):
            group = links.get(rel) if rel is not None else None
            if not group or rel is None:
                continue
            chosen = gs1links.choose(group, gs1links.ranked(req.headers.get(
                "accept-language", "")), gs1links.ranked(accept), params.get("context"))
            if len(chosen) > 1:
                body = {"linkset": [{"anchor": root + link.path(),
                                     gs1links.VOC + rel: [c.to_json() for c in chosen]}]}
                return Response(300, orjson.dumps(body), LINKSET, tuple(headers))
            target = chosen[0].href
            if passed:
                target += ("&" if "?" in target else "?") + urlencode(passed)
            walked = depth > 0 or link != parsed.link
            return Response(303 if walked else 307, b"", b"text/plain",
                            (*headers, (b"Location", target.encode())))
        return problem(404, f"no link of type {wanted} for {key} or anything above it",
                       reason="LINK_TYPE_NOT_FOUND", instance=path, headers=tuple(headers))

    async def _links(self, root: str, ident: str, entry: Resolved
                     ) -> tuple[str, dict[str, list[gs1links.Link]]]:
        record = entry.record
        values = record.select(None, None, private=False)
        item = next((v.data for v in values if v.type == "product.name" and v.data), ident)
        declares_default = any(v.type == "gs1:" + gs1links.DEFAULT for v in values)
        traced = declares_default and await self._traced(ident)
        page = root + "/" + quote(ident, safe="/")
        return item, gs1links.entry_links(values, page, item, traced=traced)

    async def _traced(self, ident: str) -> bool:
        if self.trace is None:
            return False
        return bool(await self.trace.events(ident))


def _wants_linkset(accept: str, want_html: bool) -> bool:
    """Asked for the linkset by media type: linkset+json, or JSON ranked first (RFC 9264 is
    JSON; the standard recommends the same answer for both)."""
    if "linkset+json" in accept:
        return True
    return not want_html and gs1links.ranked(accept)[:1] == ["application/json"]
