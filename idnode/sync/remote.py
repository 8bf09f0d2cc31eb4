"""Resolution across nodes: for a prefix this node does not hold, ask the top-level node which
node does, fetch the record from it over HTTP(S), check it, and cache both answers."""
from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from datetime import datetime
from urllib.parse import quote, urlsplit

import httpx
import orjson

from idnode.core.errors import NotFound, PrefixNotFound, RemoteRejected, Unavailable
from idnode.core.identifiers import Identifier
from idnode.core.records import DEFAULT_TTL, Record, Value
from idnode.crypto.errors import VerificationError
from idnode.sync.upstream import Location, Upstream
from idnode.verify import verify

#: Set on requests one node makes to another; a node never forwards such a request again,
#: so a misrouted identifier (A → B → A) ends in one hop.
FORWARDED_HEADER = "idnode-forwarded"
MAX_RESPONSE = 4 * 1024 * 1024
#: Seconds a location is kept at most, whatever TTL the top-level node gives, and how long
#: "no node serves this prefix" is remembered.
MAX_LOCATION_TTL = 3600
NEGATIVE_LOCATION_TTL = 30


class RemoteResolver:
    """Each fetch is bounded in time (`timeout`, for the whole exchange, however slowly the
    peer sends) and in size (`max_response` bytes of body, decoded); the location cache holds
    at most `max_locations` prefixes, least recently used dropped first, since the prefixes
    are whatever callers ask for."""

    def __init__(self, upstream: Upstream, node_prefix: str, *, timeout: float = 2.0,
                 max_response: int = MAX_RESPONSE, max_locations: int = 10_000,
                 tls_ca: str = "", anchor_jwks: dict[str, object] | None = None) -> None:
        self.upstream = upstream
        self.node_prefix = node_prefix
        self.timeout = timeout
        self.max_response = max_response
        self.max_locations = max(1, max_locations)
        #: The trust anchor (the top-level node's keys), pinned in configuration
        #: (anchor_jwks); without it no remote record can be checked, so none is served.
        self.anchor_jwks = anchor_jwks
        self._locations: OrderedDict[str, tuple[float, Location | None]] = OrderedDict()
        # Peers' https certificates are checked against tls_ca, else the system's CAs.
        verify_tls: ssl.SSLContext | bool = (ssl.create_default_context(cafile=tls_ca)
                                             if tls_ca else ssl.create_default_context())
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), verify=verify_tls, follow_redirects=False,
            # No proxy from the environment: peers are reached directly or not at all.
            trust_env=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"Accept": "application/json", "Accept-Encoding": "identity",
                     FORWARDED_HEADER: node_prefix})

    async def close(self) -> None:
        await self._client.aclose()

    @property
    def locations_held(self) -> int:
        """Prefix locations remembered now (at most max_locations)."""
        return len(self._locations)

    def _remember(self, prefix: str, until: float, loc: Location | None) -> None:
        cache = self._locations
        cache[prefix] = (until, loc)
        cache.move_to_end(prefix)
        while len(cache) > self.max_locations:
            cache.popitem(last=False)

    async def locate(self, prefix: str) -> Location:
        hit = self._locations.get(prefix)
        if hit is not None and hit[0] > time.monotonic():
            self._locations.move_to_end(prefix)
            if hit[1] is None:
                raise PrefixNotFound(f"no node serves prefix {prefix}", field="identifier")
            return hit[1]
        try:
            loc = await asyncio.wait_for(self.upstream.locate(prefix), self.timeout)
        except NotFound:
            self._remember(prefix, time.monotonic() + NEGATIVE_LOCATION_TTL, None)
            raise PrefixNotFound(f"no node serves prefix {prefix}", field="identifier") from None
        except TimeoutError:
            raise Unavailable("the top-level node did not answer in time") from None
        self._remember(prefix, time.monotonic() + min(max(1, loc.ttl), MAX_LOCATION_TTL), loc)
        return loc

    async def fetch(self, ident: Identifier) -> tuple[Record | None, int]:
        """The record from the node holding its prefix (None if it has none), and how long
        the answer may be cached."""
        loc = await self.locate(ident.prefix)
        if loc.node_prefix == self.node_prefix:
            raise PrefixNotFound(f"the top-level node routes {ident.prefix} to this node, which "
                                 "does not hold it", field="identifier", reason="ROUTING_LOOP")
        if not (ident.prefix == loc.node_prefix or ident.prefix.startswith(loc.node_prefix + ".")):
            raise RemoteRejected(f"node {loc.node_prefix} does not hold {ident.prefix}")
        status, body = await self._get(loc, ident)
        if status == 404:
            return None, 5
        if status != 200:
            raise Unavailable(f"node {loc.node_prefix} answered HTTP {status}")
        try:
            doc = orjson.loads(body)
            if doc["identifier"] != str(ident):
                raise RemoteRejected(f"node {loc.node_prefix} answered for "
                                           f"{doc['identifier']!r}, not {ident}")
            self._check_signature(doc, loc)
            values = tuple(Value.from_json(v) for v in doc["values"])
            record = Record(str(ident), values, int(doc["version"]),
                            datetime.fromisoformat(doc["created"]),
                            datetime.fromisoformat(doc["updated"]),
                            min((v.ttl for v in values), default=DEFAULT_TTL),
                            str(doc["node"]), dict(doc["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteRejected(f"node {loc.node_prefix} sent a malformed record: "
                                       f"{exc!r}") from None
        return record, min(record.min_ttl, loc.ttl)

    def _check_signature(self, doc: dict[str, object], loc: Location) -> None:
        if self.anchor_jwks is None:
            raise Unavailable("no trust anchor is pinned (anchor_jwks); records from other "
                              "nodes cannot be checked, so none is served")
        if doc.get("node") != loc.node_prefix:
            raise RemoteRejected(f"record names node {doc.get('node')!r}, but "
                                 f"{loc.node_prefix} holds the prefix")
        try:
            verify(doc, {"key_statements": loc.key_statements}, self.anchor_jwks)
        except VerificationError as exc:
            raise RemoteRejected(f"record from node {loc.node_prefix} does not verify: "
                                 f"{exc.reason}: {exc.message}") from None

    async def _get(self, loc: Location, ident: Identifier) -> tuple[int, bytes]:
        url = urlsplit(loc.http_base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise Unavailable(f"node {loc.node_prefix} has no reachable http_base")
        target = f"{url.scheme}://{url.netloc}{url.path.rstrip('/')}/{quote(str(ident), safe='/')}"
        limit = self.max_response
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", target) as resp:
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        raise RemoteRejected(f"node {loc.node_prefix} answers with {declared} "
                                             f"bytes, more than {limit}")
                    body = bytearray()
                    async for chunk in resp.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise RemoteRejected(f"node {loc.node_prefix} answers with more "
                                                 f"than {limit} bytes")
                    return resp.status_code, bytes(body)
        except TimeoutError:
            raise Unavailable(f"node {loc.node_prefix} did not answer in time") from None
        except (httpx.TransportError, OSError) as exc:
            # Connection refused or reset, TLS failure, a malformed or cut-short HTTP answer
            # (a body shorter than its Content-Length, a broken chunk).
            raise Unavailable(f"node {loc.node_prefix} is unreachable: "
                              f"{type(exc).__name__}") from None
