"""Shared by the command modules: settings, the database (embedded or configured), the
node's core as the local operator, listings, gRPC client options."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from idnode import config
from idnode.config import Settings

if TYPE_CHECKING:
    import grpc

    from idnode.core.audit import Actor
    from idnode.node import Core

T = TypeVar("T")

log = logging.getLogger("idnode")

if TYPE_CHECKING:
    #: What each command module adds its commands to.
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]


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
                            grpc_workers=getattr(args, "grpc_workers", None),
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
    from idnode.store import migrations

    return await migrations.migrate_dsn(dsn, sql_dir or migrations.SQL_DIR)


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


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


def _tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", help="CA of the node's gRPC certificate: TLS only "
                                    "(default: setting client_tls_ca; none: plaintext)")
    p.add_argument("--tls-cert", help="client certificate for mutual TLS (client_tls_cert)")
    p.add_argument("--tls-key", help="its private key (client_tls_key)")


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


def _print_handle_roots(fmt: str, root: tuple[dict[str, object], ...]) -> None:
    from idnode.core.handlecerts import bootstrap_json
    from idnode.core.records import Value
    from idnode.crypto import hsig

    values = [Value.from_json(v) for v in root]
    if fmt == "handle":
        print(json.dumps(bootstrap_json(values), indent=2, ensure_ascii=False))
        return
    keys_ = [hsig.parse(v.data).claims["publicKey"] for v in values
             if v.type == "HS_CERT" and hsig.parse(v.data).alg == "RS256"]
    print(json.dumps(keys_, indent=2))
