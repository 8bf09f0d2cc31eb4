"""Batch registration over gRPC (1,000 identifiers a call, durable commit, duplicates
rejected) against raw asyncpg copy_records_to_table of the same rows into the same table.

    .venv/bin/python bench/register_batch.py [--quick]
"""
from __future__ import annotations

import asyncio
import itertools
import os
import sys
import time
from datetime import UTC, datetime

import asyncpg
import grpc
from common import PREFIX, postgres, prepare, run, save, start_node

from idnode.v1 import registry_pb2 as pb

TARGET = 0.4
#: e.g. IDNODE_SIGNING_ENABLED=false to see what signing costs (bench only).
EXTRA_ENV = {k: v for k, v in os.environ.items() if k.startswith("IDNODE_")}
BATCH = 1000
#: Calls in flight, the same for both sides.
CONCURRENCY = 4
_ids = itertools.count()


def values(i: int) -> list[tuple[int, str, str]]:
    return [(1, "product.name", f"五常大米 {i}"), (2, "batch.harvest_date", "2026-09-28"),
            (3, "URL", f"https://example.com/p/{i:09d}")]


async def copy_rows(dsn: str, seconds: float, concurrency: int = CONCURRENCY) -> float:
    """Rows per second through COPY in 1,000-row transactions (the same table and row shape)."""
    import orjson

    done = 0
    deadline = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        conn = await asyncpg.connect(dsn)
        try:
            while time.monotonic() < deadline:
                now = datetime.now(UTC)
                stamp = now.strftime("%Y-%m-%dT%H:%M:%S.000Z")
                rows = []
                for _ in range(BATCH):
                    i = next(_ids)
                    rows.append((PREFIX, f"RAW-{i:09d}", orjson.dumps([
                        {"index": x, "type": t, "data": {"format": "string", "value": d},
                         "ttl": 86400, "timestamp": stamp} for x, t, d in values(i)]).decode(),
                        1, now, now))
                async with conn.transaction():
                    await conn.copy_records_to_table(
                        "handles", records=rows, columns=("prefix", "suffix", "vals", "version",
                                                          "created_at", "updated_at"))
                done += BATCH
        finally:
            await conn.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


def prepared_batches(count: int) -> list[bytes]:
    """Serialised RegisterBatch requests, built before the clock starts: the benchmark
    measures the node, not the client's protobuf building (the raw side's rows are tuples)."""
    out = []
    for _ in range(count):
        first = next(_ids)
        for _ in range(BATCH - 1):
            next(_ids)
        out.append(pb.RegisterBatchRequest(idempotency_key=f"bench-{first}", records=[
            pb.RecordInput(identifier=f"{PREFIX}/REG-{i:09d}", values=[
                pb.Value(index=x, type=t, data=d) for x, t, d in values(i)])
            for i in range(first, first + BATCH)]).SerializeToString())
    return out


async def grpc_register(port: int, key: str, seconds: float,
                        concurrency: int = CONCURRENCY) -> float:
    """Rows per second through RegisterBatch, from pre-serialised requests."""
    batches = prepared_batches(int(seconds * 80) + 8 * concurrency)
    done = 0
    deadline = time.monotonic() + seconds
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary("/idnode.v1.Registry/RegisterBatch",
                              request_serializer=None,
                              response_deserializer=pb.RegisterBatchResponse.FromString)

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline and batches:
                resp = await call(batches.pop(), metadata=metadata)
                assert resp.registered == BATCH and not resp.replayed
                done += BATCH

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def main() -> None:
    seconds = 5.0 if "--quick" in sys.argv else 15.0
    with postgres(durable=True) as dsn:
        key = str(run(prepare(dsn)))
        os.sched_setaffinity(0, {1})  # clients on core 1; the node is pinned to core 0
        run(copy_rows(dsn, 1))
        raw = float(run(copy_rows(dsn, seconds)))  # type: ignore[arg-type]
        node, _, grpc_port = start_node(dsn, env=EXTRA_ENV)
        try:
            run(grpc_register(grpc_port, key, 1))
            via = float(run(grpc_register(grpc_port, key, seconds)))  # type: ignore[arg-type]
        finally:
            node.stop()
    ratio = via / raw
    save("register_batch", {"batch": BATCH, "node_env": EXTRA_ENV, "raw_copy_rows_per_s": round(raw),
                            "grpc_register_rows_per_s": round(via), "ratio": round(ratio, 3),
                            "target_ratio": TARGET, "meets_target": ratio >= TARGET})


if __name__ == "__main__":
    main()
