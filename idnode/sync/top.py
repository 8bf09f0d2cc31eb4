"""The reference top-level node's rules: which secondary node holds which prefix, what they
report, and where an identifier is resolved. Tests, development and private federations run it;
a real national node is reached through idnode.sync.upstream instead."""
from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from idnode.core import auth, identifiers
from idnode.core.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from idnode.crypto.errors import VerificationError
from idnode.model.rows import MAX_BIGINT
from idnode.store.top import IncomingEvent, NodeRow, ReportTx, TopStore
from idnode.sync import heads

log = logging.getLogger("idnode.top")

LOCATE_TTL = 300
MAX_EVENTS_PER_REPORT = 5000
#: A heartbeat's backlog and daily counts: far past any real one (2^40 a day), and their sums
#: over a year stay within PostgreSQL's bigint.
MAX_COUNT = 2**40
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
#: Refused tree heads checked again, at most, when a head links to one of them.
MAX_RECHECK = 100


@dataclass(frozen=True, slots=True)
class Counter:
    prefix: str
    day: str
    registrations: int
    resolutions: int
    errors: int


def _under(prefix: str, node_prefix: str) -> bool:
    return prefix.startswith(node_prefix + ".")


class TopLevel:
    def __init__(self, store: TopStore, certify: Any = None, certify_handle: Any = None) -> None:
        self.store = store
        #: (node_prefix, jwks_json) -> ({kid: statement}, anchor_jwks_json); None: no signing.
        self.certify = certify
        #: (node_prefix, handle_keys_json) -> ({alg: HS_CERT}, root_record_json): the Handle
        #: and IDIS forms' certificates (docs/SIGNING.md); None: the top issues none.
        self.certify_handle = certify_handle

    async def add_node(self, node_prefix: str) -> str:
        """Admits a secondary node; returns its token (shown once)."""
        identifiers.parse_prefix(node_prefix, field="node_prefix")
        key = auth.new_key()
        await self.store.add_node(node_prefix, key.key_id, key.salt, key.secret_hash)
        return key.token

    async def authenticate(self, token: str) -> NodeRow:
        key_id, secret = auth.parse_token(token)
        node = await self.store.node_by_token(key_id)
        if node is None or not hmac.compare_digest(auth.hash_secret(node.token_salt, secret),
                                                   node.token_hash):
            raise Unauthenticated("node token is not valid", reason="INVALID_CREDENTIAL")
        return node

    async def register_node(self, node: NodeRow, node_prefix: str, http_base: str,
                            grpc_address: str, jwks_json: str) -> tuple[dict[str, str], str]:
        self._same(node, node_prefix)
        if not http_base.startswith(("http://", "https://")):
            raise InvalidArgument("http_base must be an http(s) URL", field="http_base")
        statements, anchor = ({}, "")
        if self.certify is not None and jwks_json:
            statements, anchor = self.certify(node_prefix, jwks_json)
        await self.store.register(node_prefix, http_base, grpc_address, jwks_json or
                                  '{"keys": []}', statements)
        return statements, anchor

    def handle_certificates(self, node: NodeRow, node_prefix: str,
                            handle_keys_json: str) -> tuple[dict[str, str], str]:
        """HS_CERTs for a node's Handle-form record keys, and the root record they chain to."""
        self._same(node, node_prefix)
        if self.certify_handle is None or not handle_keys_json:
            return {}, ""
        try:
            return self.certify_handle(node_prefix, handle_keys_json)  # type: ignore[no-any-return]
        except (ValueError, KeyError, TypeError, VerificationError) as exc:
            raise InvalidArgument(f"handle_keys_json: {exc}", field="handle_keys_json") from None

    async def report(self, node: NodeRow, node_prefix: str,
                     events: Sequence[IncomingEvent]) -> int:
        self._same(node, node_prefix)
        if len(events) > MAX_EVENTS_PER_REPORT:
            raise InvalidArgument(f"at most {MAX_EVENTS_PER_REPORT} events per report",
                                  field="events")
        seqs = [e.seq for e in events]
        if seqs != sorted(set(seqs)):
            raise InvalidArgument("events must be in increasing seq order", field="events")
        if seqs and not 1 <= seqs[0] <= seqs[-1] <= MAX_BIGINT:
            raise InvalidArgument("an event's seq is 1..2^63-1 (an outbox row's)",
                                  field="events")
        return await self.store.apply(node_prefix, events, self._decide)

    async def heartbeat(self, node: NodeRow, node_prefix: str, counters: Sequence[Counter],
                        backlog: int) -> datetime:
        self._same(node, node_prefix)
        if not 0 <= backlog <= MAX_COUNT:
            raise InvalidArgument(f"outbox_backlog {backlog} is past {MAX_COUNT}",
                                  field="outbox_backlog")
        for i, c in enumerate(counters):
            if c.prefix:  # "": errors no prefix could be named for (core.stats)
                identifiers.parse_prefix(c.prefix, field=f"counters[{i}].prefix")
            if _DAY.fullmatch(c.day) is None:
                raise InvalidArgument(f"day {c.day[:20]!r} is not YYYY-MM-DD",
                                      field=f"counters[{i}].day")
            try:
                date.fromisoformat(c.day)
            except ValueError:
                raise InvalidArgument(f"day {c.day} is not a date",
                                      field=f"counters[{i}].day") from None
            if not all(0 <= n <= MAX_COUNT for n in (c.registrations, c.resolutions, c.errors)):
                raise InvalidArgument(f"a count is past {MAX_COUNT}", field=f"counters[{i}]")
        return await self.store.heartbeat(
            node_prefix, [(c.prefix, c.day, c.registrations, c.resolutions, c.errors)
                          for c in counters], backlog)

    async def locate(self, prefix: str) -> NodeRow:
        identifiers.parse_prefix(prefix)
        node = await self.store.locate(prefix)
        if node is None or node.registered_at is None:
            raise NotFound(f"no node serves prefix {prefix}", field="prefix",
                           reason="PREFIX_NOT_FOUND")
        return node

    @staticmethod
    def _same(node: NodeRow, node_prefix: str) -> None:
        if node.node_prefix != node_prefix:
            raise PermissionDenied(f"this token belongs to node {node.node_prefix}, "
                                   f"not {node_prefix}", field="node_prefix")

    async def _decide(self, tx: ReportTx, node_prefix: str,
                      e: IncomingEvent) -> str:
        """Applies one event; a claim outside the node's own prefix space is refused (kept, so
        the stream moves on, with the reason)."""
        if e.kind == "prefix.allocated" or e.kind == "prefix.status":
            prefix = str(e.payload.get("prefix", ""))
            if not _under(prefix, node_prefix):
                return f"refused: prefix {prefix} is not under node {node_prefix}"
            holder = await tx.prefix_holder(prefix)
            if holder not in (None, node_prefix):
                return f"refused: prefix {prefix} is held by node {holder}"
            if e.kind == "prefix.allocated":
                await tx.hold_prefix(prefix, node_prefix)
            return "applied"
        if e.kind in ("identifiers.registered", "identifier.updated", "identifier.deleted"):
            ids = (e.payload.get("identifiers", []) if e.kind == "identifiers.registered"
                   else [e.payload.get("identifier", "")])
            version = e.payload.get("version", 1)
            if (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)
                    or not isinstance(version, int) or isinstance(version, bool)
                    or not 1 <= version <= MAX_BIGINT):
                return ("refused: malformed payload (identifiers are strings, version a "
                        "positive 64-bit integer)")
            ok = []
            for ident in ids:
                prefix = str(ident).split("/", 1)[0]
                holder = await tx.prefix_holder(prefix)
                if _under(prefix, node_prefix) and holder in (None, node_prefix):
                    ok.append(str(ident))
            await tx.upsert_identifiers(node_prefix, ok, version,
                                       e.kind == "identifier.deleted")
            refused = len(ids) - len(ok)
            return "applied" if not refused else f"refused {refused} of {len(ids)}: outside node"
        if e.kind == "trace.head":
            return await self._tree_head(tx, node_prefix, e.payload)
        return f"refused: unknown kind {e.kind}"

    async def _tree_head(self, tx: ReportTx, node_prefix: str,
                         payload: dict[str, Any]) -> str:
        """Keeps a signed tree head proven to be one log with the last head kept (the largest:
        heads only grow); a refusal here means the node rewrote, forked or mis-signed its
        traceability log. Only a node's first head needs no link: a later head without one
        could come from a log rewritten from scratch, so it is refused."""
        try:
            jwks = orjson.loads(await tx.node_jwks(node_prefix))
            head = heads.parse(node_prefix, payload, jwks)
            same = await tx.tree_head(node_prefix, head.size)
            if same is not None:
                if same != head.root:
                    raise VerificationError("root_mismatch", f"a second head of size "
                                                             f"{head.size} with another root")
                return "applied: already kept"
            last = await tx.last_tree_head(node_prefix)
            if last is not None and head.linked_to is not None and head.linked_to != last[0]:
                last = await self._recheck(tx, node_prefix, head.linked_to, last, jwks)
            if last is not None:
                if head.linked_to != last[0]:
                    raise VerificationError(
                        "unlinked", f"head of size {head.size} links to "
                                    f"{head.linked_to if head.linked_to is not None else 'no head'}"
                                    f", not to the last kept head (size {last[0]})")
                heads.check_link(head, last[1])
        except VerificationError as err:
            log.warning("node %s reported a tree head that fails: %s", node_prefix, err)
            return f"refused: {err}"
        await tx.keep_tree_head(node_prefix, head.size, head.root, head.jws,
                               linked=last is not None)
        return "applied" if last is not None else "applied: first head of the node"

    async def _recheck(self, tx: ReportTx, node_prefix: str, size: int,
                       last: tuple[int, bytes], jwks: dict[str, Any]) -> tuple[int, bytes]:
        """A head links to one of `size` that the top refused (say, signed with a key the
        node registered only afterwards): that head, and any refused ones it in turn links to
        back to the last kept head, are checked again as if reported now, and kept if they
        pass. Without this one refusal would refuse every later head as unlinked. Returns the
        last kept head after it."""
        chain: list[heads.ReportedHead] = []
        while len(chain) < MAX_RECHECK:
            payload = await tx.refused_head(node_prefix, size)
            if payload is None:
                return last
            try:
                earlier = heads.parse(node_prefix, payload, jwks)
            except VerificationError:
                return last
            chain.append(earlier)
            if earlier.linked_to is None or earlier.linked_to == last[0]:
                break
            size = earlier.linked_to
        else:
            return last
        for earlier in reversed(chain):  # from the one linked to the last kept head on
            try:
                if earlier.linked_to != last[0]:
                    return last
                heads.check_link(earlier, last[1])
            except VerificationError:
                return last
            if await tx.tree_head(node_prefix, earlier.size) is not None:
                return last  # a head of that size is kept already: not one log with it
            await tx.keep_tree_head(node_prefix, earlier.size, earlier.root, earlier.jws,
                                   linked=True)
            log.info("node %s: tree head of size %d, refused before, now checks out and is "
                     "kept", node_prefix, earlier.size)
            if earlier.size > last[0]:
                last = (earlier.size, earlier.root)
        return last
