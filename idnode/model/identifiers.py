"""An identifier's two parts, the type the rules parse into and the stores key on (parsing and
its rules: idnode.core.identifiers)."""
from __future__ import annotations

from typing import NamedTuple


class Identifier(NamedTuple):
    """PREFIX/SUFFIX, parsed. A named tuple: registration parses 10,000 a call."""

    prefix: str
    suffix: str

    def __str__(self) -> str:
        return f"{self.prefix}/{self.suffix}"
