"""`idnode verify`: a record, trace or tree head checked offline against a trust anchor."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


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


def add_verify(sub: Subcommands) -> None:
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
