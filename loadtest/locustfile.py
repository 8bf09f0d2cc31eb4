"""Load for capacity planning: consumers scanning codes over HTTP and MES systems registering
over gRPC, each call reported to locust's statistics.

    locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 \\
        --grpc-host 127.0.0.1:50051 --api-key "$IDNODE_API_KEY" -u 50 -r 10 --run-time 60s

Options (also as LOCUST_* environment variables): --dataset-size N (identifiers
88.118.8/LT-%08d that exist), --zipf-s S (skew of the scan mix), --unknown-share F (codes that
do not exist, answered 404 and counted as success), --batch-size N (MES registrations).
"""
from __future__ import annotations

import bisect
import itertools
import os
import random
import time
import uuid

from grpc.experimental import gevent as grpc_gevent

grpc_gevent.init_gevent()  # grpc must cooperate with locust's gevent loop

import grpc  # noqa: E402
from locust import HttpUser, User, between, events, task  # noqa: E402

from idnode.v1 import registry_pb2 as pb  # noqa: E402
from idnode.v1 import registry_pb2_grpc  # noqa: E402

PREFIX = "88.118.8"


@events.init_command_line_parser.add_listener
def _options(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--grpc-host", default="127.0.0.1:50051", help="node gRPC address")
    parser.add_argument("--api-key", default=os.environ.get("IDNODE_API_KEY", ""),
                        help="write key for MES users")
    parser.add_argument("--dataset-size", type=int, default=10_000)
    parser.add_argument("--zipf-s", type=float, default=1.1)
    parser.add_argument("--unknown-share", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1/(rank+1)^s (hot and cold codes)."""

    def __init__(self, n: int, s: float) -> None:
        weights = [1.0 / (k + 1) ** s for k in range(n)]
        total = sum(weights)
        acc = 0.0
        self.cdf = []
        for w in weights:
            acc += w / total
            self.cdf.append(acc)

    def draw(self) -> int:
        return min(bisect.bisect_left(self.cdf, random.random()), len(self.cdf) - 1)


_zipf: Zipf | None = None


class ScanUser(HttpUser):
    """A consumer scanning product codes: the JSON API and the scan page."""

    weight = 9
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        global _zipf
        opts = self.environment.parsed_options
        if _zipf is None:
            _zipf = Zipf(opts.dataset_size, opts.zipf_s)
        self.unknown = opts.unknown_share

    def _code(self) -> tuple[str, bool]:
        if random.random() < self.unknown:
            return f"{PREFIX}/UNKNOWN-{uuid.uuid4().hex[:12]}", False
        assert _zipf is not None
        return f"{PREFIX}/LT-{_zipf.draw():08d}", True

    @task(3)
    def api(self) -> None:
        code, exists = self._code()
        with self.client.get(f"/api/handles/{code}", name="/api/handles/[id]",
                             catch_response=True) as resp:
            if resp.status_code == (200 if exists else 404):
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}")

    @task(1)
    def page(self) -> None:
        code, exists = self._code()
        with self.client.get(f"/{code}", name="/[id] (page)", headers={"Accept": "text/html"},
                             catch_response=True) as resp:
            if resp.status_code == (200 if exists else 404):
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}")


_serial = itertools.count()


class MesUser(User):
    """A factory MES over gRPC: batch registrations, updates and batch resolves."""

    weight = 1
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.channel = grpc.insecure_channel(opts.grpc_host)
        self.stub = registry_pb2_grpc.RegistryStub(self.channel)
        self.metadata = (("authorization", f"Bearer {opts.api_key}"),) if opts.api_key else ()
        self.batch = opts.batch_size
        self.size = opts.dataset_size
        self.mine: list[str] = []
        self.tag = uuid.uuid4().hex[:8]

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, name: str, fn, request, size: int = 0):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        exc = None
        resp = None
        try:
            resp = fn(request, metadata=self.metadata, timeout=30)
        except grpc.RpcError as e:
            exc = e
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=size, exception=exc, context={})
        return resp

    @task(2)
    def register(self) -> None:
        base = next(_serial)
        ids = [f"{PREFIX}/MES-{self.tag}-{base:06d}-{i:05d}" for i in range(self.batch)]
        req = pb.RegisterBatchRequest(idempotency_key=f"lt-{self.tag}-{base}", records=[
            pb.RecordInput(identifier=i, values=[
                pb.Value(index=1, type="product.name", data="五常大米"),
                pb.Value(index=2, type="batch.harvest_date", data="2026-09-28")]) for i in ids])
        if self._call("RegisterBatch", self.stub.RegisterBatch, req, len(ids)) is not None:
            self.mine = ids[:10]

    @task(1)
    def update(self) -> None:
        if not self.mine:
            return
        self._call("UpdateValues", self.stub.UpdateValues, pb.UpdateValuesRequest(
            identifier=random.choice(self.mine),
            values=[pb.Value(index=1, type="product.name", data=f"五常大米 {time.time()}")]))

    @task(2)
    def resolve_batch(self) -> None:
        ids = [f"{PREFIX}/LT-{random.randrange(self.size):08d}" for _ in range(100)]
        self._call("ResolveBatch", self.stub.ResolveBatch,
                   pb.ResolveBatchRequest(identifiers=ids), 100)
