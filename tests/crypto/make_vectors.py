"""Writes tests/vectors/{merkle,signing}.json: `PYTHONPATH=. .venv/bin/python -m
tests.crypto.make_vectors`. The vectors are outputs checked in once; re-running must not
change them (test_vectors asserts the code still produces exactly these)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from idnode.crypto import b64, batch
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import SigningKey
from tests.crypto import reference

VECTORS = Path(__file__).parent.parent / "vectors"
# RFC 6962 reference test data (certificate-transparency's merkle tree tests): 8 leaves.
RFC6962_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                  "606162636465666768696a6b6c6d6e6f"]
ED25519_SEED = bytes(range(32))                 # 00 01 .. 1f
P256_SCALAR = bytes(range(1, 33))               # 01 02 .. 20, far below the group order
MLDSA_SEED = bytes(range(32, 64))               # 20 21 .. 3f
RECORD: dict[str, Any] = {
    "identifier": "0.118.8/RICE-2026-000001", "node": "0.118", "version": 1,
    "created": "2026-11-24T00:00:00.000Z", "updated": "2026-11-24T00:00:00.000Z",
    "values": [{"index": 1, "type": "product.name",
                "data": {"format": "string", "value": "五常大米"}, "ttl": 86400,
                "timestamp": "2026-11-24T00:00:00.000Z"}]}
BATCH_IAT = 1795996800  # 2026-11-24T00:00:00Z


def hexes(hs: list[bytes]) -> list[str]:
    return [h.hex() for h in hs]


def merkle_vectors() -> dict[str, Any]:
    leaves = [reference.leaf(bytes.fromhex(x)) for x in RFC6962_LEAVES]
    out: dict[str, Any] = {
        "comment": "RFC 6962 test data: leaf inputs (hex), then for each tree size the root, "
                   "every leaf's inclusion path and every consistency proof, computed with "
                   "the recursive definitions of RFC 6962 §2.1 (tests/crypto/reference.py).",
        "leaf_inputs_hex": RFC6962_LEAVES, "leaf_hashes_hex": hexes(leaves),
        "empty_root_hex": reference.mth([]).hex(), "trees": []}
    for n in range(1, len(leaves) + 1):
        d = leaves[:n]
        out["trees"].append({
            "size": n, "root_hex": reference.mth(d).hex(),
            "inclusion": [{"index": i, "path_hex": hexes(reference.path(i, d))} for i in range(n)],
            "consistency": [{"size1": m, "proof_hex": hexes(reference.proof(m, d))}
                            for m in range(1, n)]})
    return out


def signing_vectors() -> dict[str, Any]:
    ed = SigningKey.from_seed("EdDSA", ED25519_SEED)
    es = SigningKey.from_seed("ES256", P256_SCALAR)
    pq = SigningKey.from_seed("ML-DSA-65", MLDSA_SEED)
    c = canonicalize(RECORD)
    records = [canonicalize({**RECORD, "identifier": f"0.118.8/RICE-2026-00000{i}"})
               for i in range(1, 4)]
    leaves = [reference.leaf(r) for r in records]
    root = reference.mth(leaves)
    statement = batch.batch_statement(root, len(records), "0.118", BATCH_IAT)
    batch_jws = sign_compact(statement, ed, {"typ": batch.TYP})
    return {
        "comment": "Fixed keys and their exact outputs. Ed25519 and RFC 6979 ES256 are "
                   "deterministic, so another implementation must produce these JWS byte for "
                   "byte; ML-DSA-65 signing is randomised, so its JWS only has to verify.",
        "record": RECORD, "jcs_hex": c.hex(),
        "eddsa": {"seed_hex": ED25519_SEED.hex(), "jwk": ed.jwk, "kid": ed.kid,
                  "jws": sign_compact(c, ed, {"typ": "test"}),
                  "jws_detached": sign_compact(c, ed, {"typ": "test"}, detached=True)},
        "es256": {"d_hex": P256_SCALAR.hex(), "jwk": es.jwk, "kid": es.kid,
                  "jws": sign_compact(c, es, {"typ": "test"})},
        "mldsa65": {"seed_hex": MLDSA_SEED.hex(), "jwk": pq.jwk, "kid": pq.kid,
                    "jws": sign_compact(c, pq, {"typ": "test"})},
        "batch": {"node": "0.118", "iat": BATCH_IAT, "records_jcs_hex": [r.hex() for r in records],
                  "leaf_hashes_hex": hexes(leaves), "root_b64": b64.enc(root),
                  "statement_jcs": statement.decode(), "jws": batch_jws,
                  "bundles": [{"jws": batch_jws, "leaf_index": i,
                               "proof": [b64.enc(p) for p in reference.path(i, leaves)]}
                              for i in range(len(records))]},
    }


def write(name: str, data: dict[str, Any]) -> None:
    (VECTORS / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write("merkle.json", merkle_vectors())
    write("signing.json", signing_vectors())
