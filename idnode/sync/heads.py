"""What the top-level node checks in a secondary node's reported tree head: that the node's own
key signed it, for its own log, and that it extends (or is extended by) a head the top already
keeps. A node that rewrote or forked its traceability log cannot produce such a proof, so it is
caught at the first report after the rewrite, whatever it serves to consumers."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from idnode.core.trace import STH_TYP
from idnode.crypto import b64, merkle
from idnode.crypto.errors import VerificationError
from idnode.crypto.jws import parse_compact, verify_parsed


@dataclass(frozen=True, slots=True)
class ReportedHead:
    size: int
    root: bytes
    jws: str
    #: The size of the earlier-kept head this one is linked to by `consistency`, or None.
    linked_to: int | None
    consistency: tuple[bytes, ...]


def parse(node_prefix: str, payload: Mapping[str, Any], jwks: Mapping[str, Any]
          ) -> ReportedHead:
    """The head a `trace.head` event reports, once its signature, log name and size are
    checked; VerificationError saying why not.

    A head signed by a key the top has not been told of yet (rotated since the node last
    registered) is refused too: the node re-registers its keys and the event stays refused in
    the record, which is what an auditor wants to see."""
    jws = payload.get("jws")
    if not isinstance(jws, str):
        raise VerificationError("malformed", "trace.head without a jws")
    _, body = verify_parsed(parse_compact(jws), jwks, typ=STH_TYP)
    try:
        head = orjson.loads(body)
        size, root = int(head["size"]), b64.dec(head["root"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise VerificationError("malformed", "tree head payload lacks size or root") from None
    if head.get("log") != node_prefix:
        raise VerificationError("content_mismatch", f"head of log {head.get('log')!r}, reported "
                                                    f"by node {node_prefix}")
    if payload.get("size") != size:
        raise VerificationError("content_mismatch", "reported size differs from the signed one")
    linked = payload.get("with")
    try:
        proof = tuple(b64.dec(h) for h in payload.get("consistency", []))
    except (TypeError, ValueError):
        raise VerificationError("malformed", "consistency proof is not base64url") from None
    if linked is not None and (not isinstance(linked, int) or linked < 0 or linked == size):
        raise VerificationError("malformed", f"linked head size {linked!r}")
    return ReportedHead(size, root, jws, linked, proof)


def check_link(head: ReportedHead, other_root: bytes) -> None:
    """The head and the kept head it names are one log: the smaller is a prefix of the
    larger (RFC 9162 §2.1.4.2)."""
    assert head.linked_to is not None
    if head.linked_to < head.size:
        merkle.verify_consistency(head.linked_to, head.size, head.consistency, other_root,
                                  head.root)
    else:
        merkle.verify_consistency(head.size, head.linked_to, head.consistency, head.root,
                                  other_root)
