"""Registry rules that need no database: the idempotency digest is a stored format."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from idnode.cache import HotCache
from idnode.core import auth
from idnode.core.audit import Actor
from idnode.core.records import Value
from idnode.core.registry import Limits, RecordInput, Registry
from idnode.store.handles import BatchOutcome
from idnode.store.prefixes import PrefixRow


class _Handles:
    def __init__(self) -> None:
        self.digest = b""

    async def register_batch(self, key: str, digest: bytes, rows: Any, now: datetime,
                             *_: Any) -> BatchOutcome:
        self.digest = digest
        return BatchOutcome(len(rows), now, False, digest)


class _Prefixes:
    async def get(self, prefix: str) -> PrefixRow:
        return PrefixRow(prefix, "active", 1, False, None, None, None)  # type: ignore[arg-type]


async def test_idempotency_digest_is_unchanged_across_versions() -> None:
    """The digest of a batch is stored with its key and compared with a retry's, which may be
    computed by a later version of the node: its input format must never change. (Known
    answer from the version before the registration fast path.)"""
    handles = _Handles()
    registry = Registry(handles, _Prefixes(), HotCache(max_entries=1, ttl=1, negative_ttl=1),
                        Limits(100, 65_536, 262_144))  # type: ignore[arg-type]
    actor = Actor(auth.Principal("k", "enterprise", 1, frozenset({"read", "write"}), None))
    await registry.register_batch(actor, "key-1", [
        RecordInput("88.118.8/A-1", [Value(2, "b", '{"x": 1}', "json"),
                                     Value(1, "product.name", "五常大米")]),
        RecordInput("88.118.8/B-2", [Value(1, "secret", "aGk=", "base64", ttl=60,
                                           private=True)])])
    assert handles.digest.hex() == (
        "aacb78da28c8f52bd24d630065da32107d7fe97b2da3d2ed21b455695160c14a")
