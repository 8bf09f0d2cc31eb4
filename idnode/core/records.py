"""Records (DESIGN §3): an identifier with an ordered set of typed values, versioned."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import orjson

from idnode.core import jsondata
from idnode.core.errors import InvalidValue, TooLarge

DEFAULT_TTL = 86400
MAX_TTL = 2**31 - 1
MAX_INDEX = 2**31 - 1
#: Indexes from here up hold the values the node adds to the records it serves (HS_CERT and
#: HS_SIGNATURE of the Handle and IDIS signature forms, core/handleform.py); no enterprise
#: value may take one.
RESERVED_INDEX_MIN = 2_147_483_600
MAX_TYPE_LEN = 128
MAX_VALUES = 256
FORMATS = ("string", "json", "base64")


class Value(NamedTuple):
    """One typed value. A named tuple, not a dataclass: registration builds tens of thousands
    a second, and a tuple is several times cheaper to make than a frozen dataclass."""

    #: Handle's name for the field; it shadows tuple.index, which nothing here calls.
    index: int  # type: ignore[assignment]
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
    #: The node that published (and signed) the record.
    node: str = ""
    #: The proof bundle ({"jws", "leaf_index", "proof"[, "jws_pq"]}), None if unsigned.
    signature: dict[str, Any] | None = None

    def select(self, types: frozenset[str] | None, indexes: frozenset[int] | None,
               *, private: bool = False) -> tuple[Value, ...]:
        """Handle REST filtering: a value matches when its type or its index is asked for;
        private values only when the caller may see them."""
        values = self.values if private else tuple(v for v in self.values if not v.private)
        if not types and not indexes:
            return values
        return tuple(v for v in values
                     if (types and type_matches(types, v.type)) or (indexes and v.index in indexes))


def type_matches(wanted: frozenset[str], vtype: str) -> bool:
    """Handle's type filter (hdllib Util.isParentTypeInArray): case-insensitive; a wanted type
    ending in "." also matches its subtypes ("product." matches "product.name") and itself
    without the dot."""
    if vtype in wanted:
        return True
    low = vtype.lower()
    for t in wanted:
        t = t.lower()
        if t == low or (t.endswith(".") and (low.startswith(t) or low == t[:-1])):
            return True
    return False


class ValueInput(Protocol):
    """A value as a client sent it (a protobuf Value, or a Value). Read-only members, so a
    Value (a named tuple) fits as well as a protobuf message."""

    @property
    def index(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def ttl(self) -> int: ...
    @property
    def private(self) -> bool: ...


def validate_values(values: Sequence[ValueInput], *, max_value_bytes: int,
                    max_record_bytes: int, timestamp: str, field_prefix: str = "values"
                    ) -> tuple[Value, ...]:
    """Checks a value set for registration or update and stamps it; raises on the first fault."""
    checked, _ = validate_values_json(values, max_value_bytes=max_value_bytes,
                                      max_record_bytes=max_record_bytes, timestamp=timestamp,
                                      field_prefix=field_prefix)
    return tuple(Value.from_json(j) for j in checked)


#: Value types found well-formed: they repeat from record to record (a batch's thousands of
#: "URL" and "product.name"), and a set lookup is cheaper than checking each again. Bounded,
#: so that types nobody reuses cannot grow it for good.
_GOOD_TYPES: set[str] = set()
_GOOD_TYPES_MAX = 4096


def validate_values_json(values: Sequence[ValueInput], *, max_value_bytes: int,
                         max_record_bytes: int, timestamp: str, field_prefix: str = "values"
                         ) -> tuple[list[dict[str, Any]], bool]:
    """Checks and stamps a value set like `validate_values`, but returns the values directly in
    their stored form (`Value.to_json`'s members, in sorted key order; values ordered by index)
    and whether any is private.

    On the registration hot path (10,000 records a call) this is the only per-value work:
    the stored JSON is built here once, with no `Value` in between, and error texts are built
    only on error.
    """
    if len(values) > MAX_VALUES:
        raise TooLarge(f"{len(values)} values, more than {MAX_VALUES}", field=field_prefix)
    # Indexes usually come in increasing order: then none can repeat, and the set of those
    # seen is made only when one does not (from the values so far).
    seen: set[int] | None = None
    total = 0
    out: list[dict[str, Any]] = []
    any_private = False
    ordered = True
    last = 0
    good_types = _GOOD_TYPES
    for i, v in enumerate(values):
        index = v.index
        if not last < index < RESERVED_INDEX_MIN:
            if not 1 <= index < RESERVED_INDEX_MIN:
                raise InvalidValue(f"index {index} is outside 1..{RESERVED_INDEX_MIN - 1} (from "
                                   f"{RESERVED_INDEX_MIN} up the node's own signature values)",
                                   field=f"{field_prefix}[{i}].index")
            if seen is None:
                seen = {j["index"] for j in out}
            if index in seen:
                raise InvalidValue(f"index {index} appears twice",
                                   field=f"{field_prefix}[{i}].index")
            ordered = False
        else:
            last = index
        if seen is not None:
            seen.add(index)
        vtype = v.type
        if vtype not in good_types:
            if not vtype or len(vtype) > MAX_TYPE_LEN or not vtype.isprintable() or " " in vtype:
                raise InvalidValue(
                    f"type must be 1..{MAX_TYPE_LEN} printable characters without spaces",
                    field=f"{field_prefix}[{i}].type")
            if len(good_types) < _GOOD_TYPES_MAX:
                good_types.add(vtype)
        fmt = v.format or "string"
        data = v.data
        size = len(data) if data.isascii() else len(data.encode("utf-8"))
        if size > max_value_bytes:
            raise TooLarge(f"data is {size} bytes, more than {max_value_bytes}",
                           field=f"{field_prefix}[{i}].data")
        total += size
        if fmt == "string":
            if "\x00" in data:
                raise InvalidValue("string data contains NUL", field=f"{field_prefix}[{i}].data")
        elif fmt == "json":
            try:
                parsed = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                raise InvalidValue(f"data is not valid JSON: {exc}",
                                   field=f"{field_prefix}[{i}].data") from None
            # The same limits as trace attributes: no NUL, I-JSON integers, bounded depth.
            jsondata.check(parsed, field=f"{field_prefix}[{i}].data")
        elif fmt == "base64":
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidValue("data is not valid base64",
                                   field=f"{field_prefix}[{i}].data") from None
        else:
            raise InvalidValue(f"format {fmt!r} is not one of {', '.join(FORMATS)}",
                               field=f"{field_prefix}[{i}].format")
        ttl = v.ttl or DEFAULT_TTL
        if not 0 < ttl <= MAX_TTL:
            raise InvalidValue(f"ttl {v.ttl} is outside 0..{MAX_TTL}",
                               field=f"{field_prefix}[{i}].ttl")
        # Keys in sorted order: serialised as they are, these values are already in their
        # canonical (RFC 8785) form, which the record's signature covers.
        if v.private:
            any_private = True
            out.append({"data": {"format": fmt, "value": data}, "index": index, "private": True,
                        "timestamp": timestamp, "ttl": ttl, "type": vtype})
        else:
            out.append({"data": {"format": fmt, "value": data}, "index": index,
                        "timestamp": timestamp, "ttl": ttl, "type": vtype})
    if total > max_record_bytes:
        raise TooLarge(f"values total {total} bytes, more than {max_record_bytes}",
                       field=field_prefix)
    if not ordered:
        out.sort(key=_json_index)
    return out, any_private


def _json_index(v: dict[str, Any]) -> int:
    return int(v["index"])
