"""Signatures inside Handle records: HS_SIGNATURE values (digests of a record's values, signed)
and HS_CERT values (a public key and its permissions, certified by an issuer), as Handle.Net 9's
net.handle.hdllib.trust writes and checks them, and as CAICT's ID-SDK writes them with SM2 and
SM3 (data/SignatureInfo, security/SignatureStructImpl).

Both values hold a compact JWS whose protected header is only {"alg": ...}: "RS256" (hdllib;
also RS384, RS512 and DSA's "DS256" are read) or "SM2SM3" (the ID-SDK). Payloads:

    HS_SIGNATURE {"digests": {"alg": "SHA-256" | "SM3", "digests": [{"index", "digest"}...]},
                  "chain": ["index:handle", ...], "iss": "index:handle", "sub": <handle>,
                  "iat", "nbf", "exp"}
    HS_CERT      {"perms": [{"perm": "everything" | "thisHandle" | "derivedPrefixes" |
                             "handlesUnderThisPrefix", "handle": "0.NA/..."}],
                  "publicKey": <JWK>, "iss": "index:handle", "sub": "index:handle",
                  "iat", "nbf", "exp"}

A value's digest is over its Handle encoding from the TTL type on (ttl type, ttl,
permissions, type, data, references): index and timestamp are not covered. Digests are
standard base64 with padding. See docs/SIGNING.md; `check_values` is hdllib's
HandleRecordTrustVerifier written out, step by step, with a reason for each failure.

Why one module of this length: the digests, the two value formats and the chain check are one
format whose writer and checker must agree byte for byte (and with hdllib's); kept together
they are read, and tested (tests/crypto/test_hsig.py), as one.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, padding, rsa

from idnode.crypto import b64, sm
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import SigningKey

HS_SIGNATURE = "HS_SIGNATURE"
HS_CERT = "HS_CERT"
HS_PUBKEY = "HS_PUBKEY"
ROOT_HANDLE = "0.0/0.0"
#: Handle value permissions (hdllib HandleValue): admin read 8, admin write 4, public read 2,
#: public write 1.
PERM_PUBLIC_READ = 0x02
PUBLIC = 0x08 | 0x04 | 0x02
PRIVATE = 0x08 | 0x04
TTL_RELATIVE = 0
#: The digest each signature algorithm's form uses: Handle.Net's SHA-256, the ID-SDK's SM3.
DIGEST_OF = {"RS256": "SHA-256", "SM2SM3": "SM3"}
#: Algorithms read in HS_SIGNATURE / HS_CERT values: hdllib's (RSA with SHA-2, DSA with
#: SHA-256) and the ID-SDK's SM2. SHA-1 variants (RS160, DS160) are refused.
_RSA_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}
#: hdllib ChainBuilder's bound on chain length.
MAX_CHAIN = 50


class WireValue(NamedTuple):
    """A Handle value as the protocol carries it."""

    #: Handle's name for the field; it shadows tuple.index, which nothing here calls.
    index: int  # type: ignore[assignment]
    type: str
    data: bytes
    ttl: int = 86400
    permissions: int = PUBLIC
    ttl_type: int = TTL_RELATIVE
    timestamp: int = 0
    references: tuple[tuple[str, int], ...] = ()

    @property
    def public(self) -> bool:
        return bool(self.permissions & PERM_PUBLIC_READ)


def has_type(value_type: str, wanted: str) -> bool:
    """hdllib HandleValue.hasType: the type, case-insensitively, or a subtype of it
    ("HS_SIGNATURE.SM2" has type HS_SIGNATURE)."""
    t, w = value_type.upper(), wanted.upper()
    return t == w or t.startswith(w + ".")


def digest_part(v: WireValue) -> bytes:
    """A value's Handle encoding from the TTL type on: what a digest covers."""
    t, d = v.type.encode("utf-8"), v.data
    out = [struct.pack(">BiB", v.ttl_type, v.ttl, v.permissions),
           struct.pack(">i", len(t)), t, struct.pack(">i", len(d)), d,
           struct.pack(">i", len(v.references))]
    for handle, index in v.references:
        h = handle.encode("utf-8")
        out += [struct.pack(">i", len(h)), h, struct.pack(">i", index)]
    return b"".join(out)


def digest(v: WireValue, alg: str) -> str:
    """The value's digest as an HS_SIGNATURE lists it (standard base64, padded)."""
    data = digest_part(v)
    if alg == "SHA-256":
        raw = hashlib.sha256(data).digest()
    elif alg == "SM3":
        raw = sm.sm3(data)
    else:
        raise VerificationError("unsupported", f"digest algorithm {alg!r} (SHA-256 or SM3)")
    return base64.b64encode(raw).decode("ascii")


def ref(index: int, handle: str) -> str:
    """A value reference "index:handle"."""
    return f"{index}:{handle}"


def parse_ref(text: str) -> tuple[int, str]:
    """(index, handle) of "index:handle"; index 0 for a bare handle (hdllib ValueReference)."""
    head, sep, tail = text.partition(":")
    if sep and head.isdigit():
        return int(head), tail
    return 0, text


# -- making them -------------------------------------------------------------------------------

def _jws(payload: dict[str, Any], key: SigningKey) -> str:
    if key.alg not in DIGEST_OF:
        raise ValueError(f"Handle value signatures are RS256 or SM2SM3, not {key.alg}")
    # The header is hdllib's and the ID-SDK's, exactly: {"alg": ...} and nothing else (the
    # key is found through the chain, not a kid).
    head = b64.enc(b'{"alg":"' + key.alg.encode() + b'"}')
    body = b64.enc(orjson.dumps(payload))
    signature = key.sign(f"{head}.{body}".encode("ascii"))
    return f"{head}.{body}.{b64.enc(signature)}"


def sign_values(handle: str, values: Iterable[WireValue], key: SigningKey, issuer: str, *,
                chain: Sequence[str] = (), iat: int, nbf: int, exp: int) -> str:
    """An HS_SIGNATURE's data: `key` (RS256 or SM2SM3) vouches for `values` of `handle`."""
    alg = DIGEST_OF[key.alg]
    payload: dict[str, Any] = {
        "digests": {"alg": alg, "digests": [{"index": v.index, "digest": digest(v, alg)}
                                            for v in values]}}
    if chain:
        payload["chain"] = list(chain)
    payload.update({"iss": issuer, "sub": handle, "iat": iat, "nbf": nbf, "exp": exp})
    return _jws(payload, key)


def certify(subject: str, public_jwk: Mapping[str, Any], perms: Sequence[Mapping[str, str]],
            issuer: str, issuer_key: SigningKey, *, iat: int, nbf: int, exp: int) -> str:
    """An HS_CERT's data: `issuer_key` certifies `public_jwk` as `subject` with `perms`."""
    jwk = {k: public_jwk[k] for k in _JWK_MEMBERS[str(public_jwk["kty"])]}
    return _jws({"perms": [dict(p) for p in perms], "publicKey": jwk, "iss": issuer,
                 "sub": subject, "iat": iat, "nbf": nbf, "exp": exp}, issuer_key)


_JWK_MEMBERS = {"RSA": ("kty", "n", "e"), "SM2": ("kty", "x", "y"),
                "DSA": ("kty", "y", "p", "q", "g")}


# -- reading and checking them -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Token:
    """A parsed HS_SIGNATURE / HS_CERT JWS; nothing about it is verified yet."""

    alg: str
    signing_input: bytes
    signature: bytes
    claims: dict[str, Any]
    text: str

    @property
    def iss(self) -> str:
        return str(self.claims.get("iss") or "")

    @property
    def sub(self) -> str:
        return str(self.claims.get("sub") or "")

    @property
    def self_issued(self) -> bool:
        return bool(self.sub) and self.sub == self.iss


def _lenient_b64(text: str) -> bytes:
    # hdllib reads with commons-codec's decoder (either alphabet, padding optional); the bytes
    # that are signed are the text itself, so reading leniently cannot change what verifies.
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/")
                                + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise VerificationError("malformed", "not base64") from None


def parse(text: str) -> Token:
    """A compact JWS of an HS_SIGNATURE or HS_CERT value; VerificationError otherwise."""
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise VerificationError("malformed", "not a compact JWS")
    try:
        header = json.loads(_lenient_b64(parts[0]))
        claims = json.loads(_lenient_b64(parts[1]))
    except ValueError:
        raise VerificationError("malformed", "JWS header or payload is not JSON") from None
    alg = header.get("alg") if isinstance(header, dict) else None
    if alg not in (*_RSA_HASHES, "DS256", sm.ALG):
        raise VerificationError("unsupported", f"alg {alg!r} (RS256, RS384, RS512, DS256 or "
                                               "SM2SM3)")
    if not isinstance(claims, dict):
        raise VerificationError("malformed", "JWS payload is not an object")
    return Token(alg, f"{parts[0]}.{parts[1]}".encode("ascii"), _lenient_b64(parts[2]), claims,
                 text.strip())


_KEYS: OrderedDict[str, Any] = OrderedDict()


def public_key(jwk: Mapping[str, Any]) -> Any:
    """The key object of an HS_CERT's publicKey (RSA, DSA or SM2); parsed keys are kept (a
    verifier meets the same few certificate keys in every record)."""
    memo = repr(sorted(jwk.items()))
    key = _KEYS.get(memo)
    if key is None:
        key = _public_key(jwk)
        _KEYS[memo] = key
        if len(_KEYS) > 256:
            _KEYS.popitem(last=False)
    return key


def _public_key(jwk: Mapping[str, Any]) -> Any:
    def num(name: str) -> int:
        return int.from_bytes(_lenient_b64(str(jwk[name])), "big")
    try:
        kty = str(jwk.get("kty", "")).upper()
        if kty == "RSA":
            return rsa.RSAPublicNumbers(num("e"), num("n")).public_key()
        if kty == "DSA":
            return dsa.DSAPublicNumbers(num("y"), dsa.DSAParameterNumbers(
                num("p"), num("q"), num("g"))).public_key()
        if kty == sm.KTY:
            return sm.public_from_jwk({"x": b64.enc(num("x").to_bytes(32, "big")),
                                       "y": b64.enc(num("y").to_bytes(32, "big"))})
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        raise VerificationError("malformed", f"unusable publicKey: {exc}") from None
    raise VerificationError("unsupported", f"publicKey of type {jwk.get('kty')!r}")


def same_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two JWKs are one public key (compared by their numbers, not their spelling)."""
    try:
        ka, kb = str(a.get("kty", "")).upper(), str(b.get("kty", "")).upper()
        members = {"RSA": ("n", "e"), "SM2": ("x", "y"), "DSA": ("y", "p", "q", "g")}.get(ka)
        return ka == kb and members is not None and all(
            int.from_bytes(_lenient_b64(str(a[m])), "big")
            == int.from_bytes(_lenient_b64(str(b[m])), "big") for m in members)
    except (KeyError, VerificationError):
        return False


def signature_valid(token: Token, key: Any) -> bool:
    """Whether the token's signature verifies with `key` (whose type must fit the alg)."""
    try:
        if token.alg in _RSA_HASHES:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(token.signature, token.signing_input, padding.PKCS1v15(),
                       _RSA_HASHES[token.alg]())
            return True
        if token.alg == "DS256":
            if not isinstance(key, dsa.DSAPublicKey):
                return False
            key.verify(token.signature, token.signing_input, hashes.SHA256())
            return True
        if token.alg == sm.ALG:
            return sm.is_public_key(key) and sm.verify(key, token.signature,
                                                       token.signing_input)
    except (InvalidSignature, ValueError):
        return False
    return False


def _upper_prefix(handle: str) -> str:
    prefix, sep, suffix = handle.partition("/")
    return prefix.upper() + sep + suffix


def same_handle(a: str, b: str) -> bool:
    """hdllib Util.equalsPrefixCI: the prefix compared case-insensitively, the suffix exactly."""
    return _upper_prefix(a) == _upper_prefix(b)


def _zero_na(handle: str) -> str:
    prefix, sep, _ = handle.partition("/")
    return ("0.NA/" + prefix).upper() if sep else "0.NA/0.NA"


def authorized(perms: Any, handle: str) -> bool:
    """hdllib HandleVerifier.verifyPermissionsAreAuthorizedOverHandle."""
    if not isinstance(perms, list) or not perms:
        return False
    h = _upper_prefix(handle)
    for p in perms:
        if not isinstance(p, dict):
            continue
        perm, target = p.get("perm"), str(p.get("handle") or "").upper()
        under = target.startswith("0.NA/") and h.startswith(target[5:] + "/")
        if perm == "everything":
            return True
        if perm == "thisHandle" and (same_handle(handle, target) or under):
            return True
        if perm == "derivedPrefixes" and (
                (h.upper().startswith("0.NA/") and h.upper().startswith(target + "."))
                or _zero_na(handle).startswith(target + ".")):
            return True
        if perm == "handlesUnderThisPrefix" and under:
            return True
    return False


def _in_range(claims: Mapping[str, Any], now: float) -> str | None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, (int, float)) and now > exp:
        return "expired"
    if isinstance(nbf, (int, float)) and now < nbf:
        return "not_yet_valid"
    return None


Lookup = Callable[[str, int], Sequence[WireValue]]


@dataclass(slots=True)
class SignatureCheck:
    """What checking one HS_SIGNATURE value found: the values it vouches for, or why not."""

    index: int
    alg: str
    issuer: str
    #: Each link of the chain: "HS_SIGNATURE 2147483601:0.118.8/X", "HS_CERT 2147483600:…".
    chain: list[str] = field(default_factory=list)
    covered: frozenset[int] = frozenset()
    failure: VerificationError | None = None

    @property
    def form(self) -> str:
        return "idis" if self.alg == sm.ALG else "handle"


def check_values(handle: str, values: Sequence[WireValue], roots: Sequence[Mapping[str, Any]],
                 lookup: Lookup, now: float) -> list[SignatureCheck]:
    """Checks every HS_SIGNATURE value of the record `handle` (types HS_SIGNATURE and its
    subtypes) as hdllib's HandleRecordTrustVerifier does, against the trust roots `roots`
    (public JWKs). `lookup(handle, index)` gives the values of another record (index 0: all
    of them) for chain links outside this one. Returns one check per signature value."""
    return [_check_one(handle, values, sig, roots, lookup, now)
            for sig in values if has_type(sig.type, HS_SIGNATURE)]


_VERIFIED: OrderedDict[tuple[str, str], None] = OrderedDict()
_VERIFIED_MAX = 4096


def _link_valid(child: Token, issuer_jwk: Mapping[str, Any]) -> bool:
    """signature_valid for a chain link, remembering links that verified: the node's and the
    root's certificates are the same in every record a node serves, so a verifier checking
    many records (the node itself, a crawler) checks each once."""
    memo = (child.text, repr(sorted(issuer_jwk.items())))
    if memo in _VERIFIED:
        _VERIFIED.move_to_end(memo)
        return True
    if not signature_valid(child, public_key(issuer_jwk)):
        return False
    _VERIFIED[memo] = None
    if len(_VERIFIED) > _VERIFIED_MAX:
        _VERIFIED.popitem(last=False)
    return True


def _check_one(handle: str, values: Sequence[WireValue], sig: WireValue,
               roots: Sequence[Mapping[str, Any]], lookup: Lookup, now: float
               ) -> SignatureCheck:
    where = f"HS_SIGNATURE at index {sig.index}"
    try:
        token = parse(sig.data.decode("utf-8", "replace"))
    except VerificationError as exc:
        return SignatureCheck(sig.index, "?", "", failure=VerificationError(
            exc.reason, f"{where}: {exc.message}"))
    check = SignatureCheck(sig.index, token.alg, token.iss,
                           chain=[f"HS_SIGNATURE {ref(sig.index, handle)}"])
    try:
        # (1) build the chain: from the signature up to a self-issued certificate, each
        #     issuer's certificate found by the chain's references or by the issuer's handle
        links = _build_chain(handle, values, token, lookup, check)
        # (2) the signature is for this record
        if not same_handle(handle, token.sub):
            raise VerificationError("content_mismatch", f"{where} is for {token.sub!r}, not "
                                                        f"{handle!r}")
        # (3) every link verifies with its issuer's key, is in its validity window and the
        #     issuer's permissions cover the record
        for k, (child, parent) in enumerate(links):
            name = where if k == 0 else f"chain link {k} ({check.chain[k]})"
            pub = parent.claims.get("publicKey")
            if not isinstance(pub, dict):
                raise VerificationError("malformed", f"the certificate over {name} has no "
                                                     "publicKey")
            if not _link_valid(child, pub):
                raise VerificationError("bad_signature", f"{name}: signature does not verify "
                                                         "with its issuer's key")
            late = _in_range(child.claims, now)
            if late:
                raise VerificationError(late, f"{name}: outside its validity window (nbf "
                                              f"{child.claims.get('nbf')}, exp "
                                              f"{child.claims.get('exp')})")
            if not authorized(parent.claims.get("perms"), handle):
                raise VerificationError("unauthorized", f"{name}: its issuer "
                                                        f"{child.iss!r} may not sign for "
                                                        f"{handle}")
        # (4) the chain ends at the root of trust: a self-issued certificate of 0.0/0.0
        #     whose key is one of the verifier's roots
        root = links[-1][1]
        _, root_handle = parse_ref(root.sub)
        if not (same_handle(root_handle, ROOT_HANDLE)
                and any(same_key(root.claims.get("publicKey") or {}, r) for r in roots)):
            raise VerificationError("wrong_anchor", f"the chain of {where} ends at "
                                                    f"{root.sub!r}, not at a trust root")
        # (5) the digests: every value the signature names is present and unchanged
        check.covered = _digests(token, values, where)
    except VerificationError as exc:
        check.failure = exc
    return check


def _build_chain(handle: str, values: Sequence[WireValue], token: Token, lookup: Lookup,
                 check: SignatureCheck) -> list[tuple[Token, Token]]:
    links: list[tuple[Token, Token]] = []
    child = token
    chain = [str(c) for c in token.claims.get("chain") or []]
    seen: set[str] = set()
    while True:
        if child.self_issued:
            links.append((child, child))
            return links
        if len(links) >= MAX_CHAIN:
            raise VerificationError("malformed", "certificate chain too long")
        if not chain:
            chain = [parse_ref(child.iss)[1]]
        link = chain.pop(0)
        if link in seen:
            raise VerificationError("malformed", f"certificate chain loops at {link}")
        seen.add(link)
        index, target = parse_ref(link)
        local = [v for v in values] if same_handle(target, handle) else None
        found = local if local is not None else list(lookup(target, index))
        if index:
            found = [v for v in found if v.index == index]
            parent_text = found[0].data.decode("utf-8", "replace") if found else None
        else:
            parent_text = _latest_cert(found, child.iss)
        if parent_text is None:
            raise VerificationError("unknown_key", f"no certificate for {child.iss!r} at "
                                                   f"{link}")
        parent = parse(parent_text)
        check.chain.append(f"HS_CERT {link}")
        if not same_handle(parent.sub, child.iss):
            raise VerificationError("content_mismatch", f"chain link {len(links) + 1} "
                                                        f"({link}) certifies {parent.sub!r}, "
                                                        f"not the issuer {child.iss!r}")
        links.append((child, parent))
        child = parent


def _latest_cert(values: Sequence[WireValue], subject: str) -> str | None:
    best: tuple[int, str] | None = None
    for v in values:
        if not has_type(v.type, HS_CERT):
            continue
        try:
            t = parse(v.data.decode("utf-8", "replace"))
        except VerificationError:
            continue
        claimed = t.claims.get("iat")
        iat = claimed if isinstance(claimed, int) else -1
        if t.sub == subject and (best is None or iat > best[0]):
            best = (iat, t.text)
    return None if best is None else best[1]


def _digests(token: Token, values: Sequence[WireValue], where: str) -> frozenset[int]:
    spec = token.claims.get("digests")
    if not isinstance(spec, dict) or not isinstance(spec.get("digests"), list):
        raise VerificationError("malformed", f"{where} lists no digests")
    alg = spec.get("alg")
    if alg != DIGEST_OF.get(token.alg, "SHA-256"):
        raise VerificationError("alg_mismatch", f"{where}: {token.alg} signatures carry "
                                                f"{DIGEST_OF.get(token.alg, 'SHA-256')} "
                                                f"digests, not {alg!r}")
    claimed: dict[int, str] = {}
    for d in spec["digests"]:
        if isinstance(d, dict) and isinstance(d.get("index"), int):
            claimed[d["index"]] = str(d.get("digest"))
    present = {v.index: v for v in values if v.public and not has_type(v.type, HS_SIGNATURE)}
    for index, want in sorted(claimed.items()):
        v = present.get(index)
        if v is None:
            raise VerificationError("content_mismatch", f"{where}: signed value {index} is "
                                                        "missing from the record")
        if digest(v, str(alg)) != want:
            raise VerificationError("content_mismatch", f"{where}: value {index} ({v.type}) "
                                                        "does not match its signed digest")
    return frozenset(claimed)


def unsigned(values: Sequence[WireValue], covered: Iterable[int]) -> list[WireValue]:
    """The public values (other than signatures) that no valid signature vouches for:
    hdllib's "unsigned values"."""
    done = set(covered)
    return [v for v in values if v.public and not has_type(v.type, HS_SIGNATURE)
            and v.index not in done]
