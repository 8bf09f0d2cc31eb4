"""Hot resolve over HTTP: this checkout against an earlier commit, in the same run (issue 3
asks that tenancy keep the public resolve path within 10% of its throughput before).

    .venv/bin/python bench/http_hot_vs_commit.py 1af032a [--quick]

Each side gets its own database migrated by its own code, the same record, and a node pinned
to core 0 under wrk -t1 -c64 on core 1; the runs alternate A, B, A, B, … and the medians are compared.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import asyncpg
from common import ROOT, Proc, postgres, save, wrk

from idnode.dsn import with_database

#: Alternating rounds per side; the machine is shared and noisy, so medians are compared.
ROUNDS = 5
ROW = json.dumps([{"index": 1, "type": "URL", "data": {"format": "string",
                                                       "value": "https://example.com/p/1"},
                   "ttl": 86400, "timestamp": "2026-11-24T00:00:00.000Z"}])


def node(src: Path, dsn: str) -> tuple[Proc, int]:
    data = Path(tempfile.mkdtemp(prefix="idnode-bench-data-"))
    env = {"PYTHONPATH": str(src), "IDNODE_LOG_LEVEL": "WARNING",
           "IDNODE_HTTP_RATE_LIMIT": "1000000000", "IDNODE_HTTP_RATE_BURST": "1000000000",
           "IDNODE_DATA_DIR": str(data)}
    proc = Proc([sys.executable, "-m", "idnode", "worker", "--dsn", dsn, "--http-port", "0",
                 "--grpc-port", "0", "--handle-port", "0"], env=env, cpu="0", ready=r"READY http=(\d+) grpc=(\d+)",
                cleanup=[data])
    return proc, int(proc.match.group(1))


async def make_db(server: str, name: str, src: Path) -> str:
    admin = await asyncpg.connect(server)
    await admin.execute(f"DROP DATABASE IF EXISTS {name}")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    dsn = with_database(server, name)
    subprocess.run([sys.executable, "-m", "idnode", "migrate"], check=True, cwd=src,
                   env={**os.environ, "PYTHONPATH": str(src), "IDNODE_DATABASE_URL": dsn,
                        "IDNODE_LOG_LEVEL": "WARNING"}, capture_output=True)
    conn = await asyncpg.connect(dsn)
    await conn.execute("INSERT INTO prefixes (prefix) VALUES ('0.118.8')")
    await conn.execute("INSERT INTO handles (prefix, suffix, vals) VALUES "
                       "('0.118.8', 'BENCH-1', $1::text::jsonb)", ROW)
    await conn.close()
    return dsn


def main() -> None:
    commit = sys.argv[1]
    seconds = 3 if "--quick" in sys.argv else 5
    old = Path(tempfile.mkdtemp(prefix="idnode-old-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), commit],
                   check=True, capture_output=True)
    try:
        with postgres(durable=False) as server:
            sides = {"before": (old, asyncio.run(make_db(server, "bench_before", old))),
                     "after": (ROOT, asyncio.run(make_db(server, "bench_after", ROOT)))}
            rps: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(ROUNDS):
                for name, (src, dsn) in sides.items():
                    proc, port = node(src, dsn)
                    try:
                        url = f"http://127.0.0.1:{port}/api/handles/0.118.8/BENCH-1"
                        urllib.request.urlopen(url).read()
                        wrk(url, seconds=1)
                        rps[name].append(wrk(url, seconds=seconds)["rps"])
                    finally:
                        proc.stop()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                       capture_output=True)
    before, after = statistics.median(rps["before"]), statistics.median(rps["after"])
    save("http_hot_vs_commit", {"commit": commit, "before_rps": [round(x) for x in rps["before"]],
                                "after_rps": [round(x) for x in rps["after"]],
                                "ratio_of_medians": round(after / before, 3),
                                "within_10_percent": after >= 0.9 * before})


if __name__ == "__main__":
    main()
