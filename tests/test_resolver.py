"""The resolver over the store and cache interfaces (idnode.core.ports), with stand-ins for
both: what it serves when the database cannot be asked."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import orjson
import pytest

from idnode.cache import HotCache
from idnode.core.errors import Unavailable
from idnode.core.identifiers import Identifier
from idnode.core.prefixes import PrefixTable
from idnode.core.records import Value
from idnode.core.resolver import Resolver
from idnode.model.rows import PrefixRow, Row

AT = datetime(2026, 1, 1, tzinfo=timezone.utc)


class _Prefixes:
    async def get(self, prefix: str) -> PrefixRow:
        return PrefixRow(prefix, "active", 1, False, None, None, AT)

    async def all(self) -> list[PrefixRow]:
        return []

    async def gs1_prefix(self, gtin14: str) -> str | None:
        return None


def _vals(name: str) -> str:
    return orjson.dumps([Value(1, "product.name", name, timestamp="2026-01-01T00:00:00Z")
                         .to_json()]).decode()


class _Handles:
    """Serves stored rows until `down` is set, then fails as an unreachable database."""

    replicated = False

    def __init__(self, suffixes: Sequence[str]) -> None:
        self.rows = {("0.118.8", s): Row("0.118.8", s, _vals(s), 1, AT, AT) for s in suffixes}
        self.down = False

    async def get(self, ident: Identifier, *, primary: bool = False) -> Row | None:
        return (await self.get_many([ident])).get((ident.prefix, ident.suffix))

    async def get_many(self, idents: Sequence[Identifier], *, primary: bool = False
                       ) -> dict[tuple[str, str], Row]:
        if self.down:
            raise Unavailable("the database is unreachable")
        return {k: self.rows[k] for i in idents if (k := (i.prefix, i.suffix)) in self.rows}


def _resolver(handles: _Handles) -> tuple[Resolver, HotCache]:
    cache = HotCache(max_entries=100, ttl=60, negative_ttl=5)
    cache.coherent = True  # as if the listener were up
    table = PrefixTable(_Prefixes(), lambda: False)
    return Resolver(handles, cache, table, prefix_store=_Prefixes(), max_batch=10), cache


async def test_a_batch_is_answered_stale_only_when_every_miss_was_held() -> None:
    handles = _Handles(["A", "B", "C"])
    resolver, cache = _resolver(handles)
    first = await resolver.resolve_many(["0.118.8/A", "0.118.8/B"])
    assert [r.identifier for r in first if r is not None] == ["0.118.8/A", "0.118.8/B"]
    # The listener is lost (nothing may be served as fresh) and the database goes away.
    cache.coherent = False
    handles.down = True
    stale = await resolver.resolve_many(["0.118.8/B", "0.118.8/A"])
    assert [r.identifier for r in stale if r is not None] == ["0.118.8/B", "0.118.8/A"]
    assert resolver.stale_served == 2
    # C was never held: the batch fails rather than answer part of it as not found.
    with pytest.raises(Unavailable):
        await resolver.resolve_many(["0.118.8/A", "0.118.8/C"])
    assert resolver.stale_served == 2
