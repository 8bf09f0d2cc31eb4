"""Remakes docs/img/scan-page-{verified,tampered}.png: the demo rice bag's scan page on a phone
(390x844, 2x) in Debian's Chromium, before and after the README's event tampering.

    .venv/bin/python docs/img/make_screenshots.py

Starts its own `idnode serve --demo` (embedded PostgreSQL in a temporary directory, free
ports), so a running `make run` is not touched; stops it afterwards.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import playwright.async_api as playwright_api

from idnode.embedded import free_port

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("IDNODE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BAG = "0.118.8/RICE-2026-000001"
TAMPER = ("SET session_replication_role = replica; UPDATE trace_events SET attrs = "
          "jsonb_set(attrs, '{dose_ml_per_mu}', '5') WHERE identifier = '0.118.8/FIELD-WC-A07' "
          "AND kind = 'pesticide'")


async def shoot(http: int) -> None:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844},
                                                device_scale_factor=2, locale="zh-CN",
                                                is_mobile=True, has_touch=True)
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{http}/{BAG}")
            await page.screenshot(path=str(HERE / "scan-page-verified.png"))
            env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING")
            subprocess.run([sys.executable, "-m", "idnode", "psql", "-c", TAMPER], env=env,
                           check=True, capture_output=True)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await page.goto(f"http://127.0.0.1:{http}/{BAG}?lang=en")
                if await page.locator("#status").get_attribute("data-status") == "failed":
                    break
                await asyncio.sleep(0.5)
            else:
                raise SystemExit("the page did not turn red")
            await page.screenshot(path=str(HERE / "scan-page-tampered.png"))
        finally:
            await browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="idnode-shots-") as tmp:
        http = free_port()
        os.environ.update(IDNODE_DATA_DIR=str(Path(tmp) / ".idnode"),
                          IDNODE_EMBEDDED_PG_PORT=str(free_port()))
        proc = subprocess.Popen(
            [sys.executable, "-m", "idnode", "serve", "--demo", "--http-port", str(http),
             "--grpc-port", str(free_port()), "--handle-port", str(free_port()),
             "--metrics-port", str(free_port())],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if re.match(r"READY", line):
                    break
            urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5)
            asyncio.run(shoot(http))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
    print(f"wrote {HERE / 'scan-page-verified.png'} and {HERE / 'scan-page-tampered.png'}")


if __name__ == "__main__":
    main()
