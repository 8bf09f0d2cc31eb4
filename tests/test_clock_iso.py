"""clock.iso formats by isoformat (fast) what strftime formatted before: the same text, which
trace leaves commit to, for every instant and zone."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from idnode.core import clock


def _strftime(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def test_iso_is_the_strftime_text() -> None:
    rng = random.Random(1000)
    zones = [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]
    cases = [datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
             datetime(1000, 1, 1, tzinfo=UTC), datetime(2026, 5, 1, 8, tzinfo=zones[1]),
             datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]
    cases += [datetime(rng.randint(2, 9998), rng.randint(1, 12), rng.randint(1, 28),
                       rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59),
                       rng.choice([0, 999, 1000, rng.randint(0, 999_999)]),
                       tzinfo=rng.choice(zones)) for _ in range(20_000)]
    for dt in cases:
        assert clock.iso(dt) == _strftime(dt), dt
