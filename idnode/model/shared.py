"""What one read of the hot cache's shared tier (idnode.cache_redis) hands the resolver, which
gives it back with the records it read from the database meanwhile, to fill the tier."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Probe:
    """What one read of the tier saw: per key the payload (None: miss, or not to be trusted
    now) and the bucket generation a later fill must find unchanged."""

    values: list[bytes | None]
    gens: list[bytes | None]
    epoch: bytes
