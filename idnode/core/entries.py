"""What the hot cache holds for an identifier: a resolved record (Resolved), the same served
while the database is unreachable (Stale), or the negative entry ABSENT."""
from __future__ import annotations

import enum
from typing import Any

from idnode.core.records import Record


class Resolved:
    """A cache entry: the record, and a memo of what was derived from it.

    `rendered` is an opaque per-entry memo slot, keyed by whoever fills it: core never
    produces or reads HTTP bodies. The transports keep their encodings of the record there
    (api/http its response bodies, api/handle its wire messages) and core/handleform the
    Handle-form signature values it made for it, so each is made once per cached version and
    dropped with the entry when a write invalidates it. The HTTP hot path reads it on every
    cache hit, which is why it is a plain dict in a slot."""

    __slots__ = ("record", "rendered", "prefix")
    #: True when served because the database could not be asked (see Stale).
    stale = False

    def __init__(self, record: Record) -> None:
        self.record = record
        self.rendered: dict[Any, Any] = {}
        self.prefix = record.identifier.split("/", 1)[0]


class Stale(Resolved):
    """A cache entry served while the database is unreachable (stale-if-error): the last
    record this process knew, which transports may say is unconfirmed. It shares the
    entry's memo, so serving it costs no more than a hit."""

    __slots__ = ()
    stale = True

    def __init__(self, entry: Resolved) -> None:
        self.record = entry.record
        self.rendered = entry.rendered
        self.prefix = entry.prefix


class Absent(enum.Enum):
    """The negative cache entry: the identifier was not registered when last looked up. An
    enum of one member, so `entry is ABSENT` narrows the type for mypy."""

    ABSENT = enum.auto()


ABSENT = Absent.ABSENT
