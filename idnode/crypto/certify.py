"""Key statements: the top-level node (trust anchor) certifies a node's public key with a JWS,
so a verifier needs only the anchor's keys.

A signed JSON statement rather than an X.509 certificate: it is the same JOSE machinery the
records use, works unchanged for EdDSA, ES256 and ML-DSA-65 keys (which X.509 tooling handles
unevenly), and carries the node prefix as a plain claim. See docs/SIGNING.md.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import parse_compact, sign_compact, verify_parsed
from idnode.crypto.keys import PRIVATE_MEMBERS, KeySet, SigningKey, public_from_jwk, thumbprint

TYP = "idnode-key+jws"
#: How far in the future a statement's iat may lie (clock skew between anchor and verifier).
CLOCK_SKEW_SECONDS = 300
#: Members of a published JWK that a statement carries besides the key itself: retirement,
#: so a retired node key is judged by its certified retirement time.
_CARRIED = ("idnode:retired_at",)
_JWK_MEMBERS = {"OKP": ("kty", "crv", "x"), "EC": ("kty", "crv", "x", "y"),
                "AKP": ("kty", "alg", "pub"), "RSA": ("kty", "n", "e"),
                "SM2": ("kty", "x", "y")}


def _public_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    if PRIVATE_MEMBERS & set(jwk):
        raise ValueError("refusing to certify a JWK that carries private key members")
    alg, _ = public_from_jwk(jwk)
    members = {k: jwk[k] for k in _JWK_MEMBERS[str(jwk["kty"])]}
    members["alg"] = alg
    members.update({k: jwk[k] for k in _CARRIED if k in jwk})
    return members


def certify_key(anchor: SigningKey, node_prefix: str, public_jwk: Mapping[str, Any],
                ttl_days: int = 365) -> str:
    """The anchor's key statement (compact JWS) that `public_jwk` is a key of `node_prefix`,
    valid for `ttl_days`."""
    if ttl_days <= 0:
        raise ValueError("ttl_days must be positive")
    now = int(time.time())
    claims = {"sub": node_prefix, "jwk": _public_members(public_jwk), "iss": anchor.kid,
              "iat": now, "exp": now + int(ttl_days * 86400)}
    return sign_compact(canonicalize(claims), anchor, {"typ": TYP})


def verify_key_statement(token: str, anchor_jwks: KeySet | Mapping[str, Any],
                         now: float | None = None) -> dict[str, Any]:
    """The certified public JWK, with its `kid` (thumbprint), `alg` and the node as
    `idnode:node`; VerificationError ("wrong_anchor", "expired", "not_yet_valid", ...)."""
    jws = parse_compact(token)
    anchors = KeySet.from_json(anchor_jwks)
    if jws.kid not in anchors:
        raise VerificationError("wrong_anchor", f"key statement signed by {jws.kid}, which is "
                                                "not a trust anchor key")
    _, payload = verify_parsed(jws, anchors, typ=TYP)
    claims = orjson.loads(payload)
    if not (isinstance(claims, dict) and isinstance(claims.get("sub"), str)
            and isinstance(claims.get("jwk"), dict) and isinstance(claims.get("iat"), int)
            and isinstance(claims.get("exp"), int)):
        raise VerificationError("malformed", "key statement needs sub, jwk, iat and exp")
    if claims.get("iss") != jws.kid:
        raise VerificationError("wrong_anchor", f"key statement issued by {claims.get('iss')!r} "
                                                f"but signed by {jws.kid}")
    at = time.time() if now is None else now
    if at >= claims["exp"]:
        raise VerificationError("expired", f"key statement for {claims['sub']} expired at "
                                           f"{claims['exp']}")
    if claims["iat"] > at + CLOCK_SKEW_SECONDS:
        raise VerificationError("not_yet_valid", f"key statement for {claims['sub']} is dated "
                                                 f"{claims['iat']}, in the future")
    jwk = dict(claims["jwk"])
    alg, _ = public_from_jwk(jwk)
    kid = thumbprint(jwk)
    if jwk.get("kid", kid) != kid or jwk.get("alg", alg) != alg:
        raise VerificationError("malformed", "certified kid or alg does not fit the key")
    jwk.update({"kid": kid, "alg": alg, "idnode:node": claims["sub"]})
    return jwk


def certified_jwks(statements: Mapping[str, str], anchor_jwks: KeySet | Mapping[str, Any],
                   now: float | None = None) -> dict[str, Any]:
    """The node keys the anchor vouches for, as a JWKS to verify records with; each statement
    must certify the kid it is filed under."""
    keys = []
    for kid, token in statements.items():
        jwk = verify_key_statement(token, anchor_jwks, now)
        if jwk["kid"] != kid:
            raise VerificationError("content_mismatch", f"statement filed under {kid} "
                                                        f"certifies {jwk['kid']}")
        keys.append(jwk)
    return {"keys": keys}
