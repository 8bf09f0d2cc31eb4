"""The Handle and IDIS signature forms of the records the node serves (docs/SIGNING.md).

Every record version of this node is served with values the enterprise did not register:
per form, the node's certificate (HS_CERT, issued by the trust anchor) and a signature over
the record's public values (HS_SIGNATURE). The Handle form is RS256 over SHA-256 digests,
what Handle.Net's own verifier (hdllib's HandleRecordTrustVerifier) accepts; the IDIS form is
SM2 with SM3 over SM3 digests, as CAICT's ID-SDK defines them (商用密码).

Why lazily: one RSA or SM2 signature per record (a few hundred microseconds each) would cost a
10,000-record registration seconds; the JOSE batch signature (one per batch) is what
registration pays. A record's HS_SIGNATURE is made on the first read that serves it in a Handle
form, only after the record's values are checked against that JOSE signature (so values
changed behind the node's back are never signed afresh), and kept (store.hsigs) for every
later read and every process. A kept signature is served only for the version it was made
for: an update, or a re-registration, gets a new one; tampering with a signed version shows
as a digest that no longer matches.

The node's values sit at indexes enterprises may not use (records.RESERVED_INDEX_MIN up):

    2147483600 HS_CERT       the node's RS256 certificate     Handle form
    2147483601 HS_SIGNATURE  RS256 over SHA-256 digests        Handle form
    2147483610 HS_CERT       the node's SM2 certificate       IDIS form
    2147483611 HS_SIGNATURE  SM2SM3 over SM3 digests           IDIS form

Beside the Handle form the IDIS values are typed HS_CERT.SM2 / HS_SIGNATURE.SM2: hdllib fails
a record on any HS_SIGNATURE it cannot parse (it knows no SM2), and ignores subtypes.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from idnode.core import clock
from idnode.core.errors import Unavailable
from idnode.core.handlecerts import (ROOT, ROOT_CERT_INDEX, SKEW, TTL, node_ref,
                                     value_types)
from idnode.core.records import RESERVED_INDEX_MIN, Record, Value
from idnode.core.signing import verifies
from idnode.crypto import hsig
from idnode.crypto.keys import SigningKey
from idnode.core.ports import FormSignatures
from idnode.model.rows import HsRow

log = logging.getLogger(__name__)

FORMS = ("RS256", "SM2SM3")
#: Per form: (HS_CERT index, HS_SIGNATURE index) in the served record.
INDEXES = {"RS256": (2_147_483_600, 2_147_483_601), "SM2SM3": (2_147_483_610, 2_147_483_611)}
_KEY = ("handle-forms",)


def wire(v: Value) -> hsig.WireValue:
    """A stored value as the Handle protocol serves it (api/handle/convert.wire_value's rule:
    base64 data decoded, text as UTF-8; public or admin-only permissions; relative TTL)."""
    data = base64.b64decode(v.data) if v.format == "base64" else v.data.encode("utf-8")
    return hsig.WireValue(v.index, v.type, data, v.ttl,
                          hsig.PRIVATE if v.private else hsig.PUBLIC)


@dataclass(frozen=True, slots=True)
class Form:
    """One signature form as this node serves it: its record key and certificate."""

    alg: str
    key: SigningKey
    cert: str
    cert_type: str
    sig_type: str
    issuer: str
    cert_id: str
    cert_exp: int
    cert_iat: int

    @staticmethod
    def of(key: SigningKey, cert: str, node_prefix: str, forms: Sequence[str]) -> Form:
        claims = hsig.parse(cert).claims
        cert_type, sig_type = value_types(key.alg, forms)
        return Form(key.alg, key, cert, cert_type, sig_type, node_ref(key.alg, node_prefix),
                    hashlib.sha256(cert.encode()).hexdigest(), int(claims["exp"]),
                    int(claims.get("iat") or 0))

    def cert_value(self) -> Value:
        return Value(INDEXES[self.alg][0], self.cert_type, self.cert, "string", TTL,
                     clock.iso(datetime.fromtimestamp(self.cert_iat, timezone.utc)))

    def sig_value(self, jws: str, iat: int) -> Value:
        return Value(INDEXES[self.alg][1], self.sig_type, jws, "string", TTL,
                     clock.iso(datetime.fromtimestamp(iat, timezone.utc)))


class HandleForms:
    """Adds the node's HS_CERT and HS_SIGNATURE values to the records it serves."""

    def __init__(self, store: FormSignatures, node_prefix: str,
                 jwks: Callable[[], Mapping[str, Any]], *, signature_ttl: float = 30 * 86400,
                 refresh: float = 7 * 86400, remember: int = 10_000) -> None:
        self.store = store
        self.node_prefix = node_prefix
        #: The node's JOSE keys: a record's values are signed only if they verify with them.
        self.jwks = jwks
        self.signature_ttl = signature_ttl
        #: A kept signature closer than this to its exp is made afresh.
        self.refresh = min(refresh, signature_ttl / 2)
        self.forms: tuple[Form, ...] = ()
        #: The root record 0.0/0.0 as this node serves it (None until known).
        self.root: Record | None = None
        self.signed = 0
        self.refused = 0
        self._pending: dict[tuple[str, int], asyncio.Future[tuple[Value, ...] | None]] = {}
        # For callers without a cache entry to keep the values in (gRPC Resolve).
        self._recent: OrderedDict[tuple[str, int, datetime], tuple[Value, ...]] = OrderedDict()
        self._remember = remember

    def configure(self, forms: Sequence[Form], root: Sequence[Value]) -> None:
        """Sets the certificates (at start, or when the top-level node issues them)."""
        self.forms = tuple(sorted(forms, key=lambda f: INDEXES[f.alg]))
        now = datetime.now(timezone.utc)
        self.root = Record(ROOT, tuple(root), 1, now, now) if root else None
        self._recent.clear()

    # -- serving ---------------------------------------------------------------------------
    def cached(self, rendered: Mapping[Any, Any]) -> tuple[Value, ...] | None:
        """The values already made for a cache entry (its `rendered` dict), or None: then
        `values` must be awaited first (the synchronous hot paths step aside)."""
        made: tuple[Value, ...] | None = rendered.get(_KEY)
        return made

    async def values(self, record: Record, rendered: dict[Any, Any] | None = None
                     ) -> tuple[Value, ...]:
        """The node's values to serve with `record` (nothing for another node's records, or
        while no certificate is known); kept in `rendered` (a cache entry's) when given."""
        if rendered is not None and _KEY in rendered:
            return rendered[_KEY]  # type: ignore[no-any-return]
        if not self.forms:
            return ()  # not certified yet: try again later, do not remember
        memo = (record.identifier, record.version, record.created_at)
        out = self._recent.get(memo)
        if out is None:
            key = (record.identifier, record.version)
            pending = self._pending.get(key)
            if pending is not None:
                out = await asyncio.shield(pending)
            else:
                fut: asyncio.Future[tuple[Value, ...] | None] = \
                    asyncio.get_running_loop().create_future()
                self._pending[key] = fut
                try:
                    out = await self._make(record)
                    fut.set_result(out)
                except BaseException as exc:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: waiters re-raise it, nobody else must
                    raise
                finally:
                    del self._pending[key]
            if out is None:
                return ()
            self._recent[memo] = out
            if len(self._recent) > self._remember:
                self._recent.popitem(last=False)
        if rendered is not None:
            rendered[_KEY] = out
        return out

    def served(self, record: Record, extra: Sequence[Value]) -> Record:
        """`record` with the node's values added (what a Handle client resolves)."""
        return replace(record, values=record.values + tuple(extra)) if extra else record

    async def _make(self, record: Record) -> tuple[Value, ...] | None:
        """The values for one record version; None when they cannot be known now (database
        unavailable: not remembered, the next read tries again)."""
        if record.node != self.node_prefix or record.signature is None:
            return ()
        if any(v.index >= RESERVED_INDEX_MIN for v in record.values):
            log.warning("record %s holds a value at a reserved index (>= %d); served without "
                        "Handle-form signatures", record.identifier, RESERVED_INDEX_MIN)
            return ()
        prefix, _, suffix = record.identifier.partition("/")
        try:
            kept = await self.store.get(prefix, suffix)
        except Unavailable:
            return None
        now = time.time()
        chosen = self._usable(record, kept, now)
        if len(chosen) < len(self.forms):
            if not verifies(record, self.jwks()):
                # The values do not match what the node published (changed in the database
                # behind its back): sign nothing new; what was kept, if anything, is served
                # and fails as it should.
                self.refused += 1
                log.warning("record %s version %d does not match its batch signature: no "
                            "Handle-form signature made", record.identifier, record.version)
            else:
                await self._sign(record, prefix, suffix, chosen, now)
        return self._served(chosen)

    def _usable(self, record: Record, kept: Mapping[str, HsRow], now: float
                ) -> dict[str, tuple[str, int]]:
        """The kept signatures that are good for `record` now, by algorithm (JWS, iat)."""
        chosen: dict[str, tuple[str, int]] = {}
        for form in self.forms:
            row = kept.get(form.alg)
            if (row is not None and row.version == record.version
                    and row.record_created == record.created_at and row.cert_id == form.cert_id
                    and row.expires_at.timestamp() > now + self.refresh):
                chosen[form.alg] = (row.jws, _iat(row.jws))
        return chosen

    def _served(self, chosen: Mapping[str, tuple[str, int]]) -> tuple[Value, ...]:
        out: list[Value] = [f.cert_value() for f in self.forms]
        out += [f.sig_value(*chosen[f.alg]) for f in self.forms if f.alg in chosen]
        return tuple(sorted(out, key=lambda v: v.index))

    async def warm(self, entries: Sequence[tuple[Record, dict[Any, Any]]]) -> int:
        """Puts into cache entries' renders the values of the records whose signatures were
        kept and are still good (one query for all: what their first Handle-form reads would
        otherwise fetch one by one after a start). Records without are left to that first
        read, which signs them. Returns how many it put."""
        if not self.forms:
            return 0
        mine = []
        for record, rendered in entries:
            if _KEY in rendered:
                continue
            if (record.node != self.node_prefix or record.signature is None
                    or any(v.index >= RESERVED_INDEX_MIN for v in record.values)):
                rendered[_KEY] = ()  # served without forms (as _make decides)
            else:
                mine.append((record, rendered))
        keys: list[tuple[str, str]] = []
        for record, _ in mine:
            prefix, _, suffix = record.identifier.partition("/")
            keys.append((prefix, suffix))
        try:
            kept = await self.store.get_many(keys)
        except Unavailable:
            return 0
        now = time.time()
        put = 0
        for (record, rendered), key in zip(mine, keys):
            chosen = self._usable(record, kept.get(key, {}), now)
            if len(chosen) == len(self.forms):
                rendered[_KEY] = self._served(chosen)
                put += 1
        return put

    async def _sign(self, record: Record, prefix: str, suffix: str,
                    chosen: dict[str, tuple[str, int]], now: float) -> None:
        signed = [wire(v) for v in record.values if not v.private]
        signed += [wire(f.cert_value()) for f in self.forms]
        iat = int(now)
        rows = []
        for form in self.forms:
            if form.alg in chosen:
                continue
            exp = min(iat + int(self.signature_ttl), form.cert_exp)
            jws = hsig.sign_values(record.identifier, signed, form.key, form.issuer,
                                   chain=[hsig.ref(INDEXES[form.alg][0], record.identifier),
                                          hsig.ref(ROOT_CERT_INDEX[form.alg], ROOT)],
                                   iat=iat, nbf=iat - SKEW, exp=exp)
            chosen[form.alg] = (jws, iat)
            self.signed += 1
            rows.append(HsRow(form.alg, record.version, record.created_at, form.cert_id, jws,
                              datetime.fromtimestamp(exp, timezone.utc)))
        try:
            await self.store.put(prefix, suffix, rows)
        except Unavailable:
            pass  # served all the same; kept by the next read that can write


def _iat(jws: str) -> int:
    try:
        return int(hsig.parse(jws).claims.get("iat") or 0)
    except Exception:  # noqa: BLE001 - a kept token we cannot read: no timestamp
        return 0
