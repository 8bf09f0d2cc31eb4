"""Database URLs and their secrets: what may go on a command line (visible to every local user
in `ps` and /proc/<pid>/cmdline) and what must travel another way."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def with_database(dsn: str, name: str) -> str:
    """The DSN of another database on the same server (its parameters, e.g. passfile, kept)."""
    return urlunsplit(urlsplit(dsn)._replace(path="/" + name))
