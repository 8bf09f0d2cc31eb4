"""Records (DESIGN §3): an identifier with an ordered set of typed values, versioned."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from idnode.core.errors import InvalidValue, TooLarge

DEFAULT_TTL = 86400
MAX_TTL = 2**31 - 1
MAX_INDEX = 2**31 - 1
MAX_TYPE_LEN = 128
MAX_VALUES = 256
FORMATS = ("string", "json", "base64")


@dataclass(frozen=True, slots=True)
class Value:
    index: int
    type: str
    data: str
    format: str = "string"
    ttl: int = DEFAULT_TTL
    #: ISO 8601 UTC ("2026-11-24T03:30:05Z") of the value's last change; set by the node.
    timestamp: str = ""
    #: Served only to the owner, never to anonymous resolvers.
    private: bool = False

    def to_json(self) -> dict[str, Any]:
        """The stored, served and signed form: the Handle REST API's value shape."""
        out: dict[str, Any] = {"index": self.index, "type": self.type,
                               "data": {"format": self.format, "value": self.data},
                               "ttl": self.ttl, "timestamp": self.timestamp}
        if self.private:
            out["private"] = True
        return out

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Value:
        data = obj["data"]
        return Value(obj["index"], obj["type"], data["value"], data["format"], obj["ttl"],
                     obj["timestamp"], obj.get("private", False))


@dataclass(frozen=True, slots=True)
class Record:
    identifier: str
    values: tuple[Value, ...]
    version: int
    created_at: datetime
    updated_at: datetime
    #: Values whose TTL is the shortest bound how long anyone may cache the record.
    min_ttl: int = field(default=DEFAULT_TTL)

    def select(self, types: frozenset[str] | None, indexes: frozenset[int] | None,
               *, private: bool = False) -> tuple[Value, ...]:
        """Handle REST filtering: a value matches when its type or its index is asked for;
        private values only when the caller may see them."""
        values = self.values if private else tuple(v for v in self.values if not v.private)
        if not types and not indexes:
            return values
        return tuple(v for v in values
                     if (types and v.type in types) or (indexes and v.index in indexes))


def validate_values(values: list[Value], *, max_value_bytes: int, max_record_bytes: int,
                    timestamp: str, field_prefix: str = "values") -> tuple[Value, ...]:
    """Checks a value set for registration or update and stamps it; raises on the first fault."""
    if len(values) > MAX_VALUES:
        raise TooLarge(f"{len(values)} values, more than {MAX_VALUES}", field=field_prefix)
    seen: set[int] = set()
    total = 0
    out = []
    for i, v in enumerate(values):
        where = f"{field_prefix}[{i}]"
        if not 1 <= v.index <= MAX_INDEX:
            raise InvalidValue(f"index {v.index} is outside 1..{MAX_INDEX}", field=f"{where}.index")
        if v.index in seen:
            raise InvalidValue(f"index {v.index} appears twice", field=f"{where}.index")
        seen.add(v.index)
        vtype = v.type
        if not vtype or len(vtype) > MAX_TYPE_LEN or not vtype.isprintable() or " " in vtype:
            raise InvalidValue(
                f"type must be 1..{MAX_TYPE_LEN} printable characters without spaces",
                field=f"{where}.type")
        fmt = v.format or "string"
        if fmt not in FORMATS:
            raise InvalidValue(f"format {fmt!r} is not one of {', '.join(FORMATS)}",
                               field=f"{where}.format")
        size = len(v.data.encode("utf-8")) if not v.data.isascii() else len(v.data)
        if size > max_value_bytes:
            raise TooLarge(f"data is {size} bytes, more than {max_value_bytes}",
                           field=f"{where}.data")
        total += size
        if fmt == "json":
            try:
                orjson.loads(v.data)
            except orjson.JSONDecodeError as exc:
                raise InvalidValue(f"data is not valid JSON: {exc}", field=f"{where}.data") from None
        elif fmt == "base64":
            try:
                base64.b64decode(v.data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidValue("data is not valid base64", field=f"{where}.data") from None
        elif "\x00" in v.data:
            raise InvalidValue("string data contains NUL", field=f"{where}.data")
        ttl = v.ttl or DEFAULT_TTL
        if not 0 < ttl <= MAX_TTL:
            raise InvalidValue(f"ttl {v.ttl} is outside 0..{MAX_TTL}", field=f"{where}.ttl")
        out.append(Value(v.index, vtype, v.data, fmt, ttl, timestamp, v.private))
    if total > max_record_bytes:
        raise TooLarge(f"values total {total} bytes, more than {max_record_bytes}",
                       field=field_prefix)
    out.sort(key=lambda v: v.index)
    return tuple(out)
