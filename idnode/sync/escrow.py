"""Data escrow (draft-industrial-internet-identifier-data-escrow, in RFC 8909's framework):
deposits of the node's core data, full or incremental, as XML validated against the schemas
(idnode/schemas/: rde, rdeHeader, rdeIid, rdeEnt), encrypted to the escrow agent's OpenPGP key
and signed with the node's (Sequoia-PGP, through pysequoia), as ICANN's escrow specification
that the CAICT drafts follow does; `verify` checks one as the agent would; `restore` rebuilds
a node's data from a full deposit and the incremental ones after it.

An incremental deposit is RFC 8909's DIFF: what changed after the previous deposit (full or
incremental), objects as they are at the watermark and <rde:delete>s for what is gone; the
chain is kept by prevId, each deposit naming the one before it."""
from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import orjson
import pysequoia as pgp
from lxml import etree

from idnode.config import Settings
from idnode.core.records import Value
from idnode.schemas import (RDE, RDE_ENT, RDE_HEADER, RDE_IID, SchemaViolation, check, parse,
                            rde_schema)
from idnode.store.escrow import (DepositRow, EnterpriseObj, EscrowStore, IdentifierObj,
                                 RestoreStore)

OBJ_URIS = (RDE_HEADER, RDE_ENT, RDE_IID)
_NS = {"rde": RDE, "rdeHeader": RDE_HEADER, "rdeIid": RDE_IID, "rdeEnt": RDE_ENT}
PAGE = 5000


class EscrowError(Exception):
    """A deposit that cannot be made, or that does not check out (says which step failed)."""


def _t(tag: str) -> str:
    p, _, local = tag.partition(":")
    return "{%s}%s" % (_NS[p], local)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- keys -----------------------------------------------------------------------------------
def paths(settings: Settings) -> tuple[Path, Path]:
    """Where deposits go (escrow_dir), and the node's escrow signing key."""
    base = Path(settings.escrow_dir) if settings.escrow_dir else settings.data_dir / "escrow"
    key = (Path(settings.escrow_signing_key) if settings.escrow_signing_key
           else base / "signing-key.asc")
    return base, key


def signing_key(path: Path) -> pgp.Tsk:
    """The node's escrow signing key (OpenPGP, kept 0600), made on first use; its public
    certificate is written beside it (`.pub.asc`) for the escrow agent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tsk = pgp.Tsk.generate("idnode escrow <escrow@idnode.invalid>")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(tsk))
        path.with_suffix(".pub.asc").write_text(str(tsk.extract_certificate()))
    return pgp.Tsk.from_bytes(path.read_bytes())


def cert(path: str | Path) -> pgp.Cert:
    return pgp.Cert.from_bytes(Path(path).read_bytes())


# -- writing --------------------------------------------------------------------------------
@dataclass
class Deposit:
    id: str
    kind: str
    prev_id: str | None
    watermark: datetime
    outbox_seq: int
    xml: bytes = b""
    objects: int = 0
    deletes: int = 0
    files: list[Path] = field(default_factory=list)


def _enterprise(e: EnterpriseObj) -> etree._Element:
    el = etree.Element(_t("rdeEnt:enterprise"))
    for tag, text in (("id", e.prefix), ("status", e.status),
                      ("refuseResolution", "true" if e.refuse_resolution else "false"),
                      ("name", e.name), ("orgCode", e.uscc), ("contact", e.contact or None),
                      ("crDate", _iso(e.created_at))):
        if text is not None:
            etree.SubElement(el, _t(f"rdeEnt:{tag}")).text = text
    return el


def _identifier(i: IdentifierObj) -> etree._Element:
    el = etree.Element(_t("rdeIid:identifier"))
    etree.SubElement(el, _t("rdeIid:id")).text = f"{i.prefix}/{i.suffix}"
    etree.SubElement(el, _t("rdeIid:version")).text = str(i.version)
    etree.SubElement(el, _t("rdeIid:crDate")).text = _iso(i.created_at)
    etree.SubElement(el, _t("rdeIid:upDate")).text = _iso(i.updated_at)
    for v in (Value.from_json(x) for x in orjson.loads(i.vals)):
        attrs = {"index": str(v.index), "type": v.type, "format": v.format, "ttl": str(v.ttl),
                 "timestamp": v.timestamp}
        if v.private:
            attrs["private"] = "true"
        etree.SubElement(el, _t("rdeIid:value"), attrs).text = v.data
    if i.jws is not None and i.sig_index is not None:
        sig = etree.SubElement(el, _t("rdeIid:signature"))
        etree.SubElement(sig, _t("rdeIid:jws")).text = i.jws
        if i.jws_pq:
            etree.SubElement(sig, _t("rdeIid:jwsPq")).text = i.jws_pq
        if i.tree_size is not None:
            etree.SubElement(sig, _t("rdeIid:treeSize")).text = str(i.tree_size)
        etree.SubElement(sig, _t("rdeIid:index")).text = str(i.sig_index)
        etree.SubElement(sig, _t("rdeIid:proof")).text = base64.b64encode(
            i.sig_proof or b"").decode()
    return el


async def make(store: EscrowStore, node_prefix: str, *, full: bool) -> Deposit:
    """The next deposit's XML, from one consistent snapshot; validated before it is returned.
    An incremental deposit needs a deposit before it, and the outbox events since then (kept
    for outbox_retention after the top acknowledged them): else make a full one."""
    last = await store.last()
    if not full and last is None:
        raise EscrowError("no deposit to be incremental to: make a full deposit first")
    n = await store.next_number()
    prev_id = None if full or last is None else last.id
    async with store.snapshot() as snap:
        dep = Deposit(f"{snap.watermark:%Y%m%d}{n % 100000:05d}", "FULL" if full else "DIFF",
                      prev_id, snap.watermark, snap.outbox_seq)
        root = etree.Element(_t("rde:deposit"), nsmap=_NS, type=dep.kind, id=dep.id)
        if dep.prev_id:
            root.set("prevId", dep.prev_id)
        etree.SubElement(root, _t("rde:watermark")).text = _iso(snap.watermark)
        menu = etree.SubElement(root, _t("rde:rdeMenu"))
        etree.SubElement(menu, _t("rde:version")).text = "1.0"
        for uri in OBJ_URIS:
            etree.SubElement(menu, _t("rde:objURI")).text = uri
        ents: list[EnterpriseObj]
        idents: list[IdentifierObj] = []
        gone_ids: list[str] = []
        gone_prefixes: list[str] = []
        if full:
            ents = await snap.enterprises()
            after = ("", "")
            while page := await snap.identifiers(after, PAGE):
                idents += page
                after = (page[-1].prefix, page[-1].suffix)
        else:
            assert last is not None
            names, prefixes, oldest = await snap.changes(last.outbox_seq)
            if oldest is not None and oldest > last.outbox_seq + 1:
                raise EscrowError(f"outbox events after seq {last.outbox_seq} were pruned: "
                                  "make a full deposit")
            ents = await snap.enterprises(prefixes)
            split = [tuple(x.split("/", 1)) for x in names if "/" in x]
            idents = await snap.identifiers_named(split)  # type: ignore[arg-type]
            present = {f"{i.prefix}/{i.suffix}" for i in idents}
            gone_ids = [x for x in names if x not in present]
            gone_prefixes = sorted(set(prefixes) - {e.prefix for e in ents})
        if gone_ids or gone_prefixes:
            deletes = etree.SubElement(root, _t("rde:deletes"))
            if gone_prefixes:
                d = etree.SubElement(deletes, _t("rdeEnt:delete"))
                for p in gone_prefixes:
                    etree.SubElement(d, _t("rdeEnt:id")).text = p
            if gone_ids:
                d = etree.SubElement(deletes, _t("rdeIid:delete"))
                for x in gone_ids:
                    etree.SubElement(d, _t("rdeIid:id")).text = x
        contents = etree.SubElement(root, _t("rde:contents"))
        header = etree.SubElement(contents, _t("rdeHeader:header"))
        etree.SubElement(header, _t("rdeHeader:tld")).text = node_prefix
        etree.SubElement(header, _t("rdeHeader:count"), uri=RDE_ENT).text = str(len(ents))
        etree.SubElement(header, _t("rdeHeader:count"), uri=RDE_IID).text = str(len(idents))
        contents.extend(_enterprise(e) for e in ents)
        contents.extend(_identifier(i) for i in idents)
    check(root, rde_schema())
    dep.xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    dep.objects, dep.deletes = len(ents) + len(idents), len(gone_ids) + len(gone_prefixes)
    return dep


def file_stem(node_prefix: str, dep: Deposit) -> str:
    """ICANN's deposit naming ({name}_{date}_{type}_S{n}_R{resend}), with the node prefix."""
    return (f"{node_prefix}_{dep.watermark:%Y-%m-%d}_{'full' if dep.kind == 'FULL' else 'diff'}"
            f"_S{dep.id[-5:].lstrip('0') or '0'}_R0")


async def deposit(store: EscrowStore, node_prefix: str, directory: Path, signer: pgp.Tsk,
                  agent: pgp.Cert, *, full: bool) -> Deposit:
    """Makes a deposit and writes `<stem>.ryde` (the XML encrypted to the agent) and
    `<stem>.sig` (the node's detached signature over the .ryde), then records it."""
    dep = await make(store, node_prefix, full=full)
    directory.mkdir(parents=True, exist_ok=True)
    stem = file_stem(node_prefix, dep)  # holds dots (the prefix): no with_suffix here
    ryde = pgp.encrypt(dep.xml, recipients=[agent], armor=False)
    sig = pgp.sign(signer.signer(), ryde, mode=pgp.SignatureMode.DETACHED, armor=False)
    dep.files = [directory / f"{stem}.ryde", directory / f"{stem}.sig"]
    for path, data in zip(dep.files, (ryde, sig)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    await store.record(DepositRow(dep.id, dep.kind, dep.prev_id, dep.watermark, dep.outbox_seq),
                       dep.objects, dep.deletes, str(dep.files[0]),
                       hashlib.sha256(dep.xml).hexdigest())
    return dep


# -- reading --------------------------------------------------------------------------------
@dataclass
class Contents:
    id: str
    kind: str
    prev_id: str | None
    watermark: str
    node_prefix: str
    enterprises: list[EnterpriseObj]
    identifiers: list[IdentifierObj]
    deleted_prefixes: list[str]
    deleted_ids: list[tuple[str, str]]


def open_deposit(ryde: Path, *, agent_key: pgp.Tsk | None, signer: pgp.Cert | None,
                 sig: Path | None = None) -> bytes:
    """The deposit XML of a .ryde file, once (1) its signature checks out against the node's
    certificate and (2) it decrypts with the agent's key. A plain .xml file is read as is."""
    data = ryde.read_bytes()
    if ryde.suffix == ".xml":
        return data
    # (1): the node's detached signature over the encrypted file
    if signer is not None:
        sig = sig or ryde.with_suffix(".sig")
        try:
            pgp.verify(data, store=lambda _ids: [signer],
                       signature=pgp.Sig.from_bytes(sig.read_bytes()))
        except (RuntimeError, ValueError, OSError) as exc:
            raise EscrowError(f"signature: {ryde.name} is not signed by the node's key "
                              f"({str(exc).splitlines()[0]})") from None
    # (2): decryption with the escrow agent's key
    if agent_key is None:
        raise EscrowError("decryption: the escrow agent's key is needed to read a .ryde")
    try:
        plain = pgp.decrypt(data, decryptor=agent_key.decryptor()).bytes
    except (RuntimeError, ValueError) as exc:
        raise EscrowError(f"decryption: {str(exc).splitlines()[0]}") from None
    if plain is None:
        raise EscrowError("decryption: the deposit holds no literal data")
    return bytes(plain)


def read(xml: bytes) -> Contents:
    """(3) the schemas and (4) the header's counts against the objects; the contents."""
    try:
        root = parse(xml)
        check(root, rde_schema())
    except SchemaViolation as exc:
        raise EscrowError(f"schema: {exc}") from None
    header = root.find(f"{_t('rde:contents')}/{_t('rdeHeader:header')}")
    if header is None:
        raise EscrowError("header: the deposit has no <rdeHeader:header>")
    counts = {c.get("uri"): int(c.text or "0") for c in header.iter(_t("rdeHeader:count"))}
    ents = [_read_enterprise(e) for e in root.iter(_t("rdeEnt:enterprise"))]
    idents = [_read_identifier(i) for i in root.iter(_t("rdeIid:identifier"))]
    for uri, found in ((RDE_ENT, len(ents)), (RDE_IID, len(idents))):
        if counts.get(uri, 0) != found:
            raise EscrowError(f"header: counts {counts.get(uri, 0)} objects of {uri}, the "
                              f"deposit holds {found}")
    deletes = root.find(_t("rde:deletes"))
    gone_p = [x.text or "" for x in deletes.iter(_t("rdeEnt:id"))] if deletes is not None else []
    gone_i = [tuple((x.text or "").split("/", 1)) for x in deletes.iter(_t("rdeIid:id"))] \
        if deletes is not None else []
    return Contents(root.get("id", ""), root.get("type", ""), root.get("prevId"),
                    root.findtext(_t("rde:watermark")) or "", header.findtext(
                        _t("rdeHeader:tld")) or "", ents, idents, gone_p,
                    gone_i)


def _dt(text: str | None) -> datetime:
    return datetime.fromisoformat((text or "").replace("Z", "+00:00"))


def _read_enterprise(e: etree._Element) -> EnterpriseObj:
    return EnterpriseObj(e.findtext(_t("rdeEnt:id")) or "", e.findtext(_t("rdeEnt:status")) or "",
                         e.findtext(_t("rdeEnt:refuseResolution")) == "true",
                         e.findtext(_t("rdeEnt:name")), e.findtext(_t("rdeEnt:orgCode")),
                         e.findtext(_t("rdeEnt:contact")), _dt(e.findtext(_t("rdeEnt:crDate"))))


def _read_identifier(i: etree._Element) -> IdentifierObj:
    prefix, _, suffix = (i.findtext(_t("rdeIid:id")) or "").partition("/")
    values = [Value(int(v.get("index")), v.get("type"), v.text or "", v.get("format"),
                    int(v.get("ttl")), v.get("timestamp"), v.get("private") == "true").to_json()
              for v in i.iter(_t("rdeIid:value"))]
    sig = i.find(_t("rdeIid:signature"))
    jws = jws_pq = None
    size = index = None
    proof = None
    if sig is not None:
        jws, jws_pq = sig.findtext(_t("rdeIid:jws")), sig.findtext(_t("rdeIid:jwsPq"))
        size = int(sig.findtext(_t("rdeIid:treeSize")) or 0)
        index = int(sig.findtext(_t("rdeIid:index")) or 0)
        proof = base64.b64decode(sig.findtext(_t("rdeIid:proof")) or "")
    return IdentifierObj(prefix, suffix, orjson.dumps(values).decode(),
                         int(i.findtext(_t("rdeIid:version")) or 1),
                         _dt(i.findtext(_t("rdeIid:crDate"))), _dt(i.findtext(_t("rdeIid:upDate"))),
                         jws, jws_pq, size, index, proof)


def chain(deposits: Sequence[Contents]) -> None:
    """(5) a FULL deposit first, then DIFFs each naming the one before it."""
    if not deposits or deposits[0].kind != "FULL":
        raise EscrowError("chain: a restore starts from a FULL deposit")
    for before, after in zip(deposits, deposits[1:]):
        if after.kind != "DIFF" or after.prev_id != before.id:
            raise EscrowError(f"chain: deposit {after.id} ({after.kind}) does not follow "
                              f"{before.id} (its prevId is {after.prev_id})")
        if after.node_prefix != deposits[0].node_prefix:
            raise EscrowError(f"chain: deposit {after.id} is of node {after.node_prefix}")


async def restore(store: RestoreStore, deposits: Sequence[Contents]) -> int:
    """Writes a checked chain of deposits into an empty node database; returns the number of
    identifiers it then holds."""
    chain(deposits)
    if not await store.empty():
        raise EscrowError("restore: the database already holds prefixes or identifiers")
    for d in deposits:
        await store.apply(d.enterprises, d.identifiers, d.deleted_prefixes, d.deleted_ids)
    return int(await store.db.fetchval("SELECT count(*) FROM handles"))


async def scheduled(store: EscrowStore, settings: Settings, *, full: bool) -> Deposit:
    """A deposit of the serving node's schedule (escrow_full_interval /
    escrow_incremental_interval): an incremental one before any deposit is a full one."""
    directory, key = paths(settings)
    if not full and await store.last() is None:
        full = True
    dep = await deposit(store, settings.node_prefix, directory, signing_key(key),
                        cert(settings.escrow_agent_cert), full=full)
    await report(store, settings, dep)
    return dep


async def report(store: EscrowStore, settings: Settings, dep: Deposit) -> str:
    """Sends a deposit's report upward (escrow_report_url) and records the answer; a report
    that cannot be sent leaves the deposit made (EscrowError says why)."""
    if not settings.escrow_report_url:
        return "not reported (escrow_report_url is not set)"
    body = report_xml(settings.node_prefix, dep)
    stem = dep.files[0].name.removesuffix(".ryde") if dep.files else dep.id
    if dep.files:
        (dep.files[0].parent / f"{stem}.rep.xml").write_bytes(body)
    answer = await send_report(
        settings.escrow_report_url, settings.node_prefix,
        settings.upstream_epp_client_id or settings.node_prefix, settings.upstream_epp_password,
        body, tls_ca=settings.upstream_tls_ca, tls_cert=settings.upstream_tls_cert,
        tls_key=settings.upstream_tls_key)
    await store.verified(dep.id, f"top: {answer}")
    return answer


# -- the escrow report upward (draft-wu-identifier-data-escrow-interface) --------------------
def report_xml(node_prefix: str, dep: Deposit) -> bytes:
    """The report of a deposit (idnode/schemas/rdeReport-1.0.xsd), validated."""
    from idnode.schemas import RDE_REPORT, report_schema

    ns = {"rdeReport": RDE_REPORT, "rdeHeader": RDE_HEADER}
    root = etree.Element("{%s}report" % RDE_REPORT, nsmap=ns)

    def add(parent: etree._Element, tag: str, text: str) -> etree._Element:
        el = etree.SubElement(parent, "{%s}%s" % (RDE_REPORT, tag))
        el.text = text
        return el
    add(root, "id", dep.id)
    add(root, "version", "1")
    add(root, "rydeSpecEscrow", "RFC8909")
    add(root, "rydeSpecMapping", "draft-wu-identifier-sln-objects-mapping")
    add(root, "resend", "0")
    add(root, "crDate", _iso(datetime.now(dep.watermark.tzinfo)))
    add(root, "kind", dep.kind)
    add(root, "watermark", _iso(dep.watermark))
    if dep.prev_id:
        add(root, "prevId", dep.prev_id)
    add(root, "sha256", hashlib.sha256(dep.xml).hexdigest())
    header = parse(dep.xml).find(f"{_t('rde:contents')}/{_t('rdeHeader:header')}")
    assert header is not None
    root.append(header)
    check(root, report_schema())
    doc: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return doc


async def send_report(url: str, node_prefix: str, clid: str, password: str, body: bytes, *,
                      tls_ca: str = "", tls_cert: str = "", tls_key: str = "",
                      timeout: float = 10.0) -> str:
    """PUTs a report to `<url>/<node prefix>` with HTTP basic authentication (the EPP client
    id and password); returns the top-level node's answer, "accepted" or why not."""
    import ssl

    import httpx

    verify: ssl.SSLContext | bool = True
    if tls_ca:
        verify = ssl.create_default_context(cafile=tls_ca)
        if tls_cert:
            verify.load_cert_chain(tls_cert, tls_key or None)
    async with httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False) as client:
        try:
            resp = await client.put(f"{url.rstrip('/')}/{node_prefix}", content=body,
                                    auth=(clid, password),
                                    headers={"Content-Type": "application/xml"})
        except httpx.HTTPError as exc:
            raise EscrowError(f"report: the top-level node is unreachable: "
                              f"{type(exc).__name__}") from None
    if resp.status_code in (200, 201):
        return "accepted"
    raise EscrowError(f"report: refused with HTTP {resp.status_code}: {resp.text[:300]}")
