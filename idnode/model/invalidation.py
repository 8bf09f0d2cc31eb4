"""Invalidation keys: what a write names on the cache's channel (PostgreSQL NOTIFY) for
every process to drop. A notification holds either identifiers or control keys, never both
(each comes from its own write)."""
from __future__ import annotations

from collections.abc import Sequence

#: Control keys name no identifier: a prefix's state, a credential, or a product's trace
#: changed (followed by the prefix, key id or identifier).
PREFIX_KEY = "prefix:"
CREDENTIAL_KEY = "cred:"
TRACE_KEY = "trace:"
CONTROL_KEYS = (PREFIX_KEY, CREDENTIAL_KEY, TRACE_KEY)


def is_control(keys: Sequence[str]) -> bool:
    """Whether a notification's keys are control keys (CONTROL_KEYS) rather than
    identifiers."""
    return bool(keys) and keys[0].startswith(CONTROL_KEYS)
