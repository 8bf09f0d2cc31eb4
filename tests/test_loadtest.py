"""The locust users against a real node: a short headless run, zero failures."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.nodeproc import start_node

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


async def test_scan_and_mes_users_succeed(dsn: str, api_key: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    vals = orjson.dumps([{"index": 1, "type": "product.name", "ttl": 86400,
                          "data": {"format": "string", "value": "大米"},
                          "timestamp": "2026-11-24T00:00:00.000Z"}]).decode()
    conn = await asyncpg.connect(dsn)
    await conn.copy_records_to_table(
        "handles", columns=("prefix", "suffix", "vals", "version", "created_at", "updated_at"),
        records=[("88.118.8", f"LT-{i:08d}", vals, 1, now, now) for i in range(500)])
    await conn.close()
    node = start_node(dsn, env={"IDNODE_HTTP_RATE_LIMIT": "0"})
    try:
        result = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
             "--headless", "--host", f"http://127.0.0.1:{node.http}",
             "--grpc-host", f"127.0.0.1:{node.grpc}", "--api-key", api_key,
             "--dataset-size", "500", "--batch-size", "20", "-u", "6", "-r", "6",
             "--run-time", "6s", "--csv", str(tmp_path / "lt"), "--only-summary"],
            capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        node.stop()
    rows = list(csv.DictReader(open(tmp_path / "lt_stats.csv")))
    by_name = {r["Name"]: r for r in rows}
    for name in ("/api/handles/[id]", "RegisterBatch", "ResolveBatch"):
        assert int(by_name[name]["Request Count"]) > 0, name
    total = by_name["Aggregated"]
    assert int(total["Failure Count"]) == 0, open(tmp_path / "lt_failures.csv").read()
