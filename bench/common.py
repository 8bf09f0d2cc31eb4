"""Shared bench plumbing: an embedded PostgreSQL of the bench's own, seeding, node processes,
wrk runs, and results written to bench/out/."""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from idnode.cache import HotCache  # noqa: E402
from idnode.cli import local_operator  # noqa: E402
from idnode.config import Settings  # noqa: E402
from idnode.embedded import EmbeddedPostgres, free_port  # noqa: E402
from idnode.node import Core  # noqa: E402
from idnode.store import migrations  # noqa: E402

OUT = ROOT / "bench" / "out"
PREFIX = "88.118.8"


@contextmanager
def postgres(durable: bool = True) -> Iterator[str]:
    """$IDNODE_BENCH_DSN, or an embedded server in a temp dir, stopped afterwards."""
    given = os.environ.get("IDNODE_BENCH_DSN")
    if given:
        yield given
        return
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    pg = EmbeddedPostgres(tmp, free_port(), durable=durable,
                          extra_settings={"max_wal_size": "4GB"})
    try:
        yield pg.start()
    finally:
        pg.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


async def prepare(dsn: str) -> str:
    """Migrates, onboards an enterprise holding 88.118.8; returns its write key."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.migrate(conn)
        held = await conn.fetchval("SELECT 1 FROM prefixes WHERE prefix = $1", PREFIX)
    finally:
        await conn.close()
    core = await Core.open(Settings(), dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                     enabled=False), pool_max=2)
    try:
        op = local_operator()
        t = core.tenancy
        if not held:
            ent = await t.create_enterprise(op, "Bench Co", "91350100M000100Y43")
            await t.allocate_prefix(op, ent.id, PREFIX)
        eid = (await t.enterprises(op))[0].id
        return (await t.issue_key(op, eid, ["read", "write"])).api_key
    finally:
        await core.db.close()


def value_json(i: int) -> str:
    return json.dumps([
        {"index": 1, "type": "product.name", "data": {"format": "string", "value": f"大米 {i}"},
         "ttl": 86400, "timestamp": "2026-11-24T00:00:00.000Z"},
        {"index": 2, "type": "URL", "data": {"format": "string",
                                             "value": f"https://example.com/p/{i:08d}"},
         "ttl": 86400, "timestamp": "2026-11-24T00:00:00.000Z"}], ensure_ascii=False)


async def load_rows(dsn: str, n: int, chunk: int = 200_000, start: int = 0) -> None:
    """Loads n identifiers BENCH-%08d fast (COPY), for read benchmarks."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        for lo in range(start, start + n, chunk):
            hi = min(lo + chunk, start + n)
            await conn.copy_records_to_table(
                "handles", columns=("prefix", "suffix", "vals", "version", "created_at",
                                    "updated_at"),
                records=[(PREFIX, f"BENCH-{i:08d}", value_json(i), 1, now, now)
                         for i in range(lo, hi)])
        await conn.execute("ANALYZE handles")
    finally:
        await conn.close()


class Proc:
    """A process started in its own group and stopped by PID, whatever happens."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None,
                 cpu: str | None = None, ready: str = "READY") -> None:
        if cpu is not None and shutil.which("taskset"):
            args = ["taskset", "-c", cpu, *args]
        self.proc = subprocess.Popen(args, env={**os.environ, **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"{args} exited before it was ready")
            m = re.search(ready, line)
            if m:
                self.match = m
                return
        self.stop()
        raise RuntimeError(f"{args} did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_node(dsn: str, *, cpu: str | None = "0", env: dict[str, str] | None = None
               ) -> tuple[Proc, int, int]:
    proc = Proc([sys.executable, "-m", "idnode", "worker", "--dsn", dsn, "--http-port", "0",
                 "--grpc-port", "0"],
                env={"IDNODE_LOG_LEVEL": "WARNING", "IDNODE_HTTP_RATE_LIMIT": "1000000000",
                     "IDNODE_HTTP_RATE_BURST": "1000000000", **(env or {})},
                cpu=cpu, ready=r"READY http=(\d+) grpc=(\d+)")
    return proc, int(proc.match.group(1)), int(proc.match.group(2))


def wrk(url: str, *, seconds: int, connections: int = 64, cpu: str | None = "1",
        script: str | None = None) -> dict[str, float]:
    """Runs wrk (pinned to `cpu`) and returns req/s and latency percentiles in ms."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script:
        args[1:1] = ["-s", script]
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", cpu, *args]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)\b", out)
        if m:
            v = float(m.group(1))
            lat[f"p{pct}_ms"] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" \
                else v
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, **lat, "non_2xx": float(errors.group(1)) if errors else 0.0}


def save(name: str, result: dict[str, object]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(json.dumps(result, indent=2, ensure_ascii=False))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
