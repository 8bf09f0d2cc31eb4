"""The CLI's parser: --version, a suggestion for a mistyped command, every command family in a
module of its own, and errors other than unusable settings not hidden behind 'bad settings'."""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest

import idnode.cli
from idnode.cli import build_parser, main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"idnode {metadata.version('idnode')}"


@pytest.mark.parametrize("typed, meant", [("serv", "serve"), ("reslove", "resolve"),
                                          ("enterprize", "enterprise")])
def test_a_mistyped_command_gets_a_suggestion(typed: str, meant: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([typed])
    assert done.value.code == 2
    assert f"(did you mean '{meant}'?)" in capsys.readouterr().err


def test_a_mistyped_subcommand_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["prefix", "alocate"])
    assert "(did you mean 'allocate'?)" in capsys.readouterr().err


def test_nothing_close_gets_no_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["zzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_every_command_is_there() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {
        "serve", "worker", "migrate", "enterprise", "prefix", "key", "template", "gs1",
        "audit", "top", "escrow", "sync", "psql", "verify", "keys", "labels", "register",
        "hdl", "resolve", "demo"}


def test_command_modules_stay_small() -> None:
    for path in Path(idnode.cli.__file__).parent.glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 400, f"{path.name}: {lines} lines"


def test_an_error_that_is_not_about_settings_is_not_called_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A bug (here a ValueError from inside a command) shows as the error it is.
    def broken(_args: object) -> int:
        raise ValueError("a bug, not a setting")

    parser = build_parser()
    monkeypatch.setattr(idnode.cli, "build_parser", lambda: parser)
    args = parser.parse_args(["migrate"])
    monkeypatch.setattr(args, "func", broken, raising=False)
    monkeypatch.setattr(parser, "parse_args", lambda _argv=None: args)
    with pytest.raises(ValueError, match="a bug"):
        main(["migrate"])
