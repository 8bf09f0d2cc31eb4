"""`idnode escrow`: data escrow deposits, their verification and restoring from them."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from idnode.config import Settings

if TYPE_CHECKING:
    import pysequoia

    from idnode.core.audit import Actor
    from idnode.node import Core
from idnode.cli.common import _core_command, _settings

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


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


def add_escrow(sub: Subcommands) -> None:
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
