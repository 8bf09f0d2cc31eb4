"""canonicalize's orjson fast path for floats (jcs._simple) gives the bytes of the RFC 8785
path (jcs.number, ECMAScript Number::toString) for every double it takes, and leaves the
rest (integral, exponent form, NaN and infinities) to that path."""
from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from idnode.crypto import jcs


def _slow(obj: object) -> bytes:
    out: list[str] = []
    jcs._write(obj, out)
    return "".join(out).encode()


def _doubles(n: int) -> list[float]:
    rng = random.Random(8785)
    out = []
    for _ in range(n):
        k = rng.random()
        if k < 0.3:
            out.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])
        elif k < 0.6:
            out.append(rng.uniform(-1, 1) * 10 ** rng.randint(-8, 22))
        else:
            out.append(round(rng.uniform(-1e4, 1e4), rng.randint(0, 7)))
    return out + [1e-4, -1e-4, 0.1, 0.5, 14.5, 1e15 - 0.5, 999999999999999.9, 1e-5, 3.0,
                  2.0**53, 1e21, 1e300, 5e-324]


def test_the_fast_path_prints_floats_as_ecmascript_does() -> None:
    fast = 0
    for x in _doubles(200_000):
        if x != x or x in (float("inf"), float("-inf")):
            continue
        assert jcs.canonicalize({"a": [x]}) == _slow({"a": [x]}), repr(x)
        fast += jcs._simple(x)
    assert fast > 100_000


@settings(max_examples=2000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_double_canonicalizes_as_the_rfc_path(x: float) -> None:
    assert jcs.canonicalize({"x": x, "y": [x, "s"]}) == _slow({"x": x, "y": [x, "s"]})
