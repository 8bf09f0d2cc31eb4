"""Ships the outbox to the top-level node's Business Management System over EPP: each event
becomes the enterprise (ent) or identifier (iid) commands it stands for, sent one at a time in
seq order, each with a client transaction id derived from the event (`<node>-<seq>-<n>`), so a
command resent after a crash or a lost answer is recognised by the server (and, should a
server not keep transaction ids, a re-sent create meets 2302 "object exists" and a re-sent
delete 2303, both taken as done). What the drafts do not cover (signed tree heads) is not
shipped here: that stays on the gRPC federation (docs/FEDERATION.md)."""
from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from lxml import etree

from idnode.core.identifiers import Identifier, parse
from idnode.core.records import Value
from idnode.core.resolver import record_from_row
from idnode.store.handles import HandleStore
from idnode.store.notices import NoticeStore
from idnode.store.outbox import Event
from idnode.store.prefixes import PrefixStore
from idnode.store.tenancy import TenancyStore
from idnode.sync.epp import messages
from idnode.sync.epp.client import EppFailed, EppRefused, EppSession
from idnode.sync.epp.messages import RETRYABLE, Response

log = logging.getLogger(__name__)

#: Event kinds EPP carries; the rest is not the BMS's business.
KINDS = frozenset({"prefix.allocated", "prefix.status", "identifiers.registered",
                   "identifier.updated", "identifier.deleted"})
#: Polled messages read per shipping round, at most.
MAX_POLL = 100


@dataclass(frozen=True, slots=True)
class Current:
    """An identifier as the node holds it now: what a create or update ships."""

    version: int
    values: tuple[Value, ...]


class NodeSource:
    """What the commands carry, read from the node's database when they are sent: the
    identifier's public values (private ones never leave the node this way) and the
    enterprise holding a prefix."""

    def __init__(self, handles: HandleStore, prefixes: PrefixStore,
                 tenancy: TenancyStore) -> None:
        self.handles, self.prefixes, self.tenancy = handles, prefixes, tenancy

    async def records(self, idents: Sequence[str]) -> dict[str, Current]:
        parsed: list[Identifier] = []
        for text in idents:
            try:
                parsed.append(parse(text))
            except Exception:  # noqa: BLE001 - an event cannot hold one, but never stop on it
                continue
        rows = await self.handles.get_many(parsed, primary=True)
        out = {}
        for row in rows.values():
            rec = record_from_row(row)
            out[rec.identifier] = Current(rec.version, tuple(v for v in rec.values
                                                             if not v.private))
        return out

    async def enterprise(self, prefix: str) -> tuple[str, str, str]:
        """(name, unified social credit code, contact); empty for a prefix without one."""
        row = await self.prefixes.get(prefix)
        if row is None or row.enterprise_id is None:
            return "", "", ""
        found = await self.tenancy.enterprises(row.enterprise_id)
        return (found[0].name, found[0].uscc, found[0].contact) if found else ("", "", "")


class EppUpstream:
    """The outbox shipper's upstream (idnode.sync.worker.Shipper) over EPP. One session, kept
    open between rounds and opened again whenever it breaks."""

    def __init__(self, address: str, clid: str, password: str, source: NodeSource,
                 notices: NoticeStore, *, tls: ssl.SSLContext | None = None,
                 timeout: float = 10.0) -> None:
        host, _, port = address.rpartition(":")
        # The name keys sync_state (the acknowledged position) apart from the gRPC upstream's.
        self.name = f"epp://{address}"
        self.session = EppSession(host.strip("[]"), int(port), clid, password, tls=tls,
                                  timeout=timeout)
        self.source = source
        self.notices = notices
        self.clid = clid
        #: Commands refused for good (recorded, then passed over) and messages polled.
        self.refused = 0
        self.polled = 0

    async def close(self) -> None:
        await self.session.close()

    async def report(self, node_prefix: str, events: Sequence[Event]) -> int:
        """Ships `events` in order; returns the last seq whose commands all got a final
        answer. A failure worth retrying after some progress returns that progress (the
        shipper asks again at once and backs off if it fails again); before any, raises."""
        done = events[0].seq - 1
        try:
            if not self.session.open:
                await self.session.connect()
            for e in events:
                await self._ship(node_prefix, e)
                done = e.seq
            await self._poll()
        except (EppFailed, EppRefused, _Retry) as exc:
            if done >= events[0].seq:
                log.warning("EPP shipping stopped after seq %d: %s", done, exc)
                return done
            raise
        return done

    async def _ship(self, node: str, e: Event) -> None:
        if e.kind not in KINDS:
            return
        payload = orjson.loads(e.payload)
        base = f"{node}-{e.seq}"
        if e.kind == "prefix.allocated":
            prefix = str(payload.get("prefix", ""))
            name, code, contact = await self.source.enterprise(prefix)
            await self._send(e.seq, f"{base}-0", "create",
                             messages.ent_create(prefix, name, code, contact),
                             f"enterprise create {prefix}", done_if=(2302,))
        elif e.kind == "prefix.status":
            prefix, status = str(payload.get("prefix", "")), str(payload.get("status", ""))
            await self._send(e.seq, f"{base}-0", "update",
                             messages.ent_update_status(prefix, status),
                             f"enterprise update {prefix} status {status}")
        elif e.kind == "identifiers.registered":
            ids = [str(i) for i in payload.get("identifiers", [])]
            current = await self.source.records(ids)
            for n, ident in enumerate(ids):
                rec = current.get(ident)
                if rec is None:
                    continue  # deleted since; its identifier.deleted event follows
                await self._send(e.seq, f"{base}-{n}", "create",
                                 messages.iid_create(ident, rec.version, rec.values),
                                 f"identifier create {ident}", done_if=(2302,))
        elif e.kind == "identifier.updated":
            ident = str(payload.get("identifier", ""))
            rec = (await self.source.records([ident])).get(ident)
            if rec is None:
                return  # deleted since
            resp = await self._send(e.seq, f"{base}-0", "update",
                                    messages.iid_update(ident, rec.version, rec.values),
                                    f"identifier update {ident}", done_if=(2303,))
            if resp.code == 2303:
                # The top never had it (its create was refused, or came before the top
                # existed): it gets the identifier whole.
                await self._send(e.seq, f"{base}-1", "create",
                                 messages.iid_create(ident, rec.version, rec.values),
                                 f"identifier create {ident}", done_if=(2302,))
        elif e.kind == "identifier.deleted":
            ident = str(payload.get("identifier", ""))
            await self._send(e.seq, f"{base}-0", "delete", messages.iid_id("delete", ident),
                             f"identifier delete {ident}", done_if=(2303,))

    async def _send(self, seq: int, cltrid: str, verb: str, obj: etree._Element, what: str, *,
                    done_if: tuple[int, ...] = ()) -> Response:
        resp = await self.session.call(messages.command(verb, obj, cltrid))
        if resp.ok or resp.code in done_if:
            return resp
        if resp.code in RETRYABLE or resp.code in (2200, 2501) or resp.code not in messages.RESULTS:
            # The server's trouble, a lost session, credentials, or a code we do not know:
            # stop here and try again later, from this command.
            raise _Retry(f"{what}: EPP {resp.code} {resp.msg}")
        # Refused for good (syntax, policy, authorization, status): a retry would repeat it.
        # Recorded for the operator; the stream goes on.
        self.refused += 1
        text = f"EPP {resp.code} {resp.msg}" + (f": {'; '.join(resp.reasons)}"
                                                 if resp.reasons else "")
        log.warning("the top-level node refused %s (outbox seq %d): %s", what, seq, text)
        await self.notices.add(self.name, "refused", text, seq=seq, command=what,
                               code=resp.code)
        return resp

    async def _poll(self) -> None:
        for _ in range(MAX_POLL):
            resp = await self.session.call(messages.poll(self.session.trid("poll")))
            if resp.code != 1301 or resp.msgq is None:
                return
            self.polled += 1
            log.warning("message from the top-level node (%s): %s", resp.msgq.id,
                        resp.msgq.text)
            await self.notices.add(self.name, "message", resp.msgq.text or resp.msg,
                                   command=f"poll {resp.msgq.id}", code=resp.code)
            ack = await self.session.call(messages.poll(self.session.trid("ack"), resp.msgq.id))
            if not ack.ok:
                return


class _Retry(Exception):
    pass
