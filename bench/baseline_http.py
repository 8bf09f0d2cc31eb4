"""The HTTP baseline: a bare asyncio + httptools + uvloop server that answers every request
with a fixed 300-byte JSON body. Usage: baseline_http.py PORT"""
from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

BODY = (b'{"responseCode":1,"handle":"0.118.8/BENCH-000001","values":[{"index":1,"type":"URL",'
        b'"data":{"format":"string","value":"https://example.com/p/000001"},"ttl":86400,'
        b'"timestamp":"2026-11-24T00:00:00.000Z"}]}')
BODY = BODY + b" " * (300 - len(BODY))
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Proto(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(RESPONSE)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Proto, "127.0.0.1", port, backlog=2048)
    print("READY", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
