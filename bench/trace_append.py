"""The traceability log through the real node: event append throughput (gRPC
`Trace/AppendEvents`, durable commit, signing on) and proof cost (HTTP `/api/log/inclusion`
and `/api/trace/{identifier}`) as the log grows from 1,000 to 100,000 (`--quick`) or
1,000,000 events (full). The cost of a proof must grow as O(log n).

    .venv/bin/python bench/trace_append.py [--quick] [--profile]

--profile samples the node with py-spy during the last append window (bench/out/*.collapsed)
and prints what the node's PostgreSQL backends wait on.

Baselines, measured in the same run:

- appends: raw asyncpg `copy_records_to_table` of the same event rows (same columns, same
  table definition: a second database in the same server migrated with the node's own
  migrations, so the same primary key, identifier index, foreign key and append-only trigger)
  in transactions of the same size from the same number of streams, topped up to the node's
  log size before each window. It stores the rows only: no order checks, leaf hashes, tree
  nodes (`trace_nodes`), log-size lock, audit or NOTIFY, which is what the node adds.
- proofs: `GET /healthz` on the same connection (the fixed cost of one HTTP request), and
  the cost at the smallest size (ratios against it, compared with log2(n) / log2(n0)).

The log is grown between measurements through the node itself (AppendEvents, 1,000 events a
call: 100 identifiers × their 10-step lifecycle), so every leaf hash and tree node is real.
At each size: proofs first (the log is at exactly that size), then the append windows (cut
short where they would pass the next size). At the end: inclusion proofs against every size
measured (`size=S`, the API's proofs against an earlier head) in alternating rounds, so the
sizes are compared under the same load, and one more append window with 10 events for each
of 10 identifiers a call instead of 1 for each of 100 (what the per-identifier work costs).
Verdict: O(log n) is MET when, from the smallest to the largest size, stored nodes read,
proof hashes and the node's CPU per proof grow by at most 1.5× what log2(n) grows by.
"""
from __future__ import annotations

import asyncio
import hashlib
import http.client
import itertools
import math
import os
import random
import statistics
import sys
import time
from collections import deque
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import orjson
from common import (
    PREFIX,
    bounded,
    cpu_meter,
    load_rows,
    mode,
    pg_waits,
    postmaster_of,
    postgres,
    prepare,
    profiled,
    run,
    runqueue_seconds,
    save,
    server_cpu,
    start_node,
    table,
)
from google.protobuf.timestamp_pb2 import Timestamp

from idnode.crypto import mlog
from idnode.dsn import with_database
from idnode.store import migrations
from idnode.v1 import trace_pb2 as tpb

QUICK = mode() == "quick"
#: Events per AppendEvents call in the measured windows, and calls in flight.
BATCH = 100
CONCURRENCY = 4
#: Identifiers the measured appends go to (one event per identifier per call: a packing or
#: shipping station reporting the units it handled), split between the streams.
MEASURE_IDS = 4000
#: Identifiers with a fixed 10-event trace, appended first, whose traces are fetched.
PROBES = 20
#: Growth: 1,000 events a call, 10 per identifier (a whole lifecycle in one report).
GROW_BATCH, GROW_PER_ID = 1000, 10
SIZES = (1_000, 10_000, 100_000) if QUICK else (1_000, 10_000, 100_000, 1_000_000)
WINDOW = 3.0 if QUICK else 6.0          # seconds per append window
ROUNDS = 2 if QUICK else 3              # append windows per size (raw and node alternate)
PROOF_ROUNDS = 3 if QUICK else 5        # proof measurement rounds per size (gives a range)
INCLUSIONS = 200 if QUICK else 400      # inclusion requests per round
TRACES = 40 if QUICK else 100           # trace requests per round
HEALTHZ = 200 if QUICK else 400
INTERLEAVED_ROUNDS = 4 if QUICK else 6  # rounds of the end-of-run interleaved inclusion proofs
BOUND = 170 if QUICK else 590
T0 = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
STEP_S = 600                            # 10 minutes between an identifier's events
ACTOR = "bench-raw"


def _lifecycle(j: int, step: int) -> tuple[str, str, dict[str, Any]]:
    """(kind, place, attrs) of an identifier's `step`-th event: a rice lot's life, then
    storage, transport and retail events, all valid against idnode/templates/events.json."""
    field = f"五常市民乐乡 F-{j % 500:04d}"
    k = step % 12
    if k == 0:
        return "planting", "黑龙江省五常市", {"crop": "水稻", "variety": "稻花香2号",
                                             "field": field, "area_mu": 12.5 + j % 7,
                                             "seed_lot": f"SL-2026-{j % 97:04d}"}
    if k == 1:
        return "fertilising", "黑龙江省五常市", {"product": "有机肥", "kg_per_mu": 40 + j % 5,
                                                 "organic": True}
    if k == 2:
        return "irrigation", "黑龙江省五常市", {"water_source": "拉林河", "volume_m3": 300 + step}
    if k == 3:
        return "pesticide", "黑龙江省五常市", {"product": "吡虫啉", "active_ingredient": "imidacloprid",
                                               "dose_ml_per_mu": 20, "safety_interval_days": 21}
    if k == 4:
        return "harvest", "黑龙江省五常市", {"quantity_kg": 6000 + j % 400, "moisture": 14.5,
                                             "field": field}
    if k == 5:
        return "inspection", "哈尔滨市", {"lab": "黑龙江省农产品质量检测中心", "standard": "GB 2762-2022",
                                          "result": "pass", "items": {"cadmium_mg_kg": 0.02,
                                                                      "lead_mg_kg": 0.01},
                                          "report_no": f"HLJ-QC-{j:08d}-{step}"}
    if k == 6:
        return "processing", "黑龙江省五常市", {"step": "脱壳抛光", "facility": "五常米业一号车间",
                                                "yield_kg": 4300 + j % 300}
    if k == 7:
        return "packing", "黑龙江省五常市", {"package": "5kg 真空袋", "net_weight_g": 5000, "units": 1}
    if k == 8:
        return "warehousing", "哈尔滨市", {"warehouse": "哈尔滨冷库 3号", "temperature_c": 12,
                                            "humidity": 55}
    if k == 9:
        return "transport", "哈尔滨市", {"carrier": "顺丰冷运", "vehicle": f"黑A·{10000 + j % 90000}",
                                          "from": "哈尔滨", "to": "上海", "temperature_c": 10}
    if k == 10:
        return "retail", "上海市徐汇区", {"store": "盒马 徐汇店", "price_cny": 89.9}
    return "note", "上海市徐汇区", {"text": f"抽检复核 {step}"}


class Ids:
    """A set of identifiers and where each is in its lifecycle: events come out in time order
    per identifier (the node refuses older events than an identifier's last)."""

    def __init__(self, first: int, count: int) -> None:
        self.nums = list(range(first, first + count))
        self.step = [0] * count
        self.cursor = 0

    def take(self, n: int, per_id: int) -> list[tuple[str, int, str, int, str, str]]:
        """n events (identifier, j, kind, occurred_at seconds, place, attrs JSON), per_id
        consecutive events for each identifier in turn."""
        out: list[tuple[str, int, str, int, str, str]] = []
        while len(out) < n:
            j = self.cursor
            self.cursor = (self.cursor + 1) % len(self.nums)
            num = self.nums[j]
            for _ in range(min(per_id, n - len(out))):
                step = self.step[j]
                self.step[j] += 1
                kind, place, attrs = _lifecycle(num, step)
                out.append((f"{PREFIX}/BENCH-{num:08d}", num, kind, T0 + step * STEP_S, place,
                            orjson.dumps(attrs).decode()))
        return out


def request(events: list[tuple[str, int, str, int, str, str]]) -> bytes:
    return tpb.AppendEventsRequest(events=[
        tpb.TraceEvent(identifier=ident, kind=kind, occurred_at=Timestamp(seconds=at),
                       place=place, attrs_json=attrs)
        for ident, _, kind, at, place, attrs in events]).SerializeToString()


def raw_rows(events: list[tuple[str, int, str, int, str, str]], leaves: itertools.count
             ) -> list[tuple[object, ...]]:
    """The same events as trace_events rows (the columns the node writes)."""
    return [(next(leaves), ident, kind, datetime.fromtimestamp(at, UTC), place, ACTOR, attrs,
             None, hashlib.sha256(attrs.encode()).digest(), [], "[]")
            for ident, _, kind, at, place, attrs in events]


COLUMNS = ("leaf", "identifier", "kind", "occurred_at", "place", "actor", "attrs", "corrects",
           "leaf_hash", "inputs", "attachments")


# -- appends through the node ------------------------------------------------------------------
class Appender:
    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.metadata = (("authorization", f"Bearer {key}"),)

    async def __aenter__(self) -> Appender:
        self.ch = grpc.aio.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.max_send_message_length", 64 << 20)])
        self.call = self.ch.unary_unary("/idnode.v1.Trace/AppendEvents", request_serializer=None,
                                        response_deserializer=tpb.AppendEventsResponse.FromString)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ch.close()

    async def send(self, req: bytes, n: int) -> int:
        resp = await self.call(req, metadata=self.metadata, timeout=120)
        assert len(resp.leaves) == n, (len(resp.leaves), n)
        return int(resp.tree_size)

    @staticmethod
    def prepare(streams: list[Ids], seconds: float, rate_guess: float, cap: int,
                per_id: int = 1) -> list[deque[bytes]]:
        """Each stream's requests for a window, built before the clock (and before any meter
        of the node: building them takes the client a while, with the node idle): enough for
        1.5× the expected rate; `window` builds more on the fly if the node is faster."""
        per = max(4, int(rate_guess * seconds * 1.5 / len(streams) / BATCH))
        per = min(per, cap // BATCH // len(streams) + 1)
        return [deque(request(s.take(BATCH, per_id)) for _ in range(per)) for s in streams]

    async def window(self, streams: list[Ids], seconds: float, ready: list[deque[bytes]],
                     cap: int, per_id: int = 1) -> tuple[float, float, list[float]]:
        """Events per second from `streams` concurrent callers for `seconds` (or until `cap`
        events), each sending BATCH events a call from its own identifiers, first the
        `ready` ones (`prepare`). Returns events/s, the window's length and the call
        latencies."""
        latencies: list[float] = []
        done = claimed = 0
        deadline = time.monotonic() + seconds

        async def loop(ids: Ids, queue: deque[bytes]) -> None:
            nonlocal done, claimed
            while time.monotonic() < deadline and claimed + BATCH <= cap:
                claimed += BATCH
                req = queue.popleft() if queue else request(ids.take(BATCH, per_id))
                t = time.perf_counter()
                await self.send(req, BATCH)
                latencies.append(time.perf_counter() - t)
                done += BATCH

        started = time.monotonic()
        await asyncio.gather(*(loop(s, q) for s, q in zip(streams, ready)))
        elapsed = time.monotonic() - started
        return done / elapsed, elapsed, latencies

    async def grow(self, ids: Ids, size: int, target: int) -> int:
        """Appends through the node until the log holds `target` events (1,000 a call, 10 per
        identifier, CONCURRENCY calls in flight); returns the new size."""
        left = target - size
        new_size = size

        async def loop() -> None:
            nonlocal left, new_size
            while left > 0:
                n = min(GROW_BATCH, left)
                left -= n
                new_size = max(new_size, await self.send(request(ids.take(n, GROW_PER_ID)), n))

        await asyncio.gather(*(loop() for _ in range(CONCURRENCY)))
        return new_size


# -- the raw baseline ----------------------------------------------------------------------------
class Raw:
    """COPY of the same rows into trace_events of a second database of the same server."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.leaves = itertools.count()
        self.rows = 0
        self.ids = [Ids(1_000_000_000 + i * 10_000, MEASURE_IDS // CONCURRENCY)
                    for i in range(CONCURRENCY)]

    async def top_up(self, target: int) -> None:
        """Bulk COPY (not timed) until the table holds as many rows as the node's log."""
        if self.rows >= target:
            return
        filler = Ids(2_000_000_000 + self.rows, max(1, (target - self.rows) // GROW_PER_ID + 1))
        conn = await asyncpg.connect(self.dsn)
        try:
            while self.rows < target:
                n = min(50_000, target - self.rows)
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "trace_events", columns=COLUMNS,
                        records=raw_rows(filler.take(n, GROW_PER_ID), self.leaves))
                self.rows += n
            await conn.execute("ANALYZE trace_events")
        finally:
            await conn.close()

    async def window(self, seconds: float) -> float:
        """Rows per second: CONCURRENCY connections, BATCH rows a transaction (durable)."""
        done = 0
        conns = [await asyncpg.connect(self.dsn) for _ in range(CONCURRENCY)]
        deadline = time.monotonic() + seconds

        async def loop(conn: asyncpg.Connection, ids: Ids) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                rows = raw_rows(ids.take(BATCH, 1), self.leaves)
                async with conn.transaction():
                    await conn.copy_records_to_table("trace_events", columns=COLUMNS,
                                                     records=rows)
                done += BATCH

        try:
            started = time.monotonic()
            await asyncio.gather(*(loop(c, i) for c, i in zip(conns, self.ids)))
            elapsed = time.monotonic() - started
        finally:
            for c in conns:
                await c.close()
        self.rows += done
        return done / elapsed


async def raw_database(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP DATABASE IF EXISTS idnode_bench_raw")
        await conn.execute("CREATE DATABASE idnode_bench_raw")
    finally:
        await conn.close()
    raw = with_database(dsn, "idnode_bench_raw")
    conn = await asyncpg.connect(raw)
    try:
        await migrations.migrate(conn)
    finally:
        await conn.close()
    return raw


# -- proofs over HTTP ----------------------------------------------------------------------------
class Http:
    """One keep-alive HTTP/1.1 connection, requests one at a time (the client on core 1)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[float, Any]:
        t = time.perf_counter()
        try:
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The node closes a connection idle for longer than its idle timeout (15 s), as
            # it may while the log grows between sizes: open a new one, time that request.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            t = time.perf_counter()
            self.conn.request("GET", path)
            resp = self.conn.getresponse()
        body = resp.read()
        took = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {body[:300]!r}")
        return took, body

    def close(self) -> None:
        self.conn.close()


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of all the process's threads (schedstat: finer than the 10 ms
    ticks of /proc/<pid>/stat, which a few hundred sub-millisecond requests cannot use)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass
    return total


def settle(pid: int, limit: float = 30.0) -> tuple[float, float]:
    """Waits (up to `limit` s) until the node is idle: after a burst of appends it may still
    be working through the invalidations they sent. Returns (seconds waited, the node's CPU
    share over the last half second)."""
    t0 = time.monotonic()
    while True:
        c0, w0 = cpu_ns(pid), time.monotonic()
        time.sleep(0.5)
        share = (cpu_ns(pid) - c0) / 1e9 / (time.monotonic() - w0)
        if share < 0.02 or time.monotonic() - t0 > limit:
            return time.monotonic() - t0, share


def timed(client: Http, pid: int, paths: list[str]) -> tuple[float, float, list[bytes]]:
    """Median client-observed µs and node CPU µs per request over `paths`, and the bodies."""
    took, bodies = [], []
    cpu0 = cpu_ns(pid)
    for p in paths:
        t, body = client.get(p)
        took.append(t)
        bodies.append(body)
    return statistics.median(took) * 1e6, (cpu_ns(pid) - cpu0) / len(paths) / 1e3, bodies


def proofs(client: Http, pid: int, size: int, probes: list[str], rng: random.Random
           ) -> dict[str, Any]:
    """PROOF_ROUNDS rounds of healthz, inclusion and trace requests at the current size."""
    settled = settle(pid)
    client.get(f"/api/trace/{probes[0]}")  # signs the head for this size (once per size)
    client.get(f"/api/log/inclusion?leaf=0&size={size}")
    got: dict[str, list[float]] = {k: [] for k in ("healthz_us", "healthz_cpu_us",
                                                   "inclusion_us", "inclusion_cpu_us",
                                                   "trace_us", "trace_cpu_us")}
    nodes = hashes = 0
    trace_nodes = trace_hashes = trace_events = 0
    rq0, wall0 = runqueue_seconds(pid), time.monotonic()
    for _ in range(PROOF_ROUNDS):
        us, cpu_us, _ = timed(client, pid, ["/healthz"] * HEALTHZ)
        got["healthz_us"].append(us)
        got["healthz_cpu_us"].append(cpu_us)
        leaves = [rng.randrange(size) for _ in range(INCLUSIONS)]
        us, cpu_us, bodies = timed(client, pid, [f"/api/log/inclusion?leaf={leaf}&size={size}"
                                                 for leaf in leaves])
        got["inclusion_us"].append(us)
        got["inclusion_cpu_us"].append(cpu_us)
        nodes = sum(len(mlog.inclusion_proof_keys(leaf, size)) for leaf in leaves)
        hashes = sum(len(orjson.loads(b)["proof"]) for b in bodies)
        us, cpu_us, bodies = timed(client, pid, [f"/api/trace/{probes[i % len(probes)]}"
                                                 for i in range(TRACES)])
        got["trace_us"].append(us)
        got["trace_cpu_us"].append(cpu_us)
        trace_nodes = trace_hashes = trace_events = 0
        for b in bodies:
            doc = orjson.loads(b)
            assert doc["tree_head"]["size"] == size, (doc["tree_head"]["size"], size)
            wanted: set[tuple[int, int]] = set()
            for e in doc["events"]:
                wanted |= mlog.inclusion_proof_keys(e["leaf"], size)
                trace_hashes += len(e["inclusion"])
            trace_nodes += len(wanted)
            trace_events += len(doc["events"])
    out: dict[str, Any] = {"log_size": size, "log2_size": round(math.log2(size), 2),
                           "settle_s": round(settled[0], 1), "idle_cpu_share": round(settled[1], 3),
                           "node_waiting_cpu": round((runqueue_seconds(pid) - rq0)
                                                     / (time.monotonic() - wall0), 2)}
    for k, v in got.items():
        out[k] = round(statistics.median(v), 1)
        out[k + "_range"] = [round(min(v), 1), round(max(v), 1)]
    out["inclusion_nodes_read"] = round(nodes / INCLUSIONS, 2)
    out["inclusion_proof_hashes"] = round(hashes / INCLUSIONS, 2)
    out["trace_events"] = round(trace_events / TRACES, 1)
    out["trace_nodes_read"] = round(trace_nodes / TRACES, 1)
    out["trace_proof_hashes"] = round(trace_hashes / TRACES, 1)
    out["inclusion_minus_healthz_us"] = round(out["inclusion_us"] - out["healthz_us"], 1)
    out["trace_minus_healthz_us"] = round(out["trace_us"] - out["healthz_us"], 1)
    return out


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """How `key` grows with n: ratio largest/smallest against log2(n)/log2(n0) and n/n0, the
    log-log exponent (cost ∝ n^k: 0 flat, 1 linear), and a least-squares fit a + b·log2(n)."""
    xs = [math.log2(r["log_size"]) for r in rows]
    ys = [float(r[key]) for r in rows]
    first, last = rows[0], rows[-1]
    lx = [math.log(r["log_size"]) for r in rows]
    ly = [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    fx, fy = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((a - fx) * (c - fy) for a, c in zip(xs, ys)) / sum((a - fx) ** 2 for a in xs)
    a = fy - b * fx
    ss = sum((y - fy) ** 2 for y in ys)
    r2 = 1 - sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys)) / ss if ss else 1.0
    return {"ratio": round(ys[-1] / ys[0], 3),
            "log_ratio": round(math.log2(last["log_size"]) / math.log2(first["log_size"]), 3),
            "n_ratio": round(last["log_size"] / first["log_size"], 1),
            "loglog_exponent": round(k, 3), "fit_a": round(a, 2), "fit_b_per_doubling": round(b, 3),
            "fit_r2": round(r2, 3)}


async def append_windows(app: Appender, raw: Raw, streams: list[Ids], dsn: str, pid: int,
                         target: int, size: int, rate: float) -> dict[str, Any]:
    """ROUNDS pairs of windows at this size: the node (AppendEvents), then raw COPY for as
    long, the raw table first topped up to the node's log size. Node windows are cut short
    if they would grow the log past the next size (so proofs there are taken at that size)."""
    row: dict[str, Any] = {"target": target, "size_from": size, "node_events_per_s": [],
                           "raw_rows_per_s": [], "window_s": [], "node_cpu_busy": [],
                           "node_cpu_us_per_event": [], "pg_cpu_us_per_event": [],
                           "raw_pg_cpu_us_per_row": [],
                           "node_waiting_cpu": [], "call_p50_ms": [], "call_p99_ms": []}
    nxt = SIZES[SIZES.index(target) + 1] if target != SIZES[-1] else 0
    cap = (nxt - size - GROW_BATCH) // ROUNDS if nxt else 1 << 40
    server = await postmaster_of(dsn)
    for rnd in range(ROUNDS):
        await raw.top_up(size)
        last = target == SIZES[-1] and rnd == ROUNDS - 1
        profile = last and "--profile" in sys.argv
        ready = app.prepare(streams, WINDOW, rate, cap)
        with (profiled(pid, "trace_append", WINDOW) if last else nullcontext()), \
                cpu_meter(pid) as cpu, server_cpu(server) as pg:
            if profile:
                (eps, took, lat), waits = await asyncio.gather(
                    app.window(streams, WINDOW, ready, cap), pg_waits(dsn, WINDOW))
            else:
                eps, took, lat = await app.window(streams, WINDOW, ready, cap)
        if profile:
            print("PostgreSQL backends of the node, average number by wait event:")
            for event, n in waits.items():
                print(f"  {n:5.2f}  {event}")
        rate = eps
        with server_cpu(server) as pg_raw:
            raw_rate = await raw.window(took)
        row["raw_rows_per_s"].append(round(raw_rate))
        # Both over the same window length: what the server spent an event, either way.
        row["pg_cpu_us_per_event"].append(round(pg["cpu_s"] / (eps * took) * 1e6))
        row["raw_pg_cpu_us_per_row"].append(round(pg_raw["cpu_s"] / (raw_rate * took) * 1e6))
        lat.sort()
        row["node_events_per_s"].append(round(eps))
        row["window_s"].append(round(took, 1))
        row["node_cpu_busy"].append(round(cpu["busy"], 2))
        row["node_cpu_us_per_event"].append(round(cpu["cpu_s"] / (eps * cpu["wall_s"]) * 1e6))
        row["node_waiting_cpu"].append(round(cpu["waiting_cpu"], 2))
        row["call_p50_ms"].append(round(lat[len(lat) // 2] * 1e3, 1))
        row["call_p99_ms"].append(round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, 1))
        size = await _size(dsn)
    row["size_to"] = size
    row["ratio"] = [round(n / r, 3) for n, r in zip(row["node_events_per_s"],
                                                     row["raw_rows_per_s"])]
    print(f"  appends {row['size_from']:,} → {size:,}: node {row['node_events_per_s']} ev/s, "
          f"raw {row['raw_rows_per_s']} rows/s", flush=True)
    return row


def interleaved(client: Http, pid: int, sizes: list[int], rng: random.Random,
                probes: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Inclusion proofs against each earlier tree size (`size=S`, leaves < S), measured at
    the end on the full tables, sizes alternating round by round: the same conditions for
    every size, so only the proof's path differs. Traces (always in the current head) are
    timed again in each round, to compare with the as-grown figure at the largest size."""
    settle(pid)
    got: dict[int, dict[str, list[float]]] = {s: {"us": [], "cpu": []} for s in sizes}
    nodes: dict[int, float] = {}
    hashes: dict[int, float] = {}
    traces: dict[str, list[float]] = {"us": [], "cpu": []}
    rq0, wall0 = runqueue_seconds(pid), time.monotonic()
    for rnd in range(INTERLEAVED_ROUNDS):
        for size in (sizes if rnd % 2 == 0 else sizes[::-1]):
            leaves = [rng.randrange(size) for _ in range(INCLUSIONS)]
            us, cpu_us, bodies = timed(client, pid, [
                f"/api/log/inclusion?leaf={leaf}&size={size}" for leaf in leaves])
            got[size]["us"].append(us)
            got[size]["cpu"].append(cpu_us)
            if size == sizes[-1]:
                us, cpu_us, _ = timed(client, pid, [f"/api/trace/{probes[i % len(probes)]}"
                                                    for i in range(TRACES)])
                traces["us"].append(us)
                traces["cpu"].append(cpu_us)
            nodes[size] = sum(len(mlog.inclusion_proof_keys(x, size)) for x in leaves) / INCLUSIONS
            hashes[size] = sum(len(orjson.loads(b)["proof"]) for b in bodies) / INCLUSIONS
    wait = round((runqueue_seconds(pid) - rq0) / (time.monotonic() - wall0), 2)
    trace = {"trace_us": round(statistics.median(traces["us"]), 1),
             "trace_us_range": [round(min(traces["us"]), 1), round(max(traces["us"]), 1)],
             "trace_cpu_us": round(statistics.median(traces["cpu"]), 1)}
    return [{"log_size": s, "inclusion_us": round(statistics.median(got[s]["us"]), 1),
             "inclusion_us_range": [round(min(got[s]["us"]), 1), round(max(got[s]["us"]), 1)],
             "inclusion_cpu_us": round(statistics.median(got[s]["cpu"]), 1),
             "inclusion_cpu_us_range": [round(min(got[s]["cpu"]), 1),
                                        round(max(got[s]["cpu"]), 1)],
             "inclusion_nodes_read": round(nodes[s], 2),
             "inclusion_proof_hashes": round(hashes[s], 2),
             "node_waiting_cpu": wait} for s in sizes], trace


def main() -> None:
    bounded(BOUND)
    started = time.monotonic()
    rng = random.Random(7)
    grow_ids_needed = SIZES[-1] // GROW_PER_ID + 1000
    appends: list[dict[str, Any]] = []
    proof_rows: list[dict[str, Any]] = []
    late: list[dict[str, Any]] = []
    late_trace: dict[str, Any] = {}
    per_id_10: list[int] = []
    per_id_10_waiting: list[float] = []
    skipped: list[str] = []
    grown = [0.0, 0.0]  # seconds, events
    with postgres(durable=True) as dsn:
        key = str(run(prepare(dsn)))
        # Identifiers BENCH-00000000…: measured, probes, growth (seeded by COPY).
        run(load_rows(dsn, MEASURE_IDS + PROBES + grow_ids_needed))
        raw = Raw(str(run(raw_database(dsn))))
        os.sched_setaffinity(0, {1})  # clients on core 1; the node is pinned to core 0
        per = MEASURE_IDS // CONCURRENCY
        streams = [Ids(i * per, per) for i in range(CONCURRENCY)]
        probe_ids = Ids(MEASURE_IDS, PROBES)
        probes = [f"{PREFIX}/BENCH-{n:08d}" for n in probe_ids.nums]
        grower = Ids(MEASURE_IDS + PROBES, grow_ids_needed)
        node, http_port, grpc_port = start_node(dsn)

        async def go() -> None:
            client = Http(http_port)
            rate = 3000.0
            try:
                async with Appender(grpc_port, key) as app:
                    # The probes' traces first: 10 events each, leaves 0…199.
                    size = await app.send(request(probe_ids.take(PROBES * 10, 10)), PROBES * 10)
                    for target in SIZES:
                        if target > size:
                            left = BOUND - (time.monotonic() - started)
                            need = (target - size) / (grown[1] / grown[0]) if grown[0] else 0.0
                            if need > left - (ROUNDS * 2 * WINDOW + 60):
                                skipped.append(f"{target:,}: growing would take ~{need:.0f} s, "
                                               f"{left:.0f} s left in the bound")
                                break
                            t, before = time.monotonic(), size
                            size = await app.grow(grower, size, target)
                            grown[0] += time.monotonic() - t
                            grown[1] += size - before
                        # What autovacuum does sooner or later, done now so that it does not
                        # run in the middle of the measurements.
                        await _vacuum(dsn)
                        print(f"log size {size:,}: proofs", flush=True)
                        proof_rows.append(await asyncio.to_thread(
                            proofs, client, node.pid, size, probes, rng))
                        row = await append_windows(app, raw, streams, dsn, node.pid, target,
                                                   size, rate)
                        rate = row["node_events_per_s"][-1]
                        size = row["size_to"]
                        appends.append(row)
                    # The same calls, but 10 identifiers × 10 events each instead of 100 × 1:
                    # how much of the append cost is per identifier (order checks).
                    for _ in range(ROUNDS):
                        ready = app.prepare(streams, WINDOW, rate, 1 << 40, per_id=10)
                        with cpu_meter(node.pid) as cpu:
                            eps, _, _ = await app.window(streams, WINDOW, ready, 1 << 40,
                                                         per_id=10)
                        per_id_10.append(round(eps))
                        per_id_10_waiting.append(round(cpu["waiting_cpu"], 2))
                print("inclusion proofs against every size, interleaved", flush=True)
                rows, trace = await asyncio.to_thread(
                    interleaved, client, node.pid, [r["log_size"] for r in proof_rows], rng,
                    probes)
                late.extend(rows)
                late_trace.update(trace, log_size=await _size(dsn))
            finally:
                client.close()

        try:
            run(go())
        finally:
            node.stop()
    report(appends, proof_rows, late, late_trace, (per_id_10, per_id_10_waiting), skipped,
           grown[0], grown[1], time.monotonic() - started)


async def _vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE) trace_events, trace_nodes, handles")
        try:  # the growth's dirty pages written now, not by a checkpoint mid-measurement
            await conn.execute("CHECKPOINT")
        except asyncpg.PostgresError:
            pass  # not a superuser ($IDNODE_BENCH_DSN)
    finally:
        await conn.close()


async def _size(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT size FROM trace_log"))
    finally:
        await conn.close()


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    fmt = (lambda v: f"{v:,.0f}") if hi >= 100 else (lambda v: f"{v:.2f}")
    return fmt(lo) if lo == hi else f"{fmt(lo)}–{fmt(hi)}"


def report(appends: list[dict[str, Any]], proof_rows: list[dict[str, Any]],
           late: list[dict[str, Any]], late_trace: dict[str, Any],
           per_id_10: tuple[list[int], list[float]],
           skipped: list[str],
           grow_s: float, grow_events: float, total_s: float) -> None:
    print(f"\nappend throughput, durable commit, signing on ({CONCURRENCY} streams, {BATCH} "
          f"events/call, one event per identifier per call; {ROUNDS} windows of ≤ {WINDOW:.0f} s "
          "per size, range over them)")
    print(f"{'log size during windows':>25} {'node ev/s':>13} {'raw COPY rows/s':>16} "
          f"{'node/raw':>10} {'node busy':>10} {'cpu µs/ev':>9} {'waiting':>9} "
          f"{'call p50/p99 ms':>16} {'PG µs/ev':>9} {'raw PG µs/row':>14}")
    for r in appends:
        print(f"{r['size_from']:>11,} → {r['size_to']:>10,} {_span(r['node_events_per_s']):>13} "
              f"{_span(r['raw_rows_per_s']):>16} {_span(r['ratio']):>10} "
              f"{_span(r['node_cpu_busy']):>10} {_span(r['node_cpu_us_per_event']):>9} "
              f"{_span(r['node_waiting_cpu']):>9} "
              f"{statistics.median(r['call_p50_ms']):>8.0f}/"
              f"{statistics.median(r['call_p99_ms']):<7.0f} "
              f"{_span(r['pg_cpu_us_per_event']):>9} {_span(r['raw_pg_cpu_us_per_row']):>14}")
    grow_rate = grow_events / grow_s if grow_s else 0.0
    print(f"(the same calls at the end, 10 identifiers × 10 events each instead of 100 × 1: "
          f"{_span(per_id_10[0])} ev/s, node waiting {_span(per_id_10[1])})")
    print(f"(log grown between sizes through AppendEvents: {grow_events:,.0f} events at "
          f"{grow_rate:,.0f} ev/s, {GROW_BATCH} a call, {GROW_PER_ID} per identifier)")

    print(f"\nproof cost as the log grows (median of {PROOF_ROUNDS} rounds [range]; µs: "
          "client-observed, one request at a time; cpu: node CPU µs per request)")
    print(f"{'log size':>10} {'healthz µs':>10} {'inclusion µs':>20} {'cpu':>5} {'nodes':>6} "
          f"{'hashes':>6} {'× n0':>5} {'trace µs':>22} {'cpu':>6} {'nodes':>6} {'× n0':>5} "
          f"{'log2 n/n0':>9} {'waiting':>7} {'settle s':>8}")
    base = proof_rows[0]
    for r in proof_rows:
        lo, hi = r["inclusion_us_range"]
        tlo, thi = r["trace_us_range"]
        print(f"{r['log_size']:>10,} {r['healthz_us']:>10,.0f} {r['inclusion_us']:>7,.0f} "
              f"[{lo:,.0f}–{hi:,.0f}] {r['inclusion_cpu_us']:>5,.0f} "
              f"{r['inclusion_nodes_read']:>6.1f} {r['inclusion_proof_hashes']:>6.1f} "
              f"{r['inclusion_us'] / base['inclusion_us']:>5.2f} {r['trace_us']:>7,.0f} "
              f"[{tlo:,.0f}–{thi:,.0f}] {r['trace_cpu_us']:>6,.0f} {r['trace_nodes_read']:>6.0f} "
              f"{r['trace_us'] / base['trace_us']:>5.2f} "
              f"{math.log2(r['log_size']) / math.log2(base['log_size']):>9.2f} "
              f"{r['node_waiting_cpu']:>7.2f} {r['settle_s']:>8.1f}")
    print(f"(a trace: {base['trace_events']:.0f} events, each with its inclusion proof, in "
          "the current signed head)")
    print(f"\ninclusion proofs against each size, interleaved at the end on the full tables "
          f"(median of {INTERLEAVED_ROUNDS} rounds [range]; node waiting for a CPU "
          f"{late[0]['node_waiting_cpu']:.2f} of the time)")
    print(f"{'size':>10} {'µs':>20} {'node cpu µs':>18} {'nodes':>6} {'hashes':>6} {'× n0 µs':>8} "
          f"{'× n0 cpu':>8} {'log2 n/n0':>9}")
    for r in late:
        lo, hi = r["inclusion_us_range"]
        clo, chi = r["inclusion_cpu_us_range"]
        print(f"{r['log_size']:>10,} {r['inclusion_us']:>7,.0f} [{lo:,.0f}–{hi:,.0f}] "
              f"{r['inclusion_cpu_us']:>5,.0f} [{clo:,.0f}–{chi:,.0f}] "
              f"{r['inclusion_nodes_read']:>6.1f} {r['inclusion_proof_hashes']:>6.1f} "
              f"{r['inclusion_us'] / late[0]['inclusion_us']:>8.2f} "
              f"{r['inclusion_cpu_us'] / late[0]['inclusion_cpu_us']:>8.2f} "
              f"{math.log2(r['log_size']) / math.log2(late[0]['log_size']):>9.2f}")
    lo, hi = late_trace["trace_us_range"]
    print(f"(and GET /api/trace at the final size {late_trace['log_size']:,}, in the same rounds: "
          f"{late_trace['trace_us']:,.0f} µs [{lo:,.0f}–{hi:,.0f}], node CPU "
          f"{late_trace['trace_cpu_us']:,.0f} µs)")

    fits: dict[str, dict[str, float]] = {}
    verdict = "only one size measured"
    if len(proof_rows) >= 2:
        for k in ("inclusion_nodes_read", "inclusion_proof_hashes", "inclusion_us",
                  "inclusion_minus_healthz_us", "inclusion_cpu_us", "trace_nodes_read",
                  "trace_us", "trace_minus_healthz_us", "trace_cpu_us"):
            fits[k] = growth(proof_rows, k)
        for k in ("inclusion_us", "inclusion_cpu_us"):
            fits["interleaved_" + k] = growth(late, k)
        f0 = fits["inclusion_us"]
        print(f"\ngrowth from {base['log_size']:,} to {proof_rows[-1]['log_size']:,} events "
              f"(n × {f0['n_ratio']:,.0f}, log2 n × {f0['log_ratio']:.2f}); cost ∝ n^k "
              "(k = 0 flat, 1 linear); least-squares a + b·log2 n")
        for k, f in fits.items():
            print(f"  {k:<30} × {f['ratio']:<6.2f} k = {f['loglog_exponent']:<6.3f} "
                  f"{f['fit_a']:>9,.1f} + {f['fit_b_per_doubling']:>7,.2f}·log2 n "
                  f"(R² {f['fit_r2']:.2f})")
        # Judged on what the machine's other load barely moves: stored nodes read, proof
        # hashes and the node's own CPU per request. Client-observed µs are shown, not judged:
        # on a shared 2-core machine they swing by tens of percent from round to round.
        judged = ("inclusion_nodes_read", "inclusion_proof_hashes", "inclusion_cpu_us",
                  "interleaved_inclusion_cpu_us", "trace_nodes_read", "trace_cpu_us")
        worst_key = max(judged, key=lambda k: fits[k]["ratio"])
        worst = fits[worst_key]["ratio"]
        verdict = (f"{'MET' if worst <= 1.5 * f0['log_ratio'] else 'MISSED'}: n × "
                   f"{f0['n_ratio']:,.0f} costs at most × {worst:.2f} ({worst_key}); "
                   f"log2 n grows × {f0['log_ratio']:.2f}, linear would be × {f0['n_ratio']:,.0f}")
    ratios = [x for r in appends for x in r["ratio"]]
    table("summary", [
        ("node / raw append ratio (all windows)", _span(ratios)),
        ("node append ev/s, smallest → largest log",
         f"{_span(appends[0]['node_events_per_s'])} → {_span(appends[-1]['node_events_per_s'])}"),
        ("proof cost O(log n)", verdict),
        ("sizes skipped", "; ".join(skipped) or "-"),
        ("wall seconds", round(total_s)),
    ])
    save("trace_append", {
        "batch": BATCH, "concurrency": CONCURRENCY, "window_s": WINDOW, "rounds": ROUNDS,
        "measure_ids": MEASURE_IDS, "durable": True, "signing": True,
        "appends": appends, "node_events_per_s_10_per_identifier": per_id_10[0],
        "node_waiting_cpu_10_per_identifier": per_id_10[1],
        "growth_events": round(grow_events),
        "growth_events_per_s": round(grow_rate), "proofs": proof_rows,
        "proofs_interleaved": late, "trace_at_end": late_trace, "proof_growth": fits,
        "verdict": verdict,
        "meets_target": verdict.startswith("MET"), "skipped": skipped,
        "total_seconds": round(total_s)})


if __name__ == "__main__":
    main()
