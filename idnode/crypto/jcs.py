"""RFC 8785 JSON Canonicalization Scheme (JCS)."""
from __future__ import annotations

import math
from typing import Any

import orjson

_EXACT = 2**53  # integers below this are exact doubles and print as themselves
#: Doubles whose magnitude lies in [_FLOAT_LOW, _FLOAT_HIGH) and that are not integral print
#: the same from orjson as by RFC 8785 (see _simple).
_FLOAT_LOW, _FLOAT_HIGH = 1e-4, 1e15


def canonicalize(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON value (dict, list/tuple, str, int, float,
    bool, None); ValueError for what I-JSON cannot carry (NaN, infinities, non-str keys, lone
    surrogates, integers beyond a double's range); other integers of 2**53 and above mean
    their nearest double, as RFC 8785 reads numbers."""
    return canonicalize_surveyed(obj, _simple(obj))


def canonicalize_surveyed(obj: Any, simple: bool) -> bytes:
    """`canonicalize`, for a caller that has already walked `obj` and knows whether it is
    simple: dicts with ASCII str keys, lists, str, bool, None, ints within ±2**53 and only
    floats for which `prints_as_ecmascript` is true (one walk instead of two where the caller
    walks the value anyway, e.g. to check it)."""
    try:
        if simple:
            # orjson's compact output escapes strings exactly as ECMAScript (and so RFC 8785)
            # does and sorts ASCII keys in code-unit order: for values with ASCII keys and no
            # floats but those it prints as ECMAScript does (every record idnode signs, most
            # trace attributes) it is the canonical form, at C speed.
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        out: list[str] = []
        _write(obj, out)
    except orjson.JSONEncodeError as exc:  # lone surrogates, nesting too deep
        raise ValueError(f"not canonicalizable: {exc}") from None
    except RecursionError:
        raise ValueError("not canonicalizable: nested too deeply") from None
    return "".join(out).encode("utf-8")


def _simple(obj: Any) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and k.isascii() and _simple(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_simple(v) for v in obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return True
    if isinstance(obj, float):
        return prints_as_ecmascript(obj)
    return isinstance(obj, int) and -_EXACT < obj < _EXACT


def prints_as_ecmascript(x: float) -> bool:
    """Whether orjson prints the double as ECMAScript's Number::toString does (the shortest
    round-trip digits in plain notation): not integral (it would print 3.0 for 3), not in
    exponent form. Checked against number() in tests/crypto/test_jcs_floats.py."""
    return not x.is_integer() and _FLOAT_LOW <= abs(x) < _FLOAT_HIGH


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
        out.append(str(int(obj)) if -_EXACT < obj < _EXACT else _big_int(obj))
    elif isinstance(obj, float):
        out.append(number(obj))
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
                # ValueError like every other refusal here: callers catch one type.
                raise ValueError(f"JSON object keys must be strings, not {type(k).__name__}")  # noqa: TRY004
        out.append("{")
        # RFC 8785 §3.2.3: by UTF-16 code units, which differs from code point order above
        # the BMP (an emoji's surrogates sort before U+E000..U+FFFF).
        for i, k in enumerate(sorted(obj, key=_utf16)):
            if i:
                out.append(",")
            out.append(orjson.dumps(k).decode())
            out.append(":")
            _write(obj[k], out)
        out.append("}")
    else:
        raise ValueError(f"{type(obj).__name__} is not a JSON value")


def _utf16(s: str) -> bytes:
    try:
        return s.encode("utf-16-be")
    except UnicodeEncodeError:
        raise ValueError("object key with a lone surrogate") from None


def _big_int(n: int) -> str:
    # RFC 8785 reads every JSON number as a double, so a big integer means its nearest double,
    # as an ECMAScript parser would read it (JCS output like 23397602607954450 re-parses to an
    # int that is not itself a double, and must canonicalize to the same text).
    try:
        return number(float(n))
    except OverflowError:
        raise ValueError(f"integer {n} is beyond the range of a double") from None


def number(x: float) -> str:
    """ECMAScript Number::toString of a finite double (RFC 8785 §3.2.2.3)."""
    if math.isnan(x) or math.isinf(x):
        raise ValueError("NaN and infinities are not JSON numbers")
    if x == 0:
        return "0"  # also for -0.0
    if x < 0:
        return "-" + number(-x)
    # repr gives the shortest digits that round-trip, as ECMAScript requires (ties to the
    # closer value, as both do); only the layout differs.
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    exp = int(exp_text) if exp_text else 0
    all_digits = (whole + frac).lstrip("0")
    # n: the decimal exponent such that value = 0.d1d2...dk × 10^n
    n = len(whole) + exp if whole != "0" else exp - (len(frac) - len(frac.lstrip("0")))
    digits = all_digits.rstrip("0") or "0"
    k = len(digits)
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
