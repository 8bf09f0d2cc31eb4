"""GS1 keys in identifiers: GTIN check digits, GS1 Digital Link URIs (GS1 Digital Link: URI
syntax 1.x: `/01/{gtin}[/22/{cpv}][/10/{batch}][/21/{serial}]` or `/01/{gtin}/235/{tpx}`, the
deprecated `gtin`/`cpv`/`lot`/`ser` names, and compressed links), and their identifiers under
the enterprise prefix mapped to the GTIN's GS1 Company Prefix, so one scan resolver serves GS1
barcodes and idnode codes alike.

A GTIN-8 stands in GS1's 13-digit field as `00000` + its eight digits, so its "company
prefix" for `idnode gs1 map` is written with five leading zeros: `00000950` maps every GTIN-8
of the GS1-8 prefix 950 (GS1 leaves 0000000-0000099 unused for exactly this reason), and
`000009638507` one GTIN-8, 96385074."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from idnode.core import gs1compress
from idnode.core.errors import InvalidArgument, NotFound

# GS1 AI encodable character set 82 (GS1 General Specifications §7.11): what a CPV, batch,
# serial or TPX may hold. "/" among them is written %2F in a Digital Link path.
_CSET82 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+\Z")
_GCP = re.compile(r"[0-9]{4,12}\Z")


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit for the digits before it (weights 3,1,3,… from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def gtin14(text: str, *, field: str = "gtin") -> str:
    """A GTIN-8/12/13/14 as GTIN-14, its check digit verified."""
    if not text.isdigit() or len(text) not in (8, 12, 13, 14):
        raise InvalidArgument(f"GTIN {text!r} is not 8, 12, 13 or 14 digits", field=field,
                              reason="INVALID_GTIN")
    if check_digit(text[:-1]) != text[-1]:
        raise InvalidArgument(f"GTIN {text} has check digit {text[-1]}, expected "
                              f"{check_digit(text[:-1])}", field=field, reason="INVALID_GTIN")
    return text.zfill(14)


def company_prefix(text: str) -> str:
    if _GCP.match(text) is None:
        raise InvalidArgument("a GS1 Company Prefix is 4 to 12 digits", field="gcp",
                              reason="INVALID_GCP")
    return text


#: A GTIN's key qualifiers, each at most once and in this order (GS1 Digital Link URI syntax:
#: 01 > 22 > 10 > 21, or 235 alone), with their longest values.
QUALIFIERS = {"22": 20, "10": 20, "21": 20, "235": 28}
_ORDER = ("22", "10", "21")
#: Digital Link 1.0-1.2's names for the numeric AIs (deprecated in 1.2, gone in 1.3; GS1's
#: toolkit still writes them when asked to).
ALPHAS = {"gtin": "01", "cpv": "22", "lot": "10", "ser": "21"}


@dataclass(frozen=True, slots=True)
class DigitalLink:
    gtin: str
    #: (AI, value) of the key qualifiers, in path order.
    qualifiers: tuple[tuple[str, str], ...] = ()

    def suffix(self) -> str:
        """The identifier suffix: the Digital Link path without its leading '/', values as
        given except "%" and "/" (written %25, %2F so the path splits one way only)."""
        out = f"01/{self.gtin}"
        for ai, value in self.qualifiers:
            out += f"/{ai}/{value.replace('%', '%25').replace('/', '%2F')}"
        return out

    def path(self) -> str:
        """The canonical (uncompressed) Digital Link path: GTIN-14, numeric AIs, values
        percent-encoded."""
        return f"/01/{self.gtin}" + "".join(f"/{ai}/{quote(value, safe='-._~')}"
                                             for ai, value in self.qualifiers)

    def broader(self) -> list[DigitalLink]:
        """This key, then each less specific one up to the GTIN alone: the tree a resolver
        walks up when an entity has no entry of its own (serial → batch → CPV → product)."""
        return [DigitalLink(self.gtin, self.qualifiers[:n])
                for n in range(len(self.qualifiers), -1, -1)]


@dataclass(frozen=True, slots=True)
class Request:
    """A Digital Link as a request names it."""

    link: DigitalLink
    #: key=value pairs a compressed link carried besides its key (data attributes such as
    #: 17=261231, and non-GS1 pairs): what its uncompressed form has in its query string.
    attributes: tuple[tuple[str, str], ...] = ()
    compressed: bool = False


def _qualifiers(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Key qualifiers checked: known, once each, in order, values of GS1 character set 82."""
    keys = [ai for ai, _ in pairs]
    if "235" in keys and len(keys) > 1:
        raise InvalidArgument("a TPX (235) qualifies a GTIN alone", field="path",
                              reason="INVALID_DIGITAL_LINK")
    if keys != sorted(keys, key=lambda ai: _ORDER.index(ai) if ai in _ORDER else 3) or \
            len(set(keys)) != len(keys):
        raise InvalidArgument("key qualifiers of a GTIN come once each, in the order 22, 10, 21",
                              field="path", reason="INVALID_DIGITAL_LINK")
    for ai, value in pairs:
        if not 1 <= len(value) <= QUALIFIERS[ai] or _CSET82.match(value) is None:
            raise InvalidArgument(f"AI {ai} value {value!r} is not 1-{QUALIFIERS[ai]} characters "
                                  "of GS1 character set 82", field=f"ai{ai}",
                                  reason="INVALID_DIGITAL_LINK")
    return tuple(pairs)


def parse_path(path: str) -> Request:
    """`/01/{gtin}[/{ai}/{value}]...` (numeric AIs or the deprecated names, percent-decoded
    after splitting, a trailing '/' tolerated), or a compressed link: `/{compressed}` or
    `/01/{gtin}/{compressed}`. InvalidArgument saying what is wrong."""
    parts = path.strip("/").split("/")
    if len(parts) == 1 or (len(parts) == 3 and ALPHAS.get(parts[0], parts[0]) == "01"):
        return _compressed(parts)
    if len(parts) % 2 or ALPHAS.get(parts[0], parts[0]) != "01":
        raise InvalidArgument("a GS1 Digital Link path is /01/{gtin}[/22/{cpv}][/10/{batch}]"
                              "[/21/{serial}] (or compressed)", field="path",
                              reason="INVALID_DIGITAL_LINK")
    gtin = gtin14(parts[1])
    pairs = []
    for ai, raw in zip(parts[2::2], parts[3::2]):
        ai = ALPHAS.get(ai, ai)
        if ai not in QUALIFIERS:
            raise InvalidArgument(f"application identifier {ai!r} is not a key qualifier of a GTIN "
                                  "(22 CPV, 10 batch/lot, 21 serial, 235 TPX)", field="path",
                                  reason="INVALID_DIGITAL_LINK")
        try:
            pairs.append((ai, unquote(raw, errors="strict")))
        except UnicodeDecodeError:
            raise InvalidArgument(f"AI {ai} value is not UTF-8 once percent-decoded",
                                  field=f"ai{ai}", reason="INVALID_DIGITAL_LINK") from None
    return Request(DigitalLink(gtin, _qualifiers(pairs)))


def _compressed(parts: list[str]) -> Request:
    ais, other = gs1compress.decompress(parts[-1])
    if len(parts) == 3:
        if "01" in ais:
            raise InvalidArgument("a partly compressed link repeats its GTIN", field="path",
                                  reason="INVALID_DIGITAL_LINK")
        ais = {"01": parts[1], **ais}
    if "01" not in ais:
        keys = [ai for ai in ais if ai in PRIMARY_KEYS]
        raise NotFound(f"this resolver serves GTINs (01), not {keys[0] if keys else 'this key'}",
                       field="path", reason="GS1_KEY_NOT_SERVED")
    gtin = gtin14(ais.pop("01"))
    quals = [(ai, ais.pop(ai)) for ai in (*_ORDER, "235") if ai in ais]
    attributes = sorted(ais.items()) + list(other.items())
    return Request(DigitalLink(gtin, _qualifiers(quals)), tuple(attributes), compressed=True)


#: GS1 primary keys (Digital Link URI syntax); this resolver serves 01.
PRIMARY_KEYS = ("01", "8006", "8013", "8010", "414", "417", "8017", "8018", "255", "00", "253",
                "401", "402", "8003", "8004")
