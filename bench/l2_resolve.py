"""The shared second cache tier (Redis): a resolve that misses the in-process cache but hits
Redis, against the same resolve going to PostgreSQL, and against an in-process hit, in one run.

In-process (no HTTP or gRPC in front): `Resolver.lookup` over three caches on one database of
20,000 records — an in-process cache of one entry with no second tier (every lookup reads the
database: the baseline), the same with the Redis tier warmed with every record (every lookup
is a Redis hit), and an in-process cache holding everything (every lookup an in-process hit).
Measured one lookup at a time (latency) and with 32 coroutines (throughput of one core),
on uvloop as the node runs.
A private redis-server (loopback, no persistence) and an embedded PostgreSQL (fsync off),
both on this machine: the round trips are loopback ones, a floor for a real network.

    .venv/bin/python bench/l2_resolve.py [--quick]
"""
from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import uvloop
from common import PREFIX, Proc, bounded, load_rows, mode, postgres, prepare, save, table

from idnode.cache import HotCache
from idnode.cache_redis import SharedTier
from idnode.config import Settings
from idnode.core.identifiers import Identifier
from idnode.embedded import free_port
from idnode.node import Core

ROWS = 20_000
ROUNDS = 5
CONCURRENCY = 32


async def latency_us(core: Core, idents: list[Identifier], n: int) -> float:
    lookup = core.resolver.lookup
    rounds = []
    for _ in range(ROUNDS):
        sample = random.choices(idents, k=n)
        started = time.perf_counter()
        for ident in sample:
            assert await lookup(ident) is not None
        rounds.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(rounds)


async def rate(core: Core, idents: list[Identifier], n: int) -> float:
    lookup = core.resolver.lookup

    async def worker(k: int) -> None:
        for ident in random.choices(idents, k=k):
            await lookup(ident)

    rounds = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await asyncio.gather(*(worker(n // CONCURRENCY) for _ in range(CONCURRENCY)))
        rounds.append(n / (time.perf_counter() - started))
    return statistics.median(rounds)


async def open_core(dsn: str, max_entries: int, l2: SharedTier | None = None) -> Core:
    cache = HotCache(max_entries=max_entries, ttl=300, negative_ttl=5)
    cache.l2 = l2
    core = await Core.open(Settings(signing_enabled=False, db_pool_max=16), dsn, cache)
    await cache.start(dsn)
    return core


async def measure(dsn: str, redis_url: str, quick: bool) -> dict[str, float]:
    await prepare(dsn)
    await load_rows(dsn, ROWS)
    idents = [Identifier(PREFIX, f"BENCH-{i:08d}") for i in range(ROWS)]
    n_lat, n_rate = (2_000, 8_000) if quick else (10_000, 40_000)
    tier = SharedTier(redis_url, namespace="bench", ttl=3600, timeout=1.0, retry=1.0)
    db_core = await open_core(dsn, 1)
    l2_core = await open_core(dsn, 1, tier)
    l1_core = await open_core(dsn, ROWS * 2)
    try:
        while not tier.usable:
            await asyncio.sleep(0.01)
        for ident in idents:  # warm: every record into Redis, and into the big in-process cache
            await l2_core.resolver.lookup(ident)
            await l1_core.resolver.lookup(ident)
        while tier.busy:
            await asyncio.sleep(0.01)
        assert tier.fills == ROWS, tier.fills
        hits, misses = tier.hits, tier.misses
        r: dict[str, float] = {}
        for name, core in (("db", db_core), ("l2", l2_core), ("l1", l1_core)):
            r[f"{name}_us"] = await latency_us(core, idents, n_lat)
            r[f"{name}_per_s"] = await rate(core, idents, n_rate)
        hits, misses = tier.hits - hits, tier.misses - misses
        r["l2_hit_share"] = hits / max(1, hits + misses)  # while measured: should be 1
        return r
    finally:
        for core in (db_core, l2_core, l1_core):
            await core.cache.stop()
            await core.db.close()


def main() -> None:
    bounded(600)
    quick = mode() == "quick"
    redis_bin = shutil.which("redis-server")
    if redis_bin is None:
        raise SystemExit("redis-server is missing: apt-get update && apt-get install -y "
                         "redis-server")
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-redis-"))
    port = free_port()
    redis = Proc([redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                  "--appendonly", "no", "--dir", str(tmp)],
                 ready=r"Ready to accept connections", cleanup=[tmp])
    try:
        with postgres(durable=False) as dsn:
            # uvloop, as the node runs (idnode.cli).
            r = uvloop.run(measure(dsn, f"redis://127.0.0.1:{port}/0", quick))
    finally:
        redis.stop()
    out: dict[str, object] = {k: round(v, 3) for k, v in r.items()}
    out.update({
        "l2_vs_db_latency": round(r["l2_us"] / r["db_us"], 3),
        "l2_vs_db_rate": round(r["l2_per_s"] / r["db_per_s"], 3),
        "l1_vs_l2_latency": round(r["l1_us"] / r["l2_us"], 4),
    })
    table(f"resolve, in-process cache miss: Redis hit vs database ({ROWS:,} records)", [
        ("database (baseline), µs per lookup", r["db_us"]),
        ("Redis hit, µs per lookup", r["l2_us"]),
        ("in-process hit, µs per lookup", r["l1_us"]),
        ("database, lookups/s (32 coroutines)", r["db_per_s"]),
        ("Redis hit, lookups/s (32 coroutines)", r["l2_per_s"]),
        ("in-process hit, lookups/s (32 coroutines)", r["l1_per_s"]),
        ("Redis hit / database, latency", f"{out['l2_vs_db_latency']}×"),
        ("Redis hit / database, rate", f"{out['l2_vs_db_rate']}×"),
        ("Redis hits among Redis lookups", f"{r['l2_hit_share']:.3f}"),
    ])
    save("l2_resolve", out)


if __name__ == "__main__":
    main()
