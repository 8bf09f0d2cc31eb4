"""The in-process cache path per lookup, against a plain dict and aiocache's memory cache.

    .venv/bin/python bench/cache_hit.py
"""
from __future__ import annotations

import asyncio
import time

from aiocache import SimpleMemoryCache
from common import save

from idnode.cache import BoundedMemoryCache, HotCache

KEY = "88.118.8/BENCH-00000001"
TARGET_US = 3.0


def per_call_us(fn: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn(KEY)  # type: ignore[operator]
    return (time.perf_counter() - started) / n * 1e6


async def async_per_call_us(cache: object, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await cache.get(KEY)  # type: ignore[attr-defined]
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    n = 1_000_000
    hot = HotCache(max_entries=100_000, ttl=300, negative_ttl=5)
    hot.coherent = True
    hot.fill(KEY, object(), hot.ticket(KEY))
    plain = {KEY: object()}
    results = {
        "dict_get_us": per_call_us(plain.get, n),
        "idnode_hotcache_get_us": per_call_us(hot.get, n),
    }

    async def aio() -> None:
        m = 200_000
        default = SimpleMemoryCache()
        await default.set(KEY, 1)
        results["aiocache_simple_default_timeout_us"] = await async_per_call_us(default, m)
        untimed = SimpleMemoryCache(timeout=None)
        await untimed.set(KEY, 1)
        results["aiocache_simple_no_timeout_us"] = await async_per_call_us(untimed, m)
        bounded = BoundedMemoryCache(max_entries=100_000)
        await bounded.set(KEY, 1, ttl=300)
        results["idnode_bounded_via_aiocache_api_us"] = await async_per_call_us(bounded, m)

    asyncio.run(aio())
    out: dict[str, object] = {k: round(v, 3) for k, v in results.items()}
    out["ratio_vs_dict"] = round(results["idnode_hotcache_get_us"] / results["dict_get_us"], 2)
    out["ratio_vs_aiocache_default"] = round(
        results["idnode_hotcache_get_us"] / results["aiocache_simple_default_timeout_us"], 3)
    out["target_us"] = TARGET_US
    out["meets_target"] = results["idnode_hotcache_get_us"] < TARGET_US
    save("cache_hit", out)


if __name__ == "__main__":
    main()
