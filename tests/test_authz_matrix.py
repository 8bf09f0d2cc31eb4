"""Every RPC against every role: who may call what.

Roles: anonymous; enterprise A's writer (read+write), reader (read), admin (read+write+admin);
enterprise B's admin key (another tenant); the node operator; an expired and a revoked key;
a forged key (right shape, wrong secret) and a truncated one.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import itertools

import grpc
import pytest

from idnode.node import Node
from idnode.v1 import admin_pb2 as apb
from idnode.v1 import admin_pb2_grpc
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import Keys, channel
from tests.helpers import record_input

OK = grpc.StatusCode.OK
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

_SEQ = itertools.count()
RSA_PUB_PEM = (Path(__file__).parent / "vectors" / "hdlkeys" / "rsa_pub.pem").read_bytes()
ROLES = ("anonymous", "writer", "reader", "admin", "other", "operator", "expired", "revoked",
         "forged", "truncated")


def key_for(role: str, keys: Keys) -> str | None:
    if role == "anonymous":
        return None
    if role == "forged":
        head, secret = keys.writer[:17], keys.writer[17:]
        return head + ("A" if secret[0] != "A" else "B") + secret[1:]
    if role == "truncated":
        return keys.writer[:-5]
    return str(getattr(keys, role))


Call = Callable[[registry_pb2_grpc.RegistryStub, admin_pb2_grpc.AdminStub, Keys], Awaitable[Any]]

# RPC -> (the call, {role: expected status}); roles not named expect UNAUTHENTICATED when
# their credential is bad or missing and PERMISSION_DENIED otherwise.
CASES: dict[str, tuple[Call, dict[str, grpc.StatusCode]]] = {
    "Registry.RegisterBatch": (
        lambda r, a, k: r.RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key=f"m-{next(_SEQ)}", records=[record_input("0.118.8/M-1")])),
        {"writer": OK, "admin": OK}),
    "Registry.UpdateValues": (
        lambda r, a, k: r.UpdateValues(pb.UpdateValuesRequest(
            identifier="0.118.8/SEED", values=[pb.Value(index=1, type="a", data="b")])),
        {"writer": OK, "admin": OK}),
    "Registry.Delete": (
        lambda r, a, k: r.Delete(pb.DeleteRequest(identifier="0.118.8/SEED")),
        {"writer": OK, "admin": OK}),
    "Registry.Resolve": (
        lambda r, a, k: r.Resolve(pb.ResolveRequest(identifier="0.118.8/SEED")),
        {"anonymous": OK, "writer": OK, "reader": OK, "admin": OK, "other": OK, "operator": OK}),
    "Registry.ResolveBatch": (
        lambda r, a, k: r.ResolveBatch(pb.ResolveBatchRequest(identifiers=["0.118.8/SEED"])),
        {"anonymous": OK, "writer": OK, "reader": OK, "admin": OK, "other": OK, "operator": OK}),
    "Registry.List": (
        lambda r, a, k: r.List(pb.ListRequest(prefix="0.118.8")),
        {"writer": OK, "reader": OK, "admin": OK, "operator": OK}),
    "Admin.CreateEnterprise": (
        lambda r, a, k: a.CreateEnterprise(apb.CreateEnterpriseRequest(
            name="New Co", uscc="91230100MA1C00000T")),
        {"operator": OK}),
    "Admin.ListEnterprises": (
        lambda r, a, k: a.ListEnterprises(apb.ListEnterprisesRequest()),
        {"operator": OK, "admin": OK, "other": OK}),
    "Admin.AllocatePrefix": (
        lambda r, a, k: a.AllocatePrefix(apb.AllocatePrefixRequest(enterprise_id=k.enterprise_a)),
        {"operator": OK}),
    "Admin.SetPrefixStatus": (
        lambda r, a, k: a.SetPrefixStatus(apb.SetPrefixStatusRequest(
            prefix="0.118.8", status="active")),
        {"operator": OK}),
    "Admin.IssueKey": (
        lambda r, a, k: a.IssueKey(apb.IssueKeyRequest(enterprise_id=k.enterprise_a,
                                                       scopes=["read"])),
        {"operator": OK, "admin": OK}),
    # The same RPC binding a Handle admin identity to a public key instead of issuing a key.
    "Admin.IssueKey(handle_admin)": (
        lambda r, a, k: a.IssueKey(apb.IssueKeyRequest(
            enterprise_id=k.enterprise_a, scopes=["read", "write"],
            handle_admin=f"{300 + next(_SEQ)}:0.118.8/ADMIN", public_key=RSA_PUB_PEM)),
        {"operator": OK, "admin": OK}),
    "Admin.ListKeys": (
        lambda r, a, k: a.ListKeys(apb.ListKeysRequest(enterprise_id=k.enterprise_a)),
        {"operator": OK, "admin": OK}),
    "Admin.SetTemplate": (
        lambda r, a, k: a.SetTemplate(apb.SetTemplateRequest(prefix="0.118.8", name="batch")),
        {"operator": OK, "admin": OK}),
    "Admin.GetTemplate": (
        lambda r, a, k: a.GetTemplate(apb.GetTemplateRequest(prefix="0.118.8")),
        {"anonymous": OK, "writer": OK, "reader": OK, "admin": OK, "other": OK, "operator": OK}),
    "Admin.ListAudit": (
        lambda r, a, k: a.ListAudit(apb.ListAuditRequest(prefix="0.118.8")),
        {"operator": OK, "admin": OK}),
}


def test_matrix_covers_every_rpc() -> None:
    services = {"Registry": pb.DESCRIPTOR.services_by_name["Registry"],
                "Admin": apb.DESCRIPTOR.services_by_name["Admin"]}
    every = {f"{name}.{m.name}" for name, svc in services.items() for m in svc.methods}
    # Key rotation and revocation act on a key: covered by their own matrix below.
    assert every - set(CASES) == {"Admin.RotateKey", "Admin.RevokeKey"}
    assert {c.split("(")[0] for c in CASES} <= every


@pytest.mark.parametrize("rpc", sorted(CASES))
async def test_authorization_matrix(rpc: str, node: Node, keys: Keys, api_key: str) -> None:
    call, allowed = CASES[rpc]
    async with channel(node.ports.grpc, keys.writer) as seed:
        await registry_pb2_grpc.RegistryStub(seed).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="seed", records=[record_input("0.118.8/SEED")]))
    failures = []
    for role in ROLES:
        expected = allowed.get(role)
        if expected is None:
            expected = UNAUTH if role in ("anonymous", "expired", "revoked", "forged",
                                          "truncated") else DENIED
        async with channel(node.ports.grpc, key_for(role, keys)) as ch:
            try:
                await call(registry_pb2_grpc.RegistryStub(ch), admin_pb2_grpc.AdminStub(ch), keys)
                got = OK
            except grpc.aio.AioRpcError as exc:
                got = exc.code()
        if got != expected:
            failures.append(f"{role}: expected {expected.name}, got {got.name}")
        if got == OK and rpc in ("Registry.Delete",):
            # Put the record back for the next role.
            async with channel(node.ports.grpc, keys.writer) as seed:
                await registry_pb2_grpc.RegistryStub(seed).RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key=f"reseed-{role}", records=[record_input("0.118.8/SEED")]))
        if got == OK and rpc == "Registry.RegisterBatch":
            async with channel(node.ports.grpc, keys.writer) as seed:
                await registry_pb2_grpc.RegistryStub(seed).Delete(
                    pb.DeleteRequest(identifier="0.118.8/M-1"))
    assert not failures, f"{rpc}: " + "; ".join(failures)


@pytest.mark.parametrize("rpc", ["RotateKey", "RevokeKey"])
async def test_key_management_matrix(rpc: str, node: Node, keys: Keys) -> None:
    """Who may rotate or revoke enterprise A's reader key: A's admin and the operator only."""
    expectations = {"anonymous": UNAUTH, "writer": DENIED, "reader": DENIED, "admin": OK,
                    "other": DENIED, "operator": OK, "expired": UNAUTH, "revoked": UNAUTH,
                    "forged": UNAUTH, "truncated": UNAUTH}
    failures = []
    for role, expected in expectations.items():
        async with channel(node.ports.grpc, keys.operator) as op_ch:
            victim = await admin_pb2_grpc.AdminStub(op_ch).IssueKey(apb.IssueKeyRequest(
                enterprise_id=keys.enterprise_a, scopes=["read"]))
        async with channel(node.ports.grpc, key_for(role, keys)) as ch:
            stub = admin_pb2_grpc.AdminStub(ch)
            try:
                if rpc == "RotateKey":
                    await stub.RotateKey(apb.RotateKeyRequest(key_id=victim.credential.key_id))
                else:
                    await stub.RevokeKey(apb.RevokeKeyRequest(key_id=victim.credential.key_id))
                got = OK
            except grpc.aio.AioRpcError as exc:
                got = exc.code()
        if got != expected:
            failures.append(f"{role}: expected {expected.name}, got {got.name}")
    assert not failures, f"{rpc}: " + "; ".join(failures)
