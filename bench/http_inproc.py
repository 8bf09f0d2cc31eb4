"""The hot HTTP path's Python work per request, in process: the node's own HttpProtocol (its
app, cache, limiter and metrics as `idnode worker` builds them) fed a request and writing to a
transport that keeps nothing, against the bare httptools protocol of bench/baseline_http.py fed
the same bytes, in the same process, rounds alternating. No sockets: what it measures is the
CPU the node spends in Python per cache hit beyond parsing and writing, the part a profile can
attribute exactly (bench/http_hot.py measures the whole, kernel included).

    .venv/bin/python bench/http_inproc.py [--quick] [--profile]
"""
from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httptools
from common import PREFIX, bounded, mode, postgres, prepare, save, table, value_json

from idnode.config import Settings
from idnode.node import Node

SUFFIX = "BENCH-000001"
REQUEST = (f"GET /api/handles/{PREFIX}/{SUFFIX} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
           "User-Agent: scanner/1.0\r\nAccept: */*\r\n\r\n").encode()


class NullTransport:
    """Counts what is written; everything a transport is asked on the hot path."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool:
        return False


class Bare(asyncio.Protocol):
    """bench/baseline_http.py's protocol."""

    RESPONSE = b""

    def __init__(self, transport: NullTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(self.RESPONSE)


def per_request(proto: asyncio.Protocol, n: int) -> float:
    feed = proto.data_received
    req = REQUEST
    t0 = time.perf_counter()
    for _ in range(n):
        feed(req)
    return (time.perf_counter() - t0) / n * 1e6


async def measure(dsn: str) -> dict[str, object]:
    await prepare(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO handles (prefix, suffix, vals) VALUES ($1, $2, "
                           "$3::text::jsonb) ON CONFLICT DO NOTHING", PREFIX, SUFFIX, value_json(1))
    finally:
        await conn.close()
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"idnode-bench-inproc-{os.getpid()}"
    settings = Settings(http_port=0, grpc_port=0, handle_port=0, metrics_port=0,
                        http_rate_limit=1e9, http_rate_burst=1e9, data_dir=str(data),
                        log_level="WARNING")
    node = Node(settings, dsn)
    await node.start()
    try:
        from idnode.api.http.server import HttpProtocol
        server = node._http  # noqa: SLF001 - the bench drives the node's own protocol
        assert server is not None
        node_t = NullTransport()
        proto = HttpProtocol(server)
        proto.connection_made(node_t)  # type: ignore[arg-type]
        proto.data_received(REQUEST)  # fills the cache (a task: wait for it)
        for _ in range(200):
            await asyncio.sleep(0.005)
            if not proto.busy:
                break
        before = node_t.bytes
        proto.data_received(REQUEST)
        size = node_t.bytes - before
        assert size > 0 and not proto.busy, "the second request was not answered from the cache"
        Bare.RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" \
            b"Content-Length: 300\r\n\r\n" + b" " * 300
        bare = Bare(NullTransport())
        n = 50_000 if mode() == "quick" else 200_000
        rounds = 5 if mode() == "quick" else 11
        gc.freeze()
        hits0 = node.cache.hits
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(rounds):
            theirs.append(per_request(bare, n))
            ours.append(per_request(proto, n))
        hits = node.cache.hits - hits0
        if "--profile" in sys.argv:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            prof.enable()
            per_request(proto, n)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return {"node_us": statistics.median(ours), "bare_us": statistics.median(theirs),
                "node_best_us": min(ours), "bare_best_us": min(theirs),
                "answer_bytes": size, "hits": hits, "requests": n * rounds}
    finally:
        await node.stop(0.5)
        import shutil
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    bounded(300)
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:  # type: ignore[operator]
        os.sched_setaffinity(0, {0})
    import uvloop
    with postgres(durable=False) as dsn:
        r = uvloop.run(measure(dsn))
    ratio = r["bare_us"] / r["node_us"]  # type: ignore[operator]
    table("hot HTTP path in process (µs of CPU per request, median of rounds)", [
        ("bare httptools protocol", r["bare_us"]),
        ("idnode HttpProtocol, cache hit", r["node_us"]),
        ("node extra per request (µs)", r["node_us"] - r["bare_us"]),  # type: ignore[operator]
        ("bare / idnode", ratio),
        ("answer bytes", r["answer_bytes"]),
        ("cache hits / requests", f"{r['hits']} / {r['requests']}"),
    ])
    save("http_inproc", {**r, "ratio": round(ratio, 3)})


if __name__ == "__main__":
    main()
