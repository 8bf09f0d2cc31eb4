"""Audit entries: who did what, when, from where, with the versions before and after."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from idnode.core.auth import Principal


@dataclass(frozen=True, slots=True)
class Actor:
    """The principal of a call and where it came from (peer address)."""

    principal: Principal
    client: str = ""


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
    def of(actor: Actor, action: str, target: str, **kw: Any) -> AuditEntry:
        p = actor.principal
        return AuditEntry(p.key_id, p.enterprise_id, actor.client, action, target, **kw)
