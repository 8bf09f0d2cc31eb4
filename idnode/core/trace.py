"""一品一码 traceability rules: who may append which events, in what order, and the node's
signed view of its event log (tree heads, inclusion and consistency proofs)."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from idnode.core import auth, clock, identifiers
from idnode.core.audit import Actor, AuditEntry
from idnode.core.errors import (FailedPrecondition, IdentifierNotFound, InvalidArgument,
                                PrefixNotFound, TooLarge)
from idnode.crypto import b64, merkle, mlog
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import KeyRing
from idnode.store.prefixes import PrefixStore
from idnode.store.trace import NewEvent, TraceStore

KINDS = ("planting", "fertilising", "pesticide", "irrigation", "harvest", "inspection",
         "processing", "packing", "warehousing", "transport", "retail", "recall", "note")
MAX_EVENTS = 1000
MAX_ATTRS_BYTES = 16_384
STH_TYP = "idnode-sth+jws"


@dataclass(frozen=True, slots=True)
class EventInput:
    identifier: str
    kind: str
    occurred_at: datetime
    place: str = ""
    attrs: dict[str, Any] | None = None
    corrects: int | None = None


def leaf_document(node: str, leaf: int, e: NewEvent) -> dict[str, Any]:
    """What a log leaf commits to (its RFC 8785 form is hashed as an RFC 6962 leaf)."""
    return {"log": node, "leaf": leaf, "identifier": e.identifier, "kind": e.kind,
            "occurred_at": clock.iso(e.occurred_at), "place": e.place, "actor": e.actor,
            "attrs": orjson.loads(e.attrs), "corrects": e.corrects}


class TraceLog:
    def __init__(self, store: TraceStore, prefixes: PrefixStore, keyring: KeyRing | None,
                 node_prefix: str) -> None:
        self.store = store
        self.prefixes = prefixes
        self.keyring = keyring
        self.node = node_prefix

    async def append(self, actor: Actor, events: Sequence[EventInput]) -> tuple[list[int], int]:
        if not events:
            raise InvalidArgument("no events", field="events")
        if len(events) > MAX_EVENTS:
            raise TooLarge(f"{len(events)} events, more than {MAX_EVENTS}", field="events")
        now = clock.now()
        rows: list[NewEvent] = []
        prefixes: dict[str, object] = {}
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
            attrs = orjson.dumps(ev.attrs or {})
            if len(attrs) > MAX_ATTRS_BYTES:
                raise TooLarge(f"attrs are {len(attrs)} bytes, more than {MAX_ATTRS_BYTES}",
                               field=f"{where}.attrs")
            if ident.prefix not in prefixes:
                row = await self.prefixes.get(ident.prefix)
                if row is None:
                    raise PrefixNotFound(f"prefix {ident.prefix} is not held by this node",
                                         field=f"{where}.identifier")
                auth.require_write(actor.principal, ident.prefix, _Owner(row.enterprise_id))
                prefixes[ident.prefix] = row
            rows.append(NewEvent(str(ident), ev.kind, ev.occurred_at, ev.place,
                                 actor.principal.key_id, attrs.decode(), ev.corrects))

        async def check(conn: asyncpg.Connection, size: int) -> None:
            latest: dict[str, datetime] = {}
            for i, e in enumerate(rows):
                prefix, _, suffix = e.identifier.partition("/")
                if e.identifier not in latest:
                    if not await self.store.exists(conn, prefix, suffix):
                        raise IdentifierNotFound(f"identifier {e.identifier} is not registered",
                                                 field=f"events[{i}].identifier",
                                                 identifier=e.identifier)
                    last = await self.store.latest(conn, e.identifier)
                    latest[e.identifier] = last.occurred_at if last else datetime.min.replace(
                        tzinfo=now.tzinfo)
                if e.corrects is not None:
                    target = await self.store.event_on(conn, e.corrects)
                    if target is None or target.identifier != e.identifier:
                        raise InvalidArgument(
                            f"event {e.corrects} is not an event of {e.identifier}",
                            field=f"events[{i}].corrects", reason="FORGED_CORRECTION")
                elif e.occurred_at < latest[e.identifier]:
                    raise FailedPrecondition(
                        f"event at {clock.iso(e.occurred_at)} is older than the last event of "
                        f"{e.identifier} ({clock.iso(latest[e.identifier])}); record a "
                        "correction instead", field=f"events[{i}].occurred_at",
                        reason="OUT_OF_ORDER")
                if e.corrects is None:
                    latest[e.identifier] = e.occurred_at

        return await self.store.append(
            rows, check,
            lambda leaf, e: merkle.leaf_hash(canonicalize(leaf_document(self.node, leaf, e))),
            AuditEntry.of(actor, "append_events", rows[0].identifier,
                          prefix=rows[0].identifier.split("/", 1)[0],
                          detail={"count": len(rows)}))

    async def events(self, identifier: str) -> list[dict[str, Any]]:
        ident = identifiers.parse(identifier)
        out = []
        for r in await self.store.events(str(ident)):
            doc = leaf_document(self.node, r.leaf, NewEvent(
                r.identifier, r.kind, r.occurred_at, r.place, r.actor, r.attrs, r.corrects))
            out.append(doc)
        return out

    async def trace(self, identifier: str) -> dict[str, Any]:
        """An identifier's events, each with its inclusion proof in the signed tree head that
        comes with them: a document anyone can check offline (`idnode verify`)."""
        head = await self.head()
        events = await self.events(identifier)
        proofs = []
        for e in events:
            if e["leaf"] < head["size"]:
                proofs.append(await self.inclusion(e["leaf"], head["size"]))
        return {"identifier": identifier, "tree_head": head,
                "events": [{**e, "inclusion": p} for e, p in zip(events, proofs)]}

    async def head(self) -> dict[str, Any]:
        """The signed tree head for the log's current size (signed once per size)."""
        size = await self.store.size()
        stored = await self.store.head(size)
        if stored is None:
            key = self.keyring.active() if self.keyring is not None else None
            if key is None:
                raise FailedPrecondition("signing is off; no tree heads", reason="NO_SIGNING")
            root = (mlog.root(size, await self._fetcher(set(mlog.frontier(size))))
                    if size else merkle.root([]))
            payload = canonicalize({"log": self.node, "size": size, "root": b64.enc(root),
                                    "iat": int(time.time())})
            jws = sign_compact(payload, key, {"typ": STH_TYP})
            await self.store.save_head(size, root, jws)
            stored = (root, jws)
        return {"log": self.node, "size": size, "root": b64.enc(stored[0]), "jws": stored[1]}

    async def inclusion(self, leaf: int, size: int) -> list[str]:
        await self._check_size(size)
        if not 0 <= leaf < size:
            raise InvalidArgument(f"leaf {leaf} is outside a log of {size}", field="leaf")
        fetch = await self._fetcher(mlog.inclusion_proof_keys(leaf, size))
        return [b64.enc(h) for h in mlog.inclusion_proof(leaf, size, fetch)]

    async def consistency(self, size1: int, size2: int) -> list[str]:
        await self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise InvalidArgument("need 0 <= from <= to", field="from")
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
