"""Database URLs and their secrets: what may go on a command line (visible to every local user
in `ps` and /proc/<pid>/cmdline) and what must travel another way."""
from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from idnode.config import SettingsError


def split_password(dsn: str) -> tuple[str, str | None]:
    """(the DSN without its password, the password or None), for a postgresql:// URL with
    the password in its user part or as a `password=` parameter."""
    parts = urlsplit(dsn)
    password = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        if colon:
            password = unquote(secret)
            netloc = f"{user}@{hostinfo}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    rest = [(k, v) for k, v in query if k != "password"]
    if len(rest) != len(query):
        password = next(v for k, v in query if k == "password")
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(rest, safe="/"))), password


def with_database(dsn: str, name: str) -> str:
    """The DSN of another database on the same server (its parameters, e.g. passfile, kept)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))


def has_password(dsn: str) -> bool:
    return split_password(dsn)[1] is not None


def refuse_on_command_line(dsn: str, option: str) -> None:
    """Raises ValueError for a DSN with a password given as a command-line argument."""
    if has_password(dsn):
        raise SettingsError(
            f"{option} carries a password, which every local user could read in ps; give the "
            "DSN in IDNODE_DATABASE_URL or the config file, or the password in a 0600 "
            "password file (?passfile=…) instead")


def read_fd(fd: int) -> str:
    """The text written to an inherited pipe (read to its end, then closed)."""
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        return fh.read()


def pass_by_pipe(text: str) -> int:
    """A pipe's read end holding `text` (the write end closed), for a child to inherit."""
    data = text.encode()
    read, write = os.pipe()
    # A DSN is far below the pipe buffer (64 KiB on Linux): the write cannot block.
    assert len(data) < 16384, "too long for a pipe written before the reader starts"
    try:
        os.write(write, data)
    finally:
        os.close(write)
    return read
