"""A small Handle-protocol client (`idnode hdl`): one request over TCP or UDP, its response.

For operators checking a node the way the national system's clients see it; not a resolver
library (no site lookups, no referrals, no authentication)."""
from __future__ import annotations

import asyncio
import secrets
import time

from idnode.api.handle import codec


class ClientError(Exception):
    pass


def request_bytes(opcode: int, body: bytes, *, flags: int = 0,
                  request_id: int | None = None) -> tuple[int, bytes]:
    """(request id, envelope + message) of a request in protocol 2.11."""
    rid = secrets.randbelow(2**31 - 1) + 1 if request_id is None else request_id
    header = codec._HEADER.pack(opcode, 0, flags, 0xFFFF, 0, 0, int(time.time()) + 43_200,
                                len(body))
    message = header + body + b"\x00\x00\x00\x00"
    return rid, codec.encode_envelope(codec.VERSION, 0, rid, 0, len(message)) + message


async def call(host: str, port: int, opcode: int, body: bytes, *, udp: bool = False,
               flags: int = 0, timeout: float = 5.0) -> codec.Response:
    rid, data = request_bytes(opcode, body, flags=flags)
    raw = await asyncio.wait_for(_udp(host, port, data, rid) if udp else _tcp(host, port, data),
                                 timeout)
    env = codec.decode_envelope(raw)
    if env.request_id != rid:
        raise ClientError(f"response to request {env.request_id}, not {rid}")
    return codec.decode_response(env, raw[codec.ENVELOPE_SIZE:])


async def _tcp(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        head = await reader.readexactly(codec.ENVELOPE_SIZE)
        env = codec.decode_envelope(head)
        return head + await reader.readexactly(env.length)
    finally:
        writer.close()


async def _udp(host: str, port: int, data: bytes, rid: int) -> bytes:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    parts: dict[int, bytes] = {}

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, packet: bytes, addr: object) -> None:
            try:
                env = codec.decode_envelope(packet)
            except codec.ProtocolError:
                return
            if env.request_id != rid or done.done():
                return
            parts[env.message_id] = packet[codec.ENVELOPE_SIZE:]
            count = -(-env.length // codec.UDP_PAYLOAD) or 1
            if len(parts) >= count:
                payload = b"".join(parts[i] for i in range(count) if i in parts)
                done.set_result(packet[:codec.ENVELOPE_SIZE] + payload[:env.length])

    transport, _ = await loop.create_datagram_endpoint(Protocol, remote_addr=(host, port))
    try:
        transport.sendto(data)
        return await done
    finally:
        transport.close()
