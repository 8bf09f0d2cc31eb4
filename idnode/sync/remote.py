"""Resolution across nodes: for a prefix this node does not hold, ask the top-level node which
node does, fetch the record from it over HTTP, check it, and cache both answers."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime
from urllib.parse import quote, urlsplit

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


class RemoteResolver:
    def __init__(self, upstream: Upstream, node_prefix: str, *, timeout: float = 2.0) -> None:
        self.upstream = upstream
        self.node_prefix = node_prefix
        self.timeout = timeout
        #: The top-level node's keys (the trust anchor), learnt when this node registered;
        #: until then no remote record can be checked, so none is served.
        self.anchor_jwks: dict[str, object] | None = None
        self._locations: dict[str, tuple[float, Location | None]] = {}

    async def locate(self, prefix: str) -> Location:
        hit = self._locations.get(prefix)
        if hit is not None and hit[0] > time.monotonic():
            if hit[1] is None:
                raise PrefixNotFound(f"no node serves prefix {prefix}", field="identifier")
            return hit[1]
        try:
            loc = await asyncio.wait_for(self.upstream.locate(prefix), self.timeout)
        except NotFound:
            self._locations[prefix] = (time.monotonic() + 30, None)
            raise PrefixNotFound(f"no node serves prefix {prefix}", field="identifier") from None
        except TimeoutError:
            raise Unavailable("the top-level node did not answer in time") from None
        self._locations[prefix] = (time.monotonic() + max(1, loc.ttl), loc)
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
            raise Unavailable("no trust anchor from the top-level node yet; cannot check "
                              "records from other nodes")
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
        if url.scheme != "http" or not url.hostname:
            raise Unavailable(f"node {loc.node_prefix} has no reachable http_base")
        target = (url.path.rstrip("/") + "/" + quote(str(ident), safe="/")) or "/"
        request = (f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\n"
                   f"Accept: application/json\r\n{FORWARDED_HEADER}: {self.node_prefix}\r\n"
                   "Connection: close\r\n\r\n").encode()
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(url.hostname, url.port or 80)
                try:
                    writer.write(request)
                    raw = await reader.read(MAX_RESPONSE + 65536)
                finally:
                    writer.close()
        except (TimeoutError, OSError) as exc:
            raise Unavailable(f"node {loc.node_prefix} is unreachable: "
                              f"{type(exc).__name__}") from None
        head, _, body = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError):
            raise Unavailable(f"node {loc.node_prefix} sent no HTTP response") from None
        return status, body
