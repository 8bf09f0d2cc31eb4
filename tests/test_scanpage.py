"""The consumer scan page over real HTTP: verified timeline, languages, scan counts, recalls
reaching every unit at once, and tampering in the database turning the badge into a warning."""
from __future__ import annotations

import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from idnode.config import Settings
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from tests.conftest import Keys, make_settings
from tests.helpers import eventually, http_get, record_input
from tests.test_trace import append, event
from tests.test_trace_lineage import BATCH, FIELDS, UNITS

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
           "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}
RICE = {"product.name": "五常大米", "product.variety": "稻花香2号",
        "product.origin": "黑龙江省五常市", "product.grade": "一级",
        "batch.harvest_date": "2026-09-28", "producer.licence": "SC10123018400123",
        "product.net_weight_g": "5000"}


@pytest.fixture
def settings() -> Settings:
    return make_settings(scan_warn_count=3, scan_warn_places=5, trace_view_max_age=0.3)


@pytest.fixture
async def rice(node: Node, keys: Keys, stub: object) -> None:
    await stub.RegisterBatch(pb.RegisterBatchRequest(  # type: ignore[attr-defined]
        idempotency_key="page", records=[record_input(i) for i in (*FIELDS, BATCH)]
        + [record_input(u, **RICE) for u in UNITS]))
    await append(node, keys.writer,
                 event(FIELDS[0], "planting", 0, attrs={"crop": "水稻"}),
                 event(FIELDS[1], "planting", 1, attrs={"crop": "水稻"}),
                 event(BATCH, "harvest", 150, inputs=list(FIELDS), attrs={"moisture": 14.5}),
                 event(BATCH, "processing", 160, attrs={"step": "脱壳"}),
                 event(UNITS[0], "packing", 165, inputs=[BATCH]),
                 event(UNITS[1], "packing", 165, inputs=[BATCH]),
                 event(UNITS[0], "retail", 170, place="哈尔滨"))


async def page(node: Node, ident: str, **headers: str) -> str:
    resp = await http_get(node.ports.http, f"/{ident}", {**BROWSER, **headers})
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"].startswith("text/html")
    assert len(resp.body) < 50_000
    return resp.body.decode()


def status(html: str) -> str:
    found = re.search(r'id="status" data-status="(\w+)"', html)
    assert found, html
    return found.group(1)


async def test_the_page_shows_a_verified_timeline_in_chinese(node: Node, rice: None) -> None:
    html = await page(node, UNITS[0])
    assert status(html) == "verified" and "已验证" in html
    assert '<html lang="zh-CN">' in html
    for text in ("五常大米", "黑龙江省五常市", "一级", "稻花香2号", "5 kg", "Enterprise A"):
        assert text in html, text
    kinds = re.findall(r'<div class="k">([^<]+)</div>', html)
    assert kinds == ["播种", "播种", "收获", "加工", "包装", "零售"]
    assert f"来源 {FIELDS[0]}" in html and f"来源 {BATCH}" in html
    assert "<script" not in html and "http://" not in html.replace(
        "http://127.0.0.1", "")  # nothing fetched from elsewhere


async def test_language_follows_the_browser_and_the_switch(node: Node, rice: None) -> None:
    english = await page(node, UNITS[0], **{"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english and "Verified" in english and "Harvest" in english
    assert 'href="/0.118.8/RICE-2026-B1-0001?lang=zh"' in english
    switched = await page(node, UNITS[0] + "?lang=zh", **{"Accept-Language": "en"})
    assert "已验证" in switched


async def test_scans_are_counted_and_copies_warned(node: Node, rice: None) -> None:
    first = await page(node, UNITS[1])
    assert 'data-count="0"' in first and "首次查询" in first
    for expected in (1, 2, 3):
        assert f'data-count="{expected}"' in await page(node, UNITS[1])
    assert 'id="suspicious"' not in await page(node, UNITS[0])
    html = await page(node, UNITS[1])  # four scans before this one: more than the threshold
    assert 'data-count="4"' in html and 'id="suspicious"' in html

    async def flushed() -> int:
        return int(await node.db.fetchval(  # type: ignore[union-attr]
            "SELECT coalesce(sum(count), 0) FROM trace_scans WHERE identifier = $1", UNITS[1]))
    assert await eventually(lambda: flushed(), timeout=5) == 5
    # JSON clients (apps, not people scanning) are not counted.
    await http_get(node.ports.http, f"/{UNITS[1]}", {"Accept": "application/json"})
    assert 'data-count="5"' in await page(node, UNITS[1])


async def test_a_batch_recall_shows_on_every_unit_at_once(node: Node, keys: Keys,
                                                          rice: None) -> None:
    assert node.core.provenance is not None
    node.core.provenance.views.max_age = 600  # only the invalidation can refresh them now
    for unit in UNITS:
        assert 'id="recall"' not in await page(node, unit)  # views are now cached
    await append(node, keys.writer, event(BATCH, "recall", 175, attrs={"reason": "镉超标"}))

    async def recalled() -> bool:
        return all(['id="recall"' in await page(node, u) for u in UNITS])
    assert await eventually(recalled, timeout=2)
    html = await page(node, UNITS[0])
    assert "已召回" in html and "镉超标" in html and status(html) == "verified"


async def test_tampering_in_the_database_turns_the_badge_into_a_warning(
        node: Node, rice: None, db: asyncpg.Connection) -> None:
    assert status(await page(node, UNITS[0])) == "verified"
    await db.execute("ALTER TABLE trace_events DISABLE TRIGGER trace_events_append_only")
    await db.execute("""UPDATE trace_events SET attrs = '{"moisture": 13.0}'
                        WHERE identifier = $1 AND kind = 'harvest'""", BATCH)

    async def warned() -> str:
        html = await page(node, UNITS[0])
        return html if status(html) == "failed" else ""
    html = await eventually(warned, timeout=3)
    assert "验证失败" in html
    bad = re.findall(r'<li class="ev bad" data-leaf="(\d+)"', html)
    assert bad == ["2"]  # exactly the harvest event


async def test_a_tampered_record_fails_too(node: Node, rice: None,
                                           db: asyncpg.Connection) -> None:
    await db.execute("UPDATE handles SET vals = replace(vals::text, '一级', '特级')::jsonb"
                     " WHERE suffix = $1", UNITS[0].split("/", 1)[1])
    node.cache.clear()  # as after a restart; a direct write notifies no one
    html = await page(node, UNITS[0])
    assert status(html) == "failed" and "特级" in html and "产品记录" in html


async def test_json_clients_and_the_gs1_path_are_unchanged(node: Node, rice: None) -> None:
    resp = await http_get(node.ports.http, f"/{UNITS[0]}", {"Accept": "application/json"})
    assert resp.status == 200 and resp.json()["identifier"] == UNITS[0]
    unknown = await http_get(node.ports.http, "/0.118.8/NOT-OURS", BROWSER)
    assert unknown.status == 404 and "可能是仿冒品" in unknown.body.decode()
    assert (await http_get(node.ports.http, "/0.118.8/NOT-OURS")).headers[
        "content-type"].startswith("application/problem+json")
    assert (await http_get(node.ports.http, "/nope/x", BROWSER)).status == 400


@pytest.fixture
async def unsigned_node(dsn: str) -> AsyncIterator[Node]:
    n = Node(make_settings(signing_enabled=False), dsn)
    await n.start()
    try:
        yield n
    finally:
        await n.stop(grace=1)


async def test_without_signing_the_plain_page_is_served(unsigned_node: Node, keys: Keys) -> None:
    from tests.conftest import channel
    from idnode.v1 import registry_pb2_grpc
    async with channel(unsigned_node.ports.grpc, keys.writer) as ch:
        await registry_pb2_grpc.RegistryStub(ch).RegisterBatch(pb.RegisterBatchRequest(
            idempotency_key="u", records=[record_input(UNITS[0], **RICE)]))
    html = await page(unsigned_node, UNITS[0])
    assert "五常大米" in html and 'id="status"' not in html


def consumer_view(html: str) -> str:
    """What shows without opening the technical details."""
    return re.sub(r"<details.*?</details>", "", html, flags=re.S)


async def test_english_counts_are_proper_plurals(node: Node, rice: None) -> None:
    en = {"Accept-Language": "en"}
    assert "first time this code has been checked" in await page(node, UNITS[1], **en)
    once = await page(node, UNITS[1], **en)
    assert "checked once before, from 1 place." in once
    twice = await page(node, UNITS[1], **en)
    assert "checked 2 times before, from 1 place." in twice
    assert "(s)" not in once + twice
    assert "all 5 trace events are signed" in twice


async def test_event_numbers_are_the_ones_the_cards_show(
        node: Node, rice: None, db: asyncpg.Connection) -> None:
    html = await page(node, UNITS[0])
    shown = re.findall(r'<span class="n">([^<]+)</span><div class="k">([^<]+)</div>', html)
    assert shown == [(f"第 {i} 条", k) for i, k in enumerate(
        ["播种", "播种", "收获", "加工", "包装", "零售"], start=1)]
    await db.execute("ALTER TABLE trace_events DISABLE TRIGGER trace_events_append_only")
    await db.execute("""UPDATE trace_events SET attrs = '{"moisture": 13.0}'
                        WHERE identifier = $1 AND kind = 'harvest'""", BATCH)

    async def warned() -> str:
        got = await page(node, UNITS[0], **{"Accept-Language": "en"})
        return got if status(got) == "failed" else ""
    failed = await eventually(warned, timeout=3)
    consumer = consumer_view(failed)
    assert "tampered with: #3 Harvest</div>" in consumer  # the card numbered #3
    assert re.search(r'class="ev bad"[^>]*>[^#]*<span class="n">#3</span>', failed)
    # the reasons are in the details, not in the consumer's text
    assert "root_mismatch" not in consumer and "#3 Harvest: " in failed


async def test_the_log_size_is_right_and_api_jargon_is_behind_details(
        node: Node, rice: None, stub: object) -> None:
    html = await page(node, UNITS[0])
    assert re.search(r'<p id="log" data-size="7">签名的溯源日志共 7 条事件', html)
    consumer = consumer_view(html)
    assert "/api/" not in consumer and "idnode verify" not in consumer
    assert "<summary>技术详情</summary>" in html and "/api/trace/" in html
    await stub.RegisterBatch(pb.RegisterBatchRequest(  # type: ignore[attr-defined]
        idempotency_key="untraced", records=[record_input("0.118.8/UNTRACED-1", **RICE)]))
    untraced = await page(node, "0.118.8/UNTRACED-1", **{"Accept-Language": "en"})
    assert "holds 7 events" in untraced and "of 0 events" not in untraced
    assert "The product record is signed by the node and unchanged" in untraced
