"""Value validation: the registration fast path stores exactly what the Value path would."""
from __future__ import annotations

import orjson
import pytest

from idnode.core.errors import InvalidValue
from idnode.core.records import Value, validate_values, validate_values_json

STAMP = "2026-11-24T03:30:05Z"
LIMITS = {"max_value_bytes": 1000, "max_record_bytes": 4000, "timestamp": STAMP}


@pytest.mark.parametrize("values", [
    [Value(1, "product.name", "五常大米")],
    [Value(3, "URL", "https://example.com/p/1", ttl=60), Value(1, "a", "x"),
     Value(2, "b", '{"k": [1, 2]}', "json")],
    [Value(1, "a", "aGVsbG8=", "base64", private=True), Value(2, "b", "public")],
    [Value(7, "only.private", "secret", private=True, ttl=0)],
])
def test_stored_form_is_the_values_to_json_in_index_order(values: list[Value]) -> None:
    as_json, private = validate_values_json(values, **LIMITS)
    checked = validate_values(values, **LIMITS)
    # The same bytes: they are stored, signed and digested for idempotent retries.
    assert orjson.dumps(as_json) == orjson.dumps([v.to_json() for v in checked])
    assert [j["index"] for j in as_json] == sorted(v.index for v in values)
    assert private == any(v.private for v in values)
    assert all(j["timestamp"] == STAMP for j in as_json)


def test_errors_name_the_value_they_are_about() -> None:
    with pytest.raises(InvalidValue) as err:
        validate_values_json([Value(1, "a", "x"), Value(1, "b", "y")], **LIMITS,
                             field_prefix="records[4].values")
    assert err.value.field == "records[4].values[1].index"
