"""Counting consumer scans of a code, per coarse place, to warn about copied codes.

A genuine unit is scanned a handful of times; a code printed on a thousand fakes is scanned
far more often and from many places. Scans are tallied in memory and flushed in batches, so a
scan costs a dict update, not a database write; totals shown lag by at most a flush.
"""
from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from idnode.core import clock


@dataclass(frozen=True, slots=True)
class ScanCount:
    count: int
    places: int


@dataclass(frozen=True, slots=True)
class ScanPolicy:
    #: Scans before this one above which the page warns of possible copies.
    warn_scans: int = 20
    #: Distinct places above which the page warns.
    warn_places: int = 5

    def suspicious(self, seen: ScanCount) -> bool:
        return seen.count > self.warn_scans or seen.places > self.warn_places


def place_of(client: str) -> str:
    """A coarse place for a client address: its /24 (IPv4) or /48 (IPv6) network. It tells
    apart scans from different towns without keeping anyone's address."""
    try:
        addr = ipaddress.ip_address(client)
    except ValueError:
        return "unknown"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    bits = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))


class ScanCounter:
    """Tallies scans per (identifier, place). `seen` answers from what was loaded from the
    database (refreshed after `max_age`, so other processes' scans show up), plus what this
    process flushed since, plus what it has not flushed yet."""

    def __init__(self, load: Callable[[str], Awaitable[dict[str, int]]],
                 save: Callable[[Sequence[tuple[str, str, int, datetime, datetime]]],
                                Awaitable[None]], *,
                 max_age: float = 5.0, max_entries: int = 100_000) -> None:
        self._load = load
        self._save = save
        self.max_age = max_age
        self.max_entries = max_entries
        self._pending: dict[str, dict[str, list[Any]]] = {}
        self._known: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()

    def record(self, identifier: str, client: str) -> None:
        places = self._pending.get(identifier)
        if places is None:
            if len(self._pending) >= self.max_entries:
                return  # a flood of distinct codes while the database is away: shed, not grow
            places = self._pending[identifier] = {}
        now = clock.now()
        place = place_of(client)
        tally = places.get(place)
        if tally is None:
            places[place] = [1, now, now]
        else:
            tally[0] += 1
            tally[2] = now

    async def seen(self, identifier: str) -> ScanCount:
        known = self._known.get(identifier)
        if known is None or time.monotonic() - known[0] > self.max_age:
            known = (time.monotonic(), await self._load(identifier))
            self._known[identifier] = known
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
        counts = dict(known[1])
        for place, tally in self._pending.get(identifier, {}).items():
            counts[place] = counts.get(place, 0) + tally[0]
        return ScanCount(sum(counts.values()), len(counts))

    async def flush(self) -> int:
        if not self._pending:
            return 0
        batch, self._pending = self._pending, {}
        rows = [(i, p, t[0], t[1], t[2]) for i, places in batch.items()
                for p, t in places.items()]
        try:
            await self._save(rows)
        except Exception:
            # Keep the tallies for the next flush rather than lose them.
            for i, p, n, first, last in rows:
                tally = self._pending.setdefault(i, {}).setdefault(p, [0, first, last])
                tally[0] += n
            raise
        for i, p, n, _, _ in rows:
            known = self._known.get(i)
            if known is not None:
                known[1][p] = known[1].get(p, 0) + n
        return len(rows)
