"""Per-prefix counters of registrations, resolutions and errors, for the heartbeat.

Counting is on the resolve hot path, so it is one dict lookup, a move to the end and an
increment; the day a count belongs to is the UTC day it is taken (`take`, every heartbeat),
which misplaces at most one heartbeat interval of counts around midnight.

The prefixes are whatever callers ask for, and a standalone node never takes its counts, so
at most `max_prefixes` are counted: the least recently counted prefix is dropped for a new
one (its counts with it; `dropped` says how many prefixes went that way).
"""
from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime


class Stats:
    def __init__(self, max_prefixes: int = 10_000) -> None:
        self.max_prefixes = max(1, max_prefixes)
        #: Prefixes whose counts were dropped to make room since the node started.
        self.dropped = 0
        # prefix -> [registrations, resolutions, errors], least recently counted first
        self._counts: OrderedDict[str, list[int]] = OrderedDict()

    def _slot(self, prefix: str) -> list[int]:
        counts = self._counts
        c = counts.get(prefix)
        if c is None:
            c = counts[prefix] = [0, 0, 0]
            if len(counts) > self.max_prefixes:
                counts.popitem(last=False)
                self.dropped += 1
        else:
            counts.move_to_end(prefix)
        return c

    def registered(self, prefix: str, n: int = 1) -> None:
        self._slot(prefix)[0] += n

    def resolved(self, prefix: str) -> None:
        # _slot inlined: this runs on every resolution.
        counts = self._counts
        c = counts.get(prefix)
        if c is None:
            c = self._slot(prefix)
        else:
            counts.move_to_end(prefix)
        c[1] += 1

    def error(self, prefix: str = "") -> None:
        self._slot(prefix)[2] += 1

    @property
    def prefixes(self) -> int:
        """Prefixes counted now (no __len__: callers write `stats or Stats()`)."""
        return len(self._counts)

    def take(self) -> list[tuple[str, str, int, int, int]]:
        """The counts since the last take, as (prefix, day, registrations, resolutions, errors)."""
        counts, self._counts = self._counts, OrderedDict()
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        return [(p, day, r, q, e) for p, (r, q, e) in sorted(counts.items())]

    def give_back(self, taken: list[tuple[str, str, int, int, int]]) -> None:
        """Returns counts that could not be reported, so the next heartbeat carries them."""
        for p, _day, r, q, e in taken:
            c = self._slot(p)
            c[0] += r
            c[1] += q
            c[2] += e
