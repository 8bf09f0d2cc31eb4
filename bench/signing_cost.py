"""Signing and verification costs: per record in a batch, per verification, per algorithm,
each against a baseline measured in the same run (serialising the same documents).

    .venv/bin/python bench/signing_cost.py
"""
from __future__ import annotations

import time

import orjson
from common import save

from idnode.crypto import merkle
from idnode.crypto.batch import bundle, sign_batch, verify_record
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact, verify_compact
from idnode.crypto.keys import SigningKey


def doc(i: int) -> dict[str, object]:
    return {"identifier": f"0.118.8/RICE-{i:09d}", "node": "0.118", "version": 1,
            "created": "2026-11-24T00:00:00.000Z", "updated": "2026-11-24T00:00:00.000Z",
            "values": [{"index": 1, "type": "product.name", "ttl": 86400,
                        "data": {"format": "string", "value": f"五常大米 {i}"},
                        "timestamp": "2026-11-24T00:00:00.000Z"}]}


def per_item_us(fn: object, items: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best / items * 1e6


def main() -> None:
    key = SigningKey.generate("EdDSA")
    out: dict[str, object] = {}
    for n in (1_000, 10_000):
        docs = [doc(i) for i in range(n)]
        canon = [orjson.dumps(d, option=orjson.OPT_SORT_KEYS) for d in docs]
        base = per_item_us(lambda: [orjson.dumps(d) for d in docs], n)
        signed = per_item_us(lambda: sign_batch(canon, key, "0.118"), n)
        out[f"batch_{n}"] = {"serialise_us_per_record": round(base, 2),
                             "sign_batch_us_per_record": round(signed, 2),
                             "ratio_to_serialising": round(signed / base, 1),
                             "proof_hashes": len(merkle.inclusion_proof(
                                 [merkle.leaf_hash(c) for c in canon[:n]], 0))}
    docs = [doc(i) for i in range(1000)]
    signed_batch = sign_batch([canonicalize(d) for d in docs], key, "0.118")
    jwks = {"keys": [{**key.jwk, "kid": key.kid, "alg": "EdDSA"}]}
    served = {**docs[500], "signature": bundle(signed_batch.jws, 500, signed_batch.proofs[500])}
    text = orjson.dumps(served)
    parse = per_item_us(lambda: [orjson.loads(text) for _ in range(1000)], 1000)
    verify = per_item_us(lambda: [verify_record(orjson.loads(text), jwks) for _ in range(200)],
                         200)
    out["verify_one_record"] = {"parse_us": round(parse, 2), "verify_us": round(verify, 1),
                                "ratio_to_parsing": round(verify / parse, 1)}
    algs = {}
    for alg in ("EdDSA", "ES256", "ML-DSA-65"):
        k = SigningKey.generate(alg)
        ks = {"keys": [{**k.jwk, "kid": k.kid, "alg": alg}]}
        token = sign_compact(b'{"root":"x"}', k)
        algs[alg] = {"sign_us": round(per_item_us(
                         lambda k=k: [sign_compact(b'{"root":"x"}', k) for _ in range(100)], 100), 1),
                     "verify_us": round(per_item_us(
                         lambda ks=ks, t=token: [verify_compact(t, ks) for _ in range(100)], 100), 1),
                     "signature_bytes": len(k.sign(b"x"))}
    out["one_signature"] = algs
    save("signing_cost", out)


if __name__ == "__main__":
    main()
