"""`idnode labels`: QR codes read back by a decoder independent of segno (zxing-cpp) from the
PNGs, the rasterised SVGs and the rasterised PDF sheet, and their URLs resolved by a real node."""
from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import urllib.request
from typing import Any
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson
import pypdfium2
import pytest
import zxingcpp
from hypothesis import given, settings as hsettings, strategies as st
from PIL import Image

from idnode import labels
from idnode.core import identifiers
from idnode.core.errors import InvalidIdentifier
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from idnode.v1 import registry_pb2_grpc
from tests.helpers import record_input

BASE = "http://127.0.0.1:8080"
# Suffixes a URL path cannot carry as they are: fragment and query markers, a literal '%',
# UTF-8, a backslash (browsers turn it into '/'), a '/' next to a '..' segment (browsers drop
# those), and a case-sensitive pair that must stay two codes.
AWKWARD = [
    "0.118.8/A#1",
    "0.118.8/lot?7=x&y",
    "0.118.8/50%OFF",
    "0.118.8/%E4%BA%94",           # literal percent signs, not an encoding
    "0.118.8/五常大米-批次1",
    "0.118.8/Case-X",
    "0.118.8/case-x",
    "0.118.8/a/../b",
    "0.118.8/x\\y+z;w=1",
    "0.118.8/箱/07/内袋#3",
]


def _decode(image: Image.Image) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)


def _router_decodes(path: str) -> str:
    """What the node's router makes of a request path (idnode/api/http/app.py `_lookup`)."""
    return unquote(path, errors="strict") if "%" in path else path


def idnode(*args: str, dsn: str | None = None, stdin: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, IDNODE_LOG_LEVEL="WARNING")
    if dsn:
        env["IDNODE_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "idnode", *args], capture_output=True,
                          text=True, env=env, timeout=120, input=stdin)


# -- scan URLs --------------------------------------------------------------------------------
def test_scan_url_is_percent_encoded_where_the_router_decodes() -> None:
    assert labels.scan_url("0.118.8/RICE-2026-000001", BASE) == \
        "http://127.0.0.1:8080/0.118.8/RICE-2026-000001"
    assert labels.scan_url("0.118.8/A#1", BASE) == f"{BASE}/0.118.8/A%231"
    assert labels.scan_url("0.118.8/lot?7=x&y", BASE) == f"{BASE}/0.118.8/lot%3F7=x&y"
    assert labels.scan_url("0.118.8/50%OFF", BASE) == f"{BASE}/0.118.8/50%25OFF"
    assert labels.scan_url("0.118.8/大米", BASE) == f"{BASE}/0.118.8/%E5%A4%A7%E7%B1%B3"
    assert labels.scan_url("0.118.8/Case-X", BASE) == f"{BASE}/0.118.8/Case-X"  # not upper
    assert labels.scan_url("0.118.8/a/../b", BASE) == f"{BASE}/0.118.8/a%2F..%2Fb"
    assert labels.scan_url("0.118.8/箱/07", BASE) == f"{BASE}/0.118.8/%E7%AE%B1/07"
    for text in AWKWARD:
        ident = identifiers.parse(text)
        assert identifiers.parse(_router_decodes(labels.url_path(ident))) == ident


def test_the_base_url_is_the_advertised_one_or_the_listen_address() -> None:
    from idnode.config import Settings

    assert labels.base_url(Settings(http_host="10.1.2.3", http_port=8081)) == \
        "http://10.1.2.3:8081"
    assert labels.base_url(Settings(advertise_http="https://id.example.cn/")) == \
        "https://id.example.cn"
    with pytest.raises(labels.LabelError, match="without query"):
        labels.check_base_url("https://id.example.cn/?x=1")


_suffix_chars = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Cn", "Co", "Zl", "Zp",
                                                    "Zs"))


@hsettings(max_examples=300, deadline=None)
@given(st.text(_suffix_chars, min_size=1, max_size=40))
def test_every_scannable_identifier_comes_back_from_its_url_path(suffix: str) -> None:
    try:
        ident = identifiers.parse(f"0.118.8/{suffix}")
        path = labels.url_path(ident)
    except (InvalidIdentifier, labels.LabelError):
        return
    # What a browser or HTTP client sends unchanged: ASCII, no query, fragment or backslash,
    # and no '.'/'..' segment that browsers would remove (WHATWG URL path parsing).
    assert path.isascii() and not set(path) & set("?# \\\"<>`{}")
    dots = {".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"}
    assert not any(seg.lower() in dots for seg in path.split("/"))
    assert identifiers.parse(_router_decodes(path)) == ident


def test_a_dot_segment_suffix_is_refused() -> None:
    ids = labels.IdentifierList()
    with pytest.raises(labels.LabelError, match=r"argument 1: .*browsers drop a '\.\.'"):
        ids.add("0.118.8/..", "argument 1")


def test_input_lines_are_validated_with_their_line_numbers() -> None:
    ids = labels.IdentifierList()
    ids.add_lines(["\ufeff0.118.8/A\r\n", "# a comment\n", "\n", "0.118.8/B\n"], "ids.txt")
    assert [str(i) for i in ids.items] == ["0.118.8/A", "0.118.8/B"]
    with pytest.raises(labels.LabelError, match=r"^ids\.txt:2: identifier suffix contains a "
                                                r"control character or space"):
        labels.IdentifierList().add_lines(["0.118.8/A\n", "0.118.8/has space\n"], "ids.txt")
    with pytest.raises(labels.LabelError, match=r"^ids\.txt:3: prefix '0\.118\.08'"):
        labels.IdentifierList().add_lines(["0.118.8/A", "", "0.118.08/A"], "ids.txt")
    with pytest.raises(labels.LabelError, match=r"^ids\.txt:3: 0\.118\.8/A is listed twice "
                                                r"\(first at ids\.txt:1\)"):
        labels.IdentifierList().add_lines(["0.118.8/A", "0.118.8/B", "0.118.8/A"], "ids.txt")


# -- single codes -----------------------------------------------------------------------------
def _cairosvg() -> Any:
    """cairosvg, whose cairocffi loads Debian's libcairo2 at import: without it the test fails
    naming the package (a skip would let a green run hide the independent SVG check)."""
    try:
        import cairosvg
    except OSError as exc:
        pytest.fail(f"the SVGs cannot be rasterised independently without libcairo (Debian "
                    f"package libcairo2: apt-get install libcairo2): {exc}", pytrace=False)
    return cairosvg


def _index(out: Path) -> list[dict[str, str]]:
    with (out / "index.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_png_and_svg_codes_decode_to_the_exact_scan_urls(tmp_path: Path) -> None:
    source = tmp_path / "ids.txt"
    source.write_text("# awkward suffixes\n" + "\n".join(AWKWARD) + "\n", encoding="utf-8")
    want = {str(identifiers.parse(t)): labels.scan_url(t, BASE) for t in AWKWARD}

    png = idnode("labels", "--from", str(source), "--format", "png", "--out",
                 str(tmp_path / "png"), "--base-url", BASE, "--scale", "4")
    assert png.returncode == 0, png.stderr
    assert f"wrote {len(AWKWARD)} PNG code(s)" in png.stdout
    rows = _index(tmp_path / "png")
    assert {r["identifier"]: r["url"] for r in rows} == want
    assert len({r["file"].lower() for r in rows}) == len(rows)  # Case-X, case-x: two files
    for row in rows:
        found = _decode(Image.open(tmp_path / "png" / row["file"]))
        assert [b.text for b in found] == [row["url"]], row

    svg = idnode("labels", *AWKWARD[:5], "--from", "-", "--out", str(tmp_path / "svg"),
                 "--base-url", BASE, stdin="\n".join(AWKWARD[5:]))
    assert svg.returncode == 0, svg.stderr
    rows = _index(tmp_path / "svg")
    assert [r["identifier"] for r in rows] == [str(identifiers.parse(t)) for t in AWKWARD]
    cairosvg = _cairosvg()
    for row in rows:
        text = (tmp_path / "svg" / row["file"]).read_text(encoding="utf-8")
        assert row["identifier"].replace("&", "&amp;") in text  # the caption
        raster = cairosvg.svg2png(bytestring=text.encode())
        found = _decode(Image.open(io.BytesIO(raster)))
        assert [b.text for b in found] == [row["url"]], row


# -- sheets -----------------------------------------------------------------------------------
def _reading_order(found: list[zxingcpp.Barcode]) -> list[str]:
    """Decoded texts row by row, left to right (rows: centres more than ~a code apart)."""
    def centre(b: zxingcpp.Barcode) -> tuple[float, float]:
        p = b.position
        xs = (p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x)
        ys = (p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y)
        return sum(xs) / 4, sum(ys) / 4

    spots = sorted((centre(b)[1], centre(b)[0], b.text) for b in found)
    rows: list[list[tuple[float, float, str]]] = []
    for spot in spots:
        if rows and spot[0] - rows[-1][0][0] < 50:
            rows[-1].append(spot)
        else:
            rows.append([spot])
    return [text for row in rows for _, _, text in sorted(row, key=lambda s: s[1])]


def test_pdf_sheet_of_hundreds_reads_back_every_url_in_order(tmp_path: Path) -> None:
    serials = [f"0.118.8/RICE-2026-{n:06d}" for n in range(1, 441)]
    ids = serials[:100] + AWKWARD + serials[100:]
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(ids) + "\n", encoding="utf-8")
    out = tmp_path / "sheet.pdf"
    # --jobs 2 with more than a few hundred codes: the forked encoder processes are used.
    made = idnode("labels", "--from", str(source), "--out", str(out), "--base-url", BASE,
                  "--crop-marks", "--jobs", "2")
    assert made.returncode == 0, made.stderr
    assert f"wrote {len(ids)} label(s) on 12 A4 page(s) to {out}" in made.stdout

    want = [labels.scan_url(t, BASE) for t in ids]
    pdf = pypdfium2.PdfDocument(out)
    try:
        assert len(pdf) == 12
        got: list[str] = []
        for page in pdf:
            assert page.get_size() == pytest.approx(labels.A4, abs=0.01)
            got += _reading_order(_decode(page.render(scale=3, grayscale=True).to_pil()))
        assert got == want
        # Captions: ASCII as is; non-ASCII in the percent-encoded form Courier can print.
        text = "".join(pdf[2].get_textpage().get_text_bounded().split())
        assert "0.118.8/A#1" in text and "0.118.8/50%OFF" in text
        assert "%E4%BA%94%E5%B8%B8" in text
    finally:
        pdf.close()


def test_svg_sheet_pages_read_back_in_order(tmp_path: Path) -> None:
    cairosvg = _cairosvg()
    ids = [identifiers.parse(t) for t in AWKWARD]
    ids += [identifiers.parse(f"0.118.8/S-{n}") for n in range(35)]
    written = labels.write(labels.make_labels(ids, BASE), tmp_path, "svg-sheet", grid=(5, 8))
    assert [p.name for p in written] == ["page-0001.svg", "page-0002.svg"]
    page = cairosvg.svg2png(url=str(written[0]), dpi=220)
    got = _reading_order(_decode(Image.open(io.BytesIO(page))))
    assert got == [f"{BASE}/{labels.url_path(i)}" for i in ids[:40]]
    assert "五常大米-批次1" in written[0].read_text(encoding="utf-8")


def test_a_5000_label_sheet_stays_small(tmp_path: Path) -> None:
    ids = [identifiers.parse(f"0.118.8/RICE-2026-{n:06d}") for n in range(5000)]
    # One code per serial, repeated: the sheet writer's cost and size, not segno's.
    made = labels.make_labels(ids[:40], BASE)
    many = [labels.Label(str(i), made[n % 40].url, made[n % 40].qr) for n, i in enumerate(ids)]
    data = labels.pdf_sheet(many)
    assert data.startswith(b"%PDF-1.4") and data.rstrip().endswith(b"%%EOF")
    assert len(data) < 3_000_000, len(data)  # vector runs, compressed: ~270 bytes a label
    pdf = pypdfium2.PdfDocument(data)
    try:
        assert len(pdf) == 125
    finally:
        pdf.close()


# -- bad input --------------------------------------------------------------------------------
def test_a_malformed_line_names_the_line_and_nothing_is_written(tmp_path: Path) -> None:
    source = tmp_path / "ids.txt"
    source.write_text("0.118.8/OK-1\n# next one is bad\n0.118.8/BAD 2\n0.118.8/OK-3\n",
                      encoding="utf-8")
    for fmt, out in (("png", tmp_path / "png"), ("pdf", tmp_path / "x.pdf")):
        result = idnode("labels", "--from", str(source), "--format", fmt, "--out", str(out))
        assert result.returncode == 2
        assert f"labels: {source}:3: identifier suffix contains a control character or space" \
            in result.stderr
        assert not out.exists()
    result = idnode("labels", "0.118.8/OK", "0.118.08/X", "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "labels: argument 2: prefix '0.118.08'" in result.stderr
    result = idnode("labels", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "no identifiers given" in result.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# -- against a real node ----------------------------------------------------------------------
def _fetch_json(url: str) -> dict[str, object]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback only
        return orjson.loads(resp.read())  # type: ignore[no-any-return]


async def test_scanned_urls_resolve_the_same_identifiers_on_a_real_node(
        node: Node, stub: registry_pb2_grpc.RegistryStub, dsn: str, tmp_path: Path) -> None:
    # `..` segments are refused in new identifiers now; one registered before that rule
    # must still get a label that scans back to it (its `/` are percent-encoded).
    dotted = [t for t in AWKWARD if "/../" in t]
    await stub.RegisterBatch(pb.RegisterBatchRequest(
        idempotency_key="labels", records=[record_input(t, product__name=t) for t in AWKWARD
                                           if t not in dotted]))
    conn = await asyncpg.connect(dsn)
    try:
        for t in dotted:
            prefix, suffix = t.split("/", 1)
            await conn.execute(
                "INSERT INTO handles (prefix, suffix, vals) VALUES ($1, $2, $3::jsonb)",
                prefix, suffix, orjson.dumps([{
                    "index": 1, "type": "product.name", "data": {"format": "string", "value": t},
                    "ttl": 86400, "timestamp": "2026-12-01T00:00:00Z"}]).decode())
    finally:
        await conn.close()
    base = f"http://127.0.0.1:{node.ports.http}"
    # All identifiers under the prefix, read from the node's database by the CLI.
    made = await asyncio.to_thread(idnode, "labels", "--prefix", "0.118.8", "--format", "png",
                                   "--out", str(tmp_path), "--base-url", base, dsn=dsn)
    assert made.returncode == 0, made.stderr
    rows = _index(tmp_path)
    assert sorted(r["identifier"] for r in rows) == sorted(
        str(identifiers.parse(t)) for t in AWKWARD)
    for row in rows:
        (url,) = [b.text for b in _decode(Image.open(tmp_path / row["file"]))]
        assert urlsplit(url).netloc == f"127.0.0.1:{node.ports.http}"
        body = await asyncio.to_thread(_fetch_json, url)
        assert body["identifier"] == row["identifier"], url
        assert body["values"][0]["data"]["value"] == row["identifier"]  # type: ignore[index]
