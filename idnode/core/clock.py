"""Time, in one place: UTC instants and their ISO 8601 text form."""
from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """`2026-11-24T03:30:05.123Z`: millisecond precision, as Handle REST clients parse."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
