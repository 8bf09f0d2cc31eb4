"""RFC 7515 JWS in compact serialization (optionally with a detached payload) for EdDSA, ES256,
ML-DSA-65 and RS256."""
from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from idnode.crypto import b64
from idnode.crypto.errors import KeyStoreError, VerificationError
from idnode.crypto.keys import ALGS, KeySet, SigningKey, verify_raw

#: Protected header members a caller may not set: they are the key's, or change how the
#: token is processed in ways a verifier here does not implement.
_RESERVED = frozenset({"alg", "kid", "crit", "b64", "jwk", "jku", "x5u", "x5c"})


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A compact JWS split into its parts; nothing about it is verified yet."""

    header: dict[str, Any]
    header_b64: str
    payload_b64: str
    signature: bytes

    @property
    def detached(self) -> bool:
        """Whether the payload section is empty (the verifier supplies the payload)."""
        return self.payload_b64 == ""

    @property
    def kid(self) -> str:
        """The protected header's kid."""
        return str(self.header["kid"])


def sign_compact(payload: bytes, key: SigningKey, extra_headers: Mapping[str, Any] | None = None,
                 detached: bool = False) -> str:
    """Compact JWS of `payload`: protected header {alg, kid, **extra_headers}; with
    `detached` the payload section is left empty."""
    if key.retired_at is not None:
        raise KeyStoreError(f"key {key.kid} is retired; sign with the active key")
    extra = dict(extra_headers or {})
    if _RESERVED & set(extra):
        raise ValueError(f"header members {sorted(_RESERVED & set(extra))} are not settable")
    header = {**extra, "alg": key.alg, "kid": key.kid}
    # Sorted keys: the same header always encodes the same way, so signatures of Ed25519 and
    # deterministic ES256 are reproducible (tests/vectors).
    header_b64 = b64.enc(orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
    payload_b64 = b64.enc(payload)
    signature = key.sign(f"{header_b64}.{payload_b64}".encode("ascii"))
    return f"{header_b64}.{'' if detached else payload_b64}.{b64.enc(signature)}"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        # RFC 7515 §4: parsers must reject (or take the last of) duplicate names; two readers
        # taking different ones would disagree on what was signed.
        raise VerificationError("malformed", "duplicate JWS header member")
    return out


def parse_compact(token: str) -> CompactJWS:
    """The parts of a compact JWS; VerificationError("malformed"/"unsupported") if it cannot
    be a token this module would accept."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise VerificationError("malformed", "a compact JWS has three dot-separated parts")
    try:
        header = json.loads(b64.dec(parts[0]), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise VerificationError("malformed", "JWS header is not JSON") from None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise VerificationError("malformed", "JWS header has no alg")
    if header["alg"] not in ALGS:
        raise VerificationError("unsupported", f"alg {header['alg']!r} is not accepted "
                                               f"(one of {', '.join(ALGS)})")
    if "crit" in header or "b64" in header:
        raise VerificationError("unsupported", "JWS with crit or b64 (RFC 7797) headers")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise VerificationError("malformed", "JWS header has no kid")
    b64.dec(parts[1])  # well-formed even when we are not going to use it
    return CompactJWS(header, parts[0], parts[1], b64.dec(parts[2]))


_VERIFIED: OrderedDict[tuple[str, bytes, bytes], None] = OrderedDict()
_VERIFIED_MAX = 4096


def verify_parsed(jws: CompactJWS, jwks: KeySet | Mapping[str, Any], payload: bytes | None = None,
                  *, typ: str | None = None) -> tuple[dict[str, Any], bytes]:
    """(header, payload) of a parsed token whose signature verifies with its kid's key."""
    if typ is not None and jws.header.get("typ") != typ:
        raise VerificationError("wrong_type", f"JWS typ is {jws.header.get('typ')!r}, "
                                              f"not {typ!r}")
    if jws.detached:
        if payload is None:
            raise VerificationError("malformed", "detached JWS: the payload must be supplied")
        payload_b64 = b64.enc(payload)
    else:
        if payload is not None and b64.enc(payload) != jws.payload_b64:
            raise VerificationError("content_mismatch", "the supplied payload is not the "
                                                        "token's")
        payload_b64 = jws.payload_b64
    keys = KeySet.from_json(jwks)
    alg, public, jwk = keys.public(jws.kid)
    if alg != jws.header["alg"]:
        raise VerificationError("alg_mismatch", f"header alg {jws.header['alg']} but key "
                                                f"{jws.kid} is {alg}")
    data = f"{jws.header_b64}.{payload_b64}".encode("ascii")
    # A node checks the same batch and tree-head signatures over and over (every scan page
    # re-verifies): remember signatures that verified, keyed by everything that decided it.
    memo = (repr(sorted(jwk.items())), jws.signature, data)
    if memo in _VERIFIED:
        _VERIFIED.move_to_end(memo)
    elif verify_raw(alg, public, jws.signature, data):
        _VERIFIED[memo] = None
        if len(_VERIFIED) > _VERIFIED_MAX:
            _VERIFIED.popitem(last=False)
    else:
        raise VerificationError("bad_signature", f"signature does not verify with key {jws.kid}")
    body = b64.dec(payload_b64)
    check_not_after_retirement(jwk, body)
    return jws.header, body


def verify_compact(token: str, jwks: KeySet | Mapping[str, Any], payload: bytes | None = None,
                   *, typ: str | None = None) -> tuple[dict[str, Any], bytes]:
    """(protected header, payload) of a valid token; VerificationError saying why not.

    `payload` is required for a detached token and, for an attached one, must equal its
    payload. `typ`, when given, must be the header's typ.
    """
    return verify_parsed(parse_compact(token), jwks, payload, typ=typ)


def check_not_after_retirement(jwk: Mapping[str, Any], payload: bytes) -> None:
    """Refuses a retired key's signature over a JSON payload whose iat is after retirement.

    Payloads without an iat carry no date to judge, so they keep verifying. This catches a
    retired key still in use by mistake; a thief of the key can backdate iat, which is why
    a compromised key is also dropped from the anchor's statements (docs/SIGNING.md).
    """
    retired_at = jwk.get("idnode:retired_at")
    if retired_at is None:
        return
    if not isinstance(retired_at, (int, float)) or isinstance(retired_at, bool):
        raise VerificationError("malformed", f"key {jwk.get('kid')}: idnode:retired_at is "
                                             "not a number")
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    iat = claims.get("iat") if isinstance(claims, dict) else None
    if isinstance(iat, (int, float)) and not isinstance(iat, bool) and iat > retired_at:
        raise VerificationError("retired_key_after_retirement",
                                f"key {jwk.get('kid')} was retired at {retired_at}, the "
                                f"signature is dated {iat}")


def find_key(jwks: KeySet | Mapping[str, Any], kid: str) -> dict[str, Any]:
    """A copy of the JWK with `kid`; VerificationError("unknown_key") if there is none."""
    return dict(KeySet.from_json(jwks).get(kid))
