"""tests/vectors/signing.json: fixed keys and the exact bytes other implementations must match."""
from __future__ import annotations

import json
from pathlib import Path

from idnode.crypto import b64, batch, merkle
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact, verify_compact
from idnode.crypto.keys import KeySet, SigningKey
from tests.crypto import make_vectors

V = json.loads((Path(__file__).parent.parent / "vectors" / "signing.json").read_text())


def test_record_jcs_bytes() -> None:
    assert canonicalize(V["record"]).hex() == V["jcs_hex"]


def test_eddsa_fixed_key() -> None:
    key = SigningKey.from_seed("EdDSA", bytes.fromhex(V["eddsa"]["seed_hex"]))
    assert key.jwk == V["eddsa"]["jwk"] and key.kid == V["eddsa"]["kid"]
    c = bytes.fromhex(V["jcs_hex"])
    assert sign_compact(c, key, {"typ": "test"}) == V["eddsa"]["jws"]  # Ed25519 is deterministic
    assert sign_compact(c, key, {"typ": "test"}, detached=True) == V["eddsa"]["jws_detached"]
    assert verify_compact(V["eddsa"]["jws_detached"], KeySet.of(key), c)[1] == c


def test_es256_fixed_key() -> None:
    key = SigningKey.from_seed("ES256", bytes.fromhex(V["es256"]["d_hex"]))
    assert key.jwk == V["es256"]["jwk"] and key.kid == V["es256"]["kid"]
    c = bytes.fromhex(V["jcs_hex"])
    assert sign_compact(c, key, {"typ": "test"}) == V["es256"]["jws"]  # RFC 6979
    assert verify_compact(V["es256"]["jws"], KeySet.of(key))[1] == c


def test_mldsa65_fixed_key() -> None:
    key = SigningKey.from_seed("ML-DSA-65", bytes.fromhex(V["mldsa65"]["seed_hex"]))
    assert key.jwk == V["mldsa65"]["jwk"] and key.kid == V["mldsa65"]["kid"]
    header, payload = verify_compact(V["mldsa65"]["jws"], KeySet.of(key))
    assert header["alg"] == "ML-DSA-65" and payload.hex() == V["jcs_hex"]


def test_batch_vector() -> None:
    v = V["batch"]
    key = SigningKey.from_seed("EdDSA", bytes.fromhex(V["eddsa"]["seed_hex"]))
    recs = [bytes.fromhex(r) for r in v["records_jcs_hex"]]
    leaves = [merkle.leaf_hash(r) for r in recs]
    assert [h.hex() for h in leaves] == v["leaf_hashes_hex"]
    root = merkle.root(leaves)
    assert b64.enc(root) == v["root_b64"]
    statement = batch.batch_statement(root, len(recs), v["node"], v["iat"])
    assert statement.decode() == v["statement_jcs"]
    assert sign_compact(statement, key, {"typ": batch.TYP}) == v["jws"]
    for rec, bundle in zip(recs, v["bundles"]):
        assert batch.verify_record(rec, bundle, KeySet.of(key))["root"] == v["root_b64"]


def test_vectors_are_reproducible() -> None:
    # The generator, run now, gives the checked-in files (ML-DSA-65 signatures aside).
    fresh = make_vectors.signing_vectors()
    for section in ("eddsa", "es256", "batch"):
        assert fresh[section] == V[section]
    assert fresh["mldsa65"]["jwk"] == V["mldsa65"]["jwk"]
    on_disk = json.loads((make_vectors.VECTORS / "merkle.json").read_text())
    assert make_vectors.merkle_vectors() == on_disk
