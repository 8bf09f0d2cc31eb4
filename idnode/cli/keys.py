"""`idnode keys`: the node's signing keys and the development trust anchor."""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from idnode.cli.common import _listing, _print_handle_roots, _settings

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


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


def add_keys(sub: Subcommands) -> None:
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
