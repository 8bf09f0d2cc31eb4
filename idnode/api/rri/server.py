"""The top-level node's reporting interface for escrow reports (after draft-wu-identifier-
data-escrow-interface, itself after ICANN's Registry Reporting Interface): HTTP/1.1 over TLS,
`PUT /report/escrow/{node prefix}` with basic authentication (the node's EPP client id and
password) and the report XML as the body; 201 when accepted, 400/401/404 with the reason.
One request per connection. Transport only: the rules are idnode.sync.bms.EscrowReports."""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import ssl

from idnode.core.errors import IdnodeError, Unauthenticated
from idnode.sync.bms import EscrowReports

log = logging.getLogger("idnode.top.rri")

PATH = "/report/escrow/"
MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
TIMEOUT = 30.0


class ReportServer:
    def __init__(self, reports: EscrowReports) -> None:
        self.reports = reports
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None) -> int:
        self.server = await asyncio.start_server(self._serve, host, port, ssl=tls,
                                                 limit=MAX_HEAD)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                status, text = await self._answer(reader)
            body = text.encode()
            writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                         f"Content-Type: text/plain; charset=utf-8\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request, *lines = head.split("\r\n")
        method, target, _ = (request.split(" ") + ["", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines if line)}
        length = headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_BODY:
            return 413, f"a report is at most {MAX_BODY} bytes"
        body = await reader.readexactly(int(length))
        if method != "PUT" or not target.startswith(PATH):
            return 404, f"PUT {PATH}{{node prefix}} is the only resource here"
        node = target[len(PATH):]
        scheme, _, creds = headers.get("authorization", "").partition(" ")
        try:
            user, _, pw = base64.b64decode(creds, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user = pw = ""
        try:
            if scheme.lower() != "basic" or user != node:
                raise Unauthenticated("basic authentication as the node is required")
            await self.reports.bms.login(user, pw)
            return 201, await self.reports.accept(node, body)
        except Unauthenticated as exc:
            return 401, exc.message
        except IdnodeError as exc:
            log.warning("escrow report from %s refused: %s", node, exc.message)
            return 400, exc.message


_REASONS = {201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            413: "Content Too Large"}
