"""Signing keys: Ed25519 (EdDSA), P-256 (ES256) and ML-DSA-65; JWK export with RFC 7638
thumbprints as key ids; a keyring kept on disk with private keys encrypted at rest."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                              encode_dss_signature)

from idnode.crypto import b64
from idnode.crypto.errors import KeyStoreError, VerificationError

ALGS = ("EdDSA", "ES256", "ML-DSA-65")
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | mldsa.MLDSA65PrivateKey


def public_jwk(alg: str, public: Any) -> dict[str, str]:
    if alg == "EdDSA":
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64.enc(raw)}
    if alg == "ES256":
        nums = public.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": b64.enc(nums.x.to_bytes(32, "big")),
                "y": b64.enc(nums.y.to_bytes(32, "big"))}
    if alg == "ML-DSA-65":
        # draft-ietf-cose-dilithium / draft-ietf-jose-pqc: key type AKP
        return {"kty": "AKP", "alg": "ML-DSA-65", "pub": b64.enc(public.public_bytes_raw())}
    raise VerificationError("unsupported", f"algorithm {alg}")


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order."""
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"),
                "AKP": ("alg", "kty", "pub")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"), sort_keys=True)
    return b64.enc(hashlib.sha256(canonical.encode()).digest())


def public_from_jwk(jwk: dict[str, Any]) -> tuple[str, Any]:
    """(alg, public key object) from a JWK; raises VerificationError when it is not usable."""
    try:
        kty = jwk["kty"]
        if kty == "OKP" and jwk.get("crv") == "Ed25519":
            return "EdDSA", ed25519.Ed25519PublicKey.from_public_bytes(b64.dec(jwk["x"]))
        if kty == "EC" and jwk.get("crv") == "P-256":
            nums = ec.EllipticCurvePublicNumbers(int.from_bytes(b64.dec(jwk["x"]), "big"),
                                                 int.from_bytes(b64.dec(jwk["y"]), "big"),
                                                 ec.SECP256R1())
            return "ES256", nums.public_key()
        if kty == "AKP" and jwk.get("alg") == "ML-DSA-65":
            return "ML-DSA-65", mldsa.MLDSA65PublicKey.from_public_bytes(b64.dec(jwk["pub"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise VerificationError("malformed", f"unusable JWK: {exc}") from None
    raise VerificationError("unsupported", f"key type {jwk.get('kty')!r}")


def verify_raw(alg: str, public: Any, signature: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        if alg == "EdDSA":
            public.verify(signature, data)
        elif alg == "ES256":
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                       int.from_bytes(signature[32:], "big"))
            public.verify(der, data, ec.ECDSA(hashes.SHA256()))
        elif alg == "ML-DSA-65":
            public.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(slots=True)
class SigningKey:
    alg: str
    private: PrivateKey = field(repr=False)
    created_at: float = field(default_factory=time.time)
    retired_at: float | None = None

    @staticmethod
    def generate(alg: str = "EdDSA") -> SigningKey:
        if alg == "EdDSA":
            return SigningKey(alg, ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return SigningKey(alg, ec.generate_private_key(ec.SECP256R1()))
        if alg == "ML-DSA-65":
            return SigningKey(alg, mldsa.MLDSA65PrivateKey.generate())
        raise KeyStoreError(f"unknown algorithm {alg!r}; one of {', '.join(ALGS)}")

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.alg, self.private.public_key())

    @property
    def kid(self) -> str:
        return thumbprint(self.jwk)

    def sign(self, data: bytes) -> bytes:
        if self.alg == "ES256":
            der = self.private.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,arg-type]
            r, s = decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private.sign(data)  # type: ignore[call-arg]

    def __repr__(self) -> str:  # never show key material
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r}, retired={self.retired_at is not None})"


class KeyRing:
    """The node's keys in a directory: `<kid>.pem` (PKCS#8, encrypted with the passphrase)
    and `keyring.json` (algorithm, creation and retirement times). Retired keys stay, so old
    signatures keep verifying; only active keys sign."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        if not passphrase:
            raise KeyStoreError("a keyring needs a passphrase (key_passphrase or "
                                "key_passphrase_file)")
        self.dir = Path(directory)
        self.passphrase = passphrase
        self.keys: list[SigningKey] = []

    def load(self) -> KeyRing:
        meta_path = self.dir / "keyring.json"
        if not meta_path.exists():
            return self
        meta = json.loads(meta_path.read_text())
        keys = []
        for entry in meta["keys"]:
            pem = (self.dir / f"{entry['kid']}.pem").read_bytes()
            try:
                private = serialization.load_pem_private_key(pem, password=self.passphrase)
            except (ValueError, TypeError) as exc:
                raise KeyStoreError(f"cannot decrypt key {entry['kid']}: wrong passphrase or "
                                    "corrupt file") from exc
            key = SigningKey(entry["alg"], private, entry["created_at"],  # type: ignore[arg-type]
                             entry.get("retired_at"))
            if key.kid != entry["kid"]:
                raise KeyStoreError(f"key file {entry['kid']}.pem holds another key")
            keys.append(key)
        self.keys = keys
        return self

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        for key in self.keys:
            path = self.dir / f"{key.kid}.pem"
            if not path.exists():
                pem = key.private.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(self.passphrase))
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
        meta = {"keys": [{"kid": k.kid, "alg": k.alg, "created_at": k.created_at,
                          "retired_at": k.retired_at} for k in self.keys]}
        tmp = self.dir / "keyring.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        tmp.replace(self.dir / "keyring.json")

    def active(self, alg: str | None = None) -> SigningKey | None:
        """The newest active key (of `alg`, default any classical one)."""
        for key in reversed(self.keys):
            if key.retired_at is None and (key.alg == alg if alg else key.alg != "ML-DSA-65"):
                return key
        return None

    def generate(self, alg: str = "EdDSA") -> SigningKey:
        key = SigningKey.generate(alg)
        self.keys.append(key)
        return key

    def rotate(self, alg: str = "EdDSA") -> SigningKey:
        """A new active key; the previous active key of that algorithm is retired."""
        old = self.active(alg)
        new = self.generate(alg)
        if old is not None:
            old.retired_at = time.time()
        return new

    def retire(self, kid: str) -> None:
        for key in self.keys:
            if key.kid == kid:
                key.retired_at = key.retired_at or time.time()
                return
        raise KeyStoreError(f"no key {kid}")

    def jwks(self) -> dict[str, Any]:
        out = []
        for key in self.keys:
            jwk: dict[str, Any] = {**key.jwk, "kid": key.kid, "alg": key.alg, "use": "sig"}
            if key.retired_at is not None:
                jwk["idnode:retired_at"] = int(key.retired_at)
            out.append(jwk)
        return {"keys": out}
