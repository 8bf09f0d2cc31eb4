"""Per-prefix, per-day counters of registrations, resolutions and errors, for the heartbeat."""
from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime


class Stats:
    def __init__(self) -> None:
        # (prefix, day) -> [registrations, resolutions, errors]
        self._counts: defaultdict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._day = ""
        self._day_until = 0.0

    def _today(self) -> str:
        # Formatted once a day: the hot path calls this per resolution.
        if time.time() >= self._day_until:
            now = datetime.now(UTC)
            self._day = now.strftime("%Y-%m-%d")
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_until = midnight.timestamp() + 86400
        return self._day

    def registered(self, prefix: str, n: int = 1) -> None:
        self._counts[(prefix, self._today())][0] += n

    def resolved(self, prefix: str) -> None:
        self._counts[(prefix, self._today())][1] += 1

    def error(self, prefix: str = "") -> None:
        self._counts[(prefix, self._today())][2] += 1

    def take(self) -> list[tuple[str, str, int, int, int]]:
        """The counts since the last take, as (prefix, day, registrations, resolutions, errors)."""
        counts, self._counts = self._counts, defaultdict(lambda: [0, 0, 0])
        return [(p, d, r, q, e) for (p, d), (r, q, e) in sorted(counts.items())]

    def give_back(self, taken: list[tuple[str, str, int, int, int]]) -> None:
        """Returns counts that could not be reported, so the next heartbeat carries them."""
        for p, d, r, q, e in taken:
            c = self._counts[(p, d)]
            c[0] += r
            c[1] += q
            c[2] += e
