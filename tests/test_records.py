"""Value validation and the registration fast path: it stores and signs exactly what the
Value path would."""
from __future__ import annotations

import orjson
import pytest

from idnode.core.errors import InvalidValue
from idnode.core.records import Value, validate_values, validate_values_json
from idnode.core.signing import PublicLeaves, canonical, signed_content
from idnode.crypto import jcs

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
    # The same values, members in sorted order: serialised as they are, they are canonical
    # (the signature covers them that way).
    assert as_json == [v.to_json() for v in checked]
    assert orjson.dumps(as_json) == orjson.dumps([v.to_json() for v in checked],
                                                 option=orjson.OPT_SORT_KEYS)
    assert orjson.dumps(as_json) == jcs.canonicalize(as_json)
    assert [j["index"] for j in as_json] == sorted(v.index for v in values)
    assert private == any(v.private for v in values)
    assert all(j["timestamp"] == STAMP for j in as_json)


def test_errors_name_the_value_they_are_about() -> None:
    with pytest.raises(InvalidValue) as err:
        validate_values_json([Value(1, "a", "x"), Value(1, "b", "y")], **LIMITS,
                             field_prefix="records[4].values")
    assert err.value.field == "records[4].values[1].index"


@pytest.mark.parametrize("identifier, values", [
    ("0.118.8/RICE-1", [Value(1, "product.name", "五常大米"),
                         Value(2, "URL", "https://x/?a=1&b=%20")]),
    ("0.118.8/引号\"与\\反斜杠", [Value(3, "t", 'line\nbreak\ttab "q" \u2028 \U0001f33e'),
                                  Value(1, "j", '{"b": [1, 2.5, "x"], "a": null}', "json")]),
    ("0.118.8/%d%b%%", [Value(1, "pct", "%s %b %%", ttl=1)]),
])
def test_public_leaves_are_the_canonical_signed_document(identifier: str,
                                                         values: list[Value]) -> None:
    """The registration fast path signs bytes it assembles itself: they must be exactly what
    a verifier canonicalises (RFC 8785) from the served document."""
    as_json, private = validate_values_json(values, **LIMITS)
    assert not private
    leaf = PublicLeaves("0.118", 1, STAMP, STAMP).leaf(identifier, orjson.dumps(as_json))
    doc = signed_content(identifier, "0.118", 1, STAMP, STAMP, (), as_json, has_private=False)
    assert leaf == jcs.canonicalize(doc) == canonical(doc)


@pytest.mark.parametrize("indexes, error", [
    ([1, 2, 3], None),
    ([3, 1, 2], None),                       # out of order: sorted
    ([2, 5, 3, 9, 4], None),
    ([1, 2, 1], "records.values[2].index: index 1 appears twice"),
    ([5, 3, 5], "records.values[2].index: index 5 appears twice"),
    ([4, 2, 3, 2], "records.values[3].index: index 2 appears twice"),
    ([1, 0], "records.values[1].index: index 0 is outside"),
    ([1, 2_147_483_600], "records.values[1].index: index 2147483600 is outside"),
    ([7, 7], "records.values[1].index: index 7 appears twice"),
])
def test_value_indexes_are_unique_in_range_and_come_back_in_order(
        indexes: list[int], error: str | None) -> None:
    values = [Value(i, f"t{i}", f"d{i}") for i in indexes]
    kw = {"max_value_bytes": 100, "max_record_bytes": 1000, "timestamp": "T",
          "field_prefix": "records.values"}
    if error is None:
        out, private = validate_values_json(values, **kw)  # type: ignore[arg-type]
        assert [j["index"] for j in out] == sorted(indexes) and not private
        return
    with pytest.raises(InvalidValue) as err:
        validate_values_json(values, **kw)  # type: ignore[arg-type]
    assert f"{err.value.field}: {err.value}".startswith(error), (err.value.field, str(err.value))
