"""asyncio TCP and UDP servers of the Handle/IDIS protocol: framing, limits, nothing else.

TCP connections stay open for as many requests as the client sends (the ID-SDK keeps one
channel; hdllib sends one request a connection), answered in order. A connection that sends
nothing for `idle_timeout`, or takes longer than that to complete a request it started, is
closed; connections and requests in flight are bounded per process; a client that does not
read its responses stops being read from.

UDP requests may arrive in several datagrams (reassembled, bounded); responses go out in
492-byte payloads, through a response rate limit per client network so that the node cannot
be made to flood an address that a request was forged to come from.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

from idnode.api.handle import codec
from idnode.api.handle.service import HandleService, Outgoing, Peer
from idnode.api.ratelimit import RateLimiter
from idnode.metrics import NodeMetrics

log = logging.getLogger(__name__)

#: Requests a TCP connection may have queued before it is no longer read from.
PIPELINE = 16
#: A multi-datagram UDP request is at most this long, and must be complete within
#: REASSEMBLY_SECONDS; at most MAX_REASSEMBLIES are pending, REASSEMBLIES_PER_ADDRESS each.
MAX_UDP_REQUEST = 65_536
REASSEMBLY_SECONDS = 5.0
MAX_REASSEMBLIES = 1024
REASSEMBLIES_PER_ADDRESS = 4


@dataclass(frozen=True, slots=True)
class Limits:
    idle_timeout: float = 30.0
    max_connections: int = 1024
    max_inflight: int = 512
    #: UDP answers a second per client network (0: no limit), burst, and the slip ratio.
    rrl_rate: float = 2000.0
    rrl_burst: float = 4000.0
    rrl_slip: int = 2


def network_of(address: str) -> str:
    """The client network a response rate limit counts against: /24 or /56."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    bits = 24 if ip.version == 4 else 56
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


class HandleServer:
    def __init__(self, service: HandleService, metrics: NodeMetrics, limits: Limits) -> None:
        self.service = service
        self.metrics = metrics
        self.limits = limits
        self.connections: set[_TcpConnection] = set()
        self.inflight = 0
        self._tcp: asyncio.base_events.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.rrl = (RateLimiter(limits.rrl_rate, limits.rrl_burst) if limits.rrl_rate > 0
                    else None)
        self._slipped = 0

    async def start(self, tcp_sock: socket.socket, udp_sock: socket.socket) -> None:
        """Serves on sockets from `bind`."""
        loop = asyncio.get_running_loop()
        self._tcp = await loop.create_server(lambda: _TcpConnection(self), sock=tcp_sock,
                                             backlog=2048)
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _UdpEndpoint(self),
                                                           sock=udp_sock)
        self._sweeper = asyncio.create_task(self._sweep(), name="handle-sweeper")

    def stop_accepting(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()

    async def stop(self, grace: float) -> None:
        """Stops accepting, lets requests in flight be answered within `grace`, then closes
        every connection."""
        self.stop_accepting()
        deadline = time.monotonic() + grace
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)

    async def _sweep(self) -> None:
        """Closes TCP connections past their deadline and forgets stale UDP fragments."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in [c for c in self.connections if c.deadline < now]:
                self.metrics.handle_refused.inc(("tcp", "timeout"))
                conn.close()
            udp = self._udp.get_protocol() if self._udp is not None else None
            if isinstance(udp, _UdpEndpoint):
                udp.forget_stale(now)

    def refused(self, transport: str, why: str, detail: str = "") -> None:
        self.metrics.handle_refused.inc((transport, why))
        if detail:
            log.info("handle %s input refused why=%s %s", transport, why, detail)

    def rate_limited(self, address: str) -> bool | None:
        """None: answer; True: send the minimal answer (a slip); False: drop it."""
        if self.rrl is None or self.rrl.take(network_of(address)) == 0.0:
            return None
        self._slipped += 1
        slip = self.limits.rrl_slip
        if slip > 0 and self._slipped % slip == 0:
            self.metrics.handle_refused.inc(("udp", "rrl_slip"))
            return True
        self.metrics.handle_refused.inc(("udp", "rrl_drop"))
        return False


def bind(host: str, port: int, *, reuse_port: bool = False
         ) -> tuple[socket.socket, socket.socket]:
    """TCP and UDP sockets on one port (a free one for port 0: TCP's, then UDP on it)."""
    tcp = _bind(host, port, socket.SOCK_STREAM, reuse_port)
    try:
        udp = _bind(host, tcp.getsockname()[1], socket.SOCK_DGRAM, reuse_port)
    except BaseException:
        tcp.close()
        raise
    return tcp, udp


def _bind(host: str, port: int, kind: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _TcpConnection(asyncio.Protocol):
    def __init__(self, server: HandleServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer = Peer("tcp", "")
        self.buf = bytearray()
        self.queue: deque[codec.Request] = deque()
        self.worker: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.paused = False
        self.closed = False
        #: When the connection is closed unless it makes progress (see HandleServer._sweep).
        self.deadline = time.monotonic() + server.limits.idle_timeout

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports do not subclass asyncio's)
        self.transport = tcp = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer.address = peer[0] if peer else ""
        if len(self.server.connections) >= self.server.limits.max_connections:
            self.server.refused("tcp", "connections")
            self.closed = True
            tcp.abort()
            return
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        started = not self.buf
        buf = self.buf
        buf += data
        service = self.server.service
        try:
            while len(buf) >= codec.ENVELOPE_SIZE:
                length = int.from_bytes(buf[16:20], "big", signed=True)
                if not 0 <= length <= codec.MAX_MESSAGE:
                    raise codec.ProtocolError(f"message length {length} is outside "
                                              f"0..{codec.MAX_MESSAGE}")
                end = codec.ENVELOPE_SIZE + length
                if len(buf) < end:
                    break
                frame = bytes(buf[:end])
                del buf[:end]
                started = True
                if not self.queue and self.worker is None and self.writable.is_set():
                    # In order, nothing queued before it: the hot path may answer at once.
                    hot = service.hot(frame, self.peer)
                    if hot is not None:
                        assert self.transport is not None
                        self.transport.write(hot)
                        continue
                env = codec.decode_envelope(frame)
                self.queue.append(codec.decode_request(env, frame[codec.ENVELOPE_SIZE:]))
        except codec.ProtocolError as exc:
            # Without a valid envelope there is no knowing where the next message starts.
            self.server.refused("tcp", "malformed", f"client={self.peer.address} {exc}")
            self._answer_garbage(exc)
            return
        if started:
            # A request must be complete within the timeout of its first byte: one byte a
            # second does not keep a connection.
            self.deadline = time.monotonic() + self.server.limits.idle_timeout
        if self.queue and self.worker is None:
            self.worker = asyncio.ensure_future(self._work())
        if len(self.queue) >= PIPELINE and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _answer_garbage(self, exc: codec.ProtocolError) -> None:
        """A protocol error answer when the envelope was readable enough to echo, then close."""
        assert self.transport is not None
        # The request id is echoed when the envelope got that far, so the client can match
        # the error to what it sent.
        head = bytes(self.buf[:12])
        request_id = int.from_bytes(head[8:12], "big", signed=True) if len(head) == 12 else -1
        message = codec.encode_message(
            codec.Reply(0, exc.rc, codec.error_body(str(exc))), codec.VERSION, serial=0,
            recursion=0, expiration=int(time.time()) + 60)
        self.transport.write(codec.frame(codec.VERSION, 0, request_id, message))
        self.close()

    async def _work(self) -> None:
        server = self.server
        try:
            while self.queue and not self.closed:
                req = self.queue.popleft()
                if self.paused and len(self.queue) < PIPELINE // 2:
                    self.paused = False
                    assert self.transport is not None
                    self.transport.resume_reading()
                if server.inflight >= server.limits.max_inflight:
                    server.refused("tcp", "inflight")
                    out: Outgoing = server.service.refusal(
                        req, self.peer, codec.RC_SERVER_TOO_BUSY, "server too busy")
                else:
                    server.inflight += 1
                    try:
                        result = server.service.serve(req, self.peer)
                        out = result if isinstance(result, Outgoing) else await result
                    finally:
                        server.inflight -= 1
                await self.writable.wait()
                if self.closed or self.transport is None:
                    return
                self.transport.write(out.framed())
                if not self.queue and not self.buf:
                    self.deadline = time.monotonic() + server.limits.idle_timeout
        finally:
            self.worker = None
            if self.queue and not self.closed:
                self.worker = asyncio.ensure_future(self._work())

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        self.server.connections.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.writable.set()
        self.queue.clear()
        self.server.connections.discard(self)


class _UdpEndpoint(asyncio.DatagramProtocol):
    def __init__(self, server: HandleServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        # (address, port, request id) -> [deadline, total length, {packet number: payload}]
        self.parts: dict[tuple[str, int, int], list] = {}  # type: ignore[type-arg]
        self.per_address: dict[str, int] = {}
        #: The peer of answers from the hot path: anonymous, stateless, like every UDP peer.
        self.hot_peer = Peer("udp", "")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's selector datagram transport does not subclass DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        server = self.server
        if len(data) > codec.UDP_PACKET:
            server.refused("udp", "oversized")
            return
        hot = server.service.hot(data, self.hot_peer)
        if hot is not None:
            self._send(hot, addr, len(data))
            return
        try:
            env = codec.decode_envelope(data)
            if env.truncated:
                message = self._reassemble(env, data, addr)
                if message is None:
                    return
            else:
                if env.length != len(data) - codec.ENVELOPE_SIZE:
                    raise codec.ProtocolError("datagram length does not match the envelope")
                message = data[codec.ENVELOPE_SIZE:]
            req = codec.decode_request(env, message)
        except codec.ProtocolError as exc:
            # UDP: no answer to what cannot be read (it may not even come from where it says).
            server.refused("udp", "malformed", f"client={addr[0]} {exc}")
            return
        if server.inflight >= server.limits.max_inflight:
            server.refused("udp", "inflight")
            return
        peer = Peer("udp", addr[0])
        result = server.service.serve(req, peer)
        if isinstance(result, Outgoing):
            self._send(result.framed(), addr, len(data))
        else:
            asyncio.ensure_future(self._finish(result, addr, len(data)))

    async def _finish(self, result: Awaitable[Outgoing], addr: tuple[str, int],
                      request_size: int) -> None:
        self.server.inflight += 1
        try:
            out = await result
        finally:
            self.server.inflight -= 1
        self._send(out.framed(), addr, request_size)

    def _send(self, response: bytes, addr: tuple[str, int], request_size: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        limited = self.server.rate_limited(addr[0])
        if limited is None:
            if len(response) <= codec.UDP_PACKET:
                transport.sendto(response, addr)
            else:
                for packet in codec.split_udp(response):
                    transport.sendto(packet, addr)
        elif limited:
            # A slip: the smallest answer there is, never larger than the request, so a
            # client at a real address learns to back off and a forged one gains nothing.
            version = (response[0], response[1])
            request_id = int.from_bytes(response[8:12], "big", signed=True)
            session_id = int.from_bytes(response[4:8], "big", signed=True)
            message = codec.encode_message(codec.Reply(0, codec.RC_SERVER_TOO_BUSY, b""),
                                           version, serial=0, recursion=0,
                                           expiration=int(time.time()) + 60)
            packet = codec.frame(version, session_id, request_id, message)
            if len(packet) <= request_size:
                transport.sendto(packet, addr)

    def _reassemble(self, env: codec.Envelope, data: bytes, addr: tuple[str, int]
                    ) -> bytes | None:
        total = env.length
        n = env.message_id
        if total > MAX_UDP_REQUEST or not 0 <= n * codec.UDP_PAYLOAD < total:
            raise codec.ProtocolError(f"packet {n} of a {total}-byte request is out of range")
        key = (addr[0], addr[1], env.request_id)
        entry = self.parts.get(key)
        if entry is None:
            if (len(self.parts) >= MAX_REASSEMBLIES
                    or self.per_address.get(addr[0], 0) >= REASSEMBLIES_PER_ADDRESS):
                self.server.refused("udp", "reassembly")
                return None
            entry = self.parts[key] = [time.monotonic() + REASSEMBLY_SECONDS, total, {}]
            self.per_address[addr[0]] = self.per_address.get(addr[0], 0) + 1
        if entry[1] != total:
            raise codec.ProtocolError("packets of one request disagree on its length")
        entry[2][n] = data[codec.ENVELOPE_SIZE:]
        count = -(-total // codec.UDP_PAYLOAD)
        if len(entry[2]) < count:
            return None
        self._drop(key)
        message = b"".join(entry[2][i] for i in range(count))
        if len(message) != total:
            raise codec.ProtocolError("reassembled request does not have its stated length")
        return message

    def _drop(self, key: tuple[str, int, int]) -> None:
        self.parts.pop(key, None)
        left = self.per_address.get(key[0], 1) - 1
        if left > 0:
            self.per_address[key[0]] = left
        else:
            self.per_address.pop(key[0], None)

    def forget_stale(self, now: float) -> None:
        for key in [k for k, v in self.parts.items() if v[0] < now]:
            self.server.refused("udp", "reassembly_timeout")
            self._drop(key)
