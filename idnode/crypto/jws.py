"""RFC 7515 JWS, compact serialization, for EdDSA, ES256 and ML-DSA-65."""
from __future__ import annotations

from typing import Any

import orjson

from idnode.crypto import b64
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import SigningKey, public_from_jwk, verify_raw


def sign_compact(payload: bytes, key: SigningKey, headers: dict[str, Any] | None = None) -> str:
    header = {"alg": key.alg, "kid": key.kid, **(headers or {})}
    signing_input = b64.enc(orjson.dumps(header, option=orjson.OPT_SORT_KEYS)) + "." + \
        b64.enc(payload)
    return signing_input + "." + b64.enc(key.sign(signing_input.encode("ascii")))


def find_key(jwks: dict[str, Any], kid: str) -> dict[str, Any]:
    for jwk in jwks.get("keys", []):
        if jwk.get("kid") == kid:
            return dict(jwk)
    raise VerificationError("unknown_key", f"no key {kid!r} in the key set")


def verify_compact(token: str, jwks: dict[str, Any], *, typ: str | None = None
                   ) -> tuple[dict[str, Any], bytes]:
    """(protected header, payload) of a valid token; VerificationError saying why not."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise VerificationError("malformed", "a compact JWS has three parts")
    try:
        header = orjson.loads(b64.dec(parts[0]))
    except orjson.JSONDecodeError:
        raise VerificationError("malformed", "JWS header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise VerificationError("malformed", "JWS header has no alg")
    if header["alg"] == "none" or "crit" in header:
        raise VerificationError("unsupported", f"alg {header['alg']!r} / crit not accepted")
    if typ is not None and header.get("typ") != typ:
        raise VerificationError("malformed", f"JWS typ is {header.get('typ')!r}, not {typ!r}")
    jwk = find_key(jwks, str(header.get("kid", "")))
    alg, public = public_from_jwk(jwk)
    if alg != header["alg"] or jwk.get("alg", alg) != alg:
        raise VerificationError("bad_signature", f"header alg {header['alg']} does not match "
                                                 f"key {header.get('kid')} ({alg})")
    payload = b64.dec(parts[1])
    if not verify_raw(alg, public, b64.dec(parts[2]), (parts[0] + "." + parts[1]).encode()):
        raise VerificationError("bad_signature", f"signature does not verify with key "
                                                 f"{header.get('kid')}")
    return header, payload
