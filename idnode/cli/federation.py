"""`idnode top` (the reference top-level node) and `idnode sync` (upward sync status, EPP
queries)."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from idnode.config import Settings

if TYPE_CHECKING:
    from idnode.core.audit import Actor
    from idnode.node import Core
from idnode.cli.common import (
    _core_command,
    _embedded,
    _migrate,
    _print_handle_roots,
    _run,
    _settings,
    _setup_logging,
)

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


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
            from idnode.core.handlecerts import root_values

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


def add_top(sub: Subcommands) -> None:
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
            tp_.add_argument("node_prefix", help="the secondary node's prefix, e.g. 0.118")
    top.set_defaults(func=cmd_top)


def add_sync(sub: Subcommands) -> None:
    sy = sub.add_parser("sync", help="upward sync with the top-level node")
    sys_ = sy.add_subparsers(dest="sync_cmd", required=True)
    sys_.add_parser("status", help="acknowledged position, backlog, lag, last success and error")
    se = sys_.add_parser("epp", help="ask the top-level node's BMS over EPP (upstream_epp)")
    se.add_argument("verb", choices=("check", "info"))
    se.add_argument("ids", nargs="+", help="enterprise prefixes (0.118.8) or identifiers")
    sy.set_defaults(func=cmd_sync)
