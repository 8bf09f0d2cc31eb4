"""Enterprises, prefixes, credentials, templates and audit, over the real Admin and Registry
services."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import asyncpg
import grpc
import pytest

from idnode.node import Node
from idnode.v1 import admin_pb2 as apb
from idnode.v1 import admin_pb2_grpc
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import error_info, eventually, http_get, record_input
from tests.nodeproc import start_node

AGRI = dict(product__name="五常大米", product__variety="稻花香2号",
            product__origin="黑龙江省五常市", product__grade="一级",
            batch__harvest_date="2026-09-28", producer__licence="SC10123010000001")


def admin(ch: grpc.aio.Channel) -> admin_pb2_grpc.AdminStub:
    return admin_pb2_grpc.AdminStub(ch)


def registry(ch: grpc.aio.Channel) -> registry_pb2_grpc.RegistryStub:
    return registry_pb2_grpc.RegistryStub(ch)


async def code_of(coro: object) -> tuple[grpc.StatusCode, str]:
    try:
        await coro  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), error_info(exc)[0].reason
    return grpc.StatusCode.OK, ""


async def test_onboard_issue_key_register_and_other_tenant_refused(
        node: Node, keys: Keys, db: asyncpg.Connection) -> None:
    async with channel(node.ports.grpc, keys.operator) as op:
        ent = await admin(op).CreateEnterprise(apb.CreateEnterpriseRequest(
            name="黑河大豆合作社", uscc="91230100MA1C00000T", contact="ops@example.com"))
        alloc = await admin(op).AllocatePrefix(apb.AllocatePrefixRequest(enterprise_id=ent.id))
        assert alloc.prefix == "0.118.1"  # the smallest free number under the node prefix
        issued = await admin(op).IssueKey(apb.IssueKeyRequest(
            enterprise_id=ent.id, scopes=["read", "write"], label="MES line 1"))
    assert issued.api_key.startswith("idn_") and issued.credential.role == "enterprise"
    stored = await db.fetchrow("SELECT salt, secret_hash FROM credentials WHERE key_id = $1",
                               issued.credential.key_id)
    secret = issued.api_key[17:].encode()
    assert secret not in bytes(stored["secret_hash"]) and len(stored["secret_hash"]) == 32

    async with channel(node.ports.grpc, issued.api_key) as ch:
        ok = await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="b1", records=[record_input(f"{alloc.prefix}/SOY-1")]))
        assert ok.registered == 1
        # Not under prefixes its enterprise holds:
        assert await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="b2", records=[record_input("0.118.8/INTRUDER")]))) == (
            grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    async with channel(node.ports.grpc, keys.other) as ch:
        assert (await code_of(registry(ch).UpdateValues(pb.UpdateValuesRequest(
            identifier=f"{alloc.prefix}/SOY-1", values=[pb.Value(index=1, type="a", data="x")]))
        ))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert await db.fetchval("SELECT count(*) FROM handles") == 1
    assert await db.fetchval("SELECT version FROM handles") == 1


@pytest.mark.parametrize("role,reason", [
    ("expired", "EXPIRED_CREDENTIAL"), ("revoked", "REVOKED_CREDENTIAL"),
])
async def test_expired_and_revoked_keys_are_refused_with_reason(
        node: Node, keys: Keys, role: str, reason: str) -> None:
    async with channel(node.ports.grpc, getattr(keys, role)) as ch:
        assert await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="x", records=[record_input("0.118.8/X")]))) == (
            grpc.StatusCode.UNAUTHENTICATED, reason)


@pytest.mark.parametrize("mangle,reason", [
    (lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"), "INVALID_CREDENTIAL"),
    (lambda k: k[:20], "MALFORMED_CREDENTIAL"),
    (lambda k: "idn_000000000000_" + k[17:], "INVALID_CREDENTIAL"),
    (lambda k: k + "' OR '1'='1", "MALFORMED_CREDENTIAL"),
])
async def test_forged_and_truncated_keys_are_refused(node: Node, keys: Keys, mangle: object,
                                                     reason: str) -> None:
    async with channel(node.ports.grpc, mangle(keys.writer)) as ch:  # type: ignore[operator]
        assert await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="x", records=[record_input("0.118.8/X")]))) == (
            grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_rotation_keeps_both_keys_valid_until_the_grace_ends(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        fresh = await admin(ch).IssueKey(apb.IssueKeyRequest(
            enterprise_id=keys.enterprise_a, scopes=["read", "write"]))
        rotated = await admin(ch).RotateKey(apb.RotateKeyRequest(
            key_id=fresh.credential.key_id, grace_seconds=2))
    assert rotated.credential.key_id != fresh.credential.key_id
    for i, key in enumerate((fresh.api_key, rotated.api_key)):
        async with channel(node.ports.grpc, key) as ch:
            await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key=f"r{i}", records=[record_input(f"0.118.8/ROT-{i}")]))

    async def old_refused() -> bool:
        async with channel(node.ports.grpc, fresh.api_key) as ch:
            return (await code_of(registry(ch).List(pb.ListRequest(prefix="0.118.8"))))[1] == \
                "EXPIRED_CREDENTIAL"

    await eventually(old_refused, timeout=10, interval=0.2)
    async with channel(node.ports.grpc, rotated.api_key) as ch:
        await registry(ch).List(pb.ListRequest(prefix="0.118.8"))


@pytest.mark.slow
async def test_revocation_reaches_another_process(dsn: str, keys: Keys) -> None:
    a = start_node(dsn, worker_id="a")
    b = start_node(dsn, worker_id="b")
    try:
        async with channel(a.grpc, keys.admin) as ch:
            issued = await admin(ch).IssueKey(apb.IssueKeyRequest(
                enterprise_id=keys.enterprise_a, scopes=["read"]))
        async with channel(b.grpc, issued.api_key) as ch:
            await registry(ch).List(pb.ListRequest(prefix="0.118.8"))  # B remembers the key
        async with channel(a.grpc, keys.admin) as ch:
            await admin(ch).RevokeKey(apb.RevokeKeyRequest(key_id=issued.credential.key_id))

        async def refused_on_b() -> bool:
            async with channel(b.grpc, issued.api_key) as ch:
                return (await code_of(registry(ch).List(pb.ListRequest(prefix="0.118.8"))))[1] \
                    == "REVOKED_CREDENTIAL"

        await eventually(refused_on_b, timeout=5)
    finally:
        a.stop()
        b.stop()


async def test_key_limited_to_one_prefix(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.operator) as op:
        second = await admin(op).AllocatePrefix(apb.AllocatePrefixRequest(
            enterprise_id=keys.enterprise_a, prefix="0.118.30"))
        limited = await admin(op).IssueKey(apb.IssueKeyRequest(
            enterprise_id=keys.enterprise_a, scopes=["write"], prefixes=[second.prefix]))
        assert await code_of(admin(op).IssueKey(apb.IssueKeyRequest(
            enterprise_id=keys.enterprise_a, scopes=["write"], prefixes=["0.118.9"]))) == (
            grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    async with channel(node.ports.grpc, limited.api_key) as ch:
        await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="l1", records=[record_input("0.118.30/A")]))
        assert (await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="l2", records=[record_input("0.118.8/A")]))))[0] == \
            grpc.StatusCode.PERMISSION_DENIED


async def test_enterprise_admin_cannot_escalate(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        assert (await code_of(admin(ch).IssueKey(apb.IssueKeyRequest(scopes=["admin"]))))[0] == \
            grpc.StatusCode.PERMISSION_DENIED  # an operator key
        assert (await code_of(admin(ch).IssueKey(apb.IssueKeyRequest(
            enterprise_id=keys.enterprise_b, scopes=["write"]))))[0] == \
            grpc.StatusCode.PERMISSION_DENIED  # another enterprise's key
    async with channel(node.ports.grpc, keys.operator) as op:
        bad = await code_of(admin(op).IssueKey(apb.IssueKeyRequest(
            enterprise_id=keys.enterprise_a, scopes=["root"])))
        assert bad == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")


def enterprise_types(handle_json: dict[str, Any]) -> list[str]:
    """The value types of a Handle REST answer without the node's own signature values
    (HS_CERT, HS_SIGNATURE: the Handle form of its signature, served with every record)."""
    return [v["type"] for v in handle_json["values"]
            if not v["type"].startswith(("HS_CERT", "HS_SIGNATURE"))]


async def test_private_values_are_served_only_to_the_owner(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        await registry(ch).RegisterBatch(pb.RegisterBatchRequest(idempotency_key="p", records=[
            pb.RecordInput(identifier="0.118.8/PRIV", values=[
                pb.Value(index=1, type="product.name", data="大米"),
                pb.Value(index=2, type="supplier.price", data="3.20", private=True)])]))
        owner = await registry(ch).Resolve(pb.ResolveRequest(identifier="0.118.8/PRIV"))
    assert [(v.type, v.private) for v in owner.values] == [("product.name", False),
                                                          ("supplier.price", True)]
    for key in (None, keys.other):
        async with channel(node.ports.grpc, key) as ch:
            seen = await registry(ch).Resolve(pb.ResolveRequest(identifier="0.118.8/PRIV"))
            assert [v.type for v in seen.values] == ["product.name"]
            batch = await registry(ch).ResolveBatch(pb.ResolveBatchRequest(
                identifiers=["0.118.8/PRIV"]))
            assert [v.type for v in batch.results[0].record.values] == ["product.name"]
    anon = await http_get(node.ports.http, "/api/handles/0.118.8/PRIV")
    assert enterprise_types(anon.json()) == ["product.name"]
    assert "3.20" not in (await http_get(node.ports.http, "/0.118.8/PRIV",
                                         {"Accept": "text/html"})).body.decode()
    mine = await http_get(node.ports.http, "/api/handles/0.118.8/PRIV",
                          {"Authorization": f"Bearer {keys.reader}"})
    assert enterprise_types(mine.json()) == ["product.name", "supplier.price"]
    assert mine.headers["cache-control"].startswith("private")
    assert mine.headers["etag"] != anon.headers["etag"]
    theirs = await http_get(node.ports.http, "/api/handles/0.118.8/PRIV",
                            {"Authorization": f"Bearer {keys.other}"})
    assert enterprise_types(theirs.json()) == ["product.name"]
    forged = await http_get(node.ports.http, "/api/handles/0.118.8/PRIV",
                            {"Authorization": "Bearer idn_nope"})
    assert forged.status == 401 and forged.json()["reason"] == "MALFORMED_CREDENTIAL"
    assert forged.headers["www-authenticate"].startswith("Bearer")


async def test_template_violations_name_the_failing_field(node: Node, keys: Keys,
                                                          db: asyncpg.Connection) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        await admin(ch).SetTemplate(apb.SetTemplateRequest(prefix="0.118.8",
                                                           name="agri-product-unit"))
        got = await admin(ch).GetTemplate(apb.GetTemplateRequest(prefix="0.118.8"))
        assert got.name == "agri-product-unit" and "producer.licence" in got.schema_json
    missing = {k: v for k, v in AGRI.items() if k != "producer__licence"}
    bad_date = {**AGRI, "batch__harvest_date": "2026-13-01"}
    bad_grade = {**AGRI, "product__grade": "A+"}
    async with channel(node.ports.grpc, keys.writer) as ch:
        ok = await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="t0", records=[record_input("0.118.8/OK", **AGRI)]))
        assert ok.registered == 1
        for i, (values, field) in enumerate([
                (missing, "records[1].values[type=producer.licence]"),
                (bad_date, "records[1].values[type=batch.harvest_date]"),
                (bad_grade, "records[1].values[type=product.grade]")]):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key=f"t{i + 1}", records=[
                        record_input(f"0.118.8/GOOD-{i}", **AGRI),
                        record_input(f"0.118.8/BAD-{i}", **values)]))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            info, _ = error_info(err.value)
            assert (info.reason, info.metadata["field"]) == ("TEMPLATE_VIOLATION", field)
    assert await db.fetchval("SELECT count(*) FROM handles") == 1


async def test_invalid_template_is_refused(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        for schema, reason in [('{"type": "array"}', "INVALID_TEMPLATE"),
                               ('{"type": "object", "properties": {"a": {"type": 5}}}',
                                "INVALID_TEMPLATE"),
                               ("{not json", "INVALID_ARGUMENT")]:
            assert await code_of(admin(ch).SetTemplate(apb.SetTemplateRequest(
                prefix="0.118.8", name="custom", schema_json=schema))) == (
                grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert (await code_of(admin(ch).SetTemplate(apb.SetTemplateRequest(
            prefix="0.118.8", name="no-such-builtin"))))[0] == grpc.StatusCode.INVALID_ARGUMENT


async def test_suspension_refuses_writes_and_optionally_resolution(node: Node,
                                                                   keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="s0", records=[record_input("0.118.8/SUS")]))
    assert (await http_get(node.ports.http, "/api/handles/0.118.8/SUS")).status == 200  # cached
    async with channel(node.ports.grpc, keys.operator) as op:
        await admin(op).SetPrefixStatus(apb.SetPrefixStatusRequest(prefix="0.118.8",
                                                                   status="suspended"))
    async with channel(node.ports.grpc, keys.writer) as ch:
        assert await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="s1", records=[record_input("0.118.8/SUS2")]))) == (
            grpc.StatusCode.FAILED_PRECONDITION, "PREFIX_SUSPENDED")
    assert (await http_get(node.ports.http, "/api/handles/0.118.8/SUS")).status == 200
    async with channel(node.ports.grpc, keys.operator) as op:
        await admin(op).SetPrefixStatus(apb.SetPrefixStatusRequest(
            prefix="0.118.8", status="suspended", refuse_resolution=True))
    refused = await http_get(node.ports.http, "/api/handles/0.118.8/SUS")
    assert refused.status == 403 and refused.json()["reason"] == "PREFIX_SUSPENDED"
    async with channel(node.ports.grpc, None) as ch:
        assert await code_of(registry(ch).Resolve(pb.ResolveRequest(
            identifier="0.118.8/SUS"))) == (grpc.StatusCode.PERMISSION_DENIED, "PREFIX_SUSPENDED")
    async with channel(node.ports.grpc, keys.operator) as op:
        await admin(op).SetPrefixStatus(apb.SetPrefixStatusRequest(prefix="0.118.8",
                                                                   status="active"))
        assert (await http_get(node.ports.http, "/api/handles/0.118.8/SUS")).status == 200
        await admin(op).SetPrefixStatus(apb.SetPrefixStatusRequest(prefix="0.118.8",
                                                                   status="revoked"))
        assert await code_of(admin(op).SetPrefixStatus(apb.SetPrefixStatusRequest(
            prefix="0.118.8", status="active"))) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                      "PREFIX_REVOKED")
    gone = await http_get(node.ports.http, "/api/handles/0.118.8/SUS")
    assert gone.status == 403 and gone.json()["reason"] == "PREFIX_REVOKED"


async def test_every_write_is_audited_and_the_log_is_append_only(
        node: Node, keys: Keys, db: asyncpg.Connection) -> None:
    async with channel(node.ports.grpc, keys.writer) as ch:
        await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="a1", records=[record_input("0.118.8/AUD-1")]))
        await registry(ch).UpdateValues(pb.UpdateValuesRequest(
            identifier="0.118.8/AUD-1", values=[pb.Value(index=1, type="a", data="2")]))
        await registry(ch).Delete(pb.DeleteRequest(identifier="0.118.8/AUD-1"))
    async with channel(node.ports.grpc, keys.admin) as ch:
        trail = await admin(ch).ListAudit(apb.ListAuditRequest(prefix="0.118.8"))
    events = [(e.action, e.target, e.before_version, e.after_version) for e in trail.events
              if e.prefix == "0.118.8" and e.action in ("register_batch", "update_values",
                                                         "delete")]
    assert events == [("register_batch", "a1", 0, 1), ("update_values", "0.118.8/AUD-1", 1, 2),
                      ("delete", "0.118.8/AUD-1", 2, 0)]
    writer_id = keys.writer.split("_")[1]
    assert {e.actor for e in trail.events if e.action == "delete"} == {writer_id}
    assert {e.client for e in trail.events if e.action == "delete"} == {"127.0.0.1"}
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM audit_log")
    async with channel(node.ports.grpc, keys.other) as ch:
        assert (await code_of(admin(ch).ListAudit(apb.ListAuditRequest(prefix="0.118.8"))))[0] \
            == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("uscc,reason", [
    ("91350100M000100Y4", "INVALID_USCC"),          # 17 characters
    ("91350100M000100Y44", "INVALID_USCC"),         # wrong check character
    ("91350100M0001OOY43", "INVALID_USCC"),         # letter O is not in the alphabet
    ("9135О100M000100Y43", "INVALID_USCC"),         # Cyrillic О, a confusable
    ("91350100M000100Y43'--", "INVALID_USCC"),
])
async def test_bad_credit_codes_are_refused(node: Node, keys: Keys, uscc: str, reason: str,
                                            db: asyncpg.Connection) -> None:
    before = await db.fetchval("SELECT count(*) FROM enterprises")
    async with channel(node.ports.grpc, keys.operator) as op:
        assert await code_of(admin(op).CreateEnterprise(apb.CreateEnterpriseRequest(
            name="X", uscc=uscc))) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert await db.fetchval("SELECT count(*) FROM enterprises") == before


async def test_hostile_text_is_stored_literally_or_refused(node: Node, keys: Keys,
                                                           db: asyncpg.Connection) -> None:
    async with channel(node.ports.grpc, keys.operator) as op:
        name = "Robert'); DROP TABLE enterprises;-- 罗伯特"
        ent = await admin(op).CreateEnterprise(apb.CreateEnterpriseRequest(
            name=name, uscc="91230100MA1C00000T"))
        assert (await db.fetchval("SELECT name FROM enterprises WHERE id = $1", ent.id)) == name
        assert await code_of(admin(op).CreateEnterprise(apb.CreateEnterpriseRequest(
            name="dup", uscc="91230100MA1C00000T"))) == (grpc.StatusCode.ALREADY_EXISTS,
                                                          "ALREADY_EXISTS")
        for prefix in ("８８.118.50", "0.118.5O", "0.118.50'; --", "0.119.50"):
            code, _ = await code_of(admin(op).AllocatePrefix(apb.AllocatePrefixRequest(
                enterprise_id=ent.id, prefix=prefix)))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, prefix
        assert (await code_of(admin(op).CreateEnterprise(apb.CreateEnterpriseRequest(
            name="zero\u200bwidth", uscc="91110000600037341L"))))[0] == \
            grpc.StatusCode.INVALID_ARGUMENT
    async with channel(node.ports.grpc, keys.writer) as ch:
        code, _ = await code_of(registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="h", records=[pb.RecordInput(identifier="0.118.8/H", values=[
                pb.Value(index=1, type="product\u200bname", data="x")])])))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="h2", records=[record_input("0.118.8/x';DROP/**/TABLE/**/handles;--",
                                                        a="'); DELETE FROM handles;--")]))
    assert await db.fetchval("SELECT count(*) FROM handles") == 1


async def test_rate_limit_answers_429_per_client_address(dsn: str) -> None:
    from tests.conftest import make_settings

    node = Node(make_settings(http_rate_limit=5.0, http_rate_burst=5.0), dsn)
    await node.start()
    try:
        statuses = [(await http_get(node.ports.http, "/api/handles/0.118.8/RL")).status
                    for _ in range(8)]
        assert statuses[:5] == [404] * 5 and 429 in statuses[5:]
        limited = await http_get(node.ports.http, "/api/handles/0.118.8/RL")
        assert limited.status == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["reason"] == "RATE_LIMITED"
        # Another client address is not affected; probes are never limited.
        reader, writer = await asyncio.open_connection("127.0.0.1", node.ports.http,
                                                       local_addr=("127.0.0.2", 0))
        writer.write(b"GET /api/handles/0.118.8/RL HTTP/1.1\r\nHost: x\r\n\r\n")
        from tests.helpers import read_response
        assert (await read_response(reader)).status == 404
        writer.close()
        assert (await http_get(node.ports.http, "/healthz")).status == 200
    finally:
        await node.stop(grace=1)


async def test_time_is_utc_in_key_listing(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        listed = await admin(ch).ListKeys(apb.ListKeysRequest(enterprise_id=keys.enterprise_a))
    expired = [c for c in listed.credentials if c.key_id == keys.expired.split("_")[1]][0]
    assert expired.expires_at.ToDatetime(dt.UTC) < dt.datetime.now(dt.UTC)
    assert all(c.enterprise_id == keys.enterprise_a for c in listed.credentials)


async def test_a_template_reports_every_violation_at_once(node: Node, keys: Keys) -> None:
    async with channel(node.ports.grpc, keys.admin) as ch:
        await admin(ch).SetTemplate(apb.SetTemplateRequest(prefix="0.118.8",
                                                           name="agri-product-unit"))
    bad = {k: v for k, v in AGRI.items() if k != "producer__licence"}
    bad.update(batch__harvest_date="2026-13-01", product__grade="A+")
    async with channel(node.ports.grpc, keys.writer) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await registry(ch).RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key="all", records=[record_input("0.118.8/BAD", **bad)]))
    info, violations = error_info(err.value)
    assert info.reason == "TEMPLATE_VIOLATION"
    assert violations is not None and sorted(v.field for v in violations.field_violations) == [
        "records[0].values[type=batch.harvest_date]", "records[0].values[type=producer.licence]",
        "records[0].values[type=product.grade]"]
    assert "3 template violations" in err.value.details()
