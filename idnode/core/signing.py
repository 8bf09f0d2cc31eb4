"""What the node signs for each record version, and the signer that signs batches of them."""
from __future__ import annotations

import asyncio
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import orjson

from idnode.core import clock
from idnode.crypto import merkle
from idnode.crypto.batch import (SignedBatch, private_digest, sign_batch_in_steps,
                                  verify_canonical)
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import KeyRing
from idnode.core.records import Record, Value


def signed_content(identifier: str, node_prefix: str, version: int, created: str,
                   updated: str, values: Sequence[Value],
                   values_json: list[dict[str, Any]] | None = None, *,
                   has_private: bool | None = None) -> dict[str, Any]:
    """The document a record's signature covers (RFC 8785 canonical JSON of it is the leaf):
    public values in full, private ones only as a digest, so anyone can verify what anyone
    is served. `values_json`, when given, is `[v.to_json() for v in values]` already made
    (then `values` may be empty if `has_private` says whether any value is private)."""
    as_json = values_json if values_json is not None else [v.to_json() for v in values]
    private = has_private if has_private is not None else any(v.private for v in values)
    doc: dict[str, Any] = {"identifier": identifier, "node": node_prefix, "version": version,
                           "created": created, "updated": updated, "values": as_json}
    if private:
        doc["values"] = [j for j in as_json if not j.get("private")]
        doc["private_digest"] = private_digest([j for j in as_json if j.get("private")])
    return doc


class PublicLeaves:
    """canonical(signed_content(...)) of records with no private value, all of one node,
    version and times (a registration batch), from each record's identifier and its values
    already serialised in canonical form (sorted keys, compact: validate_values_json's output
    through orjson). The registration hot path: no document to build and sort per record.
    The members come in sorted order and strings are escaped by orjson, as in `canonical`."""

    def __init__(self, node_prefix: str, version: int, created: str, updated: str) -> None:
        def fixed(b: bytes) -> bytes:
            return b.replace(b"%", b"%%")
        self._format = (fixed(b'{"created":' + orjson.dumps(created) + b',"identifier":') + b"%b"
                        + fixed(b',"node":' + orjson.dumps(node_prefix) + b',"updated":'
                                + orjson.dumps(updated) + b',"values":') + b"%b"
                        + fixed(b',"version":' + str(version).encode() + b"}"))

    def leaf(self, identifier: str, values_canonical: bytes) -> bytes:
        return self._format % (orjson.dumps(identifier), values_canonical)


def canonical(doc: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of a signed_content document. Its keys are ASCII and it holds no
    floats, so orjson's sorted compact output is already canonical (tests/crypto checks the
    two agree); skipping jcs.canonicalize's type walk matters at 10,000 records a batch."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


class Signer:
    def __init__(self, keyring: KeyRing, node_prefix: str, *, post_quantum: bool = False,
                 alg: str | None = None) -> None:
        self.keyring = keyring
        self.node_prefix = node_prefix
        self.post_quantum = post_quantum
        #: The batch algorithm (signing_algorithms); None: the ring's newest classical key.
        self.alg = alg

    def sign(self, docs: Sequence[dict[str, Any]]) -> SignedBatch:
        return self.sign_canonical([canonical(d) for d in docs])

    def sign_canonical(self, leaves: Sequence[bytes]) -> SignedBatch:
        """Signs records given as their canonical bytes (`canonical`, `PublicLeaves`)."""
        return merkle.finish(self._steps(leaves))

    async def sign_canonical_yielding(self, leaves: Sequence[bytes]) -> SignedBatch:
        """`sign_canonical`, letting the event loop run between pieces of the work (a
        10,000-record batch is tens of milliseconds of hashing: reads must not wait for it)."""
        steps = self._steps(leaves)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            await asyncio.sleep(0)

    def _steps(self, leaves: Sequence[bytes]) -> Generator[None, None, SignedBatch]:
        key = (self.keyring.active(self.alg) if self.alg else None) or self.keyring.active()
        if key is None:
            raise RuntimeError("no active signing key (idnode keys generate)")
        pq = self.keyring.active("ML-DSA-65") if self.post_quantum else None
        return sign_batch_in_steps(leaves, key, self.node_prefix, pq)


def verifies(record: Record, jwks: Mapping[str, Any]) -> bool:
    """Whether a record as held now still matches the signature it was published with,
    checked with `jwks` (the node's published keys)."""
    if record.signature is None:
        return False
    doc = signed_content(record.identifier, record.node, record.version,
                         clock.iso(record.created_at), clock.iso(record.updated_at),
                         record.values)
    try:
        verify_canonical(canonical(doc), record.signature, jwks)
    except VerificationError:
        return False
    return True


def private_digest_of(record: Record) -> str | None:
    private = [v.to_json() for v in record.values if v.private]
    return private_digest(private) if private else None
