"""Multi-worker overhead (issue 16, target 6): the node's CPU per hot HTTP request (a cache
hit) under `idnode serve --workers 2` against `--workers 1`, in the same run.

Both run as `idnode serve` would in production (the supervisor, its workers sharing the
ports with SO_REUSEPORT and one PROMETHEUS_MULTIPROC_DIR, the host's shared cache counters),
pinned to core 0, so both have the same one core and the comparison is of CPU spent per
request, not of parallelism; wrk -t1 -c64 on core 1. Rounds alternate 1, 2, 1, 2, …; the
CPU per request (every process of the serve: the supervisor and its workers) and req/s are
medians. What more workers could cost per request: the multiprocess metrics, the shared
counters' reads, the invalidation fan-out (each worker listens), two event loops on one core.

    .venv/bin/python bench/workers.py [--quick]
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import (
    seed_record,
    PREFIX,
    Proc,
    bounded,
    cpu_seconds,
    mode,
    postgres,
    run,
    runqueue_seconds,
    save,
    table,
    verdict,
    wrk,
)

from idnode.embedded import free_port

TARGET = 1.10
SUFFIX = "BENCH-000001"
PATH = f"/api/handles/{PREFIX}/{SUFFIX}"


def serve(dsn: str, workers: int) -> tuple[Proc, int]:
    """`idnode serve --workers N` on core 0, once every worker is ready."""
    data = Path(tempfile.mkdtemp(prefix="idnode-bench-data-"))
    port = free_port()
    env = {"IDNODE_DATABASE_URL": dsn, "IDNODE_NODE_PREFIX": "0.118", "IDNODE_WORKERS":
           str(workers), "IDNODE_HTTP_PORT": str(port), "IDNODE_GRPC_PORT": str(free_port()),
           "IDNODE_HANDLE_ENABLED": "false", "IDNODE_METRICS_PORT": str(free_port()),
           "IDNODE_DATA_DIR": str(data), "IDNODE_LOG_LEVEL": "WARNING",
           "IDNODE_HTTP_RATE_LIMIT": "1000000000", "IDNODE_HTTP_RATE_BURST": "1000000000",
           "IDNODE_HTTP_CONNECTION_RATE": "0"}
    proc = Proc([sys.executable, "-m", "idnode", "serve"], env=env, cpu="0",
                ready=r"READY http=", cleanup=[data])
    assert proc.proc.stdout is not None
    ready = 1
    deadline = time.monotonic() + 60
    while ready < workers and time.monotonic() < deadline:
        line = proc.proc.stdout.readline()
        if re.search(r"READY http=", line):
            ready += 1
    if ready < workers:
        proc.stop()
        raise RuntimeError(f"only {ready} of {workers} workers became ready")
    return proc, port


def family(pid: int) -> list[int]:
    """The process and its children (a serve's workers)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return [pid, *map(int, kids)]


def measure(dsn: str, workers: int, seconds: int) -> dict[str, float]:
    proc, port = serve(dsn, workers)
    try:
        url = f"http://127.0.0.1:{port}{PATH}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
        wrk(url, seconds=1)  # every worker's cache filled by its first connections
        pids = family(proc.pid)
        assert len(pids) == (workers + 1 if workers > 1 else 1), pids
        cpu0 = sum(cpu_seconds(p) for p in pids)
        rq0 = sum(runqueue_seconds(p) for p in pids)
        t0 = time.monotonic()
        result = wrk(url, seconds=seconds)
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        waiting = (sum(runqueue_seconds(p) for p in pids) - rq0) / wall
        requests = result["rps"] * seconds
        return {"rps": result["rps"], "cpu_us_per_request": cpu / requests * 1e6,
                "busy": cpu / wall, "waiting_cpu": waiting, "p99_ms": result.get("p99_ms", 0.0),
                "non_2xx": result["non_2xx"]}
    finally:
        proc.stop()


def main() -> None:
    quick = mode() == "quick"
    rounds, seconds = (2, 4) if quick else (4, 8)
    bounded(120 + rounds * 2 * (seconds + 15))
    with postgres(durable=False) as dsn:
        run(seed_record(dsn, SUFFIX))
        runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
        for _ in range(rounds):
            for n in (1, 2):
                runs[n].append(measure(dsn, n, seconds))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    ratio = med[2]["cpu_us_per_request"] / med[1]["cpu_us_per_request"]
    table("hot HTTP, node CPU per request: serve --workers 2 vs 1 (one core, medians)", [
        ("workers=1: req/s, CPU µs/request", f"{med[1]['rps']:,.0f}, "
                                             f"{med[1]['cpu_us_per_request']:.2f}"),
        ("workers=2: req/s, CPU µs/request", f"{med[2]['rps']:,.0f}, "
                                             f"{med[2]['cpu_us_per_request']:.2f}"),
        ("waiting_cpu (1 / 2)", f"{med[1]['waiting_cpu']:.2f} / {med[2]['waiting_cpu']:.2f}"),
        ("CPU per request, 2 / 1", verdict(ratio, TARGET, lower_is_better=True)),
        ("non-2xx", int(sum(r["non_2xx"] for rs in runs.values() for r in rs))),
    ])
    save("workers", {"method": f"idnode serve --workers N on core 0, wrk -t1 -c64 -d{seconds}s on "
                               f"core 1, {rounds} alternating rounds, medians",
                     "workers_1": {k: round(v, 3) for k, v in med[1].items()},
                     "workers_2": {k: round(v, 3) for k, v in med[2].items()},
                     "rounds": {str(n): rs for n, rs in runs.items()},
                     "cpu_per_request_ratio": round(ratio, 3), "target": TARGET,
                     "meets_target": ratio <= TARGET})


if __name__ == "__main__":
    os.sched_setaffinity(0, {1})
    main()
