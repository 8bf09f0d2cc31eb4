"""JSON that clients send (trace event attributes, `json` record values): the limits every
entry point enforces alike, so what one accepts another can store, sign and serve.

Whatever is accepted here is I-JSON (RFC 7493) that RFC 8785 canonicalises exactly, so any
JCS implementation (the `rfc8785` package docs/SIGNING.md points verifiers to) reproduces the
bytes the node signed; and PostgreSQL's jsonb, which stores trace attributes, can hold it.
"""
from __future__ import annotations

from typing import Any

import orjson

from idnode.core.errors import InvalidValue, TooLarge

#: Nesting deeper than this is no one's data (orjson itself writes at most 254 levels).
MAX_DEPTH = 32
#: I-JSON's exact integers (RFC 7493 §2.2): beyond them a double, and so a JCS verifier,
#: reads another number.
MAX_SAFE_INTEGER = 2**53 - 1


def parse_object(text: str | bytes, *, field: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object from a client, size checked before it is parsed, then `check`ed."""
    size = len(text) if isinstance(text, bytes) or text.isascii() else len(text.encode())
    if size > max_bytes:
        raise TooLarge(f"{size} bytes of JSON, more than {max_bytes}", field=field)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"not JSON: {exc}", field=field) from None
    if not isinstance(obj, dict):
        raise InvalidValue("must be a JSON object", field=field)
    check(obj, field=field)
    return obj


def check(value: Any, *, field: str) -> None:
    """Raises InvalidValue naming a place (`field.a.b[2]`) in `value` that holds
    U+0000, an integer beyond ±(2^53 − 1), or nesting deeper than MAX_DEPTH."""
    if not _clean(value):
        _name_fault(value, field)


def _clean(value: Any) -> bool:
    """Whether `value` holds nothing `check` refuses, found without building a path for every
    member (a trace event's attributes are checked on every append): when this says no,
    `_name_fault`, which decides, walks again naming where."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            if depth >= MAX_DEPTH:
                return False
            for k, v in item.items():
                if "\x00" in k:
                    return False
                stack.append((v, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in item)
        elif kind is str:
            if "\x00" in item:
                return False
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return False
        elif not (kind is float or kind is bool or item is None):
            return False  # a tuple, a subclass, or no JSON value: `_name_fault` decides
    return True


def _name_fault(value: Any, field: str) -> None:
    # Iterative, so hostile nesting cannot exhaust the interpreter's stack.
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidValue("contains U+0000 (NUL), which JSON text stores and "
                                   "PostgreSQL refuse", field=where)
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise InvalidValue(
                    f"integer {item} is beyond ±(2^53 − 1): I-JSON (RFC 7493 §2.2) numbers are "
                    "exact doubles, and RFC 8785 verifiers refuse larger integers; send it as a "
                    "string", field=where)
        elif isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise InvalidValue(f"nested more than {MAX_DEPTH} levels deep", field=where)
            for k, v in item.items():
                if "\x00" in k:
                    raise InvalidValue("a member name contains U+0000 (NUL)", field=where)
                stack.append((v, f"{where}.{k}", depth + 1))
        elif isinstance(item, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise InvalidValue(f"nested more than {MAX_DEPTH} levels deep", field=where)
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        else:
            raise InvalidValue(f"{type(item).__name__} is not a JSON value", field=where)
