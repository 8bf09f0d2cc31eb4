"""`idnode …` commands: parse arguments, call into the package, print."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from idnode import config
from idnode.config import Settings

if TYPE_CHECKING:
    import grpc
    import pysequoia

    from idnode.core.audit import Actor
    from idnode.labels import IdentifierList
    from idnode.node import Core

T = TypeVar("T")

log = logging.getLogger("idnode")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")


def _settings(args: argparse.Namespace) -> Settings:
    s = config.load(args.config)
    return s.with_overrides(http_port=getattr(args, "http_port", None),
                            grpc_port=getattr(args, "grpc_port", None),
                            handle_port=getattr(args, "handle_port", None),
                            metrics_port=getattr(args, "metrics_port", None),
                            workers=getattr(args, "workers", None),
                            database_url=getattr(args, "database_url", None))


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[tuple[str, bool]]:
    """(DSN, embedded?): the configured server, or the embedded one started for the duration."""
    if settings.database_url:
        yield settings.database_url, False
        return
    with _embedded(settings.data_dir, settings.embedded_pg_port) as dsn:
        yield dsn, True


@contextlib.contextmanager
def _embedded(data_dir: Path, port: int) -> Iterator[str]:
    """An embedded server in data_dir, started if needed and stopped only if we started it."""
    from idnode.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(data_dir, port)
    already = (pg.pgdata / "postmaster.pid").exists() and pg.is_running()
    dsn = pg.start()
    log.info("embedded postgres dsn=%s data=%s", dsn, pg.pgdata)
    try:
        yield dsn
    finally:
        if not already:
            pg.stop()


async def _migrate(dsn: str, sql_dir: Path | None = None) -> list[str]:
    import asyncpg

    from idnode.store import migrations

    conn = await asyncpg.connect(dsn)
    try:
        return await migrations.migrate(conn, sql_dir or migrations.SQL_DIR)
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
        raise ValueError("worker: no database (--dsn-fd, --dsn or database_url)")
    return _run_node(settings, dsn, worker=args.worker_id, reuse_port=True)


def _run_node(settings: Settings, dsn: str, *, worker: str, reuse_port: bool) -> int:
    from idnode.node import Node

    async def main() -> None:
        node = Node(settings, dsn, worker=worker)
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
    procs = []
    for i in range(settings.workers):
        # Each worker reads the DSN from a pipe it inherits: never argv (world-readable in
        # /proc/<pid>/cmdline), nor an environment variable its own children would inherit.
        fd = pass_by_pipe(dsn)
        try:
            procs.append(subprocess.Popen(
                base + ["worker", "--dsn-fd", str(fd), "--worker-id", str(i),
                        "--http-port", str(settings.http_port),
                        "--grpc-port", str(settings.grpc_port),
                        "--handle-port", str(settings.handle_port),
                        "--metrics-port", str(settings.metrics_port)], pass_fds=(fd,)))
        finally:
            os.close(fd)
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

    async def run(core: Core, actor: Actor) -> None:
        key = await demo.load(core, actor)
        if key:
            # A demo convenience: keep the cooperative's key where the banner can show it.
            path = settings.data_dir / "demo-api-key"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(key + "\n")
            path.chmod(0o600)

    await _with_core(settings, dsn, run)


async def _with_core(settings: Settings, dsn: str,
                     fn: Callable[[Core, Actor], Awaitable[T]]) -> T:
    """Runs fn with the node's core (no servers, no cache) as the local operator."""
    from idnode.cache import HotCache
    from idnode.node import Core

    core = await Core.open(settings, dsn, HotCache(max_entries=1, ttl=1, negative_ttl=1,
                                                   enabled=False), pool_max=2)
    try:
        return await fn(core, local_operator())
    finally:
        await core.db.close()


def local_operator() -> Actor:
    """Whoever can run the CLI against the database is the node's operator."""
    from idnode.core.audit import Actor
    from idnode.core.auth import SCOPES, Principal

    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
    return Actor(Principal(f"cli:{user}", "operator", None, frozenset(SCOPES), None), "local")


def _banner(settings: Settings, demo: bool) -> None:
    from idnode.demo import DEMO_IDS

    http = f"http://{settings.http_host}:{settings.http_port}"
    grpc_addr = f"{settings.grpc_host}:{settings.grpc_port}"
    lines = [f"idnode serving HTTP on {http} and gRPC on {grpc_addr} ({settings.workers} worker(s))"]
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
            f"The demo cooperative's write key (prefix 88.118.8): {key}",
            "Register one from the command line, or from Python (the prefix's template",
            "agri-product-unit wants these six values):",
            f"  export IDNODE_API_KEY={key}",
            "  .venv/bin/idnode register 88.118.8/MY-FIRST-1 --value product.name=大米 "
            "--value product.variety=稻花香2号 --value product.origin=黑龙江省五常市 "
            "--value product.grade=一级 --value batch.harvest_date=2026-09-28 "
            "--value producer.licence=SC10123010000001",
            "  .venv/bin/python -c \"import grpc; from idnode.v1 import registry_pb2 as pb, "
            "registry_pb2_grpc as g; "
            f"s = g.RegistryStub(grpc.insecure_channel('{grpc_addr}')); "
            "v = dict(zip(['product.name', 'product.variety', 'product.origin', 'product.grade', "
            "'batch.harvest_date', 'producer.licence'], ['大米', '稻花香2号', '黑龙江省五常市', "
            "'一级', '2026-09-28', 'SC10123010000001'])); "
            "print(s.RegisterBatch(pb.RegisterBatchRequest(idempotency_key='k1', records=["
            "pb.RecordInput(identifier='88.118.8/MY-FIRST-2', values=[pb.Value(index=i, type=t, "
            "data=d) for i, (t, d) in enumerate(v.items(), 1)])]), "
            f"metadata=[('authorization', 'Bearer {key}')]))\"",
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


def _core_command(args: argparse.Namespace,
                  fn: Callable[[Core, Actor], Awaitable[None]]) -> int:
    settings = _settings(args)
    _setup_logging(settings.log_level)
    from idnode.core.errors import IdnodeError

    with database(settings) as (dsn, _):
        try:
            asyncio.run(_with_core(settings, dsn, fn))
        except IdnodeError as exc:
            print(f"error: {exc.reason}: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_enterprise(args: argparse.Namespace) -> int:
    async def run(core: Core, actor: Actor) -> None:
        if args.enterprise_cmd == "add":
            row = await core.tenancy.create_enterprise(actor, args.name, args.uscc, args.contact)
            print(f"enterprise {row.id} {row.name} ({row.uscc}) onboarded")
            print(row.id)
        else:
            for row in await core.tenancy.enterprises(actor):
                print(f"{row.id}\t{row.uscc}\t{row.name}\t{','.join(row.prefixes) or '-'}")

    return _core_command(args, run)


def cmd_prefix(args: argparse.Namespace) -> int:
    async def run(core: Core, actor: Actor) -> None:
        t = core.tenancy
        cmd = args.prefix_cmd
        if cmd == "allocate":
            prefix = await t.allocate_prefix(actor, args.enterprise, args.prefix or "")
            print(f"prefix {prefix} allocated to enterprise {args.enterprise}")
        elif cmd in ("suspend", "resume", "revoke"):
            status = {"suspend": "suspended", "resume": "active", "revoke": "revoked"}[cmd]
            await t.set_prefix_status(actor, args.prefix, status,
                                      getattr(args, "refuse_resolution", False))
            print(f"prefix {args.prefix} is {status}")
        else:
            for row in await core.prefix_store.all():
                refuse = " (resolution refused)" if row.refuse_resolution else ""
                print(f"{row.prefix}\t{row.status}{refuse}\tenterprise={row.enterprise_id or '-'}"
                      f"\ttemplate={row.template_name or '-'}")

    return _core_command(args, run)


def cmd_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from idnode.core.tenancy import expires

    async def run(core: Core, actor: Actor) -> None:
        t = core.tenancy
        if args.key_cmd == "issue":
            cert = open(args.cert, encoding="ascii").read() if args.cert else ""
            public_key = Path(args.public_key).read_bytes() if args.public_key else b""
            issued = await t.issue_key(
                actor, None if args.operator else args.enterprise,
                [x for x in args.scope.split(",") if x], args.prefix, args.label,
                expires(args.expires_days), cert, args.handle_admin or "", public_key)
            c = issued.credential
            if c.handle_admin:
                from idnode.core.tenancy import describe_key
                from idnode.crypto.hdlkeys import load_public_key

                kind = describe_key(load_public_key(public_key))
                print(f"Handle admin {c.handle_admin} bound to the {kind} key in "
                      f"{args.public_key} ({c.role}, {','.join(c.scopes)}); its key id:")
                print(c.key_id)
                return
            print(f"key {issued.credential.key_id} ({issued.credential.role}, "
                  f"{','.join(issued.credential.scopes)}) issued; store it now, it is shown once:")
            print(issued.api_key)
        elif args.key_cmd == "rotate":
            issued = await t.rotate_key(actor, args.key_id, timedelta(hours=args.grace_hours))
            print(f"key {issued.credential.key_id} replaces {args.key_id}, which stays valid for "
                  f"{args.grace_hours} h; store it now, it is shown once:")
            print(issued.api_key)
        elif args.key_cmd == "revoke":
            await t.revoke_key(actor, args.key_id)
            print(f"key {args.key_id} revoked")
        else:
            creds = await t.keys(actor, args.enterprise)
            if args.json:
                _listing(True, ["key_id", "role", "enterprise_id", "scopes", "prefixes",
                                "expires_at", "revoked_at", "handle_admin"],
                         [[c.key_id, c.role, c.enterprise_id, list(c.scopes),
                           list(c.prefixes) if c.prefixes else None,
                           c.expires_at.isoformat() if c.expires_at else None,
                           c.revoked_at.isoformat() if c.revoked_at else None,
                           c.handle_admin or None] for c in creds])
                return
            print("KEY ID\tROLE\tENTERPRISE\tSCOPES\tPREFIXES\tSTATE\tHANDLE ADMIN")
            for c in creds:
                state = ("revoked" if c.revoked_at else
                         f"expires {c.expires_at:%Y-%m-%d %H:%M}" if c.expires_at else "active")
                print(f"{c.key_id}\t{c.role}\tenterprise={c.enterprise_id or '-'}\t"
                      f"{','.join(c.scopes)}\t{','.join(c.prefixes or ()) or '*'}\t{state}"
                      f"\thandle_admin={c.handle_admin or '-'}")

    return _core_command(args, run)


def cmd_template(args: argparse.Namespace) -> int:
    import json

    async def run(core: Core, actor: Actor) -> None:
        if args.template_cmd == "set":
            schema = None
            name = args.builtin or args.name or os.path.basename(args.file or "")
            if args.file:
                with open(args.file, encoding="utf-8") as fh:
                    schema = json.load(fh)
            await core.tenancy.set_template(actor, args.prefix, name, schema)
            print(f"template {name} set on {args.prefix}")
        else:
            found = await core.tenancy.template(args.prefix)
            print(json.dumps({"name": found[0], "schema": found[1]} if found else None,
                             ensure_ascii=False, indent=2))

    return _core_command(args, run)


def cmd_gs1(args: argparse.Namespace) -> int:
    async def run(core: Core, actor: Actor) -> None:
        await core.tenancy.map_gs1(actor, args.gcp, args.prefix)
        print(f"GTINs of GS1 Company Prefix {args.gcp} resolve under {args.prefix} "
              f"(e.g. /01/<gtin>/10/<batch>/21/<serial>)")

    return _core_command(args, run)


def cmd_audit(args: argparse.Namespace) -> int:
    from idnode.core import clock

    async def run(core: Core, actor: Actor) -> None:
        rows = await core.tenancy.audit_trail(actor, prefix=args.prefix,
                                              enterprise_id=args.enterprise, limit=args.limit)
        _listing(args.json, ["id", "at", "actor", "client", "action", "target",
                             "before_version", "after_version", "detail"],
                 [[id_, clock.iso(e.at) if e.at else None, e.actor, e.client, e.action,
                   e.target, e.before_version, e.after_version, e.detail] for id_, e in rows])

    return _core_command(args, run)



# -- labels -----------------------------------------------------------------------------------
def cmd_labels(args: argparse.Namespace) -> int:
    """QR codes of the identifiers' scan URLs: one file each (svg, png) or A4 sheets."""
    from idnode import labels

    settings = _settings(args)
    _setup_logging(settings.log_level)
    out = Path(args.out)
    fmt = args.format or ("pdf" if out.suffix.lower() == ".pdf" else "svg")
    try:
        base = labels.check_base_url(args.base_url) if args.base_url else labels.base_url(settings)
        labels.check_ecc(args.ecc)
        grid = labels.parse_grid(args.grid)
        wanted = labels.IdentifierList()
        for number, text in enumerate(args.identifiers, start=1):
            wanted.add(text, f"argument {number}")
        for source in args.from_file:
            if source == "-":
                wanted.add_lines(sys.stdin, "<stdin>")
            else:
                with open(source, encoding="utf-8") as fh:
                    wanted.add_lines(fh, source)
        if args.prefix and _labels_from_database(args, settings, wanted):
            return 1
        if not wanted.items:
            print("labels: no identifiers given (IDS, --from FILE or --prefix P)", file=sys.stderr)
            return 2
        # Every identifier is checked before the first file is written: a bad line writes
        # nothing. The database is closed by now, so forking encoder processes is safe.
        jobs = args.jobs or os.cpu_count() or 1
        made = labels.make_labels(wanted.items, base, args.ecc, jobs=jobs)
        written = labels.write(made, out, fmt, scale=args.scale, grid=grid,
                               crop_marks=args.crop_marks)
    except labels.LabelError as exc:
        print(f"labels: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:
        print(f"labels: {exc}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in written)
    size = f"{total / 1e6:.1f} MB" if total >= 100_000 else f"{total / 1e3:.1f} kB"
    if fmt in ("svg", "png"):
        print(f"wrote {len(made)} {fmt.upper()} code(s) to {out}/ ({size}); "
              f"{written[-1]} maps file, identifier and URL")
    else:
        where = (str(written[0]) if len(written) == 1 else
                 f"{written[0]} … {written[-1].name}")
        print(f"wrote {len(made)} label(s) on {labels.sheet_pages(len(made), grid)} A4 page(s) "
              f"to {where} ({size})")
    print(f"scan URLs: {base}/{{identifier}}")
    return 0


def _labels_from_database(args: argparse.Namespace, settings: Settings,
                          wanted: IdentifierList) -> bool:
    """Adds every identifier under each --prefix from the node's database; True on failure."""
    from idnode.core.errors import IdnodeError

    async def run(core: Core, actor: Actor) -> None:
        for prefix in args.prefix:
            token, count = "", 0
            while True:
                page, token = await core.registry.list_identifiers(actor, prefix, 1000, token)
                for ident in page:
                    count += 1
                    wanted.add(ident, f"--prefix {prefix} #{count}")
                if not token:
                    break

    with database(settings) as (dsn, _):
        try:
            asyncio.run(_with_core(settings, dsn, run))
        except IdnodeError as exc:
            print(f"error: {exc.reason}: {exc}", file=sys.stderr)
            return True
    return False

# -- client commands --------------------------------------------------------------------------
def cmd_register(args: argparse.Namespace) -> int:
    import uuid

    import grpc

    from idnode.grpc_tls import sync_channel
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
    with sync_channel(args.grpc, _client_credentials(args)) as channel:
        stub = pb_grpc.RegistryStub(channel)
        try:
            resp = stub.RegisterBatch(pb.RegisterBatchRequest(
                idempotency_key=key, records=[pb.RecordInput(identifier=args.identifier,
                                                             values=values)]),
                timeout=10, metadata=_auth_metadata(args))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"registered {resp.registered} (idempotency key {key})")
    return 0


def _client_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS for the call when a CA is given (--tls-ca, else client_tls_ca); plaintext else."""
    from idnode import grpc_tls

    s = _settings(args)
    return grpc_tls.channel_credentials(args.tls_ca or s.client_tls_ca,
                                        args.tls_cert or s.client_tls_cert,
                                        args.tls_key or s.client_tls_key)


def _auth_metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    key = args.api_key or os.environ.get("IDNODE_API_KEY", "")
    return (("authorization", f"Bearer {key}"),) if key else ()


def cmd_resolve(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf import json_format

    from idnode.grpc_tls import sync_channel
    from idnode.v1 import registry_pb2 as pb
    from idnode.v1 import registry_pb2_grpc as pb_grpc

    with sync_channel(args.grpc, _client_credentials(args)) as channel:
        try:
            record = pb_grpc.RegistryStub(channel).Resolve(
                pb.ResolveRequest(identifier=args.identifier), timeout=10,
                metadata=_auth_metadata(args))
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json_format.MessageToJson(record, ensure_ascii=False))
    return 0


def cmd_hdl(args: argparse.Namespace) -> int:
    """`idnode hdl resolve|site`: the node as the Handle/IDIS protocol serves it."""
    import base64

    from idnode.api.handle import codec
    from idnode.api.handle.client import ClientError, call

    host, _, port = args.server.rpartition(":")
    if args.hdl_cmd == "site":
        opcode, body = codec.OC_GET_SITE_INFO, codec.str_field(b"/")
    else:
        opcode = codec.OC_RESOLUTION
        body = (codec.str_field(args.identifier.encode()) + codec.int_list(args.index)
                + codec.str_list([t.encode() for t in args.type]))
    try:
        r = asyncio.run(call(host or "127.0.0.1", int(port), opcode, body, udp=args.udp))
    except (OSError, TimeoutError, ClientError, codec.ProtocolError) as exc:
        print(f"error: {args.server} ({'UDP' if args.udp else 'TCP'}): {exc or type(exc).__name__}",
              file=sys.stderr)
        return 1
    if r.rc != codec.RC_SUCCESS:
        print(f"error: response code {r.rc}: {codec.decode_error(r.body)}", file=sys.stderr)
        return 1
    if opcode == codec.OC_GET_SITE_INFO:
        print(base64.b64encode(r.body).decode())
        return 0
    handle, values = codec.decode_resolution_response(r.body)
    print(f"{handle.decode()}: {len(values)} value(s) over {'UDP' if args.udp else 'TCP'}")
    for v in values:
        try:
            data = v.data.decode("utf-8")
        except UnicodeDecodeError:
            data = "base64:" + base64.b64encode(v.data).decode()
        print(f"{v.index}\t{v.type.decode()}\t{data}")
    return 0


# -- the reference top-level node, and sync status -------------------------------------------
@contextlib.contextmanager
def top_database(settings: Settings, url: str | None) -> Iterator[str]:
    """The top-level node's database: --database-url, or an embedded one in data_dir/top."""
    if url:
        from idnode.dsn import refuse_on_command_line

        refuse_on_command_line(url, "--database-url")
        yield url
        return
    with _embedded(settings.data_dir / "top", settings.embedded_pg_port + 1) as dsn:
        yield dsn


def cmd_top(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.grpc_port is None and args.top_cmd == "serve":
        settings = settings.with_overrides(grpc_port=50061)
    if getattr(args, "epp_port", None) is not None:
        settings = settings.with_overrides(top_epp_port=args.epp_port)
    if getattr(args, "escrow_port", None) is not None:
        settings = settings.with_overrides(top_escrow_port=args.escrow_port)
    _setup_logging(settings.log_level)
    if args.top_cmd == "anchor":
        # What node operators pin (anchor_jwks): handed over out of band, never learned from
        # the wire. Made here if the top has none yet, as `top serve` would.
        from idnode import keys as keyrings

        fmt = getattr(args, "format", "jwks")
        if fmt == "jwks":
            print(json.dumps(keyrings.keyring(settings, "top-anchor").jwks(), indent=2))
        elif fmt == "all":
            print(json.dumps(keyrings.anchor_jwks(settings, "top-anchor"), indent=2))
        else:
            from idnode.core.handleform import root_values

            ring = keyrings.anchor_keyring(settings, "top-anchor")
            roots = root_values([k for k in (ring.active(a) for a in ("RS256", "SM2SM3")) if k])
            _print_handle_roots(fmt, tuple(v.to_json() for v in roots))
        return 0
    with top_database(settings, args.database_url) as dsn:
        from idnode.store.migrations import TOP_SQL_DIR

        applied = asyncio.run(_migrate(dsn, TOP_SQL_DIR))
        if args.top_cmd == "migrate":
            print("applied: " + (", ".join(applied) or "nothing (schema is current)"))
            return 0
        if args.top_cmd == "node-add":
            return _top_node_add(dsn, args.node_prefix)
        from idnode.topnode import TopNode

        async def main() -> None:
            node = TopNode(settings, dsn)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            port = await node.start()
            print(f"READY grpc={port} epp={node.epp_port} escrow={node.escrow_port}",
                  file=sys.stderr, flush=True)
            await stop.wait()
            await node.stop(grace=5)

        _run(main())
    return 0


def _top_node_add(dsn: str, node_prefix: str) -> int:
    from idnode.core.errors import IdnodeError
    from idnode.store.db import Database, create_pool
    from idnode.store.top import BmsStore, TopStore
    from idnode.sync.bms import Bms
    from idnode.sync.top import TopLevel

    async def run() -> tuple[str, str]:
        db = Database(await create_pool(dsn, min_size=1, max_size=1))
        try:
            token = await TopLevel(TopStore(db)).add_node(node_prefix)
            return token, await Bms(BmsStore(db)).set_password(node_prefix)
        finally:
            await db.close()

    try:
        token, epp_password = asyncio.run(run())
    except IdnodeError as exc:
        print(f"error: {exc.reason}: {exc}", file=sys.stderr)
        return 1
    # EPP passwords are 6-16 characters (RFC 5730), so the EPP login has one of its own.
    print(f"node {node_prefix} admitted; its upstream_epp_password (shown once): "
          f"{epp_password}")
    print(f"node {node_prefix} admitted; its upstream_token (shown once):")
    print(token)
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from idnode.core import clock
    from idnode.store.notices import NoticeStore

    settings = _settings(args)
    if args.sync_cmd == "epp":
        from idnode.sync.epp.client import EppFailed, EppRefused, query

        if not settings.upstream_epp:
            print("sync epp: upstream_epp is not set", file=sys.stderr)
            return 2
        try:
            for line in asyncio.run(query(settings, args.verb, args.ids)):
                print(line)
        except (EppFailed, EppRefused) as exc:
            print(f"sync epp: {exc}", file=sys.stderr)
            return 1
        return 0
    upstreams = [u for u in (f"grpc://{settings.upstream_grpc}" if settings.upstream_grpc else "",
                             f"epp://{settings.upstream_epp}" if settings.upstream_epp else "")
                 if u]

    async def run(core: Core, _actor: Actor) -> None:
        if not upstreams:
            # A standalone node ships nothing: its outbox figures are no backlog, no outage.
            st = await core.outbox.state("")
            print("no upstream is configured: this node is standalone and ships nothing "
                  "(set upstream_grpc and/or upstream_epp to join a top-level node)")
            print(f"changes recorded locally: {st.newest_seq}")
            return
        for n, upstream in enumerate(upstreams):
            st = await core.outbox.state(upstream)
            backlog = st.newest_seq - st.acked_seq
            lag = "-"
            if st.oldest_pending_at is not None:
                lag = f"{(clock.now() - st.oldest_pending_at).total_seconds():.1f}s"
            if n:
                print()
            print(f"upstream:        {upstream or '(none configured)'}")
            print(f"acked seq:       {st.acked_seq}")
            print(f"newest seq:      {st.newest_seq}")
            print(f"backlog:         {backlog} event(s)")
            print(f"lag:             {lag}")
            print(f"last success:    "
                  f"{clock.iso(st.last_success_at) if st.last_success_at else 'never'}")
            if st.last_error:
                when = clock.iso(st.last_error_at) if st.last_error_at else ""
                print(f"last error:      {when} {st.last_error}")
            if upstream.startswith("epp://"):
                # Commands the BMS refused for good (the stream went on past them) and
                # messages it queued for this node (EPP <poll>).
                counts, recent = await NoticeStore(core.db).recent(upstream)
                print(f"refused:         {counts.get('refused', 0)} command(s)")
                print(f"messages:        {counts.get('message', 0)}")
                for notice in recent:
                    seq = f" seq {notice.seq}" if notice.seq is not None else ""
                    print(f"  {clock.iso(notice.at)} {notice.kind}{seq} {notice.command}: "
                          f"{notice.text}")

    return _core_command(args, run)


def cmd_escrow(args: argparse.Namespace) -> int:
    """Data escrow (docs/FEDERATION.md): deposit, verify, restore, and the node's key."""
    from idnode.sync import escrow

    settings = _settings(args)
    directory, key_path = escrow.paths(settings)
    if args.escrow_cmd == "key":
        escrow.signing_key(key_path)
        print(key_path.with_suffix(".pub.asc").read_text(), end="")
        return 0
    if args.escrow_cmd == "verify":
        return _escrow_verify(args)
    if args.escrow_cmd == "restore":
        return _escrow_restore(args, settings)
    if not settings.escrow_agent_cert:
        print("escrow: escrow_agent_cert (the escrow agent's OpenPGP certificate) is not set; "
              "deposits are only ever written encrypted to it", file=sys.stderr)
        return 2

    async def run(core: Core, _actor: Actor) -> None:
        from idnode.store.escrow import EscrowStore

        dep = await escrow.deposit(EscrowStore(core.db), settings.node_prefix, directory,
                                   escrow.signing_key(key_path),
                                   escrow.cert(settings.escrow_agent_cert), full=args.full)
        print(f"deposit {dep.id} {dep.kind} watermark {dep.watermark.isoformat()} "
              f"objects {dep.objects} deletes {dep.deletes}"
              + (f" prevId {dep.prev_id}" if dep.prev_id else ""))
        for f in dep.files:
            print(f)
        print(f"report: {await escrow.report(EscrowStore(core.db), settings, dep)}")

    try:
        return _core_command(args, run)
    except escrow.EscrowError as exc:
        print(f"escrow: {exc}", file=sys.stderr)
        return 1


def _escrow_verify(args: argparse.Namespace) -> int:
    """Checks a deposit as the escrow agent would: (1) the node's signature, (2) decryption,
    (3) the schemas, (4) the header's counts; each failure says which step."""
    from idnode.sync import escrow

    try:
        xml = escrow.open_deposit(
            Path(args.file), agent_key=_tsk(args.agent_key),
            signer=escrow.cert(args.signer_cert) if args.signer_cert else None,
            sig=Path(args.sig) if args.sig else None)
        c = escrow.read(xml)
    except (escrow.EscrowError, OSError) as exc:
        print(f"verify: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"deposit {c.id} {c.kind} of node {c.node_prefix} watermark {c.watermark}"
          + (f" prevId {c.prev_id}" if c.prev_id else "") + f": {len(c.enterprises)} "
          f"enterprise prefix(es), {len(c.identifiers)} identifier(s), "
          f"{len(c.deleted_ids) + len(c.deleted_prefixes)} delete(s); "
          f"{'signature, ' if args.signer_cert else ''}schema and counts OK")
    return 0


def _tsk(path: str | None) -> pysequoia.Tsk | None:
    if not path:
        return None
    import pysequoia

    return pysequoia.Tsk.from_bytes(Path(path).read_bytes())


def _escrow_restore(args: argparse.Namespace, settings: Settings) -> int:
    from idnode.sync import escrow

    try:
        deposits = [escrow.read(escrow.open_deposit(
            Path(f), agent_key=_tsk(args.agent_key),
            signer=escrow.cert(args.signer_cert) if args.signer_cert else None))
            for f in args.files]
    except (escrow.EscrowError, OSError) as exc:
        print(f"restore: FAILED: {exc}", file=sys.stderr)
        return 1

    async def run(core: Core, _actor: Actor) -> None:
        from idnode.store.escrow import RestoreStore

        n = await escrow.restore(RestoreStore(core.db), deposits)
        print(f"restored {len(deposits)} deposit(s) up to {deposits[-1].id}: {n} identifier(s)")

    try:
        return _core_command(args, run)
    except escrow.EscrowError as exc:
        print(f"restore: FAILED: {exc}", file=sys.stderr)
        return 1


def cmd_verify(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from idnode.crypto.errors import VerificationError
    from idnode.verify import load_json, verify, verify_trace

    try:
        record = load_json(args.record)
        if isinstance(record, dict) and "handle" in record and "values" in record:
            # a Handle REST record (GET /api/handles/{identifier}): its Handle/IDIS forms
            return _verify_forms(args, record, load_json(args.anchor), None)
        if args.trust:
            trust = load_json(args.trust)
        elif args.record.startswith(("http://", "https://")):
            u = urlsplit(args.record)
            trust = load_json(f"{u.scheme}://{u.netloc}/.well-known/idnode-trust.json")
        else:
            print("verify: --trust is needed with a record file", file=sys.stderr)
            return 2
        if args.anchor.startswith("http://"):
            # Everything is checked against the anchor: whoever is on a plaintext path could
            # hand over their own, and every forgery they sign would verify.
            print("verify: take the anchor from a file or an https URL, not plain http",
                  file=sys.stderr)
            return 2
        anchor = load_json(args.anchor)
        if args.since:
            return _verify_growth(args, load_json(args.since), record, trust, anchor)
        if "tree_head" in record:  # an identifier's trace (GET /api/trace/{identifier})
            count = verify_trace(record, trust, anchor)
            print(f"OK trace of {record.get('identifier')}: {count} event(s) in the signed log "
                  f"of size {record['tree_head']['size']}")
            return 0
        statement = verify(record, trust, anchor, min_version=args.min_version,
                           require_pq=args.require_pq)
    except VerificationError as exc:
        print(f"FAIL {exc.reason}: {exc.message}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"FAIL unreadable: {exc}")
        return 1
    print(f"OK {record.get('identifier')} version {record.get('version')} signed by node "
          f"{statement.get('node')} (batch of {statement.get('size')}, iat {statement.get('iat')})")
    forms = None
    try:
        if args.handle:
            forms = load_json(args.handle)
        elif args.record.startswith(("http://", "https://")):
            u = urlsplit(args.record)
            forms = load_json(f"{u.scheme}://{u.netloc}/api/handles/{u.path.lstrip('/')}")
    except (OSError, ValueError) as exc:
        print(f"FAIL unreadable: Handle form of the record: {exc}")
        return 1
    if forms is None:
        return 0 if not _wanted(args) - {"jose"} else _missing(args, set())
    return _verify_forms(args, forms, anchor, record)


def _wanted(args: argparse.Namespace) -> set[str]:
    return {f.strip() for f in (args.forms or "").split(",") if f.strip()}


def _missing(args: argparse.Namespace, present: set[str]) -> int:
    lacking = _wanted(args) - present - {"jose"}
    for form in sorted(lacking):
        print(f"FAIL {form} form: unsigned: the record carries no {form}-form signature")
    return 1 if lacking else 0


def _verify_forms(args: argparse.Namespace, doc: dict[str, object], anchor: dict[str, object],
                  jose: dict[str, object] | None) -> int:
    """`idnode verify`, the Handle (RS256) and IDIS (SM2SM3) forms of a record: every
    HS_SIGNATURE checked with hdllib's algorithm against the anchor's RSA and SM2 keys."""
    from urllib.parse import urlsplit

    from idnode.crypto.errors import VerificationError
    from idnode.verify import handle_lookup, load_json, verify_forms

    if jose is not None and doc.get("handle") != jose.get("identifier"):
        print(f"FAIL handle form: content_mismatch: Handle record {doc.get('handle')!r} is "
              f"not {jose.get('identifier')!r}")
        return 1
    base = None
    if args.record.startswith(("http://", "https://")):
        u = urlsplit(args.record)
        base = f"{u.scheme}://{u.netloc}"
    try:
        roots = [load_json(r) for r in (args.root or [])]
        results = verify_forms(doc, anchor, handle_lookup(base, roots))
    except VerificationError as exc:
        print(f"FAIL handle form: {exc.reason}: {exc.message}")
        return 1
    except (OSError, ValueError) as exc:
        print(f"FAIL unreadable: {exc}")
        return 1
    failed = False
    for r in results:
        if r.failure is not None:
            failed = True
            print(f"FAIL {r.form} form: {r.failure.reason}: {r.failure.message}")
        else:
            print(f"OK {r.form} form: {r.alg} HS_SIGNATURE {r.index} by {r.issuer}, chain "
                  f"{' -> '.join(r.chain[1:])} (anchor), covers value(s) "
                  f"{', '.join(map(str, sorted(r.covered)))}")
    if failed:
        return 1
    return _missing(args, {r.form for r in results})


def _verify_growth(args: argparse.Namespace, old: dict[str, object], new: dict[str, object],
                   trust: dict[str, object], anchor: dict[str, object]) -> int:
    """`verify HEAD --since KEPT_HEAD`: the log only grew between two signed tree heads."""
    from urllib.parse import urlsplit

    from idnode.verify import load_json, verify_log_growth

    if args.proof:
        proof = load_json(args.proof)
    elif args.record.startswith(("http://", "https://")):
        u = urlsplit(args.record)
        proof = load_json(f"{u.scheme}://{u.netloc}/api/log/consistency"
                          f"?from={old.get('size')}&to={new.get('size')}")
    else:
        print("verify: --proof is needed with a head file", file=sys.stderr)
        return 2
    size1, size2 = verify_log_growth(old, new, list(proof.get("proof", [])), trust, anchor)
    print(f"OK log {new.get('log')} grew from {size1} to {size2} event(s) without changing "
          "any of the first")
    return 0


def _print_handle_roots(fmt: str, root: tuple[dict[str, object], ...]) -> None:
    from idnode.core.handleform import bootstrap_json
    from idnode.core.records import Value
    from idnode.crypto import hsig

    values = [Value.from_json(v) for v in root]
    if fmt == "handle":
        print(json.dumps(bootstrap_json(values), indent=2, ensure_ascii=False))
        return
    keys_ = [hsig.parse(v.data).claims["publicKey"] for v in values
             if v.type == "HS_CERT" and hsig.parse(v.data).alg == "RS256"]
    print(json.dumps(keys_, indent=2))


def cmd_keys(args: argparse.Namespace) -> int:
    from idnode import keys as keyrings

    settings = _settings(args)
    ring = keyrings.keyring(settings, create=False)
    if args.keys_cmd == "generate":
        key = ring.generate(args.alg)
        ring.save()
        print(f"generated {key.alg} key {key.kid}")
    elif args.keys_cmd == "rotate":
        key = ring.rotate(args.alg)
        ring.save()
        print(f"rotated: {key.alg} key {key.kid} is now active; the previous one is retired "
              "(it still verifies old records). Restart the node to sign with it.")
    elif args.keys_cmd == "retire":
        ring.retire(args.kid)
        ring.save()
        print(f"retired {args.kid}")
    elif args.keys_cmd == "anchor":
        # The development anchor's public keys: what a verifier trusts for a standalone node.
        if args.format == "jwks":
            print(json.dumps(keyrings.anchor_jwks(settings, "anchor"), indent=2))
        else:
            _print_handle_roots(args.format, keyrings.self_certified_forms(settings).root)
    else:
        _listing(args.json, ["kid", "alg", "state"],
                 [[key.kid, key.alg, "retired" if key.retired_at else "active"]
                  for key in ring.keys])
    return 0


def _listing(as_json: bool, columns: list[str], rows: list[list[object]]) -> None:
    """A listing for people (a header, then tab-separated rows) or, with --json, an array of
    objects for scripts."""
    if as_json:
        print(json.dumps([dict(zip(columns, row)) for row in rows], ensure_ascii=False,
                         indent=2, default=str))
        return
    print("\t".join(c.upper().replace("_", " ") for c in columns))
    for row in rows:
        print("\t".join("-" if v is None else json.dumps(v, ensure_ascii=False)
                        if isinstance(v, (dict, list)) else str(v) for v in row))


def cmd_psql(args: argparse.Namespace) -> int:
    """psql (shipped with the embedded server) on the node's database."""
    from idnode.embedded import _bin

    from idnode.dsn import split_password

    settings = _settings(args)
    with database(settings) as (dsn, _):
        # A configured password goes to psql in its environment, not on its command line.
        bare, password = split_password(dsn)
        env = dict(os.environ, **({"PGPASSWORD": password} if password is not None else {}))
        return subprocess.call([_bin("psql"), bare, *(["-c", args.command] if args.command
                                                       else [])], env=env)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idnode", description="idnode: identifier resolution secondary node")
    p.add_argument("--config", help="TOML settings file (default $IDNODE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the node (embedded PostgreSQL unless a DSN is set)")
    s.add_argument("--demo", action="store_true", help="load the demo prefix and records")
    s.add_argument("--workers", type=int, help="processes sharing the ports (default 1)")
    s.add_argument("--http-port", type=int)
    s.add_argument("--grpc-port", type=int)
    s.add_argument("--handle-port", type=int, help="Handle/IDIS protocol port, TCP and UDP "
                   "(default 2641)")
    s.add_argument("--metrics-port", type=int, help="the operator listener's port (/metrics; "
                   "default 9464 on metrics_host, 127.0.0.1)")
    s.add_argument("--migrate", action="store_true",
                   help="apply pending migrations first (always done on the embedded server)")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("worker", help="(internal) one process of `serve --workers N`")
    w.add_argument("--dsn-fd", type=int, help="read the DSN from this inherited descriptor")
    w.add_argument("--dsn", help="the DSN, if it holds no password (default: database_url)")
    w.add_argument("--worker-id", default="0")
    w.add_argument("--http-port", type=int)
    w.add_argument("--grpc-port", type=int)
    w.add_argument("--handle-port", type=int)
    w.add_argument("--metrics-port", type=int)
    w.set_defaults(func=cmd_worker)

    m = sub.add_parser("migrate", help="apply pending schema migrations")
    m.set_defaults(func=cmd_migrate)

    en = sub.add_parser("enterprise", help="onboard and list enterprises")
    ens = en.add_subparsers(dest="enterprise_cmd", required=True)
    ea = ens.add_parser("add", help="onboard an enterprise (prints its id last)")
    ea.add_argument("--name", required=True)
    ea.add_argument("--uscc", required=True, help="统一社会信用代码 (18 characters)")
    ea.add_argument("--contact", default="")
    ens.add_parser("list", help="list enterprises and their prefixes")
    en.set_defaults(func=cmd_enterprise)

    px = sub.add_parser("prefix", help="allocate, suspend, resume, revoke and list prefixes")
    pxs = px.add_subparsers(dest="prefix_cmd", required=True)
    pa = pxs.add_parser("allocate", help="allocate a prefix to an enterprise")
    pa.add_argument("--enterprise", type=int, required=True)
    pa.add_argument("--prefix", help="the prefix to allocate (default: the next free one)")
    ps = pxs.add_parser("suspend", help="refuse writes (and, optionally, resolution)")
    ps.add_argument("prefix")
    ps.add_argument("--refuse-resolution", action="store_true")
    pxs.add_parser("resume", help="make a suspended prefix active again").add_argument("prefix")
    pxs.add_parser("revoke", help="revoke a prefix for good").add_argument("prefix")
    pxs.add_parser("list", help="list prefixes")
    px.set_defaults(func=cmd_prefix)

    k = sub.add_parser("key", help="issue, rotate, revoke and list API keys")
    ks = k.add_subparsers(dest="key_cmd", required=True)
    ki = ks.add_parser("issue", help="issue a key (printed once, on the last line)")
    who = ki.add_mutually_exclusive_group(required=True)
    who.add_argument("--enterprise", type=int)
    who.add_argument("--operator", action="store_true", help="an operator key")
    ki.add_argument("--scope", default="read,write", help="comma-separated: read,write,admin")
    ki.add_argument("--prefix", action="append", default=[], help="limit to a prefix (repeat)")
    ki.add_argument("--label", default="")
    ki.add_argument("--expires-days", type=int, default=0)
    ki.add_argument("--cert", help="PEM client certificate that authenticates as this key (mTLS)")
    ki.add_argument("--handle-admin", metavar="INDEX:PREFIX/SUFFIX",
                    help="bind a Handle admin (e.g. 300:88.118.8/ADMIN) to --public-key "
                         "instead of issuing an API key")
    ki.add_argument("--public-key", metavar="FILE",
                    help="the Handle admin's RSA/DSA public key (PEM or Handle binary)")
    kr = ks.add_parser("rotate", help="issue a replacement; the old key expires after a grace")
    kr.add_argument("key_id")
    kr.add_argument("--grace-hours", type=float, default=24)
    ks.add_parser("revoke", help="revoke a key now").add_argument("key_id")
    kl = ks.add_parser("list", help="list keys")
    kl.add_argument("--enterprise", type=int)
    kl.add_argument("--json", action="store_true", help="an array of objects, for scripts")
    k.set_defaults(func=cmd_key)

    tp = sub.add_parser("template", help="metadata templates (JSON Schema) per prefix")
    tps = tp.add_subparsers(dest="template_cmd", required=True)
    tset = tps.add_parser("set", help="attach a template to a prefix")
    tset.add_argument("prefix")
    src = tset.add_mutually_exclusive_group(required=True)
    src.add_argument("--builtin", choices=("agri-product-unit", "industrial-part", "batch"))
    src.add_argument("--file", help="a JSON Schema file")
    tset.add_argument("--name", help="template name (with --file)")
    tps.add_parser("show", help="show a prefix's template").add_argument("prefix")
    tp.set_defaults(func=cmd_template)

    g1 = sub.add_parser("gs1", help="GS1: map a GS1 Company Prefix to an enterprise prefix")
    g1s = g1.add_subparsers(dest="gs1_cmd", required=True)
    gm = g1s.add_parser("map", help="GTINs of GCP resolve under PREFIX (/01/{gtin}/…)")
    gm.add_argument("gcp")
    gm.add_argument("prefix")
    g1.set_defaults(func=cmd_gs1)

    au = sub.add_parser("audit", help="list the audit trail")
    au.add_argument("--prefix")
    au.add_argument("--enterprise", type=int)
    au.add_argument("--limit", type=int, default=100)
    au.add_argument("--json", action="store_true", help="an array of objects, for scripts")
    au.set_defaults(func=cmd_audit)

    top = sub.add_parser("top", help="the reference top-level node (国家顶级节点 role)")
    tops = top.add_subparsers(dest="top_cmd", required=True)
    for name, text in (("serve", "run it (gRPC; default port 50061)"),
                       ("migrate", "apply its schema migrations"),
                       ("node-add", "admit a secondary node; prints its token"),
                       ("anchor", "print its trust anchor's public JWKS, for the nodes' "
                                  "anchor_jwks")):
        tp_ = tops.add_parser(name, help=text)
        tp_.add_argument("--database-url", help="its own database (default: embedded)")
        tp_.add_argument("--grpc-port", type=int)
        if name == "serve":
            tp_.add_argument("--epp-port", type=int,
                             help="the BMS's EPP listener (default 700; 0: a free port; -1: off)")
            tp_.add_argument("--escrow-port", type=int,
                             help="the escrow report listener (default off; 0: a free port)")
        if name == "anchor":
            tp_.add_argument("--format", choices=("jwks", "all", "handle", "handle-jwk"),
                             default="jwks",
                             help="jwks: the JOSE anchor the top presents; all: with its "
                                  "Handle roots (RSA, SM2), what nodes pin to serve the Handle "
                                  "and IDIS forms and `idnode verify` takes; handle / "
                                  "handle-jwk: the trust roots for Handle.Net's verifier")
        if name == "node-add":
            tp_.add_argument("node_prefix", help="the secondary node's prefix, e.g. 88.118")
    top.set_defaults(func=cmd_top)

    es = sub.add_parser("escrow", help="data escrow deposits (RFC 8909 framework)")
    ess = es.add_subparsers(dest="escrow_cmd", required=True)
    ed = ess.add_parser("deposit", help="write a deposit, encrypted to escrow_agent_cert")
    kind = ed.add_mutually_exclusive_group(required=True)
    kind.add_argument("--full", action="store_true", help="the whole of the node's core data")
    kind.add_argument("--incremental", action="store_true",
                      help="what changed since the previous deposit (RFC 8909 DIFF)")
    ev = ess.add_parser("verify", help="check a deposit: signature, decryption, schema, counts")
    ev.add_argument("file", help="a .ryde (with its .sig beside it) or a plain .xml deposit")
    ev.add_argument("--signer-cert", help="the node's escrow certificate (`escrow key`)")
    ev.add_argument("--agent-key", help="the escrow agent's OpenPGP secret key (to decrypt)")
    ev.add_argument("--sig", help="the detached signature (default: FILE with .sig)")
    er = ess.add_parser("restore", help="rebuild an empty node database from deposits")
    er.add_argument("files", nargs="+", help="a FULL deposit, then the DIFFs after it")
    er.add_argument("--signer-cert")
    er.add_argument("--agent-key")
    ess.add_parser("key", help="print the node's escrow signing certificate (for the agent)")
    es.set_defaults(func=cmd_escrow)

    sy = sub.add_parser("sync", help="upward sync with the top-level node")
    sys_ = sy.add_subparsers(dest="sync_cmd", required=True)
    sys_.add_parser("status", help="acknowledged position, backlog, lag, last success and error")
    se = sys_.add_parser("epp", help="ask the top-level node's BMS over EPP (upstream_epp)")
    se.add_argument("verb", choices=("check", "info"))
    se.add_argument("ids", nargs="+", help="enterprise prefixes (88.118.8) or identifiers")
    sy.set_defaults(func=cmd_sync)

    ps_ = sub.add_parser("psql", help="psql on the node's database (embedded or configured)")
    ps_.add_argument("-c", "--command", help="one SQL command to run (default: interactive)")
    ps_.set_defaults(func=cmd_psql)

    vf = sub.add_parser("verify", help="verify a record offline against a trust anchor")
    vf.add_argument("record", help="a record or trace JSON file, or http://node/{identifier}, "
                                   "http://node/api/trace/{identifier}, or a tree head with "
                                   "--since")
    vf.add_argument("--anchor", required=True, help="the trust anchor's JWKS (file or URL)")
    vf.add_argument("--trust", help="the node's key statements (default: fetched from the "
                                    "record's node at /.well-known/idnode-trust.json)")
    vf.add_argument("--min-version", type=int, default=0,
                    help="fail if the record is older than this version (replay)")
    vf.add_argument("--require-pq", action="store_true",
                    help="require the post-quantum (ML-DSA-65) signature too")
    vf.add_argument("--since", metavar="KEPT_HEAD",
                    help="RECORD is a tree head (http://node/api/log/head): check that it "
                         "extends this earlier signed head (file or URL) by a consistency proof")
    vf.add_argument("--proof", help="the consistency proof (JSON of /api/log/consistency; "
                                    "default: fetched from RECORD's node)")
    vf.add_argument("--handle", metavar="HANDLE_JSON",
                    help="the record as Handle clients get it (GET /api/handles/{identifier}), "
                         "to check its Handle and IDIS forms too (default with a URL: fetched)")
    vf.add_argument("--root", action="append", metavar="RECORDS_JSON",
                    help="records for the chains (the root record 0.0/0.0: `idnode keys anchor "
                         "--format handle`); default with a URL: fetched from the node")
    vf.add_argument("--forms", help="forms that must be present, comma list of jose, handle, "
                                    "idis (default: check those the record carries)")
    vf.set_defaults(func=cmd_verify)

    ky = sub.add_parser("keys", help="the node's signing keys")
    kys = ky.add_subparsers(dest="keys_cmd", required=True)
    kys.add_parser("list", help="list keys").add_argument(
        "--json", action="store_true", help="an array of objects, for scripts")
    for name in ("generate", "rotate"):
        kp = kys.add_parser(name, help=f"{name} a key")
        kp.add_argument("--alg", default="EdDSA", choices=("EdDSA", "ES256", "ML-DSA-65"))
    kys.add_parser("retire", help="retire a key (it still verifies)").add_argument("kid")
    ka = kys.add_parser("anchor", help="print the development trust anchor's JWKS")
    ka.add_argument("--format", choices=("jwks", "handle", "handle-jwk"), default="jwks",
                    help="jwks: all its keys, JOSE and the Handle roots (RSA, SM2), for `idnode "
                         "verify`; handle: the root record 0.0/0.0 in hdllib's "
                         "bootstrap_handles JSON, the trust roots Handle.Net's verifier reads; "
                         "handle-jwk: its RSA root as a JWK array")
    ky.set_defaults(func=cmd_keys)

    lb = sub.add_parser(
        "labels", help="print QR codes of identifiers' scan URLs (SVG, PNG, or A4 sheets)",
        description="QR codes that encode each identifier's scan URL ({base}/{identifier}, "
                    "percent-encoded as the node decodes it). --format svg or png writes one "
                    "file per identifier into the directory --out, plus index.csv (file, "
                    "identifier, url); SVGs carry the identifier as a caption, PNGs the code "
                    "alone. pdf writes one A4 sheet of COLSxROWS labels per page to the file "
                    "--out; svg-sheet writes those pages as SVG files into --out. "
                    "PDF captions use Courier: an identifier with non-ASCII characters is "
                    "printed in its percent-encoded URL form there (SVG keeps it as is).")
    lb.add_argument("identifiers", nargs="*", metavar="ID", help="identifiers to print")
    lb.add_argument("--from", dest="from_file", action="append", default=[], metavar="FILE",
                    help="a file of identifiers, one a line ('-': stdin; '#' lines skipped)")
    lb.add_argument("--prefix", action="append", default=[],
                    help="every identifier registered under this prefix (the node's database)")
    lb.add_argument("--out", required=True, help="directory (svg, png, svg-sheet) or file (pdf)")
    lb.add_argument("--format", choices=("svg", "png", "pdf", "svg-sheet"),
                    help="default: pdf if --out ends in .pdf, else svg")
    lb.add_argument("--base-url", help="the node's public URL (default: advertise_http, else "
                                       "http://http_host:http_port)")
    lb.add_argument("--ecc", default="M", choices=("M", "Q", "H"),
                    help="minimum error correction level (default M; raised when it fits)")
    lb.add_argument("--scale", type=int, default=10,
                    help="svg/png: pixels per module (default 10)")
    lb.add_argument("--grid", default="5x8", help="pdf/svg-sheet: COLSxROWS per A4 page")
    lb.add_argument("--crop-marks", action="store_true", help="pdf/svg-sheet: cutting marks")
    lb.add_argument("--jobs", type=int, help="encoder processes (default: the CPU count)")
    lb.set_defaults(func=cmd_labels)

    r = sub.add_parser("register", help="register one identifier over gRPC")
    r.add_argument("identifier")
    r.add_argument("--value", action="append", default=[], metavar="TYPE=DATA",
                   help="a string value; repeat for more (indexes 1, 2, …)")
    r.add_argument("--idempotency-key")
    r.add_argument("--grpc", default="127.0.0.1:50051", help="node gRPC address")
    r.add_argument("--api-key", help="write key (default $IDNODE_API_KEY)")
    _tls_arguments(r)
    r.set_defaults(func=cmd_register)

    hd = sub.add_parser("hdl", help="ask the node over the Handle/IDIS protocol (TCP or UDP)")
    hds = hd.add_subparsers(dest="hdl_cmd", required=True)
    hr = hds.add_parser("resolve", help="resolve an identifier (its public values)")
    hr.add_argument("identifier")
    hr.add_argument("--index", type=int, action="append", default=[],
                    help="only this value index (repeatable)")
    hr.add_argument("--type", action="append", default=[],
                    help="only this value type; 'product.' also matches its subtypes")
    hs = hds.add_parser("site", help="the node's HS_SITE record (base64)")
    for cmd in (hr, hs):
        cmd.add_argument("--server", default="127.0.0.1:2641", help="HOST:PORT")
        cmd.add_argument("--udp", action="store_true", help="over UDP (default TCP)")
    hd.set_defaults(func=cmd_hdl)

    v = sub.add_parser("resolve", help="resolve one identifier over gRPC")
    v.add_argument("identifier")
    v.add_argument("--grpc", default="127.0.0.1:50051", help="node gRPC address")
    v.add_argument("--api-key", help="read key, to see private values (default $IDNODE_API_KEY)")
    _tls_arguments(v)
    v.set_defaults(func=cmd_resolve)
    return p


def _tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", help="CA of the node's gRPC certificate: TLS only "
                                    "(default: setting client_tls_ca; none: plaintext)")
    p.add_argument("--tls-cert", help="client certificate for mutual TLS (client_tls_cert)")
    p.add_argument("--tls-key", help="its private key (client_tls_key)")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ValueError as exc:  # bad settings
        print(f"idnode: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
