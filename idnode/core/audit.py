"""Who acts (Actor); the audit entries they leave are idnode.model.audit.AuditEntry."""
from __future__ import annotations

from dataclasses import dataclass

from idnode.core.auth import Principal
from idnode.model.audit import AuditEntry as AuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    """The principal of a call and where it came from (peer address)."""

    principal: Principal
    client: str = ""
