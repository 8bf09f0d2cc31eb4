"""Registration rules: who may write, templates, batches (all or nothing, idempotent),
updates, deletes, listing; every write audited in its own transaction."""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol
from datetime import datetime

import orjson

from idnode.core import auth, clock, identifiers, templates
from idnode.core.audit import Actor, AuditEntry
from idnode.core.errors import (AlreadyExists, FailedPrecondition, IdentifierNotFound,
                                IdnodeError, InvalidArgument, InvalidIdentifier, PrefixNotFound,
                                TooLarge, ValueAlreadyExists, ValuesNotFound)
from idnode.core.identifiers import Identifier
from idnode.core.ports import PrefixLookup, RecordWriter, WrittenRecords
from idnode.core.prefixes import PrefixState, PrefixTable
from idnode.core.records import (Record, Value, ValueInput, validate_values,
                                 validate_values_json)
from idnode.core.stats import Stats
from idnode.core.signing import PublicLeaves, Signer, canonical, signed_content
from idnode.crypto.batch import bundle
from idnode.model.errors import PrefixesChanged
from idnode.model.rows import MAX_BIGINT, BatchSignature, PrefixRow

MAX_KEY_LEN = 128
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: A registration lets the event loop run after this many records checked (about a millisecond
#: of work; twice as many in the lighter second pass): a 10,000-record batch is a few hundred
#: milliseconds of Python, which consumers' resolves must not wait behind (bench/mixed.py).
_SLICE = 64


class RecordInput(NamedTuple):
    identifier: str
    values: Sequence[ValueInput]


class RecordLike(Protocol):
    """A record as a client sent it: a RecordInput, or a protobuf RecordInput as received."""

    @property
    def identifier(self) -> str: ...

    @property
    def values(self) -> Sequence[ValueInput]: ...


@dataclass(frozen=True, slots=True)
class BatchResult:
    registered: int
    replayed: bool
    committed_at: datetime


@dataclass(frozen=True, slots=True)
class Limits:
    max_batch: int
    max_value_bytes: int
    max_record_bytes: int


class _Owners:
    """PrefixOwners over rows just read from the database (writes decide on fresh data)."""

    def __init__(self, rows: dict[str, PrefixRow]) -> None:
        self.rows = rows

    def owner(self, prefix: str) -> int | None:
        row = self.rows.get(prefix)
        return None if row is None else row.enterprise_id


class Registry:
    def __init__(self, handles: RecordWriter, prefixes: PrefixLookup, cache: WrittenRecords,
                 limits: Limits, stats: Stats | None = None, signer: Signer | None = None,
                 table: PrefixTable | None = None) -> None:
        self.stats = stats or Stats()
        #: The in-memory prefix table, which batch registration may decide on (see
        #: `_writable_in_memory`); None: always read the prefixes first.
        self.table = table
        #: Signs every published record version; None only where signing is switched off.
        self.signer = signer
        self.handles = handles
        self.prefixes = prefixes
        self.cache = cache
        self.limits = limits

    async def register_batch(self, actor: Actor, idempotency_key: str,
                             records: Sequence[RecordLike], *, fresh: bool = False
                             ) -> BatchResult:
        """Registers every record or none; a retry with the same key registers nothing twice.

        `fresh`: decide on prefix rows read from the database even if the in-memory table
        would do."""
        auth.require_writer(actor.principal)
        _check_key(idempotency_key)
        if not records:
            raise InvalidArgument("a batch needs at least one record", field="records")
        if len(records) > self.limits.max_batch:
            raise TooLarge(f"{len(records)} records, more than {self.limits.max_batch} per batch",
                           field="records")
        now = clock.now()
        stamp = clock.iso(now)
        stamp_bytes = stamp.encode()
        digest = hashlib.sha256(idempotency_key.encode())
        max_value, max_record = self.limits.max_value_bytes, self.limits.max_record_bytes
        parse, check = identifiers.parse_new, validate_values_json
        parsed: list[tuple[Identifier, str, list[dict[str, object]], bool]] = []
        seen: dict[str, int] = {}
        # The hot loop of registration: field paths and error texts are made only on error
        # (checking again with the path raises the same error, naming where it is).
        for i, rec in enumerate(records):
            if i and not i % _SLICE:
                await asyncio.sleep(0)
            try:
                ident = parse(rec.identifier)
            except InvalidIdentifier:
                parse(rec.identifier, field=f"records[{i}].identifier")
                raise
            key = str(ident)
            if key in seen:
                raise InvalidArgument(
                    f"identifier {key} appears twice in the batch (records[{seen[key]}] and "
                    f"records[{i}])", field=f"records[{i}].identifier", reason="DUPLICATE_IN_BATCH",
                    identifier=key)
            seen[key] = i
            try:
                values_json, private = check(rec.values, max_value_bytes=max_value,
                                             max_record_bytes=max_record, timestamp=stamp)
            except IdnodeError:
                check(rec.values, max_value_bytes=max_value, max_record_bytes=max_record,
                      timestamp=stamp, field_prefix=f"records[{i}].values")
                raise
            parsed.append((ident, key, values_json, private))
        prefixes = {p[0].prefix for p in parsed}
        in_memory = None if fresh else await self._writable_in_memory(actor, prefixes)
        rows_by_prefix: Mapping[str, PrefixRow | PrefixState] = (
            in_memory if in_memory is not None else await self._writable(actor, prefixes))
        rows: list[tuple[str, str, str]] = []
        leaves: list[bytes] = []
        signer = self.signer
        node_prefix = signer.node_prefix if signer is not None else ""
        public = PublicLeaves(node_prefix, 1, stamp, stamp)
        dumps, update = orjson.dumps, digest.update
        for i, (ident, key, values_json, private) in enumerate(parsed):
            if i and not i % (2 * _SLICE):
                await asyncio.sleep(0)
            template = rows_by_prefix[ident.prefix]
            if template.template is not None and not templates.exempt(values_json):
                templates.validate(template.template, values_json, field=f"records[{i}].values",
                                   template=template.template_name or "")
            vals = dumps(values_json)  # canonical: the keys are in sorted order
            # The digest covers what the client sent, not the node's timestamps, so an
            # identical retry matches and a different batch under the same key does not.
            update(b"\x00".join((key.encode(), vals.replace(stamp_bytes, b""), b"")))
            rows.append((ident.prefix, ident.suffix, vals.decode()))
            if signer is not None:
                leaves.append(canonical(signed_content(
                    key, node_prefix, 1, stamp, stamp, (), values_json, has_private=True))
                    if private else public.leaf(key, vals))
        entry = AuditEntry.of(actor, "register_batch", idempotency_key,
                              prefix=min(rows_by_prefix) if len(rows_by_prefix) == 1 else None,
                              after_version=1,
                              detail={"count": len(rows), "prefixes": sorted(rows_by_prefix),
                                      "first": parsed[0][1], "last": parsed[-1][1]})
        signature, proofs = None, None
        if signer is not None:
            signed = await signer.sign_canonical_yielding(leaves)
            signature = BatchSignature(signed.jws, signed.jws_pq, signed.size)
            proofs = signed.proofs
        try:
            outcome = await self.handles.register_batch(
                _scoped_key(actor, idempotency_key), digest.digest(), rows, now, entry,
                signature, proofs,
                expect_owner=actor.principal.enterprise_id if in_memory is not None else None)
        except PrefixesChanged:
            # The table was behind the database (nothing was written): decide again on rows
            # read now, which also makes any refusal name what the database says.
            return await self.register_batch(actor, idempotency_key, records, fresh=True)
        if outcome.replayed and outcome.stored_digest not in (
                digest.digest(), _digest_before_2026_11(idempotency_key, parsed, stamp_bytes)):
            raise AlreadyExists(
                f"idempotency key {idempotency_key!r} was already used for a different batch",
                field="idempotency_key", reason="IDEMPOTENCY_KEY_REUSED")
        if not outcome.replayed:
            # Other hosts hear the NOTIFY; this one must not wait for it to stop serving a
            # cached "not found", nor may the other workers of this host (cache.written).
            self.cache.written(list(seen))
            if len(rows_by_prefix) == 1:
                self.stats.registered(parsed[0][0].prefix, len(parsed))
            else:
                for prefix, n in Counter(p[0].prefix for p in parsed).items():
                    self.stats.registered(prefix, n)
        return BatchResult(outcome.registered, outcome.replayed, outcome.committed_at)

    async def update_values(self, actor: Actor, text: str, values: Sequence[ValueInput],
                            expected_version: int = 0) -> Record:
        """Replaces the record's values with `values`."""
        return await self._rewrite(actor, text, "update_values", lambda _current: values,
                                   expected_version)

    async def add_values(self, actor: Actor, text: str, values: Sequence[ValueInput]) -> Record:
        """Adds values at indexes the record does not use yet (Handle's ADD_VALUE)."""
        def edit(current: tuple[Value, ...]) -> Sequence[ValueInput]:
            taken = {v.index for v in current} & {v.index for v in values}
            if taken:
                raise ValueAlreadyExists(
                    f"index {', '.join(map(str, sorted(taken)))} of {text} already holds a value",
                    field="values", identifier=text)
            return (*current, *values)
        return await self._rewrite(actor, text, "add_values", edit)

    async def modify_values(self, actor: Actor, text: str, values: Sequence[ValueInput]
                            ) -> Record:
        """Replaces the values at the given indexes, which must all exist (MODIFY_VALUE)."""
        def edit(current: tuple[Value, ...]) -> Sequence[ValueInput]:
            new = {v.index: v for v in values}
            _require_indexes(text, {v.index for v in current}, new)
            return [new.get(v.index, v) for v in current]
        return await self._rewrite(actor, text, "modify_values", edit)

    async def remove_values(self, actor: Actor, text: str, indexes: Sequence[int]) -> Record:
        """Removes the values at the given indexes, which must all exist (REMOVE_VALUE)."""
        def edit(current: tuple[Value, ...]) -> Sequence[ValueInput]:
            gone = set(indexes)
            _require_indexes(text, {v.index for v in current}, gone)
            return [v for v in current if v.index not in gone]
        return await self._rewrite(actor, text, "remove_values", edit)

    async def put_values(self, actor: Actor, text: str, values: Sequence[Value]) -> None:
        """Sets `values` at their indexes, registering the record if there is none yet (the
        node's own writes, such as an admin identity's HS_ADMIN and HS_PUBKEY)."""
        def edit(current: tuple[Value, ...]) -> Sequence[ValueInput]:
            new = {v.index: v for v in values}
            return [*(v for v in current if v.index not in new), *values]
        try:
            await self._rewrite(actor, text, "put_values", edit)
        except IdentifierNotFound:
            key = f"node:put:{secrets.token_hex(16)}"
            await self.register_batch(actor, key, [RecordInput(text, values)])

    async def drop_values(self, actor: Actor, text: str, indexes: Collection[int]) -> None:
        """Removes the values at `indexes` that the record has (none: nothing changes)."""
        gone = set(indexes)

        def edit(current: tuple[Value, ...]) -> Sequence[ValueInput]:
            if not gone & {v.index for v in current}:
                raise _Unchanged
            return [v for v in current if v.index not in gone]
        try:
            await self._rewrite(actor, text, "drop_values", edit)
        except (IdentifierNotFound, _Unchanged):
            return

    async def _rewrite(self, actor: Actor, text: str, action: str,
                       edit: Callable[[tuple[Value, ...]], Sequence[ValueInput]],
                       expected_version: int = 0) -> Record:
        """A new version of the record with `edit(current values)` as its values, decided under
        the row's lock (concurrent edits of one record never lose each other's changes),
        validated, template-checked, signed, audited and synced like any write."""
        ident = identifiers.parse(text)
        _check_version(expected_version)
        now = clock.now()
        stamp = clock.iso(now)
        row = (await self._writable(actor, {ident.prefix}))[ident.prefix]
        entry = AuditEntry.of(actor, action, str(ident), prefix=ident.prefix)
        signer = self.signer
        checked: tuple[Value, ...] = ()

        def build(version: int, created_at: datetime, current_json: str
                  ) -> tuple[str, BatchSignature | None, bytes]:
            nonlocal checked
            current = tuple(Value.from_json(v) for v in orjson.loads(current_json))
            checked = _keep_timestamps(self._values(edit(current), stamp, "values"), current)
            if row.template is not None and not templates.exempt(checked):
                templates.validate(row.template, checked, field="values",
                                   template=row.template_name or "")
            vals = orjson.dumps([v.to_json() for v in checked]).decode()
            if signer is None:
                return vals, None, b""
            signed = signer.sign([signed_content(str(ident), signer.node_prefix, version,
                                                 clock.iso(created_at), clock.iso(now), checked)])
            return vals, BatchSignature(signed.jws, signed.jws_pq, signed.size), signed.proofs[0]

        result = await self.handles.update(ident, expected_version, now, entry, build)
        if result is None:
            raise await self._why_missing(ident, expected_version)
        self.cache.written([str(ident)])
        version, created_at, updated_at, _, sig = result
        min_ttl = min((v.ttl for v in checked), default=86400)
        signature = None if sig is None else bundle(sig.jws, sig.index, sig.proof, sig.jws_pq)
        return Record(str(ident), checked, version, created_at, updated_at, min_ttl,
                      signer.node_prefix if signer else "", signature)

    async def delete(self, actor: Actor, text: str, expected_version: int = 0) -> int:
        ident = identifiers.parse(text)
        _check_version(expected_version)
        await self._writable(actor, {ident.prefix})
        entry = AuditEntry.of(actor, "delete", str(ident), prefix=ident.prefix)
        version = await self.handles.delete(ident, expected_version, entry)
        if version is None:
            raise await self._why_missing(ident, expected_version)
        self.cache.written([str(ident)])
        return version

    async def list_identifiers(self, actor: Actor, prefix: str, page_size: int = 0,
                               page_token: str = "") -> tuple[list[str], str]:
        """One page of identifiers under an enterprise prefix, and the next page's token."""
        prefix = identifiers.parse_prefix(prefix)
        size = page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE}", field="page_size")
        after = _decode_token(page_token, prefix) if page_token else ""
        row = await self.prefixes.get(prefix)
        if row is None:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="prefix")
        auth.require_read(actor.principal, prefix, _Owners({prefix: row}))
        suffixes = await self.handles.list_suffixes(prefix, after, size + 1)
        more = len(suffixes) > size
        suffixes = suffixes[:size]
        token = _encode_token(prefix, suffixes[-1]) if more else ""
        return [f"{prefix}/{s}" for s in suffixes], token

    def _values(self, values: Sequence[ValueInput], stamp: str, field: str) -> tuple[Value, ...]:
        return validate_values(values, max_value_bytes=self.limits.max_value_bytes,
                               max_record_bytes=self.limits.max_record_bytes,
                               timestamp=stamp, field_prefix=field)

    async def _writable(self, actor: Actor, prefixes: set[str]) -> dict[str, PrefixRow]:
        """The prefixes' rows, once the actor is known to be allowed to write under them all."""
        principal = actor.principal
        if principal is auth.ANONYMOUS:
            auth.require_write(principal, "", _Owners({}))
        rows = {r.prefix: r for r in await self._rows(prefixes)}
        owners = _Owners(rows)
        for prefix in sorted(prefixes):
            row = rows.get(prefix)
            if row is None:
                raise PrefixNotFound(f"prefix {prefix} is not held by this node",
                                     field="identifier")
            auth.require_write(principal, prefix, owners)
            if row.status != "active":
                raise FailedPrecondition(f"prefix {prefix} is {row.status}; writes are refused",
                                         field="identifier", reason=f"PREFIX_{row.status.upper()}")
        return rows

    async def _writable_in_memory(self, actor: Actor, prefixes: set[str]
                                  ) -> dict[str, PrefixState] | None:
        """The prefixes' states from the in-memory table when they allow this write, else None.

        Saves a query per batch (a round trip that, under load, also waits for its turn on
        the event loop). Only a yes is taken from memory, and only for prefixes without a
        template (validating against a template needs the current one): the write's own
        statement then checks again that every prefix is active, held by the actor's
        enterprise and without a template, so a table that is behind the database cannot let
        a write through that fresh rows would refuse. Any no, and any such mismatch, is
        decided again on rows read from the database.
        """
        table = self.table
        principal = actor.principal
        if table is None or principal.enterprise_id is None or not table.coherent():
            return None
        states = {}
        for prefix in prefixes:
            state = await table.get(prefix)
            if state is None or state.status != "active" or state.template is not None:
                return None
            try:
                auth.require_write(principal, prefix, table)
            except IdnodeError:
                return None
            states[prefix] = state
        return states

    async def _rows(self, prefixes: set[str]) -> list[PrefixRow]:
        out = []
        for prefix in sorted(prefixes):
            row = await self.prefixes.get(prefix)
            if row is not None:
                out.append(row)
        return out

    async def _why_missing(self, ident: Identifier, expected_version: int) -> Exception:
        current = await self.handles.version(ident)
        if current is None:
            return IdentifierNotFound(f"identifier {ident} is not registered",
                                      identifier=str(ident))
        return FailedPrecondition(
            f"identifier {ident} is at version {current}, not {expected_version}",
            field="expected_version", reason="VERSION_MISMATCH", identifier=str(ident))


class _Unchanged(Exception):
    """An edit that would change nothing (no new version is written)."""


def _check_version(expected_version: int) -> None:
    """0 (any version) or a version a record can have: versions are stored as bigint."""
    if not 0 <= expected_version <= MAX_BIGINT:
        raise InvalidArgument(f"expected_version {expected_version} is past any version a "
                              f"record can have (at most {MAX_BIGINT})",
                              field="expected_version")


def _require_indexes(text: str, present: set[int], wanted: Collection[int]) -> None:
    missing = sorted(set(wanted) - present)
    if missing:
        raise ValuesNotFound(f"{text} has no value at index {', '.join(map(str, missing))}",
                             field="values", identifier=text)


def _keep_timestamps(values: tuple[Value, ...], before: tuple[Value, ...]) -> tuple[Value, ...]:
    """A value's timestamp is the time of its last change: values an edit left as they were
    keep theirs."""
    old = {v.index: v for v in before}
    out = []
    for v in values:
        prev = old.get(v.index)
        if prev is not None and prev[:3] == v[:3] and prev[3:5] == v[3:5] \
                and prev.private == v.private:
            v = v._replace(timestamp=prev.timestamp)
        out.append(v)
    return tuple(out)


def _digest_before_2026_11(idempotency_key: str,
                           parsed: Sequence[tuple[Identifier, str, list[dict[str, object]], bool]],
                           stamp: bytes) -> bytes:
    """A batch's digest as earlier versions computed it, over values whose members were in
    Value.to_json's order (now they are sorted): a retry that straddles an upgrade must still
    be recognised as the batch it repeats. Only computed when a replay's digest differs."""
    digest = hashlib.sha256(idempotency_key.encode())
    for _, key, values_json, _ in parsed:
        legacy = []
        for j in values_json:
            v = {"index": j["index"], "type": j["type"], "data": j["data"], "ttl": j["ttl"],
                 "timestamp": j["timestamp"]}
            if j.get("private"):
                v["private"] = True
            legacy.append(v)
        digest.update(b"\x00".join((key.encode(), orjson.dumps(legacy).replace(stamp, b""), b"")))
    return digest.digest()


def _scoped_key(actor: Actor, key: str) -> str:
    # Keys are chosen by clients; scoping them to the enterprise keeps one tenant's key from
    # colliding with (or revealing) another's.
    owner = actor.principal.enterprise_id
    return f"{owner if owner is not None else actor.principal.key_id}:{key}"


def _check_key(key: str) -> None:
    if not key:
        raise InvalidArgument("idempotency_key is required", field="idempotency_key")
    if len(key) > MAX_KEY_LEN or not key.isascii() or not key.isprintable():
        raise InvalidArgument(f"idempotency_key must be 1..{MAX_KEY_LEN} printable ASCII characters",
                              field="idempotency_key")


def _encode_token(prefix: str, last_suffix: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([prefix, last_suffix])).decode().rstrip("=")


def _decode_token(token: str, prefix: str) -> str:
    try:
        got_prefix, after = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, TypeError):
        raise InvalidArgument("page_token is not a token this node issued",
                              field="page_token") from None
    if got_prefix != prefix or not isinstance(after, str):
        raise InvalidArgument("page_token belongs to a different listing", field="page_token")
    return after
