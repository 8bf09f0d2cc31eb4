"""Identifier syntax (DESIGN §2): PREFIX/SUFFIX, parsed strictly at the trust boundary."""
from __future__ import annotations

import re
import unicodedata
from idnode.core.errors import InvalidIdentifier
from idnode.model.identifiers import Identifier as Identifier

MAX_PREFIX_LEN = 64
MAX_SUFFIX_BYTES = 255
MAX_IDENTIFIER_BYTES = MAX_PREFIX_LEN + 1 + MAX_SUFFIX_BYTES

# Decimal segments without leading zeros (so one prefix has one spelling), at least two:
# the first ones name the node (0.118), the rest the enterprise.
_PREFIX_RE = re.compile(r"(?:0|[1-9][0-9]{0,9})(?:\.(?:0|[1-9][0-9]{0,9}))+\Z")
# C0/C1 controls and DEL; other invisible characters are refused below by category.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Unicode categories never allowed in a suffix: controls, format characters (zero-width
# joiners, bidi overrides, which make look-alike codes), surrogates, unassigned, private use,
# and separators other than the ASCII space... which is refused too, as a scanner cannot
# tell a trailing space.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp", "Zs"})


def parse_prefix(text: str, *, field: str = "prefix") -> str:
    """Validates an enterprise or node prefix such as `0.118.8` and returns it."""
    if not isinstance(text, str) or not text:
        raise InvalidIdentifier("prefix is empty", field=field)
    if len(text) > MAX_PREFIX_LEN:
        raise InvalidIdentifier(f"prefix is longer than {MAX_PREFIX_LEN} characters", field=field)
    if _PREFIX_RE.match(text) is None:
        raise InvalidIdentifier(
            f"prefix {text!r} is not dot-separated decimal segments (at least two, "
            "no leading zeros), e.g. 0.118.8", field=field)
    return text


def parse(text: str, *, field: str = "identifier") -> Identifier:
    """Parses and normalises (to NFC) `PREFIX/SUFFIX`; raises InvalidIdentifier saying why."""
    if not isinstance(text, str) or not text:
        raise InvalidIdentifier("identifier is empty", field=field)
    slash = text.find("/")
    if slash < 0:
        raise InvalidIdentifier(f"identifier {_show(text)} has no '/' between prefix and suffix",
                                field=field, identifier=text[:MAX_IDENTIFIER_BYTES])
    prefix = parse_prefix(text[:slash], field=field)
    suffix = text[slash + 1:]
    if not suffix:
        raise InvalidIdentifier("identifier suffix is empty", field=field, identifier=text)
    if not suffix.isascii():
        # Canonical composition, so the same characters typed on different systems (NFD on
        # macOS) name the same identifier.
        suffix = unicodedata.normalize("NFC", suffix)
        for ch in suffix:
            if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
                raise InvalidIdentifier(
                    f"identifier suffix contains a control, format or separator character "
                    f"U+{ord(ch):04X}", field=field, identifier=_show(text))
        size = len(suffix.encode("utf-8"))
    else:
        if _CONTROL_RE.search(suffix) is not None or " " in suffix:
            raise InvalidIdentifier("identifier suffix contains a control character or space",
                                    field=field, identifier=_show(text))
        size = len(suffix)
    if size > MAX_SUFFIX_BYTES:
        raise InvalidIdentifier(f"identifier suffix is {size} bytes, more than {MAX_SUFFIX_BYTES}",
                                field=field, identifier=_show(text[:64]) + "…")
    return Identifier(prefix, suffix)


#: Path segments that browsers and scanner apps resolve away (RFC 3986 §5.2.4) before a URL
#: is sent: /0.118.8/a/../b reaches the node as /0.118.8/b.
DOT_SEGMENTS = (".", "..")


def parse_new(text: str, *, field: str = "identifier") -> Identifier:
    """`parse`, and what only an identifier being registered must also satisfy: no '.' or
    '..' segment in its suffix, which a scanned URL could never carry to the node intact.
    Identifiers registered before this rule still parse (and resolve) with `parse`."""
    ident = parse(text, field=field)
    if "." in ident.suffix:
        for segment in ident.suffix.split("/"):
            if segment in DOT_SEGMENTS:
                raise InvalidIdentifier(
                    f"identifier suffix {ident.suffix!r} has a {segment!r} path segment, which "
                    "browsers and scanner apps remove from a URL before sending it (RFC 3986 "
                    "§5.2.4), so its scanned link would name another identifier; use another "
                    "character or put it inside a segment", field=field, reason="DOT_SEGMENT",
                    identifier=str(ident))
    return ident


def _show(text: str) -> str:
    return repr(text[:MAX_IDENTIFIER_BYTES])
