"""The trust anchor pinned in configuration (`anchor_jwks`): the top-level node's public keys,
against which this node checks records from other nodes and the key statements it is given.

The anchor is never learned from the top-level node itself: a party on the path (or a
compromised top) could otherwise present its own anchor and certify forged records. When the
top presents an anchor, it must be the pinned one; anything else is refused."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from idnode.config import SettingsError
from idnode.crypto.certify import certified_jwks
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import thumbprint


def load(path: str) -> dict[str, Any]:
    """The pinned anchor JWKS from `path`; ValueError saying why when it is not usable (read
    at start, so a wrong file stops the node instead of leaving it trusting nothing)."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise SettingsError(f"anchor_jwks {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise SettingsError(f"anchor_jwks {path}: not JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys:
        raise SettingsError(f"anchor_jwks {path}: a JWKS with at least one key is expected")
    try:
        _thumbprints(doc)
    except VerificationError as exc:
        raise SettingsError(f"anchor_jwks {path}: {exc.message}") from None
    jwks: dict[str, Any] = doc
    return jwks


def _thumbprints(jwks: Mapping[str, Any]) -> set[str]:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise VerificationError("malformed", "a JWKS has a list of keys")
    return {thumbprint(k) for k in keys}


def check_presented(pinned: Mapping[str, Any], presented_json: str,
                    statements: Mapping[str, str]) -> None:
    """Raises VerificationError (wrong_anchor) unless every key the top-level node presents
    as its anchor is a pinned one (the top may present fewer, having retired some) and the key
    statements it issued for this node verify with the pinned anchor."""
    if presented_json:
        try:
            presented = _thumbprints(orjson.loads(presented_json))
        except (orjson.JSONDecodeError, AttributeError):
            raise VerificationError("malformed", "the presented anchor is not a JWKS") from None
        foreign = presented - _thumbprints(pinned)
        if foreign:
            raise VerificationError(
                "wrong_anchor", f"the top-level node presents anchor key(s) "
                                f"{', '.join(sorted(foreign))} that the pinned anchor_jwks "
                                "does not hold")
    if statements:
        certified_jwks(statements, pinned)
