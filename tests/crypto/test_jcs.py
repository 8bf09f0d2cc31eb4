"""RFC 8785 canonical JSON: the RFC's examples, ECMAScript numbers, and properties."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import jcs
from tests.crypto import reference

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "jcs.json").read_text())


def double(ieee_hex: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(ieee_hex))[0])


@pytest.mark.parametrize("case", VECTORS["objects"], ids=lambda c: c["name"])
def test_rfc8785_examples(case: dict[str, str]) -> None:
    out = jcs.canonicalize(json.loads(case["input_text"]))
    assert out.decode() == case["expected"]
    assert out.hex() == case["expected_utf8_hex"]


@pytest.mark.parametrize("case", VECTORS["numbers"], ids=lambda c: c["ieee_hex"])
def test_rfc8785_appendix_b_numbers(case: dict[str, str]) -> None:
    assert jcs.canonicalize(double(case["ieee_hex"])).decode() == case["expected"]
    assert jcs.canonicalize([double(case["ieee_hex"])]).decode() == f"[{case['expected']}]"


@pytest.mark.parametrize("ieee_hex", VECTORS["invalid_numbers_ieee_hex"])
def test_nan_and_infinities_are_refused(ieee_hex: str) -> None:
    with pytest.raises(ValueError):
        jcs.canonicalize({"a": double(ieee_hex)})


@pytest.mark.parametrize("x,text", [(1e21, "1e+21"), (1e20, "100000000000000000000"),
                                    (1e-7, "1e-7"), (0.000001, "0.000001"), (-0.0, "0"),
                                    (1.0, "1"), (-1.5, "-1.5"), (123.456, "123.456"),
                                    (2**53, "9007199254740992"), (10**21, "1e+21"),
                                    (2**53 + 1, "9007199254740992")])
def test_numbers_follow_ecmascript(x: float, text: str) -> None:
    assert jcs.canonicalize(x).decode() == text


@pytest.mark.parametrize("bad", [{1: "int key"}, {"s": {1, 2}}, "\ud800", {"\udc00": 1},
                                 b"bytes", 10**400, math.nan])
def test_what_json_cannot_carry_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        jcs.canonicalize(bad)


def test_strings_escape_only_what_ecmascript_escapes() -> None:
    every = "".join(chr(i) for i in range(0x80)) + "\u2028\u2029\u00e9\U0001f600"
    assert jcs.canonicalize(every).decode() == reference.escape(every)


def test_tuples_are_arrays() -> None:
    assert jcs.canonicalize({"a": (1, "x")}) == b'{"a":[1,"x"]}'


finite = st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | finite | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_stable_under_a_json_round_trip(value: object) -> None:
    once = jcs.canonicalize(value)
    assert jcs.canonicalize(json.loads(once)) == once


@settings(max_examples=300, deadline=None)
@given(finite)
def test_numbers_round_trip_to_the_same_double(x: float) -> None:
    assert float(jcs.canonicalize(x)) == x


def _units(s: str) -> list[int]:
    out = []
    for ch in s:
        c = ord(ch)
        if c > 0xFFFF:
            c -= 0x10000
            out += [0xD800 + (c >> 10), 0xDC00 + (c & 0x3FF)]
        else:
            out.append(c)
    return out


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, st.integers(), max_size=8))
def test_keys_sorted_by_utf16_code_units(obj: dict[str, int]) -> None:
    assert list(json.loads(jcs.canonicalize(obj))) == sorted(obj, key=_units)


def _slow(value: object) -> bytes:
    out: list[str] = []
    jcs._write(value, out)
    return "".join(out).encode()


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) |
                    st.text(),
                    lambda inner: st.lists(inner, max_size=4) |
                    st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=5),
                                    inner, max_size=4), max_leaves=20))
def test_orjson_fast_path_equals_the_general_serializer(value: object) -> None:
    # core/signing.canonical relies on this: float-free, ASCII-keyed documents are
    # canonical as orjson writes them.
    assert jcs.canonicalize(value) == _slow(value)
