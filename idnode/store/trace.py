"""Every SQL statement of the traceability log."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from idnode.model.audit import AuditEntry
from idnode.model.events import AttachmentRef, EventRow, NewEvent
from idnode.model.invalidation import TRACE_KEY
from idnode.store import audit, handles, outbox
from idnode.store.db import Database


def _event(r: asyncpg.Record) -> EventRow:
    return EventRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], tuple(r[9]),
                    tuple(AttachmentRef(bytes.fromhex(a["sha256"]), a["media_type"], a["size"])
                          for a in orjson.loads(r[10])), bytes(r[11]))


#: Serialises reporting tree heads (see save_head).
_HEAD_LOCK = 0x7EE_4EAD

_EVENTS = """SELECT leaf, identifier, kind, occurred_at, place, actor, attrs::text, corrects,
                    recorded_at, inputs, attachments::text, leaf_hash FROM trace_events"""


def _attachments_json(refs: Sequence[AttachmentRef]) -> str:
    return orjson.dumps([{"sha256": a.sha256.hex(), "media_type": a.media_type, "size": a.size}
                         for a in refs]).decode()


#: Tree nodes by (level, idx): level 0, the leaves, from the events (stored once, sql/0019),
#: the levels above from trace_nodes.
_NODES = """SELECT n.level, n.idx, n.hash FROM trace_nodes n
              JOIN unnest($1::int[], $2::bigint[]) AS k(level, idx)
                ON n.level = k.level AND n.idx = k.idx
            UNION ALL
            SELECT 0, e.leaf, e.leaf_hash FROM trace_events e
              JOIN unnest($1::int[], $2::bigint[]) AS k(level, idx)
                ON k.level = 0 AND e.leaf = k.idx"""


#: The audit row, the attachments (content-addressed: one already stored is kept) and the
#: invalidation NOTIFY (delivered at commit) of an append: the head of the statement that opens
#: its transaction, or of the one statement that is the append.
_AUDITED = f"""WITH entry AS (INSERT INTO audit_log ({audit.COLUMNS})
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb)),
                stored AS (INSERT INTO trace_attachments (sha256, media_type, content)
                           SELECT * FROM unnest($10::bytea[], $11::text[], $12::bytea[])
                           ON CONFLICT DO NOTHING),
                notified AS (SELECT count(pg_notify($13, p)) FROM unnest($14::text[]) AS p)"""
_BEGIN = _AUDITED + " SELECT size FROM trace_log, notified"
_APPEND = "SELECT trace_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
#: The whole append in one statement that commits as it ends (sql/0018); IDT01 when the log
#: moved on since `since` (then nothing is written: no audit row, attachment or NOTIFY).
_APPEND_ALONE = _AUDITED + """ SELECT trace_append_or_raise(
    $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) FROM notified"""
_MOVED_ON = "IDT01"
#: Appends tried without holding the log's lock across round trips before one is made in a
#: transaction that keeps the lock through its recheck (each try that finds the log moved on
#: for its identifiers costs the checks again).
_TRIES_ALONE = 3


#: Keeps the rows of `w.i` (prefix/suffix) that are registered identifiers, probing the
#: handles primary key once for each (a LATERAL with LIMIT is always planned as one index
#: probe an identifier; an EXISTS, on a handles table without statistics yet, was planned as
#: a hash join over its every row). The identifiers come as one newline-joined text, which
#: costs asyncpg far less to send than arrays (it checks every element).
_REGISTERED = """CROSS JOIN LATERAL (
    SELECT FROM handles h WHERE h.prefix = split_part(w.i, '/', 1)
                            AND h.suffix = substr(w.i, strpos(w.i, '/') + 1) LIMIT 1) AS known"""


def _lines(items: list[str]) -> str:
    """trace_append's form of a column: one line per event (see sql/0016_trace_append.sql).
    One text costs asyncpg far less to send than an array (it checks every element)."""
    text = "\n".join(items)
    if text.count("\n") != len(items) - 1:
        raise ValueError("a trace event value holds a newline")
    return text


def _append_args(events: Sequence[NewEvent], leaf_parts: Sequence[tuple[bytes, bytes]]
                 ) -> tuple[Any, ...]:
    """trace_append's arguments after `since`: the count, one text per column, one actor;
    an event's inputs tab-separated (identifiers refuse control characters)."""
    actors = {e.actor for e in events}
    if len(actors) != 1:
        raise ValueError("one append has one actor")
    cols: tuple[list[str], ...] = tuple([] for _ in range(10))
    ids, kinds, times, places, attrs, corrects, inputs, attachments, before, after = cols
    for e, (b, a) in zip(events, leaf_parts, strict=True):  # one pass: once per event
        if e.inputs:
            if any(p == "" or "\t" in p for p in e.inputs):
                raise ValueError("an input identifier is empty or holds a tab")
            inputs.append("\t".join(e.inputs))
        else:
            inputs.append("")
        ids.append(e.identifier)
        kinds.append(e.kind)
        times.append(e.occurred_at.isoformat())
        places.append(e.place)
        attrs.append(e.attrs)
        corrects.append("" if e.corrects is None else str(e.corrects))
        attachments.append(_attachments_json(e.attachments) if e.attachments else "[]")
        before.append(b.decode())
        after.append(a.decode())
    return (len(events), _lines(ids), _lines(kinds), _lines(times), _lines(places),
            actors.pop(), _lines(attrs), _lines(corrects), _lines(inputs),
            _lines(attachments), _lines(before), _lines(after))


class TraceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def append(self, events: Sequence[NewEvent],
                     check: Callable[[TraceTx, int], Awaitable[None]],
                     leaf_parts: Sequence[tuple[bytes, bytes]],
                     entry: AuditEntry, blobs: Sequence[tuple[AttachmentRef, bytes]] = ()
                     ) -> tuple[list[int], int]:
        """Appends all or nothing; `check(tx, size)` may refuse (it raises) before anything
        is written, reading the log through `tx` (a TraceTx): every event its reads may miss
        has a leaf >= size, which the append looks for under the log's lock before it writes.
        `leaf_parts` are each event's leaf document around its leaf number (see
        sql/0016_trace_append.sql, which numbers and hashes the leaves under the log's lock).
        Returns the events' leaves and the new log size. Every node's cached view of the
        identifiers' traces is invalidated when it commits."""
        args = _append_args(events, leaf_parts)
        n = len(events)
        head = (*audit.params(entry), [ref.sha256 for ref, _ in blobs],
                [ref.media_type for ref, _ in blobs], [content for _, content in blobs],
                handles.INVALIDATE_CHANNEL,
                handles.notify_payloads(sorted({TRACE_KEY + e.identifier for e in events})))
        async with self.db.connection("trace_append") as conn:
            since = int(await conn.fetchval("SELECT size FROM trace_log"))
            for _ in range(_TRIES_ALONE):
                # Checked on reads that each see every append committed before them, all
                # made after `since` was read: what they miss has a leaf >= since.
                await check(TraceTx(conn), since)
                try:
                    first = int(await conn.fetchval(_APPEND_ALONE, *head, since, *args))
                except asyncpg.PostgresError as exc:
                    if getattr(exc, "sqlstate", None) != _MOVED_ON:
                        raise
                    since = int(str(getattr(exc, "detail", "")))
                    continue
                return list(range(first, first + n)), first + n
        # Appends to the same identifiers kept overtaking this one: a transaction whose
        # recheck runs under the log's lock, so it cannot be overtaken again.
        async with self.db.transaction("trace_append") as conn:
            # The checks run before the log's lock: every event they cannot see was appended
            # after this read, so has a leaf >= since, which trace_append looks for. The
            # audit row, attachments and NOTIFY (delivered at commit) go in the same round trip.
            since = int(await conn.fetchval(_BEGIN, *head))
            await check(TraceTx(conn), since)
            first = int(await conn.fetchval(_APPEND, since, *args))
            if first < 0:
                # Another append touched these identifiers (or, with inputs, the lineage)
                # since the checks read the log: check again, under the lock taken now.
                size = -1 - first
                await check(TraceTx(conn), size)
                first = int(await conn.fetchval(_APPEND, size, *args))
            return list(range(first, first + n)), first + n

    async def lineage(self, identifier: str, depth: int) -> list[tuple[str, str, int]]:
        """The (child, parent, leaf) links above an identifier."""
        return [(r[0], r[1], int(r[2])) for r in await self.db.fetch(
            """WITH RECURSIVE up(child, parent, leaf, depth) AS (
                   SELECT child, parent, leaf, 1 FROM trace_links WHERE child = $1
                 UNION
                   SELECT l.child, l.parent, l.leaf, up.depth + 1 FROM trace_links l
                   JOIN up ON l.child = up.parent WHERE up.depth < $2)
               SELECT DISTINCT child, parent, leaf FROM up ORDER BY leaf""", identifier, depth)]

    async def events(self, identifier: str) -> list[EventRow]:
        return await self.events_of([identifier])

    async def events_of(self, identifiers: Sequence[str]) -> list[EventRow]:
        return [_event(r) for r in await self.db.fetch(
            _EVENTS + " WHERE identifier = ANY($1::text[]) ORDER BY occurred_at, leaf",
            list(identifiers))]

    async def attachment(self, sha256: bytes) -> tuple[str, bytes] | None:
        r = await self.db.fetchrow(
            "SELECT media_type, content FROM trace_attachments WHERE sha256 = $1", sha256)
        return None if r is None else (r[0], bytes(r[1]))

    async def producer(self, prefix: str) -> str | None:
        """The name of the enterprise that holds a prefix."""
        name: str | None = await self.db.fetchval(
            "SELECT e.name FROM prefixes p JOIN enterprises e ON e.id = p.enterprise_id"
            " WHERE p.prefix = $1", prefix)
        return name

    async def scans(self, identifier: str, limit: int = 1000) -> dict[str, int]:
        """Scans of an identifier per place (the `limit` busiest places)."""
        return {r[0]: int(r[1]) for r in await self.db.fetch(
            "SELECT place, count FROM trace_scans WHERE identifier = $1"
            " ORDER BY count DESC LIMIT $2", identifier, limit)}

    async def most_scanned(self, limit: int, window: float) -> list[str]:
        """The `limit` identifiers scanned most in the last `window` seconds."""
        rows = await self.db.fetch(
            "SELECT identifier FROM trace_scans"
            " WHERE last_at > now() - make_interval(secs => $2)"
            " GROUP BY identifier ORDER BY sum(count) DESC, max(last_at) DESC, identifier"
            " LIMIT $1", limit, window)
        return [r[0] for r in rows]

    async def add_scans(self, counts: Sequence[tuple[str, str, int, datetime, datetime]]
                        ) -> None:
        """Adds (identifier, place, count, first, last) tallies; order avoids deadlocks
        between processes flushing at once."""
        async with self.db.transaction("trace_scans") as conn:
            await conn.executemany(
                """INSERT INTO trace_scans AS s (identifier, place, count, first_at, last_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (identifier, place) DO UPDATE SET count = s.count + $3,
                       last_at = greatest(s.last_at, $5)""", sorted(counts))

    async def size(self) -> int:
        return int(await self.db.fetchval("SELECT size FROM trace_log"))

    async def nodes(self, keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not keys:
            return {}
        levels, idxs = zip(*keys)
        # On the request path (proofs, the scan page's check): under the read limit.
        rows = await self.db.fetch(_NODES, list(levels), list(idxs))
        return {(r[0], r[1]): bytes(r[2]) for r in rows}

    async def current_head(self) -> tuple[int, tuple[bytes, str] | None]:
        """The log's size and its signed head at that size, if one was signed."""
        r = await self.db.fetchrow("SELECT l.size, h.root, h.jws FROM trace_log l"
                                   " LEFT JOIN trace_heads h ON h.size = l.size")
        assert r is not None
        return int(r[0]), (None if r[1] is None else (bytes(r[1]), r[2]))

    async def save_head(self, size: int, root: bytes, jws: str,
                        link: Callable[[int], Awaitable[dict[str, Any]]]) -> str:
        """Keeps a signed tree head and reports it upward (outbox), so the node cannot later
        present a log that does not extend what it signed. Returns the head kept for `size`
        (another process may have signed the same size first).

        `link(other_size)` gives what lets the top-level node check this head against the
        last one reported (a consistency proof); heads are reported one at a time so that
        each links to one the top has already seen, whatever order processes sign them in."""
        async with self.db.transaction("trace_head") as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _HEAD_LOCK)
            new = await conn.fetchval(
                "INSERT INTO trace_heads (size, root, jws) VALUES ($1, $2, $3)"
                " ON CONFLICT (size) DO NOTHING RETURNING 1", size, root, jws)
            if not new:
                return str(await conn.fetchval("SELECT jws FROM trace_heads WHERE size = $1",
                                               size))
            last = await conn.fetchval("SELECT max(size) FROM trace_heads WHERE size <> $1",
                                       size)
            extra = await link(int(last)) if last else {}
            await outbox.append(conn, "trace.head", {"size": size, "jws": jws, **extra})
            return jws


class TraceTx:
    """What an append's checks may read, on the appending connection (each read sees every
    append committed before it; on a recheck in a transaction the log's row is locked, so no
    other append interleaves): handed to `check` by TraceStore.append."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def standing(self, identifiers: Sequence[str]) -> dict[str, datetime | None]:
        """The registered ones of the identifiers, each with when its latest event happened
        (None: no event yet), in one round trip."""
        if not identifiers:
            return {}
        rows = await self._conn.fetch(
            f"""SELECT w.i, (SELECT occurred_at FROM trace_events WHERE identifier = w.i
                             ORDER BY occurred_at DESC, leaf DESC LIMIT 1)
                FROM unnest(trace_lines($1)) AS w(i) {_REGISTERED}""",
            _lines(list(identifiers)))
        return {r[0]: r[1] for r in rows}

    async def owners_of(self, leaves: Sequence[int]) -> dict[int, str]:
        """leaf → the identifier whose event it is, for those leaves that exist."""
        if not leaves:
            return {}
        rows = await self._conn.fetch("SELECT leaf, identifier FROM trace_events"
                                      " WHERE leaf = ANY($1::bigint[])", list(leaves))
        return {int(r[0]): r[1] for r in rows}

    async def registered(self, identifiers: Sequence[str]) -> set[str]:
        """Those of the identifiers that are registered."""
        if not identifiers:
            return set()
        rows = await self._conn.fetch(
            f"SELECT w.i FROM unnest(trace_lines($1)) AS w(i) {_REGISTERED}",
            _lines(list(identifiers)))
        return {r[0] for r in rows}

    async def ancestors(self, identifiers: Sequence[str], depth: int) -> dict[str, set[str]]:
        """child → parents for every product the given ones descend from (within `depth`
        steps); each product reached is a key, those without inputs map to an empty set."""
        rows = await self._conn.fetch(
            """WITH RECURSIVE up(child, parent, depth) AS (
                   SELECT child, parent, 1 FROM trace_links WHERE child = ANY($1::text[])
                 UNION
                   SELECT l.child, l.parent, up.depth + 1 FROM trace_links l
                   JOIN up ON l.child = up.parent WHERE up.depth < $2)
               SELECT DISTINCT child, parent FROM up""", list(identifiers), depth)
        graph: dict[str, set[str]] = {i: set() for i in identifiers}
        for child, parent in rows:
            graph.setdefault(child, set()).add(parent)
            graph.setdefault(parent, set())
        return graph
