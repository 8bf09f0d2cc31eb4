"""Amortised record signing: one JWS per batch over the root of an RFC 6962 Merkle tree whose
leaves are the records' RFC 8785 canonical JSON; each record carries its inclusion path.

A record's proof bundle: {"jws": <compact JWS>, "leaf_index": i, "proof": [b64url, …]}, where
the JWS payload is {"node", "root", "size", "iat"} and its header typ is "idnode-batch+jws".
Verification (any JOSE library + SHA-256) is the numbered steps in `verify_record`.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson

from idnode.crypto import b64, merkle
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact, verify_compact
from idnode.crypto.keys import SigningKey

TYP = "idnode-batch+jws"


@dataclass(frozen=True, slots=True)
class SignedBatch:
    jws: str
    #: An optional post-quantum signature (ML-DSA-65) over the same statement.
    jws_pq: str | None
    size: int
    #: Per leaf: the inclusion path, hashes concatenated (32 bytes each).
    proofs: list[bytes]


def sign_batch(canonical_records: list[bytes], key: SigningKey, node_prefix: str,
               pq_key: SigningKey | None = None) -> SignedBatch:
    leaves = [merkle.leaf_hash(c) for c in canonical_records]
    lv = merkle.levels(leaves)
    statement = canonicalize({"node": node_prefix, "root": b64.enc(lv[-1][0]),
                              "size": len(leaves), "iat": int(time.time())})
    jws = sign_compact(statement, key, {"typ": TYP})
    jws_pq = sign_compact(statement, pq_key, {"typ": TYP}) if pq_key is not None else None
    proofs = merkle.all_inclusion_proofs(lv)
    return SignedBatch(jws, jws_pq, len(leaves), proofs)


def bundle(jws: str, index: int, proof: bytes, jws_pq: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"jws": jws, "leaf_index": index,
                           "proof": [b64.enc(proof[i:i + 32]) for i in range(0, len(proof), 32)]}
    if jws_pq:
        out["jws_pq"] = jws_pq
    return out


def signed_content(doc: dict[str, Any]) -> dict[str, Any]:
    """What a served record's signature covers: the document without `signature`, with
    private values (served to owners only) replaced by the digest the node signed."""
    content = {k: v for k, v in doc.items() if k != "signature"}
    values = content.get("values", [])
    private = [v for v in values if isinstance(v, dict) and v.get("private")]
    if private:
        digest = private_digest(private)
        if content.get("private_digest") != digest:
            raise VerificationError("content_mismatch", "private values do not match the "
                                                        "signed digest")
        content["values"] = [v for v in values if not (isinstance(v, dict) and v.get("private"))]
    return content


def verify_record(doc: dict[str, Any], jwks: dict[str, Any], *, require_pq: bool = False
                  ) -> dict[str, Any]:
    """Checks a served record offline; returns the batch statement. Raises VerificationError.

    (1) parse the bundle; (2) verify the batch JWS with the node's key set; (3) recompute the
    leaf from the record's canonical JSON; (4) walk the inclusion path to the signed root;
    (5) check the record's node matches the statement's.
    """
    # (1)
    sig = doc.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("jws"), str):
        raise VerificationError("malformed", "record carries no signature bundle")
    try:
        index = int(sig["leaf_index"])
        proof = [b64.dec(p) for p in sig["proof"]]
    except (KeyError, TypeError, ValueError):
        raise VerificationError("malformed", "signature bundle is incomplete") from None
    # (2)
    _, payload = verify_compact(sig["jws"], jwks, typ=TYP)
    statement = orjson.loads(payload)
    if require_pq or "jws_pq" in sig:
        if not isinstance(sig.get("jws_pq"), str):
            raise VerificationError("malformed", "post-quantum signature required but absent")
        _, pq_payload = verify_compact(sig["jws_pq"], jwks, typ=TYP)
        if pq_payload != payload:
            raise VerificationError("content_mismatch", "the two signatures cover different "
                                                        "statements")
    # (3)
    leaf = merkle.leaf_hash(canonicalize(signed_content(doc)))
    # (4)
    try:
        root = b64.dec(statement["root"])
        size = int(statement["size"])
    except (KeyError, TypeError, ValueError):
        raise VerificationError("malformed", "batch statement lacks root or size") from None
    merkle.verify_inclusion(leaf, index, size, proof, root)
    # (5)
    if doc.get("node") != statement.get("node"):
        raise VerificationError("content_mismatch", f"record names node {doc.get('node')!r}, "
                                                    f"the signature {statement.get('node')!r}")
    return statement


def private_digest(private_values: list[dict[str, Any]]) -> str:
    return b64.enc(hashlib.sha256(canonicalize(private_values)).digest())
