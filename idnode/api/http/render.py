"""Representations of a record: Handle REST JSON, idnode JSON, and a minimal HTML page."""
from __future__ import annotations

import html

import orjson

from idnode.core import clock
from idnode.core.records import Record, Value
from idnode.core.signing import private_digest_of


def etag(record: Record, rep: str) -> bytes:
    # Version alone repeats after delete and re-registration; creation time does not.
    created = int(record.created_at.timestamp() * 1_000_000)
    return f'"{record.version}-{created:x}-{rep}"'.encode()


def cache_control(record: Record, private: bool = False) -> bytes:
    # An owner's view holds private values: no shared cache may keep it.
    return f"{'private' if private else 'public'}, max-age={record.min_ttl}".encode()


def handle_json(record: Record, values: tuple[Value, ...]) -> bytes:
    """The Handle System REST API shape (responseCode 1, or 200 when no value matched)."""
    code = 1 if values or not record.values else 200
    return orjson.dumps({"responseCode": code, "handle": record.identifier,
                         "values": [v.to_json() for v in values]})


def record_json(record: Record, values: tuple[Value, ...]) -> bytes:
    """idnode's record JSON: with a signature, exactly the signed document plus the bundle,
    so `idnode verify` or any JOSE library checks it as served."""
    doc: dict[str, object] = {
        "identifier": record.identifier,
        "version": record.version,
        "created": clock.iso(record.created_at),
        "updated": clock.iso(record.updated_at),
        "values": [v.to_json() for v in values],
    }
    if record.signature is not None:
        doc["node"] = record.node
        digest = private_digest_of(record)
        if digest:
            doc["private_digest"] = digest
        doc["signature"] = record.signature
    return orjson.dumps(doc)


def record_html(record: Record, values: tuple[Value, ...]) -> bytes:
    rows = "".join(
        f"<tr><td>{v.index}</td><td>{html.escape(v.type)}</td><td>{_cell(v)}</td></tr>"
        for v in values)
    ident = html.escape(record.identifier)
    page = (
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{ident}</title><style>body{{font-family:system-ui,sans-serif;margin:1rem;"
        "max-width:48rem}table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid"
        " #ddd;padding:.4rem;text-align:left;vertical-align:top;word-break:break-all}</style>"
        f"</head><body><h1>{ident}</h1><p>版本 version {record.version} · "
        f"更新 updated {clock.iso(record.updated_at)}</p>"
        f"<table><tr><th>#</th><th>类型 type</th><th>值 value</th></tr>{rows}</table>"
        "</body></html>")
    return page.encode()


def _cell(v: Value) -> str:
    text = html.escape(v.data)
    if v.format == "string" and v.type == "URL" and v.data.startswith(("https://", "http://")):
        return f'<a href="{text}" rel="nofollow noopener">{text}</a>'
    return text
