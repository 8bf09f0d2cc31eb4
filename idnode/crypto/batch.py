"""Amortised record signing: one JWS per batch over the root of an RFC 6962 Merkle tree whose
leaves are the records' RFC 8785 canonical JSON; each record carries its inclusion path.

A record's proof bundle: {"jws": <compact JWS>, "leaf_index": i, "proof": [b64url, ...]} and
optionally "jws_pq" (ML-DSA-65 over the same statement). The JWS header's typ is
"idnode-batch+jws"; its payload is the JCS of {"iat", "node", "root", "size"}.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import orjson

from idnode.crypto import b64, merkle
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import parse_compact, sign_compact, verify_parsed
from idnode.crypto.keys import KeySet, SigningKey

TYP = "idnode-batch+jws"


@dataclass(frozen=True, slots=True)
class BatchSignature:
    """One signed batch: its JWS (and optional post-quantum JWS) and every leaf's path."""

    jws: str
    #: An optional post-quantum signature (ML-DSA-65) over the same statement.
    jws_pq: str | None
    size: int
    #: Per leaf: the inclusion path, hashes concatenated (32 bytes each).
    proofs: list[bytes]
    root: bytes = b""

    def bundle(self, index: int) -> dict[str, Any]:
        """The proof bundle of leaf `index`."""
        return bundle(self.jws, index, self.proofs[index], self.jws_pq)


#: The name this class had first; core/signing imports it.
SignedBatch = BatchSignature


def batch_statement(root: bytes, size: int, node_prefix: str, iat: int) -> bytes:
    """The JCS bytes of the statement a batch JWS signs."""
    return canonicalize({"node": node_prefix, "root": b64.enc(root), "size": size, "iat": iat})


def sign_batch(records_canonical: Sequence[bytes], key: SigningKey, node_prefix: str,
               pq_key: SigningKey | None = None) -> BatchSignature:
    """Signs the records (their JCS bytes) with one JWS over their Merkle root, and with
    `pq_key` a second one."""
    return merkle.finish(sign_batch_in_steps(records_canonical, key, node_prefix, pq_key))


def sign_batch_in_steps(records_canonical: Sequence[bytes], key: SigningKey, node_prefix: str,
                        pq_key: SigningKey | None = None, step: int = 512
                        ) -> Generator[None, None, BatchSignature]:
    """`sign_batch`, pausing (a bare yield) between pieces of about `step` leaves' work, so
    that a caller on an event loop can serve other requests while a large batch is signed."""
    if not records_canonical:
        raise ValueError("a batch needs at least one record")
    if pq_key is not None and pq_key.alg != "ML-DSA-65":
        raise ValueError(f"pq_key must be an ML-DSA-65 key, not {pq_key.alg}")
    hashes: list[bytes] = []
    leaf_hash = merkle.leaf_hash
    for lo in range(0, len(records_canonical), step):
        hashes += [leaf_hash(c) for c in records_canonical[lo:lo + step]]
        yield
    lv = yield from merkle.levels_in_steps(hashes, 4 * step)
    root = lv[-1][0]
    statement = batch_statement(root, len(records_canonical), node_prefix, int(time.time()))
    jws = sign_compact(statement, key, {"typ": TYP})
    jws_pq = sign_compact(statement, pq_key, {"typ": TYP}) if pq_key is not None else None
    proofs = yield from merkle.all_inclusion_proofs_in_steps(lv, 4 * step)
    return BatchSignature(jws, jws_pq, len(records_canonical), proofs, root)


def bundle(jws: str, index: int, proof: bytes, jws_pq: str | None = None) -> dict[str, Any]:
    """A record's proof bundle from its batch's JWS, its index and its concatenated path."""
    out: dict[str, Any] = {"jws": jws, "leaf_index": index,
                           "proof": [b64.enc(proof[i:i + 32]) for i in range(0, len(proof), 32)]}
    if jws_pq:
        out["jws_pq"] = jws_pq
    return out


@overload
def verify_record(record: bytes, proof_bundle: Mapping[str, Any],
                  jwks: KeySet | Mapping[str, Any], *, require_pq: bool = False
                  ) -> dict[str, Any]: ...


@overload
def verify_record(record: Mapping[str, Any], proof_bundle: KeySet | Mapping[str, Any], *,
                  require_pq: bool = False) -> dict[str, Any]: ...


def verify_record(record: bytes | Mapping[str, Any], proof_bundle: Any, jwks: Any = None, *,
                  require_pq: bool = False) -> dict[str, Any]:
    """The batch statement a record's proof bundle proves it is part of; VerificationError.

    Called as verify_record(record_canonical, proof_bundle, jwks), or, for a served record
    document carrying its bundle as "signature", as verify_record(doc, jwks) (= verify_document).
    """
    if isinstance(record, (bytes, bytearray, memoryview)):
        if jwks is None:
            raise TypeError("verify_record(record_canonical, proof_bundle, jwks)")
        return verify_canonical(bytes(record), proof_bundle, jwks, require_pq=require_pq)
    if jwks is not None:
        raise TypeError("verify_record(doc, jwks): the bundle is the document's signature")
    return verify_document(record, proof_bundle, require_pq=require_pq)


def verify_canonical(record_canonical: bytes, proof_bundle: Mapping[str, Any],
                     jwks: KeySet | Mapping[str, Any], *, require_pq: bool = False
                     ) -> dict[str, Any]:
    """verify_record for a record's JCS bytes and its proof bundle."""
    # (1) parse the bundle and the JWS header: shapes first, so a malformed bundle is
    #     "malformed" rather than whatever the first use of a bad field happens to raise.
    if not isinstance(proof_bundle, Mapping) or not isinstance(proof_bundle.get("jws"), str):
        raise VerificationError("malformed", "no proof bundle with a jws")
    index, proof_text = proof_bundle.get("leaf_index"), proof_bundle.get("proof")
    if isinstance(index, bool) or not isinstance(index, int) or not isinstance(proof_text, list):
        raise VerificationError("malformed", "proof bundle needs an integer leaf_index and a "
                                             "proof array")
    proof = [b64.dec(p) for p in proof_text]
    token = parse_compact(proof_bundle["jws"])
    if token.header.get("typ") != TYP:
        raise VerificationError("wrong_type", f"JWS typ is {token.header.get('typ')!r}, "
                                              f"not {TYP!r}")
    # (2) find the key by the header's kid (unknown_key); the set caches the parsed key
    keys = KeySet.from_json(jwks)
    keys.public(token.kid)
    # (3) verify the signature: the header alg must be the key's (alg_mismatch), the signature
    #     must verify (bad_signature), a retired key must not have signed after retirement
    _, payload = verify_parsed(token, keys, typ=TYP)
    if require_pq or "jws_pq" in proof_bundle:
        pq = proof_bundle.get("jws_pq")
        if not isinstance(pq, str):
            raise VerificationError("malformed", "post-quantum signature required but absent")
        pq_token = parse_compact(pq)
        if pq_token.header["alg"] != "ML-DSA-65":
            raise VerificationError("alg_mismatch", f"jws_pq is {pq_token.header['alg']}, "
                                                    "not ML-DSA-65")
        _, pq_payload = verify_parsed(pq_token, keys, typ=TYP)
        if pq_payload != payload:
            raise VerificationError("content_mismatch", "the two signatures cover different "
                                                        "statements")
    statement = _statement(payload)
    # (4) recompute the leaf hash from the record's canonical bytes
    leaf = merkle.leaf_hash(record_canonical)
    # (5) check size/index bounds before walking (this step and the next are in this order
    #     so that an index outside the signed tree gets its own reason)
    if not 0 <= index < statement["size"]:
        raise VerificationError("index_out_of_range", f"leaf_index {index} outside the signed "
                                                      f"batch of {statement['size']}")
    # (6) walk the inclusion path to the signed root
    merkle.verify_inclusion(leaf, index, statement["size"], proof, b64.dec(statement["root"]))
    return statement


def _statement(payload: bytes) -> dict[str, Any]:
    try:
        statement = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise VerificationError("malformed", "batch statement is not JSON") from None
    if not isinstance(statement, dict):
        raise VerificationError("malformed", "batch statement is not an object")
    size, root = statement.get("size"), statement.get("root")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or not isinstance(root, str):
        raise VerificationError("malformed", "batch statement needs a positive size and a root")
    if len(b64.dec(root)) != merkle.HASH_BYTES:
        raise VerificationError("malformed", "batch statement root is not a 32-byte hash")
    return statement


def verify_document(doc: Mapping[str, Any], jwks: KeySet | Mapping[str, Any], *,
                    require_pq: bool = False) -> dict[str, Any]:
    """verify_record for a served record document whose "signature" member is its bundle;
    also checks the document names the node that signed."""
    sig = doc.get("signature")
    if not isinstance(sig, Mapping):
        raise VerificationError("malformed", "record carries no signature bundle")
    try:
        canonical = canonicalize(signed_content(doc))
    except ValueError as exc:
        raise VerificationError("malformed", f"record is not canonicalizable JSON: {exc}") from None
    statement = verify_canonical(canonical, sig, jwks, require_pq=require_pq)
    if doc.get("node") != statement.get("node"):
        raise VerificationError("content_mismatch", f"record names node {doc.get('node')!r}, "
                                                    f"the signature {statement.get('node')!r}")
    return statement


def signed_content(doc: Mapping[str, Any]) -> dict[str, Any]:
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


def private_digest(private_values: list[dict[str, Any]]) -> str:
    """base64url SHA-256 of the JCS of a record's private values."""
    return b64.enc(hashlib.sha256(canonicalize(private_values)).digest())
