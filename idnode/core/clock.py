"""Time, in one place: UTC instants and their ISO 8601 text form."""
from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """`2026-11-24T03:30:05.123Z`: millisecond precision, as Handle REST clients parse."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    if dt.year < 1000:  # strftime's %Y (glibc) does not pad these; what it printed stays
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    # isoformat is C and pads the year to four digits, as strftime does from 1000 on; it
    # cuts microseconds to milliseconds, as the line above. A trace append formats every
    # event's time for its leaf: this costs a fraction of strftime.
    return dt.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
