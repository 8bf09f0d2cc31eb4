"""An EPP session as the client (RFC 5730 §2, RFC 5734): connect (TLS with this node's client
certificate when configured), read the greeting, log in, exchange commands one at a time,
log out. Every exchange is bounded by `timeout`."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Callable

from lxml import etree

from idnode.config import Settings
from idnode.schemas import SchemaViolation, parse
from idnode.sync.epp import frame, messages
from idnode.sync.epp.messages import Response, q

log = logging.getLogger(__name__)

#: Called with ("sent" | "received", data unit) for every EPP data unit of every session:
#: the tests validate each one against the schemas here.
OBSERVERS: list[Callable[[str, bytes], None]] = []


class EppFailed(Exception):
    """A session could not be had or broke: the server is down, slow, or answered nonsense.
    Always worth another try later."""


class EppRefused(Exception):
    """The server answered a command with an error result (2xxx)."""

    def __init__(self, resp: Response, what: str) -> None:
        detail = f"; {'; '.join(resp.reasons)}" if resp.reasons else ""
        super().__init__(f"{what}: EPP {resp.code} {resp.msg}{detail}")
        self.response = resp


def client_context(ca: str, cert: str = "", key: str = "") -> ssl.SSLContext:
    """TLS to the top-level node (RFC 5734 §9: the client presents its certificate): its
    certificate must chain to `ca`; with cert and key, this node presents its own."""
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key or None)
    return ctx


class EppSession:
    _ids = itertools.count(1)

    def __init__(self, host: str, port: int, clid: str, password: str, *,
                 tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        self.host, self.port = host, port
        self.clid, self.password = clid, password
        self.tls = tls
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.greeting = b""

    @property
    def open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    def trid(self, tag: str = "s") -> str:
        """A client transaction id for a command that is not part of the outbox stream."""
        return f"{self.clid}-{tag}{next(self._ids)}"

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None)
                self.greeting = await self._read()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, frame.FrameError,
                ssl.SSLError) as exc:
            await self.close(logout=False)
            raise EppFailed(f"EPP server {self.host}:{self.port}: {type(exc).__name__}: "
                            f"{exc}") from None
        root = self._parse(self.greeting)
        if root.find(q("epp:greeting")) is None:
            await self.close(logout=False)
            raise EppFailed("the EPP server's first data unit is not a <greeting>")
        resp = await self.call(messages.login(self.clid, self.password, self.trid("login")))
        if not resp.ok:
            await self.close(logout=False)
            raise EppRefused(resp, f"login as {self.clid}")

    async def call(self, data: bytes) -> Response:
        """Sends one command and reads its response."""
        if self._writer is None or self._reader is None:
            raise EppFailed("no EPP session")
        try:
            async with asyncio.timeout(self.timeout):
                for observe in OBSERVERS:
                    observe("sent", data)
                self._writer.write(frame.encode(data))
                await self._writer.drain()
                raw = await self._read()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, frame.FrameError,
                ssl.SSLError) as exc:
            await self.close(logout=False)
            raise EppFailed(f"EPP exchange with {self.host}:{self.port} failed: "
                            f"{type(exc).__name__}") from None
        try:
            resp = messages.parse_response(raw)
        except SchemaViolation as exc:
            await self.close(logout=False)
            raise EppFailed(f"the EPP server answered something unreadable: {exc}") from None
        if resp.code in (2500, 2501, 2502):
            await self.close(logout=False)  # the server closes the session after these
        return resp

    async def _read(self) -> bytes:
        assert self._reader is not None
        data = await frame.read(self._reader)
        for observe in OBSERVERS:
            observe("received", data)
        return data

    def _parse(self, data: bytes) -> etree._Element:
        try:
            return parse(data)
        except SchemaViolation as exc:
            raise EppFailed(f"the EPP server sent something unreadable: {exc}") from None

    async def close(self, *, logout: bool = True) -> None:
        reader, writer = self._reader, self._writer
        self._reader = self._writer = None
        if writer is None:
            return
        if logout and reader is not None and not writer.is_closing():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    data = messages.logout(self.trid("logout"))
                    for observe in OBSERVERS:
                        observe("sent", data)
                    writer.write(frame.encode(data))
                    await writer.drain()
                    raw = await frame.read(reader)
                    for observe in OBSERVERS:
                        observe("received", raw)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def query(s: Settings, verb: str, ids: list[str]) -> list[str]:
    """`idnode sync epp check|info ID…`: asks the top-level node's BMS about enterprise
    prefixes (`0.118.8`) or identifiers (`0.118.8/X`); returns lines to print."""
    from idnode.sync.epp.messages import ent_id, iid_check, iid_id, q

    host, _, port = s.upstream_epp.rpartition(":")
    tls = (client_context(s.upstream_tls_ca, s.upstream_tls_cert, s.upstream_tls_key)
           if s.upstream_tls_ca else None)
    session = EppSession(host.strip("[]"), int(port), s.upstream_epp_client_id or s.node_prefix,
                         s.upstream_epp_password, tls=tls, timeout=s.upstream_epp_timeout)
    await session.connect()
    out: list[str] = []
    try:
        groups = {"iid": [i for i in ids if "/" in i], "ent": [i for i in ids if "/" not in i]}
        for kind, group in groups.items():
            if not group:
                continue
            if verb == "check":
                obj = (iid_check(group) if kind == "iid" else
                       messages.N.check(*(messages.N.id(i) for i in group)))
                requests = [messages.command("check", obj, session.trid("check"))]
            else:
                requests = [messages.command("info", iid_id("info", i) if kind == "iid"
                                             else ent_id("info", i), session.trid("info"))
                            for i in group]
            for data in requests:
                resp = await session.call(data)
                if not resp.ok or resp.resdata is None:
                    out.append(f"EPP {resp.code} {resp.msg}"
                               + (f": {'; '.join(resp.reasons)}" if resp.reasons else ""))
                    continue
                if verb == "check":
                    for cd in resp.resdata.iter(q(f"{kind}:cd")):
                        el = cd.find(q(f"{kind}:id"))
                        assert el is not None
                        avail = "available" if el.get("avail") in ("1", "true") else "in use"
                        out.append(f"{el.text}\t{avail}")
                else:
                    out.append(etree.tostring(resp.resdata, pretty_print=True,
                                              encoding="unicode").rstrip())
    finally:
        await session.close()
    return out
