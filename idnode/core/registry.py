"""Registration rules: batches (all or nothing, idempotent), updates, deletes, listing."""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from idnode.cache import HotCache
from idnode.core import clock, identifiers
from idnode.core.errors import (AlreadyExists, FailedPrecondition, IdentifierNotFound,
                                InvalidArgument, PrefixNotFound, TooLarge)
from idnode.core.identifiers import Identifier
from idnode.core.records import Record, Value, validate_values
from idnode.store.handles import HandleStore
from idnode.store.prefixes import PrefixStore

MAX_KEY_LEN = 128
MAX_PAGE = 1000
DEFAULT_PAGE = 100


@dataclass(frozen=True, slots=True)
class RecordInput:
    identifier: str
    values: list[Value]


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


class Registry:
    def __init__(self, handles: HandleStore, prefixes: PrefixStore, cache: HotCache,
                 limits: Limits) -> None:
        self.handles = handles
        self.prefixes = prefixes
        self.cache = cache
        self.limits = limits

    async def register_batch(self, idempotency_key: str, records: Sequence[RecordInput]
                             ) -> BatchResult:
        """Registers every record or none; a retry with the same key registers nothing twice."""
        _check_key(idempotency_key)
        if not records:
            raise InvalidArgument("a batch needs at least one record", field="records")
        if len(records) > self.limits.max_batch:
            raise TooLarge(f"{len(records)} records, more than {self.limits.max_batch} per batch",
                           field="records")
        now = clock.now()
        stamp = clock.iso(now)
        digest = hashlib.sha256(idempotency_key.encode())
        rows: list[tuple[str, str, str]] = []
        seen: dict[str, int] = {}
        prefixes: set[str] = set()
        for i, rec in enumerate(records):
            ident = identifiers.parse(rec.identifier, field=f"records[{i}].identifier")
            key = str(ident)
            if key in seen:
                raise InvalidArgument(
                    f"identifier {key} appears twice in the batch (records[{seen[key]}] and "
                    f"records[{i}])", field=f"records[{i}].identifier", reason="DUPLICATE_IN_BATCH",
                    identifier=key)
            seen[key] = i
            values = self._values(rec.values, stamp, f"records[{i}].values")
            # The digest covers what the client sent (not the node's timestamps), so an
            # identical retry matches and a different batch under the same key does not.
            digest.update(orjson.dumps([key, [(v.index, v.type, v.format, v.data, v.ttl)
                                              for v in values]]))
            rows.append((ident.prefix, ident.suffix,
                         orjson.dumps([v.to_json() for v in values]).decode()))
            prefixes.add(ident.prefix)
        await self._check_writable(prefixes)
        outcome = await self.handles.register_batch(idempotency_key, digest.digest(), rows, now)
        if outcome.replayed and outcome.stored_digest != digest.digest():
            raise AlreadyExists(
                f"idempotency key {idempotency_key!r} was already used for a different batch",
                field="idempotency_key", reason="IDEMPOTENCY_KEY_REUSED")
        if not outcome.replayed:
            # Other processes hear the NOTIFY; this one must not wait for it to stop serving
            # a cached "not found".
            self.cache.invalidate(seen)
        return BatchResult(outcome.registered, outcome.replayed, outcome.committed_at)

    async def update_values(self, text: str, values: list[Value], expected_version: int = 0
                            ) -> Record:
        ident = identifiers.parse(text)
        now = clock.now()
        checked = self._values(values, clock.iso(now), "values")
        await self._check_writable({ident.prefix})
        vals = orjson.dumps([v.to_json() for v in checked]).decode()
        result = await self.handles.update(ident, vals, expected_version, now)
        if result is None:
            raise await self._why_missing(ident, expected_version)
        self.cache.invalidate((str(ident),))
        version, created_at, updated_at = result
        min_ttl = min((v.ttl for v in checked), default=86400)
        return Record(str(ident), checked, version, created_at, updated_at, min_ttl)

    async def delete(self, text: str, expected_version: int = 0) -> int:
        ident = identifiers.parse(text)
        await self._check_writable({ident.prefix})
        version = await self.handles.delete(ident, expected_version)
        if version is None:
            raise await self._why_missing(ident, expected_version)
        self.cache.invalidate((str(ident),))
        return version

    async def list(self, prefix: str, page_size: int = 0, page_token: str = ""
                   ) -> tuple[list[str], str]:
        """One page of identifiers under an enterprise prefix, and the next page's token."""
        prefix = identifiers.parse_prefix(prefix)
        size = page_size or DEFAULT_PAGE
        if not 1 <= size <= MAX_PAGE:
            raise InvalidArgument(f"page_size must be 1..{MAX_PAGE}", field="page_size")
        after = _decode_token(page_token, prefix) if page_token else ""
        known = await self.prefixes.statuses([prefix])
        if prefix not in known:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="prefix")
        suffixes = await self.handles.list_suffixes(prefix, after, size + 1)
        more = len(suffixes) > size
        suffixes = suffixes[:size]
        token = _encode_token(prefix, suffixes[-1]) if more else ""
        return [f"{prefix}/{s}" for s in suffixes], token

    def _values(self, values: list[Value], stamp: str, field: str) -> tuple[Value, ...]:
        return validate_values(values, max_value_bytes=self.limits.max_value_bytes,
                               max_record_bytes=self.limits.max_record_bytes,
                               timestamp=stamp, field_prefix=field)

    async def _check_writable(self, prefixes: set[str]) -> None:
        statuses = await self.prefixes.statuses(sorted(prefixes))
        for prefix in sorted(prefixes):
            status = statuses.get(prefix)
            if status is None:
                raise PrefixNotFound(f"prefix {prefix} is not held by this node",
                                     field="identifier")
            if status != "active":
                raise FailedPrecondition(f"prefix {prefix} is {status}; writes are refused",
                                         field="identifier", reason=f"PREFIX_{status.upper()}")

    async def _why_missing(self, ident: Identifier, expected_version: int) -> Exception:
        current = await self.handles.version(ident)
        if current is None:
            return IdentifierNotFound(f"identifier {ident} is not registered",
                                      identifier=str(ident))
        return FailedPrecondition(
            f"identifier {ident} is at version {current}, not {expected_version}",
            field="expected_version", reason="VERSION_MISMATCH", identifier=str(ident))


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
