"""Signing keys (Ed25519 as EdDSA, P-256 as ES256, ML-DSA-65, RSA-2048 as RS256, SM2 with SM3 as
SM2SM3), their public JWKs with RFC 7638 thumbprints as key ids, key sets (JWKS) and a keyring directory encrypted at
rest."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.backends.openssl.backend import backend as _backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from idnode.crypto import b64, sm
from idnode.crypto.errors import KeyStoreError, UnsupportedAlgorithm, VerificationError

try:  # cryptography >= 46
    from cryptography.hazmat.primitives.asymmetric import mldsa
except ImportError:  # pragma: no cover - the pinned cryptography has it
    mldsa = None  # type: ignore[assignment]

ALGS = ("EdDSA", "ES256", "ML-DSA-65", "RS256", "SM2SM3")
#: Algorithms a node signs its batches with by default; ML-DSA-65 is an additional signature.
#: SM2SM3 (SM2 with SM3, GB/T 32918; the ID-SDK's name, not an IANA one) signs the batches of
#: a node that signs with national algorithms only (KeyRing.active falls back to it). RS256
#: is never a batch algorithm: it exists for the Handle protocol and the Handle signature
#: form, whose clients know RSA and DSA only (idnode.keys, docs/SIGNING.md).
CLASSICAL = ("EdDSA", "ES256")
NATIONAL = "SM2SM3"
#: Signature lengths: a wrong length is refused before any curve arithmetic. RS256 keys are
#: generated with 2048 bits; a longer RSA key's signatures are its modulus length.
SIGNATURE_BYTES = {"EdDSA": 64, "ES256": 64, "ML-DSA-65": 3309, "RS256": 256}
RSA_BITS = 2048
#: RSA moduli accepted in a public JWK (the upper bound is what OpenSSL verifies).
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 16384
PrivateKey = Any  # Ed25519PrivateKey | EllipticCurvePrivateKey | MLDSA65PrivateKey | RSAPrivateKey

# RFC 6979 signatures make ES256 reproducible (known-answer vectors) and independent of the
# RNG at signing time; older OpenSSL builds fall back to random nonces.
_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=_backend.ecdsa_deterministic_supported())
_ECDSA_VERIFY = ec.ECDSA(hashes.SHA256())
_KID = re.compile(r"[A-Za-z0-9_-]{43}")
#: JWK members that carry private material in any key type; never accepted where a public key
#: is expected.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv", "seed"})


def _need_mldsa() -> Any:
    if mldsa is None:
        raise UnsupportedAlgorithm("ML-DSA-65 needs cryptography >= 46 built with OpenSSL "
                                   "that provides ML-DSA")
    return mldsa


def public_jwk(alg: str, public: Any) -> dict[str, str]:
    """The RFC 7638 required members of a public key's JWK (no kid, use or status)."""
    if alg == "EdDSA":
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64.enc(raw)}
    if alg == "ES256":
        nums = public.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64.enc(nums.x.to_bytes(32, "big")),
                "y": b64.enc(nums.y.to_bytes(32, "big"))}
    if alg == "ML-DSA-65":
        # draft-ietf-cose-dilithium: key type AKP, the algorithm is part of the key.
        return {"kty": "AKP", "alg": "ML-DSA-65", "pub": b64.enc(public.public_bytes_raw())}
    if alg == "SM2SM3":
        return sm.public_jwk(public)
    if alg == "RS256":
        if not isinstance(public, rsa.RSAPublicKey) or \
                not RSA_MIN_BITS <= public.key_size <= RSA_MAX_BITS:
            raise ValueError(f"RS256 needs an RSA key of {RSA_MIN_BITS}..{RSA_MAX_BITS} bits")
        nums = public.public_numbers()
        # RFC 7518 §6.3.1: Base64urlUInt, the minimal big-endian octets.
        return {"kty": "RSA", "n": b64.enc(_uint(nums.n)), "e": b64.enc(_uint(nums.e))}
    raise UnsupportedAlgorithm(f"algorithm {alg!r}; one of {', '.join(ALGS)}")


def _uint(n: int) -> bytes:
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def _parse_uint(text: str) -> int:
    raw = b64.dec(text)
    if not raw or (raw[0] == 0 and len(raw) > 1):
        # One key, one spelling: a leading zero octet would give the same key another kid.
        raise ValueError("an RSA number is minimal big-endian octets (RFC 7518 §6.3.1)")
    return int.from_bytes(raw, "big")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint: base64url SHA-256 of the required members, sorted, compact."""
    try:
        required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"),
                    "AKP": ("alg", "kty", "pub"), "RSA": ("e", "kty", "n"),
                    # No RFC defines SM2's; the members that fix the key, as for EC.
                    "SM2": ("kty", "x", "y")}[jwk["kty"]]
        members = {k: jwk[k] for k in required}
    except (KeyError, TypeError):
        raise VerificationError("malformed", "JWK lacks the members its kty requires") from None
    # The members are ASCII strings, so json.dumps with sorted keys is their RFC 8785 form.
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64.enc(hashlib.sha256(canonical.encode()).digest())


def public_from_jwk(jwk: Mapping[str, Any]) -> tuple[str, Any]:
    """(alg, public key object) of a public JWK; VerificationError when it is not usable."""
    if PRIVATE_MEMBERS & set(jwk):
        raise VerificationError("malformed", "a public JWK carrying private key members")
    kty = jwk.get("kty")
    try:
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return "EdDSA", ed25519.Ed25519PublicKey.from_public_bytes(b64.dec(jwk["x"]))
        if kty == "EC" and jwk.get("crv") == "P-256":
            x, y = b64.dec(jwk["x"]), b64.dec(jwk["y"])
            if len(x) != 32 or len(y) != 32:
                raise ValueError("P-256 coordinates are 32 bytes")
            nums = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"),
                                                 int.from_bytes(y, "big"), ec.SECP256R1())
            return "ES256", nums.public_key()  # checks the point is on the curve
        if kty == "AKP" and jwk.get("alg") == "ML-DSA-65":
            return "ML-DSA-65", _need_mldsa().MLDSA65PublicKey.from_public_bytes(
                b64.dec(jwk["pub"]))
        if kty == sm.KTY and jwk.get("alg", sm.ALG) == sm.ALG:
            return sm.ALG, sm.public_from_jwk(jwk)
        if kty == "RSA" and jwk.get("alg", "RS256") == "RS256":
            n, e = _parse_uint(jwk["n"]), _parse_uint(jwk["e"])
            if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS:
                raise UnsupportedAlgorithm(f"RSA-{n.bit_length()} key: RS256 keys have "
                                           f"{RSA_MIN_BITS}..{RSA_MAX_BITS} bits")
            return "RS256", rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, ValueError, TypeError) as exc:
        raise VerificationError("malformed", f"unusable JWK: {exc}") from None
    except UnsupportedAlgorithm as exc:
        raise VerificationError("unsupported", str(exc)) from None
    raise VerificationError("unsupported", f"key type {kty!r} / {jwk.get('crv') or jwk.get('alg')!r}")


def verify_raw(alg: str, public: Any, signature: bytes, data: bytes) -> bool:
    """Whether `signature` (JWS form: raw r||s for ES256, DER for SM2SM3) is `alg`'s signature
    of `data`."""
    if alg == sm.ALG:
        return sm.is_public_key(public) and sm.verify(public, signature, data)
    if alg == "RS256" and isinstance(public, rsa.RSAPublicKey):
        expected = (public.key_size + 7) // 8
    else:
        expected = SIGNATURE_BYTES.get(alg, -1)
    if len(signature) != expected:
        return False
    try:
        if alg == "RS256":
            public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "ES256":
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            public.verify(der, data, _ECDSA_VERIFY)
        else:
            public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private signing key with its algorithm, kid and lifetime; never shows key material."""

    alg: str
    private: PrivateKey = field(repr=False, compare=False)
    created_at: float = field(default_factory=time.time)
    retired_at: float | None = None
    kid: str = field(init=False)
    _jwk: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # kid and JWK are derived once: signing every batch must not re-serialise the key.
        jwk = public_jwk(self.alg, self.private.public_key())
        object.__setattr__(self, "_jwk", tuple(jwk.items()))
        object.__setattr__(self, "kid", thumbprint(jwk))

    @staticmethod
    def generate(alg: str = "EdDSA") -> SigningKey:
        """A fresh active key of `alg`."""
        if alg == "EdDSA":
            return SigningKey(alg, ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return SigningKey(alg, ec.generate_private_key(ec.SECP256R1()))
        if alg == "ML-DSA-65":
            return SigningKey(alg, _need_mldsa().MLDSA65PrivateKey.generate())
        if alg == "RS256":
            return SigningKey(alg, rsa.generate_private_key(65537, RSA_BITS))
        if alg == sm.ALG:
            return SigningKey(alg, sm.generate())
        raise UnsupportedAlgorithm(f"unknown algorithm {alg!r}; one of {', '.join(ALGS)}")

    @staticmethod
    def from_seed(alg: str, seed: bytes, created_at: float = 0.0) -> SigningKey:
        """A key from fixed bytes (Ed25519 / ML-DSA seed, P-256 scalar): for test vectors."""
        if alg == "EdDSA":
            return SigningKey(alg, ed25519.Ed25519PrivateKey.from_private_bytes(seed), created_at)
        if alg == "ES256":
            return SigningKey(alg, ec.derive_private_key(int.from_bytes(seed, "big"),
                                                         ec.SECP256R1()), created_at)
        if alg == "ML-DSA-65":
            return SigningKey(alg, _need_mldsa().MLDSA65PrivateKey.from_seed_bytes(seed),
                              created_at)
        if alg == sm.ALG:
            return SigningKey(alg, sm.from_scalar(int.from_bytes(seed, "big")), created_at)
        if alg == "RS256":
            raise UnsupportedAlgorithm("RS256 keys are not derived from a seed")
        raise UnsupportedAlgorithm(f"unknown algorithm {alg!r}; one of {', '.join(ALGS)}")

    @property
    def jwk(self) -> dict[str, str]:
        """The public key's RFC 7638 members (a fresh dict: callers may extend it)."""
        return dict(self._jwk)

    @property
    def status(self) -> str:
        """"active" or "retired"."""
        return "active" if self.retired_at is None else "retired"

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK as published: with kid, alg, use and, once retired, its status."""
        out: dict[str, Any] = {**self.jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}
        if self.retired_at is not None:
            out["idnode:status"] = "retired"
            # Floored: a statement signed in the retirement second (iat == this) still counts.
            out["idnode:retired_at"] = int(self.retired_at)
        return out

    def retire(self, at: float | None = None) -> SigningKey:
        """This key, retired at `at` (default now); an already retired key keeps its time."""
        if self.retired_at is not None:
            return self
        return dataclasses.replace(self, retired_at=time.time() if at is None else at)

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of `data` (raw r||s for ES256, RFC 7518 §3.4; PKCS#1 v1.5 with
        SHA-256 for RS256, §3.3; DER for SM2SM3, as the ID-SDK writes it)."""
        if self.alg == sm.ALG:
            return sm.sign(self.private, data)
        if self.alg == "RS256":
            return bytes(self.private.sign(data, padding.PKCS1v15(), hashes.SHA256()))
        if self.alg == "ES256":
            r, s = decode_dss_signature(self.private.sign(data, _ECDSA))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return bytes(self.private.sign(data))

    def encrypted_pem(self, passphrase: bytes) -> bytes:
        """PKCS#8 PEM of the private key, encrypted with `passphrase`."""
        if not passphrase:
            raise KeyStoreError("refusing to write a private key without a passphrase")
        if self.alg == sm.ALG:
            return sm.encrypted_pem(self.private, passphrase)
        return bytes(self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase)))

    def __repr__(self) -> str:
        return (f"SigningKey(alg={self.alg!r}, kid={self.kid!r}, status={self.status!r}, "
                f"created_at={self.created_at!r}, retired_at={self.retired_at!r})")

    __str__ = __repr__


def generate(alg: str = "EdDSA") -> SigningKey:
    """A fresh active key of `alg` (EdDSA, ES256, ML-DSA-65, RS256 or SM2SM3)."""
    return SigningKey.generate(alg)


@dataclass(frozen=True, slots=True)
class KeySet:
    """Public keys by kid (a JWKS), including retired ones with their retirement time."""

    keys: tuple[Mapping[str, Any], ...]
    _by_kid: dict[str, Mapping[str, Any]] = field(init=False, repr=False, compare=False)
    # Parsed public keys, filled on first use: verifying many records with one set parses once.
    _parsed: dict[str, tuple[str, Any]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_kid: dict[str, Mapping[str, Any]] = {}
        for jwk in self.keys:
            if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
                raise VerificationError("malformed", "a JWKS entry without a string kid")
            if jwk["kid"] in by_kid and by_kid[jwk["kid"]] != jwk:
                raise VerificationError("malformed", f"two different keys with kid {jwk['kid']!r}")
            by_kid[jwk["kid"]] = jwk
        object.__setattr__(self, "_by_kid", by_kid)
        object.__setattr__(self, "_parsed", {})

    @staticmethod
    def of(*keys: SigningKey) -> KeySet:
        """The public key set of signing keys."""
        return KeySet(tuple(k.to_jwk() for k in keys))

    @staticmethod
    def from_json(jwks: KeySet | Mapping[str, Any]) -> KeySet:
        """A key set from a JWKS document ({"keys": [...]}); a KeySet is returned as is."""
        if isinstance(jwks, KeySet):
            return jwks
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list):
            raise VerificationError("malformed", "a JWKS is an object with a keys array")
        return KeySet(tuple(keys))

    def to_json(self) -> dict[str, Any]:
        """The JWKS document."""
        return {"keys": [dict(k) for k in self.keys]}

    def get(self, kid: str) -> Mapping[str, Any]:
        """The JWK with `kid`; VerificationError("unknown_key") if there is none."""
        try:
            return self._by_kid[kid]
        except (KeyError, TypeError):
            raise VerificationError("unknown_key", f"no key {kid!r} in the key set") from None

    def public(self, kid: str) -> tuple[str, Any, Mapping[str, Any]]:
        """(alg, public key object, JWK) for `kid`, checking the kid is the key's thumbprint."""
        jwk = self.get(kid)
        if kid not in self._parsed:
            alg, public = public_from_jwk(jwk)
            if jwk.get("alg", alg) != alg:
                raise VerificationError("alg_mismatch", f"JWK {kid} says alg {jwk.get('alg')!r} "
                                                        f"for a {alg} key")
            if thumbprint(jwk) != kid:
                # A kid is a commitment to the key; a set that maps it elsewhere is corrupt.
                raise VerificationError("malformed", f"kid {kid} is not its key's thumbprint")
            self._parsed[kid] = (alg, public)
        alg, public = self._parsed[kid]
        return alg, public, jwk

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def save_keyring(directory: Path, keys: list[SigningKey], passphrase: bytes) -> None:
    """Writes `<kid>.pem` per key (encrypted PKCS#8, mode 0600) and `keyring.json` metadata."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for key in keys:
        path = directory / f"{key.kid}.pem"
        if path.exists():
            continue  # a kid names one key: the file already holds exactly this one
        tmp = directory / f".{key.kid}.pem.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.encrypted_pem(passphrase))
        tmp.replace(path)
    meta = {"version": 1, "keys": [
        {"kid": k.kid, "alg": k.alg, "status": k.status, "created_at": k.created_at,
         "retired_at": k.retired_at} for k in keys]}
    tmp = directory / "keyring.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(directory / "keyring.json")


def load_keyring(directory: Path, passphrase: bytes) -> list[SigningKey]:
    """The keys saved in `directory` (none if it has no keyring.json); KeyStoreError if a
    file is missing, corrupt, holds another key or the passphrase is wrong."""
    directory = Path(directory)
    meta_path = directory / "keyring.json"
    if not meta_path.exists():
        return []
    try:
        entries = json.loads(meta_path.read_text())["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyStoreError(f"{meta_path} is not a keyring: {exc}") from None
    keys = []
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        # The kid becomes a file name: a tampered keyring.json must not point elsewhere.
        if not isinstance(kid, str) or not _KID.fullmatch(kid):
            raise KeyStoreError(f"{meta_path} names a key with an invalid kid {kid!r}")
        try:
            pem = (directory / f"{kid}.pem").read_bytes()
        except OSError as exc:
            raise KeyStoreError(f"key file for {kid} unreadable: {exc}") from None
        try:
            if isinstance(entry, dict) and entry.get("alg") == sm.ALG:
                private = sm.load_pem(pem, passphrase)
            else:
                private = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError) as exc:
            raise KeyStoreError(f"cannot decrypt key {kid}: wrong passphrase or corrupt "
                                "file") from exc
        try:
            key = SigningKey(entry["alg"], private, float(entry["created_at"]),
                             None if entry.get("retired_at") is None
                             else float(entry["retired_at"]))
        except (KeyError, TypeError, ValueError, AttributeError, UnsupportedAlgorithm) as exc:
            raise KeyStoreError(f"key {kid}: metadata does not fit the key file ({exc})") from None
        if key.kid != kid:
            raise KeyStoreError(f"key file {kid}.pem holds another key ({key.kid})")
        keys.append(key)
    return keys


class KeyRing:
    """The node's keys in a directory (see save_keyring). Retired keys stay, so what they
    signed keeps verifying; only active keys sign."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if not passphrase:
            raise KeyStoreError("a keyring needs a passphrase (key_passphrase or "
                                "key_passphrase_file)")
        self.dir = Path(directory)
        self.passphrase = passphrase
        self.keys: list[SigningKey] = []

    def __repr__(self) -> str:
        return f"KeyRing({str(self.dir)!r}, keys={[k.kid for k in self.keys]!r})"

    def load(self) -> KeyRing:
        """Reads the directory (an absent keyring is empty); returns self."""
        self.keys = load_keyring(self.dir, self.passphrase)
        return self

    def save(self) -> None:
        """Writes new key files and the metadata."""
        save_keyring(self.dir, self.keys, self.passphrase)

    def get(self, kid: str) -> SigningKey:
        """The key with `kid`; KeyStoreError if there is none."""
        for key in self.keys:
            if key.kid == kid:
                return key
        raise KeyStoreError(f"no key {kid}")

    def active(self, alg: str | None = None) -> SigningKey | None:
        """The newest active key of `alg` (default: of a classical algorithm, else SM2SM3 for
        a node that signs with national algorithms only; never an RS256 key)."""
        for key in reversed(self.keys):
            if key.retired_at is None and (key.alg == alg if alg else key.alg in CLASSICAL):
                return key
        return None if alg else self.active(NATIONAL)

    def generate(self, alg: str = "EdDSA") -> SigningKey:
        """Adds a fresh active key of `alg`."""
        key = SigningKey.generate(alg)
        self.keys.append(key)
        return key

    def rotate(self, alg: str = "EdDSA") -> SigningKey:
        """A new active key of `alg`; the previous active one of that algorithm is retired."""
        old = self.active(alg)
        new = self.generate(alg)
        if old is not None:
            self._replace(old.retire(new.created_at))
        return new

    def retire(self, kid: str) -> SigningKey:
        """Retires the key `kid` (it keeps verifying what it signed before); returns it."""
        key = self.get(kid).retire()
        self._replace(key)
        return key

    def _replace(self, key: SigningKey) -> None:
        self.keys = [key if k.kid == key.kid else k for k in self.keys]

    def keyset(self) -> KeySet:
        """The public keys, current and retired."""
        return KeySet.of(*self.keys)

    def jwks(self) -> dict[str, Any]:
        """The public keys as a JWKS document."""
        return self.keyset().to_json()
