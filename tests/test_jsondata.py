"""The JSON limits (trace attributes, `json` values): the quick walk that passes clean data
and the walk that names a fault must agree on every input, and the canonical bytes made after
the quick walk are RFC 8785's."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from idnode.core import jsondata
from idnode.core.errors import InvalidValue
from idnode.crypto.jcs import canonicalize


def nested(depth: int, leaf: Any, kind: type = dict) -> Any:
    out = leaf
    for _ in range(depth):
        out = {"a": out} if kind is dict else [out]
    return out


CASES: list[tuple[Any, str | None]] = [
    ({"crop": "水稻", "area": 12.5, "n": 3, "ok": True, "none": None, "l": [1, "x", {"y": 2}]}, None),
    ({"deep": nested(20, "fine")}, None),
    ({"a": "x\x00y"}, "attrs.a"),
    ({"k\x00": 1}, "attrs"),
    ({"l": [1, 2, {"z": [0, "\x00"]}]}, "attrs.l[2].z[1]"),
    ({"big": 2**53}, "attrs.big"),
    ({"big": -(2**53)}, "attrs.big"),
    ({"ok": 2**53 - 1, "also": -(2**53 - 1)}, None),
    ({"l": [[[2**60]]]}, "attrs.l[0][0][0]"),
    (nested(31, 1), None),
    (nested(32, 1), None),
    (nested(33, 1), "attrs" + ".a" * 32),
    (nested(33, 1, list), "attrs" + "[0]" * 32),
    ({"t": (1, 2, "x\x00")}, "attrs.t[2]"),      # a tuple: only the naming walk knows it
    ({"t": (1, 2)}, None),
    (OrderedDict(a=1), None),                     # a dict subclass: decided by the naming walk
    ({"s": {1, 2}}, "attrs.s"),                   # not a JSON value
    ({"b": b"x"}, "attrs.b"),
    ("x\x00", "attrs"),
    (2**53, "attrs"),
    ([1.5, False, None, "ok"], None),
]


@pytest.mark.parametrize("value, where", CASES)
def test_a_fault_is_found_and_named_and_clean_data_passes(value: Any, where: str | None) -> None:
    if where is None:
        jsondata.check(value, field="attrs")
        return
    with pytest.raises(InvalidValue) as err:
        jsondata.check(value, field="attrs")
    assert err.value.field == where


@pytest.mark.parametrize("value, where", CASES)
def test_the_quick_walk_never_passes_what_the_naming_walk_refuses(value: Any,
                                                                  where: str | None) -> None:
    try:
        jsondata._name_fault(value, "attrs")
    except InvalidValue:
        assert jsondata._survey(value) is jsondata._FAULT


#: Clean values orjson does not print canonically as they stand: the quick walk must see them.
AWKWARD: list[Any] = [
    {"é": 1, "a": 2}, {"z": {"日本": [1]}, "a": 0}, {"\U0001F600": 1, "\uE000": 2},
    {"f": 3.0}, {"f": 1e21}, {"f": 1e-7}, {"f": -0.0}, {"f": 2.5e15}, [1e16, 0.5],
    {"f": 0.1, "g": 123.456, "h": -7.25},          # orjson prints these as ECMAScript does
]


@pytest.mark.parametrize("value", [v for v, where in CASES if where is None] + AWKWARD)
def test_canonical_is_rfc_8785(value: Any) -> None:
    assert jsondata.canonical(value, field="attrs") == canonicalize(value)
    if isinstance(value, dict):
        text = canonicalize(value)
        assert jsondata.parse_canonical(text, field="a", max_bytes=1 << 20)[1] == text


@pytest.mark.parametrize("value, where", [(v, w) for v, w in CASES if w is not None])
def test_canonical_refuses_what_check_refuses(value: Any, where: str) -> None:
    with pytest.raises(InvalidValue) as err:
        jsondata.canonical(value, field="attrs")
    assert err.value.field == where


@pytest.mark.parametrize("value, where", [
    ({1: "x"}, "attrs"),                          # a member name that is no string
    ({"a": {"b": float("nan")}}, "attrs"),        # no JSON number: named by canonicalisation
    ({"s": "\ud800"}, "attrs"),                   # a lone surrogate
])
def test_canonical_names_values_json_cannot_carry(value: Any, where: str) -> None:
    with pytest.raises(InvalidValue) as err:
        jsondata.canonical(value, field="attrs")
    assert err.value.field == where
