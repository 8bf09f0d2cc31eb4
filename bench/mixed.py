"""Mixed load (issue 16, target 4): hot and cold resolves over HTTP at half the node's read
capacity while 10,000-record batches are registered back to back over gRPC.

Baselines in the same run: the same paced reads with no writes (their p99), and the same
back-to-back registration with no reads (its rows/s). Targets: each read kind's p99 with the
writes ≤ 3× its p99 without; the write rate with the reads ≥ 0.8× without.

Set-up: embedded PostgreSQL, durable commit; 100,000 identifiers loaded (the cold set) and
one hot record; one `idnode worker` on core 0 (hot cache of 1,000 entries, so random reads
over the 100,000 miss: cold; the hot record stays cached), load on core 1. First each read
kind's peak alone (wrk -c64): hot P_h, cold P_c. "Half the read capacity": hot paced at
P_h / 4 and cold at P_c / 4 at the same time (each a quarter of what the node does of it
alone, together about half its reading capacity), by wrk's delay() with 8 threads as in
http_hot.py. Writes: one stream of RegisterBatch calls of 10,000 records (3 values each),
each sent when the previous answered, requests serialised before the clock starts.
Phases alternate reads-only / writes-only / both, `--rounds` times; medians.

`--split`: the node as `idnode serve --workers 2 --grpc-workers 1` instead, both processes
on core 0 (the same one core): one serves gRPC only, the other HTTP only (grpc_workers), so
the kernel, not the event loop, shares the core between a batch and the reads.

    .venv/bin/python bench/mixed.py [--quick] [--profile] [--split]
"""
from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import asyncpg
import grpc
from common import (
    PREFIX,
    Proc,
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
    value_json,
    verdict,
    wrk,
)
from http_hot import DELAY_MS, PACED_THREADS
from workers import family

from idnode.embedded import free_port

from idnode.v1 import registry_pb2 as pb

P99_TARGET = 3.0
WRITE_TARGET = 0.8
COLD_ROWS = 100_000
BATCH = 10_000
#: Rows a second the prepared batches allow for (more than the node registers here).
WRITE_CAPACITY = 50_000
HOT = f"/api/handles/{PREFIX}/BENCH-HOT"


def scripts() -> tuple[str, str, str]:
    """wrk Lua: random cold ids (unpaced, for the peak), and both paced."""
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    cold = (f"request = function()\n  return wrk.format(nil, string.format("
            f"'/api/handles/{PREFIX}/BENCH-%08d', math.random(0, {COLD_ROWS - 1})))\nend\n")
    delay = f"function delay()\n  return {DELAY_MS}\nend\n"
    (tmp / "cold.lua").write_text("math.randomseed(os.time())\n" + cold)
    (tmp / "cold_paced.lua").write_text("math.randomseed(os.time())\n" + cold + delay)
    (tmp / "hot_paced.lua").write_text(delay)
    return str(tmp / "cold.lua"), str(tmp / "cold_paced.lua"), str(tmp / "hot_paced.lua")


def connections_for(url: str, rate: float, script: str) -> int:
    """Paced connections giving about `rate` req/s (a 2 s probe, as http_hot.paced)."""
    conns = max(PACED_THREADS, round(rate * DELAY_MS / 1000))
    probe = wrk(url, seconds=2, connections=conns, script=script, threads=PACED_THREADS)
    return max(PACED_THREADS, min(1000, round(conns * rate / probe["rps"])))


def batches(count: int, start: int) -> list[bytes]:
    out = []
    for b in range(count):
        first = start + b * BATCH
        out.append(pb.RegisterBatchRequest(idempotency_key=f"mixed-{first}", records=[
            pb.RecordInput(identifier=f"{PREFIX}/MIX-{i:09d}", values=[
                pb.Value(index=1, type="product.name", data=f"五常大米 {i}"),
                pb.Value(index=2, type="batch.harvest_date", data="2026-09-28"),
                pb.Value(index=3, type="URL", data=f"https://example.com/p/{i:09d}")])
            for i in range(first, first + BATCH)]).SerializeToString())
    return out


async def register(port: int, key: str, seconds: float, todo: list[bytes]) -> dict[str, float]:
    """Back-to-back RegisterBatch calls for `seconds`: rows/s and call latencies."""
    metadata = (("authorization", f"Bearer {key}"),)
    done = 0
    took: list[float] = []
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary("/idnode.v1.Registry/RegisterBatch", request_serializer=None,
                              response_deserializer=pb.RegisterBatchResponse.FromString)
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            if not todo:
                # Running out would leave the reads alone for the rest of the phase.
                raise SystemExit("mixed.py: out of prepared batches; raise WRITE_CAPACITY")
            t = time.monotonic()
            resp = await call(todo.pop(), metadata=metadata, timeout=120)
            took.append(time.monotonic() - t)
            assert resp.registered == BATCH and not resp.replayed
            done += BATCH
        wall = time.monotonic() - started
    return {"rows_per_s": done / wall, "calls": len(took),
            "call_ms_median": statistics.median(took) * 1000 if took else 0.0}


def reads(hot_url: str, cold_url: str, plan: dict[str, int], scripts_: tuple[str, str, str],
          seconds: int) -> dict[str, dict[str, float]]:
    """Hot and cold paced wrk runs at once (two processes), for `seconds`."""
    out: dict[str, dict[str, float]] = {}

    def one(name: str, url: str, script: str) -> None:
        out[name] = wrk(url, seconds=seconds, connections=plan[name], script=script,
                        threads=PACED_THREADS)

    threads = [threading.Thread(target=one, args=("hot", hot_url, scripts_[2])),
               threading.Thread(target=one, args=("cold", cold_url, scripts_[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


async def seed(dsn: str) -> str:
    key = await prepare(dsn)
    await load_rows(dsn, COLD_ROWS)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO handles (prefix, suffix, vals) VALUES ($1, 'BENCH-HOT', "
                           "$2::text::jsonb)", PREFIX, value_json(0))
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return key


def start_split(dsn: str) -> tuple[Proc, int, int]:
    """`idnode serve --workers 2 --grpc-workers 1` on core 0, once both workers are ready."""
    data = Path(tempfile.mkdtemp(prefix="idnode-bench-data-"))
    http, grpc_port = free_port(), free_port()
    env = {"IDNODE_DATABASE_URL": dsn, "IDNODE_NODE_PREFIX": "0.118", "IDNODE_WORKERS": "2",
           "IDNODE_GRPC_WORKERS": "1", "IDNODE_HTTP_PORT": str(http),
           "IDNODE_GRPC_PORT": str(grpc_port), "IDNODE_HANDLE_ENABLED": "false",
           "IDNODE_METRICS_PORT": str(free_port()), "IDNODE_DATA_DIR": str(data),
           "IDNODE_LOG_LEVEL": "WARNING", "IDNODE_CACHE_MAX_ENTRIES": "1000",
           # As start_node: rate limits on (their cost counted) but out of reach.
           "IDNODE_HTTP_RATE_LIMIT": "1000000000", "IDNODE_HTTP_RATE_BURST": "1000000000",
           "IDNODE_GRPC_WRITE_RATE": "0", "IDNODE_GRPC_ADDRESS_WRITE_RATE": "0"}
    proc = Proc([sys.executable, "-m", "idnode", "serve"], env=env, cpu="0",
                ready=r"READY http=", cleanup=[data])
    assert proc.proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if re.search(r"READY http=", proc.proc.stdout.readline()):
            return proc, http, grpc_port
    proc.stop()
    raise RuntimeError("the second worker did not become ready")


def main() -> None:
    require_wrk()
    quick = mode() == "quick"
    seconds, rounds = (6, 2) if quick else (10, 3)
    bounded(300 + rounds * 3 * (seconds + 10))
    os.sched_setaffinity(0, {1})
    sc = scripts()
    with postgres(durable=True) as dsn:
        key = str(run(seed(dsn)))
        split = "--split" in sys.argv
        if split and "--profile" in sys.argv:
            raise SystemExit("mixed.py: --profile samples one process; not with --split")
        if split:
            node, http, grpc_port = start_split(dsn)
        else:
            node, http, grpc_port = start_node(dsn, env={"IDNODE_CACHE_MAX_ENTRIES": "1000"})
        pids = family(node.pid) if split else [node.pid]
        try:
            hot_url = f"http://127.0.0.1:{http}{HOT}"
            cold_url = f"http://127.0.0.1:{http}/"
            urllib.request.urlopen(hot_url, timeout=5).read()
            wrk(hot_url, seconds=1)
            peak_hot = wrk(hot_url, seconds=seconds)["rps"]
            wrk(cold_url, seconds=1, script=sc[0])
            peak_cold = wrk(cold_url, seconds=seconds, script=sc[0])["rps"]
            plan = {"hot": connections_for(hot_url, peak_hot / 4, sc[2]),
                    "cold": connections_for(cold_url, peak_cold / 4, sc[1])}
            todo = batches(rounds * 2 * seconds * WRITE_CAPACITY // BATCH + 8, 0)
            run(register(grpc_port, key, 1, todo))  # warm-up: one batch
            phases: dict[str, list[dict[str, object]]] = {"reads": [], "writes": [], "both": []}
            for r in range(rounds):
                phases["reads"].append(reads(hot_url, cold_url, plan, sc, seconds))
                with cpu_meter(pids) as cpu:
                    w = run(register(grpc_port, key, seconds, todo))
                phases["writes"].append({**w, "waiting_cpu": cpu["waiting_cpu"],  # type: ignore[dict-item]
                                         "busy": cpu["busy"]})
                result: dict[str, object] = {}
                with cpu_meter(pids) as cpu, profiled(node.pid, "mixed", seconds) \
                        if r == rounds - 1 else _nothing():
                    writer = threading.Thread(target=lambda: result.update(
                        writes=run(register(grpc_port, key, seconds, todo))))
                    writer.start()
                    result.update(reads(hot_url, cold_url, plan, sc, seconds))
                    writer.join()
                result["waiting_cpu"] = cpu["waiting_cpu"]
                result["busy"] = cpu["busy"]
                phases["both"].append(result)
        finally:
            node.stop()

    def med(phase: str, *path: str) -> float:
        vals = []
        for p in phases[phase]:
            v: object = p
            for k in path:
                v = v[k]  # type: ignore[index]
            vals.append(float(v))  # type: ignore[arg-type]
        return statistics.median(vals)

    hot_ratio = med("both", "hot", "p99_ms") / med("reads", "hot", "p99_ms")
    cold_ratio = med("both", "cold", "p99_ms") / med("reads", "cold", "p99_ms")
    write_ratio = med("both", "writes", "rows_per_s") / med("writes", "rows_per_s")
    table("mixed load: paced HTTP reads + back-to-back 10,000-record batches (medians)", [
        ("peak alone: hot / cold req/s", f"{peak_hot:,.0f} / {peak_cold:,.0f}"),
        ("paced: hot / cold req/s (reads only)",
         f"{med('reads', 'hot', 'rps'):,.0f} / {med('reads', 'cold', 'rps'):,.0f}"),
        ("hot p99 ms: reads only / with writes",
         f"{med('reads', 'hot', 'p99_ms'):.2f} / {med('both', 'hot', 'p99_ms'):.2f}"),
        ("cold p99 ms: reads only / with writes",
         f"{med('reads', 'cold', 'p99_ms'):.2f} / {med('both', 'cold', 'p99_ms'):.2f}"),
        ("writes rows/s: alone / with reads",
         f"{med('writes', 'rows_per_s'):,.0f} / {med('both', 'writes', 'rows_per_s'):,.0f}"),
        ("write call ms (median): alone / with reads",
         f"{med('writes', 'call_ms_median'):.0f} / {med('both', 'writes', 'call_ms_median'):.0f}"),
        ("hot p99 ratio", verdict(hot_ratio, P99_TARGET, lower_is_better=True)),
        ("cold p99 ratio", verdict(cold_ratio, P99_TARGET, lower_is_better=True)),
        ("write rate ratio", verdict(write_ratio, WRITE_TARGET)),
        ("node CPU busy: writes alone / both (1.0 = its core)",
         f"{med('writes', 'busy'):.2f} / {med('both', 'busy'):.2f}"),
        ("node waiting_cpu (both, median)", f"{med('both', 'waiting_cpu'):.2f}"),
    ])
    save("mixed", {"split": split, "method": __doc__.split("Set-up:")[1].strip() if __doc__ else "",
                   "seconds": seconds, "rounds": rounds, "peak_hot_rps": round(peak_hot),
                   "peak_cold_rps": round(peak_cold), "connections": plan, "phases": phases,
                   "hot_p99_ratio": round(hot_ratio, 3), "cold_p99_ratio": round(cold_ratio, 3),
                   "write_ratio": round(write_ratio, 3),
                   "meets": hot_ratio <= P99_TARGET and cold_ratio <= P99_TARGET
                   and write_ratio >= WRITE_TARGET},
         section=mode() + ("_split" if split else ""))


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    main()
