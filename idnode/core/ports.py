"""What the rules need of the stores, as protocols: idnode.store implements them, and the
composition root (idnode.services) hands the rules a store that fits. The rules depend on these
interfaces, not on the store classes."""
from __future__ import annotations

from typing import Protocol

from idnode.model.rows import HsRow, PendingChallenge, PrefixRow


class PrefixSource(Protocol):
    """The prefix table's source (idnode.store.prefixes.PrefixStore)."""

    async def get(self, prefix: str) -> PrefixRow | None: ...

    async def all(self) -> list[PrefixRow]: ...


class Gs1Prefixes(Protocol):
    """Which enterprise prefix serves a GTIN (idnode.store.prefixes.PrefixStore)."""

    async def gs1_prefix(self, gtin14: str) -> str | None: ...


class ChallengeKeeper(Protocol):
    """Pending Handle authentication challenges (idnode.store.challenges.ChallengeStore)."""

    async def put(self, session_id: int, nonce: bytes, digest: bytes, request: bytes,
                  client: str, ttl: float) -> bool: ...

    async def take(self, session_id: int) -> PendingChallenge | None: ...


class FormSignatures(Protocol):
    """The kept Handle/IDIS form signatures (idnode.store.hsigs.HsSignatureStore)."""

    async def get(self, prefix: str, suffix: str) -> dict[str, HsRow]: ...

    async def get_many(self, keys: list[tuple[str, str]]
                       ) -> dict[tuple[str, str], dict[str, HsRow]]: ...

    async def put(self, prefix: str, suffix: str, rows: list[HsRow]) -> None: ...
