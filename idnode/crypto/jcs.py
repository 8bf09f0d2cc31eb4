"""RFC 8785 JSON Canonicalization Scheme."""
from __future__ import annotations

import math
from typing import Any

import orjson


def canonicalize(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dict, list, str, int, float, bool,
    None). Raises ValueError for what JSON cannot carry (NaN, infinities, non-str keys)."""
    if _simple(obj):
        # orjson's compact output escapes strings exactly as RFC 8785 (ECMAScript) does, and
        # sorts ASCII keys in code-unit order: for float-free values with ASCII keys (every
        # record idnode signs) it is the canonical form, at C speed.
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    out: list[str] = []
    _write(obj, out)
    return "".join(out).encode("utf-8")


def _simple(obj: Any) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and k.isascii() and _simple(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_simple(v) for v in obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    return isinstance(obj, int) and abs(obj) < 2**53


def _write(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(orjson.dumps(obj).decode())
    elif isinstance(obj, int):
        out.append(_number(float(obj)) if abs(obj) >= 2**53 else str(obj))
    elif isinstance(obj, float):
        out.append(_number(obj))
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, v in enumerate(obj):
            if i:
                out.append(",")
            _write(v, out)
        out.append("]")
    elif isinstance(obj, dict):
        for k in obj:
            if not isinstance(k, str):
                raise ValueError(f"JSON object keys must be strings, not {type(k).__name__}")
        out.append("{")
        # Sorted by UTF-16 code units, as RFC 8785 §3.2.3 requires.
        for i, k in enumerate(sorted(obj, key=lambda s: s.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(orjson.dumps(k).decode())
            out.append(":")
            _write(obj[k], out)
        out.append("}")
    else:
        raise ValueError(f"{type(obj).__name__} is not a JSON value")


def _number(x: float) -> str:
    """ECMAScript Number::toString (RFC 8785 §3.2.2.3)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinities are not JSON numbers")
    if x == 0:
        return "0"
    if x < 0:
        return "-" + _number(-x)
    # repr gives the shortest round-tripping digits; re-lay them out the ECMAScript way.
    mantissa, _, exp = repr(x).partition("e")
    digits_part, _, frac = mantissa.partition(".")
    digits = (digits_part + frac).lstrip("0")
    point = len(digits_part) + (int(exp) if exp else 0)  # decimal point position
    if digits_part == "0":
        lead = len(frac) - len(frac.lstrip("0"))
        point = -lead + (int(exp) if exp else 0)
    digits = digits.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    if k == 1:
        return f"{digits}e{sign}{abs(e)}"
    return f"{digits[0]}.{digits[1:]}e{sign}{abs(e)}"
