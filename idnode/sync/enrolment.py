"""A node's standing with its trust anchor: the trust document it publishes
(/.well-known/idnode-trust.json), its registration with the top-level node (which certifies its
record keys) and the Handle/IDIS form certificates it serves with, each checked against the
pinned anchor. A standalone node certifies itself with its dev anchor."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from idnode import keys
from idnode.config import Settings
from idnode.core.handlecerts import issued_by_anchor
from idnode.core.handleform import Form, HandleForms
from idnode.core.records import Value
from idnode.core.resolver import Resolved, Resolver
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import KeyRing, SigningKey
from idnode.sync import anchor as anchors
from idnode.sync.upstream import Upstream

log = logging.getLogger(__name__)


class Enrolment:
    def __init__(self, settings: Settings, ring: KeyRing | None, forms: HandleForms | None,
                 resolver: Resolver, anchor: dict[str, Any] | None,
                 upstream: Upstream | None) -> None:
        self.settings = settings
        self.ring = ring
        self.forms = forms
        self.resolver = resolver
        #: The pinned trust anchor (anchor_jwks); never taken from the wire.
        self.anchor = anchor
        self.upstream = upstream
        #: What verifiers need: the anchor's keys and the statements certifying ours.
        self.trust: dict[str, object] = {}

    def self_certify(self) -> None:
        """A standalone signing node: its dev anchor certifies its keys and forms."""
        s = self.settings
        if self.ring is None:
            return
        if self.forms is not None:
            # first: the anchor's RSA / SM2 keys belong in the anchor JWKS published below
            self.configure_forms(keys.self_certified_forms(s))
        statements, anchor = keys.self_certified(s, self.ring)
        self.trust = {"node": s.node_prefix, "anchor_jwks": anchor,
                      "key_statements": statements}

    def configure_forms(self, issued: keys.HandleCerts) -> None:
        """Serves the Handle and IDIS forms with these certificates, and the root record."""
        forms = self.forms
        assert forms is not None
        algs = [k.alg for k, _ in issued.certs]
        forms.configure([Form.of(key, cert, self.settings.node_prefix, algs)
                         for key, cert in issued.certs],
                        [Value.from_json(v) for v in issued.root])
        if forms.root is not None:
            self.resolver.fixed[forms.root.identifier] = Resolved(forms.root)

    async def register(self, http: str, grpc_addr: str) -> None:
        """Registers with the top-level node; checks the anchor it presents against the pin
        (raising VerificationError on a mismatch) and takes the certificates it issued."""
        assert self.upstream is not None
        s = self.settings
        jwks = orjson.dumps(self.ring.jwks()).decode() if self.ring is not None else ""
        handle_keys = self._handle_keys()
        reg = await self.upstream.register_node(
            s.node_prefix, http, grpc_addr, jwks,
            orjson.dumps({"keys": [k.to_jwk() for k in handle_keys]}).decode()
            if handle_keys else "")
        if self.anchor is None:
            # The anchor is never taken from the wire; the statements are still published
            # (verifiers check them against the anchor they were given).
            if reg.anchor_jwks_json:
                log.warning("the top-level node presents a trust anchor, but none is pinned "
                            "(anchor_jwks): records from other nodes are not served")
            self.trust = {"node": s.node_prefix, "key_statements": reg.key_statements}
            return
        try:
            anchors.check_presented(self.anchor, reg.anchor_jwks_json, reg.key_statements)
        except VerificationError as exc:
            log.error("REFUSED the top-level node at %s: it presents another trust anchor than "
                      "the pinned anchor_jwks (%s); not registering, not shipping, until the "
                      "anchor or the upstream is fixed", s.upstream_grpc, exc)
            raise
        self.trust = {"node": s.node_prefix, "anchor_jwks": self.anchor,
                      "key_statements": reg.key_statements}
        if handle_keys:
            self._accept_handle_certs(handle_keys, reg.handle_certs, reg.handle_root_json)

    async def register_until_done(self, http: str, grpc_addr: str) -> None:
        delay = 1.0
        while True:
            try:
                await self.register(http, grpc_addr)
                return
            except Exception as exc:  # noqa: BLE001 - the top may be down: try again
                log.warning("registration with the top-level node for certificates failed, "
                            "retrying in %.0f s: %r", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _handle_keys(self) -> list[SigningKey]:
        """The record keys of the Handle and IDIS forms this node serves."""
        if self.forms is None:
            return []
        ring = keys.handle_keyring(self.settings)
        return [k for k in (ring.active(a) for a in keys.plan(self.settings).forms)
                if k is not None]

    def _accept_handle_certs(self, handle_keys: list[SigningKey], certs: dict[str, str],
                             root_json: str) -> None:
        """Serves the Handle/IDIS forms with the certificates the top-level node issued, each
        checked against the pinned anchor; a form whose certificate fails is not served."""
        assert self.anchor is not None
        root = tuple(orjson.loads(root_json)) if root_json else ()
        root_values = [Value.from_json(v) for v in root]
        accepted: list[tuple[SigningKey, str]] = []
        for key in handle_keys:
            cert = certs.get(key.alg)
            why = ("the top-level node issued none" if cert is None else
                   issued_by_anchor(self.anchor, self.settings.node_prefix, key, cert,
                                    root_values))
            if why is None and cert is not None:
                accepted.append((key, cert))
            else:
                log.error("the %s signature form is not served: its certificate from the "
                          "top-level node is refused: %s", key.alg, why)
        if accepted:
            self.configure_forms(keys.HandleCerts(tuple(accepted), root))
