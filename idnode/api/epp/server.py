"""The Business Management System's EPP server (RFC 5730 over TLS, RFC 5734): a greeting on
connect, <login> before anything else, then commands one at a time; each data unit is checked
against the schemas (idnode/schemas/) before it is acted on. Transport only: the rules are in
idnode.sync.bms."""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl

from lxml import etree

from idnode.core.errors import Unauthenticated
from idnode.core.records import Value
from idnode.schemas import SchemaViolation, check, epp_schema, parse
from idnode.store.top import Answer
from idnode.sync.bms import Bms, Command, ENT_STATUSES, new_svtrid
from idnode.sync.epp import client, frame, messages
from idnode.sync.epp.messages import q, values_of

log = logging.getLogger("idnode.top.epp")

SV_ID = "idnode reference top-level node BMS"
#: Seconds a session may sit idle between commands before the server closes it.
IDLE_TIMEOUT = 300.0


def server_context(cert: str, key: str, client_ca: str = "") -> ssl.SSLContext:
    """TLS for the EPP listener; with client_ca every client must present a certificate that
    CA signed (RFC 5734 §9: the server authenticates the client's certificate)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(cafile=client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class EppServer:
    def __init__(self, bms: Bms) -> None:
        self.bms = bms
        self.server: asyncio.Server | None = None
        self.commands = 0
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None) -> int:
        self.server = await asyncio.start_server(self._session, host, port, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        node: str | None = None
        try:
            await self._send(writer, messages.greeting(SV_ID))
            while True:
                try:
                    data = await asyncio.wait_for(frame.read(reader), IDLE_TIMEOUT)
                except frame.FrameError as exc:
                    await self._send(writer, messages.response(2500, None, new_svtrid(),
                                                               reason=str(exc)))
                    return
                for observe in client.OBSERVERS:
                    observe("server-received", data)
                body, node, close = await self._answer(data, node)
                await self._send(writer, body)
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, body: bytes) -> None:
        for observe in client.OBSERVERS:
            observe("server-sent", body)
        writer.write(frame.encode(body))
        await writer.drain()

    async def _answer(self, data: bytes, node: str | None) -> tuple[bytes, str | None, bool]:
        """The response to one data unit, the session's node after it, and whether to close."""
        cltrid: str | None = None
        try:
            root = parse(data)
            cmd = root.find(q("epp:command"))
            if cmd is not None:
                cltrid = cmd.findtext(q("epp:clTRID"))
            check(root, epp_schema())
        except SchemaViolation as exc:
            return messages.response(2001, cltrid, new_svtrid(), reason=str(exc)[:200]), node, False
        try:
            return await self._act(root, cmd, cltrid, node)
        except Exception:
            # RFC 5730 §3: 2400 "Command failed" for an error of the server's own; the session
            # goes on (the client may retry), as it would after any other failed command.
            log.exception("EPP command failed node=%s clTRID=%s", node, cltrid)
            return messages.response(2400, cltrid, new_svtrid()), node, False

    async def _act(self, root: etree._Element, cmd: etree._Element | None, cltrid: str | None,
                   node: str | None) -> tuple[bytes, str | None, bool]:
        if root.find(q("epp:hello")) is not None:
            return messages.greeting(SV_ID), node, False
        if cmd is None:
            return messages.response(2000, cltrid, new_svtrid()), node, False
        verb_el = cmd[0]
        verb = etree.QName(verb_el).localname
        self.commands += 1
        if verb == "login":
            if node is not None:
                return messages.response(2002, cltrid, new_svtrid(),
                                         reason="already logged in"), node, False
            try:
                node = await self.bms.login(verb_el.findtext(q("epp:clID")) or "",
                                            verb_el.findtext(q("epp:pw")) or "")
            except Unauthenticated:
                log.warning("EPP login refused for %r", verb_el.findtext(q("epp:clID")))
                return messages.response(2200, cltrid, new_svtrid()), None, False
            return messages.response(1000, cltrid, new_svtrid()), node, False
        if node is None:
            return messages.response(2002, cltrid, new_svtrid(),
                                     reason="log in first"), node, False
        if verb == "logout":
            return messages.response(1500, cltrid, new_svtrid()), None, True
        if verb == "poll":
            code, msgq = await self.bms.poll(node, verb_el.get("msgID") if
                                             verb_el.get("op") == "ack" else None)
            return messages.response(code, cltrid, new_svtrid(), msgq=msgq), node, False
        if verb in ("renew", "transfer"):
            return messages.response(2101, cltrid, new_svtrid(),
                                     reason=f"<{verb}> is not defined for these objects"
                                     ), node, False
        obj = verb_el[0]
        kind = {messages.IID_NS: "iid", messages.ENT_NS: "ent"}.get(etree.QName(obj).namespace)
        if kind is None:
            return messages.response(2307, cltrid, new_svtrid()), node, False
        if verb == "check":
            ids = [i.text or "" for i in obj.iter(q(f"{kind}:id"))]
            resdata = await self.bms.check(node, kind, ids)
            return self._reply(Answer(new_svtrid(), 1000, resdata=resdata), cltrid), node, False
        if verb == "info":
            answer = await self.bms.info(node, kind, obj.findtext(q(f"{kind}:id")) or "")
            return self._reply(answer, cltrid), node, False
        if not cltrid:
            return messages.response(2003, cltrid, new_svtrid(),
                                     reason="a transform command needs a <clTRID>"), node, False
        command = _command(verb, kind, obj)
        if command is None:
            return messages.response(2005, cltrid, new_svtrid()), node, False
        answer = await self.bms.transform(node, cltrid, hashlib.sha256(
            etree.tostring(verb_el, method="c14n")).digest(), command)
        return self._reply(answer, cltrid), node, False

    @staticmethod
    def _reply(answer: Answer, cltrid: str | None) -> bytes:
        resdata = etree.fromstring(answer.resdata) if answer.resdata else None
        return messages.response(answer.code, cltrid, answer.svtrid, resdata=resdata,
                                 reason=answer.reason)


def _command(verb: str, kind: str, obj: etree._Element) -> Command | None:
    ident = obj.findtext(q(f"{kind}:id")) or ""
    if kind == "iid":
        version = obj.findtext(f".//{q('iid:version')}")
        values: tuple[Value, ...] = values_of(obj)
        return Command(verb, kind, ident, int(version) if version else 1, values)
    status = ""
    st = obj.find(f".//{q('ent:status')}")
    if st is not None:
        status = st.get("s", "")
        if status not in ENT_STATUSES:
            return None
    return Command(verb, kind, ident, name=obj.findtext(f".//{q('ent:name')}") or "",
                   org_code=obj.findtext(f".//{q('ent:orgCode')}") or "",
                   contact=obj.findtext(f".//{q('ent:contact')}") or "", status=status)


