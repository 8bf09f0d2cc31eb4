"""SM2 (GB/T 32918) and SM3 (GB/T 32905) against the standards' published vectors and against a
second, independent implementation: the ID-SDK's own SM2Tool / SM3Tool / SignatureInfo."""
from __future__ import annotations

import os

import pytest

from idnode.crypto import hsig, sm
from idnode.crypto.keys import KeySet, SigningKey
from tests.sigtools import b64, idsdk_check

# GB/T 32905-2016 Appendix A: "abc" and "abcd" x 16.
SM3_VECTORS = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]
# GB/T 32918.5-2017 Appendix A (= GM/T 0003.5-2012 A.2): the recommended curve, user ID
# 1234567812345678, message "message digest", k = 59276E27...BC21.
D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
PX = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
PY = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
ZA = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
MSG = b"message digest"


@pytest.mark.parametrize(("data", "want"), SM3_VECTORS)
def test_sm3_matches_the_standard_with_either_backend(data: bytes, want: str) -> None:
    assert sm.sm3(data).hex() == want
    assert sm.sm3_tongsuo(data).hex() == want


def test_sm2_published_example_key_z_digest_and_signature() -> None:
    key = sm.from_scalar(D)
    nums = key.public_key().public_numbers()
    assert (nums.x, nums.y) == (PX, PY)
    assert sm.za(PX, PY).hex().upper() == ZA
    assert sm.sm3(sm.za(PX, PY) + MSG).hex().upper() == E
    sig = sm.der_signature(R, S)
    assert sm.verify(key.public_key(), sig, MSG)
    assert not sm.verify(key.public_key(), sig, b"message digesT")
    assert not sm.verify(sm.generate().public_key(), sig, MSG)
    assert not sm.verify(key.public_key(), sm.der_signature(R, S + 1), MSG)


def test_sm2_signatures_are_strict_der() -> None:
    key = sm.generate()
    sig = sm.sign(key, b"x")
    r, s = sm.rs(sig)
    assert sm.der_signature(r, s) == sig and sm.verify(key.public_key(), sig, b"x")
    # the same numbers with a superfluous leading zero, trailing bytes, r >= n: refused
    def integer(body: bytes) -> bytes:
        return b"\x02" + bytes([len(body)]) + body
    minimal_s = sm.der_signature(r, s)[2 + 2 + sig[3]:]
    long_r = integer(b"\x00" * (2 if r >> 255 else 1) + r.to_bytes(32, "big"))
    padded = b"\x30" + bytes([len(long_r) + len(minimal_s)]) + long_r + minimal_s
    assert sm.rs(sm.der_signature(r, s)) == (r, s)
    assert not sm.verify(key.public_key(), padded, b"x")
    assert not sm.verify(key.public_key(), sig + b"\x00", b"x")
    assert not sm.verify(key.public_key(), sm.der_signature(r + sm.N, s), b"x")
    assert not sm.verify(key.public_key(), b"", b"x")


def test_sm2_jwk_is_the_id_sdks_and_points_off_the_curve_are_refused() -> None:
    key = SigningKey.generate("SM2SM3")
    jwk = key.jwk
    assert set(jwk) == {"kty", "x", "y"} and jwk["kty"] == "SM2"
    assert KeySet.of(key).public(key.kid)[0] == "SM2SM3"
    bad = dict(jwk, y=jwk["x"])
    with pytest.raises(ValueError):
        sm.public_from_jwk(bad)


def test_generated_keys_suit_the_id_sdks_z_computation() -> None:
    # The ID-SDK hashes coordinates below 2^248 as 31 bytes (see sm.generate).
    for _ in range(20):
        nums = sm.generate().public_key().public_numbers()
        assert nums.x >> 248 and nums.y >> 248


def test_id_sdk_sm3_agrees() -> None:
    for data in (b"", b"abc", os.urandom(1000), "标识解析".encode()):
        assert idsdk_check("sm3", {"data": b64(data)})["digest"] == sm.sm3(data).hex()


def test_id_sdk_sm2_verifies_ours_and_ours_verifies_the_id_sdks() -> None:
    message = b'eyJhbGciOiJTTTJTTTMifQ.eyJzdWIiOiI4OC4xMTgvWCJ9'
    for _ in range(3):
        key = sm.generate()
        r, s = sm.rs(sm.sign(key, message))
        nums = key.public_key().public_numbers()
        out = idsdk_check("sm2verify", {"x": f"{nums.x:x}", "y": f"{nums.y:x}", "r": f"{r:x}",
                                        "s": f"{s:x}", "message": b64(message)})
        assert out["valid"] is True
        out = idsdk_check("sm2verify", {"x": f"{nums.x:x}", "y": f"{nums.y:x}", "r": f"{r:x}",
                                        "s": f"{s:x}", "message": b64(message + b"!")})
        assert out["valid"] is False
    theirs = idsdk_check("sm2sign", {"d": f"{D:x}", "message": b64(MSG)})
    sig = sm.der_signature(int(theirs["r"], 16), int(theirs["s"], 16))
    assert sm.verify(sm.from_scalar(D).public_key(), sig, MSG)


def test_an_id_sdk_made_sm2sm3_jws_verifies_here() -> None:
    payload = '{"sub":"0.118.8/X","iss":"301:0.NA/0.118"}'
    jws = idsdk_check("sm2jws", {"d": f"{D:x}", "payload": payload})["jws"]
    token = hsig.parse(jws)
    assert token.alg == "SM2SM3" and token.claims["sub"] == "0.118.8/X"
    assert hsig.signature_valid(token, sm.from_scalar(D).public_key())
    assert not hsig.signature_valid(token, sm.generate().public_key())


VALUES = [
    hsig.WireValue(1, "product.name", "五常大米".encode()),
    hsig.WireValue(2, "URL", b"https://example.com/r/1", ttl=600),
    hsig.WireValue(3, "lab.report", b'{"moisture": 14.2}', permissions=hsig.PRIVATE),
    hsig.WireValue(100, "HS_ADMIN", bytes(range(40)), ttl=1, ttl_type=1),
]


@pytest.mark.parametrize("alg", ["SHA-256", "SM3"])
def test_id_sdk_value_digests_agree(alg: str) -> None:
    out = idsdk_check("digests", {"alg": alg, "values": [
        {"index": v.index, "type": v.type, "data": b64(v.data), "ttlType": v.ttl_type,
         "ttl": v.ttl, "permissions": v.permissions} for v in VALUES]})
    assert out["alg"] == alg
    assert out["digests"] == [{"index": v.index, "digest": hsig.digest(v, alg)} for v in VALUES]
