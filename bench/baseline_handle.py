"""The Handle/IDIS baselines: bare asyncio (on uvloop, like baseline_http.py) UDP and TCP
servers that answer every request with one fixed resolution response of SIZE bytes (envelope
included), echoing the request's requestId. TCP connections are kept alive and may pipeline;
UDP responses longer than one datagram go out as 492-byte chunks, as Handle.Net sends them.

    baseline_handle.py PORT [SIZE] [HOST]     -> prints "READY udp=PORT tcp=PORT"
"""
from __future__ import annotations

import asyncio
import struct
import sys
import time

try:
    import uvloop
except ImportError:  # a plain python3 (e.g. inside a namespace without the venv)
    uvloop = None  # type: ignore[assignment]

ENVELOPE = struct.Struct(">BBBBIIII")
HEADER = struct.Struct(">IIIHBBII")
UDP_PAYLOAD = 492
HANDLE = b"0.118.8/BENCH-000001"


def lstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def fixed_response(size: int, handle: bytes = HANDLE) -> bytes:
    """A well-formed RC 1 resolution response (one URL value padded to fit) of exactly `size`
    bytes including the 20-byte envelope; requestId 0, to be patched per request."""
    def body(data: bytes) -> bytes:
        value = struct.pack(">IIBIB", 1, int(time.time()), 0, 86400, 0x0E) + lstr(b"URL") \
            + lstr(data) + struct.pack(">I", 0)  # no references
        return lstr(handle) + struct.pack(">I", 1) + value

    overhead = 20 + HEADER.size + len(body(b"")) + 4
    if size < overhead:
        raise ValueError(f"a response is at least {overhead} bytes")
    b = body((b"https://example.com/p/" + b"0" * size)[:size - overhead])
    message = HEADER.pack(1, 1, 0x89000000, 1, 0, 0, int(time.time()) + 43200, len(b)) + b \
        + struct.pack(">I", 0)
    out = ENVELOPE.pack(2, 11, 2, 11, 0, 0, 0, len(message)) + message
    assert len(out) == size
    return out


def datagrams(response: bytes) -> list[bytearray]:
    """The response as UDP datagrams: one, or 492-byte chunks carrying messageId n and the
    whole messageLength in their envelopes."""
    message = response[20:]
    if len(message) <= UDP_PAYLOAD:
        return [bytearray(response)]
    return [bytearray(response[:12] + struct.pack(">I", n) + response[16:20]
                      + message[off:off + UDP_PAYLOAD])
            for n, off in enumerate(range(0, len(message), UDP_PAYLOAD))]


class Udp(asyncio.DatagramProtocol):
    def __init__(self, response: bytes) -> None:
        self.chunks = datagrams(response)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 20:
            return
        rid = data[8:12]
        for chunk in self.chunks:
            chunk[8:12] = rid
            self.transport.sendto(bytes(chunk), addr)


class Tcp(asyncio.Protocol):
    def __init__(self, response: bytes) -> None:
        self.head, self.tail = response[:8], response[12:]
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 20:
            end = 20 + int.from_bytes(buf[16:20], "big")
            if len(buf) < end:
                break
            self.transport.write(self.head + bytes(buf[8:12]) + self.tail)
            del buf[:end]


async def serve(port: int, size: int, host: str) -> None:
    response = fixed_response(size)
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(lambda: Udp(response), local_addr=(host, port))
    tcp = await loop.create_server(lambda: Tcp(response), host, port, backlog=2048)
    print(f"READY udp={udp.get_extra_info('sockname')[1]} "
          f"tcp={tcp.sockets[0].getsockname()[1]} size={size}", flush=True)
    await tcp.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    coro = serve(int(args[0]), int(args[1]) if len(args) > 1 else 261,
                 args[2] if len(args) > 2 else "127.0.0.1")
    if uvloop is not None:
        uvloop.run(coro)
    else:
        asyncio.run(coro)
