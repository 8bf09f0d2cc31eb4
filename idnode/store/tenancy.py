"""Every SQL statement on enterprises and their credentials."""
from __future__ import annotations

from datetime import datetime

import asyncpg

from idnode.model.audit import AuditEntry
from idnode.model.credentials import NewKey, StoredCredential
from idnode.model.errors import AlreadyExists, NotFound
from idnode.model.invalidation import CREDENTIAL_KEY
from idnode.model.rows import CredentialRow, EnterpriseRow
from idnode.store import audit
from idnode.store.db import Database
from idnode.store.handles import notify


_CRED = """SELECT key_id, role, enterprise_id, scopes, prefixes, salt, secret_hash, expires_at,
                  revoked_at, handle_admin, public_key FROM credentials"""


def _bytes(v: bytes | None) -> bytes | None:
    return None if v is None else bytes(v)


def _stored(r: asyncpg.Record | None) -> StoredCredential | None:
    if r is None:
        return None
    return StoredCredential(r[0], r[1], r[2], tuple(r[3]),
                            None if r[4] is None else tuple(r[4]), _bytes(r[5]), _bytes(r[6]),
                            r[7], r[8], r[9], _bytes(r[10]))


class TenancyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- enterprises ------------------------------------------------------------------------
    async def create_enterprise(self, name: str, uscc: str, contact: str,
                                entry: AuditEntry) -> int:
        try:
            async with self.db.transaction("create_enterprise") as conn:
                eid = int(await conn.fetchval(
                    "INSERT INTO enterprises (name, uscc, contact) VALUES ($1, $2, $3) RETURNING id",
                    name, uscc, contact))
                await audit.append(conn, [AuditEntry(
                    entry.actor, entry.enterprise_id, entry.client, entry.action, str(eid),
                    detail={"name": name, "uscc": uscc})])
                return eid
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"an enterprise with credit code {uscc} is already onboarded",
                                field="uscc") from None

    async def enterprises(self, enterprise_id: int | None = None) -> list[EnterpriseRow]:
        rows = await self.db.fetch(
            "SELECT e.id, e.name, e.uscc, e.contact, e.created_at,"
            " coalesce(array_agg(p.prefix ORDER BY p.prefix) FILTER (WHERE p.prefix IS NOT NULL),"
            " '{}') FROM enterprises e LEFT JOIN prefixes p ON p.enterprise_id = e.id"
            " WHERE $1::bigint IS NULL OR e.id = $1 GROUP BY e.id ORDER BY e.id", enterprise_id)
        return [EnterpriseRow(r[0], r[1], r[2], r[3], r[4], tuple(r[5])) for r in rows]

    # -- credentials ------------------------------------------------------------------------
    async def credential(self, key_id: str) -> StoredCredential | None:
        return _stored(await self.db.fetchrow(_CRED + " WHERE key_id = $1", key_id))

    async def credential_by_cert(self, sha256: bytes) -> StoredCredential | None:
        return _stored(await self.db.fetchrow(_CRED + " WHERE cert_sha256 = $1", sha256))

    async def credential_by_handle_admin(self, handle_admin: str) -> StoredCredential | None:
        """The credential bound to `INDEX:PREFIX/SUFFIX` (normalised), revoked or not."""
        return _stored(await self.db.fetchrow(_CRED + " WHERE handle_admin = $1", handle_admin))

    async def insert_credential(self, key: NewKey, role: str, enterprise_id: int | None,
                                scopes: list[str], prefixes: list[str] | None, label: str,
                                expires_at: datetime | None, cert_sha256: bytes | None,
                                entry: AuditEntry,
                                retire: tuple[str, datetime] | None = None) -> None:
        """Stores a new key; with `retire`, also cuts an old key's life short (rotation)."""
        try:
            async with self.db.transaction("issue_key") as conn:
                await conn.execute(
                    "INSERT INTO credentials (key_id, role, enterprise_id, scopes, prefixes, salt,"
                    " secret_hash, cert_sha256, label, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    key.key_id, role, enterprise_id, scopes, prefixes, key.salt, key.secret_hash,
                    cert_sha256, label, expires_at)
                if retire is not None:
                    await conn.execute(
                        "UPDATE credentials SET expires_at = least(coalesce(expires_at, $2), $2)"
                        " WHERE key_id = $1", retire[0], retire[1])
                    await notify(conn, [CREDENTIAL_KEY + retire[0]])
                await audit.append(conn, [entry])
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("that client certificate is already bound to a credential",
                                field="certificate") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"enterprise {enterprise_id} does not exist", field="enterprise_id",
                           reason="ENTERPRISE_NOT_FOUND") from None

    async def insert_handle_admin(self, key_id: str, role: str, enterprise_id: int | None,
                                  scopes: list[str], prefixes: list[str] | None, label: str,
                                  expires_at: datetime | None, handle_admin: str,
                                  public_key: bytes, entry: AuditEntry) -> None:
        """Stores a credential that a Handle admin identity authenticates as with the private
        half of `public_key` (SubjectPublicKeyInfo DER); it has no API secret."""
        try:
            async with self.db.transaction("bind_handle_admin") as conn:
                await conn.execute(
                    "INSERT INTO credentials (key_id, role, enterprise_id, scopes, prefixes,"
                    " label, expires_at, handle_admin, public_key)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    key_id, role, enterprise_id, scopes, prefixes, label, expires_at,
                    handle_admin, public_key)
                await audit.append(conn, [entry])
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"{handle_admin} is already bound to a key (revoked or not); "
                                "bind the new key under another index", field="handle_admin",
                                reason="HANDLE_ADMIN_EXISTS") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"enterprise {enterprise_id} does not exist", field="enterprise_id",
                           reason="ENTERPRISE_NOT_FOUND") from None

    async def revoke(self, key_id: str, entry: AuditEntry) -> bool:
        async with self.db.transaction("revoke_key") as conn:
            done = await conn.fetchval(
                "UPDATE credentials SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL"
                " RETURNING 1", key_id)
            if done:
                await audit.append(conn, [entry])
                await notify(conn, [CREDENTIAL_KEY + key_id])
            return bool(done)

    async def credentials(self, enterprise_id: int | None, key_id: str | None = None
                          ) -> list[CredentialRow]:
        rows = await self.db.fetch(
            "SELECT key_id, role, enterprise_id, scopes, prefixes, label, cert_sha256 IS NOT NULL,"
            " created_at, expires_at, revoked_at, handle_admin FROM credentials"
            " WHERE ($1::bigint IS NULL OR enterprise_id = $1) AND ($2::text IS NULL OR key_id = $2)"
            " ORDER BY created_at, key_id", enterprise_id, key_id)
        return [CredentialRow(r[0], r[1], r[2], tuple(r[3]), None if r[4] is None else tuple(r[4]),
                              r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows]
