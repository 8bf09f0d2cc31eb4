"""The reference top-level node's Business Management System: the rules behind its EPP
server (draft-chen-top-level-interface-protocol), over the same tables the gRPC federation
uses (node_prefixes and identifiers, so Locate finds what EPP provisioned). A node may create
enterprises only for prefixes under its own node prefix and not held by another node, and
identifiers only under those; a refusal is answered (2201 / 2306) and queued as a message
the node reads with <poll>."""
from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from idnode.core import auth
from idnode.core.errors import NotFound, Unauthenticated
from idnode.core.records import Value
from idnode.store.top import Answer, BmsStore
from idnode.sync.epp import messages

log = logging.getLogger("idnode.top.bms")

ENT_STATUSES = frozenset(messages.ENT_STATUS.values())


@dataclass(slots=True)
class Command:
    """A transform command as the server read it."""

    verb: str          # create | update | delete
    kind: str          # iid | ent
    id: str
    version: int = 1
    values: Sequence[Value] = field(default_factory=tuple)
    name: str = ""
    org_code: str = ""
    contact: str = ""
    status: str = ""


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _xml(el: etree._Element) -> str:
    text: str = etree.tostring(el, encoding="unicode")
    return text


def _under(prefix: str, node_prefix: str) -> bool:
    return prefix.startswith(node_prefix + ".")


def new_svtrid() -> str:
    return "bms-" + secrets.token_hex(8)


class Bms:
    def __init__(self, store: BmsStore) -> None:
        self.store = store

    async def set_password(self, node_prefix: str) -> str:
        """A new EPP password for a node (printed once); the token is not one: RFC 5730
        passwords are 6 to 16 characters."""
        pw = secrets.token_urlsafe(12)  # 16 characters
        salt = secrets.token_bytes(16)
        if not await self.store.set_epp_password(node_prefix, salt, auth.hash_secret(salt, pw)):
            raise NotFound(f"node {node_prefix} is not known", field="node_prefix")
        return pw

    async def login(self, clid: str, pw: str) -> str:
        kept = await self.store.epp_password(clid)
        if kept is None or not hmac.compare_digest(auth.hash_secret(kept[0], pw), kept[1]):
            raise Unauthenticated("EPP client id or password is not valid",
                                  reason="INVALID_CREDENTIAL")
        return clid

    async def transform(self, node: str, cltrid: str, digest: bytes, cmd: Command) -> Answer:
        async def apply(conn: Any) -> Answer:
            if cmd.kind == "ent":
                return await self._enterprise(conn, node, cmd)
            return await self._identifier(conn, node, cmd)
        return await self.store.once(node, cltrid, digest, apply)

    async def _refuse(self, conn: Any, node: str, code: int, reason: str) -> Answer:
        await self.store.queue_message(conn, node, f"refused ({code}): {reason}")
        return Answer(new_svtrid(), code, reason)

    async def _enterprise(self, conn: Any, node: str, cmd: Command) -> Answer:
        s = self.store
        prefix = cmd.id
        if not _under(prefix, node):
            return await self._refuse(conn, node, 2201,
                                      f"prefix {prefix} is not under node {node}")
        held = await s.enterprise(conn, prefix)
        holder = held.node_prefix if held is not None else await conn.fetchval(
            "SELECT node_prefix FROM node_prefixes WHERE prefix = $1", prefix)
        if holder not in (None, node):
            return await self._refuse(conn, node, 2201,
                                      f"prefix {prefix} is held by node {holder}")
        if cmd.verb == "create":
            if held is not None:
                return Answer(new_svtrid(), 2302, f"enterprise {prefix} exists")
            created = await s.create_enterprise(conn, prefix, node, cmd.name, cmd.org_code,
                                                cmd.contact)
            return Answer(new_svtrid(), 1000,
                          resdata=_xml(messages.cre_data("ent", prefix, _iso(created))))
        if held is None:
            return Answer(new_svtrid(), 2303, f"enterprise {prefix} does not exist")
        if cmd.verb == "update":
            if cmd.status:
                await s.set_enterprise_status(conn, prefix, cmd.status)
            return Answer(new_svtrid(), 1000)
        await s.set_enterprise_status(conn, prefix, "inactive")  # delete: kept, inactive
        return Answer(new_svtrid(), 1000)

    async def _identifier(self, conn: Any, node: str, cmd: Command) -> Answer:
        s = self.store
        ident = cmd.id
        prefix = ident.split("/", 1)[0]
        holder = await conn.fetchval("SELECT node_prefix FROM node_prefixes WHERE prefix = $1",
                                     prefix)
        if not _under(prefix, node) or holder not in (None, node):
            return await self._refuse(conn, node, 2201,
                                      f"identifier {ident} is outside node {node}")
        row = await s.identifier(conn, ident)
        if row is not None and row.node_prefix != node:
            return await self._refuse(conn, node, 2201,
                                      f"identifier {ident} is held by node {row.node_prefix}")
        live = row is not None and not row.deleted
        vals = [v.to_json() for v in cmd.values]
        if cmd.verb == "create":
            if live:
                return Answer(new_svtrid(), 2302, f"identifier {ident} exists")
            created = await s.put_identifier(conn, ident, node, cmd.version, vals, created=True)
            return Answer(new_svtrid(), 1000,
                          resdata=_xml(messages.cre_data("iid", ident, _iso(created))))
        if not live:
            return Answer(new_svtrid(), 2303, f"identifier {ident} does not exist")
        if cmd.verb == "update":
            await s.put_identifier(conn, ident, node, cmd.version, vals, created=False)
        else:
            await s.delete_identifier(conn, ident)
        return Answer(new_svtrid(), 1000)

    async def check(self, node: str, kind: str, ids: Sequence[str]) -> str:
        async def run(conn: Any) -> str:
            answers = []
            for i in ids:
                if kind == "ent":
                    taken = await self.store.enterprise(conn, i) is not None
                else:
                    row = await self.store.identifier(conn, i)
                    taken = row is not None and not row.deleted
                answers.append((i, not taken, "in use" if taken else ""))
            return _xml(messages.chk_data(kind, answers))
        return str(await self.store.read(run))

    async def info(self, node: str, kind: str, ident: str) -> Answer:
        """Any node may read an object (the top is a shared directory); the values are the
        public ones its node shipped."""
        async def run(conn: Any) -> Answer:
            if kind == "ent":
                e = await self.store.enterprise(conn, ident)
                if e is None:
                    return Answer(new_svtrid(), 2303, f"enterprise {ident} does not exist")
                return Answer(new_svtrid(), 1000, resdata=_xml(messages.ent_inf_data(
                    e.prefix, e.status, e.name, e.org_code, e.contact, e.node_prefix,
                    _iso(e.created_at), _iso(e.updated_at))))
            r = await self.store.identifier(conn, ident)
            if r is None or r.deleted:
                return Answer(new_svtrid(), 2303, f"identifier {ident} does not exist")
            values = [Value.from_json(v) for v in r.vals]
            return Answer(new_svtrid(), 1000, resdata=_xml(messages.iid_inf_data(
                r.identifier, "ok", r.version, values, r.node_prefix, _iso(r.created_at),
                _iso(r.updated_at))))
        return await self.store.read(run)  # type: ignore[no-any-return]

    async def poll(self, node: str, ack: str | None) -> tuple[int, messages.MsgQ | None]:
        if ack is not None:
            left = await self.store.ack_message(node, int(ack)) if ack.isdigit() else None
            if left is None:
                return 2303, None
            return 1000, messages.MsgQ(left, ack)
        pending = await self.store.next_message(node)
        if pending is None:
            return 1300, None
        count, msg_id, text, at = pending
        return 1301, messages.MsgQ(count, str(msg_id), text, _iso(at))


class EscrowReports:
    """The top-level node's side of the escrow report (draft-wu-identifier-data-escrow-
    interface): a report is accepted when it is schema-valid, of the node that sends it, and
    continues that node's chain (a DIFF follows the last deposit reported, watermarks only
    grow); the answer says why not otherwise."""

    def __init__(self, store: Any, bms: Bms) -> None:
        self.store, self.bms = store, bms

    async def accept(self, node: str, body: bytes) -> str:
        from idnode.core.errors import InvalidArgument
        from idnode.schemas import RDE_HEADER, RDE_REPORT, SchemaViolation, check, parse, \
            report_schema

        def t(tag: str) -> str:
            return "{%s}%s" % (RDE_REPORT, tag)
        try:
            root = parse(body)
            check(root, report_schema())
        except SchemaViolation as exc:
            raise InvalidArgument(f"report: {exc}", field="report") from None
        tld = root.findtext(f"{{{RDE_HEADER}}}header/{{{RDE_HEADER}}}tld")
        if tld != node:
            raise InvalidArgument(f"report of node {tld}, sent by node {node}", field="report")
        dep_id, kind = root.findtext(t("id")) or "", root.findtext(t("kind")) or ""
        prev = root.findtext(t("prevId"))
        watermark = datetime.fromisoformat((root.findtext(t("watermark")) or "")
                                           .replace("Z", "+00:00"))
        last = await self.store.last(node)
        if last is not None and last[0] != dep_id:
            if watermark <= last[1]:
                raise InvalidArgument(f"deposit {dep_id}'s watermark is not after the last "
                                      f"reported deposit {last[0]}'s", field="watermark")
            if kind == "DIFF" and prev != last[0]:
                raise InvalidArgument(f"DIFF deposit {dep_id} follows {prev}, but the last "
                                      f"reported deposit is {last[0]}", field="prevId")
        elif last is None and kind == "DIFF":
            raise InvalidArgument("the first deposit reported must be FULL", field="kind")
        new = await self.store.add(node, dep_id, kind, prev, watermark,
                                   root.findtext(t("sha256")) or "", body.decode())
        return "accepted" if new else "accepted (already reported)"
