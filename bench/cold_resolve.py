"""Cold resolve (cache off) through gRPC ResolveBatch and HTTP, against raw asyncpg prepared
primary-key lookups from one process on the same table; `--scale` compares 10 million stored
identifiers with 100 thousand.

    .venv/bin/python bench/cold_resolve.py [--quick] [--scale]
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
from common import PREFIX, load_rows, postgres, prepare, run, save, start_node, wrk

from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc

TARGET = 0.5
SCALE_TARGET = 0.8


async def _noop_reset(conn: asyncpg.Connection) -> None:
    return None


async def raw_lookups(dsn: str, n_rows: int, seconds: float, concurrency: int = 64) -> float:
    """Point lookups per second: prepared statement, pool without reset, `concurrency` loops."""
    pool = await asyncpg.create_pool(dsn, min_size=8, max_size=8, reset=_noop_reset)
    assert pool is not None
    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            async with pool.acquire() as conn:
                stmt = await conn.prepare(
                    "SELECT vals, version, created_at, updated_at FROM handles "
                    "WHERE prefix = $1 AND suffix = $2")
                for _ in range(50):
                    await stmt.fetchrow(PREFIX, f"BENCH-{random.randrange(n_rows):08d}")
                    done += 1

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await pool.close()
    return done / elapsed


async def grpc_batches(port: int, n_rows: int, seconds: float, concurrency: int = 4,
                       batch: int = 1000) -> float:
    """Identifiers resolved per second through ResolveBatch."""
    done = 0
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                ids = [f"{PREFIX}/BENCH-{random.randrange(n_rows):08d}" for _ in range(batch)]
                resp = await stub.ResolveBatch(pb.ResolveBatchRequest(identifiers=ids))
                assert all(r.found for r in resp.results)
                done += batch

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def random_ids_script(n_rows: int) -> str:
    path = Path(tempfile.mkstemp(suffix=".lua")[1])
    path.write_text(
        "math.randomseed(os.time())\n"
        "request = function()\n"
        f"  return wrk.format(nil, string.format('/api/handles/{PREFIX}/BENCH-%08d', "
        f"math.random(0, {n_rows - 1})))\n"
        "end\n")
    return str(path)


def measure(dsn: str, n_rows: int, seconds: float) -> dict[str, float]:
    os.sched_setaffinity(0, {1})  # the client side runs on core 1, the node on core 0
    raw = float(run(raw_lookups(dsn, n_rows, seconds)))  # type: ignore[arg-type]
    node, http, grpc_port = start_node(dsn, env={"IDNODE_CACHE_ENABLED": "false",
                                                 "IDNODE_DB_POOL_MAX": "16"})
    try:
        run(grpc_batches(grpc_port, n_rows, 1))
        via_grpc = float(run(grpc_batches(grpc_port, n_rows, seconds)))  # type: ignore[arg-type]
        via_http = wrk(f"http://127.0.0.1:{http}/", seconds=int(seconds),
                       script=random_ids_script(n_rows))
    finally:
        node.stop()
    return {"raw_asyncpg_lookups_per_s": raw, "grpc_batch_ids_per_s": via_grpc,
            "http_cold_rps": via_http["rps"], "http_non_2xx": via_http["non_2xx"]}


def main() -> None:
    quick = "--quick" in sys.argv
    seconds = 4.0 if quick else 10.0
    small = 100_000
    with postgres(durable=False) as dsn:
        run(prepare(dsn))
        run(load_rows(dsn, small))
        m = measure(dsn, small, seconds)
        result: dict[str, object] = {
            "rows": small, **{k: round(v) for k, v in m.items()},
            "grpc_batch_ratio": round(m["grpc_batch_ids_per_s"] / m["raw_asyncpg_lookups_per_s"], 3),
            "http_ratio": round(m["http_cold_rps"] / m["raw_asyncpg_lookups_per_s"], 3),
            "target_ratio": TARGET,
        }
        result["meets_target"] = max(result["grpc_batch_ratio"], result["http_ratio"]) >= TARGET  # type: ignore[type-var]
        if "--scale" in sys.argv:
            big = 10_000_000
            started = time.monotonic()
            run(load_rows(dsn, big - small, start=small))
            result["load_10m_seconds"] = round(time.monotonic() - started)
            m10 = measure(dsn, big, seconds)
            result["rows_scale"] = big
            result["scale"] = {k: round(v) for k, v in m10.items()}
            result["scale_ratio_grpc"] = round(
                m10["grpc_batch_ids_per_s"] / m["grpc_batch_ids_per_s"], 3)
            result["scale_ratio_http"] = round(m10["http_cold_rps"] / m["http_cold_rps"], 3)
            result["scale_target"] = SCALE_TARGET
        save("cold_resolve" + ("_scale" if "--scale" in sys.argv else ""), result)


if __name__ == "__main__":
    main()
