"""The traceability log's rows: an event to append (with its attachments' references) and an
event as the log holds it."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class AttachmentRef:
    sha256: bytes
    media_type: str
    size: int


class NewEvent(NamedTuple):
    """An event to append (a NamedTuple: immutable, and built once for every event of every
    append in a third of a frozen dataclass's time)."""

    identifier: str
    kind: str
    occurred_at: datetime
    place: str
    actor: str
    #: The attributes' JSON text.
    attrs: str
    corrects: int | None
    inputs: tuple[str, ...] = ()
    attachments: tuple[AttachmentRef, ...] = ()


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored event: its leaf in the log, what was appended, and when."""

    leaf: int
    identifier: str
    kind: str
    occurred_at: datetime
    place: str
    actor: str
    attrs: str
    corrects: int | None
    recorded_at: datetime
    inputs: tuple[str, ...]
    attachments: tuple[AttachmentRef, ...]
    leaf_hash: bytes

    def as_new(self) -> NewEvent:
        return NewEvent(self.identifier, self.kind, self.occurred_at, self.place, self.actor,
                        self.attrs, self.corrects, self.inputs, self.attachments)
