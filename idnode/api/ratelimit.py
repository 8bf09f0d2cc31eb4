"""Per-client token buckets (HTTP rate limits, the Handle protocol's UDP response rate limit),
so one scanner loop cannot starve everyone else and a spoofed address cannot be flooded."""
from __future__ import annotations

from time import monotonic


class RateLimiter:
    """`rate` requests a second per client with bursts up to `burst`; memory stays bounded."""

    __slots__ = ("rate", "burst", "max_clients", "_buckets")

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        # client -> [tokens, last refill time], updated in place (this is on the hot path)
        self._buckets: dict[str, list[float]] = {}

    def take(self, client: str) -> float:
        """0.0 when the request may proceed, else the seconds until it would."""
        now = monotonic()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._prune(now)
            bucket = self._buckets[client] = [self.burst, now]
            tokens = self.burst
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            if tokens > self.burst:
                tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # Buckets that have refilled completely carry no information: drop them; if every
        # client is active, drop the oldest half.
        full = [c for c, (t, at) in self._buckets.items()
                if t + (now - at) * self.rate >= self.burst]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) >= self.max_clients:
            for c in sorted(self._buckets, key=lambda c: self._buckets[c][1])[: self.max_clients // 2]:
                del self._buckets[c]
