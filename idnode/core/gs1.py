"""GS1 keys in identifiers: GTIN check digits, GS1 Digital Link paths (`/01/{gtin}/10/{batch}
/21/{serial}`), and their identifiers under the enterprise prefix mapped to the GTIN's GS1
Company Prefix, so one scan resolver serves GS1 barcodes and idnode codes alike."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from idnode.core.errors import InvalidArgument

# GS1 AI encodable character set 82 (GS1 General Specifications §7.11) for batch and serial,
# less "/", which would make the identifier path ambiguous.
_CSET82 = re.compile(r"[!\"%&'()*+,\-.0-9:;<=>?A-Z_a-z]{1,20}\Z")
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


@dataclass(frozen=True, slots=True)
class DigitalLink:
    gtin: str
    batch: str | None = None
    serial: str | None = None

    def suffix(self) -> str:
        """The identifier suffix: the canonical Digital Link path without its leading '/'."""
        out = f"01/{self.gtin}"
        if self.batch is not None:
            out += f"/10/{self.batch}"
        if self.serial is not None:
            out += f"/21/{self.serial}"
        return out

    def broader(self) -> list[DigitalLink]:
        """This key, then the batch level, then the product level (how a resolver falls back
        when a unit has no record of its own)."""
        out = [self]
        if self.serial is not None and self.batch is not None:
            out.append(DigitalLink(self.gtin, self.batch))
        if self.serial is not None or self.batch is not None:
            out.append(DigitalLink(self.gtin))
        return out


def parse_path(path: str) -> DigitalLink:
    """`/01/{gtin}[/10/{batch}][/21/{serial}]`, percent-decoded, each part checked."""
    parts = path.strip("/").split("/")
    if len(parts) < 2 or len(parts) % 2 or parts[0] != "01":
        raise InvalidArgument("a GS1 Digital Link path is /01/{gtin}[/10/{batch}][/21/{serial}]",
                              field="path", reason="INVALID_DIGITAL_LINK")
    gtin = gtin14(parts[1])
    found: dict[str, str] = {}
    for ai, raw in zip(parts[2::2], parts[3::2]):
        if ai not in ("10", "21") or ai in found:
            raise InvalidArgument(f"application identifier {ai!r} is not supported here (10 "
                                  "batch/lot, 21 serial, once each)", field="path",
                                  reason="INVALID_DIGITAL_LINK")
        value = unquote(raw)
        if _CSET82.match(value) is None:
            raise InvalidArgument(f"AI {ai} value {value!r} is not 1-20 characters of GS1 "
                                  "character set 82", field=f"ai{ai}",
                                  reason="INVALID_DIGITAL_LINK")
        found[ai] = value
    if "10" in found and "21" in found and parts.index("10") > parts.index("21"):
        raise InvalidArgument("batch (10) comes before serial (21)", field="path",
                              reason="INVALID_DIGITAL_LINK")
    return DigitalLink(gtin, found.get("10"), found.get("21"))
