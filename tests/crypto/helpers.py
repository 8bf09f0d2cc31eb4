"""Shared test helpers for the crypto tests."""
from __future__ import annotations

import json
from typing import Any

from idnode.crypto import b64


def forge(header: dict[str, Any], payload: bytes, signature: bytes = b"\0" * 64) -> str:
    """A compact JWS with whatever header, payload and signature bytes we like."""
    return ".".join([b64.enc(json.dumps(header).encode()), b64.enc(payload), b64.enc(signature)])


def flip_last_char(text: str) -> str:
    """`text` with one base64url character changed (still valid base64url text)."""
    return text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]
