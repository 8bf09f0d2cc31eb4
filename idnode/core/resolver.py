"""Resolution: identifier → record, cache-aside over the store, with negative caching."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

import orjson

from idnode.core import auth, identifiers
from idnode.core.auth import ANONYMOUS, Principal
# The cache entries are part of the resolver's interface (the transports import them here).
from idnode.core.entries import ABSENT as ABSENT, Resolved as Resolved, Stale as Stale
from idnode.core.errors import (IdentifierNotFound, IdnodeError, NotFound, PermissionDenied,
                                PrefixNotFound, TooLarge, Unavailable)
from idnode.core.gs1 import DigitalLink
from idnode.core.identifiers import Identifier
from idnode.core.prefixes import PrefixTable
from idnode.core.records import DEFAULT_TTL, Record, Value
from idnode.crypto.batch import bundle
from idnode.core.stats import Stats
from idnode.core.ports import Entry, Gs1Prefixes, RecordCache, RecordReader
from idnode.model.rows import Row
from idnode.model.shared import Probe


class Remote(Protocol):
    """Other nodes' records, through the top-level node (idnode.sync.remote implements it):
    the record, or None when it is not registered, and the seconds the answer may be kept."""

    async def fetch(self, ident: Identifier) -> tuple[Record | None, int]: ...

    async def close(self) -> None: ...


def record_from_row(row: Row, node_prefix: str = "") -> Record:
    values = tuple(Value.from_json(v) for v in orjson.loads(row.vals))
    min_ttl = min((v.ttl for v in values), default=DEFAULT_TTL)
    sig = row.sig
    signature = None if sig is None else bundle(sig.jws, sig.index, sig.proof, sig.jws_pq)
    return Record(f"{row.prefix}/{row.suffix}", values, row.version, row.created_at,
                  row.updated_at, min_ttl, node_prefix, signature)


#: Version of the shared tier's record encoding; entries of another version are misses.
_L2_FORMAT = 1


def record_to_shared(record: Record) -> bytes | None:
    """The record as the shared tier (Redis) stores it, or None if it must stay in-process:
    Redis holds only what an anonymous resolver may see, so records with private values, and
    the transports' renders, are never put there."""
    values = record.values
    if any(v.private for v in values):
        return None
    return orjson.dumps((_L2_FORMAT, record.identifier, [tuple(v)[:6] for v in values],
                         record.version, record.created_at, record.updated_at, record.min_ttl,
                         record.node, record.signature))


def record_from_shared(data: bytes) -> Record | None:
    """The record of a shared-tier entry, or None for one this version cannot read."""
    try:
        fmt, ident, values, version, created, updated, min_ttl, node, sig = orjson.loads(data)
        if fmt != _L2_FORMAT:
            return None
        return Record(ident, tuple(Value(*v) for v in values), version,
                      datetime.fromisoformat(created), datetime.fromisoformat(updated), min_ttl,
                      node, sig)
    except (ValueError, TypeError):
        return None


class Resolver:
    """Anyone may resolve; what a caller sees of private values is the transports' call
    (`visible`), made with the same rules for every front door."""

    def __init__(self, handles: RecordReader, cache: RecordCache, prefixes: PrefixTable, *,
                 prefix_store: Gs1Prefixes,
                 max_batch: int, stats: Stats | None = None, node_prefix: str = "",
                 remote: Remote | None = None) -> None:
        self.stats = stats or Stats()
        #: Resolution through the top-level node, for prefixes this node does not hold.
        self.remote = remote
        self.handles = handles
        self.cache = cache
        self.prefixes = prefixes
        self.prefix_store = prefix_store
        self.max_batch = max_batch
        self.node_prefix = node_prefix
        self.stale_served = 0
        #: Records loaded into the hot cache by `warm` (at start: the most scanned).
        self.warmed = 0
        #: Records the node serves that are not in its database (the root record 0.0/0.0 of
        #: the Handle signature forms), by identifier; never cached, never written.
        self.fixed: dict[str, Resolved] = {}
        #: As `cached`, for a caller that falls back to `cached` or `lookup` on a miss (a
        #: miss is counted then, not twice); the cache's own method (a hot path).
        self.probe: Callable[[str], Entry] = cache.probe

    async def sees_private(self, principal: Principal, identifier: str) -> bool:
        if principal is ANONYMOUS:
            return False
        prefix = identifier.split("/", 1)[0]
        state = await self.prefixes.get(prefix)  # loads the table if needed
        return state is not None and auth.sees_private(principal, prefix, self.prefixes)

    def cached(self, key: str) -> Entry:
        """Synchronous hot path: the cache entry for an identifier string, if any."""
        return self.cache.get(key)

    async def lookup(self, ident: Identifier, *, local_only: bool = False) -> Resolved | None:
        """The record, or None when it is not registered.

        Raises PrefixNotFound for prefixes this node does not hold, PermissionDenied for
        prefixes whose resolution is refused (a prefix change empties the cache, so the
        synchronous hit path needs no such check).
        """
        key = str(ident)
        self.stats.resolved(ident.prefix)
        hit = self.cache.get(key)
        if hit is not None:
            return None if hit is ABSENT else hit
        fixed = self.fixed.get(key)
        if fixed is not None:
            return fixed
        ticket = self.cache.ticket(key)
        try:
            try:
                await self.prefixes.resolvable(ident.prefix)
            except PrefixNotFound:
                if self.remote is None or local_only:
                    raise
                return await self._remote(ident, key, ticket)
            probe = None
            l2 = self.cache.l2
            if l2 is not None:
                probe = await l2.get_many((key,))
                if probe is not None and probe.values[0] is not None:
                    record = record_from_shared(probe.values[0])
                    if record is not None:
                        entry = Resolved(record)
                        self.cache.fill(key, entry, ticket, record.min_ttl)
                        return entry
            primary = self.cache.recently_written(key)
            row = await self.handles.get(ident, primary=primary)
        except Unavailable:
            # While the database is unreachable nothing can be written either, so the last
            # entry this process held is still the truth as far as anyone can know.
            stale = self.cache.stale(key)
            if isinstance(stale, Resolved):
                self.stale_served += 1
                return Stale(stale)
            raise
        if row is None:
            self.cache.fill(key, ABSENT, ticket, self.cache.negative_ttl)
            return None
        entry = Resolved(record_from_row(row, self.node_prefix))
        if self.cache.fill(key, entry, ticket, entry.record.min_ttl) and probe is not None:
            self._share(probe, [(0, key, entry.record)], primary)
        return entry

    def _share(self, probe: Probe, items: Sequence[tuple[int, str, Record]],
               primary: bool) -> None:
        """Puts records read from the database into the shared tier (those it may hold)."""
        l2 = self.cache.l2
        assert l2 is not None
        out = []
        for i, key, record in items:
            data = record_to_shared(record)
            if data is not None:
                out.append((i, key, data, float(record.min_ttl)))
        l2.fill(probe, out, replica=not primary and self.handles.replicated)

    async def _remote(self, ident: Identifier, key: str, ticket: tuple[int, int, int]
                      ) -> Resolved | None:
        assert self.remote is not None
        record, ttl = await self.remote.fetch(ident)
        if record is None:
            self.cache.fill(key, ABSENT, ticket, min(ttl, self.cache.negative_ttl))
            return None
        entry = Resolved(record)
        # Another node's record: this node hears no invalidation for it, so its TTL rules.
        self.cache.fill(key, entry, ticket, ttl)
        return entry

    async def gs1_levels(self, link: DigitalLink
                         ) -> tuple[str, list[tuple[DigitalLink, str, Resolved]]]:
        """The identifier of a GS1 key (under the prefix mapped to its GTIN's company prefix)
        and the records at each level from it up to the GTIN alone, most specific first: what a
        GS1 resolver offers links from (the entry and everything above it)."""
        prefix = await self.prefix_store.gs1_prefix(link.gtin)
        if prefix is None:
            raise NotFound(f"no prefix here serves GTIN {link.gtin}", field="gtin",
                           reason="GS1_PREFIX_NOT_MAPPED")
        found = []
        for candidate in link.broader():
            ident = Identifier(prefix, candidate.suffix())
            entry = await self.lookup(ident, local_only=True)
            if entry is not None:
                found.append((candidate, str(ident), entry))
        return f"{prefix}/{link.suffix()}", found

    async def resolve(self, text: str) -> Record:
        ident = identifiers.parse(text)
        entry = await self.lookup(ident)
        if entry is None:
            raise IdentifierNotFound(f"identifier {ident} is not registered", identifier=str(ident))
        return entry.record

    async def warm(self, texts: Sequence[str],
                   then: Callable[[list[Resolved]], Awaitable[object]] | None = None) -> int:
        """Loads the records of `texts` that are not cached into the hot cache, max_batch to a
        query, as a resolution would (tickets, prefixes that resolve, the same entries) but
        without counting resolutions; texts that are not identifiers are skipped. `then` is
        given each query's new entries (to add renders to them). Returns how many records
        it cached."""
        if not (self.cache.enabled and self.cache.coherent):
            return 0
        idents: list[Identifier] = []
        for text in texts:
            try:
                ident = identifiers.parse(text)
            except IdnodeError:
                continue
            if self.cache.probe(str(ident)) is None:
                idents.append(ident)
        refused = await self._refused(idents)
        idents = [i for i in idents if i.prefix not in refused]
        cached = 0
        for lo in range(0, len(idents), self.max_batch):
            chunk = idents[lo:lo + self.max_batch]
            tickets = {str(i): self.cache.ticket(str(i)) for i in chunk}
            rows = await self.handles.get_many(chunk)
            filled: list[Resolved] = []
            for ident in chunk:
                row = rows.get((ident.prefix, ident.suffix))
                if row is not None:
                    entry = Resolved(record_from_row(row, self.node_prefix))
                    key = str(ident)
                    if self.cache.fill(key, entry, tickets[key], entry.record.min_ttl):
                        filled.append(entry)
            if then is not None and filled:
                await then(filled)
            cached += len(filled)
        self.warmed += cached
        return cached

    async def _refused(self, idents: Sequence[Identifier]) -> set[str]:
        """The prefixes of `idents` whose identifiers do not resolve here."""
        refused: set[str] = set()
        for prefix in {i.prefix for i in idents}:
            try:
                await self.prefixes.resolvable(prefix)
            except (PrefixNotFound, PermissionDenied):
                refused.add(prefix)
        return refused

    async def resolve_many(self, texts: Sequence[str]) -> list[Record | None]:
        """Records in request order (None where not registered); one query for the misses."""
        if len(texts) > self.max_batch:
            raise TooLarge(f"{len(texts)} identifiers, more than {self.max_batch} per call",
                           field="identifiers")
        idents = [identifiers.parse(t, field=f"identifiers[{i}]") for i, t in enumerate(texts)]
        refused = await self._refused(idents)
        out: list[Record | None] = [None] * len(idents)
        missing: list[int] = []
        for i, ident in enumerate(idents):
            self.stats.resolved(ident.prefix)
            if ident.prefix in refused:
                continue  # answered as not found: a batch should not fail for one foreign code
            hit = self.cache.get(str(ident))
            if hit is None:
                missing.append(i)
            elif hit is not ABSENT:
                out[i] = hit.record
        if not missing:
            return out
        tickets = {str(idents[i]): self.cache.ticket(str(idents[i])) for i in missing}
        probe = None
        l2 = self.cache.l2
        if l2 is not None:
            probe = await l2.get_many([str(idents[i]) for i in missing])
        # (position in the probe, position in the request) of what is still to be read
        todo = list(enumerate(missing))
        if probe is not None:
            rest = []
            for j, i in todo:
                data = probe.values[j]
                record = record_from_shared(data) if data is not None else None
                if record is None:
                    rest.append((j, i))
                    continue
                key = str(idents[i])
                self.cache.fill(key, Resolved(record), tickets[key], record.min_ttl)
                out[i] = record
            todo = rest
            if not todo:
                return out
        primary = any(self.cache.recently_written(str(idents[i])) for _, i in todo)
        try:
            rows = await self.handles.get_many([idents[i] for _, i in todo], primary=primary)
        except Unavailable:
            # As in lookup: answered from what this process last held, if it held them all.
            stale = [self.cache.stale(str(idents[i])) for _, i in todo]
            held = [s for s in stale if isinstance(s, Resolved)]
            if len(held) != len(todo):
                raise
            for (_, i), entry in zip(todo, held):
                out[i] = entry.record
            self.stale_served += len(todo)
            return out
        shared: list[tuple[int, str, Record]] = []
        for j, i in todo:
            ident = idents[i]
            key = str(ident)
            row = rows.get((ident.prefix, ident.suffix))
            if row is None:
                self.cache.fill(key, ABSENT, tickets[key], self.cache.negative_ttl)
                continue
            record = record_from_row(row, self.node_prefix)
            if self.cache.fill(key, Resolved(record), tickets[key], record.min_ttl):
                shared.append((j, key, record))
            out[i] = record
        if probe is not None and shared:
            self._share(probe, shared, primary)
        return out
