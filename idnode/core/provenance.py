"""What a consumer's scan shows: a product's trace checked end to end (the record's signature,
the signed tree head, every event's inclusion, every lineage link), its recalls and
corrections, kept per product until an event on it or on anything it was made from lands."""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from idnode.core.trace import STH_TYP, TraceLog
from idnode.crypto import b64, merkle
from idnode.crypto.batch import verify_document
from idnode.crypto.errors import VerificationError
from idnode.crypto.jcs import canonicalize
from idnode.crypto.jws import verify_compact
from idnode.model.invalidation import TRACE_KEY


@dataclass(slots=True)
class TraceCheck:
    """The outcome of checking a trace document: `failures` maps a leaf (or -1 for the head
    and the document as a whole) to why it does not verify."""

    size: int = 0
    failures: dict[int, VerificationError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def first(self) -> VerificationError | None:
        return next(iter(self.failures.values()), None)


def signed_head(head: Mapping[str, Any], jwks: Mapping[str, Any]) -> tuple[str, int, bytes]:
    """(log, size, root) of a tree head (GET /api/log/head, or a trace's tree_head) whose JWS
    verifies with `jwks` and says what the document says."""
    try:
        _, payload = verify_compact(str(head.get("jws", "")), jwks, typ=STH_TYP)
        signed = orjson.loads(payload)
        log, size, root = str(signed["log"]), int(signed["size"]), b64.dec(signed["root"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError("malformed", f"tree head: {exc}") from None
    if (head.get("size"), head.get("root"), head.get("log", log)) != (size, signed["root"], log):
        raise VerificationError("content_mismatch", "tree head differs from what was signed")
    return log, size, root


def check_trace(doc: Mapping[str, Any], jwks: Mapping[str, Any]) -> TraceCheck:
    """Checks a trace (GET /api/trace/{identifier}) against keys the verifier trusts.

    (1) the tree head is signed by one of `jwks` and says what the document says;
    (2) each lineage link is declared by an event of the child, in the document, naming the
        parent among its inputs — so the family of products is itself logged;
    (3) each event belongs to the product or that family, and its inclusion proof leads from
        its leaf hash to the signed root.
    """
    out = TraceCheck()
    head = doc.get("tree_head") or {}
    if not head and not doc.get("events") and not doc.get("lineage"):
        return out  # an untraced product: nothing claimed, nothing to prove
    # (1)
    try:
        _, size, root = signed_head(head, jwks)
    except VerificationError as exc:
        out.failures[-1] = exc
        return out
    out.size = size
    events = [e for e in doc.get("events", []) if isinstance(e, dict)]
    by_leaf = {e.get("leaf"): e for e in events}
    # (2)
    family = {doc.get("identifier")}
    links = [link for link in doc.get("lineage", []) if isinstance(link, dict)]
    grew = True
    while grew:
        grew = False
        for link in links:
            if link.get("child") in family and link.get("parent") not in family:
                declared = by_leaf.get(link.get("leaf"))
                if (declared is None or declared.get("identifier") != link.get("child")
                        or link.get("parent") not in (declared.get("inputs") or ())):
                    out.failures.setdefault(-1, VerificationError(
                        "content_mismatch", f"lineage link {link.get('child')} ← "
                                            f"{link.get('parent')} is not declared by its event"))
                    continue
                family.add(link.get("parent"))
                grew = True
    # (3)
    for e in events:
        leaf = int(e.get("leaf", -1))
        try:
            if e.get("identifier") not in family:
                raise VerificationError("content_mismatch",
                                        f"event {leaf} is of {e.get('identifier')}, which this "
                                        "product does not descend from")
            proof = [b64.dec(p) for p in e.get("inclusion", [])]
            content = {k: v for k, v in e.items() if k != "inclusion"}
            merkle.verify_inclusion(merkle.leaf_hash(canonicalize(content)), leaf, size, proof,
                                    root)
        except VerificationError as exc:
            out.failures[leaf] = exc
        except (ValueError, TypeError) as exc:
            out.failures[leaf] = VerificationError("malformed", f"event {leaf}: {exc}")
    return out


def recalls(events: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Recall events still in force: a recall is lifted only by a correction of it."""
    corrected = {e.get("corrects") for e in events if e.get("corrects") is not None}
    return [e for e in events if e.get("kind") == "recall" and e.get("leaf") not in corrected
            and e.get("corrects") is None]


@dataclass(slots=True)
class ProductView:
    """Everything the scan page shows besides the record itself."""

    identifier: str
    trace: dict[str, Any]
    check: TraceCheck
    record_ok: bool
    record_problem: str
    record_tag: bytes
    producer: str | None
    built: float
    #: The product and everything it descends from: an event on any of them invalidates.
    family: frozenset[str]
    #: Events in the node's log: the signed head's size, or for an untraced product (no head
    #: fetched) the log's size when the view was built.
    log_size: int = 0

    @property
    def verified(self) -> bool:
        return self.record_ok and self.check.ok

    @property
    def recalls(self) -> list[Mapping[str, Any]]:
        return recalls(self.trace["events"])


PRODUCER_MAX_AGE = 60.0
#: The served record document, made only when a view is (re)built: a cached view, the usual
#: case, needs only the record's tag.
RecordDoc = Callable[[], Mapping[str, Any]]


class ProductViews:
    """A bounded cache of ProductViews. Appends notify `trace:<identifier>` on the cache
    channel; a view is dropped when any product in its family is named. Changes made behind
    the node's back (tampering in the database) notify nothing: `max_age` bounds how long a
    view may miss them."""

    def __init__(self, build: Callable[[str, RecordDoc, bytes], Awaitable[ProductView]],
                 *, max_entries: int = 10_000, max_age: float = 5.0) -> None:
        self._build = build
        self.max_entries = max_entries
        self.max_age = max_age
        self._views: OrderedDict[str, ProductView] = OrderedDict()
        self._dependents: dict[str, set[str]] = {}

    async def get(self, identifier: str, record_doc: RecordDoc, record_tag: bytes
                  ) -> ProductView:
        view = self._views.get(identifier)
        if (view is not None and view.record_tag == record_tag
                and time.monotonic() - view.built < self.max_age):
            self._views.move_to_end(identifier)
            return view
        view = await self._build(identifier, record_doc, record_tag)
        self._drop(identifier)
        self._views[identifier] = view
        for member in view.family:
            self._dependents.setdefault(member, set()).add(identifier)
        while len(self._views) > self.max_entries:
            self._drop(next(iter(self._views)))
        return view

    def on_invalidated(self, keys: Sequence[str] | None) -> None:
        if keys is None:
            self._views.clear()
            self._dependents.clear()
            return
        for key in keys:
            if key.startswith(TRACE_KEY):
                for dependent in list(self._dependents.get(key[len(TRACE_KEY):], ())):
                    self._drop(dependent)

    def _drop(self, identifier: str) -> None:
        view = self._views.pop(identifier, None)
        if view is None:
            return
        for member in view.family:
            deps = self._dependents.get(member)
            if deps is not None:
                deps.discard(identifier)
                if not deps:
                    del self._dependents[member]


def check_record(doc: Mapping[str, Any], jwks: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a served record document verifies with the node's keys, and why not."""
    if "signature" not in doc:
        return False, "unsigned"
    try:
        verify_document(doc, jwks)
    except VerificationError as exc:
        return False, exc.reason
    return True, ""


class Provenance:
    """Builds ProductViews from the trace log and the node's own published keys."""

    def __init__(self, trace: TraceLog, jwks: Callable[[], Mapping[str, Any]], *,
                 max_age: float = 5.0) -> None:
        self.trace = trace
        self.jwks = jwks
        self.views = ProductViews(self._build, max_age=max_age)
        #: prefix → (producer's name, when read): names change rarely; a minute is fresh.
        self._producers: dict[str, tuple[str | None, float]] = {}

    async def view(self, identifier: str, record_doc: RecordDoc, record_tag: bytes
                   ) -> ProductView:
        return await self.views.get(identifier, record_doc, record_tag)

    async def _build(self, identifier: str, record_doc: RecordDoc, record_tag: bytes
                     ) -> ProductView:
        doc = await self.trace.trace(identifier, head_when_empty=False)
        jwks = self.jwks()
        record_ok, record_problem = check_record(record_doc(), jwks)
        family = frozenset([identifier, *(link["parent"] for link in doc["lineage"])])
        head = doc.get("tree_head")
        log_size = int(head.get("size", 0)) if isinstance(head, dict) else await self.trace.size()
        return ProductView(
            identifier, doc, check_trace(doc, jwks), record_ok, record_problem, record_tag,
            await self._producer(identifier.split("/", 1)[0]), time.monotonic(), family,
            log_size)

    async def _producer(self, prefix: str) -> str | None:
        known = self._producers.get(prefix)
        if known is not None and time.monotonic() - known[1] < PRODUCER_MAX_AGE:
            return known[0]
        name = await self.trace.producer(prefix)
        if len(self._producers) >= 10_000:
            self._producers.clear()
        self._producers[prefix] = (name, time.monotonic())
        return name
