"""Cold resolve (cache off: IDNODE_CACHE_ENABLED=false) through gRPC ResolveBatch (1,000 ids a
call) and through HTTP (wrk, a Lua script asking for random ids), against raw asyncpg prepared
primary-key lookups from one process on the same table: 64 coroutines over a pool the size of
the node's (16), created with a no-op `reset` (asyncpg's default reset query on every release
halves the rate). The baseline the targets use is the stronger of two shapes: each coroutine
holding a connection for 50 lookups through a prepared statement ("held"); each lookup one
`pool.fetchrow`, acquire and release every time, as the node does it ("per-lookup", shown for
reference).

Data: 100,000 identifiers loaded with copy_records_to_table. `--scale` then loads up to 10
million (COPY in chunks, ~3 GB on disk; refused without 12 GB free) and compares the rates.

    .venv/bin/python bench/cold_resolve.py [--quick] [--scale] [--profile]

--profile samples the node with py-spy during the measured runs (bench/out/*.collapsed).
"""
from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
from common import (
    PREFIX,
    bounded,
    cpu_meter,
    load_rows,
    mode,
    postgres,
    prepare,
    profiled,
    require_wrk,
    run,
    save,
    start_node,
    table,
    verdict,
    wrk,
)

from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc

TARGET = 0.5
SCALE_TARGET = 0.8
SMALL = 100_000
BIG = 10_000_000
POOL = 16  # the node runs with IDNODE_DB_POOL_MAX=16 here
SQL = ("SELECT vals, version, created_at, updated_at FROM handles "
       "WHERE prefix = $1 AND suffix = $2")


async def _noop_reset(conn: asyncpg.Connection) -> None:
    return None


async def raw_lookups(dsn: str, n_rows: int, seconds: float, *, hold: bool,
                      concurrency: int = 64) -> float:
    """Point lookups a second from `concurrency` coroutines over a pool without reset: with
    `hold`, 50 lookups per acquired connection through a prepared statement; without, one
    pool.fetchrow per lookup (asyncpg's statement cache prepares it)."""
    pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL, reset=_noop_reset)
    assert pool is not None
    try:
        done = 0
        deadline = time.monotonic() + seconds

        async def loop() -> None:
            nonlocal done
            rand = random.randrange
            while time.monotonic() < deadline:
                if hold:
                    async with pool.acquire() as conn:
                        stmt = await conn.prepare(SQL)
                        for _ in range(50):
                            row = await stmt.fetchrow(PREFIX, f"BENCH-{rand(n_rows):08d}")
                            assert row is not None
                        done += 50
                else:
                    row = await pool.fetchrow(SQL, PREFIX, f"BENCH-{rand(n_rows):08d}")
                    assert row is not None
                    done += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - started)
    finally:
        await pool.close()


async def grpc_batches(port: int, n_rows: int, seconds: float, concurrency: int = 4,
                       batch: int = 1000) -> float:
    """Identifiers resolved a second through ResolveBatch (4 calls in flight)."""
    done = 0
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                ids = [f"{PREFIX}/BENCH-{random.randrange(n_rows):08d}" for _ in range(batch)]
                resp = await stub.ResolveBatch(pb.ResolveBatchRequest(identifiers=ids),
                                               timeout=60)
                assert all(r.found for r in resp.results)
                done += batch

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def random_ids_script(n_rows: int) -> str:
    path = Path(tempfile.mkstemp(prefix="idnode-bench-", suffix=".lua")[1])
    path.write_text(
        "math.randomseed(os.time())\n"
        "request = function()\n"
        f"  return wrk.format(nil, string.format('/api/handles/{PREFIX}/BENCH-%08d', "
        f"math.random(0, {n_rows - 1})))\n"
        "end\n")
    return str(path)


def measure(dsn: str, n_rows: int, seconds: float) -> dict[str, float]:
    # The client side (this process, wrk) on core 1, the node on core 0; PostgreSQL floats.
    os.sched_setaffinity(0, {1})
    run(raw_lookups(dsn, n_rows, 1, hold=True))
    raw = float(run(raw_lookups(dsn, n_rows, seconds, hold=True)))  # type: ignore[arg-type]
    per = float(run(raw_lookups(dsn, n_rows, seconds, hold=False)))  # type: ignore[arg-type]
    node, http, grpc_port = start_node(dsn, env={"IDNODE_CACHE_ENABLED": "false",
                                                 "IDNODE_DB_POOL_MAX": str(POOL)})
    script = random_ids_script(n_rows)
    try:
        run(grpc_batches(grpc_port, n_rows, 1))
        with profiled(node.pid, "cold_resolve_grpc", seconds), cpu_meter(node.pid) as cpu_g:
            via_grpc = float(run(grpc_batches(grpc_port, n_rows, seconds)))  # type: ignore[arg-type]
        wrk(f"http://127.0.0.1:{http}/", seconds=1, script=script)
        with profiled(node.pid, "cold_resolve_http", seconds), cpu_meter(node.pid) as cpu_h:
            via_http = wrk(f"http://127.0.0.1:{http}/", seconds=int(seconds), script=script)
        node.stop()
        # Diagnostic: the record cache on but one entry big, so records still miss while the
        # invalidation listener is up, which lets the prefix table stay in memory (with the
        # cache off, every lookup also queries `prefixes`).
        node, http, grpc_port = start_node(dsn, env={"IDNODE_CACHE_MAX_ENTRIES": "1",
                                                     "IDNODE_DB_POOL_MAX": str(POOL)})
        wrk(f"http://127.0.0.1:{http}/", seconds=1, script=script)
        with cpu_meter(node.pid) as cpu_1:
            via_http_1 = wrk(f"http://127.0.0.1:{http}/", seconds=int(seconds), script=script)
    finally:
        node.stop()
        Path(script).unlink(missing_ok=True)
    return {"http_cache1_ids_per_s": via_http_1["rps"],
            "node_cpu_us_per_id_http_cache1": cpu_1["busy"] / via_http_1["rps"] * 1e6,
            "raw_asyncpg_lookups_per_s": max(raw, per), "raw_held_lookups_per_s": raw,
            "raw_per_lookup_acquire_per_s": per, "grpc_batch_ids_per_s": via_grpc,
            "http_ids_per_s": via_http["rps"], "http_p99_ms": via_http.get("p99_ms", -1),
            "node_cpu_busy_grpc": cpu_g["busy"], "node_cpu_busy_http": cpu_h["busy"],
            "node_waiting_cpu_grpc": cpu_g["waiting_cpu"], "node_waiting_cpu_http": cpu_h["waiting_cpu"],
            "node_cpu_us_per_id_grpc": cpu_g["busy"] / via_grpc * 1e6,
            "node_cpu_us_per_id_http": cpu_h["busy"] / via_http["rps"] * 1e6,
            "http_non_2xx": via_http["non_2xx"]}


def report(title: str, m: dict[str, float]) -> dict[str, object]:
    raw = m["raw_asyncpg_lookups_per_s"]
    g, h = m["grpc_batch_ids_per_s"] / raw, m["http_ids_per_s"] / raw
    table(title, [
        ("raw asyncpg PK lookups/s, held conn (baseline)", m["raw_held_lookups_per_s"]),
        ("raw asyncpg PK lookups/s, acquire per lookup", m["raw_per_lookup_acquire_per_s"]),
        ("gRPC ResolveBatch ids/s", m["grpc_batch_ids_per_s"]),
        ("HTTP ids/s (one a request)", m["http_ids_per_s"]),
        ("gRPC batch / raw", verdict(g, TARGET)),
        ("HTTP / raw", verdict(h, TARGET)),
        ("node CPU busy gRPC / HTTP (1.0 = a core)",
         f"{m['node_cpu_busy_grpc']:.2f} / {m['node_cpu_busy_http']:.2f}"),
        ("node runnable, not running gRPC / HTTP",
         f"{m['node_waiting_cpu_grpc']:.2f} / {m['node_waiting_cpu_http']:.2f}"),
        ("node CPU µs per id gRPC / HTTP",
         f"{m['node_cpu_us_per_id_grpc']:.1f} / {m['node_cpu_us_per_id_http']:.1f}"),
        ("diagnostic: HTTP ids/s, cache of 1 entry (prefixes in memory)",
         m["http_cache1_ids_per_s"]),
        ("  its node CPU µs per id", f"{m['node_cpu_us_per_id_http_cache1']:.1f}"),
        ("HTTP / raw acquire-per-lookup (reference)",
         f"{m['http_ids_per_s'] / m['raw_per_lookup_acquire_per_s']:.3f}"),
    ])
    return {**{k: round(v) if k.endswith("_per_s") else round(v, 2) for k, v in m.items()},
            "grpc_batch_ratio": round(g, 3), "http_ratio": round(h, 3), "target_ratio": TARGET,
            "meets_target_grpc": g >= TARGET, "meets_target_http": h >= TARGET}


def main() -> None:
    require_wrk()
    scale = "--scale" in sys.argv
    quick = mode() == "quick"
    seconds = 4.0 if quick else 10.0
    if scale:
        free = shutil.disk_usage(tempfile.gettempdir()).free
        if free < 12 << 30 and not os.environ.get("IDNODE_BENCH_DSN"):
            raise SystemExit(f"--scale needs ~3 GB of data plus WAL: only {free >> 30} GB "
                             f"free in {tempfile.gettempdir()}")
        bounded(1500)
    else:
        bounded(200)
    with postgres(durable=False) as dsn:
        run(prepare(dsn))
        run(load_rows(dsn, SMALL))
        m = measure(dsn, SMALL, seconds)
        small = report(f"cold resolve, {SMALL:,} rows, cache off", m)
        if not scale:
            save("cold_resolve", {"rows": SMALL, **small})
            return
        started = time.monotonic()
        run(load_rows(dsn, BIG - SMALL, start=SMALL))
        load_s = time.monotonic() - started
        m10 = measure(dsn, BIG, seconds)
        big = report(f"cold resolve, {BIG:,} rows, cache off", m10)
    g = m10["grpc_batch_ids_per_s"] / m["grpc_batch_ids_per_s"]
    h = m10["http_ids_per_s"] / m["http_ids_per_s"]
    r = m10["raw_asyncpg_lookups_per_s"] / m["raw_asyncpg_lookups_per_s"]
    table("10M vs 100k", [("gRPC batch", verdict(g, SCALE_TARGET)),
                          ("HTTP", verdict(h, SCALE_TARGET)), ("raw baseline", f"{r:.3f}"),
                          ("load 9.9M rows (s)", load_s)])
    save("cold_resolve", {"rows_small": SMALL, "rows_big": BIG, "seconds_per_run": seconds,
                          "small": small, "big": big, "load_seconds": round(load_s),
                          "scale_ratio_grpc": round(g, 3), "scale_ratio_http": round(h, 3),
                          "scale_ratio_raw": round(r, 3), "scale_target": SCALE_TARGET,
                          "meets_scale_target": min(g, h) >= SCALE_TARGET},
         section="scale" + ("_quick" if quick else ""))


if __name__ == "__main__":
    main()
