"""Load for capacity planning: consumers scanning codes over HTTP and factory MES systems over
gRPC, every request and call reported to locust's statistics.

    .venv/bin/locust -f loadtest/locustfile.py --headless --host http://127.0.0.1:8080 \\
        --grpc-host 127.0.0.1:50051 --api-key "$IDNODE_API_KEY" -u 50 -r 10 --run-time 60s

    # a documented profile (options in [tool.locust]; the command line overrides them):
    .venv/bin/locust --config loadtest/profiles/county-cooperative.toml --headless \\
        --host http://127.0.0.1:8080 --grpc-host 127.0.0.1:50051 --api-key "$IDNODE_API_KEY"

    # with a stepped ramp instead of -u/-r (see loadtest/shapes.py):
    .venv/bin/locust -f loadtest/locustfile.py,loadtest/shapes.py --steps 10x30s,40x30s …

Users (pick some by naming them at the end of the command line, e.g. `… ScanUser`):

- ScanUser — a consumer scanning a product code: `GET /api/handles/{id}` (the Handle REST JSON
  API) or `GET /{id}` with `Accept: text/html` (the scan page, `--page-share`). Codes follow a
  Zipf law over the seeded data set (`--dataset-size` identifiers 0.118.8/LT-%08d, skew
  `--zipf-s`); `--unknown-share` of scans are codes nobody registered, for which 404 is the
  right answer and counts as a success.
- MesUser — a factory MES over gRPC, with the write key from `--api-key` / $IDNODE_API_KEY
  sent as `authorization: Bearer …` on every call: RegisterBatch (`--batch-size` new
  identifiers of its own per call, each call with its own idempotency key), UpdateValues (of
  identifiers it registered) and ResolveBatch (`--resolve-batch` codes of the data set), mixed
  by `--mes-mix register:2,update:1,resolve:2`.

Rates: `--scan-rate` scans a second per ScanUser and `--mes-rate` calls a second per MesUser
(0: as fast as the node answers), so the offered load is users × rate. `--scan-weight` and
`--mes-weight` set how many of the users are which. Every option is also a LOCUST_* variable.
"""
from __future__ import annotations

# ruff: noqa: I001

import os
import random
import time
import uuid

import grpcuser  # first: switches grpc to gevent before any channel exists
import grpc
from locust import FastHttpUser, events, task
from mix import PREFIX, Pacer, dataset_id, parse_weights, unknown_id, zipf

from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc


@events.init_command_line_parser.add_listener
def _options(parser) -> None:  # type: ignore[no-untyped-def]
    g = parser.add_argument_group("idnode")
    g.add_argument("--grpc-host", default="127.0.0.1:50051", env_var="LOCUST_GRPC_HOST",
                   help="the node's gRPC address (host:port)")
    g.add_argument("--api-key", default=os.environ.get("IDNODE_API_KEY", ""),
                   env_var="LOCUST_API_KEY",
                   help="write key for MesUser (default $IDNODE_API_KEY), sent as a bearer token")
    g.add_argument("--dataset-size", type=int, default=10_000, env_var="LOCUST_DATASET_SIZE",
                   help="identifiers 0.118.8/LT-%%08d, 0..N-1, that exist")
    g.add_argument("--zipf-s", type=float, default=1.1, env_var="LOCUST_ZIPF_S",
                   help="skew of the scan mix (higher: fewer, hotter codes)")
    g.add_argument("--unknown-share", type=float, default=0.05, env_var="LOCUST_UNKNOWN_SHARE",
                   help="share of scans of unregistered codes (404 expected)")
    g.add_argument("--page-share", type=float, default=0.3, env_var="LOCUST_PAGE_SHARE",
                   help="share of scans that ask for the HTML page rather than the JSON API")
    g.add_argument("--scan-rate", type=float, default=0.0, env_var="LOCUST_SCAN_RATE",
                   help="scans a second per ScanUser (0: no wait)")
    g.add_argument("--mes-rate", type=float, default=0.0, env_var="LOCUST_MES_RATE",
                   help="gRPC calls a second per MesUser (0: no wait)")
    g.add_argument("--scan-weight", type=float, default=9, env_var="LOCUST_SCAN_WEIGHT",
                   help="relative number of ScanUsers")
    g.add_argument("--mes-weight", type=float, default=1, env_var="LOCUST_MES_WEIGHT",
                   help="relative number of MesUsers")
    g.add_argument("--batch-size", type=int, default=100, env_var="LOCUST_BATCH_SIZE",
                   help="records per RegisterBatch call")
    g.add_argument("--resolve-batch", type=int, default=100, env_var="LOCUST_RESOLVE_BATCH",
                   help="identifiers per ResolveBatch call")
    g.add_argument("--mes-mix", default="register:2,update:1,resolve:2",
                   env_var="LOCUST_MES_MIX", help="relative weights of the MesUser's calls")
    g.add_argument("--steps", default="", env_var="LOCUST_STEPS",
                   help="with loadtest/shapes.py: USERSxSECONDS[s],… e.g. 10x30s,40x30s")


#: The six values the demo prefix's template (agri-product-unit) wants, so that what the
#: load registers is what an MES would: valid records.
PRODUCT = (("product.name", "五常大米"), ("product.variety", "稻花香2号"),
           ("product.origin", "黑龙江省五常市"), ("product.grade", "一级"),
           ("batch.harvest_date", "2026-09-28"), ("producer.licence", "SC10123010000001"))


def product_values(*extra: tuple[str, str]) -> list[pb.Value]:
    return [pb.Value(index=i, type=t, data=d)
            for i, (t, d) in enumerate((*PRODUCT, *extra), start=1)]


@events.init_command_line_parser.add_listener
def _seed_option(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--seed", choices=("auto", "off"), default="auto",
                        env_var="LOCUST_SEED",
                        help="register the data set over gRPC before the run (auto: when "
                             "--api-key is given; idempotent, so a rerun registers nothing)")


@events.test_start.add_listener
def _seed(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    """The scans' data set, registered once through the node itself (a fresh `make run` has
    only the demo's records): 1,000-record batches whose idempotency keys name the data set,
    so running the recipe again replays them and registers nothing twice."""
    opts = environment.parsed_options
    if opts is None or opts.seed == "off" or not opts.api_key:
        return
    metadata = (("authorization", f"Bearer {opts.api_key}"),)
    with grpc.insecure_channel(opts.grpc_host) as channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        for start in range(0, opts.dataset_size, 1000):
            ids = range(start, min(start + 1000, opts.dataset_size))
            try:
                stub.RegisterBatch(pb.RegisterBatchRequest(
                    idempotency_key=f"locust-dataset-{opts.dataset_size}-{start}",
                    records=[pb.RecordInput(identifier=dataset_id(n), values=product_values())
                             for n in ids]), metadata=metadata, timeout=60)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:  # seeded some other way
                    raise


@events.init.add_listener
def _weights(environment, **_kw) -> None:  # type: ignore[no-untyped-def]
    opts = environment.parsed_options
    if opts is None:
        return
    # Locust takes the user classes' weights when it spawns; the options set them first.
    ScanUser.weight = max(0, round(opts.scan_weight))
    MesUser.weight = max(0, round(opts.mes_weight))


class ScanUser(FastHttpUser):
    """A consumer scanning product codes: the JSON API and the scan page."""

    weight = 9

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.zipf = zipf(opts.dataset_size, opts.zipf_s)
        self.unknown = opts.unknown_share
        self.page = opts.page_share
        self.pacer = Pacer(opts.scan_rate)

    def wait_time(self) -> float:
        return self.pacer.wait()

    @task
    def scan(self) -> None:
        if random.random() < self.unknown:
            code, expect = unknown_id(), 404
        else:
            code, expect = dataset_id(self.zipf.draw()), 200
        if random.random() < self.page:
            path, name, headers = f"/{code}", "/[id] (scan page)", {"Accept": "text/html"}
        else:
            path, name, headers = f"/api/handles/{code}", "/api/handles/[id]", None
        with self.client.get(path, name=name, headers=headers, catch_response=True) as resp:
            if resp.status_code == expect:
                resp.success()
            else:
                resp.failure(f"HTTP {resp.status_code}, expected {expect}")


class MesUser(grpcuser.GrpcUser):
    """A factory MES over gRPC: batch registrations, updates and batch resolves."""

    weight = 1
    stub_class = registry_pb2_grpc.RegistryStub

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.pacer = Pacer(opts.mes_rate)
        self.batch = max(1, opts.batch_size)
        self.resolve_n = max(1, min(opts.resolve_batch, 1000))
        self.size = opts.dataset_size
        mix = parse_weights(opts.mes_mix)
        self.actions = [a for a in ("register", "update", "resolve") if mix.get(a, 0) > 0]
        self.action_weights = [mix[a] for a in self.actions]
        self.tag = uuid.uuid4().hex[:10]  # identifiers and idempotency keys of this user only
        self.serial = 0
        self.mine: list[tuple[str, int]] = []  # (identifier, version) it registered

    def wait_time(self) -> float:
        return self.pacer.wait()

    @task
    def act(self) -> None:
        action = random.choices(self.actions, self.action_weights)[0] if self.actions else None
        if action == "update" and not self.mine:
            action = "register"
        try:
            if action == "register":
                self.register()
            elif action == "update":
                self.update()
            elif action == "resolve":
                self.resolve()
        except grpc.RpcError:
            pass  # already counted as a failure by the interceptor

    def register(self) -> None:
        self.serial += 1
        ids = [f"{PREFIX}/MES-{self.tag}-{self.serial:06d}-{i:05d}" for i in range(self.batch)]
        lot = f"LOT-{self.serial:06d}"
        req = pb.RegisterBatchRequest(
            idempotency_key=f"lt-{self.tag}-{self.serial}",
            records=[pb.RecordInput(identifier=i, values=product_values(("batch.lot", lot)))
                     for i in ids])
        self.stub.RegisterBatch(req, timeout=self.call_timeout)
        self.mine = [(i, 1) for i in ids[:16]]

    def update(self) -> None:
        k = random.randrange(len(self.mine))
        ident, version = self.mine[k]
        rec = self.stub.UpdateValues(pb.UpdateValuesRequest(
            identifier=ident, expected_version=version,
            values=product_values(("logistics.status", f"shipped {time.time():.0f}"))),
            timeout=self.call_timeout)
        self.mine[k] = (ident, rec.version)

    def resolve(self) -> None:
        z = zipf(self.size, self.environment.parsed_options.zipf_s)
        self.stub.ResolveBatch(pb.ResolveBatchRequest(
            identifiers=[dataset_id(z.draw()) for _ in range(self.resolve_n)]),
            timeout=self.call_timeout)
