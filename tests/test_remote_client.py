"""The cross-node client (idnode.sync.remote) against peers that misbehave at the HTTP level:
answers in many small packets and chunked (read whole), too large (refused without reading
it all), too slow (bounded in time), cut short (never parsed as a record); and the bounded
caches fed by caller-chosen prefixes (locations, per-prefix counters)."""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson
import pytest

from idnode.core.errors import NotFound, PrefixNotFound, RemoteRejected, Unavailable
from idnode.core.identifiers import parse
from idnode.core.stats import Stats
from idnode.crypto.batch import bundle, sign_batch
from idnode.crypto.certify import certify_key
from idnode.crypto.jcs import canonicalize
from idnode.crypto.keys import SigningKey
from idnode.node import Node
from idnode.sync.remote import RemoteResolver
from idnode.sync.upstream import Location
from tests.helpers import http_get

PEER = "0.250"
IDENT = "0.250.1/PART-1"


@dataclass
class Federation:
    """An anchor, a peer node's certified key, and a record the peer signed."""
    anchor: SigningKey = field(default_factory=SigningKey.generate)
    peer_key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def anchor_jwks(self) -> dict[str, object]:
        return {"keys": [{**self.anchor.jwk, "kid": self.anchor.kid, "alg": "EdDSA"}]}

    @property
    def statements(self) -> dict[str, str]:
        public = {**self.peer_key.jwk, "alg": "EdDSA"}
        return {self.peer_key.kid: certify_key(self.anchor, PEER, public)}

    def record(self, ident: str = IDENT, padding: int = 0) -> bytes:
        doc: dict[str, object] = {
            "identifier": ident, "node": PEER, "version": 1,
            "created": "2026-01-01T00:00:00.000Z", "updated": "2026-01-01T00:00:00.000Z",
            "values": [{"index": 1, "type": "product.name", "ttl": 86400,
                        "data": {"format": "string", "value": "阀门" + "x" * padding},
                        "timestamp": "2026-01-01T00:00:00.000Z"}]}
        signed = sign_batch([canonicalize(doc)], self.peer_key, PEER)
        doc["signature"] = bundle(signed.jws, 0, signed.proofs[0])
        return orjson.dumps(doc)


class FakeUpstream:
    """Locates every prefix under 0.250 at the peer; counts the calls."""

    name = "fake"

    def __init__(self, base: str, statements: dict[str, str]) -> None:
        self.base, self.statements, self.calls = base, statements, 0

    async def locate(self, prefix: str) -> Location:
        self.calls += 1
        if not prefix.startswith(PEER + "."):
            raise NotFound(f"no node serves {prefix}")
        return Location(PEER, self.base, "", self.statements, 300)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Peer:
    port: int
    #: Bytes the peer managed to write before the client went away.
    sent: list[int] = field(default_factory=lambda: [0])


@pytest.fixture
def fed() -> Federation:
    return Federation()


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def resolver_for(fed: Federation) -> AsyncIterator[
        Callable[..., Awaitable[RemoteResolver]]]:
    made: list[tuple[RemoteResolver, asyncio.Server]] = []

    async def make(handler: Handler, **kw: object) -> RemoteResolver:
        server, port = await serve(handler)
        r = RemoteResolver(FakeUpstream(f"http://127.0.0.1:{port}", fed.statements),  # type: ignore[arg-type]
                           "0.118", **kw)  # type: ignore[arg-type]
        r.anchor_jwks = fed.anchor_jwks
        made.append((r, server))
        return r

    yield make
    for r, server in made:
        await r.close()
        server.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def dribble(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    """Writes `data` in pieces of `size` bytes, each flushed on its own (separate segments)."""
    for i in range(0, len(data), size):
        writer.write(data[i:i + size])
        await writer.drain()
        await asyncio.sleep(0.002)  # the pacing under test: one segment at a time


async def test_an_answer_in_many_small_packets_is_read_whole(fed: Federation,
                                                             resolver_for) -> None:  # noqa: ANN001
    body = fed.record(padding=3000)  # bigger than one read of the old client's socket buffer

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        await dribble(writer, head % len(body) + body, 97)
        writer.close()

    r = await resolver_for(handler)
    record, ttl = await r.fetch(parse(IDENT))
    assert record is not None and record.identifier == IDENT and record.node == PEER
    assert record.values[0].data.endswith("x" * 3000) and ttl > 0  # type: ignore[union-attr]


async def test_a_chunked_answer_is_read_whole(fed: Federation, resolver_for) -> None:  # noqa: ANN001
    body = fed.record(padding=2000)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        assert b"idnode-forwarded: 0.118" in request.lower()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(body), 300):
            part = body[i:i + 300]
            await dribble(writer, b"%x\r\n%s\r\n" % (len(part), part), 41)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    r = await resolver_for(handler)
    record, _ = await r.fetch(parse(IDENT))
    assert record is not None and record.values[0].data.endswith("x" * 2000)  # type: ignore[union-attr]


async def test_an_answer_declared_too_large_is_refused_before_it_is_read(
        fed: Federation, resolver_for) -> None:  # noqa: ANN001
    peer = Peer(0)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 104857600\r\n\r\n")
        try:
            for _ in range(100 * 1024):  # 100 MiB, if anyone were reading
                writer.write(b"x" * 1024)
                await writer.drain()
                peer.sent[0] += 1024
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    r = await resolver_for(handler, max_response=64 * 1024)
    with pytest.raises(RemoteRejected, match="104857600 bytes, more than 65536"):
        await r.fetch(parse(IDENT))


async def test_a_chunked_answer_that_never_ends_is_cut_at_the_limit(
        fed: Federation, resolver_for) -> None:  # noqa: ANN001
    peer = Peer(0)
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(100 * 1024):
                writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await writer.drain()
                peer.sent[0] += 1024
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            done.set()

    r = await resolver_for(handler, max_response=64 * 1024)
    started = time.monotonic()
    with pytest.raises(RemoteRejected, match="more than 65536 bytes"):
        await r.fetch(parse(IDENT))
    assert time.monotonic() - started < 2
    # The client hung up: the peer could not push its 100 MiB.
    await asyncio.wait_for(done.wait(), 10)
    assert peer.sent[0] < 8 * 1024 * 1024


async def test_a_peer_that_drips_forever_is_cut_at_the_deadline(
        fed: Federation, resolver_for) -> None:  # noqa: ANN001
    """Each byte comes well within any per-read timeout; the whole exchange still ends."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        try:
            for _ in range(100000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    r = await resolver_for(handler, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="did not answer in time"):
        await r.fetch(parse(IDENT))
    assert time.monotonic() - started < 1.5


async def test_an_answer_cut_short_is_unavailable_not_a_record(
        fed: Federation, resolver_for) -> None:  # noqa: ANN001
    body = fed.record()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body[:len(body) // 2]))
        await writer.drain()
        writer.close()

    r = await resolver_for(handler)
    with pytest.raises(Unavailable, match="unreachable"):
        await r.fetch(parse(IDENT))


async def test_locations_are_an_lru_of_the_configured_size(fed: Federation,
                                                           resolver_for) -> None:  # noqa: ANN001
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    r = await resolver_for(handler, max_locations=3)
    upstream = r.upstream
    for i in range(1, 6):
        await r.locate(f"{PEER}.{i}")
    with pytest.raises(PrefixNotFound):
        await r.locate("0.999.1")  # remembered as "nobody": a caller's prefix all the same
    assert list(r._locations) == [f"{PEER}.4", f"{PEER}.5", "0.999.1"]
    calls = upstream.calls  # type: ignore[attr-defined]
    await r.locate(f"{PEER}.4")  # a hit moves it to the end...
    await r.locate(f"{PEER}.6")  # ...so 0.250.5 goes
    assert upstream.calls == calls + 1  # type: ignore[attr-defined]
    assert list(r._locations) == ["0.999.1", f"{PEER}.4", f"{PEER}.6"]


def test_stats_count_at_most_the_configured_prefixes() -> None:
    s = Stats(max_prefixes=3)
    for p in ("0.1", "0.2", "0.3"):
        s.resolved(p)
    s.resolved("0.1")           # 0.1 is now the most recent
    s.registered("0.4", 5)      # so 0.2 goes
    s.error("0.5")              # and then 0.3
    assert s.prefixes == 3 and s.dropped == 2
    taken = {p: (r, q, e) for p, _, r, q, e in s.take()}
    assert taken == {"0.1": (0, 2, 0), "0.4": (5, 0, 0), "0.5": (0, 0, 1)}
    assert s.prefixes == 0


async def test_a_standalone_node_keeps_its_prefix_counts_bounded(dsn: str) -> None:
    from tests.conftest import make_settings
    node = Node(make_settings(stats_max_prefixes=16), dsn)
    await node.start()
    try:
        for i in range(60):
            await http_get(node.ports.http, f"/api/handles/88.{1000 + i}/X")
        assert node.core.stats.prefixes == 16 and node.core.stats.dropped >= 44
        text = (await http_get(node.ports.metrics, "/metrics")).body.decode()
        dropped = re.search(r"^idnode_stats_prefixes_dropped_total(?:\{[^}]*\})? (\S+)", text,
                            re.MULTILINE)
        assert dropped is not None and float(dropped.group(1)) >= 44
        # (and the hot cache shares write counters with the host's other processes)
        assert re.search(r"^idnode_cache_host_shared(?:\{[^}]*\})? 1", text, re.MULTILINE)
    finally:
        await node.stop(grace=1)
