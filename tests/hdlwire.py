"""A small Handle-protocol client for tests, written from the wire format (hdllib's Encoder),
not from idnode's codec, so the two check each other. Requests are built byte by byte;
responses are parsed just enough to assert on."""
from __future__ import annotations

import asyncio
import hashlib
import socket
import struct
import time
from dataclasses import dataclass, field

ENV = struct.Struct(">BBBBiiii")
HDR = struct.Struct(">iiIHBBii")
PO, RRDG, CERT, AUTH, CACR = 0x01000000, 0x00800000, 0x40000000, 0x80000000, 0x08000000
TRUSTED_QUERY = 0x2


def s(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">i", len(b)) + b


def value(index: int, vtype: str, data: bytes | str, *, ttl: int = 86400, perms: int = 0x0E,
          ttl_type: int = 0, refs: tuple[tuple[str, int], ...] = ()) -> bytes:
    out = struct.pack(">iIBiB", index, 0, ttl_type, ttl, perms) + s(vtype) + s(data)
    out += struct.pack(">i", len(refs)) + b"".join(s(h) + struct.pack(">i", i) for h, i in refs)
    return out


def resolution_body(handle: str, indexes: tuple[int, ...] = (),
                    types: tuple[str, ...] = ()) -> bytes:
    return (s(handle) + struct.pack(">i", len(indexes)) + b"".join(struct.pack(">i", i)
                                                                   for i in indexes)
            + struct.pack(">i", len(types)) + b"".join(s(t) for t in types))


def values_body(handle: str, *values: bytes) -> bytes:
    return s(handle) + struct.pack(">i", len(values)) + b"".join(values)


def message(opcode: int, body: bytes, *, flags: int = 0, expiration: int | None = None,
            serial: int = 0xFFFF, credential: bytes | None = b"") -> bytes:
    """Header + body (+ credential, unless None: a message without the trailing int4)."""
    exp = int(time.time()) + 43200 if expiration is None else expiration
    msg = HDR.pack(opcode, 0, flags, serial, 0, 0, exp, len(body)) + body
    if credential is not None:
        msg += s(credential)
    return msg


def request(opcode: int, body: bytes, *, request_id: int = 1234, session_id: int = 0,
            version: tuple[int, int] = (2, 11), suggest: tuple[int, int] = (2, 11),
            flags: int = 0, message_id: int = 0, **kw: object) -> bytes:
    msg = message(opcode, body, flags=flags, **kw)  # type: ignore[arg-type]
    return ENV.pack(version[0], version[1], suggest[0], suggest[1], session_id, request_id,
                    message_id, len(msg)) + msg


def idis(opcode: int, body: bytes, **kw: object) -> bytes:
    """As the ID-SDK sends it: version 2.3, suggesting 2.10."""
    return request(opcode, body, version=(2, 3), suggest=(2, 10), **kw)  # type: ignore[arg-type]


@dataclass
class Response:
    version: tuple[int, int]
    session_id: int
    request_id: int
    opcode: int
    rc: int
    flags: int
    expiration: int
    body: bytes
    digest: bytes = b""
    digest_type: int = -1
    credential: bytes = b""
    raw_message: bytes = b""
    values: list[tuple[int, str, bytes, int, int]] = field(default_factory=list)

    @property
    def signed_part(self) -> bytes:
        return self.raw_message[:24 + len(self.raw_body)]

    raw_body: bytes = b""

    @property
    def error(self) -> str:
        n = struct.unpack(">i", self.body[:4])[0]
        return self.body[4:4 + n].decode()


def parse(data: bytes) -> Response:
    major, minor, _f, _sm, sid, rid, _mid, length = ENV.unpack_from(data, 0)
    msg = data[20:20 + length]
    assert len(msg) == length, f"short message: {len(msg)} of {length}"
    op, rc, flags, _serial, _rec, _res, exp, blen = HDR.unpack_from(msg, 0)
    body = msg[24:24 + blen]
    raw_body = body
    r = Response((major, minor), sid, rid, op, rc, flags, exp, body, raw_message=msg,
                 raw_body=raw_body)
    rest = msg[24 + blen:]
    if rest:
        n = struct.unpack(">i", rest[:4])[0]
        r.credential = rest[4:4 + n]
    if flags & RRDG and rc != 0:
        r.digest_type = body[0]
        size = {1: 16, 2: 20, 3: 32}[body[0]]
        r.digest = body[1:1 + size]
        r.body = body[1 + size:]
    if op == 1 and rc == 1:
        b = r.body
        hl = struct.unpack(">i", b[:4])[0]
        pos = 4 + hl
        (count,) = struct.unpack(">i", b[pos:pos + 4])
        pos += 4
        for _ in range(count):
            index, ts, _tt, ttl, perms = struct.unpack(">iIBiB", b[pos:pos + 14])
            pos += 14
            tl = struct.unpack(">i", b[pos:pos + 4])[0]
            vtype = b[pos + 4:pos + 4 + tl].decode()
            pos += 4 + tl
            dl = struct.unpack(">i", b[pos:pos + 4])[0]
            data_ = b[pos + 4:pos + 4 + dl]
            pos += 4 + dl
            (nrefs,) = struct.unpack(">i", b[pos:pos + 4])
            pos += 4
            assert nrefs == 0
            r.values.append((index, vtype, data_, ttl, perms))
        assert pos == len(b), "trailing bytes in a resolution response"
    return r


def digest_of(req: bytes, kind: int = 3) -> bytes:
    """The digest a response carries of `req` (header + body, no credential)."""
    blen = struct.unpack(">i", req[20 + 20:20 + 24])[0]
    part = req[20:20 + 24 + blen]
    return {1: hashlib.md5, 2: hashlib.sha1, 3: hashlib.sha256}[kind](part).digest()


class Tcp:
    """One TCP connection, many requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @staticmethod
    async def open(port: int, host: str = "127.0.0.1") -> Tcp:
        return Tcp(*await asyncio.open_connection(host, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 10.0) -> Response:
        env = await asyncio.wait_for(self.reader.readexactly(20), timeout)
        length = struct.unpack(">i", env[16:20])[0]
        rest = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        return parse(env + rest)

    async def call(self, data: bytes) -> Response:
        await self.send(data)
        return await self.recv()

    async def closed(self, timeout: float) -> bool:
        """Whether the server closes the connection within `timeout`."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    def close(self) -> None:
        self.writer.close()


def udp_call(port: int, *packets: bytes, host: str = "127.0.0.1", timeout: float = 5.0,
             expect: int = 1) -> list[bytes]:
    """Sends datagrams; returns the datagrams of up to `expect` responses (all packets of
    a multi-packet one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        for p in packets:
            sock.sendto(p, (host, port))
        out: list[bytes] = []
        total_needed: int | None = None
        got = 0
        while True:
            try:
                data, _ = sock.recvfrom(65536)
            except TimeoutError:
                return out
            out.append(data)
            length = struct.unpack(">i", data[16:20])[0]
            if total_needed is None:
                total_needed = length
            got += len(data) - 20
            if got >= total_needed:
                expect -= 1
                if expect <= 0:
                    return out
                total_needed, got = None, 0


def reassemble(packets: list[bytes]) -> bytes:
    """A response from its UDP datagrams (payload n at n * 492)."""
    first = packets[0]
    length = struct.unpack(">i", first[16:20])[0]
    payload = bytearray(length)
    for p in packets:
        n = struct.unpack(">i", p[12:16])[0]
        chunk = p[20:]
        payload[n * 492:n * 492 + len(chunk)] = chunk
    return first[:20] + bytes(payload)
