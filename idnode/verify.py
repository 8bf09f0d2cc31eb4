"""`idnode verify`: check a record offline against a trust anchor, and say exactly why not."""
from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import orjson

from idnode.crypto import b64, merkle
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
