"""Onboarding: enterprises, their prefixes, credentials and templates, and the audit trail."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from idnode.core import auth, clock, gs1, identifiers, templates, uscc
from idnode.core.audit import Actor, AuditEntry
from idnode.core.errors import (FailedPrecondition, InvalidArgument, NotFound, PermissionDenied,
                                PrefixNotFound)
from idnode.crypto import hdlkeys
from idnode.core.hsvalues import identity_values
from idnode.core.ports import AuditTrail, ControlInvalidation, PrefixAdmin, TenantRecords
from idnode.core.registry import Registry
from idnode.model.invalidation import CREDENTIAL_KEY, PREFIX_KEY
from idnode.model.rows import CredentialRow, EnterpriseRow, PrefixRow

#: Longer is no expiry in practice (a century), and timedelta's own limit is near.
MAX_KEY_DAYS = 36_500
#: Longer than any key id the node makes (12 hex digits).
MAX_KEY_ID = 64

STATUSES = ("active", "suspended", "revoked")
DEFAULT_ROTATION_GRACE = timedelta(hours=24)
MAX_AUDIT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class IssuedKey:
    credential: CredentialRow
    #: Shown once; "" for a Handle admin credential, which authenticates with its key pair.
    api_key: str


class Tenancy:
    def __init__(self, store: TenantRecords, prefixes: PrefixAdmin, audit: AuditTrail,
                 cache: ControlInvalidation, node_prefix: str,
                 registry: Registry | None = None) -> None:
        self.store = store
        #: Writes the records of Handle admin identities (HS_ADMIN, HS_PUBKEY) when bound.
        self.registry = registry
        self.prefixes = prefixes
        self.audit = audit
        self.cache = cache
        self.node_prefix = node_prefix

    # -- enterprises ------------------------------------------------------------------------
    async def create_enterprise(self, actor: Actor, name: str, code: str, contact: str = ""
                                ) -> EnterpriseRow:
        auth.require_operator(actor.principal)
        name = name.strip()
        if not name or len(name) > 200 or not name.isprintable():
            raise InvalidArgument("name must be 1..200 printable characters", field="name")
        if len(contact) > 500 or not contact.isprintable():
            raise InvalidArgument("contact must be at most 500 printable characters",
                                  field="contact")
        code = uscc.validate(code)
        eid = await self.store.create_enterprise(
            name, code, contact, AuditEntry.of(actor, "create_enterprise", ""))
        return (await self.store.enterprises(eid))[0]

    async def enterprises(self, actor: Actor) -> list[EnterpriseRow]:
        p = actor.principal
        if p.enterprise_id is None:
            auth.require_operator(p)
            return await self.store.enterprises()
        auth.require_admin_of(p, p.enterprise_id)
        return await self.store.enterprises(p.enterprise_id)

    # -- prefixes ---------------------------------------------------------------------------
    async def allocate_prefix(self, actor: Actor, enterprise_id: int, prefix: str = "") -> str:
        auth.require_operator(actor.principal)
        entry = AuditEntry.of(actor, "allocate_prefix", prefix, prefix=prefix or None,
                              detail={"enterprise_id": enterprise_id})
        if not prefix:
            result = await self.prefixes.allocate_next(self.node_prefix, enterprise_id, entry)
        else:
            identifiers.parse_prefix(prefix)
            if not prefix.startswith(self.node_prefix + "."):
                raise InvalidArgument(f"prefix {prefix} is not under this node's prefix "
                                      f"{self.node_prefix}", field="prefix",
                                      reason="FOREIGN_PREFIX")
            await self.prefixes.create(prefix, enterprise_id, entry)
            result = prefix
        self.cache.invalidate([PREFIX_KEY + result])
        return result

    async def set_prefix_status(self, actor: Actor, prefix: str, status: str,
                                refuse_resolution: bool = False) -> None:
        auth.require_operator(actor.principal)
        if status not in STATUSES:
            raise InvalidArgument(f"status must be one of {', '.join(STATUSES)}", field="status")
        row = await self._held(prefix)
        if row.status == "revoked" and status != "revoked":
            raise FailedPrecondition(f"prefix {prefix} was revoked; revocation is final",
                                     field="status", reason="PREFIX_REVOKED")
        refuse = refuse_resolution if status == "suspended" else status == "revoked"
        await self.prefixes.set_status(prefix, status, refuse, AuditEntry.of(
            actor, "set_prefix_status", prefix, prefix=prefix,
            detail={"from": row.status, "to": status, "refuse_resolution": refuse}))
        self.cache.invalidate([PREFIX_KEY + prefix])

    # -- credentials ------------------------------------------------------------------------
    async def issue_key(self, actor: Actor, enterprise_id: int | None, scopes: Sequence[str],
                        prefixes: Sequence[str] = (), label: str = "",
                        expires_in: timedelta | None = None,
                        certificate_pem: str = "", handle_admin: str = "",
                        public_key: bytes = b"") -> IssuedKey:
        """An API key, or with `handle_admin` and `public_key` a Handle admin identity
        (INDEX:PREFIX/SUFFIX) that logs in by signing with the key's private half."""
        p = actor.principal
        if enterprise_id is None:
            auth.require_operator(p)
        else:
            auth.require_admin_of(p, enterprise_id)
        scopes = sorted(set(scopes))
        if not scopes or any(s not in auth.SCOPES for s in scopes):
            raise InvalidArgument(f"scopes must be a non-empty subset of {', '.join(auth.SCOPES)}",
                                  field="scopes")
        if not p.is_operator and not set(scopes) <= p.scopes:
            raise PermissionDenied("a key cannot grant scopes its issuer lacks", field="scopes")
        if len(label) > 200 or not label.isprintable():
            raise InvalidArgument("label must be at most 200 printable characters", field="label")
        if prefixes:
            if enterprise_id is None:
                raise InvalidArgument("operator keys are not limited to prefixes", field="prefixes")
            owned = set((await self._enterprise(enterprise_id)).prefixes)
            foreign = sorted(set(prefixes) - owned)
            if foreign:
                raise PermissionDenied(f"enterprise {enterprise_id} does not hold "
                                       f"{', '.join(foreign)}", field="prefixes")
        elif enterprise_id is not None:
            await self._enterprise(enterprise_id)
        expires_at = clock.now() + expires_in if expires_in else None
        role = "operator" if enterprise_id is None else "enterprise"
        if handle_admin or public_key:
            if certificate_pem:
                raise InvalidArgument("a Handle admin authenticates with its key pair, not a "
                                      "client certificate: give one or the other",
                                      field="client_certificate_pem")
            return await self._bind_handle_admin(actor, enterprise_id, role, scopes, prefixes,
                                                 label, expires_at, handle_admin, public_key)
        cert_sha = _cert_sha256(certificate_pem) if certificate_pem else None
        key = auth.new_key()
        await self.store.insert_credential(
            key, role, enterprise_id, scopes, sorted(prefixes) or None, label, expires_at,
            cert_sha, AuditEntry.of(actor, "issue_key", key.key_id,
                                    detail={"for_enterprise": enterprise_id, "scopes": scopes,
                                            "prefixes": sorted(prefixes)}))
        return IssuedKey(await self._credential(key.key_id), key.token)

    async def _bind_handle_admin(self, actor: Actor, enterprise_id: int | None, role: str,
                                 scopes: list[str], prefixes: Sequence[str], label: str,
                                 expires_at: datetime | None, handle_admin: str,
                                 public_key: bytes) -> IssuedKey:
        if not handle_admin:
            raise InvalidArgument("a public key is bound to a Handle admin: give handle_admin "
                                  "(INDEX:PREFIX/SUFFIX)", field="handle_admin")
        if not public_key:
            raise InvalidArgument(f"binding {handle_admin} needs its public key",
                                  field="public_key")
        index, ident = auth.parse_handle_admin(handle_admin)
        name = auth.handle_admin_name(index, ident)
        # The identity must be a name the binder answers for: a prefix of its enterprise, or
        # (operators) the node's own prefix space.
        if enterprise_id is not None:
            held = (await self._enterprise(enterprise_id)).prefixes
            if ident.prefix not in held:
                raise PermissionDenied(f"enterprise {enterprise_id} does not hold {ident.prefix}, "
                                       f"so it cannot name its admin {name}",
                                       field="handle_admin", reason="FOREIGN_PREFIX")
        elif ident.prefix != self.node_prefix and \
                not ident.prefix.startswith(self.node_prefix + "."):
            raise InvalidArgument(f"{ident.prefix} is not under this node's prefix "
                                  f"{self.node_prefix}", field="handle_admin",
                                  reason="FOREIGN_PREFIX")
        try:
            key = hdlkeys.load_public_key(public_key)
        except hdlkeys.HandleKeyError as exc:
            raise InvalidArgument(f"public key: {exc}", field="public_key",
                                  reason=exc.reason) from None
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        key_id = auth.new_key_id()
        await self.store.insert_handle_admin(
            key_id, role, enterprise_id, scopes, sorted(prefixes) or None, label, expires_at,
            name, spki, AuditEntry.of(actor, "issue_key", key_id, detail={
                "for_enterprise": enterprise_id, "scopes": scopes, "prefixes": sorted(prefixes),
                "handle_admin": name, "public_key": describe_key(key),
                "public_key_sha256": hashlib.sha256(spki).hexdigest()}))
        if enterprise_id is not None and self.registry is not None:
            # Published the Handle way, so Handle tools resolving the identity see its key.
            await self.registry.put_values(self._on_behalf(actor, enterprise_id), str(ident),
                                           identity_values(str(ident), index, key))
        return IssuedKey(await self._credential(key_id), "")

    @staticmethod
    def _on_behalf(actor: Actor, enterprise_id: int) -> Actor:
        """Who writes an admin identity's record: the binder, with write rights on the
        enterprise's prefixes for that one write (an operator cannot write records)."""
        return Actor(auth.Principal(actor.principal.key_id, "enterprise", enterprise_id,
                                    frozenset({"write"}), None), actor.client)

    async def rotate_key(self, actor: Actor, key_id: str,
                         grace: timedelta = DEFAULT_ROTATION_GRACE) -> IssuedKey:
        """A new key with the same rights; the old one stays valid for `grace`, then expires."""
        old = await self._credential(key_id)
        self._may_manage(actor, old)
        if old.revoked_at is not None:
            raise FailedPrecondition(f"key {key_id} is revoked", field="key_id",
                                     reason="REVOKED_CREDENTIAL")
        if old.handle_admin is not None:
            raise FailedPrecondition(
                f"key {key_id} is Handle admin {old.handle_admin}: bind the new public key "
                "under another index, then revoke this one", field="key_id",
                reason="HANDLE_ADMIN_CREDENTIAL")
        key = auth.new_key()
        retire_at = clock.now() + grace
        await self.store.insert_credential(
            key, old.role, old.enterprise_id, list(old.scopes),
            None if old.prefixes is None else list(old.prefixes), old.label, old.expires_at,
            None, AuditEntry.of(actor, "rotate_key", key.key_id,
                                detail={"replaces": key_id, "old_expires_at": clock.iso(retire_at)}),
            retire=(key_id, retire_at))
        self.cache.invalidate([CREDENTIAL_KEY + key_id])
        return IssuedKey(await self._credential(key.key_id), key.token)

    async def revoke_key(self, actor: Actor, key_id: str) -> None:
        cred = await self._credential(key_id)
        self._may_manage(actor, cred)
        await self.store.revoke(key_id, AuditEntry.of(actor, "revoke_key", key_id))
        self.cache.invalidate([CREDENTIAL_KEY + key_id])
        if cred.handle_admin and cred.enterprise_id is not None and self.registry is not None:
            index, ident = auth.parse_handle_admin(cred.handle_admin)
            await self.registry.drop_values(self._on_behalf(actor, cred.enterprise_id),
                                            str(ident), [index])

    async def keys(self, actor: Actor, enterprise_id: int | None) -> list[CredentialRow]:
        if enterprise_id is None:
            auth.require_operator(actor.principal)
        else:
            auth.require_admin_of(actor.principal, enterprise_id)
        return await self.store.credentials(enterprise_id)

    # -- templates --------------------------------------------------------------------------
    async def set_template(self, actor: Actor, prefix: str, name: str,
                           schema: dict[str, Any] | None) -> None:
        await self._managed_prefix(actor, prefix)
        if schema is None:
            schema = templates.builtin(name)
        templates.check_schema(schema)
        if not name or len(name) > 100:
            raise InvalidArgument("template name must be 1..100 characters", field="name")
        await self.prefixes.set_template(prefix, name, schema, AuditEntry.of(
            actor, "set_template", prefix, prefix=prefix, detail={"name": name}))
        self.cache.invalidate([PREFIX_KEY + prefix])

    async def template(self, prefix: str) -> tuple[str, dict[str, Any]] | None:
        row = await self._held(prefix)
        if row.template is None:
            return None
        return row.template_name or "", orjson.loads(row.template)

    # -- GS1 --------------------------------------------------------------------------------
    async def map_gs1(self, actor: Actor, gcp: str, prefix: str) -> None:
        """GTINs of GS1 Company Prefix `gcp` resolve under `prefix` (operators, or the admin of
        the enterprise holding the prefix)."""
        gcp = gs1.company_prefix(gcp)
        await self._managed_prefix(actor, prefix)
        await self.prefixes.map_gs1(gcp, prefix, AuditEntry.of(
            actor, "map_gs1", gcp, prefix=prefix))

    # -- audit ------------------------------------------------------------------------------
    async def audit_trail(self, actor: Actor, *, prefix: str | None = None,
                          enterprise_id: int | None = None, after_id: int = 0,
                          limit: int = 100) -> list[tuple[int, AuditEntry]]:
        p = actor.principal
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidArgument(f"page_size must be 1..{MAX_AUDIT_PAGE}", field="page_size")
        if prefix:
            row = await self._held(prefix)
            if row.enterprise_id is None or p.is_operator:
                auth.require_operator(p)
            else:
                auth.require_admin_of(p, row.enterprise_id)
        elif enterprise_id:
            auth.require_admin_of(p, enterprise_id)
        else:
            auth.require_operator(p)
        return await self.audit.list(prefix=prefix or None, enterprise_id=enterprise_id or None,
                                     after_id=after_id, limit=limit)

    # -- helpers ----------------------------------------------------------------------------
    async def _held(self, prefix: str) -> PrefixRow:
        row = await self.prefixes.get(identifiers.parse_prefix(prefix))
        if row is None:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="prefix")
        return row

    async def _managed_prefix(self, actor: Actor, prefix: str) -> PrefixRow:
        """The prefix's row, once the actor may manage it: operators, or the admin of the
        enterprise holding it."""
        row = await self._held(prefix)
        if row.enterprise_id is None:
            auth.require_operator(actor.principal)
        else:
            auth.require_admin_of(actor.principal, row.enterprise_id)
        return row

    async def _enterprise(self, enterprise_id: int) -> EnterpriseRow:
        rows = await self.store.enterprises(enterprise_id)
        if not rows:
            raise NotFound(f"enterprise {enterprise_id} does not exist", field="enterprise_id",
                           reason="ENTERPRISE_NOT_FOUND")
        return rows[0]

    async def _credential(self, key_id: str) -> CredentialRow:
        # Key ids are short printable tokens (auth.new_key_id); anything else names no key,
        # and is not sent to the database (which refuses NUL in text).
        rows = (await self.store.credentials(None, key_id)
                if 0 < len(key_id) <= MAX_KEY_ID and key_id.isprintable() else [])
        if rows:
            return rows[0]
        raise NotFound(f"no key {key_id[:MAX_KEY_ID]!r}", field="key_id",
                       reason="KEY_NOT_FOUND")

    @staticmethod
    def _may_manage(actor: Actor, cred: CredentialRow) -> None:
        if cred.enterprise_id is None:
            auth.require_operator(actor.principal)
        else:
            auth.require_admin_of(actor.principal, cred.enterprise_id)


def _cert_sha256(pem: str) -> bytes:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise InvalidArgument("client certificate is not a PEM X.509 certificate",
                              field="client_certificate_pem") from None
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()


def describe_key(key: hdlkeys.PublicKey) -> str:
    """"RSA-2048" or "DSA-1024/160": what a bound key is, for audit entries and the CLI."""
    if isinstance(key, RSAPublicKey):
        return f"RSA-{key.key_size}"
    params = key.parameters().parameter_numbers()
    return f"DSA-{params.p.bit_length()}/{params.q.bit_length()}"


def expires(days: int) -> timedelta | None:
    """A key's lifetime in days (0: no expiry), within MAX_KEY_DAYS."""
    if not 0 <= days <= MAX_KEY_DAYS:
        raise InvalidArgument(f"a key lives 1..{MAX_KEY_DAYS} days (0: no expiry), not {days}",
                              field="expires_in_days")
    return timedelta(days=days) if days else None


