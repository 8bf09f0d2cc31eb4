"""The load tests: a short headless locust run of both users against a real node (zero
failures), and the pieces of the capacity run that need no node (mix, ramp, knee, sizing)."""
from __future__ import annotations

import asyncio
import csv
import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import asyncpg
import orjson
import pytest

from tests.nodeproc import start_node

ROOT = Path(__file__).resolve().parent.parent
LOADTEST = ROOT / "loadtest"


def _load(name: str) -> ModuleType:
    """A loadtest/ module by path (they import each other by bare name, as locust runs them)."""
    sys.path.insert(0, str(LOADTEST))
    try:
        spec = importlib.util.spec_from_file_location(f"loadtest_{name}", LOADTEST / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(LOADTEST))


async def _seed(dsn: str, n: int) -> None:
    now = datetime.now(UTC)
    vals = orjson.dumps([{"index": 1, "type": "product.name", "ttl": 86400,
                          "data": {"format": "string", "value": "大米"},
                          "timestamp": "2026-11-24T00:00:00.000Z"}]).decode()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "handles", columns=("prefix", "suffix", "vals", "version", "created_at", "updated_at"),
            records=[("0.118.8", f"LT-{i:08d}", vals, 1, now, now) for i in range(n)])
    finally:
        await conn.close()


def _stats(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as fh:
        return {r["Name"]: r for r in csv.DictReader(fh)}


@pytest.mark.slow
async def test_scan_and_mes_users_succeed(dsn: str, api_key: str, tmp_path: Path) -> None:
    await _seed(dsn, 500)  # the data set ScanUser and ResolveBatch read
    node = start_node(dsn, env={"IDNODE_HTTP_RATE_LIMIT": "0", "IDNODE_GRPC_WRITE_RATE": "0",
                                "IDNODE_GRPC_ADDRESS_WRITE_RATE": "0"})
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "locust", "-f", str(LOADTEST / "locustfile.py"),
             "--headless", "--host", f"http://127.0.0.1:{node.http}",
             "--grpc-host", f"127.0.0.1:{node.grpc}", "--api-key", api_key, "--seed", "off",
             "--dataset-size", "500", "--unknown-share", "0.2", "--page-share", "0.4",
             "--scan-weight", "3", "--mes-weight", "1", "--scan-rate", "50",
             "--batch-size", "20", "--mes-mix", "register:2,update:2,resolve:1",
             "-u", "8", "-r", "8", "--run-time", "6s", "--csv", str(tmp_path / "lt"),
             "--only-summary", "--loglevel", "WARNING"],
            check=False, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    finally:
        node.stop()
    by_name = _stats(tmp_path / "lt_stats.csv")
    for name in ("/api/handles/[id]", "/[id] (scan page)", "RegisterBatch", "UpdateValues",
                 "ResolveBatch"):
        assert name in by_name, f"no {name} in {sorted(by_name)}"
        assert int(by_name[name]["Request Count"]) > 0, name
        assert int(by_name[name]["Failure Count"]) == 0, name
    failures = (tmp_path / "lt_failures.csv").read_text()
    assert int(by_name["Aggregated"]["Failure Count"]) == 0, failures


def test_zipf_mix_is_skewed_and_in_range() -> None:
    mix = _load("mix")
    z = mix.Zipf(10_000, 1.1)
    draws = [z.draw() for _ in range(20_000)]
    assert all(0 <= d < 10_000 for d in draws)
    top = sorted(((draws.count(d), d) for d in set(draws)), reverse=True)
    assert top[0][0] > 0.05 * len(draws)          # a hot code
    assert len(set(draws)) > 2_000                # and a long cold tail
    assert z.hot_share(100) > 0.5
    assert mix.parse_weights("register:2,update:0, resolve") == {
        "register": 2.0, "update": 0.0, "resolve": 1.0}
    pacer = mix.Pacer(100)
    assert 0 <= pacer.wait() <= 0.02


def test_step_shape_parses_steps() -> None:
    # shapes.py itself imports locust, which monkey-patches the process with gevent: keep
    # it out of the test process
    assert _load("mix").parse_steps("10x30s, 40x1m,5x2") == [(10, 30.0), (40, 60.0), (5, 2.0)]


def _step(curve: str, offered: float, achieved: float, p99: float, node: float,
          db: float = 0.05, locust: float = 0.2) -> dict[str, object]:
    return {"curve": curve, "users": int(offered // 10), "offered": offered,
            "seconds": 10.0, "achieved": achieved, "calls_per_s": achieved,
            "requests": int(achieved * 10), "failures": 0, "p50": p99 / 4, "p95": p99 / 2,
            "p99": p99, "node_cores": node, "db_cores": db, "locust_cores": locust,
            "failure_kinds": {}, "endpoints": []}


def test_report_finds_the_knee_and_sizes(tmp_path: Path) -> None:
    report = _load("report")
    steps = [_step("scan", 1000, 1000, 3, 0.1), _step("scan", 2000, 1990, 5, 0.2),
             _step("scan", 4000, 2500, 80, 0.4, locust=0.95),
             _step("register", 5000, 5000, 100, 0.25), _step("register", 20000, 19000, 600, 0.95),
             _step("register", 40000, 19500, 1500, 0.97)]
    meta = {"date": "today", "quick": True, "profile": "p.toml", "dataset": 1000, "batch": 1000,
            "cpus": 2, "node_cpu": "0", "load_cpu": "1", "node_workers": 1, "step_seconds": 10,
            "scan_rate_per_user": 20, "register_rate_per_user": 2, "slo_scan_p99_ms": 50,
            "slo_register_p99_ms": 1000, "targets": [
                {"name": "t", "scans": 10_000, "registrations": 10_000}],
            "elapsed_s": 1, "unknown_share": 0.03, "machine": {}}
    scan = report.analyse("scans", "req", steps[:3], 50, 1.0)
    assert scan.knee == 1 and scan.sustainable == 1990
    assert "load generator" in scan.limiter
    assert scan.per_core == pytest.approx(9950)           # extrapolated: 1990 / 0.2
    reg = report.analyse("registrations", "records", steps[3:], 1000, 1.0)
    assert reg.knee == 1 and "node's CPU" in reg.limiter
    assert reg.per_core == pytest.approx(19000 / 0.95)     # measured: the core was saturated
    rows = report.sizing(meta["targets"], scan, reg)
    # 10k scans at 1/9950 core each + 10k records at 1/20000 core each, at 60% utilisation
    assert rows[0]["node_cores"] == 3 and rows[0]["replicas"] == 3
    text = report.write(tmp_path, meta, steps).read_text()
    assert "← knee" in text and "| t | 10,000 | 10,000 | 3 | 3 |" in text
