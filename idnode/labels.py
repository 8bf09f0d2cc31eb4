"""Printable QR codes for 一品一码: each code carries its identifier's scan URL on this node.

Single codes are SVG (with a caption) or PNG files; a batch becomes an A4 sheet, as one
multi-page PDF or one SVG per page. The QR symbols come from segno; the sheets are drawn here,
module runs as vector rectangles, so a sheet of thousands stays small and prints sharp.
"""
from __future__ import annotations

import csv
import hashlib
import math
import multiprocessing
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from pathlib import Path
from urllib.parse import quote, urlsplit

import segno

from idnode.config import Settings
from idnode.core import identifiers
from idnode.core.errors import InvalidIdentifier

ECC_LEVELS = ("M", "Q", "H")
#: The quiet zone ISO/IEC 18004 asks for around a QR code, in modules.
QUIET_ZONE = 4
DEFAULT_GRID = (5, 8)

# RFC 3986 path characters that may stay literal: the node's router splits the request
# target at '?' only and percent-decodes the rest (idnode/api/http/app.py `_lookup`), and
# browsers send these unchanged. Everything else — '#', '?', '%', '\\' (which browsers turn
# into '/'), spaces and non-ASCII (sent as UTF-8) — is percent-encoded.
_PATH_SAFE = "-._~!$&'()*+,;=:@"
_DOT_SEGMENTS = (".", "..")


class LabelError(ValueError):
    """Input that cannot become a label: says which one (file and line, or argument) and why."""


@dataclass(frozen=True, slots=True)
class Label:
    """One identifier, its scan URL and its QR code."""

    identifier: str
    url: str
    qr: segno.QRCode


# -- scan URLs ----------------------------------------------------------------------------------
def base_url(settings: Settings) -> str:
    """The node's public HTTP URL: `advertise_http` if set, else its listen address."""
    return check_base_url(settings.advertise_http or
                          f"http://{settings.http_host}:{settings.http_port}")


def check_base_url(url: str) -> str:
    """An absolute http(s) URL without query or fragment, returned without a trailing '/'."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise LabelError(f"base URL {url!r} must be http(s)://host[:port][/path], "
                         "without query or fragment")
    return url.rstrip("/")


def url_path(identifier: identifiers.Identifier) -> str:
    """The identifier as a URL path (no leading '/') that the node decodes back to it."""
    parts = identifier.suffix.split("/")
    if any(p in _DOT_SEGMENTS for p in parts):
        # Browsers drop '.' and '..' segments (even spelled %2E) before sending the request,
        # so such a segment must not stand alone: encoding the suffix's '/' keeps it in one.
        if identifier.suffix in _DOT_SEGMENTS:
            raise LabelError(f"identifier {identifier} cannot be put in a URL: browsers drop "
                             f"a {identifier.suffix!r} path segment")
        suffix = quote(identifier.suffix, safe=_PATH_SAFE)
    else:
        suffix = "/".join(quote(p, safe=_PATH_SAFE) for p in parts)
    # The prefix is digits and dots; its '/' stays literal, as the router expects.
    return f"{identifier.prefix}/{suffix}"


def scan_url(identifier: str | identifiers.Identifier, base: str) -> str:
    """`{base}/{identifier}`, percent-encoded exactly where the node's router decodes."""
    ident = identifiers.parse(identifier) if isinstance(identifier, str) else identifier
    return f"{base}/{url_path(ident)}"


# -- input ----------------------------------------------------------------------------------------
class IdentifierList:
    """Validated identifiers in order, each remembered with where it came from."""

    def __init__(self) -> None:
        self.items: list[identifiers.Identifier] = []
        self._where: dict[identifiers.Identifier, str] = {}

    def add(self, text: str, where: str) -> None:
        """Parses one identifier; `where` (e.g. `ids.txt:3`) leads any error message."""
        try:
            ident = identifiers.parse(text)
            url_path(ident)  # refuse what cannot be scanned back now, not halfway through
        except (InvalidIdentifier, LabelError) as exc:
            raise LabelError(f"{where}: {exc}") from None
        first = self._where.get(ident)
        if first is not None:
            # One product, one code: a repeated identifier is a mistake in the list.
            raise LabelError(f"{where}: {ident} is listed twice (first at {first})")
        self._where[ident] = where
        self.items.append(ident)

    def add_lines(self, lines: Iterable[str], source: str) -> None:
        """One identifier a line; blank lines and lines starting with '#' are skipped."""
        for number, line in enumerate(lines, start=1):
            # Only the line break is cut: a trailing space is part of what was given and
            # the parser refuses it, rather than a different code being printed silently.
            text = line.rstrip("\r\n")
            if number == 1:
                text = text.removeprefix("\ufeff")  # spreadsheet exports start with a BOM
            if not text.strip() or text.startswith("#"):
                continue
            self.add(text, f"{source}:{number}")


# -- QR symbols -----------------------------------------------------------------------------------
def check_ecc(ecc: str) -> str:
    """The error correction level, if it is one we print (L is too weak for labels)."""
    if ecc not in ECC_LEVELS:
        raise LabelError(f"error correction level {ecc!r} is not one of {', '.join(ECC_LEVELS)}")
    return ecc


def make_qr(url: str, ecc: str = "M") -> segno.QRCode:
    """A QR code (never Micro QR, which phone cameras do not read) at least at level `ecc`."""
    check_ecc(ecc)
    # boost_error raises the level when it fits in the same symbol size: free robustness.
    return segno.make(url, error=ecc, micro=False, boost_error=True)


# Below this many codes a process pool costs more than it saves.
_PARALLEL_MIN = 400


def make_labels(idents: Sequence[identifiers.Identifier], base: str, ecc: str = "M",
                jobs: int = 1) -> list[Label]:
    """Labels in input order. segno spends ~4 ms a code choosing its mask (pure Python), so
    large batches are spread over `jobs` forked processes."""
    check_ecc(ecc)
    urls = [f"{base}/{url_path(i)}" for i in idents]
    if jobs > 1 and len(urls) >= _PARALLEL_MIN and \
            "fork" in multiprocessing.get_all_start_methods():
        # fork, not spawn: spawn re-runs `python -m idnode`'s __main__ in every child. The CLI
        # calls this with no other thread running, which is what makes fork safe.
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            codes = pool.map(partial(make_qr, ecc=ecc), urls,
                             chunksize=max(1, len(urls) // (jobs * 4)))
    else:
        codes = [make_qr(u, ecc) for u in urls]
    return [Label(str(i), u, q) for i, u, q in zip(idents, urls, codes)]


def _runs(qr: segno.QRCode) -> Iterable[tuple[int, int, int]]:
    """(row, column, length) of each horizontal run of dark modules, quiet zone excluded."""
    for r, row in enumerate(qr.matrix):
        # The matrix is a bytearray of 0/1 per row; runs of 1s are found in C by the regex.
        for m in _DARK_RUN.finditer(row):
            yield r, m.start(), m.end() - m.start()


_DARK_RUN = re.compile(rb"\x01+")


def _svg_path(qr: segno.QRCode, offset: int = QUIET_ZONE) -> str:
    """An SVG path in module units, the quiet zone as the origin offset."""
    return "".join(f"M{c + offset} {r + offset}h{n}v1h-{n}z" for r, c, n in _runs(qr))


# -- captions -------------------------------------------------------------------------------------
def _columns(text: str) -> int:
    """Width in monospace columns: CJK (wide and full-width) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _wrap(text: str, width: int, max_lines: int) -> list[str] | None:
    """Lines of at most `width` columns, or None if more than `max_lines` would be needed."""
    lines: list[str] = []
    line, used = "", 0
    for ch in text:
        w = _columns(ch)
        if used + w > width and line:
            lines.append(line)
            line, used = "", 0
            if len(lines) == max_lines:
                return None
        line, used = line + ch, used + w
    lines.append(line)
    return lines


def _fit(text: str, box_width: float, sizes: Sequence[float], max_lines: int
         ) -> tuple[float, list[str]]:
    """The largest font size (monospace, 0.6 em a column) at which text fits the box, and its
    lines; at the smallest size a text still too long ends with '...' and its last part."""
    cols = 1
    for size in sizes:
        cols = max(4, int(box_width / (0.6 * size)))
        lines = _wrap(text, cols, max_lines)
        if lines is not None:
            return size, lines
    head = (_wrap(text, cols, len(text)) or [])[:max_lines - 1]
    tail = ""
    for ch in reversed(text):  # the end of a code (a serial number) tells labels apart
        if _columns(ch + tail) > cols - 3:
            break
        tail = ch + tail
    return sizes[-1], [*head, "..." + tail]


def pdf_caption(identifier: str) -> str:
    """What a PDF sheet prints under a code. The PDF uses the standard Courier font, which has
    no CJK glyphs, and embedding a CJK font would weigh megabytes; so an identifier with
    non-ASCII characters is printed in its percent-encoded URL form, as on the scan URL."""
    if identifier.isascii():
        return identifier
    return url_path(identifiers.parse(identifier))


# -- single files ---------------------------------------------------------------------------------
def svg(label: Label, scale: int = 10, caption: bool = True) -> str:
    """One code as SVG, `scale` px a module, with the identifier under it (PNGs, written by
    segno, carry the code alone: text there would need a font and a rasteriser)."""
    n = label.qr.symbol_size(border=QUIET_ZONE)[0]
    side = n * scale
    height, text = side, ""
    if caption:
        size, lines = _fit(label.identifier, side - 2 * scale,
                           (max(8.0, 2 * scale), max(6.0, 1.4 * scale)), 3)
        lead = size * 1.2
        text = "".join(
            f'<text x="{side / 2:.2f}" y="{side + (i + 0.8) * lead:.2f}">{escape(line)}</text>'
            for i, line in enumerate(lines))
        text = (f'<g font-family="DejaVu Sans Mono, Courier New, monospace" '
                f'font-size="{size:.2f}" text-anchor="middle" fill="#000">{text}</g>')
        height = side + lead * (len(lines) + 0.5)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{side:g}" height="{height:.2f}" '
            f'viewBox="0 0 {side:g} {height:.2f}">'
            f'<title>{escape(label.identifier)}</title>'
            f'<rect width="100%" height="100%" fill="#fff"/>'
            f'<path transform="scale({scale:g})" fill="#000" d="{_svg_path(label.qr)}"/>'
            f'{text}</svg>\n')


def file_name(identifier: str) -> str:
    """A file name safe on every file system: a readable ASCII part and a hash of the exact
    identifier, as case-insensitive file systems would merge `A-1` and `a-1`."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", identifier.replace("/", "_"))[:80].strip("._")
    digest = hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:12]
    return f"{readable}-{digest}"


def write_files(labels: Sequence[Label], out_dir: Path, fmt: str, scale: int = 10
                ) -> list[Path]:
    """One SVG or PNG a label into out_dir, and index.csv (file, identifier, url)."""
    if not 1 <= scale <= 100:
        raise LabelError(f"scale {scale}: 1..100 pixels a module")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for label in labels:
        path = out_dir / f"{file_name(label.identifier)}.{fmt}"
        if fmt == "svg":
            path.write_text(svg(label, scale), encoding="utf-8")
        else:
            label.qr.save(str(path), kind="png", scale=scale, border=QUIET_ZONE)
        written.append(path)
        rows.append((path.name, label.identifier, label.url))
    index = out_dir / "index.csv"
    with index.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("file", "identifier", "url"))
        w.writerows(rows)
    return [*written, index]


# -- sheets ---------------------------------------------------------------------------------------
A4 = (595.2756, 841.8898)  # points
_MARGIN = 28.35            # 10 mm
_PAD = 3.0                 # between a cell's edge and its code (the quiet zone is inside)
_TEXT_SIZES = (6.0, 5.0, 4.2, 3.5)
_TEXT_LINES = 3


@dataclass(frozen=True, slots=True)
class _Cell:
    x: float          # left of the code's square, quiet zone included (top-down coordinates)
    y: float          # top of that square
    side: float
    text_top: float
    center: float     # the cell's horizontal centre
    width: float      # room for the caption


def _cells(grid: tuple[int, int]) -> list[_Cell]:
    cols, rows = grid
    if not (1 <= cols <= 20 and 1 <= rows <= 30):
        raise LabelError(f"grid {cols}x{rows}: columns 1..20, rows 1..30")
    w = (A4[0] - 2 * _MARGIN) / cols
    h = (A4[1] - 2 * _MARGIN) / rows
    text_h = _TEXT_LINES * _TEXT_SIZES[0] * 1.15 + 1
    side = min(w - 2 * _PAD, h - 2 * _PAD - text_h)
    if side < 30:  # ~10 mm: below that a phone camera struggles with a 30-module code
        raise LabelError(f"grid {cols}x{rows} leaves codes of {side / 2.835:.1f} mm; use fewer")
    cells = []
    for r in range(rows):
        for c in range(cols):
            cx = _MARGIN + (c + 0.5) * w
            top = _MARGIN + r * h + _PAD
            cells.append(_Cell(cx - side / 2, top, side, top + side, cx, w - 2 * _PAD))
    return cells


def _guides(grid: tuple[int, int]) -> list[tuple[float, float, float, float]]:
    """Crop marks: short crosses at the grid's corners, as line segments (top-down)."""
    cols, rows = grid
    w = (A4[0] - 2 * _MARGIN) / cols
    h = (A4[1] - 2 * _MARGIN) / rows
    arm = 4.0
    lines = []
    for r in range(rows + 1):
        for c in range(cols + 1):
            x, y = _MARGIN + c * w, _MARGIN + r * h
            lines += [(x - arm, y, x + arm, y), (x, y - arm, x, y + arm)]
    return lines


def _pages(labels: Sequence[Label], grid: tuple[int, int]
           ) -> Iterable[list[tuple[_Cell, Label]]]:
    cells = _cells(grid)
    for start in range(0, len(labels), len(cells)):
        yield list(zip(cells, labels[start:start + len(cells)]))


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_sheet(labels: Sequence[Label], grid: tuple[int, int] = DEFAULT_GRID,
              crop_marks: bool = False, title: str = "idnode labels") -> bytes:
    """A multi-page A4 PDF: a grid of codes, each with its identifier under it.

    A minimal PDF 1.4 writer: per page one compressed content stream of filled rectangles (one
    path per code, so renderers leave no seams between rows) and Courier text.
    """
    if not labels:
        raise LabelError("no identifiers to print")
    height = A4[1]
    objects: list[bytes] = [b"", b"",  # 1 catalog, 2 page tree: written last
                            b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier "
                            b"/Encoding /WinAnsiEncoding >>"]
    page_ids = []
    guides = ""
    if crop_marks:
        guides = "q 0.25 w 0.5 G " + " ".join(
            f"{x1:.2f} {height - y1:.2f} m {x2:.2f} {height - y2:.2f} l"
            for x1, y1, x2, y2 in _guides(grid)) + " S Q\n"
    for page in _pages(labels, grid):
        ops = [guides, "0 g\n"]
        for cell, label in page:
            n = label.qr.symbol_size(border=QUIET_ZONE)[0]
            unit = cell.side / n
            # Module units, y downwards from the square's top-left: rectangles are then
            # small integers, which keeps a 5,000-code sheet to a few megabytes.
            ops.append(f"q {unit:.4f} 0 0 {-unit:.4f} {cell.x:.2f} {height - cell.y:.2f} cm\n")
            ops.append(" ".join(f"{c + QUIET_ZONE} {r + QUIET_ZONE} {k} 1 re"
                                for r, c, k in _runs(label.qr)))
            ops.append(" f Q\n")
            size, lines = _fit(pdf_caption(label.identifier), cell.width, _TEXT_SIZES,
                               _TEXT_LINES)
            for i, line in enumerate(lines):
                x = cell.center - 0.6 * size * len(line) / 2
                y = height - (cell.text_top + (i + 1) * size * 1.15)
                ops.append(f"BT /F1 {size:g} Tf {x:.2f} {y:.2f} Td {_pdf_string(line)} Tj ET\n")
        content = zlib.compress("".join(ops).encode("latin-1"), 6)
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
                       + content + b"\nendstream")
        objects.append(("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.4f %.4f] "
                        "/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
                        % (A4[0], A4[1], len(objects))).encode())
        page_ids.append(len(objects))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = ("<< /Type /Pages /Kids [%s] /Count %d >>" % (
        " ".join(f"{i} 0 R" for i in page_ids), len(page_ids))).encode()
    objects.append(b"<< /Producer (idnode) /Title " + _pdf_string(title).encode("latin-1")
                   + b" >>")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, len(objects), xref))
    return bytes(out)


def svg_sheets(labels: Sequence[Label], grid: tuple[int, int] = DEFAULT_GRID,
               crop_marks: bool = False) -> list[str]:
    """The same A4 sheet as SVG, one document a page; captions keep their own characters."""
    if not labels:
        raise LabelError("no identifiers to print")
    pages = []
    guides = ""
    if crop_marks:
        guides = ('<path stroke="#808080" stroke-width="0.25" d="' + "".join(
            f"M{x1:.2f} {y1:.2f}L{x2:.2f} {y2:.2f}" for x1, y1, x2, y2 in _guides(grid))
            + '"/>')
    for page in _pages(labels, grid):
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="297mm" '
                 f'viewBox="0 0 {A4[0]:.4f} {A4[1]:.4f}">'
                 f'<rect width="100%" height="100%" fill="#fff"/>{guides}'
                 f'<g font-family="DejaVu Sans Mono, Courier New, monospace" '
                 f'text-anchor="middle" fill="#000">']
        for cell, label in page:
            n = label.qr.symbol_size(border=QUIET_ZONE)[0]
            unit = cell.side / n
            size, lines = _fit(label.identifier, cell.width, _TEXT_SIZES, _TEXT_LINES)
            parts.append(f'<path transform="translate({cell.x:.2f} {cell.y:.2f}) '
                         f'scale({unit:.4f})" d="{_svg_path(label.qr)}"/>')
            parts.extend(f'<text x="{cell.center:.2f}" '
                         f'y="{cell.text_top + (i + 1) * size * 1.15:.2f}" '
                         f'font-size="{size:g}">{escape(line)}</text>'
                         for i, line in enumerate(lines))
        parts.append("</g></svg>\n")
        pages.append("".join(parts))
    return pages


def parse_grid(text: str) -> tuple[int, int]:
    """`COLSxROWS`, e.g. 5x8."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if m is None:
        raise LabelError(f"grid {text!r}: expected COLSxROWS, e.g. 5x8")
    grid = (int(m[1]), int(m[2]))
    _cells(grid)
    return grid


def sheet_pages(count: int, grid: tuple[int, int]) -> int:
    """How many A4 pages `count` labels take."""
    return math.ceil(count / (grid[0] * grid[1]))


FORMATS = ("svg", "png", "pdf", "svg-sheet")


def write(labels: Sequence[Label], out: Path, fmt: str, *, scale: int = 10,
          grid: tuple[int, int] = DEFAULT_GRID, crop_marks: bool = False) -> list[Path]:
    """Writes the labels in `fmt` and returns the files written: svg and png put one file a
    code and index.csv into the directory `out`, pdf one sheet file, svg-sheet one file a page
    into the directory `out`."""
    if not labels:
        raise LabelError("no identifiers to print")
    if fmt in ("svg", "png"):
        return write_files(labels, out, fmt, scale)
    if fmt == "pdf":
        data = pdf_sheet(labels, grid, crop_marks)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and renamed: a failure never leaves half a sheet under the real name.
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
        return [out]
    if fmt == "svg-sheet":
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for number, page in enumerate(svg_sheets(labels, grid, crop_marks), start=1):
            path = out / f"page-{number:04d}.svg"
            path.write_text(page, encoding="utf-8")
            written.append(path)
        return written
    raise LabelError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
