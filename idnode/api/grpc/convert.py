"""Protobuf messages ↔ domain values."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

import orjson

from idnode.core.records import Record, Value
from idnode.core.signing import private_digest_of
from idnode.v1 import registry_pb2 as pb


def ts(dt: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt)
    return out


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
