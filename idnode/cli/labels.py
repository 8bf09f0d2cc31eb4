"""`idnode labels`: QR code labels of identifiers' scan URLs."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from idnode.config import Settings

if TYPE_CHECKING:
    from idnode.core.audit import Actor
    from idnode.labels import IdentifierList
    from idnode.node import Core
from idnode.cli.common import _settings, _setup_logging, _with_core, database

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands


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


def add_labels(sub: Subcommands) -> None:
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
