"""The national ID-SDK 2.0.3 and Handle.Net's hdllib 9.2, both real, against the node's
Handle/IDIS protocol: resolution, site info, logins, writes and their refusals, over TCP on
loopback and over UDP (the ID-SDK from a client network namespace)."""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from idnode import keys as node_keys
from idnode.cache import HotCache
from idnode.embedded import free_port
from idnode.cli import local_operator
from idnode.config import Settings
from idnode.crypto.hdlkeys import handle_key_bytes, load_public_key
from idnode.node import Core, Node
from idnode.v1 import registry_pb2 as pb
from tests.conftest import Keys, make_settings
from tests.helpers import eventually, http_get
from tests.interop import ClientNamespace, hdl_genkey, hdlclient, idsdk, idsdk_key, sdk_port
from tests.nodeproc import stop_process

ADMIN = "0.118.8/ADMIN"
PRODUCT = "0.118.8/SDK-PRODUCT-1"


@pytest.fixture
def settings() -> Settings:
    return make_settings(handle_port=sdk_port())


async def bind(node: Node, enterprise: int, index: int, public_key: bytes,
               handle: str = ADMIN, scopes: tuple[str, ...] = ("read", "write")) -> str:
    issued = await node.core.tenancy.issue_key(
        local_operator(), enterprise, list(scopes), handle_admin=f"{index}:{handle}",
        public_key=public_key)
    return issued.credential.key_id


@pytest.fixture
async def product(stub: Any) -> str:
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="sdk-1", records=[
        pb.RecordInput(identifier=PRODUCT, values=[
            pb.Value(index=1, type="URL", data="https://example.com/p/1"),
            pb.Value(index=2, type="product.name", data="五常大米"),
            pb.Value(index=3, type="product.grade", data="一级"),
            pb.Value(index=9, type="producer.contact", data="+86 451", private=True)])]))
    return PRODUCT


#: Indexes of the node's own values (HS_CERT / HS_SIGNATURE of the signature forms, issue 12).
NODE_VALUES = 2_147_483_600


def values(step: dict[str, Any]) -> dict[int, tuple[str, str]]:
    """The enterprise's values of a lookup (the node's signature values left out)."""
    return {v["index"]: (v["type"], v["data"]) for v in step.get("values") or []
            if v["index"] < NODE_VALUES}


def sdk(node: Node, *steps: Any, host: str = "127.0.0.1", transport: str = "TCP",
        **kw: Any) -> Any:
    return asyncio.to_thread(idsdk, host, node.ports.handle, transport, *steps, **kw)


async def sdk_udp(node: Node, *steps: Any, host: str, **kw: Any) -> list[dict[str, Any]]:
    """`sdk` over UDP, run again (at most twice) when a step got no reply at all: the SDK's
    per-try deadline is the moment it sent (`timeout = +System.currentTimeMillis()`,
    shared/idsdk/WIRE.md), so on a loaded machine all three of its tries can give up
    before reading the reply the node did send. Any reply, right or wrong, is returned."""
    for _ in range(3):
        lines: list[dict[str, Any]] = await sdk(node, *steps, host=host, transport="UDP", **kw)
        if all(line.get("ok") or line.get("responseCode") is not None for line in lines):
            break
    return lines


async def test_idsdk_resolves_over_tcp_with_filters_and_errors(node: Node, product: str) -> None:
    site, whole, some, typed, missing, foreign, bad = await sdk(
        node, "site", ("lookup", product), ("lookup", product, "1,3"),
        ("lookup", product, "-", "product."), ("lookup", "0.118.8/NOPE"),
        ("lookup", "77.1/x"), ("lookup", "no-prefix"))
    assert site["ok"], site
    server = site["siteInfo"]["servers"][0]
    assert server["address"] == "127.0.0.1"
    assert server["publicKey"]["algorithm"] == "RSA"
    assert [(i["protocol"], i["port"]) for i in server["interfaces"]] == [
        ("TCP", node.ports.handle), ("UDP", node.ports.handle), ("HTTP", node.ports.http)]
    assert whole["ok"] and values(whole) == {1: ("URL", "https://example.com/p/1"),
                                             2: ("product.name", "五常大米"),
                                             3: ("product.grade", "一级")}
    assert [(v["index"], v["type"]) for v in whole["values"][3:]] == [
        (2147483600, "HS_CERT"), (2147483601, "HS_SIGNATURE")]
    assert sorted(values(some)) == [1, 3]
    assert sorted(values(typed)) == [2, 3]
    assert (missing["ok"], missing["responseCode"]) == (False, 100)
    assert foreign["responseCode"] == 100  # the SDK knows no 301
    assert bad["responseCode"] == 102


async def test_idsdk_checks_digest_signature_and_trust(node: Node, product: str, stub: Any,
                                                       db: asyncpg.Connection) -> None:
    # a record changed behind the node's back (before anything cached it) is served, but
    # not as trusted: its signature no longer covers it
    await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="sdk-2", records=[
        pb.RecordInput(identifier="0.118.8/SDK-TAMPERED", values=[
            pb.Value(index=1, type="product.name", data="真品")])]))
    await db.execute("UPDATE handles SET vals = jsonb_set(vals, '{0,data,value}', '\"假冒\"')"
                     " WHERE suffix = 'SDK-TAMPERED'")
    good, tampered = await sdk(node, ("lookup", product), ("lookup", "0.118.8/SDK-TAMPERED"),
                               trusted=True, certify=True, rrdg=True)
    assert good["ok"] and tampered["ok"], (good, tampered)
    assert good["response"]["trustedResult"] == 1
    assert tampered["response"]["trustedResult"] == 2
    assert good["response"]["rdHashType"] == 3  # SHA-256, checked by the SDK
    assert good["response"]["credentialLength"] > 256  # HS_SIGNED, verified by the SDK


async def test_idsdk_logs_in_with_rsa_and_manages_an_identifier(
        node: Node, keys: Keys, db: asyncpg.Connection) -> None:
    await bind(node, keys.enterprise_a, 300, idsdk_key("rsa_pub.pem").read_bytes())
    ident = "0.118.8/SDK-MANAGED"
    steps = await sdk(
        node, ("create", ident, "1:URL=https://example.com/x"),          # 0: not logged in
        ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),              # 1
        ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),              # 2: again
        ("create", ident, "1:URL=https://example.com/x", "2:product.name=大豆"),  # 3
        ("lookup", ident),                                               # 4
        ("add", ident, "3:EMAIL=qa@example.com"),                        # 5
        ("add", ident, "3:EMAIL=twice@example.com"),                     # 6: index taken
        ("lookup", ident),                                               # 7
        ("modify", ident, "2:product.name=黑豆"),                         # 8
        ("modify", ident, "7:product.name=none"),                        # 9: no such index
        ("lookup", ident),                                               # 10
        ("remove", ident, "3"),                                          # 11
        ("lookup", ident),                                               # 12
        ("create", ident, "1:URL=https://example.com/y"),                # 13: exists
        ("create", "0.118.9/NOT-MINE", "1:URL=https://example.com"),    # 14: other prefix
        ("delete", ident),                                               # 15
        ("lookup", ident))                                               # 16
    codes = [s["responseCode"] for s in steps]
    assert codes == [408, 1, 407, 1, 1, 1, 201, 1, 1, 200, 1, 1, 1, 101, 401, 1, 100], steps
    assert values(steps[4]) == {1: ("URL", "https://example.com/x"), 2: ("product.name", "大豆")}
    assert values(steps[7])[3] == ("EMAIL", "qa@example.com")
    assert values(steps[10])[2] == ("product.name", "黑豆")
    assert 3 not in values(steps[12])
    # every write went through core: audited as the bound key, synced upward by the outbox
    actions = [r["action"] for r in await db.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY id", ident)]
    assert actions == ["add_values", "modify_values", "remove_values", "delete"]
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE payload::text LIKE $1",
                             f"%{ident}%") >= 5


async def test_a_record_made_over_the_protocol_is_served_signed_over_http_at_once(
        node: Node, keys: Keys, api_key: str) -> None:
    await bind(node, keys.enterprise_a, 300, idsdk_key("rsa_pub.pem").read_bytes())
    ident = "0.118.8/SDK-HTTP"
    login, create = await sdk(node, ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),
                              ("create", ident, "1:URL=https://example.com/h",
                               "2:product.name=玉米"))
    assert login["ok"] and create["ok"], (login, create)
    r = await http_get(node.ports.http, f"/{ident}", {"Accept": "application/json"})
    assert r.status == 200
    doc = r.json()
    assert [v["data"]["value"] for v in doc["values"]] == ["https://example.com/h", "玉米"]
    assert "jws" in doc["signature"]
    async with _registry(node, api_key) as stub:
        record = await stub.Resolve(pb.ResolveRequest(identifier=ident))
    assert [v.data for v in record.values] == ["https://example.com/h", "玉米"]


async def test_idsdk_logs_in_with_dsa(node: Node, keys: Keys) -> None:
    await bind(node, keys.enterprise_a, 301, idsdk_key("dsa_pub.pem").read_bytes())
    ident = "0.118.8/SDK-DSA"
    steps = await sdk(node, ("login", ADMIN, "301", idsdk_key("dsa_priv.pem")),
                      ("create", ident, "1:URL=https://example.com/d"), ("delete", ident))
    assert [s["responseCode"] for s in steps] == [1, 1, 1], steps


async def test_idsdk_login_with_a_key_that_is_not_bound_fails(node: Node, keys: Keys) -> None:
    await bind(node, keys.enterprise_a, 300, idsdk_key("rsa_pub.pem").read_bytes())
    wrong, unknown, then = await sdk(
        node, ("login", ADMIN, "300", idsdk_key("dsa_priv.pem")),
        ("login", ADMIN, "399", idsdk_key("rsa_priv.pem")),
        ("create", "0.118.8/SDK-NO", "1:URL=https://example.com"))
    assert wrong["responseCode"] == 403 and unknown["responseCode"] == 403
    assert then["responseCode"] == 408


async def test_private_values_are_served_to_their_owner_only(node: Node, keys: Keys,
                                                             product: str) -> None:
    await bind(node, keys.enterprise_a, 300, idsdk_key("rsa_pub.pem").read_bytes())
    await bind(node, keys.enterprise_b, 300, idsdk_key("dsa_pub.pem").read_bytes(),
               handle="0.118.9/ADMIN")
    anonymous, = await sdk(node, ("lookup", product))
    _, owner = await sdk(node, ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),
                         ("lookup", product))
    _, stranger = await sdk(node, ("login", "0.118.9/ADMIN", "300", idsdk_key("dsa_priv.pem")),
                            ("lookup", product))
    assert 9 not in values(anonymous)
    assert values(owner)[9] == ("producer.contact", "+86 451")
    assert 9 not in values(stranger)


async def test_revoking_the_binding_ends_logins(node: Node, keys: Keys) -> None:
    key_id = await bind(node, keys.enterprise_a, 300, idsdk_key("rsa_pub.pem").read_bytes())
    await node.core.tenancy.revoke_key(local_operator(), key_id)
    login, = await sdk(node, ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")))
    assert login["responseCode"] == 403


async def test_password_login_is_refused_unless_switched_on(node: Node, api_key: str) -> None:
    refused, then = await sdk(node, ("login-pw", api_key.split("_")[1], api_key),
                              ("create", "0.118.8/SDK-PW", "1:URL=https://example.com"))
    assert refused["responseCode"] == 5 and "clear text" in refused["error"]
    assert then["responseCode"] == 408


async def test_password_login_when_switched_on_takes_an_api_key_over_tcp(
        dsn: str, api_key: str, keys: Keys) -> None:
    node = Node(make_settings(handle_port=sdk_port(), handle_password_login=True), dsn)
    await node.start()
    try:
        key_id = api_key.split("_")[1]
        wrong, = await sdk(node, ("login-pw", key_id, keys.reader))
        login, made, again = await sdk(
            node, ("login-pw", key_id, api_key),
            ("create", "0.118.8/SDK-PW", "1:URL=https://example.com"),
            ("login-pw", key_id, api_key))
    finally:
        await node.stop(grace=1)
    assert wrong["responseCode"] == 403
    assert [login["responseCode"], made["responseCode"], again["responseCode"]] == [1, 1, 407]


# -- hdllib, Handle.Net's own client ----------------------------------------------------------
@pytest.fixture
async def server_pubkey(node: Node, settings: Settings, tmp_path: Path) -> Path:
    """The server key as HS_SITE publishes it (and as the node's keyring holds it)."""
    site = await hdl(node, "tcp", "siteinfo")
    published = base64.b64decode(site["site"]["servers"][0]["publicKeyBase64"])
    assert published == handle_key_bytes(
        node_keys.protocol_key(settings).private.public_key())
    path = tmp_path / "server_pub.bin"
    path.write_bytes(published)
    return path


def hdl(node: Node, transport: str, command: str, *args: Any, **env: Any) -> Any:
    return asyncio.to_thread(hdlclient, "127.0.0.1", node.ports.handle, transport, command,
                             *args, env=env)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_hdllib_resolves_with_digest_and_a_verified_signature(
        node: Node, product: str, server_pubkey: Path, transport: str) -> None:
    r = await hdl(node, transport, "resolve", product, HDL_CERTIFY=True, HDL_DIGEST=True,
                  HDL_SERVER_PUBKEY=server_pubkey)
    assert r["ok"], r
    assert [v["index"] for v in r["values"]] == [1, 2, 3, 2147483600, 2147483601]
    assert r["wire"]["signatureVerified"] is True
    filtered = await hdl(node, transport, "resolve", product, "-", "URL")
    assert [v["type"] for v in filtered["values"]] == ["URL"]
    site = await hdl(node, transport, "siteinfo")
    assert site["ok"] and site["site"]["servers"][0]["publicKeyType"] == "RSA"


async def test_hdllib_creates_modifies_and_deletes_after_a_challenge(
        node: Node, keys: Keys, tmp_path: Path) -> None:
    priv, pub = await asyncio.to_thread(hdl_genkey, tmp_path)
    await bind(node, keys.enterprise_a, 302, pub.read_bytes())
    ident = "0.118.8/HDL-MANAGED"
    auth = (ADMIN, "302", priv)
    created = await hdl(node, "tcp", "create", ident, *auth, "1:URL=https://example.com/1")
    modified = await hdl(node, "tcp", "modify", ident, *auth, "1:URL=https://example.com/2")
    looked = await hdl(node, "tcp", "resolve", ident)
    denied = await hdl(node, "tcp", "create", "0.118.9/HDL-X", *auth, "1:URL=https://e.x")
    deleted = await hdl(node, "tcp", "delete", ident, *auth)
    gone = await hdl(node, "tcp", "resolve", ident)
    assert created["ok"] and modified["ok"] and deleted["ok"], (created, modified, deleted)
    assert looked["values"][0]["data"] == "https://example.com/2"
    assert denied["responseCode"] == 401
    assert gone["responseCode"] == 100


async def test_hdllib_with_a_wrong_key_is_refused(node: Node, keys: Keys, tmp_path: Path) -> None:
    priv, _ = await asyncio.to_thread(hdl_genkey, tmp_path / "a")
    _, other_pub = await asyncio.to_thread(hdl_genkey, tmp_path / "b")
    await bind(node, keys.enterprise_a, 303, other_pub.read_bytes())
    r = await hdl(node, "tcp", "create", "0.118.8/HDL-W", ADMIN, "303", priv,
                  "1:URL=https://example.com")
    assert r["responseCode"] == 403, r


# -- UDP from another network namespace --------------------------------------------------------
@pytest.fixture
async def netns_node(dsn: str, client_netns: ClientNamespace) -> AsyncIterator[Node]:
    n = Node(make_settings(handle_host=client_netns.server_ip,
                           handle_port=sdk_port(client_netns.server_ip)), dsn)
    await n.start()
    try:
        yield n
    finally:
        await n.stop(grace=1)


async def test_idsdk_over_udp_resolves_and_is_told_admin_is_tcp_only(
        netns_node: Node, client_netns: ClientNamespace, keys: Keys, api_key: str) -> None:
    node = netns_node
    async with _registry(node, api_key) as stub:
        await stub.RegisterBatch(pb.RegisterBatchRequest(idempotency_key="udp-1", records=[
            pb.RecordInput(identifier=PRODUCT, values=[
                pb.Value(index=1, type="URL", data="https://example.com/u"),
                pb.Value(index=2, type="product.name", data="绥化玉米")])]))
    site, whole, some, missing, login = await sdk_udp(
        node, "site", ("lookup", PRODUCT), ("lookup", PRODUCT, "2"),
        ("lookup", "0.118.8/NOPE"), ("login", ADMIN, "300", idsdk_key("rsa_priv.pem")),
        host=client_netns.server_ip, netns=client_netns)
    assert site["ok"] and whole["ok"] and some["ok"], (site, whole, some)
    assert values(whole) == {1: ("URL", "https://example.com/u"), 2: ("product.name", "绥化玉米")}
    assert sorted(values(some)) == [2]
    assert missing["responseCode"] == 100
    assert login["responseCode"] == 5
    trusted, = await sdk_udp(node, ("lookup", PRODUCT), host=client_netns.server_ip,
                             netns=client_netns, trusted=True, rrdg=True)
    assert trusted["ok"] and trusted["response"]["trustedResult"] == 1, trusted


def _registry(node: Node, key: str) -> Any:
    import contextlib

    from idnode.v1 import registry_pb2_grpc
    from tests.conftest import channel

    @contextlib.asynccontextmanager
    async def open_() -> AsyncIterator[Any]:
        async with channel(node.ports.grpc, key) as ch:
            yield registry_pb2_grpc.RegistryStub(ch)
    return open_()


async def test_a_bound_identity_is_published_as_hs_admin_and_hs_pubkey(node: Node,
                                                                        keys: Keys) -> None:
    pem = idsdk_key("rsa_pub.pem").read_bytes()
    key_id = await bind(node, keys.enterprise_a, 300, pem)
    r = await hdl(node, "tcp", "resolve", ADMIN)
    assert r["ok"], r
    by_index = {v["index"]: v for v in r["values"]}
    assert by_index[100]["type"] == "HS_ADMIN" and by_index[300]["type"] == "HS_PUBKEY"
    published = base64.b64decode(by_index[300]["data"]) \
        if by_index[300].get("dataEncoding") == "base64" else by_index[300]["data"].encode()
    assert load_public_key(published).public_numbers() == \
        load_public_key(pem).public_numbers()  # type: ignore[union-attr]
    await node.core.tenancy.revoke_key(local_operator(), key_id)
    after = await hdl(node, "tcp", "resolve", ADMIN)
    assert [v["index"] for v in after["values"]] == [100, 2147483600, 2147483601]


@pytest.mark.slow
async def test_challenges_are_answered_whichever_worker_the_answer_reaches(
        dsn: str, keys: Keys, tmp_path: Path) -> None:
    """hdllib answers a challenge on a new connection, which the kernel may hand to the other
    worker of `serve --workers 2`: the pending challenge is in the database, so it works."""
    priv, pub = await asyncio.to_thread(hdl_genkey, tmp_path)
    core = await Core.open(make_settings(), dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                          enabled=False), pool_max=2)
    try:
        await core.tenancy.issue_key(local_operator(), keys.enterprise_a, ["read", "write"],
                                     handle_admin=f"304:{ADMIN}", public_key=pub.read_bytes())
    finally:
        await core.db.close()
    metrics, port = free_port(), sdk_port()
    env = dict(os.environ, IDNODE_DATABASE_URL=dsn, IDNODE_LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idnode", "serve", "--workers", "2", "--http-port",
         str(free_port()), "--grpc-port", str(free_port()), "--handle-port", str(port),
         "--metrics-port", str(metrics)], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        async def both_up() -> bool:
            seen = set()
            for _ in range(20):
                try:
                    text = (await http_get(metrics, "/metrics")).body.decode()
                except OSError:
                    return False
                seen |= {w for w in ("0", "1") if f'worker="{w}"' in text}
            return seen == {"0", "1"}
        await eventually(both_up, timeout=40, interval=0.2)
        for i in range(4):
            ident = f"0.118.8/MULTI-{i}"
            made = await asyncio.to_thread(hdlclient, "127.0.0.1", port, "tcp", "create", ident,
                                           ADMIN, "304", priv, "1:URL=https://example.com")
            assert made["ok"], made
            looked = await asyncio.to_thread(hdlclient, "127.0.0.1", port, "udp", "resolve",
                                             ident)
            assert looked["values"][0]["data"] == "https://example.com"
    finally:
        assert stop_process(proc, timeout=20) == 0


@pytest.mark.parametrize("version", ["2.1", "2.5", "2.6", "2.7", "2.10"])
async def test_hdllib_speaking_older_versions_gets_answers_it_verifies(
        node: Node, product: str, server_pubkey: Path, version: str) -> None:
    r = await hdl(node, "udp", "resolve", product, HDL_VERSION=version, HDL_CERTIFY=True,
                  HDL_DIGEST=True, HDL_SERVER_PUBKEY=server_pubkey)
    assert r["ok"], r
    assert r["wire"]["responseVersion"] == "2.11"  # it suggests 2.11 whatever it writes
    assert r["wire"]["signatureVerified"] is True
