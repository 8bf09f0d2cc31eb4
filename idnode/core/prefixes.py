"""The prefixes this node holds, as resolution sees them: an in-memory table kept fresh by
the invalidation channel (a prefix change marks it dirty; the next lookup reloads it)."""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from idnode.core.errors import PermissionDenied, PrefixNotFound, Unavailable
from idnode.core.ports import PrefixSource
from idnode.model.rows import PrefixRow


@dataclass(frozen=True, slots=True)
class PrefixState:
    prefix: str
    status: str
    enterprise_id: int | None
    refuse_resolution: bool
    template: str | None
    template_name: str | None

    @staticmethod
    def of(row: PrefixRow) -> PrefixState:
        return PrefixState(row.prefix, row.status, row.enterprise_id, row.refuse_resolution,
                           row.template, row.template_name)

    def check_resolvable(self) -> None:
        if self.status == "revoked":
            raise PermissionDenied(f"prefix {self.prefix} has been revoked", field="identifier",
                                   reason="PREFIX_REVOKED")
        if self.status == "suspended" and self.refuse_resolution:
            raise PermissionDenied(f"prefix {self.prefix} is suspended", field="identifier",
                                   reason="PREFIX_SUSPENDED")


class PrefixTable:
    def __init__(self, store: PrefixSource, coherent: Callable[[], bool]) -> None:
        self.store = store
        self.coherent = coherent
        self._states: dict[str, PrefixState] = {}
        self._dirty = True
        self._lock = asyncio.Lock()

    def mark_dirty(self) -> None:
        self._dirty = True

    async def get(self, prefix: str) -> PrefixState | None:
        if not self.coherent():
            # Changes may be missed while the listener is down: ask the database each time,
            # and fall back on what was last known only when the database cannot answer.
            try:
                row = await self.store.get(prefix)
            except Unavailable:
                if prefix in self._states:
                    return self._states[prefix]
                raise
            return None if row is None else PrefixState.of(row)
        if self._dirty or self._lock.locked():
            # Wait for a reload in progress too: its trigger may be the change we must see.
            async with self._lock:
                while self._dirty:
                    # Cleared before reading, so a change notified during the read re-dirties.
                    self._dirty = False
                    try:
                        rows = await self.store.all()
                    except BaseException:
                        self._dirty = True
                        raise
                    self._states = {r.prefix: PrefixState.of(r) for r in rows}
        return self._states.get(prefix)

    async def resolvable(self, prefix: str) -> PrefixState:
        state = await self.get(prefix)
        if state is None:
            raise PrefixNotFound(f"prefix {prefix} is not held by this node", field="identifier")
        state.check_resolvable()
        return state

    def owner(self, prefix: str) -> int | None:
        """The owning enterprise as last loaded (for read-side decisions)."""
        state = self._states.get(prefix)
        return None if state is None else state.enterprise_id
