"""Known-answer vectors (so other implementations can compare) and properties of the
canonical form, JWS, Merkle proofs, batch signatures and key statements."""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import b64, batch, certify, jcs, merkle
from idnode.crypto.errors import KeyStoreError, VerificationError
from idnode.crypto.jws import sign_compact, verify_compact
from idnode.crypto.keys import KeyRing, SigningKey

VECTORS = Path(__file__).parent.parent / "vectors"


def jwks_of(*keys: SigningKey) -> dict[str, object]:
    return {"keys": [{**k.jwk, "kid": k.kid, "alg": k.alg} for k in keys]}


def test_jcs_rfc8785_example() -> None:
    for case in json.loads((VECTORS / "jcs.json").read_text()):
        assert jcs.canonicalize(case["input"]).decode() == case["expected"]


def test_jcs_key_order_is_utf16() -> None:
    obj = {"€": 1, "\r": 2, "1": 3, "😀": 4, "\u0080": 5, "ö": 6}
    assert list(json.loads(jcs.canonicalize(obj))) == ["\r", "1", "\u0080", "ö", "€", "😀"]


@pytest.mark.parametrize("x,text", [(1e21, "1e+21"), (1e20, "100000000000000000000"),
                                    (1e-7, "1e-7"), (0.000001, "0.000001"), (-0.0, "0"),
                                    (5e-324, "5e-324"), (123.456, "123.456")])
def test_jcs_numbers_follow_ecmascript(x: float, text: str) -> None:
    assert jcs.canonicalize(x).decode() == text


def test_jcs_refuses_nan() -> None:
    with pytest.raises(ValueError):
        jcs.canonicalize({"a": math.nan})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) |
    st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=15)


@settings(max_examples=200)
@given(json_values)
def test_jcs_is_stable_under_a_json_round_trip(value: object) -> None:
    once = jcs.canonicalize(value)
    assert jcs.canonicalize(json.loads(once)) == once


@settings(max_examples=200)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=15))
def test_fast_path_equals_the_reference_serializer(value: object) -> None:
    out: list[str] = []
    jcs._write(value, out)
    assert jcs.canonicalize(value) == "".join(out).encode()


def test_known_answer_signature_and_merkle_vectors() -> None:
    v = json.loads((VECTORS / "signing.json").read_text())
    key = SigningKey("EdDSA", ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex(v["key_seed_hex"])), 0.0)
    assert key.kid == v["kid"] and key.jwk == v["jwk"]
    c = jcs.canonicalize(v["record"])
    assert c.hex() == v["jcs_hex"]
    assert sign_compact(c, key, {"typ": "test"}) == v["jws"]  # Ed25519 is deterministic
    leaves = [bytes.fromhex(h) for h in v["merkle_leaves_hex"]]
    assert merkle.root(leaves).hex() == v["merkle_root_hex"]
    assert [p.hex() for p in merkle.inclusion_proof(leaves, 2)] == v["merkle_inclusion_2_hex"]
    assert [p.hex() for p in merkle.consistency_proof(leaves, 3)] == \
        v["merkle_consistency_3_5_hex"]


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962's recursive definition, as the reference."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k << 1 < len(hashes):
        k <<= 1
    return merkle.node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


@settings(max_examples=60)
@given(st.integers(1, 70), st.data())
def test_every_inclusion_and_consistency_proof_verifies(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = _mth(leaves)
    assert merkle.root(leaves) == root
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(leaves, i)
    assert len(proof) <= max(1, n.bit_length())
    merkle.verify_inclusion(leaves[i], i, n, proof, root)
    m = data.draw(st.integers(0, n))
    cproof = merkle.consistency_proof(leaves, m) if m else []
    merkle.verify_consistency(m, n, cproof, _mth(leaves[:m]) if m else b"", root)


@settings(max_examples=60)
@given(st.integers(2, 70), st.data())
def test_wrong_index_flipped_byte_or_truncated_path_fails(n: int, data: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = merkle.root(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = merkle.inclusion_proof(leaves, i)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaves[i], (i + 1) % n, n, proof, root)
    flipped = list(proof)
    flipped[0] = bytes([flipped[0][0] ^ 1]) + flipped[0][1:]
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaves[i], i, n, flipped, root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaves[i], i, n, proof[:-1], root)
    m = data.draw(st.integers(1, n - 1))
    cproof = merkle.consistency_proof(leaves, m)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(m, n, cproof, merkle.root(leaves[:m]), merkle.leaf_hash(b"x"))


def test_consistency_edge_cases() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(4)]
    r = merkle.root(leaves)
    merkle.verify_consistency(4, 4, [], r, r)
    merkle.verify_consistency(0, 4, [], b"", r)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(4, 4, [r], r, r)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(4, 4, [], r, merkle.leaf_hash(b"x"))
    with pytest.raises(VerificationError):
        merkle.verify_consistency(5, 4, [], r, r)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ML-DSA-65"])
def test_jws_round_trip_and_rejections(alg: str) -> None:
    key = SigningKey.generate(alg)
    token = sign_compact(b'{"a":1}', key, {"typ": "t"})
    header, payload = verify_compact(token, jwks_of(key), typ="t")
    assert header["alg"] == alg and payload == b'{"a":1}'
    other = SigningKey.generate(alg)
    with pytest.raises(VerificationError) as err:
        verify_compact(token, jwks_of(other))
    assert err.value.reason == "unknown_key"
    head, body, sig = token.split(".")
    with pytest.raises(VerificationError) as err:
        verify_compact(f"{head}.{b64.enc(b'{}')}.{sig}", jwks_of(key))
    assert err.value.reason == "bad_signature"
    none_head = b64.enc(json.dumps({"alg": "none", "kid": key.kid}).encode())
    with pytest.raises(VerificationError):
        verify_compact(f"{none_head}.{body}.", jwks_of(key))


def test_batch_of_one_and_post_quantum_double_signature() -> None:
    key, pq = SigningKey.generate(), SigningKey.generate("ML-DSA-65")
    doc = {"identifier": "88.118.8/A", "node": "88.118", "values": []}
    signed = batch.sign_batch([jcs.canonicalize(doc)], key, "88.118", pq)
    assert signed.proofs == [b""]
    served = {**doc, "signature": batch.bundle(signed.jws, 0, signed.proofs[0], signed.jws_pq)}
    batch.verify_record(served, jwks_of(key, pq), require_pq=True)
    served["signature"]["jws_pq"] = sign_compact(b'{"other":1}', pq, {"typ": batch.TYP})
    with pytest.raises(VerificationError) as err:
        batch.verify_record(served, jwks_of(key, pq))
    assert err.value.reason == "content_mismatch"


def test_key_statements() -> None:
    anchor, node_key = SigningKey.generate(), SigningKey.generate()
    st_ = certify.certify_key(anchor, "88.118", node_key.jwk, ttl_days=1)
    assert certify.verify_key_statement(st_, jwks_of(anchor))["kid"] == node_key.kid
    with pytest.raises(VerificationError) as err:
        certify.verify_key_statement(st_, jwks_of(SigningKey.generate()))
    assert err.value.reason == "wrong_anchor"
    with pytest.raises(VerificationError) as err:
        certify.verify_key_statement(st_, jwks_of(anchor), now=time.time() + 3 * 86400)
    assert err.value.reason == "expired"


def test_keyring_encrypts_at_rest_and_refuses_a_wrong_passphrase(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path, b"correct horse")
    k = ring.generate()
    ring.save()
    pem = (tmp_path / f"{k.kid}.pem").read_bytes()
    assert b"ENCRYPTED" in pem and oct((tmp_path / f"{k.kid}.pem").stat().st_mode)[-3:] == "600"
    assert "private" not in repr(k) and k.kid in repr(k)
    assert KeyRing(tmp_path, b"correct horse").load().keys[0].kid == k.kid
    with pytest.raises(KeyStoreError):
        KeyRing(tmp_path, b"wrong").load()
    with pytest.raises(KeyStoreError):
        KeyRing(tmp_path, b"")
