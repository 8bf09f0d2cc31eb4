"""Every SQL statement of the reference top-level node."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from idnode.model.errors import AlreadyExists
from idnode.store.db import Database


@dataclass(frozen=True, slots=True)
class NodeRow:
    node_prefix: str
    token_id: str
    token_salt: bytes
    token_hash: bytes
    http_base: str
    grpc_address: str
    jwks: str
    key_statements: dict[str, str]
    registered_at: datetime | None
    last_heartbeat_at: datetime | None
    outbox_backlog: int


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    seq: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime


_NODE = """SELECT node_prefix, token_id, token_salt, token_hash, http_base, grpc_address,
                  jwks::text, key_statements::text, registered_at, last_heartbeat_at,
                  outbox_backlog FROM nodes"""


def _node(r: asyncpg.Record | None) -> NodeRow | None:
    if r is None:
        return None
    return NodeRow(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4], r[5], r[6], orjson.loads(r[7]),
                   r[8], r[9], r[10])


class TopStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_node(self, node_prefix: str, token_id: str, salt: bytes, digest: bytes) -> None:
        try:
            async with self.db.transaction("top_add_node") as conn:
                await conn.execute(
                    "INSERT INTO nodes (node_prefix, token_id, token_salt, token_hash)"
                    " VALUES ($1, $2, $3, $4)", node_prefix, token_id, salt, digest)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"node {node_prefix} is already known", field="node_prefix") from None

    async def node(self, node_prefix: str) -> NodeRow | None:
        return _node(await self.db.fetchrow(_NODE + " WHERE node_prefix = $1", node_prefix))

    async def node_by_token(self, token_id: str) -> NodeRow | None:
        return _node(await self.db.fetchrow(_NODE + " WHERE token_id = $1", token_id))

    async def nodes(self) -> list[NodeRow]:
        return [n for r in await self.db.fetch(_NODE + " ORDER BY node_prefix")
                if (n := _node(r)) is not None]

    async def register(self, node_prefix: str, http_base: str, grpc_address: str, jwks: str,
                       statements: dict[str, str]) -> None:
        async with self.db.transaction("top_register_node") as conn:
            await conn.execute(
                "UPDATE nodes SET http_base = $2, grpc_address = $3, jwks = $4::text::jsonb,"
                " key_statements = $5::text::jsonb, registered_at = now() WHERE node_prefix = $1",
                node_prefix, http_base, grpc_address, jwks, orjson.dumps(statements).decode())

    async def acked(self, node_prefix: str) -> int:
        return int(await self.db.fetchval(
            "SELECT coalesce(max(seq), 0) FROM events WHERE node_prefix = $1", node_prefix))

    async def apply(self, node_prefix: str, events: Sequence[IncomingEvent],
                    decide: Callable[[ReportTx, str, IncomingEvent], Awaitable[str]]) -> int:
        """Stores new events once each and applies them; returns the highest stored seq.

        `decide(tx, node_prefix, event)` applies one event through `tx` (a ReportTx, in this
        report's transaction) and returns its outcome.
        """
        async with self.db.transaction("top_report") as conn:
            # One report per node at a time: two shippers (or a retry racing its original)
            # must not interleave.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", node_prefix)
            done = int(await conn.fetchval(
                "SELECT coalesce(max(seq), 0) FROM events WHERE node_prefix = $1", node_prefix))
            for e in events:
                if e.seq <= done:
                    continue  # already stored: a resend
                outcome = await decide(ReportTx(conn), node_prefix, e)
                await conn.execute(
                    "INSERT INTO events (node_prefix, seq, kind, payload, outcome, created_at)"
                    " VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)",
                    node_prefix, e.seq, e.kind, orjson.dumps(e.payload).decode(), outcome,
                    e.created_at)
                done = e.seq
            return done

    async def heartbeat(self, node_prefix: str, counters: Sequence[tuple[str, str, int, int, int]],
                        backlog: int) -> datetime:
        async with self.db.transaction("top_heartbeat") as conn:
            at: datetime = await conn.fetchval(
                "UPDATE nodes SET last_heartbeat_at = now(), outbox_backlog = $2"
                " WHERE node_prefix = $1 RETURNING last_heartbeat_at", node_prefix, backlog)
            if counters:
                await conn.executemany(
                    "INSERT INTO stats (node_prefix, day, prefix, registrations, resolutions,"
                    " errors) VALUES ($1, $2::text::date, $3, $4, $5, $6)"
                    " ON CONFLICT (node_prefix, day, prefix) DO UPDATE SET"
                    " registrations = stats.registrations + EXCLUDED.registrations,"
                    " resolutions = stats.resolutions + EXCLUDED.resolutions,"
                    " errors = stats.errors + EXCLUDED.errors",
                    [(node_prefix, day, prefix, r, q, e) for prefix, day, r, q, e in counters])
            return at

    async def locate(self, prefix: str) -> NodeRow | None:
        """The node holding `prefix`: a registered enterprise prefix, else the node prefix it
        falls under (longest match)."""
        r = await self.db.fetchrow(
            _NODE + " WHERE node_prefix = (SELECT node_prefix FROM node_prefixes WHERE prefix = $1)"
            " OR ($1 = node_prefix OR $1 LIKE node_prefix || '.%')"
            " ORDER BY (node_prefix = (SELECT node_prefix FROM node_prefixes WHERE prefix = $1))"
            " IS TRUE DESC, length(node_prefix) DESC LIMIT 1", prefix)
        return _node(r)

    async def counts(self, node_prefix: str) -> dict[str, int]:
        r = await self.db.fetchrow(
            "SELECT (SELECT count(*) FROM events WHERE node_prefix = $1),"
            " (SELECT count(*) FROM events WHERE node_prefix = $1 AND outcome <> 'applied'),"
            " (SELECT count(*) FROM identifiers WHERE node_prefix = $1 AND NOT deleted),"
            " (SELECT count(*) FROM node_prefixes WHERE node_prefix = $1)", node_prefix)
        assert r is not None
        return {"events": r[0], "refused": r[1], "identifiers": r[2], "prefixes": r[3]}


# -- the Business Management System (EPP) ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    """An EPP command's result as kept for a resend: code, reason, response data (XML)."""

    svtrid: str
    code: int
    reason: str = ""
    resdata: str = ""


@dataclass(frozen=True, slots=True)
class EnterpriseRow:
    prefix: str
    node_prefix: str
    name: str
    org_code: str
    contact: str
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class IdentifierRow:
    identifier: str
    node_prefix: str
    version: int
    deleted: bool
    vals: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class BmsStore:
    """Every SQL statement of the EPP server side; transform commands run in `once`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def set_epp_password(self, node_prefix: str, salt: bytes, digest: bytes) -> bool:
        return await self.db.fetchval(
            "UPDATE nodes SET epp_pw_salt = $2, epp_pw_hash = $3 WHERE node_prefix = $1"
            " RETURNING true", node_prefix, salt, digest) is not None

    async def epp_password(self, node_prefix: str) -> tuple[bytes, bytes] | None:
        r = await self.db.fetchrow("SELECT epp_pw_salt, epp_pw_hash FROM nodes"
                                   " WHERE node_prefix = $1", node_prefix)
        return None if r is None or r[0] is None else (bytes(r[0]), bytes(r[1]))

    async def once(self, node_prefix: str, cltrid: str, digest: bytes, apply: Any) -> Answer:
        """Runs `apply(conn)` (returning an Answer) once per (node, client transaction id,
        command digest), in one transaction with the record of it; a resend gets the kept
        answer without applying anything again."""
        async with self.db.transaction("bms_command") as conn:
            # Commands of one node are applied one at a time (a resend racing its original
            # waits, then finds it done).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('bms:' || $1))",
                               node_prefix)
            kept = await conn.fetchrow(
                "SELECT svtrid, code, reason, resdata, digest FROM epp_transactions"
                " WHERE node_prefix = $1 AND cltrid = $2", node_prefix, cltrid)
            if kept is not None and bytes(kept[4]) == digest:
                return Answer(kept[0], kept[1], kept[2], kept[3])
            answer: Answer = await apply(conn)
            await conn.execute(
                "INSERT INTO epp_transactions (node_prefix, cltrid, digest, svtrid, code,"
                " reason, resdata) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (node_prefix, cltrid) DO UPDATE SET digest = EXCLUDED.digest,"
                " svtrid = EXCLUDED.svtrid, code = EXCLUDED.code, reason = EXCLUDED.reason,"
                " resdata = EXCLUDED.resdata, at = now()",
                node_prefix, cltrid, digest, answer.svtrid, answer.code, answer.reason,
                answer.resdata)
            return answer

    # -- on the command's connection ---------------------------------------------------------
    @staticmethod
    async def enterprise(conn: Any, prefix: str) -> EnterpriseRow | None:
        r = await conn.fetchrow(
            "SELECT prefix, node_prefix, name, org_code, contact, status, created_at,"
            " updated_at FROM enterprises WHERE prefix = $1", prefix)
        return None if r is None else EnterpriseRow(*r)

    @staticmethod
    async def create_enterprise(conn: Any, prefix: str, node_prefix: str, name: str,
                                org_code: str, contact: str) -> datetime:
        await conn.execute("INSERT INTO node_prefixes (prefix, node_prefix) VALUES ($1, $2)"
                           " ON CONFLICT (prefix) DO NOTHING", prefix, node_prefix)
        return await conn.fetchval(  # type: ignore[no-any-return]
            "INSERT INTO enterprises (prefix, node_prefix, name, org_code, contact)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING created_at",
            prefix, node_prefix, name, org_code, contact)

    @staticmethod
    async def set_enterprise_status(conn: Any, prefix: str, status: str) -> None:
        await conn.execute("UPDATE enterprises SET status = $2, updated_at = now()"
                           " WHERE prefix = $1", prefix, status)

    @staticmethod
    async def identifier(conn: Any, identifier: str) -> IdentifierRow | None:
        r = await conn.fetchrow(
            "SELECT identifier, node_prefix, version, deleted, vals::text, created_at,"
            " updated_at FROM identifiers WHERE identifier = $1", identifier)
        return None if r is None else IdentifierRow(r[0], r[1], r[2], r[3], orjson.loads(r[4]),
                                                    r[5], r[6])

    @staticmethod
    async def put_identifier(conn: Any, identifier: str, node_prefix: str, version: int,
                             vals: list[dict[str, Any]], *, created: bool) -> datetime:
        """Creates (or revives, `created`) an identifier, or replaces its values."""
        return await conn.fetchval(  # type: ignore[no-any-return]
            "INSERT INTO identifiers (identifier, node_prefix, version, deleted, vals)"
            " VALUES ($1, $2, $3, false, $4::text::jsonb)"
            " ON CONFLICT (identifier) DO UPDATE SET version = greatest(identifiers.version,"
            " EXCLUDED.version), deleted = false, vals = EXCLUDED.vals, updated_at = now(),"
            " created_at = CASE WHEN $5 THEN now() ELSE identifiers.created_at END"
            " RETURNING created_at", identifier, node_prefix, version,
            orjson.dumps(vals).decode(), created)

    @staticmethod
    async def delete_identifier(conn: Any, identifier: str) -> None:
        await conn.execute("UPDATE identifiers SET deleted = true, updated_at = now()"
                           " WHERE identifier = $1", identifier)

    @staticmethod
    async def queue_message(conn: Any, node_prefix: str, text: str) -> None:
        await conn.execute("INSERT INTO epp_messages (node_prefix, text) VALUES ($1, $2)",
                           node_prefix, text[:2000])

    async def read(self, fn: Any) -> Any:
        """Runs a read (`fn(conn)`) on a connection of its own."""
        async with self.db.transaction("bms_read") as conn:
            return await fn(conn)

    async def next_message(self, node_prefix: str) -> tuple[int, int, str, datetime] | None:
        """(pending count, id, text, queued at) of the oldest unacknowledged message."""
        r = await self.db.fetchrow(
            "SELECT (SELECT count(*) FROM epp_messages WHERE node_prefix = $1 AND acked_at IS"
            " NULL), id, text, queued_at FROM epp_messages WHERE node_prefix = $1 AND"
            " acked_at IS NULL ORDER BY id LIMIT 1", node_prefix)
        return None if r is None else (int(r[0]), int(r[1]), r[2], r[3])

    async def ack_message(self, node_prefix: str, msg_id: int) -> int | None:
        """Acknowledges a message; the count left, or None if it was not pending."""
        async with self.db.transaction("bms_poll_ack") as conn:
            done = await conn.fetchval(
                "UPDATE epp_messages SET acked_at = now() WHERE node_prefix = $1 AND id = $2"
                " AND acked_at IS NULL RETURNING id", node_prefix, msg_id)
            if done is None:
                return None
            return int(await conn.fetchval(
                "SELECT count(*) FROM epp_messages WHERE node_prefix = $1 AND acked_at IS NULL",
                node_prefix))


class EscrowReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def last(self, node_prefix: str) -> tuple[str, datetime] | None:
        r = await self.db.fetchrow("SELECT deposit_id, watermark FROM escrow_reports WHERE"
                                   " node_prefix = $1 ORDER BY watermark DESC LIMIT 1",
                                   node_prefix)
        return None if r is None else (r[0], r[1])

    async def add(self, node_prefix: str, deposit_id: str, kind: str, prev_id: str | None,
                  watermark: datetime, sha256: str, report: str) -> bool:
        """False when a report of that deposit was received already (a resend)."""
        async with self.db.transaction("escrow_report") as conn:
            return await conn.fetchval(
                "INSERT INTO escrow_reports (node_prefix, deposit_id, kind, prev_id, watermark,"
                " sha256, report) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
                " RETURNING true", node_prefix, deposit_id, kind, prev_id, watermark, sha256,
                report) is not None


class ReportTx:
    """What a report's decisions may read and write, inside the report's transaction (one
    event after another, under the node's lock): handed to `decide` by TopStore.apply."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def prefix_holder(self, prefix: str) -> str | None:
        holder: str | None = await self._conn.fetchval(
            "SELECT node_prefix FROM node_prefixes WHERE prefix = $1", prefix)
        return holder

    async def hold_prefix(self, prefix: str, node_prefix: str) -> None:
        await self._conn.execute("INSERT INTO node_prefixes (prefix, node_prefix) VALUES ($1, $2)"
                                 " ON CONFLICT (prefix) DO NOTHING", prefix, node_prefix)

    async def upsert_identifiers(self, node_prefix: str, ids: list[str],
                                 version: int, deleted: bool) -> None:
        await self._conn.execute(
            "INSERT INTO identifiers (identifier, node_prefix, version, deleted)"
            " SELECT unnest($1::text[]), $2, $3, $4"
            " ON CONFLICT (identifier) DO UPDATE SET version = greatest(identifiers.version,"
            " EXCLUDED.version), deleted = EXCLUDED.deleted, updated_at = now()"
            " WHERE identifiers.node_prefix = EXCLUDED.node_prefix",
            ids, node_prefix, version, deleted)

    async def node_jwks(self, node_prefix: str) -> str:
        return str(await self._conn.fetchval("SELECT jwks::text FROM nodes WHERE node_prefix = $1",
                                             node_prefix))

    async def tree_head(self, node_prefix: str, size: int) -> bytes | None:
        """The root of the node's kept head of `size`, if any."""
        root = await self._conn.fetchval("SELECT root FROM trace_heads WHERE node_prefix = $1"
                                         " AND size = $2", node_prefix, size)
        return None if root is None else bytes(root)

    async def last_tree_head(self, node_prefix: str
                             ) -> tuple[int, bytes] | None:
        """The largest head kept for the node (size, root): the log as the top knows it."""
        row = await self._conn.fetchrow("SELECT size, root FROM trace_heads WHERE node_prefix = $1"
                                        " ORDER BY size DESC LIMIT 1", node_prefix)
        return None if row is None else (int(row[0]), bytes(row[1]))

    async def refused_head(self, node_prefix: str, size: int
                           ) -> dict[str, Any] | None:
        """The payload of the latest refused `trace.head` event of the node for a head of
        `size` (read only when a head links to one the top does not keep)."""
        raw = await self._conn.fetchval(
            "SELECT payload::text FROM events WHERE node_prefix = $1 AND kind = 'trace.head'"
            " AND outcome LIKE 'refused%' AND payload->>'size' = $2 ORDER BY seq DESC LIMIT 1",
            node_prefix, str(size))
        return None if raw is None else dict(orjson.loads(raw))

    async def keep_tree_head(self, node_prefix: str, size: int, root: bytes,
                             jws: str, linked: bool) -> None:
        await self._conn.execute(
            "INSERT INTO trace_heads (node_prefix, size, root, jws, linked)"
            " VALUES ($1, $2, $3, $4, $5)", node_prefix, size, root, jws, linked)
