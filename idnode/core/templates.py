"""Metadata templates (元数据模板): a JSON Schema per prefix that registrations must satisfy.

A record is checked as an object whose members are its value types, each holding the value's
data (parsed when its format is json), so a template reads like the product's data sheet:
`{"product.name": "五常大米", "batch.harvest_date": "2026-09-28", …}`.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from idnode.core.errors import InvalidArgument, TemplateViolation
from idnode.core.records import Value

BUILTIN = ("agri-product-unit", "industrial-part", "batch")
MAX_SCHEMA_BYTES = 65_536


def builtin(name: str) -> dict[str, Any]:
    if name not in BUILTIN:
        raise InvalidArgument(f"no built-in template {name!r}; built-in: {', '.join(BUILTIN)}",
                              field="template")
    text = resources.files("idnode.templates").joinpath(f"{name}.json").read_text("utf-8")
    return dict(json.loads(text))


def check_schema(schema: dict[str, Any]) -> None:
    """Refuses a template that is not a valid JSON Schema (2020-12), or too large."""
    if len(orjson.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidArgument(f"template is larger than {MAX_SCHEMA_BYTES} bytes", field="schema",
                              reason="TOO_LARGE")
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise InvalidArgument('a template must be a JSON Schema with "type": "object"',
                              field="schema", reason="INVALID_TEMPLATE")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidArgument(f"template is not a valid JSON Schema: {exc.message}",
                              field="schema", reason="INVALID_TEMPLATE") from None


#: Handle administration value types. A record holding only these (an admin identity such as
#: `<prefix>/ADMIN` with HS_ADMIN and HS_PUBKEY) describes no product, so a prefix's product
#: template does not apply to it; a product record's other values are checked as usual.
ADMIN_TYPES = frozenset({"HS_ADMIN", "HS_PUBKEY", "HS_SECKEY", "HS_VLIST", "HS_SITE",
                         "HS_SITE.6", "HS_SERV", "HS_ALIAS", "HS_CERT", "HS_SIGNATURE"})


def exempt(values: Sequence[Value] | Sequence[dict[str, Any]]) -> bool:
    """Whether a value set is an administrative record that templates do not constrain."""
    return bool(values) and all(
        (v["type"] if isinstance(v, dict) else v.type) in ADMIN_TYPES for v in values)


@lru_cache(maxsize=1024)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def instance(values: Sequence[Value] | Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The object a template checks: Values, or values in their stored form (`to_json`)."""
    out: dict[str, Any] = {}
    for v in values:
        if isinstance(v, dict):
            data = v["data"]
            out[v["type"]] = orjson.loads(data["value"]) if data["format"] == "json" \
                else data["value"]
        else:
            out[v.type] = orjson.loads(v.data) if v.format == "json" else v.data
    return out


def validate(schema_json: str, values: Sequence[Value] | Sequence[dict[str, Any]], *,
             field: str, template: str) -> None:
    """Raises TemplateViolation naming every failing value type and rule."""
    validator = _validator(schema_json)
    errors = sorted(validator.iter_errors(instance(values)), key=lambda e: list(e.path))
    if not errors:
        return
    found: list[tuple[str, str]] = []
    for err in errors:
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            found.append((f"{field}[type={missing}]",
                          f"template {template!r} requires a value of type {missing!r}"))
        else:
            where = ".".join(str(p) for p in err.path)
            found.append((f"{field}[type={where}]",
                          f"template {template!r}: value {where!r} {err.message}"))
    raise TemplateViolation(found)
