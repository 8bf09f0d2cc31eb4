"""The one exception every verification failure raises, with a machine-readable reason."""
from __future__ import annotations


class VerificationError(Exception):
    """`reason` is stable: malformed, bad_signature, unknown_key, retired_key, wrong_anchor,
    expired, bad_inclusion_path, root_mismatch, content_mismatch, stale_version, unsupported."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class KeyStoreError(Exception):
    """A keyring that cannot be read or written (missing passphrase, corrupt file)."""
