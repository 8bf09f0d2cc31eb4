"""Event templates: the typed attributes each kind of trace event carries (a JSON Schema per
kind, idnode/templates/events.json), so a fertiliser record says what and how much, and an
inspection says pass or fail, in the same words for every enterprise."""
from __future__ import annotations

import json
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
