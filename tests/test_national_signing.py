"""A node that signs with national algorithms only (signing_algorithms = SM2SM3, 商用密码): its
batches, tree heads and key statements are SM2 JOSE, its records carry the IDIS form, and the
consumer's scan page still shows the verified badge (and a warning once a record is tampered
with)."""
from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from idnode.config import Settings
from idnode.crypto import hsig
from idnode.node import Node
from tests.conftest import make_settings
from tests.helpers import http_get
from tests.test_scanpage import page, rice, status  # noqa: F401 - the rice fixture
from tests.test_trace_lineage import UNITS


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A data directory of its own: a keyring holding nothing but SM2 keys.
    return make_settings(scan_warn_count=3, scan_warn_places=5, trace_view_max_age=0.3,
                         data_dir=tmp_path / "data", signing_algorithms="SM2SM3")


def header(jws: str) -> dict[str, object]:
    return json.loads(base64.urlsafe_b64decode(jws.split(".")[0] + "=="))  # type: ignore[no-any-return]


async def test_an_sm2_signed_node_shows_the_verified_badge(node: Node, rice: None) -> None:
    html = await page(node, UNITS[0])
    assert status(html) == "verified" and "已验证" in html
    doc = (await http_get(node.ports.http, f"/{UNITS[0]}", {"Accept": "application/json"})).json()
    assert header(doc["signature"]["jws"])["alg"] == "SM2SM3"
    head = (await http_get(node.ports.http, "/api/log/head")).json()
    assert header(head["jws"])["alg"] == "SM2SM3"
    trust = node.trust
    assert {header(t)["alg"] for t in trust["key_statements"].values()} == {"SM2SM3"}  # type: ignore[union-attr]
    assert {k["kty"] for k in node.core.keyring.jwks()["keys"]} == {"SM2"}  # type: ignore[union-attr]
    values = (await http_get(node.ports.http, f"/api/handles/{UNITS[0]}")).json()["values"]
    sig = next(v for v in values if v["index"] == 2147483611)
    assert sig["type"] == "HS_SIGNATURE"  # alone: the plain type, as the ID-SDK writes it
    assert hsig.parse(sig["data"]["value"]).claims["digests"]["alg"] == "SM3"
    assert not any(v["index"] in (2147483600, 2147483601) for v in values)


async def test_idnode_verify_checks_an_sm2_node_and_the_badge_fails_on_tampering(
        node: Node, rice: None, db: asyncpg.Connection, tmp_path: Path) -> None:
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps(node.trust["anchor_jwks"]))
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "idnode", "verify", f"http://127.0.0.1:{node.ports.http}/{UNITS[1]}",
        "--anchor", str(anchor), "--forms", "jose,idis"], capture_output=True, text=True,
        timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1].startswith("OK idis form: SM2SM3 HS_SIGNATURE 2147483611")
    await db.execute("UPDATE handles SET vals = replace(vals::text, '一级', '特级')::jsonb"
                     " WHERE suffix = $1", UNITS[0].split("/", 1)[1])
    node.cache.clear()
    assert status(await page(node, UNITS[0])) == "failed"
