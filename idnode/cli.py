"""`idnode …` commands: parse arguments, call into the package, print."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

from idnode import config
from idnode.config import Settings

log = logging.getLogger("idnode")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")


def _settings(args: argparse.Namespace) -> Settings:
    s = config.load(args.config)
    return s.with_overrides(http_port=getattr(args, "http_port", None),
                            grpc_port=getattr(args, "grpc_port", None),
                            workers=getattr(args, "workers", None),
                            database_url=getattr(args, "database_url", None))


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[tuple[str, bool]]:
    """(DSN, embedded?): the configured server, or the embedded one started for the duration."""
    if settings.database_url:
        yield settings.database_url, False
        return
    from idnode.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir, settings.embedded_pg_port)
    already = (pg.pgdata / "postmaster.pid").exists() and pg.is_running()
    dsn = pg.start()
    log.info("embedded postgres dsn=%s data=%s", dsn, pg.pgdata)
    try:
        yield dsn, True
    finally:
        if not already:
            pg.stop()


async def _migrate(dsn: str) -> list[str]:
    import asyncpg

    from idnode.store import migrations

    conn = await asyncpg.connect(dsn)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


# -- serve ------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    with database(settings) as (dsn, embedded):
        if embedded or args.migrate:
            applied = asyncio.run(_migrate(dsn))
            if applied:
                log.info("migrations applied=%s", ",".join(applied))
        if args.demo:
            asyncio.run(_load_demo(settings, dsn))
        if settings.workers > 1:
            return _supervise(settings, dsn, args)
        _banner(settings, args.demo)
        return _run_node(settings, dsn, worker="0", reuse_port=False)


def cmd_worker(args: argparse.Namespace) -> int:
    """One of `serve --workers N`'s processes (internal)."""
    settings = _settings(args)
    _setup_logging(settings.log_level)
    return _run_node(settings, args.dsn, worker=args.worker_id, reuse_port=True)


def _run_node(settings: Settings, dsn: str, *, worker: str, reuse_port: bool) -> int:
    from idnode.node import Node

    async def main() -> None:
        node = Node(settings, dsn, worker=worker)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await node.start(reuse_port=reuse_port)
        print(f"READY http={node.ports.http} grpc={node.ports.grpc}", file=sys.stderr, flush=True)
        await stop.wait()
        log.info("shutting down pid=%d", os.getpid())
        await node.stop(grace=5)

    _run(main())
    return 0


def _supervise(settings: Settings, dsn: str, args: argparse.Namespace) -> int:
    """Starts N worker processes sharing the ports (SO_REUSEPORT) and forwards signals."""
    env = dict(os.environ, IDNODE_DATABASE_URL=dsn)
    base = [sys.executable, "-m", "idnode"] + (["--config", args.config] if args.config else [])
    procs = [subprocess.Popen(base + ["worker", "--dsn", dsn, "--worker-id", str(i),
                                     "--http-port", str(settings.http_port),
                                     "--grpc-port", str(settings.grpc_port)], env=env)
             for i in range(settings.workers)]
    _banner(settings, args.demo)

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [p.wait() for p in procs]
    return max(codes, default=0)


async def _load_demo(settings: Settings, dsn: str) -> None:
    from idnode import demo
    from idnode.cache import HotCache
    from idnode.core.registry import Limits, Registry
    from idnode.store.db import Database, create_pool
    from idnode.store.handles import HandleStore
    from idnode.store.prefixes import PrefixStore

    db = Database(await create_pool(dsn, min_size=1, max_size=2))
    try:
        cache = HotCache(max_entries=10, ttl=1, negative_ttl=1, enabled=False)
        prefixes = PrefixStore(db)
        registry = Registry(HandleStore(db), prefixes, cache,
                            Limits(settings.max_batch_register, settings.max_value_bytes,
                                   settings.max_record_bytes))
        await demo.load(registry, prefixes)
    finally:
        await db.close()


def _banner(settings: Settings, demo: bool) -> None:
    from idnode.demo import DEMO_IDS

    http = f"http://{settings.http_host}:{settings.http_port}"
    grpc_addr = f"{settings.grpc_host}:{settings.grpc_port}"
    lines = [f"idnode serving HTTP on {http} and gRPC on {grpc_addr} ({settings.workers} worker(s))"]
    if demo:
        lines += [
            "",
            "Resolve a demo identifier:",
            f"  curl -s {http}/api/handles/{DEMO_IDS[0]}",
            f"  curl -s -H 'Accept: application/json' {http}/{DEMO_IDS[0]}",
            "Register one from the command line, or from Python:",
            f"  .venv/bin/idnode register 88.118.8/MY-FIRST-1 --value product.name=Rice "
            f"--grpc {grpc_addr}",
            "  .venv/bin/python -c \"import grpc; from idnode.v1 import registry_pb2 as pb, "
            "registry_pb2_grpc as g; "
            f"s = g.RegistryStub(grpc.insecure_channel('{grpc_addr}')); "
            "print(s.RegisterBatch(pb.RegisterBatchRequest(idempotency_key='k1', records=["
            "pb.RecordInput(identifier='88.118.8/MY-FIRST-2', values=[pb.Value(index=1, "
            "type='product.name', data='Rice')])])))\"",
            "Stop with Ctrl-C.",
        ]
    print("\n".join(lines), flush=True)


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


# -- migrate, prefix --------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    with database(settings) as (dsn, _):
        applied = asyncio.run(_migrate(dsn))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))
    return 0


def cmd_prefix(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    from idnode.core.identifiers import parse_prefix
    from idnode.store.db import Database, create_pool
    from idnode.store.prefixes import PrefixStore

    async def run(dsn: str) -> None:
        db = Database(await create_pool(dsn, min_size=1, max_size=1))
        try:
            store = PrefixStore(db)
            if args.prefix_cmd == "add":
                await store.create(parse_prefix(args.prefix))
                print(f"prefix {args.prefix} added")
            else:
                for prefix, status in await store.list():
                    print(f"{prefix}\t{status}")
        finally:
            await db.close()

    with database(settings) as (dsn, _):
        asyncio.run(run(dsn))
    return 0


# -- client commands --------------------------------------------------------------------------
def cmd_register(args: argparse.Namespace) -> int:
    import uuid

    import grpc

    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    values = []
    for i, item in enumerate(args.value, start=1):
        vtype, sep, data = item.partition("=")
        if not sep:
            print(f"--value {item!r}: expected TYPE=DATA", file=sys.stderr)
            return 2
        values.append(pb.Value(index=i, type=vtype, data=data))
    key = args.idempotency_key or f"cli-{uuid.uuid4()}"
    with grpc.insecure_channel(args.grpc) as channel:
        stub = pb_grpc.RegistryStub(channel)
        try:
            resp = stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key=key, records=[pb.RecordInput(identifier=args.identifier,
                                                             values=values)]), timeout=10)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"registered {resp.registered} (idempotency key {key})")
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    with grpc.insecure_channel(args.grpc) as channel:
        try:
            record = pb_grpc.RegistryStub(channel).Resolve(
                pb.ResolveRequest(identifier=args.identifier), timeout=10)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(record, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idnode", description="idnode: identifier resolution secondary node")
    p.add_argument("--config", help="TOML settings file (default $IDNODE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the node (embedded PostgreSQL unless a DSN is set)")
    s.add_argument("--demo", action="store_true", help="load the demo prefix and records")
    s.add_argument("--workers", type=int, help="processes sharing the ports (default 1)")
    s.add_argument("--http-port", type=int)
    s.add_argument("--grpc-port", type=int)
    s.add_argument("--migrate", action="store_true",
                   help="apply pending migrations first (always done on the embedded server)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="(internal) one process of `serve --workers N`")
    w.add_argument("--dsn", required=True)
    w.add_argument("--worker-id", default="0")
    w.add_argument("--http-port", type=int)
    w.add_argument("--grpc-port", type=int)
    w.set_defaults(func=cmd_worker)

    m = sub.add_parser("migrate", help="apply pending schema migrations")
    m.set_defaults(func=cmd_migrate)

    px = sub.add_parser("prefix", help="manage the enterprise prefixes this node holds")
    pxs = px.add_subparsers(dest="prefix_cmd", required=True)
    add = pxs.add_parser("add", help="hold a new prefix, e.g. 88.118.9")
    add.add_argument("prefix")
    pxs.add_parser("list", help="list prefixes")
    px.set_defaults(func=cmd_prefix)

    r = sub.add_parser("register", help="register one identifier over gRPC")
    r.add_argument("identifier")
    r.add_argument("--value", action="append", default=[], metavar="TYPE=DATA",
                   help="a string value; repeat for more (indexes 1, 2, …)")
    r.add_argument("--idempotency-key")
    r.add_argument("--grpc", default="127.0.0.1:50051", help="node gRPC address")
    r.set_defaults(func=cmd_register)

    v = sub.add_parser("resolve", help="resolve one identifier over gRPC")
    v.add_argument("identifier")
    v.add_argument("--grpc", default="127.0.0.1:50051", help="node gRPC address")
    v.set_defaults(func=cmd_resolve)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ValueError as exc:  # bad settings
        print(f"idnode: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
