"""A small HTTP/1.1 server on httptools (llhttp) and asyncio/uvloop: keep-alive, pipelining,
bounded requests. Routes answer synchronously when they can (cache hits) and fall back to a
task when they must wait (database).

What one client can hold is bounded (`Limits`; docs/OPERATIONS.md, "Limits"):
- time: a request's headers must arrive within `header_timeout` of its first byte (a new
  connection: of its opening), its body within `body_timeout` of its headers; a kept-alive
  connection may sit idle `idle_timeout` between requests, and a peer that stops reading its
  answers `send_timeout`. Past any of them the connection is closed, with a 408 when a
  request was under way and nothing else is owed.
- work: input is parsed at most `read_chunk` bytes and `max_pipeline` requests per event-loop
  turn (the rest waits for a later turn, the loop serving everyone else in between); while
  `max_pipeline` requests wait for their answers, or the transport's write buffer is over its
  high-water mark (the peer does not read), the connection is not read from. So a flood of
  pipelined requests costs one slice of work at a time and a bounded amount of memory.
- connections: past `max_connections` a new connection is answered 503 and closed.

Cache hits cost little beyond the parse (docs/PERFORMANCE.md §1): a response the app keeps
(`Response.kept`) is encoded once a second per shape, and a request whose bytes are the same as
one already parsed and answered from the cache is answered again without parsing (`memos`,
`HttpServer.hot`): the same bytes on a connection at a request boundary parse to the same
request, so only what is not in the bytes (the client's address, the cache, the rate limit)
is looked at again.

Why one module of this length: the parser callbacks, the connection's limits and the replay
of kept answers all work on the same per-connection state in the hot path, and an attribute
or call more per request shows in bench/http_hot.py; splitting the connection class would
trade that for nothing a reader needs (the limits are one list above, the routes live in
app.py).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import httptools

from idnode.api.ratelimit import RateLimiter

log = logging.getLogger(__name__)

MAX_URL = 8192
MAX_HEADERS_BYTES = 32_768
#: More header fields than this is no browser or scanner app; 431.
MAX_HEADER_COUNT = 100
MAX_BODY = 1_048_576
#: Bytes handed to the parser at once when input is held back or large: what one feed can
#: add beyond the per-turn bounds (at most ~55 minimal requests).
SLICE = 1024

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS.update({413: b"Content Too Large", 422: b"Unprocessable Content"})  # RFC 9110 names

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
#: Connections accepted per event-loop turn: a burst of connects is taken in small batches,
#: with everyone else's requests served in between.
ACCEPT_BATCH = 32

_FAILURES = {413: "body_too_large", 414: "url_too_long", 417: "expectation",
             431: "headers_too_large"}

# Where a connection is, for its deadline.
_FRESH, _IDLE, _HEADERS, _BODY, _CLOSING = range(5)
#: Request bytes remembered per server (see HttpServer.memos); the oldest go first.
MAX_MEMOS = 8192


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-connection and per-process bounds (settings http_*; defaults safe for the open
    internet)."""

    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    max_pipeline: int = 16
    read_chunk: int = 16_384
    max_connections: int = 2048
    backlog: int = 2048
    #: New connections a second per client address, and the burst (0: no limit; must be 0
    #: behind a load balancer, where every connection comes from its address).
    connection_rate: float = 0.0
    connection_burst: float = 0.0


class Request:
    __slots__ = ("method", "path", "query", "headers", "client", "keep_alive", "started", "route",
                 "extra", "memo")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str],
                 client: str, keep_alive: bool) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.client = client
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        #: Set by the router; the metrics label.
        self.route = "other"
        #: Header lines (each ending CRLF) the router adds to whatever answers this request,
        #: even an answer made later by a task (CORS for anonymous reads).
        self.extra = b""
        #: Set by the router when this request's answer is a function of its bytes, the
        #: client's address and the cache alone (see HttpServer.hot): the request may be
        #: remembered and its bytes answered again without parsing.
        self.memo: object = None


class Response:
    __slots__ = ("status", "body", "content_type", "headers", "wire")

    def __init__(self, status: int, body: bytes, content_type: bytes = b"application/json",
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        #: A kept response's encodings: extra header lines -> (second, bytes); None: not kept.
        self.wire: dict[bytes, tuple[int, bytes]] | None = None

    def kept(self) -> Response:
        """Marks this response as one the app answers again and again (a cache entry's):
        never changed once made, so its keep-alive GET encoding is made once a second (the
        Date header) and reused."""
        self.wire = {}
        return self

    def encoded(self, extra: bytes) -> bytes:
        """A kept response, encoded for a kept-alive GET with `extra` header lines."""
        wire = self.wire
        assert wire is not None
        now = int(_time())
        made = wire.get(extra)
        if made is not None and made[0] == now:
            return made[1]
        data = encode(self, True, False, extra)
        wire[extra] = (_clock.second, data)
        return data


class _Clock:
    """The Date header, formatted once a second rather than once a request."""

    def __init__(self) -> None:
        self.second = 0
        self.header = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.header


_clock = _Clock()
_time = time.time
_perf_counter = time.perf_counter


def encode(resp: Response, keep_alive: bool, head: bool = False, extra: bytes = b"") -> bytes:
    parts = [b"HTTP/1.1 ", str(resp.status).encode(), b" ", _REASONS.get(resp.status, b"Unknown"),
             b"\r\n", _clock.date(), b"Server: idnode\r\n"]
    if resp.status not in (204, 304):  # neither has content (RFC 9110 §8.6, §15.3.5)
        parts += [b"Content-Type: ", resp.content_type, b"\r\nContent-Length: ",
                  str(len(resp.body)).encode(), b"\r\n"]
    for name, value in resp.headers:
        parts += [name, b": ", value, b"\r\n"]
    if extra:
        parts.append(extra)
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head and resp.status not in (204, 304):
        parts.append(resp.body)
    return b"".join(parts)


#: A route returns a Response now, or an awaitable of one.
Handler = Callable[[Request], "Response | Awaitable[Response]"]
#: Answers a remembered request (one whose router set `memo`) again, for the client at the
#: given address, from the cache alone; None when it cannot (a miss, a rate limit: the
#: request is then parsed and routed as any other).
Hot = Callable[[Request, str], "Response | None"]
#: Called once per request after the response is written (metrics).
Observer = Callable[[Request, int], None]
#: Called with a reason each time a connection is refused or cut (metrics).
Refused = Callable[[str], None]


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("server", "app", "observe", "limits", "transport", "parser", "url", "headers",
                 "dups", "header_bytes", "header_count", "body_bytes", "client", "queue", "busy",
                 "closing", "_bad", "draining", "stage", "deadline", "send_deadline",
                 "pending", "pos", "scheduled", "reading", "write_paused", "error",
                 "continue_due", "turn", "tunnel", "memos", "parsed", "candidate", "hot", "now")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.observe = server.observe
        self._bad = server.bad_request
        self.limits = server.limits
        self.draining = False
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        #: Repeated header fields, joined once the headers are in (not once per repeat).
        self.dups: dict[str, list[str]] | None = None
        self.header_bytes = 0
        self.header_count = 0
        self.body_bytes = 0
        self.client = ""
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self.stage = _FRESH
        #: Loop time past which the client has been too slow (see HttpServer._sweep).
        self.deadline = math.inf
        self.send_deadline = math.inf
        #: Input received but not parsed yet (held back by the bounds), from `pos` on.
        self.pending: bytes | None = None
        self.pos = 0
        self.scheduled = False
        self.reading = True
        self.write_paused = False
        #: A problem owed after the answers to earlier pipelined requests, then close.
        self.error: Response | None = None
        self.continue_due = False
        #: Requests parsed in this event-loop turn.
        self.turn = 0
        self.tunnel = False
        self.memos = server.memos
        self.hot = server.hot
        self.now = server.now
        #: Requests completed by the current feed, and the one of them that may be
        #: remembered (see data_received).
        self.parsed = 0
        self.candidate: Request | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if len(server.live) >= self.limits.max_connections:
            # Answered without reading: a client learns why, and the descriptor is freed at
            # once instead of the kernel queueing connections nobody will serve.
            server.refused("connections")
            self.closing = True
            self.stage = _CLOSING
            transport.write(server.busy_answer)  # type: ignore[attr-defined]
            transport.close()
            return
        server.live.add(self)
        self.deadline = server.now() + self.limits.header_timeout
        # (TCP_NODELAY: uvloop and asyncio set it on every TCP transport already.)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        self.queue.clear()
        self.pending = None
        self.server.live.discard(self)

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading (and answering) it until it does.
        self.write_paused = True
        self.send_deadline = self.now() + self.limits.send_timeout
        self._sync_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.send_deadline = math.inf
        self._advance()

    def drain(self) -> None:
        """Finish the request in flight (if any), then close: used on shutdown."""
        self.draining = True
        if not self.busy and not self.queue and self.transport is not None:
            self._close()

    def data_received(self, data: bytes) -> None:
        if self.closing or self.tunnel or self.error is not None:
            return
        if (self.pending is None and len(data) <= SLICE
                and len(self.queue) < self.limits.max_pipeline):
            # The common case: one small request, parsed and (from the cache) answered now.
            boundary = (self.stage <= _IDLE and not self.busy and not self.queue
                        and not self.write_paused and not self.draining)
            if boundary:
                # Bytes already parsed once, at a request boundary as now: the same request.
                memo = self.memos.get(data)
                if memo is not None and self._replay(memo):
                    return
                self.parsed = 0
                self.candidate = None
            if not self.scheduled:
                self.turn = 0
            self._feed(data)
            if (boundary and self.candidate is not None and self.parsed == 1
                    and self.stage == _IDLE and not self.closing and not self.tunnel):
                # Exactly these bytes made one request, answered from the cache alone.
                memos = self.memos
                if len(memos) >= MAX_MEMOS:
                    del memos[next(iter(memos))]
                memos[data] = self.candidate
                self.candidate = None
            if self.queue or self.write_paused:
                self._sync_reading()
            return
        self.pending = data if self.pending is None else self.pending[self.pos:] + data
        self.pos = 0
        if not self.scheduled:
            self.turn = 0
            self._pump()

    # -- input, a slice at a time -----------------------------------------------------------
    def _pump(self) -> None:
        """Parses held-back input while the connection may take more, within this turn's
        budget; what is left waits for a later turn or for answers to drain."""
        self.scheduled = False
        data = self.pending
        limits = self.limits
        budget = limits.read_chunk
        pos = self.pos
        view = memoryview(data) if data is not None else None
        while data is not None and pos < len(data) and not self.closing and not self.tunnel:
            if len(self.queue) >= limits.max_pipeline or self.write_paused:
                break  # resumed by _advance when answers drain or the peer reads
            if budget <= 0 or self.turn >= limits.max_pipeline:
                self.scheduled = True
                asyncio.get_running_loop().call_soon(self._next_turn)
                break
            n = min(SLICE, budget, len(data) - pos)
            assert view is not None
            self._feed(view[pos:pos + n])
            pos += n
            budget -= n
        if self.closing or self.tunnel or data is None or pos >= len(data):
            self.pending = None
            self.pos = 0
        else:
            self.pos = pos
        self._sync_reading()

    def _next_turn(self) -> None:
        self.turn = 0
        self._pump()

    def _feed(self, chunk: bytes | memoryview) -> None:
        while True:
            try:
                self.parser.feed_data(chunk)
                return
            except httptools.HttpParserUpgrade as exc:
                self.candidate = None
                self.parsed += 1  # never remembered: the parser is replaced
                # The request was answered as if it had no Upgrade (RFC 9110 §7.8 lets a
                # server ignore it); what follows is HTTP again, for a fresh parser. After
                # CONNECT it would be a tunnel: nothing more is read (its 405 closes).
                if self.parser.get_method() == b"CONNECT":
                    self.tunnel = True
                    return
                chunk = chunk[exc.args[0]:]
                self.parser = httptools.HttpRequestParser(self)
                if not chunk or self.closing:
                    return
            except httptools.HttpParserError as exc:
                # httptools wraps exceptions raised in callbacks; ours say what was refused.
                cause = exc.__context__
                if isinstance(cause, _Refusal):
                    self._fail(cause.status, cause.detail)
                elif not self.closing:
                    self._fail(400, f"malformed HTTP request: {exc}")
                return

    def _sync_reading(self) -> None:
        """Reads from the peer only while it may send more: nothing held back, answers
        draining, fewer than max_pipeline requests waiting."""
        want = (self.pending is None and not self.write_paused and not self.closing
                and not self.tunnel and self.error is None
                and len(self.queue) < self.limits.max_pipeline)
        if want is self.reading or self.transport is None:
            return
        self.reading = want
        try:
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()
        except (RuntimeError, AttributeError):  # a closing transport
            pass

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.dups = None
        self.header_bytes = 0
        self.header_count = 0
        self.body_bytes = 0
        self.continue_due = False
        # A request's headers are due within header_timeout of its first byte: sending one
        # byte a second does not keep a connection.
        self.stage = _HEADERS
        self.deadline = self.now() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            raise _Refusal(414, f"request target longer than {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADERS_BYTES:
            raise _Refusal(431, f"request headers larger than {MAX_HEADERS_BYTES} bytes")
        self.header_count += 1
        if self.header_count > MAX_HEADER_COUNT:
            raise _Refusal(431, f"more than {MAX_HEADER_COUNT} request header fields")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        prev = self.headers.get(key)
        if prev is None:
            self.headers[key] = text
        else:
            if self.dups is None:
                self.dups = {}
            self.dups.setdefault(key, [prev]).append(text)

    def on_headers_complete(self) -> None:
        headers = self.headers
        if self.dups is not None:
            for key, values in self.dups.items():
                headers[key] = ", ".join(values)
        self.stage = _BODY
        self.deadline = self.now() + self.limits.body_timeout
        expect = headers.get("expect")
        if expect is not None:
            self.parsed += 1  # never remembered: answered (100) by the server itself
            self._expect(expect, headers)

    def _expect(self, expect: str, headers: dict[str, str]) -> None:
        if expect.strip().lower() != "100-continue":
            raise _Refusal(417, f"unsupported expectation: {expect[:64]}")
        length = headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > MAX_BODY:
            raise _Refusal(413, f"request body larger than {MAX_BODY} bytes")
        if length in ("", "0") and "transfer-encoding" not in headers:
            return  # no body to wait for
        if self.busy or self.queue:
            self.continue_due = True  # after the answers owed before it
        elif self.transport is not None:
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise _Refusal(413, f"request body larger than {MAX_BODY} bytes")

    def on_message_complete(self) -> None:
        raw = self.url.decode("latin-1")
        path, _, query = raw.partition("?")
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, path, query, self.headers, self.client,
                      self.parser.should_keep_alive() and method != "CONNECT")
        self.stage = _IDLE
        self.continue_due = False
        self.turn += 1
        self.parsed += 1
        if self.busy or self.queue:
            self.queue.append(req)
        else:
            self._dispatch(req)

    # -- dispatch ---------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> None:
        try:
            result = self.app(req)
        except Exception:  # noqa: BLE001 - a route bug must not take the connection down silently
            log.exception("http handler failed path=%s", req.path)
            result = self._bad(500, "internal error")
        if isinstance(result, Response):
            if req.memo is not None and req.keep_alive and result.wire is not None:
                self.candidate = req
            self._write(req, result)
            if self.stage == _IDLE:
                self.deadline = (self.now() + self.limits.idle_timeout if not self.queue
                                 else math.inf)
            return
        self.busy = True
        self.deadline = math.inf  # waiting for us, not for the client
        task = asyncio.ensure_future(result)
        task.add_done_callback(functools.partial(self._finished, req))

    def _finished(self, req: Request, task: asyncio.Future[Response]) -> None:
        self.busy = False
        if task.cancelled():
            resp = self._bad(503, "request cancelled during shutdown")
        elif task.exception() is not None:
            log.error("http handler failed path=%s", req.path, exc_info=task.exception())
            resp = self._bad(500, "internal error")
        else:
            resp = task.result()
        self._write(req, resp)
        self._advance()

    def _advance(self) -> None:
        """After an answer, or once the peer reads again: serve the queued requests, then
        what is owed after them, then held-back input."""
        while self.queue and not self.busy and not self.closing and not self.write_paused:
            self._dispatch(self.queue.popleft())
        if self.closing or self.busy or self.queue:
            return
        if self.error is not None:
            self._send_error()
            return
        if self.continue_due and self.stage == _BODY and self.transport is not None:
            self.continue_due = False
            self.transport.write(_CONTINUE)
        if self.stage == _IDLE:
            self.deadline = self.now() + self.limits.idle_timeout
        elif self.deadline == math.inf:
            # A request begun while earlier ones were answered: its time starts now.
            self.deadline = self.now() + (self.limits.header_timeout
                                                 if self.stage == _HEADERS
                                                 else self.limits.body_timeout)
        if self.pending is not None and not self.scheduled:
            self.turn = 0
            self._pump()
        else:
            self._sync_reading()

    def _replay(self, req: Request) -> bool:
        """Answers remembered request bytes again (see data_received), if the app can from
        its cache; else False, and they are parsed as usual."""
        started = _perf_counter()
        resp = self.hot(req, self.client)
        transport = self.transport
        if resp is None or transport is None:
            return False
        transport.write(resp.encoded(req.extra) if resp.wire is not None
                        else encode(resp, True, False, req.extra))
        req.started = started
        self.observe(req, resp.status)
        self.stage = _IDLE
        self.deadline = self.now() + self.limits.idle_timeout
        if self.write_paused:
            self._sync_reading()
        return True

    def _write(self, req: Request, resp: Response) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        keep_alive = req.keep_alive and not (self.draining and not self.queue)
        head = req.method == "HEAD"
        transport.write(resp.encoded(req.extra) if resp.wire is not None and keep_alive
                        and not head else encode(resp, keep_alive, head, req.extra))
        self.observe(req, resp.status)
        if not keep_alive:
            self._close()

    def _fail(self, status: int, detail: str) -> None:
        """Refuses the request being read; the connection closes after the answers owed to
        the requests before it."""
        self.server.refused(_FAILURES.get(status, "malformed"))
        self.error = self._bad(status, detail)
        self.pending = None
        if self.busy or self.queue:
            self._sync_reading()
        else:
            self._send_error()

    def _send_error(self) -> None:
        transport, error = self.transport, self.error
        self.error = None
        if transport is None or error is None or self.closing:
            return
        transport.write(encode(error, keep_alive=False))
        self._close()

    def _close(self) -> None:
        self.closing = True
        self.stage = _CLOSING
        # A peer that will not take the last answer is cut off after send_timeout.
        self.deadline = self.now() + self.limits.send_timeout
        if self.transport is not None:
            self.transport.close()

    def expire(self, now: float) -> None:
        """Past a deadline (HttpServer._sweep): says why, and closes or aborts."""
        transport = self.transport
        if transport is None:
            return
        if self.stage == _CLOSING or (self.write_paused and self.send_deadline <= now):
            self.server.refused("send_timeout")
            transport.abort()
            return
        stage = self.stage
        if self.busy or self.queue or self.pending is not None:
            # Waiting for the node (or its input held back by the node): not the client's
            # delay; _advance starts the clock again.
            self.deadline = math.inf
            return
        why = {_FRESH: "header_timeout", _HEADERS: "header_timeout", _BODY: "body_timeout",
               _IDLE: "idle_timeout"}[stage]
        self.server.refused(why)
        if stage in (_HEADERS, _BODY):
            what = "headers" if stage == _HEADERS else "body"
            limit = self.limits.header_timeout if stage == _HEADERS else self.limits.body_timeout
            self.error = self._bad(408, f"request {what} not received within {limit:g} s")
            self._send_error()
        else:
            self._close()


class _Refusal(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _no_hot(_req: Request, _client: str) -> Response | None:
    return None


def bind_socket(host: str, port: int, *, reuse_port: bool, backlog: int = 2048
                ) -> socket.socket:
    """A listening socket; with reuse_port, several worker processes share the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Opening:
    """An accepted connection on its way to a protocol. It stops counting as `opening` when
    its protocol is made, just before that protocol counts itself `live`, not when the set-up
    task completes a loop turn later: counted twice in between, a connection under the cap
    was refused as past it."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.made = False

    def protocol(self) -> HttpProtocol:
        self.made = True
        self.server.opening -= 1
        return HttpProtocol(self.server)

    def done(self, task: asyncio.Task[object]) -> None:
        if not self.made:
            self.server.opening -= 1
        if not task.cancelled() and task.exception() is not None:
            log.debug("http connection not set up: %r", task.exception())


class HttpServer:
    """The listening server and its live connections, so shutdown can drain them and the
    sweeper can close the ones that are too slow."""

    def __init__(self, limits: Limits = Limits(), refused: Refused | None = None) -> None:
        self.limits = limits
        self.live: set[HttpProtocol] = set()
        self.sock: socket.socket | None = None
        self.conn_limiter = (RateLimiter(limits.connection_rate, limits.connection_burst)
                             if limits.connection_rate > 0 else None)
        #: Accepted sockets whose transport is being made (counted against the cap).
        self.opening = 0
        self.refused: Refused = refused or (lambda _why: None)
        self.now = time.monotonic
        self._sweeper: asyncio.Task[None] | None = None
        self.app: Handler
        self.observe: Observer
        self.bad_request: Callable[[int, str], Response]
        self.busy_answer = b""
        #: Request bytes -> the request they parsed to, for requests the app answered from
        #: its cache and marked (Request.memo); answered again by `hot` without parsing.
        self.memos: dict[bytes, Request] = {}
        self.hot: Hot = _no_hot

    async def start(self, app: Handler, observe: Observer,
                    bad_request: Callable[[int, str], Response], sock: socket.socket) -> None:
        self.app, self.observe, self.bad_request = app, observe, bad_request
        hot = getattr(app, "hot", None)
        if callable(hot):
            self.hot = hot
        self.busy_answer = encode(bad_request(503, "too many connections; try again"),
                                  keep_alive=False)
        loop = asyncio.get_running_loop()
        self.now = loop.time
        # Accepted here rather than by create_server, which (a) listened again with its own
        # backlog (asyncio's and uvloop's default, 100) and (b) in uvloop accepts every
        # pending connection in one callback: a burst of a few hundred connects then held
        # the loop for tens of milliseconds. Here at most ACCEPT_BATCH a turn, and those past
        # the cap are answered from the bare socket, without a transport.
        sock.listen(self.limits.backlog)
        sock.setblocking(False)
        self.sock = sock
        loop.add_reader(sock.fileno(), self._accept)
        self._sweeper = asyncio.create_task(self._sweep(), name="http-sweeper")

    def _accept(self) -> None:
        sock = self.sock
        if sock is None:
            return
        loop = asyncio.get_running_loop()
        cap = self.limits.max_connections
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors (EMFILE/ENFILE) or buffers: wait a little rather than
                # spin on a listening socket that stays readable.
                log.warning("http accept failed, pausing accepts for 0.5 s: %s", exc)
                loop.remove_reader(sock.fileno())
                loop.call_later(0.5, self._resume_accepting)
                return
            if self.conn_limiter is not None and self.conn_limiter.take(addr[0]):
                # One address opening connections faster than anyone browsing or scanning
                # does: closed before any work is spent on it.
                self.refused("connection_rate")
                conn.close()
                continue
            if len(self.live) + self.opening >= cap:
                self.refused("connections")
                try:
                    conn.setblocking(False)
                    conn.send(self.busy_answer)
                except OSError:
                    pass
                conn.close()
                continue
            self.opening += 1
            conn.setblocking(False)
            opening = _Opening(self)
            task = loop.create_task(loop.connect_accepted_socket(opening.protocol, conn))
            task.add_done_callback(opening.done)

    def _resume_accepting(self) -> None:
        if self.sock is not None:
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    async def _sweep(self) -> None:
        """Closes connections past their deadline, a few times per shortest timeout."""
        lim = self.limits
        tick = min(1.0, max(0.05, min(lim.header_timeout, lim.idle_timeout, lim.body_timeout,
                                      lim.send_timeout) / 4))
        while True:
            await asyncio.sleep(tick)
            now = self.now()
            for conn in [c for c in self.live if c.deadline <= now or c.send_deadline <= now]:
                try:
                    conn.expire(now)
                except Exception:  # noqa: BLE001 - one connection must not stop the sweeper
                    log.exception("http connection expiry failed")

    def stop_accepting(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    async def drain(self, grace: float) -> int:
        """Closes idle connections now and busy ones after their response; after `grace`
        seconds aborts what is left. Returns how many had to be aborted."""
        self.stop_accepting()
        for proto in list(self.live):
            proto.drain()
        deadline = asyncio.get_running_loop().time() + grace
        while self.live and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        left = list(self.live)
        for proto in left:
            if proto.transport is not None:
                proto.transport.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        return len(left)


__all__ = ["Limits", "Request", "Response", "HttpServer", "bind_socket", "encode"]
