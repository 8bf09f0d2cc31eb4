"""Key statements: the anchor certifies node keys; reasons for every way that fails."""
from __future__ import annotations

import json
import time

import pytest

from idnode.crypto import b64, certify
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact
from idnode.crypto.keys import ALGS, KeySet, SigningKey

ANCHOR = SigningKey.generate()
ANCHORS = KeySet.of(ANCHOR)


def reason(token: str, anchors: KeySet = ANCHORS, now: float | None = None) -> str:
    with pytest.raises(VerificationError) as err:
        certify.verify_key_statement(token, anchors, now)
    return err.value.reason


@pytest.mark.parametrize("alg", ALGS)
def test_certify_and_verify(alg: str) -> None:
    node_key = SigningKey.generate(alg)
    token = certify.certify_key(ANCHOR, "0.118", node_key.to_jwk(), ttl_days=30)
    header = json.loads(b64.dec(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "kid": ANCHOR.kid, "typ": "idnode-key+jws"}
    claims = json.loads(b64.dec(token.split(".")[1]))
    assert set(claims) == {"sub", "jwk", "iat", "exp", "iss"}
    assert claims["iss"] == ANCHOR.kid and claims["exp"] - claims["iat"] == 30 * 86400
    assert "kid" not in claims["jwk"] and "use" not in claims["jwk"]
    jwk = certify.verify_key_statement(token, ANCHORS.to_json())
    assert jwk["kid"] == node_key.kid and jwk["alg"] == alg and jwk["idnode:node"] == "0.118"
    # the result is usable as a key set for the node's signatures
    KeySet((jwk,)).public(node_key.kid)


def test_wrong_anchor_expired_and_future() -> None:
    node_key = SigningKey.generate()
    token = certify.certify_key(ANCHOR, "0.118", node_key.jwk, ttl_days=1)
    assert reason(token, KeySet.of(SigningKey.generate())) == "wrong_anchor"
    assert reason(token, now=time.time() + 2 * 86400) == "expired"
    assert reason(token, now=time.time() - 3600) == "not_yet_valid"
    certify.verify_key_statement(token, ANCHORS, time.time() - 60)  # within clock skew
    h, p, s = token.split(".")
    raw = bytearray(b64.dec(s))
    raw[5] ^= 1
    assert reason(f"{h}.{p}.{b64.enc(bytes(raw))}") == "bad_signature"


def test_statement_rules() -> None:
    node_key = SigningKey.generate()
    now = int(time.time())
    claims = {"sub": "0.118", "jwk": node_key.jwk, "iss": ANCHOR.kid, "iat": now,
              "exp": now + 100}

    def signed(c: dict, typ: str = certify.TYP) -> str:
        return sign_compact(canonicalize(c), ANCHOR, {"typ": typ})

    certify.verify_key_statement(signed(claims), ANCHORS)
    assert reason(signed({**claims, "iss": "someone-else"})) == "wrong_anchor"
    assert reason(signed(claims, "idnode-batch+jws")) == "wrong_type"
    assert reason(signed({**claims, "exp": "tomorrow"})) == "malformed"
    assert reason(signed({k: v for k, v in claims.items() if k != "sub"})) == "malformed"
    assert reason(signed({**claims, "jwk": {**node_key.jwk, "kid": "not-the-thumbprint"}})) == \
        "malformed"
    assert reason(signed({**claims, "jwk": {**node_key.jwk, "d": "secret"}})) == "malformed"
    assert reason(signed({**claims, "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}})) == \
        "unsupported"


def test_refuses_to_certify_private_material() -> None:
    with pytest.raises(ValueError):
        certify.certify_key(ANCHOR, "0.118", {**SigningKey.generate().jwk, "d": "x"})
    with pytest.raises(ValueError):
        certify.certify_key(ANCHOR, "0.118", SigningKey.generate().jwk, ttl_days=0)


def test_certified_jwks_and_retired_anchor() -> None:
    keys = [SigningKey.generate(), SigningKey.generate("ML-DSA-65")]
    statements = {k.kid: certify.certify_key(ANCHOR, "0.118", k.jwk) for k in keys}
    jwks = certify.certified_jwks(statements, ANCHORS)
    assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in keys]
    with pytest.raises(VerificationError) as err:
        certify.certified_jwks({keys[0].kid: statements[keys[1].kid]}, ANCHORS)
    assert err.value.reason == "content_mismatch"
    # statements the anchor signed before its key was retired stay valid; later ones do not
    retired = KeySet.of(ANCHOR.retire(time.time() - 3600))
    assert reason(statements[keys[0].kid], retired) == "retired_key_after_retirement"
    certify.verify_key_statement(statements[keys[0].kid], KeySet.of(ANCHOR.retire(time.time() + 5)))


def test_a_certified_retirement_is_carried_to_verifiers() -> None:
    node_key = SigningKey.generate().retire(1000.0)
    jwk = certify.verify_key_statement(certify.certify_key(ANCHOR, "0.118", node_key.to_jwk()),
                                       ANCHORS)
    assert jwk["idnode:retired_at"] == 1000
