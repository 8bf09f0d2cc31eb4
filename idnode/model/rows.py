"""Rows as the stores return them and the rules read them: a prefix's state, a pending Handle
challenge, a kept Handle/IDIS form signature."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PrefixRow:
    prefix: str
    status: str
    enterprise_id: int | None
    refuse_resolution: bool
    #: The template's canonical JSON text and name, when the prefix has one.
    template: str | None
    template_name: str | None
    status_changed_at: datetime


@dataclass(frozen=True, slots=True)
class PendingChallenge:
    nonce: bytes
    digest: bytes
    request: bytes
    client: str


@dataclass(frozen=True, slots=True)
class HsRow:
    alg: str
    version: int
    record_created: datetime
    cert_id: str
    jws: str
    expires_at: datetime
