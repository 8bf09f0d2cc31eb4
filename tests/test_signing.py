"""Signed records end to end: served with their proof, verified offline against the anchor,
and every tampering caught with a precise reason."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from idnode import keys as keyrings
from idnode.crypto import b64
from idnode.crypto.errors import VerificationError
from idnode.crypto.keys import KeyRing, SigningKey
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from idnode.verify import verify
from tests.conftest import make_settings
from tests.helpers import http_get


async def fetch(node: Node, ident: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await http_get(node.ports.http, f"/{ident}", {"Accept": "application/json",
                                                          **(headers or {})})
    assert resp.status == 200, resp.body
    return dict(resp.json())


async def trust_of(node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    trust = (await http_get(node.ports.http, "/.well-known/idnode-trust.json")).json()
    anchor = keyrings.keyring(node.settings, "anchor").jwks()
    return trust, anchor


async def register(stub: registry_pb2_grpc.RegistryStub, n: int = 5) -> list[str]:
    ids = [f"0.118.8/SIG-{i}" for i in range(n)]
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="sig", records=[
        pb.RecordInput(identifier=i, values=[
            pb.Value(index=1, type="product.name", data=f"大米 {i}"),
            pb.Value(index=2, type="supplier.price", data="3.20", private=True)]) for i in ids]))
    return ids


async def test_served_records_verify_against_the_anchor(node: Node, stub: Any) -> None:
    ids = await register(stub)
    trust, anchor = await trust_of(node)
    for ident in ids:
        doc = await fetch(node, ident)
        assert doc["node"] == "0.118" and doc["signature"]["leaf_index"] == ids.index(ident)
        statement = verify(doc, trust, anchor)
        assert statement["size"] == len(ids)
    jwks = (await http_get(node.ports.http, "/.well-known/jwks.json")).json()
    assert all("d" not in k for k in jwks["keys"]), "no private key material is served"


async def test_owner_view_with_private_values_verifies_too(node: Node, stub: Any,
                                                           api_key: str) -> None:
    ids = await register(stub, 2)
    trust, anchor = await trust_of(node)
    owner = await fetch(node, ids[0], {"Authorization": f"Bearer {api_key}"})
    assert [v["type"] for v in owner["values"]] == ["product.name", "supplier.price"]
    verify(owner, trust, anchor)
    owner["values"][1]["data"]["value"] = "0.01"
    with pytest.raises(VerificationError) as err:
        verify(owner, trust, anchor)
    assert err.value.reason == "content_mismatch"


async def test_update_is_signed_and_an_older_version_is_a_replay(node: Node, stub: Any) -> None:
    ids = await register(stub, 1)
    trust, anchor = await trust_of(node)
    v1 = await fetch(node, ids[0])
    await stub.UpdateValues(pb.UpdateValuesRequest(identifier=ids[0], values=[
        pb.Value(index=1, type="product.name", data="新米")]))
    v2 = await fetch(node, ids[0])
    assert v2["version"] == 2 and verify(v2, trust, anchor, min_version=2)["size"] == 1
    verify(v1, trust, anchor)  # an old version is genuinely signed...
    with pytest.raises(VerificationError) as err:  # ...but is not the current one
        verify(v1, trust, anchor, min_version=2)
    assert err.value.reason == "stale_version"
    rec = await stub.Resolve(pb.ResolveRequest(identifier=ids[0]))
    assert orjson.loads(rec.signature_json)["jws"] == v2["signature"]["jws"]


def _mutate(doc: dict[str, Any], how: str) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    if how == "value":
        d["values"][0]["data"]["value"] += "!"
    elif how == "truncated_path":
        d["signature"]["proof"] = d["signature"]["proof"][:-1]
    elif how == "flipped_path":
        p = bytearray(b64.dec(d["signature"]["proof"][0]))
        p[0] ^= 1
        d["signature"]["proof"][0] = b64.enc(bytes(p))
    elif how == "index":
        d["signature"]["leaf_index"] = (d["signature"]["leaf_index"] + 1) % 5
    elif how == "signature":
        head, payload, sig = d["signature"]["jws"].split(".")
        raw = bytearray(b64.dec(sig))
        raw[0] ^= 1
        d["signature"]["jws"] = f"{head}.{payload}.{b64.enc(bytes(raw))}"
    elif how == "node":
        d["node"] = "0.119"
    return d


@pytest.mark.parametrize("how,reason", [
    ("value", "root_mismatch"), ("truncated_path", "bad_inclusion_path"),
    ("flipped_path", "root_mismatch"), ("index", "root_mismatch"),
    ("signature", "bad_signature"), ("node", "wrong_anchor"),
])
async def test_tampering_fails_with_a_precise_reason(node: Node, stub: Any, how: str,
                                                     reason: str) -> None:
    ids = await register(stub)
    trust, anchor = await trust_of(node)
    doc = await fetch(node, ids[2])
    with pytest.raises(VerificationError) as err:
        verify(_mutate(doc, how), trust, anchor)
    assert err.value.reason == reason, err.value


async def test_unknown_key_and_wrong_anchor_fail(node: Node, stub: Any) -> None:
    ids = await register(stub, 1)
    trust, anchor = await trust_of(node)
    doc = await fetch(node, ids[0])
    impostor = SigningKey.generate()
    other_anchor = {"keys": [{**impostor.jwk, "kid": impostor.kid, "alg": "EdDSA"}]}
    with pytest.raises(VerificationError) as err:
        verify(doc, trust, other_anchor)
    assert err.value.reason == "wrong_anchor"
    with pytest.raises(VerificationError) as err:
        verify(doc, {**trust, "key_statements": {}}, anchor)
    assert err.value.reason == "unknown_key"


async def test_editing_the_database_behind_the_node_is_detected(
        dsn: str, node: Node, stub: Any, db: asyncpg.Connection) -> None:
    ids = await register(stub, 3)
    await db.execute("UPDATE handles SET vals = jsonb_set(vals, '{0,data,value}', '\"假冒\"') "
                     "WHERE suffix = 'SIG-1'")
    fresh = Node(make_settings(), dsn)  # a process that has not cached the record
    await fresh.start()
    try:
        trust, anchor = await trust_of(fresh)
        doc = await fetch(fresh, ids[1])
        assert doc["values"][0]["data"]["value"] == "假冒"
        with pytest.raises(VerificationError) as err:
            verify(doc, trust, anchor)
        assert err.value.reason == "root_mismatch"
        verify(await fetch(fresh, ids[0]), trust, anchor)  # its batch neighbours still verify
    finally:
        await fresh.stop(grace=1)


async def test_rotated_key_keeps_old_records_verifying(dsn: str, tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path)
    node = Node(settings, dsn)
    await node.start()
    try:
        ring: KeyRing = node.core.keyring  # type: ignore[assignment]
        first = ring.active()
        assert first is not None
        ring.rotate()
        ring.save()
    finally:
        await node.stop(grace=1)
    again = Node(settings, dsn)
    await again.start()
    try:
        jwks = (await http_get(again.ports.http, "/.well-known/jwks.json")).json()
        states = {k["kid"]: "idnode:retired_at" in k for k in jwks["keys"]}
        assert states[first.kid] is True and list(states.values()).count(False) == 1
    finally:
        await again.stop(grace=1)


def test_verify_command_from_a_file(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "idnode", "verify", str(tmp_path / "nope"),
                             "--anchor", str(tmp_path / "nope")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout.startswith("FAIL")
