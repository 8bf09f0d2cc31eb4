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
from idnode.crypto.jcs import canonicalize_surveyed, prints_as_ecmascript

#: Nesting deeper than this is no one's data (orjson itself writes at most 254 levels).
MAX_DEPTH = 32
#: I-JSON's exact integers (RFC 7493 §2.2): beyond them a double, and so a JCS verifier,
#: reads another number.
MAX_SAFE_INTEGER = 2**53 - 1


def parse_object(text: str | bytes, *, field: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object from a client, size checked before it is parsed, then `check`ed."""
    obj = _load_object(text, field=field, max_bytes=max_bytes)
    check(obj, field=field)
    return obj


def parse_canonical(text: str | bytes, *, field: str, max_bytes: int
                    ) -> tuple[dict[str, Any], bytes]:
    """`parse_object`, and the object's RFC 8785 bytes: see `canonical`."""
    obj = _load_object(text, field=field, max_bytes=max_bytes)
    return obj, canonical(obj, field=field)


def check(value: Any, *, field: str) -> None:
    """Raises InvalidValue naming a place (`field.a.b[2]`) in `value` that holds
    U+0000, an integer beyond ±(2^53 − 1), or nesting deeper than MAX_DEPTH."""
    if _survey(value) is _FAULT:
        _name_fault(value, field)


def canonical(value: Any, *, field: str) -> bytes:
    """`check`, then the value's RFC 8785 bytes, with one walk deciding both: a trace event's
    attributes are checked and canonicalised on every append."""
    survey = _survey(value)
    if survey is _FAULT:
        _name_fault(value, field)
    try:
        return canonicalize_surveyed(value, survey is _SIMPLE)
    except ValueError as exc:  # lone surrogates in a value that did not come from JSON text
        raise InvalidValue(str(exc), field=field) from None


def _load_object(text: str | bytes, *, field: str, max_bytes: int) -> dict[str, Any]:
    size = len(text) if isinstance(text, bytes) or text.isascii() else len(text.encode())
    if size > max_bytes:
        raise TooLarge(f"{size} bytes of JSON, more than {max_bytes}", field=field)
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue(f"not JSON: {exc}", field=field) from None
    if not isinstance(obj, dict):
        raise InvalidValue("must be a JSON object", field=field)
    return obj


#: What `_survey` finds: something `check` refuses; clean; clean and printed canonically by
#: orjson as it stands (crypto.jcs.canonicalize_surveyed).
_FAULT, _CLEAN, _SIMPLE = object(), object(), object()


def _survey(value: Any) -> object:
    """Whether `value` holds nothing `check` refuses, found without building a path for every
    member (when it does, `_name_fault`, which decides, walks again naming where), and whether
    it is simple for RFC 8785 (crypto.jcs): ASCII member names, no floats orjson prints
    otherwise than ECMAScript."""
    simple = True
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict:
            if depth >= MAX_DEPTH:
                return _FAULT
            for k, v in item.items():
                if type(k) is not str or "\x00" in k:
                    return _FAULT
                if simple and not k.isascii():
                    simple = False
                stack.append((v, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return _FAULT
            stack.extend((v, depth + 1) for v in item)
        elif kind is str:
            if "\x00" in item:
                return _FAULT
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                return _FAULT
        elif kind is float:
            if simple and not prints_as_ecmascript(item):
                simple = False
        elif not (kind is bool or item is None):
            return _FAULT  # a tuple, a subclass, or no JSON value: `_name_fault` decides
    return _SIMPLE if simple else _CLEAN


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
                if not isinstance(k, str):
                    raise InvalidValue(f"member name {k!r} is not a string", field=where)
                if "\x00" in k:
                    raise InvalidValue("a member name contains U+0000 (NUL)", field=where)
                stack.append((v, f"{where}.{k}", depth + 1))
        elif isinstance(item, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise InvalidValue(f"nested more than {MAX_DEPTH} levels deep", field=where)
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(item))
        else:
            raise InvalidValue(f"{type(item).__name__} is not a JSON value", field=where)
