"""RFC 7515 compact JWS: round trips, detached payloads, interop with plain `cryptography`,
published examples, and every rejection with its reason."""
from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from idnode.crypto import b64
from idnode.crypto.errors import KeyStoreError, VerificationError
from idnode.crypto.jws import parse_compact, sign_compact, verify_compact
from idnode.crypto.keys import ALGS, KeySet, SigningKey, public_from_jwk, verify_raw
from tests.crypto.helpers import flip_last_char, forge

PAYLOAD = b'{"a":1}'


def reason(token: str, jwks: object, payload: bytes | None = None, **kw: object) -> str:
    with pytest.raises(VerificationError) as err:
        verify_compact(token, jwks, payload, **kw)  # type: ignore[arg-type]
    return err.value.reason


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip_attached_and_detached(alg: str) -> None:
    key = SigningKey.generate(alg)
    ks = KeySet.of(key)
    token = sign_compact(PAYLOAD, key, {"typ": "t", "cty": "json"})
    header, payload = verify_compact(token, ks, typ="t")
    assert header == {"alg": alg, "kid": key.kid, "typ": "t", "cty": "json"}
    assert payload == PAYLOAD
    assert verify_compact(token, ks.to_json(), PAYLOAD)[1] == PAYLOAD  # a plain JWKS dict too
    detached = sign_compact(PAYLOAD, key, {"typ": "t", "cty": "json"}, detached=True)
    head, body, sig = detached.split(".")
    assert body == "" and head == token.split(".")[0]
    if alg not in ("ML-DSA-65", "SM2SM3"):  # deterministic: the attached token's signature
        assert sig == token.split(".")[2]
    assert verify_compact(detached, ks, PAYLOAD)[1] == PAYLOAD
    assert reason(detached, ks) == "malformed"  # the payload must be supplied
    assert reason(detached, ks, b'{"a":2}') == "bad_signature"
    assert reason(token, ks, b'{"a":2}') == "content_mismatch"
    assert reason(token, ks, typ="other") == "wrong_type"


@pytest.mark.parametrize("alg", ALGS)
def test_tampering(alg: str) -> None:
    key = SigningKey.generate(alg)
    ks = KeySet.of(key)
    head, body, sig = sign_compact(PAYLOAD, key).split(".")
    assert reason(f"{head}.{b64.enc(b'{}')}.{sig}", ks) == "bad_signature"
    raw = bytearray(b64.dec(sig))
    raw[len(raw) // 2] ^= 0x80
    assert reason(f"{head}.{body}.{b64.enc(bytes(raw))}", ks) == "bad_signature"
    assert reason(f"{head}.{body}.{b64.enc(bytes(raw[:-1]))}", ks) == "bad_signature"
    assert reason(f"{head}.{body}.{sig}=", ks) == "malformed"
    assert reason(f"{head}.{body}.{sig}.", ks) == "malformed"
    assert reason(f"{head}.{body}", ks) == "malformed"
    assert reason(f"{head}.{body}.{sig[:-1]}+", ks) == "malformed"
    assert reason(sign_compact(PAYLOAD, SigningKey.generate(alg)), ks) == "unknown_key"


def test_non_canonical_base64_is_refused() -> None:
    key = SigningKey.generate()
    head, body, sig = sign_compact(PAYLOAD, key).split(".")
    # 64 bytes -> 86 chars whose last one carries 4 unused bits: setting them is another
    # spelling of the same signature, which must not verify.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(sig[-1])
    other = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last | 1]
    if other != sig[-1]:
        assert reason(f"{head}.{body}.{sig[:-1]}{other}", KeySet.of(key)) == "malformed"


def test_header_rules() -> None:
    key = SigningKey.generate()
    ks = KeySet.of(key)
    assert reason(forge({"alg": "none", "kid": key.kid}, PAYLOAD, b""), ks) == "unsupported"
    assert reason(forge({"alg": "HS256", "kid": key.kid}, PAYLOAD), ks) == "unsupported"
    assert reason(forge({"alg": "ES256", "kid": key.kid}, PAYLOAD), ks) == "alg_mismatch"
    assert reason(forge({"alg": "EdDSA"}, PAYLOAD), ks) == "malformed"  # no kid
    assert reason(forge({"alg": "EdDSA", "kid": key.kid, "crit": ["exp"], "exp": 1}, PAYLOAD),
                  ks) == "unsupported"
    assert reason(forge({"alg": "EdDSA", "kid": key.kid, "b64": False}, PAYLOAD), ks) == \
        "unsupported"
    dup = b64.enc(b'{"alg":"EdDSA","kid":"' + key.kid.encode() + b'","kid":"x"}')
    assert reason(f"{dup}.{b64.enc(PAYLOAD)}.{b64.enc(bytes(64))}", ks) == "malformed"
    assert reason(f"{b64.enc(b'[1]')}.{b64.enc(PAYLOAD)}.{b64.enc(bytes(64))}", ks) == "malformed"
    assert reason(f"{b64.enc(b'nope')}.{b64.enc(PAYLOAD)}.{b64.enc(bytes(64))}", ks) == "malformed"
    bad: dict[str, Any]
    for bad in ({"alg": "ES256"}, {"kid": "x"}, {"crit": []}, {"jwk": {}}):
        with pytest.raises(ValueError):
            sign_compact(PAYLOAD, key, bad)


def test_retired_keys_verify_what_they_signed_before_retirement() -> None:
    key = SigningKey.generate()
    before = sign_compact(json.dumps({"iat": 1000}).encode(), key)
    after = sign_compact(json.dumps({"iat": 3000}).encode(), key)
    undated = sign_compact(b"opaque bytes", key)
    retired = key.retire(2000.5)
    ks = KeySet.of(retired)
    assert verify_compact(before, ks)[1] == b'{"iat": 1000}'
    assert verify_compact(undated, ks)[1] == b"opaque bytes"
    assert reason(after, ks) == "retired_key_after_retirement"
    same_second = sign_compact(json.dumps({"iat": 2000}).encode(), key)
    verify_compact(same_second, ks)  # retired_at is published floored
    with pytest.raises(KeyStoreError):
        sign_compact(PAYLOAD, retired)
    bad_set = KeySet(({**retired.to_jwk(), "idnode:retired_at": "soon"},))
    assert reason(before, bad_set) == "malformed"


def test_interop_eddsa_with_plain_cryptography() -> None:
    key = SigningKey.generate("EdDSA")
    token = sign_compact(PAYLOAD, key)
    h, p, s = token.split(".")
    Ed25519PublicKey.from_public_bytes(b64.dec(key.jwk["x"])).verify(b64.dec(s),
                                                                     f"{h}.{p}".encode())


def test_es256_signatures_are_raw_r_s_and_deterministic() -> None:
    key = SigningKey.generate("ES256")
    token = sign_compact(PAYLOAD, key)
    assert token == sign_compact(PAYLOAD, key)  # RFC 6979
    h, p, s = token.split(".")
    sig = b64.dec(s)
    assert len(sig) == 64  # r || s, not DER
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    _, public = public_from_jwk(key.jwk)
    public.verify(der, f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))
    # a DER signature in the JWS is refused (wrong length)
    der_token = f"{h}.{p}.{b64.enc(key.private.sign(f'{h}.{p}'.encode(), ec.ECDSA(hashes.SHA256())))}"
    assert reason(der_token, KeySet.of(key)) == "bad_signature"


# RFC 8037 Appendix A.4: the Ed25519 JWS of "Example of Ed25519 signing" under {"alg":"EdDSA"}.
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_JWS = ("eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt"
               "7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
# RFC 7515 Appendix A.3: an ES256 JWS (random k, so only verifiable) and its key.
RFC7515_A3_JWK = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                  "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
RFC7515_A3_JWS = ("eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9"
                  "leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmX"
                  "FCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")


def test_published_signature_examples() -> None:
    key = SigningKey.from_seed("EdDSA", b64.dec(RFC8037_D))
    h, p, s = RFC8037_JWS.split(".")
    assert key.sign(f"{h}.{p}".encode()) == b64.dec(s)
    h, p, s = RFC7515_A3_JWS.split(".")
    alg, public = public_from_jwk(RFC7515_A3_JWK)
    assert verify_raw(alg, public, b64.dec(s), f"{h}.{p}".encode())
    assert not verify_raw(alg, public, b64.dec(flip_last_char(s)), f"{h}.{p}".encode())


def test_parse_only_splits() -> None:
    key = SigningKey.generate()
    jws = parse_compact(sign_compact(PAYLOAD, key, {"typ": "x"}))
    assert jws.kid == key.kid and jws.header["typ"] == "x" and not jws.detached
    assert len(jws.signature) == 64
