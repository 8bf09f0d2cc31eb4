"""Protobuf messages ↔ domain values."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

import orjson

from idnode.core.errors import InvalidArgument
from idnode.core.records import Record, Value
from idnode.core.signing import private_digest_of
from idnode.v1 import registry_pb2 as pb


def ts(dt: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt)
    return out


#: What a Timestamp may hold (google/protobuf/timestamp.proto): 0001-01-01T00:00:00Z to
#: 9999-12-31T23:59:59.999999999Z.
_SECONDS = range(-62_135_596_800, 253_402_300_800)
_NANOS = range(1_000_000_000)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_in(value: Timestamp, field: str) -> datetime:
    """A client's Timestamp as a UTC datetime, to the microsecond (as PostgreSQL keeps it).
    One that protobuf calls invalid is the client's error (`Timestamp.ToDatetime` raised a
    ValueError for it, which surfaced as an internal error)."""
    seconds, nanos = value.seconds, value.nanos
    if seconds not in _SECONDS or nanos not in _NANOS:
        raise InvalidArgument(
            f"timestamp seconds={seconds} nanos={nanos} is not valid: seconds from "
            "0001-01-01 to 9999-12-31, nanos 0..999,999,999", field=field)
    return _EPOCH + timedelta(0, seconds, nanos // 1000)


def values_in(msgs: Sequence[pb.Value]) -> Sequence[pb.Value]:
    # Protobuf values already have the attributes core validates (ValueInput); core builds
    # the domain Values once, after checking them.
    return msgs


def record_out(record: Record, values: tuple[Value, ...] | None = None,
               signature_values: tuple[Value, ...] = ()) -> pb.Record:
    out = pb.Record(identifier=record.identifier, version=record.version,
                    created_at=ts(record.created_at), updated_at=ts(record.updated_at),
                    node=record.node)
    if record.signature is not None:
        out.signature_json = orjson.dumps(record.signature).decode()
        digest = private_digest_of(record)
        if digest:
            out.private_digest = digest
    for field, vals in ((out.values, record.values if values is None else values),
                        (out.signature_values, signature_values)):
        for v in vals:
            stamp = Timestamp()
            if v.timestamp:
                stamp.FromJsonString(v.timestamp)
            field.add(index=v.index, type=v.type, format=v.format, data=v.data, ttl=v.ttl,
                      timestamp=stamp, private=v.private)
    return out
