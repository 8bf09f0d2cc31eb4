"""The in-process cache path per lookup (a hit): our synchronous hot path against a plain dict,
aiocache's SimpleMemoryCache (default 5 s operation timeout, and timeout=None), and our
BoundedMemoryCache through aiocache's async `get`. No servers, no database.

    .venv/bin/python bench/cache_hit.py [--quick]
"""
from __future__ import annotations

import asyncio
import statistics
import time

from aiocache import SimpleMemoryCache
from common import bounded, mode, save, table, verdict

from idnode.cache import BoundedMemoryCache, HotCache

KEY = "0.118.8/BENCH-000001"
TARGET_US = 3.0
#: Repetitions; the median is kept (the machine is shared).
ROUNDS = 5


def sync_us(fn: object, n: int) -> float:
    best = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            fn(KEY)  # type: ignore[operator]
        best.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(best)


async def async_us(cache: object, n: int) -> float:
    get = cache.get  # type: ignore[attr-defined]
    best = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(n):
            await get(KEY)
        best.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(best)


def main() -> None:
    bounded(120)
    quick = mode() == "quick"
    n, m = (200_000, 40_000) if quick else (1_000_000, 200_000)
    value = object()
    plain = {KEY: value}
    hot = HotCache(max_entries=100_000, ttl=300, negative_ttl=5)
    hot.coherent = True  # as when the invalidation listener is up
    hot.fill(KEY, value, hot.ticket(KEY))
    assert hot.get(KEY) is value
    bounded_cache = BoundedMemoryCache(max_entries=100_000)
    bounded_cache.put(KEY, value, 300)
    r: dict[str, float] = {
        "dict_get_us": sync_us(plain.get, n),
        "hotcache_get_us": sync_us(hot.get, n),
        "bounded_peek_us": sync_us(bounded_cache.peek, n),
    }

    async def aio() -> None:
        default = SimpleMemoryCache()  # timeout=5: asyncio.wait_for around every call
        await default.set(KEY, value)
        r["aiocache_simple_default_timeout_us"] = await async_us(default, m)
        untimed = SimpleMemoryCache(timeout=None)
        await untimed.set(KEY, value)
        r["aiocache_simple_no_timeout_us"] = await async_us(untimed, m)
        r["bounded_via_aiocache_get_us"] = await async_us(bounded_cache, m)

    asyncio.run(aio())
    ours = r["hotcache_get_us"]
    out: dict[str, object] = {k: round(v, 3) for k, v in r.items()}
    out.update({
        "hotcache_vs_dict": round(ours / r["dict_get_us"], 2),
        "hotcache_vs_aiocache_default": round(ours / r["aiocache_simple_default_timeout_us"], 3),
        "target_us": TARGET_US, "meets_target": ours < TARGET_US,
    })
    table("cache hit, µs per lookup (median of 5 rounds)", [
        ("dict.get (baseline)", r["dict_get_us"]),
        ("HotCache.get (resolver's path)", ours),
        ("BoundedMemoryCache.peek", r["bounded_peek_us"]),
        ("aiocache SimpleMemoryCache.get, timeout=5", r["aiocache_simple_default_timeout_us"]),
        ("aiocache SimpleMemoryCache.get, timeout=None", r["aiocache_simple_no_timeout_us"]),
        ("BoundedMemoryCache via aiocache async get", r["bounded_via_aiocache_get_us"]),
        ("HotCache.get / dict.get", f"{ours / r['dict_get_us']:.1f}×"),
        ("verdict", verdict(ours, TARGET_US, lower_is_better=True) + " µs"),
    ])
    save("cache_hit", out)


if __name__ == "__main__":
    main()
