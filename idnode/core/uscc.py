"""统一社会信用代码 (Unified Social Credit Code, GB 32100-2015) validation."""
from __future__ import annotations

from idnode.core.errors import InvalidArgument

# The 31 characters of the code: digits and capitals without I, O, S, V, Z.
ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def check_char(first17: str) -> str:
    """The 18th (check) character for the first 17."""
    total = sum(_VALUE[c] * w for c, w in zip(first17, _WEIGHTS))
    return ALPHABET[(31 - total % 31) % 31]


def validate(code: str, *, field: str = "uscc") -> str:
    """Returns the code (upper-cased) or raises InvalidArgument saying which rule failed."""
    code = code.strip().upper()
    if len(code) != 18:
        raise InvalidArgument(f"a unified social credit code has 18 characters, not {len(code)}",
                              field=field, reason="INVALID_USCC")
    bad = [c for c in code if c not in _VALUE]
    if bad:
        raise InvalidArgument(f"character {bad[0]!r} is not used in unified social credit codes",
                              field=field, reason="INVALID_USCC")
    if not code[2:8].isdigit():
        raise InvalidArgument("characters 3-8 (the administrative division code) must be digits",
                              field=field, reason="INVALID_USCC")
    expected = check_char(code[:17])
    if code[17] != expected:
        raise InvalidArgument(f"check character is {code[17]!r}, expected {expected!r}",
                              field=field, reason="INVALID_USCC")
    return code
