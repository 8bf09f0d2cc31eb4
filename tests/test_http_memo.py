"""Remembered requests (api/http/server.py, HttpServer.memos): request bytes that were parsed
once and answered from the cache are answered again without parsing. What the bytes do not
say is looked at again every time: the cache (a write is seen at once), the forms, the
client's own rate limit; and anything that is not a plain anonymous GET is never remembered."""
from __future__ import annotations

import asyncio

import pytest

from idnode.api.http import server as http_server
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import channel, make_settings
from tests.helpers import HttpResponse, read_response

RICE = "0.118.8/RICE-M"


def get(target: str, *headers: str) -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\n" + "".join(f"{h}\r\n" for h in headers)
            + "\r\n").encode()


class Conn:
    """A kept-alive client connection sending exact bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def ask(self, raw: bytes, answers: int = 1) -> list[HttpResponse]:
        self.writer.write(raw)
        await self.writer.drain()
        return [await read_response(self.reader) for _ in range(answers)]

    def close(self) -> None:
        self.writer.close()


async def register(stub: registry_pb2_grpc.RegistryStub, name: str, key: str) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key=key, records=[
        pb.RecordInput(identifier=RICE, values=[pb.Value(index=1, type="product.name",
                                                         data=name)])]))


def memos(node: Node) -> dict[bytes, http_server.Request]:
    assert node._http is not None  # noqa: SLF001
    return node._http.memos  # noqa: SLF001


def hits(node: Node) -> int:
    return node.cache.hits


async def test_repeated_bytes_are_answered_again_and_see_writes(
        node: Node, stub: registry_pb2_grpc.RegistryStub) -> None:
    await register(stub, "first", "m1")
    conn = await Conn.open(node.ports.http)
    try:
        raw = get(f"/api/handles/{RICE}")
        page = get(f"/{RICE}", "Accept: application/json")
        first = (await conn.ask(raw))[0]  # a miss: read from the database, not remembered
        assert first.status == 200 and raw not in memos(node)
        again = (await conn.ask(raw))[0]  # a hit: remembered
        assert again.body == first.body and raw in memos(node)
        before = hits(node)
        third = (await conn.ask(raw))[0]  # answered from the memo: still a cache hit
        assert third.body == first.body and third.headers["etag"] == first.headers["etag"]
        assert third.headers["access-control-allow-origin"] == "*"
        assert hits(node) == before + 1
        await conn.ask(page)
        await conn.ask(page)
        assert page in memos(node)

        await stub.UpdateValues(pb.UpdateValuesRequest(identifier=RICE, values=[
            pb.Value(index=1, type="product.name", data="second")]))
        # The write has returned: the same bytes now answer the new record, at once.
        after = (await conn.ask(raw))[0]
        assert after.status == 200 and after.json()["values"][0]["data"]["value"] == "second"
        assert after.headers["etag"] != first.headers["etag"]
        assert (await conn.ask(page))[0].json()["values"][0]["data"]["value"] == "second"

        # Pipelined copies in one packet: each is parsed and answered, in order.
        answers = await conn.ask(raw * 3, answers=3)
        assert [a.status for a in answers] == [200, 200, 200]
        assert len({a.body for a in answers}) == 1

        await stub.Delete(pb.DeleteRequest(identifier=RICE))
        gone = (await conn.ask(raw))[0]
        assert gone.status == 404
    finally:
        conn.close()


async def test_not_remembered_when_the_answer_depends_on_more_than_the_bytes(
        node: Node, stub: registry_pb2_grpc.RegistryStub, api_key: str) -> None:
    await register(stub, "rice", "m2")
    conn = await Conn.open(node.ports.http)
    try:
        plain = get(f"/api/handles/{RICE}")
        tag = (await conn.ask(plain))[0].headers["etag"]
        kinds = [
            get(f"/api/handles/{RICE}", f"If-None-Match: {tag}"),  # 304
            get(f"/api/handles/{RICE}?pretty"),  # shaped
            get(f"/api/handles/{RICE}?index=1"),  # filtered
            get(f"/api/handles/{RICE}", f"Authorization: Bearer {api_key}"),  # owner's view
            f"HEAD /api/handles/{RICE} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            get(f"/api/handles/{RICE}", "Expect: 100-continue"),
            get(f"/{RICE}", "Accept: text/html"),  # the scan page: counts every scan
            get("/healthz"),
            get("/api/handles/0.118.8/NOT-THERE"),  # negative answers are not kept
        ]
        for raw in kinds:
            for _ in range(2):
                conn.writer.write(raw)
                await read_response(conn.reader, head=raw.startswith(b"HEAD"))
        assert not any(raw in memos(node) for raw in kinds)
        statuses = [(await conn.ask(kinds[0]))[0].status]
        assert statuses == [304]
    finally:
        conn.close()
    # Connection: close is not remembered either (it is answered, then the connection closes).
    raw = get(f"/api/handles/{RICE}", "Connection: close")
    for _ in range(2):
        closing = await Conn.open(node.ports.http)
        assert (await closing.ask(raw))[0].status == 200
        assert await closing.reader.read() == b""
        closing.close()
    assert raw not in memos(node)


async def test_a_split_request_and_a_partial_one_are_parsed_as_usual(
        node: Node, stub: registry_pb2_grpc.RegistryStub) -> None:
    await register(stub, "rice", "m3")
    raw = get(f"/api/handles/{RICE}")
    conn = await Conn.open(node.ports.http)
    try:
        await conn.ask(raw)
        await conn.ask(raw)
        assert raw in memos(node)
        # The remembered bytes arriving in the middle of another request are not a request.
        conn.writer.write(b"GET /healthz HTTP/1.1\r\n")
        await conn.writer.drain()
        await asyncio.sleep(0.05)  # let the first half arrive on its own
        answer = (await conn.ask(b"X-Padding: 1\r\n\r\n"))[0]
        assert answer.status == 200 and answer.json() == {"status": "ok"}
        # A request split in two packets, then whole again.
        conn.writer.write(raw[:10])
        await conn.writer.drain()
        await asyncio.sleep(0.05)
        assert (await conn.ask(raw[10:]))[0].status == 200
        assert (await conn.ask(raw))[0].status == 200
    finally:
        conn.close()


async def test_the_rate_limit_is_each_connections_own_client(dsn: str, api_key: str) -> None:
    """Replayed bytes are charged to the client that sent them, and a limited client is
    answered 429 (the memo never answers past the limit)."""
    node = Node(make_settings(http_rate_limit=0.01, http_rate_burst=3.0), dsn)
    await node.start()
    try:
        async with channel(node.ports.grpc, api_key) as ch:
            await register(registry_pb2_grpc.RegistryStub(ch), "rice", "m4")
        raw = get(f"/api/handles/{RICE}")
        conn = await Conn.open(node.ports.http)
        try:
            statuses = [(await conn.ask(raw))[0].status for _ in range(5)]
        finally:
            conn.close()
        assert statuses == [200, 200, 200, 429, 429]
        assert raw in memos(node)
        # Another client's connection sending the same bytes is charged to its own address.
        http = node._http  # noqa: SLF001
        assert http is not None
        remembered = memos(node)[raw]
        assert http.hot(remembered, "192.0.2.7") is not None  # a fresh bucket: answered
        assert http.hot(remembered, remembered.client) is None  # the limited one: parsed
    finally:
        await node.stop(grace=1)


async def test_memos_are_bounded(node: Node, stub: registry_pb2_grpc.RegistryStub,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_server, "MAX_MEMOS", 4)
    await register(stub, "rice", "m5")
    conn = await Conn.open(node.ports.http)
    try:
        for i in range(10):
            raw = get(f"/api/handles/{RICE}", f"X-Client: {i}")
            await conn.ask(raw)
            await conn.ask(raw)
        assert len(memos(node)) == 4
        assert get(f"/api/handles/{RICE}", "X-Client: 9") in memos(node)
    finally:
        conn.close()
