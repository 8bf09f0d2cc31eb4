"""一品一码 traceability rules: who may append which events, in what order, how products
descend from one another (lineage), and the node's signed view of its event log (tree heads,
inclusion and consistency proofs)."""
from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson

from idnode.core import auth, clock, event_templates, identifiers, jsondata
from idnode.core.audit import Actor, AuditEntry
from idnode.core.errors import (FailedPrecondition, IdentifierNotFound, InvalidArgument,
                                NotFound, PrefixNotFound, TooLarge)
from idnode.crypto import b64, merkle, mlog
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import KeyRing
from idnode.core.ports import EventLog, PrefixLookup, TraceReads
from idnode.model.events import AttachmentRef, NewEvent
from idnode.model.rows import MAX_BIGINT

KINDS = event_templates.KINDS
MAX_EVENTS = 1000
MAX_ATTRS_BYTES = 16_384
MAX_INPUTS = 64
MAX_ATTACHMENT_BYTES = 512 * 1024
MAX_ATTACHMENTS = 8
#: The whole request's attachments: gRPC's default message limit is 4 MiB.
MAX_REQUEST_ATTACHMENT_BYTES = 3 * 1024 * 1024
MEDIA_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/webp",
                         "text/plain", "text/plain; charset=utf-8"})
#: How far lineage is followed: a bag of rice is rarely more than a few steps from its fields.
MAX_LINEAGE_DEPTH = 16
STH_TYP = "idnode-sth+jws"


@dataclass(frozen=True, slots=True)
class Attachment:
    media_type: str
    content: bytes


class EventInput(NamedTuple):
    """An event as a client sends it (immutable: a NamedTuple, which a request of 1,000
    events builds in a third of a frozen dataclass's time)."""

    identifier: str
    kind: str
    occurred_at: datetime
    place: str = ""
    attrs: dict[str, Any] | None = None
    #: The attributes as the client's JSON text (gRPC's attrs_json), instead of `attrs`:
    #: parsed, checked and canonicalised here in one go.
    attrs_json: str = ""
    corrects: int | None = None
    inputs: Sequence[str] = ()
    attachments: Sequence[Attachment] = ()


def leaf_document(node: str, leaf: int, e: NewEvent) -> dict[str, Any]:
    """What a log leaf commits to (its RFC 8785 form is hashed as an RFC 6962 leaf). Lineage
    and attachments appear only when present, so earlier leaves keep their hashes."""
    doc: dict[str, Any] = {
        "log": node, "leaf": leaf, "identifier": e.identifier, "kind": e.kind,
        "occurred_at": clock.iso(e.occurred_at), "place": e.place, "actor": e.actor,
        "attrs": orjson.loads(e.attrs), "corrects": e.corrects}
    if e.inputs:
        doc["inputs"] = list(e.inputs)
    if e.attachments:
        doc["attachments"] = [{"sha256": a.sha256.hex(), "media_type": a.media_type,
                               "size": a.size} for a in e.attachments]
    return doc


def leaf_hash(node: str, leaf: int, e: NewEvent) -> bytes:
    return merkle.leaf_hash(canonicalize(leaf_document(node, leaf, e)))


def leaf_parts(node: str, e: NewEvent, attrs: bytes | None = None) -> tuple[bytes, bytes]:
    """An event's leaf document in its RFC 8785 form, split around the leaf number:
    before + str(leaf) + after == canonicalize(leaf_document(node, leaf, e)). The number is
    the one thing an append learns under the log's lock, so everything else is serialised
    before it (the store hashes the joined bytes where it numbers the leaf).

    The top-level keys are fixed ASCII names, so their RFC 8785 order is written out here
    (actor < attachments < attrs < corrects < identifier < inputs < kind < leaf < log <
    occurred_at < place) and only the values go through canonicalize: the same bytes as
    canonicalizing the whole document, without building and sorting it for every event.
    `attrs`: the event's attributes already in RFC 8785 form, when the caller has them."""
    # Strings (from protobuf or JSON text: valid Unicode) are escaped by orjson exactly as
    # RFC 8785 prescribes (see idnode.crypto.jcs), so they skip canonicalize's checks.
    text = orjson.dumps
    head = [b'{"actor":', text(e.actor)]
    if e.attachments:
        head += [b',"attachments":', canonicalize(
            [{"sha256": a.sha256.hex(), "media_type": a.media_type, "size": a.size}
             for a in e.attachments])]
    head += [b',"attrs":', canonicalize(orjson.loads(e.attrs)) if attrs is None else attrs,
             b',"corrects":', b"null" if e.corrects is None else canonicalize(e.corrects),
             b',"identifier":', text(e.identifier)]
    if e.inputs:
        head += [b',"inputs":', text(list(e.inputs))]
    head += [b',"kind":', text(e.kind), b',"leaf":']
    return b"".join(head), b"".join(
        (b',"log":', text(node), b',"occurred_at":', text(clock.iso(e.occurred_at)),
         b',"place":', text(e.place), b"}"))


class TraceLog:
    def __init__(self, store: EventLog, prefixes: PrefixLookup, keyring: KeyRing | None,
                 node_prefix: str) -> None:
        self.store = store
        self.prefixes = prefixes
        self.keyring = keyring
        self.node = node_prefix

    async def append(self, actor: Actor, events: Sequence[EventInput]) -> tuple[list[int], int]:
        """Appends events all-or-nothing: every rule is checked, against the log as it stands
        inside the appending transaction, before anything is written (and checked again
        under the log's lock when another append touched the same identifiers meanwhile)."""
        auth.require_writer(actor.principal, operator_admin=True)
        if not events:
            raise InvalidArgument("no events", field="events")
        if len(events) > MAX_EVENTS:
            raise TooLarge(f"{len(events)} events, more than {MAX_EVENTS}", field="events")
        now = clock.now()
        rows: list[NewEvent] = []
        blobs: dict[bytes, Attachment] = {}
        checked: set[str] = set()
        canonical_attrs: list[bytes] = []
        for i, ev in enumerate(events):
            where = f"events[{i}]"
            ident = identifiers.parse(ev.identifier, field=f"{where}.identifier")
            if ev.kind not in KINDS:
                raise InvalidArgument(f"kind {ev.kind!r} is not one of {', '.join(KINDS)}",
                                      field=f"{where}.kind")
            if ev.occurred_at > now + timedelta(minutes=5):
                raise InvalidArgument("occurred_at is in the future", field=f"{where}.occurred_at")
            if len(ev.place) > 200 or not ev.place.isprintable():
                raise InvalidArgument("place must be at most 200 printable characters",
                                      field=f"{where}.place")
            # Stored in the form the leaf commits to: serialised once, not stored as one
            # JSON text and parsed again to be canonicalised for the leaf.
            if ev.attrs_json:
                values, attrs = jsondata.parse_canonical(
                    ev.attrs_json, field=f"{where}.attrs_json", max_bytes=MAX_ATTRS_BYTES)
            else:
                values = ev.attrs or {}
                attrs = jsondata.canonical(values, field=f"{where}.attrs")
            if len(attrs) > MAX_ATTRS_BYTES:
                raise TooLarge(f"attrs are {len(attrs)} bytes, more than {MAX_ATTRS_BYTES}",
                               field=f"{where}.attrs")
            event_templates.check(ev.kind, values, field=f"{where}.attrs")
            if ev.corrects is not None and not 0 <= ev.corrects <= MAX_BIGINT:
                raise InvalidArgument(f"corrects {ev.corrects} is past any leaf of the log",
                                      field=f"{where}.corrects")
            inputs = self._inputs(ev, str(ident), where)
            refs = self._attachments(ev, where, blobs)
            if ident.prefix not in checked:
                await self._may_append(actor, ident.prefix, ev.kind, where)
                checked.add(ident.prefix)
            rows.append(NewEvent(str(ident), ev.kind, ev.occurred_at, ev.place,
                                 actor.principal.key_id, attrs.decode(), ev.corrects,
                                 inputs, refs))
            canonical_attrs.append(attrs)
        if sum(len(a.content) for a in blobs.values()) > MAX_REQUEST_ATTACHMENT_BYTES:
            raise TooLarge(f"attachments of one request may total at most "
                           f"{MAX_REQUEST_ATTACHMENT_BYTES} bytes", field="events")

        async def check(tx: TraceReads, size: int) -> None:
            await self._check_order(tx, rows)
            await self._check_lineage(tx, rows)

        return await self.store.append(
            rows, check, [leaf_parts(self.node, e, a) for e, a in zip(rows, canonical_attrs)],
            AuditEntry.of(actor, "append_events", rows[0].identifier,
                          prefix=rows[0].identifier.split("/", 1)[0],
                          detail={"count": len(rows)}),
            [(ref, blobs[ref.sha256].content) for ref in
             {r.sha256: r for e in rows for r in e.attachments}.values()])

    async def _may_append(self, actor: Actor, prefix: str, kind: str, where: str) -> None:
        row = await self.prefixes.get(prefix)
        if row is None:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node",
                                 field=f"{where}.identifier")
        principal = actor.principal
        if kind == "recall" and principal.is_operator and "admin" in principal.scopes:
            return  # the operator may recall any product the node holds; nothing else
        auth.require_write(principal, prefix, _Owner(row.enterprise_id))

    @staticmethod
    def _inputs(ev: EventInput, ident: str, where: str) -> tuple[str, ...]:
        if len(ev.inputs) > MAX_INPUTS:
            raise TooLarge(f"{len(ev.inputs)} inputs, more than {MAX_INPUTS}",
                           field=f"{where}.inputs")
        out: list[str] = []
        for j, raw in enumerate(ev.inputs):
            parent = str(identifiers.parse(raw, field=f"{where}.inputs[{j}]"))
            if parent == ident:
                raise InvalidArgument(f"{ident} cannot be made from itself",
                                      field=f"{where}.inputs[{j}]", reason="LINEAGE_CYCLE")
            if parent not in out:
                out.append(parent)
        return tuple(out)

    @staticmethod
    def _attachments(ev: EventInput, where: str, blobs: dict[bytes, Attachment]
                     ) -> tuple[AttachmentRef, ...]:
        if len(ev.attachments) > MAX_ATTACHMENTS:
            raise TooLarge(f"{len(ev.attachments)} attachments, more than {MAX_ATTACHMENTS}",
                           field=f"{where}.attachments")
        refs = []
        for j, a in enumerate(ev.attachments):
            at = f"{where}.attachments[{j}]"
            if a.media_type not in MEDIA_TYPES:
                raise InvalidArgument(f"media type {a.media_type!r} is not one of "
                                      f"{', '.join(sorted(MEDIA_TYPES))}", field=f"{at}.media_type")
            if not a.content:
                raise InvalidArgument("attachment is empty", field=f"{at}.content")
            if len(a.content) > MAX_ATTACHMENT_BYTES:
                raise TooLarge(f"attachment is {len(a.content)} bytes, more than "
                               f"{MAX_ATTACHMENT_BYTES}", field=f"{at}.content")
            digest = hashlib.sha256(a.content).digest()
            blobs[digest] = a
            refs.append(AttachmentRef(digest, a.media_type, len(a.content)))
        return tuple(refs)

    @staticmethod
    async def _check_order(tx: TraceReads, rows: Sequence[NewEvent]) -> None:
        standing = await tx.standing(list(dict.fromkeys(e.identifier for e in rows)))
        for i, e in enumerate(rows):
            if e.identifier not in standing:
                raise IdentifierNotFound(f"identifier {e.identifier} is not registered",
                                         field=f"events[{i}].identifier",
                                         identifier=e.identifier)
        latest = {ident: at for ident, at in standing.items() if at is not None}
        owners = await tx.owners_of([e.corrects for e in rows if e.corrects is not None])
        for i, e in enumerate(rows):
            if e.corrects is not None:
                if owners.get(e.corrects) != e.identifier:
                    raise InvalidArgument(
                        f"event {e.corrects} is not an event of {e.identifier}",
                        field=f"events[{i}].corrects", reason="FORGED_CORRECTION")
                continue
            last = latest.get(e.identifier)
            if last is not None and e.occurred_at < last:
                raise FailedPrecondition(
                    f"event at {clock.iso(e.occurred_at)} is older than the last event of "
                    f"{e.identifier} ({clock.iso(last)}); record a correction instead",
                    field=f"events[{i}].occurred_at", reason="OUT_OF_ORDER")
            latest[e.identifier] = e.occurred_at

    @staticmethod
    async def _check_lineage(tx: TraceReads, rows: Sequence[NewEvent]) -> None:
        """Inputs must be registered, and a product may not descend from itself: adding
        child ← parent closes a cycle when the child is already among the parent's ancestors
        (counting links made earlier in the same request)."""
        pending: dict[str, set[str]] = {}
        known = await tx.registered(list(dict.fromkeys(p for e in rows for p in e.inputs)))
        for i, e in enumerate(rows):
            for j, parent in enumerate(e.inputs):
                if parent not in known:
                    raise IdentifierNotFound(f"input {parent} is not registered",
                                             field=f"events[{i}].inputs[{j}]", identifier=parent)
                stored = await tx.ancestors([parent], MAX_LINEAGE_DEPTH)
                seen, todo = {parent}, [parent]
                while todo:
                    node = todo.pop()
                    for up in stored.get(node, set()) | pending.get(node, set()):
                        if up not in seen:
                            seen.add(up)
                            todo.append(up)
                            if up not in stored:
                                stored.update(await tx.ancestors([up], MAX_LINEAGE_DEPTH))
                if e.identifier in seen:
                    raise FailedPrecondition(
                        f"{parent} already descends from {e.identifier}: linking it as an input "
                        "would make a lineage cycle", field=f"events[{i}].inputs[{j}]",
                        reason="LINEAGE_CYCLE")
                pending.setdefault(e.identifier, set()).add(parent)

    async def events(self, identifier: str) -> list[dict[str, Any]]:
        ident = identifiers.parse(identifier)
        return [leaf_document(self.node, r.leaf, r.as_new())
                for r in await self.store.events(str(ident))]

    async def trace(self, identifier: str, *, head_when_empty: bool = True) -> dict[str, Any]:
        """An identifier's events and those of every product it descends from
        (lineage), each with its inclusion proof in the signed tree head that comes with them,
        and the links with the events that declared them: a document anyone can check offline
        (`idnode verify`, or provenance.check_trace). With `head_when_empty` False, a product
        with no events and no lineage gets no tree head (nothing to prove; the scan page of
        an untraced product saves the head's round trips)."""
        ident = str(identifiers.parse(identifier))
        links = await self.store.lineage(ident, MAX_LINEAGE_DEPTH)
        family = [ident] + list(dict.fromkeys(parent for _, parent, _ in links))
        rows = await self.store.events_of(family)
        if not rows and not links and not head_when_empty:
            return {"identifier": ident, "tree_head": None, "lineage": [], "events": []}
        head = await self.head()
        size = head["size"]
        # Events appended after the head was signed wait for the next view (and head).
        rows = [r for r in rows if r.leaf < size]
        wanted: set[tuple[int, int]] = set()
        for r in rows:
            wanted |= mlog.inclusion_proof_keys(r.leaf, size)
        fetch = await self._fetcher(wanted)
        return {"identifier": ident, "tree_head": head,
                "lineage": [{"child": c, "parent": p, "leaf": leaf} for c, p, leaf in links
                            if leaf < size],
                "events": [{**leaf_document(self.node, r.leaf, r.as_new()),
                            "inclusion": [b64.enc(h) for h in
                                          mlog.inclusion_proof(r.leaf, size, fetch)]}
                           for r in rows]}

    async def attachment(self, sha256_hex: str) -> tuple[str, bytes]:
        try:
            digest = bytes.fromhex(sha256_hex)
        except ValueError:
            digest = b""
        if len(digest) != 32:
            raise InvalidArgument("an attachment is named by its SHA-256 in hex", field="sha256")
        found = await self.store.attachment(digest)
        if found is None:
            raise NotFound(f"no attachment {sha256_hex}", field="sha256")
        return found

    async def size(self) -> int:
        """How many events the log holds."""
        return await self.store.size()

    async def producer(self, prefix: str) -> str | None:
        return await self.store.producer(prefix)

    async def head(self) -> dict[str, Any]:
        """The signed tree head for the log's current size (signed once per size)."""
        size, stored = await self.store.current_head()
        if stored is None:
            key = self.keyring.active() if self.keyring is not None else None
            if key is None:
                raise FailedPrecondition("signing is off; no tree heads", reason="NO_SIGNING")
            root = (mlog.root(size, await self._fetcher(set(mlog.frontier(size))))
                    if size else merkle.root([]))
            payload = canonicalize({"log": self.node, "size": size, "root": b64.enc(root),
                                    "iat": int(time.time())})
            jws = sign_compact(payload, key, {"typ": STH_TYP})
            stored = (root, await self.store.save_head(size, root, jws, self._link(size)))
        return {"log": self.node, "size": size, "root": b64.enc(stored[0]), "jws": stored[1]}

    def _link(self, size: int) -> Callable[[int], Awaitable[dict[str, Any]]]:
        async def link(other: int) -> dict[str, Any]:
            # The top-level node checks each reported head against one it holds: the smaller
            # tree must be a prefix of the larger (RFC 9162 §2.1.4).
            return {"with": other, "consistency": await self.consistency(*sorted((other, size)))}
        return link

    async def inclusion(self, leaf: int, size: int) -> list[str]:
        await self._check_size(size)
        if not 0 <= leaf < size:
            raise InvalidArgument(f"leaf {leaf} is outside a log of {size}", field="leaf")
        fetch = await self._fetcher(mlog.inclusion_proof_keys(leaf, size))
        return [b64.enc(h) for h in mlog.inclusion_proof(leaf, size, fetch)]

    async def consistency(self, size1: int, size2: int) -> list[str]:
        """The RFC 9162 §2.1.4 proof that the tree of size2 extends that of size1. The RFC
        defines it for 0 < size1 < size2 (and an empty proof for size1 == size2): there is no
        proof from the empty tree, which every tree extends, so from=0 is refused, not
        answered with an empty list a verifier would reject (§2.1.4.2)."""
        await self._check_size(size2)
        if size1 < 1:
            raise InvalidArgument("from must be at least 1: RFC 9162 §2.1.4 defines consistency "
                                  "proofs for 0 < from <= to; every tree extends the empty one, "
                                  "so there is nothing to prove from 0", field="from")
        if size1 > size2:
            raise InvalidArgument(f"from ({size1}) must not be larger than to ({size2})",
                                  field="from")
        fetch = await self._fetcher(mlog.consistency_proof_keys(size1, size2))
        return [b64.enc(h) for h in mlog.consistency_proof(size1, size2, fetch)]

    async def _check_size(self, size: int) -> None:
        if size < 1 or size > await self.store.size():
            raise InvalidArgument(f"the log has no size {size}", field="size")

    async def _fetcher(self, keys: set[tuple[int, int]]) -> mlog.Fetch:
        nodes = await self.store.nodes(keys)
        return lambda wanted: {k: nodes[k] for k in wanted}


class _Owner:
    def __init__(self, enterprise_id: int | None) -> None:
        self.enterprise_id = enterprise_id

    def owner(self, prefix: str) -> int | None:
        return self.enterprise_id
