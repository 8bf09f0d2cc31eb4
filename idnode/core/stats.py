"""Per-prefix counters of registrations, resolutions and errors, for the heartbeat.

Counting is on the resolve hot path, so it is one dict lookup and an increment; the day a
count belongs to is the UTC day it is taken (`take`, every heartbeat), which misplaces at most
one heartbeat interval of counts around midnight.
"""
from __future__ import annotations

from datetime import UTC, datetime


class Stats:
    def __init__(self) -> None:
        # prefix -> [registrations, resolutions, errors]
        self._counts: dict[str, list[int]] = {}

    def _slot(self, prefix: str) -> list[int]:
        c = self._counts.get(prefix)
        if c is None:
            c = self._counts[prefix] = [0, 0, 0]
        return c

    def registered(self, prefix: str, n: int = 1) -> None:
        self._slot(prefix)[0] += n

    def resolved(self, prefix: str) -> None:
        c = self._counts.get(prefix)
        if c is None:
            c = self._counts[prefix] = [0, 0, 0]
        c[1] += 1

    def error(self, prefix: str = "") -> None:
        self._slot(prefix)[2] += 1

    def take(self) -> list[tuple[str, str, int, int, int]]:
        """The counts since the last take, as (prefix, day, registrations, resolutions, errors)."""
        counts, self._counts = self._counts, {}
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return [(p, day, r, q, e) for p, (r, q, e) in sorted(counts.items())]

    def give_back(self, taken: list[tuple[str, str, int, int, int]]) -> None:
        """Returns counts that could not be reported, so the next heartbeat carries them."""
        for p, _day, r, q, e in taken:
            c = self._slot(p)
            c[0] += r
            c[1] += q
            c[2] += e
