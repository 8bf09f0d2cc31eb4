"""Batch signatures: every record of a batch verifies alone, with precise reasons otherwise."""
from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import b64, batch
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import KeySet, SigningKey

KEY = SigningKey.generate()
PQ = SigningKey.generate("ML-DSA-65")
JWKS = KeySet.of(KEY, PQ)


def records(n: int) -> list[bytes]:
    return [canonicalize({"identifier": f"0.118.8/X-{i}", "node": "0.118", "version": 1,
                          "values": [{"index": 1, "data": i}]}) for i in range(n)]


def reason(record: bytes, bundle: dict[str, Any], jwks: Any = JWKS, **kw: Any) -> str:
    with pytest.raises(VerificationError) as err:
        batch.verify_record(record, bundle, jwks, **kw)
    return err.value.reason


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 150), st.data())
def test_every_record_verifies_alone(n: int, data: st.DataObject) -> None:
    recs = records(n)
    signed = batch.sign_batch(recs, KEY, "0.118")
    assert signed.size == n and len(signed.proofs) == n
    i = data.draw(st.integers(0, n - 1))
    bundle = signed.bundle(i)
    assert set(bundle) == {"jws", "leaf_index", "proof"}
    statement = batch.verify_record(recs[i], bundle, JWKS)
    assert statement["size"] == n and statement["node"] == "0.118"
    assert b64.dec(statement["root"]) == signed.root
    assert len(bundle["proof"]) <= (n - 1).bit_length()
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i))
        assert reason(recs[j], bundle) == "root_mismatch"  # another record, this record's proof
        assert reason(recs[i], {**bundle, "leaf_index": j}) in ("root_mismatch",
                                                                "bad_inclusion_path")


def test_batch_of_one_has_an_empty_proof() -> None:
    rec = records(1)[0]
    signed = batch.sign_batch([rec], KEY, "0.118")
    assert signed.proofs == [b""] and signed.bundle(0)["proof"] == []
    batch.verify_record(rec, signed.bundle(0), JWKS)
    assert reason(rec + b" ", signed.bundle(0)) == "root_mismatch"


def test_statement_and_header() -> None:
    signed = batch.sign_batch(records(3), KEY, "0.118")
    head, body, _ = signed.jws.split(".")
    header = json.loads(b64.dec(head))
    assert header == {"alg": "EdDSA", "kid": KEY.kid, "typ": "idnode-batch+jws"}
    payload = b64.dec(body)
    statement = json.loads(payload)
    assert set(statement) == {"iat", "node", "root", "size"}
    assert canonicalize(statement) == payload  # the payload is JCS


def test_tampering_reasons() -> None:
    recs = records(5)
    signed = batch.sign_batch(recs, KEY, "0.118")
    b = signed.bundle(2)
    h, p, s = b["jws"].split(".")
    assert reason(recs[2], {**b, "proof": b["proof"][:-1]}) == "bad_inclusion_path"
    assert reason(recs[2], {**b, "proof": b["proof"] + b["proof"][:1]}) == "bad_inclusion_path"
    flipped = bytearray(b64.dec(b["proof"][0]))
    flipped[3] ^= 4
    assert reason(recs[2], {**b, "proof": [b64.enc(bytes(flipped))] + b["proof"][1:]}) == \
        "root_mismatch"
    assert reason(recs[2], {**b, "leaf_index": 5}) == "index_out_of_range"
    assert reason(recs[2], {**b, "leaf_index": -1}) == "index_out_of_range"
    assert reason(recs[2], {**b, "leaf_index": "2"}) == "malformed"
    assert reason(recs[2], {**b, "leaf_index": True}) == "malformed"
    assert reason(recs[2], {**b, "proof": ["not base64!"]}) == "malformed"
    assert reason(recs[2], {k: v for k, v in b.items() if k != "jws"}) == "malformed"
    raw = bytearray(b64.dec(s))
    raw[0] ^= 1
    assert reason(recs[2], {**b, "jws": f"{h}.{p}.{b64.enc(bytes(raw))}"}) == "bad_signature"
    assert reason(recs[2], b, KeySet.of(SigningKey.generate())) == "unknown_key"
    # a statement of another typ (e.g. a key statement) is not a batch statement
    other = sign_compact(b64.dec(p), KEY, {"typ": "idnode-key+jws"})
    assert reason(recs[2], {**b, "jws": other}) == "wrong_type"
    # a signed statement whose size is too small for the proof
    small = batch.batch_statement(signed.root, 2, "0.118", 0)
    assert reason(recs[2], {**b, "jws": sign_compact(small, KEY, {"typ": batch.TYP})}) == \
        "index_out_of_range"
    nonsense = sign_compact(b'{"size":0,"root":"x"}', KEY, {"typ": batch.TYP})
    assert reason(recs[2], {**b, "jws": nonsense}) == "malformed"


def test_a_retired_key_keeps_old_batches_verifying() -> None:
    key = SigningKey.generate()
    recs = records(2)
    signed = batch.sign_batch(recs, key, "0.118")
    statement = json.loads(b64.dec(signed.jws.split(".")[1]))
    retired = KeySet.of(key.retire(statement["iat"] + 10))
    batch.verify_record(recs[0], signed.bundle(0), retired)
    too_early = KeySet.of(key.retire(statement["iat"] - 10))
    assert reason(recs[0], signed.bundle(0), too_early) == "retired_key_after_retirement"


def test_post_quantum_double_signature() -> None:
    recs = records(3)
    signed = batch.sign_batch(recs, KEY, "0.118", PQ)
    assert signed.jws_pq is not None
    assert json.loads(b64.dec(signed.jws_pq.split(".")[0]))["alg"] == "ML-DSA-65"
    assert signed.jws_pq.split(".")[1] == signed.jws.split(".")[1]  # the same statement
    b = signed.bundle(1)
    batch.verify_record(recs[1], b, JWKS, require_pq=True)
    plain = batch.sign_batch(recs, KEY, "0.118")
    assert reason(recs[1], plain.bundle(1), require_pq=True) == "malformed"
    forged_pq = sign_compact(b'{"other":1}', PQ, {"typ": batch.TYP})
    assert reason(recs[1], {**b, "jws_pq": forged_pq}) == "content_mismatch"
    classical_as_pq = {**b, "jws_pq": b["jws"]}
    assert reason(recs[1], classical_as_pq) == "alg_mismatch"
    assert reason(recs[1], b, KeySet.of(KEY)) == "unknown_key"  # PQ key not in the set
    with pytest.raises(ValueError):
        batch.sign_batch(recs, KEY, "0.118", SigningKey.generate())
    with pytest.raises(ValueError):
        batch.sign_batch([], KEY, "0.118")


def test_served_documents() -> None:
    doc: dict[str, Any] = {"identifier": "0.118.8/A", "node": "0.118", "version": 2,
           "values": [{"index": 1, "data": "public"}]}
    secret = [{"index": 2, "data": "secret", "private": True}]
    signed_doc = {**doc, "private_digest": batch.private_digest(secret)}
    signed = batch.sign_batch([canonicalize(signed_doc)], KEY, "0.118")
    anonymous = {**signed_doc, "signature": signed.bundle(0)}
    assert batch.verify_document(anonymous, JWKS)["node"] == "0.118"
    assert batch.verify_record(anonymous, JWKS.to_json())["size"] == 1  # the (doc, jwks) form
    owner = {**anonymous, "values": doc["values"] + secret}
    batch.verify_document(owner, JWKS)
    with pytest.raises(VerificationError) as err:
        batch.verify_document({**owner, "values": doc["values"] + [{**secret[0], "data": "x"}]},
                              JWKS)
    assert err.value.reason == "content_mismatch"
    with pytest.raises(VerificationError) as err:
        batch.verify_document({**anonymous, "node": "0.119"}, JWKS)
    assert err.value.reason == "root_mismatch"  # the node is part of what is signed
    with pytest.raises(VerificationError) as err:
        batch.verify_document(doc, JWKS)
    assert err.value.reason == "malformed"
    with pytest.raises(TypeError):
        batch.verify_record(canonicalize(doc), signed.bundle(0))  # type: ignore[call-overload]
