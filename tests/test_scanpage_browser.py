"""The scan page in real headless Chromium at phone size: it renders without anything from
elsewhere, fits the screen, shows the verified badge, switches language, and warns once the
database is tampered with. Needs Debian's chromium (/usr/bin/chromium) and Playwright."""
from __future__ import annotations

import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import playwright.async_api as playwright_api
import pytest

from idnode.node import Node
from tests.helpers import eventually
from tests.test_scanpage import rice, settings  # noqa: F401 - fixtures
from tests.test_trace_lineage import BATCH, UNITS

CHROMIUM = os.environ.get("IDNODE_CHROMIUM", "/usr/bin/chromium")
if not shutil.which(CHROMIUM):
    # Not a skip: a green run must have shown the page in a browser (.ci/test-deps.sh).
    pytest.fail(f"no Chromium at {CHROMIUM} (Debian package chromium: apt-get install chromium)",
                pytrace=False)

PHONE = {"width": 390, "height": 844}
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def phone(tmp_path: Path) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(viewport=PHONE, device_scale_factor=2,
                                                locale="zh-CN", is_mobile=True, has_touch=True)
            yield await context.new_page()
        finally:
            await browser.close()


def rgb_at(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    from PIL import Image
    with Image.open(io.BytesIO(png)) as img:
        return img.convert("RGB").getpixel((x, y))  # type: ignore[return-value]


async def test_the_page_on_a_phone(node: Node, rice: None, phone: Any,  # noqa: F811
                                   db: asyncpg.Connection, tmp_path: Path) -> None:
    outside: list[str] = []
    phone.on("request", lambda r: None if r.url.startswith(
        f"http://127.0.0.1:{node.ports.http}/") else outside.append(r.url))
    url = f"http://127.0.0.1:{node.ports.http}/{UNITS[0]}"
    resp = await phone.goto(url)
    assert resp.status == 200 and outside == []
    badge = phone.locator("#status")
    assert await badge.get_attribute("data-status") == "verified"
    assert "已验证" in await badge.inner_text()
    # Fits a phone: no sideways scrolling, the badge on the first screen.
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = await badge.bounding_box()
    assert box is not None and box["y"] + box["height"] < PHONE["height"]
    assert await phone.locator("#timeline li").count() == 6
    shot = await phone.screenshot(path=str(tmp_path / "verified.png"))
    from PIL import Image
    with Image.open(io.BytesIO(shot)) as img:
        assert img.size == (PHONE["width"] * 2, PHONE["height"] * 2)
    cx, cy = int((box["x"] + 12) * 2), int((box["y"] + box["height"] / 2) * 2)
    r, g, b = rgb_at(shot, cx, cy)
    assert g > 100 and g > r + 40 and g > b + 20, (r, g, b)  # the green badge, as painted
    # Each card shows the number the status and corrections use; the API and the log's
    # figures wait behind "details", closed until the reader opens it.
    assert await phone.locator("#timeline li .n").all_inner_texts() == [
        f"第 {i} 条" for i in range(1, 7)]
    api = phone.locator("#details a")
    assert not await api.is_visible()
    await phone.click("#details summary")
    assert await api.is_visible() and "7" in await phone.locator("#log").inner_text()
    await phone.click("#details summary")

    await phone.click("#lang")
    assert "Verified" in await phone.locator("#status").inner_text()
    assert await phone.evaluate("document.documentElement.lang") == "en"

    await db.execute("ALTER TABLE trace_events DISABLE TRIGGER trace_events_append_only")
    await db.execute("UPDATE trace_events SET place = '别处' WHERE identifier = $1"
                     " AND kind = 'processing'", BATCH)

    async def warned() -> bool:
        await phone.reload()
        return await phone.locator("#status").get_attribute("data-status") == "failed"
    assert await eventually(warned, timeout=5, interval=0.2)
    shot = await phone.screenshot(path=str(tmp_path / "tampered.png"))
    box = await phone.locator("#status").bounding_box()
    assert box is not None
    r, g, b = rgb_at(shot, int((box["x"] + 12) * 2), int((box["y"] + box["height"] / 2) * 2))
    assert r > 150 and r > g + 60, (r, g, b)  # the red warning
    assert await phone.locator("li.ev.bad").count() == 1
