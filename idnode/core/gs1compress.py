"""GS1 Digital Link compression (GS1 Digital Link standard 1.1+, "Compression"): the binary
form that packs a Digital Link's element strings into a short URI-safe base64 path segment,
so a long link fits a small QR code. A GS1-Conformant resolver must decompress it.

The bit layout, as the standard defines it:
- the segment is read as a bit string, 6 bits per character of the URI-safe alphabet
  A-Z a-z 0-9 - _ (the last character zero-padded);
- then, while more than 8 bits remain, two 4-bit hex digits h1 h2:
  - both 0-9: the first two digits of an AI; TABLE_P gives its length (2, 3 or 4 digits: the
    rest follow as 4-bit digits), then its value, each component per TABLE_F;
  - an entry of TABLE_OPT: a sequence of AIs (GTIN with batch, ...) whose values follow;
  - h1 = F: a non-GS1 key=value pair: 7 bits key length (starting at h2), the key in 6-bit
    alphabet characters, then the value as a variable-length alphanumeric of at most 127;
- a numeric component of fixed length L takes ceil(L·log2 10) bits (an integer, zero-padded
  back to L digits); of variable length up to M, first ceil(log2 M) bits of digit count;
- an alphanumeric component starts with 3 bits naming its encoding: 0 digits (as a number),
  1 lower-case hex, 2 upper-case hex (4 bits a character), 3 the URI-safe alphabet (6 bits),
  4 7-bit ASCII; of variable length, then its character count as for numbers.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable

from idnode.core.errors import InvalidArgument

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_HEX = "0123456789ABCDEF"
SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")

#: A component: (kind "N" or "X", fixed length or None, maximum length).
Component = tuple[str, int | None, int]


def _fixed(kind: str, n: int) -> Component:
    return (kind, n, n)


def _var(kind: str, m: int) -> Component:
    return (kind, None, m)


def _formats() -> dict[str, tuple[Component, ...]]:
    """Each AI's value as the compression reads it (GS1 General Specifications' formats)."""
    n, x = "N", "X"
    f: dict[str, tuple[Component, ...]] = {
        "00": (_fixed(n, 18),), "01": (_fixed(n, 14),), "02": (_fixed(n, 14),),
        "10": (_var(x, 20),), "20": (_fixed(n, 2),), "21": (_var(x, 20),), "22": (_var(x, 20),),
        "235": (_var(x, 28),),
        "240": (_var(x, 30),), "241": (_var(x, 30),), "242": (_var(n, 6),),
        "243": (_var(x, 20),), "250": (_var(x, 30),), "251": (_var(x, 30),),
        "253": (_fixed(n, 13), _var(x, 17)), "254": (_var(x, 20),),
        "255": (_fixed(n, 13), _var(n, 12)), "30": (_var(n, 8),), "37": (_var(n, 8),),
        "400": (_var(x, 30),), "401": (_var(x, 30),), "402": (_fixed(n, 17),),
        "403": (_var(x, 30),), "420": (_var(x, 20),), "421": (_fixed(n, 3), _var(x, 9)),
        "422": (_fixed(n, 3),), "423": (_fixed(n, 3), _var(n, 12)), "424": (_fixed(n, 3),),
        "425": (_fixed(n, 3), _var(n, 12)), "426": (_fixed(n, 3),), "427": (_var(x, 3),),
        "7001": (_fixed(n, 13),), "7002": (_var(x, 30),), "7003": (_fixed(n, 10),),
        "7004": (_var(n, 4),), "7005": (_var(x, 12),), "7006": (_fixed(n, 6),),
        "7007": (_fixed(n, 6), _var(n, 6)), "7008": (_var(x, 3),), "7009": (_var(x, 10),),
        "7010": (_var(x, 2),), "7020": (_var(x, 20),), "7021": (_var(x, 20),),
        "7022": (_var(x, 20),), "7023": (_var(x, 30),),
        "8001": (_fixed(n, 14),), "8002": (_var(x, 20),), "8003": (_fixed(n, 14), _var(x, 16)),
        "8004": (_var(x, 30),), "8005": (_fixed(n, 6),), "8006": (_fixed(n, 18),),
        "8007": (_var(x, 24),), "8008": (_fixed(n, 8), _var(n, 4)), "8009": (_var(x, 50),),
        "8010": (_var(x, 30),), "8011": (_var(n, 12),), "8012": (_var(x, 20),),
        "8013": (_var(x, 30),), "8017": (_fixed(n, 18),), "8018": (_fixed(n, 18),),
        "8019": (_var(n, 10),), "8020": (_var(x, 25),), "8026": (_fixed(n, 18),),
        "8110": (_var(x, 70),), "8111": (_fixed(n, 4),), "8112": (_var(x, 70),),
        "8200": (_var(x, 70),), "90": (_var(x, 30),),
    }
    for ai in ("11", "12", "13", "15", "16", "17"):
        f[ai] = (_fixed(n, 6),)
    for code in range(410, 418):
        f[str(code)] = (_fixed(n, 13),)
    for code in range(7030, 7040):
        f[str(code)] = (_fixed(n, 3), _var(x, 27))
    for code in range(710, 715):
        f[str(code)] = (_var(x, 20),)
    for code in range(7230, 7240):
        f[str(code)] = (_var(x, 30),)
    for code in range(91, 100):
        f[str(code)] = (_var(x, 90),)
    # Trade measures 31nn-36nn (a decimal point position 0-5 in the last digit): six digits.
    for group, last in ((310, 316), (320, 329), (330, 337), (340, 349), (350, 357),
                        (360, 369)):
        for code in range(group, last + 1):
            for d in range(6):
                f[f"{code}{d}"] = (_fixed(n, 6),)
    for d in range(10):
        f[f"390{d}"] = (_var(n, 15),)
        f[f"391{d}"] = (_fixed(n, 3), _var(n, 15))
        f[f"392{d}"] = (_var(n, 15),)
        f[f"393{d}"] = (_fixed(n, 3), _var(n, 15))
    for d in range(4):
        f[f"394{d}"] = (_fixed(n, 4),)
    return f


TABLE_F = _formats()
#: An AI's length from its first two digits (every AI sharing them has the same length).
TABLE_P = {ai[:2]: len(ai) for ai in TABLE_F}


def _optimisations() -> dict[str, tuple[str, ...]]:
    """Two hex digits (not both decimal) standing for a common sequence of AIs."""
    t: dict[str, tuple[str, ...]] = {
        "0A": ("01", "22"), "0B": ("01", "10"), "0C": ("01", "21"), "0D": ("01", "17"),
        "0E": ("01", "7003"), "0F": ("01", "30"), "1A": ("01", "10", "21", "17"),
        "1B": ("01", "15"), "1C": ("01", "11"), "1D": ("01", "16"), "1E": ("01", "91"),
        "1F": ("01", "10", "15"), "9A": ("8010", "8011"), "9B": ("8017", "8019"),
        "9C": ("8018", "8019"), "9D": ("414", "254"),
    }
    for i, h in enumerate("ABCDEF"):
        t[f"2{h}"] = ("01", f"310{i}")
        t[f"3{h}"] = ("01", f"320{i}")
    for d in range(10):
        t[f"A{d}"] = ("01", f"392{d}")
        t[f"C{d}"] = ("255", f"390{d}")
    for i, h in enumerate("ABCD"):
        t[f"C{h}"] = ("255", f"394{i}")
    # The values follow in the AIs' sorted order (01, 10, 17, 21 for 1A; 254 before 414 for
    # 9D): so GS1's reference toolkit packs and unpacks them, and so the links in use are.
    return {code: tuple(sorted(seq)) for code, seq in t.items()}


TABLE_OPT = _optimisations()


def _length_bits(maximum: int) -> int:
    return math.ceil(math.log(maximum) / math.log(2) + 0.01)


def _value_bits(digits: int) -> int:
    return math.ceil(digits * math.log(10) / math.log(2) + 0.01)


class _Bits:
    def __init__(self, text: str) -> None:
        self.bits = "".join(format(_INDEX[c], "06b") for c in text)
        self.pos = 0

    def take(self, n: int) -> int:
        if self.pos + n > len(self.bits):
            raise InvalidArgument("compressed GS1 Digital Link ends early", field="path",
                                  reason="INVALID_DIGITAL_LINK")
        chunk = self.bits[self.pos:self.pos + n]
        self.pos += n
        return int(chunk, 2) if chunk else 0

    def left(self) -> int:
        return len(self.bits) - self.pos


def decompress(segment: str) -> tuple[dict[str, str], dict[str, str]]:
    """The GS1 element strings (AI → value) and the other key=value pairs of a compressed
    segment, in the order they were packed. InvalidArgument when it is not one."""
    if SEGMENT.match(segment) is None:
        raise InvalidArgument("not a compressed GS1 Digital Link", field="path",
                              reason="INVALID_DIGITAL_LINK")
    bits = _Bits(segment)
    ais: dict[str, str] = {}
    other: dict[str, str] = {}
    while bits.left() > 8:
        h1, h2 = bits.take(4), bits.take(4)
        if h1 <= 9 and h2 <= 9:
            head = f"{h1}{h2}"
            length = TABLE_P.get(head)
            if length is None:
                raise InvalidArgument(f"compressed GS1 Digital Link names AI {head}…, which has "
                                      "no format here", field="path", reason="INVALID_DIGITAL_LINK")
            ai = head
            for _ in range(length - 2):
                d = bits.take(4)
                if d > 9:
                    raise InvalidArgument("compressed GS1 Digital Link has a non-decimal AI",
                                          field="path", reason="INVALID_DIGITAL_LINK")
                ai += str(d)
            _decode_ai(bits, ai, ais)
        elif f"{_HEX[h1]}{_HEX[h2]}" in TABLE_OPT:
            for ai in TABLE_OPT[f"{_HEX[h1]}{_HEX[h2]}"]:
                _decode_ai(bits, ai, ais)
        elif h1 == 15:
            size = (h2 << 3) | bits.take(3)
            key = "".join(ALPHABET[bits.take(6)] for _ in range(size))
            enc, count = bits.take(3), bits.take(7)
            other[key] = _chars(bits, enc, count)
        else:
            raise InvalidArgument(f"compressed GS1 Digital Link has unknown code "
                                  f"{_HEX[h1]}{_HEX[h2]}", field="path",
                                  reason="INVALID_DIGITAL_LINK")
    return ais, other


def _decode_ai(bits: _Bits, ai: str, out: dict[str, str]) -> None:
    fmt = TABLE_F.get(ai)
    if fmt is None:
        raise InvalidArgument(f"compressed GS1 Digital Link holds AI {ai}, which has no format "
                              "here", field="path", reason="INVALID_DIGITAL_LINK")
    value = ""
    for kind, fixed, maximum in fmt:
        enc = bits.take(3) if kind == "X" else 0  # an alphanumeric's encoding comes first
        count = fixed if fixed is not None else bits.take(_length_bits(maximum))
        if count > maximum:
            raise InvalidArgument(f"AI {ai} is longer than {maximum}", field="path",
                                  reason="INVALID_DIGITAL_LINK")
        value += _chars(bits, enc, count)
    out[ai] = value


def _chars(bits: _Bits, enc: int, count: int) -> str:
    if enc == 0:
        number = bits.take(_value_bits(count))  # one bit even for no digits, as packed
        return str(number).zfill(count) if count else ""
    if enc in (1, 2):
        text = "".join(_HEX[bits.take(4)] for _ in range(count))
        return text.lower() if enc == 1 else text
    if enc == 3:
        return "".join(ALPHABET[bits.take(6)] for _ in range(count))
    if enc == 4:
        return "".join(chr(bits.take(7)) for _ in range(count))
    raise InvalidArgument(f"compressed GS1 Digital Link uses unknown encoding {enc}",
                          field="path", reason="INVALID_DIGITAL_LINK")


def compress(ais: Iterable[tuple[str, str]], other: Iterable[tuple[str, str]] = (),
             *, optimise: bool = True) -> str:
    """The compressed segment for element strings (and other key=value pairs): the inverse
    of `decompress`, for tests and for printing short links."""
    pairs = dict(ais)
    out: list[str] = []
    keys = sorted(pairs)
    if optimise:
        while True:
            # The sequence saving the most AI digits; of equals, the first in code order.
            best = max(sorted(code for code, seq in TABLE_OPT.items()
                              if all(a in keys for a in seq)),
                       key=lambda code: len("".join(TABLE_OPT[code])), default=None)
            if best is None:
                break
            out.append(format(int(best, 16), "08b"))
            for ai in TABLE_OPT[best]:
                out.append(_encode_ai(ai, pairs[ai]))
                keys.remove(ai)
    for ai in keys:
        out.append("".join(format(int(d), "04b") for d in ai) + _encode_ai(ai, pairs[ai]))
    for key, value in other:
        out.append("1111" + format(len(key), "07b") + "".join(format(_INDEX[c], "06b")
                                                              for c in key))
        out.append(_encode_chars(value, format(len(value), "07b")))
    bits = "".join(out)
    bits += "0" * (-len(bits) % 6)
    return "".join(ALPHABET[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))


def _encode_ai(ai: str, value: str) -> str:
    out = []
    rest = value
    for kind, fixed, maximum in TABLE_F[ai]:
        part, rest = (rest[:fixed], rest[fixed:]) if fixed is not None else (rest, "")
        length = format(len(part), f"0{_length_bits(maximum)}b") if fixed is None else ""
        if kind == "N":
            out.append(length + (format(int(part), f"0{_value_bits(len(part))}b")
                                 if part else "0"))
        else:
            out.append(_encode_chars(part, length))
    return "".join(out)


def _encode_chars(text: str, length: str) -> str:
    if text.isdigit() and text.isascii():
        return "000" + length + format(int(text), f"0{_value_bits(len(text))}b")
    if re.fullmatch(r"[0-9A-F]+", text):
        return "010" + length + "".join(format(int(c, 16), "04b") for c in text)
    if re.fullmatch(r"[0-9a-f]+", text):
        return "001" + length + "".join(format(int(c, 16), "04b") for c in text)
    if SEGMENT.match(text):
        return "011" + length + "".join(format(_INDEX[c], "06b") for c in text)
    return "100" + length + "".join(format(ord(c), "07b") for c in text)
