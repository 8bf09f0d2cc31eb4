"""A small HTTP/1.1 server on httptools (llhttp) and asyncio/uvloop: keep-alive, pipelining,
bounded requests. Routes answer synchronously when they can (cache hits) and fall back to a
task when they must wait (database)."""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from email.utils import formatdate

import httptools

log = logging.getLogger(__name__)

MAX_URL = 8192
MAX_HEADERS_BYTES = 32_768
MAX_BODY = 1_048_576

_REASONS = {200: b"OK", 204: b"No Content", 304: b"Not Modified", 400: b"Bad Request",
            404: b"Not Found", 405: b"Method Not Allowed", 406: b"Not Acceptable",
            409: b"Conflict", 412: b"Precondition Failed", 413: b"Content Too Large",
            414: b"URI Too Long", 429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
            500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable"}


class Request:
    __slots__ = ("method", "path", "query", "headers", "client", "keep_alive", "started", "route")

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


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: bytes = b"application/json",
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


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


def encode(resp: Response, keep_alive: bool, head: bool = False) -> bytes:
    parts = [b"HTTP/1.1 ", str(resp.status).encode(), b" ", _REASONS.get(resp.status, b"Unknown"),
             b"\r\n", _clock.date(), b"Server: idnode\r\n"]
    if resp.status != 304:
        parts += [b"Content-Type: ", resp.content_type, b"\r\nContent-Length: ",
                  str(len(resp.body)).encode(), b"\r\n"]
    for name, value in resp.headers:
        parts += [name, b": ", value, b"\r\n"]
    if not keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if not head and resp.status != 304:
        parts.append(resp.body)
    return b"".join(parts)


#: A route returns a Response now, or an awaitable of one.
Handler = Callable[[Request], "Response | Awaitable[Response]"]
#: Called once per request after the response is written (metrics).
Observer = Callable[[Request, int], None]


class HttpProtocol(asyncio.Protocol):
    __slots__ = ("app", "observe", "transport", "parser", "url", "headers", "header_bytes",
                 "body_bytes", "client", "queue", "busy", "closing", "_bad", "_live", "draining")

    def __init__(self, app: Handler, observe: Observer, bad_request: Callable[[int, str], Response],
                 live: set[HttpProtocol] | None = None) -> None:
        self.app = app
        self._live = live if live is not None else set()
        self.draining = False
        self.observe = observe
        self._bad = bad_request
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body_bytes = 0
        self.client = ""
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._live.add(self)
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None
        self._live.discard(self)

    def drain(self) -> None:
        """Finish the request in flight (if any), then close: used on shutdown."""
        self.draining = True
        if not self.busy and not self.queue and self.transport is not None:
            self.closing = True
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            # httptools wraps exceptions raised in callbacks; ours say what was too large.
            cause = exc.__context__
            if isinstance(cause, _RequestTooLarge):
                self._fail(cause.status, cause.detail)
            elif not self.closing:
                self._fail(400, f"malformed HTTP request: {exc}")

    # -- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.header_bytes = 0
        self.body_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_URL:
            raise _RequestTooLarge(414, f"request target longer than {MAX_URL} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADERS_BYTES:
            raise _RequestTooLarge(431, f"request headers larger than {MAX_HEADERS_BYTES} bytes")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        prev = self.headers.get(key)
        self.headers[key] = text if prev is None else f"{prev}, {text}"

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise _RequestTooLarge(413, f"request body larger than {MAX_BODY} bytes")

    def on_message_complete(self) -> None:
        raw = self.url.decode("latin-1")
        path, _, query = raw.partition("?")
        method = self.parser.get_method().decode("latin-1")
        req = Request(method, path, query, self.headers, self.client,
                      self.parser.should_keep_alive())
        if self.busy:
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
            self._write(req, result)
            return
        self.busy = True
        task = asyncio.ensure_future(result)
        task.add_done_callback(lambda t, r=req: self._finished(r, t))

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
        while self.queue and not self.busy and not self.closing:
            self._dispatch(self.queue.popleft())

    def _write(self, req: Request, resp: Response) -> None:
        transport = self.transport
        if transport is None or self.closing:
            return
        keep_alive = req.keep_alive and not (self.draining and not self.queue)
        transport.write(encode(resp, keep_alive, req.method == "HEAD"))
        self.observe(req, resp.status)
        if not keep_alive:
            self.closing = True
            transport.close()

    def _fail(self, status: int, detail: str) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(encode(self._bad(status, detail), keep_alive=False))
        self.closing = True
        transport.close()


class _RequestTooLarge(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def bind_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A listening socket; with reuse_port, several worker processes share the port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class HttpServer:
    """The listening server and its live connections, so shutdown can drain them."""

    def __init__(self) -> None:
        self.live: set[HttpProtocol] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self, app: Handler, observe: Observer,
                    bad_request: Callable[[int, str], Response], sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: HttpProtocol(app, observe, bad_request, self.live), sock=sock)

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

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
        return len(left)


__all__ = ["Request", "Response", "HttpServer", "bind_socket", "encode"]
