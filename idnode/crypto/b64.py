"""base64url without padding (RFC 7515 §2)."""
from __future__ import annotations

import base64
import binascii

from idnode.crypto.errors import VerificationError


def enc(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dec(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise VerificationError("malformed", "not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError("malformed", "not base64url") from None
