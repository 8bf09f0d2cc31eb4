"""An audit entry: who did what, when, from where, with the versions before and after; the
rules make them (idnode.core.audit.Actor acts), the stores keep them."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class _Principal(Protocol):
    @property
    def key_id(self) -> str: ...
    @property
    def enterprise_id(self) -> int | None: ...


class Acting(Protocol):
    """Who acts (idnode.core.audit.Actor): a principal and where the call came from."""

    @property
    def principal(self) -> _Principal: ...
    @property
    def client(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AuditEntry:
    actor: str
    enterprise_id: int | None
    client: str
    action: str
    target: str
    prefix: str | None = None
    before_version: int | None = None
    after_version: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None

    @staticmethod
    def of(actor: Acting, action: str, target: str, **kw: Any) -> AuditEntry:
        p = actor.principal
        return AuditEntry(p.key_id, p.enterprise_id, actor.client, action, target, **kw)
