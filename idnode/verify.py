"""`idnode verify`: check a record offline against a trust anchor, and say exactly why not."""
from __future__ import annotations

import base64
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from idnode.crypto import b64, hsig, merkle
from idnode.crypto.batch import verify_record
from idnode.crypto.certify import certified_jwks
from idnode.crypto.errors import VerificationError


def load_json(source: str, *, accept_json: bool = True) -> Any:
    """A JSON document from a file or an http(s) URL."""
    if source.startswith(("http://", "https://")):
        req = urllib.request.Request(source, headers={"Accept": "application/json"}
                                     if accept_json else {})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - user-given URL
            return orjson.loads(resp.read())
    return orjson.loads(Path(source).read_bytes())


def _node_jwks(trust: dict[str, Any], anchor_jwks: dict[str, Any]) -> dict[str, Any]:
    """The node's keys that the anchor certified (its key statements checked)."""
    statements = trust.get("key_statements") or {}
    if not statements:
        raise VerificationError("unknown_key", "the node presents no certified keys")
    return certified_jwks(statements, anchor_jwks)


def verify(record: dict[str, Any], trust: dict[str, Any], anchor_jwks: dict[str, Any], *,
           min_version: int = 0, require_pq: bool = False) -> dict[str, Any]:
    """Returns the batch statement; raises VerificationError.

    (1) the node's key statements must verify with the anchor's keys (the anchor a verifier
    was given, never the one the node serves); (2) the record must verify with the certified
    keys; (3) its version must be at least `min_version` (a replayed older version fails).
    """
    # (1)
    jwks = _node_jwks(trust, anchor_jwks)
    for jwk in jwks["keys"]:
        if jwk.get("idnode:node") != record.get("node"):
            raise VerificationError("wrong_anchor", f"key {jwk['kid']} is certified for node "
                                                    f"{jwk.get('idnode:node')!r}, not "
                                                    f"{record.get('node')!r}")
    # (2)
    statement = verify_record(record, jwks, require_pq=require_pq)
    # (3)
    if int(record.get("version", 0)) < min_version:
        raise VerificationError("stale_version", f"record is version {record.get('version')}, "
                                                 f"at least {min_version} was expected")
    return statement


def verify_log_growth(old: dict[str, Any], new: dict[str, Any], proof: list[str],
                      trust: dict[str, Any], anchor_jwks: dict[str, Any]) -> tuple[int, int]:
    """Checks that the signed tree head `new` extends `old` (RFC 9162 §2.1.4): both signed by
    keys the anchor certified, for the same log, and the consistency proof links them. An
    auditor who kept an earlier head learns that no logged event was changed or removed since.
    Returns (old size, new size)."""
    from idnode.core.provenance import signed_head

    jwks = _node_jwks(trust, anchor_jwks)
    log1, size1, root1 = signed_head(old, jwks)
    log2, size2, root2 = signed_head(new, jwks)
    if log1 != log2:
        raise VerificationError("content_mismatch", f"heads of two logs: {log1} and {log2}")
    if size1 > size2:
        raise VerificationError("bad_consistency_path", f"the kept head ({size1}) is larger "
                                                        f"than the new one ({size2})")
    try:
        hashes = [b64.dec(h) for h in proof]
    except (TypeError, ValueError):
        raise VerificationError("malformed", "consistency proof is not base64url") from None
    merkle.verify_consistency(size1, size2, hashes, root1, root2)
    return size1, size2


def verify_trace(doc: dict[str, Any], trust: dict[str, Any], anchor_jwks: dict[str, Any]
                 ) -> int:
    """Checks a product's trace (GET /api/trace/{identifier}) offline with the node keys the
    anchor certified: the signed tree head, every lineage link and every event's inclusion
    (provenance.check_trace). Returns how many events verified; raises on the first failure."""
    from idnode.core.provenance import check_trace

    checked = check_trace(doc, _node_jwks(trust, anchor_jwks))
    failure = checked.first()
    if failure is not None:
        raise failure
    return len(doc.get("events", []))


# -- the Handle and IDIS forms ------------------------------------------------------------------

FORM_NAMES = {"RS256": "handle", "SM2SM3": "idis"}


@dataclass(frozen=True, slots=True)
class FormResult:
    """One signature form of a record, checked: what vouches for what, or why it fails."""

    form: str
    alg: str
    index: int
    issuer: str
    chain: tuple[str, ...]
    covered: frozenset[int]
    failure: VerificationError | None


def rest_values(doc: dict[str, Any]) -> list[hsig.WireValue]:
    """The values of a Handle REST record ({"handle", "values": [...]}, as GET
    /api/handles/{identifier} serves it, or hdllib writes it) as the protocol carries them:
    the bytes a digest covers are rebuilt exactly (data formats string, base64, hex and
    idnode's json; relative or absolute TTL; permissions, or idnode's "private")."""
    out = []
    for i, v in enumerate(doc.get("values") or []):
        try:
            data = v["data"]
            fmt, text = (data.get("format"), data.get("value")) if isinstance(data, dict) \
                else ("string", data)
            if fmt in ("string", "json"):
                raw = (text if isinstance(text, str) else orjson.dumps(text).decode()).encode()
            elif fmt == "base64":
                raw = base64.b64decode(text)  # type: ignore[arg-type]  # TypeError: caught
            elif fmt == "hex":
                raw = bytes.fromhex(text)  # type: ignore[arg-type]  # TypeError: caught
            else:
                raise ValueError(f"data format {fmt!r}")
            ttl, ttl_type = v.get("ttl", 86400), hsig.TTL_RELATIVE
            if isinstance(ttl, str):
                ttl, ttl_type = int(datetime.fromisoformat(ttl.replace("Z", "+00:00"))
                                    .timestamp()), 1
            perms = hsig.PRIVATE if v.get("private") else hsig.PUBLIC
            if isinstance(v.get("permissions"), str):
                bits = v["permissions"]
                perms = 0x0F if bits == "*" else sum(
                    bit for bit, c in zip((1, 2, 4, 8), reversed(bits)) if c == "1")
            refs = tuple((str(r.get("handle")), int(r.get("index", 0)))
                         for r in v.get("references") or [])
            out.append(hsig.WireValue(int(v["index"]), str(v["type"]), raw, int(ttl), perms,
                                      ttl_type, 0, refs))
        except (KeyError, TypeError, ValueError) as exc:
            raise VerificationError("malformed", f"value {i} of the record: {exc}") from None
    return out


def anchor_roots(anchor_jwks: dict[str, Any]) -> list[dict[str, Any]]:
    """The anchor's keys that can be Handle trust roots (RSA and SM2)."""
    return [k for k in anchor_jwks.get("keys") or [] if isinstance(k, dict)
            and str(k.get("kty")).upper() in ("RSA", "SM2")]


def verify_forms(doc: dict[str, Any], anchor_jwks: dict[str, Any],
                 lookup: Callable[[str, int], Sequence[hsig.WireValue]], *,
                 now: float | None = None) -> list[FormResult]:
    """Checks every HS_SIGNATURE of a Handle REST record against the anchor's RSA and SM2
    keys (hdllib's algorithm, idnode.crypto.hsig): one result per signature, a failure
    naming the value or the chain link; a form whose valid signatures leave a public value
    uncovered fails with "unsigned". `lookup(handle, index)` gives other records' values
    (the root record 0.0/0.0) for the chains."""
    handle = str(doc.get("handle", ""))
    values = rest_values(doc)
    checks = hsig.check_values(handle, values, anchor_roots(anchor_jwks), lookup,
                               time.time() if now is None else now)
    out = []
    for c in checks:
        failure = c.failure
        if failure is None:
            left = hsig.unsigned(values, c.covered)
            if left:
                failure = VerificationError(
                    "unsigned", f"HS_SIGNATURE at index {c.index} leaves value(s) "
                                f"{', '.join(f'{v.index} ({v.type})' for v in left)} unsigned")
        out.append(FormResult(FORM_NAMES.get(c.alg, "handle"), c.alg, c.index, c.issuer,
                              tuple(c.chain), c.covered, failure))
    return out


def handle_lookup(base: str | None, files: Sequence[dict[str, Any]] = ()
                  ) -> Callable[[str, int], Sequence[hsig.WireValue]]:
    """Chain lookups: records given as files (Handle REST or hdllib's bootstrap_handles
    shape) first, then GET {base}/api/handles/{handle} (when `base` is an http(s) URL)."""
    known: dict[str, list[hsig.WireValue]] = {}
    for doc in files:
        recs = doc.get("handles", {}).values() if isinstance(doc.get("handles"), dict) else [doc]
        for rec in recs:
            known[str(rec.get("handle", "")).upper()] = rest_values(rec)

    def lookup(handle: str, index: int) -> Sequence[hsig.WireValue]:
        key = handle.upper()
        if key not in known:
            if not base:
                return []
            try:
                doc = load_json(f"{base}/api/handles/{urllib.parse.quote(handle, safe='/')}")
            except OSError:
                return []
            known[key] = rest_values(doc)
        return known[key]
    return lookup
