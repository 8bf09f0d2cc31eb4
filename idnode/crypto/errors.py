"""The crypto package's exceptions: verification failures with a machine-readable reason, and
keyring problems."""
from __future__ import annotations

#: Every `VerificationError.reason`, with what it means. Callers branch on these; they are
#: stable API (the CLI prints them, HTTP problem documents carry them).
REASONS: dict[str, str] = {
    "malformed": "not parseable as what it claims to be (JWS, JSON, base64url, bundle, JWK)",
    "unsupported": "an algorithm, key type or JWS feature (alg none, crit) that is not accepted",
    "alg_mismatch": "the JWS header's alg is not the algorithm of the key its kid names",
    "wrong_type": "the JWS header's typ is not the one this kind of statement must carry",
    "unknown_key": "no key with the header's kid in the key set",
    "bad_signature": "the signature does not verify with the key",
    "retired_key_after_retirement": "signed by a retired key, dated after its retirement",
    "wrong_anchor": "a key statement not signed by (or not issued by) the trust anchor",
    "expired": "a key statement past its exp",
    "not_yet_valid": "a key statement whose iat lies in the future",
    "bad_inclusion_path": "an inclusion path of the wrong shape for its index and tree size",
    "bad_consistency_path": "a consistency proof of the wrong shape for its two tree sizes",
    "root_mismatch": "a proof that leads to another root than the signed one",
    "index_out_of_range": "a leaf index outside the signed tree size",
    "content_mismatch": "signed content that differs from what was presented with it",
    "stale_version": "a valid but older record version than the verifier knows of",
    "unlinked": "a tree head with no consistency proof to the last head the verifier keeps",
    "unauthorized": "a Handle certificate whose permissions do not cover the identifier",
    "unsigned": "a value no valid signature of the form vouches for",
}


class VerificationError(Exception):
    """A check failed: `reason` is one of REASONS, `message` says what in words."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class KeyStoreError(Exception):
    """A keyring that cannot be read or written (missing passphrase, corrupt file, no key)."""


class UnsupportedAlgorithm(KeyStoreError):
    """An algorithm this build cannot sign with (e.g. ML-DSA-65 on cryptography < 46)."""
