"""`idnode …` commands: parse arguments, call into the package, print. One module per family
of commands (serve, admin, client, labels, federation, escrow, verify, keys), each adding its
own subcommands to the parser built here."""
from __future__ import annotations

import argparse
import difflib
import sys
from importlib import metadata
from typing import TYPE_CHECKING, cast

from idnode.cli.common import database, local_operator

if TYPE_CHECKING:
    from idnode.cli.common import Subcommands

from idnode import config
from idnode.cli import admin, client, escrow, federation, keys, labels, serve, verify

__all__ = ["build_parser", "database", "local_operator", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse with a suggestion for a mistyped command ("did you mean ...?")."""

    def error(self, message: str) -> None:  # type: ignore[override]
        choice = message.partition("invalid choice: ")[2]
        if choice:
            wrong = choice.split("'")[1] if "'" in choice else ""
            known = [a for action in self._actions if action.choices
                     for a in action.choices]
            close = difflib.get_close_matches(wrong, known, n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        super().error(message)


def _version() -> str:
    try:
        return metadata.version("idnode")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="idnode", description="idnode: identifier resolution secondary node")
    p.add_argument("--config", help="TOML settings file (default $IDNODE_CONFIG)")
    p.add_argument("--version", action="version", version=f"idnode {_version()}")
    # Subcommands' parsers are _Parser too, so their mistyped subcommands get suggestions.
    sub = cast("Subcommands", p.add_subparsers(dest="command", required=True,
                                               metavar="COMMAND", parser_class=_Parser))
    serve.add_serve(sub)
    serve.add_worker(sub)
    serve.add_migrate(sub)
    admin.add_enterprise(sub)
    admin.add_prefix(sub)
    admin.add_key(sub)
    admin.add_template(sub)
    admin.add_gs1(sub)
    admin.add_audit(sub)
    federation.add_top(sub)
    escrow.add_escrow(sub)
    federation.add_sync(sub)
    serve.add_psql(sub)
    serve.add_demo(sub)
    verify.add_verify(sub)
    keys.add_keys(sub)
    labels.add_labels(sub)
    client.add_register(sub)
    client.add_hdl(sub)
    client.add_resolve(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except config.SettingsError as exc:  # unusable settings: say which, no traceback
        print(f"idnode: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
