"""Handle values on the wire <-> the node's values (idnode.core.records.Value).

A Handle value's data is bytes; a stored value is text (format "string"), JSON text or base64.
Bytes that are UTF-8 text without control characters are stored as a string, anything else
(HS_ADMIN, HS_SITE, binary HS_PUBKEY …) as base64: either way the bytes served back are the
bytes registered. Permissions map onto `private` (no public read bit); timestamps are the
node's own (the time of the value's last change).
"""
from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

from idnode.api.handle.codec import (PERM_ADMIN_READ, PERM_ADMIN_WRITE, PERM_PUBLIC_READ,
                                     TTL_ABSOLUTE, TTL_RELATIVE, HandleValue, encode_value)
from idnode.core.errors import InvalidIdentifier, InvalidValue
from idnode.core.records import MAX_TTL, Value

_PUBLIC = PERM_ADMIN_READ | PERM_ADMIN_WRITE | PERM_PUBLIC_READ
_PRIVATE = PERM_ADMIN_READ | PERM_ADMIN_WRITE
# Text may hold tabs and line breaks; other C0 controls and DEL mark binary data.
_CONTROLS = frozenset(set(range(0x20)) - {0x09, 0x0A, 0x0D} | {0x7F})


@lru_cache(maxsize=65_536)
def _epoch(stamp: str) -> int:
    if not stamp:
        return 0
    return int(datetime.fromisoformat(stamp).timestamp())


def wire_value(v: Value) -> bytes:
    """A stored value in its Handle encoding."""
    data = base64.b64decode(v.data) if v.format == "base64" else v.data.encode("utf-8")
    return encode_value(HandleValue(v.index, v.type.encode("utf-8"), data, v.ttl, TTL_RELATIVE,
                                    _epoch(v.timestamp), _PRIVATE if v.private else _PUBLIC))


def wire_values(values: Sequence[Value]) -> list[bytes]:
    return [wire_value(v) for v in values]


def text(raw: bytes, what: str, *, field: str) -> str:
    """UTF-8 text of a handle or type; InvalidValue/InvalidIdentifier when it is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        cls = InvalidIdentifier if field == "identifier" else InvalidValue
        raise cls(f"{what} is not UTF-8", field=field) from None


def value_in(hv: HandleValue, i: int, now: float | None = None) -> Value:
    """A value a client sent, as the node validates and stores it (Registry checks the rest:
    index range, type syntax, sizes, templates)."""
    field = f"values[{i}]"
    if hv.references:
        raise InvalidValue("value references are not supported by this node",
                           field=f"{field}.references")
    vtype = text(hv.type, "type", field=f"{field}.type")
    ttl = hv.ttl
    if hv.ttl_type == TTL_ABSOLUTE:
        ttl -= int(time.time() if now is None else now)
    elif hv.ttl_type != TTL_RELATIVE:
        raise InvalidValue(f"ttl type {hv.ttl_type} is neither relative (0) nor absolute (1)",
                           field=f"{field}.ttl")
    if hv.ttl < 0 and hv.ttl_type == TTL_RELATIVE:
        raise InvalidValue(f"ttl {hv.ttl} is negative", field=f"{field}.ttl")
    # Handle's 0 means "do not cache"; the node's smallest TTL is one second.
    ttl = min(max(ttl, 1), MAX_TTL)
    data = hv.data
    try:
        decoded = data.decode("utf-8")
        textual = not _CONTROLS.intersection(data)
    except UnicodeDecodeError:
        textual = False
    if textual:
        fmt, stored = "string", decoded
    else:
        fmt, stored = "base64", base64.b64encode(data).decode("ascii")
    return Value(hv.index, vtype, stored, fmt, ttl, "",
                 private=not hv.permissions & PERM_PUBLIC_READ)
