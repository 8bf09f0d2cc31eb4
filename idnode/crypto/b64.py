"""base64url without padding (RFC 7515 §2), decoded strictly."""
from __future__ import annotations

import base64
import re

from idnode.crypto.errors import VerificationError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def enc(data: bytes) -> str:
    """Unpadded base64url text of `data`."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dec(text: str) -> bytes:
    """The bytes of unpadded base64url `text`; VerificationError("malformed") otherwise."""
    # The stdlib decoder skips characters outside the alphabet and ignores non-zero trailing
    # bits; either would let one signature stand for several token spellings.
    if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or len(text) % 4 == 1:
        raise VerificationError("malformed", "not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if enc(data) != text:
        raise VerificationError("malformed", "base64url with non-canonical trailing bits")
    return data
