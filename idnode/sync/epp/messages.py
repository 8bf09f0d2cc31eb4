"""EPP messages: the RFC 5730 envelope and the enterprise (ent) and identifier (iid) object
mappings (idnode/schemas/, reconstructed after the CAICT drafts: see README.md there).
Every builder returns bytes that validate against the schemas; `parse_response` reads what a
server answers."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lxml import etree
from lxml.builder import ElementMaker

from idnode.core.records import Value
from idnode.schemas import ENT, EPP, IID, SchemaViolation, parse

E = ElementMaker(namespace=EPP, nsmap={None: EPP})
I = ElementMaker(namespace=IID, nsmap={"iid": IID})  # noqa: E741
N = ElementMaker(namespace=ENT, nsmap={"ent": ENT})
OBJ_URIS = (IID, ENT)
IID_NS, ENT_NS = IID, ENT

#: RFC 5730 §3 result codes and their standard messages (the ones idnode sends or reads).
RESULTS = {
    1000: "Command completed successfully",
    1300: "Command completed successfully; no messages",
    1301: "Command completed successfully; ack to dequeue",
    1500: "Command completed successfully; ending session",
    2000: "Unknown command",
    2001: "Command syntax error",
    2002: "Command use error",
    2003: "Required parameter missing",
    2004: "Parameter value range error",
    2005: "Parameter value syntax error",
    2100: "Unimplemented protocol version",
    2101: "Unimplemented command",
    2102: "Unimplemented option",
    2200: "Authentication error",
    2201: "Authorization error",
    2202: "Invalid authorization information",
    2302: "Object exists",
    2303: "Object does not exist",
    2304: "Object status prohibits operation",
    2305: "Object association prohibits operation",
    2306: "Parameter value policy error",
    2307: "Unimplemented object service",
    2308: "Data management policy violation",
    2400: "Command failed",
    2500: "Command failed; server closing connection",
    2501: "Authentication error; server closing connection",
    2502: "Session limit exceeded; server closing connection",
}
#: Failures worth trying again later (the server's trouble, or the session's), as opposed to
#: a refusal of the command itself, which a retry would only repeat.
RETRYABLE = frozenset({2400, 2500, 2502})


def _doc(el: etree._Element) -> bytes:
    doc: bytes = etree.tostring(E.epp(el), xml_declaration=True, encoding="UTF-8",
                                standalone=False)
    return doc


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- commands (client) -------------------------------------------------------------------
def hello() -> bytes:
    return _doc(E.hello())


def command(verb: str, obj: etree._Element | None, cltrid: str, **attrs: str) -> bytes:
    body = E(verb, **attrs) if obj is None else E(verb, obj, **attrs)
    return _doc(E.command(body, E.clTRID(cltrid)))


def login(clid: str, pw: str, cltrid: str, new_pw: str | None = None) -> bytes:
    parts = [E.clID(clid), E.pw(pw)]
    if new_pw:
        parts.append(E.newPW(new_pw))
    parts += [E.options(E.version("1.0"), E.lang("en")),
              E.svcs(*(E.objURI(u) for u in OBJ_URIS))]
    return _doc(E.command(E.login(*parts), E.clTRID(cltrid)))


def logout(cltrid: str) -> bytes:
    return command("logout", None, cltrid)


def poll(cltrid: str, ack: str | None = None) -> bytes:
    return command("poll", None, cltrid, **({"op": "ack", "msgID": ack} if ack
                                            else {"op": "req"}))


def _values(values: Iterable[Value]) -> list[etree._Element]:
    return [I.value(v.data, index=str(v.index), type=v.type, format=v.format, ttl=str(v.ttl))
            for v in values]


def iid_create(ident: str, version: int, values: Sequence[Value]) -> etree._Element:
    return I.create(I.id(ident), I.version(str(version)), *_values(values))


def iid_update(ident: str, version: int, values: Sequence[Value]) -> etree._Element:
    return I.update(I.id(ident), I.chg(I.version(str(version)), *_values(values)))


def iid_id(verb: str, ident: str) -> etree._Element:
    """<iid:delete> or <iid:info>."""
    return I(verb, I.id(ident))


def iid_check(idents: Sequence[str]) -> etree._Element:
    return I.check(*(I.id(i) for i in idents))


def ent_create(prefix: str, name: str = "", org_code: str = "", contact: str = ""
               ) -> etree._Element:
    parts = [N.id(prefix)]
    if name:
        parts.append(N.name(name))
    if org_code:
        parts.append(N.orgCode(org_code))
    if contact:
        parts.append(N.contact(contact))
    return N.create(*parts)


#: A prefix's status at the secondary node, as an enterprise object's EPP status.
ENT_STATUS = {"active": "ok", "suspended": "clientHold", "revoked": "inactive"}


def ent_update_status(prefix: str, status: str) -> etree._Element:
    return N.update(N.id(prefix), N.chg(N.status(s=ENT_STATUS.get(status, "ok"))))


def ent_id(verb: str, prefix: str) -> etree._Element:
    return N(verb, N.id(prefix))


# -- responses (server) ------------------------------------------------------------------
def greeting(sv_id: str) -> bytes:
    return _doc(E.greeting(
        E.svID(sv_id), E.svDate(now()),
        E.svcMenu(E.version("1.0"), E.lang("en"), *(E.objURI(u) for u in OBJ_URIS)),
        E.dcp(E.access(E.all()), E.statement(E.purpose(E.admin(), E.prov()),
                                             E.recipient(E.ours(), E.public()),
                                             E.retention(E.stated())))))


@dataclass(slots=True)
class MsgQ:
    count: int
    id: str
    text: str = ""
    date: str = ""


def response(code: int, cltrid: str | None, svtrid: str, *, msg: str = "",
             resdata: etree._Element | None = None, msgq: MsgQ | None = None,
             reason: str = "") -> bytes:
    result = E.result(E.msg(msg or RESULTS.get(code, "")), code=str(code))
    if reason:
        # RFC 5730: <extValue> carries the offending <value> and why it is refused.
        result.append(E.extValue(E.value(E.text(reason)), E.reason(reason)))
    parts: list[etree._Element] = [result]
    if msgq is not None:
        q = E.msgQ(count=str(msgq.count), id=msgq.id)
        if msgq.date:
            q.append(E.qDate(msgq.date))
        if msgq.text:
            q.append(E.msg(msgq.text))
        parts.append(q)
    if resdata is not None:
        parts.append(E.resData(resdata))
    tr = E.trID(E.clTRID(cltrid), E.svTRID(svtrid)) if cltrid else E.trID(E.svTRID(svtrid))
    parts.append(tr)
    return _doc(E.response(*parts))


def cre_data(kind: str, ident: str, created: str) -> etree._Element:
    m = I if kind == "iid" else N
    return m.creData(m.id(ident), m.crDate(created))


def chk_data(kind: str, answers: Sequence[tuple[str, bool, str]]) -> etree._Element:
    m = I if kind == "iid" else N
    return m.chkData(*(m.cd(m.id(ident, avail="1" if avail else "0"),
                            *([m.reason(reason)] if reason else []))
                       for ident, avail, reason in answers))


def iid_inf_data(ident: str, status: str, version: int, values: Sequence[Value], clid: str,
                 created: str, updated: str) -> etree._Element:
    return I.infData(I.id(ident), I.status(s=status), I.version(str(version)),
                     *_values(values), I.clID(clid), I.crDate(created), I.upDate(updated))


def ent_inf_data(prefix: str, status: str, name: str, org_code: str, contact: str, clid: str,
                 created: str, updated: str) -> etree._Element:
    parts = [N.id(prefix), N.status(s=status)]
    if name:
        parts.append(N.name(name))
    if org_code:
        parts.append(N.orgCode(org_code))
    if contact:
        parts.append(N.contact(contact))
    return N.infData(*parts, N.clID(clid), N.crDate(created), N.upDate(updated))


# -- reading ------------------------------------------------------------------------------
@dataclass(slots=True)
class Response:
    code: int
    msg: str
    cltrid: str
    svtrid: str
    resdata: etree._Element | None = None
    msgq: MsgQ | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.code < 2000


def q(tag: str) -> str:
    """`epp:tag`, `iid:tag`, `ent:tag` as lxml's {namespace}tag."""
    prefix, _, local = tag.partition(":")
    return "{%s}%s" % ({"epp": EPP, "iid": IID, "ent": ENT}[prefix], local)


def parse_response(data: bytes) -> Response:
    root = parse(data)
    resp = root.find(q("epp:response"))
    if root.tag != q("epp:epp") or resp is None:
        raise SchemaViolation("not an EPP <response>")
    result = resp.find(q("epp:result"))
    if result is None:
        raise SchemaViolation("EPP <response> without <result>")
    out = Response(int(result.get("code", "0")), result.findtext(q("epp:msg")) or "",
                   resp.findtext(f"{q('epp:trID')}/{q('epp:clTRID')}") or "",
                   resp.findtext(f"{q('epp:trID')}/{q('epp:svTRID')}") or "")
    out.reasons = [r.text or "" for r in result.iter(q("epp:reason"))]
    rd = resp.find(q("epp:resData"))
    if rd is not None and len(rd):
        out.resdata = rd[0]
    mq = resp.find(q("epp:msgQ"))
    if mq is not None:
        out.msgq = MsgQ(int(mq.get("count", "0")), mq.get("id", ""),
                        mq.findtext(q("epp:msg")) or "", mq.findtext(q("epp:qDate")) or "")
    return out


def values_of(el: etree._Element) -> tuple[Value, ...]:
    """The <iid:value> children of a create, update's chg, or infData."""
    return tuple(Value(int(v.get("index")), v.get("type"), v.text or "",
                       v.get("format", "string"), int(v.get("ttl") or 86400), "")
                 for v in el.iter(q("iid:value")))
