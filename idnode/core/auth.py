"""Who is calling, and what they may do: API keys, client certificates and Handle admin keys,
principals and the permission rules."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from collections.abc import Callable
from typing import Protocol

from idnode.core import clock, identifiers
from idnode.core.errors import InvalidArgument, PermissionDenied, Unauthenticated
from idnode.core.identifiers import Identifier
from idnode.crypto import hdlkeys
from idnode.model.credentials import NewKey as NewKey
from idnode.model.credentials import StoredCredential as StoredCredential

SCOPES = ("read", "write", "admin")
ROLES = ("operator", "enterprise")
# idn_<12 hex key id>_<43 base64url chars = 256-bit secret>
_TOKEN_RE = re.compile(r"idn_([0-9a-f]{12})_([A-Za-z0-9_-]{43})\Z")
# A verified key is remembered this long (and dropped at once when revoked: the revocation's
# NOTIFY reaches every process).
_VERIFIED_TTL = 60.0
#: Handle value indexes are int4; 0 and negatives name no value.
MAX_HANDLE_INDEX = 2**31 - 1
_HANDLE_ADMIN_RE = re.compile(r"([0-9]{1,10}):(.*)\Z", re.S)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `prefixes` None means every prefix of the enterprise."""

    key_id: str
    role: str
    enterprise_id: int | None
    scopes: frozenset[str]
    prefixes: frozenset[str] | None
    expires_at: datetime | None = None

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


#: The caller with no credential: may resolve public values, nothing else.
ANONYMOUS = Principal("anonymous", "anonymous", None, frozenset(), frozenset())


def hash_secret(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def new_key_id() -> str:
    return secrets.token_hex(6)


def new_key() -> NewKey:
    key_id = new_key_id()
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    return NewKey(key_id, f"idn_{key_id}_{secret}", salt, hash_secret(salt, secret))


def parse_token(token: str) -> tuple[str, str]:
    m = _TOKEN_RE.match(token)
    if m is None:
        raise Unauthenticated("credential is malformed (expected idn_<id>_<secret>)",
                              reason="MALFORMED_CREDENTIAL")
    return m.group(1), m.group(2)


def parse_handle_admin(text: str, *, field: str = "handle_admin") -> tuple[int, Identifier]:
    """(index, identifier) of an admin identity written the Handle way, `INDEX:PREFIX/SUFFIX`
    (e.g. 300:0.118.8/ADMIN); InvalidArgument saying why not."""
    m = _HANDLE_ADMIN_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidArgument("a Handle admin is INDEX:PREFIX/SUFFIX, e.g. 300:0.118.8/ADMIN",
                              field=field, reason="MALFORMED_HANDLE_ADMIN")
    index = int(m.group(1))
    if not 1 <= index <= MAX_HANDLE_INDEX:
        raise InvalidArgument(f"Handle admin index {index} is outside 1..{MAX_HANDLE_INDEX}",
                              field=field, reason="BAD_HANDLE_INDEX")
    return index, identifiers.parse(m.group(2), field=field)


def handle_admin_name(index: int, identifier: Identifier) -> str:
    """The normalised `INDEX:PREFIX/SUFFIX` a binding is stored and looked up under."""
    return f"{index}:{identifier}"


class CredentialSource(Protocol):
    async def credential(self, key_id: str) -> StoredCredential | None: ...
    async def credential_by_cert(self, sha256: bytes) -> StoredCredential | None: ...
    async def credential_by_handle_admin(self, handle_admin: str
                                         ) -> StoredCredential | None: ...


class PrefixOwners(Protocol):
    def owner(self, prefix: str) -> int | None: ...


class Authenticator:
    """Verifies API keys, client certificates and Handle admin signatures against stored
    credentials.

    A verification is remembered for a minute so a busy MES does not cost a query per call;
    `forget` drops it, and the node calls it when a credential's change is notified (or
    everything when notifications may have been missed, while `remember` says no).
    """

    def __init__(self, source: CredentialSource, remember: Callable[[], bool]) -> None:
        self.source = source
        self.remember = remember
        # key: key id or "cert:<sha256 hex>" -> (deadline, digest of what was presented, principal)
        self._verified: dict[str, tuple[float, bytes, Principal]] = {}
        # normalised handle admin -> (deadline, principal, its public key): the lookup only;
        # every signature is verified.
        self._bound: dict[str, tuple[float, Principal, hdlkeys.PublicKey]] = {}

    def forget(self, key_id: str | None = None) -> None:
        if key_id is None:
            self._verified.clear()
            self._bound.clear()
        else:
            self._verified.pop(key_id, None)
            for k in [k for k, v in self._verified.items() if v[2].key_id == key_id]:
                del self._verified[k]
            for k in [k for k, b in self._bound.items() if b[1].key_id == key_id]:
                del self._bound[k]

    async def from_token(self, token: str) -> Principal:
        key_id, secret = parse_token(token)
        digest = hashlib.sha256(token.encode()).digest()
        principal = self._recall(key_id, digest)
        if principal is not None:
            return principal
        stored = await self.source.credential(key_id)
        # A Handle admin credential has no secret: no token authenticates as it.
        if stored is None or stored.salt is None or stored.secret_hash is None or \
                not hmac.compare_digest(hash_secret(stored.salt, secret), stored.secret_hash):
            raise Unauthenticated("credential is not valid", reason="INVALID_CREDENTIAL")
        return self._accept(key_id, digest, stored)

    async def from_handle_signature(self, handle_admin: str, hash_name: bytes, signature: bytes,
                                    signed: bytes) -> Principal:
        """The principal of the Handle admin `INDEX:HANDLE` whose bound key made `signature`
        over `signed` (a challenge answer: nonce || request digest, hashed as `hash_name`
        says)."""
        # (1): the binding, from memory or the database; unknown admins are not remembered.
        try:
            name = handle_admin_name(*parse_handle_admin(handle_admin))
        except InvalidArgument:
            raise Unauthenticated(f"{str(handle_admin)[:80]!r} is not a Handle admin of this "
                                  "node", reason="UNKNOWN_HANDLE_ADMIN") from None
        hit = self._bound.get(name)
        if hit is not None and hit[0] >= time.monotonic() and self.remember():
            principal, key, revoked = hit[1], hit[2], False
        else:
            stored = await self.source.credential_by_handle_admin(name)
            if stored is None or stored.public_key is None:
                raise Unauthenticated(f"{name} is not a Handle admin of this node",
                                      reason="UNKNOWN_HANDLE_ADMIN")
            principal, key = _principal(stored), hdlkeys.load_public_key(stored.public_key)
            revoked = stored.revoked_at is not None
            if not revoked and self.remember():
                self._bound[name] = (time.monotonic() + _VERIFIED_TTL, principal, key)
        # (2): the signature, every time. Only a key holder learns the credential's state.
        if not hdlkeys.verify_signature(key, hash_name, signature, signed):
            raise Unauthenticated(f"the signature does not verify with {name}'s key",
                                  reason="BAD_SIGNATURE")
        # (3): revocation and expiry.
        if revoked:
            raise Unauthenticated("credential has been revoked", reason="REVOKED_CREDENTIAL")
        _check_expiry(principal)
        return principal

    async def from_certificate(self, der: bytes) -> Principal:
        digest = hashlib.sha256(der).digest()
        slot = "cert:" + digest.hex()
        principal = self._recall(slot, digest)
        if principal is not None:
            return principal
        stored = await self.source.credential_by_cert(digest)
        if stored is None:
            raise Unauthenticated("client certificate is not bound to any credential",
                                  reason="UNKNOWN_CERTIFICATE")
        return self._accept(slot, digest, stored)

    def _recall(self, slot: str, digest: bytes) -> Principal | None:
        hit = self._verified.get(slot)
        if hit is None or hit[0] < time.monotonic() or not self.remember():
            return None
        if not hmac.compare_digest(hit[1], digest):
            return None
        _check_expiry(hit[2])
        return hit[2]

    def _accept(self, slot: str, digest: bytes, stored: StoredCredential) -> Principal:
        if stored.revoked_at is not None:
            raise Unauthenticated("credential has been revoked", reason="REVOKED_CREDENTIAL")
        principal = _principal(stored)
        _check_expiry(principal)
        if self.remember():
            self._verified[slot] = (time.monotonic() + _VERIFIED_TTL, digest, principal)
        return principal


def _principal(stored: StoredCredential) -> Principal:
    return Principal(stored.key_id, stored.role, stored.enterprise_id, frozenset(stored.scopes),
                     None if stored.prefixes is None else frozenset(stored.prefixes),
                     stored.expires_at)


def _check_expiry(principal: Principal) -> None:
    if principal.expires_at is not None and principal.expires_at <= clock.now():
        raise Unauthenticated("credential has expired", reason="EXPIRED_CREDENTIAL")


# -- the rules ---------------------------------------------------------------------------------
def may_act_on(principal: Principal, prefix: str, scope: str, owners: PrefixOwners) -> bool:
    if scope not in principal.scopes:
        return False
    if principal.is_operator:
        return True
    if principal.enterprise_id is None or owners.owner(prefix) != principal.enterprise_id:
        return False
    return principal.prefixes is None or prefix in principal.prefixes


def require_write(principal: Principal, prefix: str, owners: PrefixOwners) -> None:
    """Identifier writes: an enterprise key with write scope on a prefix its enterprise holds."""
    if principal is ANONYMOUS:
        raise Unauthenticated("registering requires a credential", reason="CREDENTIAL_REQUIRED")
    if principal.is_operator or not may_act_on(principal, prefix, "write", owners):
        raise PermissionDenied(f"credential {principal.key_id} may not write under {prefix}",
                               field="identifier")


def require_writer(principal: Principal, *, operator_admin: bool = False) -> None:
    """Before any validation of a write: whether the caller could write anything at all, so
    that an anonymous or read-only sender of a large batch costs a check, not a parse.
    `operator_admin`: operators with admin scope may make this kind of write (recalls)."""
    if principal is ANONYMOUS:
        raise Unauthenticated("writing requires a credential", reason="CREDENTIAL_REQUIRED")
    if operator_admin and principal.is_operator and "admin" in principal.scopes:
        return
    if principal.is_operator or "write" not in principal.scopes:
        raise PermissionDenied(f"credential {principal.key_id} may not write identifiers")


def require_read(principal: Principal, prefix: str, owners: PrefixOwners) -> None:
    if principal is ANONYMOUS:
        raise Unauthenticated("listing requires a credential", reason="CREDENTIAL_REQUIRED")
    if not may_act_on(principal, prefix, "read", owners):
        raise PermissionDenied(f"credential {principal.key_id} may not read {prefix}",
                               field="prefix")


def require_operator(principal: Principal) -> None:
    if principal is ANONYMOUS:
        raise Unauthenticated("this requires an operator credential", reason="CREDENTIAL_REQUIRED")
    if not (principal.is_operator and "admin" in principal.scopes):
        raise PermissionDenied("this requires an operator credential with admin scope")


def require_admin_of(principal: Principal, enterprise_id: int) -> None:
    """Operators, or the enterprise's own admin-scoped keys."""
    if principal is ANONYMOUS:
        raise Unauthenticated("this requires a credential", reason="CREDENTIAL_REQUIRED")
    if "admin" not in principal.scopes:
        raise PermissionDenied(f"credential {principal.key_id} lacks admin scope")
    if not principal.is_operator and principal.enterprise_id != enterprise_id:
        raise PermissionDenied(f"credential {principal.key_id} may not manage enterprise "
                               f"{enterprise_id}")


def sees_private(principal: Principal, prefix: str, owners: PrefixOwners) -> bool:
    """Private values are served to the owner (read scope) and operators, never anonymously."""
    return principal is not ANONYMOUS and may_act_on(principal, prefix, "read", owners)
