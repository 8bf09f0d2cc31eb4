"""Event templates: the typed attributes each kind of trace event carries (a JSON Schema per
kind, idnode/templates/events.json), so a fertiliser record says what and how much, and an
inspection says pass or fail, in the same words for every enterprise."""
from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator

from idnode.core.errors import TemplateViolation


@cache
def schemas() -> dict[str, dict[str, Any]]:
    text = resources.files("idnode.templates").joinpath("events.json").read_text("utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("$")}


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = schemas()[kind]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


KINDS: tuple[str, ...] = tuple(schemas())


def title(kind: str) -> str:
    return str(schemas().get(kind, {}).get("title", kind))


def check(kind: str, attrs: dict[str, Any], *, field: str) -> None:
    """Raises TemplateViolation naming every failing attribute and rule of the kind's
    template."""
    accepts = _accepts(kind)
    if accepts is not None and accepts(attrs):
        return
    errors = sorted(_validator(kind).iter_errors(attrs), key=lambda e: list(e.path))
    if not errors:
        return
    found: list[tuple[str, str]] = []
    for err in errors:
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            found.append((f"{field}.{missing}", f"a {kind} event needs the attribute {missing!r}"))
        else:
            where = ".".join(str(p) for p in err.path) or "attrs"
            found.append((f"{field}.{where}", f"{kind} event: attribute {where!r} {err.message}"))
    raise TemplateViolation(found)


#: An instance test that says True only where jsonschema would accept the instance; False
#: means "ask jsonschema" (which then accepts, or names every error).
Accepts = Callable[[Any], bool]
_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    # jsonschema also counts 1.0 an integer; leaving floats to it keeps this side strict.
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}
_IGNORED = frozenset({"title", "description", "$comment"})


@cache
def _accepts(kind: str) -> Accepts | None:
    """The kind's template compiled to plain Python tests, which a trace append (one check
    per event) runs in a fraction of jsonschema's time; None if the template uses a keyword
    this does not know (then jsonschema alone decides)."""
    return _compile(schemas()[kind])


def _compile(schema: Any) -> Accepts | None:  # noqa: C901 - one branch per keyword
    if not isinstance(schema, dict):
        return None
    tests: list[Accepts] = []
    for key, arg in schema.items():
        if key in _IGNORED:
            continue
        if key == "type":
            names = [arg] if isinstance(arg, str) else arg
            if not isinstance(names, list) or any(n not in _TYPES for n in names):
                return None
            tests.append(_any([_TYPES[n] for n in names]))
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if not _TYPES["number"](arg):
                return None
            tests.append(_bound(key, arg))
        elif key in ("minLength", "maxLength"):
            if not _TYPES["integer"](arg):
                return None
            tests.append(_length(key == "minLength", arg))
        elif key == "enum":
            if not isinstance(arg, list):
                return None
            tests.append(_enum(arg))
        elif key == "required":
            if not isinstance(arg, list):
                return None
            tests.append(_required(list(arg)))
        elif key == "properties":
            if not isinstance(arg, dict):
                return None
            props: dict[str, Accepts] = {}
            for name, sub in arg.items():
                compiled = _compile(sub)
                if compiled is None:
                    return None
                props[name] = compiled
            tests.append(_properties(props))
        elif key == "additionalProperties":
            if arg is True:
                continue
            extra = None if arg is False else _compile(arg)
            if arg is not False and extra is None:
                return None
            tests.append(_additional(set(schema.get("properties", {})), extra))
        elif key == "items":
            each = _compile(arg)
            if each is None:
                return None
            tests.append(_items(each))
        else:
            return None
    return _all(tests)


def _any(kinds: list[Accepts]) -> Accepts:
    if len(kinds) == 1:
        return kinds[0]
    return lambda v: any(t(v) for t in kinds)


def _length(at_least: bool, n: int) -> Accepts:
    if at_least:
        return lambda v: not isinstance(v, str) or len(v) >= n
    return lambda v: not isinstance(v, str) or len(v) <= n


def _enum(values: list[Any]) -> Accepts:
    # Same type and equal: jsonschema's equality (1 == 1.0, True != 1) is wider.
    choices = [(type(c), c) for c in values]
    return lambda v: any(type(v) is t and v == c for t, c in choices)


def _required(names: list[str]) -> Accepts:
    return lambda v: not isinstance(v, dict) or all(n in v for n in names)


def _additional(known: set[str], extra: Accepts | None) -> Accepts:
    if extra is None:  # additionalProperties: false
        return lambda v: not isinstance(v, dict) or v.keys() <= known
    return lambda v: not isinstance(v, dict) or all(
        extra(x) for k, x in v.items() if k not in known)


def _items(each: Accepts) -> Accepts:
    return lambda v: not isinstance(v, list) or all(each(x) for x in v)


def _all(tests: list[Accepts]) -> Accepts:
    if len(tests) == 1:
        return tests[0]

    def accepts(v: Any) -> bool:
        for t in tests:  # a loop, not all(generator): this runs for every event
            if not t(v):
                return False
        return True
    return accepts


def _properties(props: dict[str, Accepts]) -> Accepts:
    def accepts(v: Any) -> bool:
        if isinstance(v, dict):
            for k, x in v.items():
                t = props.get(k)
                if t is not None and not t(x):
                    return False
        return True
    return accepts


def _bound(key: str, limit: float) -> Accepts:
    number = _TYPES["number"]
    # One closure per keyword, not one comparing `key` on every call (this runs per event).
    if key == "minimum":
        return lambda v: not number(v) or v >= limit
    if key == "maximum":
        return lambda v: not number(v) or v <= limit
    if key == "exclusiveMinimum":
        return lambda v: not number(v) or v > limit
    return lambda v: not number(v) or v < limit
