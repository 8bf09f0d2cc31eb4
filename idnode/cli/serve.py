"""`idnode serve`, `worker`, `migrate` and `psql`: running the node and reaching its database."""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import shutil
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

from idnode import config
from idnode.config import Settings, SettingsError

if TYPE_CHECKING:
    from idnode.core.audit import Actor
    from idnode.node import Core
from idnode.cli.common import _migrate, _run, _settings, _setup_logging, _with_core, database, log

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


#: What `serve --demo` switches off unless configured: the per-client limits, which a load test
#: from the one machine the demo runs on (the README's locust recipe) would otherwise hit.
DEMO_UNLIMITED = ("http_rate_limit", "http_connection_rate", "grpc_write_rate",
                  "grpc_address_write_rate", "handle_rrl_rate")


def cmd_serve(args: argparse.Namespace) -> int:
    if args.demo:
        # Through the environment, so that `--workers N`'s processes read them too.
        for name in DEMO_UNLIMITED:
            if not config.configured(name, args.config):
                os.environ["IDNODE_" + name.upper()] = "0"
    settings = _settings(args)
    _setup_logging(settings.log_level)
    if not args.demo and not config.configured("node_prefix", args.config):
        print(f"error: set node_prefix to the prefix the national top-level node allocated "
              f"to this node (IDNODE_NODE_PREFIX, or node_prefix in the TOML file); the "
              f"default {settings.node_prefix} is the demo's (idnode serve --demo)",
              file=sys.stderr)
        return 2
    with database(settings) as (dsn, embedded):
        if embedded or args.migrate:
            applied = asyncio.run(_migrate(dsn))
            if applied:
                log.info("migrations applied=%s", ",".join(applied))
        if settings.signing_enabled:
            # Made once here, before any worker starts: workers racing to create the first
            # key would each sign with a key the others do not publish.
            from idnode import keys

            keys.keyring(settings)
            if not settings.upstream_grpc:
                keys.keyring(settings, "anchor")
            if keys.plan(settings).forms:
                # The Handle and IDIS forms' keys, and (standalone) their certificates.
                keys.handle_keyring(settings)
                if not settings.upstream_grpc:
                    keys.self_certified_forms(settings)
        if settings.handle_enabled:
            from idnode import keys

            keys.protocol_key(settings)  # before the workers, as above
        if args.demo:
            asyncio.run(_load_demo(settings, dsn))
        if settings.workers > 1:
            return _supervise(settings, dsn, args)
        _banner(settings, args.demo)
        return _run_node(settings, dsn, worker="0", reuse_port=False)


def cmd_worker(args: argparse.Namespace) -> int:
    """One of `serve --workers N`'s processes (internal)."""
    from idnode import dsn as dsns

    settings = _settings(args)
    _setup_logging(settings.log_level)
    # The DSN comes through a pipe from `serve` (a password on the command line would be
    # anyone's to read in ps); --dsn is for DSNs without one (tests, benchmarks).
    if args.dsn_fd is not None:
        dsn = dsns.read_fd(args.dsn_fd)
    elif args.dsn:
        dsns.refuse_on_command_line(args.dsn, "--dsn")
        dsn = args.dsn
    else:
        dsn = settings.database_url
    if not dsn:
        raise SettingsError("worker: no database (--dsn-fd, --dsn or database_url)")
    return _run_node(settings, dsn, worker=args.worker_id, reuse_port=True, role=args.role)


def _run_node(settings: Settings, dsn: str, *, worker: str, reuse_port: bool,
              role: str = "all") -> int:
    from idnode.node import Node

    async def main() -> None:
        node = Node(settings, dsn, worker=worker, role=role)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await node.start(reuse_port=reuse_port)
        _tune_gc()
        print(f"READY http={node.ports.http} grpc={node.ports.grpc} handle={node.ports.handle}"
              f" metrics={node.ports.metrics}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("shutting down pid=%d", os.getpid())
        await node.stop(grace=5)

    _run(main())
    return 0


def _tune_gc() -> None:
    """Once a serving process is up: keep the cyclic collector off the hot paths."""
    # Everything built at start-up (modules, protobuf descriptors, keyrings, pools) lives as
    # long as the process; freezing it takes it out of the generations the collector scans.
    # A 1,000-record batch allocates tens of thousands of short-lived containers, which at the
    # default gen-0 threshold (700) set off dozens of collections per call, each walking the
    # young objects of every batch in flight; almost all of it is freed by reference counting
    # anyway. docs/PERFORMANCE.md §3 measured +5-7% registration throughput from this.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 10, 10)  # only gen 0 raised (Python default: 700, 10, 10)


def _supervise(settings: Settings, dsn: str, args: argparse.Namespace) -> int:
    """Starts N worker processes sharing the ports (SO_REUSEPORT) and forwards signals."""
    from idnode.dsn import pass_by_pipe

    base = [sys.executable, "-m", "idnode"] + (["--config", args.config] if args.config else [])
    # One directory for the workers' metrics: a scrape of any worker answers for all of them
    # (prometheus_client's multiprocess mode; idnode.metrics).
    shared = tempfile.mkdtemp(prefix="idnode-metrics-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=shared)
    procs = []
    for i in range(settings.workers):
        # Each worker reads the DSN from a pipe it inherits: never argv (world-readable in
        # /proc/<pid>/cmdline), nor an environment variable its own children would inherit.
        fd = pass_by_pipe(dsn)
        try:
            procs.append(subprocess.Popen(
                base + ["worker", "--dsn-fd", str(fd), "--worker-id", str(i),
                        "--role", _role(settings, i),
                        "--http-port", str(settings.http_port),
                        "--grpc-port", str(settings.grpc_port),
                        "--handle-port", str(settings.handle_port),
                        "--metrics-port", str(settings.metrics_port)], pass_fds=(fd,),
                env=env))
        finally:
            os.close(fd)
    _banner(settings, args.demo)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    from idnode.metrics import worker_exited

    codes = []
    try:
        for p in procs:
            codes.append(p.wait())
            worker_exited(p.pid, shared)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return max(codes, default=0)


def _role(settings: Settings, worker: int) -> str:
    """The first grpc_workers workers serve gRPC only, the rest HTTP and Handle only."""
    if not settings.grpc_workers:
        return "all"
    return "grpc" if worker < settings.grpc_workers else "read"


async def _load_demo(settings: Settings, dsn: str) -> None:
    from idnode import demo

    async def run(core: Core, actor: Actor) -> None:
        key = await demo.load(core, actor)
        if key:
            # A demo convenience: keep the cooperative's key where the banner can show it.
            path = settings.data_dir / "demo-api-key"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(key + "\n")
            path.chmod(0o600)

    await _with_core(settings, dsn, run)


def _banner(settings: Settings, demo: bool) -> None:
    from idnode.demo import DEMO_IDS

    http = f"http://{settings.http_host}:{settings.http_port}"
    grpc_addr = f"{settings.grpc_host}:{settings.grpc_port}"
    split = (f", {settings.grpc_workers} of them gRPC only" if settings.grpc_workers else "")
    lines = [f"idnode serving HTTP on {http} and gRPC on {grpc_addr} ({settings.workers} "
             f"worker(s){split})"]
    if settings.handle_enabled:
        lines.append(f"and the Handle/IDIS protocol on {settings.handle_host}:"
                     f"{settings.handle_port} (TCP and UDP)")
    lines.append(f"Prometheus metrics (operators only): http://{settings.metrics_host}:"
                 f"{settings.metrics_port}/metrics")
    key_file = settings.data_dir / "demo-api-key"
    key = key_file.read_text().strip() if demo and key_file.exists() else "<your write key>"
    if demo:
        lines += [
            "",
            "Resolve a demo identifier:",
            f"  curl -s {http}/api/handles/{DEMO_IDS[0]}",
            f"  curl -s -H 'Accept: application/json' {http}/{DEMO_IDS[0]}",
            *(["Resolve it as the national ID-SDK and Handle clients do (add --udp for UDP):",
               f"  .venv/bin/idnode hdl resolve {DEMO_IDS[0]} --server "
               f"{settings.handle_host}:{settings.handle_port}"]
              if settings.handle_enabled else []),
            "The consumer's scan page of a traced rice bag (一品一码), in a browser:",
            f"  {http}/{DEMO_IDS[0]}",
            f"The demo cooperative's write key (prefix 0.118.8): {key}",
            "Register one from the command line (the prefix's template agri-product-unit",
            "wants these six values; from Python: README.md, the idnode.v1 stubs):",
            f"  export IDNODE_API_KEY={key}",
            "  .venv/bin/idnode register 0.118.8/MY-FIRST-1 --value product.name=大米 "
            "--value product.variety=稻花香2号 --value product.origin=黑龙江省五常市 "
            "--value product.grade=一级 --value batch.harvest_date=2026-09-28 "
            "--value producer.licence=SC10123010000001",
            "Per-client rate limits are off in the demo (load tests from this machine: the",
            "README's locust recipe); `idnode demo reset` (with the node stopped) starts over.",
            "Stop with Ctrl-C.",
        ]
    print("\n".join(lines), flush=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    with database(settings) as (dsn, _):
        applied = asyncio.run(_migrate(dsn))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def cmd_psql(args: argparse.Namespace) -> int:
    """psql (shipped with the embedded server) on the node's database."""
    from idnode.dsn import split_password
    from idnode.embedded import _bin

    settings = _settings(args)
    with database(settings) as (dsn, _):
        # A configured password goes to psql in its environment, not on its command line.
        bare, password = split_password(dsn)
        env = dict(os.environ, **({"PGPASSWORD": password} if password is not None else {}))
        return subprocess.call([_bin("psql"), bare, *(["-c", args.command] if args.command
                                                       else [])], env=env)


def cmd_demo(args: argparse.Namespace) -> int:
    """`idnode demo reset`: the demo's database as `make run` first made it, after the
    tamper walk-throughs (whose changes are, on purpose, beyond what the node can repair)."""
    settings = _settings(args)
    _setup_logging(settings.log_level)
    if settings.database_url:
        print("error: demo reset only resets the embedded demo database; database_url is set",
              file=sys.stderr)
        return 2
    from idnode.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir, settings.embedded_pg_port)
    if (pg.pgdata / "postmaster.pid").exists() and pg.is_running():
        print("error: the demo is running: stop `make run` (Ctrl-C) first, then reset, then "
              "`make run` again", file=sys.stderr)
        return 1
    shutil.rmtree(pg.pgdata, ignore_errors=True)
    for name in ("demo-api-key", "pgpass"):
        (settings.data_dir / name).unlink(missing_ok=True)
    print(f"demo database in {pg.pgdata} removed; `make run` makes it again (the keys stay, "
          "so a trust anchor you saved still verifies)")
    return 0


def add_demo(sub: Subcommands) -> None:
    d = sub.add_parser("demo", help="the demo's data (make run)")
    d.add_subparsers(dest="demo_cmd", required=True).add_parser(
        "reset", help="remove the demo database (stop the node first); make run rebuilds it")
    d.set_defaults(func=cmd_demo)


def add_serve(sub: Subcommands) -> None:
    s = sub.add_parser("serve", help="run the node (embedded PostgreSQL unless a DSN is set)")
    s.add_argument("--demo", action="store_true", help="load the demo prefix and records")
    s.add_argument("--workers", type=int, help="processes sharing the ports (default 1)")
    s.add_argument("--grpc-workers", type=int, help="of those, how many serve gRPC only (the "
                   "others HTTP and Handle only; default 0: all serve everything)")
    s.add_argument("--http-port", type=int)
    s.add_argument("--grpc-port", type=int)
    s.add_argument("--handle-port", type=int, help="Handle/IDIS protocol port, TCP and UDP "
                   "(default 2641)")
    s.add_argument("--metrics-port", type=int, help="the operator listener's port (/metrics; "
                   "default 9464 on metrics_host, 127.0.0.1)")
    s.add_argument("--migrate", action="store_true",
                   help="apply pending migrations first (always done on the embedded server)")
    s.set_defaults(func=cmd_serve)


def add_worker(sub: Subcommands) -> None:
    w = sub.add_parser("worker", help="(internal) one process of `serve --workers N`")
    w.add_argument("--dsn-fd", type=int, help="read the DSN from this inherited descriptor")
    w.add_argument("--dsn", help="the DSN, if it holds no password (default: database_url)")
    w.add_argument("--worker-id", default="0")
    w.add_argument("--role", default="all", choices=("all", "grpc", "read"))
    w.add_argument("--http-port", type=int)
    w.add_argument("--grpc-port", type=int)
    w.add_argument("--handle-port", type=int)
    w.add_argument("--metrics-port", type=int)
    w.set_defaults(func=cmd_worker)


def add_migrate(sub: Subcommands) -> None:
    m = sub.add_parser("migrate", help="apply pending schema migrations")
    m.set_defaults(func=cmd_migrate)


def add_psql(sub: Subcommands) -> None:
    ps_ = sub.add_parser("psql", help="psql on the node's database (embedded or configured)")
    ps_.add_argument("-c", "--command", help="one SQL command to run (default: interactive)")
    ps_.set_defaults(func=cmd_psql)
