"""Protobuf → domain conversions at the gRPC edge."""
from __future__ import annotations

from datetime import UTC

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from idnode.api.grpc.convert import datetime_in
from idnode.core.errors import InvalidArgument


@pytest.mark.parametrize("seconds, nanos", [
    (0, 0), (1_777_777_777, 123_456_789), (-1, 999_999_999), (-62_135_596_800, 0),
    (253_402_300_799, 999_999_999), (1_700_000_000, 999)])
def test_a_valid_timestamp_reads_as_protobuf_reads_it(seconds: int, nanos: int) -> None:
    t = Timestamp(seconds=seconds, nanos=nanos)
    assert datetime_in(t, "at") == t.ToDatetime(UTC)
    assert datetime_in(t, "at").tzinfo is UTC


@pytest.mark.parametrize("seconds, nanos", [
    (253_402_300_800, 0), (-62_135_596_801, 0), (0, -1), (0, 1_000_000_000), (10**12, 0)])
def test_an_invalid_timestamp_is_the_clients_error(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as err:
        datetime_in(Timestamp(seconds=seconds, nanos=nanos), "events[3].occurred_at")
    assert err.value.field == "events[3].occurred_at"
    with pytest.raises(ValueError):  # what protobuf's own conversion does with it
        Timestamp(seconds=seconds, nanos=nanos).ToDatetime(UTC)
