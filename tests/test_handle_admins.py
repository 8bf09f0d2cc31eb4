"""Handle admin identities: a public key bound to `INDEX:PREFIX/SUFFIX` over the Admin service and
the CLI, every refusal, and logins by signature (Authenticator.from_handle_signature) carrying
exactly the credential's rights, with revocation seen at once by another process's memory."""
from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from idnode.cache import HotCache
from idnode.core.auth import Authenticator, Principal
from idnode.core.errors import Unauthenticated
from idnode.crypto.hdlkeys import handle_key_bytes, load_public_key
from idnode.node import Core, Node
from idnode.v1 import admin_pb2 as apb
from idnode.v1 import registry_pb2 as pb
from tests.conftest import Keys, channel, make_settings
from tests.helpers import eventually
from tests.test_cli import idnode
from tests.test_tenancy import admin, code_of, registry

KEYS = Path(__file__).parent / "vectors" / "hdlkeys"
RSA_PUB_PEM = (KEYS / "rsa_pub.pem").read_bytes()
DSA_PUB_BIN = (KEYS / "dsa_pub.hdl.bin").read_bytes()
ADMIN = "300:0.118.8/ADMIN"
NONCE_AND_DIGEST = bytes(range(16)) + hashlib.sha256(b"the challenged request").digest()


def private(name: str) -> Any:
    return serialization.load_pem_private_key((KEYS / f"{name}_priv.pem").read_bytes(), None)


def rsa_answer(key: Any, signed: bytes = NONCE_AND_DIGEST) -> tuple[bytes, bytes]:
    """(hash name, signature) as hdllib and the ID-SDK answer with an RSA key."""
    return b"SHA-256", key.sign(signed, padding.PKCS1v15(), hashes.SHA256())


def dsa_answer(key: Any, signed: bytes = NONCE_AND_DIGEST) -> tuple[bytes, bytes]:
    """(hash name, signature) as the ID-SDK answers with a DSA key (SHA1withDSA, DER)."""
    return b"SHA1", key.sign(signed, hashes.SHA1())


async def bind(node: Node, key: str, enterprise_id: int, handle_admin: str, public_key: bytes,
               **kw: Any) -> apb.IssueKeyResponse:
    async with channel(node.ports.grpc, key) as ch:
        return await admin(ch).IssueKey(apb.IssueKeyRequest(
            enterprise_id=enterprise_id, scopes=kw.pop("scopes", ["read", "write"]),
            handle_admin=handle_admin, public_key=public_key, **kw))


async def refused(node: Node, key: str, enterprise_id: int, handle_admin: str,
                  public_key: bytes, **kw: Any) -> tuple[grpc.StatusCode, str]:
    return await code_of(bind(node, key, enterprise_id, handle_admin, public_key, **kw))


async def login_error(auth: Authenticator, handle_admin: str, hash_name: bytes,
                      signature: bytes, signed: bytes = NONCE_AND_DIGEST) -> str:
    with pytest.raises(Unauthenticated) as err:
        await auth.from_handle_signature(handle_admin, hash_name, signature, signed)
    return err.value.reason


# -- binding -----------------------------------------------------------------------------------
async def test_operator_and_enterprise_admin_bind_handle_admins_over_grpc(
        node: Node, keys: Keys, db: asyncpg.Connection) -> None:
    by_op = await bind(node, keys.operator, keys.enterprise_a, ADMIN, RSA_PUB_PEM,
                       label="MES signer", expires_in_days=30)
    assert by_op.api_key == ""  # nothing to show: the key pair is the credential
    cred = by_op.credential
    assert cred.handle_admin == ADMIN and cred.role == "enterprise"
    assert cred.enterprise_id == keys.enterprise_a and list(cred.scopes) == ["read", "write"]
    assert cred.label == "MES signer" and cred.HasField("expires_at")
    # the enterprise's own admin key binds another index, a DSA key in Handle binary form;
    # the index is normalised
    by_ent = await bind(node, keys.admin, keys.enterprise_a, "0301:0.118.8/ADMIN", DSA_PUB_BIN,
                        prefixes=["0.118.8"])
    assert by_ent.credential.handle_admin == "301:0.118.8/ADMIN"
    assert list(by_ent.credential.prefixes) == ["0.118.8"]
    # an operator identity under the node's own prefix
    op_admin = await bind(node, keys.operator, 0, "1:0.118/ADMIN", RSA_PUB_PEM,
                          scopes=["read", "write", "admin"])
    assert op_admin.credential.role == "operator"

    row = await db.fetchrow("SELECT salt, secret_hash, public_key, cert_sha256 FROM credentials"
                            " WHERE key_id = $1", cred.key_id)
    assert row["salt"] is None and row["secret_hash"] is None and row["cert_sha256"] is None
    # stored as SubjectPublicKeyInfo DER whatever form it came in
    stored = serialization.load_der_public_key(row["public_key"])
    assert stored.public_numbers() == load_public_key(RSA_PUB_PEM).public_numbers()
    dsa_row = await db.fetchval("SELECT public_key FROM credentials WHERE key_id = $1",
                                by_ent.credential.key_id)
    assert handle_key_bytes(serialization.load_der_public_key(dsa_row)) == DSA_PUB_BIN

    async with channel(node.ports.grpc, keys.admin) as ch:
        listed = await admin(ch).ListKeys(apb.ListKeysRequest(enterprise_id=keys.enterprise_a))
        audit = await admin(ch).ListAudit(apb.ListAuditRequest(enterprise_id=keys.enterprise_a))
    bound = {c.key_id: c.handle_admin for c in listed.credentials if c.handle_admin}
    assert bound == {cred.key_id: ADMIN, by_ent.credential.key_id: "301:0.118.8/ADMIN"}
    # the enterprise's audit trail holds what its admin bound, and with which key
    issued = [e for e in audit.events
              if e.action == "issue_key" and e.target == by_ent.credential.key_id]
    assert issued and '"handle_admin":"301:0.118.8/ADMIN"' in issued[0].detail_json
    assert '"public_key":"DSA-1024/160"' in issued[0].detail_json


SM2_PUB = (KEYS / "sm2_pub.pem").read_bytes()
CERT = """-----BEGIN CERTIFICATE-----
MIIBHzCBxqADAgECAgEBMAoGCCqGSM49BAMCMA8xDTALBgNVBAMMBHRlc3QwHhcNMjYwMTAxMDAwMDAwWhcNMjcw
-----END CERTIFICATE-----"""


@pytest.mark.parametrize("who,enterprise,handle_admin,public_key,extra,code,reason", [
    ("admin", "a", "300:0.118.9/ADMIN", RSA_PUB_PEM, {}, "PERMISSION_DENIED", "FOREIGN_PREFIX"),
    ("operator", "a", "300:0.118.9/ADMIN", RSA_PUB_PEM, {}, "PERMISSION_DENIED",
     "FOREIGN_PREFIX"),
    ("operator", "", "300:0.900/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT", "FOREIGN_PREFIX"),
    ("operator", "", "300:0.1180/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT", "FOREIGN_PREFIX"),
    ("admin", "b", ADMIN, RSA_PUB_PEM, {}, "PERMISSION_DENIED", "PERMISSION_DENIED"),
    ("writer", "a", ADMIN, RSA_PUB_PEM, {}, "PERMISSION_DENIED", "PERMISSION_DENIED"),
    ("other", "a", ADMIN, RSA_PUB_PEM, {}, "PERMISSION_DENIED", "PERMISSION_DENIED"),
    ("admin", "a", ADMIN, b"not a key", {}, "INVALID_ARGUMENT", "MALFORMED"),
    ("admin", "a", ADMIN, SM2_PUB, {}, "INVALID_ARGUMENT", "SM2_KEY"),
    ("admin", "a", ADMIN, (KEYS / "rsa_priv.pem").read_bytes(), {}, "INVALID_ARGUMENT",
     "PRIVATE_KEY"),
    ("admin", "a", ADMIN, DSA_PUB_BIN + b"\0", {}, "INVALID_ARGUMENT", "TRAILING_BYTES"),
    ("admin", "a", "0:0.118.8/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT", "BAD_HANDLE_INDEX"),
    ("admin", "a", "2147483648:0.118.8/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT",
     "BAD_HANDLE_INDEX"),
    ("admin", "a", "0.118.8/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT",
     "MALFORMED_HANDLE_ADMIN"),
    ("admin", "a", "-1:0.118.8/ADMIN", RSA_PUB_PEM, {}, "INVALID_ARGUMENT",
     "MALFORMED_HANDLE_ADMIN"),
    ("admin", "a", "300:0.118.8/", RSA_PUB_PEM, {}, "INVALID_ARGUMENT", "INVALID_IDENTIFIER"),
    ("admin", "a", "300:0.NA/0.118.8", RSA_PUB_PEM, {}, "INVALID_ARGUMENT",
     "INVALID_IDENTIFIER"),
    ("admin", "a", ADMIN, b"", {}, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    ("admin", "a", "", RSA_PUB_PEM, {}, "INVALID_ARGUMENT", "INVALID_ARGUMENT"),
    ("admin", "a", ADMIN, RSA_PUB_PEM, {"client_certificate_pem": CERT}, "INVALID_ARGUMENT",
     "INVALID_ARGUMENT"),
    ("admin", "a", ADMIN, RSA_PUB_PEM, {"scopes": ["read", "bogus"]}, "INVALID_ARGUMENT",
     "INVALID_ARGUMENT"),
])
async def test_bindings_that_are_refused(node: Node, keys: Keys, db: asyncpg.Connection,
                                         who: str, enterprise: str, handle_admin: str,
                                         public_key: bytes, extra: dict[str, Any], code: str,
                                         reason: str) -> None:
    before = await db.fetchval("SELECT count(*) FROM credentials")
    eid = {"a": keys.enterprise_a, "b": keys.enterprise_b, "": 0}[enterprise]
    assert await refused(node, getattr(keys, who), eid, handle_admin, public_key, **extra) == (
        grpc.StatusCode[code], reason)
    assert await db.fetchval("SELECT count(*) FROM credentials") == before


async def test_one_binding_per_handle_admin_even_after_revocation(node: Node, keys: Keys) -> None:
    first = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    assert await refused(node, keys.admin, keys.enterprise_a, ADMIN, DSA_PUB_BIN) == (
        grpc.StatusCode.ALREADY_EXISTS, "HANDLE_ADMIN_EXISTS")
    # the operator, another spelling of the index: still the same identity
    assert await refused(node, keys.operator, keys.enterprise_a, "00300:0.118.8/ADMIN",
                         DSA_PUB_BIN) == (grpc.StatusCode.ALREADY_EXISTS, "HANDLE_ADMIN_EXISTS")
    async with channel(node.ports.grpc, keys.admin) as ch:
        await admin(ch).RevokeKey(apb.RevokeKeyRequest(key_id=first.credential.key_id))
    assert await refused(node, keys.admin, keys.enterprise_a, ADMIN, DSA_PUB_BIN) == (
        grpc.StatusCode.ALREADY_EXISTS, "HANDLE_ADMIN_EXISTS")
    # rotation means: bind another index (then revoke the old one)
    await bind(node, keys.admin, keys.enterprise_a, "301:0.118.8/ADMIN", DSA_PUB_BIN)
    # the same suffix under another prefix of the same enterprise is another identity
    async with channel(node.ports.grpc, keys.operator) as op:
        await admin(op).AllocatePrefix(apb.AllocatePrefixRequest(
            enterprise_id=keys.enterprise_a, prefix="0.118.31"))
    await bind(node, keys.admin, keys.enterprise_a, "300:0.118.31/ADMIN", RSA_PUB_PEM)


async def test_rotating_a_handle_admin_credential_is_refused(node: Node, keys: Keys) -> None:
    bound = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    async with channel(node.ports.grpc, keys.admin) as ch:
        assert await code_of(admin(ch).RotateKey(apb.RotateKeyRequest(
            key_id=bound.credential.key_id))) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                  "HANDLE_ADMIN_CREDENTIAL")


async def test_database_keeps_secret_and_public_key_apart(node: Node, keys: Keys,
                                                          db: asyncpg.Connection) -> None:
    bound = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    spki = await db.fetchval("SELECT public_key FROM credentials WHERE key_id = $1",
                             bound.credential.key_id)
    insert = ("INSERT INTO credentials (key_id, role, enterprise_id, scopes, salt, secret_hash,"
              " handle_admin, public_key) VALUES ($1, 'enterprise', $2, '{read}', $3, $4, $5, $6)")
    for salt, secret, name, key in [
        (b"s", b"h", "302:0.118.8/ADMIN", spki),   # a secret and a key
        (None, None, None, None),                   # neither
        (None, None, "303:0.118.8/ADMIN", None),   # a handle admin without a key
        (None, None, None, spki),                   # a key without a handle admin
        (b"s", None, None, None),                   # half a secret
        (None, None, "0.118.8/ADMIN", spki),       # not INDEX:PREFIX/SUFFIX
    ]:
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(insert, "x" * 12, keys.enterprise_a, salt, secret, name, key)


# -- logging in with a signature ---------------------------------------------------------------
async def test_signatures_of_the_bound_keys_log_in_with_the_credentials_rights(
        node: Node, keys: Keys) -> None:
    rsa_cred = (await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM,
                           prefixes=["0.118.8"], expires_in_days=7)).credential
    dsa_cred = (await bind(node, keys.operator, 0, "7:0.118/OPS", DSA_PUB_BIN,
                           scopes=["read", "admin"])).credential
    auth = node.core.authenticator

    p = await auth.from_handle_signature(ADMIN, *rsa_answer(private("rsa")), NONCE_AND_DIGEST)
    assert isinstance(p, Principal)
    assert (p.key_id, p.role, p.enterprise_id) == (rsa_cred.key_id, "enterprise",
                                                   keys.enterprise_a)
    assert p.scopes == {"read", "write"} and p.prefixes == {"0.118.8"}
    assert p.expires_at is not None and p.expires_at.timestamp() == pytest.approx(
        rsa_cred.expires_at.ToDatetime().timestamp(), abs=1)
    # again, from memory this time: still verified
    again = await auth.from_handle_signature(ADMIN, *rsa_answer(private("rsa")), NONCE_AND_DIGEST)
    assert again == p

    q = await auth.from_handle_signature("7:0.118/OPS", *dsa_answer(private("dsa")),
                                         NONCE_AND_DIGEST)
    assert (q.key_id, q.role, q.enterprise_id, q.prefixes) == (dsa_cred.key_id, "operator",
                                                                None, None)
    assert q.is_operator and q.scopes == {"read", "admin"}
    # hdllib at 2.11 signs DSA with SHA-256
    sig = private("dsa").sign(NONCE_AND_DIGEST, hashes.SHA256())
    assert (await auth.from_handle_signature("7:0.118/OPS", b"SHA-256", sig,
                                             NONCE_AND_DIGEST)).key_id == dsa_cred.key_id
    # the index written with leading zeros names the same identity
    assert (await auth.from_handle_signature("0300:0.118.8/ADMIN", *rsa_answer(private("rsa")),
                                             NONCE_AND_DIGEST)).key_id == rsa_cred.key_id


async def test_wrong_keys_tampered_data_and_unknown_admins_are_refused(node: Node,
                                                                       keys: Keys) -> None:
    await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    auth = node.core.authenticator
    rsa_key = private("rsa")
    stranger = rsa.generate_private_key(65537, 2048)
    for _ in range(2):  # cold, then with the binding remembered
        assert await login_error(auth, ADMIN, *rsa_answer(stranger)) == "BAD_SIGNATURE"
        name, sig = rsa_answer(rsa_key)
        assert await login_error(auth, ADMIN, name, sig, NONCE_AND_DIGEST[:-1] + b"\0") \
            == "BAD_SIGNATURE"
        assert await login_error(auth, ADMIN, b"SHA1", sig) == "BAD_SIGNATURE"
        assert await login_error(auth, ADMIN, b"MD5", sig) == "BAD_SIGNATURE"
        assert await login_error(auth, ADMIN, *dsa_answer(private("dsa"))) == "BAD_SIGNATURE"
        assert await login_error(auth, ADMIN, name, sig[:-1]) == "BAD_SIGNATURE"
        await auth.from_handle_signature(ADMIN, name, sig, NONCE_AND_DIGEST)
    for unknown in ("301:0.118.8/ADMIN", "300:0.118.8/admin", "300:0.118.9/ADMIN",
                    "0.118.8/ADMIN", "0:0.118.8/ADMIN", "", "300:" + "x" * 5000):
        assert await login_error(auth, unknown, *rsa_answer(rsa_key)) == "UNKNOWN_HANDLE_ADMIN"


async def test_expired_and_revoked_handle_admins_are_refused(node: Node, keys: Keys,
                                                             db: asyncpg.Connection) -> None:
    exp = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM, expires_in_days=1)
    await db.execute("UPDATE credentials SET expires_at = now() - interval '1 minute'"
                     " WHERE key_id = $1", exp.credential.key_id)
    auth = node.core.authenticator
    assert await login_error(auth, ADMIN, *rsa_answer(private("rsa"))) == "EXPIRED_CREDENTIAL"
    rev = await bind(node, keys.admin, keys.enterprise_a, "301:0.118.8/ADMIN", RSA_PUB_PEM)
    await auth.from_handle_signature("301:0.118.8/ADMIN", *rsa_answer(private("rsa")),
                                     NONCE_AND_DIGEST)
    async with channel(node.ports.grpc, keys.admin) as ch:
        await admin(ch).RevokeKey(apb.RevokeKeyRequest(key_id=rev.credential.key_id))
    assert await login_error(auth, "301:0.118.8/ADMIN", *rsa_answer(private("rsa"))) \
        == "REVOKED_CREDENTIAL"
    # a revoked credential's state is only told to whoever holds its key
    stranger = rsa.generate_private_key(65537, 2048)
    assert await login_error(auth, "301:0.118.8/ADMIN", *rsa_answer(stranger)) \
        == "BAD_SIGNATURE"


class CountingSource:
    """The store, counting the handle-admin lookups that reach the database."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lookups = 0

    async def credential(self, key_id: str) -> Any:
        return await self.inner.credential(key_id)

    async def credential_by_cert(self, sha256: bytes) -> Any:
        return await self.inner.credential_by_cert(sha256)

    async def credential_by_handle_admin(self, handle_admin: str) -> Any:
        self.lookups += 1
        return await self.inner.credential_by_handle_admin(handle_admin)


@pytest.fixture
async def second_core(dsn: str) -> AsyncIterator[Core]:
    """Another process's view of the same database: its own memory, told of changes only by
    NOTIFY."""
    cache = HotCache(max_entries=100, ttl=60, negative_ttl=5, enabled=False)
    core = await Core.open(make_settings(signing_enabled=False), dsn, cache, pool_max=2)
    await cache.start(dsn)
    try:
        yield core
    finally:
        await cache.stop()
        await core.db.close()


async def test_revocation_reaches_another_authenticator_through_notify(
        node: Node, keys: Keys, second_core: Core) -> None:
    bound = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    other = second_core.authenticator
    counting = CountingSource(other.source)
    other.source = counting
    answer = rsa_answer(private("rsa"))
    for _ in range(3):
        p = await other.from_handle_signature(ADMIN, *answer, NONCE_AND_DIGEST)
        assert p.key_id == bound.credential.key_id
    assert counting.lookups == 1  # the binding is remembered, the signature checked each time

    async with channel(node.ports.grpc, keys.admin) as ch:
        await admin(ch).RevokeKey(apb.RevokeKeyRequest(key_id=bound.credential.key_id))

    async def refused_there() -> bool:
        try:
            await other.from_handle_signature(ADMIN, *answer, NONCE_AND_DIGEST)
        except Unauthenticated as exc:
            return exc.reason == "REVOKED_CREDENTIAL"
        return False

    # well inside the minute the lookup would otherwise be trusted for
    await eventually(refused_there, timeout=5)
    assert counting.lookups >= 2


async def test_no_api_token_authenticates_a_key_bound_credential(node: Node, keys: Keys) -> None:
    bound = await bind(node, keys.admin, keys.enterprise_a, ADMIN, RSA_PUB_PEM)
    key_id = bound.credential.key_id
    for secret in ("A" * 43, "_" * 43, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"):
        token = f"idn_{key_id}_{secret}"
        with pytest.raises(Unauthenticated) as err:
            await node.core.authenticator.from_token(token)
        assert err.value.reason == "INVALID_CREDENTIAL"
        async with channel(node.ports.grpc, token) as ch:
            assert await code_of(registry(ch).List(pb.ListRequest(prefix="0.118.8"))) == (
                grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIAL")


# -- the command line --------------------------------------------------------------------------
def test_cli_binds_and_lists_handle_admins(dsn: str, keys: Keys) -> None:
    bound = idnode("key", "issue", "--enterprise", str(keys.enterprise_a), "--scope", "read,write",
                   "--handle-admin", ADMIN, "--public-key", str(KEYS / "rsa_pub.pem"), dsn=dsn)
    assert bound.returncode == 0, bound.stderr
    lines = bound.stdout.strip().splitlines()
    assert f"Handle admin {ADMIN} bound to the RSA-2048 key" in lines[0]
    key_id = lines[-1]
    assert len(key_id) == 12 and int(key_id, 16) >= 0  # the last line is the key id
    dsa = idnode("key", "issue", "--operator", "--scope", "read,admin", "--handle-admin",
                 "9:0.118/OPS", "--public-key", str(KEYS / "dsa_pub.hdl.bin"), dsn=dsn)
    assert dsa.returncode == 0 and "DSA-1024/160" in dsa.stdout, dsa.stderr

    listed = idnode("key", "list", "--enterprise", str(keys.enterprise_a), dsn=dsn).stdout
    row = next(line for line in listed.splitlines() if line.startswith(key_id))
    assert row.endswith(f"handle_admin={ADMIN}") and "enterprise" in row
    assert "handle_admin=-" in listed  # API keys have none
    everything = idnode("key", "list", dsn=dsn).stdout
    assert "handle_admin=9:0.118/OPS" in everything

    sm2 = idnode("key", "issue", "--enterprise", str(keys.enterprise_a), "--handle-admin",
                 "301:0.118.8/ADMIN", "--public-key", str(KEYS / "sm2_pub.pem"), dsn=dsn)
    assert sm2.returncode == 1 and "SM2_KEY" in sm2.stderr and "SM2" in sm2.stderr
    again = idnode("key", "issue", "--enterprise", str(keys.enterprise_a), "--handle-admin",
                   ADMIN, "--public-key", str(KEYS / "dsa_pub.pem"), dsn=dsn)
    assert again.returncode == 1 and "HANDLE_ADMIN_EXISTS" in again.stderr
    foreign = idnode("key", "issue", "--enterprise", str(keys.enterprise_a), "--handle-admin",
                     "300:0.118.9/ADMIN", "--public-key", str(KEYS / "rsa_pub.pem"), dsn=dsn)
    assert foreign.returncode == 1 and "FOREIGN_PREFIX" in foreign.stderr
