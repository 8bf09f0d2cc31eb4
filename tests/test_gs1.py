"""GS1: GTIN check digits, Digital Link paths, and scans resolving to identifiers."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idnode.cli import local_operator
from idnode.core import gs1
from idnode.core.errors import InvalidArgument
from idnode.node import Node
from idnode.v1 import registry_pb2 as pb
from tests.helpers import http_get, record_input


@pytest.mark.parametrize("gtin", ["09506000134352", "4006381333931", "96385074", "036000291452"])
def test_valid_gtins(gtin: str) -> None:
    assert gs1.gtin14(gtin) == gtin.zfill(14)


@pytest.mark.parametrize("gtin", ["09506000134353", "4006381333930", "123", "0950600013435a"])
def test_invalid_gtins_are_refused(gtin: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        gs1.gtin14(gtin)
    assert err.value.reason == "INVALID_GTIN"


@given(st.text("0123456789", min_size=13, max_size=13))
def test_any_body_with_its_check_digit_is_valid(body: str) -> None:
    full = body + gs1.check_digit(body)
    assert gs1.gtin14(full) == full
    wrong = body + str((int(full[-1]) + 1) % 10)
    with pytest.raises(InvalidArgument):
        gs1.gtin14(wrong)


@pytest.mark.parametrize("path", ["/01/09506000134352/21/7/10/A", "/01/09506000134352/17/2612",
                                  "/01/09506000134352/10/a%2Fb", "/02/09506000134352",
                                  "/01/09506000134352/10/" + "x" * 21, "/01/09506000134352/10"])
def test_bad_digital_links_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgument):
        gs1.parse_path(path)


async def test_scans_resolve_unit_then_batch_then_product(node: Node, stub: object) -> None:
    await node.core.tenancy.map_gs1(local_operator(), "9506000", "88.118.8")
    gtin = "09506000134352"
    await stub.RegisterBatch(pb.RegisterBatchRequest(  # type: ignore[attr-defined]
        idempotency_key="gs1", records=[
            record_input(f"88.118.8/01/{gtin}/10/ABC1", product__name="batch ABC1"),
            record_input(f"88.118.8/01/{gtin}/10/ABC1/21/7", product__name="unit 7"),
            record_input(f"88.118.8/01/{gtin}", product__name="product")]))

    async def name(path: str) -> str:
        resp = await http_get(node.ports.http, path, {"Accept": "application/json"})
        assert resp.status == 200, resp.body
        return str(resp.json()["values"][0]["data"]["value"])

    assert await name(f"/01/{gtin}/10/ABC1/21/7") == "unit 7"
    assert await name(f"/01/{gtin}/10/ABC1/21/8") == "batch ABC1"   # no unit record
    assert await name(f"/01/{gtin}/10/OTHER") == "product"          # no batch record
    assert await name("/01/9506000134352/10/ABC1") == "batch ABC1"   # GTIN-13 spelling
    page = await http_get(node.ports.http, f"/01/{gtin}/10/ABC1/21/7", {"Accept": "text/html"})
    assert "unit 7" in page.body.decode()
    bad = await http_get(node.ports.http, "/01/09506000134353")
    assert bad.status == 400 and bad.json()["reason"] == "INVALID_GTIN"
    unmapped = await http_get(node.ports.http, "/01/04006381333931")
    assert unmapped.status == 404 and unmapped.json()["reason"] == "GS1_PREFIX_NOT_MAPPED"
