"""The Handle and IDIS signature forms of served records (issue 12), judged by Handle.Net's own
verifier (hdllib 9.2's HandleRecordTrustVerifier, over the native protocol and offline) and
by the ID-SDK's own digest code: a served record is accepted unchanged, each tampering with a
value, the chain or the validity window is rejected."""
from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from idnode.config import Settings
from idnode.core.handleform import INDEXES
from idnode.core.handlecerts import bootstrap_json
from idnode.crypto import hsig
from idnode.crypto.keys import SigningKey
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.conftest import channel, make_settings
from tests.helpers import http_get
from tests.interop import hdlclient, idsdk, sdk_port
from tests.sigtools import b64, hdl_verify_json, idsdk_check
from tests.test_federation_trust import top_dsn  # noqa: F401 - fixture

RICE = "0.118.8/HS-RICE-1"
VALUES = [pb.Value(index=1, type="product.name", data="五常大米"),
          pb.Value(index=2, type="URL", data="https://example.com/r/1", ttl=600),
          pb.Value(index=9, type="producer.contact", data="+86 451", private=True)]


@pytest.fixture
def settings() -> Settings:
    return make_settings(handle_port=sdk_port(), signing_algorithms="EdDSA,RS256,SM2SM3")


@pytest.fixture
def roots(node: Node, tmp_path: Path) -> Path:
    forms = node.core.handle_forms
    assert forms is not None and forms.root is not None
    path = tmp_path / "roots.json"
    path.write_text(json.dumps(bootstrap_json(forms.root.values)))
    return path


async def register(stub: Any, ident: str = RICE, values: list[pb.Value] = VALUES) -> str:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key=f"hs-{ident}", records=[
        pb.RecordInput(identifier=ident, values=values)]))
    return ident


def verify(node: Node, ident: str, roots: Path) -> Any:
    return asyncio.to_thread(hdlclient, "127.0.0.1", node.ports.handle, "tcp", "verify", ident,
                             roots)


async def rest(node: Node, ident: str) -> dict[str, Any]:
    resp = await http_get(node.ports.http, f"/api/handles/{ident}")
    assert resp.status == 200, resp.body
    return resp.json()  # type: ignore[no-any-return]


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


async def test_hdllib_accepts_a_served_record_over_the_protocol_and_offline(
        node: Node, stub: Any, roots: Path, tmp_path: Path) -> None:
    ident = await register(stub)
    out = await verify(node, ident, roots)
    assert out["ok"] is True, out
    assert out["valuesNotCovered"] == []
    assert sorted(out["valuesCovered"]) == [1, 2, INDEXES["RS256"][0], INDEXES["SM2SM3"][0]]
    sig = out["signatures"][0]
    assert sig["valid"] and sig["alg"] == "RS256"
    assert [link["kind"] for link in sig["chain"]] == ["HS_SIGNATURE", "HS_CERT",
                                                       "HS_CERT(self-issued)"]
    # the same record as /api/handles serves it, checked offline with nothing but the roots
    doc = await rest(node, ident)
    types = {v["index"]: v["type"] for v in doc["values"]}
    assert types[INDEXES["RS256"][1]] == "HS_SIGNATURE"
    assert types[INDEXES["SM2SM3"][1]] == "HS_SIGNATURE.SM2"  # hdllib ignores subtypes
    offline = await asyncio.to_thread(hdl_verify_json, write(tmp_path, "r.json", doc), roots)
    assert offline["ok"] is True, offline
    # and with the roots as a bare JWK array: the root certificate then comes from the node
    jwk_roots = write(tmp_path, "jwks.json", [_anchor_jwk(roots)])
    assert (await verify(node, ident, jwk_roots))["ok"] is True


def _anchor_jwk(roots: Path) -> dict[str, Any]:
    values = json.loads(roots.read_text())["handles"]["0.0/0.0"]["values"]
    cert = next(v for v in values if v["type"] == "HS_CERT")["data"]["value"]
    return dict(hsig.parse(cert).claims["publicKey"])


async def test_hdllib_rejects_values_changed_after_signing(
        node: Node, stub: Any, roots: Path, db: asyncpg.Connection) -> None:
    ident = await register(stub, "0.118.8/HS-LATER", VALUES[:2])
    assert (await verify(node, ident, roots))["ok"] is True  # signed and kept
    await db.execute("UPDATE handles SET vals = jsonb_set(vals, '{0,data,value}', '\"假冒\"')"
                     " WHERE suffix = 'HS-LATER'")
    node.cache.clear()
    out = await verify(node, ident, roots)
    assert out["ok"] is False and "bad digests" in out["error"], out
    assert out["signatures"][0]["badDigestValues"] == [1]


async def test_values_changed_before_any_handle_read_are_never_signed(
        node: Node, stub: Any, roots: Path, db: asyncpg.Connection) -> None:
    ident = await register(stub, "0.118.8/HS-BEFORE", VALUES[:2])
    await db.execute("UPDATE handles SET vals = jsonb_set(vals, '{0,data,value}', '\"假冒\"')"
                     " WHERE suffix = 'HS-BEFORE'")
    out = await verify(node, ident, roots)
    assert out["ok"] is False and out["error"].endswith("no signatures"), out
    assert await db.fetchval("SELECT count(*) FROM hs_signatures WHERE suffix = 'HS-BEFORE'") == 0


async def test_a_deleted_record_takes_its_kept_signatures_with_it(
        node: Node, stub: Any, roots: Path, db: asyncpg.Connection) -> None:
    ident = await register(stub, "0.118.8/HS-GONE", VALUES[:2])
    assert (await verify(node, ident, roots))["ok"] is True  # signed and kept
    kept = "SELECT count(*) FROM hs_signatures WHERE suffix = 'HS-GONE'"
    assert await db.fetchval(kept) == 2  # RS256 and SM2SM3
    with pytest.raises(grpc.aio.AioRpcError):  # a wrong expected version deletes nothing
        await stub.Delete(pb.DeleteRequest(identifier=ident, expected_version=7))
    assert await db.fetchval(kept) == 2
    await stub.Delete(pb.DeleteRequest(identifier=ident))
    assert await db.fetchval(kept) == 0


async def test_hdllib_rejects_a_tampered_signature_chain_or_root(
        node: Node, stub: Any, roots: Path, tmp_path: Path) -> None:
    ident = await register(stub, "0.118.8/HS-CHAIN", VALUES[:2])
    doc = await rest(node, ident)
    cert_i, sig_i = INDEXES["RS256"]

    def edited(index: int, data: str) -> Path:
        values = [dict(v, data={"format": "string", "value": data}) if v["index"] == index
                  else v for v in doc["values"]]
        return write(tmp_path, f"e{index}.json", dict(doc, values=values))

    def value(index: int) -> str:
        return str(next(v for v in doc["values"] if v["index"] == index)["data"]["value"])

    # a signed value's data, the signature's payload (exp pushed out), a certificate from a
    # key the anchor never certified, and an attacker's root
    cases = {}
    cases["value"] = write(tmp_path, "v.json", dict(doc, values=[
        dict(v, data={"format": "string", "value": "假冒"}) if v["index"] == 1 else v
        for v in doc["values"]]))
    h, p, s = value(sig_i).split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["exp"] += 10 ** 6
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    cases["signature"] = edited(sig_i, f"{h}.{forged_payload}.{s}")
    rogue = SigningKey.generate("RS256")
    node_claims = hsig.parse(value(cert_i)).claims
    cases["cert"] = edited(cert_i, hsig.certify(
        node_claims["sub"], node_claims["publicKey"], node_claims["perms"], node_claims["iss"],
        rogue, iat=node_claims["iat"], nbf=node_claims["nbf"], exp=node_claims["exp"]))
    results = {k: await asyncio.to_thread(hdl_verify_json, path, roots)
               for k, path in cases.items()}
    # the chain's last link: a root record whose self-issued certificate is a rogue's (the
    # verifier takes 0.0/0.0 from the records file, the trust roots as bare keys)
    forged_root = {"handle": "0.0/0.0", "values": [{
        "index": 400, "type": "HS_CERT", "ttl": 86400, "data": {"format": "string", "value":
            hsig.certify("300:0.0/0.0", rogue.jwk, [{"perm": "everything"}], "300:0.0/0.0",
                         rogue, iat=node_claims["iat"], nbf=node_claims["nbf"],
                         exp=node_claims["exp"])}}]}
    good = write(tmp_path, "good.json", doc)
    jwk_roots = write(tmp_path, "jwk-roots.json", [_anchor_jwk(roots)])
    results["chain"] = await asyncio.to_thread(
        hdl_verify_json, Path(f"{good},{write(tmp_path, 'root.json', forged_root)}"), jwk_roots,
        doc["handle"])
    attacker = write(tmp_path, "attacker.json", [rogue.jwk])
    results["root"] = await asyncio.to_thread(hdl_verify_json, Path(f"{good},{roots}"),
                                              attacker, doc["handle"])
    assert results["value"]["error"].endswith("bad digests"), results["value"]
    assert results["signature"]["error"].endswith("signature does not verify")
    # a certificate is itself a signed value of the record: swapping it breaks its digest
    assert results["cert"]["error"].endswith("bad digests"), results["cert"]
    assert results["chain"]["error"].endswith("chain not trusted"), json.dumps(results["chain"])
    assert results["root"]["error"].endswith("chain not trusted"), results["root"]
    assert all(r["ok"] is False for r in results.values())


async def test_hdllib_rejects_a_signature_outside_its_validity_window(
        dsn: str, api_key: str, tmp_path: Path) -> None:
    expired = make_settings(handle_port=sdk_port(), handle_signature_days=-1 / 1440)
    n = Node(expired, dsn)
    await n.start()
    try:
        forms = n.core.handle_forms
        assert forms is not None and forms.root is not None
        roots = write(tmp_path, "roots.json", bootstrap_json(forms.root.values))
        async with channel(n.ports.grpc, api_key) as ch:
            ident = await register(registry_pb2_grpc.RegistryStub(ch), "0.118.8/HS-EXPIRED",
                                   VALUES[:2])
        out = await verify(n, ident, roots)
        assert out["ok"] is False and "date range" in out["error"], out
    finally:
        await n.stop(grace=1)


async def test_the_id_sdk_reproduces_the_digests_of_a_served_record(
        node: Node, stub: Any) -> None:
    ident = await register(stub, "0.118.8/HS-SDK", VALUES)
    (looked,) = await asyncio.to_thread(idsdk, "127.0.0.1", node.ports.handle, "TCP",
                                        ("lookup", ident))
    assert looked["ok"], looked
    served = looked["values"]
    sigs = {v["type"]: hsig.parse(v["data"]).claims for v in served
            if v["type"].startswith("HS_SIGNATURE")}
    for sig_type, alg in (("HS_SIGNATURE", "SHA-256"), ("HS_SIGNATURE.SM2", "SM3")):
        claimed = sigs[sig_type]["digests"]
        assert claimed["alg"] == alg
        signed = {d["index"] for d in claimed["digests"]}
        out = idsdk_check("digests", {"alg": alg, "values": [
            {"index": v["index"], "type": v["type"],
             "data": v["data"] if v["encoding"] == "base64" else b64(v["data"].encode()),
             "ttlType": v["ttlType"], "ttl": v["ttl"], "permissions": _perms(v["permissions"])}
            for v in served if v["index"] in signed]})
        assert sorted(out["digests"], key=lambda d: d["index"]) == \
            sorted(claimed["digests"], key=lambda d: d["index"])


def _perms(text: str) -> int:
    # the SDK prints permissions as "rwr-": admin read, admin write, public read, public write
    return sum(bit for bit, c in zip((8, 4, 2, 1), text) if c != "-")


def idnode_verify(*args: str) -> Any:
    import subprocess
    import sys

    return asyncio.to_thread(subprocess.run, [sys.executable, "-m", "idnode", "verify", *args],
                             capture_output=True, text=True, timeout=60, check=False)


async def test_idnode_verify_checks_the_three_forms_and_names_what_fails(
        node: Node, stub: Any, db: asyncpg.Connection, tmp_path: Path) -> None:
    ident = await register(stub, "0.118.8/HS-CLI", VALUES[:2])
    anchor = write(tmp_path, "anchor.json", node.trust["anchor_jwks"])  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{node.ports.http}/{ident}"
    ok = await idnode_verify(url, "--anchor", str(anchor), "--forms", "jose,handle,idis")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    lines = ok.stdout.splitlines()
    assert lines[0].startswith(f"OK {ident} version 1 signed by node 0.118")
    assert lines[1].startswith("OK handle form: RS256 HS_SIGNATURE 2147483601 by "
                               "300:0.NA/0.118, chain HS_CERT 2147483600:")
    assert lines[2].startswith("OK idis form: SM2SM3 HS_SIGNATURE 2147483611 by "
                               "301:0.NA/0.118")
    # offline: the Handle record and the root record as files
    doc = await rest(node, ident)
    root = await rest(node, "0.0/0.0")
    offline = await idnode_verify(str(write(tmp_path, "h.json", doc)), "--anchor", str(anchor),
                                  "--root", str(write(tmp_path, "root.json", root)))
    assert offline.returncode == 0 and offline.stdout.count("OK ") == 2, offline.stdout
    # a kept signature tampered with in the database: named, with the value it no longer fits
    await db.execute("UPDATE handles SET vals = jsonb_set(vals, '{1,data,value}', "
                     "'\"https://evil.example\"') WHERE suffix = 'HS-CLI'")
    node.cache.clear()
    doc = await rest(node, ident)
    bad = await idnode_verify(str(write(tmp_path, "bad.json", doc)), "--anchor", str(anchor),
                              "--root", str(tmp_path / "root.json"))
    assert bad.returncode == 1
    assert "FAIL handle form: content_mismatch: HS_SIGNATURE at index 2147483601: value 2 " \
           "(URL) does not match its signed digest" in bad.stdout, bad.stdout
    assert "FAIL idis form: content_mismatch" in bad.stdout
    # the wrong anchor: the chain's root is named
    stranger = write(tmp_path, "stranger.json", {"keys": [SigningKey.generate("RS256").to_jwk()]})
    wrong = await idnode_verify(str(tmp_path / "h.json"), "--anchor", str(stranger), "--root",
                                str(tmp_path / "root.json"))
    assert "FAIL handle form: wrong_anchor: the chain of HS_SIGNATURE at index 2147483601 " \
           "ends at '300:0.0/0.0', not at a trust root" in wrong.stdout, wrong.stdout


async def test_a_federated_node_serves_forms_the_top_level_node_certified(
        dsn: str, top_dsn: str, api_key: str, tmp_path: Path) -> None:
    from idnode import keys as keyrings
    from idnode.core.handlecerts import issued_by_anchor, root_values
    from idnode.topnode import TopNode
    from tests.helpers import eventually
    from tests.test_federation_trust import admit, pin

    ts = make_settings(data_dir=tmp_path / "top")
    pinned = keyrings.anchor_jwks(ts, "top-anchor")  # `idnode top anchor --format all`
    top = TopNode(ts, top_dsn)
    await top.start()
    node = Node(make_settings(node_prefix="0.118", upstream_grpc=f"127.0.0.1:{top.port}",
                              upstream_token=await admit(top_dsn), handle_port=sdk_port(),
                              anchor_jwks=pin(tmp_path, pinned),
                              signing_algorithms="EdDSA,RS256,SM2SM3"), dsn)
    await node.start()
    try:
        forms = node.core.handle_forms
        assert forms is not None

        async def certified() -> bool:
            return len(forms.forms) == 2 and forms.root is not None
        await eventually(certified, timeout=15)
        assert {hsig.parse(f.cert).claims["iss"] for f in forms.forms} == {"300:0.0/0.0",
                                                                           "301:0.0/0.0"}
        async with channel(node.ports.grpc, api_key) as ch:
            ident = await register(registry_pb2_grpc.RegistryStub(ch), "0.118.8/HS-FED",
                                   VALUES[:2])
        # the trust roots as the top's operator hands them out (`top anchor --format handle`)
        ring = keyrings.anchor_keyring(ts, "top-anchor")
        roots = write(tmp_path, "top-roots.json", bootstrap_json(
            root_values([k for k in (ring.active("RS256"), ring.active("SM2SM3")) if k])))
        out = await verify(node, ident, roots)
        assert out["ok"] is True, out
        # a certificate not made by a pinned anchor key is refused
        rogue = SigningKey.generate("RS256")
        key = forms.forms[0].key
        forged = hsig.certify("300:0.NA/0.118", key.jwk, [{"perm": "everything"}],
                              "300:0.0/0.0", rogue, iat=0, nbf=0, exp=2 ** 31)
        why = issued_by_anchor(pinned, "0.118", key, forged, forms.root.values)
        assert why is not None and "pinned" in why
        jose_only = {"keys": [k for k in pinned["keys"] if k["kty"] == "OKP"]}
        why = issued_by_anchor(jose_only, "0.118", key, forms.forms[0].cert, forms.root.values)
        assert why is not None and "--format all" in why
    finally:
        await node.stop(grace=1)
        await top.stop(grace=1)


async def test_keys_anchor_prints_roots_handle_nets_verifier_reads(
        node: Node, stub: Any, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    ident = await register(stub, "0.118.8/HS-ROOTS", VALUES[:2])
    env = {**os.environ, "IDNODE_DATA_DIR": str(node.settings.data_dir),
           "IDNODE_SIGNING_ALGORITHMS": node.settings.signing_algorithms}
    outs = {}
    for fmt in ("handle", "handle-jwk", "jwks"):
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "idnode", "keys", "anchor", "--format", fmt],
            capture_output=True, text=True, timeout=60, check=False, env=env)
        assert done.returncode == 0, done.stderr
        outs[fmt] = write(tmp_path, f"{fmt}.json", json.loads(done.stdout))
    assert (await verify(node, ident, outs["handle"]))["ok"] is True
    assert (await verify(node, ident, outs["handle-jwk"]))["ok"] is True
    kinds = {k["kty"] for k in json.loads(outs["jwks"].read_text())["keys"]}
    assert {"OKP", "RSA", "SM2"} <= kinds
