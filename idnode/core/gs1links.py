"""What a GS1-Conformant resolver (GS1-Conformant Resolver standard 1.x) offers for a GS1
key: links typed with the GS1 Web vocabulary, taken from the records' values, and which one a
request is sent to.

How record values become links (docs/GS1.md):
- a value of type `gs1:<linkType>` (`gs1:pip`, `gs1:certificationInfo`, `gs1:recallStatus`,
  …) is a link of that type: as a `string` its data is the target URL; as `json` an object
  `{"href", "title", "type", "hreflang", "context"}` (`href` required; `hreflang` and
  `context` a string or a list);
- a value of Handle's type `URL` is a product information page (`gs1:pip`);
- the node's own consumer scan page (the record, its checked trace, recalls) is the default
  link (`gs1:defaultLink`), also typed `gs1:traceability`, and `gs1:pip` unless the record
  names its own. An untraced product's `gs1:defaultLink` value, if any, replaces it as the
  default: a traced product's default link is always the scan page, where recalls show.
Only http(s) targets become links; values that do not fit are not offered.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from idnode.core.negotiation import weighted
from idnode.core.records import Value

VOC = "https://ref.gs1.org/voc/"
#: The spellings of the GS1 Web vocabulary's namespace a request may use (CURIE, the current
#: and the older URIs).
_NAMESPACES = ("gs1:", "https://ref.gs1.org/voc/", "https://gs1.org/voc/",
               "https://www.gs1.org/voc/", "http://gs1.org/voc/")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}\Z")
_LANG = re.compile(r"[A-Za-z]{2}(?:-[A-Za-z]{2})?\Z")
_MEDIA = re.compile(r"[\w.+-]+/[\w.+-]+\Z")
DEFAULT = "defaultLink"
#: Titles of the link types the node writes itself or meets most.
TITLES = {"pip": "Product information", "traceability": "Traceability",
          "defaultLink": "Product information and trace", "certificationInfo": "Certification",
          "recallStatus": "Recall status", "instructions": "Instructions",
          "sustainabilityInfo": "Sustainability", "masterData": "Master data"}


@dataclass(frozen=True, slots=True)
class Link:
    rel: str
    href: str
    title: str
    type: str | None = None
    hreflang: tuple[str, ...] = ()
    context: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"href": self.href, "title": self.title}
        if self.type:
            out["type"] = self.type
        if self.hreflang:
            out["hreflang"] = list(self.hreflang)
        if self.context:
            out["context"] = list(self.context)
        return out

    def attributes(self) -> tuple[object, ...]:
        return (self.type, self.hreflang, self.context)


def link_type(text: str) -> str | None:
    """The GS1 link type a request names (`gs1:pip`, `https://ref.gs1.org/voc/pip`, …), or
    None when it is not one of the GS1 vocabulary's."""
    for ns in _NAMESPACES:
        if text.startswith(ns):
            name = text[len(ns):]
            return name if _NAME.match(name) else None
    return None


def _http(href: object) -> str | None:
    if isinstance(href, str) and href.startswith(("https://", "http://")) and \
            not any(c.isspace() for c in href):
        return href
    return None


def _strings(value: object, pattern: re.Pattern[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(v for v in items if isinstance(v, str) and pattern.match(v))


def value_links(values: Iterable[Value]) -> list[Link]:
    """The links a record's (public) values declare."""
    out = []
    for v in values:
        if v.type == "URL":
            href = _http(v.data)
            if href is not None:
                out.append(Link("pip", href, TITLES["pip"]))
            continue
        if not v.type.startswith("gs1:") or not _NAME.match(v.type[4:]):
            continue
        rel = v.type[4:]
        if v.format == "string":
            href = _http(v.data)
            if href is not None:
                out.append(Link(rel, href, TITLES.get(rel, rel)))
        elif v.format == "json":
            try:
                obj = orjson.loads(v.data)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(obj, dict) or (href := _http(obj.get("href"))) is None:
                continue
            title = obj.get("title")
            media = obj.get("type")
            out.append(Link(rel, href,
                            title if isinstance(title, str) and title else TITLES.get(rel, rel),
                            media if isinstance(media, str) and _MEDIA.match(media) else None,
                            _strings(obj.get("hreflang"), _LANG),
                            _strings(obj.get("context"), re.compile(r"\S{1,64}\Z"))))
    return out


def entry_links(values: Sequence[Value], scan_page: str, item: str, *, traced: bool
                ) -> dict[str, list[Link]]:
    """An entry's links by type (the linkset's link context for one record)."""
    declared = value_links(values)
    links: dict[str, list[Link]] = {}
    for link in declared:
        if link.rel != DEFAULT:
            links.setdefault(link.rel, []).append(link)
    own_default = next((link for link in declared if link.rel == DEFAULT), None)
    page = Link(DEFAULT, scan_page, item)
    links = {DEFAULT: [Link(DEFAULT, own_default.href, own_default.title)
                       if own_default is not None and not traced else page], **links}
    links.setdefault("traceability", []).insert(0, Link("traceability", scan_page,
                                                        TITLES["traceability"], "text/html"))
    if "pip" not in links:
        links["pip"] = [Link("pip", scan_page, TITLES["pip"], "text/html")]
    return links


def choose(links: Sequence[Link], languages: Sequence[str], media: Sequence[str],
           context: str | None) -> list[Link]:
    """The best links of one type for a request: those in its most wanted language, then of
    its most wanted media type, then for its context. One: redirect to it; several with the
    same attributes: the client must choose (300)."""
    pool = list(links)
    if context is not None:
        pool = [link for link in pool if context in link.context] or pool
    for lang in languages:
        matched = [link for link in pool if any(
            h.lower() == lang or h.lower().split("-")[0] == lang.split("-")[0]
            for h in link.hreflang)]
        if matched:
            pool = matched
            break
    for mt in media:
        matched = [link for link in pool if link.type == mt]
        if matched:
            pool = matched
            break
    first = pool[0]
    twins = [link for link in pool if link.attributes() == first.attributes()]
    return twins if len({link.href for link in twins}) > 1 else [first]


def ranked(header: str) -> list[str]:
    """The values of an Accept or Accept-Language header, most wanted first (q=0 dropped)."""
    items = sorted((-q, i, name) for i, (name, q) in enumerate(weighted(header))
                   if name and q > 0 and name != "*")
    return [name for _, _, name in items]


def linkset_entry(anchor: str, item: str, links: Mapping[str, Sequence[Link]]
                  ) -> dict[str, Any]:
    """One link context object of an RFC 9264 linkset, link types as GS1 vocabulary URIs."""
    out: dict[str, Any] = {"anchor": anchor, "itemDescription": item}
    for rel, group in links.items():
        out[VOC + rel] = [link.to_json() for link in group]
    return out
