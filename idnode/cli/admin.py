"""`idnode enterprise`, `prefix`, `key`, `template`, `gs1` and `audit`: the operator's
administration, through the node's core as the local operator."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from idnode.core.audit import Actor
    from idnode.node import Core
from idnode.cli.common import _core_command, _listing

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


def cmd_enterprise(args: argparse.Namespace) -> int:
    async def run(core: Core, actor: Actor) -> None:
        if args.enterprise_cmd == "add":
            row = await core.tenancy.create_enterprise(actor, args.name, args.uscc, args.contact)
            print(f"enterprise {row.id} {row.name} ({row.uscc}) onboarded")
            print(row.id)
        else:
            _listing(args.json, ["id", "uscc", "name", "prefixes"],
                     [[row.id, row.uscc, row.name, ",".join(row.prefixes) or "-"]
                      for row in await core.tenancy.enterprises(actor)])

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
        elif args.json:
            _listing(True, ["prefix", "status", "refuse_resolution", "enterprise", "template"],
                     [[row.prefix, row.status, row.refuse_resolution, row.enterprise_id,
                       row.template_name] for row in await core.prefix_store.all()])
        else:
            print("PREFIX\tSTATUS\tENTERPRISE\tTEMPLATE")
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
            cert = Path(args.cert).read_text(encoding="ascii") if args.cert else ""
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


def add_enterprise(sub: Subcommands) -> None:
    en = sub.add_parser("enterprise", help="onboard and list enterprises")
    ens = en.add_subparsers(dest="enterprise_cmd", required=True)
    ea = ens.add_parser("add", help="onboard an enterprise (prints its id last)")
    ea.add_argument("--name", required=True)
    ea.add_argument("--uscc", required=True, help="统一社会信用代码 (18 characters)")
    ea.add_argument("--contact", default="")
    ens.add_parser("list", help="list enterprises and their prefixes").add_argument(
        "--json", action="store_true", help="an array of objects, for scripts")
    en.set_defaults(func=cmd_enterprise)


def add_prefix(sub: Subcommands) -> None:
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
    pxs.add_parser("list", help="list prefixes").add_argument(
        "--json", action="store_true", help="an array of objects, for scripts")
    px.set_defaults(func=cmd_prefix)


def add_key(sub: Subcommands) -> None:
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
                    help="bind a Handle admin (e.g. 300:0.118.8/ADMIN) to --public-key "
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


def add_template(sub: Subcommands) -> None:
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


def add_gs1(sub: Subcommands) -> None:
    g1 = sub.add_parser("gs1", help="GS1: map a GS1 Company Prefix to an enterprise prefix")
    g1s = g1.add_subparsers(dest="gs1_cmd", required=True)
    gm = g1s.add_parser("map", help="GTINs of GCP resolve under PREFIX (/01/{gtin}/…)")
    gm.add_argument("gcp")
    gm.add_argument("prefix")
    g1.set_defaults(func=cmd_gs1)


def add_audit(sub: Subcommands) -> None:
    au = sub.add_parser("audit", help="list the audit trail")
    au.add_argument("--prefix")
    au.add_argument("--enterprise", type=int)
    au.add_argument("--limit", type=int, default=100)
    au.add_argument("--json", action="store_true", help="an array of objects, for scripts")
    au.set_defaults(func=cmd_audit)
