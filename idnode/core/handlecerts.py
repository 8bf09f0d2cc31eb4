"""The certificates of the Handle and IDIS signature forms (docs/SIGNING.md): the anchor's
HS_CERT for a node's record key, the federation's root record 0.0/0.0 (the anchor keys and
their self-issued certificates), the check a node makes of a certificate the top-level node
issued it, and the top-level node's issuer. The forms served with records are in
core/handleform.py."""
from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from idnode.core import clock
from idnode.core.records import Value
from idnode.crypto import hsig, sm
from idnode.crypto.hdlkeys import handle_key_bytes
from idnode.crypto.keys import SigningKey

#: The index of a key in the references that name it: the anchor's at 0.0/0.0 (HS_PUBKEY), the
#: node's at 0.NA/<node prefix> (Handle's convention for admin keys is 300).
KEY_INDEX = {"RS256": 300, "SM2SM3": 301}
#: The anchor's self-issued certificates in the root record 0.0/0.0.
ROOT_CERT_INDEX = {"RS256": 400, "SM2SM3": 401}
TTL = 86_400
#: nbf lies this far before iat: hdllib checks nbf <= now with no allowance for clock skew.
SKEW = 300
ROOT = hsig.ROOT_HANDLE
_PUBLIC_PERMS = (("derivedPrefixes", ""), ("handlesUnderThisPrefix", ""))


def node_perms(node_prefix: str) -> list[dict[str, str]]:
    """What the anchor lets a node sign: identifiers under its prefix and its enterprises'."""
    return [{"perm": p, "handle": f"0.NA/{node_prefix}"} for p, _ in _PUBLIC_PERMS]


def value_types(alg: str, forms: Sequence[str]) -> tuple[str, str]:
    """(HS_CERT type, HS_SIGNATURE type) of a form, given all the forms served."""
    if alg == sm.ALG and "RS256" in forms:
        return "HS_CERT.SM2", "HS_SIGNATURE.SM2"
    return hsig.HS_CERT, hsig.HS_SIGNATURE


def node_ref(alg: str, node_prefix: str) -> str:
    return hsig.ref(KEY_INDEX[alg], f"0.NA/{node_prefix}")


def root_ref(alg: str) -> str:
    return hsig.ref(KEY_INDEX[alg], ROOT)


def issue_node_cert(anchor: SigningKey, node_prefix: str, node_jwk: Mapping[str, Any], *,
                    days: float = 365, now: float | None = None) -> str:
    """The anchor's HS_CERT for a node's record key (RS256 key by an RS256 anchor key, SM2 by
    SM2): subject KEY_INDEX:0.NA/<node>, issuer KEY_INDEX:0.0/0.0."""
    at = int(time.time() if now is None else now)
    return hsig.certify(node_ref(anchor.alg, node_prefix), node_jwk, node_perms(node_prefix),
                        root_ref(anchor.alg), anchor, iat=at, nbf=at - SKEW,
                        exp=at + int(days * 86400))


def root_values(anchors: Sequence[SigningKey], *, days: float = 3650,
                now: float | None = None) -> tuple[Value, ...]:
    """The root record 0.0/0.0 of a federation: per anchor key, its public key (HS_PUBKEY:
    Handle's binary encoding for RSA, which hdllib reads as a trust root; the PEM the ID-SDK
    stores for SM2) and its self-issued certificate (HS_CERT), where chains end."""
    at = int(time.time() if now is None else now)
    algs = [a.alg for a in anchors]
    stamp = clock.iso(datetime.fromtimestamp(at, timezone.utc))
    out = []
    for a in sorted(anchors, key=lambda k: KEY_INDEX[k.alg]):
        key_bytes = (handle_key_bytes(a.private.public_key()) if a.alg == "RS256"
                     else sm.public_pem(a.private.public_key()))
        out.append(Value(KEY_INDEX[a.alg], "HS_PUBKEY", base64.b64encode(key_bytes).decode(),
                         "base64", TTL, stamp))
        cert = hsig.certify(root_ref(a.alg), a.jwk, [{"perm": "everything"}], root_ref(a.alg),
                            a, iat=at, nbf=at - SKEW, exp=at + int(days * 86400))
        out.append(Value(ROOT_CERT_INDEX[a.alg], value_types(a.alg, algs)[0], cert, "string",
                         TTL, stamp))
    return tuple(sorted(out, key=lambda v: v.index))


def bootstrap_json(root: Sequence[Value]) -> dict[str, Any]:
    """The root record in hdllib's bootstrap_handles shape, with the RSA parts only (hdllib
    knows no SM2): a trust-roots file Handle.Net's verifier reads, whose 0.0/0.0 HS_PUBKEY
    values are the roots and whose records it uses before asking a server."""
    values = [v for v in root if v.index in (KEY_INDEX["RS256"], ROOT_CERT_INDEX["RS256"])]
    rest = [{"index": v.index, "type": v.type, "data": {"format": v.format, "value": v.data},
             "ttl": v.ttl, **({"timestamp": v.timestamp} if v.timestamp else {})}
            for v in values]
    return {"handles": {ROOT: {"handle": ROOT, "values": rest}}}


def issued_by_anchor(pinned: Mapping[str, Any], node_prefix: str, key: SigningKey, cert: str,
                     root: Sequence[Value], now: float | None = None) -> str | None:
    """Why a certificate the top-level node issued for `key` is not acceptable, or None: it
    must certify exactly this key for this node, be valid now, and be signed by an anchor
    key the operator pinned whose self-issued root certificate is in `root`."""
    at = time.time() if now is None else now
    try:
        token = hsig.parse(cert)
    except Exception as exc:  # noqa: BLE001 - any fault is a refusal, said in words
        return f"unreadable certificate: {exc}"
    c = token.claims
    if token.alg != key.alg or c.get("sub") != node_ref(key.alg, node_prefix):
        return f"certifies {c.get('sub')!r} with {token.alg}, not {key.alg} {node_ref(key.alg, node_prefix)}"
    if not hsig.same_key(c.get("publicKey") or {}, key.jwk):
        return "certifies another key than this node's"
    if not (isinstance(c.get("exp"), int) and c["exp"] > at):
        return "expired"
    kty = "RSA" if key.alg == "RS256" else sm.KTY
    pinned_roots = [k for k in pinned.get("keys") or []
                    if isinstance(k, dict) and str(k.get("kty")).upper() == kty]
    if not any(hsig.signature_valid(token, hsig.public_key(k)) for k in pinned_roots):
        return (f"not signed by a pinned {kty} anchor key (pin `idnode top anchor --format all`"
                " to serve the Handle and IDIS forms)")
    rooted = [v for v in root if v.index == ROOT_CERT_INDEX[key.alg]]
    if not rooted:
        return "the root record lacks the anchor's self-issued certificate"
    rc = hsig.parse(rooted[0].data)
    if not (rc.self_issued and any(hsig.same_key(rc.claims.get("publicKey") or {}, k)
                                   for k in pinned_roots)
            and hsig.signature_valid(rc, hsig.public_key(rc.claims["publicKey"]))):
        return "the root record's certificate is not the pinned anchor's"
    return None


def handle_certifier(anchor_keys: Sequence[SigningKey], *, days: float = 365
                     ) -> Callable[[str, str], tuple[dict[str, str], str]]:
    """The top-level node's issuer of HS_CERTs: for each RSA or SM2 key a node presents, a
    certificate by the anchor's Handle root of that algorithm; with the root record (made
    once, the same for every node)."""
    import orjson

    from idnode.crypto.keys import public_from_jwk

    by_alg = {k.alg: k for k in anchor_keys}
    root = orjson.dumps([v.to_json() for v in root_values(list(anchor_keys))]).decode()

    def certify(node_prefix: str, handle_keys_json: str) -> tuple[dict[str, str], str]:
        certs: dict[str, str] = {}
        for jwk in orjson.loads(handle_keys_json).get("keys", []):
            alg, _ = public_from_jwk(jwk)  # a usable public key, or VerificationError
            if alg not in by_alg:
                raise ValueError(f"a {alg} key: Handle-form keys are RS256 or SM2SM3")
            certs[alg] = issue_node_cert(by_alg[alg], node_prefix, jwk, days=days)
        return certs, root
    return certify
