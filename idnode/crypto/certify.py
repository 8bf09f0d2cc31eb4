"""Key statements: the top-level node (trust anchor) certifies a secondary node's public key
with a JWS, so a verifier needs only the anchor's keys.

Why a signed JSON statement rather than an X.509 certificate: it is the same JOSE machinery
the records use, works unchanged for EdDSA and ML-DSA-65 keys (which X.509 tooling handles
unevenly), and carries the node prefix as a plain claim.
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import sign_compact, verify_compact
from idnode.crypto.keys import SigningKey, thumbprint

TYP = "idnode-key+jws"


def certify_key(anchor: SigningKey, node_prefix: str, jwk: dict[str, Any],
                ttl_days: int = 365) -> str:
    now = int(time.time())
    public = {k: v for k, v in jwk.items() if not k.startswith("idnode:")}
    claims = {"sub": node_prefix, "jwk": public, "iss": anchor.kid, "iat": now,
              "exp": now + ttl_days * 86400}
    return sign_compact(canonicalize(claims), anchor, {"typ": TYP})


def verify_key_statement(token: str, anchor_jwks: dict[str, Any], *, now: float | None = None
                         ) -> dict[str, Any]:
    """The certified JWK (with `kid` and the node as `idnode:node`)."""
    try:
        _, payload = verify_compact(token, anchor_jwks, typ=TYP)
    except VerificationError as exc:
        if exc.reason in ("unknown_key", "bad_signature"):
            raise VerificationError("wrong_anchor", f"key statement is not from the trust "
                                                    f"anchor: {exc.message}") from None
        raise
    claims = orjson.loads(payload)
    if (now or time.time()) > claims.get("exp", 0):
        raise VerificationError("expired", f"key statement for {claims.get('sub')} expired")
    jwk = dict(claims["jwk"])
    kid = thumbprint(jwk)
    if jwk.get("kid", kid) != kid:
        raise VerificationError("malformed", "certified kid is not the key's thumbprint")
    jwk["kid"] = kid
    jwk["idnode:node"] = claims["sub"]
    return jwk


def certified_jwks(statements: dict[str, str], anchor_jwks: dict[str, Any]) -> dict[str, Any]:
    """The node keys the anchor vouches for, as a JWKS to verify records with."""
    return {"keys": [verify_key_statement(t, anchor_jwks) for t in statements.values()]}
